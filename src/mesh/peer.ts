// One peer of the topology (mesh `peer.go`, `local_peer.go`): its summary (name, nickname,
// incarnation UID, version, fastdp ShortID) and the connections it reports. A remote peer is
// only what gossip told us; our own peer is changed through the local operations here, each of
// which bumps the version so that our newer entry wins wherever it is merged.
//
// Also the breadth-first route search every table is built from (`routes`): deterministic, so
// that peers computing over the same topology agree on next hops (no loops, no lost frames).
//
// Invariants: `version` and `uid` stay in uint64 (they are uint64 on the wire); a placeholder
// (a peer only known as someone's connection target) has uid 0, version 0 and no ShortID.
import { UNKNOWN_PEER_NAME, formatPeerName, type PeerName } from '../core/peer-name.js';

/** mesh `peerShortIDBits`: fastdp packs the ShortID in 12 bits, so a mesh holds at most 4096. */
export const PEER_SHORT_ID_BITS = 12;
export const PEER_SHORT_ID_COUNT = 1 << PEER_SHORT_ID_BITS;

const UINT64 = 64;

/**
 * What a topology update says about a peer (gob `peerSummary`). `uid` and `version` are bigint:
 * both are uint64 on the wire, a UID is random over all 64 bits, and a version can be pushed
 * past 2^53 by an update about an old incarnation of ourselves.
 */
export interface PeerSummary {
  readonly name: PeerName;
  readonly nickName: string;
  readonly uid: bigint;
  readonly version: bigint;
  /** 12-bit fastdp id; uint16 on the wire. Meaningful only when `hasShortId`. */
  readonly shortId: number;
  readonly hasShortId: boolean;
}

/** One connection a peer reports (gob `connectionSummary`). */
export interface ConnectionSummary {
  readonly remoteName: PeerName;
  /** host:port of the remote end as seen by the reporting peer. */
  readonly remoteTcpAddr: string;
  readonly outbound: boolean;
  /** The overlay has proven the path (heartbeat acknowledged); only these carry data. */
  readonly established: boolean;
}

/** One peer's part of a topology update: its summary and its whole connection list. */
export interface TopologyEntry {
  readonly peer: PeerSummary;
  readonly connections: readonly ConnectionSummary[];
}

/**
 * One entry's two value bodies as topology-update.ts writes them: what follows the type id in
 * the `peerSummary` value message and in the `[]connectionSummary` one. They do not depend on
 * where in a stream the entry goes. Held as latin1 strings (one char per byte): tables keep one
 * per peer, and strings cost the garbage collector far less than as many small Buffers (each
 * pinning a pool slab).
 */
export interface EncodedTopologyEntry {
  readonly summary: string;
  readonly connections: string;
}

/** How the route search finds the peer object behind a connection's remote name. */
export interface PeerLookup {
  get(name: PeerName): Peer | undefined;
}

/** Reached set of a route search: destination → first hop (the start maps to UNKNOWN_PEER_NAME). */
export type NextHops = Map<PeerName, PeerName>;

export interface RoutesResult {
  /** True when the search reached `stopAt` (and stopped there). */
  readonly found: boolean;
  readonly routes: NextHops;
}

/** The list with `c` in place of the connection to the same remote, or added at the end. */
function withConnection(list: ConnectionList, c: ConnectionSummary): ConnectionList {
  const items = list.items;
  const i = list.indexOf(c.remoteName);
  if (i >= 0) items[i] = c;
  else items.push(c);
  return new ConnectionList(items);
}

function hasRepeats(connections: readonly ConnectionSummary[]): boolean {
  const n = connections.length;
  if (n > 8) return new Set(connections.map((c) => c.remoteName)).size !== n;
  for (let i = 1; i < n; i++) {
    const name = (connections[i] as ConnectionSummary).remoteName;
    for (let j = 0; j < i; j++) if ((connections[j] as ConnectionSummary).remoteName === name) return true;
  }
  return false;
}

/** One connection per remote: the last one given, at the place of the first (a Map's set order). */
function dedupe(connections: readonly ConnectionSummary[]): ConnectionSummary[] {
  const out: ConnectionSummary[] = [];
  const at = new Map<PeerName, number>();
  for (const c of connections) {
    const i = at.get(c.remoteName);
    if (i === undefined) {
      at.set(c.remoteName, out.length);
      out.push(c);
    } else out[i] = c;
  }
  return out;
}

function byName(a: Peer, b: Peer): number {
  return a.name - b.name;
}

// A connection's name and flags in one number: name · 4 + outbound · 2 + established. Names
// are 48 bits, so this stays an exact integer in a double.
const OUTBOUND = 2;
const ESTABLISHED = 1;
/** Separates the addresses in ConnectionList's one string (never part of a host:port). */
const ADDRESS_SEPARATOR = '\n';

/**
 * A peer's connections by remote name: a ReadonlyMap that is replaced, never changed, when the
 * connections change. A router holds one for every peer it knows, so it keeps no object per
 * connection: each is a number (name and flags) in one array, and the addresses are one string,
 * both read by position in hot loops (`nameAt`, `establishedAt`, `indexOf`); summaries are made
 * when asked for. Lookups scan, which for a peer's handful of connections is as fast as hashing.
 * Order: as a Map's (first insertion), which the original's map iteration would not even
 * guarantee.
 */
export class ConnectionList implements ReadonlyMap<PeerName, ConnectionSummary> {
  private readonly codes: number[];
  /** The addresses in one string, or as an array if one of them holds the separator. */
  private readonly addrs: string | readonly string[];

  constructor(items: readonly ConnectionSummary[] = []) {
    const codes = new Array<number>(items.length);
    const addrs = new Array<string>(items.length);
    for (let i = 0; i < items.length; i++) {
      const c = items[i] as ConnectionSummary;
      codes[i] = c.remoteName * 4 + (c.outbound ? OUTBOUND : 0) + (c.established ? ESTABLISHED : 0);
      addrs[i] = c.remoteTcpAddr;
    }
    this.codes = codes;
    // One flat string (join makes it so; a concatenation would be a tree of pieces).
    this.addrs = addrs.some((a) => a.includes(ADDRESS_SEPARATOR)) ? addrs : addrs.join(ADDRESS_SEPARATOR);
  }

  outboundAt(i: number): boolean {
    return ((this.codes[i] as number) & OUTBOUND) !== 0;
  }

  /** The address of connection i. */
  addressAt(i: number): string {
    const addrs = this.addrs;
    if (typeof addrs !== 'string') return addrs[i] as string;
    let start = 0;
    for (let j = 0; j < i; j++) start = addrs.indexOf(ADDRESS_SEPARATOR, start) + 1;
    const end = addrs.indexOf(ADDRESS_SEPARATOR, start);
    return addrs.slice(start, end < 0 ? undefined : end);
  }

  get size(): number {
    return this.codes.length;
  }

  /** The remote of connection i (0 ≤ i < size). */
  nameAt(i: number): PeerName {
    return Math.floor((this.codes[i] as number) / 4);
  }

  establishedAt(i: number): boolean {
    return ((this.codes[i] as number) & ESTABLISHED) !== 0;
  }

  /** Position of the connection to `name`, or -1. */
  indexOf(name: PeerName): number {
    const keys = this.codes;
    for (let i = 0; i < keys.length; i++) if (Math.floor((keys[i] as number) / 4) === name) return i;
    return -1;
  }

  /** Whether the connection to `name` is reported established; undefined when there is none. */
  establishedTo(name: PeerName): boolean | undefined {
    const i = this.indexOf(name);
    return i < 0 ? undefined : this.establishedAt(i);
  }

  /** Connection i as a summary (a new object). */
  at(i: number): ConnectionSummary {
    const k = this.codes[i] as number;
    return {
      remoteName: Math.floor(k / 4),
      remoteTcpAddr: this.addressAt(i),
      outbound: (k & OUTBOUND) !== 0,
      established: (k & ESTABLISHED) !== 0,
    };
  }

  /** All connections as summaries, in order (a new array of new objects). */
  get items(): ConnectionSummary[] {
    const addrs = typeof this.addrs !== 'string' ? this.addrs : this.codes.length > 0 ? this.addrs.split(ADDRESS_SEPARATOR) : [];
    return this.codes.map((k, i) => ({
      remoteName: Math.floor(k / 4),
      remoteTcpAddr: addrs[i] as string,
      outbound: (k & OUTBOUND) !== 0,
      established: (k & ESTABLISHED) !== 0,
    }));
  }

  get(name: PeerName): ConnectionSummary | undefined {
    const i = this.indexOf(name);
    return i < 0 ? undefined : this.at(i);
  }

  has(name: PeerName): boolean {
    return this.indexOf(name) >= 0;
  }

  forEach(cb: (value: ConnectionSummary, key: PeerName, map: ReadonlyMap<PeerName, ConnectionSummary>) => void, thisArg?: unknown): void {
    for (const c of this.items) cb.call(thisArg, c, c.remoteName, this);
  }

  *keys(): MapIterator<PeerName> {
    for (let i = 0; i < this.codes.length; i++) yield this.nameAt(i);
  }

  *values(): MapIterator<ConnectionSummary> {
    yield* this.items;
  }

  *entries(): MapIterator<[PeerName, ConnectionSummary]> {
    for (const c of this.items) yield [c.remoteName, c];
  }

  [Symbol.iterator](): MapIterator<[PeerName, ConnectionSummary]> {
    return this.entries();
  }
}

export class Peer {
  readonly name: PeerName;
  private nick: string;
  private uidValue: bigint;
  private versionValue: bigint;
  private shortIdValue: number;
  private hasShortIdValue: boolean;
  private conns = new ConnectionList();
  private connsGenValue = 0;
  private stampValue = 0;
  private encodedStamp = -1;
  private encodedValue: EncodedTopologyEntry | undefined;
  /**
   * The table's bookkeeping (Peers): its count of removals when every peer this one reports a
   * connection to was last seen in it.
   */
  targetsPresentAt = -1;
  /** The table's bookkeeping (Peers): the search generation that last reached this peer... */
  reachMark = 0;
  /** ...and the peer whose reported connection it was reached over (-1: none, ourselves). */
  reachParent = -1;

  private constructor(summary: PeerSummary, connections: readonly ConnectionSummary[]) {
    this.name = summary.name;
    this.nick = summary.nickName;
    this.uidValue = summary.uid;
    this.versionValue = summary.version;
    this.shortIdValue = summary.shortId;
    this.hasShortIdValue = summary.hasShortId;
    this.setConnections(connections);
  }

  /** Our own peer at start: version 0, a ShortID (mesh `newLocalPeer`; randomness is the caller's). */
  static local(opts: { name: PeerName; nickName: string; uid: bigint; shortId: number }): Peer {
    return new Peer({ ...opts, version: 0n, hasShortId: true }, []);
  }

  /** A peer known from a summary, e.g. a connection's remote from the handshake (version 0). */
  static fromSummary(summary: PeerSummary, connections: readonly ConnectionSummary[] = []): Peer {
    return new Peer(summary, connections);
  }

  /** A peer only known as the target of someone's connection (mesh `newPeerPlaceholder`). */
  static placeholder(name: PeerName): Peer {
    return new Peer({ name, nickName: '', uid: 0n, version: 0n, shortId: 0, hasShortId: false }, []);
  }

  get nickName(): string {
    return this.nick;
  }
  get uid(): bigint {
    return this.uidValue;
  }
  get version(): bigint {
    return this.versionValue;
  }
  get shortId(): number {
    return this.shortIdValue;
  }
  get hasShortId(): boolean {
    return this.hasShortIdValue;
  }
  get connections(): ReadonlyMap<PeerName, ConnectionSummary> {
    return this.conns;
  }

  /** The connections as summaries, in order (made anew: hot loops read `connections` by position). */
  get connectionItems(): readonly ConnectionSummary[] {
    return this.conns.items;
  }

  /** The connections, typed for reading by position (ConnectionList.nameAt and the like). */
  get connectionList(): ConnectionList {
    return this.conns;
  }

  /**
   * Changes whenever what the route search reads of this peer changes: which peers it reports
   * connections to, or whether one is established. (Not on version bumps alone, nor on address
   * or direction changes.) Routes use it to recompute only what a change can affect.
   */
  get connsGen(): number {
    return this.connsGenValue;
  }

  /** Changes whenever anything in this peer's entry may have changed (caches of it key on this). */
  get stamp(): number {
    return this.stampValue;
  }

  summary(): PeerSummary {
    return {
      name: this.name,
      nickName: this.nick,
      uid: this.uidValue,
      version: this.versionValue,
      shortId: this.shortIdValue,
      hasShortId: this.hasShortIdValue,
    };
  }

  /** This peer as an update entry; connections in name order so equal states encode equally. */
  toEntry(): TopologyEntry {
    const connections = [...this.conns.items].sort((a, b) => a.remoteName - b.remoteName);
    return { peer: this.summary(), connections };
  }

  /** This entry's encoding as last kept (Peers.encodedPeers), while the peer has not changed since. */
  get encoded(): EncodedTopologyEntry | undefined {
    return this.encodedStamp === this.stampValue ? this.encodedValue : undefined;
  }

  /** Keeps the encoding of this entry as it is now (topology-update.ts writes it). */
  keepEncoded(e: EncodedTopologyEntry): void {
    this.encodedStamp = this.stampValue;
    this.encodedValue = e;
  }

  /** `name(nickname)`, as the original prints a peer in logs and status. */
  toString(): string {
    return `${formatPeerName(this.name)}(${this.nick})`;
  }

  // --- local-peer operations: only ever applied to our own peer -------------------------------

  /** Records a new (or replacing) connection; mesh `localPeer.addConnection`. */
  addConnection(conn: ConnectionSummary): void {
    const old = this.conns.get(conn.remoteName);
    if (!old || old.established !== conn.established) this.connsGenValue++;
    this.conns = withConnection(this.conns, { ...conn });
    this.bump();
  }

  /** Forgets the connection to `remote`; false (and no version change) when there was none. */
  deleteConnection(remote: PeerName): boolean {
    if (!this.conns.has(remote)) return false;
    this.conns = new ConnectionList(this.conns.items.filter((c) => c.remoteName !== remote));
    this.connsGenValue++;
    this.bump();
    return true;
  }

  /**
   * Marks the connection to `remote` established (the overlay proved the path). False when there
   * is no such connection: the original then shuts the connection down ("Cannot set unknown
   * connection active"). The version is bumped even when it already was established, as the
   * original does on every report.
   */
  establishConnection(remote: PeerName): boolean {
    const conn = this.conns.get(remote);
    if (!conn) return false;
    if (!conn.established) {
      this.conns = withConnection(this.conns, { ...conn, established: true });
      this.connsGenValue++;
    }
    this.bump();
    return true;
  }

  /** A new ShortID for ourselves (after a collision); callers keep the by-ShortID index right. */
  setShortId(shortId: number): void {
    this.stampValue++;
    this.shortIdValue = shortId;
    this.hasShortIdValue = true;
    this.bump();
  }

  /**
   * Makes our version exceed `version` (an update about an old incarnation of ourselves carried
   * it), so that our current entry supersedes the old one everywhere. True when it changed.
   */
  setVersionBeyond(version: bigint): boolean {
    if (version < this.versionValue) return false;
    this.stampValue++;
    // Go's uint64 wraps here; we do the same so the value always fits the wire field.
    this.versionValue = BigInt.asUintN(UINT64, version + 1n);
    return true;
  }

  // --- used by Peers when a newer entry about a remote peer arrives --------------------------

  /** Takes every field but the name from `entry` (the caller re-indexes the ShortID). */
  adopt(entry: TopologyEntry): void {
    const s = entry.peer;
    this.stampValue++;
    this.nick = s.nickName;
    this.uidValue = s.uid;
    this.versionValue = s.version;
    this.shortIdValue = s.shortId;
    this.hasShortIdValue = s.hasShortId;
    this.setConnections(entry.connections);
  }

  private setConnections(connections: readonly ConnectionSummary[]): void {
    // Whether what routes read changes (remotes, established flags); a list repeating a remote
    // may count as a change when it is not one, which only costs the routes a look.
    let changed = connections.length !== this.conns.size;
    for (let i = 0; i < connections.length && !changed; i++) {
      const c = connections[i] as ConnectionSummary;
      if (this.conns.establishedTo(c.remoteName) !== c.established) changed = true;
    }
    // A repeated remote keeps the last entry, as the original's map assignment does (at the
    // place of the first). The summaries are kept as given: nothing changes one in place.
    this.conns = new ConnectionList(hasRepeats(connections) ? dedupe(connections) : connections.slice());
    if (changed) this.connsGenValue++;
  }

  private bump(): void {
    this.stampValue++;
    this.versionValue = BigInt.asUintN(UINT64, this.versionValue + 1n);
  }

  // --- route search ------------------------------------------------------------------------

  /**
   * Calls `f` for each peer this peer is connected to, skipping names in `exclude`. With
   * `establishedAndSymmetric`, only over connections that are established and whose reverse
   * connection the remote reports, established too (mesh `forEachConnectedPeer`). Remotes
   * missing from `peers` are skipped (nothing can be reached through them). The order is that of
   * the connection map: callers that expose it sort (the route search sorts each level).
   */
  forEachConnectedPeer(
    establishedAndSymmetric: boolean,
    exclude: ReadonlyMap<PeerName, unknown> | ReadonlySet<PeerName>,
    peers: PeerLookup,
    f: (remote: Peer) => void,
  ): void {
    const conns = this.conns;
    for (let i = 0; i < conns.size; i++) {
      const remoteName = conns.nameAt(i);
      if (establishedAndSymmetric && !conns.establishedAt(i)) continue;
      if (exclude.has(remoteName)) continue;
      const remote = peers.get(remoteName);
      if (!remote) continue;
      if (establishedAndSymmetric && remote.conns.establishedTo(this.name) !== true) continue;
      f(remote);
    }
  }

  /**
   * Breadth-first search from this peer (mesh `Peer.routes`): each level is visited in name
   * order and a peer is reached through the first peer of the previous level that connects to
   * it, so the result depends only on the topology, never on iteration order. Returns, for every
   * reached peer, the first hop from this peer towards it (this peer itself → UNKNOWN_PEER_NAME).
   * With `stopAt`, the search stops when it is about to expand `stopAt` and reports `found`; the
   * routes then hold exactly what was reached before, which is what broadcast routing needs.
   */
  routes(stopAt: PeerName | undefined, establishedAndSymmetric: boolean, peers: PeerLookup): RoutesResult {
    const routes: NextHops = new Map([[this.name, UNKNOWN_PEER_NAME]]);
    let level: Peer[] = [this];
    while (level.length > 0) {
      level.sort(byName);
      const next: Peer[] = [];
      for (const cur of level) {
        if (cur.name === stopAt) return { found: true, routes };
        // Peers first reached from `cur` are reached the way `cur` is, or directly from the start.
        const via = cur === this ? undefined : routes.get(cur.name);
        // The same test as forEachConnectedPeer, inlined: this loop is the hot path of routing.
        const conns = cur.conns;
        for (let i = 0; i < conns.size; i++) {
          const remoteName = conns.nameAt(i);
          if (establishedAndSymmetric && !conns.establishedAt(i)) continue;
          if (routes.has(remoteName)) continue;
          const remote = peers.get(remoteName);
          if (!remote) continue;
          if (establishedAndSymmetric && remote.conns.establishedTo(cur.name) !== true) continue;
          routes.set(remoteName, via ?? remoteName);
          next.push(remote);
        }
      }
      level = next;
    }
    return { found: false, routes };
  }
}
