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

function randomState(rnd: () => number): IpamGossipState {
  const int = (n: number) => Math.floor(rnd() * n);
  const name = () => (rnd() < 0.1 ? 0 : 0x7a0000000000 + int(2 ** 20));
  const big = () => (rnd() < 0.2 ? 0n : BigInt(int(2 ** 30)) * BigInt(int(2 ** 30)) + BigInt(int(1000)));
  const node = () => ({ name: name(), uid: big() });
  const prop = () => ({ round: rnd() < 0.3 ? 0 : int(rnd() < 0.1 ? 2 ** 40 : 100), proposer: node() });
  const nicks = new Map<number, string>();
  for (let i = int(4); i > 0; i--) nicks.set(name(), rnd() < 0.2 ? '' : `host-${int(1000)}${rnd() < 0.1 ? 'é' : ''}`);
  const state: IpamGossipState = {
    now: rnd() < 0.1 ? 0n : BigInt(int(2 ** 31)) * (rnd() < 0.1 ? -1n : 1n),
    nicknames: [...nicks],
    ...(rnd() < 0.4 ? { paxos: Array.from({ length: int(4) }, () => [node(), { promise: prop(), accepted: prop(), acceptedVal: { value: Array.from({ length: int(4) }, name), origin: prop() } }] as const) } : {}),
    ...(rnd() < 0.6
      ? {
          ring: {
            start: int(2 ** 31), end: int(2 ** 32), peer: name(),
            entries: Array.from({ length: int(6) }, () => ({ token: int(2 ** 32), peer: name(), version: int(rnd() < 0.2 ? 2 ** 32 : 300), free: int(2 ** 20) })),
            seeds: Array.from({ length: int(4) }, name),
          },
        }
      : {}),
  };
  return state;
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
