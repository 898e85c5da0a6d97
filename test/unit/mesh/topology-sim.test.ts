// A 100-peer mesh in one process: each peer has its own topology table and routes, connections
// are made, established, cut and remade at random, and topology updates travel as gossip does
// (a full table down each new connection, our own entry after each local change, improved
// deltas relayed onward, connection lists in random order as Go sends them), delivered in
// random order until quiet. After every phase every peer
// must hold exactly its component's topology (same peers, versions, connections as each peer
// says of itself, no ShortID shared), and routes must agree: following next hops from anywhere
// to anywhere reaches the destination by a shortest path, and a broadcast (from a sample of
// sources) reaches each peer once. Seeds come from WEAVE_TOPOLOGY_SEEDS (comma-separated) or a fixed list; a failure names
// its seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { UNKNOWN_PEER_NAME, formatPeerName, type PeerName } from '../../../src/core/peer-name.js';
import { PEER_SHORT_ID_COUNT, Peer, type TopologyEntry } from '../../../src/mesh/peer.js';
import { Peers } from '../../../src/mesh/peers.js';
import { Routes } from '../../../src/mesh/routes.js';
import { Rng } from '../../helpers/prng.js';

const PEER_COUNT = 100;
const EXTRA_EDGES = 150;
const MAX_DELIVERIES = 5_000_000;
/** Deliveries a peer may gossip by stale routes in the random fan-out phase. */
const RECALC_EVERY = 1000;

interface Node {
  readonly name: PeerName;
  readonly peers: Peers;
  readonly routes: Routes;
  /** The topology changed since routes were last recalculated... */
  dirty: boolean;
  /** ...which was at this delivery count (the router debounces recalculation, so may we). */
  recalculatedAt: number;
}

interface Message {
  readonly from: PeerName;
  readonly to: PeerName;
  readonly gen: number;
  readonly entries: TopologyEntry[];
}

const key = (a: PeerName, b: PeerName): string => (a < b ? `${a}-${b}` : `${b}-${a}`);
const fmt = formatPeerName;

class Mesh {
  readonly nodes = new Map<PeerName, Node>();
  /** Live connections, each with a generation so messages of a closed one are dropped. */
  private readonly edges = new Map<string, number>();
  private readonly adjacency = new Map<PeerName, Set<PeerName>>();
  private queue: Message[] = [];
  private gen = 0;
  deliveries = 0;
  /** 'all': relay to every neighbour; 'random': to `randomNeighbours`, as the original does. */
  fanout: 'all' | 'random' = 'all';

  constructor(private readonly rng: Rng) {}

  addNode(name: PeerName): Node {
    const uid = ((BigInt(this.rng.u32()) << 32n) | BigInt(this.rng.u32())) | 1n;
    const ourself = Peer.local({ name, nickName: `host-${fmt(name)}`, uid, shortId: this.rng.int(PEER_SHORT_ID_COUNT) });
    const peers = new Peers({ ourself, randomInt: this.rng.int });
    const node: Node = { name, peers, routes: new Routes({ peers, randomInt: this.rng.int }), dirty: true, recalculatedAt: -Infinity };
    this.nodes.set(name, node);
    this.adjacency.set(name, new Set());
    return node;
  }

  node(name: PeerName): Node {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${fmt(name)}`);
    return n;
  }

  neighbours(name: PeerName): PeerName[] {
    return [...(this.adjacency.get(name) ?? [])].sort((a, b) => a - b);
  }

  hasEdge(a: PeerName, b: PeerName): boolean {
    return this.edges.has(key(a, b));
  }

  edgeList(): [PeerName, PeerName][] {
    return [...this.edges.keys()].map((k) => k.split('-').map(Number) as [PeerName, PeerName]);
  }

  /** A new TCP connection a → b: both register it (unestablished), swap tables, announce. */
  connect(a: PeerName, b: PeerName): void {
    if (a === b || this.hasEdge(a, b)) return;
    this.edges.set(key(a, b), ++this.gen);
    this.adjacency.get(a)?.add(b);
    this.adjacency.get(b)?.add(a);
    for (const [x, y, outbound] of [[a, b, true], [b, a, false]] as const) {
      const X = this.node(x);
      const Y = this.node(y);
      // The handshake tells us who is at the other end: that peer at version 0.
      X.peers.fetchWithDefault(Peer.fromSummary({ ...Y.peers.ourself.summary(), version: 0n }));
      X.peers.ourself.addConnection({ remoteName: y, remoteTcpAddr: `10.0.${y % 256}.1:${outbound ? 6783 : 40000 + (x % 1000)}`, outbound, established: false });
      X.dirty = true;
    }
    this.send(a, b, this.node(a).peers.encodeAll());
    this.send(b, a, this.node(b).peers.encodeAll());
    this.gossipOwn(a);
    this.gossipOwn(b);
  }

  /** The overlay proved the path; `sides` lets one end know before (or without) the other. */
  establish(a: PeerName, b: PeerName, sides: 'both' | 'a' | 'b' = 'both'): void {
    const ends = sides === 'both' ? [[a, b], [b, a]] : sides === 'a' ? [[a, b]] : [[b, a]];
    for (const [x, y] of ends as [PeerName, PeerName][]) {
      const X = this.node(x);
      assert.ok(X.peers.ourself.establishConnection(y));
      X.dirty = true;
      this.gossipOwn(x);
    }
  }

  /** The connection closes: both ends forget it, collect what became unreachable, announce. */
  disconnect(a: PeerName, b: PeerName): void {
    if (!this.edges.delete(key(a, b))) return;
    this.adjacency.get(a)?.delete(b);
    this.adjacency.get(b)?.delete(a);
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const X = this.node(x);
      X.peers.ourself.deleteConnection(y);
      X.peers.dereference(y);
      // GC before announcing, so that we never gossip peers we cannot reach (the original's order).
      X.peers.garbageCollect();
      X.dirty = true;
      this.gossipOwn(x);
    }
  }

  /** The peer restarts: a new incarnation (new UID, version 0) reconnects to the same neighbours. */
  restart(name: PeerName): void {
    const old = this.neighbours(name);
    for (const n of old) this.disconnect(name, n);
    this.addNode(name);
    for (const n of old) {
      this.connect(name, n);
      this.establish(name, n);
    }
  }

  private send(from: PeerName, to: PeerName, entries: TopologyEntry[]): void {
    const gen = this.edges.get(key(from, to));
    if (gen === undefined || entries.length === 0) return;
    // A Go peer lists connections in map order, i.e. at random: nothing may depend on the order.
    const shuffled = entries.map((e) => ({ peer: e.peer, connections: this.rng.shuffle([...e.connections]) }));
    this.queue.push({ from, to, gen, entries: shuffled });
  }

  private targets(x: PeerName, except: PeerName): PeerName[] {
    if (this.fanout === 'all') return this.neighbours(x).filter((n) => n !== except);
    return this.routesOf(x, false).randomNeighbours(except);
  }

  private gossipOwn(x: PeerName): void {
    const entries = this.node(x).peers.encodePeers([x]);
    for (const n of this.targets(x, UNKNOWN_PEER_NAME)) this.send(x, n, entries);
  }

  /**
   * The peer's routes, recalculated if the topology changed; unless `fresh`, as the router's
   * 100 ms debounce would, only if the last recalculation is RECALC_EVERY deliveries old (gossip
   * then goes by stale routes for a while, sometimes to a neighbour that is gone).
   */
  routesOf(x: PeerName, fresh = true): Routes {
    const node = this.node(x);
    if (node.dirty && (fresh || this.deliveries - node.recalculatedAt >= RECALC_EVERY)) {
      node.routes.recalculate();
      node.dirty = false;
      node.recalculatedAt = this.deliveries;
    }
    return node.routes;
  }

  /** Delivers one queued message, chosen at random (gossip has no global order). */
  deliverOne(): void {
    const i = this.rng.int(this.queue.length);
    const msg = this.queue[i] as Message;
    this.queue[i] = this.queue[this.queue.length - 1] as Message;
    this.queue.pop();
    this.deliveries++;
    if (this.edges.get(key(msg.from, msg.to)) !== msg.gen) return; // that connection is gone
    const to = this.node(msg.to);
    const r = to.peers.applyUpdate(msg.entries);
    if (r.changed) to.dirty = true;
    if (r.improved.size > 0) {
      const delta = to.peers.encodePeers(r.improved);
      for (const n of this.targets(msg.to, msg.from)) this.send(msg.to, n, delta);
    }
    if (r.ourselfModified) this.gossipOwn(msg.to);
  }

  deliverSome(max: number): void {
    for (let n = this.rng.int(max + 1); n > 0 && this.queue.length > 0; n--) this.deliverOne();
  }

  flush(): void {
    while (this.queue.length > 0) {
      if (this.deliveries > MAX_DELIVERIES) throw new Error(`gossip did not go quiet after ${MAX_DELIVERIES} deliveries`);
      this.deliverOne();
    }
  }

  /** Flush, then run every pending GC (the router's 1 s timer), until nothing is left to send. */
  settle(): void {
    do {
      this.flush();
      for (const n of [...this.nodes.keys()].sort((a, b) => a - b)) {
        const node = this.node(n);
        if (!node.peers.gcPending) continue;
        const gc = node.peers.garbageCollect();
        if (gc.removed.length > 0) node.dirty = true;
        if (gc.ourselfModified) this.gossipOwn(n);
      }
    } while (this.queue.length > 0);
  }

  /** A full-table gossip from every peer to its random neighbour subset (the 30 s timer). */
  periodicGossip(): void {
    for (const n of [...this.nodes.keys()].sort((a, b) => a - b)) {
      const entries = this.node(n).peers.encodeAll();
      for (const t of this.routesOf(n, false).randomNeighbours(UNKNOWN_PEER_NAME)) this.send(n, t, entries);
    }
  }

  components(): Map<PeerName, PeerName[]> {
    const out = new Map<PeerName, PeerName[]>();
    for (const start of this.nodes.keys()) {
      if (out.has(start)) continue;
      const comp = [start];
      const seen = new Set(comp);
      for (let i = 0; i < comp.length; i++) {
        for (const n of this.adjacency.get(comp[i] as PeerName) ?? []) {
          if (!seen.has(n)) {
            seen.add(n);
            comp.push(n);
          }
        }
      }
      comp.sort((a, b) => a - b);
      for (const n of comp) out.set(n, comp);
    }
    return out;
  }

  /** The first way in which some peer's table differs from the truth, or undefined. */
  divergence(): string | undefined {
    const comps = this.components();
    for (const [x, node] of this.nodes) {
      const comp = comps.get(x) as PeerName[];
      const names = node.peers.names();
      if (!isDeepStrictEqual(names, comp)) {
        const extra = names.filter((n) => !comp.includes(n)).map(fmt);
        const missing = comp.filter((n) => !names.includes(n)).map(fmt);
        return `${fmt(x)} knows ${names.length} peers, its component has ${comp.length} (extra ${extra.join(' ')}; missing ${missing.join(' ')})`;
      }
      const shortIds = new Set<number>();
      for (const y of comp) {
        const held = node.peers.get(y)?.toEntry();
        const truth = this.node(y).peers.ourself.toEntry();
        if (!held || !sameEntry(held, truth)) {
          return `${fmt(x)} holds ${fmt(y)} at version ${String(held?.peer.version)}, which is at ${String(truth.peer.version)}`;
        }
        if (shortIds.has(truth.peer.shortId)) return `ShortID ${truth.peer.shortId} is shared in ${fmt(x)}'s component`;
        shortIds.add(truth.peer.shortId);
        if (node.peers.getByShortId(truth.peer.shortId)?.name !== y) return `${fmt(x)} does not map ShortID ${truth.peer.shortId} to ${fmt(y)}`;
      }
    }
    return undefined;
  }
}

/** Entry equality, field by field (isDeepStrictEqual is the slowest part of the check). */
function sameEntry(a: TopologyEntry, b: TopologyEntry): boolean {
  const [p, q] = [a.peer, b.peer];
  if (p.name !== q.name || p.nickName !== q.nickName || p.uid !== q.uid || p.version !== q.version) return false;
  if (p.shortId !== q.shortId || p.hasShortId !== q.hasShortId || a.connections.length !== b.connections.length) return false;
  return a.connections.every((c, i) => {
    const d = b.connections[i];
    return d !== undefined && c.remoteName === d.remoteName && c.remoteTcpAddr === d.remoteTcpAddr && c.outbound === d.outbound && c.established === d.established;
  });
}

/** Distances by BFS over `next`; the reference the routes are checked against. */
function distances(start: PeerName, next: (n: PeerName) => ReadonlySet<PeerName>): Map<PeerName, number> {
  const dist = new Map([[start, 0]]);
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const cur = queue[i] as PeerName;
    for (const n of next(cur)) {
      if (!dist.has(n)) {
        dist.set(n, (dist.get(cur) ?? 0) + 1);
        queue.push(n);
      }
    }
  }
  return dist;
}

/** assert.ok with a message built only on failure (the checks run millions of times). */
function check(cond: boolean, msg: () => string): asserts cond {
  if (!cond) assert.fail(msg());
}

function checkRoutes(mesh: Mesh, label: string, broadcastSources: ReadonlySet<PeerName>): void {
  const conn = (x: PeerName, y: PeerName) => mesh.node(x).peers.ourself.connections.get(y);
  const names = [...mesh.nodes.keys()];
  // Data: established on both ends. Gossip: any connection its owner reports.
  const graphs = {
    data: new Map(names.map((x) => [x, new Set(mesh.neighbours(x).filter((y) => conn(x, y)?.established === true && conn(y, x)?.established === true))])),
    all: new Map(names.map((x) => [x, new Set(mesh.node(x).peers.ourself.connections.keys())])),
  };
  for (const kind of ['data', 'all'] as const) {
    const graph = graphs[kind];
    const next = (n: PeerName): ReadonlySet<PeerName> => graph.get(n) ?? new Set();
    const hop = (at: PeerName, d: PeerName) => (kind === 'data' ? mesh.routesOf(at).unicast(d) : mesh.routesOf(at).unicastAll(d));
    const fanout = (at: PeerName, s: PeerName) => (kind === 'data' ? mesh.routesOf(at).broadcast(s) : mesh.routesOf(at).broadcastAll(s));
    for (const x of names) {
      const dist = distances(x, next);
      for (const d of names) {
        const reachable = dist.has(d);
        check((hop(x, d) !== undefined) === reachable, () => `${label}: ${kind} route ${fmt(x)} → ${fmt(d)} exists iff reachable (${reachable})`);
        if (!reachable || d === x) continue;
        // Follow next hops as each peer computes them: a shortest path, over real connections.
        let cur = x;
        let steps = 0;
        while (cur !== d) {
          const h = hop(cur, d);
          check(h !== undefined && h !== UNKNOWN_PEER_NAME, () => `${label}: ${kind} walk ${fmt(x)} → ${fmt(d)} stuck at ${fmt(cur)}`);
          check(next(cur).has(h), () => `${label}: ${kind} hop ${fmt(cur)} → ${fmt(h)} is not a usable connection`);
          cur = h;
          steps++;
          check(steps <= names.length, () => `${label}: ${kind} walk ${fmt(x)} → ${fmt(d)} loops`);
        }
        check(steps === dist.get(d), () => `${label}: ${kind} walk ${fmt(x)} → ${fmt(d)} took ${steps} hops, the shortest path ${String(dist.get(d))}`);
      }
      // A broadcast from x, forwarded by every peer along its own broadcast routes.
      if (!broadcastSources.has(x)) continue;
      const got = new Map<PeerName, number>();
      const queue = [x];
      for (let i = 0; i < queue.length; i++) {
        const cur = queue[i] as PeerName;
        for (const h of fanout(cur, x)) {
          check(next(cur).has(h), () => `${label}: ${kind} broadcast from ${fmt(x)}: ${fmt(cur)} → ${fmt(h)} is not a usable connection`);
          got.set(h, (got.get(h) ?? 0) + 1);
          if (got.get(h) === 1) queue.push(h);
        }
      }
      for (const d of names) {
        const want = d !== x && dist.has(d) ? 1 : 0;
        check((got.get(d) ?? 0) === want, () => `${label}: ${kind} broadcast from ${fmt(x)} reached ${fmt(d)} ${got.get(d) ?? 0} times, not ${want}`);
      }
    }
  }
}

/** Broadcasts are checked from this many sources per phase (each costs a search per peer). */
const BROADCAST_SOURCES = 10;

function checkConverged(mesh: Mesh, rng: Rng, label: string): void {
  const problem = mesh.divergence();
  assert.equal(problem, undefined, `${label}: ${problem ?? ''}`);
  checkRoutes(mesh, label, new Set(rng.shuffle([...mesh.nodes.keys()]).slice(0, BROADCAST_SOURCES)));
}

function distinctNames(rng: Rng, n: number): PeerName[] {
  const out = new Set<PeerName>();
  while (out.size < n) {
    const name = (rng.u32() & 0xffff) * 2 ** 32 + rng.u32();
    if (name !== UNKNOWN_PEER_NAME) out.add(name);
  }
  return [...out];
}

function run(seed: number): { deliveries: number; components: number; rounds: number } {
  const rng = new Rng(seed);
  const mesh = new Mesh(rng);
  const names = distinctNames(rng, PEER_COUNT);
  for (const n of names) mesh.addNode(n);

  // 1. A random connected graph: a random tree plus extra edges, gossip interleaved.
  const order = rng.shuffle([...names]);
  for (let i = 1; i < order.length; i++) {
    mesh.connect(order[i] as PeerName, order[rng.int(i)] as PeerName);
    mesh.deliverSome(20);
  }
  for (let i = 0; i < EXTRA_EDGES; i++) {
    mesh.connect(rng.pick(names), rng.pick(names));
    mesh.deliverSome(20);
  }
  for (const [a, b] of rng.shuffle(mesh.edgeList())) {
    mesh.establish(a, b);
    mesh.deliverSome(10);
  }
  mesh.settle();
  checkConverged(mesh, rng, 'connected');
  assert.equal(new Set(mesh.components().values()).size, 1);

  // 2. Partition: a third of the connections close.
  const cut = rng.shuffle(mesh.edgeList()).slice(0, Math.floor(mesh.edgeList().length / 3));
  for (const [a, b] of cut) {
    mesh.disconnect(a, b);
    mesh.deliverSome(10);
  }
  mesh.settle();
  checkConverged(mesh, rng, 'partitioned');
  const components = new Set(mesh.components().values()).size;

  // 3. Rejoin, plus new connections; some stay unestablished or are established on one end.
  const rejoin = [...cut];
  for (let i = 0; i < 20; i++) rejoin.push([rng.pick(names), rng.pick(names)]);
  for (const [a, b] of rejoin) {
    if (a === b || mesh.hasEdge(a, b)) continue;
    mesh.connect(a, b);
    mesh.deliverSome(10);
    const p = rng.u32() / 4294967296;
    if (p < 0.8) mesh.establish(a, b);
    else if (p < 0.9) mesh.establish(a, b, rng.chance(0.5) ? 'a' : 'b');
    mesh.deliverSome(10);
  }
  mesh.settle();
  checkConverged(mesh, rng, 'rejoined');

  // 4. Restarts: new incarnations while the others still hold the old ones.
  const restarted = rng.shuffle([...names]).slice(0, 5);
  const oldUids = new Map(restarted.map((n) => [n, mesh.node(n).peers.ourself.uid]));
  for (const n of restarted) {
    mesh.restart(n);
    mesh.deliverSome(30);
  }
  mesh.settle();
  // Convergence means every peer holds the new incarnation (its UID, a version past the old one).
  checkConverged(mesh, rng, 'restarted');
  for (const n of restarted) assert.notEqual(mesh.node(n).peers.ourself.uid, oldUids.get(n));

  // 5. The original's fan-out: relays and announcements go to randomNeighbours only; periodic
  // full gossip to random neighbours repairs what that misses.
  mesh.fanout = 'random';
  const edges = rng.shuffle(mesh.edgeList());
  for (const [a, b] of edges.slice(0, 10)) mesh.disconnect(a, b);
  for (let i = 0; i < 15; i++) {
    const [a, b] = [rng.pick(names), rng.pick(names)];
    if (a === b || mesh.hasEdge(a, b)) continue;
    mesh.connect(a, b);
    mesh.establish(a, b);
    mesh.deliverSome(10);
  }
  mesh.settle();
  let rounds = 0;
  while (mesh.divergence() !== undefined) {
    assert.ok(++rounds <= 60, `periodic gossip did not converge: ${mesh.divergence() ?? ''}`);
    mesh.periodicGossip();
    mesh.settle();
  }
  checkConverged(mesh, rng, `random fan-out (${rounds} periodic rounds)`);
  return { deliveries: mesh.deliveries, components, rounds };
}

const seeds = (process.env.WEAVE_TOPOLOGY_SEEDS ?? '1,2')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isInteger(n));

for (const seed of seeds) {
  test(`${PEER_COUNT} peers converge through connect, partition, rejoin, restart (seed ${seed})`, (t) => {
    try {
      const r = run(seed);
      t.diagnostic(`seed ${seed}: ${r.deliveries} deliveries, ${r.components} components while partitioned, ${r.rounds} periodic gossip rounds`);
    } catch (e) {
      if (e instanceof Error) e.message = `[topology-sim seed ${seed}; rerun with WEAVE_TOPOLOGY_SEEDS=${seed}] ${e.message}`;
      throw e;
    }
  });
}
