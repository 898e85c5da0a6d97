// The `nameserver` gossip codec against the original routers' captured gossip
// (test/fixtures/wire-vectors/plain): every nameserver message decodes to what Python's and Go's
// decoders saw, re-encodes byte for byte with the sender's type ids, and our own ids give a
// stream Go's layout accepts; the clock-skew guard; damaged input only ever fails with
// DECODE_FAILED; and `weave status dns` / the report's DNS section match the captured output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeClock } from '../../../src/core/clock.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { formatIPv4 } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/logger.js';
import { formatPeerName } from '../../../src/core/peer-name.js';
import { decodeGobStream } from '../../../src/mesh/gob/index.js';
import {
  DEFAULT_NAMESERVER_GOB_IDS, checkClockSkew, decodeNameserverGossip, encodeNameserverGossip, type NameserverGossip,
} from '../../../src/dns/codec.js';
import { Nameserver, formatDnsStatus } from '../../../src/dns/nameserver.js';
import { fixtureDir, prng, randInt, readGobcheck, readUnits, type Dir } from '../mesh/wire-fixtures.js';
import { goJsonMarshal } from '../../../src/core/go-json.js';

interface Captured {
  dir: Dir;
  payload: Buffer;
  values: unknown;
  ids: { gossipData: number; entry: number; entries: number };
}

function captured(): Captured[] {
  return readUnits('plain')
    .filter((u) => u['channel'] === 'nameserver')
    .map((u) => {
      const decoded = u['payload_decoded'] as { gob_types: Record<string, { name: string }>; values: unknown };
      const idOf = (name: string) => Number(Object.entries(decoded.gob_types).find(([, t]) => t.name === name)?.[0]);
      return {
        dir: u.dir,
        payload: Buffer.from(u['payload_hex'] as string, 'hex'),
        values: decoded.values,
        ids: { gossipData: idOf('GossipData'), entry: idOf('Entry'), entries: idOf('Entries') },
      };
    });
}

test('the capture holds the six nameserver messages, with type ids 78-80 and 86-88', () => {
  const c = captured();
  assert.equal(c.length, 6);
  assert.deepEqual(new Set(c.map((m) => JSON.stringify(m.ids))), new Set([
    JSON.stringify({ gossipData: 78, entry: 79, entries: 80 }),
    JSON.stringify({ gossipData: 86, entry: 87, entries: 88 }),
  ]));
});

test('captured nameserver gossip decodes as the Python decoder saw it', () => {
  for (const m of captured()) {
    const g = decodeNameserverGossip(m.payload);
    const want = (m.values as [{ value: { Timestamp: number; Entries?: Record<string, number | bigint | string>[] } }])[0].value;
    assert.equal(g.timestamp, Number(want.Timestamp));
    assert.deepEqual(
      g.entries.map((e) => ({ ContainerID: e.containerId, Origin: e.origin, Addr: e.addr, Hostname: e.hostname, Version: e.version, Tombstone: e.tombstone })),
      (want.Entries ?? []).map((e) => ({
        ContainerID: e['ContainerID'],
        Origin: Number(e['Origin']),
        Addr: Number(e['Addr']),
        Hostname: e['Hostname'],
        Version: Number(e['Version'] ?? 0),
        Tombstone: Number(e['Tombstone'] ?? 0),
      })),
    );
  }
});

test('captured nameserver gossip decodes as Go encoding/gob saw it (gobcheck)', () => {
  for (const dir of ['h1-to-h2', 'h2-to-h1'] as const) {
    const text = readGobcheck(dir);
    const blocks = text.split('\n#').filter((b) => /channel=nameserver/.test(b));
    const ours = captured().filter((m) => m.dir === dir);
    assert.equal(blocks.length, ours.length);
    blocks.forEach((block, i) => {
      const g = decodeNameserverGossip(ours[i]!.payload);
      const lines = [`    Timestamp=${g.timestamp}`, ...g.entries.map((e) =>
        `      ${e.containerId} ${e.hostname} -> ${formatIPv4(e.addr)} origin=${formatPeerName(e.origin)} version=${e.version} tombstone=${e.tombstone}`)];
      assert.deepEqual(block.split('\n').slice(1).filter((l) => l !== ''), lines, `${dir} message ${i}`);
    });
  }
});

test('re-encoding with the sender type ids gives the captured bytes exactly', () => {
  for (const m of captured()) {
    const g = decodeNameserverGossip(m.payload);
    assert.equal(encodeNameserverGossip(g, m.ids).toString('hex'), m.payload.toString('hex'));
  }
});

test('the encoder sorts entries in the original gossip order', () => {
  const periodic = captured().filter((m) => m.payload.length === 259);
  assert.equal(periodic.length, 2);
  for (const m of periodic) {
    const g = decodeNameserverGossip(m.payload);
    const reversed: NameserverGossip = { timestamp: g.timestamp, entries: [...g.entries].reverse() };
    assert.deepEqual(encodeNameserverGossip(reversed, m.ids), m.payload);
  }
});

test('our own type ids: the same layout Go sends, decodable by the general gob decoder', () => {
  const g: NameserverGossip = {
    timestamp: 1795802364,
    entries: [
      { containerId: 'ctr1', origin: 0x7a0000000001, addr: 0x0a200001, hostname: 'web.weave.local.', version: 3, tombstone: 1795800000 },
      { containerId: 'weave:extern', origin: 0xffffffffffff, addr: 0xffffffff, hostname: 'ünï.weave.local.', version: 0, tombstone: 0 },
    ],
  };
  const bytes = encodeNameserverGossip(g);
  const values = decodeGobStream(bytes);
  assert.equal(values.length, 1);
  assert.equal(values[0]!.typeId, DEFAULT_NAMESERVER_GOB_IDS.gossipData);
  const back = decodeNameserverGossip(bytes);
  assert.equal(back.timestamp, g.timestamp);
  assert.deepEqual([...back.entries].sort((a, b) => a.addr - b.addr), [...g.entries].sort((a, b) => a.addr - b.addr));
  // Same bytes as the capture's layout, apart from the ids: swap ours for 78-80 and compare.
  const cap = captured().find((m) => m.payload.length === 259)!;
  const capG = decodeNameserverGossip(cap.payload);
  assert.deepEqual(encodeNameserverGossip(capG, cap.ids), cap.payload);
  assert.notDeepEqual(encodeNameserverGossip(capG), cap.payload);
  assert.deepEqual(decodeNameserverGossip(encodeNameserverGossip(capG)), capG);
});

test('values Go could not hold are refused on encode', () => {
  const base = { containerId: 'c', origin: 1, addr: 1, hostname: 'a.', version: 0, tombstone: 0 };
  for (const bad of [{ origin: 2 ** 48 }, { addr: 2 ** 32 }, { addr: -1 }, { version: 0.5 }, { tombstone: Number.NaN }]) {
    assert.throws(() => encodeNameserverGossip({ timestamp: 1, entries: [{ ...base, ...bad }] }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  }
  assert.throws(() => encodeNameserverGossip({ timestamp: 1.5, entries: [] }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

test('clock skew beyond 900 s is refused with the original message', () => {
  checkClockSkew(1000 + 900, 1000);
  checkClockSkew(1000 - 900, 1000);
  assert.throws(() => checkClockSkew(1000 + 901, 1000), { message: 'host clock skew of 901s exceeds 900s limit' });
  assert.throws(() => checkClockSkew(0, 1000), { message: 'host clock skew of -1000s exceeds 900s limit' });
  // Through the nameserver: captured gossip at the capture time is taken, an hour later it is not.
  const m = captured().find((x) => x.payload.length === 221)!;
  const at = (sec: number) => new Nameserver({ clock: new FakeClock(sec * 1000), logger: silentLogger, isKnownPeer: () => true }, { ourName: 0x7a0000000002 });
  const ok = at(1795802340);
  assert.ok(ok.onGossip(m.payload));
  assert.deepEqual(ok.lookup('web.weave.local.'), [0x0a200001]);
  assert.throws(() => at(1795802340 + 3600).onGossip(m.payload), { message: 'host clock skew of -3600s exceeds 900s limit' });
});

test('fuzz: damaged payloads decode or fail with DECODE_FAILED only', () => {
  const rand = prng(7);
  const corpus = captured().map((m) => m.payload);
  for (let i = 0; i < 5000; i++) {
    const src = corpus[randInt(rand, corpus.length)]!;
    let b: Buffer;
    switch (randInt(rand, 4)) {
      case 0:
        b = src.subarray(0, randInt(rand, src.length + 1));
        break;
      case 1:
        b = Buffer.from(src);
        for (let k = 1 + randInt(rand, 4); k > 0; k--) b[randInt(rand, b.length)] = randInt(rand, 256);
        break;
      case 2: {
        const at = randInt(rand, src.length);
        b = Buffer.concat([src.subarray(0, at), Buffer.from([0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff].slice(0, 1 + randInt(rand, 9))), src.subarray(at)]);
        break;
      }
      default:
        b = Buffer.from(Array.from({ length: randInt(rand, 64) }, () => randInt(rand, 256)));
    }
    try {
      const g = decodeNameserverGossip(b);
      // Whatever decodes re-encodes and decodes to the same thing.
      assert.deepEqual(decodeNameserverGossip(encodeNameserverGossip(g)).entries.length, g.entries.length);
    } catch (e) {
      assert.ok(isWeaveError(e, 'DECODE_FAILED'), `case ${i}: ${String(e)}`);
    }
  }
});

test('`weave status dns` and the report DNS section match the captured router output', () => {
  const clock = new FakeClock(1795802364_000);
  for (const h of ['h1', 'h2'] as const) {
    const ourName = h === 'h1' ? 0x7a0000000001 : 0x7a0000000002;
    const ns = new Nameserver({ clock, logger: silentLogger, isKnownPeer: () => true }, { ourName, domain: 'weave.local' });
    // Our own entry first (a router that holds no entry claimed in its name deletes it).
    if (h === 'h1') ns.addEntry('web.weave.local.', 'ctr1', ourName, 0x0a200001);
    else ns.addEntry('db.weave.local.', 'ctr2', ourName, 0x0a280000);
    const periodic = captured().find((m) => m.payload.length === 259)!;
    ns.onGossip(periodic.payload);
    const status = ns.status({ listenAddress: '127.0.0.1:5353', ttl: 1, upstreamServers: () => [] });
    const want = readFileSync(join(fixtureDir, 'plain', `${h}-status-dns.txt`), 'utf8');
    assert.equal(formatDnsStatus(status), want);
    const report = JSON.parse(readFileSync(join(fixtureDir, 'plain', `${h}-report.json`), 'utf8')) as { DNS: unknown };
    // As /report writes it (empty lists are nil slices: null).
    assert.deepEqual(JSON.parse(goJsonMarshal(status)), report.DNS);
    assert.equal(ns.entryCount(), 2);
    assert.equal(ns.localEntryCount(), 1);
  }
});
