// An in-memory duplex byte pipe: two MeshTransport ends joined back to back, for running the
// mesh without sockets (handshake tests, whole simulated meshes). The receiving handler runs a
// microtask after bytes arrive, as a socket's would, so one `await flush()` lets both ends
// converge. How bytes (and the end of the stream) cross is up to the pipe's `cross`: at once by
// default, or later on a fake clock (a network with latency). Ends made with `record` keep what
// they wrote, so tests can inspect the bytes "on the wire"; simulations of many routers do not.
import type { MeshTransport } from '../../src/mesh/transport.js';

const EMPTY = Buffer.alloc(0);

export interface PipeOptions {
  /** Keep every chunk written (`written`, `writtenBytes`). */
  record?: boolean;
  /** Runs `deliver` when the bytes reach the other end: at once, or later (a clock timer). */
  cross?: (deliver: () => void) => void;
  /** Counts what every end sharing it writes (simulations report traffic without recording it). */
  traffic?: PipeTraffic;
}

export interface PipeTraffic {
  writes: number;
  bytes: number;
}

export class PipeEnd implements MeshTransport {
  /** Every chunk this end wrote, in order (with `record`). */
  readonly written: Buffer[] = [];
  peer!: PipeEnd;
  private inbox: Buffer[] = [];
  private head = 0;
  private dataHandler: ((chunk: Buffer) => void) | undefined;
  private closeHandler: ((err?: Error) => void) | undefined;
  private closedLocally = false;
  private eof = false;
  private closeNotified = false;
  private closeError: Error | undefined;
  private scheduled = false;
  private readonly record: boolean;
  private readonly cross: (deliver: () => void) => void;
  private readonly traffic: PipeTraffic | undefined;

  constructor(
    readonly localAddress: string,
    readonly remoteAddress: string,
    opts: PipeOptions = {},
  ) {
    this.record = opts.record ?? false;
    this.cross = opts.cross ?? ((deliver) => deliver());
    this.traffic = opts.traffic;
  }

  /** All bytes this end wrote so far (with `record`). */
  get writtenBytes(): Buffer {
    return Buffer.concat(this.written);
  }

  get closed(): boolean {
    return this.closedLocally || this.eof;
  }

  write(bytes: Uint8Array): void {
    if (this.closedLocally) return;
    // Passed as it is, as a socket passes what it read: nobody changes a buffer once written
    // (one frame may go to many connections), and the receiving end keeps views of it.
    const chunk = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    if (this.record) this.written.push(chunk);
    if (this.traffic) {
      this.traffic.writes++;
      this.traffic.bytes += chunk.length;
    }
    const peer = this.peer;
    this.cross(() => peer.arrive(chunk));
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

  /** Closes this end as if the socket failed with `err` (the peer just sees the stream end). */
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
    const peer = this.peer;
    this.cross(() => peer.peerClosed());
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

/** Two connected ends: `a` dials (`10.0.0.1:<port>` → `10.0.0.2:6783`), `b` accepts; both record. */
export function createDuplexPipe(addresses: { a?: string; b?: string } = {}): [PipeEnd, PipeEnd] {
  return connectedPipe(addresses.a ?? '10.0.0.1:40000', addresses.b ?? '10.0.0.2:6783', { record: true });
}

/** Two connected ends, the dialler's at `a` and the acceptor's at `b`. */
export function connectedPipe(a: string, b: string, opts: PipeOptions = {}): [PipeEnd, PipeEnd] {
  const x = new PipeEnd(a, b, opts);
  const y = new PipeEnd(b, a, opts);
  x.peer = y;
  y.peer = x;
  return [x, y];
}

/** Lets every queued delivery, handler and promise reaction run. */
export async function flush(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}
