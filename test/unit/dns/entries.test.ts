// The DNS entry set: the merge laws (compliance suite) on the set and on the gossip data, the
// original's add / tombstone / revive rules, lookups, and convergence of nameservers that hear
// the same changes in different orders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { Entries, compareCaseInsensitive, compareCaseSensitive, type Entry } from '../../../src/dns/entries.js';
import { Nameserver, NameserverGossipData } from '../../../src/dns/nameserver.js';
import { encodeNameserverGossip } from '../../../src/dns/codec.js';
import { mergeLawSuite } from '../../compliance/gossip-merge-laws.js';
import { seeded } from '../../helpers/prng.js';

const HOSTS = ['web.weave.local.', 'WEB.weave.local.', 'db.weave.local.', 'a.b.weave.local.', 'Db.Weave.Local.', 'ünï.weave.local.'];
const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

function randomEntry(rand: () => number): Entry {
  return {
    hostname: pick(rand, HOSTS),
    origin: pick(rand, [0x7a0000000001, 0x7a0000000002, 0x7a0000000003]),
    containerId: pick(rand, ['ctr1', 'ctr2', 'weave:extern']),
    addr: pick(rand, [0x0a200001, 0x0a200002, 0x0a280000]),
    version: Math.floor(rand() * 4),
    tombstone: rand() < 0.4 ? 1_700_000_000 + Math.floor(rand() * 3) : 0,
  };
}

function randomSet(rand: () => number): Entry[] {
  return Array.from({ length: Math.floor(rand() * 12) }, () => randomEntry(rand));
}

function setOf(...lists: readonly Entry[][]): Entries {
  const s = new Entries();
  for (const l of lists) s.merge(l);
  return s;
}

mergeLawSuite<Entry[]>({
  name: 'dns entries',
  random: randomSet,
  merge: (a, b) => setOf(a, b).all(),
  canonical: (s) => setOf(s).all(),
});

mergeLawSuite<NameserverGossipData>({
  name: 'dns gossip data',
  // Gossip data always holds a set (one state per identity), as made from an Entries.
  random: (rand) => new NameserverGossipData(1_700_000_000 + Math.floor(rand() * 100), setOf(randomSet(rand)).all()),
  merge: (a, b) => a.merge(b) as NameserverGossipData,
  // What goes on the wire: the payload bytes.
  canonical: (g) => encodeNameserverGossip({ timestamp: g.timestamp, entries: g.entries }).toString('hex'),
});

test('merge: higher version wins, then the later tombstone; returns what changed', () => {
  const base: Entry = { hostname: 'web.weave.local.', origin: 1, containerId: 'c', addr: 1, version: 2, tombstone: 0 };
  const s = setOf([base]);
  assert.deepEqual(s.merge([{ ...base, version: 1, tombstone: 99 }]), [], 'older version ignored');
  assert.deepEqual(s.merge([base]), [], 'same state is not news');
  assert.deepEqual(s.merge([{ ...base, tombstone: 5 }]), [{ ...base, tombstone: 5 }], 'equal version, later tombstone');
  assert.deepEqual(s.merge([{ ...base, tombstone: 4 }]), [], 'equal version, earlier tombstone');
  assert.deepEqual(s.merge([{ ...base, version: 3 }]), [{ ...base, version: 3 }], 'newer live version revives');
  assert.deepEqual(s.all(), [{ ...base, version: 3 }]);
});

test('add: new at version 0, idempotent on a live entry, revives a tombstone at version + 1', () => {
  const s = new Entries();
  const e = s.add('web.weave.local.', 'c1', 1, 10);
  assert.deepEqual(e, { hostname: 'web.weave.local.', containerId: 'c1', origin: 1, addr: 10, version: 0, tombstone: 0 });
  assert.deepEqual(s.add('web.weave.local.', 'c1', 1, 10), e);
  assert.deepEqual(s.tombstone(1, 500, () => true), [{ ...e, version: 1, tombstone: 500 }]);
  assert.deepEqual(s.tombstone(1, 600, () => true), [], 'a tombstone is not tombstoned again');
  assert.deepEqual(s.lookup('web.weave.local.'), []);
  assert.deepEqual(s.add('web.weave.local.', 'c1', 1, 10), { ...e, version: 2, tombstone: 0 });
  assert.deepEqual(s.lookup('WEB.weave.LOCAL.'), [10]);
});

test('tombstone: only entries we originate, only those picked', () => {
  const s = new Entries();
  s.add('a.weave.local.', 'c1', 1, 10);
  s.add('a.weave.local.', 'c2', 2, 11);
  s.add('b.weave.local.', 'c1', 1, 12);
  const gone = s.tombstone(1, 7, (e) => e.hostname === 'a.weave.local.');
  assert.deepEqual(gone.map((e) => [e.containerId, e.origin, e.version, e.tombstone]), [['c1', 1, 1, 7]]);
  assert.deepEqual(s.lookup('a.weave.local.'), [11]);
  assert.deepEqual(s.lookup('b.weave.local.'), [12]);
});

test('lookups: case-insensitive by name, first live entry by address, storage order', () => {
  const s = new Entries();
  s.add('Web.Weave.Local.', 'c2', 2, 0x0a000002);
  s.add('web.weave.local.', 'c1', 1, 0x0a000001);
  s.add('db.weave.local.', 'c3', 1, 0x0a000001);
  assert.deepEqual(s.lookup('WEB.WEAVE.LOCAL.'), [0x0a000001, 0x0a000002]);
  assert.equal(s.reverseLookup(0x0a000001), 'db.weave.local.');
  s.tombstone(1, 9, (e) => e.containerId === 'c3');
  assert.equal(s.reverseLookup(0x0a000001), 'web.weave.local.');
  assert.equal(s.reverseLookup(0x0a000009), undefined);
  assert.deepEqual(s.all().map((e) => e.hostname), ['db.weave.local.', 'web.weave.local.', 'Web.Weave.Local.']);
});

test('filter removes, and lookups follow', () => {
  const s = new Entries();
  s.add('web.weave.local.', 'c1', 1, 1);
  s.add('web.weave.local.', 'c2', 2, 2);
  assert.equal(s.filter((e) => e.origin !== 2), 1);
  assert.deepEqual(s.lookup('web.weave.local.'), [1]);
  assert.equal(s.size, 1);
});

test('orders: case-sensitive for gossip, case-insensitive for storage (Go byte order)', () => {
  const e = (hostname: string, origin = 1): Entry => ({ hostname, origin, containerId: 'c', addr: 1, version: 0, tombstone: 0 });
  const xs = [e('b.'), e('B.'), e('a.', 2), e('a.', 1), e('\u{1f600}.'), e('\uff41.')];
  assert.deepEqual([...xs].sort(compareCaseSensitive).map((x) => `${x.hostname}${x.origin}`), ['B.1', 'a.1', 'a.2', 'b.1', '\uff41.1', '\u{1f600}.1']);
  assert.deepEqual([...xs].sort(compareCaseInsensitive).map((x) => `${x.hostname}${x.origin}`), ['a.1', 'a.2', 'B.1', 'b.1', '\uff41.1', '\u{1f600}.1']);
});

// Nameservers that receive the same broadcasts in different orders (and some twice) end with
// the same table: the CRDT property as the daemon uses it, through the wire codec.
test('nameservers converge whatever order gossip arrives in', () => {
  const rand = seeded(42);
  for (let round = 0; round < 30; round++) {
    const clock = new FakeClock(1_700_000_000_000);
    const origins = [0x7a0000000001, 0x7a0000000002, 0x7a0000000003];
    const payloads: Buffer[] = [];
    const sources = origins.map((o) => {
      const ns = new Nameserver({ clock, logger: silentLogger, isKnownPeer: () => true }, { ourName: o });
      ns.setGossip({ broadcast: (g) => payloads.push(...g.encode()) });
      return ns;
    });
    for (let i = 0; i < 40; i++) {
      const ns = pick(rand, sources);
      const host = pick(rand, ['a', 'b', 'c']);
      const addr = Math.floor(rand() * 3);
      if (rand() < 0.6) ns.addEntryFqdn(`${host}.weave.local`, `c${addr}`, addr);
      else ns.delete(`${host}.weave.local.`, '*', '*');
      clock.advance(1000);
    }
    const observers = [0, 1, 2].map(() => new Nameserver({ clock, logger: silentLogger, isKnownPeer: () => true }, { ourName: 0x7a00000000ff }));
    for (const obs of observers) {
      const order = payloads.flatMap((p) => (rand() < 0.2 ? [p, p] : [p]));
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j] as Buffer, order[i] as Buffer];
      }
      for (const p of order) obs.onGossipBroadcast(0x7a0000000001, p);
    }
    const want = JSON.stringify(observers[0]!.allEntries());
    for (const obs of observers) assert.equal(JSON.stringify(obs.allEntries()), want, `round ${round}`);
    // And they agree with the sources' own views of their entries.
    for (const src of sources) {
      const mine = src.allEntries().filter((e) => e.origin === src.ourName);
      const seen = observers[0]!.allEntries().filter((e) => e.origin === src.ourName);
      assert.deepEqual(seen, mine, `round ${round}`);
    }
  }
});

test('change listener: a copy of the names kept with it equals the live names after any operations', () => {
  const rand = seeded(77);
  const set = new Entries();
  const copy = new Map<string, number[]>();
  let events = 0;
  set.setChangeListener((names) => {
    events++;
    for (const n of names) {
      const addrs = set.lookup(n);
      if (addrs.length === 0) copy.delete(n);
      else copy.set(n, addrs);
    }
  });
  const us = 0x7a0000000001;
  for (let step = 0; step < 3000; step++) {
    const r = rand();
    const e = randomEntry(rand);
    if (r < 0.3) set.add(e.hostname, e.containerId, us, e.addr);
    else if (r < 0.5) set.tombstone(us, 1_700_000_100 + step, (x) => x.containerId === e.containerId);
    else if (r < 0.85) set.merge(randomSet(rand));
    else set.filter((x) => x.origin !== e.origin || rand() < 0.5);
    assert.deepEqual(copy, set.liveNames(), `step ${step}`);
  }
  assert.ok(events > 500);
  // Changes that change nothing are not reported.
  set.add('web.weave.local.', 'c', us, 1);
  const before = events;
  set.add('web.weave.local.', 'c', us, 1);
  set.merge(set.all());
  set.filter(() => true);
  set.tombstone(us, 1_700_000_000, () => false);
  assert.equal(events, before);
});
