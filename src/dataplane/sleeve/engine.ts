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
import { formatPeerName, type PeerName } from '../../core/peer-name.js';
import { ENCRYPTED_PACKET_OVERHEAD, SLEEVE_PREFIX_BYTES, SleeveBatch, classifySpecialFrame, validateSleeveFrames } from './codec.js';
import { SleeveDecryptor, SleeveEncryptor } from './frame-crypto.js';
import { fragmentIPv4Frame, icmpFragNeededFrame } from './ipv4.js';
import { NO_VNET_HDR, VIRTIO_NET_HDR_GSO_ECN, VNET_HDR_BYTES, completeChecksum, decodeVnetHdr, gsoForFrame, segmentGso, type VnetHdr } from './vnet-hdr.js';
import type { SleevePeerState } from './overlay.js';

export const MAC_MAX_AGE_MS = 10 * 60_000;
const MAX_UDP_PAYLOAD = 65535 - 28;
const ETHERNET_OVERHEAD = 14;
const BROADCAST_BIT = 0x01;
const STP_MAC = 0x0180c2000000;

/** Messages from the data path to the control side. */
export type DatapathEvent =
  | { t: 'special'; peer: PeerName; ip: string; port: number; frame: Buffer }
  | { t: 'too-big'; peer: PeerName; pmtu: number }
  | { t: 'macs'; learned: [mac: number, peer: PeerName][]; forgotten: number[] }
  | { t: 'heartbeat'; frame: Buffer }
  | { t: 'log'; level: 'info' | 'warn' | 'debug'; msg: string };

export interface EngineIo {
  /** Queues one datagram; the buffer is ours again after `flush`. */
  queueUdp(buf: Buffer, len: number, ip: number, port: number, df: boolean): void;
  /** Sends what is queued; reports datagrams refused as too big (EMSGSIZE), by index. */
  flushUdp(): { tooBig: number[] };
  /** Writes a frame to the bridge; `hdr` is its virtio header when the TAP has them. */
  writeTap(frame: Uint8Array, hdr?: VnetHdr): void;
  post(ev: DatapathEvent): void;
  pathMtu(ip: number): number;
  now(): number;
}

interface PeerOut {
  state: SleevePeerState;
  ipNum: number;
  enc: { df: SleeveEncryptor; nonDf: SleeveEncryptor } | undefined;
  dec: SleeveDecryptor | undefined;
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
  private readonly macs = new Map<number, { peer: PeerName; seen: number }>();
  private readonly pinned = new Set<number>();
  private learned: [number, PeerName][] = [];
  private forgotten: number[] = [];
  private heartbeatMac = -1;
  private readonly pool: Buffer[] = [];
  /** Datagrams queued since the last flush: which peer (to report EMSGSIZE), which buffer. */
  private queued: { peer: PeerOut; buf: Buffer }[] = [];
  private rxIp = 0;
  private rxPort = 0;
  private lastConflictLog = -Infinity;

  private readonly vnetHdr: boolean;
  private readonly bridgeMtu: number;

  /**
   * `vnetHdr`: TAP reads start with a virtio header and may be TCP super-frames (TSO); those
   * go whole (one datagram, fragmented by the kernel) to peers that take them, and cut into
   * MTU-sized segments for everyone else. `bridgeMtu` sizes the segments of super-frames we
   * hand to our bridge.
   */
  constructor(
    private readonly io: EngineIo,
    private readonly ourName: PeerName,
    opts: { vnetHdr?: boolean; bridgeMtu?: number } = {},
  ) {
    this.vnetHdr = opts.vnetHdr ?? false;
    this.bridgeMtu = opts.bridgeMtu ?? 1376;
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
    this.peers.set(state.name, {
      state,
      ipNum: state.ip ? ipv4ToNumber(state.ip) : 0,
      enc: key ? { df: new SleeveEncryptor(key, state.outbound, true), nonDf: new SleeveEncryptor(key, state.outbound, false) } : undefined,
      dec: key ? new SleeveDecryptor(key, state.outbound) : undefined,
      df: undefined,
      nonDf: undefined,
    });
  }

  removePeer(name: PeerName, connUid: bigint): void {
    if (this.peers.get(name)?.state.connUid === connUid) this.peers.delete(name);
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
      if (read[0] !== 0 || read[1] !== 0) {
        // Peers get whole checksums: finish the kernel's partial one once, here.
        const hdr = decodeVnetHdr(read);
        try {
          completeChecksum(hdr, frame);
        } catch {
          return;
        }
        if ((hdr.gsoType & ~VIRTIO_NET_HDR_GSO_ECN) !== 0) gso = { ...hdr, flags: 0 };
      }
    }
    if (frame.length < ETHERNET_OVERHEAD) return;
    const dst = macOf(frame, 0);
    if (dst === this.heartbeatMac) {
      this.io.post({ t: 'heartbeat', frame: Buffer.from(frame) });
      return;
    }
    const src = macOf(frame, 6);
    const now = this.io.now();
    const known = this.macs.get(src);
    if (!known) {
      this.macs.set(src, { peer: this.ourName, seen: now });
      this.learned.push([src, this.ourName]);
    } else if (known.peer !== this.ourName) {
      // Probably a frame we injected coming back; the original drops it too.
      if (now - this.lastConflictLog > 10_000) {
        this.lastConflictLog = now;
        this.io.post({ t: 'log', level: 'warn', msg: `Captured frame from MAC (${formatMac(src)}) associated with another peer ${formatPeerName(known.peer)}` });
      }
      return;
    } else known.seen = now;
    if (dst === STP_MAC) return;
    const owner = (frame[0] as number) & BROADCAST_BIT ? undefined : this.macs.get(dst)?.peer;
    if (owner === this.ourName) return;
    if (owner === undefined) this.relayBroadcast(this.ourName, frame, gso);
    else this.relay(this.ourName, owner, frame, gso);
  }

  /** A UDP datagram from `ip:port`. Bad ones are dropped, never thrown. */
  onDatagram(packet: Buffer, ip: number, port: number): void {
    if (packet.length < 6) return;
    const sender = macOf(packet, 0);
    const p = this.peers.get(sender);
    if (!p) return;
    let start = SLEEVE_PREFIX_BYTES;
    if (p.dec) {
      if (!p.dec.open(packet, { inPlace: true })) return;
      start = ENCRYPTED_PACKET_OVERHEAD;
    }
    try {
      validateSleeveFrames(packet, start, packet.length);
    } catch {
      return; // garbage or a stray packet: the original logs and carries on
    }
    this.rxIp = ip;
    this.rxPort = port;
    let o = start;
    while (o < packet.length) {
      const len = ((packet[o + 12] as number) << 8) | (packet[o + 13] as number);
      const f = o + 14;
      this.onFrame(p, macOf(packet, o), macOf(packet, o + 6), packet.subarray(f, f + len));
      o = f + len;
    }
  }

  private onFrame(from: PeerOut, src: PeerName, dst: PeerName, frame: Buffer): void {
    if (classifySpecialFrame(frame)) {
      if (src === from.state.name && dst === this.ourName) {
        this.io.post({ t: 'special', peer: src, ip: numberToIpv4(this.rxIp), port: this.rxPort, frame: Buffer.from(frame) });
      }
      return;
    }
    if (frame.length < ETHERNET_OVERHEAD) return;
    if (dst !== this.ourName) {
      this.relay(src, dst, frame);
      return;
    }
    const srcMac = macOf(frame, 6);
    const now = this.io.now();
    const known = this.macs.get(srcMac);
    if (!known || known.peer !== src) {
      this.macs.set(srcMac, { peer: src, seen: now });
      this.learned.push([srcMac, src]);
    } else known.seen = now;
    // A super-frame from a peer goes to our bridge as one GSO packet.
    this.io.writeTap(frame, this.vnetHdr && frame.length > this.bridgeMtu + ETHERNET_OVERHEAD ? gsoForFrame(frame, this.bridgeMtu) : undefined);
    const dstMac = macOf(frame, 0);
    if ((frame[0] as number) & BROADCAST_BIT || this.macs.get(dstMac)?.peer !== this.ourName) this.relayBroadcast(src, frame);
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
    const mtu = p.state.mtu;
    const tooBig = frame.length > mtu + ETHERNET_OVERHEAD;
    if (tooBig && this.vnetHdr) {
      // A TCP super-frame (from our TAP, or relayed from a peer that sent one).
      const hdr = gso ?? gsoForFrame(frame, mtu);
      if (hdr !== NO_VNET_HDR) return this.forwardSuperFrame(p, src, dst, frame, broadcast, hdr);
    }
    if (hasDF(frame)) {
      if (!tooBig) return this.enqueue(p, src, dst, frame, true, p.state.maxPayload);
      if (broadcast || src !== this.ourName) return;
      // Tell the local sender the path MTU, as a router on the way would.
      this.io.writeTap(icmpFragNeededFrame(frame, mtu));
      return;
    }
    if (p.state.stackFrag || !isIPv4(frame)) return this.enqueue(p, src, dst, frame, false, MAX_UDP_PAYLOAD);
    if (!tooBig) return this.enqueue(p, src, dst, frame, true, p.state.maxPayload);
    for (const piece of fragmentIPv4Frame(frame, mtu)) this.enqueue(p, src, dst, piece, true, p.state.maxPayload);
  }

  private forwardSuperFrame(p: PeerOut, src: PeerName, dst: PeerName, frame: Buffer, broadcast: boolean, hdr: VnetHdr): void {
    const mtu = p.state.mtu;
    // The packets the sender's TCP meant to send must fit the path, as if segmented first.
    const l3 = frame[12] === 0x86 && frame[13] === 0xdd ? 40 : ((frame[14] as number) & 0x0f) * 4;
    const l4 = ((frame[ETHERNET_OVERHEAD + l3 + 12] as number) >> 4) * 4;
    if (l3 + l4 + hdr.gsoSize > mtu) {
      if (!broadcast && src === this.ourName && isIPv4(frame)) this.io.writeTap(icmpFragNeededFrame(frame, mtu));
      return;
    }
    const overhead = p.enc ? ENCRYPTED_PACKET_OVERHEAD : SLEEVE_PREFIX_BYTES;
    if (p.state.gso && p.state.stackFrag && overhead + 14 + frame.length <= MAX_UDP_PAYLOAD) {
      return this.enqueue(p, src, dst, frame, false, MAX_UDP_PAYLOAD);
    }
    let segments: Buffer[];
    try {
      segments = segmentGso(hdr, frame);
    } catch {
      return;
    }
    for (const seg of segments) this.forward(p, src, dst, seg, broadcast);
  }

  private enqueue(p: PeerOut, src: PeerName, dst: PeerName, frame: Uint8Array, df: boolean, limit: number): void {
    // Even without DF, frames are only packed together while that stays unfragmented.
    const packLimit = Math.min(limit, p.state.maxPayload);
    let batch = df ? p.df : p.nonDf;
    if (batch && (batch.isFull || !batch.fits(frame.length, packLimit))) {
      this.finish(p, batch, df);
      batch = undefined;
    }
    if (!batch) {
      const buf = this.pool.pop() ?? Buffer.allocUnsafe(65536);
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
    this.queued.push({ peer: p, buf: batch.buf });
    this.io.queueUdp(out, out.length, p.ipNum, p.state.port, df);
  }

  private flushPeer(p: PeerOut): void {
    if (p.df) this.finish(p, p.df, true);
    if (p.nonDf) this.finish(p, p.nonDf, false);
  }

  /** Sends everything pending; call after each burst of input. */
  flush(): void {
    for (const p of this.peers.values()) this.flushPeer(p);
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
    if (this.learned.length || this.forgotten.length) {
      this.io.post({ t: 'macs', learned: this.learned, forgotten: this.forgotten });
      this.learned = [];
      this.forgotten = [];
    }
  }

  /** Drops MACs not seen for `maxAgeMs` (the original's 10 min), except pinned ones. */
  expire(maxAgeMs = MAC_MAX_AGE_MS): void {
    const now = this.io.now();
    for (const [mac, e] of this.macs) {
      if (now - e.seen > maxAgeMs && !this.pinned.has(mac)) {
        this.macs.delete(mac);
        if (e.peer !== this.ourName) this.forgotten.push(mac);
      }
    }
  }

  macCount(): number {
    return this.macs.size;
  }
}
