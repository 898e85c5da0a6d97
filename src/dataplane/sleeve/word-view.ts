// 16-bit word views of the buffers the data path compares headers in. In V8 reading a Buffer's
// `.buffer` or `.byteOffset` is a runtime call that costs more than comparing a header, so a
// WordView keeps both for the last buffer object it was pointed at: the datagrams of a GRO
// train, and the frames of a burst, are ranges of one buffer.
export class WordView {
  /** Native 16-bit words of the whole ArrayBuffer under the last buffer given to `at`. */
  words: Uint16Array<ArrayBufferLike> = new Uint16Array(0);
  /** That buffer's byteOffset: its byte i is half of words[(base + i) >>> 1]. */
  base = 0;
  private buf: Uint8Array | undefined;
  private ab: ArrayBufferLike | undefined;

  /** Points `words` and `base` at `b`'s memory (cheap when `b` is the buffer of the last call). */
  at(b: Uint8Array): this {
    if (b !== this.buf) {
      this.buf = b;
      this.base = b.byteOffset;
      const ab = b.buffer;
      if (ab !== this.ab) {
        this.ab = ab;
        this.words = new Uint16Array(ab, 0, ab.byteLength >>> 1);
      }
    }
    return this;
  }
}
