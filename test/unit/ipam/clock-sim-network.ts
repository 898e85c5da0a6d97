// SimNetwork (test/helpers/mesh-sim.ts) with one change: bytes cross a pipe on the fake
// clock (1 ms later) instead of in the next microtask. The mesh relays a unicast hop by hop
// along each router's own routes; while two routers' routes disagree (a link was just cut)
// a message can bounce between them until the routes are recalculated, which the routers do
// on a clock timer. With microtask delivery such a bounce never lets the clock move, so the
// simulation would spin for ever; with delivery on the clock, each hop costs a millisecond and
// the recalculation ends the bounce, as it does on a real network.
import type { Clock } from '../../../src/core/clock.js';
import { WeaveError } from '../../../src/core/errors.js';
import type { MeshTransport } from '../../../src/mesh/transport.js';
import { SimNetwork } from '../../helpers/mesh-sim.js';

const LATENCY_MS = 1;

function host(address: string): string {
  return address.slice(0, address.lastIndexOf(':'));
}

export class ClockSimNetwork extends SimNetwork {
  private readonly cuts = new Set<string>();
  private nextPort = 50000;

  private key(a: string, b: string): string {
    const [x, y] = [host(a), host(b)].sort();
    return `${x}|${y}`;
  }

  override partition(i: number, j: number, cut = true): void {
    const k = this.key(SimNetwork.address(i), SimNetwork.address(j));
    if (cut) this.cuts.add(k);
    else this.cuts.delete(k);
    super.partition(i, j, cut);
  }

  override async dial(from: string, to: string): Promise<MeshTransport> {
    await Promise.resolve();
    const target = this.routers.get(to);
    if (!target || this.cuts.has(this.key(from, to))) throw new WeaveError('UNAVAILABLE', `dial tcp4 ${to}: connect: connection refused`);
    const a = new ClockPipeEnd(this.clock, `${host(from)}:${this.nextPort++}`, to);
    const b = new ClockPipeEnd(this.clock, to, a.localAddress);
    a.peer = b;
    b.peer = a;
    target.accept(b);
    return a;
  }
}

/** One end of a pipe whose bytes (and end of stream) arrive LATENCY_MS later on the clock. */
class ClockPipeEnd implements MeshTransport {
  peer!: ClockPipeEnd;
  private inbox: Buffer[] = [];
  private dataHandler: ((chunk: Buffer) => void) | undefined;
  private closeHandler: ((err?: Error) => void) | undefined;
  private closedLocally = false;
  private eof = false;
  private notified = false;
  private scheduled = false;

  constructor(
    private readonly clock: Clock,
    readonly localAddress: string,
    readonly remoteAddress: string,
  ) {}

  write(bytes: Uint8Array): void {
    if (this.closedLocally) return;
    const chunk = Buffer.from(bytes);
    const peer = this.peer;
    this.clock.setTimeout(() => peer.arrive(chunk), LATENCY_MS);
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
    if (this.closedLocally) return;
    this.closedLocally = true;
    this.inbox = [];
    this.schedule();
    const peer = this.peer;
    this.clock.setTimeout(() => peer.peerClosed(), LATENCY_MS);
  }

  private arrive(chunk: Buffer): void {
    if (this.closedLocally || this.eof) return;
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
    while (!this.closedLocally && this.dataHandler && this.inbox.length > 0) this.dataHandler(this.inbox.shift() as Buffer);
    const ended = this.closedLocally || (this.eof && this.inbox.length === 0);
    if (ended && !this.notified && this.closeHandler) {
      this.notified = true;
      this.closeHandler();
    }
  }
}
