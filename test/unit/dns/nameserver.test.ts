// The nameserver's rules around the entry set (nameserver.go): broadcasts of our own changes,
// deletes only of what we originate, peers gone, unknown peers filtered, our entries re-asserted
// against newer claims, tombstones purged after 30 min, the HTTP helpers and counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { GossipData } from '../../../src/mesh/gossip.js';
import { decodeNameserverGossip, encodeNameserverGossip } from '../../../src/dns/codec.js';
import type { Entry } from '../../../src/dns/entries.js';
import { Nameserver, TOMBSTONE_TIMEOUT_MS, fqdn, isSubDomain } from '../../../src/dns/nameserver.js';

const US = 0x7a0000000001;
const THEM = 0x7a0000000002;
const STRANGER = 0x7a00000000ee;
const T0 = 1_700_000_000;

function setup(opts: { domain?: string; known?: number[] } = {}) {
  const clock = new FakeClock(T0 * 1000);
  const known = new Set(opts.known ?? [US, THEM]);
  const ns = new Nameserver({ clock, logger: silentLogger, isKnownPeer: (p) => known.has(p) }, { ourName: US, ...(opts.domain ? { domain: opts.domain } : {}) });
  const sent: { timestamp: number; entries: readonly Entry[] }[] = [];
  ns.setGossip({ broadcast: (g: GossipData) => sent.push(...g.encode().map((b) => decodeNameserverGossip(b))) });
  return { clock, ns, sent, known };
}

const payload = (entries: Entry[], timestamp = T0) => encodeNameserverGossip({ timestamp, entries });
const entry = (over: Partial<Entry>): Entry => ({ hostname: 'web.weave.local.', containerId: 'c1', origin: THEM, addr: 0x0a000001, version: 0, tombstone: 0, ...over });

test('fqdn and isSubDomain as miekg/dns', () => {
  assert.equal(fqdn('weave.local'), 'weave.local.');
  assert.equal(fqdn('weave.local.'), 'weave.local.');
  assert.ok(isSubDomain('weave.local.', 'a.weave.local.'));
  assert.ok(isSubDomain('weave.local', 'A.WEAVE.LOCAL'));
  assert.ok(isSubDomain('weave.local.', 'weave.local.'));
  assert.ok(!isSubDomain('weave.local.', 'aweave.local.'));
  assert.ok(!isSubDomain('weave.local.', '.'));
});

test('adds are broadcast at once with our clock; names outside the domain are ignored', () => {
  const { ns, sent } = setup({ domain: 'weave.local' });
  assert.equal(ns.domain, 'weave.local.');
  assert.ok(ns.addEntryFqdn('web.weave.local', 'c1', 0x0a000001));
  assert.ok(!ns.addEntryFqdn('web.example.com', 'c1', 0x0a000001));
  assert.ok(!ns.addEntryFqdn('', 'c1', 0x0a000001));
  assert.deepEqual(sent, [{ timestamp: T0, entries: [entry({ origin: US })] }]);
  assert.deepEqual(ns.lookup('WEB.weave.local.'), [0x0a000001]);
  // Adding a live entry again changes nothing but is still announced (as the original).
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a000001);
  assert.equal(sent.length, 2);
  assert.equal(ns.allEntries().length, 1);
});

test('delete tombstones only our matching entries and broadcasts them; re-add revives', () => {
  const { ns, sent, clock } = setup();
  ns.addEntryFqdn('web.weave.local.', 'c1', 1);
  ns.addEntryFqdn('web.weave.local.', 'c2', 2);
  ns.addEntryFqdn('db.weave.local.', 'c1', 3);
  ns.onGossip(payload([entry({ containerId: 'c1', addr: 9 })]));
  sent.length = 0;
  clock.advance(5000);
  ns.httpDeleteName('c1', undefined, undefined);
  assert.deepEqual(sent[0]!.entries.map((e) => [e.hostname, e.addr, e.version, e.tombstone]), [
    ['db.weave.local.', 3, 1, T0 + 5],
    ['web.weave.local.', 1, 1, T0 + 5],
  ]);
  assert.deepEqual(ns.lookup('web.weave.local.'), [2, 9], "their c1 is not ours to delete");
  ns.httpDeleteName(undefined, '0.0.0.2', 'web.weave.local');
  assert.deepEqual(ns.lookup('web.weave.local.'), [9]);
  ns.httpPutName('c1', '0.0.0.1', 'web.weave.local.');
  assert.deepEqual(ns.lookup('web.weave.local.'), [1, 9]);
  assert.equal(ns.allEntries().find((e) => e.addr === 1)!.version, 2);
  assert.throws(() => ns.httpPutName('c1', '10.0.0.256', 'x.weave.local.'), (e) => isWeaveError(e, 'INVALID_ARGUMENT') && e.message === 'invalid IP Address: 10.0.0.256');
  assert.throws(() => ns.httpDeleteName('c1', 'nope', undefined), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  // Names no DNS message can carry are refused, not stored and gossiped for nobody to find.
  const before = ns.entryCount();
  for (const bad of ['a..b.weave.local', `${'x'.repeat(64)}.weave.local`, `${'abcdefghi.'.repeat(25)}weave.local`, '.weave.local']) {
    assert.throws(() => ns.httpPutName('c1', '0.0.0.3', bad), (e) => isWeaveError(e, 'INVALID_ARGUMENT') && /Invalid hostname/.test(e.message), bad);
  }
  assert.equal(ns.entryCount(), before);
  ns.httpPutName('c1', '0.0.0.3', `${'x'.repeat(63)}.weave.local`);
  ns.httpPutName('c1', '0.0.0.3', ''); // no name: outside the domain, ignored as by the original
  assert.equal(ns.entryCount(), before + 1);
});

test('containerDied tombstones all entries of that container', () => {
  const { ns } = setup();
  ns.addEntryFqdn('a.weave.local.', 'c1', 1);
  ns.addEntryFqdn('b.weave.local.', 'c1', 2);
  ns.addEntryFqdn('c.weave.local.', 'c2', 3);
  assert.equal(ns.containerDied('c1').length, 2);
  assert.deepEqual([ns.lookup('a.weave.local.'), ns.lookup('b.weave.local.'), ns.lookup('c.weave.local.')], [[], [], [3]]);
  assert.equal(ns.entryCount(), 1);
});

test('received gossip: entries of unknown peers are dropped; news is returned for gossiping on', () => {
  const { ns } = setup();
  const delta = ns.onGossip(payload([entry({}), entry({ origin: STRANGER, hostname: 'x.weave.local.' })]));
  assert.ok(delta);
  assert.deepEqual(delta.encode().map((b) => decodeNameserverGossip(b).entries), [[entry({})]]);
  assert.equal(ns.onGossip(payload([entry({})])), undefined, 'nothing new the second time');
  assert.deepEqual(ns.lookup('x.weave.local.'), []);
  // Broadcasts are applied the same way and give back what was received.
  const back = ns.onGossipBroadcast(THEM, payload([entry({ version: 1, tombstone: T0 })]));
  assert.ok(back);
  assert.deepEqual(ns.lookup('web.weave.local.'), []);
});

test('a peer gone takes its entries with it', () => {
  const { ns } = setup();
  ns.addEntryFqdn('web.weave.local.', 'c0', 5);
  ns.onGossip(payload([entry({}), entry({ hostname: 'db.weave.local.' })]));
  assert.equal(ns.entryCount(), 3);
  ns.peerGone(THEM);
  assert.deepEqual(ns.allEntries().map((e) => e.origin), [US]);
  assert.equal(ns.localEntryCount(), 1);
});

test('a newer claim about our entry is overridden: ours re-broadcast at version + 1', () => {
  const { ns, sent } = setup();
  ns.addEntryFqdn('web.weave.local.', 'c1', 1);
  sent.length = 0;
  // Someone says our live entry was deleted at version 3.
  ns.onGossip(payload([entry({ origin: US, addr: 1, version: 3, tombstone: T0 - 10 })]));
  assert.deepEqual(sent, [{ timestamp: T0, entries: [entry({ origin: US, addr: 1, version: 4 })] }]);
  assert.deepEqual(ns.lookup('web.weave.local.'), [1]);
  // Equal version, different tombstone: also ours wins.
  sent.length = 0;
  ns.onGossip(payload([entry({ origin: US, addr: 1, version: 4, tombstone: T0 })]));
  assert.deepEqual(sent[0]!.entries, [entry({ origin: US, addr: 1, version: 5 })]);
  // An older or equal claim changes nothing and sends nothing.
  sent.length = 0;
  ns.onGossip(payload([entry({ origin: US, addr: 1, version: 5 })]));
  assert.deepEqual(sent, []);
});

test('a live entry in our name that we do not hold (we restarted) is deleted everywhere', () => {
  const { ns, sent } = setup();
  ns.onGossip(payload([entry({ origin: US, addr: 7, version: 2 })]));
  assert.deepEqual(sent, [{ timestamp: T0, entries: [entry({ origin: US, addr: 7, version: 3, tombstone: T0 })] }]);
  assert.deepEqual(ns.lookup('web.weave.local.'), []);
  // A tombstone of ours we do not hold is merely kept.
  sent.length = 0;
  ns.onGossip(payload([entry({ origin: US, addr: 8, version: 2, tombstone: T0 })]));
  assert.equal(sent.length, 0);
  // Registering it again revives it above the tombstone.
  ns.addEntryFqdn('web.weave.local.', 'c1', 7);
  assert.deepEqual(sent[0]!.entries, [entry({ origin: US, addr: 7, version: 4 })]);
});

test('tombstones are purged 30 min after deletion, by the timer', () => {
  const { ns, clock } = setup();
  ns.start();
  ns.addEntryFqdn('web.weave.local.', 'c1', 1);
  clock.advance(60_000);
  ns.delete('*', 'c1', '*');
  assert.equal(ns.allEntries().length, 1);
  clock.advance(TOMBSTONE_TIMEOUT_MS - 60_000); // first purge: the tombstone is 29 min old
  assert.equal(ns.allEntries().length, 1);
  clock.advance(TOMBSTONE_TIMEOUT_MS); // second purge: 59 min old
  assert.equal(ns.allEntries().length, 0);
  ns.stop();
  assert.equal(clock.pendingCount, 0);
});

test('tombstones dated beyond the gossip clock skew are purged at once; others after 30 min', () => {
  const { ns } = setup();
  ns.onGossip(payload([entry({ addr: 1, version: 1, tombstone: T0 + 10 * 365 * 86_400 }), entry({ addr: 2, version: 1, tombstone: T0 + 600 })]));
  assert.equal(ns.allEntries().length, 2);
  assert.equal(ns.deleteTombstones(), 1);
  assert.deepEqual(ns.allEntries().map((e) => e.addr), [2]);
});

test('gossip() is the whole table, even when empty (as the captured routers sent it)', () => {
  const { ns } = setup();
  assert.deepEqual(ns.gossip().encode().map((b) => decodeNameserverGossip(b)), [{ timestamp: T0, entries: [] }]);
  ns.addEntryFqdn('web.weave.local.', 'c1', 1);
  assert.equal(decodeNameserverGossip(ns.gossip().encode()[0]!).entries.length, 1);
});

test('bad gossip throws typed errors (the channel logs and drops them)', () => {
  const { ns } = setup();
  assert.throws(() => ns.onGossip(Buffer.from('nonsense')), (e) => isWeaveError(e, 'DECODE_FAILED'));
  assert.throws(() => ns.onGossip(payload([entry({})], T0 + 1000)), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

test('JSON of GET /name and the status counts', () => {
  const { ns } = setup();
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
  ns.onGossip(payload([entry({ hostname: 'db.weave.local.', version: 1, tombstone: T0 })]));
  assert.deepEqual(ns.entriesJson(), [
    { ContainerID: 'c1', Origin: '7a:00:00:00:00:02', Addr: '10.0.0.1', Hostname: 'db.weave.local.', Version: 1, Tombstone: T0 },
    { ContainerID: 'c1', Origin: '7a:00:00:00:00:01', Addr: '10.32.0.1', Hostname: 'web.weave.local.', Version: 0, Tombstone: 0 },
  ]);
  const st = ns.status({ listenAddress: '172.17.0.1:53', ttl: 1, upstreamServers: () => ['8.8.8.8'] });
  assert.equal(st.Upstream?.[0], '8.8.8.8');
  assert.equal(st.Entries?.length, 2);
  assert.equal(ns.entryCount(), 1);
});
