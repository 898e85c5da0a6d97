// A growing array of struct iovec, for sends gathered from ranges of several buffers (a
// sleeve datagram's headers from one buffer and its payload from the TAP read it came from),
// so no payload is copied together before the kernel copies it once.
//
// Invariants:
// - Entries point into the callers' buffers: those must stay alive and unchanged until the
//   send that uses them is done, and `clear()` comes after it.
// - `view(from)` is what msg_iov points at; growing replaces the storage, but a view taken
//   before keeps the old storage (and its entries) alive and unchanged.
// - Addresses and lengths are written as 32-bit halves: both stay below 2^53.
import { WeaveError } from '../core/errors.js';
import { libc, type Libc } from './ffi/libc.js';

export class IovecList {
  private readonly c: Libc;
  private readonly stride: number;
  private readonly baseWord: number;
  private readonly lenWord: number;
  private words: Uint32Array;
  private bytes: Uint8Array;
  /** Entries written since the last clear(). */
  count = 0;
  // The addresses of the last two buffers pushed: a train alternates between its headers (one
  // send buffer) and its payloads (one TAP read), and addressOf reads .buffer and .byteOffset,
  // runtime calls in V8.
  private a: Uint8Array | undefined;
  private aAddress = 0;
  private aLength = 0;
  private b: Uint8Array | undefined;
  private bAddress = 0;
  private bLength = 0;

  constructor(capacity = 256) {
    const c = libc();
    const l = c.layout;
    this.c = c;
    this.stride = l.iovecBytes >>> 2;
    this.baseWord = l.iovBase >>> 2;
    this.lenWord = l.iovLen >>> 2;
    // Large enough to live outside V8's heap from the start, so its address never moves.
    this.words = new Uint32Array(Math.max(capacity, 64) * this.stride);
    this.bytes = new Uint8Array(this.words.buffer);
  }

  /** Appends `buf[start, end)`. */
  push(buf: Uint8Array, start: number, end: number): void {
    if (buf !== this.a) {
      if (buf !== this.b) {
        this.b = buf;
        this.bAddress = this.c.addressOf(buf);
        this.bLength = buf.byteLength;
      }
      // Swap, so the buffer just used is `a`.
      const x = this.a;
      const xa = this.aAddress;
      const xl = this.aLength;
      this.a = this.b;
      this.aAddress = this.bAddress;
      this.aLength = this.bLength;
      this.b = x;
      this.bAddress = xa;
      this.bLength = xl;
    }
    if (!(start >= 0 && start <= end && end <= this.aLength)) {
      throw new WeaveError('INVALID_ARGUMENT', `iovec [${start}, ${end}) outside a ${this.aLength}-byte buffer`);
    }
    if ((this.count + 1) * this.stride > this.words.length) this.grow();
    const a = this.aAddress + start;
    const o = this.count * this.stride;
    const w = this.words;
    w[o + this.baseWord] = a >>> 0;
    w[o + this.baseWord + 1] = Math.floor(a / 0x100000000);
    w[o + this.lenWord] = end - start;
    w[o + this.lenWord + 1] = 0;
    this.count++;
  }

  /** The entries from index `from` on, as the bytes of an iovec array. */
  view(from: number): Uint8Array {
    return this.bytes.subarray(from * this.stride * 4, this.count * this.stride * 4);
  }

  /** Forgets every entry (and the buffer addresses cached). */
  clear(): void {
    this.count = 0;
    this.a = this.b = undefined;
  }

  private grow(): void {
    const words = new Uint32Array(this.words.length * 2);
    words.set(this.words);
    this.words = words;
    this.bytes = new Uint8Array(words.buffer);
  }
}
