// Where the DNS server's UDP queries come from and its replies go: the seam between the
// server's query logic (server.ts) and the thread that owns the socket.
//
// The server binds its UDP port through a `DnsUdpListener` and answers what the listener hands
// it. The default, `NodeUdpListener`, is node:dgram on the main thread: every datagram is one
// 'message' callback and every reply one `send`. The daemon supplies a listener whose socket is
// read by a worker thread that answers simple queries for names in the domain itself, from a
// copy of the name table (daemon/dns-worker-udp.ts), and hands everything else here, so the
// server's behaviour for those (forwarding, PTR, EDNS, errors) is the same whichever listener
// runs.
import { createSocket, type Socket } from 'node:dgram';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** The sender of a query: its reply goes back there. */
export interface UdpPeer {
  readonly address: string;
  readonly port: number;
}

/** What a listener that answers queries itself must answer like (the server's options). */
export interface DnsUdpZone {
  /** Fully qualified, lower case. */
  readonly domain: string;
  readonly ttl: number;
}

export interface DnsUdpListenOptions {
  /** An IP literal. */
  host: string;
  /** 0: any free port. */
  port: number;
  zone: DnsUdpZone;
}

/** A bound UDP port. */
export interface DnsUdpBinding {
  readonly port: number;
  /** Sends a reply (best effort: errors are logged by the listener, never thrown). */
  send(reply: Buffer, to: UdpPeer): void;
  /** Stops receiving and releases the port; resolves once nothing reads it any more. */
  close(): Promise<void>;
}

export interface DnsUdpListener {
  /** Binds; `onQuery` gets every datagram the listener does not answer itself. */
  listen(opts: DnsUdpListenOptions, onQuery: (msg: Buffer, from: UdpPeer) => void): Promise<DnsUdpBinding>;
}

/** node:dgram on the calling thread. */
export class NodeUdpListener implements DnsUdpListener {
  constructor(private readonly log: Logger) {}

  async listen(opts: DnsUdpListenOptions, onQuery: (msg: Buffer, from: UdpPeer) => void): Promise<DnsUdpBinding> {
    const family = opts.host.includes(':') ? 6 : 4;
    // Replies go to the sender's address, always an IP literal: resolve it in place rather
    // than through dns.lookup and a tick per datagram (dgram's documented `lookup` hook).
    const udp = createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: (host, _o, cb) => cb(null, host, family) });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(opts.port, opts.host, () => {
          udp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      try {
        udp.close();
      } catch {
        // not bound
      }
      throw e;
    }
    return adoptDgram(udp, this.log, onQuery);
  }
}

/** Serves a bound node:dgram socket (also used to take over a socket another thread read). */
export function adoptDgram(udp: Socket, log: Logger, onQuery: (msg: Buffer, from: UdpPeer) => void): DnsUdpBinding {
  udp.on('error', (e) => log.warn({ err: errorMessage(e) }, 'DNS UDP socket error'));
  udp.on('message', onQuery);
  let closed: Promise<void> | undefined;
  return {
    port: udp.address().port,
    // Send errors surface as the socket's 'error' event (logged); nothing to do per datagram.
    send: (reply, to) => {
      if (!closed) udp.send(reply, to.port, to.address);
    },
    close: () => (closed ??= new Promise<void>((r) => udp.close(() => r()))),
  };
}
