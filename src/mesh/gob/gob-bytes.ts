// Gob's primitive encodings (gob `decode.go` / `encode.go`), reader and writer.
//
// uint: below 128 one byte; otherwise the byte count negated (0xff = 1 byte, 0xf8 = 8 bytes)
// then the big-endian bytes, minimal. int: zig-zag into a uint, `n << 1` for n >= 0 and
// `(^n << 1) | 1` for n < 0. float: the IEEE-754 bits byte-reversed, then as a uint (so small
// exponents stay short). bool: uint 0/1. string and []byte: uint length then the bytes.
// The reader works on one message [pos, end) and never reads or allocates past `end`: every
// count is compared with the bytes that remain before it is used.
import { gobDecodeError, gobEncodeError } from './gob-type.js';

const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

// Strings must be valid UTF-8 so that every decoded value re-encodes to the same bytes; the
// BOM is kept (the default decoder would strip a leading one).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class GobReader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    pos: number,
    readonly end: number,
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  byte(): number {
    if (this.pos >= this.end) throw gobDecodeError('unexpected end of message');
    return this.buf[this.pos++] ?? 0;
  }

  /** A copy of the next n bytes (n already checked against `remaining` by `count`). */
  take(n: number): Buffer {
    if (n > this.remaining) throw gobDecodeError('unexpected end of message');
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }

  private uintBytes(first: number): number {
    const n = 256 - first;
    if (n > 8) throw gobDecodeError(`uint: byte count ${n} out of range`);
    if (n > this.remaining) throw gobDecodeError('unexpected end of message');
    return n;
  }

  uint(): bigint {
    const first = this.byte();
    if (first < 0x80) return BigInt(first);
    const n = this.uintBytes(first);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.buf[this.pos++] ?? 0);
    return v;
  }

  /** A uint that must fit a JS safe integer (deltas, counts, type ids). */
  uintSmall(what: string): number {
    const first = this.byte();
    if (first < 0x80) return first;
    const n = this.uintBytes(first);
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + (this.buf[this.pos++] ?? 0);
    if (!Number.isSafeInteger(v)) throw gobDecodeError(`${what} ${v} out of range`);
    return v;
  }

  int(): bigint {
    const u = this.uint();
    return (u & 1n) === 1n ? -(u >> 1n) - 1n : u >> 1n;
  }

  intSmall(what: string): number {
    const v = this.int();
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw gobDecodeError(`${what} ${v} out of range`);
    }
    return Number(v);
  }

  float(): number {
    const u = this.uint();
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(u);
    return b.readDoubleLE(0);
  }

  /** An element count: each element takes at least `minBytesEach` bytes, so a count larger
   * than the rest of the message is corrupt and is refused before anything is allocated. */
  count(what: string, minBytesEach: number): number {
    const n = this.uintSmall(`${what} length`);
    if (n * minBytesEach > this.remaining) {
      throw gobDecodeError(`${what} length ${n} exceeds the ${this.remaining} bytes left in the message`);
    }
    return n;
  }

  bytes(): Buffer {
    return this.take(this.count('[]byte', 1));
  }

  string(): string {
    const n = this.count('string', 1);
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8.decode(s);
    } catch (e) {
      throw gobDecodeError('string is not valid UTF-8', e);
    }
  }
}

export class GobWriter {
  private buf = Buffer.allocUnsafe(256);
  private len = 0;
  private readonly scratch = Buffer.alloc(8);

  get length(): number {
    return this.len;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** Drops everything after the first `length` bytes. */
  truncate(length: number): void {
    if (length >= 0 && length < this.len) this.len = length;
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  raw(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  uint(v: bigint | number): void {
    if (typeof v === 'number') {
      if (Number.isInteger(v) && v >= 0 && v < 0x80) {
        this.byte(v);
        return;
      }
      if (!Number.isSafeInteger(v)) throw gobEncodeError(`uint ${v} is not a safe integer`);
      v = BigInt(v);
    }
    if (v < 0n || v > UINT64_MAX) throw gobEncodeError(`uint ${v} out of range`);
    if (v < 0x80n) {
      this.byte(Number(v));
      return;
    }
    this.scratch.writeBigUInt64BE(v);
    let i = 0;
    while (i < 7 && this.scratch[i] === 0) i++;
    this.byte(256 - (8 - i));
    this.raw(this.scratch.subarray(i));
  }

  int(v: bigint | number): void {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw gobEncodeError(`int ${v} is not a safe integer`);
      v = BigInt(v);
    }
    if (v < INT64_MIN || v > INT64_MAX) throw gobEncodeError(`int ${v} out of range`);
    this.uint(v < 0n ? ((-v - 1n) << 1n) | 1n : v << 1n);
  }

  float(v: number): void {
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(v);
    this.uint(b.readBigUInt64BE(0));
  }

  lenBytes(b: Uint8Array): void {
    this.uint(b.length);
    this.raw(b);
  }

  string(s: string): void {
    this.lenBytes(Buffer.from(s, 'utf8'));
  }

  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}
