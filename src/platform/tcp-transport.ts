// node:net sockets as the mesh's byte-stream transport (src/mesh/transport.ts states the
// contract; this file satisfies it structurally, since platform may not import mesh): one
// data and one close handler at a time, bytes held while no data handler is installed,
// handlers never called from inside write()/close(), close reported once.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { lookup } from 'node:dns/promises';
import { WeaveError } from '../core/errors.js';

export interface ByteTransport {
  readonly remoteAddress: string;
  readonly localAddress: string;
  write(bytes: Uint8Array): void;
  onData(handler: (chunk: Buffer) => void): void;
  onClose(handler: (err?: Error) => void): void;
  close(): void;
}

function addr(host: string | undefined, port: number | undefined): string {
  const h = (host ?? '').replace(/^::ffff:/, '');
  return `${h.includes(':') ? `[${h}]` : h}:${port ?? 0}`;
}

/**
 * Bytes queued for a peer (beyond what the kernel holds) before its connection is closed: a peer
 * that stops reading, or a link far too slow for the mesh's traffic, would otherwise make us keep
 * every message we send it. A full topology of 1000 peers is about 160 KB.
 */
export const MAX_QUEUED_BYTES = 64 * 1024 * 1024;

export class SocketTransport implements ByteTransport {
  readonly remoteAddress: string;
  readonly localAddress: string;
  private readonly socket: Socket;
  private dataHandler: ((chunk: Buffer) => void) | undefined;
  private closeHandler: ((err?: Error) => void) | undefined;
  private held: Buffer[] = [];
  private closed = false;
  private closeErr: Error | undefined;
  private closeReported = false;

  private readonly maxQueuedBytes: number;

  constructor(socket: Socket, opts: { maxQueuedBytes?: number } = {}) {
    this.socket = socket;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? MAX_QUEUED_BYTES;
    this.remoteAddress = addr(socket.remoteAddress, socket.remotePort);
    this.localAddress = addr(socket.localAddress, socket.localPort);
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => {
      if (this.dataHandler) this.dataHandler(c);
      else this.held.push(c);
    });
    socket.on('error', (e) => {
      this.closeErr ??= e;
    });
    socket.on('close', () => {
      this.closed = true;
      this.reportClose();
    });
  }

  private reportClose(): void {
    if (this.closeReported || !this.closed || !this.closeHandler) return;
    this.closeReported = true;
    const h = this.closeHandler;
    const e = this.closeErr;
    setImmediate(() => h(e));
  }

  write(bytes: Uint8Array): void {
    if (this.closed || this.socket.destroyed) return;
    const queued = this.socket.writableLength + bytes.length;
    if (queued > this.maxQueuedBytes) {
      this.closeErr ??= new WeaveError('IO_FAILED', `peer is not reading: ${queued} bytes queued for it`);
      this.socket.destroy();
      return;
    }
    this.socket.write(bytes);
  }

  onData(handler: (chunk: Buffer) => void): void {
    this.dataHandler = handler;
    if (this.held.length) {
      const held = this.held;
      this.held = [];
      setImmediate(() => {
        for (const c of held) this.dataHandler?.(c);
      });
    }
  }

  onClose(handler: (err?: Error) => void): void {
    this.closeHandler = handler;
    this.reportClose();
  }

  close(): void {
    if (this.closed) return;
    this.socket.destroy();
  }
}

/** Go's words for the dial failures `weave status connections` shows (node's carry its own). */
const GO_DIAL_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connect: connection refused',
  EHOSTUNREACH: 'connect: no route to host',
  ENETUNREACH: 'connect: network is unreachable',
  ETIMEDOUT: 'connect: connection timed out',
  ECONNRESET: 'read: connection reset by peer',
  EADDRNOTAVAIL: 'bind: cannot assign requested address',
};

/** Dials `host:port`; resolves once connected (TCP only, IPv4 as Weave Net). */
export function dialTcp(address: string, opts: { timeoutMs: number; localHost?: string }): Promise<SocketTransport> {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i);
  const port = Number(address.slice(i + 1));
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, family: 4, ...(opts.localHost ? { localAddress: opts.localHost } : {}) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new WeaveError('TIMEOUT', `dial tcp4 ${address}: i/o timeout`));
    }, opts.timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(new SocketTransport(s));
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = e.code === 'ENOTFOUND' ? `lookup ${host}: no such host` : (GO_DIAL_ERRORS[e.code ?? ''] ?? e.message);
      reject(new WeaveError('UNAVAILABLE', `dial tcp4 ${address}: ${why}`, { cause: e }));
    });
  });
}

/** The IPv4 addresses a host name resolves to (the system resolver, as a dial uses). */
export async function lookupIPv4(host: string): Promise<string[]> {
  const found = await lookup(host, { all: true, family: 4 });
  return found.map((a) => a.address);
}

/** Listens for mesh connections on `host:port` (host '' = all addresses). */
export class TcpListener {
  private server: Server | undefined;

  async listen(host: string, port: number, onConnection: (t: SocketTransport) => void): Promise<void> {
    const server = createServer({ pauseOnConnect: false }, (s) => onConnection(new SocketTransport(s)));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host || '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
