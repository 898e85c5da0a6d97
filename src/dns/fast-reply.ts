// The DNS server's fast path: reading the common query (one plain ASCII question, no records
// but an optional EDNS OPT) and writing its A / NXDOMAIN / empty answer straight into bytes,
// without dns-packet's object model. It exists because answering names in the weave domain is
// the server's hot path (every container lookup), and building and re-reading packet objects
// costs ten times more than the work itself (see bench/dns).
//
// Contract: for every query it accepts, `encodeSimpleReply` writes exactly the bytes the
// general path (dns-packet) writes for the same reply: no name compression (as the original),
// the question echoed, A records owned by the question name as asked, an OPT record answering
// one in the query, the same cut with TC. server.test.ts checks the two byte for byte. Anything
// else (other classes, labels that are not printable ASCII or hold dots, records in the query
// besides OPT, compression, long names) is left to the general path, which also owns every
// error reply for malformed input.
import type { IPv4 } from '../core/ip.js';

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

/** The query if it has the common shape above; undefined otherwise (use the general path). */
export function parseSimpleQuery(msg: Buffer): SimpleQuery | undefined {
  const len = msg.length;
  if (len < 17) return undefined;
  const flags = msg.readUInt16BE(2);
  // A query (QR 0), opcode QUERY, one question, no answer or authority records, at most one additional.
  if ((flags & 0xf800) !== 0) return undefined;
  if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0) return undefined;
  const arcount = msg.readUInt16BE(10);
  if (arcount > 1) return undefined;
  let at = 12;
  let name = '';
  let total = 0;
  for (;;) {
    if (at >= len) return undefined;
    const l = msg[at++] as number;
    if (l === 0) break;
    if (l > 63 || at + l > len) return undefined;
    total += l + 1;
    if (total > 254) return undefined;
    for (let i = at; i < at + l; i++) {
      const c = msg[i] as number;
      if (c < 0x20 || c > 0x7e || c === 0x2e) return undefined;
    }
    name += msg.toString('latin1', at, at + l) + '.';
    at += l;
  }
  if (name === '') return undefined;
  const nameBytes = at - 12;
  if (at + 4 > len) return undefined;
  const qtype = msg.readUInt16BE(at);
  if (msg.readUInt16BE(at + 2) !== 1) return undefined; // class IN only
  const questionEnd = at + 4;
  let ednsSize: number | undefined;
  if (arcount === 1) {
    // OPT: root name, type 41, class = buffer size, ttl, rdlength, options.
    if (questionEnd + 11 > len || msg[questionEnd] !== 0 || msg.readUInt16BE(questionEnd + 1) !== 41) return undefined;
    ednsSize = msg.readUInt16BE(questionEnd + 3);
    if (questionEnd + 11 + msg.readUInt16BE(questionEnd + 9) !== len) return undefined;
    // Options: well formed, and none that dns-packet interprets (client subnet, keepalive, key tags).
    for (let o = questionEnd + 11; o < len; ) {
      if (o + 4 > len) return undefined;
      const code = msg.readUInt16BE(o);
      if (code === 8 || code === 11 || code === 14) return undefined;
      o += 4 + msg.readUInt16BE(o + 2);
      if (o > len) return undefined;
    }
  } else if (questionEnd !== len) {
    return undefined;
  }
  return { id: msg.readUInt16BE(0), flags, name: name.toLowerCase(), nameBytes, questionEnd, qtype, ednsSize };
}

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_CD = 0x0010;
const OPT_BYTES = 11;

/**
 * The reply to `q` (from `msg`): `rcode`, authoritative or not, A records for `addrs` in the
 * given order with `ttl`, cut to `maxSize` with TC when more than one does not fit; with an OPT
 * record advertising `udpBufferSize` when the query had one.
 */
export function encodeSimpleReply(
  msg: Buffer, q: SimpleQuery, rcode: number, authoritative: boolean, addrs: readonly IPv4[], ttl: number, maxSize: number, udpBufferSize: number,
): Buffer {
  const opt = q.ednsSize !== undefined;
  const base = q.questionEnd + (opt ? OPT_BYTES : 0);
  const per = q.nameBytes + 14;
  let n = addrs.length;
  let tc = false;
  if (n > 1 && base + n * per > maxSize) {
    n = Math.max(0, Math.floor((maxSize - base) / per));
    tc = n < addrs.length;
  }
  const out = Buffer.allocUnsafe(base + n * per);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(FLAG_QR | (q.flags & (0x7800 | FLAG_RD | FLAG_CD)) | FLAG_RA | (authoritative ? FLAG_AA : 0) | (tc ? FLAG_TC : 0) | rcode, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(n, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  msg.copy(out, 12, 12, q.questionEnd);
  let at = q.questionEnd;
  for (let i = 0; i < n; i++) {
    msg.copy(out, at, 12, 12 + q.nameBytes);
    at += q.nameBytes;
    out.writeUInt32BE(0x00010001, at); // type A, class IN
    out.writeUInt32BE(ttl, at + 4);
    out.writeUInt16BE(4, at + 8);
    out.writeUInt32BE(addrs[i] as number, at + 10);
    at += 14;
  }
  if (opt) {
    out[at] = 0;
    out.writeUInt16BE(41, at + 1);
    out.writeUInt16BE(udpBufferSize, at + 3);
    out.writeUInt32BE(0, at + 5);
    out.writeUInt16BE(0, at + 9);
  }
  return out;
}
