// A small in-process IPAM network for the allocator tests: allocators exchange their real
// encoded messages through a fake transport with seeded delays, on one FakeClock. Links can be
// cut; messages are relayed over several hops like the mesh does (a peer reaches every peer
// of its connected component), and a message is dropped when its destination is unreachable
// when it arrives. Periodic gossip goes to one random reachable peer every 30 s, and what a
// receiver says is new is gossiped on, as the mesh channel does.
import { FakeClock } from '../../../src/core/clock.js';
import { MemoryLogger, type Logger } from '../../../src/core/logger.js';
import { parseCidr } from '../../../src/core/ip.js';
import type { PeerName } from '../../../src/core/peer-name.js';
import type { GossipData } from '../../../src/mesh/gossip.js';
import { DistributedAllocator, type DistributedAllocatorOptions, type ReclaimEntry } from '../../../src/ipam/distributed-allocator.js';
import { MemoryStore } from '../../../src/platform/sqlite-store.js';
import { seeded } from '../../helpers/prng.js';

export const GOSSIP_INTERVAL_MS = 30_000;

export interface NetNode {
  readonly name: PeerName;
  alloc: DistributedAllocator;
  store: MemoryStore;
  up: boolean;
  nickname: string;
  uid: bigint;
  opts: Partial<DistributedAllocatorOptions>;
}

export interface AddOptions extends Partial<DistributedAllocatorOptions> {
  store?: MemoryStore;
  reclaim?: ReclaimEntry[] | null;
  quorum?: number;
  start?: boolean;
}

export function peer(i: number): PeerName {
  return 0x7a0000000000 + i;
}

export class IpamNet {
  readonly clock = new FakeClock();
  readonly random: () => number;
  readonly nodes = new Map<PeerName, NetNode>();
  readonly logs: MemoryLogger;
  private readonly cut = new Set<string>();
  private uidSeq = 1n;
  private readonly gossipTimer;
  range: string;
  /** Count of messages sent, by kind (for tests that look at chattiness). */
  readonly sent = { broadcast: 0, unicast: 0, gossip: 0 };

  constructor(seed = 1, opts: { range?: string; log?: boolean } = {}) {
    this.random = seeded(seed);
    this.range = opts.range ?? '10.32.0.0/12';
    this.logs = new MemoryLogger();
    this.gossipTimer = this.clock.setInterval(() => this.periodicGossip(), GOSSIP_INTERVAL_MS);
  }

  private key(a: PeerName, b: PeerName): string {
    return a < b ? `${a}-${b}` : `${b}-${a}`;
  }

  /** Cuts (or heals) the direct link between two peers. */
  partition(a: PeerName, b: PeerName, cut = true): void {
    if (cut) this.cut.add(this.key(a, b));
    else this.cut.delete(this.key(a, b));
  }

  /** Separates the peers into groups that cannot reach each other. */
  split(...groups: PeerName[][]): void {
    for (const g of groups) for (const h of groups) if (g !== h) for (const a of g) for (const b of h) this.partition(a, b);
  }

  healAll(): void {
    this.cut.clear();
  }

  /** Whether b is reachable from a over live links (multi-hop). */
  reachable(a: PeerName, b: PeerName): boolean {
    const na = this.nodes.get(a);
    const nb = this.nodes.get(b);
    if (!na?.up || !nb?.up) return false;
    if (a === b) return true;
    const seen = new Set([a]);
    const todo = [a];
    while (todo.length) {
      const x = todo.pop() as PeerName;
      for (const [y, n] of this.nodes) {
        if (!n.up || seen.has(y) || this.cut.has(this.key(x, y))) continue;
        if (y === b) return true;
        seen.add(y);
        todo.push(y);
      }
    }
    return false;
  }

  private delay(): number {
    return Math.floor(this.random() * 40);
  }

  private deliver(from: PeerName, to: PeerName, f: (n: NetNode) => void): void {
    const target = this.nodes.get(to);
    const alloc = target?.alloc;
    this.clock.setTimeout(() => {
      const n = this.nodes.get(to);
      if (!n || n.alloc !== alloc || !this.reachable(from, to)) return;
      f(n);
    }, this.delay());
  }

  private transport(name: PeerName) {
    return {
      broadcast: (data: GossipData) => {
        for (const payload of data.encode()) {
          for (const other of this.nodes.keys()) {
            if (other === name || !this.reachable(name, other)) continue;
            this.sent.broadcast++;
            this.deliver(name, other, (n) => n.alloc.onGossipBroadcast(name, payload));
          }
        }
      },
      unicast: (dst: PeerName, payload: Buffer): boolean => {
        if (!this.reachable(name, dst)) return false;
        this.sent.unicast++;
        this.deliver(name, dst, (n) => n.alloc.onGossipUnicast(name, payload));
        return true;
      },
    };
  }

  private gossipTo(from: PeerName, data: GossipData): void {
    const targets = [...this.nodes.keys()].filter((o) => o !== from && this.reachable(from, o));
    if (targets.length === 0) return;
    const to = targets[Math.floor(this.random() * targets.length)] as PeerName;
    for (const payload of data.encode()) {
      this.sent.gossip++;
      this.deliver(from, to, (n) => {
        const delta = n.alloc.onGossip(payload);
        if (delta) this.gossipTo(to, delta);
      });
    }
  }

  private periodicGossip(): void {
    for (const n of this.nodes.values()) {
      if (!n.up) continue;
      const g = n.alloc.gossip();
      if (g) this.gossipTo(n.name, g);
    }
  }

  /** A new connection: both sides send their complete state down it (mesh gossipDown). */
  connected(a: PeerName, b: PeerName): void {
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const g = this.nodes.get(x)?.alloc.gossip();
      if (!g) continue;
      for (const payload of g.encode()) this.deliver(x, y, (n) => n.alloc.onGossip(payload));
    }
  }

  logger(i: number): Logger {
    return this.logs.child({ node: i });
  }

  /** Adds (or restarts) peer i. */
  add(i: number, opts: AddOptions = {}): NetNode {
    const name = peer(i);
    const old = this.nodes.get(name);
    const store = opts.store ?? old?.store ?? new MemoryStore();
    const { reclaim, quorum, start, store: _s, ...allocOpts } = opts;
    const merged: Partial<DistributedAllocatorOptions> = { ...(old?.opts ?? {}), ...allocOpts };
    const uid = this.uidSeq++;
    const node: NetNode = { name, store, up: true, nickname: `h${i}`, uid, opts: merged, alloc: undefined as unknown as DistributedAllocator };
    node.alloc = new DistributedAllocator(
      {
        clock: this.clock,
        logger: this.logger(i),
        store,
        random: this.random,
        isKnownPeer: (p) => this.reachable(name, p),
        isReachable: (p) => this.reachable(name, p),
        quorum: () => quorum ?? 1,
      },
      { name, uid, nickname: `h${i}`, range: parseCidr(this.range), ...merged },
    );
    node.alloc.setGossip(this.transport(name));
    this.nodes.set(name, node);
    if (start !== false) node.alloc.start(reclaim === null ? {} : { reclaim: reclaim ?? [] });
    for (const other of this.nodes.keys()) if (other !== name && this.reachable(name, other)) this.connected(name, other);
    return node;
  }

  /** Stops peer i (a crash: its allocator is gone, its store stays unless wiped). */
  crash(i: number, wipeStore = false): void {
    const n = this.nodes.get(peer(i));
    if (!n) return;
    n.alloc.stop();
    n.up = false;
    if (wipeStore) n.store = new MemoryStore();
  }

  node(i: number): NetNode {
    const n = this.nodes.get(peer(i));
    if (!n) throw new Error(`no peer ${i}`);
    return n;
  }

  alloc(i: number): DistributedAllocator {
    return this.node(i).alloc;
  }

  /** Advances time in steps (messages and timers run in time order). */
  async run(ms: number, stepMs = 10): Promise<void> {
    for (let t = 0; t < ms; t += stepMs) {
      this.clock.advance(stepMs);
      await Promise.resolve();
    }
    for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
  }

  /** Runs until `p` settles (or `ms` passes), returning its outcome. */
  async settle<T>(p: Promise<T>, ms = 60_000, stepMs = 10): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | undefined> {
    let out: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    p.then((value) => (out = { ok: true, value }), (error: unknown) => (out = { ok: false, error }));
    for (let t = 0; t < ms && !out; t += stepMs) {
      this.clock.advance(stepMs);
      await new Promise<void>((r) => setImmediate(r));
    }
    await new Promise<void>((r) => setImmediate(r));
    return out;
  }

  /** The value of `p`, failing if it does not settle in `ms` or rejects. */
  async value<T>(p: Promise<T>, ms = 60_000): Promise<T> {
    const out = await this.settle(p, ms);
    if (!out) throw new Error(`did not settle within ${ms} ms`);
    if (!out.ok) throw out.error;
    return out.value;
  }

  stop(): void {
    this.gossipTimer.cancel();
    for (const n of this.nodes.values()) n.alloc.stop();
  }
}
