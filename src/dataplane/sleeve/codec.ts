// Sleeve's UDP packet format, byte-compatible with weave 2.8 (`router/sleeve.go`,
// `router/frame_crypto.go`), without I/O.
//
//   plain packet      [6 sender peer] then frames
//   encrypted packet  [6 sender peer][u64 BE: bit 63 DF, seq][secretbox: 16 tag + frames]
//   frame             [6 src peer][6 dst peer][u16 BE length][Ethernet frame]
//
// Frames to one peer are batched into one datagram (at most 100, and only while the packet
// stays within the peer's maxPayload). Special frames made by the routers themselves have an
// all-zero Ethernet header and are told apart by length: heartbeat (22), fragmentation test
// (60001) and anything else is an MTU test. Their answers travel over TCP as sleeve control
// messages inside mesh OverlayControlMsg (tag 7).
//
// Sizes (the original's diagram): UDP payload = packet overhead + frames; the overlay MTU is
// what is left of the path MTU after IP+UDP (28), the packet overhead (6 plain, 30 encrypted),
// one frame header (14) and the inner Ethernet header (14): 1500 gives 1438 plain, 1414 encrypted.
import { WeaveError } from '../../core/errors.js';
import type { PeerName } from '../../core/peer-name.js';
import type { OverlayControlMsg } from '../../mesh/protocol.js';
import { SECRETBOX_MAC_BYTES } from '../../mesh/sodium.js';

export const UDP_OVERHEAD = 28;
export const ETHERNET_OVERHEAD = 14;
export const SLEEVE_PREFIX_BYTES = 6;
export const SLEEVE_FRAME_HEADER_BYTES = 14;
export const ENCRYPTED_SEQ_BYTES = 8;
/** Bytes before the first frame: the sender, plus the sequence word and tag when encrypted. */
export const PLAIN_PACKET_OVERHEAD = SLEEVE_PREFIX_BYTES;
export const ENCRYPTED_PACKET_OVERHEAD = SLEEVE_PREFIX_BYTES + ENCRYPTED_SEQ_BYTES + SECRETBOX_MAC_BYTES;
/** The original's MaxUDPPacketSize. */
export const MAX_UDP_PACKET_BYTES = 65535;
/** The overlay MTU before discovery (the original's DefaultMTU). */
export const DEFAULT_MTU = 65535;
/** maxPayload before discovery, and the limit for a lone frame on the non-DF path. */
export const DEFAULT_MAX_PAYLOAD = DEFAULT_MTU - UDP_OVERHEAD;
export const NON_DF_MAX_PAYLOAD = MAX_UDP_PACKET_BYTES - UDP_OVERHEAD;
/** Frames per datagram: the original flushes after this many to let its other work run. */
export const MAX_FRAMES_PER_PACKET = 100;
/** Lower bound of the MTU binary search (the original's first mtuHighestGood). */
export const MIN_VERIFIED_MTU = 552;
export const HEARTBEAT_FRAME_BYTES = ETHERNET_OVERHEAD + 8;
export const FRAG_TEST_FRAME_BYTES = 60001;
/** The DF probe whose EMSGSIZE starts PMTU discovery. */
export const PMTU_DISCOVERY_FRAME_BYTES = 60000;

/** Packet overhead: 6 plain, 30 encrypted (the original's Encryptor.PacketOverhead()). */
export function packetOverhead(encrypted: boolean): number {
  return encrypted ? ENCRYPTED_PACKET_OVERHEAD : PLAIN_PACKET_OVERHEAD;
}

/** Path MTU minus overlay MTU: 62 plain, 86 encrypted (the original's overheadDF). */
export function sleeveOverheadDF(encrypted: boolean): number {
  return UDP_OVERHEAD + packetOverhead(encrypted) + SLEEVE_FRAME_HEADER_BYTES + ETHERNET_OVERHEAD;
}

/** Overlay MTU for an underlay path MTU: 1500 gives 1438 plain, 1414 encrypted. */
export function sleeveMtu(pmtu: number, encrypted: boolean): number {
  return pmtu - sleeveOverheadDF(encrypted);
}

/** Largest UDP payload on the DF path once `mtu` is verified (mtu + overheadDF - 28). */
export function sleeveMaxPayload(mtu: number, encrypted: boolean): number {
  return mtu + sleeveOverheadDF(encrypted) - UDP_OVERHEAD;
}

/** The original's fits(): a packet of `packetLength` bytes can take a frame of `frameLength`. */
export function frameFits(packetLength: number, frameLength: number, limit: number): boolean {
  return packetLength + SLEEVE_FRAME_HEADER_BYTES + frameLength <= limit;
}

/** The original's frameTooBig(): an MTU counts IP bytes, a frame adds its Ethernet header. */
export function frameTooBig(frameLength: number, mtu: number): boolean {
  return frameLength > mtu + ETHERNET_OVERHEAD;
}

// Peer names are 48-bit integers; these avoid the range checks of Buffer.writeUIntBE on the
// hot path (a PeerName is already known to be valid).
export function writePeerNameAt(buf: Uint8Array, offset: number, name: PeerName): void {
  const hi = Math.floor(name / 0x100000000);
  const lo = name >>> 0;
  buf[offset] = hi >>> 8;
  buf[offset + 1] = hi;
  buf[offset + 2] = lo >>> 24;
  buf[offset + 3] = lo >>> 16;
  buf[offset + 4] = lo >>> 8;
  buf[offset + 5] = lo;
}

export function readPeerNameAt(buf: Uint8Array, offset: number): PeerName {
  const hi = ((buf[offset] as number) << 8) | (buf[offset + 1] as number);
  const lo = (((buf[offset + 2] as number) << 24) | ((buf[offset + 3] as number) << 16) | ((buf[offset + 4] as number) << 8) | (buf[offset + 5] as number)) >>> 0;
  return hi * 0x100000000 + lo;
}

// ---------------------------------------------------------------------------------------------
// Building packets

export interface SleeveBatchOptions {
  /** Leave room for the sequence word and tag so SleeveEncryptor.sealBatch() seals in place. */
  readonly encrypted?: boolean;
  /** The default limit of tryAdd(); the forwarder's maxPayload, updated as PMTU is learnt. */
  readonly maxPayloadBytes?: number;
}

/**
 * Accumulates frames into one datagram in a caller-owned buffer, copying each frame once.
 * `length` counts the whole packet including its overhead (the original's TotalLen()), so
 * the fit test is the original's. Plain: `bytes()` is the datagram. Encrypted: the frames sit
 * after a 30-byte gap that the encryptor fills while it seals in place.
 */
export class SleeveBatch {
  readonly buf: Buffer;
  readonly sender: PeerName;
  readonly encrypted: boolean;
  readonly headerBytes: number;
  maxPayloadBytes: number;
  private len: number;
  private count = 0;

  constructor(buf: Buffer, sender: PeerName, opts: SleeveBatchOptions = {}) {
    this.encrypted = opts.encrypted ?? false;
    this.headerBytes = packetOverhead(this.encrypted);
    if (buf.length < this.headerBytes) throw new WeaveError('INVALID_ARGUMENT', `sleeve batch buffer of ${buf.length} bytes is too small`);
    this.buf = buf;
    this.sender = sender;
    this.maxPayloadBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD;
    this.len = this.headerBytes;
    writePeerNameAt(buf, 0, sender);
  }

  /** Packet bytes so far, overhead included. */
  get length(): number {
    return this.len;
  }

  get frameCount(): number {
    return this.count;
  }

  get isEmpty(): boolean {
    return this.count === 0;
  }

  /** Holds the most frames the original puts in one datagram. */
  get isFull(): boolean {
    return this.count >= MAX_FRAMES_PER_PACKET;
  }

  /** Whether a frame of `frameLength` bytes could be added. */
  fits(frameLength: number, limit = this.maxPayloadBytes): boolean {
    return (
      this.count < MAX_FRAMES_PER_PACKET &&
      frameLength > 0 &&
      frameLength <= 0xffff &&
      frameFits(this.len, frameLength, limit) &&
      this.len + SLEEVE_FRAME_HEADER_BYTES + frameLength <= this.buf.length
    );
  }

  /**
   * Appends a frame; false (nothing written) when it does not fit `limit` (the forwarder's
   * maxPayload; the original allows a lone first frame the channel's own limit), the buffer,
   * or the 100-frame cap. Empty frames are refused: the receiver would reject the packet.
   */
  tryAdd(src: PeerName, dst: PeerName, frame: Uint8Array, limit = this.maxPayloadBytes): boolean {
    const at = this.reserve(src, dst, frame.length, limit);
    if (at < 0) return false;
    this.buf.set(frame, at);
    return true;
  }

  /**
   * Appends a frame header and returns where the caller must write the `frameLength` frame
   * bytes (so a TAP read can land in place), or -1 when it does not fit.
   */
  reserve(src: PeerName, dst: PeerName, frameLength: number, limit = this.maxPayloadBytes): number {
    if (!this.fits(frameLength, limit)) return -1;
    const b = this.buf;
    const o = this.len;
    writePeerNameAt(b, o, src);
    writePeerNameAt(b, o + 6, dst);
    b[o + 12] = frameLength >>> 8;
    b[o + 13] = frameLength & 0xff;
    this.len = o + SLEEVE_FRAME_HEADER_BYTES + frameLength;
    this.count++;
    return o + SLEEVE_FRAME_HEADER_BYTES;
  }

  /** The packet so far: the datagram when plain, header gap + plaintext frames when encrypted. */
  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  /** Only the frames (what an encryptor seals). */
  frames(): Buffer {
    return this.buf.subarray(this.headerBytes, this.len);
  }

  reset(): void {
    this.len = this.headerBytes;
    this.count = 0;
  }
}

/** One plaintext packet of given frames, for tests and rare paths (special frames). */
export function encodeSleevePacket(sender: PeerName, frames: ReadonlyArray<{ src: PeerName; dst: PeerName; frame: Uint8Array }>): Buffer {
  let size = SLEEVE_PREFIX_BYTES;
  for (const f of frames) {
    if (f.frame.length > 0xffff) throw new WeaveError('INVALID_ARGUMENT', `sleeve frame of ${f.frame.length} bytes exceeds 65535`);
    size += SLEEVE_FRAME_HEADER_BYTES + f.frame.length;
  }
  const batch = new SleeveBatch(Buffer.allocUnsafe(size), sender);
  for (const f of frames) {
    if (!batch.tryAdd(f.src, f.dst, f.frame, Infinity)) {
      throw new WeaveError('INVALID_ARGUMENT', `sleeve frame ${batch.frameCount} refused: empty, or more than ${MAX_FRAMES_PER_PACKET} frames`);
    }
  }
  return batch.bytes();
}

// ---------------------------------------------------------------------------------------------
// Reading packets

export interface SleeveFrame {
  readonly src: PeerName;
  readonly dst: PeerName;
  /** A view into the packet, not a copy. */
  readonly frame: Buffer;
}

export interface SleevePacket {
  readonly sender: PeerName;
  readonly frames: SleeveFrame[];
}

/** Called per frame with the frame's bounds in the buffer (no allocation). */
export type SleeveFrameVisitor = (src: PeerName, dst: PeerName, buf: Buffer, start: number, end: number) => void;

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

/**
 * Checks the frames in `buf[start, end)` and returns how many there are. The original reads
 * frames while 14 header bytes remain, fails on a length that runs past the end and on 1-13
 * leftover bytes ("trailing garbage"). We also refuse zero-length frames, which no router
 * sends. Zero frames is valid (the original accepts it too).
 */
export function validateSleeveFrames(buf: Uint8Array, start = 0, end = buf.length): number {
  if (start < 0 || end > buf.length || start > end) throw new WeaveError('DECODE_FAILED', 'sleeve frames: range outside the buffer');
  let o = start;
  let n = 0;
  while (end - o >= SLEEVE_FRAME_HEADER_BYTES) {
    const len = ((buf[o + 12] as number) << 8) | (buf[o + 13] as number);
    o += SLEEVE_FRAME_HEADER_BYTES;
    if (len === 0) throw new WeaveError('DECODE_FAILED', `sleeve frame ${n}: zero length`);
    if (end - o < len) throw new WeaveError('DECODE_FAILED', `sleeve frame ${n}: too short; expected frame of length ${len}, got ${end - o}`);
    o += len;
    n++;
  }
  if (o < end) throw new WeaveError('DECODE_FAILED', `sleeve packet: ${end - o} octets of trailing garbage`);
  return n;
}

/**
 * Visits the frames of `buf[start, end)` (plaintext, no sender prefix). All or nothing: a
 * malformed packet throws DECODE_FAILED before any frame is visited, where the original
 * would already have delivered the frames before the fault.
 */
export function visitSleeveFrames(buf: Uint8Array, start: number, end: number, visit: SleeveFrameVisitor): number {
  const n = validateSleeveFrames(buf, start, end);
  const b = asBuffer(buf);
  let o = start;
  for (let i = 0; i < n; i++) {
    const len = ((b[o + 12] as number) << 8) | (b[o + 13] as number);
    const f = o + SLEEVE_FRAME_HEADER_BYTES;
    visit(readPeerNameAt(b, o), readPeerNameAt(b, o + 6), b, f, f + len);
    o = f + len;
  }
  return n;
}

/** The frames of a plaintext (e.g. a decrypted packet), as views. */
export function decodeSleeveFrames(buf: Uint8Array, start = 0, end = buf.length): SleeveFrame[] {
  const frames: SleeveFrame[] = [];
  visitSleeveFrames(buf, start, end, (src, dst, b, s, e) => frames.push({ src, dst, frame: b.subarray(s, e) }));
  return frames;
}

/** A plain sleeve datagram: its sender and frames (views into `buf`). */
export function decodeSleevePacket(buf: Uint8Array): SleevePacket {
  if (buf.length < SLEEVE_PREFIX_BYTES) throw new WeaveError('DECODE_FAILED', `sleeve packet of ${buf.length} bytes is too short`);
  return { sender: readPeerNameAt(buf, 0), frames: decodeSleeveFrames(buf, SLEEVE_PREFIX_BYTES, buf.length) };
}

/** The sender of any sleeve datagram (plain or encrypted), undefined when too short. */
export function sleevePacketSender(buf: Uint8Array): PeerName | undefined {
  return buf.length < SLEEVE_PREFIX_BYTES ? undefined : readPeerNameAt(buf, 0);
}

// ---------------------------------------------------------------------------------------------
// Special frames

export type SpecialFrame =
  | { readonly kind: 'heartbeat'; readonly connUid: bigint }
  /** The original acknowledges only an all-zero test frame; others are dropped. */
  | { readonly kind: 'frag-test'; readonly allZero: boolean }
  | { readonly kind: 'mtu-test'; readonly mtu: number };

/**
 * The original's IsSpecial(): an Ethernet header of zero MACs and a zero 802.3 length, i.e.
 * 14 zero bytes. Such frames go to the forwarder, never to the bridge.
 */
export function isSpecialFrame(frame: Uint8Array): boolean {
  if (frame.length < ETHERNET_OVERHEAD) return false;
  for (let i = 0; i < ETHERNET_OVERHEAD; i++) if (frame[i] !== 0) return false;
  return true;
}

/** What a special frame asks for, by length as the original; undefined for ordinary frames. */
export function classifySpecialFrame(frame: Uint8Array): SpecialFrame | undefined {
  if (!isSpecialFrame(frame)) return undefined;
  if (frame.length === HEARTBEAT_FRAME_BYTES) {
    return { kind: 'heartbeat', connUid: asBuffer(frame).readBigUInt64BE(ETHERNET_OVERHEAD) };
  }
  if (frame.length === FRAG_TEST_FRAME_BYTES) {
    let zero = true;
    for (let i = ETHERNET_OVERHEAD; i < frame.length && zero; i++) zero = frame[i] === 0;
    return { kind: 'frag-test', allZero: zero };
  }
  // Any other length is an MTU test of that size; its content is not looked at.
  return { kind: 'mtu-test', mtu: frame.length - ETHERNET_OVERHEAD };
}

const U64_MAX = (1n << 64n) - 1n;

/** Heartbeat: zero header, then the connection UID (u64 BE). */
export function makeHeartbeatFrame(connUid: bigint): Buffer {
  if (typeof connUid !== 'bigint' || connUid < 0n || connUid > U64_MAX) {
    throw new WeaveError('INVALID_ARGUMENT', `connection UID out of range: ${String(connUid)}`);
  }
  const b = Buffer.alloc(HEARTBEAT_FRAME_BYTES);
  b.writeBigUInt64BE(connUid, ETHERNET_OVERHEAD);
  return b;
}

/** 60001 zero bytes, sent without DF to learn whether IP fragments get through. */
export function makeFragTestFrame(): Buffer {
  return Buffer.alloc(FRAG_TEST_FRAME_BYTES);
}

/** mtu + 14 zero bytes, sent DF: arriving proves an overlay MTU of `mtu`. */
export function makeMtuTestFrame(mtu: number): Buffer {
  if (!Number.isInteger(mtu) || mtu < 0 || mtu + ETHERNET_OVERHEAD > 0xffff) throw new WeaveError('INVALID_ARGUMENT', `MTU test size out of range: ${mtu}`);
  return Buffer.alloc(mtu + ETHERNET_OVERHEAD);
}

/** 60000 zero bytes, sent DF so that the kernel refuses it and reveals the path MTU. */
export function makePmtuDiscoveryFrame(): Buffer {
  return Buffer.alloc(PMTU_DISCOVERY_FRAME_BYTES);
}

// ---------------------------------------------------------------------------------------------
// Control messages (TCP), inside OverlayControlMsg after the overlay index

/** The original's ProtocolConnectionEstablished/FragmentationReceived/PMTUVerified. */
export const SleeveControlTag = Object.freeze({ ConnectionEstablished: 1, FragmentationReceived: 2, PMTUVerified: 3 } as const);

export type SleeveControlMsg =
  | { readonly kind: 'connection-established' }
  | { readonly kind: 'fragmentation-received' }
  | { readonly kind: 'pmtu-verified'; readonly mtu: number };

export function encodeSleeveControlMsg(m: SleeveControlMsg): { subTag: number; msg: Buffer } {
  switch (m.kind) {
    case 'connection-established':
      return { subTag: SleeveControlTag.ConnectionEstablished, msg: Buffer.alloc(0) };
    case 'fragmentation-received':
      return { subTag: SleeveControlTag.FragmentationReceived, msg: Buffer.alloc(0) };
    case 'pmtu-verified': {
      if (!Number.isInteger(m.mtu) || m.mtu < 0 || m.mtu > 0xffff) throw new WeaveError('INVALID_ARGUMENT', `PMTUVerified size out of range: ${m.mtu}`);
      const msg = Buffer.alloc(2);
      msg.writeUInt16BE(m.mtu, 0);
      return { subTag: SleeveControlTag.PMTUVerified, msg };
    }
  }
}

/**
 * A sleeve control message; undefined for a tag sleeve does not know (the original logs and
 * ignores it). A PMTUVerified shorter than 2 bytes is DECODE_FAILED (the original logs
 * "Received truncated MTUTestAck" and ignores it); bytes after the u16 are ignored, as there.
 */
export function decodeSleeveControlMsg(subTag: number, msg: Uint8Array): SleeveControlMsg | undefined {
  switch (subTag) {
    case SleeveControlTag.ConnectionEstablished:
      return { kind: 'connection-established' };
    case SleeveControlTag.FragmentationReceived:
      return { kind: 'fragmentation-received' };
    case SleeveControlTag.PMTUVerified:
      if (msg.length < 2) throw new WeaveError('DECODE_FAILED', 'Received truncated MTUTestAck');
      return { kind: 'pmtu-verified', mtu: ((msg[0] as number) << 8) | (msg[1] as number) };
    default:
      return undefined;
  }
}

/** The OverlayControlMsg (mesh tag 7) body fields carrying `m` for the overlay at `overlayIndex`. */
export function sleeveOverlayControlMsg(overlayIndex: number, m: SleeveControlMsg): OverlayControlMsg {
  const { subTag, msg } = encodeSleeveControlMsg(m);
  return { overlayIndex, subTag, msg };
}
