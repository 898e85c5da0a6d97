// Upstream resolvers for names outside the weave domain (nameserver `dns.go` upstream): the
// servers of a resolv.conf file, re-read when its modification time changes (checked at most
// every 5 s, as the original), with our own DNS address filtered out so that we never forward
// to ourselves (on a wildcard address, the host's loopback addresses too); and the exchange of
// one query with one server over UDP or TCP.
//
// I/O is injected: the file through `ResolvConfReader`, the network through `UpstreamExchange`
// (the default uses node:dgram and node:net; tests and the daemon may pass their own).
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync, statSync } from 'node:fs';
import { BlockList, connect, isIP, type Socket as TcpSocket } from 'node:net';
import type { Clock } from '../core/clock.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/**
 * Reads resolv.conf; `stat` gives undefined when the file does not exist. Synchronous: a stat
 * at most every 5 s, and the read of a small file when it changed, so that the status shows the
 * servers of now (the original reads them at call time).
 */
export interface ResolvConfReader {
  stat(path: string): { mtimeNs: bigint; size: number } | undefined;
  read(path: string): string;
}

export const nodeResolvConfReader: ResolvConfReader = {
  stat(path) {
    const s = statSync(path, { bigint: true, throwIfNoEntry: false });
    return s ? { mtimeNs: s.mtimeNs, size: Number(s.size) } : undefined;
  },
  read: (path) => readFileSync(path, 'utf8'),
};

/**
 * The name servers of a resolv.conf text (miekg/dns ClientConfigFromReader): `nameserver`
 * lines, in order. Entries that are not IP addresses are skipped (they would need DNS to find).
 */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'nameserver' || f.length < 2) continue;
    const name = f[1] as string;
    if (isIP(name.split('%')[0] ?? '') === 0) continue;
    out.push(name);
  }
  return out;
}

/** Where upstream servers come from. */
export interface Upstream {
  /** The servers to try, in order (re-reading the source if it changed). */
  servers(): Promise<string[]>;
  /** The servers as last read (for status), without I/O. */
  current(): string[];
}

/** A fixed list (tests, or a daemon configured without resolv.conf). */
export function staticUpstream(servers: string[]): Upstream {
  return { servers: () => Promise.resolve([...servers]), current: () => [...servers] };
}

export interface ResolvConfUpstreamOptions {
  /** `--resolv-conf` (default /etc/resolv.conf). */
  path: string;
  /** Our own DNS address (the original's EffectiveListenAddress): never an upstream. */
  filterAddress?: string;
  /** Our own DNS port: with a wildcard filterAddress, loopback servers are us only on it (unset: they are). */
  filterPort?: number;
  /** The port of the servers (resolv.conf has none; 53). */
  upstreamPort?: number;
  /** The original re-checks the file at most every 5 s. */
  checkIntervalMs?: number;
}

const WILDCARDS = new BlockList();
WILDCARDS.addAddress('0.0.0.0');
WILDCARDS.addAddress('::', 'ipv6');

function family(addr: string): 'ipv4' | 'ipv6' | undefined {
  const f = isIP(addr);
  return f === 4 ? 'ipv4' : f === 6 ? 'ipv6' : undefined;
}

/**
 * Which servers are our own DNS address (`filterAddress`). The original drops only that very
 * string; but listening on a wildcard we are also on the host's loopback addresses, and a
 * resolv.conf naming 127.0.0.1 (or 0.0.0.0) would have every query forwarded to ourselves, again
 * and again. So on 0.0.0.0 (or "", as in ":53") IPv4 loopback and 0.0.0.0 are us too, mapped
 * IPv6 forms included; on :: (dual stack) both families' loopback and wildcards. Only when
 * servers are asked on our port: on another one they are someone else.
 */
function ourselves(opts: ResolvConfUpstreamOptions): (server: string) => boolean {
  const exact = (s: string) => s === opts.filterAddress;
  const host = opts.filterAddress === '' ? '0.0.0.0' : (opts.filterAddress ?? '');
  const fam = family(host);
  if (!fam || !WILDCARDS.check(host, fam) || (opts.filterPort !== undefined && opts.filterPort !== (opts.upstreamPort ?? 53))) return exact;
  const local = new BlockList();
  local.addSubnet('127.0.0.0', 8);
  local.addAddress('0.0.0.0');
  if (fam === 'ipv6') {
    local.addAddress('::1', 'ipv6');
    local.addAddress('::', 'ipv6');
  }
  return (s) => {
    const addr = s.split('%')[0] ?? '';
    const f = family(addr);
    return exact(s) || (f !== undefined && local.check(addr, f));
  };
}

/**
 * nameserver `upstream`: resolv.conf servers as the original's `upstream.Config()` reads them, at
 * call time: the file checked at most every 5 s and re-read when it changed.
 */
export class ResolvConfUpstream implements Upstream {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly reader: ResolvConfReader;
  private readonly path: string;
  private readonly isUs: (server: string) => boolean;
  private readonly checkIntervalMs: number;
  private cached: string[] = [];
  private lastCheck = -Infinity;
  private lastStamp: string | undefined;

  constructor(deps: { clock: Clock; logger: Logger; reader?: ResolvConfReader }, opts: ResolvConfUpstreamOptions) {
    this.clock = deps.clock;
    this.log = deps.logger;
    this.reader = deps.reader ?? nodeResolvConfReader;
    this.path = opts.path;
    this.isUs = ourselves(opts);
    this.checkIntervalMs = opts.checkIntervalMs ?? 5000;
  }

  current(): string[] {
    return [...this.cached];
  }

  servers(): Promise<string[]> {
    return Promise.resolve(this.serversNow());
  }

  /** The servers, the file re-read first when a check is due. */
  serversNow(): string[] {
    const now = this.clock.now();
    if (now - this.lastCheck >= this.checkIntervalMs) {
      this.lastCheck = now;
      this.refresh();
    }
    return [...this.cached];
  }

  private refresh(): void {
    try {
      const s = this.reader.stat(this.path);
      const stamp = s ? `${s.mtimeNs}/${s.size}` : 'absent';
      if (stamp === this.lastStamp) return;
      const servers = s ? parseResolvConf(this.reader.read(this.path)) : [];
      this.cached = servers.filter((x) => !this.isUs(x));
      this.lastStamp = stamp;
      this.log.info({ path: this.path, servers: this.cached }, 'upstream DNS servers');
    } catch (e) {
      // As the original: keep what we had and say why.
      this.log.error({ path: this.path, err: errorMessage(e) }, `unable to read upstream config: ${errorMessage(e)}`);
    }
  }
}

export type DnsTransport = 'udp' | 'tcp';

/** Sends one query to one server and returns its answer (bytes as received). */
export interface UpstreamExchange {
  exchange(query: Buffer, server: { host: string; port: number }, transport: DnsTransport, opts: { timeoutMs: number; signal: AbortSignal }): Promise<Buffer>;
}

/** The default exchange over node sockets. TIMEOUT, CANCELLED or IO_FAILED on failure. */
export class NodeUpstreamExchange implements UpstreamExchange {
  constructor(private readonly deps: { clock: Clock }) {}

  exchange(query: Buffer, server: { host: string; port: number }, transport: DnsTransport, opts: { timeoutMs: number; signal: AbortSignal }): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const id = query.readUInt16BE(0);
      let done = false;
      let udp: Socket | undefined;
      let tcp: TcpSocket | undefined;
      const finish = (err: Error | undefined, answer?: Buffer) => {
        if (done) return;
        done = true;
        timer.cancel();
        opts.signal.removeEventListener('abort', onAbort);
        try {
          udp?.close();
        } catch {
          // already closed
        }
        tcp?.destroy();
        if (err) reject(err);
        else resolve(answer as Buffer);
      };
      const timer = this.deps.clock.setTimeout(
        () => finish(new WeaveError('TIMEOUT', `read ${transport} ${server.host}:${server.port}: i/o timeout`)),
        opts.timeoutMs,
      );
      const onAbort = () => finish(new WeaveError('CANCELLED', 'DNS server stopping'));
      if (opts.signal.aborted) return onAbort();
      opts.signal.addEventListener('abort', onAbort, { once: true });
      const fail = (e: unknown) => finish(new WeaveError('IO_FAILED', `${transport} ${server.host}:${server.port}: ${errorMessage(e)}`, { cause: e }));
      try {
        if (transport === 'udp') {
          udp = createSocket(isIP(server.host.split('%')[0] ?? '') === 6 ? 'udp6' : 'udp4');
          udp.on('error', fail);
          udp.on('message', (msg) => {
            // Connected socket: only the server's datagrams arrive; skip stale or forged ids.
            if (msg.length >= 12 && msg.readUInt16BE(0) === id) finish(undefined, msg);
          });
          // A connected socket reports ICMP port unreachable, so a dead server fails fast. A
          // failed connect (no route: ENETUNREACH) comes to the callback, not as an 'error'.
          udp.connect(server.port, server.host, (e?: Error) => (e ? fail(e) : udp?.send(query, (err) => err && fail(err))));
        } else {
          const s = connect({ host: server.host, port: server.port });
          tcp = s;
          let buf: Buffer = Buffer.alloc(0);
          s.on('error', fail);
          s.on('close', () => finish(new WeaveError('IO_FAILED', `tcp ${server.host}:${server.port}: connection closed`)));
          s.on('connect', () => {
            const len = Buffer.alloc(2);
            len.writeUInt16BE(query.length);
            s.write(Buffer.concat([len, query]));
          });
          s.on('data', (chunk: Buffer) => {
            buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
            while (buf.length >= 2) {
              const n = buf.readUInt16BE(0);
              if (buf.length < 2 + n) return;
              const msg = buf.subarray(2, 2 + n);
              buf = buf.subarray(2 + n);
              if (msg.length >= 12 && msg.readUInt16BE(0) === id) return finish(undefined, Buffer.from(msg));
            }
          });
        }
      } catch (e) {
        fail(e);
      }
    });
  }
}
