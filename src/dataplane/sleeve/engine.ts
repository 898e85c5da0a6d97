// The sleeve data path's decisions (the original's `network_router.go` with the sleeve
// forwarder's `Process`), free of I/O so it can be tested frame by frame; the worker thread
// feeds it frames from the TAP and datagrams from UDP and gives it a way to send.
//
// - Captured frames (from our bridge): the source MAC is ours; STP is dropped; a known remote
//   destination is relayed towards its peer along unicast routes, anything else is broadcast
//   along our broadcast routes (frame header dst = the next hop, as the original).
// - Received frames: special frames go to the control side; frames for another peer are
//   relayed; frames for us teach us the source MAC's peer, are injected into the bridge, and
//   continue along the sender's broadcast routes unless the destination is local.
// - Per next hop, frames queue in a DF and a non-DF batch (up to 100 frames or the payload
//   limit). DF IPv4 frames over the MTU get an ICMP "fragmentation needed" back; non-DF IPv4
//   frames over it go as the kernel's fragments when the peer passed the fragmentation test,
//   else as our own DF fragments.
// - TCP super-frames from our TAP (virtio GSO) are cut into the segments the sender's TCP
//   meant, each in a sleeve datagram of its own, built straight into one buffer and handed to
//   the kernel as one UDP GSO train (`udpGso`): one send and, between namespaces, one packet
//   through the underlay per 64 KiB, where a fragmented 64 KiB datagram cost 45 of them plus
//   reassembly. Any sleeve receiver takes the train (they are ordinary datagrams); ours gets
//   it back as one buffer (UDP GRO) and merges the segments into a super-frame for its TAP
//   (TcpCoalescer). Without UDP GSO, super-frames go whole to peers that take them (SleeveGSO,
//   when fragments pass) and as separate segments to the others.
import { errorMessage } from '../../core/errors.js';
import { formatPeerName, type PeerName } from '../../core/peer-name.js';
import {
  ENCRYPTED_PACKET_OVERHEAD, SLEEVE_FRAME_HEADER_BYTES, SLEEVE_PREFIX_BYTES, SleeveBatch, classifySpecialFrame, validateSleeveFrames, writePeerNameAt,
} from './codec.js';
import { BoxReassembler, CHUNK_HEADER_BYTES, MIN_CHUNK_DATAGRAM, chunkPlan, isChunk, writeChunks } from './box-chunks.js';
import { SleeveDecryptor, SleeveEncryptor } from './frame-crypto.js';
import { fragmentIPv4Frame, icmpFragNeededFrame } from './ipv4.js';
import { TcpCoalescer } from './tcp-coalescer.js';
import { WordView } from './word-view.js';
import {
  NO_VNET_HDR, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VNET_HDR_BYTES, completeChecksum, decodeVnetHdr, gsoForFrame,
  finishPartialTcpChecksum, partialTcpChecksumHdr, planTcpSegments, segmentGso, writeTcpSegment, type TcpSegmentPlan, type VnetHdr,
} from './vnet-hdr.js';
import type { SleevePeerState } from './overlay.js';

export const MAC_MAX_AGE_MS = 10 * 60_000;
/**
 * MACs kept at most. Frames from any source MAC teach us one (and an unencrypted sleeve takes
 * frames from whoever names a connected peer), and MACs the fast path carries never age here:
 * past this, the MAC learnt longest ago goes, as if it had aged (the fast path then forgets it
 * too). It is learnt again from the next frame of it that crosses the sleeve; one that arrives
 * over VXLAN teaches nobody, so a MAC the fast path carried waits for a broadcast from it (ARP),
 * and frames to it flood over the sleeve until then.
 */
export const MAX_MACS = 65_536;
const MAX_UDP_PAYLOAD = 65535 - 28;
/** Datagrams in one UDP GSO send: the kernel's UDP_MAX_SEGMENTS (64 before Linux 6.x raised it). */
const MAX_GSO_SEGMENTS = 64;
const SEND_BUFFER_BYTES = 65536;
const ETHERNET_OVERHEAD = 14;
const BROADCAST_BIT = 0x01;
const STP_MAC = 0x0180c2000000;

/** One MAC the data path has seen: the peer behind it (ours for local ones), and when, in ms. */
export type MacTableEntry = [mac: number, peer: PeerName, seenMs: number];

/** Messages from the data path to the control side. */
export type DatapathEvent =
  | { t: 'special'; peer: PeerName; ip: string; port: number; frame: Buffer }
  | { t: 'too-big'; peer: PeerName; pmtu: number }
  | { t: 'macs'; learned: [mac: number, peer: PeerName][]; forgotten: number[] }
  /** The whole MAC table (asked for by `weave report`). */
  | { t: 'mac-table'; entries: MacTableEntry[] }
  | { t: 'heartbeat'; frame: Buffer }
  | { t: 'log'; level: 'info' | 'warn' | 'debug'; msg: string }
  /** The data path's thread is set up and about to poll (sent once). */
  | { t: 'ready' };

export interface EngineIo {
  /**
   * Queues one datagram, or with `segmentSize` a UDP GSO train of datagrams of that size
   * (the last may be shorter) in `buf[0, len)`; the buffer is ours again after `flush`.
   * Datagrams leave in this order. `sealed`: encrypted, so a UDP checksum adds nothing.
   */
  queueUdp(buf: Buffer, len: number, ip: number, port: number, df: boolean, segmentSize?: number, sealed?: boolean): void;
  /** Sends what is queued; reports datagrams (trains) refused as too big, by queue index. */
  flushUdp(): { tooBig: number[] };
  /** Writes a frame to the bridge (synchronously); `hdr` is its virtio header when the TAP has them. */
  writeTap(frame: Uint8Array, hdr?: VnetHdr): void;
  /** Writes one frame gathered from `bufs[i][starts[i], ends[i])`, i < count (synchronously, as writev). */
  writeTapv(bufs: readonly Buffer[], starts: readonly number[], ends: readonly number[], count: number, hdr: VnetHdr): void;
  post(ev: DatapathEvent): void;
  pathMtu(ip: number): number;
  now(): number;
}

interface MacEntry {
  peer: PeerName;
  seen: number;
}

interface PeerOut {
  state: SleevePeerState;
  ipNum: number;
  enc: { df: SleeveEncryptor; nonDf: SleeveEncryptor } | undefined;
  dec: SleeveDecryptor | undefined;
  /** Puts chunked boxes from this peer back together (encrypted peers only). */
  chunks: BoxReassembler | undefined;
  df: SleeveBatch | undefined;
  nonDf: SleeveBatch | undefined;
}

export function macOf(frame: Uint8Array, offset: number): number {
  return ((frame[offset] as number) * 0x10000 + (frame[offset + 1] as number) * 0x100 + (frame[offset + 2] as number)) * 0x1000000 +
    ((frame[offset + 3] as number) << 16) + ((frame[offset + 4] as number) << 8) + (frame[offset + 5] as number);
}

export function formatMac(mac: number): string {
  return formatPeerName(mac);
}

export function ipv4ToNumber(ip: string): number {
  const p = ip.split('.').map(Number);
  return (((p[0] ?? 0) << 24) >>> 0) + ((p[1] ?? 0) << 16) + ((p[2] ?? 0) << 8) + (p[3] ?? 0);
}

export function numberToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function isIPv4(frame: Uint8Array): boolean {
  return frame.length >= 34 && frame[12] === 0x08 && frame[13] === 0x00 && ((frame[14] as number) >> 4) === 4;
}

function hasDF(frame: Uint8Array): boolean {
  return isIPv4(frame) && ((frame[20] as number) & 0x40) !== 0;
}

export class SleeveEngine {
  private readonly peers = new Map<PeerName, PeerOut>();
  private unicast = new Map<PeerName, PeerName>();
  private broadcast = new Map<PeerName, PeerName[]>();
  private readonly macs = new Map<number, MacEntry>();
  private readonly maxMacs: number;
  private readonly pinned = new Set<number>();
  private learned: [number, PeerName][] = [];
  private forgotten: number[] = [];
  private heartbeatMac = -1;
  private readonly pool: Buffer[] = [];
  /** Datagrams queued since the last flush, in `queueUdp` order (tooBig indexes it): peer (to report EMSGSIZE), buffer. */
  private queued: { peer: PeerOut; buf: Buffer }[] = [];
  /** Send buffers to reuse after the flush that sent nothing of their own (boxes sent in chunks). */
  private spare: Buffer[] = [];
  /** The last datagram's sender and the last two MAC lookups: a burst is mostly one flow. */
  private lastSender = -1;
  private lastPeer: PeerOut | undefined;
  private cacheMacA = -1;
  private cacheEntryA: MacEntry | undefined;
  private cacheMacB = -1;
  private cacheEntryB: MacEntry | undefined;
  private rxIp = 0;
  private rxPort = 0;
  /** The datagram being read comes from a peer that may send partial TCP checksums. */
  private rxPartial = false;
  /** The frame just handled waits in the coalescer (and went nowhere else). */
  private merging = false;
  /** Where the datagram starts that the rest of a GRO train is compared with; -1: none. */
  private trainStart = -1;
  private readonly view = new WordView();
  /** io.now() as of the last flush: MAC ages need no better. */
  private clock: number;
  private lastConflictLog = -Infinity;
  private lastTooBigLog = -Infinity;
  private lastMalformedLog = -Infinity;
  /** Frames dropped because we could not fragment or answer them (malformed IPv4), for tests and counters. */
  malformed = 0;

  private readonly vnetHdr: boolean;
  private readonly bridgeMtu: number;
  private udpGso: boolean;
  private readonly coalescer: TcpCoalescer;
  /** A captured super-frame that still has the kernel's partial checksum, and its header. */
  private csumPending: { frame: Buffer; hdr: VnetHdr } | undefined;

  /**
   * `vnetHdr`: TAP reads start with a virtio header and may be TCP super-frames (TSO); writes
   * to the TAP may be super-frames too. `udpGso`: queueUdp takes trains (the socket does UDP
   * GSO); super-frames then leave as trains of their segments to every peer. Without it they
   * go whole (one datagram, fragmented by the kernel) to peers that take them, and cut into
   * segments for everyone else. `bridgeMtu` sizes the segments of super-frames we hand to our
   * bridge.
   */
  constructor(
    private readonly io: EngineIo,
    private readonly ourName: PeerName,
    opts: { vnetHdr?: boolean; bridgeMtu?: number; udpGso?: boolean; maxMacs?: number } = {},
  ) {
    this.vnetHdr = opts.vnetHdr ?? false;
    this.maxMacs = opts.maxMacs ?? MAX_MACS;
    this.bridgeMtu = opts.bridgeMtu ?? 1376;
    this.udpGso = opts.udpGso ?? false;
    // Only frames from trusted peers pass the coalescer; single ones may carry a partial TCP
    // checksum (SleeveGSO 3), which the kernel then finishes.
    this.coalescer = new TcpCoalescer({
      frame: (buf, start, end) => {
        const f = buf.subarray(start, end);
        this.io.writeTap(f, partialTcpChecksumHdr(f));
      },
      merged: (bufs, starts, ends, count, hdr) => this.io.writeTapv(bufs, starts, ends, count, hdr),
    });
    this.clock = io.now();
  }

  /** Stops (or resumes) UDP GSO trains, e.g. after the kernel refused one. */
  setUdpGso(on: boolean): void {
    this.udpGso = on;
  }

  // --- control ---------------------------------------------------------------------------

  setPeer(state: SleevePeerState): void {
    const cur = this.peers.get(state.name);
    if (cur && cur.state.connUid === state.connUid && (cur.state.sessionKey === undefined) === (state.sessionKey === undefined)) {
      cur.state = state;
      cur.ipNum = state.ip ? ipv4ToNumber(state.ip) : 0;
      return;
    }
    const key = state.sessionKey;
    this.lastPeer = undefined;
    this.peers.set(state.name, {
      state,
      ipNum: state.ip ? ipv4ToNumber(state.ip) : 0,
      enc: key ? { df: new SleeveEncryptor(key, state.outbound, true), nonDf: new SleeveEncryptor(key, state.outbound, false) } : undefined,
      dec: key ? new SleeveDecryptor(key, state.outbound) : undefined,
      chunks: key ? new BoxReassembler() : undefined,
      df: undefined,
      nonDf: undefined,
    });
  }

  removePeer(name: PeerName, connUid: bigint): void {
    if (this.peers.get(name)?.state.connUid === connUid) {
      this.peers.delete(name);
      this.lastPeer = undefined;
    }
  }

  setRoutes(unicast: [PeerName, PeerName][], broadcast: [PeerName, PeerName[]][]): void {
    this.unicast = new Map(unicast);
    this.broadcast = new Map(broadcast);
  }

  setHeartbeatMac(mac: number): void {
    this.heartbeatMac = mac;
  }

  /** MACs the kernel fast path carries: their frames no longer pass here, so they must not age. */
  pin(mac: number, on: boolean): void {
    if (on) this.pinned.add(mac);
    else this.pinned.delete(mac);
  }

  forgetPeerMacs(peer: PeerName): void {
    for (const [mac, e] of this.macs) {
      if (e.peer === peer) {
        this.macCacheClear();
        this.macs.delete(mac);
        this.forgotten.push(mac);
      }
    }
  }

  sendSpecial(peer: PeerName, df: boolean, frame: Buffer): void {
    const p = this.peers.get(peer);
    if (!p || !p.state.ip) return;
    // Specials travel alone, so a too-big probe cannot take data frames down with it.
    this.flushPeer(p);
    this.enqueue(p, this.ourName, peer, frame, df, MAX_UDP_PAYLOAD);
    this.flushPeer(p);
  }

  // --- data ------------------------------------------------------------------------------

  /** A frame read from the TAP (with its virtio header when on): something on our bridge sent it. */
  onCaptured(read: Buffer): void {
    let frame = read;
    let gso: VnetHdr | undefined;
    if (this.vnetHdr) {
      if (read.length < VNET_HDR_BYTES + ETHERNET_OVERHEAD) return;
      frame = read.subarray(VNET_HDR_BYTES);
      this.csumPending = undefined;
      if (read[0] !== 0 || read[1] !== 0) {
        // Peers get whole checksums: finish the kernel's partial one once, here, unless the
        // frame is a super-frame, whose segments get checksums of their own.
        const hdr = decodeVnetHdr(read);
        if ((hdr.gsoType & ~VIRTIO_NET_HDR_GSO_ECN) !== 0) {
          gso = hdr;
          if (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) this.csumPending = { frame, hdr };
        } else {
          try {
            completeChecksum(hdr, frame);
          } catch {
            return;
          }
        }
      }
    }
    if (frame.length < ETHERNET_OVERHEAD) return;
    const dst = macOf(frame, 0);
    if (dst === this.heartbeatMac) {
      this.io.post({ t: 'heartbeat', frame: Buffer.from(frame) });
      return;
    }
    const src = macOf(frame, 6);
    const now = this.clock;
    const known = this.macEntry(src);
    if (!known) {
      this.learn(src, this.ourName, now);
    } else if (known.peer !== this.ourName) {
      // Probably a frame we injected coming back; the original drops it too.
      if (now - this.lastConflictLog > 10_000) {
        this.lastConflictLog = now;
        this.io.post({ t: 'log', level: 'warn', msg: `Captured frame from MAC (${formatMac(src)}) associated with another peer ${formatPeerName(known.peer)}` });
      }
      return;
    } else known.seen = now;
    if (dst === STP_MAC) return;
    const owner = (frame[0] as number) & BROADCAST_BIT ? undefined : this.macEntry(dst)?.peer;
    if (owner === this.ourName) return;
    if (owner === undefined) this.relayBroadcast(this.ourName, frame, gso);
    else this.relay(this.ourName, owner, frame, gso);
  }

  /**
   * A UDP datagram from `ip:port`, or with `segmentSize` a GRO train of datagrams of that
   * size. Bad ones are dropped, never thrown. The bytes must stay put until `flush()`: frames
   * for our TAP may wait there to be merged.
   */
  onDatagram(packet: Buffer, ip: number, port: number, segmentSize = 0): void {
    const end = packet.length;
    if (!(segmentSize > 0 && end > segmentSize)) {
      this.onPacket(packet, 0, end, ip, port);
      return;
    }
    // A train: the datagrams after one that went all the way to the coalescer as a lone frame
    // for us, and that carry the same sleeve header, only need merging (trainFrame).
    this.trainStart = -1;
    for (let o = 0; o < end; o += segmentSize) {
      const e = Math.min(o + segmentSize, end);
      if (this.trainStart >= 0 && this.trainFrame(packet, o, e)) continue;
      this.trainStart = -1;
      this.onPacket(packet, o, e, ip, port);
    }
    this.trainStart = -1;
  }

  /**
   * Datagram `buf[o, e)` of a train whose datagram at trainStart took the full path: same
   * sender, same frame source and destination peers, one frame filling it, and that frame the
   * continuation of the coalescer's pending merge, which ends where this datagram starts. The
   * full path would learn nothing new from it (its MACs are the merged ones) and relay nothing
   * (the first frame was for us alone).
   */
  private trainFrame(buf: Buffer, o: number, e: number): boolean {
    const h = this.trainStart;
    const f = o + SLEEVE_PREFIX_BYTES + SLEEVE_FRAME_HEADER_BYTES;
    if (e - f < ETHERNET_OVERHEAD || ((buf[f - 2] as number) << 8 | (buf[f - 1] as number)) !== e - f) return false;
    const view = this.view.at(buf);
    if (((view.base + o) & 1) === 0 && ((view.base + h) & 1) === 0) {
      // Word by word: half the loads (a byte loop here was the receiving thread's top cost).
      const v = view.words;
      const a = (view.base + o) >>> 1;
      const b = (view.base + h) >>> 1;
      for (let i = 0; i < (SLEEVE_PREFIX_BYTES + 12) >>> 1; i++) if (v[a + i] !== v[b + i]) return false;
    } else {
      for (let i = 0; i < SLEEVE_PREFIX_BYTES + 12; i++) if (buf[o + i] !== buf[h + i]) return false;
    }
    return this.coalescer.tryAppend(buf, f, e, o);
  }

  /** One datagram, `buf[start, end)`. */
  private onPacket(buf: Buffer, start: number, end: number, ip: number, port: number): void {
    if (end - start < SLEEVE_PREFIX_BYTES) return;
    const sender = macOf(buf, start);
    let p = this.lastPeer;
    if (sender !== this.lastSender || !p) {
      p = this.peers.get(sender);
      if (!p) return;
      this.lastSender = sender;
      this.lastPeer = p;
    }
    let o = start + SLEEVE_PREFIX_BYTES;
    if (p.dec) {
      if (p.chunks && isChunk(buf, start, end)) {
        // A piece of a box: the box, once whole, is a datagram of its own.
        const box = p.chunks.add(buf, start, end);
        if (box) this.onPacket(box, 0, box.length, ip, port);
        this.trainStart = -1;
        return;
      }
      if (!p.dec.openAt(buf, start, end)) return;
      o = start + ENCRYPTED_PACKET_OVERHEAD;
    }
    try {
      validateSleeveFrames(buf, o, end);
    } catch {
      return; // garbage or a stray packet: the original logs and carries on
    }
    this.rxIp = ip;
    this.rxPort = port;
    this.rxPartial = p.state.partialChecksums;
    this.merging = false;
    const first = o;
    while (o < end) {
      const len = ((buf[o + 12] as number) << 8) | (buf[o + 13] as number);
      const f = o + SLEEVE_FRAME_HEADER_BYTES;
      this.onFrame(p, macOf(buf, o), macOf(buf, o + 6), buf, f, f + len);
      o = f + len;
    }
    // A plain datagram of one frame, merged and not relayed: the rest of a train may follow suit.
    if (this.merging && first === start + SLEEVE_PREFIX_BYTES && first + SLEEVE_FRAME_HEADER_BYTES + (((buf[first + 12] as number) << 8) | (buf[first + 13] as number)) === end) {
      this.trainStart = start;
    }
  }

  /** One frame, `buf[start, end)`, of a datagram from peer `from`. */
  private onFrame(from: PeerOut, src: PeerName, dst: PeerName, buf: Buffer, start: number, end: number): void {
    // Special frames have an all-zero Ethernet header: the first byte settles most frames.
    if (buf[start] === 0) {
      const view = buf.subarray(start, end);
      if (classifySpecialFrame(view)) {
        if (src === from.state.name && dst === this.ourName) {
          this.io.post({ t: 'special', peer: src, ip: numberToIpv4(this.rxIp), port: this.rxPort, frame: Buffer.from(view) });
        }
        return;
      }
    }
    if (end - start < ETHERNET_OVERHEAD) return;
    if (dst !== this.ourName) {
      this.relay(src, dst, buf.subarray(start, end));
      return;
    }
    const srcMac = macOf(buf, start + 6);
    const known = this.macEntry(srcMac);
    if (!known || known.peer !== src) this.learn(srcMac, src, this.clock);
    else known.seen = this.clock;
    if (!this.vnetHdr) this.io.writeTap(buf.subarray(start, end));
    else if (end - start > this.bridgeMtu + ETHERNET_OVERHEAD) {
      // A super-frame sent whole goes to our bridge as one GSO packet.
      this.coalescer.flush();
      const frame = buf.subarray(start, end);
      this.io.writeTap(frame, gsoForFrame(frame, this.bridgeMtu));
    } else if (from.dec || from.state.udpChecksums) {
      // Segments whose integrity is known (authenticated, or UDP checksums the kernel checked)
      // are merged back into super-frames.
      this.merging = this.coalescer.push(buf, start, end);
    } else {
      this.coalescer.flush();
      this.io.writeTap(buf.subarray(start, end));
    }
    if ((buf[start] as number) & BROADCAST_BIT || this.macEntry(macOf(buf, start))?.peer !== this.ourName) {
      this.merging = false;
      this.relayBroadcast(src, buf.subarray(start, end));
    }
  }

  private relay(src: PeerName, dst: PeerName, frame: Buffer, gso?: VnetHdr): void {
    const hop = this.unicast.get(dst);
    const p = hop === undefined ? undefined : this.peers.get(hop);
    if (p) this.forward(p, src, dst, frame, false, gso);
  }

  private relayBroadcast(src: PeerName, frame: Buffer, gso?: VnetHdr): void {
    for (const hop of this.broadcast.get(src) ?? []) {
      const p = this.peers.get(hop);
      if (p) this.forward(p, src, hop, frame, true, gso);
    }
  }

  private forward(p: PeerOut, src: PeerName, dst: PeerName, frame: Buffer, broadcast: boolean, gso?: VnetHdr): void {
    if (!p.state.ip) return;
    // Relaying from a peer that may send partial TCP checksums to one that takes whole ones.
    if (src !== this.ourName && this.rxPartial && !p.state.partialChecksums) finishPartialTcpChecksum(frame);
    const mtu = p.state.mtu;
    const tooBig = frame.length > mtu + ETHERNET_OVERHEAD;
    if (tooBig && this.vnetHdr) {
      // A TCP super-frame (from our TAP, or relayed from a peer that sent one).
      const hdr = gso ?? gsoForFrame(frame, mtu);
      if (hdr !== NO_VNET_HDR) return this.forwardSuperFrame(p, src, dst, frame, broadcast, hdr);
    }
    if (!this.finishChecksum(frame)) return;
    if (hasDF(frame)) {
      if (!tooBig) return this.enqueue(p, src, dst, frame, true, p.state.maxPayload);
      return this.fragNeeded(p, src, dst, frame, mtu, broadcast);
    }
    if (p.state.stackFrag || !isIPv4(frame)) return this.enqueue(p, src, dst, frame, false, MAX_UDP_PAYLOAD);
    if (!tooBig) return this.enqueue(p, src, dst, frame, true, p.state.maxPayload);
    let pieces: Buffer[];
    try {
      pieces = fragmentIPv4Frame(frame, mtu);
    } catch (e) {
      // A relayed frame is whatever a peer sent: the original logged and dropped it (checkWarn).
      return this.dropMalformed(e);
    }
    for (const piece of pieces) this.enqueue(p, src, dst, piece, true, p.state.maxPayload);
  }

  private forwardSuperFrame(p: PeerOut, src: PeerName, dst: PeerName, frame: Buffer, broadcast: boolean, hdr: VnetHdr): void {
    const mtu = p.state.mtu;
    // The packets the sender's TCP meant to send must fit the path, as if segmented first.
    const l3 = frame[12] === 0x86 && frame[13] === 0xdd ? 40 : ((frame[14] as number) & 0x0f) * 4;
    const l4 = ((frame[ETHERNET_OVERHEAD + l3 + 12] as number) >> 4) * 4;
    if (l3 + l4 + hdr.gsoSize > mtu) return this.fragNeeded(p, src, dst, frame, mtu, broadcast);
    const overhead = p.enc ? ENCRYPTED_PACKET_OVERHEAD : SLEEVE_PREFIX_BYTES;
    const type = hdr.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
    const tcp = type === VIRTIO_NET_HDR_GSO_TCPV4 || type === VIRTIO_NET_HDR_GSO_TCPV6;
    // A box in chunks needs no fragments to pass: each chunk fits the path.
    const chunked = this.chunksTo(p);
    const whole = p.state.gso && (p.state.stackFrag || chunked) && overhead + 14 + frame.length <= MAX_UDP_PAYLOAD;
    // Encrypted, one box per super-frame beats one per segment (~1 µs fixed cost per box,
    // measured against the kernel's fragmentation: 0.053× against 0.034× the underlay), and
    // in chunks it also spares the fragmentation (finish).
    if (this.udpGso && tcp && !(p.enc && whole)) {
      let plan: TcpSegmentPlan;
      try {
        plan = planTcpSegments(hdr, frame);
      } catch {
        return;
      }
      if (overhead + SLEEVE_FRAME_HEADER_BYTES + plan.headers + plan.mss <= p.state.maxPayload) return this.sendTrain(p, src, dst, frame, plan);
    }
    if (whole) {
      // Our receivers give a whole TCP super-frame a partial checksum anyway (gsoForFrame);
      // SleeveGSO 3 peers say so, older ones were promised whole checksums.
      if (!(tcp && p.state.partialChecksums) && !this.finishChecksum(frame)) return;
      return this.enqueue(p, src, dst, frame, false, MAX_UDP_PAYLOAD);
    }
    // TCP segments get checksums of their own; UFO fragments share the whole one.
    if (!tcp && !this.finishChecksum(frame)) return;
    let segments: Buffer[];
    try {
      segments = segmentGso({ ...hdr, flags: 0 }, frame);
    } catch {
      return;
    }
    for (const seg of segments) this.forward(p, src, dst, seg, broadcast);
  }

  /**
   * A DF frame (or a super-frame's segments) over `p`'s MTU: "fragmentation needed" back to
   * the sender, as a router on the way would. From our bridge, into our bridge; also when the
   * frame is flooded only because its destination MAC is not known yet (Weave Net dropped
   * every flooded one, and a TCP flow to a MAC its router had not learned stalled): a unicast
   * IPv4 packet may get ICMP. Relayed, back to its source peer as if from its destination
   * peer, where the reply's source MAC lives (the original's sendToConsumer(DstPeer, SrcPeer)):
   * without it a path whose later hop is smaller black-holes. Not for a relayed flooded frame,
   * whose destination peer is only the next hop. A packet to a broadcast or multicast address
   * may get none (RFC 1122): dropped, with a log line now and then saying why.
   */
  private fragNeeded(p: PeerOut, src: PeerName, dst: PeerName, frame: Buffer, mtu: number, flooded: boolean): void {
    if (!isIPv4(frame)) return;
    const ours = src === this.ourName;
    const unicast = ((frame[0] as number) & BROADCAST_BIT) === 0 && ((frame[ETHERNET_OVERHEAD + 16] as number) & 0xf0) !== 0xe0;
    if (ours ? !flooded || unicast : !flooded && unicast) {
      let icmp: Buffer;
      try {
        icmp = icmpFragNeededFrame(frame, mtu);
      } catch (e) {
        return this.dropMalformed(e);
      }
      // Not DF, so relaying it cannot come back here.
      if (ours) this.io.writeTap(icmp);
      else this.relay(dst, src, icmp);
      return;
    }
    if (this.clock - this.lastTooBigLog > 10_000) {
      this.lastTooBigLog = this.clock;
      this.io.post({ t: 'log', level: 'warn', msg: `sleeve ->[${formatPeerName(p.state.name)}]: dropping too big DF broadcast frame: frame len ${frame.length}, MTU ${mtu}` });
    }
  }

  /** A frame we cannot fragment or answer (not a sound IPv4 packet): counted and dropped, logged at debug now and then. */
  private dropMalformed(e: unknown): void {
    this.malformed++;
    if (this.clock - this.lastMalformedLog <= 10_000) return;
    this.lastMalformedLog = this.clock;
    this.io.post({ t: 'log', level: 'debug', msg: `sleeve: dropping malformed frame (${this.malformed} so far): ${errorMessage(e)}` });
  }

  /** Completes the captured super-frame's partial checksum before it leaves whole (once). */
  private finishChecksum(frame: Buffer): boolean {
    const pending = this.csumPending;
    if (pending?.frame !== frame) return true;
    this.csumPending = undefined;
    try {
      completeChecksum(pending.hdr, frame);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The segments of a TCP super-frame, each in a sleeve datagram of its own (sealed when
   * encrypted), back to back in send buffers of at most 64 datagrams and 64 KiB: UDP GSO
   * trains. All datagrams but the last of a train have the same size, as GSO needs.
   */
  private sendTrain(p: PeerOut, src: PeerName, dst: PeerName, frame: Buffer, plan: TcpSegmentPlan): void {
    // Whatever is queued for this peer goes first: a segment must not overtake it.
    this.flushPeer(p);
    const enc = p.enc?.df;
    const partial = p.state.partialChecksums;
    const overhead = enc ? ENCRYPTED_PACKET_OVERHEAD : SLEEVE_PREFIX_BYTES;
    const datagram = overhead + SLEEVE_FRAME_HEADER_BYTES + plan.headers + plan.mss;
    const perTrain = Math.max(1, Math.min(MAX_GSO_SEGMENTS, Math.floor(MAX_UDP_PAYLOAD / datagram)));
    for (let i = 0; i < plan.count; ) {
      const n = Math.min(perTrain, plan.count - i);
      const buf = this.pool.pop() ?? Buffer.allocUnsafe(SEND_BUFFER_BYTES);
      let off = 0;
      for (let k = 0; k < n; k++, i++) {
        const start = off;
        const f = start + overhead;
        writePeerNameAt(buf, start, this.ourName);
        writePeerNameAt(buf, f, src);
        writePeerNameAt(buf, f + 6, dst);
        const len = writeTcpSegment(plan, frame, i, buf, f + SLEEVE_FRAME_HEADER_BYTES, partial);
        buf[f + 12] = len >>> 8;
        buf[f + 13] = len & 0xff;
        off = f + SLEEVE_FRAME_HEADER_BYTES + len;
        if (enc) enc.sealAt(this.ourName, buf, start, off);
      }
      this.queued.push({ peer: p, buf });
      this.io.queueUdp(buf, off, p.ipNum, p.state.port, true, n > 1 ? datagram : 0, enc !== undefined);
    }
  }

  private enqueue(p: PeerOut, src: PeerName, dst: PeerName, frame: Uint8Array, df: boolean, limit: number): void {
    // Even without DF, frames are only packed together while that stays unfragmented.
    const packLimit = Math.min(limit, p.state.maxPayload);
    // Frames leave in order: what waits in the other channel's batch goes first.
    const other = df ? p.nonDf : p.df;
    if (other && !other.isEmpty) this.finish(p, other, !df);
    let batch = df ? p.df : p.nonDf;
    if (batch && (batch.isFull || !batch.fits(frame.length, packLimit))) {
      this.finish(p, batch, df);
      batch = undefined;
    }
    if (!batch) {
      const buf = this.pool.pop() ?? Buffer.allocUnsafe(SEND_BUFFER_BYTES);
      batch = new SleeveBatch(buf, this.ourName, { encrypted: p.enc !== undefined });
      if (df) p.df = batch;
      else p.nonDf = batch;
    }
    if (!batch.fits(frame.length, limit)) {
      this.io.post({ t: 'log', level: 'info', msg: `sleeve ->[${formatPeerName(p.state.name)}]: Dropping too big frame during forwarding: frame len ${frame.length}, limit ${limit}` });
      return;
    }
    batch.tryAdd(src, dst, frame, limit);
  }

  private finish(p: PeerOut, batch: SleeveBatch, df: boolean): void {
    if (df) p.df = undefined;
    else p.nonDf = undefined;
    if (batch.isEmpty) {
      this.pool.push(batch.buf);
      return;
    }
    const out = p.enc ? (df ? p.enc.df : p.enc.nonDf).sealBatch(batch) : batch.bytes();
    if (out.length > p.state.maxPayload && this.chunksTo(p)) {
      this.spare.push(batch.buf);
      return this.sendChunks(p, out);
    }
    this.queued.push({ peer: p, buf: batch.buf });
    this.io.queueUdp(out, out.length, p.ipNum, p.state.port, df, 0, p.enc !== undefined);
  }

  /** Sealed datagrams too big for the path go to `p` in chunks (encrypted, SleeveGSO 4, UDP GSO, a path that fits a chunk). */
  private chunksTo(p: PeerOut): boolean {
    return p.enc !== undefined && p.state.boxChunks && this.udpGso && p.state.maxPayload >= MIN_CHUNK_DATAGRAM;
  }

  /**
   * A sealed datagram too big for the path, to a peer that takes chunks: its box in chunks
   * that each fit, as UDP GSO trains (DF: each chunk fits, and a smaller path shows up as
   * EMSGSIZE like any DF datagram). `packet` must stay put until the flush.
   */
  private sendChunks(p: PeerOut, packet: Buffer): void {
    const datagram = p.state.maxPayload;
    const { chunkData, count } = chunkPlan(packet.length, datagram);
    const perTrain = Math.max(1, Math.min(MAX_GSO_SEGMENTS, Math.floor(MAX_UDP_PAYLOAD / datagram)));
    for (let i = 0; i < count; i += perTrain) {
      const n = Math.min(perTrain, count - i);
      const buf = this.pool.pop() ?? Buffer.allocUnsafe(SEND_BUFFER_BYTES);
      const len = writeChunks(packet, packet.length, chunkData, count, i, n, buf);
      this.queued.push({ peer: p, buf });
      this.io.queueUdp(buf, len, p.ipNum, p.state.port, true, n > 1 ? CHUNK_HEADER_BYTES + chunkData : 0, true);
    }
  }

  private flushPeer(p: PeerOut): void {
    if (p.df) this.finish(p, p.df, true);
    if (p.nonDf) this.finish(p, p.nonDf, false);
  }

  /** Sends everything pending and writes merged frames; call after each burst of input. */
  flush(): void {
    this.coalescer.flush();
    this.clock = this.io.now();
    for (const p of this.peers.values()) {
      this.flushPeer(p);
      p.chunks?.recycle();
    }
    if (this.queued.length) {
      const { tooBig } = this.io.flushUdp();
      const reported = new Set<PeerOut>();
      for (const i of tooBig) {
        const q = this.queued[i];
        if (!q || reported.has(q.peer)) continue;
        reported.add(q.peer);
        this.io.post({ t: 'too-big', peer: q.peer.state.name, pmtu: this.io.pathMtu(q.peer.ipNum) });
      }
      for (const q of this.queued) this.pool.push(q.buf);
      this.queued = [];
    }
    for (const b of this.spare) this.pool.push(b);
    this.spare = [];
    if (this.learned.length || this.forgotten.length) {
      this.io.post({ t: 'macs', learned: this.learned, forgotten: this.forgotten });
      this.learned = [];
      this.forgotten = [];
    }
  }

  /** Learns `mac` at `peer` (new, or moved); at MAX_MACS the one learnt longest ago goes first. */
  private learn(mac: number, peer: PeerName, now: number): void {
    this.macCacheClear();
    if (!this.macs.delete(mac) && this.macs.size >= this.maxMacs) {
      for (const [old, e] of this.macs) {
        this.macs.delete(old);
        if (e.peer !== this.ourName) this.forgotten.push(old);
        break;
      }
    }
    this.macs.set(mac, { peer, seen: now });
    // Forgotten and learnt again before the control side heard: it applies learnt, then
    // forgotten, so the forgetting must not be reported.
    const k = this.forgotten.lastIndexOf(mac);
    if (k >= 0) this.forgotten.splice(k, 1);
    this.learned.push([mac, peer]);
  }

  /** Drops MACs not seen for `maxAgeMs` (the original's 10 min), except pinned ones. */
  expire(maxAgeMs = MAC_MAX_AGE_MS): void {
    const now = this.io.now();
    for (const [mac, e] of this.macs) {
      if (now - e.seen > maxAgeMs && !this.pinned.has(mac)) {
        this.macCacheClear();
        this.macs.delete(mac);
        if (e.peer !== this.ourName) this.forgotten.push(mac);
      }
    }
  }

  /** The MAC table's entry for `mac`, through a two-entry cache (cleared on every change). */
  private macEntry(mac: number): MacEntry | undefined {
    if (mac === this.cacheMacA) return this.cacheEntryA;
    if (mac === this.cacheMacB) return this.cacheEntryB;
    const e = this.macs.get(mac);
    this.cacheMacB = this.cacheMacA;
    this.cacheEntryB = this.cacheEntryA;
    this.cacheMacA = mac;
    this.cacheEntryA = e;
    return e;
  }

  private macCacheClear(): void {
    this.cacheMacA = this.cacheMacB = -1;
    this.cacheEntryA = this.cacheEntryB = undefined;
  }

  macCount(): number {
    return this.macs.size;
  }

  macTable(): MacTableEntry[] {
    return [...this.macs].map(([mac, e]) => [mac, e.peer, e.seen]);
  }
}
