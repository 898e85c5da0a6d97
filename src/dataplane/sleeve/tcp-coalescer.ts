// Userspace GRO for frames going to the TAP: consecutive TCP segments of one flow, as a peer's
// UDP GSO train delivers them (or as an original router sends them one per datagram), are
// merged back into one super-frame and written once with a virtio GSO header, so the bridge,
// netfilter and the container's TCP see one packet per 64 KiB instead of ~50. The kernel's
// tcp_gro_receive() rules, made stricter where that keeps this simple:
//
// - Candidates: IPv4 without options and not a fragment, or IPv6 without extension headers;
//   TCP with only ACK (and PSH) set and a payload; the IP length exactly fills the frame.
// - A segment joins the pending ones when the Ethernet header, addresses, ports, TOS/traffic
//   class, TTL/hop limit, DF, ack, window, urgent pointer, TCP header length and options all
//   match, its sequence number continues the payload so far, the IPv4 id is the next one (or
//   unchanged, with DF), its payload is at most the first one's, and the result stays within
//   64 KiB.
// - A shorter segment or one with PSH ends the merge (it joins, then everything is written).
// - Anything else writes what is pending first, then itself, so frames never overtake.
//
// The merged frame is the first segment's headers, with the lengths, IPv4 checksum and PSH
// fixed and a partial TCP checksum (NEEDS_CSUM), followed by every segment's payload: handed
// to the sink as pieces (a gather write), never copied here. The segments' own checksums are
// not checked, so the caller feeds only frames whose integrity is otherwise known (an
// encrypted channel, or a peer whose datagrams carry UDP checksums the kernel verified).
//
// Frames are kept as ranges of the caller's buffers until `flush()`: their bytes must stay
// put until then. Nothing is allocated per frame.
import { ETH_HEADER_BYTES, IPV6_HEADER_BYTES, IP_PROTO_TCP, fillIpv4Checksum, foldChecksum, ipv4PseudoHeaderSum, ipv6PseudoHeaderSum } from './ipv4.js';
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, type VnetHdr,
} from './vnet-hdr.js';
import { WordView } from './word-view.js';

const TCP_FLAG_PSH = 0x08;
const TCP_FLAG_ACK = 0x10;
const TCP_CHECKSUM_OFFSET = 16;
const IPV4_HEADER_BYTES = 20;
const MAX_IP_PACKET_BYTES = 0xffff;
const MAX_HEADER_BYTES = ETH_HEADER_BYTES + IPV6_HEADER_BYTES + 60;

/** Where frames go (the TAP); called synchronously, the pieces are reused afterwards. */
export interface CoalescedFrameSink {
  /** One frame as it came: `buf[start, end)`. */
  frame(buf: Buffer, start: number, end: number): void;
  /**
   * A merged super-frame: the pieces `bufs[i][starts[i], ends[i])` for i < count, in order
   * (the first is the rewritten headers), to be written as one frame with `hdr`.
   */
  merged(bufs: readonly Buffer[], starts: readonly number[], ends: readonly number[], count: number, hdr: VnetHdr): void;
}

export class TcpCoalescer {
  // Piece 0 is the merged headers; pieces 1..count are the segments' payloads (the first
  // segment's headers are read from its own buffer, at heads[1]).
  private readonly bufs: Buffer[] = [];
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private firstStart = 0;
  private count = 0;
  private v6 = false;
  /** TCP header offset and header bytes, relative to a frame's start. */
  private tcp = 0;
  private headers = 0;
  private mss = 0;
  private payloadBytes = 0;
  private nextSeq = 0;
  private lastId = 0;
  private psh = false;
  private readonly head = Buffer.alloc(MAX_HEADER_BYTES);
  /**
   * The first segment's headers as native 16-bit words, and per word the bits a later
   * segment's word must have equal: all (0xffff), none (lengths, id, sequence number,
   * checksums: checked apart or rewritten), or all but PSH (the flags word). fits() compares
   * masked rather than branching on a rule, with the 32-bit copies below; these 16-bit ones
   * build them and serve headers that reach past the buffer's last whole 32-bit word. Frames
   * at odd offsets fall back to bytes (fitsBytes).
   */
  private readonly tpl = new Uint16Array(MAX_HEADER_BYTES / 2);
  private readonly mask = new Uint16Array(MAX_HEADER_BYTES / 2);
  /**
   * The same as 32-bit words, half the loads again, for a frame at an address ≡ 0 (phase 0) or
   * ≡ 2 (phase 1) mod 4: tpl and mask placed at byte 0 or 2 of their own buffers, the bytes
   * around them masked out. (A train's datagrams alternate between the two phases.)
   */
  private readonly tpl32 = [0, 1].map(() => new Uint32Array(MAX_HEADER_BYTES / 4 + 2));
  private readonly mask32 = [0, 1].map(() => new Uint32Array(MAX_HEADER_BYTES / 4 + 2));
  private readonly tpl32as16 = this.tpl32.map((a) => new Uint16Array(a.buffer));
  private readonly mask32as16 = this.mask32.map((a) => new Uint16Array(a.buffer));
  private readonly count32 = [0, 0];
  private readonly view = new WordView();
  /** Segments merged and super-frames written, for tests and counters. */
  merged = 0;
  written = 0;

  constructor(private readonly sink: CoalescedFrameSink) {
    this.bufs[0] = this.head;
    this.starts[0] = 0;
  }

  /**
   * Takes the frame `buf[start, end)` for the TAP; it may wait here until `flush()`. True when
   * it does (a merge is pending that ends with it), false when it was written already.
   */
  push(buf: Buffer, start: number, end: number): boolean {
    const tcp = candidate(buf, start, end);
    if (tcp < 0) {
      this.flush();
      this.sink.frame(buf, start, end);
      return false;
    }
    if (this.count > 0 && this.fits(buf, start, end, tcp)) {
      this.append(buf, start, end);
      if (this.psh || end - start - this.headers < this.mss) this.flush();
      return this.count > 0;
    }
    this.flush();
    this.begin(buf, start, end, tcp);
    if (this.psh) this.flush();
    return this.count > 0;
  }

  /**
   * Appends `buf[start, end)` only if it continues the pending merge and the last segment
   * taken ended at `prevEnd` in the same buffer (the datagram before it in a GRO buffer);
   * false, with nothing done, otherwise.
   */
  tryAppend(buf: Buffer, start: number, end: number, prevEnd: number): boolean {
    const n = this.count;
    if (n === 0 || this.bufs[n] !== buf || this.ends[n] !== prevEnd) return false;
    if (((this.view.at(buf).base + start) & 1) === 0) {
      // The word compare in fits() holds the segment to everything candidate() checks of the
      // first one (ethertype, IP version and header length, protocol, fragment bits, TCP
      // header length and flags) except the IP length, checked here.
      if (!this.ipLengthFills(buf, start, end) || !this.fits(buf, start, end, this.tcp)) return false;
    } else {
      const tcp = candidate(buf, start, end);
      if (tcp < 0 || !this.fits(buf, start, end, tcp)) return false;
    }
    this.append(buf, start, end);
    if (this.psh || end - start - this.headers < this.mss) this.flush();
    return true;
  }

  /** Writes whatever is pending. */
  flush(): void {
    const n = this.count;
    if (n === 0) return;
    this.count = 0;
    const first = this.bufs[1] as Buffer;
    const s = this.firstStart;
    if (n === 1) {
      this.bufs[1] = EMPTY;
      this.sink.frame(first, s, this.ends[1] as number);
      return;
    }
    const out = this.head;
    const headers = this.headers;
    for (let i = 0; i < headers; i++) out[i] = first[s + i] as number;
    const total = headers + this.payloadBytes;
    const t = this.tcp;
    const l4 = total - t;
    let pseudo: number;
    if (this.v6) {
      const n6 = total - ETH_HEADER_BYTES - IPV6_HEADER_BYTES;
      out[ETH_HEADER_BYTES + 4] = n6 >>> 8;
      out[ETH_HEADER_BYTES + 5] = n6 & 0xff;
      pseudo = ipv6PseudoHeaderSum(out, ETH_HEADER_BYTES, IP_PROTO_TCP, l4);
    } else {
      const n4 = total - ETH_HEADER_BYTES;
      out[ETH_HEADER_BYTES + 2] = n4 >>> 8;
      out[ETH_HEADER_BYTES + 3] = n4 & 0xff;
      fillIpv4Checksum(out, ETH_HEADER_BYTES);
      pseudo = ipv4PseudoHeaderSum(out, ETH_HEADER_BYTES, IP_PROTO_TCP, l4);
    }
    if (this.psh) out[t + 13] = (out[t + 13] as number) | TCP_FLAG_PSH;
    // NEEDS_CSUM: the field holds the pseudo-header sum, the kernel finishes it if it must.
    const partial = foldChecksum(pseudo);
    out[t + TCP_CHECKSUM_OFFSET] = partial >>> 8;
    out[t + TCP_CHECKSUM_OFFSET + 1] = partial & 0xff;
    this.ends[0] = headers;
    this.merged += n;
    this.written++;
    this.sink.merged(this.bufs, this.starts, this.ends, n + 1, {
      flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
      gsoType: this.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4,
      hdrLen: headers,
      gsoSize: this.mss,
      csumStart: t,
      csumOffset: TCP_CHECKSUM_OFFSET,
    });
    for (let i = 1; i <= n; i++) this.bufs[i] = EMPTY;
  }

  private begin(buf: Buffer, start: number, end: number, tcp: number): void {
    const headers = tcp + (((buf[start + tcp + 12] as number) >>> 4) << 2);
    this.bufs[1] = buf;
    this.starts[1] = start + headers;
    this.ends[1] = end;
    this.firstStart = start;
    this.count = 1;
    this.v6 = buf[start + 12] === 0x86;
    this.tcp = tcp;
    this.headers = headers;
    this.mss = end - start - headers;
    this.payloadBytes = this.mss;
    this.nextSeq = (readU32(buf, start + tcp + 4) + this.mss) >>> 0;
    this.lastId = this.v6 ? 0 : ((buf[start + 18] as number) << 8) | (buf[start + 19] as number);
    this.psh = ((buf[start + tcp + 13] as number) & TCP_FLAG_PSH) !== 0;
    const words = headers >>> 1;
    const view = this.view.at(buf);
    const abs = view.base + start;
    if ((abs & 1) === 0) {
      const v = view.words;
      const w0 = abs >>> 1;
      for (let w = 0; w < words; w++) this.tpl[w] = v[w0 + w] as number;
    } else {
      for (let w = 0; w < words; w++) this.tpl[w] = (buf[start + 2 * w] as number) | ((buf[start + 2 * w + 1] as number) << 8);
    }
    const m = this.mask;
    m.fill(0xffff, 0, words);
    const t2 = tcp >>> 1;
    if (this.v6) m[9] = 0; // payload length
    else m[8] = m[9] = m[12] = 0; // total length, id, header checksum
    m[t2 + 2] = m[t2 + 3] = 0; // sequence number
    // The doff byte and the flags byte; PSH is the flags byte's 0x08, which sits in the high
    // half of a little-endian word.
    m[t2 + 6] = LITTLE_ENDIAN ? ~(TCP_FLAG_PSH << 8) & 0xffff : ~TCP_FLAG_PSH & 0xffff;
    m[t2 + 8] = 0; // checksum
    for (let p = 0; p < 2; p++) {
      const t16 = this.tpl32as16[p] as Uint16Array;
      const m16 = this.mask32as16[p] as Uint16Array;
      // Phase 1 starts with the half word before the frame, and either may end with a half word after it.
      t16[0] = m16[0] = 0;
      t16.set(this.tpl.subarray(0, words), p);
      m16.set(m.subarray(0, words), p);
      t16[words + p] = m16[words + p] = 0;
      this.count32[p] = (words + p + 1) >>> 1;
    }
  }

  private append(buf: Buffer, start: number, end: number): void {
    const i = ++this.count;
    this.bufs[i] = buf;
    this.starts[i] = start + this.headers;
    this.ends[i] = end;
    const payload = end - start - this.headers;
    this.payloadBytes += payload;
    this.nextSeq = (this.nextSeq + payload) >>> 0;
    if (!this.v6) this.lastId = ((buf[start + 18] as number) << 8) | (buf[start + 19] as number);
    this.psh = ((buf[start + this.tcp + 13] as number) & TCP_FLAG_PSH) !== 0;
  }

  private fits(b: Buffer, s: number, e: number, tcp: number): boolean {
    const headers = this.headers;
    if (tcp !== this.tcp || e - s <= headers) return false;
    const payload = e - s - headers;
    if (payload > this.mss || headers - ETH_HEADER_BYTES + this.payloadBytes + payload > MAX_IP_PACKET_BYTES) return false;
    const t = s + tcp;
    if (readU32(b, t + 4) !== this.nextSeq) return false;
    if (!this.v6) {
      const id = ((b[s + 18] as number) << 8) | (b[s + 19] as number);
      if (id !== ((this.lastId + 1) & 0xffff) && !(((b[s + 20] as number) & 0x40) !== 0 && id === this.lastId)) return false;
    }
    const view = this.view.at(b);
    const abs = view.base + s;
    if ((abs & 1) !== 0) return this.fitsBytes(b, s, tcp);
    const p = (abs & 2) >>> 1;
    const n32 = this.count32[p] as number;
    const v32 = view.words32;
    const w32 = (abs - 2 * p) >>> 2;
    let diff = 0;
    if (w32 + n32 <= v32.length) {
      const tpl = this.tpl32[p] as Uint32Array;
      const mask = this.mask32[p] as Uint32Array;
      for (let w = 0; w < n32; w++) diff |= ((v32[w32 + w] as number) ^ (tpl[w] as number)) & (mask[w] as number);
    } else {
      // The headers reach into the ArrayBuffer's last few bytes, which no 32-bit word covers.
      const v = view.words;
      const w0 = abs >>> 1;
      const tpl = this.tpl;
      const mask = this.mask;
      for (let w = 0, n = headers >>> 1; w < n; w++) diff |= ((v[w0 + w] as number) ^ (tpl[w] as number)) & (mask[w] as number);
    }
    return diff === 0;
  }

  /** The IP length field (IPv4 total, IPv6 payload) says the packet ends where the frame does. */
  private ipLengthFills(b: Buffer, s: number, e: number): boolean {
    if (this.v6) return (((b[s + 18] as number) << 8) | (b[s + 19] as number)) === e - s - ETH_HEADER_BYTES - IPV6_HEADER_BYTES;
    return (((b[s + 16] as number) << 8) | (b[s + 17] as number)) === e - s - ETH_HEADER_BYTES;
  }

  /** fits() for a frame at an odd address: byte by byte. */
  private fitsBytes(b: Buffer, s: number, tcp: number): boolean {
    const headers = this.headers;
    const t = s + tcp;
    const f = this.bufs[1] as Buffer;
    const fs = this.firstStart;
    const ft = fs + tcp;
    // Ports, then ack; TCP header length and flags (ACK; PSH only on the last), window, and
    // the urgent pointer (unused without URG, but the word compare in fits() holds it too).
    if (readU32(b, t) !== readU32(f, ft) || readU32(b, t + 8) !== readU32(f, ft + 8) || b[t + 12] !== f[ft + 12]) return false;
    if (b[t + 14] !== f[ft + 14] || b[t + 15] !== f[ft + 15] || b[t + 18] !== f[ft + 18] || b[t + 19] !== f[ft + 19]) return false;
    if (this.v6) {
      // Version, traffic class, flow label; next header and hop limit; both addresses.
      if (readU32(b, s + 14) !== readU32(f, fs + 14) || b[s + 20] !== f[fs + 20] || b[s + 21] !== f[fs + 21]) return false;
      for (let i = 22; i < 54; i += 4) if (readU32(b, s + i) !== readU32(f, fs + i)) return false;
    } else {
      // TOS; flags (DF); TTL; both addresses; the id follows the last one's (or, with DF, stays).
      if (b[s + 15] !== f[fs + 15] || b[s + 20] !== f[fs + 20] || b[s + 22] !== f[fs + 22]) return false;
      if (readU32(b, s + 26) !== readU32(f, fs + 26) || readU32(b, s + 30) !== readU32(f, fs + 30)) return false;
    }
    // MACs and ethertype.
    if (readU32(b, s) !== readU32(f, fs) || readU32(b, s + 4) !== readU32(f, fs + 4) || readU32(b, s + 8) !== readU32(f, fs + 8) || b[s + 12] !== f[fs + 12]) return false;
    // TCP options (whole 32-bit words).
    for (let i = t + 20, j = ft + 20, end = s + headers; i < end; i += 4, j += 4) if (readU32(b, i) !== readU32(f, j)) return false;
    return true;
  }
}

const EMPTY = Buffer.alloc(0);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Where TCP starts (relative to `start`) if the frame may be merged at all, else -1. */
function candidate(b: Buffer, s: number, e: number): number {
  const len = e - s;
  if (len < ETH_HEADER_BYTES + IPV4_HEADER_BYTES + 20) return -1;
  let t: number;
  if (b[s + 12] === 0x08 && b[s + 13] === 0x00) {
    if (b[s + 14] !== 0x45 || b[s + 23] !== IP_PROTO_TCP) return -1;
    if ((((b[s + 16] as number) << 8) | (b[s + 17] as number)) !== len - ETH_HEADER_BYTES) return -1;
    if (((b[s + 20] as number) & 0x3f) !== 0 || b[s + 21] !== 0) return -1; // MF or an offset
    t = ETH_HEADER_BYTES + IPV4_HEADER_BYTES;
  } else if (b[s + 12] === 0x86 && b[s + 13] === 0xdd) {
    if (len < ETH_HEADER_BYTES + IPV6_HEADER_BYTES + 20 || ((b[s + 14] as number) >>> 4) !== 6 || b[s + 20] !== IP_PROTO_TCP) return -1;
    if ((((b[s + 18] as number) << 8) | (b[s + 19] as number)) !== len - ETH_HEADER_BYTES - IPV6_HEADER_BYTES) return -1;
    t = ETH_HEADER_BYTES + IPV6_HEADER_BYTES;
  } else {
    return -1;
  }
  const doffByte = b[s + t + 12] as number;
  const doff = (doffByte >>> 4) << 2;
  if (doff < 20 || t + doff >= len) return -1; // no payload: nothing to merge
  const flags = b[s + t + 13] as number;
  if ((flags & ~TCP_FLAG_PSH) !== TCP_FLAG_ACK || (doffByte & 0x0f) !== 0) return -1;
  return t;
}

function readU32(b: Uint8Array, o: number): number {
  return (((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number)) >>> 0;
}
