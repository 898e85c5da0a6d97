// The inbound byte queue: bytes come out exactly as they went in, however they were chunked, and
// a peer dribbling one byte at a time cannot make each byte cost a Buffer of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteQueue, FrameSplitter, encodeFrame } from '../../../src/mesh/framing.js';
import { LengthPrefixReceiver } from '../../../src/mesh/message-conn.js';
import { prng, randInt } from './wire-fixtures.js';

const held = (q: ByteQueue): number => (q as unknown as { chunks: Buffer[] }).chunks.length;

test('a 64 KiB frame sent one byte at a time is held in a bounded number of buffers; any chunking delivers the same frames', () => {
  const rand = prng(7);
  const msg = Buffer.from(Array.from({ length: 65536 - 4 }, () => randInt(rand, 256)));
  const frame = encodeFrame(msg);
  const q = new ByteQueue();
  for (let i = 0; i < frame.length; i++) q.push(Buffer.from([frame[i] as number]));
  assert.equal(q.length, 65536);
  assert.ok(held(q) <= 3, `${held(q)} buffers held for 65536 one-byte chunks`);
  q.skip(4);
  assert.deepEqual(q.take(msg.length), msg);
  assert.equal(q.length, 0);

  const r = new LengthPrefixReceiver();
  const frames: Buffer[] = [];
  for (let i = 0; i < frame.length; i++) frames.push(...r.push(Buffer.from([frame[i] as number])).frames);
  assert.deepEqual(frames, [msg]);

  // Any mix of small and large chunks delivers the same frames.
  for (let round = 0; round < 40; round++) {
    const msgs = Array.from({ length: 1 + randInt(rand, 6) }, () => Buffer.from(Array.from({ length: randInt(rand, 3) ? randInt(rand, 300) : randInt(rand, 150_000) }, () => randInt(rand, 256))));
    const stream = Buffer.concat(msgs.map((m) => encodeFrame(m)));
    const s = new FrameSplitter();
    const r = new LengthPrefixReceiver();
    const a: Buffer[] = [];
    const b: Buffer[] = [];
    for (let at = 0; at < stream.length; ) {
      const n = Math.min(stream.length - at, [1, 3, 100, 4095, 4096, 20_000, 70_000][randInt(rand, 7)] as number);
      // Fresh copies, as a transport hands them over; Uint8Arrays too.
      const chunk = randInt(rand, 2) ? Buffer.from(stream.subarray(at, at + n)) : new Uint8Array(stream.subarray(at, at + n));
      a.push(...s.push(chunk));
      b.push(...r.push(chunk).frames);
      at += n;
    }
    assert.deepEqual(a, msgs);
    assert.deepEqual(b, msgs);
    assert.ok(s.idle);
  }
});

test('whole messages in a chunk that reaches an empty queue come out as views of it, not copies', () => {
  const msgs = [Buffer.from('first message'), Buffer.alloc(1200, 7), Buffer.from('third')];
  // A buffer of its own (not a slice of Node's shared pool, where a copy could land too).
  const joined = Buffer.concat(msgs.map((m) => encodeFrame(m)));
  const chunk = Buffer.allocUnsafeSlow(joined.length);
  joined.copy(chunk);
  const r = new LengthPrefixReceiver();
  const { frames } = r.push(chunk);
  assert.deepEqual(frames, msgs);
  for (const f of frames) assert.equal(f.buffer, chunk.buffer, 'a message was copied out of its chunk');
  // A chunk behind queued bytes is still gathered, and the message spanning both is whole.
  const two = encodeFrame(Buffer.alloc(300, 1));
  assert.deepEqual(r.push(two.subarray(0, 10)).frames, []);
  assert.deepEqual(r.push(two.subarray(10)).frames, [Buffer.alloc(300, 1)]);
});
