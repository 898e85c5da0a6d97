// IPv4 over Ethernet for the sleeve data path: the internet checksum, the header facts the
// forwarder branches on (ethertype, DF), the original's own fragmentation of too-big non-DF
// packets (weave `sleeve.go` fragment()) and the ICMP "fragmentation needed" reply it sends
// back for too-big DF packets (weave `ethernet_decoder.go` makeICMPFragNeeded()).
// Frames in, frames out: every function takes a whole Ethernet frame. Reading functions are
// total (bad bytes give undefined or a WeaveError); builders return fresh Buffers.
import { WeaveError } from '../../core/errors.js';
import { WordView } from './word-view.js';

export const ETH_HEADER_BYTES = 14;
export const ETH_MIN_FRAME_BYTES = 60;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const IPV4_MIN_HEADER_BYTES = 20;
export const IPV6_HEADER_BYTES = 40;
export const IP_PROTO_ICMP = 1;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;
/** Flag bits of byte 6 of the IPv4 header. */
export const IPV4_FLAG_DF = 0x40;
export const IPV4_FLAG_MF = 0x20;
/** TTL of the original's ICMP replies. */
export const ICMP_REPLY_TTL = 64;

// ---------------------------------------------------------------------------------------------
// Internet checksum (RFC 1071)

// The one's-complement sum does not depend on byte order (RFC 1071 §2(B)): summing native
// 32-bit words and swapping the folded result gives the big-endian sum, four bytes per step.
// Measured on the project VM: ~3 GB/s at 1500 bytes against ~0.6 GB/s for a 16-bit loop.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
// Below this the byte loop is as fast (the word view is cached, see sumView).
const WORD_LOOP_MIN_BYTES = 64;
// 2^20 words of at most 2^32-1 stay below 2^53: exact in a double before folding.
const WORDS_PER_FOLD = 1 << 20;

function swap16(x: number): number {
  return ((x & 0xff) << 8) | (x >>> 8);
}

/** Folds any non-negative sum below 2^53 to 16 bits with end-around carry. */
export function foldChecksum(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

// Big-endian 16-bit words from `start`; a trailing odd byte is the high half of a word.
function byteLoopSum(buf: Uint8Array, start: number, end: number): number {
  let s = 0;
  let i = start;
  const end4 = end - ((end - start) & 3);
  for (; i < end4; i += 4) {
    s += (((buf[i] as number) << 8) | (buf[i + 1] as number)) + (((buf[i + 2] as number) << 8) | (buf[i + 3] as number));
  }
  for (; i + 1 < end; i += 2) s += ((buf[i] as number) << 8) | (buf[i + 1] as number);
  if (i < end) s += (buf[i] as number) << 8;
  return s;
}

// Plain sum of native words u32[from, from + words); kept apart so the loop stays small and
// monomorphic.
function wordSum(u32: Uint32Array<ArrayBufferLike>, from: number, words: number): number {
  let a = 0;
  let b = 0;
  let w = from;
  const end = from + words;
  const w4 = from + (words & ~3);
  for (; w < w4; w += 4) {
    a += (u32[w] as number) + (u32[w + 1] as number);
    b += (u32[w + 2] as number) + (u32[w + 3] as number);
  }
  for (; w < end; w++) a += u32[w] as number;
  return a + b;
}

// The word view of the last buffer summed: the data path sums ranges of the same few buffers
// over and over, and a view per call costs as much as summing 300 bytes.
const sumView = new WordView();

/**
 * One's-complement sum of `buf[start, end)` as big-endian 16-bit words, plus `initial` (an
 * earlier folded sum), folded to 16 bits and not complemented: the building block for
 * checksums split across a pseudo header and several ranges.
 */
export function onesComplementSum(buf: Uint8Array, start = 0, end = buf.length, initial = 0): number {
  if (start < 0 || end > buf.length || start > end) {
    throw new WeaveError('INVALID_ARGUMENT', `checksum range [${start}, ${end}) outside ${buf.length} bytes`);
  }
  const len = end - start;
  if (len < WORD_LOOP_MIN_BYTES) return foldChecksum(initial + byteLoopSum(buf, start, end));
  const view = sumView.at(buf);
  const abs = view.base + start;
  const head = (4 - (abs & 3)) & 3; // bytes before the first aligned word
  const words = (len - head) >>> 2;
  let mid = 0;
  const u32 = view.words32;
  const first = (abs + head) >>> 2;
  for (let w0 = 0; w0 < words; w0 += WORDS_PER_FOLD) {
    const n = Math.min(words - w0, WORDS_PER_FOLD);
    mid = foldChecksum(mid + wordSum(u32, first + w0, n));
  }
  if (LITTLE_ENDIAN) mid = swap16(mid);
  if (head & 1) mid = swap16(mid); // the words began at an odd offset from `start`
  const tailStart = start + head + words * 4;
  let tail = foldChecksum(byteLoopSum(buf, tailStart, end));
  if ((tailStart - start) & 1) tail = swap16(tail);
  return foldChecksum(initial + byteLoopSum(buf, start, start + head) + mid + tail);
}

/** The internet checksum of `buf[start, end)`: the complement of the folded sum. */
export function internetChecksum(buf: Uint8Array, start = 0, end = buf.length, initial = 0): number {
  return ~onesComplementSum(buf, start, end, initial) & 0xffff;
}

/**
 * Checksum of the IPv4 header starting at `start` (length from its IHL), computed as if its
 * checksum field were zero, so it can be used both to fill and to verify.
 */
export function ipv4Checksum(buf: Uint8Array, start = 0): number {
  if (start < 0 || start >= buf.length) throw new WeaveError('DECODE_FAILED', 'IPv4 header: short buffer');
  const hlen = ((buf[start] as number) & 0x0f) * 4;
  if (hlen < IPV4_MIN_HEADER_BYTES || start + hlen > buf.length) {
    throw new WeaveError('DECODE_FAILED', `IPv4 header of ${hlen} bytes does not fit`);
  }
  const stored = ((buf[start + 10] as number) << 8) | (buf[start + 11] as number);
  const sum = onesComplementSum(buf, start, start + hlen);
  // Take the stored checksum back out rather than copying the header.
  return ~foldChecksum(sum + (~stored & 0xffff)) & 0xffff;
}

/** Writes the header checksum of the IPv4 header at `start`. */
export function fillIpv4Checksum(buf: Uint8Array, start = 0): void {
  const c = ipv4Checksum(buf, start);
  buf[start + 10] = c >>> 8;
  buf[start + 11] = c & 0xff;
}

/** Folded, uncomplemented sum of the IPv4 pseudo header (RFC 793 / 768). */
export function ipv4PseudoHeaderSum(buf: Uint8Array, ipStart: number, proto: number, l4Length: number): number {
  return onesComplementSum(buf, ipStart + 12, ipStart + 20, proto + (l4Length >>> 16) + (l4Length & 0xffff));
}

/** Folded, uncomplemented sum of the IPv6 pseudo header (RFC 8200 §8.1). */
export function ipv6PseudoHeaderSum(buf: Uint8Array, ipStart: number, proto: number, l4Length: number): number {
  return onesComplementSum(buf, ipStart + 8, ipStart + 40, proto + (l4Length >>> 16) + (l4Length & 0xffff));
}

// ---------------------------------------------------------------------------------------------
// Reading frames

/** The ethertype (or 802.3 length) field, undefined when the frame has no Ethernet header. */
export function etherType(frame: Uint8Array): number | undefined {
  if (frame.length < ETH_HEADER_BYTES) return undefined;
  return ((frame[12] as number) << 8) | (frame[13] as number);
}

/** Where the IPv4 packet of a frame lies and the header fields the data path needs. */
export interface Ipv4Info {
  /** Offset of the IP header in the frame (always 14: VLAN tags are not looked through). */
  readonly ipStart: number;
  readonly headerBytes: number;
  /** Total length from the header (the frame's length when the header says 0, as in TSO). */
  readonly totalLength: number;
  /** The frame is shorter than the header says. */
  readonly truncated: boolean;
  readonly version: number;
  readonly tos: number;
  readonly id: number;
  /** The three flag bits (reserved, DF, MF) in the low bits. */
  readonly flags: number;
  readonly df: boolean;
  readonly mf: boolean;
  /** Fragment offset in bytes. */
  readonly fragOffsetBytes: number;
  readonly ttl: number;
  readonly protocol: number;
}

/**
 * The IPv4 header of an Ethernet frame, under the rules of the gopacket decoder the original
 * uses (ethertype 0x0800, IHL >= 5, the header within the frame and within the total length);
 * undefined for anything else. A truncated packet still decodes, flagged.
 */
export function parseIpv4Frame(frame: Uint8Array): Ipv4Info | undefined {
  if (etherType(frame) !== ETHERTYPE_IPV4) return undefined;
  const ipStart = ETH_HEADER_BYTES;
  const avail = frame.length - ipStart;
  if (avail < IPV4_MIN_HEADER_BYTES) return undefined;
  const b0 = frame[ipStart] as number;
  const headerBytes = (b0 & 0x0f) * 4;
  let totalLength = ((frame[ipStart + 2] as number) << 8) | (frame[ipStart + 3] as number);
  if (totalLength === 0) totalLength = Math.min(avail, 0xffff);
  if (headerBytes < IPV4_MIN_HEADER_BYTES || headerBytes > totalLength || headerBytes > avail) return undefined;
  const b6 = frame[ipStart + 6] as number;
  const flags = b6 >>> 5;
  return {
    ipStart,
    headerBytes,
    totalLength,
    truncated: totalLength > avail,
    version: b0 >>> 4,
    tos: frame[ipStart + 1] as number,
    id: ((frame[ipStart + 4] as number) << 8) | (frame[ipStart + 5] as number),
    flags,
    df: (b6 & IPV4_FLAG_DF) !== 0,
    mf: (b6 & IPV4_FLAG_MF) !== 0,
    fragOffsetBytes: (((b6 & 0x1f) << 8) | (frame[ipStart + 7] as number)) * 8,
    ttl: frame[ipStart + 8] as number,
    protocol: frame[ipStart + 9] as number,
  };
}

/** The original's `dec.DF()`: the frame decodes as IPv4 and has Don't Fragment set. */
export function ipv4DontFragment(frame: Uint8Array): boolean {
  return parseIpv4Frame(frame)?.df ?? false;
}

/** Total length of the IPv4 packet in the frame, undefined when it is not IPv4. */
export function ipv4TotalLength(frame: Uint8Array): number | undefined {
  return parseIpv4Frame(frame)?.totalLength;
}

/** The IPv4 protocol number (6 TCP, 17 UDP, 1 ICMP), undefined when it is not IPv4. */
export function ipv4Protocol(frame: Uint8Array): number | undefined {
  return parseIpv4Frame(frame)?.protocol;
}

// ---------------------------------------------------------------------------------------------
// Fragmentation

function completeIpv4(frame: Uint8Array, what: string): Ipv4Info {
  const ip = parseIpv4Frame(frame);
  if (!ip) throw new WeaveError('DECODE_FAILED', `${what}: not an IPv4 frame`);
  if (ip.truncated) {
    throw new WeaveError('DECODE_FAILED', `${what}: IPv4 length ${ip.totalLength} beyond the ${frame.length - ip.ipStart} bytes of the frame`);
  }
  return ip;
}

/**
 * Splits a non-DF IPv4 frame into fragments whose IP packets fit `mtu`, as the original's
 * fragment(): payload cut at multiples of 8 bytes, the whole header (options too) copied into
 * every fragment, MF set on all but the last (which keeps the original flags, so fragmenting
 * a fragment works), offsets relative to the original's, header checksums recomputed, and the
 * Ethernet padding gopacket adds to frames under 60 bytes. Bytes after the IP packet (Ethernet
 * padding) are dropped. A DF frame is refused: its sender must get icmpFragNeededFrame().
 */
export function fragmentIPv4Frame(frame: Uint8Array, mtu: number): Buffer[] {
  const ip = completeIpv4(frame, 'fragment');
  if (ip.df) throw new WeaveError('INVALID_ARGUMENT', 'fragment: the packet has DF set');
  return fragmentIpv4(frame, ip, mtu);
}

/** @internal Fragmentation without the DF check (UDP segmentation offload needs it). */
export function fragmentIpv4(frame: Uint8Array, ip: Ipv4Info, mtu: number): Buffer[] {
  const hlen = ip.headerBytes;
  // The original would loop for ever on a segment size of 0; refuse instead.
  const maxSeg = Number.isInteger(mtu) ? (mtu - hlen) & ~7 : 0;
  if (maxSeg <= 0) throw new WeaveError('INVALID_ARGUMENT', `fragment: MTU ${mtu} leaves no room after a ${hlen}-byte header`);
  const payloadStart = ip.ipStart + hlen;
  const payloadSize = ip.totalLength - hlen;
  const origFlags = ip.flags;
  const out: Buffer[] = [];
  for (let offset = 0; offset < payloadSize; offset += maxSeg) {
    const last = payloadSize - offset <= maxSeg;
    const segLen = last ? payloadSize - offset : maxSeg;
    const fragOffset = (ip.fragOffsetBytes + offset) / 8;
    if (fragOffset > 0x1fff) throw new WeaveError('INVALID_ARGUMENT', 'fragment: offset beyond 13 bits');
    const ipLen = hlen + segLen;
    const frameLen = ip.ipStart + ipLen;
    const f = Buffer.alloc(Math.max(frameLen, ETH_MIN_FRAME_BYTES));
    f.set(frame.subarray(0, payloadStart), 0);
    f.set(frame.subarray(payloadStart + offset, payloadStart + offset + segLen), payloadStart);
    const s = ip.ipStart;
    f[s + 2] = ipLen >>> 8;
    f[s + 3] = ipLen & 0xff;
    const flags = last ? origFlags : origFlags | (IPV4_FLAG_MF >>> 5);
    f[s + 6] = (flags << 5) | (fragOffset >>> 8);
    f[s + 7] = fragOffset & 0xff;
    fillIpv4Checksum(f, s);
    out.push(f);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ICMP fragmentation needed

/**
 * The ICMP type 3 code 4 reply the original injects back towards the sender of a DF frame too
 * big for the overlay MTU. Ethernet addresses swapped and the ethertype kept; IPv4 from the
 * original destination to the original source, TOS kept, id 0, no flags, TTL 64; ICMP with
 * the next-hop MTU in its last header word (gopacket's `Seq`); payload the offending IP header
 * plus the first 8 bytes after it (fewer if the packet has fewer).
 */
export function icmpFragNeededFrame(frame: Uint8Array, mtu: number): Buffer {
  const ip = parseIpv4Frame(frame);
  if (!ip) throw new WeaveError('DECODE_FAILED', 'ICMP frag needed: not an IPv4 frame');
  if (!Number.isInteger(mtu) || mtu < 0 || mtu > 0xffff) throw new WeaveError('INVALID_ARGUMENT', `ICMP frag needed: MTU ${mtu} out of range`);
  const s = ip.ipStart;
  const quoteLen = Math.min(ip.headerBytes + 8, frame.length - s);
  const icmpLen = 8 + quoteLen;
  const ipLen = IPV4_MIN_HEADER_BYTES + icmpLen;
  const f = Buffer.alloc(Math.max(ETH_HEADER_BYTES + ipLen, ETH_MIN_FRAME_BYTES));
  f.set(frame.subarray(6, 12), 0); // to the original source MAC
  f.set(frame.subarray(0, 6), 6); // from the original destination MAC
  f[12] = frame[12] as number;
  f[13] = frame[13] as number;
  const o = ETH_HEADER_BYTES;
  f[o] = 0x45;
  f[o + 1] = ip.tos;
  f.writeUInt16BE(ipLen, o + 2);
  f[o + 8] = ICMP_REPLY_TTL;
  f[o + 9] = IP_PROTO_ICMP;
  f.set(frame.subarray(s + 16, s + 20), o + 12); // source: the unreachable destination
  f.set(frame.subarray(s + 12, s + 16), o + 16);
  fillIpv4Checksum(f, o);
  const c = o + IPV4_MIN_HEADER_BYTES;
  f[c] = 3;
  f[c + 1] = 4;
  f.writeUInt16BE(mtu, c + 6);
  f.set(frame.subarray(s, s + quoteLen), c + 8);
  f.writeUInt16BE(internetChecksum(f, c, c + icmpLen), c + 2);
  return f;
}
