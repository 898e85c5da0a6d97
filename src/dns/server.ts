// The DNS server (nameserver `dns.go`): UDP and TCP on one address, answering from the
// nameserver for names in the weave domain and forwarding everything else upstream.
//
// Routing, as the original's ServeMux (most specific zone wins, case-insensitive):
//   - <domain> (default weave.local.): A answers from the nameserver, shuffled, TTL --dns-ttl;
//     a name that has entries but is asked for another type gets NOERROR with no answers
//     (RFC 4074); an unknown name gets NXDOMAIN;
//   - in-addr.arpa.: PTR for an address of an entry; other types, or names that are not an
//     IPv4 address, NXDOMAIN; addresses we do not hold go upstream;
//   - anything else: single-label names (not the root) are qualified with the domain and
//     answered locally ("broken resolvers" that do not search); the rest is forwarded to each
//     upstream server in order over the transport the query came on, each given
//     --dns-fallback-timeout; the first answer is relayed as it came (id restored); SERVFAIL
//     when all fail.
// Sizes: over UDP an answer with several records is cut to 512 bytes, or to the EDNS buffer
// size the query advertises, with TC set (the client then asks over TCP, where answers are
// complete). Two differences from the original, both per RFC 6891: an EDNS buffer below 512 is
// read as 512, and a query with EDNS gets an OPT record back.
// Malformed queries get FORMERR when their header can be read, and are dropped otherwise;
// responses (QR set) are dropped; other opcodes get NOTIMP; a query must hold one question and
// no record but an EDNS OPT.
// TCP, as miekg/dns: a message must arrive within 2 s of its start, 8 s idle between messages,
// 128 queries per connection; at most 256 connections; a client may half-close after its queries.
//
// Threads: UDP comes through a `DnsUdpListener` (udp-listener.ts): node:dgram on this thread
// by default; the daemon's listener answers simple local queries on a worker thread with the
// same code (fast-reply.ts `answerLocal`) and passes the rest here. TCP is always served here.
//
// Lifecycle: construct, `start()` binds both sockets (port 0 picks one port free for both),
// `stop()` closes them, cancels upstream exchanges and waits. `answer()` is the whole query
// logic without sockets, for tests.
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Question } from 'dns-packet';
import { randomInt } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createServer, isIP, type Server, type Socket as TcpSocket } from 'node:net';
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import { formatIPv4, tryParseIPv4, type IPv4 } from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import { MAX_TCP_MESSAGE, MIN_UDP_SIZE, REVERSE_ZONE, UDP_BUFFER_SIZE, answerLocal, countDots, inZone, parseSimpleQuery, shuffle, type LocalZone } from './fast-reply.js';
import { DEFAULT_DOMAIN, encodableName, fqdn, type DnsServerInfo } from './nameserver.js';
import { NodeUdpListener, type DnsUdpBinding, type DnsUdpListener, type UdpPeer } from './udp-listener.js';
import { NodeUpstreamExchange, type DnsTransport, type Upstream, type UpstreamExchange } from './upstream.js';

/** nameserver `DefaultTTL`. */
export const DEFAULT_DNS_TTL = 1;
/** nameserver `DefaultClientTimeout` (--dns-fallback-timeout). */
export const DEFAULT_FALLBACK_TIMEOUT_MS = 5000;
/** nameserver `DefaultListenAddress`. */
export const DEFAULT_DNS_LISTEN_ADDRESS = '0.0.0.0:53';
export { MIN_UDP_SIZE, UDP_BUFFER_SIZE };
/** miekg/dns server idle timeout for TCP connections: between messages. */
const TCP_IDLE_TIMEOUT_MS = 8000;
/** miekg/dns server read timeout: a TCP message must arrive whole this long after it starts. */
export const TCP_READ_TIMEOUT_MS = 2000;
/** miekg/dns `maxTCPQueries`: queries one TCP connection may send before we close it (the default). */
export const TCP_MAX_QUERIES = 128;
/**
 * TCP connections at once, at most. Each holds a descriptor and up to a 64 KB message; without
 * a cap, clients could take every descriptor the process has (the mesh's included). Clients use
 * TCP only after a truncated UDP answer, briefly; connections past the cap are closed at once.
 */
export const MAX_TCP_CONNECTIONS = 256;
/** Queries of one TCP connection waiting on an upstream answer before we stop reading more. */
const TCP_MAX_FORWARDING = 16;
/** Queries waiting on an upstream answer at once, at most (see handleRecursive). */
export const MAX_FORWARDING = 256;
/** Compression pointers one name may follow: a name has at most 127 labels (dns-packet follows any number). */
const MAX_NAME_POINTERS = 128;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_CD = 0x0010;

/** What the server needs from the nameserver. */
export interface DnsNames {
  lookup(hostname: string): IPv4[];
  reverseLookup(addr: IPv4): string | undefined;
}

/** Upstream servers; `serversNow` re-reads the source synchronously (status) when due. */
export type DnsServerUpstream = Upstream & { serversNow?(): string[] };

export interface DnsServerDeps {
  names: DnsNames;
  upstream: DnsServerUpstream;
  clock: Clock;
  logger: Logger;
  /** Uniform in [0, 1): answer shuffling (default Math.random). */
  random?: () => number;
  /** Query ids for upstream exchanges (default crypto.randomInt). */
  randomId?: () => number;
  /** Upstream exchanges (default node sockets). */
  exchange?: UpstreamExchange;
  /** Who reads the UDP socket (default node:dgram on this thread). */
  udpListener?: DnsUdpListener;
}

export interface DnsServerOptions {
  /** `--dns-listen-address` host:port (port 0: any free port for both UDP and TCP). */
  listenAddress: string;
  /** `--dns-domain`, with or without the trailing dot. */
  domain?: string;
  /** `--dns-ttl` seconds. */
  ttl?: number;
  /** `--dns-fallback-timeout`: how long each upstream server is given. */
  fallbackTimeoutMs?: number;
  /** Port of the upstream servers (resolv.conf has none; 53). */
  upstreamPort?: number;
  /** Answer common queries without dns-packet (default true; tests compare both paths). */
  fastPath?: boolean;
  /** Queries one TCP connection may send (default TCP_MAX_QUERIES; miekg `MaxTCPQueries`). */
  maxTcpQueries?: number;
}

/** host:port → parts; INVALID_ARGUMENT when it is not an IP address and a port. */
export function parseListenAddress(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  const host = m ? (m[1] ?? m[2] ?? '') : '';
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535 || (host !== '' && isIP(host) === 0)) {
    throw new WeaveError('INVALID_ARGUMENT', `invalid DNS listen address "${s}" (want IP:port)`);
  }
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** A header-only answer to a query we cannot or will not parse. */
function headerReply(msg: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(msg.readUInt16BE(0), 0);
  const flags = msg.readUInt16BE(2);
  out.writeUInt16BE(FLAG_QR | (flags & (0x7800 | FLAG_RD | FLAG_CD)) | rcode, 2);
  return out;
}

/**
 * The offset just past the name at `at` in `msg`; -1 when it runs off the end, has a reserved
 * label type, is longer than dns-packet takes or follows more than MAX_NAME_POINTERS pointers.
 */
function skipName(msg: Buffer, at: number): number {
  let end = -1;
  for (let pointers = 0, length = 0; ; ) {
    if (at >= msg.length) return -1;
    const l = msg[at] as number;
    if (l === 0) return end < 0 ? at + 1 : end;
    if (l >= 0xc0) {
      if (at + 1 >= msg.length || ++pointers > MAX_NAME_POINTERS) return -1;
      if (end < 0) end = at + 2;
      at = ((l & 0x3f) << 8) | (msg[at + 1] as number);
    } else {
      length += l + 1;
      if (l > 63 || length > 254) return -1;
      at += l + 1;
    }
  }
}

function isOpt(a: Answer): a is OptAnswer {
  return a.type === 'OPT';
}

function clientOpt(req: DecodedPacket): OptAnswer | undefined {
  for (const a of req.additionals ?? []) if (isOpt(a)) return a;
  return undefined;
}

type Reply = Buffer | undefined;

export class DnsServer implements DnsServerInfo {
  readonly listenAddress: string;
  readonly domain: string;
  readonly ttl: number;
  private readonly names: DnsNames;
  private readonly upstream: DnsServerUpstream;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly randomId: () => number;
  private readonly exchanger: UpstreamExchange;
  private readonly fallbackTimeoutMs: number;
  private readonly upstreamPort: number;
  private readonly bind: { host: string; port: number };
  private readonly fastPath: boolean;
  private readonly maxTcpQueries: number;
  private readonly udpListener: DnsUdpListener;
  private readonly zone: LocalZone;
  private udp: DnsUdpBinding | undefined;
  private tcp: Server | undefined;
  private readonly tcpConns = new Set<TcpSocket>();
  private forwarding = 0;
  private readonly inflight = new Set<Promise<unknown>>();
  private abort = new AbortController();
  private boundPort = 0;

  constructor(deps: DnsServerDeps, opts: DnsServerOptions) {
    this.names = deps.names;
    this.upstream = deps.upstream;
    this.clock = deps.clock;
    this.log = deps.logger;
    this.random = deps.random ?? Math.random;
    this.randomId = deps.randomId ?? (() => randomInt(0x10000));
    this.exchanger = deps.exchange ?? new NodeUpstreamExchange({ clock: deps.clock });
    this.listenAddress = opts.listenAddress;
    this.bind = parseListenAddress(opts.listenAddress);
    this.domain = fqdn(opts.domain ?? DEFAULT_DOMAIN).toLowerCase();
    this.ttl = opts.ttl ?? DEFAULT_DNS_TTL;
    if (!Number.isInteger(this.ttl) || this.ttl < 0 || this.ttl > 0x7fffffff) throw new WeaveError('INVALID_ARGUMENT', `invalid DNS TTL ${this.ttl}`);
    this.fallbackTimeoutMs = opts.fallbackTimeoutMs ?? DEFAULT_FALLBACK_TIMEOUT_MS;
    this.upstreamPort = opts.upstreamPort ?? 53;
    this.fastPath = opts.fastPath ?? true;
    this.maxTcpQueries = opts.maxTcpQueries ?? TCP_MAX_QUERIES;
    this.udpListener = deps.udpListener ?? new NodeUdpListener(deps.logger);
    const names = this.names;
    this.zone = { domain: this.domain, ttl: this.ttl, random: this.random, lookup: (h) => names.lookup(h) };
  }

  /**
   * The upstream servers for the status. Read at call time when the upstream can (as the
   * original's `upstream.Config()`); otherwise those last read, and a re-read starts if due.
   */
  upstreamServers(): string[] {
    if (this.upstream.serversNow) return this.upstream.serversNow();
    void this.upstream.servers();
    return this.upstream.current();
  }

  /** The bound address, host:port (after start). */
  get address(): { host: string; port: number } {
    return { host: this.bind.host, port: this.boundPort };
  }

  // --- lifecycle ------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.udp) return;
    this.abort = new AbortController();
    // Every forward waiting on an upstream listens on it (at most MAX_FORWARDING at once), which
    // is no leak for Node to warn about.
    setMaxListeners(MAX_FORWARDING + 1, this.abort.signal);
    const tries = this.bind.port === 0 ? 10 : 1;
    let lastErr: unknown;
    for (let i = 0; i < tries; i++) {
      let udp: DnsUdpBinding | undefined;
      try {
        udp = await this.udpListener.listen(
          { host: this.bind.host, port: this.bind.port, zone: { domain: this.domain, ttl: this.ttl } },
          (msg, from) => this.onUdpMessage(msg, from),
        );
        const port = udp.port;
        // Half-open: a client may send its queries and shut its side; it still gets the answers.
        const tcp = createServer({ allowHalfOpen: true }, (c) => this.onTcpConnection(c));
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen({ host: this.bind.host, port, exclusive: true }, () => {
            tcp.off('error', reject);
            resolve();
          });
        });
        tcp.on('error', (e) => this.log.warn({ err: errorMessage(e) }, 'DNS TCP listener error'));
        this.udp = udp;
        this.tcp = tcp;
        this.boundPort = port;
        // Read resolv.conf before we say we listen, so that the first status shows its servers.
        await this.upstream.servers().catch(() => undefined);
        this.log.info({ address: `${this.bind.host}:${port}`, domain: this.domain }, `Listening for DNS queries on ${this.bind.host}:${port}`);
        return;
      } catch (e) {
        lastErr = e;
        await udp?.close();
      }
    }
    throw new WeaveError('UNAVAILABLE', `Unable to start dns server: listen ${this.listenAddress}: ${errorMessage(lastErr)}`, { cause: lastErr });
  }

  async stop(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    this.abort.abort();
    for (const c of this.tcpConns) c.destroy();
    this.tcpConns.clear();
    await Promise.all([
      udp?.close(),
      tcp ? new Promise<void>((r) => tcp.close(() => r())) : undefined,
      ...[...this.inflight].map((p) => p.catch(() => undefined)),
    ]);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => undefined);
    return p;
  }

  // --- transports -----------------------------------------------------------------------------

  private onUdpMessage(msg: Buffer, from: UdpPeer): void {
    const r = this.answer(msg, 'udp');
    if (r instanceof Promise) void this.track(r).then((reply) => this.sendUdp(reply, from));
    else this.sendUdp(r, from);
  }

  private sendUdp(reply: Reply, to: UdpPeer): void {
    if (reply) this.udp?.send(reply, to);
  }

  private onTcpConnection(c: TcpSocket): void {
    if (!this.tcp || this.tcpConns.size >= MAX_TCP_CONNECTIONS) {
      c.destroy();
      return;
    }
    this.tcpConns.add(c);
    c.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    // Deadlines, as miekg/dns: a message must arrive whole within TCP_READ_TIMEOUT_MS of its
    // start (the connection's, for the first), and later bytes do not extend it, or a client
    // sending a byte now and then would hold the connection for ever; between messages the
    // connection may idle TCP_IDLE_TIMEOUT_MS. Neither runs while we stopped reading to wait
    // for forwarded answers (upstream timeouts bound that wait).
    let timer: TimerHandle | undefined;
    let timerKind: 'read' | 'idle' | undefined;
    const deadline = (kind: 'read' | 'idle' | undefined, fresh: boolean) => {
      if (kind === timerKind && !fresh) return;
      timer?.cancel();
      timerKind = kind;
      timer = kind && this.clock.setTimeout(() => c.destroy(), kind === 'read' ? TCP_READ_TIMEOUT_MS : TCP_IDLE_TIMEOUT_MS);
    };
    // Backpressure: a client that sends queries and never reads the answers (each up to ~70
    // times its query) must not make us buffer them without end. Queries are taken only while
    // the socket takes our writes and few forwards are outstanding; otherwise reading pauses
    // and the client's sends block. A client that reads nothing is closed by the idle timer.
    let blocked = false;
    let forwarding = 0;
    let queries = 0;
    let ended = false; // the client shut its side
    let closing = false;
    const write = (reply: Reply) => {
      if (!reply || c.destroyed) return;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(reply.length);
      if (!c.write(Buffer.concat([len, reply])) && !blocked) {
        blocked = true;
        c.once('drain', () => {
          blocked = false;
          pump();
        });
      }
    };
    const whole = () => buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0);
    const pump = () => {
      if (closing || c.destroyed) return;
      let took = false;
      while (!blocked && forwarding < TCP_MAX_FORWARDING && queries < this.maxTcpQueries && whole()) {
        const n = buf.readUInt16BE(0);
        const msg = Buffer.from(buf.subarray(2, 2 + n));
        buf = buf.subarray(2 + n);
        queries++;
        took = true;
        const r = this.answer(msg, 'tcp');
        if (r instanceof Promise) {
          forwarding++;
          void this.track(r).then((reply) => {
            forwarding--;
            write(reply);
            pump();
          });
        } else write(r);
      }
      // Done once the client sent all it will (or all we take) and every answer is written:
      // end() sends our FIN after them.
      const full = queries >= this.maxTcpQueries;
      if ((full || (ended && !whole())) && forwarding === 0) {
        closing = true;
        c.end();
        deadline('idle', true); // for a client that never reads them
        return;
      }
      const reading = forwarding < TCP_MAX_FORWARDING && !full;
      if (reading && buf.length > 0 && !whole()) deadline('read', took);
      else if (blocked || forwarding === 0) deadline('idle', took);
      else deadline(undefined, false);
      if (blocked || !reading) c.pause();
      else c.resume();
    };
    deadline('read', true);
    c.on('data', (chunk: Buffer) => {
      if (closing) return;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      pump();
    });
    c.on('end', () => {
      ended = true;
      pump();
    });
    c.on('error', () => c.destroy());
    c.on('close', () => {
      timer?.cancel();
      this.tcpConns.delete(c);
    });
  }

  // --- queries --------------------------------------------------------------------------------

  /**
   * The reply to one query message received over `transport`, or undefined when it gets
   * none. Synchronous for everything answered locally; a promise when it goes upstream.
   */
  answer(msg: Buffer, transport: DnsTransport): Reply | Promise<Reply> {
    // Nothing a client sends may take the server down: any fault becomes SERVFAIL.
    const fault = (e: unknown): Reply => {
      this.log.warn({ err: errorMessage(e) }, 'DNS query failed');
      return headerReply(msg, RCODE.SERVFAIL);
    };
    try {
      const r = this.route(msg, transport);
      return r instanceof Promise ? r.catch(fault) : r;
    } catch (e) {
      return fault(e);
    }
  }

  private route(msg: Buffer, transport: DnsTransport): Reply | Promise<Reply> {
    if (msg.length < 12) return undefined;
    const flags = msg.readUInt16BE(2);
    if (flags & FLAG_QR) return undefined;
    if (((flags >> 11) & 0xf) !== 0) return headerReply(msg, RCODE.NOTIMP);
    if (this.fastPath) {
      const sq = parseSimpleQuery(msg);
      const r = sq && answerLocal(msg, sq, transport, this.zone);
      if (r) return r;
    }
    // A query holds one question, and no record but an EDNS OPT. Anything else is refused
    // before dns-packet sees it: it decodes every record the header claims and follows
    // compression pointers without limit, so one crafted 64 KB message (8188 questions behind a
    // chain of 8180 pointers) would take most of a second of this thread.
    const arcount = msg.readUInt16BE(10);
    if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0 || arcount > 1) return headerReply(msg, RCODE.FORMERR);
    const questionEnd = skipName(msg, 12);
    if (questionEnd < 0 || (arcount === 1 && skipName(msg, questionEnd + 4) < 0)) return headerReply(msg, RCODE.FORMERR);
    let req: DecodedPacket;
    try {
      req = dnsPacket.decode(msg) as DecodedPacket;
    } catch {
      return headerReply(msg, RCODE.FORMERR);
    }
    const q = req.questions?.[0];
    if (!q || req.questions?.length !== 1 || !encodableName(q.name)) return headerReply(msg, RCODE.FORMERR);
    const name = fqdn(q.name).toLowerCase();
    const local = inZone(name, this.domain);
    const reverse = inZone(name, REVERSE_ZONE);
    if (local && (!reverse || this.domain.length >= REVERSE_ZONE.length)) return this.handleLocal(req, q, transport);
    if (reverse) return this.handleReverse(msg, req, q, transport);
    return this.handleRecursive(msg, req, q, transport);
  }

  private maxSize(req: DecodedPacket, transport: DnsTransport): number {
    if (transport === 'tcp') return MAX_TCP_MESSAGE;
    const opt = clientOpt(req);
    return opt ? Math.max(MIN_UDP_SIZE, opt.udpPayloadSize) : MIN_UDP_SIZE;
  }

  /** The reply skeleton (miekg SetReply): id, opcode, RD and CD copied, RA set, the question. */
  private reply(req: DecodedPacket, q: Question, rcode: number, authoritative: boolean, answers: Answer[]): dnsPacket.Packet {
    const reqFlags = req.flags ?? 0;
    const opt = clientOpt(req);
    const additionals: Answer[] = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: UDP_BUFFER_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as OptAnswer] : [];
    return {
      type: 'response',
      id: req.id ?? 0,
      flags: (reqFlags & (0x7800 | FLAG_RD | FLAG_CD)) | FLAG_RA | (authoritative ? FLAG_AA : 0) | rcode,
      questions: [q],
      answers,
      additionals,
    };
  }

  private errorReply(req: DecodedPacket, q: Question, rcode: number): Buffer {
    return dnsPacket.encode(this.reply(req, q, rcode, false, []));
  }

  /** nameserver `makeResponse`: authoritative; cut to the size limit with TC when several answers do not fit. */
  private answerReply(req: DecodedPacket, q: Question, answers: Answer[], transport: DnsTransport): Buffer {
    const p = this.reply(req, q, RCODE.NOERROR, true, answers);
    const max = this.maxSize(req, transport);
    if (answers.length > 1 && dnsPacket.encodingLength(p) > max) {
      // The most answers that fit (the original's sort.Search over prefixes).
      let lo = 0;
      let hi = answers.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        p.answers = answers.slice(0, mid + 1);
        if (dnsPacket.encodingLength(p) > max) hi = mid;
        else lo = mid + 1;
      }
      p.answers = answers.slice(0, lo);
      p.flags = (p.flags ?? 0) | FLAG_TC;
    }
    return dnsPacket.encode(p);
  }

  private handleLocal(req: DecodedPacket, q: Question, transport: DnsTransport): Buffer {
    let hostname = fqdn(q.name);
    if (countDots(hostname) === 1) hostname += this.domain;
    const addrs = this.names.lookup(hostname);
    if (addrs.length === 0) return this.errorReply(req, q, RCODE.NXDOMAIN);
    // RFC 4074: the name exists, so another type gets NOERROR with no answers.
    if (q.type !== 'A') return this.answerReply(req, q, [], transport);
    const answers: Answer[] = addrs.map((a) => ({ name: q.name, type: 'A', class: 'IN', ttl: this.ttl, data: formatIPv4(a) }));
    shuffle(answers, this.random);
    return this.answerReply(req, q, answers, transport);
  }

  private handleReverse(msg: Buffer, req: DecodedPacket, q: Question, transport: DnsTransport): Reply | Promise<Reply> {
    if (q.type !== 'PTR') return this.errorReply(req, q, RCODE.NXDOMAIN);
    const name = fqdn(q.name);
    const suffix = `.${REVERSE_ZONE}`;
    const ipText = name.toLowerCase().endsWith(suffix) ? name.slice(0, -suffix.length) : name;
    const rev = tryParseIPv4(ipText);
    if (rev === undefined) return this.errorReply(req, q, RCODE.NXDOMAIN);
    const addr = (((rev & 0xff) << 24) | ((rev >>> 8) & 0xff) << 16 | ((rev >>> 16) & 0xff) << 8 | (rev >>> 24)) >>> 0;
    const hostname = this.names.reverseLookup(addr);
    if (hostname === undefined || !encodableName(hostname)) return this.handleRecursive(msg, req, q, transport);
    return this.answerReply(req, q, [{ name: q.name, type: 'PTR', class: 'IN', ttl: this.ttl, data: hostname }], transport);
  }

  private handleRecursive(msg: Buffer, req: DecodedPacket, q: Question, transport: DnsTransport): Reply | Promise<Reply> {
    // Unqualified names are ours ("broken resolvers" that do not apply the search path); the
    // root is not one of them.
    const name = fqdn(q.name);
    if (name !== '.' && countDots(name) === 1) return this.handleLocal(req, q, transport);
    // Each forward holds a socket until its answer or timeout (5 s per server): with a slow or
    // dead upstream, queries at any rate would have us hold sockets until the process has no
    // more descriptors, the mesh's included. Past the cap the client hears SERVFAIL at once.
    if (this.forwarding >= MAX_FORWARDING) return this.errorReply(req, q, RCODE.SERVFAIL);
    this.forwarding++;
    return this.forward(msg, req, q, transport).finally(() => this.forwarding--);
  }

  private async forward(msg: Buffer, req: DecodedPacket, q: Question, transport: DnsTransport): Promise<Reply> {
    const servers = await this.upstream.servers();
    const signal = this.abort.signal;
    for (const host of servers) {
      if (signal.aborted) return undefined;
      const query = Buffer.from(msg);
      query.writeUInt16BE(this.randomId() & 0xffff, 0);
      try {
        const answer = await this.exchanger.exchange(query, { host, port: this.upstreamPort }, transport, { timeoutMs: this.fallbackTimeoutMs, signal });
        const out = Buffer.from(answer);
        out.writeUInt16BE(req.id ?? 0, 0);
        return out;
      } catch (e) {
        if (signal.aborted) return undefined;
        this.log.debug({ server: host, err: errorMessage(e) }, `error trying ${host}`);
      }
    }
    return this.errorReply(req, q, RCODE.SERVFAIL);
  }
}
