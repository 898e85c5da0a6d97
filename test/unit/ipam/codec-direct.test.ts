// The direct gossipState codec must be the general one, only faster: same bytes out, same
// values in, the same DECODE_FAILED for anything else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IpamDecoder, encodeGossipStateDirect } from '../../../src/ipam/codec-direct.js';
import { IPAM_CHANNEL, decodeGossipState, encodeGossipState, type IpamGossipState } from '../../../src/ipam/codec.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { seeded } from '../../helpers/prng.js';
import { decodeGobStream } from '../../../src/mesh/gob/gob-decoder.js';
import { encodeGobStream } from '../../../src/mesh/gob/gob-encoder.js';
import type { GobStructType } from '../../../src/mesh/gob/gob-type.js';

const fixtures = join(process.env.WEAVE_REPO_ROOT ?? process.cwd(), 'test/fixtures/wire-vectors/plain');

function captured(): Buffer[] {
  return readFileSync(join(fixtures, 'tcp-messages.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { channel?: string; payload_hex?: string })
    .filter((m) => m.channel === IPAM_CHANNEL)
    .map((m) => Buffer.from(m.payload_hex ?? '', 'hex'));
}

/** A state both decoders accept: ring entries ascending in [start, end) with peers, Seeds and Paxos keys distinct and non-zero. */
function randomState(rnd: () => number): IpamGossipState {
  const int = (n: number) => Math.floor(rnd() * n);
  const name = () => 0x7a0000000000 + 1 + int(2 ** 20);
  const distinct = (xs: number[]) => [...new Set(xs)];
  const big = () => (rnd() < 0.2 ? 0n : BigInt(int(2 ** 30)) * BigInt(int(2 ** 30)) + BigInt(int(1000)));
  const node = () => ({ name: name(), uid: big() });
  const anyNode = () => (rnd() < 0.1 ? { name: 0, uid: 0n } : node());
  const prop = () => ({ round: rnd() < 0.3 ? 0 : int(rnd() < 0.1 ? 2 ** 40 : 100), proposer: anyNode() });
  const nicks = new Map<number, string>();
  for (let i = int(4); i > 0; i--) nicks.set(name(), rnd() < 0.2 ? '' : `host-${int(1000)}${rnd() < 0.1 ? 'é' : ''}`);
  const state: IpamGossipState = {
    now: rnd() < 0.1 ? 0n : BigInt(int(2 ** 31)) * (rnd() < 0.1 ? -1n : 1n),
    nicknames: [...nicks],
    ...(rnd() < 0.4
      ? {
          paxos: [...new Map(Array.from({ length: int(4) }, () => node()).map((id) => [`${id.name}/${id.uid}`, id])).values()].map(
            (id) => [id, { promise: prop(), accepted: prop(), acceptedVal: { value: Array.from({ length: int(4) }, name), origin: prop() } }] as const,
          ),
        }
      : {}),
    ...(rnd() < 0.6 ? { ring: randomRing(rnd, int, name, distinct) } : {}),
  };
  return state;
}

function randomRing(rnd: () => number, int: (n: number) => number, name: () => number, distinct: (xs: number[]) => number[]): IpamGossipState['ring'] & object {
  const start = int(2 ** 31);
  const end = start + 1 + int(2 ** 32 - start - 1);
  const tokens = distinct(Array.from({ length: int(6) }, () => start + int(end - start))).sort((a, b) => a - b);
  return {
    start, end, peer: rnd() < 0.1 ? 0 : name(),
    entries: tokens.map((token) => ({ token, peer: name(), version: int(rnd() < 0.2 ? 2 ** 32 : 300), free: int(2 ** 20) })),
    seeds: distinct(Array.from({ length: int(4) }, name)),
  };
}

test('captured messages: the direct codec gives the general codec\'s values and bytes', () => {
  const dec = new IpamDecoder();
  for (const payload of captured()) {
    const { state, typeIds } = decodeGossipState(payload);
    assert.deepEqual(dec.decode(payload), state);
    assert.deepEqual(dec.decode(payload), state); // again, from the cached definitions
    assert.ok(encodeGossipStateDirect(state, { typeIds }).equals(payload));
  }
});

test('random states: same bytes as the general encoder, decoded back the same', () => {
  const rnd = seeded(5);
  const dec = new IpamDecoder();
  for (let i = 0; i < 2000; i++) {
    const state = randomState(rnd);
    const typeIds = rnd() < 0.5 ? undefined : { gossipState: 65 + Math.floor(rnd() * 200), ring: 300 + Math.floor(rnd() * 5000) };
    const general = encodeGossipState(state, typeIds ? { typeIds } : {});
    const direct = encodeGossipStateDirect(state, typeIds ? { typeIds } : {});
    assert.equal(direct.toString('hex'), general.toString('hex'), `state ${i}`);
    assert.deepEqual(dec.decode(direct), decodeGossipState(direct).state, `state ${i}`);
  }
});

test('damaged payloads: the direct decoder answers exactly as the general one', () => {
  const rnd = seeded(11);
  const dec = new IpamDecoder();
  const samples = [...captured(), ...Array.from({ length: 20 }, () => encodeGossipState(randomState(rnd)))];
  let same = 0;
  for (let i = 0; i < 4000; i++) {
    const b = Buffer.from(samples[Math.floor(rnd() * samples.length)]!);
    const mode = rnd();
    let input = b;
    if (mode < 0.3) input = b.subarray(0, Math.floor(rnd() * b.length));
    else for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    let want: unknown;
    let got: unknown;
    try {
      want = decodeGossipState(input).state;
    } catch (e) {
      assert.ok(isWeaveError(e, 'DECODE_FAILED'));
      want = 'DECODE_FAILED';
    }
    try {
      got = dec.decode(input);
    } catch (e) {
      assert.ok(isWeaveError(e, 'DECODE_FAILED'), String(e));
      got = 'DECODE_FAILED';
    }
    assert.deepEqual(got, want);
    same++;
  }
  assert.equal(same, 4000);
});

test('definitions over 4 KiB are decoded, by the general decoder, and not kept', () => {
  const dec = new IpamDecoder();
  const plans = (dec as unknown as { plans: Map<string, unknown> }).plans;
  const defs = (dec as unknown as { defs: Map<string, unknown> }).defs;
  const payload = encodeGossipState(randomState(seeded(11)));
  const state = decodeGossipState(payload).state;
  assert.deepEqual(dec.decode(payload), state);
  const [kept, keptDefs] = [plans.size, defs.size];
  assert.ok(kept > 0, 'usual definitions are kept');
  // The same state, its top type named with 5000 bytes (Go matches types by shape, not by name).
  const [top] = decodeGobStream(payload);
  (top!.type as GobStructType).name = 'g'.repeat(5000);
  const big = encodeGobStream([{ type: top!.type, value: top!.value }]);
  assert.ok(big.length > 5000);
  for (let i = 0; i < 3; i++) assert.deepEqual(dec.decode(big), state);
  assert.equal(plans.size, kept, 'no plan kept for the big definitions');
  assert.equal(defs.size, keptDefs, 'no definition kept from them');
});

// Payloads of millions of empty values: the direct decoder refuses them itself, at once (it
// used to build every value: seconds and hundreds of MB at 10 MiB), and the general one agrees.
function uint(v: number): Buffer {
  if (v < 0x80) return Buffer.of(v);
  const bytes: number[] = [];
  for (let x = v; x > 0; x = Math.floor(x / 256)) bytes.unshift(x % 256);
  return Buffer.from([256 - bytes.length, ...bytes]);
}

function hostile(kind: 'ring' | 'paxos' | 'seeds' | 'value', size: number): Buffer {
  const base = encodeGossipState({ now: 0n, nicknames: [] });
  const defs = base.subarray(0, base.length - 6); // the value is [len 5] [id, 2 bytes] [delta 2, count 0] [end]
  const id = base.subarray(base.length - 5, base.length - 3);
  assert.ok(Buffer.concat([defs, uint(5), id, uint(2), uint(0), uint(0)]).equals(base));
  const n = size - 64;
  const value = {
    ring: () => [uint(2), uint(4), uint(n), Buffer.alloc(n), uint(0), uint(0)], // Ring.Entries: n empty entries
    paxos: () => [uint(1), uint(n >> 1), Buffer.alloc(2 * (n >> 1)), uint(0)], // n/2 empty NodeID -> NodeClaims
    seeds: () => [uint(2), uint(5), uint(n), Buffer.alloc(n), uint(0), uint(0)], // Ring.Seeds: n zeros
    // one claim whose AcceptedVal.Value is n zeros (keyed by a valid NodeID)
    value: () => [uint(1), uint(1), uint(1), uint(7), uint(0), uint(3), uint(1), uint(n), Buffer.alloc(n), uint(0), uint(0), uint(0)],
  }[kind]();
  const body = Buffer.concat([id, uint(2), uint(0), ...value]);
  return Buffer.concat([defs, uint(body.length), body]);
}

function outcome(f: () => unknown): { result: unknown; ms: number } {
  const t0 = performance.now();
  let result: unknown;
  try {
    result = f();
  } catch (e) {
    assert.ok(isWeaveError(e, 'DECODE_FAILED'), String(e));
    result = 'DECODE_FAILED';
  }
  return { result, ms: performance.now() - t0 };
}

test('empty ring entries, Paxos entries, seeds and accepted values are refused at once by both decoders', () => {
  for (const kind of ['ring', 'paxos', 'seeds', 'value'] as const) {
    const big = hostile(kind, 10 * 1024 * 1024);
    const direct = outcome(() => new IpamDecoder().decode(big));
    assert.equal(direct.result, 'DECODE_FAILED', kind);
    assert.ok(direct.ms < 1000, `${kind}: direct ${direct.ms} ms`);
    const small = hostile(kind, 1024 * 1024);
    const general = outcome(() => decodeGossipState(small).state);
    assert.equal(general.result, 'DECODE_FAILED', kind);
    assert.ok(general.ms < 1000, `${kind}: general ${general.ms} ms`);
    assert.equal(outcome(() => new IpamDecoder().decode(small)).result, 'DECODE_FAILED', kind);
  }
});

test('states breaking the ring, Seeds and Paxos invariants: both decoders refuse them', () => {
  const entry = (token: number, peer = 7) => ({ token, peer, version: 1, free: 0 });
  const ring = (entries: ReturnType<typeof entry>[], seeds: number[] = []) => ({ now: 0n, nicknames: [], ring: { start: 100, end: 200, peer: 7, entries, seeds } });
  const claims = (value: number[]) => {
    const p = { round: 0, proposer: { name: 0, uid: 0n } };
    return { promise: p, accepted: p, acceptedVal: { value, origin: p } };
  };
  const valid: IpamGossipState[] = [
    ring([entry(100), entry(150), entry(199)], [7, 9]),
    { now: 0n, nicknames: [], paxos: [[{ name: 7, uid: 1n }, claims([7, 7, 9])], [{ name: 7, uid: 2n }, claims([])]] }, // a repeated name in a value is Go's
  ];
  const invalid: IpamGossipState[] = [
    ring([entry(150), entry(120)]), ring([entry(150), entry(150)]), ring([entry(99)]), ring([entry(200)]), ring([entry(150, 0)]),
    ring([], [7, 0]), ring([], [7, 7]),
    { now: 0n, nicknames: [], paxos: [[{ name: 0, uid: 1n }, claims([])]] },
    { now: 0n, nicknames: [], paxos: [[{ name: 7, uid: 1n }, claims([])], [{ name: 7, uid: 1n }, claims([])]] },
    { now: 0n, nicknames: [], paxos: [[{ name: 7, uid: 1n }, claims([9, 0])]] },
  ];
  const dec = new IpamDecoder();
  for (const s of valid) {
    const b = encodeGossipState(s);
    assert.deepEqual(decodeGossipState(b).state, s);
    assert.deepEqual(dec.decode(b), s);
  }
  for (const s of invalid) {
    const b = encodeGossipState(s);
    assert.equal(outcome(() => decodeGossipState(b).state).result, 'DECODE_FAILED', JSON.stringify(s, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
    assert.equal(outcome(() => dec.decode(b)).result, 'DECODE_FAILED');
  }
});
