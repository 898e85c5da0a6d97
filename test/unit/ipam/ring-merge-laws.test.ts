// Compliance suite: the ring is a CRDT, so merging is idempotent, commutative and
// associative. Rings come from random but legitimate histories (seeded PRNG): peers seed a
// ring, give parts of their space away, report free counts, take over a dead peer's space
// (sometimes two peers at once, as a careless rmpeer would), and merge each other's copies
// in random order; snapshots along the way are the rings the laws are checked on.
// Each law runs against every implementation of merge: the pure join, and Ring.merge as a
// peer that owns nothing (the owner's extra rules only concern its own entries).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ring, joinEntries, type RingEntry, type RingState } from '../../../src/ipam/ring.js';
import { seeded } from '../../helpers/prng.js';

const START = 0x0a000000;
const OBSERVER = 0x7affffffffff;

interface Merger {
  readonly name: string;
  /** The merge of b into a, or undefined when the implementation refuses it. */
  merge(a: RingState, b: RingState): RingState | undefined;
}

const implementations: Merger[] = [
  {
    name: 'joinEntries',
    merge: (a, b) => ({ ...a, entries: joinEntries(a.entries, b.entries, a), seeds: a.seeds.length ? a.seeds : b.seeds }),
  },
  {
    name: 'Ring.merge as a non-owner',
    merge: (a, b) => {
      const r = Ring.restore({ ...a, peer: OBSERVER }, OBSERVER);
      const res = r.merge(b, () => false);
      return res.ok ? { ...r.state(), peer: a.peer } : undefined;
    },
  },
];

function key(s: RingState | undefined): string {
  if (!s) return 'refused';
  return JSON.stringify([s.seeds, s.entries.map((e: RingEntry) => [e.token, e.peer, e.version, e.free])]);
}

/** Snapshots of rings from one random history. */
function history(seed: number): RingState[] {
  const rnd = seeded(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const size = 2 ** (4 + int(7)) + (rnd() < 0.2 ? int(5) : 0);
  const peers = Array.from({ length: 2 + int(5) }, (_, i) => 0x7a0000000000 + i + 1);
  const seeds = peers.slice(0, 1 + int(peers.length));
  const rings = new Map(peers.map((p) => [p, new Ring(START, START + size, p)]));
  const dead = new Set<number>();
  for (const [, r] of rings) if (rnd() < 0.7) r.claimForPeers(seeds);
  const pool: RingState[] = [];
  const live = () => peers.filter((p) => !dead.has(p));
  for (let step = 0; step < 60; step++) {
    const p = live()[int(live().length)] as number;
    const r = rings.get(p) as Ring;
    const what = rnd();
    if (what < 0.3) {
      // Give away part of one of our ranges.
      const mine = r.ownedRanges();
      const range = mine[int(mine.length)];
      if (!range || range.end - range.start < 2) continue;
      const a = range.start + int(range.end - range.start - 1);
      const b = a + 1 + int(range.end - a - 1);
      const to = peers[int(peers.length)] as number;
      if (to !== p) r.grantRangeToHost(a, b, to);
    } else if (what < 0.5) {
      const free = new Map<number, number>();
      for (const { token, ranges } of r.ownEntries()) free.set(token, int(1 + ranges.reduce((n, x) => n + x.end - x.start, 0)));
      if (free.size) r.reportFree(free);
    } else if (what < 0.53 && live().length > 2) {
      // A peer dies; one or two live peers take its space over.
      const victim = live().find((x) => x !== p) as number;
      dead.add(victim);
      r.transfer(victim, p);
      if (rnd() < 0.3) {
        const q = live().find((x) => x !== p);
        if (q !== undefined) (rings.get(q) as Ring).transfer(victim, q);
      }
    } else {
      const from = rings.get(peers[int(peers.length)] as number) as Ring;
      if (from !== r) r.merge(from.state(), () => false);
    }
    if (rnd() < 0.5) pool.push(r.state());
  }
  for (const r of rings.values()) pool.push(r.state());
  return pool;
}

function sample<T>(xs: readonly T[], rnd: () => number): T {
  return xs[Math.floor(rnd() * xs.length)] as T;
}

for (const impl of implementations) {
  test(`ring merge laws (${impl.name}): idempotent, commutative, associative over random rings`, () => {
    let checked = 0;
    for (let seed = 1; seed <= 150; seed++) {
      const pool = history(seed);
      const rnd = seeded(seed * 7919);
      for (let k = 0; k < 30; k++) {
        const a = sample(pool, rnd);
        const b = sample(pool, rnd);
        const c = sample(pool, rnd);
        const ctx = `seed ${seed} sample ${k}`;
        // Idempotent: a merged with itself is a, and merging b twice changes nothing more.
        assert.equal(key(impl.merge(a, a)), key(a), `${ctx}: a ⊔ a ≠ a`);
        const ab = impl.merge(a, b);
        if (ab) assert.equal(key(impl.merge(ab, b)), key(ab), `${ctx}: (a ⊔ b) ⊔ b ≠ a ⊔ b`);
        // Commutative (seeds aside: a ring keeps its own seeds when both have some).
        const ba = impl.merge(b, a);
        const entries = (s: RingState | undefined) => (s ? key({ ...s, seeds: [] }) : 'refused');
        assert.equal(entries(ab), entries(ba), `${ctx}: a ⊔ b ≠ b ⊔ a`);
        // Associative.
        const left = ab && impl.merge(ab, c);
        const bc = impl.merge(b, c);
        const right = bc && impl.merge(a, bc);
        if (left && right) assert.equal(entries(left), entries(right), `${ctx}: (a ⊔ b) ⊔ c ≠ a ⊔ (b ⊔ c)`);
        else assert.equal(left === undefined || right === undefined, true);
        checked++;
      }
    }
    assert.ok(checked >= 4000);
  });
}

test('Ring.merge as a non-owner always accepts legitimate rings, and agrees with the pure join', () => {
  let agreed = 0;
  for (let seed = 1; seed <= 100; seed++) {
    const pool = history(seed);
    const rnd = seeded(seed * 104729);
    for (let k = 0; k < 20; k++) {
      const a = sample(pool, rnd);
      const b = sample(pool, rnd);
      const merged = implementations[1]!.merge(a, b);
      assert.ok(merged, `seed ${seed}: refused`);
      assert.deepEqual(merged.entries, joinEntries(a.entries, b.entries, a), `seed ${seed}`);
      agreed++;
    }
  }
  assert.equal(agreed, 2000);
});

test('rings from legitimate histories without takeovers always merge into valid rings', () => {
  for (let seed = 1000; seed < 1100; seed++) {
    const rnd = seeded(seed);
    const size = 256;
    const peers = [1, 2, 3, 4].map((i) => 0x7a0000000000 + i);
    const rings = peers.map((p) => new Ring(START, START + size, p));
    for (const r of rings) r.claimForPeers(peers.slice(0, 2));
    for (let step = 0; step < 80; step++) {
      const r = rings[Math.floor(rnd() * rings.length)] as Ring;
      if (rnd() < 0.4) {
        const mine = r.ownedRanges();
        const range = mine[Math.floor(rnd() * mine.length)];
        if (!range || range.end - range.start < 2) continue;
        const to = peers[Math.floor(rnd() * peers.length)] as number;
        if (to !== r.peer) r.grantRangeToHost(range.start + Math.floor((range.end - range.start) / 2), range.end, to);
      } else {
        const other = rings[Math.floor(rnd() * rings.length)] as Ring;
        const res = r.merge(other.state(), () => false);
        assert.ok(res.ok, `seed ${seed}: ${JSON.stringify(res)}`);
      }
    }
    // Everyone merges everyone: all copies become equal.
    for (let round = 0; round < 2; round++) for (const r of rings) for (const o of rings) assert.ok(r.merge(o.state(), () => false).ok);
    const first = key(rings[0]!.state());
    for (const r of rings) assert.equal(key(r.state()), first, `seed ${seed}: copies differ`);
  }
});
