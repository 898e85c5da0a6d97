// Rate limiter for accepting inbound TCP connections (mesh `token_bucket.go`, used by the
// router's accept loop): the bucket starts full, each accepted connection spends a token, and
// tokens come back one per interval up to the capacity. A burst of `capacity` connections is
// accepted at once; after that, one per interval, so a reconnect storm cannot swamp the
// handshake code.
//
// Invariants: 0 <= tokens <= capacity; `refilledAtMs` is the time the last whole token was
// credited (or now, when full), so fractional progress towards the next token is never lost
// nor counted twice. Waiters are served first come, first served; `tryTake` never jumps the
// queue. Time comes from the injected clock only.
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError } from '../core/errors.js';

/** Weave Net's accept limiter: 20 tokens (`acceptMaxTokens`). */
export const ACCEPT_MAX_TOKENS = 20;
/** Weave Net's accept limiter: one token back every 50 ms (`acceptTokenDelay`). */
export const ACCEPT_TOKEN_INTERVAL_MS = 50;

export interface TokenBucketDeps {
  clock: Clock;
}

export interface TokenBucketOptions {
  capacity?: number;
  tokenIntervalMs?: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class TokenBucket {
  readonly capacity: number;
  readonly tokenIntervalMs: number;
  private readonly clock: Clock;
  private tokens: number;
  private refilledAtMs: number;
  private readonly waiters: Waiter[] = [];
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(deps: TokenBucketDeps, opts: TokenBucketOptions = {}) {
    const capacity = opts.capacity ?? ACCEPT_MAX_TOKENS;
    const interval = opts.tokenIntervalMs ?? ACCEPT_TOKEN_INTERVAL_MS;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new WeaveError('INVALID_ARGUMENT', `token bucket capacity must be a positive integer, got ${String(capacity)}`);
    }
    if (!(interval > 0) || !Number.isFinite(interval)) {
      throw new WeaveError('INVALID_ARGUMENT', `token interval must be a positive number of ms, got ${String(interval)}`);
    }
    this.clock = deps.clock;
    this.capacity = capacity;
    this.tokenIntervalMs = interval;
    this.tokens = capacity;
    this.refilledAtMs = deps.clock.now();
  }

  /** Tokens available right now (after crediting the time that has passed). */
  available(): number {
    this.refill();
    return this.tokens;
  }

  /** Takes a token if one is free and nobody is queued before us; never waits. */
  tryTake(): boolean {
    if (this.stopped || this.waiters.length > 0) return false;
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Milliseconds until the next token is credited; 0 when one is available now. */
  msUntilNextToken(): number {
    this.refill();
    if (this.tokens >= 1) return 0;
    return Math.max(0, this.refilledAtMs + this.tokenIntervalMs - this.clock.now());
  }

  /**
   * Resolves once a token has been taken for the caller. Rejects with the signal's reason when
   * aborted, or with CANCELLED when the bucket is stopped.
   */
  wait(opts: { signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = opts;
    if (this.stopped) return Promise.reject(new WeaveError('CANCELLED', 'token bucket stopped'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.tryTake()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal.reason);
          this.schedule();
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiters.push(w);
      this.schedule();
    });
  }

  /** Cancels the timer and rejects every waiter; idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    for (const w of this.waiters.splice(0)) {
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      w.reject(new WeaveError('CANCELLED', 'token bucket stopped'));
    }
  }

  private refill(): void {
    const now = this.clock.now();
    // A clock that went backwards credits nothing, and restarts the count from now.
    if (now < this.refilledAtMs || this.tokens >= this.capacity) {
      this.refilledAtMs = now;
      return;
    }
    const gained = Math.floor((now - this.refilledAtMs) / this.tokenIntervalMs);
    if (gained <= 0) return;
    this.tokens = Math.min(this.capacity, this.tokens + gained);
    this.refilledAtMs = this.tokens >= this.capacity ? now : this.refilledAtMs + gained * this.tokenIntervalMs;
  }

  // Serves queued waiters with whatever tokens exist, then sleeps until the next token is due.
  private schedule(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.stopped) return;
    this.refill();
    while (this.waiters.length > 0 && this.tokens >= 1) {
      const w = this.waiters.shift();
      if (!w) break;
      this.tokens--;
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      w.resolve();
    }
    if (this.waiters.length === 0) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.schedule();
    }, this.msUntilNextToken());
  }
}
