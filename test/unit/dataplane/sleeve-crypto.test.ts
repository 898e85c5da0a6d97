// Encrypted sleeve: the packet and nonce layout checked by opening with hand-built nonces
// through libsodium directly, polarity, separate DF and non-DF sequences, the replay window
// exactly as the original's advanceState, in-place sealing and opening, and the sizes seen in
// the encrypted capture.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { isWeaveError } from '../../../src/core/errors.js';
import { secretboxSeal } from '../../../src/mesh/sodium.js';
import { ENCRYPTED_PACKET_OVERHEAD, SleeveBatch, decodeSleeveFrames, encodeSleevePacket, makeHeartbeatFrame, makeMtuTestFrame } from '../../../src/dataplane/sleeve/codec.js';
import {
  REPLAY_WINDOW_BITS, ReplayWindow, SleeveDecryptor, SleeveEncryptor, peekEncryptedSleeveHeader, sleeveNoncePolarity,
} from '../../../src/dataplane/sleeve/frame-crypto.js';
import { seeded } from '../../helpers/prng.js';

interface Sodium {
  crypto_secretbox_open_easy(m: Buffer, c: Buffer, n: Buffer, k: Buffer): boolean;
}
const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;

const code = (c: string) => (e: unknown) => isWeaveError(e) && e.code === c;
const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const H1 = 0x7a0000000001;
const H2 = 0x7a0000000002;
const W = 2 ** REPLAY_WINDOW_BITS;

function randomBuf(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Opens with libsodium and a nonce built by hand: byte 0 and bytes 16..23 from the packet. */
function openByHand(packet: Buffer, byte0: number): Buffer | undefined {
  const nonce = Buffer.alloc(24);
  nonce[0] = byte0;
  packet.copy(nonce, 16, 6, 14);
  const box = packet.subarray(14);
  const m = Buffer.alloc(box.length - 16);
  return sodium.crypto_secretbox_open_easy(m, box, nonce, KEY) ? m : undefined;
}

test('layout: [sender][seq|DF][tag+box], nonce = polarity byte + the same u64', () => {
  const plain = encodeSleevePacket(H2, [{ src: H2, dst: H1, frame: makeHeartbeatFrame(0x0431db80eebfce18n) }]).subarray(6);
  const enc = new SleeveEncryptor(KEY, true, true);
  const p0 = enc.seal(H2, plain);
  assert.equal(p0.length, 66, 'heartbeat datagram as in the capture');
  assert.equal(p0.length, ENCRYPTED_PACKET_OVERHEAD + plain.length);
  assert.equal(p0.readUIntBE(0, 6), H2);
  assert.equal(p0.subarray(6, 14).toString('hex'), '8000000000000000', 'DF bit, seq 0');
  assert.deepEqual(openByHand(p0, 0x80), plain, 'sender outbound => byte 0 = 0x80');
  assert.equal(openByHand(p0, 0x00), undefined);
  assert.equal(openByHand(p0, 0xc0), undefined, 'no TCP bit in UDP nonces');
  // Same bytes as a plain secretbox with that nonce (Go's secretbox.Seal).
  const nonce = Buffer.alloc(24);
  nonce[0] = 0x80;
  nonce[16] = 0x80;
  assert.deepEqual(p0.subarray(14), secretboxSeal(plain, nonce, KEY));
  const p1 = enc.seal(H2, plain);
  assert.equal(p1.subarray(6, 14).toString('hex'), '8000000000000001');
  assert.deepEqual(openByHand(p1, 0x80), plain);
  // Inbound sender, non-DF channel.
  const in0 = new SleeveEncryptor(KEY, false, false);
  const q0 = in0.seal(H1, plain);
  assert.equal(q0.subarray(6, 14).toString('hex'), '0000000000000000');
  assert.deepEqual(openByHand(q0, 0x00), plain);
  assert.equal(openByHand(q0, 0x80), undefined);
  assert.equal(sleeveNoncePolarity(true), 0x80);
  assert.equal(sleeveNoncePolarity(false), 0);
  const h = peekEncryptedSleeveHeader(p1);
  assert.deepEqual(h, { sender: H2, df: true, seq: 1, boxBytes: 52, plaintextBytes: 36 });
});

test('polarity: each side opens what the other sealed, never its own', () => {
  const dialler = { enc: new SleeveEncryptor(KEY, true, false), dec: new SleeveDecryptor(KEY, true) };
  const listener = { enc: new SleeveEncryptor(KEY, false, false), dec: new SleeveDecryptor(KEY, false) };
  const msg = Buffer.from('frames');
  const fromDialler = dialler.enc.seal(H2, msg);
  const fromListener = listener.enc.seal(H1, msg);
  assert.deepEqual(listener.dec.open(fromDialler)?.plaintext, msg);
  assert.deepEqual(dialler.dec.open(fromListener)?.plaintext, msg);
  assert.equal(dialler.dec.open(fromDialler), undefined);
  assert.equal(dialler.dec.lastDropReason, 'auth');
  assert.equal(listener.dec.open(fromListener), undefined);
  const wrongKey = new SleeveDecryptor(Buffer.alloc(32, 1), false);
  assert.equal(wrongKey.open(fromDialler), undefined);
  assert.equal(wrongKey.lastDropReason, 'auth');
});

test('DF and non-DF channels count separately and are checked in separate windows', () => {
  const encDF = new SleeveEncryptor(KEY, true, true);
  const enc = new SleeveEncryptor(KEY, true, false);
  const dec = new SleeveDecryptor(KEY, false);
  const seqs: Array<[boolean, number]> = [];
  for (const e of [encDF, encDF, enc, encDF, enc]) {
    const r = dec.open(e.seal(H2, Buffer.from([1, 2, 3])));
    assert.ok(r, 'accepted');
    assert.equal(r.sender, H2);
    seqs.push([r.df, r.seq]);
  }
  assert.deepEqual(seqs, [[true, 0], [true, 1], [false, 0], [true, 2], [false, 1]]);
  assert.equal(encDF.nextSeq, 3);
  assert.equal(enc.nextSeq, 2);
});

test('replay: duplicates and stale packets are dropped silently, reordering is fine', () => {
  const enc = new SleeveEncryptor(KEY, true, false);
  const dec = new SleeveDecryptor(KEY, false);
  const pkts = Array.from({ length: 10 }, (_, i) => enc.seal(H2, Buffer.from([i])));
  for (const i of [3, 0, 9, 1, 2]) assert.equal(dec.open(pkts[i]!)?.plaintext[0], i);
  for (const i of [3, 0, 9]) {
    assert.equal(dec.open(pkts[i]!), undefined, `duplicate ${i}`);
    assert.equal(dec.lastDropReason, 'replay');
  }
  assert.ok(dec.open(pkts[5]!));
  assert.equal(dec.lastDropReason, undefined);
});

test('replay window: the original advanceState case by case', () => {
  const w = new ReplayWindow();
  assert.equal(w.accept(0), true);
  assert.equal(w.accept(0), false, 'duplicate');
  assert.equal(w.accept(5), true);
  assert.equal(w.accept(3), true, 'out of order within the window');
  // Next window: slides by one, the old set becomes the previous window.
  assert.equal(w.accept(W + 1), true);
  assert.equal(w.accept(5), false, 'seen in the previous window');
  assert.equal(w.accept(6), true, 'unseen in the previous window');
  assert.equal(w.accept(6), false);
  assert.equal(w.accept(W + 1), false);
  assert.equal(w.accept(W - 1), true, 'last slot of the previous window');
  // A jump of several windows clears both sets.
  assert.equal(w.accept(3 * W + 10), true);
  assert.equal(w.accept(2 * W + 7), true, 'the window just before: empty set, accepted');
  assert.equal(w.accept(2 * W + 7), false);
  assert.equal(w.accept(W + 2), false, 'two windows back: dropped');
  assert.equal(w.accept(7), false, 'ancient: dropped');
  assert.equal(w.accept(3 * W + 10), false);
  assert.equal(w.accept(3 * W), true);
  // Sliding by exactly one keeps the current set as previous.
  assert.equal(w.accept(4 * W), true);
  assert.equal(w.accept(3 * W + 10), false);
  assert.equal(w.accept(3 * W + 11), true);
  // A fresh window never accepts "window -1" (the original's previous set starts nil)...
  // ...which cannot happen from window 0 anyway; and the top of the 63-bit space is exact.
  const top = new ReplayWindow();
  assert.equal(top.acceptParts(0x7fffffff, 0xffffffff), true);
  assert.equal(top.acceptParts(0x7fffffff, 0xffffffff), false);
  assert.equal(top.acceptParts(0x7fffffff, 0xfff00000 - 1), true, 'previous window (empty after the jump)');
  assert.equal(top.acceptParts(0x7fffffff, 0xffe00000 - 1), false, 'two windows back');
  assert.equal(top.acceptParts(0x7fffffff, 0xfff00001), true);
  // The DF flag bit is not part of the sequence number.
  assert.equal(top.acceptParts(0xffffffff, 0xfff00002), true);
  assert.equal(top.acceptParts(0x7fffffff, 0xfff00002), false);
});

test('replay window: a dense stream across many windows is all accepted once', () => {
  const w = new ReplayWindow();
  // Reordered within blocks of 64 (a fixed permutation: 37 is odd, so i*37 mod 64 covers all).
  let accepted = 0;
  for (let base = 0; base < 3 * W + 5000; base += 64) {
    for (let i = 0; i < 64; i++) if (w.accept(base + ((i * 37) & 63))) accepted++;
    if (base % 65536 === 0) assert.equal(w.accept(base + 5), false);
  }
  assert.equal(accepted, 3 * W + 5056);
});

test('replay: state moves only for authentic packets', () => {
  const enc = new SleeveEncryptor(KEY, true, false);
  const dec = new SleeveDecryptor(KEY, false);
  const genuine = enc.seal(H2, Buffer.from('x'));
  const forged = Buffer.from(genuine);
  forged.writeUInt32BE(0x7fffffff, 6); // a far-future sequence number, MAC no longer valid
  assert.equal(dec.open(forged), undefined);
  assert.equal(dec.lastDropReason, 'auth');
  assert.ok(dec.open(genuine), 'the window did not move');
  // A genuine jump far ahead does move it: older ones then drop.
  const ahead = new SleeveEncryptor(KEY, true, false);
  const old = ahead.seal(H2, Buffer.from('o'));
  (ahead as unknown as { seq: number }).seq = 5 * W;
  assert.ok(dec.open(ahead.seal(H2, Buffer.from('f'))));
  assert.equal(dec.open(old), undefined);
  assert.equal(dec.lastDropReason, 'replay');
});

test('short and truncated packets are dropped, not thrown', () => {
  const dec = new SleeveDecryptor(KEY, false);
  const p = new SleeveEncryptor(KEY, true, false).seal(H2, Buffer.from('hello'));
  for (let n = 0; n < p.length; n++) {
    assert.equal(dec.open(p.subarray(0, n)), undefined);
    assert.equal(dec.lastDropReason, n < 30 ? 'short' : 'auth');
  }
  // An empty plaintext is a valid box (30 bytes).
  const empty = new SleeveEncryptor(KEY, true, true).seal(H2, Buffer.alloc(0));
  assert.equal(empty.length, 30);
  assert.equal(dec.open(empty)?.plaintext.length, 0);
  assert.throws(() => peekEncryptedSleeveHeader(Buffer.alloc(29)), code('DECODE_FAILED'));
});

test('in place: a batch is sealed in its own buffer and opened in the datagram', () => {
  const rand = seeded(3);
  const enc = new SleeveEncryptor(KEY, false, true);
  const dec = new SleeveDecryptor(KEY, true);
  const batch = new SleeveBatch(Buffer.alloc(65535), H1, { encrypted: true, maxPayloadBytes: 1472 });
  const frames = [randomBuf(rand, 98), randomBuf(rand, 300), makeMtuTestFrame(100)];
  for (const f of frames) assert.ok(batch.tryAdd(H1, H2, f));
  const expectedPlain = Buffer.from(batch.frames());
  const pkt = enc.sealBatch(batch);
  assert.equal(pkt.buffer, batch.buf.buffer, 'sealed where it was built');
  assert.equal(pkt.length, batch.length);
  assert.equal(pkt.readUIntBE(0, 6), H1);
  assert.deepEqual(openByHand(Buffer.from(pkt), 0x00), expectedPlain);
  const copy = Buffer.from(pkt);
  const r = dec.open(copy, { inPlace: true });
  assert.ok(r);
  assert.equal(r.plaintext.buffer, copy.buffer);
  assert.equal(r.plaintext.byteOffset, copy.byteOffset + 30);
  assert.deepEqual(r.plaintext, expectedPlain);
  assert.deepEqual(decodeSleeveFrames(r.plaintext).map((f) => f.frame), frames);
  // A forged packet opened in place is left as it was.
  const forged = Buffer.from(pkt);
  forged[40] = forged[40]! ^ 1;
  const before = Buffer.from(forged);
  assert.equal(new SleeveDecryptor(KEY, true).open(forged, { inPlace: true }), undefined);
  assert.deepEqual(forged, before);
  // seal() into a caller buffer with the plaintext elsewhere.
  const out = Buffer.alloc(100);
  const s = enc.seal(H1, Buffer.from('abc'), out);
  assert.equal(s.buffer, out.buffer);
  assert.equal(s.length, 33);
  assert.deepEqual(dec.open(s)?.plaintext, Buffer.from('abc'));
  assert.throws(() => enc.seal(H1, Buffer.alloc(80), out), code('INVALID_ARGUMENT'));
  assert.throws(() => enc.sealBatch(new SleeveBatch(Buffer.alloc(100), H1)), code('INVALID_ARGUMENT'));
});

test('at an offset: packets sealed back to back in one buffer (a UDP GSO train), opened in place in a receive buffer', () => {
  const rand = seeded(4);
  const enc = new SleeveEncryptor(KEY, true, true);
  const ref = new SleeveEncryptor(KEY, true, true);
  const dec = new SleeveDecryptor(KEY, false);
  const frames = [randomBuf(rand, 1200), randomBuf(rand, 1200), randomBuf(rand, 700)];
  const buf = Buffer.alloc(8000);
  const at: [number, number][] = [];
  let o = 5;
  for (const f of frames) {
    const plain = encodeSleevePacket(H1, [{ src: H1, dst: H2, frame: f }]).subarray(6);
    plain.copy(buf, o + ENCRYPTED_PACKET_OVERHEAD);
    const end = o + ENCRYPTED_PACKET_OVERHEAD + plain.length;
    enc.sealAt(H1, buf, o, end);
    // Byte for byte what seal() makes with the same sequence number.
    assert.deepEqual(buf.subarray(o, end), ref.seal(H1, plain));
    at.push([o, end]);
    o = end;
  }
  assert.throws(() => enc.sealAt(H1, buf, 7990, 8001), code('INVALID_ARGUMENT'));
  // Opened where it lies: the frames appear at start + 30; a replay is refused.
  const copy = Buffer.from(buf);
  for (const [i, [s, e]] of at.entries()) {
    assert.ok(dec.openAt(copy, s, e));
    assert.deepEqual(decodeSleeveFrames(copy.subarray(s + ENCRYPTED_PACKET_OVERHEAD, e)).map((f) => f.frame), [frames[i]]);
  }
  const again = Buffer.from(buf);
  assert.equal(dec.openAt(again, at[0]![0], at[0]![1]), false);
  assert.equal(dec.lastDropReason, 'replay');
  again[at[1]![0] + 40] = again[at[1]![0] + 40]! ^ 1;
  assert.equal(new SleeveDecryptor(KEY, false).openAt(again, at[1]![0], at[1]![1]), false);
  assert.equal(dec.openAt(again, 0, 20), false);
  assert.equal(dec.lastDropReason, 'short');
});

test('keys: 32 bytes or INVALID_ARGUMENT; the key is copied', () => {
  assert.throws(() => new SleeveEncryptor(Buffer.alloc(31), true, true), code('INVALID_ARGUMENT'));
  assert.throws(() => new SleeveDecryptor(Buffer.alloc(33), true), code('INVALID_ARGUMENT'));
  const k = Buffer.from(KEY);
  const enc = new SleeveEncryptor(k, true, false);
  k.fill(0);
  assert.deepEqual(openByHand(enc.seal(H2, Buffer.from('z')), 0x80), Buffer.from('z'));
});

test('sizes of the capture: heartbeat 66, PMTU test 1472 at MTU 1414, frag test 60045', () => {
  const enc = new SleeveEncryptor(KEY, true, true);
  const frame = (f: Buffer) => encodeSleevePacket(H2, [{ src: H2, dst: H1, frame: f }]).subarray(6);
  assert.equal(enc.seal(H2, frame(makeHeartbeatFrame(1n))).length, 66);
  assert.equal(enc.seal(H2, frame(makeMtuTestFrame(1414))).length, 1472);
  assert.equal(new SleeveEncryptor(KEY, true, false).seal(H2, frame(Buffer.alloc(60001))).length, 60045);
});
