// The ring CRDT (weave `ipam/ring`): who owns which part of the allocation range.
//
// The range [start, end) is cut by tokens; each entry owns from its token to the next token
// (the last one wraps round to the first). An entry carries a version and the owner's last
// report of its free addresses. Only an entry's owner changes it, and every change bumps the
// version; tokens are never removed. So two rings merge by taking, token by token, the entry
// with the higher version: a join, hence idempotent, commutative and associative
// (`joinEntries`, tested as a compliance suite). Equal versions with different contents only
// arise from concurrent administrative takeovers; they are ordered by (peer, free) so that
// every peer picks the same one. Free counts are hints and are capped at their entry's length
// after a merge (see capFree), which keeps merges of legitimate rings always possible.
//
// On top of the join, `Ring.merge` applies the owner's rules of the original: a peer refuses
// an update that would give away part of a range it owns and holds addresses in
// ("Peer X says it owns the IP range from Y, which I think I own", "Received update for IP
// range I own ..."), accepts such an update when it holds nothing there (repair), and
// re-imposes its own entry (version bumped past the incoming one) when someone sends an older
// copy of it back with a higher version. Rings seeded by different peers, or over different
// ranges, never merge: that is a split brain the allocator reports.
//
// Cost: entries grow with donations (two tokens at most per donation), merge is linear in
// both rings; the whole ring travels in each IPAM gossip message.
import { WeaveError } from '../core/errors.js';
import { formatIPv4 } from '../core/ip.js';
import { formatPeerName, type PeerName } from '../core/peer-name.js';
import type { AddressRange } from './address-range.js';

export interface RingEntry {
  token: number;
  peer: PeerName;
  version: number;
  free: number;
}

/** The ring as it travels (gossip) and is stored. Entries sorted by token. */
export interface RingState {
  readonly start: number;
  readonly end: number;
  /** The peer whose copy this is (informational). */
  readonly peer: PeerName;
  readonly entries: readonly RingEntry[];
  readonly seeds: readonly PeerName[];
}

export interface RangeInfo extends AddressRange {
  readonly peer: PeerName;
  readonly version: number;
}

export type MergeConflictKind = 'seeds' | 'range' | 'invalid' | 'entries';

export type MergeResult =
  | { readonly ok: true; readonly updated: boolean }
  | { readonly ok: false; readonly kind: MergeConflictKind; readonly message: string };

/** mesh `UnknownPeerName`. */
const NO_PEER = 0;

/** Transfers bump versions by this much so they win over the owner's concurrent updates (ring.go Transfer). */
export const TRANSFER_VERSION_BUMP = 100;

const UINT32_MAX = 0xffffffff;

function copyEntry(e: RingEntry): RingEntry {
  return { token: e.token, peer: e.peer, version: e.version, free: e.free };
}

function sameEntry(a: RingEntry, b: RingEntry): boolean {
  return a.token === b.token && a.peer === b.peer && a.version === b.version && a.free === b.free;
}

/** Total order on two entries for one token: version, then peer, then free. */
function entryWins(a: RingEntry, b: RingEntry): boolean {
  if (a.version !== b.version) return a.version > b.version;
  if (a.peer !== b.peer) return a.peer > b.peer;
  return a.free >= b.free;
}

/**
 * Free counts are hints (whom to ask for space). A merged ring can hold a token inside an
 * entry whose free count was reported before its owner knew of that token (a takeover by a
 * peer that had not heard of a grant); rather than refusing such a merge for ever, as the
 * original did ("reporting too much free space"), the count is capped at the entry's length;
 * the owner's next report replaces it. Capping depends only on the final set of tokens, which
 * only grows, so the join stays idempotent, commutative and associative.
 */
function capFree(entries: RingEntry[], distance: (a: number, b: number) => number): void {
  for (let k = 0; k < entries.length; k++) {
    const e = entries[k] as RingEntry;
    const next = entries[(k + 1) % entries.length] as RingEntry;
    const d = distance(e.token, next.token);
    if (e.free > d) e.free = d;
  }
}

/**
 * The pure CRDT join of two sorted entry lists over the range [start, end): union of tokens,
 * the winning entry per token, free counts capped at each entry's length.
 */
export function joinEntries(a: readonly RingEntry[], b: readonly RingEntry[], range?: { start: number; end: number }): RingEntry[] {
  const out: RingEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x.token < y.token)) {
      out.push(copyEntry(x as RingEntry));
      i++;
    } else if (x === undefined || y.token < x.token) {
      out.push(copyEntry(y));
      j++;
    } else {
      out.push(copyEntry(entryWins(x, y) ? x : y));
      i++;
      j++;
    }
  }
  if (range) capFree(out, (x, y) => (y > x ? y - x : range.end - x + (y - range.start)));
  return out;
}

export function formatPeerList(peers: readonly PeerName[]): string {
  return `[${peers.map(formatPeerName).join(' ')}]`;
}

export class Ring {
  readonly start: number;
  readonly end: number;
  readonly peer: PeerName;
  private entries: RingEntry[] = [];
  private seedList: PeerName[] = [];
  private gen = 0;

  constructor(start: number, end: number, peer: PeerName) {
    if (!(start < end) || end > UINT32_MAX) throw new WeaveError('INVALID_CONFIG', `invalid ring range ${start}-${end}`);
    this.start = start;
    this.end = end;
    this.peer = peer;
  }

  /** A ring holding `state`'s entries (after checking them), as our copy. */
  static restore(state: RingState, ourPeer: PeerName): Ring {
    const r = new Ring(state.start, state.end, ourPeer);
    const err = r.checkEntries(state.entries);
    if (err) throw new WeaveError('DECODE_FAILED', `invalid ring: ${err}`);
    r.entries = state.entries.map(copyEntry);
    r.seedList = [...state.seeds];
    return r;
  }

  get seeds(): readonly PeerName[] {
    return this.seedList;
  }

  /** Changes with every change of the entries or seeds (callers cache encodings by it). */
  get generation(): number {
    return this.gen;
  }

  /** A deep copy of our state (what we gossip and store). */
  state(): RingState {
    return { start: this.start, end: this.end, peer: this.peer, entries: this.entries.map(copyEntry), seeds: [...this.seedList] };
  }

  /** Replaces our contents with a copy taken earlier by `state()` (rolls back a change). */
  reset(state: RingState): void {
    this.entries = state.entries.map(copyEntry);
    this.seedList = [...state.seeds];
    this.gen++;
  }

  empty(): boolean {
    return this.entries.length === 0;
  }

  get size(): number {
    return this.end - this.start;
  }

  entryList(): readonly RingEntry[] {
    return this.entries;
  }

  contains(addr: number): boolean {
    return addr >= this.start && addr < this.end;
  }

  /** Addresses from token a up to token b, wrapping round the end of the range. */
  distance(a: number, b: number): number {
    return b > a ? b - a : this.end - a + (b - this.start);
  }

  private at(entries: readonly RingEntry[], i: number): RingEntry {
    const n = entries.length;
    return entries[((i % n) + n) % n] as RingEntry;
  }

  /** Why `entries` cannot be a ring over our range, or undefined. */
  checkEntries(entries: readonly RingEntry[]): string | undefined {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as RingEntry;
      if (!Number.isInteger(e.token) || !Number.isInteger(e.version) || !Number.isInteger(e.free) || e.version < 0 || e.free < 0) {
        return 'Malformed entry';
      }
      if (i > 0 && (entries[i - 1] as RingEntry).token > e.token) return 'Ring not sorted';
      if (i > 0 && (entries[i - 1] as RingEntry).token === e.token) return 'Token appears twice in ring';
    }
    if (entries.length === 0) return undefined;
    if ((entries[0] as RingEntry).token < this.start || (entries[entries.length - 1] as RingEntry).token >= this.end) {
      return 'Token is out of range';
    }
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as RingEntry;
      const next = this.at(entries, i + 1);
      const d = this.distance(e.token, next.token);
      if (e.free > d) {
        return `Entry ${formatIPv4(e.token)}-${formatIPv4(next.token)} reporting too much free space: ${e.free} > ${d}`;
      }
    }
    return undefined;
  }

  private assertValid(): void {
    const err = this.checkEntries(this.entries);
    if (err) throw new WeaveError('INTERNAL', `ring invariant broken: ${err}`);
  }

  /** Index of the right-most entry with token <= addr (-1 when addr precedes every token). */
  private precedingIndex(addr: number): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.entries[mid] as RingEntry).token > addr) hi = mid;
      else lo = mid + 1;
    }
    return lo - 1;
  }

  private find(token: number): RingEntry | undefined {
    const i = this.precedingIndex(token);
    const e = this.entries[i];
    return e && e.token === token ? e : undefined;
  }

  private insert(e: RingEntry): void {
    const i = this.precedingIndex(e.token) + 1;
    if (this.entries[i - 1]?.token === e.token) throw new WeaveError('INTERNAL', 'Trying to insert an existing token!');
    this.entries.splice(i, 0, e);
  }

  /** The peer owning addr, or undefined on an empty ring. */
  owner(addr: number): PeerName | undefined {
    if (!this.contains(addr) || this.empty()) return undefined;
    return this.at(this.entries, this.precedingIndex(addr)).peer;
  }

  /** Ranges in address order; only the last may wrap, and it is split at the range's origin. */
  private splitOverZero(ranges: AddressRange[]): AddressRange[] {
    const last = ranges[ranges.length - 1];
    if (!last) return ranges;
    if (last.end === this.start) {
      ranges[ranges.length - 1] = { start: last.start, end: this.end };
    } else if (last.end <= last.start) {
      ranges[ranges.length - 1] = { start: last.start, end: this.end };
      ranges.unshift({ start: this.start, end: last.end });
    }
    return ranges;
  }

  /** The ranges `peer` owns, in address order. */
  ownedRanges(peer: PeerName = this.peer): AddressRange[] {
    const out: AddressRange[] = [];
    this.entries.forEach((e, i) => {
      if (e.peer === peer) out.push({ start: e.token, end: this.at(this.entries, i + 1).token });
    });
    return this.splitOverZero(out);
  }

  /** Every entry's range(s), for status. */
  allRangeInfo(): RangeInfo[] {
    const out: RangeInfo[] = [];
    this.entries.forEach((e, i) => {
      for (const r of this.splitOverZero([{ start: e.token, end: this.at(this.entries, i + 1).token }])) {
        out.push({ ...r, peer: e.peer, version: e.version });
      }
    });
    return out;
  }

  /** Owners mentioned in the ring. */
  peerNames(): Set<PeerName> {
    return new Set(this.entries.map((e) => e.peer));
  }

  /** Addresses the owners said were in use (range size minus reported free), summed. */
  reportedInUse(): number {
    let n = 0;
    this.entries.forEach((e, i) => {
      n += this.distance(e.token, this.at(this.entries, i + 1).token) - e.free;
    });
    return n;
  }

  /**
   * Divides the empty ring between `peers` (already sorted and unique), each share
   * CIDR-aligned by recursive halving, exactly as the original so that peers seeded alike
   * build identical rings.
   */
  claimForPeers(peers: readonly PeerName[]): void {
    if (!this.empty()) throw new WeaveError('INTERNAL', 'claimForPeers on a non-empty ring');
    if (peers.length === 0) throw new WeaveError('INVALID_ARGUMENT', 'cannot seed a ring with no peers');
    const subdivide = (from: number, to: number, ps: readonly PeerName[]): void => {
      const share = to - from;
      if (share === 0) return;
      if (share === 1 || ps.length === 1) {
        this.insert({ token: from, peer: ps[0] as PeerName, version: 0, free: share });
        return;
      }
      const mid = from + Math.floor(share / 2);
      const half = Math.floor(ps.length / 2);
      subdivide(from, mid, ps.slice(0, half));
      subdivide(mid + (share % 2), to, ps.slice(half));
    };
    subdivide(this.start, this.end, peers);
    this.seedList = [...peers];
    this.gen++;
    this.assertValid();
  }

  /**
   * Gives [start, end), which we own, to `peer`: up to two tokens are inserted, our entries
   * are updated (version bumped, free trimmed) and intervening tokens change owner.
   */
  grantRangeToHost(start: number, end: number, peer: PeerName): void {
    if (!(start < end) || !this.contains(start) || end > this.end || this.empty()) {
      throw new WeaveError('INTERNAL', `grantRangeToHost: bad range ${formatIPv4(start)}-${formatIPv4(end)}`);
    }
    this.gen++;
    let pos = this.precedingIndex(start);
    for (let p = pos; p < this.entries.length && this.at(this.entries, p).token < end; p++) {
      if (this.at(this.entries, p).peer !== this.peer) throw new WeaveError('INTERNAL', 'grantRangeToHost: range not owned by us');
    }
    const update = (e: RingEntry, owner: PeerName, free: number) => {
      e.peer = owner;
      e.version++;
      e.free = free;
    };
    const startFree = Math.min(this.distance(start, this.at(this.entries, pos + 1).token), this.distance(start, end));
    const prev = this.at(this.entries, pos);
    if (prev.token === start) {
      update(prev, peer, startFree);
    } else {
      this.insert({ token: start, peer, version: 0, free: startFree });
      pos++;
      // Our preceding entry now ends at start.
      update(prev, this.peer, Math.min(prev.free, this.distance(prev.token, start)));
    }
    let p = pos + 1;
    for (; p < this.entries.length && (this.entries[p] as RingEntry).token < end; p++) {
      const e = this.entries[p] as RingEntry;
      update(e, peer, Math.min(e.free, this.distance(e.token, end)));
    }
    const endToken = end === this.end ? this.start : end;
    if (this.find(endToken)) {
      this.assertValid();
      return;
    }
    this.insert({ token: endToken, peer: this.peer, version: 0, free: this.distance(endToken, this.at(this.entries, p).token) });
    this.assertValid();
  }

  /**
   * Merges a ring received from another peer into ours. `hasAllocations` says whether we
   * hold addresses in given ranges (our own entries may only be given away when we do not).
   * `authoritative` (default true): our copies of our own entries are the truth (they come
   * from our store or our own changes) and are re-imposed over different copies; false while
   * we only know them from others (we lost our store), when the newest copy wins instead.
   * Our state changes only when the result is ok.
   */
  merge(other: RingState, hasAllocations: (ranges: AddressRange[]) => boolean, opts: { authoritative?: boolean } = {}): MergeResult {
    const authoritative = opts.authoritative ?? true;
    if (other.start !== this.start || other.end !== this.end) {
      return { ok: false, kind: 'range', message: 'Received range differs from ours' };
    }
    const bad = this.checkEntries(other.entries);
    if (bad) return { ok: false, kind: 'invalid', message: bad };
    if (other.seeds.length > 0 && this.seedList.length > 0) {
      const same = other.seeds.length === this.seedList.length && other.seeds.every((s, i) => s === this.seedList[i]);
      if (!same) return { ok: false, kind: 'seeds', message: 'Received ring was seeded differently from ours' };
    }
    const mine = this.entries;
    const theirs = other.entries;
    const ours = this.peer;
    const result: RingEntry[] = [];
    let updated = false;
    const nextMineToken = (i: number) => this.at(mine, i + 1).token;
    const rangesOf = (a: number, b: number) => this.splitOverZero([{ start: a, end: b }]);
    const takeMine = (e: RingEntry) => {
      result.push(copyEntry(e));
    };
    const takeTheirs = (e: RingEntry) => {
      result.push(copyEntry(e));
      updated = true;
    };
    // A token of theirs that we lack, inserted before mine[i]: our own ring gives the range it
    // falls in to our entry before it (round the ring). Each such token is checked against
    // that, not against the entry taken last: after one token of theirs the next in the same
    // range of ours went unchecked, and two tokens took addresses we had handed out.
    const splitsOurs = (e: RingEntry, upTo: number, i: number): string | undefined => {
      if (mine.length > 0 && this.at(mine, i - 1).peer === ours && e.peer !== ours && hasAllocations(rangesOf(e.token, upTo))) {
        return `Peer ${formatPeerName(e.peer)} says it owns the IP range from ${formatIPv4(e.token)}, which I think I own`;
      }
      return undefined;
    };
    let i = 0;
    let j = 0;
    while (i < mine.length && j < theirs.length) {
      const m = mine[i] as RingEntry;
      const t = theirs[j] as RingEntry;
      if (m.token < t.token) {
        takeMine(m);
        i++;
      } else if (m.token > t.token) {
        // The range it takes runs to its next token or our next one, whichever comes first (the
        // original took all of it up to ours, and refused merges it had no reason to refuse).
        const err = splitsOurs(t, Math.min(theirs[j + 1]?.token ?? m.token, m.token), i);
        if (err) return { ok: false, kind: 'entries', message: err };
        takeTheirs(t);
        j++;
      } else {
        if (m.version > t.version || sameEntry(m, t)) {
          takeMine(m);
        } else if (authoritative && m.version === t.version && m.peer === ours && t.peer === ours) {
          // Our own entry with another free count at the same version (we restarted from an
          // older store): our count is the true one; a higher version makes everyone agree.
          takeMine({ ...m, version: m.version + 1 });
          updated = true;
        } else if (m.version === t.version) {
          if (m.peer === ours && t.peer !== ours && hasAllocations(rangesOf(m.token, nextMineToken(i)))) {
            return {
              ok: false,
              kind: 'entries',
              message: `Inconsistent entries for ${formatIPv4(m.token)}: owned by ${formatPeerName(m.peer)} but incoming message says ${formatPeerName(t.peer)}`,
            };
          }
          if (entryWins(m, t)) takeMine(m);
          else takeTheirs(t);
        } else if (m.peer === ours) {
          if (t.peer !== ours) {
            // What their entry takes runs to its next token or our next one, whichever comes
            // first (as for an inserted token above): a grant we made and forgot (a restart
            // without the store) is taken unless we hold addresses in the granted part itself.
            const nm = nextMineToken(i);
            const nt = (theirs[j + 1] ?? theirs[0] as RingEntry).token;
            const upTo = this.distance(t.token, nt) > 0 && this.distance(t.token, nt) < this.distance(t.token, nm) ? nt : nm;
            if (hasAllocations(rangesOf(m.token, upTo))) {
              return {
                ok: false,
                kind: 'entries',
                message: `Received update for IP range I own at ${formatIPv4(m.token)} v${m.version}: incoming message says owner ${formatPeerName(t.peer)} v${t.version}`,
              };
            }
            takeTheirs(t); // repair: we hold nothing there
          } else if (authoritative) {
            // An old copy of our own entry came back with a higher version: ours stands.
            takeMine({ ...m, version: t.version + 1 });
            updated = true;
          } else {
            takeTheirs(t);
          }
        } else {
          takeTheirs(t);
        }
        i++;
        j++;
      }
    }
    for (; i < mine.length; i++) takeMine(mine[i] as RingEntry);
    for (; j < theirs.length; j++) {
      const t = theirs[j] as RingEntry;
      // The last of theirs runs up to their next token, or round to the first token of all.
      const err = splitsOurs(t, theirs[j + 1]?.token ?? (result[0] ?? t).token, i);
      if (err) return { ok: false, kind: 'entries', message: err };
      takeTheirs(t);
    }
    // A free count may exceed its now shorter range after a split (see capFree).
    const before = result.map((e) => e.free);
    capFree(result, (x, y) => this.distance(x, y));
    if (result.some((e, k) => e.free !== before[k])) updated = true;
    const err = this.checkEntries(result);
    if (err) return { ok: false, kind: 'invalid', message: `Merge of incoming data causes: ${err}` };
    if (this.seedList.length === 0 && other.seeds.length > 0) {
      this.seedList = [...other.seeds];
      this.gen++;
      updated = true;
    }
    if (!updated && result.length === mine.length) {
      // Nothing new: keep our objects (cheap, and callers may hold them).
      return { ok: true, updated: false };
    }
    this.entries = result;
    this.gen++;
    return { ok: true, updated: true };
  }

  /**
   * Sets the free counts of our entries (token -> free); bumps the version of each entry whose
   * count changed. Returns whether anything changed.
   */
  reportFree(freeByToken: ReadonlyMap<number, number>): boolean {
    let changed = false;
    for (const [token, free] of freeByToken) {
      const i = this.precedingIndex(token);
      const e = this.entries[i];
      if (!e || e.token !== token || e.peer !== this.peer) throw new WeaveError('INTERNAL', 'reportFree on an entry we do not own');
      const max = this.distance(e.token, this.at(this.entries, i + 1).token);
      if (free > max) throw new WeaveError('INTERNAL', 'reportFree: more free than the range holds');
      if (e.free === free) continue;
      e.free = free;
      e.version++;
      changed = true;
    }
    if (changed) this.gen++;
    return changed;
  }

  /** Our entries with the range(s) each covers (a wrapping entry covers two) and their free count. */
  ownEntries(): { token: number; free: number; size: number; ranges: AddressRange[] }[] {
    const out: { token: number; free: number; size: number; ranges: AddressRange[] }[] = [];
    this.entries.forEach((e, i) => {
      if (e.peer !== this.peer) return;
      const next = this.at(this.entries, i + 1).token;
      out.push({ token: e.token, free: e.free, size: this.distance(e.token, next), ranges: this.splitOverZero([{ start: e.token, end: next }]) });
    });
    return out;
  }

  /**
   * Peers that report free space overlapping [start, end), in weighted-random order (more
   * free space, more likely first), never ourselves.
   */
  choosePeersToAskForSpace(start: number, end: number, random: () => number): PeerName[] {
    const total = new Map<PeerName, number>();
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i] as RingEntry;
      const next = this.entries[i + 1];
      if (next && next.token - 1 < start) continue;
      if (e.token >= end) break;
      if (e.free <= 0 || e.peer === this.peer) continue;
      total.set(e.peer, (total.get(e.peer) ?? 0) + e.free);
    }
    return [...total]
      .map(([peer, space]) => ({ peer, weight: space * random() }))
      .sort((a, b) => b.weight - a.weight || a.peer - b.peer)
      .map((w) => w.peer);
  }

  /** The first other owner in token order that `isValid` accepts. */
  pickPeerForTransfer(isValid: (p: PeerName) => boolean): PeerName | undefined {
    for (const e of this.entries) if (e.peer !== this.peer && isValid(e.peer)) return e.peer;
    return undefined;
  }

  /** Gives every entry of `from` to `to` (version +100); returns the ranges that moved. */
  transfer(from: PeerName, to: PeerName): AddressRange[] {
    this.gen++;
    const moved: AddressRange[] = [];
    this.entries.forEach((e, i) => {
      if (e.peer !== from) return;
      e.peer = to;
      e.version += TRANSFER_VERSION_BUMP;
      moved.push({ start: e.token, end: this.at(this.entries, i + 1).token });
    });
    return this.splitOverZero(moved);
  }

  /** `Ring [a, b)` then one line per entry, as the original's String(). */
  toString(nicknames?: ReadonlyMap<PeerName, string>): string {
    let s = `Ring [${formatIPv4(this.start)}, ${formatIPv4(this.end)})`;
    for (const e of this.entries) {
      const nick = nicknames?.get(e.peer);
      s += `\n  ${formatIPv4(e.token)} -> ${formatPeerName(e.peer)}${nick !== undefined ? ` (${nick})` : ''} (v${e.version})`;
    }
    return s;
  }
}

export { NO_PEER };
