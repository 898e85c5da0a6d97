// Encrypted boxes in chunks (SleeveGSO 4): the layout, reassembly in any order, duplicates,
// loss, inconsistent or random chunks never crash nor yield a box, and the bound on partial
// boxes; a real sealed box survives the round trip and opens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BoxReassembler, CHUNK_HEADER_BYTES, chunkBox, chunkPlan, isChunk, writeChunks } from '../../../src/dataplane/sleeve/box-chunks.js';
import { SleeveDecryptor, SleeveEncryptor } from '../../../src/dataplane/sleeve/frame-crypto.js';
import { seeded } from '../../helpers/prng.js';

const SENDER = 0x7a0000000001;
const KEY = Buffer.alloc(32, 9);

/** A box datagram as sealed for sending whole: sender, sequence word, then `boxLen` bytes. */
function packet(boxLen: number, seq: number, df = false): Buffer {
  const p = Buffer.alloc(14 + boxLen);
  p.writeUIntBE(SENDER, 0, 6);
  p.writeUInt32BE((df ? 0x80000000 : 0) + Math.floor(seq / 2 ** 32), 6);
  p.writeUInt32BE(seq >>> 0, 10);
  for (let i = 14; i < p.length; i++) p[i] = (i * 31 + seq) & 0xff;
  return p;
}

function shuffled<T>(xs: T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

test('chunk layout: each fits the datagram size, marked by bit 62, all but the last of equal length', () => {
  const p = packet(65000, 77, true);
  const chunks = chunkBox(p, 1472);
  const { chunkData, count } = chunkPlan(p.length, 1472);
  assert.equal(chunkData, 1472 - CHUNK_HEADER_BYTES);
  assert.equal(chunks.length, count);
  assert.equal(count, Math.ceil(65000 / chunkData));
  for (const [i, c] of chunks.entries()) {
    assert.ok(c.length <= 1472);
    if (i < count - 1) assert.equal(c.length, 1472);
    assert.ok(isChunk(c, 0, c.length));
    assert.equal(c.readUInt32BE(6), 0xc0000000, 'the DF bit kept, bit 62 set');
    assert.equal(c.readUInt32BE(10), 77);
    assert.equal(c.readUInt16BE(14), i);
    assert.equal(c.readUInt16BE(16), count);
    assert.equal(c.readUInt32BE(18), 65000);
  }
  assert.ok(!isChunk(p, 0, p.length), 'the whole datagram is not a chunk');
  // A train written in one go is the chunks back to back.
  const train = Buffer.alloc(65536);
  const n = writeChunks(p, p.length, chunkData, count, 3, 5, train);
  assert.deepEqual(train.subarray(0, n), Buffer.concat(chunks.slice(3, 8)));
  assert.throws(() => chunkPlan(p.length, 40), /cannot cut/);
  assert.throws(() => chunkPlan(14 + 70000, 1472), /cannot cut/);
});

test('reassembly in any order, with duplicates, gives the box datagram back once', () => {
  const rand = seeded(7);
  const r = new BoxReassembler();
  for (const boxLen of [1451, 1500, 3000, 65000, 65535]) {
    const p = packet(boxLen, boxLen * 3);
    const chunks = chunkBox(p, 1472);
    const order = shuffled([...chunks, chunks[0]!, chunks[chunks.length - 1]!], rand);
    let got: Buffer | undefined;
    let wholes = 0;
    for (const c of order) {
      const out = r.add(c, 0, c.length);
      if (out) {
        got = Buffer.from(out);
        wholes++;
      }
    }
    r.recycle();
    assert.equal(wholes, 1, `${boxLen}: exactly once (late duplicates of a finished box are ignored)`);
    assert.deepEqual(got, p, `${boxLen}: the datagram as sealed`);
  }
});

test('a lost chunk: no box; partial boxes are bounded and the next boxes still come through', () => {
  const r = new BoxReassembler();
  for (let seq = 1; seq <= 10; seq++) {
    const chunks = chunkBox(packet(20000, seq), 1472);
    for (const c of chunks.slice(1)) assert.equal(r.add(c, 0, c.length), undefined);
    assert.ok(r.pending <= 4, 'at most four partial boxes');
  }
  const p = packet(20000, 11);
  let out: Buffer | undefined;
  for (const c of chunkBox(p, 1472)) out = r.add(c, 0, c.length) ?? out;
  assert.deepEqual(out && Buffer.from(out), p);
  assert.ok(r.dropped >= 6, 'the pushed-out partials are counted');
});

test('inconsistent chunks are dropped, and the box they claimed to belong to starts over', () => {
  const r = new BoxReassembler();
  const p = packet(10000, 5);
  const chunks = chunkBox(p, 1472);
  const bad = Buffer.from(chunks[1]!);
  bad.writeUInt32BE(12000, 18); // another length for the same box
  assert.equal(r.add(chunks[0]!, 0, chunks[0]!.length), undefined);
  assert.equal(r.add(bad, 0, bad.length), undefined);
  // Header damage of every kind: index past count, count 1, a length the chunk cannot be.
  const cases: [number, number, number][] = [[14, 2, 9], [16, 2, 1], [18, 4, 100], [18, 4, 0x7fffffff]];
  for (const [at, size, v] of cases) {
    const c = Buffer.from(chunks[2]!);
    c.writeUIntBE(v, at, size);
    assert.equal(r.add(c, 0, c.length), undefined);
  }
  const short = chunks[3]!.subarray(0, CHUNK_HEADER_BYTES);
  assert.equal(r.add(short, 0, short.length), undefined);
  // The genuine chunks, all of them, still make the box.
  let out: Buffer | undefined;
  for (const c of chunks) out = r.add(c, 0, c.length) ?? out;
  assert.deepEqual(out && Buffer.from(out), p);
});

test('random and truncated chunks never throw and never make a box', () => {
  const rand = seeded(11);
  const r = new BoxReassembler();
  const real = chunkBox(packet(30000, 9), 1472);
  for (let i = 0; i < 20000; i++) {
    let c: Buffer;
    if (i % 2) {
      c = Buffer.from(real[Math.floor(rand() * real.length)]!);
      for (let k = 0; k < 3; k++) c[Math.floor(rand() * Math.min(c.length, 40))] = Math.floor(rand() * 256);
      c = c.subarray(0, Math.floor(rand() * (c.length + 1)));
    } else {
      c = Buffer.alloc(Math.floor(rand() * 1500));
      for (let k = 0; k < c.length; k++) c[k] = Math.floor(rand() * 256);
      if (c.length > 6) c[6]! |= 0x40;
    }
    assert.doesNotThrow(() => r.add(c, 0, c.length));
    if (i % 100 === 0) r.recycle();
  }
  assert.ok(r.pending <= 4);
});

test('a sealed super-frame box goes through chunks and opens as the whole datagram would', () => {
  const enc = new SleeveEncryptor(KEY, true, false);
  const dec = new SleeveDecryptor(KEY, false); // the receiving end of a connection the sender dialled
  const frames = Buffer.alloc(60000);
  for (let i = 0; i < frames.length; i++) frames[i] = (i * 13) & 0xff;
  for (let n = 0; n < 3; n++) {
    const sealed = enc.seal(SENDER, frames);
    const r = new BoxReassembler();
    let whole: Buffer | undefined;
    for (const c of shuffled(chunkBox(sealed, 1400), seeded(n))) whole = r.add(c, 0, c.length) ?? whole;
    assert.ok(whole);
    assert.deepEqual(Buffer.from(whole), sealed);
    assert.ok(dec.openAt(whole, 0, whole.length), 'authenticates, and the sequence number is new');
    assert.deepEqual(whole.subarray(30), frames);
  }
});
