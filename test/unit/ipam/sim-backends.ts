// The networks the IPAM simulation (ipam-sim.ts) runs on. Both give each host the same
// things the daemon gives the allocator (the IPallocation channel's sends, who is known and
// reachable, the mesh's peers) and both move the allocators' real encoded messages:
//  - MeshBackend: real MeshRouters over in-process pipes (SimNetwork with clock-timed pipes):
//    handshakes, topology gossip, routes, multi-hop relaying, the mesh's own timers;
//  - DirectBackend: links and reachability modelled directly (a message reaches any host of
//    the sender's connected component 1 ms later; periodic gossip every 30 s to a random
//    neighbour, gossip on of what is new, full state down each new link), an order of
//    magnitude cheaper, so many more schedules fit in the test budget.
import { FakeClock } from '../../../src/core/clock.js';
import type { Logger } from '../../../src/core/logger.js';
import type { PeerName } from '../../../src/core/peer-name.js';
import { IPAM_CHANNEL } from '../../../src/ipam/codec.js';
import type { IpamGossipTransport } from '../../../src/ipam/distributed-allocator.js';
import type { GossipData, Gossiper } from '../../../src/mesh/gossip.js';
import { SimNetwork } from '../../helpers/mesh-sim.js';
import { seeded } from '../../helpers/prng.js';
import { ClockSimNetwork } from './clock-sim-network.js';

export interface HostNet {
  readonly uid: bigint;
  isKnownPeer(p: PeerName): boolean;
  isReachable(p: PeerName): boolean;
  knownPeers(): PeerName[];
  /** Registers the allocator on the IPallocation channel; returns the channel's sends. */
  attach(g: Gossiper): IpamGossipTransport;
  onPeerGone(cb: (p: PeerName) => void): void;
  /** Dials these hosts (again: cuts short any backoff). */
  connect(hosts: readonly number[]): void;
  /** Whether the host has at least one live connection. */
  connected(): boolean;
}

export interface SimBackend {
  readonly kind: 'mesh' | 'direct';
  readonly clock: FakeClock;
  addHost(i: number, name: PeerName): HostNet;
  removeHost(i: number): Promise<void>;
  partition(a: number, b: number, cut: boolean): void;
  run(ms: number, stepMs: number): Promise<void>;
}

export class MeshBackend implements SimBackend {
  readonly kind = 'mesh';
  private readonly net: ClockSimNetwork;

  constructor(seed: number, log: Logger) {
    this.net = new ClockSimNetwork(seed, log);
  }

  get clock(): FakeClock {
    return this.net.clock;
  }

  addHost(i: number, name: PeerName): HostNet {
    const router = this.net.add(i, { discovery: false });
    return {
      uid: router.ourself.uid,
      isKnownPeer: (p) => router.peers.has(p),
      isReachable: (p) => p === name || router.routes.unicastAll(p) !== undefined,
      knownPeers: () => router.peers.names(),
      attach: (g) => router.newGossip(IPAM_CHANNEL, g),
      onPeerGone: (cb) => {
        router.peers.onGC((removed) => {
          for (const p of removed) cb(p.name);
        });
      },
      connect: (hosts) => {
        if (hosts.length) router.connect(hosts.map((h) => SimNetwork.address(h)), false);
      },
      connected: () => router.localConnections().some((c) => c.established),
    };
  }

  async removeHost(i: number): Promise<void> {
    await this.net.remove(i);
  }

  partition(a: number, b: number, cut: boolean): void {
    this.net.partition(a, b, cut);
  }

  run(ms: number, stepMs: number): Promise<void> {
    return this.net.run(ms, stepMs);
  }
}

const GOSSIP_INTERVAL_MS = 30_000;
const LATENCY_MS = 1;

interface DirectHost {
  readonly i: number;
  readonly name: PeerName;
  gossiper: Gossiper | undefined;
  readonly wanted: Set<number>;
  readonly gone: ((p: PeerName) => void)[];
}

export class DirectBackend implements SimBackend {
  readonly kind = 'direct';
  readonly clock = new FakeClock();
  private readonly random: () => number;
  private readonly hosts = new Map<number, DirectHost>();
  private readonly cuts = new Set<string>();
  private uid = 1n;
  /** Component of each host, recomputed when links change. */
  private components: Map<number, number> | undefined;
  private linksLive = new Set<string>();

  constructor(seed: number) {
    this.random = seeded(seed);
    this.clock.setInterval(() => this.periodic(), GOSSIP_INTERVAL_MS);
  }

  private key(a: number, b: number): string {
    return a < b ? `${a}-${b}` : `${b}-${a}`;
  }

  private linked(a: number, b: number): boolean {
    return this.hosts.has(a) && this.hosts.has(b) && !this.cuts.has(this.key(a, b)) && (this.hosts.get(a)?.wanted.has(b) === true || this.hosts.get(b)?.wanted.has(a) === true);
  }

  private neighbours(i: number): number[] {
    return [...this.hosts.keys()].filter((j) => j !== i && this.linked(i, j));
  }

  /** Recomputes components; new links get each side's full state, lost peers are reported. */
  private relink(): void {
    const before = this.components;
    const comp = new Map<number, number>();
    for (const i of this.hosts.keys()) {
      if (comp.has(i)) continue;
      const todo = [i];
      comp.set(i, i);
      while (todo.length) {
        const x = todo.pop() as number;
        for (const y of this.neighbours(x)) {
          if (comp.has(y)) continue;
          comp.set(y, i);
          todo.push(y);
        }
      }
    }
    this.components = comp;
    const live = new Set<string>();
    for (const a of this.hosts.keys()) for (const b of this.neighbours(a)) if (a < b) live.add(this.key(a, b));
    for (const k of live) {
      if (this.linksLive.has(k)) continue;
      const [a, b] = k.split('-').map(Number) as [number, number];
      this.sendFull(a, b);
      this.sendFull(b, a);
    }
    this.linksLive = live;
    if (before) {
      for (const h of this.hosts.values()) {
        for (const o of this.hosts.values()) {
          if (o === h) continue;
          const was = before.get(h.i) !== undefined && before.get(h.i) === before.get(o.i);
          if (was && comp.get(h.i) !== comp.get(o.i)) for (const cb of h.gone) cb(o.name);
        }
      }
    }
  }

  private reachable(a: number, b: number): boolean {
    if (!this.components) this.relink();
    const c = this.components as Map<number, number>;
    return c.has(a) && c.get(a) === c.get(b);
  }

  private byName(p: PeerName): DirectHost | undefined {
    const h = this.hosts.get(p - 0x7a0000000000);
    return h && h.name === p ? h : undefined;
  }

  private deliver(from: number, to: number, f: (g: Gossiper) => void): void {
    const target = this.hosts.get(to);
    const g = target?.gossiper;
    if (!g) return;
    this.clock.setTimeout(() => {
      if (this.hosts.get(to) !== target || target?.gossiper !== g || !this.reachable(from, to)) return;
      f(g);
    }, LATENCY_MS);
  }

  private sendFull(from: number, to: number): void {
    const data = this.hosts.get(from)?.gossiper?.gossip();
    if (!data) return;
    for (const payload of data.encode()) this.deliver(from, to, (g) => this.onGossip(to, g, payload));
  }

  private onGossip(at: number, g: Gossiper, payload: Buffer): void {
    const delta = g.onGossip(payload);
    if (delta) this.gossipOn(at, delta);
  }

  private gossipOn(from: number, data: GossipData): void {
    const ns = this.neighbours(from);
    if (ns.length === 0) return;
    const to = ns[Math.floor(this.random() * ns.length)] as number;
    for (const payload of data.encode()) this.deliver(from, to, (g) => this.onGossip(to, g, payload));
  }

  private periodic(): void {
    for (const h of this.hosts.values()) {
      const data = h.gossiper?.gossip();
      if (data) this.gossipOn(h.i, data);
    }
  }

  addHost(i: number, name: PeerName): HostNet {
    const h: DirectHost = { i, name, gossiper: undefined, wanted: new Set(), gone: [] };
    this.hosts.set(i, h);
    this.components = undefined;
    const uid = this.uid++;
    return {
      uid,
      isKnownPeer: (p) => {
        const o = this.byName(p);
        return o !== undefined && this.reachable(i, o.i);
      },
      isReachable: (p) => {
        const o = this.byName(p);
        return o !== undefined && this.reachable(i, o.i);
      },
      knownPeers: () => [...this.hosts.values()].filter((o) => this.reachable(i, o.i)).map((o) => o.name),
      attach: (g) => {
        h.gossiper = g;
        return {
          broadcast: (data: GossipData) => {
            for (const payload of data.encode()) {
              for (const o of this.hosts.keys()) if (o !== i && this.reachable(i, o)) this.deliver(i, o, (x) => x.onGossipBroadcast(name, payload));
            }
          },
          unicast: (dst: PeerName, payload: Buffer): boolean => {
            const o = this.byName(dst);
            if (!o || !this.reachable(i, o.i)) return false;
            this.deliver(i, o.i, (x) => x.onGossipUnicast(name, payload));
            return true;
          },
        };
      },
      onPeerGone: (cb) => h.gone.push(cb),
      connect: (hosts) => {
        for (const j of hosts) if (j !== i) h.wanted.add(j);
        this.relink();
      },
      connected: () => this.neighbours(i).length > 0,
    };
  }

  async removeHost(i: number): Promise<void> {
    this.hosts.delete(i);
    this.relink();
    await Promise.resolve();
  }

  partition(a: number, b: number, cut: boolean): void {
    if (cut) this.cuts.add(this.key(a, b));
    else this.cuts.delete(this.key(a, b));
    this.relink();
  }

  async run(ms: number, stepMs: number): Promise<void> {
    for (let t = 0; t < ms; t += stepMs) {
      this.clock.advance(stepMs);
      await Promise.resolve();
      await Promise.resolve();
    }
    await Promise.resolve();
  }
}
