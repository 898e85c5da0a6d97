// Routing tables of our peer (mesh `routes.go`), computed from the topology table.
//
//  - unicast:    destination → next hop, over connections that are established and symmetric
//                (both ends report them, both established). Used for data frames.
//  - unicastAll: the same over every reported connection. Used for gossip, which must flow
//                before the overlay has proven a path.
//  - broadcast(src) / broadcastAll(src): the neighbours to forward a broadcast from `src` to.
//                We search breadth-first from `src` until we reach ourselves; our neighbours not
//                reached by then are the ones whose tree parent we are, so in a stable topology
//                a broadcast reaches every peer exactly once. Computed on demand, cached per
//                source until the next recalculation.
//
// Every table is what Peer.routes (the original's breadth-first search) gives, which is
// deterministic: peers holding the same topology agree, so following next hops strictly
// shortens the distance and cannot loop.
//
// How it stays cheap as the mesh grows (every router relays a broadcast from each of n sources,
// so a search per source per router costs n² per router): the routes keep their own copy of the
// search graph (RouteGraph: peers by dense index, the connections the search may follow, in both
// modes), brought up to date from the peers that changed since it last looked (Peers tracks
// them), and answer a broadcast query from hop distances *to* a handful of peers around us
// (TargetDistances), kept up to date as connections come and go, instead of searching from the
// source. The answer is provably the search's (see TargetDistances.broadcast); the unit tests
// also compare both on random topologies (test/unit/mesh/routes-incremental.test.ts). Neither copy changes what is computed or when: a query still
// sees the topology at the time it is asked, and results are still cached until recalculate().
//
// recalculate() is synchronous; debouncing it (the original waits 100 ms, ROUTES_RECALC_DELAY_MS)
// is the owner's job, as is holding it to a clock.
import { UNKNOWN_PEER_NAME, type PeerName } from '../core/peer-name.js';
import type { Peer } from './peer.js';
import type { Peers, RandomInt } from './peers.js';

/** mesh `recalcDeferTime`: route recalculation requests are coalesced over this long. */
export const ROUTES_RECALC_DELAY_MS = 100;

export interface RoutesDeps {
  peers: Peers;
  randomInt: RandomInt;
}

/** Distance of a peer that cannot reach the target. */
const INF = 0x7fffffff;
/** The two search modes: every reported connection, or established-and-symmetric ones only. */
const ALL = 0;
const SYM = 1;
type Mode = typeof ALL | typeof SYM;

/** Adjacency by dense index, one per mode: out = connections the search follows, inn = reverse. */
interface Edges {
  out: number[][];
  inn: number[][];
}

/** What one sync changed in one mode, for the distance maps. */
interface EdgeChanges {
  /** [from, to] pairs, indices. */
  readonly inserted: number[];
  readonly deleted: number[];
}

// Adjacency lists are never changed in place: a change makes an exact-size copy. Lists stay
// small (a peer's connections), a router holds one per peer and mode, and this way they take no
// spare room, can be iterated while edges change, and the two modes can share one list when
// they hold the same peers (the usual case: every connection established and symmetric).
const NONE: number[] = [];

function withItem(list: number[], x: number): number[] {
  const n = list.length;
  const out = new Array<number>(n + 1);
  for (let i = 0; i < n; i++) out[i] = list[i] as number;
  out[n] = x;
  return out;
}

function withoutItem(list: number[], x: number): number[] {
  const i = list.indexOf(x);
  if (i < 0) return list;
  if (list.length === 1) return NONE;
  const out = list.slice();
  out.splice(i, 1);
  return out;
}

/** The answer "nobody", shared (most routers are leaves of most broadcast trees). */
const NO_HOPS: PeerName[] = Object.freeze([]) as unknown as PeerName[];

/** Names in ascending order, in place (insertion sort: these lists are a peer's few neighbours). */
function sortNames(a: PeerName[]): PeerName[] {
  for (let i = 1; i < a.length; i++) {
    const x = a[i] as PeerName;
    let j = i - 1;
    while (j >= 0 && (a[j] as PeerName) > x) {
      a[j + 1] = a[j] as PeerName;
      j--;
    }
    a[j + 1] = x;
  }
  return a;
}

function sameItems(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (const x of a) if (!b.includes(x)) return false;
  return true;
}

/**
 * The graph Peer.routes searches, kept by dense peer index: nodes are the peers in the table,
 * and u → v is an edge when u reports a connection to v, v is in the table and u ≠ v (mode ALL);
 * in mode SYM also both u's and v's reports of it say established. Brought up to date lazily
 * (`sync`) from the names Peers collected since, plus our own peer, which local operations
 * change directly; only the connections of changed peers and of those reporting them are looked
 * at. Who reports a peer is read off the ALL edges into it, and, for names not in the table
 * (yet), kept in `pending`.
 */
class RouteGraph {
  readonly index = new Map<PeerName, number>();
  /** By index: the peer's name and object (meaningless while the index is free). */
  readonly names: PeerName[] = [];
  readonly peerAt: (Peer | undefined)[] = [];
  readonly edges: [Edges, Edges] = [
    { out: [], inn: [] },
    { out: [], inn: [] },
  ];
  private readonly free: number[] = [];
  /**
   * Names not in the table → the members reporting a connection to them, and by member index
   * the names it reports that are not in the table (usually none). What a member reports of
   * peers in the table is its ALL edges.
   */
  private readonly pending = new Map<PeerName, Set<PeerName>>();
  private readonly unlisted: (PeerName[] | undefined)[] = [];
  /** Names that left the table since the last snapshot of the route tables, with the index they had. */
  readonly retired = new Map<PeerName, number>();
  private readonly changed: Set<PeerName>;
  private ourselfGen = -1;
  private started = false;
  private readonly dirty: PeerName[] = [];
  private readonly changes: [EdgeChanges, EdgeChanges] = [{ inserted: [], deleted: [] }, { inserted: [], deleted: [] }];
  /** Told about every change, in order: capacity, freed indices and edge changes per mode. */
  readonly distances: [TargetDistances, TargetDistances];

  constructor(private readonly peers: Peers) {
    this.changed = peers.trackChanges();
    this.distances = [new TargetDistances(this, ALL), new TargetDistances(this, SYM)];
  }

  get capacity(): number {
    return this.names.length;
  }

  /** Brings the graph (and the distance maps) up to date with the table. */
  sync(): void {
    const peers = this.peers;
    if (!this.started) {
      this.started = true;
      for (const p of peers.values()) this.changed.add(p.name);
    }
    const ourself = peers.ourself;
    if (ourself.connsGen !== this.ourselfGen) {
      this.ourselfGen = ourself.connsGen;
      this.changed.add(ourself.name);
    }
    if (this.changed.size === 0) return;
    const dirty = this.dirty;
    dirty.length = 0;
    for (const n of this.changed) dirty.push(n);
    this.changed.clear();
    const all = this.edges[ALL];

    // Pass 1: peers that left the table lose every edge, then their index.
    let gone: Set<number> | undefined;
    for (const name of dirty) {
      const i = this.index.get(name);
      if (i !== undefined && peers.get(name) === undefined) (gone ??= new Set()).add(i);
    }
    if (gone) {
      for (const i of gone) {
        const name = this.names[i] as PeerName;
        // Members still reporting it wait for it in `pending`; its own reports count no more.
        for (const u of all.inn[i] as number[]) {
          if (gone.has(u)) continue;
          this.addPending(name, this.names[u] as PeerName);
          this.unlisted[u] = [...(this.unlisted[u] ?? []), name];
        }
        for (const v of this.unlisted[i] ?? []) this.dropPending(v, name);
        this.unlisted[i] = undefined;
      }
      for (const mode of [ALL, SYM] as const) {
        const e = this.edges[mode];
        const ch = this.resetChanges(mode);
        for (const i of gone) {
          for (const v of e.out[i] as number[]) {
            ch.deleted.push(i, v);
            e.inn[v] = withoutItem(e.inn[v] as number[], i);
            this.distances[mode].edgeChanged(i, v);
          }
          for (const u of e.inn[i] as number[]) {
            if (gone.has(u)) continue; // listed from u's side already
            ch.deleted.push(u, i);
            e.out[u] = withoutItem(e.out[u] as number[], i);
            this.distances[mode].edgeChanged(u, i);
          }
          e.out[i] = NONE;
          e.inn[i] = NONE;
        }
        this.distances[mode].apply(ch, gone);
      }
      for (const i of gone) {
        // The first index it leaves is the one the tables know it by (if they know it).
        if (!this.retired.has(this.names[i] as PeerName)) this.retired.set(this.names[i] as PeerName, i);
        this.index.delete(this.names[i] as PeerName);
        this.peerAt[i] = undefined;
        this.free.push(i);
        this.distances[ALL].cleared(i);
        this.distances[SYM].cleared(i);
      }
    }

    // Pass 2: members new or changed: their own connections, and connections reported to them.
    let added: Set<number> | undefined;
    for (const name of dirty) {
      const peer = peers.get(name);
      if (!peer) continue;
      let i = this.index.get(name);
      if (i === undefined) (added ??= new Set()).add((i = this.allocate(name)));
      this.peerAt[i] = peer;
    }
    this.resetChanges(ALL);
    this.resetChanges(SYM);
    for (const name of dirty) {
      const peer = peers.get(name);
      if (!peer) continue;
      const i = this.index.get(name) as number;
      // Reports of names not in the table wait in `pending`; the others are edges.
      const before = this.unlisted[i];
      let after: PeerName[] | undefined;
      const reports = peer.connectionList;
      if (before) for (const v of before) if (!this.index.has(v) && !reports.has(v)) this.dropPending(v, name);
      for (let k = 0; k < reports.size; k++) {
        const v = reports.nameAt(k);
        if (this.index.has(v)) continue;
        this.addPending(v, name);
        (after ??= []).push(v);
      }
      this.unlisted[i] = after;
      // Edges out: the ones it had (an array never changed in place) and the ones it reports.
      for (const v of all.out[i] as number[]) this.evaluate(i, v);
      for (let k = 0; k < reports.size; k++) this.evaluate(i, this.index.get(reports.nameAt(k)));
      // Edges in: members that reported it while it was not in the table, or the ALL edges into
      // it (SYM edges depend on its own report of the connection back).
      if (added?.has(i)) {
        const by = this.pending.get(name);
        if (by) {
          this.pending.delete(name);
          for (const u of by) {
            const ui = this.index.get(u);
            if (ui === undefined) continue;
            const rest = (this.unlisted[ui] ?? []).filter((x) => x !== name);
            this.unlisted[ui] = rest.length > 0 ? rest : undefined;
            this.evaluate(ui, i);
          }
        }
      } else {
        for (const u of all.inn[i] as number[]) this.evaluate(u, i);
      }
    }
    for (const mode of [ALL, SYM] as const) {
      const ch = this.changes[mode];
      if (ch.inserted.length > 0 || ch.deleted.length > 0) this.distances[mode].apply(ch, undefined);
    }
  }

  private resetChanges(mode: Mode): EdgeChanges {
    const ch = this.changes[mode];
    ch.inserted.length = 0;
    ch.deleted.length = 0;
    return ch;
  }

  private addPending(name: PeerName, by: PeerName): void {
    let s = this.pending.get(name);
    if (!s) this.pending.set(name, (s = new Set()));
    s.add(by);
  }

  private dropPending(name: PeerName, by: PeerName): void {
    const s = this.pending.get(name);
    if (!s) return;
    s.delete(by);
    if (s.size === 0) this.pending.delete(name);
  }

  /** Sets the edges u → v of both modes to what the peers now say. */
  private evaluate(u: number | undefined, v: number | undefined): void {
    if (u === undefined || v === undefined) return;
    const up = this.peerAt[u] as Peer;
    const vp = this.peerAt[v] as Peer;
    const est = u === v ? undefined : up.connectionList.establishedTo(vp.name);
    const all = est !== undefined;
    const sym = est === true && vp.connectionList.establishedTo(up.name) === true;
    const a = this.setEdge(ALL, u, v, all);
    const b = this.setEdge(SYM, u, v, sym);
    if (a || b) {
      const [ea, es] = this.edges;
      if (es.out[u] !== ea.out[u] && sameItems(es.out[u] as number[], ea.out[u] as number[])) es.out[u] = ea.out[u] as number[];
      if (es.inn[v] !== ea.inn[v] && sameItems(es.inn[v] as number[], ea.inn[v] as number[])) es.inn[v] = ea.inn[v] as number[];
    }
  }

  private allocate(name: PeerName): number {
    let i = this.free.pop();
    if (i === undefined) {
      i = this.names.length;
      this.names.push(name);
      this.peerAt.push(undefined);
      this.unlisted.push(undefined);
      for (const e of this.edges) {
        e.out.push(NONE);
        e.inn.push(NONE);
      }
      this.distances[ALL].grow();
      this.distances[SYM].grow();
    } else {
      this.names[i] = name;
    }
    this.index.set(name, i);
    return i;
  }

  /** Adds or removes u → v in one mode; true when that changed anything. */
  private setEdge(mode: Mode, u: number, v: number, want: boolean): boolean {
    const e = this.edges[mode];
    const out = e.out[u] as number[];
    const has = out.includes(v);
    if (has === want) return false;
    const ch = this.changes[mode];
    if (want) {
      e.out[u] = withItem(out, v);
      e.inn[v] = withItem(e.inn[v] as number[], u);
      ch.inserted.push(u, v);
    } else {
      e.out[u] = withoutItem(out, v);
      e.inn[v] = withoutItem(e.inn[v] as number[], u);
      ch.deleted.push(u, v);
    }
    this.distances[mode].edgeChanged(u, v);
    return true;
  }

  /**
   * Peer.routes over this graph (the same result: levels in name order, each peer reached
   * through the first peer of the previous level that connects to it), as a table by index.
   * Call sync() first; `names` is namesSnapshot(), which both modes' tables share.
   */
  routesFrom(start: number, mode: Mode, names: Float64Array): RouteTable {
    const out = this.edges[mode].out;
    const cap = this.capacity;
    const via = new Float64Array(cap).fill(NaN);
    via[start] = UNKNOWN_PEER_NAME;
    // Instead of sorting each level by name: a peer takes its route from the lowest-named peer
    // of the previous level connecting to it, which is the one a search in name order meets
    // first. (Sorting every level was most of what a recalculation cost in a big mesh.)
    if (this.parent.length < cap) {
      this.parent = new Int32Array(cap);
      this.levelOf = new Int32Array(cap);
      this.queue = new Int32Array(cap);
    }
    const parent = this.parent;
    const levelOf = this.levelOf;
    // One queue for the whole search, level after level (a routing table is recalculated by
    // every router after every burst of changes, so the search allocates nothing but `via`).
    const queue = this.queue;
    queue[0] = start;
    let head = 0;
    let tail = 1;
    for (let depth = 1; head < tail; depth++) {
      const levelEnd = tail;
      for (; head < levelEnd; head++) {
        const cur = queue[head] as number;
        const hop = cur === start ? NaN : (via[cur] as number);
        const curName = names[cur] as number;
        const edges = out[cur] as number[];
        for (let k = 0; k < edges.length; k++) {
          const v = edges[k] as number;
          if (Number.isNaN(via[v] as number)) {
            via[v] = Number.isNaN(hop) ? (names[v] as number) : hop;
            parent[v] = cur;
            levelOf[v] = depth;
            queue[tail++] = v;
          } else if (levelOf[v] === depth && v !== start && curName < (names[parent[v] as number] as number)) {
            parent[v] = cur;
            via[v] = Number.isNaN(hop) ? (names[v] as number) : hop;
          }
        }
      }
    }
    return new RouteTable(this, names, via, tail);
  }

  /** The names by index as they are now, for route tables that must answer for this moment. */
  namesSnapshot(): Float64Array {
    return new Float64Array(this.names);
  }

  private queue = new Int32Array(0);
  /** routesFrom's scratch: by index, the peer a route was taken from, and at what depth. */
  private parent = new Int32Array(0);
  private levelOf = new Int32Array(0);
}

/**
 * A routing table as of one recalculation: destination → next hop (UNKNOWN_PEER_NAME for
 * ourselves), by graph index, with the names the indices stood for then, so that it answers for
 * that moment even after peers come and go (a peer collected since is found by the index it
 * had). A router holds two, each as big as its table, so arrays rather than maps.
 */
class RouteTable {
  constructor(
    private readonly graph: RouteGraph | undefined,
    private readonly names: Float64Array,
    private readonly via: Float64Array,
    /** How many destinations have a route (ourselves included). */
    readonly size: number,
  ) {}

  /** Before the first calculation: only ourselves. */
  static only(us: PeerName): RouteTable {
    return new RouteTable(undefined, Float64Array.of(us), Float64Array.of(UNKNOWN_PEER_NAME), 1);
  }

  get(dest: PeerName): PeerName | undefined {
    let i = this.graph ? this.graph.index.get(dest) : 0;
    if (this.graph && (i === undefined || this.names[i] !== dest)) i = this.graph.retired.get(dest);
    if (i === undefined || i >= this.names.length || this.names[i] !== dest) return undefined;
    const hop = this.via[i] as number;
    return Number.isNaN(hop) ? undefined : hop;
  }

  private weights: { names: PeerName[]; counts: number[] } | undefined;

  /**
   * Each next hop (in name order) with how many destinations it leads to, ourselves left out:
   * counted once per table, since every gossip send asks (a pass over the whole table each).
   */
  hopWeights(): { readonly names: readonly PeerName[]; readonly counts: readonly number[] } {
    if (this.weights) return this.weights;
    const byHop = new Map<PeerName, number>();
    for (const hop of this.via) if (!Number.isNaN(hop) && hop !== UNKNOWN_PEER_NAME) byHop.set(hop, (byHop.get(hop) ?? 0) + 1);
    const names = [...byHop.keys()].sort((a, b) => a - b);
    this.weights = { names, counts: names.map((n) => byHop.get(n) as number) };
    return this.weights;
  }
}

/**
 * Hop distances to a few target peers from every peer (d(x, t) for all x), in one mode, kept
 * exact as edges come and go: an inserted edge lowers distances by a search backwards from its
 * tail; a deleted edge that some shortest path needed, with no other edge to take its place,
 * has the map rebuilt (a search backwards from the target) when it is next used.
 */
class TargetDistances {
  private readonly maps = new Map<number, Int32Array>();
  private readonly stale = new Set<number>();
  private targetsDirty = true;
  private targetsOf: number[] = [];
  /** For each of our neighbours m (mode's out-edges of us), the peers that decide whether we forward to it. */
  private rivals = new Map<number, number[]>();
  private ourIndex = -1;

  constructor(
    private readonly graph: RouteGraph,
    private readonly mode: Mode,
  ) {}

  grow(): void {
    const cap = this.graph.capacity;
    this.maps.forEach((d, t) => {
      if (d.length >= cap) return;
      const bigger = new Int32Array(Math.max(cap, d.length * 2)).fill(INF);
      bigger.set(d);
      this.maps.set(t, bigger);
    });
  }

  /**
   * An edge u → v came or went: the targets change when it is one of ours (u is us) or leads
   * into one of our neighbours (its tail may be a rival).
   */
  edgeChanged(u: number, v: number): void {
    if (this.targetsDirty) return;
    const r = this.ourIndex;
    if (u === r || v === r || ((this.graph.edges[this.mode].out[r] as number[] | undefined)?.includes(v) ?? false)) this.targetsDirty = true;
  }

  /** Index `i` was freed: it reaches nothing, and a map towards it is of no use. */
  cleared(i: number): void {
    if (i === this.ourIndex || this.maps.has(i)) this.targetsDirty = true;
    this.maps.delete(i);
    this.stale.delete(i);
    this.maps.forEach((d) => {
      if (i < d.length) d[i] = INF;
    });
  }

  /** Applies one batch of edge changes (the graph already holds the new edges). */
  apply(ch: EdgeChanges, goneTails: ReadonlySet<number> | undefined): void {
    const { out, inn } = this.graph.edges[this.mode];
    this.maps.forEach((d, t) => {
      if (this.stale.has(t)) return;
      let stale = false;
      for (let k = 0; k < ch.deleted.length && !stale; k += 2) {
        const u = ch.deleted[k] as number;
        const v = ch.deleted[k + 1] as number;
        if (goneTails?.has(u)) continue;
        const du = d[u] as number;
        if (du === INF || du !== (d[v] as number) + 1) continue;
        // u's shortest way to t went through v: fine if another edge of u does as well.
        let alt = false;
        for (const w of out[u] as number[]) {
          if ((d[w] as number) + 1 === du) {
            alt = true;
            break;
          }
        }
        if (!alt) stale = true;
      }
      if (stale) {
        this.stale.add(t);
        return;
      }
      for (let k = 0; k < ch.inserted.length; k += 2) {
        const u = ch.inserted[k] as number;
        const dv = d[ch.inserted[k + 1] as number] as number;
        if (dv === INF || dv + 1 >= (d[u] as number)) continue;
        d[u] = dv + 1;
        // Lower the distances of everyone whose way to t is now shorter through u.
        const queue = this.scratch(d.length);
        let head = 0;
        let tail = 0;
        queue[tail++] = u;
        while (head < tail) {
          const w = queue[head++] as number;
          const dw = (d[w] as number) + 1;
          for (const p of inn[w] as number[]) {
            if (dw < (d[p] as number)) {
              d[p] = dw;
              queue[tail++] = p;
            }
          }
        }
      }
    });
  }

  private queue = new Int32Array(0);

  /** A work queue of n slots: a lowering spreads breadth-first from u, so each node enters it once. */
  private scratch(n: number): Int32Array {
    if (this.queue.length < n) this.queue = new Int32Array(Math.max(n, 2 * this.queue.length));
    return this.queue;
  }

  /** d(·, t): a search backwards from t. */
  private build(t: number): Int32Array {
    const inn = this.graph.edges[this.mode].inn;
    let d = this.maps.get(t);
    if (!d || d.length < this.graph.capacity) d = new Int32Array(this.graph.capacity);
    d.fill(INF);
    d[t] = 0;
    const queue = [t];
    for (let q = 0; q < queue.length; q++) {
      const w = queue[q] as number;
      const dw = (d[w] as number) + 1;
      for (const p of inn[w] as number[]) {
        if (d[p] === INF) {
          d[p] = dw;
          queue.push(p);
        }
      }
    }
    this.maps.set(t, d);
    this.stale.delete(t);
    return d;
  }

  private map(t: number): Int32Array {
    const d = this.maps.get(t);
    return d && !this.stale.has(t) ? d : this.build(t);
  }

  /**
   * The targets for broadcasts arriving at us (index `r`): ourselves, our neighbours m, and for
   * each m the peers p ≠ us with a lower name than ours connecting to m (the "rivals" that
   * would reach m before us in the search). Maps of peers no longer needed are dropped.
   */
  private targets(r: number): void {
    const e = this.graph.edges[this.mode];
    if (!this.targetsDirty && this.ourIndex === r) return;
    this.targetsDirty = false;
    this.ourIndex = r;
    const names = this.graph.names;
    const us = names[r] as PeerName;
    const want = new Set<number>([r]);
    this.rivals = new Map();
    for (const m of e.out[r] as number[]) {
      want.add(m);
      const rivals: number[] = [];
      for (const p of e.inn[m] as number[]) {
        if (p !== r && (names[p] as PeerName) < us) {
          rivals.push(p);
          want.add(p);
        }
      }
      this.rivals.set(m, rivals);
    }
    for (const t of this.maps.keys()) {
      if (!want.has(t)) {
        this.maps.delete(t);
        this.stale.delete(t);
      }
    }
    this.targetsOf = [...want];
  }

  /**
   * broadcast(src) at us (`r`), from distances: the search from src stops as it is about to
   * expand us, at level D = d(src, us); by then it has reached every peer at distance ≤ D and
   * those at D + 1 connected from a level-D peer named below us (levels go in name order). So
   * our neighbour m is left to us exactly when d(src, m) = D + 1 and no rival p (a peer other
   * than us, named below us, connecting to m) has d(src, p) = D. src unreachable: nobody.
   */
  broadcast(src: number, r: number): PeerName[] {
    const out = this.graph.edges[this.mode].out[r] as number[];
    const names = this.graph.names;
    if (src === r) return sortNames(out.map((m) => names[m] as PeerName));
    this.targets(r);
    const dR = this.map(r)[src] as number;
    if (dR === INF) return NO_HOPS;
    let hops: PeerName[] | undefined;
    for (const m of out) {
      if ((this.map(m)[src] as number) !== dR + 1) continue;
      let taken = false;
      for (const p of this.rivals.get(m) ?? []) {
        if ((this.map(p)[src] as number) === dR) {
          taken = true;
          break;
        }
      }
      if (!taken) (hops ??= []).push(names[m] as PeerName);
    }
    return hops ? sortNames(hops) : NO_HOPS;
  }

  /** For tests: how many maps are kept. */
  get size(): number {
    return this.targetsOf.length;
  }
}

export class Routes {
  private readonly peers: Peers;
  private readonly randomInt: RandomInt;
  private unicastTable: RouteTable;
  private unicastAllTable: RouteTable;
  private broadcastCache = new Map<PeerName, readonly PeerName[]>();
  private broadcastAllCache = new Map<PeerName, readonly PeerName[]>();
  private readonly changeCallbacks: (() => void)[] = [];
  private readonly graph: RouteGraph;

  constructor(deps: RoutesDeps) {
    this.peers = deps.peers;
    this.randomInt = deps.randomInt;
    this.graph = new RouteGraph(this.peers);
    // Until the first recalculation we only know how to reach ourselves, as the original.
    const us = this.peers.ourself.name;
    this.unicastTable = RouteTable.only(us);
    this.unicastAllTable = RouteTable.only(us);
    this.broadcastCache.set(us, []);
    this.broadcastAllCache.set(us, []);
  }

  /** Called after every recalculation (fastdp drops flows that may now go elsewhere). */
  onChange(cb: () => void): () => void {
    this.changeCallbacks.push(cb);
    return () => {
      const i = this.changeCallbacks.indexOf(cb);
      if (i >= 0) this.changeCallbacks.splice(i, 1);
    };
  }

  /** Rebuilds both unicast tables from the current topology and drops cached broadcast routes. */
  recalculate(): void {
    const ourself = this.peers.ourself;
    this.graph.sync();
    const us = this.graph.index.get(ourself.name) as number;
    // The tables answer for now: names collected from here on are looked up by their old index.
    this.graph.retired.clear();
    const names = this.graph.namesSnapshot();
    this.unicastTable = this.graph.routesFrom(us, SYM, names);
    this.unicastAllTable = this.graph.routesFrom(us, ALL, names);
    this.broadcastCache = new Map([[ourself.name, this.calculateBroadcast(ourself.name, true)]]);
    this.broadcastAllCache = new Map([[ourself.name, this.calculateBroadcast(ourself.name, false)]]);
    for (const cb of [...this.changeCallbacks]) cb();
  }

  /**
   * Next hop towards `dest` over established, symmetric connections; undefined when it cannot
   * be reached that way. For ourselves it is UNKNOWN_PEER_NAME (0), as in the original.
   */
  unicast(dest: PeerName): PeerName | undefined {
    return this.unicastTable.get(dest);
  }

  /** Next hop towards `dest` over all reported connections (gossip unicast relays use this). */
  unicastAll(dest: PeerName): PeerName | undefined {
    return this.unicastAllTable.get(dest);
  }

  /** Neighbours (in name order) to forward a broadcast from `source` to, over established symmetric connections. */
  broadcast(source: PeerName): readonly PeerName[] {
    return this.lookupOrCalculate(source, this.broadcastCache, true);
  }

  /** Neighbours to forward a broadcast from `source` to, over all connections (gossip broadcast). */
  broadcastAll(source: PeerName): readonly PeerName[] {
    return this.lookupOrCalculate(source, this.broadcastAllCache, false);
  }

  /** Where a data frame for `dest` goes next: undefined for ourselves or when unreachable. */
  lookup(dest: PeerName): PeerName | undefined {
    const hop = this.unicastTable.get(dest);
    return hop === UNKNOWN_PEER_NAME ? undefined : hop;
  }

  /**
   * The neighbours a frame we originate goes to, as the original's network router forwards:
   * `dest` undefined (unknown MAC) → our broadcast tree; ourselves → nobody; a reachable peer →
   * its next hop; a known but unreachable peer → nobody (the original drops the frame).
   */
  lookupOrBroadcast(dest: PeerName | undefined): readonly PeerName[] {
    if (dest === undefined) return this.broadcast(this.peers.ourself.name);
    const hop = this.lookup(dest);
    return hop === undefined ? [] : [hop];
  }

  /**
   * Neighbours for a round of gossip (mesh `randomNeighbours`): min(2·log2(#peers routed),
   * #candidate neighbours) distinct neighbours other than `except`, drawn without replacement
   * with weight = how many destinations are reached through each, so that neighbours behind
   * bottleneck links are favoured. Candidates are weighed in name order, so the choice depends
   * only on the table and the injected random source.
   */
  randomNeighbours(except: PeerName): PeerName[] {
    const w = this.unicastAllTable.hopWeights();
    const candidates: [PeerName, number][] = [];
    let total = 0;
    for (let i = 0; i < w.names.length; i++) {
      const name = w.names[i] as PeerName;
      if (name === except) continue;
      const weight = w.counts[i] as number;
      candidates.push([name, weight]);
      total += weight;
    }
    const needed = Math.floor(Math.min(2 * Math.log2(this.unicastAllTable.size), candidates.length));
    const chosen: PeerName[] = [];
    while (chosen.length < needed && total > 0) {
      let point = this.randomInt(total);
      for (let i = 0; i < candidates.length; i++) {
        const [name, weight] = candidates[i] as [PeerName, number];
        if (point < weight) {
          chosen.push(name);
          candidates.splice(i, 1);
          total -= weight;
          break;
        }
        point -= weight;
      }
    }
    return chosen;
  }

  /** Names of every peer in the topology table (reachable or not yet collected). */
  peerNames(): PeerName[] {
    return this.peers.names();
  }

  private lookupOrCalculate(source: PeerName, cache: Map<PeerName, readonly PeerName[]>, establishedAndSymmetric: boolean): readonly PeerName[] {
    let hops = cache.get(source);
    if (!hops) {
      hops = this.calculateBroadcast(source, establishedAndSymmetric);
      cache.set(source, hops);
    }
    return hops;
  }

  private calculateBroadcast(source: PeerName, establishedAndSymmetric: boolean): readonly PeerName[] {
    this.graph.sync();
    const src = this.graph.index.get(source);
    if (src === undefined) return NO_HOPS;
    const us = this.graph.index.get(this.peers.ourself.name) as number;
    const hops = this.graph.distances[establishedAndSymmetric ? SYM : ALL].broadcast(src, us);
    return hops === NO_HOPS ? hops : Object.freeze(hops);
  }
}

/**
 * broadcast(source) by the original's search, straight from the table: the definition the
 * routes' faster computation must agree with (the tests compare both).
 */
export function broadcastHopsBySearch(peers: Peers, source: PeerName, establishedAndSymmetric: boolean): PeerName[] {
  const peer = peers.get(source);
  if (!peer) return [];
  const ourself = peers.ourself;
  const { found, routes: reached } = peer.routes(ourself.name, establishedAndSymmetric, peers);
  const hops: PeerName[] = [];
  if (found) ourself.forEachConnectedPeer(establishedAndSymmetric, reached, peers, (remote) => hops.push(remote.name));
  return hops.sort((a, b) => a - b);
}
