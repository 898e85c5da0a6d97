// The DNS server's fast path: reading the common query (one plain ASCII question, no records
// but an optional EDNS OPT) and writing its A / NXDOMAIN / empty answer straight into bytes,
// without dns-packet's object model. It exists because answering names in the weave domain is
// the server's hot path (every container lookup), and building and re-reading packet objects
// costs ten times more than the work itself (see bench/dns).
//
// Contract: for every query it accepts, `writeSimpleReply` writes exactly the bytes the
// general path (dns-packet) writes for the same reply: no name compression (as the original),
// the question echoed, A records owned by the question name as asked, an OPT record answering
// one in the query, the same cut with TC. server.test.ts checks the two byte for byte. Anything
// else (other classes, labels that are not printable ASCII or hold dots, records in the query
// besides OPT, compression, long names) is left to the general path, which also owns every
// error reply for malformed input.
//
// `answerLocalInto` is the whole local answer for such a query (zone routing, lookup, shuffle,
// size limit), written into a caller's buffer; the daemon's DNS worker thread writes into its
// send slots, the server's main thread through `answerLocal`. Both run this code, so they write
// the same bytes for the same names (and the same random numbers).
//
// Byte by byte throughout: these messages are a few dozen bytes, where Buffer's read, write and
// copy helpers cost more in argument checks than the work itself (bench/dns is bound by it).
import type { IPv4 } from '../core/ip.js';

/** nameserver `minUDPSize`: the UDP answer limit without EDNS. */
export const MIN_UDP_SIZE = 512;
/** nameserver `udpBuffSize`: the buffer size we advertise in EDNS. */
export const UDP_BUFFER_SIZE = 4096;
/** The largest message over TCP (two length bytes). */
export const MAX_TCP_MESSAGE = 0xffff;
/** The largest reply `answerLocalInto` writes: a buffer this size always fits. */
export const MAX_SIMPLE_REPLY = MAX_TCP_MESSAGE;
export const REVERSE_ZONE = 'in-addr.arpa.';
const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;

export interface SimpleQuery {
  readonly id: number;
  readonly flags: number;
  /** The question name lower-cased, with its trailing dot (web.weave.local.). */
  readonly name: string;
  /** Wire length of the question name. */
  readonly nameBytes: number;
  /** Offset just after the question (name, type, class). */
  readonly questionEnd: number;
  readonly qtype: number;
  /** The EDNS buffer size the query advertises, undefined without OPT. */
  readonly ednsSize: number | undefined;
}

/** The question name in text, lower case, dotted (one toString per query rather than per label). */
const nameText = Buffer.alloc(256);

const u16 = (b: Uint8Array, at: number) => ((b[at] as number) << 8) | (b[at + 1] as number);

/**
 * The query in the first `len` bytes of `msg` if it has the common shape above; undefined
 * otherwise (use the general path).
 */
export function parseSimpleQuery(msg: Uint8Array, len: number = msg.length): SimpleQuery | undefined {
  if (len < 17) return undefined;
  const flags = u16(msg, 2);
  // A query (QR 0), opcode QUERY, one question, no answer or authority records, at most one additional.
  if ((flags & 0xf800) !== 0) return undefined;
  if (u16(msg, 4) !== 1 || u16(msg, 6) !== 0 || u16(msg, 8) !== 0) return undefined;
  const arcount = u16(msg, 10);
  if (arcount > 1) return undefined;
  let at = 12;
  let n = 0; // bytes of nameText, also the wire length so far minus one
  for (;;) {
    if (at >= len) return undefined;
    const l = msg[at++] as number;
    if (l === 0) break;
    if (l > 63 || at + l > len || n + l + 1 > 254) return undefined;
    for (const end = at + l; at < end; at++) {
      const c = msg[at] as number;
      if (c < 0x20 || c > 0x7e || c === 0x2e) return undefined;
      nameText[n++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c; // ASCII: what toLowerCase does
    }
    nameText[n++] = 0x2e;
  }
  if (n === 0) return undefined;
  const nameBytes = at - 12;
  if (at + 4 > len) return undefined;
  const qtype = u16(msg, at);
  if (u16(msg, at + 2) !== 1) return undefined; // class IN only
  const questionEnd = at + 4;
  let ednsSize: number | undefined;
  if (arcount === 1) {
    // OPT: root name, type 41, class = buffer size, ttl, rdlength, options.
    if (questionEnd + 11 > len || msg[questionEnd] !== 0 || u16(msg, questionEnd + 1) !== 41) return undefined;
    ednsSize = u16(msg, questionEnd + 3);
    if (questionEnd + 11 + u16(msg, questionEnd + 9) !== len) return undefined;
    // Options: well formed, and none that dns-packet interprets (client subnet, keepalive, key tags).
    for (let o = questionEnd + 11; o < len; ) {
      if (o + 4 > len) return undefined;
      const code = u16(msg, o);
      if (code === 8 || code === 11 || code === 14) return undefined;
      o += 4 + u16(msg, o + 2);
      if (o > len) return undefined;
    }
  } else if (questionEnd !== len) {
    return undefined;
  }
  return { id: u16(msg, 0), flags, name: nameText.toString('latin1', 0, n), nameBytes, questionEnd, qtype, ednsSize };
}

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_CD = 0x0010;
const OPT_BYTES = 11;

/**
 * Writes the reply to `q` (from `msg`) into `out`: `rcode`, authoritative or not, A records for
 * `addrs` in the given order with `ttl`, cut to `maxSize` with TC when more than one does not
 * fit; with an OPT record advertising `udpBufferSize` when the query had one. Returns its
 * length, or -1 (nothing written) when `out` is too small.
 */
export function writeSimpleReply(
  out: Uint8Array, msg: Uint8Array, q: SimpleQuery, rcode: number, authoritative: boolean, addrs: readonly IPv4[], ttl: number, maxSize: number, udpBufferSize: number,
): number {
  const opt = q.ednsSize !== undefined;
  const base = q.questionEnd + (opt ? OPT_BYTES : 0);
  const per = q.nameBytes + 14;
  let n = addrs.length;
  let tc = false;
  if (n > 1 && base + n * per > maxSize) {
    n = Math.max(0, Math.floor((maxSize - base) / per));
    tc = n < addrs.length;
  }
  const size = base + n * per;
  if (size > out.length) return -1;
  const f = FLAG_QR | (q.flags & (0x7800 | FLAG_RD | FLAG_CD)) | FLAG_RA | (authoritative ? FLAG_AA : 0) | (tc ? FLAG_TC : 0) | rcode;
  out[0] = q.id >>> 8;
  out[1] = q.id & 0xff;
  out[2] = f >>> 8;
  out[3] = f & 0xff;
  out[4] = 0;
  out[5] = 1;
  out[6] = n >>> 8;
  out[7] = n & 0xff;
  out[8] = 0;
  out[9] = 0;
  out[10] = 0;
  out[11] = opt ? 1 : 0;
  const qEnd = q.questionEnd;
  for (let i = 12; i < qEnd; i++) out[i] = msg[i] as number;
  const nameEnd = 12 + q.nameBytes;
  let at = qEnd;
  for (let k = 0; k < n; k++) {
    for (let i = 12; i < nameEnd; i++) out[at++] = msg[i] as number;
    const a = addrs[k] as number;
    out[at] = 0; // type A, class IN
    out[at + 1] = 1;
    out[at + 2] = 0;
    out[at + 3] = 1;
    out[at + 4] = ttl >>> 24;
    out[at + 5] = (ttl >>> 16) & 0xff;
    out[at + 6] = (ttl >>> 8) & 0xff;
    out[at + 7] = ttl & 0xff;
    out[at + 8] = 0;
    out[at + 9] = 4;
    out[at + 10] = a >>> 24;
    out[at + 11] = (a >>> 16) & 0xff;
    out[at + 12] = (a >>> 8) & 0xff;
    out[at + 13] = a & 0xff;
    at += 14;
  }
  if (opt) {
    out[at] = 0;
    out[at + 1] = 0; // type OPT (41)
    out[at + 2] = 41;
    out[at + 3] = udpBufferSize >>> 8;
    out[at + 4] = udpBufferSize & 0xff;
    for (let i = at + 5; i < at + 11; i++) out[i] = 0; // extended rcode, version, flags, rdlength
  }
  return size;
}

/** `name` (fully qualified, lower case) is `zone` or below it. */
export function inZone(name: string, zone: string): boolean {
  if (zone === '.' || name === zone) return true;
  const at = name.length - zone.length - 1;
  return at >= 0 && name.charCodeAt(at) === 46 && name.endsWith(zone);
}

export function countDots(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 46) n++;
  return n;
}

/** Fisher-Yates with `random` uniform in [0, 1) (the order in which it is called is part of the contract). */
export function shuffle<T>(a: T[], random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = a[i] as T;
    a[i] = a[j] as T;
    a[j] = t;
  }
}

/** What a local answer depends on besides the query. */
export interface LocalZone {
  /** The domain, fully qualified and lower case (weave.local.). */
  readonly domain: string;
  readonly ttl: number;
  /** Uniform in [0, 1): answer shuffling. */
  readonly random: () => number;
  /** Live addresses of a fully qualified name (any case), in storage order. */
  lookup(hostname: string): readonly IPv4[];
}

/**
 * Writes the server's answer (handleLocal) to a query of the simple shape, over `transport`,
 * into `out` and returns its length; 0 when the name is not answered locally (reverse zone,
 * forwarding: the general path takes it), -1 when `out` is too small (MAX_SIMPLE_REPLY never is).
 *   - a name in the domain, or a single-label name other than the root (qualified with the
 *     domain): A records, shuffled, cut with TC to 512 bytes or the EDNS size over UDP; another
 *     type of a known name NOERROR and empty (RFC 4074); an unknown name NXDOMAIN.
 */
export function answerLocalInto(out: Uint8Array, msg: Uint8Array, q: SimpleQuery, transport: 'udp' | 'tcp', zone: LocalZone): number {
  const name = q.name;
  const domain = zone.domain;
  const local = inZone(name, domain);
  const reverse = inZone(name, REVERSE_ZONE);
  const single = name !== '.' && countDots(name) === 1; // the root is no single-label name: forwarded
  if (!(local && (!reverse || domain.length >= REVERSE_ZONE.length)) && (reverse || !single)) return 0;
  const addrs = zone.lookup(single ? name + domain : name);
  const max = transport === 'tcp' ? MAX_TCP_MESSAGE : q.ednsSize === undefined ? MIN_UDP_SIZE : Math.max(MIN_UDP_SIZE, q.ednsSize);
  if (addrs.length === 0) return writeSimpleReply(out, msg, q, RCODE_NXDOMAIN, false, addrs, zone.ttl, max, UDP_BUFFER_SIZE);
  if (q.qtype !== 1) return writeSimpleReply(out, msg, q, RCODE_NOERROR, true, [], zone.ttl, max, UDP_BUFFER_SIZE);
  if (addrs.length === 1) return writeSimpleReply(out, msg, q, RCODE_NOERROR, true, addrs, zone.ttl, max, UDP_BUFFER_SIZE);
  const answers = [...addrs];
  shuffle(answers, zone.random);
  return writeSimpleReply(out, msg, q, RCODE_NOERROR, true, answers, zone.ttl, max, UDP_BUFFER_SIZE);
}

let scratch: Buffer | undefined;

/** `answerLocalInto` into a new Buffer of the reply's size; undefined when not local. */
export function answerLocal(msg: Uint8Array, q: SimpleQuery, transport: 'udp' | 'tcp', zone: LocalZone): Buffer | undefined {
  scratch ??= Buffer.allocUnsafe(MAX_SIMPLE_REPLY);
  const n = answerLocalInto(scratch, msg, q, transport, zone);
  return n > 0 ? Buffer.from(scratch.subarray(0, n)) : undefined;
}
