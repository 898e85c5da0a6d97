// Encrypted sleeve datagrams, as the original's NaClEncryptor/NaClDecryptor
// (`router/frame_crypto.go`):
//
//   [6 sender peer][u64 BE: bit 63 = DF channel, low 63 bits = seq][secretbox(frames)]
//
// The 24-byte nonce is zero but for byte 0 bit 7, set when the SENDER is the outbound
// (dialling) side of the TCP connection so the two directions never share a nonce, and bytes
// 16-23, the same u64 as in the packet. Bit 6 of byte 0 stays clear: it marks TCP nonces.
// The DF and non-DF channels count separately (one encryptor each), and the receiver keeps a
// replay window per channel: sequence numbers fall in 2^20-wide windows, the current and the
// previous one are remembered as bit sets, anything older is dropped, and a jump ahead moves
// the window however far. State moves only after the box authenticates, so a forged packet
// cannot push the window away from genuine traffic.
//
// Cost: per packet, no allocation when sealing into a caller buffer or opening in place (the
// nonce buffers are reused); the window holds at most 2 x 128 KiB of bits per channel, in 4 KiB
// chunks allocated as sequence numbers reach them.
import { createRequire } from 'node:module';
import { WeaveError } from '../../core/errors.js';
import type { PeerName } from '../../core/peer-name.js';
import { SECRETBOX_KEY_BYTES, SECRETBOX_MAC_BYTES, SECRETBOX_NONCE_BYTES } from '../../mesh/sodium.js';
import { ENCRYPTED_PACKET_OVERHEAD, SLEEVE_PREFIX_BYTES, readPeerNameAt, writePeerNameAt, type SleeveBatch } from './codec.js';

// mesh/sodium.ts only offers allocating seal/open; the hot path needs them into caller buffers.
interface SodiumSecretbox {
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
}

let loaded: SodiumSecretbox | undefined;
function sodium(): SodiumSecretbox {
  loaded ??= createRequire(import.meta.url)('sodium-native') as SodiumSecretbox;
  return loaded;
}

const SEQ_OFFSET = SLEEVE_PREFIX_BYTES;
const BOX_OFFSET = SLEEVE_PREFIX_BYTES + 8;
const NONCE_SEQ_OFFSET = 16;
const POLARITY_OUTBOUND = 0x80;
const DF_BIT_HI = 0x80000000;
const TWO_32 = 0x100000000;

/** Bits of a sequence number that index within a window (the original's WindowSize). */
export const REPLAY_WINDOW_BITS = 20;

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== SECRETBOX_KEY_BYTES) {
    throw new WeaveError('INVALID_ARGUMENT', `sleeve session key must be ${SECRETBOX_KEY_BYTES} bytes`);
  }
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

/** The nonce byte 0 for packets sent by the outbound (dialling) side or the other. */
export function sleeveNoncePolarity(senderOutbound: boolean): number {
  return senderOutbound ? POLARITY_OUTBOUND : 0;
}

export class SleeveEncryptor {
  readonly df: boolean;
  private readonly key: Buffer;
  private readonly nonce = Buffer.alloc(SECRETBOX_NONCE_BYTES);
  private seq = 0;

  /** `outbound`: we dialled the TCP connection. `df`: this is the DF channel's encryptor. */
  constructor(sessionKey: Uint8Array, outbound: boolean, df: boolean) {
    checkKey(sessionKey);
    this.key = Buffer.from(sessionKey);
    this.df = df;
    this.nonce[0] = sleeveNoncePolarity(outbound);
  }

  /** The sequence number the next packet gets (both channels start at 0). */
  get nextSeq(): number {
    return this.seq;
  }

  /**
   * Seals `plaintext` (frames) into a datagram, in `out` when given (at least 30 bytes more
   * than the plaintext; the plaintext may already sit at out[30..], it is then sealed in
   * place) or a fresh Buffer. Every call uses up a sequence number.
   */
  seal(sender: PeerName, plaintext: Uint8Array, out?: Buffer): Buffer {
    const total = ENCRYPTED_PACKET_OVERHEAD + plaintext.length;
    const o = out ?? Buffer.allocUnsafe(total);
    if (o.length < total) throw new WeaveError('INVALID_ARGUMENT', `sleeve seal: output of ${o.length} bytes, need ${total}`);
    writePeerNameAt(o, 0, sender);
    this.writeSeq(o);
    sodium().crypto_secretbox_easy(o.subarray(BOX_OFFSET, total), plaintext, this.nonce, this.key);
    this.seq++;
    return o.subarray(0, total);
  }

  /**
   * Seals the packet laid out in `buf[start, end)` in place: the plaintext frames sit at
   * `start + 30`; sender, sequence word and tag are written in front of them. For packets
   * built straight into a send buffer (several per buffer, as a UDP GSO train).
   */
  sealAt(sender: PeerName, buf: Buffer, start: number, end: number): void {
    if (!(start >= 0 && end <= buf.length && end - start >= ENCRYPTED_PACKET_OVERHEAD)) {
      throw new WeaveError('INVALID_ARGUMENT', `sleeve seal: packet [${start}, ${end}) outside a ${buf.length}-byte buffer`);
    }
    writePeerNameAt(buf, start, sender);
    this.writeSeq(buf, start);
    // Plain views: cheaper to make than Buffer subarrays, and sodium takes any Uint8Array.
    const ab = buf.buffer;
    const o = buf.byteOffset;
    sodium().crypto_secretbox_easy(new Uint8Array(ab, o + start + BOX_OFFSET, end - start - BOX_OFFSET), new Uint8Array(ab, o + start + ENCRYPTED_PACKET_OVERHEAD, end - start - ENCRYPTED_PACKET_OVERHEAD), this.nonce, this.key);
    this.seq++;
  }

  /** Seals an encrypted-mode batch in its own buffer; the batch can be reset afterwards. */
  sealBatch(batch: SleeveBatch): Buffer {
    if (!batch.encrypted) throw new WeaveError('INVALID_ARGUMENT', 'sleeve seal: the batch has no room for the crypto header');
    return this.seal(batch.sender, batch.frames(), batch.buf);
  }

  private writeSeq(o: Buffer, start = 0): void {
    const hi = (Math.floor(this.seq / TWO_32) | (this.df ? DF_BIT_HI : 0)) >>> 0;
    const lo = this.seq >>> 0;
    o.writeUInt32BE(hi, start + SEQ_OFFSET);
    o.writeUInt32BE(lo, start + SEQ_OFFSET + 4);
    this.nonce.writeUInt32BE(hi, NONCE_SEQ_OFFSET);
    this.nonce.writeUInt32BE(lo, NONCE_SEQ_OFFSET + 4);
  }
}

// A set of offsets within one window (2^20 bits), in chunks allocated on first use.
const CHUNK_WORD_BITS = 10; // 1024 words of 32 bits = 4 KiB per chunk
class OffsetSet {
  private readonly chunks: Array<Uint32Array | undefined> = new Array<Uint32Array | undefined>(1 << (REPLAY_WINDOW_BITS - 5 - CHUNK_WORD_BITS));

  has(offset: number): boolean {
    const word = offset >>> 5;
    const chunk = this.chunks[word >>> CHUNK_WORD_BITS];
    return chunk !== undefined && ((chunk[word & ((1 << CHUNK_WORD_BITS) - 1)] as number) & (1 << (offset & 31))) !== 0;
  }

  add(offset: number): void {
    const word = offset >>> 5;
    const c = word >>> CHUNK_WORD_BITS;
    let chunk = this.chunks[c];
    if (!chunk) {
      chunk = new Uint32Array(1 << CHUNK_WORD_BITS);
      this.chunks[c] = chunk;
    }
    const w = word & ((1 << CHUNK_WORD_BITS) - 1);
    chunk[w] = (chunk[w] as number) | (1 << (offset & 31));
  }
}

/**
 * The original's advanceState() and duplicate check for one channel. Call only for packets
 * that authenticated; true means deliver (and the number is now used), false means drop.
 */
export class ReplayWindow {
  private currentWindow = 0;
  private used = new OffsetSet();
  // Absent until the window first moves, as in the original (so window -1 is never accepted).
  private previous: OffsetSet | undefined;

  /** `seqHi` is bits 32-62 of the sequence number, `seqLo` bits 0-31: exact for 63 bits. */
  acceptParts(seqHi: number, seqLo: number): boolean {
    const offset = seqLo & ((1 << REPLAY_WINDOW_BITS) - 1);
    const window = (seqHi & 0x7fffffff) * (1 << (32 - REPLAY_WINDOW_BITS)) + (seqLo >>> REPLAY_WINDOW_BITS);
    const delta = window - this.currentWindow;
    let set: OffsetSet | undefined;
    if (delta < -1) {
      set = undefined;
    } else if (delta === -1) {
      set = this.previous;
    } else if (delta === 0) {
      set = this.used;
    } else if (delta === 1) {
      this.currentWindow = window;
      this.previous = this.used;
      this.used = new OffsetSet();
      set = this.used;
    } else {
      this.currentWindow = window;
      this.previous = new OffsetSet();
      this.used = new OffsetSet();
      set = this.used;
    }
    if (!set || set.has(offset)) return false;
    set.add(offset);
    return true;
  }

  /** For sequence numbers below 2^53. */
  accept(seq: number): boolean {
    return this.acceptParts(Math.floor(seq / TWO_32), seq >>> 0);
  }
}

export interface OpenedSleevePacket {
  readonly sender: PeerName;
  readonly df: boolean;
  /** Exact below 2^53 (centuries of traffic). */
  readonly seq: number;
  /** The frames, to be read with visitSleeveFrames/decodeSleeveFrames. */
  readonly plaintext: Buffer;
}

/** Why the last open() returned undefined: too short for a box, forged/stray, or replayed. */
export type SleeveDropReason = 'short' | 'auth' | 'replay';

export interface SleeveOpenOptions {
  /** Decrypt into the packet's own bytes (the plaintext is then packet[30..]). */
  readonly inPlace?: boolean;
}

export class SleeveDecryptor {
  /** Set when open() returns undefined, for counters and logs. */
  lastDropReason: SleeveDropReason | undefined;
  private readonly key: Buffer;
  private readonly nonce = Buffer.alloc(SECRETBOX_NONCE_BYTES);
  private readonly window = new ReplayWindow();
  private readonly windowDF = new ReplayWindow();

  /** `outbound`: WE dialled the TCP connection, so the remote's packets carry the other polarity. */
  constructor(sessionKey: Uint8Array, outbound: boolean) {
    checkKey(sessionKey);
    this.key = Buffer.from(sessionKey);
    this.nonce[0] = sleeveNoncePolarity(!outbound);
  }

  /**
   * Opens the datagram in `buf[start, end)` in place (the frames are then at start + 30):
   * `open` without allocating, for the data path. False when it is dropped (lastDropReason).
   */
  openAt(buf: Buffer, start: number, end: number): boolean {
    if (end - start < ENCRYPTED_PACKET_OVERHEAD) {
      this.lastDropReason = 'short';
      return false;
    }
    const hi = buf.readUInt32BE(start + SEQ_OFFSET);
    const lo = buf.readUInt32BE(start + SEQ_OFFSET + 4);
    this.nonce.writeUInt32BE(hi, NONCE_SEQ_OFFSET);
    this.nonce.writeUInt32BE(lo, NONCE_SEQ_OFFSET + 4);
    const ab = buf.buffer;
    const o = buf.byteOffset;
    const box = new Uint8Array(ab, o + start + BOX_OFFSET, end - start - BOX_OFFSET);
    const plaintext = new Uint8Array(ab, o + start + ENCRYPTED_PACKET_OVERHEAD, end - start - ENCRYPTED_PACKET_OVERHEAD);
    if (!sodium().crypto_secretbox_open_easy(plaintext, box, this.nonce, this.key)) {
      this.lastDropReason = 'auth';
      return false;
    }
    if (!((hi & DF_BIT_HI) !== 0 ? this.windowDF : this.window).acceptParts(hi & 0x7fffffff, lo)) {
      this.lastDropReason = 'replay';
      return false;
    }
    this.lastDropReason = undefined;
    return true;
  }

  /**
   * Opens a whole datagram (sender prefix included). Undefined, silently as in the original,
   * when it is too short, does not authenticate (stray or forged), or repeats or predates the
   * replay window. In place, a replayed packet is left decrypted; a forged one is untouched.
   */
  open(packet: Uint8Array, opts: SleeveOpenOptions = {}): OpenedSleevePacket | undefined {
    if (packet.length < ENCRYPTED_PACKET_OVERHEAD) {
      this.lastDropReason = 'short';
      return undefined;
    }
    const b = asBuffer(packet);
    const hi = b.readUInt32BE(SEQ_OFFSET);
    const lo = b.readUInt32BE(SEQ_OFFSET + 4);
    this.nonce.writeUInt32BE(hi, NONCE_SEQ_OFFSET);
    this.nonce.writeUInt32BE(lo, NONCE_SEQ_OFFSET + 4);
    const box = b.subarray(BOX_OFFSET);
    const plaintext = opts.inPlace
      ? b.subarray(ENCRYPTED_PACKET_OVERHEAD)
      : Buffer.allocUnsafe(box.length - SECRETBOX_MAC_BYTES);
    if (!sodium().crypto_secretbox_open_easy(plaintext, box, this.nonce, this.key)) {
      this.lastDropReason = 'auth';
      return undefined;
    }
    const df = (hi & DF_BIT_HI) !== 0;
    const seqHi = hi & 0x7fffffff;
    if (!(df ? this.windowDF : this.window).acceptParts(seqHi, lo)) {
      this.lastDropReason = 'replay';
      return undefined;
    }
    this.lastDropReason = undefined;
    return { sender: readPeerNameAt(b, 0), df, seq: seqHi * TWO_32 + lo, plaintext };
  }
}

/** Header fields of an encrypted datagram, readable without the key (captures, logs). */
export interface EncryptedSleeveHeader {
  readonly sender: PeerName;
  readonly df: boolean;
  readonly seq: number;
  /** Tag + ciphertext. */
  readonly boxBytes: number;
  readonly plaintextBytes: number;
}

export function peekEncryptedSleeveHeader(packet: Uint8Array): EncryptedSleeveHeader {
  if (packet.length < ENCRYPTED_PACKET_OVERHEAD) {
    throw new WeaveError('DECODE_FAILED', `encrypted sleeve packet of ${packet.length} bytes, need at least ${ENCRYPTED_PACKET_OVERHEAD}`);
  }
  const b = asBuffer(packet);
  const hi = b.readUInt32BE(SEQ_OFFSET);
  const lo = b.readUInt32BE(SEQ_OFFSET + 4);
  return {
    sender: readPeerNameAt(b, 0),
    df: (hi & DF_BIT_HI) !== 0,
    seq: (hi & 0x7fffffff) * TWO_32 + lo,
    boxBytes: packet.length - BOX_OFFSET,
    plaintextBytes: packet.length - ENCRYPTED_PACKET_OVERHEAD,
  };
}
