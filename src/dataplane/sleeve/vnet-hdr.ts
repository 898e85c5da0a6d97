// virtio_net_hdr, the 10-byte header in front of every frame read from or written to a TAP
// opened with IFF_VNET_HDR (linux/virtio_net.h, legacy layout, little-endian as on every host
// we run on). With it the kernel hands us TCP super-frames of up to 64 KiB with the checksum
// left partial, and takes such frames back, which is what makes a userspace sleeve fast.
//
// What this module owns:
// - encode/decode of the header;
// - completeChecksum(): finish a NEEDS_CSUM checksum, for frames leaving the host whole;
// - segmentGso(): cut a super-frame into MSS-sized frames with full checksums, for a peer that
//   cannot take large frames (an original router) or for a path MTU smaller than the frame;
//   planTcpSegments()/writeTcpSegment(): the same cut, one segment at a time into any buffer
//   (a UDP GSO train), header checksums from sums made once, TCP checksums whole or partial;
// - gsoForFrame(): the header to give the kernel a large TCP frame that arrived from a peer;
// - partial TCP checksums (the pseudo-header sum in the field, SleeveGSO 3): recognise them,
//   the NEEDS_CSUM header that has the kernel finish one, or finish one here.
import { WeaveError } from '../../core/errors.js';
import {
  ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HEADER_BYTES, IPV6_HEADER_BYTES, IP_PROTO_TCP, IP_PROTO_UDP,
  etherType, foldChecksum, fragmentIpv4, ipv4PseudoHeaderSum, ipv6PseudoHeaderSum, onesComplementSum,
  parseIpv4Frame, type Ipv4Info,
} from './ipv4.js';

export const VNET_HDR_BYTES = 10;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

const TCP_MIN_HEADER_BYTES = 20;
const TCP_CHECKSUM_OFFSET = 16;
const UDP_HEADER_BYTES = 8;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
// What the kernel writes when a checksum folds to zero (CSUM_MANGLED_0): 0 means "none" in UDP.
const CSUM_MANGLED_0 = 0xffff;

export interface VnetHdr {
  readonly flags: number;
  readonly gsoType: number;
  /** Length of the headers (Ethernet + IP + L4), a hint only. */
  readonly hdrLen: number;
  /** Payload bytes per segment. */
  readonly gsoSize: number;
  /** With NEEDS_CSUM: where checksumming starts and where (relative) the result goes. */
  readonly csumStart: number;
  readonly csumOffset: number;
}

/** A frame with nothing to do: no GSO, checksum complete. */
export const NO_VNET_HDR: VnetHdr = Object.freeze({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });

export function decodeVnetHdr(buf: Uint8Array, offset = 0): VnetHdr {
  if (offset < 0 || offset + VNET_HDR_BYTES > buf.length) {
    throw new WeaveError('DECODE_FAILED', `virtio_net_hdr: need ${VNET_HDR_BYTES} bytes at ${offset}, have ${buf.length - offset}`);
  }
  const u16 = (i: number) => (buf[offset + i] as number) | ((buf[offset + i + 1] as number) << 8);
  return {
    flags: buf[offset] as number,
    gsoType: buf[offset + 1] as number,
    hdrLen: u16(2),
    gsoSize: u16(4),
    csumStart: u16(6),
    csumOffset: u16(8),
  };
}

/** Writes the header into `out` at `offset` (a fresh 10-byte Buffer by default). */
export function encodeVnetHdr(h: VnetHdr, out: Buffer = Buffer.alloc(VNET_HDR_BYTES), offset = 0): Buffer {
  if (offset < 0 || offset + VNET_HDR_BYTES > out.length) throw new WeaveError('INVALID_ARGUMENT', 'virtio_net_hdr: output too small');
  const fields = [h.flags, h.gsoType, h.hdrLen, h.gsoSize, h.csumStart, h.csumOffset];
  for (let i = 0; i < fields.length; i++) {
    const v = fields[i] as number;
    if (!Number.isInteger(v) || v < 0 || v > (i < 2 ? 0xff : 0xffff)) {
      throw new WeaveError('INVALID_ARGUMENT', `virtio_net_hdr: field ${i} out of range: ${v}`);
    }
  }
  out[offset] = h.flags;
  out[offset + 1] = h.gsoType;
  out.writeUInt16LE(h.hdrLen, offset + 2);
  out.writeUInt16LE(h.gsoSize, offset + 4);
  out.writeUInt16LE(h.csumStart, offset + 6);
  out.writeUInt16LE(h.csumOffset, offset + 8);
  return out;
}

/**
 * Finishes a partial checksum in place, as the kernel's skb_checksum_help(): the field at
 * csumStart+csumOffset holds the pseudo-header sum, the sum from csumStart to the end of the
 * frame is complemented into it (0 written as 0xffff). No-op without NEEDS_CSUM.
 */
export function completeChecksum(hdr: VnetHdr, frame: Uint8Array): void {
  if ((hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0) return;
  const at = hdr.csumStart + hdr.csumOffset;
  if (hdr.csumStart >= frame.length || at + 2 > frame.length) {
    throw new WeaveError('DECODE_FAILED', `virtio_net_hdr: checksum at ${hdr.csumStart}+${hdr.csumOffset} outside a ${frame.length}-byte frame`);
  }
  const c = ~onesComplementSum(frame, hdr.csumStart, frame.length) & 0xffff;
  const v = c === 0 ? CSUM_MANGLED_0 : c;
  frame[at] = v >>> 8;
  frame[at + 1] = v & 0xff;
}

/** Where the IP and TCP headers of a TCP frame are, for segmentation and GSO. */
export interface TcpLayout {
  readonly v6: boolean;
  readonly ip: Ipv4Info | undefined;
  readonly ipStart: number;
  readonly ipHeaderBytes: number;
  readonly tcpStart: number;
  readonly tcpHeaderBytes: number;
  /** End of the IP packet (bytes after it are Ethernet padding). */
  readonly end: number;
}

function tcpLayout(frame: Uint8Array, what: string): TcpLayout {
  const et = etherType(frame);
  let v6: boolean;
  let ip: Ipv4Info | undefined;
  let ipHeaderBytes: number;
  let end: number;
  if (et === ETHERTYPE_IPV4) {
    ip = parseIpv4Frame(frame);
    if (!ip || ip.truncated) throw new WeaveError('DECODE_FAILED', `${what}: bad or truncated IPv4 header`);
    if (ip.protocol !== IP_PROTO_TCP) throw new WeaveError('DECODE_FAILED', `${what}: IPv4 protocol ${ip.protocol} is not TCP`);
    if (ip.mf || ip.fragOffsetBytes !== 0) throw new WeaveError('DECODE_FAILED', `${what}: an IPv4 fragment`);
    v6 = false;
    ipHeaderBytes = ip.headerBytes;
    end = ip.ipStart + ip.totalLength;
  } else if (et === ETHERTYPE_IPV6) {
    if (frame.length < ETH_HEADER_BYTES + IPV6_HEADER_BYTES) throw new WeaveError('DECODE_FAILED', `${what}: short IPv6 header`);
    // Extension headers are not looked through: the kernel's TSO frames have none.
    const next = frame[ETH_HEADER_BYTES + 6] as number;
    if (next !== IP_PROTO_TCP) throw new WeaveError('DECODE_FAILED', `${what}: IPv6 next header ${next} is not TCP`);
    const payloadLen = ((frame[ETH_HEADER_BYTES + 4] as number) << 8) | (frame[ETH_HEADER_BYTES + 5] as number);
    v6 = true;
    ipHeaderBytes = IPV6_HEADER_BYTES;
    end = ETH_HEADER_BYTES + IPV6_HEADER_BYTES + payloadLen;
    if (end > frame.length) throw new WeaveError('DECODE_FAILED', `${what}: IPv6 payload length beyond the frame`);
  } else {
    throw new WeaveError('DECODE_FAILED', `${what}: ethertype ${et === undefined ? 'missing' : et.toString(16)} is not IP`);
  }
  const tcpStart = ETH_HEADER_BYTES + ipHeaderBytes;
  if (tcpStart + TCP_MIN_HEADER_BYTES > end) throw new WeaveError('DECODE_FAILED', `${what}: short TCP header`);
  const tcpHeaderBytes = ((frame[tcpStart + 12] as number) >>> 4) * 4;
  if (tcpHeaderBytes < TCP_MIN_HEADER_BYTES || tcpStart + tcpHeaderBytes > end) {
    throw new WeaveError('DECODE_FAILED', `${what}: bad TCP data offset`);
  }
  return { v6, ip, ipStart: ETH_HEADER_BYTES, ipHeaderBytes, tcpStart, tcpHeaderBytes, end };
}

function pseudoSum(frame: Uint8Array, l: TcpLayout, l4Length: number): number {
  return l.v6 ? ipv6PseudoHeaderSum(frame, l.ipStart, IP_PROTO_TCP, l4Length) : ipv4PseudoHeaderSum(frame, l.ipStart, IP_PROTO_TCP, l4Length);
}

/**
 * How a TCP super-frame is cut: where its headers end, the payload, the segment count, and the
 * header checksums' parts that are the same in every segment. Made once per super-frame;
 * `writeTcpSegment` then writes any segment into any buffer.
 */
export interface TcpSegmentPlan {
  readonly layout: TcpLayout;
  /** Ethernet + IP + TCP header bytes, copied into every segment. */
  readonly headers: number;
  readonly payloadBytes: number;
  /** Payload bytes per segment (the last may have fewer). */
  readonly mss: number;
  readonly count: number;
  readonly seq0: number;
  readonly id0: number;
  readonly flags0: number;
  /** The super-frame's headers (a view). */
  readonly head: Uint8Array;
  /** Where the super-frame lies, for payload views made without asking the frame each time. */
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  /** Unfolded sums of the 16-bit words that do not change: IPv4 header less length, id and checksum. */
  readonly ipSum: number;
  /** The pseudo header's addresses and protocol. */
  readonly pseudoSum: number;
  /** TCP header less sequence number, flags word and checksum. */
  readonly tcpSum: number;
}

/** Unfolded sum of big-endian 16-bit words in [start, end) (even length). */
function wordsSum(b: Uint8Array, start: number, end: number): number {
  let s = 0;
  for (let i = start; i < end; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] as number);
  return s;
}

/** The cut of a TCP super-frame (gsoType TCPV4/TCPV6, any ECN bit); throws DECODE_FAILED. */
export function planTcpSegments(hdr: VnetHdr, frame: Uint8Array): TcpSegmentPlan {
  const type = hdr.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
  if (type !== VIRTIO_NET_HDR_GSO_TCPV4 && type !== VIRTIO_NET_HDR_GSO_TCPV6) {
    throw new WeaveError('DECODE_FAILED', `virtio_net_hdr: GSO type ${hdr.gsoType} is not TCP`);
  }
  const l = tcpLayout(frame, 'GSO');
  if (l.v6 !== (type === VIRTIO_NET_HDR_GSO_TCPV6)) throw new WeaveError('DECODE_FAILED', 'GSO: type does not match the IP version');
  const mss = hdr.gsoSize;
  if (mss === 0) throw new WeaveError('DECODE_FAILED', 'GSO: gso_size is 0');
  const headers = l.tcpStart + l.tcpHeaderBytes;
  const payloadBytes = l.end - headers;
  const ip = l.ipStart;
  const t = l.tcpStart;
  let ipSum = 0;
  let pseudo: number;
  if (l.v6) {
    pseudo = wordsSum(frame, ip + 8, ip + 40);
  } else {
    ipSum = wordsSum(frame, ip, ip + 2) + wordsSum(frame, ip + 6, ip + 10) + wordsSum(frame, ip + 12, ip + l.ipHeaderBytes);
    pseudo = wordsSum(frame, ip + 12, ip + 20);
  }
  const tcpSum = wordsSum(frame, t, t + 4) + wordsSum(frame, t + 8, t + 12) + wordsSum(frame, t + 14, t + 16) + wordsSum(frame, t + 18, headers);
  return {
    layout: l,
    headers,
    payloadBytes,
    mss,
    count: Math.max(1, Math.ceil(payloadBytes / mss)),
    seq0: readU32(frame, t + 4),
    id0: l.ip ? l.ip.id : 0,
    flags0: frame[t + 13] as number,
    head: new Uint8Array(frame.buffer, frame.byteOffset, headers),
    buffer: frame.buffer,
    byteOffset: frame.byteOffset,
    ipSum,
    pseudoSum: pseudo + IP_PROTO_TCP,
    tcpSum,
  };
}

/**
 * Writes segment `i` of `plan` (a frame the kernel would have put on the wire) into `out` at
 * `at` and returns its length: headers copied, IPv4 total length, id +1 per segment and header
 * checksum, IPv6 payload length, TCP sequence advanced, FIN and PSH kept on the last segment
 * only and CWR on the first only, and the TCP checksum computed in full: the header checksums
 * are finished from the plan's sums, only the payload is summed per segment. With `partial`
 * the TCP checksum field gets the pseudo-header sum instead, as the kernel leaves it for an
 * offload (`isPartialTcpChecksum`), and the payload is not read twice.
 */
export function writeTcpSegment(plan: TcpSegmentPlan, frame: Uint8Array, i: number, out: Uint8Array, at: number, partial = false): number {
  const l = plan.layout;
  const { headers, mss, count } = plan;
  const off = i * mss;
  const segLen = Math.min(mss, plan.payloadBytes - off);
  const from = headers + off;
  out.set(plan.head, at);
  out.set(new Uint8Array(plan.buffer, plan.byteOffset + from, segLen), at + headers);
  const ipLen = l.ipHeaderBytes + l.tcpHeaderBytes + segLen;
  const ip = at + l.ipStart;
  if (l.v6) {
    const n = ipLen - IPV6_HEADER_BYTES;
    out[ip + 4] = n >>> 8;
    out[ip + 5] = n & 0xff;
  } else {
    const id = (plan.id0 + i) & 0xffff;
    out[ip + 2] = ipLen >>> 8;
    out[ip + 3] = ipLen & 0xff;
    out[ip + 4] = id >>> 8;
    out[ip + 5] = id & 0xff;
    const c = ~foldChecksum(plan.ipSum + ipLen + id) & 0xffff;
    out[ip + 10] = c >>> 8;
    out[ip + 11] = c & 0xff;
  }
  const t = at + l.tcpStart;
  const seq = (plan.seq0 + off) >>> 0;
  out[t + 4] = seq >>> 24;
  out[t + 5] = (seq >>> 16) & 0xff;
  out[t + 6] = (seq >>> 8) & 0xff;
  out[t + 7] = seq & 0xff;
  let flags = plan.flags0;
  if (i < count - 1) flags &= ~(TCP_FIN | TCP_PSH);
  if (i > 0) flags &= ~TCP_CWR;
  out[t + 13] = flags;
  const l4Len = l.tcpHeaderBytes + segLen;
  let c: number;
  if (partial) c = foldChecksum(plan.pseudoSum + l4Len);
  else {
    // Pseudo header, sequence number, flags word; the payload straight from the super-frame.
    const head = plan.pseudoSum + l4Len + plan.tcpSum + (seq >>> 16) + (seq & 0xffff) + (((out[t + 12] as number) << 8) | flags);
    c = ~onesComplementSum(frame, from, from + segLen, head) & 0xffff;
  }
  out[t + TCP_CHECKSUM_OFFSET] = c >>> 8;
  out[t + TCP_CHECKSUM_OFFSET + 1] = c & 0xff;
  return headers + segLen;
}

/**
 * Where the TCP checksum of `frame` starts when its field holds the pseudo-header sum (a
 * partial checksum, as `writeTcpSegment` leaves it with `partial`), else -1. Unfragmented TCP
 * over IPv4 or IPv6 (no extension headers) only. A full checksum that happens to equal the
 * pseudo-header sum is taken for partial, harmlessly: finishing it gives it back unchanged.
 */
export function partialTcpChecksumStart(frame: Uint8Array): number {
  const len = frame.length;
  let t: number;
  let sum: number;
  let l4: number;
  if (frame[12] === 0x08 && frame[13] === 0x00) {
    if (len < ETH_HEADER_BYTES + 40 || frame[ETH_HEADER_BYTES + 9] !== IP_PROTO_TCP) return -1;
    if (((frame[20] as number) & 0x3f) !== 0 || frame[21] !== 0) return -1; // a fragment
    const ihl = ((frame[ETH_HEADER_BYTES] as number) & 0x0f) * 4;
    const total = ((frame[16] as number) << 8) | (frame[17] as number);
    t = ETH_HEADER_BYTES + ihl;
    l4 = total - ihl;
    if (ihl < 20 || ETH_HEADER_BYTES + total > len || l4 < 20) return -1;
    sum = wordsSum(frame, ETH_HEADER_BYTES + 12, ETH_HEADER_BYTES + 20);
  } else if (frame[12] === 0x86 && frame[13] === 0xdd) {
    if (len < ETH_HEADER_BYTES + IPV6_HEADER_BYTES + 20 || frame[ETH_HEADER_BYTES + 6] !== IP_PROTO_TCP) return -1;
    l4 = ((frame[18] as number) << 8) | (frame[19] as number);
    t = ETH_HEADER_BYTES + IPV6_HEADER_BYTES;
    if (t + l4 > len || l4 < 20) return -1;
    sum = wordsSum(frame, ETH_HEADER_BYTES + 8, ETH_HEADER_BYTES + 40);
  } else {
    return -1;
  }
  const field = ((frame[t + TCP_CHECKSUM_OFFSET] as number) << 8) | (frame[t + TCP_CHECKSUM_OFFSET + 1] as number);
  return field === foldChecksum(sum + IP_PROTO_TCP + l4) ? t : -1;
}

/** The virtio header that has the kernel finish a partial TCP checksum, or NO_VNET_HDR. */
export function partialTcpChecksumHdr(frame: Uint8Array): VnetHdr {
  const t = partialTcpChecksumStart(frame);
  if (t < 0) return NO_VNET_HDR;
  return { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: t, csumOffset: TCP_CHECKSUM_OFFSET };
}

/** Finishes a partial TCP checksum in place (for a peer that takes whole ones only); true if it was one. */
export function finishPartialTcpChecksum(frame: Uint8Array): boolean {
  const t = partialTcpChecksumStart(frame);
  if (t < 0) return false;
  const end = frame[12] === 0x08 ? ETH_HEADER_BYTES + (((frame[16] as number) << 8) | (frame[17] as number)) : t + (((frame[18] as number) << 8) | (frame[19] as number));
  const c = ~onesComplementSum(frame, t, end) & 0xffff;
  const v = c === 0 ? CSUM_MANGLED_0 : c;
  frame[t + TCP_CHECKSUM_OFFSET] = v >>> 8;
  frame[t + TCP_CHECKSUM_OFFSET + 1] = v & 0xff;
  return true;
}

/**
 * Software GSO: the frames the kernel would have put on the wire for this super-frame, as
 * fresh Buffers. TCP (v4 and v6): the segments of `writeTcpSegment`. UDP (IPv4): the checksum
 * completed, then IP fragments of gsoSize bytes as UFO did. Without GSO the frame itself is
 * returned, its checksum completed in place when partial.
 */
export function segmentGso(hdr: VnetHdr, frame: Uint8Array): Buffer[] {
  const type = hdr.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
  if (type === VIRTIO_NET_HDR_GSO_NONE) {
    completeChecksum(hdr, frame);
    return [Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.length)];
  }
  if (type === VIRTIO_NET_HDR_GSO_UDP) return segmentUdp(hdr, frame);
  if (type !== VIRTIO_NET_HDR_GSO_TCPV4 && type !== VIRTIO_NET_HDR_GSO_TCPV6) {
    throw new WeaveError('DECODE_FAILED', `virtio_net_hdr: unknown GSO type ${hdr.gsoType}`);
  }
  const plan = planTcpSegments(hdr, frame);
  const out: Buffer[] = [];
  for (let i = 0; i < plan.count; i++) {
    const seg = Buffer.allocUnsafe(plan.headers + Math.min(plan.mss, plan.payloadBytes - i * plan.mss));
    writeTcpSegment(plan, frame, i, seg, 0);
    out.push(seg);
  }
  return out;
}

function segmentUdp(hdr: VnetHdr, frame: Uint8Array): Buffer[] {
  const ip = parseIpv4Frame(frame);
  if (!ip || ip.truncated || ip.protocol !== IP_PROTO_UDP) throw new WeaveError('DECODE_FAILED', 'UFO: not a whole UDP/IPv4 frame');
  if (ip.ipStart + ip.headerBytes + UDP_HEADER_BYTES > ip.ipStart + ip.totalLength) throw new WeaveError('DECODE_FAILED', 'UFO: short UDP header');
  if (hdr.gsoSize === 0) throw new WeaveError('DECODE_FAILED', 'UFO: gso_size is 0');
  completeChecksum(hdr, frame);
  return fragmentIpv4(frame, ip, ip.headerBytes + hdr.gsoSize);
}

function readU32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}

/**
 * The header to write a large TCP frame from a peer to the TAP as one GSO packet, so the
 * kernel segments it (or hands it whole to a local container): gso_size = mtu - IP header -
 * TCP header, NEEDS_CSUM over the TCP segment. The TCP checksum field is rewritten in place to
 * the pseudo-header sum, which is what NEEDS_CSUM means to the kernel, whatever the peer left
 * there. Frames that fit `mtu`, or that are not unfragmented TCP, get NO_VNET_HDR, untouched.
 */
export function gsoForFrame(frame: Uint8Array, mtu: number): VnetHdr {
  if (frame.length <= mtu + ETH_HEADER_BYTES) return NO_VNET_HDR;
  let l: TcpLayout;
  try {
    l = tcpLayout(frame, 'GSO');
  } catch {
    return NO_VNET_HDR;
  }
  const headers = l.tcpStart + l.tcpHeaderBytes;
  const gsoSize = mtu - l.ipHeaderBytes - l.tcpHeaderBytes;
  if (gsoSize <= 0 || gsoSize > 0xffff || l.end - headers <= gsoSize) return NO_VNET_HDR;
  const partial = foldChecksum(pseudoSum(frame, l, l.end - l.tcpStart));
  frame[l.tcpStart + TCP_CHECKSUM_OFFSET] = partial >>> 8;
  frame[l.tcpStart + TCP_CHECKSUM_OFFSET + 1] = partial & 0xff;
  const ecn = ((frame[l.tcpStart + 13] as number) & TCP_CWR) !== 0 ? VIRTIO_NET_HDR_GSO_ECN : 0;
  return {
    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
    gsoType: (l.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4) | ecn,
    hdrLen: headers,
    gsoSize,
    csumStart: l.tcpStart,
    csumOffset: TCP_CHECKSUM_OFFSET,
  };
}
