// The weaveDNS entry set (nameserver `entry.go`): a state-based CRDT gossiped on the
// `nameserver` channel.
//
// Design note for src/dns/. Every router holds the whole cluster's table of
// (hostname, origin peer, container id, address) entries; each router only ever changes the
// entries it originates (adds them, or deletes them by turning them into tombstones) and learns
// the others' through gossip: broadcasts of each change at once, and the full table to a few
// neighbours every 30 s. An entry's identity is the 4-tuple; its state is (version, tombstone)
// and two states merge by taking the lexicographic maximum (higher version wins; at equal
// versions the later tombstone wins), so merging is idempotent, commutative and associative and
// every router converges to the same table whatever order gossip arrives in. Tombstones live
// 30 min (longer than the 15 min clock-skew window, so a delete cannot be undone by old gossip);
// entries of peers that leave the topology are dropped at once; a router that hears a newer
// claim about one of its own entries (it restarted and forgot) re-asserts its own view at a
// higher version. Lookups are by lower-cased hostname (case-insensitive, as the original) and
// by address (PTR). Cost: memory linear in the entries; a change costs O(1) (a map by identity)
// and marks the sorted view and the lookup indexes stale, rebuilt in O(n log n) on the next
// read; lookups are O(1) map reads. A change listener hears, after each operation that changed
// anything, the names whose answers may differ (the DNS worker thread's copy of the names is
// kept in step this way). Gossip carries the whole table every 30 s, so the cost per
// router grows with the cluster's entry count (as in the original).
//
// Invariants: one entry per identity; `version` only grows; only the origin peer tombstones or
// revives an entry (other peers merely merge); the sorted view orders by lower-cased hostname,
// origin, container id, address (the original's CaseInsensitive order), with the exact hostname
// as the final tie-break so that two spellings of one name have a fixed order.
import type { IPv4 } from '../core/ip.js';
import type { PeerName } from '../core/peer-name.js';

/** One name registration, as on the wire (nameserver `Entry`). */
export interface Entry {
  readonly containerId: string;
  readonly origin: PeerName;
  readonly addr: IPv4;
  /** As supplied: a fully qualified name with its trailing dot (web.weave.local.). */
  readonly hostname: string;
  readonly version: number;
  /** Unix seconds of deletion; 0 for a live entry. */
  readonly tombstone: number;
}

interface Slot {
  containerId: string;
  origin: PeerName;
  addr: IPv4;
  hostname: string;
  lower: string;
  version: number;
  tombstone: number;
}

/** Identity of an entry: everything but its state. */
function identityKey(e: { hostname: string; origin: PeerName; containerId: string; addr: IPv4 }): string {
  return `${e.hostname}\u0000${e.origin}\u0000${e.containerId}\u0000${e.addr}`;
}

/** DNS names compare case-insensitively; Go lower-cases with strings.ToLower. */
export function lowerName(s: string): string {
  return s.toLowerCase();
}

/**
 * Go string order (bytewise UTF-8). UTF-16 code-unit order agrees with it except where a
 * surrogate pair meets a code unit at or above U+E000, so only strings with such characters pay
 * for a byte comparison.
 */
export function compareGoStrings(a: string, b: string): number {
  if (a === b) return 0;
  if (needsByteOrder(a) || needsByteOrder(b)) return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  return a < b ? -1 : 1;
}

function needsByteOrder(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0xd800) return true;
  return false;
}

function compareRest(a: Entry, b: Entry): number {
  if (a.origin !== b.origin) return a.origin < b.origin ? -1 : 1;
  const c = compareGoStrings(a.containerId, b.containerId);
  if (c !== 0) return c;
  if (a.addr !== b.addr) return a.addr < b.addr ? -1 : 1;
  return 0;
}

/** The original's gossip order (CaseSensitive): hostname, origin, container id, address. */
export function compareCaseSensitive(a: Entry, b: Entry): number {
  return compareGoStrings(a.hostname, b.hostname) || compareRest(a, b);
}

/** The original's storage order (CaseInsensitive), with the exact hostname as a last tie-break. */
export function compareCaseInsensitive(a: Entry, b: Entry): number {
  return compareGoStrings(lowerName(a.hostname), lowerName(b.hostname)) || compareRest(a, b) || compareGoStrings(a.hostname, b.hostname);
}

/** True when `b`'s state wins over `a`'s (nameserver `Entry.merge`). */
export function stateWins(a: { version: number; tombstone: number }, b: { version: number; tombstone: number }): boolean {
  return b.version > a.version || (b.version === a.version && b.tombstone > a.tombstone);
}

function copyOf(s: Slot | Entry): Entry {
  return { containerId: s.containerId, origin: s.origin, addr: s.addr, hostname: s.hostname, version: s.version, tombstone: s.tombstone };
}

/** The entry set of one router. Not thread-aware: the nameserver owns it. */
export class Entries {
  private readonly byId = new Map<string, Slot>();
  private sorted: Slot[] | undefined;
  private byName: Map<string, Slot[]> | undefined;
  private byAddr: Map<IPv4, Slot[]> | undefined;
  private listener: ((names: ReadonlySet<string>) => void) | undefined;

  /**
   * Calls `listener` at the end of each operation that changed something, with the lower-cased
   * names whose `lookup` may now answer differently. One listener (the nameserver's).
   */
  setChangeListener(listener: ((names: ReadonlySet<string>) => void) | undefined): void {
    this.listener = listener;
  }

  private changed(names: Set<string> | undefined): void {
    if (names && names.size > 0) this.listener?.(names);
  }

  get size(): number {
    return this.byId.size;
  }

  private changedMembership(): void {
    this.sorted = undefined;
    this.byName = undefined;
    this.byAddr = undefined;
  }

  private insert(e: Entry): Slot {
    const s: Slot = { ...copyOf(e), lower: lowerName(e.hostname) };
    this.byId.set(identityKey(e), s);
    this.changedMembership();
    return s;
  }

  /**
   * Registers a name (nameserver `Entries.add`): a new entry starts at version 0; adding an
   * entry that is a tombstone revives it (version + 1); adding a live one changes nothing.
   */
  add(hostname: string, containerId: string, origin: PeerName, addr: IPv4): Entry {
    const key = identityKey({ hostname, origin, containerId, addr });
    const s = this.byId.get(key);
    if (!s) {
      const n = this.insert({ hostname, containerId, origin, addr, version: 0, tombstone: 0 });
      if (this.listener) this.changed(new Set([n.lower]));
      return copyOf(n);
    }
    if (s.tombstone > 0) {
      s.tombstone = 0;
      s.version++;
      if (this.listener) this.changed(new Set([s.lower]));
    }
    return copyOf(s);
  }

  /**
   * Tombstones the live entries originated by `ourName` that `pick` selects (version + 1,
   * tombstone = `nowSec`); returns them, for broadcasting.
   */
  tombstone(ourName: PeerName, nowSec: number, pick: (e: Entry) => boolean): Entry[] {
    const out: Entry[] = [];
    const names = this.listener ? new Set<string>() : undefined;
    for (const s of this.inOrder()) {
      if (s.origin !== ourName || s.tombstone > 0 || !pick(s)) continue;
      s.tombstone = nowSec;
      s.version++;
      out.push(copyOf(s));
      names?.add(s.lower);
    }
    this.changed(names);
    return out;
  }

  /**
   * Merges incoming entries (nameserver `Entries.merge`); returns those that were new or
   * changed something here, with the incoming state. Duplicates in `incoming` merge among
   * themselves (the original panicked on them).
   */
  merge(incoming: Iterable<Entry>): Entry[] {
    const out: Entry[] = [];
    const names = this.listener ? new Set<string>() : undefined;
    for (const e of incoming) {
      const s = this.byId.get(identityKey(e));
      if (!s) {
        const n = this.insert(e);
        out.push(copyOf(e));
        if (n.tombstone === 0) names?.add(n.lower);
      } else if (stateWins(s, e)) {
        if ((s.tombstone === 0) !== (e.tombstone === 0)) names?.add(s.lower);
        s.version = e.version;
        s.tombstone = e.tombstone;
        out.push(copyOf(e));
      }
    }
    this.changed(names);
    return out;
  }

  /** Keeps the entries `keep` selects; returns how many went. */
  filter(keep: (e: Entry) => boolean): number {
    let removed = 0;
    const names = this.listener ? new Set<string>() : undefined;
    for (const [k, s] of this.byId) {
      if (keep(s)) continue;
      this.byId.delete(k);
      removed++;
      if (s.tombstone === 0) names?.add(s.lower);
    }
    if (removed > 0) this.changedMembership();
    this.changed(names);
    return removed;
  }

  /** The entry with the same identity as `e`, if any (a copy). */
  findEqual(e: { hostname: string; origin: PeerName; containerId: string; addr: IPv4 }): Entry | undefined {
    const s = this.byId.get(identityKey(e));
    return s ? copyOf(s) : undefined;
  }

  private inOrder(): Slot[] {
    if (!this.sorted) this.sorted = [...this.byId.values()].sort(compareCaseInsensitive);
    return this.sorted;
  }

  /** Every entry, tombstones included, in storage order (copies). */
  all(): Entry[] {
    return this.inOrder().map(copyOf);
  }

  /** Live addresses registered under `hostname` (any case), in storage order. */
  lookup(hostname: string): IPv4[] {
    if (!this.byName) {
      const m = new Map<string, Slot[]>();
      for (const s of this.inOrder()) {
        const l = m.get(s.lower);
        if (l) l.push(s);
        else m.set(s.lower, [s]);
      }
      this.byName = m;
    }
    const found = this.byName.get(lowerName(hostname));
    if (!found) return [];
    const out: IPv4[] = [];
    for (const s of found) if (s.tombstone === 0) out.push(s.addr);
    return out;
  }

  /** Every name with live entries (lower case) and its `lookup` answer. */
  liveNames(): Map<string, IPv4[]> {
    const m = new Map<string, IPv4[]>();
    for (const s of this.inOrder()) {
      if (s.tombstone !== 0) continue;
      const l = m.get(s.lower);
      if (l) l.push(s.addr);
      else m.set(s.lower, [s.addr]);
    }
    return m;
  }

  /** The hostname of the first live entry (storage order) holding `addr`. */
  reverseLookup(addr: IPv4): string | undefined {
    if (!this.byAddr) {
      const m = new Map<IPv4, Slot[]>();
      for (const s of this.inOrder()) {
        const l = m.get(s.addr);
        if (l) l.push(s);
        else m.set(s.addr, [s]);
      }
      this.byAddr = m;
    }
    for (const s of this.byAddr.get(addr) ?? []) if (s.tombstone === 0) return s.hostname;
    return undefined;
  }
}

/** Sorts a copy of `entries` in the original's gossip (case-sensitive) order. */
export function sortForGossip(entries: readonly Entry[]): Entry[] {
  return [...entries].sort(compareCaseSensitive);
}
