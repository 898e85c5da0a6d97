// A whole mesh in one process: routers over in-memory pipes, one FakeClock, seeded randomness.
// Convergence is reached by advancing the clock in steps and flushing the microtask/immediate
// queues between them, never by sleeping.
import { performance } from 'node:perf_hooks';
import { FakeClock, type Clock } from '../../src/core/clock.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { formatPeerName } from '../../src/core/peer-name.js';
import { WeaveError } from '../../src/core/errors.js';
import { MeshRouter, type MeshRouterOptions } from '../../src/mesh/router.js';
import type { MeshTransport } from '../../src/mesh/transport.js';
import { connectedPipe, flush, type PipeEnd, type PipeTraffic } from './duplex-pipe.js';
import { seeded } from './prng.js';

export { seeded };

export class SimNetwork {
  readonly clock = new FakeClock();
  readonly random: () => number;
  readonly routers = new Map<string, MeshRouter>();
  /** Every write between routers so far (handshakes, heartbeats, gossip), counted, not kept. */
  readonly traffic: PipeTraffic = { writes: 0, bytes: 0 };
  /** Pairs of addresses (sorted) whose traffic is cut. */
  private readonly cut = new Set<string>();
  private port = 40000;
  private readonly log: Logger;
  /**
   * With `account`: milliseconds each router (by address) spent handling what reached it (bytes
   * from its connections, its own timers). All routers share one thread here; this is the work
   * one host would do alone. Promise continuations are not attributed (handshakes mostly).
   */
  readonly busyMs: Map<string, number> | undefined;

  constructor(seed: number, logger: Logger = silentLogger, opts: { account?: boolean } = {}) {
    this.random = seeded(seed);
    this.log = logger;
    if (opts.account) this.busyMs = new Map();
  }

  /** `fn`, timed into `address`'s account (when accounting). */
  private timed<A extends unknown[]>(address: string, fn: (...a: A) => void): (...a: A) => void {
    const busy = this.busyMs;
    if (!busy) return fn;
    return (...a: A) => {
      const t = performance.now();
      try {
        fn(...a);
      } finally {
        busy.set(address, (busy.get(address) ?? 0) + performance.now() - t);
      }
    };
  }

  /** The shared clock, with `address`'s timers timed into its account. */
  private clockFor(address: string): Clock {
    if (!this.busyMs) return this.clock;
    const c = this.clock;
    return {
      now: () => c.now(),
      setTimeout: (fn, ms) => c.setTimeout(this.timed(address, fn), ms),
      setInterval: (fn, ms) => c.setInterval(this.timed(address, fn), ms),
      sleep: (ms, signal) => c.sleep(ms, signal),
    };
  }

  /** An end of a pipe whose received bytes are handled in `address`'s account. */
  private owned(address: string, end: PipeEnd): PipeEnd {
    if (!this.busyMs) return end;
    const onData = end.onData.bind(end);
    end.onData = (handler) => onData(this.timed(address, handler));
    return end;
  }

  private randomBytes = (n: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.random() * 256);
    return b;
  };

  /** Address of router i: 10.1.x.y:6783. */
  static address(i: number): string {
    return `10.1.${(i >> 8) & 255}.${i & 255}:6783`;
  }

  add(i: number, opts: Partial<MeshRouterOptions> = {}): MeshRouter {
    const address = SimNetwork.address(i);
    const r = new MeshRouter(
      {
        clock: this.clockFor(address),
        logger: this.log,
        randomBytes: this.randomBytes,
        random: this.random,
        dial: (to) => this.dial(address, to),
      },
      { name: 0x7a0000000000 + i, nickName: `h${i}`, port: 6783, ...opts },
    );
    this.routers.set(address, r);
    r.start();
    return r;
  }

  private pairKey(a: string, b: string): string {
    const [x, y] = [a.split(':')[0]!, b.split(':')[0]!].sort();
    return `${x}|${y}`;
  }

  async dial(from: string, to: string): Promise<MeshTransport> {
    await Promise.resolve();
    const target = this.routers.get(to);
    if (!target || this.cut.has(this.pairKey(from, to))) {
      throw new WeaveError('UNAVAILABLE', `dial tcp4 ${to}: connect: connection refused`);
    }
    // No recording: a 1000-router simulation moves gigabytes.
    const [a, b] = connectedPipe(`${from.split(':')[0]}:${this.port++}`, to, { traffic: this.traffic });
    target.accept(this.owned(to, b));
    return this.owned(from, a);
  }

  /** Cuts (or restores) the link between two routers: live connections between them die. */
  partition(i: number, j: number, cut = true): void {
    const [a, b] = [SimNetwork.address(i), SimNetwork.address(j)];
    const key = this.pairKey(a, b);
    if (!cut) {
      this.cut.delete(key);
      return;
    }
    this.cut.add(key);
    const ra = this.routers.get(a);
    const rb = this.routers.get(b);
    if (!ra || !rb) return;
    for (const c of ra.localConnections()) if (c.remote.name === rb.name) c.conn.close(new WeaveError('IO_FAILED', 'link cut'));
  }

  async remove(i: number): Promise<void> {
    const a = SimNetwork.address(i);
    const r = this.routers.get(a);
    this.routers.delete(a);
    await r?.stop();
  }

  /** Advances time in steps, letting all async work run between steps. */
  async run(totalMs: number, stepMs = 50): Promise<void> {
    for (let t = 0; t < totalMs; t += stepMs) {
      await flush(2);
      this.clock.advance(stepMs);
    }
    await flush(3);
  }

  /** Router number i of a router name (names are 0x7a0000000000 + i). */
  static indexOf(name: number): number {
    return name - 0x7a0000000000;
  }

  /** Undirected graph of the connections `r`'s topology reports (either end reporting). */
  static graph(net: SimNetwork, r: MeshRouter = [...net.routers.values()][0]!): Map<number, Set<number>> {
    const g = new Map<number, Set<number>>();
    const node = (a: number) => g.get(a) ?? g.set(a, new Set()).get(a)!;
    for (const p of r.peers.values()) {
      node(p.name);
      for (const c of p.connections.keys()) {
        if (!r.peers.has(c)) continue;
        node(p.name).add(c);
        node(c).add(p.name);
      }
    }
    return g;
  }

  /** Whether graph `g` stays connected without `node`, or without the edge a–b. */
  static stillConnected(g: Map<number, Set<number>>, node?: number, edge?: [number, number]): boolean {
    const nodes = [...g.keys()].filter((x) => x !== node);
    if (!nodes.length) return true;
    const seen = new Set([nodes[0]!]);
    const todo = [nodes[0]!];
    while (todo.length) {
      const x = todo.pop()!;
      for (const y of g.get(x) ?? []) {
        if (y === node || seen.has(y)) continue;
        if (edge && ((x === edge[0] && y === edge[1]) || (x === edge[1] && y === edge[0]))) continue;
        seen.add(y);
        todo.push(y);
      }
    }
    return seen.size === nodes.length;
  }

  /** Every router's view as a comparable string: peers with versions and connections. */
  view(r: MeshRouter): string {
    return r.peers
      .encodeAll()
      .map((e) => `${formatPeerName(e.peer.name)} v${e.peer.version} [${e.connections.map((c) => `${formatPeerName(c.remoteName)}${c.established ? '+' : '-'}`).join(',')}]`)
      .join('\n');
  }
}
