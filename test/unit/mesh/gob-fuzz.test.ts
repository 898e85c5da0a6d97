// Fuzz: random bytes and truncated, mutated and spliced copies of the captured messages go
// through every decoder. They may only succeed or throw WeaveError DECODE_FAILED (never
// another exception, never an "internal" error), each call returns quickly, and whatever
// decodes re-encodes to a stable form.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeaveError } from '../../../src/core/errors.js';
import { decodeFeatures } from '../../../src/mesh/features.js';
import { FrameSplitter, MeshStreamReader } from '../../../src/mesh/framing.js';
import { decodeGossipMessage } from '../../../src/mesh/gossip-message.js';
import { decodeOverlayControlMsg, decodeProtocolHeader, decodeProtocolMsg } from '../../../src/mesh/protocol.js';
import { decodeTopologyUpdate } from '../../../src/mesh/topology-update.js';
import { decodeGobStream, encodeGobStream } from '../../../src/mesh/gob/index.js';
import { DIRS, prng, randInt, readStream, splitStream } from './wire-fixtures.js';

type Rand = () => number;

const corpus: Buffer[] = [];
for (const dir of DIRS) {
  splitStream(readStream('plain', dir)).messages.forEach((m, i) => {
    corpus.push(m.bytes); // features (gob) or tag + body
    if (i === 0) return;
    const msg = decodeProtocolMsg(m.bytes);
    if (!msg || msg.tag < 4 || msg.tag > 6) return;
    corpus.push(msg.body, decodeGossipMessage(msg.tag, msg.body).payload);
  });
}

function mutate(rand: Rand, src: Buffer): Buffer {
  const b = Buffer.from(src);
  switch (randInt(rand, 6)) {
    case 0:
      return b.subarray(0, randInt(rand, b.length + 1)); // truncate
    case 1:
      for (let i = 1 + randInt(rand, 4); i > 0; i--) if (b.length) b[randInt(rand, b.length)] = randInt(rand, 256); // flip bytes
      return b;
    case 2: {
      const at = randInt(rand, b.length + 1); // insert bytes, often "big" prefixes
      const ins = Buffer.from(Array.from({ length: 1 + randInt(rand, 9) }, () => pick(rand, [0xf8, 0xff, 0x80, 0x7f, 0x00, randInt(rand, 256)])));
      return Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
    }
    case 3: {
      const at = randInt(rand, b.length + 1); // delete a run
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + randInt(rand, 8))]);
    }
    case 4: {
      const other = corpus[randInt(rand, corpus.length)] as Buffer; // splice two messages
      return Buffer.concat([b.subarray(0, randInt(rand, b.length + 1)), other.subarray(randInt(rand, other.length + 1))]);
    }
    default: {
      const at = randInt(rand, b.length + 1); // duplicate a run (repeats type definitions)
      return Buffer.concat([b.subarray(0, at + randInt(rand, 40)), b.subarray(at)]);
    }
  }
}

function pick<T>(rand: Rand, xs: readonly T[]): T {
  return xs[randInt(rand, xs.length)] as T;
}

// A hang, not speed, is what this catches: the bound leaves room for GC pauses on a busy machine.
let slowest = 0;
const outcomes = { ok: 0, failed: 0 };
let gobAccepted = 0;

/** Runs `f`; it may succeed or throw DECODE_FAILED, nothing else. */
function total<T>(what: string, input: Buffer, f: () => T, codes: readonly string[] = ['DECODE_FAILED']): T | undefined {
  const start = performance.now();
  try {
    const r = f();
    outcomes.ok++;
    return r;
  } catch (e) {
    outcomes.failed++;
    if (!isWeaveError(e) || !codes.includes(e.code) || /internal/.test(e.message)) {
      assert.fail(`${what} threw ${String(e)} (${e instanceof Error ? e.stack : ''}) on ${input.toString('hex')}`);
    }
    return undefined;
  } finally {
    slowest = Math.max(slowest, performance.now() - start);
  }
}

function everyDecoder(input: Buffer, rand: Rand): void {
  const values = total('decodeGobStream', input, () => decodeGobStream(input));
  if (values) {
    gobAccepted++;
    // Whatever decodes re-encodes, and one round normalises it (e.g. bool 2 → 1).
    const once = encodeGobStream(values);
    const again = encodeGobStream(decodeGobStream(once));
    assert.ok(again.equals(once), `unstable re-encoding of ${input.toString('hex')}`);
  }
  total('decodeFeatures', input, () => decodeFeatures(input));
  total('decodeTopologyUpdate', input, () => decodeTopologyUpdate(input));
  for (const tag of [4, 5, 6]) total('decodeGossipMessage', input, () => decodeGossipMessage(tag, input));
  const msg = total('decodeProtocolMsg', input, () => decodeProtocolMsg(input));
  if (msg && msg.tag >= 4 && msg.tag <= 6) total('decodeGossipMessage', input, () => decodeGossipMessage(msg.tag, msg.body));
  if (msg && msg.tag === 7) total('decodeOverlayControlMsg', input, () => decodeOverlayControlMsg(msg.body));
  total('decodeProtocolHeader', input, () => decodeProtocolHeader(input));
  const s = new FrameSplitter(1 << 16);
  total('FrameSplitter', input, () => {
    for (let pos = 0; pos < input.length; ) {
      const n = 1 + randInt(rand, 16);
      s.push(input.subarray(pos, pos + n));
      pos += n;
    }
  });
  const header = Buffer.from('77656176650102', 'hex');
  const r = new MeshStreamReader();
  total('MeshStreamReader', input, () => r.push(Buffer.concat([header, input])), ['DECODE_FAILED', 'INCOMPATIBLE_VERSION']);
}

test('fuzz: mutated captured messages (6000 cases)', () => {
  const rand = prng(0x5eed);
  for (let i = 0; i < 6000; i++) {
    let input = corpus[i % corpus.length] as Buffer;
    for (let k = 1 + randInt(rand, 3); k > 0; k--) input = mutate(rand, input);
    everyDecoder(input, rand);
  }
  assert.ok(outcomes.failed > 1000 && outcomes.ok > 1000, `both outcomes occur (${JSON.stringify(outcomes)})`);
  assert.ok(gobAccepted > 150, `${gobAccepted} mutants still decode as gob and were re-encoded`);
  assert.ok(slowest < 1000, `slowest decode ${slowest.toFixed(1)} ms`);
});

test('fuzz: truncations of every captured message, every few bytes', () => {
  const rand = prng(7);
  let n = 0;
  for (const b of corpus) {
    for (let len = 0; len < b.length; len += 1 + randInt(rand, 6)) {
      everyDecoder(b.subarray(0, len), rand);
      n++;
    }
  }
  assert.ok(n > 2000, `${n} truncations`);
  assert.ok(slowest < 1000, `slowest decode ${slowest.toFixed(1)} ms`);
});

test('fuzz: random bytes (4000 cases), biased toward gob-looking prefixes', () => {
  const rand = prng(99);
  for (let i = 0; i < 4000; i++) {
    const len = randInt(rand, i % 10 === 0 ? 2000 : 64);
    const b = Buffer.from(Array.from({ length: len }, () => (rand() < 0.3 ? pick(rand, [0, 1, 2, 0xff, 0xf8, 0x81, 0x82, 0x0c]) : randInt(rand, 256))));
    if (len > 0 && rand() < 0.5) b[0] = Math.min(len - 1, 255) & 0x7f; // a plausible message length
    everyDecoder(b, rand);
  }
  assert.ok(slowest < 1000, `slowest decode ${slowest.toFixed(1)} ms`);
});
