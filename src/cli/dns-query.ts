// One DNS query to one server over UDP or TCP, with dns-packet (what `weave dns-lookup` asks
// the router's DNS server, instead of the original's `dig`). Answers are returned decoded, with
// their size; TIMEOUT when nothing comes back, IO_FAILED when the socket fails.
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet, RecordType } from 'dns-packet';
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { connect, isIP } from 'node:net';
import { WeaveError, errorMessage } from '../core/errors.js';

export interface DnsQueryOptions {
  type?: RecordType;
  transport?: 'udp' | 'tcp';
  /** Advertise this EDNS UDP buffer size (adds an OPT record). */
  ednsSize?: number;
  timeoutMs?: number;
}

export interface DnsQueryResult {
  packet: DecodedPacket;
  /** Size of the answer message in bytes (without the TCP length prefix). */
  bytes: number;
}

/** Where to send queries for a listen address: the wildcard addresses mean this host. */
export function queryHostFor(listenHost: string): string {
  if (listenHost === '0.0.0.0' || listenHost === '') return '127.0.0.1';
  if (listenHost === '::') return '::1';
  return listenHost;
}

export function dnsQuery(server: { host: string; port: number }, name: string, opts: DnsQueryOptions = {}): Promise<DnsQueryResult> {
  const id = randomInt(0x10000);
  const packet: Packet = {
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: opts.type ?? 'A', class: 'IN', name }],
    ...(opts.ednsSize !== undefined ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: opts.ednsSize, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as never] } : {}),
  };
  const query = dnsPacket.encode(packet);
  const timeoutMs = opts.timeoutMs ?? 5000;
  const transport = opts.transport ?? 'udp';
  return new Promise<DnsQueryResult>((resolve, reject) => {
    let done = false;
    let cleanup = () => {};
    const finish = (err: Error | undefined, msg?: Buffer) => {
      if (done) return;
      if (!err && msg) {
        try {
          const decoded = dnsPacket.decode(msg) as DecodedPacket;
          if (decoded.id !== id) return; // not ours: keep waiting
          done = true;
          clearTimeout(timer);
          cleanup();
          resolve({ packet: decoded, bytes: msg.length });
        } catch (e) {
          done = true;
          clearTimeout(timer);
          cleanup();
          reject(new WeaveError('DECODE_FAILED', `undecodable DNS answer from ${server.host}:${server.port}: ${errorMessage(e)}`, { cause: e }));
        }
        return;
      }
      done = true;
      clearTimeout(timer);
      cleanup();
      reject(err);
    };
    const timer = setTimeout(() => finish(new WeaveError('TIMEOUT', `no DNS answer from ${server.host}:${server.port} over ${transport} within ${timeoutMs} ms`)), timeoutMs);
    const fail = (e: unknown) => finish(new WeaveError('IO_FAILED', `DNS query to ${server.host}:${server.port} over ${transport} failed: ${errorMessage(e)}`, { cause: e }));
    if (transport === 'udp') {
      const s = createSocket(isIP(server.host) === 6 ? 'udp6' : 'udp4');
      cleanup = () => s.close();
      s.on('error', fail);
      s.on('message', (m) => finish(undefined, m));
      // A failed connect (no route) comes to the callback, not as an 'error' event.
      s.connect(server.port, server.host, (e?: Error) => (e ? fail(e) : s.send(query, (err) => err && fail(err))));
    } else {
      const s = connect({ host: server.host, port: server.port });
      cleanup = () => s.destroy();
      let buf = Buffer.alloc(0);
      s.on('error', fail);
      s.on('close', () => finish(new WeaveError('IO_FAILED', `DNS server ${server.host}:${server.port} closed the TCP connection`)));
      s.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(query.length);
        s.write(Buffer.concat([len, query]));
      });
      s.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const n = buf.readUInt16BE(0);
          const msg = buf.subarray(2, 2 + n);
          buf = buf.subarray(2 + n);
          finish(undefined, Buffer.from(msg));
        }
      });
    }
  });
}
