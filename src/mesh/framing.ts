// Protocol 2 message framing (mesh `protocol.go` lengthPrefixTCPSender/Receiver): every
// message is a u32 big-endian length then that many bytes, at most 10 MiB. Plus a reader for
// a whole inbound connection stream: header, encryption flag, then frames.
//
// The splitter accepts any chunking (a length prefix split over three TCP segments is fine),
// allocates a message only once all its bytes are there, and refuses an oversized length as
// soon as the prefix is complete, so a lying peer cannot make it buffer 4 GiB. After an error
// it stays failed: the connection must be dropped, as the original does.
import { WeaveError } from '../core/errors.js';
import {
  OUR_PROTOCOL_VERSIONS, PROTOCOL_HEADER_BYTES, decodeProtocolHeader, negotiateProtocolVersion, tryDecodeEncryptionFlag,
  type EncryptionFlag, type ProtocolVersionRange,
} from './protocol.js';

/** mesh `maxTCPMsgSize`. */
export const MAX_TCP_MSG_BYTES = 10 * 1024 * 1024;
export const FRAME_PREFIX_BYTES = 4;

function checkSize(length: number, maxBytes: number): void {
  if (length > maxBytes) {
    throw new WeaveError('INVALID_ARGUMENT', `outgoing message exceeds maximum size: ${length} > ${maxBytes}`);
  }
}

export function encodeFrame(msg: Uint8Array, maxBytes = MAX_TCP_MSG_BYTES): Buffer {
  checkSize(msg.length, maxBytes);
  const out = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + msg.length);
  out.writeUInt32BE(msg.length, 0);
  out.set(msg, FRAME_PREFIX_BYTES);
  return out;
}

/**
 * One protocol message (tag byte + body) on its way to one or more connections. Its protocol 2
 * frame (length prefix + message), which is what an unencrypted connection writes, is made at
 * most once and shared: a broadcast relayed to several neighbours, or the whole-table gossip
 * sent to each, is then one buffer however many connections carry it. Writers must not change
 * what they were given, and transports do not (MeshTransport).
 */
export class OutboundMessage {
  private framed: Buffer | undefined;

  /** `frame`, when given, is `message` with its length prefix, `message` a view of its tail. */
  private constructor(
    readonly message: Buffer,
    frame?: Buffer,
  ) {
    this.framed = frame;
  }

  /** A message whose frame is written at once, in the one buffer (`body` is copied). */
  static of(tag: number, body?: Uint8Array): OutboundMessage {
    const n = 1 + (body?.length ?? 0);
    const frame = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + n);
    frame.writeUInt32BE(n, 0);
    frame[FRAME_PREFIX_BYTES] = tag;
    if (body) frame.set(body, FRAME_PREFIX_BYTES + 1);
    return new OutboundMessage(frame.subarray(FRAME_PREFIX_BYTES), frame);
  }

  /**
   * A message written by the caller into `frame` after FRAME_PREFIX_BYTES of room (encoders
   * that know the size ahead); the prefix is filled in here.
   */
  static inFrame(frame: Buffer): OutboundMessage {
    frame.writeUInt32BE(frame.length - FRAME_PREFIX_BYTES, 0);
    return new OutboundMessage(frame.subarray(FRAME_PREFIX_BYTES), frame);
  }

  /**
   * A received message passed on unchanged, with the frame it came in: `wire` is a message whose
   * length prefix precedes it in bytes nobody changes (ProtocolMsg.wire), so the frame is a view,
   * no copy. undefined if the bytes before it are not its prefix, or if the view would hold much
   * more than itself: a frame waiting for a slow neighbour keeps its whole buffer (a TCP read of
   * many messages), which the queue limit does not see; up to Buffer.poolSize more, which any
   * small buffer of Node's pool may hold too.
   */
  static received(wire: Buffer): OutboundMessage | undefined {
    const at = wire.byteOffset - FRAME_PREFIX_BYTES;
    if (at < 0 || wire.buffer.byteLength > wire.length + FRAME_PREFIX_BYTES + Buffer.poolSize) return undefined;
    const frame = Buffer.from(wire.buffer, at, wire.length + FRAME_PREFIX_BYTES);
    return frame.readUInt32BE(0) === wire.length ? new OutboundMessage(wire, frame) : undefined;
  }

  /** A message as it is (tag + body); framed, by copying, only if some connection needs it so. */
  static wrap(message: Buffer): OutboundMessage {
    return new OutboundMessage(message);
  }

  get tag(): number {
    return this.message[0] ?? 0;
  }

  /** The protocol 2 frame; INVALID_ARGUMENT over `maxBytes`, as encodeFrame. */
  frame(maxBytes = MAX_TCP_MSG_BYTES): Buffer {
    checkSize(this.message.length, maxBytes);
    return (this.framed ??= encodeFrame(this.message, maxBytes));
  }
}

/** Below this, a message is copied out of a chunk more than four times (and this much) bigger. */
const PIN_LIMIT_BYTES = 16 * 1024;

/** Chunks below this are copied into a shared tail block rather than kept as they are. */
const SMALL_CHUNK_BYTES = 4 * 1024;
/** The tail block small chunks are gathered in. */
const TAIL_BLOCK_BYTES = 64 * 1024;

/**
 * Inbound bytes held as chunks; a message inside one chunk comes out as a view of it, one that
 * spans chunks as a copy. Large chunks, and any chunk that arrives when nothing is queued, are
 * kept as given, not copied: transports hand over buffers they never reuse (MeshTransport).
 * Small ones that arrive behind queued bytes are copied into a shared tail block, contiguous
 * runs of them as one chunk: kept each as its own Buffer, a peer sending one byte at a time
 * would make us hold some 430 bytes per byte (25 MB for a 64 KiB frame) before it is
 * authenticated; so held memory stays within the bytes received plus one block. A view
 * pins its whole chunk, so a small message cut from a much bigger chunk (many messages in one
 * TCP read) is copied out instead.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private tail: Buffer | undefined;
  private tailUsed = 0;
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    // Into an empty queue a chunk goes as it is, small or not: the messages in it then come
    // out as views, with no copy and no allocation (the common case: whole messages per read).
    // Only small chunks that queue up behind others are gathered into the tail block.
    const empty = this.length === 0;
    this.length += chunk.length;
    if (empty || chunk.length >= SMALL_CHUNK_BYTES) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      return;
    }
    let off = 0;
    while (off < chunk.length) {
      if (this.tail === undefined || this.tailUsed === this.tail.length) {
        this.tail = Buffer.allocUnsafeSlow(TAIL_BLOCK_BYTES);
        this.tailUsed = 0;
      }
      const tail = this.tail;
      const k = Math.min(chunk.length - off, tail.length - this.tailUsed);
      tail.set(chunk.subarray(off, off + k), this.tailUsed);
      const start = this.tailUsed;
      this.tailUsed += k;
      off += k;
      // Extends the last chunk when it is the run that ends where these bytes were written.
      const last = this.chunks[this.chunks.length - 1];
      if (last !== undefined && last.buffer === tail.buffer && last.byteOffset + last.length === tail.byteOffset + start) {
        this.chunks[this.chunks.length - 1] = tail.subarray(last.byteOffset - tail.byteOffset, this.tailUsed);
      } else {
        this.chunks.push(tail.subarray(start, this.tailUsed));
      }
    }
  }

  byteAt(i: number): number {
    for (const c of this.chunks) {
      if (i < c.length) return c[i] ?? 0;
      i -= c.length;
    }
    return 0;
  }

  take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.length -= n;
      const view = first.subarray(0, n);
      return n < PIN_LIMIT_BYTES && first.buffer.byteLength > 4 * n + PIN_LIMIT_BYTES ? Buffer.from(view) : view;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.length -= n;
    return out;
  }

  /** Drops the first `n` bytes (at most `length`). */
  skip(n: number): void {
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[0] as Buffer;
      if (c.length > n) {
        this.chunks[0] = c.subarray(n);
        return;
      }
      this.chunks.shift();
      n -= c.length;
    }
  }

  clear(): void {
    this.chunks = [];
    this.tail = undefined;
    this.tailUsed = 0;
    this.length = 0;
  }
}

/** Cuts a byte stream into length-prefixed messages. */
export class FrameSplitter {
  private readonly queue = new ByteQueue();
  private bodyBytes = -1; // -1 while the length prefix is still being read
  private failure: WeaveError | undefined;

  constructor(private readonly maxBytes = MAX_TCP_MSG_BYTES) {}

  /** Bytes received but not yet returned as part of a message. */
  get bufferedBytes(): number {
    return this.queue.length;
  }

  /** True between messages (nothing half-read). */
  get idle(): boolean {
    return this.queue.length === 0 && this.bodyBytes < 0;
  }

  /** Feeds bytes; returns the messages they completed, in order. */
  push(chunk: Uint8Array): Buffer[] {
    if (this.failure) throw this.failure;
    this.queue.push(chunk);
    const out: Buffer[] = [];
    for (;;) {
      if (this.bodyBytes < 0) {
        if (this.queue.length < FRAME_PREFIX_BYTES) break;
        const len = this.queue.take(FRAME_PREFIX_BYTES).readUInt32BE(0);
        if (len > this.maxBytes) {
          this.failure = new WeaveError('DECODE_FAILED', `incoming message exceeds maximum size: ${len} > ${this.maxBytes}`);
          this.queue.clear();
          throw this.failure;
        }
        this.bodyBytes = len;
      }
      if (this.queue.length < this.bodyBytes) break;
      out.push(this.queue.take(this.bodyBytes));
      this.bodyBytes = -1;
    }
    return out;
  }
}

export type MeshStreamEvent =
  | { readonly kind: 'header'; readonly versions: ProtocolVersionRange; readonly version: number }
  | { readonly kind: 'encryption'; readonly flag: EncryptionFlag }
  | { readonly kind: 'message'; readonly bytes: Buffer };

/**
 * One direction of a protocol 2 connection as it arrives: the header (negotiated against
 * `ours`; only version 2 is spoken, as weaver 2.8 always negotiates it), the encryption flag
 * with its key, then messages (still sealed when encrypted; the first is the feature map).
 */
export class MeshStreamReader {
  private phase: 'header' | 'flag' | 'messages' = 'header';
  private pending = Buffer.alloc(0);
  private readonly frames: FrameSplitter;

  constructor(
    private readonly ours: ProtocolVersionRange = OUR_PROTOCOL_VERSIONS,
    maxMessageBytes = MAX_TCP_MSG_BYTES,
  ) {
    this.frames = new FrameSplitter(maxMessageBytes);
  }

  push(chunk: Uint8Array): MeshStreamEvent[] {
    const out: MeshStreamEvent[] = [];
    if (this.phase === 'messages') {
      for (const bytes of this.frames.push(chunk)) out.push({ kind: 'message', bytes });
      return out;
    }
    this.pending = Buffer.concat([this.pending, chunk]);
    if (this.phase === 'header') {
      if (this.pending.length < PROTOCOL_HEADER_BYTES) return out;
      const versions = decodeProtocolHeader(this.pending);
      const version = negotiateProtocolVersion(this.ours, versions);
      if (version !== 2) throw new WeaveError('INCOMPATIBLE_VERSION', `protocol version ${version} is not supported`);
      out.push({ kind: 'header', versions, version });
      this.pending = this.pending.subarray(PROTOCOL_HEADER_BYTES);
      this.phase = 'flag';
    }
    const flag = tryDecodeEncryptionFlag(this.pending);
    if (flag === undefined) return out;
    out.push({ kind: 'encryption', flag });
    const rest = this.pending.subarray(flag.bytes);
    this.pending = Buffer.alloc(0);
    this.phase = 'messages';
    for (const bytes of this.frames.push(rest)) out.push({ kind: 'message', bytes });
    return out;
  }
}
