// The topology table (mesh `peers.go`): our own peer plus every remote peer gossip told us
// about, by name and by fastdp ShortID. Owns the merge rules of topology gossip and the garbage
// collection of peers we can no longer reach.
//
// Merge (applyUpdate): peers named only as connection targets enter as placeholders; an entry
// replaces ours when newer (higher version; on a tie the higher UID, then the one with a
// ShortID); entries about ourselves are never taken, but one from another incarnation of us
// makes us jump our version past it. Merging is idempotent and order-insensitive, so gossip
// can deliver anything any number of times in any order.
//
// GC is not run by applyUpdate, which only marks it pending: the owner runs garbageCollect()
// (the router after every update, as the original's applyUpdate does, and right away after
// deleting one of our connections). Peers with local references (a connection being set up or
// running) are never collected, nor is ourselves. Who we reach is kept from one collection to
// the next while connections are only added, so a collection costs what changed since the last.
//
// ShortIDs: several peers may claim one; the lowest name owns it (`getByShortId`), the others
// wait in a list. When we lose ours we pick a free one at random, now or after a GC frees one.
//
// No I/O, no timers: the router sends the updates and schedules GC. The table does keep each
// peer's encoded entry (topology-update.ts) until the peer changes, since topology gossip sends
// the same unchanged entries over and over (periodic gossip carries the whole table).
import type { Logger } from '../core/logger.js';
import { formatPeerName, type PeerName } from '../core/peer-name.js';
import { PEER_SHORT_ID_COUNT, Peer, type ConnectionList, type TopologyEntry } from './peer.js';
import { encodeTopologyEntry, type DecodedTopologyUpdate, type EncodedTopologyEntry } from './topology-update.js';

/** mesh: GC runs this long after a topology update marked it pending (coalesces bursts). */
export const GC_DELAY_MS = 1000;

/** How many peers a search for another way in to a peer that lost its own may visit (Peers.reroute). */
const REROUTE_LIMIT = 128;

/** Uniform random integer in [0, bound); injected so tests and simulations are reproducible. */
export type RandomInt = (bound: number) => number;

export interface PeersDeps {
  ourself: Peer;
  randomInt: RandomInt;
  logger?: Logger;
}

export interface ApplyUpdateResult {
  /** Every peer the update spoke about, in its order (mesh "origUpdate": what a broadcast relays onward). */
  readonly received: readonly PeerName[];
  /** Entries we took because they were new or newer (mesh "newUpdate"): the delta to re-gossip. */
  readonly improved: ReadonlySet<PeerName>;
  /** Our own entry changed (version jumped past an old incarnation, or a new ShortID): gossip it. */
  readonly ourselfModified: boolean;
  /** Anything at all changed in the table (new peers, placeholders included). */
  readonly changed: boolean;
  /** Peers whose entry in the update is older than the one we hold: the sender is behind on them. */
  readonly stale: readonly PeerName[];
}

export interface GcResult {
  readonly removed: readonly Peer[];
  /** GC freed a ShortID we had lost and we took it: gossip our own entry. */
  readonly ourselfModified: boolean;
}

/** Peers claiming one ShortID: `owner` has the lowest name; an empty slot (no owner) was used before. */
interface ShortIdSlot {
  owner: Peer | undefined;
  /** Allocated when a second peer claims the ShortID (one slot per ShortID in use, most never shared). */
  others: Peer[] | undefined;
}

interface Pending {
  removed: Peer[];
  invalidateShortIds: boolean;
  reassignLocalShortId: boolean;
  ourselfModified: boolean;
}

function newPending(): Pending {
  return { removed: [], invalidateShortIds: false, reassignLocalShortId: false, ourselfModified: false };
}

/** mesh's tie-break: higher version; then higher UID; then having a ShortID beats not having one. */
function isNewer(entry: TopologyEntry, cur: Peer): boolean {
  const s = entry.peer;
  if (s.version !== cur.version) return s.version > cur.version;
  if (s.uid !== cur.uid) return s.uid > cur.uid;
  return s.hasShortId && !cur.hasShortId;
}

/** Whether the entry we hold supersedes `entry` (isNewer the other way round). */
function isOlder(entry: TopologyEntry, cur: Peer): boolean {
  const s = entry.peer;
  if (s.version !== cur.version) return s.version < cur.version;
  if (s.uid !== cur.uid) return s.uid < cur.uid;
  return !s.hasShortId && cur.hasShortId;
}

export class Peers {
  readonly ourself: Peer;
  private readonly randomInt: RandomInt;
  private readonly logger: Logger | undefined;
  private readonly byName = new Map<PeerName, Peer>();
  private readonly byShortId = new Map<number, ShortIdSlot>();
  private readonly refCounts = new Map<PeerName, number>();
  private readonly gcCallbacks: ((removed: readonly Peer[]) => void)[] = [];
  private readonly invalidateCallbacks: (() => void)[] = [];
  private gcPendingFlag = false;
  private readonly changeSets: Set<PeerName>[] = [];
  private generationValue = 0;
  /** Who we reach, kept between collections while connections are only added (see garbageCollect). */
  private reach: Reach | undefined;
  /** The generation of the last full search (Reach.gen). */
  private reachGen = 0;
  /** Names added, removed or whose connections changed since the last collection. */
  private readonly reachChanged: Set<PeerName>;
  /** Peers removed so far (Peer.targetsPresentAt compares with it). */
  private removals = 0;

  constructor(deps: PeersDeps) {
    this.ourself = deps.ourself;
    this.randomInt = deps.randomInt;
    this.logger = deps.logger;
    this.reachChanged = this.trackChanges();
    // Ourselves holds a reference for life, so GC can never take us.
    this.fetchWithDefault(deps.ourself);
  }

  // --- callbacks ---------------------------------------------------------------------------

  /** Called after each GC that removed peers (IPAM, DNS and the MAC cache forget them). */
  onGC(cb: (removed: readonly Peer[]) => void): () => void {
    return register(this.gcCallbacks, cb);
  }

  /** Called when the ShortID → peer mapping changed (fastdp flows keyed by ShortID are stale). */
  onInvalidateShortIDs(cb: () => void): () => void {
    return register(this.invalidateCallbacks, cb);
  }

  /**
   * A set that collects the names of peers that join or leave the table, or whose connections
   * change (Peer.connsGen) through it; its owner (the routes) empties it as it catches up.
   * Local operations on our own peer bypass the table: watch `ourself.connsGen` for those.
   */
  trackChanges(): Set<PeerName> {
    const s = new Set<PeerName>();
    this.changeSets.push(s);
    return s;
  }

  private touch(name: PeerName): void {
    for (const s of this.changeSets) s.add(name);
  }

  // --- lookups -----------------------------------------------------------------------------

  get(name: PeerName): Peer | undefined {
    return this.byName.get(name);
  }

  has(name: PeerName): boolean {
    return this.byName.has(name);
  }

  /** The peer owning `shortId` (lowest name among those claiming it). */
  getByShortId(shortId: number): Peer | undefined {
    return this.byShortId.get(shortId)?.owner;
  }

  get size(): number {
    return this.byName.size;
  }

  /** Known names in ascending order. */
  names(): PeerName[] {
    return [...this.byName.keys()].sort((a, b) => a - b);
  }

  values(): IterableIterator<Peer> {
    return this.byName.values();
  }

  /** True when an update arrived since the last garbageCollect(). */
  get gcPending(): boolean {
    return this.gcPendingFlag;
  }

  // --- local references (connections in progress keep their remote from GC) -----------------

  /** The known peer of that name, else `peer` added; either way one more local reference. */
  fetchWithDefault(peer: Peer): Peer {
    const pending = newPending();
    let held = this.byName.get(peer.name);
    if (!held) {
      held = peer;
      this.byName.set(peer.name, peer);
      this.touch(peer.name);
      this.addByShortId(peer, pending);
    }
    this.refCounts.set(held.name, (this.refCounts.get(held.name) ?? 0) + 1);
    this.finish(pending);
    return held;
  }

  /** The known peer with one more local reference, or undefined. */
  fetchAndAddRef(name: PeerName): Peer | undefined {
    const peer = this.byName.get(name);
    if (peer) this.refCounts.set(name, (this.refCounts.get(name) ?? 0) + 1);
    return peer;
  }

  /** Drops one local reference; the peer becomes collectable when none is left. */
  dereference(name: PeerName): void {
    const n = (this.refCounts.get(name) ?? 0) - 1;
    if (n > 0) this.refCounts.set(name, n);
    else this.refCounts.delete(name);
  }

  // --- gossip ------------------------------------------------------------------------------

  /** Entries for every known peer, in name order (a full topology gossip). */
  encodeAll(): TopologyEntry[] {
    return this.names().map((n) => (this.byName.get(n) as Peer).toEntry());
  }

  /** Entries for the named peers we still know, in the order given, each once. */
  encodePeers(names: Iterable<PeerName>): TopologyEntry[] {
    const out: TopologyEntry[] = [];
    const seen = new Set<PeerName>();
    for (const n of names) {
      if (seen.has(n)) continue;
      seen.add(n);
      const peer = this.byName.get(n);
      if (peer) out.push(peer.toEntry());
    }
    return out;
  }

  /**
   * The named peers we still know, in the order given, each once, as encoded update entries:
   * encodePeers through encodeTopologyEntry, each entry kept until its peer changes.
   */
  encodedPeers(names: Iterable<PeerName>): EncodedTopologyEntry[] {
    const out: EncodedTopologyEntry[] = [];
    const seen = new Set<PeerName>();
    for (const n of names) {
      if (seen.has(n)) continue;
      seen.add(n);
      const peer = this.byName.get(n);
      if (!peer) continue;
      let e = peer.encoded;
      if (!e) {
        e = encodeTopologyEntry(peer.toEntry());
        peer.keepEncoded(e);
      }
      out.push(e);
    }
    return out;
  }

  /**
   * Merges a received update (see the module header for the rules). `encoded`, when given,
   * holds entries' canonical bodies as received (decodeTopologyUpdateEncoded): kept for the
   * peers that take them, so that passing them on costs no encoding.
   */
  applyUpdate(update: readonly TopologyEntry[], encoded?: (i: number) => EncodedTopologyEntry | undefined): ApplyUpdateResult {
    return this.apply(update.map((e) => e.peer.name), update, encoded);
  }

  /**
   * Merges a decoded update (decodeTopologyUpdateEncoded): as applyUpdate, where an entry left
   * out (undefined) was found byte for byte the one we hold for that name, so taking it changes
   * nothing but what placeholders its connections call for, which are our peer's own.
   */
  applyDecoded(d: DecodedTopologyUpdate): ApplyUpdateResult {
    return this.apply(d.names, d.entries, d.encoded);
  }

  private apply(names: readonly PeerName[], update: readonly (TopologyEntry | undefined)[], encoded?: (i: number) => EncodedTopologyEntry | undefined): ApplyUpdateResult {
    const pending = newPending();
    const improved = new Set<PeerName>();

    // Peers first met in this update, created from their own entry; the first entry wins the
    // creation, later entries about the same peer merge like any other.
    let created: Map<PeerName, Peer> | undefined;
    for (let i = 0; i < update.length; i++) {
      const entry = update[i];
      const name = names[i] as PeerName;
      if (entry && !this.byName.has(name) && !created?.has(name)) (created ??= new Map()).set(name, Peer.fromSummary(entry.peer));
    }
    for (let i = 0; i < update.length; i++) {
      const entry = update[i];
      if (entry) {
        for (const c of entry.connections) {
          if (!this.byName.has(c.remoteName) && !created?.has(c.remoteName)) (created ??= new Map()).set(c.remoteName, Peer.placeholder(c.remoteName));
        }
        continue;
      }
      // The entry we hold: its connections, in the order it was sent in (name order), if any is
      // missing. Only peers leave the table, so once all were there they stay until a collection
      // removes someone (the periodic gossip repeats every entry, and this check was most of it).
      const held = this.byName.get(names[i] as PeerName) as Peer;
      if (held.targetsPresentAt === this.removals) continue;
      let missing = false;
      const conns = held.connectionList;
      for (let k = 0; k < conns.size; k++) {
        const n = conns.nameAt(k);
        if (!this.byName.has(n) && !created?.has(n)) missing = true;
      }
      if (!missing) {
        held.targetsPresentAt = this.removals;
        continue;
      }
      for (const c of held.toEntry().connections) {
        if (!this.byName.has(c.remoteName) && !created?.has(c.remoteName)) (created ??= new Map()).set(c.remoteName, Peer.placeholder(c.remoteName));
      }
    }
    for (const peer of created?.values() ?? []) {
      this.byName.set(peer.name, peer);
      this.touch(peer.name);
      this.addByShortId(peer, pending);
    }

    let newToUs: Set<PeerName> | undefined;
    let connsBefore: Map<PeerName, ConnectionList> | undefined;
    let stale: PeerName[] | undefined;
    for (let i = 0; i < update.length; i++) {
      const entry = update[i];
      if (!entry) continue; // what we hold already: not newer, not new, not another us
      const name = entry.peer.name;
      const peer = this.byName.get(name) as Peer;
      if (peer === this.ourself) {
        // Only we speak for ourselves; an entry from another incarnation (another UID) may carry
        // a version at or above ours, and ours must supersede it wherever both meet.
        if (entry.peer.uid !== peer.uid && peer.setVersionBeyond(entry.peer.version)) pending.ourselfModified = true;
        else if (isOlder(entry, peer)) (stale ??= []).push(name);
        continue;
      }
      if (created?.get(name) === peer && !newToUs?.has(name)) {
        // Created from this update: its first entry is taken whatever it says.
        peer.adopt(entry);
        const e = encoded?.(i);
        if (e) peer.keepEncoded(e);
        improved.add(name);
        (newToUs ??= new Set()).add(name);
        continue;
      }
      if (!isNewer(entry, peer)) {
        if (isOlder(entry, peer)) (stale ??= []).push(name);
        continue;
      }
      const shortIdChanged = entry.peer.shortId !== peer.shortId || entry.peer.hasShortId !== peer.hasShortId;
      if (shortIdChanged) this.deleteByShortId(peer, pending);
      if (!newToUs?.has(name) && !connsBefore?.has(name)) (connsBefore ??= new Map()).set(name, peer.connectionList);
      const gen = peer.connsGen;
      peer.adopt(entry);
      const e = encoded?.(i);
      if (e) peer.keepEncoded(e);
      if (peer.connsGen !== gen) this.touch(name);
      if (shortIdChanged) this.addByShortId(peer, pending);
      improved.add(name);
    }
    // A lost connection that the last search reached someone over may strand anyone: the next
    // collection searches the whole table. Any other leaves every path of that search intact.
    for (const [name, before] of connsBefore ?? []) {
      if (!this.reach) break;
      if (this.lostTreeEdge(before, this.byName.get(name) as Peer)) this.reach = undefined;
    }

    const createdAny = created !== undefined && created.size > 0;
    if (createdAny || improved.size > 0) this.gcPendingFlag = true;
    const ourselfModified = this.finish(pending);
    return {
      // The names as decoded, not a set: an object literal with a getter (as this was) cost a
      // fifth of merging an update, and nobody but tests asks.
      received: names,
      improved,
      ourselfModified,
      changed: createdAny || improved.size > 0 || ourselfModified,
      stale: stale ?? [],
    };
  }

  /**
   * Removes every peer we cannot reach over connections (any, established or not, in either
   * direction as reported) and that holds no local reference; fires onGC with them.
   */
  garbageCollect(): GcResult {
    const pending = newPending();
    this.gcPendingFlag = false;
    const reach = this.updateReach();
    for (const name of reach.unreached) {
      if (this.refCounts.has(name)) continue;
      const peer = this.byName.get(name) as Peer;
      this.removals++;
      reach.unreached.delete(name);
      this.byName.delete(name);
      this.touch(name);
      this.deleteByShortId(peer, pending);
      pending.removed.push(peer);
    }
    // What the collection itself removed was not reached: nothing there to catch up on.
    for (const p of pending.removed) this.reachChanged.delete(p.name);
    pending.removed.sort((a, b) => a.name - b.name);
    // We may have lost our ShortID earlier with none free to take; GC may have freed one.
    if (pending.removed.length > 0 && this.getByShortId(this.ourself.shortId) !== this.ourself) {
      pending.reassignLocalShortId = true;
    }
    const removed = pending.removed;
    const ourselfModified = this.finish(pending);
    return { removed, ourselfModified };
  }

  /**
   * Who we reach over any reported connection (Peer.routes' reach, without its routes), and who
   * we do not. A search of the whole table after every update is what made big meshes slow (a
   * router learning of n peers one broadcast at a time searched n times), so the answer is
   * kept and carried forward while connections are only added, which cannot strand anyone: the
   * peers reached from those that changed are added to it. Any lost connection (in an update,
   * or one of ours) makes the next collection search the whole table again. Names that reached
   * peers report but that are not in the table (`dangling`) count as reached once they join it.
   */
  private updateReach(): Reach {
    let reach = this.reach;
    const ourItems = this.ourself.connectionList;
    if (reach && reach.ourItems !== ourItems && this.lostTreeEdge(reach.ourItems, this.ourself)) reach = undefined;
    const changed = this.reachChanged;
    if (!reach) {
      // A new generation: every mark from before means nothing now.
      reach = { gen: ++this.reachGen, unreached: new Set(), dangling: new Map(), ourItems };
      this.ourself.reachMark = reach.gen;
      this.ourself.reachParent = -1;
      this.spread(reach, [this.ourself]);
      for (const p of this.byName.values()) if (p.reachMark !== reach.gen) reach.unreached.add(p.name);
      changed.clear();
      this.reach = reach;
      return reach;
    }
    const frontier: Peer[] = [];
    if (reach.ourItems !== ourItems) frontier.push(this.ourself);
    reach.ourItems = ourItems;
    for (const name of changed) {
      const p = this.byName.get(name);
      if (!p) {
        reach.unreached.delete(name);
        continue;
      }
      const referrer = reach.dangling.get(name);
      if (p.reachMark === reach.gen) frontier.push(p);
      else if (referrer !== undefined) {
        reach.dangling.delete(name);
        p.reachMark = reach.gen;
        p.reachParent = referrer;
        frontier.push(p);
      } else reach.unreached.add(name);
    }
    changed.clear();
    for (const p of frontier) reach.unreached.delete(p.name);
    this.spread(reach, frontier);
    return reach;
  }

  /**
   * Whether `peer` lost a connection (since `before`) that the last search reached someone over
   * and that no other path replaces; a name it reported that may join the table later counts too.
   * A peer reached over the lost connection keeps its place if reroute finds it another way in:
   * the search then stands with that way as its chain of parents.
   */
  private lostTreeEdge(before: ConnectionList, peer: Peer): boolean {
    const reach = this.reach;
    if (!reach) return false;
    const now = peer.connectionList;
    for (let i = 0; i < before.size; i++) {
      const n = before.nameAt(i);
      if (now.indexOf(n) >= 0) continue;
      // A name still dangling may be in the table by now (it joins the search at the next one).
      if (reach.dangling.get(n) === peer.name) return true;
      const x = this.byName.get(n);
      if (x && x.reachMark === reach.gen && x.reachParent === peer.name && !this.reroute(reach, x)) return true;
    }
    return false;
  }

  /**
   * Finds `x`, which lost the connection it was reached over, another way in: breadth first from
   * `x`, along connections reported at both ends between reached peers, the nearest peer not
   * below `x` in the search's tree (its chain of parents does not pass `x`). The peers on the way
   * there then take each other as parents, reversed, the last one that peer; everyone else keeps
   * theirs, and every chain still ends at ourselves. A big mesh needs this beyond `x`'s own
   * neighbours: when a router with many links stops, the neighbours whose updates come last are
   * often below it, and stopping at them cost a search of the whole table per router (half of
   * that change's work at 1000 routers). Gives up after REROUTE_LIMIT peers.
   */
  private reroute(reach: Reach, x: Peer): boolean {
    // Each visited peer → the peer it was found from (the one that takes it as parent), -1 for x.
    const from = new Map<PeerName, PeerName>([[x.name, -1]]);
    const queue: Peer[] = [x];
    for (let head = 0; head < queue.length && head < REROUTE_LIMIT; head++) {
      const cur = queue[head] as Peer;
      const conns = cur.connectionList;
      for (let i = 0; i < conns.size; i++) {
        const y = this.byName.get(conns.nameAt(i));
        if (!y || from.has(y.name) || y.reachMark !== reach.gen || y.connectionList.indexOf(cur.name) < 0) continue;
        from.set(y.name, cur.name);
        if (this.isBelow(y, x)) {
          queue.push(y);
          continue;
        }
        for (let child = cur, parent = y; ; ) {
          child.reachParent = parent.name;
          const next = from.get(child.name) as PeerName;
          if (next === -1) return true;
          parent = child;
          child = this.byName.get(next) as Peer;
        }
      }
    }
    return false;
  }

  /** Whether `y`'s chain of parents passes `x` (or, which never holds, fails to end at ourselves: the bound guards the loop). */
  private isBelow(y: Peer, x: Peer): boolean {
    let above: Peer | undefined = y;
    let steps = this.byName.size;
    while (above && above !== x && above !== this.ourself && steps-- > 0) above = this.byName.get(above.reachParent);
    return above !== this.ourself;
  }

  /**
   * Marks everything reachable from `from` (all reached already) as reached, breadth first: a
   * shallow tree keeps reroute's walks up chains of parents short, and puts fewer of a peer's
   * neighbours below it.
   */
  private spread(reach: Reach, from: Peer[]): void {
    const queue = from;
    for (let head = 0; head < queue.length; head++) {
      const p = queue[head] as Peer;
      const conns = p.connectionList;
      for (let i = 0; i < conns.size; i++) {
        const n = conns.nameAt(i);
        const q = this.byName.get(n);
        if (!q) {
          if (!reach.dangling.has(n)) reach.dangling.set(n, p.name);
          continue;
        }
        if (q.reachMark === reach.gen) continue;
        q.reachMark = reach.gen;
        q.reachParent = p.name;
        // A full search fills `unreached` after it; an incremental one takes back what it reaches.
        if (reach.unreached.size) reach.unreached.delete(n);
        queue.push(q);
      }
    }
  }

  /** Gives ourselves `shortId` (bumping our version) and re-indexes; used on collisions and by tests. */
  setLocalShortId(shortId: number): void {
    const pending = newPending();
    this.setLocalShortIdInner(shortId, pending);
    this.finish(pending);
  }

  // --- ShortID index -----------------------------------------------------------------------

  private addByShortId(peer: Peer, pending: Pending): void {
    if (!peer.hasShortId) return;
    const slot = this.byShortId.get(peer.shortId);
    if (!slot) {
      this.byShortId.set(peer.shortId, { owner: peer, others: undefined });
    } else if (!slot.owner) {
      // A ShortID used before and freed: whoever cached the old owner must drop it.
      slot.owner = peer;
      pending.invalidateShortIds = true;
    } else if (peer.name < slot.owner.name) {
      // Collision, and the newcomer has the lower name: it takes the ShortID over.
      if (slot.owner === this.ourself) pending.reassignLocalShortId = true;
      (slot.others ??= []).push(slot.owner);
      slot.owner = peer;
      pending.invalidateShortIds = true;
    } else {
      (slot.others ??= []).push(peer);
    }
  }

  private deleteByShortId(peer: Peer, pending: Pending): void {
    if (!peer.hasShortId) return;
    const slot = this.byShortId.get(peer.shortId);
    if (!slot) return;
    if (slot.owner !== peer) {
      const i = slot.others?.indexOf(peer) ?? -1;
      if (i >= 0) slot.others?.splice(i, 1);
      return;
    }
    const others = slot.others;
    if (!others || others.length === 0) {
      // Keep the emptied slot, so that its reuse is seen as an invalidation.
      slot.owner = undefined;
      return;
    }
    let min = 0;
    for (let i = 1; i < others.length; i++) {
      if ((others[i] as Peer).name < (others[min] as Peer).name) min = i;
    }
    slot.owner = others[min];
    others.splice(min, 1);
    pending.invalidateShortIds = true;
  }

  private setLocalShortIdInner(shortId: number, pending: Pending): void {
    this.deleteByShortId(this.ourself, pending);
    this.ourself.setShortId(shortId);
    this.addByShortId(this.ourself, pending);
    pending.ourselfModified = true;
  }

  /** A free ShortID at random (mesh `chooseShortID`): ten blind tries, then the n-th free one. */
  private chooseShortId(): number | undefined {
    for (let i = 0; i < 10; i++) {
      const id = this.randomInt(PEER_SHORT_ID_COUNT);
      if (!this.byShortId.get(id)?.owner) return id;
    }
    let free = PEER_SHORT_ID_COUNT;
    for (const slot of this.byShortId.values()) if (slot.owner) free--;
    if (free <= 0) return undefined;
    let n = this.randomInt(free);
    for (let id = 0; id < PEER_SHORT_ID_COUNT; id++) {
      if (this.byShortId.get(id)?.owner) continue;
      if (n === 0) return id;
      n--;
    }
    return undefined;
  }

  /**
   * Changes with every operation that may have changed the table (merges, collections, local
   * references, our ShortID); local operations on our own peer show in `ourself.stamp` instead.
   * Whatever is derived from the whole table can be kept while both stay the same.
   */
  get generation(): number {
    return this.generationValue;
  }

  /** Runs what a change left to do, in the original's order; true when our own entry changed. */
  private finish(pending: Pending): boolean {
    this.generationValue++;
    if (pending.reassignLocalShortId) {
      const id = this.chooseShortId();
      if (id !== undefined) {
        this.logger?.debug({ peer: formatPeerName(this.ourself.name), shortId: id }, 'ShortID collision: took a new ShortID');
        this.setLocalShortIdInner(id, pending);
      }
      // else: every ShortID is taken; a later GC retries.
    }
    if (pending.removed.length > 0) {
      for (const p of pending.removed) this.logger?.info({ peer: p.toString() }, 'Removed unreachable peer');
      for (const cb of [...this.gcCallbacks]) cb(pending.removed);
    }
    if (pending.invalidateShortIds) for (const cb of [...this.invalidateCallbacks]) cb();
    return pending.ourselfModified;
  }
}

/** Reachability as of the last collection (Peers.updateReach). */
interface Reach {
  /** Peers whose reachMark equals this were reached (a peer is reached once, by one search). */
  readonly gen: number;
  /** Peers in the table not reached (held by a local reference, or about to be collected). */
  readonly unreached: Set<PeerName>;
  /** Names reached peers report connections to that are not in the table, and who reports them. */
  readonly dangling: Map<PeerName, PeerName>;
  /** Our connections then (replaced, never changed in place, when they change). */
  ourItems: ConnectionList;
}

function register<T>(list: T[], cb: T): () => void {
  list.push(cb);
  return () => {
    const i = list.indexOf(cb);
    if (i >= 0) list.splice(i, 1);
  };
}
