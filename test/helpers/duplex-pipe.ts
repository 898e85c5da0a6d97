// An in-memory duplex byte pipe: two MeshTransport ends joined back to back, for running the
// mesh handshake and message connection without sockets. Delivery is asynchronous (a
// microtask), as a socket's would be, so one `await flush()` lets both ends converge.
// Each end records what it wrote, so tests can inspect the bytes "on the wire".
import type { MeshTransport } from '../../src/mesh/transport.js';

export class PipeEnd implements MeshTransport {
  /** Every chunk this end wrote, in order. */
  readonly written: Buffer[] = [];
  peer!: PipeEnd;
  private inbox: Buffer[] = [];
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

  /** All bytes this end wrote so far. */
  get writtenBytes(): Buffer {
    return Buffer.concat(this.written);
  }

  get closed(): boolean {
    return this.closedLocally || this.eof;
  }

  write(bytes: Uint8Array): void {
    if (this.closedLocally) return;
    const copy = Buffer.from(bytes);
    this.written.push(copy);
    this.peer.arrive(copy);
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
    while (!this.closedLocally && this.dataHandler && this.inbox.length > 0) {
      this.dataHandler(this.inbox.shift() as Buffer);
    }
    const ended = this.closedLocally || (this.eof && this.inbox.length === 0);
    if (ended && !this.closeNotified && this.closeHandler) {
      this.closeNotified = true;
      this.closeHandler(this.closeError);
    }
  }
}

/** Two connected ends: `a` dials (`10.0.0.1:<port>` → `10.0.0.2:6783`), `b` accepts. */
export function createDuplexPipe(addresses: { a?: string; b?: string } = {}): [PipeEnd, PipeEnd] {
  const aAddr = addresses.a ?? '10.0.0.1:40000';
  const bAddr = addresses.b ?? '10.0.0.2:6783';
  const a = new PipeEnd(aAddr, bAddr);
  const b = new PipeEnd(bAddr, aAddr);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** Lets every queued delivery, handler and promise reaction run. */
export async function flush(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}
