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

export function encodeFrame(msg: Uint8Array, maxBytes = MAX_TCP_MSG_BYTES): Buffer {
  if (msg.length > maxBytes) {
    throw new WeaveError('INVALID_ARGUMENT', `outgoing message exceeds maximum size: ${msg.length} > ${maxBytes}`);
  }
  const out = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + msg.length);
  out.writeUInt32BE(msg.length, 0);
  out.set(msg, FRAME_PREFIX_BYTES);
  return out;
}

/** Inbound bytes held as chunks; copies only when a message spans chunks. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.from(chunk));
    this.length += chunk.length;
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
      return first.subarray(0, n);
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

  clear(): void {
    this.chunks = [];
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
