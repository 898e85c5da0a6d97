// The topology codec's direct paths against the general gob codec they stand in for: the
// direct writer (per-entry bodies assembled into a stream) must give the general encoder's bytes
// exactly, and the direct reader must give the general decoder's result, or its error, on our
// updates, on the original's captured updates, and on random and damaged input. Also the gossip
// envelope's direct paths against the general codec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeaveError } from '../../../src/core/errors.js';
import { Peer, type TopologyEntry } from '../../../src/mesh/peer.js';
import { Peers } from '../../../src/mesh/peers.js';
import {
  TopologyDecodeCache, assembleTopologyUpdate, decodeTopologyUpdate, decodeTopologyUpdateEncoded, decodeTopologyUpdateWithGob, encodeTopologyEntry,
  encodeTopologyUpdate, encodeTopologyUpdateWithGob,
} from '../../../src/mesh/topology-update.js';
import {
  decodeGossipMessage, decodeGossipMessageWithGob, encodeGossipMessage, encodeGossipMessageWithGob, type GossipMessage,
} from '../../../src/mesh/gossip-message.js';
import { ProtocolTag, decodeProtocolMsg } from '../../../src/mesh/protocol.js';
import { DIRS, prng, randInt, readStream, splitStream } from './wire-fixtures.js';
import { GobEncoder } from '../../../src/mesh/gob/gob-encoder.js';
import { GOB_BYTES, GOB_STRING, type GobType } from '../../../src/mesh/gob/gob-type.js';

type Rand = () => number;

function randomEntry(rand: Rand, asciiOnly = false): TopologyEntry {
  const big = (): bigint => {
    switch (randInt(rand, 4)) {
      case 0:
        return 0n;
      case 1:
        return BigInt(randInt(rand, 200));
      case 2:
        return BigInt(randInt(rand, 2 ** 31)) * BigInt(randInt(rand, 2 ** 31));
      default:
        return (BigInt(randInt(rand, 2 ** 32)) << 32n) | BigInt(randInt(rand, 2 ** 32));
    }
  };
  const name = () => (randInt(rand, 3) === 0 ? randInt(rand, 300) : randInt(rand, 2 ** 24) * 2 ** 24 + randInt(rand, 2 ** 24));
  const str = () => ['', 'h1', 'host-7a:00:00:00:00:01', asciiOnly ? 'ascii' : 'ünïcode-☃', '10.1.2.3:6783', 'x'.repeat(randInt(rand, 300))][randInt(rand, 6)] as string;
  const connections = Array.from({ length: randInt(rand, 4) === 0 ? 0 : randInt(rand, 40) }, () => ({
    remoteName: name(),
    remoteTcpAddr: str(),
    outbound: randInt(rand, 2) === 0,
    established: randInt(rand, 2) === 0,
  }));
  const shortId = [0, 1, 127, 128, 4095, 65535][randInt(rand, 6)] as number;
  return { peer: { name: name(), nickName: str(), uid: big(), version: big(), shortId, hasShortId: randInt(rand, 2) === 0 }, connections };
}

function outcome(f: () => unknown): unknown {
  try {
    return { ok: f() };
  } catch (e) {
    assert.ok(isWeaveError(e), `only WeaveError may escape: ${String(e)}`);
    return { code: e.code, message: e.message };
  }
}

test('direct topology encoding gives the gob encoder bytes exactly', () => {
  const rand = prng(11);
  for (let i = 0; i < 400; i++) {
    const entries = Array.from({ length: randInt(rand, 6) }, () => randomEntry(rand));
    const want = encodeTopologyUpdateWithGob(entries);
    assert.deepEqual(encodeTopologyUpdate(entries), want);
    assert.deepEqual(assembleTopologyUpdate(entries.map(encodeTopologyEntry)), want);
    assert.deepEqual(decodeTopologyUpdate(want), decodeTopologyUpdateWithGob(want));
    assert.deepEqual(decodeTopologyUpdate(want), entries.map((e) => ({ peer: e.peer, connections: e.connections })));
  }
  const e = randomEntry(rand);
  assert.throws(() => encodeTopologyUpdate([{ ...e, peer: { ...e.peer, uid: 2n ** 64n } }]), (x: unknown) => isWeaveError(x) && x.code === 'INVALID_ARGUMENT');
  assert.throws(() => encodeTopologyUpdate([{ ...e, peer: { ...e.peer, shortId: 65536 } }]), (x: unknown) => isWeaveError(x) && x.code === 'INVALID_ARGUMENT');
  assert.throws(() => encodeTopologyUpdate([{ ...e, peer: { ...e.peer, name: 2 ** 48 } }]), (x: unknown) => isWeaveError(x) && x.code === 'INVALID_ARGUMENT');
});

/** Topology payloads and gossip bodies of the original's captured session. */
function captured(): { payloads: Buffer[]; messages: Buffer[] } {
  const payloads: Buffer[] = [];
  const messages: Buffer[] = [];
  for (const dir of DIRS) {
    splitStream(readStream('plain', dir)).messages.forEach((m, i) => {
      if (i === 0) return;
      const msg = decodeProtocolMsg(m.bytes);
      if (!msg || msg.tag < 4 || msg.tag > 6) return;
      messages.push(m.bytes);
      const g = decodeGossipMessage(msg.tag, msg.body);
      if (g.channel === 'topology') payloads.push(g.payload);
    });
  }
  return { payloads, messages };
}

test('decoded entries keep their bodies exactly when they are what we would encode', () => {
  const rand = prng(12);
  let keptCount = 0;
  let notKept = 0;
  for (let i = 0; i < 400; i++) {
    const entries = Array.from({ length: 1 + randInt(rand, 4) }, () => randomEntry(rand, randInt(rand, 4) > 0));
    // Half the time, as Peer.toEntry gives them: connections in name order, each once.
    if (randInt(rand, 2)) {
      for (const e of entries) {
        const byName = new Map(e.connections.map((c) => [c.remoteName, c]));
        (e as { connections: unknown }).connections = [...byName.values()].sort((a, b) => a.remoteName - b.remoteName);
      }
    }
    const { entries: decoded, encoded } = decodeTopologyUpdateEncoded(encodeTopologyUpdate(entries));
    const got = decoded as TopologyEntry[];
    // Non-ASCII text is left to the general decoder, which keeps nothing.
    const ascii = (t: string) => [...t].every((ch) => ch.charCodeAt(0) < 0x80);
    const allAscii = got.every((e) => ascii(e.peer.nickName) && e.connections.every((c) => ascii(c.remoteTcpAddr)));
    got.forEach((e, k) => {
      const mine = encodeTopologyEntry(e);
      const kept = encoded(k);
      const sorted = e.connections.every((c, j) => j === 0 || c.remoteName > (e.connections[j - 1] as typeof c).remoteName);
      if (kept) {
        keptCount++;
        assert.deepEqual(kept, mine);
      } else notKept++;
      assert.equal(kept !== undefined, sorted && allAscii, 'kept exactly when canonical');
    });
  }
  assert.ok(keptCount > 100 && notKept > 100);
  // The original's bytes (connections in map order, Go's ids) may or may not be canonical; when
  // kept they are what we would write.
  for (const p of captured().payloads) {
    const { entries, encoded } = decodeTopologyUpdateEncoded(p);
    (entries as TopologyEntry[]).forEach((e, k) => {
      const kept = encoded(k);
      if (kept) assert.deepEqual(kept, encodeTopologyEntry(e));
    });
  }
  // Non-minimal integers, zero fields sent, a bool sent as 2: decoded the same, never kept.
  const e = randomEntry(rand);
  const one = { peer: { ...e.peer, nickName: 'n', uid: 5n, version: 7n, shortId: 9, hasShortId: true }, connections: [] };
  const bytes = encodeTopologyUpdate([one]);
  const first = decodeTopologyUpdateEncoded(bytes).encoded(0);
  assert.ok(first);
  const body = Buffer.from(first.summary, 'latin1');
  const at = bytes.indexOf(body);
  const twist = (f: (b: Buffer) => Buffer) => {
    const nb = f(Buffer.from(body));
    // Rebuild the value message with its new length.
    const idStart = at - 2;
    const len = bytes[idStart - 1] as number;
    const msg = Buffer.concat([Buffer.from([len - body.length + nb.length]), bytes.subarray(idStart, at), nb]);
    return Buffer.concat([bytes.subarray(0, idStart - 1), msg, bytes.subarray(at + body.length)]);
  };
  // The bool HasShortID (last field, value 1 before the terminating 0) sent as 2.
  const asTwo = twist((b) => Buffer.concat([b.subarray(0, b.length - 2), Buffer.from([2, 0])]));
  const d2 = decodeTopologyUpdateEncoded(asTwo);
  assert.deepEqual(d2.entries, decodeTopologyUpdateWithGob(asTwo));
  assert.equal(d2.entries[0]?.peer.hasShortId, true);
  assert.equal(d2.encoded(0), undefined);
  // ShortID 9 sent in two bytes (0xff 0x09).
  const idx = body.lastIndexOf(9);
  const wide = twist((b) => Buffer.concat([b.subarray(0, idx), Buffer.from([0xff, 9]), b.subarray(idx + 1)]));
  const d3 = decodeTopologyUpdateEncoded(wide);
  assert.deepEqual(d3.entries, decodeTopologyUpdateWithGob(wide));
  assert.equal(d3.entries[0]?.peer.shortId, 9);
  assert.equal(d3.encoded(0), undefined);
});

test("direct topology decoding agrees with the gob decoder on the original's updates, ours, and damaged input", () => {
  const { payloads } = captured();
  assert.ok(payloads.length >= 3);
  const rand = prng(5);
  const corpus = [...payloads];
  for (let i = 0; i < 30; i++) corpus.push(encodeTopologyUpdate(Array.from({ length: 1 + randInt(rand, 3) }, () => randomEntry(rand))));
  const cache = new TopologyDecodeCache(8);
  const check = (b: Buffer) => {
    const want = outcome(() => decodeTopologyUpdateWithGob(b));
    assert.deepEqual(outcome(() => decodeTopologyUpdate(b, cache)), want);
    assert.deepEqual(outcome(() => decodeTopologyUpdate(b)), want);
  };
  for (const p of corpus) check(p);
  for (let i = 0; i < 20_000; i++) {
    const src = corpus[randInt(rand, corpus.length)] as Buffer;
    const b = Buffer.from(src);
    switch (randInt(rand, 5)) {
      case 0:
        check(b.subarray(0, randInt(rand, b.length + 1)));
        break;
      case 1:
        for (let k = 1 + randInt(rand, 3); k > 0; k--) b[randInt(rand, b.length)] = randInt(rand, 256);
        check(b);
        break;
      case 2: {
        const other = corpus[randInt(rand, corpus.length)] as Buffer;
        check(Buffer.concat([b.subarray(0, randInt(rand, b.length + 1)), other.subarray(randInt(rand, other.length + 1))]));
        break;
      }
      case 3: {
        const at = randInt(rand, b.length + 1);
        check(Buffer.concat([b.subarray(0, at + randInt(rand, 60)), b.subarray(at)]));
        break;
      }
      default:
        check(Buffer.from(Array.from({ length: randInt(rand, 64) }, () => randInt(rand, 256))));
    }
  }
});

test('direct gossip envelopes give the gob codec bytes and results exactly', () => {
  const rand = prng(3);
  const { messages } = captured();
  const made: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const payload = Buffer.from(Array.from({ length: randInt(rand, 3) === 0 ? randInt(rand, 70_000) : randInt(rand, 300) }, () => randInt(rand, 256)));
    const channel = ['topology', 'IPallocation', 'nameserver', '', 'ünï'][randInt(rand, 5)] as string;
    const src = randInt(rand, 2) ? randInt(rand, 2 ** 24) * 2 ** 24 + randInt(rand, 2 ** 24) : randInt(rand, 200);
    const tag = [ProtocolTag.Gossip, ProtocolTag.GossipBroadcast, ProtocolTag.GossipUnicast][randInt(rand, 3)] as number;
    const m = (tag === ProtocolTag.GossipUnicast ? { tag, channel, src, dst: randInt(rand, 2 ** 40), payload } : { tag, channel, src, payload }) as GossipMessage;
    const bytes = encodeGossipMessage(m);
    assert.deepEqual(bytes, encodeGossipMessageWithGob(m));
    made.push(bytes);
  }
  assert.throws(() => encodeGossipMessage({ tag: ProtocolTag.Gossip, channel: 'x', src: 2 ** 48, payload: Buffer.alloc(0) }), (x: unknown) => isWeaveError(x) && x.code === 'INVALID_ARGUMENT');
  const corpus = [...messages, ...made];
  const check = (msg: Buffer) => {
    const tag = msg[0] ?? 0;
    const body = msg.subarray(1);
    const want = outcome(() => decodeGossipMessageWithGob(tag, body));
    assert.deepEqual(outcome(() => decodeGossipMessage(tag, body)), want);
  };
  for (const m of corpus) check(m);
  for (let i = 0; i < 20_000; i++) {
    const b = Buffer.from(corpus[randInt(rand, corpus.length)] as Buffer);
    if (randInt(rand, 2)) check(b.subarray(0, 1 + randInt(rand, b.length)));
    else {
      for (let k = 1 + randInt(rand, 3); k > 0; k--) b[1 + randInt(rand, b.length - 1)] = randInt(rand, 256);
      check(b);
    }
  }
});

test('entries we hold are recognised by their bytes: applying them undecoded changes the table exactly as decoding would', () => {
  const rand = prng(21);
  const conn = (n: number, est: boolean) => ({ remoteName: n, remoteTcpAddr: `10.0.0.${n}:6783`, outbound: n % 2 === 0, established: est });
  let skipped = 0;
  let decoded = 0;
  for (let round = 0; round < 200; round++) {
    const names = 12;
    // The sender's view: a random table of `names` peers.
    const entryOf = (n: number, v: bigint): TopologyEntry => ({
      peer: { name: n, nickName: `h${n}`, uid: BigInt(1000 + n), version: v, shortId: n, hasShortId: true },
      connections: [...new Set(Array.from({ length: randInt(rand, 4) }, () => 1 + randInt(rand, names + 3)))].filter((t) => t !== n).sort((a, b) => a - b).map((t) => conn(t, randInt(rand, 3) > 0)),
    });
    const sent: TopologyEntry[] = [];
    for (let n = 1; n <= names; n++) if (randInt(rand, 4) > 0) sent.push(entryOf(n, BigInt(1 + randInt(rand, 3))));
    if (randInt(rand, 3) === 0 && sent.length > 0) sent.push(sent[randInt(rand, sent.length)] as TopologyEntry); // a repeat
    const bytes = encodeTopologyUpdate(sent);
    // Two receivers built the same way: some entries equal to the sender's, some older, newer, or missing.
    const build = () => {
      const r2 = prng(1000 + round);
      const ourself = Peer.local({ name: 1 + randInt(r2, names), nickName: 'us', uid: 7n, shortId: 4000 });
      const peers = new Peers({ ourself, randomInt: (b) => randInt(r2, b) });
      const held: TopologyEntry[] = [];
      for (const e of sent) {
        const k = randInt(r2, 4);
        if (k === 0) continue;
        if (k === 1) held.push(e);
        else held.push({ ...e, peer: { ...e.peer, version: e.peer.version + BigInt(k === 2 ? -1 : 1) }, connections: e.connections.slice(0, randInt(r2, e.connections.length + 1)) });
      }
      // Entries received as bytes, so that their encodings are kept (as gossip would have them).
      peers.applyDecoded(decodeTopologyUpdateEncoded(encodeTopologyUpdate(held)));
      if (randInt(r2, 2)) peers.garbageCollect();
      return peers;
    };
    const a = build();
    const b = build();
    const ra = a.applyUpdate(decodeTopologyUpdate(bytes));
    const d = decodeTopologyUpdateEncoded(bytes, new TopologyDecodeCache(), (n) => b.get(n)?.encoded);
    const rb = b.applyDecoded(d);
    for (const e of d.entries) if (e) decoded++;
    else skipped++;
    assert.deepEqual(rb, ra, `round ${round}: results`);
    assert.deepEqual(b.encodeAll(), a.encodeAll(), `round ${round}: tables`);
    assert.deepEqual(b.names(), a.names(), `round ${round}: names`);
    assert.deepEqual(encodeTopologyUpdate(b.encodeAll()), assembleTopologyUpdate(b.encodedPeers(b.names())), `round ${round}: kept encodings are current`);
  }
  assert.ok(skipped > 100 && decoded > 200, `${skipped} entries recognised, ${decoded} decoded`);
});

test('the first entry of an update is recognised as ours too, with the type definitions between its two values', () => {
  const conn = (n: number) => ({ remoteName: n, remoteTcpAddr: `192.0.2.${n}:6783`, outbound: true, established: true });
  const a: TopologyEntry = { peer: { name: 0x0a0000000001, nickName: 'a', uid: 0xfedcba9876543210n, version: 7n, shortId: 1, hasShortId: true }, connections: [conn(0x0a0000000002)] };
  const b: TopologyEntry = { peer: { name: 0x0a0000000002, nickName: 'b', uid: 2n, version: 3n, shortId: 2, hasShortId: true }, connections: [conn(0x0a0000000001)] };
  const bytes = encodeTopologyUpdate([a, b]);
  const held = new Map([a, b].map((e) => [e.peer.name, encodeTopologyEntry(e)]));
  const d = decodeTopologyUpdateEncoded(bytes, new TopologyDecodeCache(), (n) => held.get(n));
  assert.deepEqual(d.entries, [undefined, undefined], 'both held: neither decoded');
  assert.deepEqual(d.names, [a.peer.name, b.peer.name]);
  // The same summary with other connections: the summary is read after all, and both kept.
  const a2 = { ...a, connections: [] };
  held.set(a.peer.name, encodeTopologyEntry(a2));
  const d2 = decodeTopologyUpdateEncoded(bytes, new TopologyDecodeCache(), (n) => held.get(n));
  assert.deepEqual(d2.entries[0], a);
  assert.equal(d2.entries[1], undefined);
  assert.deepEqual(d2.encoded(0), encodeTopologyEntry(a));
});

test('an entry we hold, byte for byte, under a definition with fewer fields is refused as the gob decoder refuses it', () => {
  const held: TopologyEntry = { peer: { name: 0x0a0b0c0d0e0f, nickName: 'h', uid: 5n, version: 9n, shortId: 3, hasShortId: true }, connections: [] };
  const mine = encodeTopologyEntry(held);
  // The stream defines peerSummary as { NameByte } only (and the list's element likewise), with
  // a first entry that fits it; the second is our entry's bodies, which name fields 2 to 6.
  const summaryType: GobType = { kind: 'struct', name: 'peerSummary', fields: [{ name: 'NameByte', type: GOB_BYTES }] };
  const connType: GobType = { kind: 'struct', name: 'connectionSummary', fields: [{ name: 'NameByte', type: GOB_BYTES }] };
  const enc = new GobEncoder();
  enc.encode(summaryType, { kind: 'struct', name: 'peerSummary', fields: new Map([['NameByte', Buffer.from([0, 0, 0, 0, 0, 1])]]) });
  enc.encode({ kind: 'slice', name: '', elem: connType }, []);
  const head = enc.toBuffer();
  // Type ids as the encoder gave them: peerSummary 65, the list 66.
  const message = (id: number, body: string) => {
    const m = Buffer.concat([Buffer.from([0xff, 2 * id]), Buffer.from(body, 'latin1')]);
    return Buffer.concat([Buffer.from([m.length]), m]);
  };
  const payload = Buffer.concat([head, message(65, mine.summary), message(66, mine.connections)]);
  const refused = (f: () => unknown) => assert.throws(f, (e) => isWeaveError(e) && e.code === 'DECODE_FAILED' && /out of range/.test(e.message));
  refused(() => decodeTopologyUpdateWithGob(payload));
  refused(() => decodeTopologyUpdate(payload));
  // Before, a receiver holding that entry took the bytes as its own and accepted the update.
  refused(() => decodeTopologyUpdateEncoded(payload, new TopologyDecodeCache(), (n) => (n === held.peer.name ? mine : undefined)));
});

test('thousands of type definitions in one update are read in linear time', () => {
  // 64 000 definitions of []string-like types (1 MB), no values: an empty update. When each id
  // was looked up by scanning the definitions before it, this took 8–9 s; now about 0.3 s.
  const parts: Buffer[] = [];
  for (let id = 65; id < 65 + 64_000; id++) {
    const enc = new GobEncoder();
    enc.encode({ kind: 'slice', name: '', elem: GOB_STRING, id }, []);
    const b = enc.toBuffer();
    parts.push(b.subarray(0, 1 + (b[0] as number)));
  }
  const payload = Buffer.concat(parts);
  const t0 = performance.now();
  assert.deepEqual(decodeTopologyUpdate(payload, new TopologyDecodeCache()), []);
  const ms = performance.now() - t0;
  assert.ok(ms < 4000, `${Math.round(ms)} ms`);
});
