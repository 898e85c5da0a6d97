// The addresses this peer owns (weave `ipam/space`): which are handed out and which are free.
//
// Both sets are kept as sorted boundary lists: even positions are inclusive starts, odd
// positions exclusive ends, neighbouring ranges always coalesced, so a list is strictly
// increasing. Membership is a binary search (an address is inside when the number of
// boundaries at or below it is odd); adding or removing a range splices at most two
// boundaries. Cost: O(log n) lookups, O(n) edits, n = number of fragments (small: a peer owns
// a few ranges and frees make holes only until neighbours are freed too).
//
// A third set, `held`, is space we own but do not hand out yet: space inherited from a peer
// whose last report said addresses were in use (the allocator holds it for a while, see
// INHERIT_HOLD_MS there). Claims may take held addresses (a container that still uses one
// claims it back); allocations and donations of ranges may not.
//
// Invariants: `allocated`, `free` and `held` are disjoint; their union is everything this
// peer owns (the ring's ranges for us, checked by the allocator); allocation returns the
// lowest free address of the requested range, as the original (tests rely on linear
// allocation).
import { WeaveError } from '../core/errors.js';
import { formatIPv4, type IPv4 } from '../core/ip.js';
import { biggestCidrBlock, rangeSize, type AddressRange } from './address-range.js';

/** Index of the first boundary strictly greater than x. */
function firstAbove(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Index of the first boundary at or above x. */
function firstAtOrAbove(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) >= x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function inside(a: readonly number[], x: number): boolean {
  return (firstAbove(a, x) & 1) === 1;
}

/**
 * The set `a` with [start, end) added (`remove` false) or taken out (`remove` true). Boundaries
 * before the edit and after it are kept; the edit's own ends become boundaries only where they
 * change membership.
 */
function edit(a: readonly number[], start: number, end: number, remove: boolean): number[] {
  if (end <= start) return [...a];
  const lo = firstAtOrAbove(a, start);
  const hi = firstAbove(a, end);
  const out = a.slice(0, lo);
  // Position parity says whether `start` (and `end`) lie outside (even) or inside (odd) a range.
  const want = remove ? 1 : 0;
  if ((lo & 1) === want) out.push(start);
  if ((hi & 1) === want) out.push(end);
  for (let i = hi; i < a.length; i++) out.push(a[i] as number);
  return out;
}

function count(a: readonly number[]): number {
  let n = 0;
  for (let i = 0; i + 1 < a.length; i += 2) n += (a[i + 1] as number) - (a[i] as number);
  return n;
}

function toRanges(a: readonly number[]): AddressRange[] {
  const out: AddressRange[] = [];
  for (let i = 0; i + 1 < a.length; i += 2) out.push({ start: a[i] as number, end: a[i + 1] as number });
  return out;
}

export class Space {
  private allocated: number[] = [];
  private free: number[] = [];
  private held: number[] = [];

  /** Adds [start, end) as free space. */
  addFree(r: AddressRange): void {
    this.free = edit(this.free, r.start, r.end, false);
  }

  /** Forgets everything (leaving the network). */
  clear(): void {
    this.allocated = [];
    this.free = [];
    this.held = [];
  }

  /** Moves the free addresses of r to the held set. */
  hold(r: AddressRange): void {
    let moving = [...this.free];
    moving = edit(moving, 0, r.start, true);
    moving = edit(moving, r.end, 2 ** 32, true);
    for (let i = 0; i + 1 < moving.length; i += 2) {
      const a = moving[i] as number;
      const b = moving[i + 1] as number;
      this.free = edit(this.free, a, b, true);
      this.held = edit(this.held, a, b, false);
    }
  }

  /** Moves the held addresses of r back to the free set. */
  releaseHeld(r: AddressRange): void {
    let moving = [...this.held];
    moving = edit(moving, 0, r.start, true);
    moving = edit(moving, r.end, 2 ** 32, true);
    for (let i = 0; i + 1 < moving.length; i += 2) {
      const a = moving[i] as number;
      const b = moving[i + 1] as number;
      this.held = edit(this.held, a, b, true);
      this.free = edit(this.free, a, b, false);
    }
  }

  isHeld(addr: IPv4): boolean {
    return inside(this.held, addr);
  }

  numHeld(): number {
    return count(this.held);
  }

  /** Calls f on each free chunk clipped to r, in address order, until f returns true. */
  private walkFree(r: AddressRange, f: (chunk: AddressRange) => boolean): boolean {
    if (r.end <= r.start) return false;
    for (let i = firstAbove(this.free, r.start) & ~1; i + 1 < this.free.length; i += 2) {
      const s = this.free[i] as number;
      const e = this.free[i + 1] as number;
      if (e <= r.start) continue;
      if (s >= r.end) break;
      if (f({ start: Math.max(s, r.start), end: Math.min(e, r.end) })) return true;
    }
    return false;
  }

  /** The lowest free address in r, now allocated; undefined when r has none free. */
  allocate(r: AddressRange): IPv4 | undefined {
    let got: IPv4 | undefined;
    this.walkFree(r, (chunk) => {
      got = chunk.start;
      return true;
    });
    if (got !== undefined) this.take(got);
    return got;
  }

  private take(addr: IPv4): void {
    this.allocated = edit(this.allocated, addr, addr + 1, false);
    this.free = edit(this.free, addr, addr + 1, true);
  }

  /** Marks a free (or held) address allocated; false when it is neither here. */
  claim(addr: IPv4): boolean {
    if (inside(this.held, addr)) {
      this.held = edit(this.held, addr, addr + 1, true);
      this.allocated = edit(this.allocated, addr, addr + 1, false);
      return true;
    }
    if (!inside(this.free, addr)) return false;
    this.take(addr);
    return true;
  }

  /** Returns an allocated address to the free set. */
  release(addr: IPv4): void {
    if (!inside(this.allocated, addr)) throw new WeaveError('NOT_FOUND', `Address ${formatIPv4(addr)} is not ours`);
    this.allocated = edit(this.allocated, addr, addr + 1, true);
    this.free = edit(this.free, addr, addr + 1, false);
  }

  isFree(addr: IPv4): boolean {
    return inside(this.free, addr);
  }

  isAllocated(addr: IPv4): boolean {
    return inside(this.allocated, addr);
  }

  /** Whether any address of the ranges is allocated. */
  hasAllocationsIn(ranges: readonly AddressRange[]): boolean {
    for (const r of ranges) {
      if (r.end <= r.start) continue;
      const i = firstAbove(this.allocated, r.start);
      // Inside an allocated run at r.start, or a run starts before r.end.
      if ((i & 1) === 1) return true;
      if (i < this.allocated.length && (this.allocated[i] as number) < r.end) return true;
    }
    return false;
  }

  numAllocated(): number {
    return count(this.allocated);
  }

  numFree(): number {
    return count(this.free);
  }

  numFreeInRange(r: AddressRange): number {
    let n = 0;
    this.walkFree(r, (chunk) => {
      n += rangeSize(chunk);
      return false;
    });
    return n;
  }

  /**
   * Gives away part of the free space in r: the biggest CIDR-aligned free block (the highest
   * one on ties), trimmed to its upper half when it is more than half of our free space in r,
   * so a donor keeps at least about half. Undefined when nothing in r is free.
   */
  donate(r: AddressRange): AddressRange | undefined {
    if (r.end - r.start === 1 && inside(this.held, r.start)) {
      // One held address asked for: another peer's container still uses it (a claim).
      this.held = edit(this.held, r.start, r.end, true);
      return { start: r.start, end: r.end };
    }
    let best: AddressRange | undefined;
    this.walkFree(r, (chunk) => {
      const block = biggestCidrBlock(chunk);
      if (!best || rangeSize(block) >= rangeSize(best)) best = block;
      return false;
    });
    if (!best || rangeSize(best) === 0) return undefined;
    let gift = best;
    const size = rangeSize(gift);
    if (size > Math.floor(this.numFreeInRange(r) / 2)) gift = { start: gift.start + Math.floor(size / 2), end: gift.end };
    this.free = edit(this.free, gift.start, gift.end, true);
    return gift;
  }

  /** Everything owned, allocated, free or held, as coalesced ranges in address order. */
  ownedRanges(): AddressRange[] {
    let all = [...this.allocated];
    for (const set of [this.free, this.held]) for (let i = 0; i + 1 < set.length; i += 2) all = edit(all, set[i] as number, set[i + 1] as number, false);
    return toRanges(all);
  }

  heldRanges(): AddressRange[] {
    return toRanges(this.held);
  }

  freeRanges(): AddressRange[] {
    return toRanges(this.free);
  }

  allocatedRanges(): AddressRange[] {
    return toRanges(this.allocated);
  }

  /**
   * Makes what we own exactly `ranges`: ranges we did not own become free; free space outside
   * them is dropped. Allocated addresses outside them are kept and returned (the caller only
   * gives up ranges without allocations, so this is normally empty).
   */
  reconcile(ranges: readonly AddressRange[]): AddressRange[] {
    let want: number[] = [];
    for (const r of ranges) want = edit(want, r.start, r.end, false);
    // Free and held space we should no longer own.
    for (const which of ['free', 'held'] as const) {
      let stray = [...this[which]];
      for (let i = 0; i + 1 < want.length; i += 2) stray = edit(stray, want[i] as number, want[i + 1] as number, true);
      for (let i = 0; i + 1 < stray.length; i += 2) this[which] = edit(this[which], stray[i] as number, stray[i + 1] as number, true);
    }
    // Space we should own and have neither free nor allocated.
    let fresh = want;
    const have = this.ownedRanges();
    for (const r of have) fresh = edit(fresh, r.start, r.end, true);
    for (let i = 0; i + 1 < fresh.length; i += 2) this.free = edit(this.free, fresh[i] as number, fresh[i + 1] as number, false);
    let orphans = [...this.allocated];
    for (let i = 0; i + 1 < want.length; i += 2) orphans = edit(orphans, want[i] as number, want[i + 1] as number, true);
    return toRanges(orphans);
  }

  toString(): string {
    const fmt = (a: number[]) => toRanges(a).map((r) => ` ${formatIPv4(r.start)}+${rangeSize(r)}`).join('');
    if (this.allocated.length === 0 && this.free.length === 0) return 'No address ranges owned';
    return `${this.allocated.length ? `owned:${fmt(this.allocated)}` : ''}${this.free.length ? ` free:${fmt(this.free)}` : ''}`.trim();
  }
}
