// Control-plane crypto: Precompute (HSalsa20 over X25519) against NaCl's published vector and
// against libsodium's own crypto_box, the session key, the TCP nonce layout checked by opening
// with hand-built nonces, sequence and polarity rules, and the sizes of the encrypted capture.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { isWeaveError } from '../../../src/core/errors.js';
import {
  SEAL_OVERHEAD_BYTES, TcpCryptoReceiver, TcpCryptoSender, boxPrecompute, formSessionKey, generateBoxKeyPair, hsalsa20, tcpCryptoPair, tcpNonce,
} from '../../../src/mesh/crypto.js';
import { encodeFeatures } from '../../../src/mesh/features.js';
import { prng, readStream, splitStream, type Dir } from './wire-fixtures.js';

interface Sodium {
  crypto_box_easy(c: Buffer, m: Buffer, n: Buffer, pk: Buffer, sk: Buffer): void;
  crypto_secretbox_easy(c: Buffer, m: Buffer, n: Buffer, k: Buffer): void;
  crypto_secretbox_open_easy(m: Buffer, c: Buffer, n: Buffer, k: Buffer): boolean;
  crypto_stream(c: Buffer, n: Buffer, k: Buffer): void;
  crypto_stream_salsa20(c: Buffer, n: Buffer, k: Buffer): void;
}
const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;

const hex = (s: string) => Buffer.from(s, 'hex');
const code = (c: string) => (e: unknown) => isWeaveError(e) && e.code === c;

function randomBuf(rand: () => number, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
}

// NaCl's test vectors (tests/box.c, core1.c; also RFC 7748 section 6.1).
const ALICE_SK = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const ALICE_PK = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
const BOB_SK = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const BOB_PK = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
const FIRSTKEY = '1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389';

test('key pairs: the public key is the base-point multiple of the injected secret', () => {
  const kp = generateBoxKeyPair(() => Buffer.from(ALICE_SK));
  assert.equal(kp.secretKey.toString('hex'), ALICE_SK.toString('hex'));
  assert.equal(kp.publicKey.toString('hex'), ALICE_PK.toString('hex'));
  assert.throws(() => generateBoxKeyPair(() => Buffer.alloc(31)), code('INTERNAL'));
});

test('box.Precompute: the NaCl "firstkey" vector, symmetric in the two parties', () => {
  assert.equal(boxPrecompute(BOB_PK, ALICE_SK).toString('hex'), FIRSTKEY);
  assert.equal(boxPrecompute(ALICE_PK, BOB_SK).toString('hex'), FIRSTKEY);
  assert.throws(() => boxPrecompute(Buffer.alloc(31), ALICE_SK), code('DECODE_FAILED'));
  assert.throws(() => boxPrecompute(Buffer.alloc(32), ALICE_SK), code('DECODE_FAILED'), 'low-order point refused');
});

test('box.Precompute agrees with libsodium crypto_box for random key pairs', () => {
  const rand = prng(7);
  for (let i = 0; i < 20; i++) {
    const a = generateBoxKeyPair((n) => randomBuf(rand, n));
    const b = generateBoxKeyPair((n) => randomBuf(rand, n));
    const m = randomBuf(rand, 1 + Math.floor(rand() * 200));
    const n = randomBuf(rand, 24);
    const viaBox = Buffer.alloc(m.length + 16);
    sodium.crypto_box_easy(viaBox, m, n, b.publicKey, a.secretKey);
    const viaSecretbox = Buffer.alloc(m.length + 16);
    sodium.crypto_secretbox_easy(viaSecretbox, m, n, boxPrecompute(b.publicKey, a.secretKey));
    assert.deepEqual(viaSecretbox, viaBox);
    assert.deepEqual(boxPrecompute(a.publicKey, b.secretKey), boxPrecompute(b.publicKey, a.secretKey));
  }
});

test('HSalsa20: XSalsa20(k, n) = Salsa20(HSalsa20(k, n[0:16]), n[16:24])', () => {
  const rand = prng(11);
  for (let i = 0; i < 20; i++) {
    const k = randomBuf(rand, 32);
    const n = randomBuf(rand, 24);
    const x = Buffer.alloc(128);
    sodium.crypto_stream(x, n, k);
    const s = Buffer.alloc(128);
    sodium.crypto_stream_salsa20(s, n.subarray(16), hsalsa20(k, n.subarray(0, 16)));
    assert.deepEqual(s, x);
  }
  assert.throws(() => hsalsa20(Buffer.alloc(31), Buffer.alloc(16)), code('INVALID_ARGUMENT'));
});

test('session key = SHA-256(Precompute ‖ password), the same on both ends', () => {
  const pw = Buffer.from('testpassword');
  const expected = createHash('sha256').update(hex(FIRSTKEY)).update(pw).digest('hex');
  assert.equal(formSessionKey(BOB_PK, ALICE_SK, pw).toString('hex'), expected);
  assert.equal(formSessionKey(ALICE_PK, BOB_SK, pw).toString('hex'), expected);
  assert.equal(expected, 'ae340c3c6a42f8d6f2168932bd74bfb1197ac4c6084c388384a6b4153a5f3ea4');
  assert.notDeepEqual(formSessionKey(BOB_PK, ALICE_SK, Buffer.from('other')), hex(expected));
});

test('TCP nonce: byte 0 = 0x40 | 0x80 for the outbound sender, bytes 16..23 = seq BE', () => {
  assert.equal(tcpNonce(true, 0).toString('hex'), 'c0' + '00'.repeat(23));
  assert.equal(tcpNonce(false, 0).toString('hex'), '40' + '00'.repeat(23));
  assert.equal(tcpNonce(false, 0x0102).toString('hex'), '40' + '00'.repeat(15) + '0000000000000102');
  assert.equal(tcpNonce(true, 2 ** 40 + 5).toString('hex'), 'c0' + '00'.repeat(15) + '0000010000000005');
  assert.throws(() => tcpNonce(true, -1), code('INVALID_ARGUMENT'));
});

test('sealing: reproducible bytes, each opened with a hand-built nonce of the sender polarity', () => {
  const key = formSessionKey(BOB_PK, ALICE_SK, Buffer.from('testpassword'));
  const msgs = ['first', 'second', '', 'x'.repeat(1000)].map((s) => Buffer.from(s));
  for (const outbound of [true, false]) {
    const s1 = new TcpCryptoSender(key, outbound);
    const s2 = new TcpCryptoSender(key, outbound);
    msgs.forEach((m, seq) => {
      const box = s1.seal(m);
      assert.deepEqual(s2.seal(m), box, 'deterministic');
      assert.equal(box.length, m.length + SEAL_OVERHEAD_BYTES);
      const nonce = Buffer.alloc(24);
      nonce[0] = outbound ? 0xc0 : 0x40;
      nonce.writeBigUInt64BE(BigInt(seq), 16);
      const out = Buffer.alloc(m.length);
      assert.ok(sodium.crypto_secretbox_open_easy(out, box, nonce, key), `opens with seq ${seq}`);
      assert.deepEqual(out, m);
      const expected = Buffer.alloc(box.length);
      sodium.crypto_secretbox_easy(expected, m, nonce, key);
      assert.deepEqual(box, expected);
    });
  }
  // A pinned vector, so that a change of layout cannot go unnoticed.
  assert.equal(new TcpCryptoSender(key, true).seal(Buffer.from('0400', 'hex')).toString('hex'), PINNED_SEAL);
});

const PINNED_SEAL = 'a2ebb28713d4b6c8cf3b7e665aaec3afb552';

test('receiver: opens in order under the peer polarity; anything else is DECODE_FAILED', () => {
  const key = formSessionKey(ALICE_PK, BOB_SK, Buffer.from('pw'));
  const dialler = tcpCryptoPair(key, true);
  const acceptor = tcpCryptoPair(key, false);
  const boxes = [0, 1, 2].map((i) => dialler.sender.seal(Buffer.from([i])));
  boxes.forEach((b, i) => assert.deepEqual(acceptor.receiver.open(b), Buffer.from([i])));
  assert.equal(acceptor.receiver.nextSeq, 3);
  // The other direction uses the other polarity.
  assert.deepEqual(dialler.receiver.open(acceptor.sender.seal(Buffer.from('back'))), Buffer.from('back'));

  const fresh = () => new TcpCryptoReceiver(key, false);
  assert.throws(() => fresh().open(boxes[1]!), /Unable to decrypt TCP msg/, 'out of order');
  assert.throws(() => new TcpCryptoReceiver(key, true).open(boxes[0]!), code('DECODE_FAILED'), 'own polarity');
  const tampered = Buffer.from(boxes[0]!);
  tampered[tampered.length - 1]! ^= 1;
  assert.throws(() => fresh().open(tampered), code('DECODE_FAILED'));
  assert.throws(() => fresh().open(Buffer.alloc(5)), code('DECODE_FAILED'), 'shorter than the tag');
  const r = fresh();
  assert.throws(() => r.open(tampered));
  assert.deepEqual(r.open(boxes[0]!), Buffer.from([0]), 'a failed open does not advance the sequence');
  assert.throws(() => new TcpCryptoSender(Buffer.alloc(16), true), code('INVALID_ARGUMENT'));
});

test('encrypted capture: every frame is its plain-run message plus the 16-byte tag', () => {
  const key = Buffer.alloc(32, 9);
  // Fixed-size messages of the plain run: control messages (3 and 5 bytes) and the first nameserver gossip (211).
  const sealedLen = (n: number) => new TcpCryptoSender(key, true).seal(Buffer.alloc(n)).length;
  for (const dir of ['h1-to-h2', 'h2-to-h1'] as Dir[]) {
    const s = splitStream(readStream('encrypted', dir));
    assert.equal(s.flag.encrypted, true);
    const lens = s.messages.map((m) => m.bytes.length);
    for (const plain of [3, 5, 211]) assert.ok(lens.includes(sealedLen(plain)), `${dir}: a ${plain}-byte message sealed`);
    // The feature map: weaver's keys with random decimal values; some digit counts give exactly the sealed size.
    const first = lens[0]!;
    let found = false;
    for (let sid = 1; sid <= 4 && !found; sid++) {
      for (let uid = 15; uid <= 20 && !found; uid++) {
        for (let cid = 15; cid <= 20 && !found; cid++) {
          const f = encodeFeatures({
            PeerNameFlavour: 'mac', Name: `7a:00:00:00:00:0${dir === 'h1-to-h2' ? 1 : 2}`, NickName: dir === 'h1-to-h2' ? 'tv-h1' : 'tv-h2',
            ShortID: '9'.repeat(sid), UID: '1'.repeat(uid), ConnID: '2'.repeat(cid), Trusted: 'false', Overlays: 'sleeve',
          });
          found = sealedLen(f.length) === first;
        }
      }
    }
    assert.ok(found, `${dir}: features frame of ${first} bytes = an encoded feature map + 16`);
  }
});
