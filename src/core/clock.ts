// Injected time. Production code never calls Date.now() or setTimeout directly, so tests can
// drive a FakeClock and converge by advancing it instead of sleeping.

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  now(): number; // milliseconds since the epoch
  setTimeout(fn: () => void, delayMs: number): TimerHandle;
  setInterval(fn: () => void, intervalMs: number): TimerHandle;
  sleep(delayMs: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, delayMs) {
    const t = setTimeout(fn, delayMs);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, intervalMs) {
    const t = setInterval(fn, intervalMs);
    t.unref?.();
    return { cancel: () => clearInterval(t) };
  },
  sleep(delayMs, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, delayMs);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  everyMs?: number;
  cancelled: boolean;
}

/** Heap order: earlier time first, ties in creation (or re-arm) order. */
function before(a: Pending, b: Pending): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * A clock that only moves when told to. Timers fire in time order, ties in creation order (an
 * interval re-armed after firing counts as created then). Timers wait in a binary heap, so a
 * simulation with thousands of timers (one per connection and router) costs O(log n) per timer
 * rather than a scan of every pending timer; cancelled timers are dropped lazily when they reach
 * the top, and the heap is compacted when they outnumber the live ones.
 */
export class FakeClock implements Clock {
  private nowMs: number;
  private seq = 0;
  private heap: Pending[] = [];
  private live = 0;

  constructor(startMs = 1_700_000_000_000) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, delayMs: number): TimerHandle {
    return this.schedule({ at: this.nowMs + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false });
  }

  setInterval(fn: () => void, intervalMs: number): TimerHandle {
    const every = Math.max(1, intervalMs);
    return this.schedule({ at: this.nowMs + every, seq: this.seq++, fn, everyMs: every, cancelled: false });
  }

  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const h = this.setTimeout(resolve, delayMs);
      signal?.addEventListener('abort', () => {
        h.cancel();
        reject(signal.reason);
      }, { once: true });
    });
  }

  /** Number of timers still scheduled. */
  get pendingCount(): number {
    return this.live;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.nowMs + ms;
    for (;;) {
      const next = this.peek();
      if (!next || next.at > until) break;
      this.nowMs = next.at;
      this.pop();
      if (next.everyMs !== undefined) {
        next.at += next.everyMs;
        next.seq = this.seq++;
        this.push(next);
      } else {
        next.cancelled = true;
        this.live--;
      }
      next.fn();
    }
    this.nowMs = until;
  }

  private schedule(p: Pending): TimerHandle {
    this.push(p);
    this.live++;
    return {
      cancel: () => {
        if (p.cancelled) return;
        p.cancelled = true;
        this.live--;
        if (this.heap.length > 64 && this.heap.length > 4 * this.live) this.compact();
      },
    };
  }

  /** The earliest live timer, dropping cancelled ones from the top. */
  private peek(): Pending | undefined {
    while (this.heap.length > 0 && (this.heap[0] as Pending).cancelled) this.pop();
    return this.heap[0];
  }

  private compact(): void {
    const keep = this.heap.filter((p) => !p.cancelled);
    this.heap = [];
    for (const p of keep) this.push(p);
  }

  private push(p: Pending): void {
    const h = this.heap;
    let i = h.length;
    h.push(p);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const q = h[parent] as Pending;
      if (!before(p, q)) break;
      h[i] = q;
      i = parent;
    }
    h[i] = p;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as Pending;
    if (h.length === 0) return;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && before(h[r] as Pending, h[l] as Pending) ? r : l;
      if (!before(h[c] as Pending, last)) break;
      h[i] = h[c] as Pending;
      i = c;
    }
    h[i] = last;
  }
}
