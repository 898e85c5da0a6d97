// The IPallocation channel's gob messages: every one captured between two original routers
// (test/fixtures/wire-vectors/plain/tcp-messages.jsonl, cross-checked against Go's own decode
// in gobcheck-*.txt) decodes to what Go saw and re-encodes byte for byte; our own encoding of
// h1's messages is h1's bytes; unicast messages round-trip; bad bytes give DECODE_FAILED.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEFAULT_TYPE_IDS, IPAM_CHANNEL, decodeGossipState, decodeRange, decodeUnicast, encodeGossipState, encodeRange, encodeUnicast,
} from '../../../src/ipam/codec.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { formatIPv4 } from '../../../src/core/ip.js';
import { formatPeerName } from '../../../src/core/peer-name.js';
import { seeded } from '../../helpers/prng.js';

const fixtures = join(process.env.WEAVE_REPO_ROOT ?? process.cwd(), 'test/fixtures/wire-vectors/plain');

interface Captured {
  dir: string;
  tag: number;
  payload: Buffer;
}

function captured(): Captured[] {
  return readFileSync(join(fixtures, 'tcp-messages.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { dir: string; tag?: number; channel?: string; payload_hex?: string })
    .filter((m) => m.channel === IPAM_CHANNEL)
    .map((m) => ({ dir: m.dir, tag: m.tag ?? -1, payload: Buffer.from(m.payload_hex ?? '', 'hex') }));
}

/** Go's own decode of the same messages: gobcheck lines after each IPallocation header. */
function gobcheck(dir: string): string[][] {
  const lines = readFileSync(join(fixtures, `gobcheck-${dir}.txt`), 'utf8').split('\n');
  const out: string[][] = [];
  let cur: string[] | undefined;
  for (const l of lines) {
    if (/^#\d+ /.test(l)) {
      cur = l.includes(`channel=${IPAM_CHANNEL}`) ? [] : undefined;
      if (cur) out.push(cur);
    } else if (cur && l.startsWith('    ')) {
      cur.push(l.trim());
    }
  }
  return out;
}

/** Our decode printed the way gobcheck prints Go's. */
function describe(payload: Buffer): string[] {
  const { state } = decodeGossipState(payload);
  const nicks: Record<string, string> = {};
  for (const [p, n] of [...state.nicknames].sort(([a], [b]) => a - b)) nicks[formatPeerName(p)] = n;
  const out = [`Now=${state.now} Nicknames=${JSON.stringify(nicks)}`];
  const proposal = (p: { round: number; proposer: { name: number; uid: bigint } }) =>
    `{"Round":${p.round},"Proposer":{"Name":${p.proposer.name},"UID":${p.proposer.uid}}}`;
  for (const [id, c] of state.paxos ?? []) {
    const value = c.acceptedVal.value.length ? `[${c.acceptedVal.value.join(',')}]` : 'null';
    out.push(
      `Paxos[${formatPeerName(id.name)} uid=${id.uid}] = {"Promise":${proposal(c.promise)},"Accepted":${proposal(c.accepted)},` +
        `"AcceptedVal":{"Value":${value},"Origin":${proposal(c.acceptedVal.origin)}}}`,
    );
  }
  if (state.ring) {
    const r = state.ring;
    out.push(`Ring [${formatIPv4(r.start)},${formatIPv4(r.end)}) owner=${formatPeerName(r.peer)} seeds=[${r.seeds.join(' ')}]`);
    for (const e of r.entries) out.push(`token=${formatIPv4(e.token)} peer=${formatPeerName(e.peer)} version=${e.version} free=${e.free}`);
  }
  return out;
}

test('every captured IPallocation message decodes as Go decoded it and re-encodes byte for byte', () => {
  const msgs = captured();
  assert.equal(msgs.length, 9);
  const kinds = new Set<string>();
  for (const dir of ['h1-to-h2', 'h2-to-h1']) {
    const ours = msgs.filter((m) => m.dir === dir);
    const go = gobcheck(dir);
    assert.equal(ours.length, go.length, dir);
    ours.forEach((m, i) => {
      const goLines = go[i]!;
      // gobcheck sorts nothing: paxos map lines follow the wire order, as our decode keeps it.
      assert.deepEqual(describe(m.payload), goLines, `${dir} #${i}`);
      const { state, typeIds } = decodeGossipState(m.payload);
      assert.ok(encodeGossipState(state, { typeIds }).equals(m.payload), `${dir} #${i} re-encodes differently`);
      kinds.add(state.ring ? 'ring' : state.paxos?.length ? 'paxos' : 'empty paxos');
    });
  }
  assert.deepEqual([...kinds].sort(), ['empty paxos', 'paxos', 'ring']);
});

test("our default type ids are an original router's: h1's messages encode to h1's bytes", () => {
  for (const m of captured().filter((x) => x.dir === 'h1-to-h2')) {
    const { state, typeIds } = decodeGossipState(m.payload);
    assert.equal(typeIds.gossipState, DEFAULT_TYPE_IDS.gossipState);
    assert.ok(encodeGossipState(state).equals(m.payload));
  }
});

test('the captured ring and paxos values', () => {
  const msgs = captured();
  const ring = decodeGossipState(msgs.find((m) => m.dir === 'h1-to-h2' && m.tag === 6 && decodeGossipState(m.payload).state.ring)!.payload).state;
  assert.equal(ring.paxos, undefined);
  assert.deepEqual(ring.ring?.seeds, [0x7a0000000001, 0x7a0000000002]);
  assert.deepEqual(ring.ring?.entries, [
    { token: 0x0a200000, peer: 0x7a0000000001, version: 1, free: 524287 },
    { token: 0x0a280000, peer: 0x7a0000000002, version: 0, free: 524288 },
  ]);
  const first = decodeGossipState(msgs[0]!.payload).state;
  assert.deepEqual(first.paxos, []); // a non-nil empty map: an elector without a ring
  assert.equal(first.ring, undefined);
});

test('unicast messages: space request, denial, ring update round-trip with their leading byte', () => {
  const range = { start: 0x0a200000, end: 0x0a200010 };
  for (const kind of ['spaceRequest', 'spaceRequestDenied'] as const) {
    const bytes = encodeUnicast({ kind, range });
    assert.equal(bytes[0], kind === 'spaceRequest' ? 0 : 2);
    const back = decodeUnicast(bytes);
    assert.deepEqual({ kind: back.kind, range: 'range' in back ? back.range : undefined }, { kind, range });
    assert.ok(encodeUnicast({ kind, range }, { typeIds: back.typeIds }).equals(bytes));
  }
  // Go's address.Range: struct "Range" {Start, End uint}; zero Start omitted.
  // Definition of type 69 "Range" {Start uint; End uint}, then the value {End: 5}.
  assert.equal(
    encodeRange({ start: 0, end: 5 }).toString('hex'),
    '25ff89' + '0301' + '01055261 6e6765 01ff8a00'.replace(/ /g, '') + '0102' + '0105537461727401 0600'.replace(/ /g, '') + '0103456e64010600' + '0000' + '05ff8a020500',
  );
  assert.deepEqual(decodeRange(encodeRange({ start: 0, end: 5 })), { start: 0, end: 5 });
  const ringMsg = captured().find((m) => decodeGossipState(m.payload).state.ring)!;
  const { state } = decodeGossipState(ringMsg.payload);
  const u = encodeUnicast({ kind: 'ringUpdate', state });
  assert.equal(u[0], 1);
  assert.ok(u.subarray(1).equals(encodeGossipState(state)));
  const back = decodeUnicast(u);
  assert.equal(back.kind, 'ringUpdate');
});

test('decoders are total: truncations, bit flips and junk give DECODE_FAILED, never a crash', () => {
  const rnd = seeded(99);
  const samples = [...captured().map((m) => m.payload), encodeRange({ start: 1, end: 9 })];
  let failures = 0;
  for (let i = 0; i < 3000; i++) {
    const base = samples[Math.floor(rnd() * samples.length)]!;
    const b = Buffer.from(base);
    const mode = rnd();
    let input: Buffer;
    if (mode < 0.3) input = b.subarray(0, Math.floor(rnd() * b.length));
    else if (mode < 0.8) {
      for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      input = b;
    } else input = Buffer.from(Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)));
    for (const decode of [decodeGossipState, decodeRange, (x: Buffer) => decodeUnicast(Buffer.concat([Buffer.of(Math.floor(rnd() * 4)), x]))]) {
      try {
        decode(input);
      } catch (e) {
        assert.ok(isWeaveError(e, 'DECODE_FAILED'), `unexpected ${String(e)}`);
        failures++;
      }
    }
  }
  assert.ok(failures > 3000);
  assert.throws(() => decodeUnicast(Buffer.alloc(0)), (e) => isWeaveError(e, 'DECODE_FAILED'));
  assert.throws(() => decodeUnicast(Buffer.of(7, 1, 2)), /unknown IPAM unicast message type 7/);
});
