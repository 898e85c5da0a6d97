// Encrypted sleeve boxes cut into chunks, between our routers only (SleeveGSO 4).
//
// Why: a TCP super-frame sealed in one box (one secretbox per 64 KiB, at the cipher's full
// speed) used to leave as one 64 KiB UDP datagram, which the kernel cut into 45 IP fragments:
// on the sending router's thread, the fragments' trip through the underlay and the
// receiver's reassembly cost more than the cipher itself. Cut into chunks that each fit the
// path MTU instead, the box leaves as one UDP GSO train and, between namespaces or through a
// GRO-capable NIC, arrives as one buffer; the receiver copies the chunks back together and
// opens the box as if it had come whole.
//
// A chunk datagram:
//
//   [6 sender peer][u64 BE: the box's sequence word, with bit 62 set][u16 index][u16 count]
//   [u32 box length][chunk data]
//
// The box (the secretbox output of the datagram that would have been sent whole) is cut into
// `count` pieces of equal length L but the last, which is shorter or equal; piece `index` starts
// at index × L. Bit 62 of a sequence word is never set by a sequence number (they would need
// 2^62 packets), so a chunk cannot be taken for a box. Only peers that announced SleeveGSO 4
// are sent chunks; an original router never sees one.
//
// Trust: chunks are not authenticated, the box is: a forged or damaged chunk makes the box
// fail to open, as a forged IP fragment would. Reassembly keeps at most MAX_PARTIAL boxes per
// peer (a newer one pushes the oldest out: trains arrive whole or not at all, so partial boxes
// are normally lost ones), and every field is checked before a byte is copied. Late duplicate
// chunks of the last few finished boxes are ignored; a box put together twice from older
// duplicates is dropped by the decryptor's replay window, as a replayed datagram is.
import { WeaveError } from '../../core/errors.js';
import { SLEEVE_PREFIX_BYTES } from './codec.js';

/** Sender, sequence word, index, count, box length. */
export const CHUNK_HEADER_BYTES = SLEEVE_PREFIX_BYTES + 8 + 2 + 2 + 4;
/** The smallest datagram chunks are cut for (chunkPlan refuses less). */
export const MIN_CHUNK_DATAGRAM = CHUNK_HEADER_BYTES + 64;
/** Sender and sequence word in front of a box: where a whole box datagram's box starts. */
const BOX_PREFIX_BYTES = SLEEVE_PREFIX_BYTES + 8;
/** Bit 62 of the sequence word, in its high 32-bit half. */
const CHUNK_BIT_HI = 0x40000000;
/** A box is at most what one UDP datagram could carry whole. */
export const MAX_CHUNKED_BOX = 65535;
const MAX_PARTIAL = 4;
/** Boxes finished lately, whose late duplicate chunks are ignored rather than starting over. */
const RECENT = 8;

/** The datagram `buf[start, end)` is a chunk (call only for datagrams of encrypted peers). */
export function isChunk(buf: Uint8Array, start: number, end: number): boolean {
  return end - start >= BOX_PREFIX_BYTES && ((buf[start + SLEEVE_PREFIX_BYTES] as number) & 0x40) !== 0;
}

/** How the box of a `packetLen`-byte box datagram is cut for datagrams of at most `maxDatagram` bytes. */
export function chunkPlan(packetLen: number, maxDatagram: number): { chunkData: number; count: number } {
  const boxLen = packetLen - BOX_PREFIX_BYTES;
  const chunkData = maxDatagram - CHUNK_HEADER_BYTES;
  if (!(maxDatagram >= MIN_CHUNK_DATAGRAM && boxLen > 0 && boxLen <= MAX_CHUNKED_BOX)) {
    throw new WeaveError('INVALID_ARGUMENT', `cannot cut a ${boxLen}-byte box into datagrams of ${maxDatagram} bytes`);
  }
  return { chunkData, count: Math.ceil(boxLen / chunkData) };
}

/**
 * Writes chunks `first` .. `first + n - 1` of the box datagram `packet[0, len)` (sender,
 * sequence word, box: as sealed for sending whole) back to back into `out`, each `chunkData`
 * bytes of box but the last: a UDP GSO train of datagrams of CHUNK_HEADER_BYTES + chunkData
 * bytes. Returns the bytes written.
 */
export function writeChunks(packet: Uint8Array, len: number, chunkData: number, count: number, first: number, n: number, out: Uint8Array): number {
  const boxLen = len - BOX_PREFIX_BYTES;
  let at = 0;
  for (let i = first; i < first + n; i++) {
    const from = BOX_PREFIX_BYTES + i * chunkData;
    const to = Math.min(from + chunkData, len);
    for (let k = 0; k < BOX_PREFIX_BYTES; k++) out[at + k] = packet[k] as number;
    out[at + SLEEVE_PREFIX_BYTES] = (packet[SLEEVE_PREFIX_BYTES] as number) | 0x40;
    const h = at + BOX_PREFIX_BYTES;
    out[h] = i >>> 8;
    out[h + 1] = i & 0xff;
    out[h + 2] = count >>> 8;
    out[h + 3] = count & 0xff;
    out[h + 4] = boxLen >>> 24;
    out[h + 5] = (boxLen >>> 16) & 0xff;
    out[h + 6] = (boxLen >>> 8) & 0xff;
    out[h + 7] = boxLen & 0xff;
    out.set(packet.subarray(from, to), at + CHUNK_HEADER_BYTES);
    at += CHUNK_HEADER_BYTES + (to - from);
  }
  return at;
}

/** All chunks of the box datagram `packet`, one Buffer each (tests, and the layout's reference). */
export function chunkBox(packet: Uint8Array, maxDatagram: number): Buffer[] {
  const { chunkData, count } = chunkPlan(packet.length, maxDatagram);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const b = Buffer.alloc(CHUNK_HEADER_BYTES + chunkData);
    out.push(b.subarray(0, writeChunks(packet, packet.length, chunkData, count, i, 1, b)));
  }
  return out;
}

interface PartialBox {
  hi: number;
  lo: number;
  count: number;
  boxLen: number;
  /** Box bytes per chunk but the last. */
  chunkData: number;
  have: Uint8Array;
  got: number;
  buf: Buffer;
  age: number;
}

/**
 * Puts the chunks of one peer's boxes back together. `add` returns the whole box datagram
 * (sender, sequence word, box: ready for the decryptor) once its last chunk came; the buffer
 * it returns stays valid until `recycle`, which the engine calls after each burst.
 */
export class BoxReassembler {
  private partial: PartialBox[] = [];
  private free: Buffer[] = [];
  private lent: Buffer[] = [];
  private ticks = 0;
  private readonly recentHi = new Float64Array(RECENT).fill(-1);
  private readonly recentLo = new Float64Array(RECENT).fill(-1);
  private recentAt = 0;

  /** Chunks dropped as malformed or inconsistent, and partial boxes pushed out unfinished. */
  dropped = 0;

  add(buf: Uint8Array, start: number, end: number): Buffer | undefined {
    if (end - start <= CHUNK_HEADER_BYTES) return this.drop();
    const s = start + SLEEVE_PREFIX_BYTES;
    const hi = (((buf[s] as number) << 24) | ((buf[s + 1] as number) << 16) | ((buf[s + 2] as number) << 8) | (buf[s + 3] as number)) >>> 0;
    const lo = (((buf[s + 4] as number) << 24) | ((buf[s + 5] as number) << 16) | ((buf[s + 6] as number) << 8) | (buf[s + 7] as number)) >>> 0;
    const h = s + 8;
    const index = ((buf[h] as number) << 8) | (buf[h + 1] as number);
    const count = ((buf[h + 2] as number) << 8) | (buf[h + 3] as number);
    const boxLen = (((buf[h + 4] as number) << 24) | ((buf[h + 5] as number) << 16) | ((buf[h + 6] as number) << 8) | (buf[h + 7] as number)) >>> 0;
    const len = end - start - CHUNK_HEADER_BYTES;
    if (count < 2 || index >= count || boxLen > MAX_CHUNKED_BOX || len > boxLen) return this.drop();
    // Every chunk tells the length of all but the last: its own, or what the last leaves.
    const last = index === count - 1;
    const chunkData = last ? (boxLen - len) / (count - 1) : len;
    if (!Number.isInteger(chunkData) || chunkData <= 0 || (count - 1) * chunkData >= boxLen || count * chunkData < boxLen) return this.drop();
    let p = this.find(hi, lo);
    if (!p && this.finished(hi, lo)) return undefined; // a duplicate of a box already given out
    if (p && (p.count !== count || p.boxLen !== boxLen || p.chunkData !== chunkData)) {
      this.remove(p);
      this.dropped++;
      p = undefined;
    }
    if (!p) p = this.open(hi, lo, count, boxLen, chunkData);
    if (p.have[index]) return undefined; // a duplicate
    p.have[index] = 1;
    p.got++;
    const at = BOX_PREFIX_BYTES + index * chunkData;
    p.buf.set(buf.subarray(end - len, end), at);
    if (p.got === 1) for (let k = 0; k < SLEEVE_PREFIX_BYTES; k++) p.buf[k] = buf[start + k] as number;
    if (p.got < count) return undefined;
    this.partial.splice(this.partial.indexOf(p), 1);
    this.recentHi[this.recentAt] = hi;
    this.recentLo[this.recentAt] = lo;
    this.recentAt = (this.recentAt + 1) % RECENT;
    this.lent.push(p.buf);
    return p.buf.subarray(0, BOX_PREFIX_BYTES + boxLen);
  }

  /** Buffers returned by `add` may be reused from now on. */
  recycle(): void {
    while (this.lent.length) this.free.push(this.lent.pop() as Buffer);
  }

  /** Partial boxes held now (tests). */
  get pending(): number {
    return this.partial.length;
  }

  private drop(): undefined {
    this.dropped++;
    return undefined;
  }

  private finished(hi: number, lo: number): boolean {
    for (let i = 0; i < RECENT; i++) if (this.recentHi[i] === hi && this.recentLo[i] === lo) return true;
    return false;
  }

  private find(hi: number, lo: number): PartialBox | undefined {
    for (const p of this.partial) if (p.hi === hi && p.lo === lo) return p;
    return undefined;
  }

  private open(hi: number, lo: number, count: number, boxLen: number, chunkData: number): PartialBox {
    if (this.partial.length >= MAX_PARTIAL) {
      let oldest = this.partial[0] as PartialBox;
      for (const q of this.partial) if (q.age < oldest.age) oldest = q;
      this.remove(oldest);
      this.dropped++;
    }
    const buf = this.free.pop() ?? Buffer.allocUnsafe(BOX_PREFIX_BYTES + MAX_CHUNKED_BOX);
    // The sequence word as the box was sealed with it: bit 62 cleared.
    const clear = (hi & ~CHUNK_BIT_HI) >>> 0;
    buf[SLEEVE_PREFIX_BYTES] = clear >>> 24;
    buf[SLEEVE_PREFIX_BYTES + 1] = (clear >>> 16) & 0xff;
    buf[SLEEVE_PREFIX_BYTES + 2] = (clear >>> 8) & 0xff;
    buf[SLEEVE_PREFIX_BYTES + 3] = clear & 0xff;
    buf[SLEEVE_PREFIX_BYTES + 4] = lo >>> 24;
    buf[SLEEVE_PREFIX_BYTES + 5] = (lo >>> 16) & 0xff;
    buf[SLEEVE_PREFIX_BYTES + 6] = (lo >>> 8) & 0xff;
    buf[SLEEVE_PREFIX_BYTES + 7] = lo & 0xff;
    const p: PartialBox = { hi, lo, count, boxLen, chunkData, have: new Uint8Array(count), got: 0, buf, age: this.ticks++ };
    this.partial.push(p);
    return p;
  }

  private remove(p: PartialBox): void {
    this.partial.splice(this.partial.indexOf(p), 1);
    this.free.push(p.buf);
  }
}
