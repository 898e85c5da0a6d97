// Word views of the buffers the data path compares headers and sums checksums in. In V8 reading
// a Buffer's `.buffer` or `.byteOffset` is a runtime call that costs more than comparing a
// header, so a WordView keeps both for the last buffer object it was pointed at: the datagrams
// of a GRO train, and the frames of a burst, are ranges of one buffer.
export class WordView {
  /** Native 16-bit words of the whole ArrayBuffer under the last buffer given to `at`. */
  words: Uint16Array<ArrayBufferLike> = new Uint16Array(0);
  /** That buffer's byteOffset: its byte i is half of words[(base + i) >>> 1]. */
  base = 0;
  private buf: Uint8Array | undefined;
  private ab: ArrayBufferLike = new ArrayBuffer(0);
  private w32: Uint32Array<ArrayBufferLike> | undefined;

  /** Points the views and `base` at `b`'s memory (cheap when `b` is the buffer of the last call). */
  at(b: Uint8Array): this {
    if (b !== this.buf) {
      this.buf = b;
      this.base = b.byteOffset;
      const ab = b.buffer;
      if (ab !== this.ab) {
        this.ab = ab;
        this.words = new Uint16Array(ab, 0, ab.byteLength >>> 1);
        this.w32 = undefined;
      }
    }
    return this;
  }

  /** Native 32-bit words of the same ArrayBuffer (made on first use): byte i is in words32[(base + i) >>> 2]. */
  get words32(): Uint32Array<ArrayBufferLike> {
    return (this.w32 ??= new Uint32Array(this.ab, 0, this.ab.byteLength >>> 2));
  }
}
