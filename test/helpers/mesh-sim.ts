// A whole mesh in one process: routers over in-memory pipes, one FakeClock, seeded randomness.
// Convergence is reached by advancing the clock in steps and flushing the microtask/immediate
// queues between them, never by sleeping.
import { FakeClock } from '../../src/core/clock.js';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { formatPeerName } from '../../src/core/peer-name.js';
import { WeaveError } from '../../src/core/errors.js';
import { MeshRouter, type MeshRouterOptions } from '../../src/mesh/router.js';
import type { MeshTransport } from '../../src/mesh/transport.js';
import { flush } from './duplex-pipe.js';
import { seeded } from './prng.js';

export { seeded };

export class SimNetwork {
  readonly clock = new FakeClock();
  readonly random: () => number;
  readonly routers = new Map<string, MeshRouter>();
  /** Pairs of addresses (sorted) whose traffic is cut. */
  private readonly cut = new Set<string>();
  private port = 40000;
  private readonly log: Logger;

  constructor(seed: number, logger: Logger = silentLogger) {
    this.random = seeded(seed);
    this.log = logger;
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
        clock: this.clock,
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
    const [a, b] = simPipe(`${from.split(':')[0]}:${this.port++}`, to);
    target.accept(b);
    return a;
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

  /** Every router's view as a comparable string: peers with versions and connections. */
  view(r: MeshRouter): string {
    return r.peers
      .encodeAll()
      .map((e) => `${formatPeerName(e.peer.name)} v${e.peer.version} [${e.connections.map((c) => `${formatPeerName(c.remoteName)}${c.established ? '+' : '-'}`).join(',')}]`)
      .join('\n');
  }
}

/**
 * One end of an in-memory stream, as duplex-pipe's PipeEnd (delivery a microtask later, the
 * same close rules) but without keeping a copy of everything written: a 1000-router simulation
 * moves gigabytes, which the tests' pipe would hold for inspection until the end.
 */
const EMPTY = Buffer.alloc(0);

class SimPipeEnd implements MeshTransport {
  peer!: SimPipeEnd;
  private inbox: Buffer[] = [];
  private head = 0;
  private dataHandler: ((chunk: Buffer) => void) | undefined;
  private closeHandler: ((err?: Error) => void) | undefined;
  private closedLocally = false;
  private eof = false;
  private closeNotified = false;
  private closeError: Error | undefined;
  private scheduled = false;

  constructor(
    readonly localAddress: string,
    readonly remoteAddress: string,
  ) {}

  get closed(): boolean {
    return this.closedLocally || this.eof;
  }

  write(bytes: Uint8Array): void {
    if (this.closedLocally) return;
    // Passed as it is, as a socket passes what it read: nobody changes a buffer once written
    // (one frame may go to many connections), and the receiving end keeps views of it.
    this.peer.arrive(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  }

  onData(handler: (chunk: Buffer) => void): void {
    this.dataHandler = handler;
    this.schedule();
  }

  onClose(handler: (err?: Error) => void): void {
    this.closeHandler = handler;
    this.schedule();
  }

  close(): void {
    this.shutdown(undefined);
  }

  destroy(err: Error): void {
    this.shutdown(err);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closedLocally) return;
    this.closedLocally = true;
    this.closeError = err;
    this.inbox = [];
    this.head = 0;
    this.schedule();
    this.peer.peerClosed();
  }

  private arrive(chunk: Buffer): void {
    if (this.closed) return;
    this.inbox.push(chunk);
    this.schedule();
  }

  private peerClosed(): void {
    this.eof = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    while (!this.closedLocally && this.dataHandler && this.head < this.inbox.length) {
      const chunk = this.inbox[this.head] as Buffer;
      this.inbox[this.head++] = EMPTY;
      this.dataHandler(chunk);
    }
    if (this.head >= this.inbox.length) {
      this.inbox = [];
      this.head = 0;
    }
    const ended = this.closedLocally || (this.eof && this.inbox.length === 0);
    if (ended && !this.closeNotified && this.closeHandler) {
      this.closeNotified = true;
      this.closeHandler(this.closeError);
    }
  }
}

function simPipe(a: string, b: string): [SimPipeEnd, SimPipeEnd] {
  const x = new SimPipeEnd(a, b);
  const y = new SimPipeEnd(b, a);
  x.peer = y;
  y.peer = x;
  return [x, y];
}
