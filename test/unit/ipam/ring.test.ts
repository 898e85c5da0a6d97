// The ring: seeding (CIDR-aligned, identical to the original's), grants, ownership lookups,
// transfers, free reports, the choice of donors, and the owner's merge rules with the
// original's error texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ring, type RingState } from '../../../src/ipam/ring.js';
import { formatIPv4, parseIPv4 } from '../../../src/core/ip.js';
import { seeded } from '../../helpers/prng.js';

const ip = parseIPv4;
const P1 = 0x7a0000000001;
const P2 = 0x7a0000000002;
const P3 = 0x7a0000000003;

function tokens(r: Ring): string[] {
  return r.entryList().map((e) => `${formatIPv4(e.token)} ${e.peer - 0x7a0000000000} v${e.version} f${e.free}`);
}

test('claimForPeers divides the range as the original (the captured ring)', () => {
  const r = new Ring(ip('10.32.0.0'), ip('10.48.0.0'), P1);
  r.claimForPeers([P1, P2]);
  assert.deepEqual(tokens(r), ['10.32.0.0 1 v0 f524288', '10.40.0.0 2 v0 f524288']);
  assert.deepEqual(r.seeds, [P1, P2]);
  const s = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  s.claimForPeers([P1, P2, P3]);
  assert.deepEqual(tokens(s), ['10.0.0.0 1 v0 f128', '10.0.0.128 2 v0 f64', '10.0.0.192 3 v0 f64']);
  // An odd share leaves one address between shares, counted by nobody as free.
  const o = new Ring(0, 7, P1);
  o.claimForPeers([P1, P2]);
  assert.deepEqual(o.entryList().map((e) => [e.token, e.free]), [[0, 3], [4, 3]]);
  assert.throws(() => o.claimForPeers([P3]), /non-empty/);
});

test('owner, owned ranges and range info, including the wrap round the end', () => {
  const r = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  r.claimForPeers([P1, P2]);
  r.grantRangeToHost(ip('10.0.0.0'), ip('10.0.0.16'), P3);
  assert.equal(r.owner(ip('10.0.0.5')), P3);
  assert.equal(r.owner(ip('10.0.0.16')), P1);
  assert.equal(r.owner(ip('10.0.0.200')), P2);
  assert.equal(r.owner(ip('10.0.1.0')), undefined);
  assert.deepEqual(r.ownedRanges(), [{ start: ip('10.0.0.16'), end: ip('10.0.0.128') }]);
  // P2 owns the last entry; give away the first one and the last wraps.
  const w = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  w.claimForPeers([P1]);
  w.grantRangeToHost(ip('10.0.0.0'), ip('10.0.0.64'), P2);
  assert.deepEqual(tokens(w), ['10.0.0.0 2 v1 f64', '10.0.0.64 1 v0 f192']);
  assert.deepEqual(w.ownedRanges(P2), [{ start: ip('10.0.0.0'), end: ip('10.0.0.64') }]);
  const single = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  single.claimForPeers([P1]);
  single.grantRangeToHost(ip('10.0.0.64'), ip('10.0.0.128'), P2);
  assert.deepEqual(tokens(single), ['10.0.0.0 1 v1 f64', '10.0.0.64 2 v0 f64', '10.0.0.128 1 v0 f128']);
  assert.deepEqual(single.allRangeInfo().map((x) => [formatIPv4(x.start), x.end - x.start, x.peer]), [
    ['10.0.0.0', 64, P1],
    ['10.0.0.64', 64, P2],
    ['10.0.0.128', 128, P1],
  ]);
  // A ring whose only token is not at the start wraps: two ranges.
  const m = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  m.merge({ start: ip('10.0.0.0'), end: ip('10.0.1.0'), peer: P2, entries: [{ token: ip('10.0.0.100'), peer: P1, version: 0, free: 10 }], seeds: [] }, () => false);
  assert.deepEqual(m.ownedRanges(), [{ start: ip('10.0.0.0'), end: ip('10.0.0.100') }, { start: ip('10.0.0.100'), end: ip('10.0.1.0') }]);
});

test('grantRangeToHost refuses ranges we do not own', () => {
  const r = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  r.claimForPeers([P1, P2]);
  assert.throws(() => r.grantRangeToHost(ip('10.0.0.200'), ip('10.0.0.210'), P3), /not owned by us/);
  assert.throws(() => r.grantRangeToHost(ip('10.0.0.20'), ip('10.0.0.10'), P3), /bad range/);
});

test('reportFree bumps versions of changed entries only; transfer bumps by 100', () => {
  const r = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  r.claimForPeers([P1, P2]);
  assert.equal(r.reportFree(new Map([[ip('10.0.0.0'), 128]])), false);
  assert.equal(r.reportFree(new Map([[ip('10.0.0.0'), 100]])), true);
  assert.deepEqual(tokens(r), ['10.0.0.0 1 v1 f100', '10.0.0.128 2 v0 f128']);
  assert.throws(() => r.reportFree(new Map([[ip('10.0.0.128'), 1]])), /do not own/);
  assert.throws(() => r.reportFree(new Map([[ip('10.0.0.0'), 129]])), /more free/);
  assert.deepEqual(r.transfer(P2, P1), [{ start: ip('10.0.0.128'), end: ip('10.0.1.0') }]);
  assert.deepEqual(tokens(r), ['10.0.0.0 1 v1 f100', '10.0.0.128 1 v100 f128']);
  assert.equal(r.pickPeerForTransfer(() => true), undefined);
});

test('choosePeersToAskForSpace weights by free space, skips us and full entries', () => {
  const r = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  r.claimForPeers([P1, P2, P3]);
  const counts = new Map<number, number>();
  const rnd = seeded(7);
  for (let i = 0; i < 2000; i++) {
    const first = r.choosePeersToAskForSpace(ip('10.0.0.0'), ip('10.0.1.0'), rnd)[0] as number;
    counts.set(first, (counts.get(first) ?? 0) + 1);
  }
  assert.equal(counts.has(P1), false);
  assert.ok((counts.get(P2) ?? 0) > 600 && (counts.get(P3) ?? 0) > 600);
  // Only entries overlapping the requested range count.
  assert.deepEqual(r.choosePeersToAskForSpace(ip('10.0.0.130'), ip('10.0.0.140'), rnd), [P2]);
  assert.deepEqual(r.choosePeersToAskForSpace(ip('10.0.0.0'), ip('10.0.0.100'), rnd), []);
});

function state(r: Ring): RingState {
  return r.state();
}

test('merge: the owner rules and the original error texts', () => {
  const base = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  base.claimForPeers([P1, P2]);
  const none = () => false;
  const all = () => true;

  // Different seeds, different range, invalid rings.
  const other = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P3);
  other.claimForPeers([P3]);
  assert.deepEqual(base.merge(state(other), none), { ok: false, kind: 'seeds', message: 'Received ring was seeded differently from ours' });
  const wide = new Ring(ip('10.0.0.0'), ip('10.0.2.0'), P3);
  wide.claimForPeers([P1, P2]);
  assert.equal((base.merge(state(wide), none) as { kind: string }).kind, 'range');
  const bad = { ...state(base), entries: [{ token: ip('10.0.0.0'), peer: P1, version: 1, free: 300 }] };
  assert.match((base.merge(bad, none) as { message: string }).message, /reporting too much free space: 300 > 256/);
  const unsorted = { ...state(base), entries: [...state(base).entries].reverse() };
  assert.equal((base.merge(unsorted, none) as { message: string }).message, 'Ring not sorted');

  // P2 inserts a token into our range: accepted when we hold nothing there, refused otherwise.
  const split = {
    ...state(base),
    entries: [
      { token: ip('10.0.0.0'), peer: P1, version: 0, free: 64 },
      { token: ip('10.0.0.64'), peer: P2, version: 0, free: 10 },
      { token: ip('10.0.0.128'), peer: P2, version: 0, free: 128 },
    ],
  };
  const r1 = Ring.restore(state(base), P1);
  assert.deepEqual(r1.merge(split, all), { ok: false, kind: 'entries', message: 'Peer 7a:00:00:00:00:02 says it owns the IP range from 10.0.0.64, which I think I own' });
  assert.deepEqual(r1.merge(split, none), { ok: true, updated: true });
  // Our free count was trimmed to our shorter range.
  assert.equal(r1.entryList()[0]?.free, 64);

  // A newer version of our entry owned by someone else.
  const taken = Ring.restore(state(base), P2);
  taken.transfer(P1, P2);
  const r2 = Ring.restore(state(base), P1);
  assert.deepEqual(r2.merge(state(taken), all), {
    ok: false, kind: 'entries',
    message: 'Received update for IP range I own at 10.0.0.0 v0: incoming message says owner 7a:00:00:00:00:02 v100',
  });
  assert.deepEqual(r2.merge(state(taken), none), { ok: true, updated: true }); // repaired: we held nothing
  assert.equal(r2.owner(ip('10.0.0.1')), P2);

  // Same version, different owner of our entry.
  const rival = { ...state(base), entries: state(base).entries.map((e) => (e.peer === P1 ? { ...e, peer: P3 } : e)) };
  assert.deepEqual(Ring.restore(state(base), P1).merge(rival, all), {
    ok: false, kind: 'entries', message: 'Inconsistent entries for 10.0.0.0: owned by 7a:00:00:00:00:01 but incoming message says 7a:00:00:00:00:03',
  });

  // An older copy of our own entry with a higher version: ours stands, with a higher version.
  const stale = { ...state(base), entries: state(base).entries.map((e) => (e.peer === P1 ? { ...e, version: 7, free: 1 } : e)) };
  const r3 = Ring.restore(state(base), P1);
  assert.deepEqual(r3.merge(stale, all), { ok: true, updated: true });
  assert.deepEqual(tokens(r3)[0], '10.0.0.0 1 v8 f128');

  // Idempotent on an owner, and an empty ring takes everything including the seeds.
  assert.deepEqual(r3.merge(r3.state(), all), { ok: true, updated: false });
  const fresh = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P3);
  assert.deepEqual(fresh.merge(state(base), none), { ok: true, updated: true });
  assert.deepEqual(fresh.seeds, [P1, P2]);
  assert.equal(base.toString(new Map([[P1, 'one']])), 'Ring [10.0.0.0, 10.0.1.0)\n  10.0.0.0 -> 7a:00:00:00:00:01 (one) (v0)\n  10.0.0.128 -> 7a:00:00:00:00:02 (v0)');
});

test('merge: every token of theirs inside our range is checked, not only the first', () => {
  const base = new Ring(ip('10.0.0.0'), ip('10.0.1.0'), P1);
  base.claimForPeers([P1, P2]); // P1: 10.0.0.0/25, P2: 10.0.0.128/25
  // We hold 10.0.0.100 only, in the last quarter of our range.
  const holds = (ranges: { start: number; end: number }[]) => ranges.some((r) => r.start <= ip('10.0.0.100') && ip('10.0.0.100') < r.end);
  const ours = { token: ip('10.0.0.0'), peer: P1, version: 0, free: 32 };
  const p2 = { token: ip('10.0.0.128'), peer: P2, version: 0, free: 128 };
  // Two tokens: the first splits off a part where we hold nothing, the second covers 10.0.0.100.
  const two = { ...state(base), entries: [ours, { token: ip('10.0.0.32'), peer: P3, version: 0, free: 32 }, { token: ip('10.0.0.64'), peer: P2, version: 0, free: 64 }, p2] };
  const r1 = Ring.restore(state(base), P1);
  assert.deepEqual(r1.merge(two, holds), { ok: false, kind: 'entries', message: 'Peer 7a:00:00:00:00:02 says it owns the IP range from 10.0.0.64, which I think I own' });
  assert.equal(r1.owner(ip('10.0.0.100')), P1);
  // Our own entry taken over (where we hold nothing), then a token of theirs further on.
  const over = { ...state(base), entries: [{ ...ours, peer: P3, version: 5 }, { token: ip('10.0.0.64'), peer: P2, version: 0, free: 64 }, p2] };
  const r2 = Ring.restore(state(base), P1);
  assert.deepEqual(r2.merge(over, holds), { ok: false, kind: 'entries', message: 'Peer 7a:00:00:00:00:02 says it owns the IP range from 10.0.0.64, which I think I own' });
  assert.equal(r2.owner(ip('10.0.0.100')), P1);
  // Where we hold nothing, both are taken.
  assert.deepEqual(Ring.restore(state(base), P1).merge(two, () => false), { ok: true, updated: true });
});

test('merge: a grant we made and forgot (restart without the store) is taken unless we hold addresses in the granted part', () => {
  // Our stale copy: 10.0.0.0 is ours (v1) up to 10.0.0.240. What the others know: we granted
  // 10.0.0.0–10.0.0.127 to P2 (since updated to v4) and kept 10.0.0.128 onwards.
  const stale = (): RingState => ({
    start: ip('10.0.0.0'), end: ip('10.0.1.0'), peer: P1, seeds: [P1],
    entries: [
      { token: ip('10.0.0.0'), peer: P1, version: 1, free: 0 },
      { token: ip('10.0.0.240'), peer: P3, version: 0, free: 0 },
    ],
  });
  const known: RingState = {
    start: ip('10.0.0.0'), end: ip('10.0.1.0'), peer: P2, seeds: [P1],
    entries: [
      { token: ip('10.0.0.0'), peer: P2, version: 4, free: 0 },
      { token: ip('10.0.0.128'), peer: P1, version: 1, free: 0 },
      { token: ip('10.0.0.240'), peer: P3, version: 0, free: 0 },
    ],
  };
  const held = (addr: string) => (ranges: { start: number; end: number }[]) => ranges.some((r) => r.start <= ip(addr) && ip(addr) < r.end);
  // An address of ours beyond the grant: the merge goes through.
  const r = Ring.restore(stale(), P1);
  assert.deepEqual(r.merge(known, held('10.0.0.130')), { ok: true, updated: true });
  assert.equal(r.owner(ip('10.0.0.5')), P2);
  assert.equal(r.owner(ip('10.0.0.130')), P1);
  // An address of ours inside what the incoming entry takes: refused, as the original.
  const r2 = Ring.restore(stale(), P1);
  assert.match((r2.merge(known, held('10.0.0.5')) as { message: string }).message, /^Received update for IP range I own at 10\.0\.0\.0 v1/);
});
