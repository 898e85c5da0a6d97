// Fuzzing every sleeve decoder with a seeded PRNG: random bytes and mutations (flips,
// truncations, extensions, length rewrites, splices) of real and synthetic inputs. Decoders
// may only return or throw a WeaveError, and whatever they accept must satisfy the format's
// own laws (a plain packet that decodes re-encodes to the same bytes; a packet that opens is
// an untouched genuine one; fragments fit the MTU). Each test has a time limit, so a hang fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeaveError } from '../../../src/core/errors.js';
import {
  SleeveBatch, classifySpecialFrame, decodeSleeveControlMsg, decodeSleevePacket, encodeSleevePacket, isSpecialFrame, makeHeartbeatFrame,
  makeMtuTestFrame, validateSleeveFrames, visitSleeveFrames,
} from '../../../src/dataplane/sleeve/codec.js';
import { SleeveDecryptor, SleeveEncryptor, peekEncryptedSleeveHeader } from '../../../src/dataplane/sleeve/frame-crypto.js';
import {
  etherType, fragmentIPv4Frame, icmpFragNeededFrame, internetChecksum, ipv4Checksum, ipv4DontFragment, ipv4Protocol, ipv4TotalLength, parseIpv4Frame,
} from '../../../src/dataplane/sleeve/ipv4.js';
import { completeChecksum, decodeVnetHdr, encodeVnetHdr, gsoForFrame, segmentGso, type VnetHdr } from '../../../src/dataplane/sleeve/vnet-hdr.js';
import { seeded } from '../../helpers/prng.js';

const fixtureDir = join(process.env.WEAVE_REPO_ROOT ?? process.cwd(), 'test/fixtures/wire-vectors');
const SEED = Number(process.env.FUZZ_SEED ?? 20261127);
const TIME_LIMIT = { timeout: 120_000 };

type Rand = () => number;
const int = (rand: Rand, n: number) => Math.floor(rand() * n);

function randomBuf(rand: Rand, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(rand, 256);
  return b;
}

/** One random mutation; sometimes several. */
function mutate(rand: Rand, src: Buffer, pool: Buffer[]): Buffer {
  let b = Buffer.from(src);
  const rounds = 1 + int(rand, 3);
  for (let r = 0; r < rounds; r++) {
    switch (int(rand, 8)) {
      case 0: // flip bits
        if (b.length) {
          const k = int(rand, b.length);
          b[k] = b[k]! ^ (1 << int(rand, 8));
        }
        break;
      case 1: // random byte
        if (b.length) b[int(rand, b.length)] = int(rand, 256);
        break;
      case 2: // truncate
        b = b.subarray(0, int(rand, b.length + 1));
        break;
      case 3: // extend
        b = Buffer.concat([b, randomBuf(rand, 1 + int(rand, 20))]);
        break;
      case 4: // rewrite a 16-bit field with an edge value
        if (b.length >= 2) b.writeUInt16BE([0, 1, 13, 14, 0xffff, 0x8000, b.length, int(rand, 0x10000)][int(rand, 8)]!, int(rand, b.length - 1));
        break;
      case 5: // splice with another input
        if (pool.length) {
          const o = pool[int(rand, pool.length)]!;
          const cut = int(rand, b.length + 1);
          b = Buffer.concat([b.subarray(0, cut), o.subarray(int(rand, o.length + 1))]);
        }
        break;
      case 6: // delete a range
        if (b.length) {
          const at = int(rand, b.length);
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(rand, 8))]);
        }
        break;
      default: // insert bytes
        {
          const at = int(rand, b.length + 1);
          b = Buffer.concat([b.subarray(0, at), randomBuf(rand, 1 + int(rand, 8)), b.subarray(at)]);
        }
    }
  }
  return b;
}

/** Runs fn; a WeaveError is fine (returns undefined), anything else fails with the input. */
function weaveOnly<T>(what: string, input: Uint8Array, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (e instanceof WeaveError) return undefined;
    assert.fail(`${what} threw ${String(e)} on ${Buffer.from(input).toString('hex').slice(0, 400)} (seed ${SEED})`);
  }
}

function capturePackets(): Buffer[] {
  return readFileSync(join(fixtureDir, 'plain', 'udp-frames.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { hex: string; hex_truncated_to?: number })
    .filter((r) => r.hex_truncated_to === undefined)
    .map((r) => Buffer.from(r.hex, 'hex'));
}

function syntheticPacket(rand: Rand): Buffer {
  const n = 1 + int(rand, 5);
  const frames = Array.from({ length: n }, () => {
    const k = int(rand, 4);
    const frame = k === 0 ? makeHeartbeatFrame(BigInt(int(rand, 2 ** 30))) : k === 1 ? makeMtuTestFrame(int(rand, 200)) : randomBuf(rand, 1 + int(rand, 150));
    return { src: int(rand, 2 ** 48), dst: int(rand, 2 ** 48), frame };
  });
  return encodeSleevePacket(int(rand, 2 ** 48), frames);
}

test('fuzz: plain packets either decode and re-encode identically, or are DECODE_FAILED', TIME_LIMIT, (t) => {
  const rand = seeded(SEED);
  const pool = [...capturePackets(), ...Array.from({ length: 30 }, () => syntheticPacket(rand))];
  let accepted = 0;
  let refused = 0;
  const N = 20000;
  for (let i = 0; i < N; i++) {
    const input = i % 10 === 0 ? randomBuf(rand, int(rand, 120)) : mutate(rand, pool[int(rand, pool.length)]!, pool);
    const p = weaveOnly('decodeSleevePacket', input, () => decodeSleevePacket(input));
    let visits = 0;
    const n = weaveOnly('visitSleeveFrames', input, () => visitSleeveFrames(input, 6, input.length, () => visits++));
    if (!p) {
      refused++;
      assert.equal(visits, 0, 'nothing visited from a refused packet');
      continue;
    }
    accepted++;
    assert.equal(n, p.frames.length);
    assert.equal(validateSleeveFrames(input, 6), p.frames.length);
    assert.deepEqual(encodeSleevePacket(p.sender, p.frames), input, 'accepted => re-encodes identically');
    for (const f of p.frames) {
      const s = weaveOnly('classifySpecialFrame', f.frame, () => classifySpecialFrame(f.frame));
      assert.equal(s !== undefined, isSpecialFrame(f.frame));
    }
  }
  t.diagnostic(`${N} inputs: ${accepted} accepted, ${refused} refused`);
  assert.ok(accepted > 1000 && refused > 1000, 'both outcomes exercised');
});

test('fuzz: special frames and control messages', TIME_LIMIT, () => {
  const rand = seeded(SEED + 1);
  for (let i = 0; i < 20000; i++) {
    const frame = rand() < 0.5 ? Buffer.alloc(int(rand, 40)) : randomBuf(rand, int(rand, 40));
    if (rand() < 0.3) frame[int(rand, frame.length + 1)] = int(rand, 256);
    const s = weaveOnly('classifySpecialFrame', frame, () => classifySpecialFrame(frame));
    if (s?.kind === 'mtu-test') assert.equal(s.mtu, frame.length - 14);
    const msg = randomBuf(rand, int(rand, 5));
    const m = weaveOnly('decodeSleeveControlMsg', msg, () => decodeSleeveControlMsg(int(rand, 256), msg));
    if (m?.kind === 'pmtu-verified') assert.ok(m.mtu >= 0 && m.mtu <= 0xffff);
  }
});

test('fuzz: encrypted packets open only when genuine and untouched', TIME_LIMIT, (t) => {
  const rand = seeded(SEED + 2);
  const key = randomBuf(rand, 32);
  const encs = [new SleeveEncryptor(key, true, false), new SleeveEncryptor(key, true, true)];
  const genuine: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    const plain = syntheticPacket(rand).subarray(6);
    genuine.push(encs[i % 2]!.seal(0x7a0000000002, plain));
  }
  let opened = 0;
  const N = 10000;
  for (let i = 0; i < N; i++) {
    // A fresh decryptor each time, so that replay state does not hide forgeries.
    const dec = new SleeveDecryptor(key, false);
    const input = i % 10 === 0 ? randomBuf(rand, int(rand, 100)) : mutate(rand, genuine[int(rand, genuine.length)]!, genuine);
    const before = Buffer.from(input); // opening in place rewrites the input
    const r = weaveOnly('SleeveDecryptor.open', input, () => dec.open(input, { inPlace: rand() < 0.5 }));
    weaveOnly('peekEncryptedSleeveHeader', input, () => peekEncryptedSleeveHeader(input));
    if (r) {
      opened++;
      // Only the 6 sender bytes are outside the authenticated part.
      const body = before.subarray(6).toString('hex');
      assert.ok(genuine.some((g) => g.subarray(6).toString('hex') === body), 'an opened packet has a genuine body');
      weaveOnly('decodeSleeveFrames', r.plaintext, () => visitSleeveFrames(r.plaintext, 0, r.plaintext.length, () => undefined));
    } else {
      assert.ok(dec.lastDropReason === 'short' || dec.lastDropReason === 'auth');
      assert.deepEqual(input, before, 'a refused packet is left as it was');
    }
  }
  t.diagnostic(`${N} inputs, ${opened} opened (mutations that left the box intact)`);
});

// IP-layer inputs: Ethernet frames carrying TCP, UDP, ICMP over IPv4 and TCP over IPv6.
function ipFrames(rand: Rand): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < 20; i++) {
    const v6 = i % 4 === 3;
    const proto = [6, 17, 1][i % 3]!;
    const payload = randomBuf(rand, 8 + int(rand, 3000));
    if (proto === 6) payload[12] = (5 + int(rand, 11)) << 4;
    const f = Buffer.alloc(14 + (v6 ? 40 : 20) + payload.length);
    f.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
    if (v6) {
      f[14] = 0x60;
      f.writeUInt16BE(payload.length, 18);
      f[20] = 6;
    } else {
      f[14] = 0x45;
      f.writeUInt16BE(20 + payload.length, 16);
      f[20] = rand() < 0.5 ? 0x40 : 0;
      f[23] = proto;
      f.writeUInt16BE(ipv4Checksum(f, 14), 24);
    }
    payload.copy(f, v6 ? 54 : 34);
    out.push(f);
  }
  return out;
}

test('fuzz: IPv4 helpers, fragmentation and ICMP replies', TIME_LIMIT, (t) => {
  const rand = seeded(SEED + 3);
  const pool = ipFrames(rand);
  let fragmented = 0;
  const N = 6000;
  for (let i = 0; i < N; i++) {
    const input = i % 10 === 0 ? randomBuf(rand, int(rand, 80)) : mutate(rand, pool[int(rand, pool.length)]!, pool);
    weaveOnly('etherType', input, () => etherType(input));
    const ip = weaveOnly('parseIpv4Frame', input, () => parseIpv4Frame(input));
    weaveOnly('ipv4DontFragment', input, () => ipv4DontFragment(input));
    weaveOnly('ipv4TotalLength', input, () => ipv4TotalLength(input));
    weaveOnly('ipv4Protocol', input, () => ipv4Protocol(input));
    weaveOnly('ipv4Checksum', input, () => ipv4Checksum(input, int(rand, input.length + 2)));
    weaveOnly('internetChecksum', input, () => internetChecksum(input, int(rand, input.length + 1)));
    const mtu = [0, 27, 28, 68, 576, 1438, 9000, 70000, int(rand, 3000), -5, 1.5][int(rand, 11)]!;
    const frags = weaveOnly('fragmentIPv4Frame', input, () => fragmentIPv4Frame(input, mtu));
    if (frags && ip) {
      fragmented++;
      let total = 0;
      for (const f of frags) {
        const len = f.readUInt16BE(16);
        assert.ok(len <= mtu, 'each fragment fits the MTU');
        assert.equal(internetChecksum(f, 14, 14 + ip.headerBytes), 0);
        total += len - ip.headerBytes;
      }
      assert.equal(total, ip.totalLength - ip.headerBytes);
    }
    const icmp = weaveOnly('icmpFragNeededFrame', input, () => icmpFragNeededFrame(input, int(rand, 70000)));
    if (icmp) {
      assert.equal(internetChecksum(icmp, 14, 34), 0);
      assert.equal(internetChecksum(icmp, 34, 14 + icmp.readUInt16BE(16)), 0);
    }
  }
  t.diagnostic(`${N} inputs, ${fragmented} fragmented`);
});

test('fuzz: virtio headers, checksum completion, GSO segmentation and GSO headers', TIME_LIMIT, (t) => {
  const rand = seeded(SEED + 4);
  const pool = ipFrames(rand);
  let segmented = 0;
  const N = 4000;
  for (let i = 0; i < N; i++) {
    const raw = randomBuf(rand, int(rand, 14));
    const h0 = weaveOnly('decodeVnetHdr', raw, () => decodeVnetHdr(raw, int(rand, 4)));
    if (h0) assert.deepEqual(decodeVnetHdr(encodeVnetHdr(h0)), h0);
    const frame = i % 10 === 0 ? randomBuf(rand, int(rand, 100)) : mutate(rand, pool[int(rand, pool.length)]!, pool);
    const v6 = frame.length > 13 && frame.readUInt16BE(12) === 0x86dd;
    const l4 = v6 ? 54 : 34;
    const h: VnetHdr = {
      flags: rand() < 0.8 ? 1 : int(rand, 256),
      gsoType: [0, 1, 3, 4, 0x81, 2, int(rand, 256)][int(rand, 7)]!,
      hdrLen: int(rand, 200),
      gsoSize: rand() < 0.05 ? int(rand, 4) : int(rand, 2000),
      csumStart: rand() < 0.7 ? l4 : int(rand, 100),
      csumOffset: rand() < 0.7 ? [16, 6][int(rand, 2)]! : int(rand, 100),
    };
    weaveOnly('completeChecksum', frame, () => completeChecksum(h, Buffer.from(frame)));
    const segs = weaveOnly('segmentGso', frame, () => segmentGso(h, Buffer.from(frame)));
    if (segs) {
      segmented++;
      assert.ok(segs.length >= 1);
    }
    const mtu = [576, 1400, 1500, 9000, int(rand, 4000)][int(rand, 5)]!;
    const g = weaveOnly('gsoForFrame', frame, () => gsoForFrame(Buffer.from(frame), mtu));
    assert.ok(g, 'gsoForFrame never throws');
    if (g.gsoType !== 0) assert.ok(g.gsoSize > 0 && g.csumStart + g.csumOffset + 2 <= frame.length);
  }
  t.diagnostic(`${N} inputs, ${segmented} segmented`);
});

test('fuzz: the batcher only ever builds packets the decoder accepts', TIME_LIMIT, () => {
  const rand = seeded(SEED + 5);
  const batch = new SleeveBatch(Buffer.alloc(65535), 0x7a0000000001, { maxPayloadBytes: 1472 });
  for (let i = 0; i < 2000; i++) {
    const limit = [1472, 9000, 65507, int(rand, 2000)][int(rand, 4)]!;
    const frame = randomBuf(rand, int(rand, 1600));
    const ok = batch.tryAdd(int(rand, 2 ** 48), int(rand, 2 ** 48), frame, limit);
    if (ok) assert.ok(batch.length <= limit);
    if (!ok || batch.isFull || rand() < 0.1) {
      const p = decodeSleevePacket(batch.bytes());
      assert.equal(p.frames.length, batch.frameCount);
      batch.reset();
    }
  }
});
