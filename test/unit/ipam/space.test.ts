// Space: lowest-free allocation, claims, frees, donations that keep at least half, and the
// ownership reconciliation with the ring; plus a random comparison with a plain Set model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Space } from '../../../src/ipam/space.js';
import { biggestCidrBlock, cidrHostRange, cidrRange, formatRangeAsCidr, rangeSize } from '../../../src/ipam/address-range.js';
import { parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { seeded } from '../../helpers/prng.js';

const ip = parseIPv4;
const r = (a: string, b: string) => ({ start: ip(a), end: ip(b) });

test('allocates the lowest free address of the range asked for, and frees', () => {
  const s = new Space();
  s.addFree(r('10.0.0.0', '10.0.1.0'));
  assert.equal(s.allocate(r('10.0.0.1', '10.0.0.255')), ip('10.0.0.1'));
  assert.equal(s.allocate(r('10.0.0.1', '10.0.0.255')), ip('10.0.0.2'));
  assert.equal(s.allocate(r('10.0.0.128', '10.0.0.255')), ip('10.0.0.128'));
  assert.equal(s.numAllocated(), 3);
  assert.equal(s.numFree(), 253);
  s.release(ip('10.0.0.1'));
  assert.equal(s.allocate(r('10.0.0.0', '10.0.1.0')), ip('10.0.0.0'));
  assert.equal(s.allocate(r('10.0.0.0', '10.0.1.0')), ip('10.0.0.1'));
  assert.throws(() => s.release(ip('10.0.0.200')), /is not ours/);
  assert.equal(s.allocate(r('10.0.2.0', '10.0.3.0')), undefined);
  assert.equal(s.allocate(r('10.0.0.5', '10.0.0.5')), undefined);
});

test('claims only free addresses; hasAllocationsIn sees allocated ones', () => {
  const s = new Space();
  s.addFree(r('10.0.0.0', '10.0.0.16'));
  assert.equal(s.claim(ip('10.0.0.7')), true);
  assert.equal(s.claim(ip('10.0.0.7')), false);
  assert.equal(s.claim(ip('10.0.0.16')), false);
  assert.equal(s.isAllocated(ip('10.0.0.7')), true);
  assert.equal(s.hasAllocationsIn([r('10.0.0.0', '10.0.0.7')]), false);
  assert.equal(s.hasAllocationsIn([r('10.0.0.0', '10.0.0.8')]), true);
  assert.equal(s.hasAllocationsIn([r('10.0.0.7', '10.0.0.8')]), true);
  assert.equal(s.hasAllocationsIn([r('10.0.0.8', '10.0.0.16')]), false);
  assert.equal(s.allocate(r('10.0.0.6', '10.0.0.16')), ip('10.0.0.6'));
  assert.equal(s.allocate(r('10.0.0.6', '10.0.0.16')), ip('10.0.0.8'));
});

test('donates an aligned block of at most half the free space in the range', () => {
  const s = new Space();
  s.addFree(r('10.0.0.0', '10.0.1.0'));
  // 256 free: the biggest block is all of it, more than half: the upper half goes.
  assert.deepEqual(s.donate(r('10.0.0.0', '10.0.1.0')), r('10.0.0.128', '10.0.1.0'));
  assert.equal(s.numFree(), 128);
  s.claim(ip('10.0.0.0'));
  // Free now 10.0.0.1-127: biggest aligned block is .64/26 (64 <= 127/2? no: 64 > 63) -> upper half .96/27.
  assert.deepEqual(s.donate(r('10.0.0.0', '10.0.1.0')), r('10.0.0.96', '10.0.0.128'));
  assert.equal(s.donate(r('10.0.2.0', '10.0.3.0')), undefined);
  // A single address asked for (a claim from another peer) is given if free.
  assert.deepEqual(s.donate(r('10.0.0.5', '10.0.0.6')), r('10.0.0.5', '10.0.0.6'));
  assert.equal(s.donate(r('10.0.0.5', '10.0.0.6')), undefined);
  assert.equal(s.donate(r('10.0.0.0', '10.0.0.1')), undefined);
});

test('reconcile makes owned space equal the ring ranges, keeping allocations', () => {
  const s = new Space();
  s.addFree(r('10.0.0.0', '10.0.0.64'));
  s.claim(ip('10.0.0.3'));
  const orphans = s.reconcile([r('10.0.0.0', '10.0.0.32'), r('10.0.0.128', '10.0.0.160')]);
  assert.deepEqual(orphans, []);
  assert.deepEqual(s.ownedRanges(), [r('10.0.0.0', '10.0.0.32'), r('10.0.0.128', '10.0.0.160')]);
  assert.equal(s.numFree(), 63);
  assert.deepEqual(s.reconcile([r('10.0.0.128', '10.0.0.160')]), [r('10.0.0.3', '10.0.0.4')]);
  s.clear();
  assert.deepEqual(s.ownedRanges(), []);
  assert.equal(s.toString(), 'No address ranges owned');
});

test('address ranges: host range, biggest CIDR block, CIDR text', () => {
  assert.deepEqual(cidrHostRange(parseCidr('10.32.0.0/12')), r('10.32.0.1', '10.47.255.255'));
  assert.deepEqual(cidrRange(parseCidr('10.32.0.5/30')), r('10.32.0.4', '10.32.0.8'));
  assert.deepEqual(biggestCidrBlock(r('10.0.0.3', '10.0.0.20')), r('10.0.0.8', '10.0.0.16'));
  assert.deepEqual(biggestCidrBlock(r('10.0.0.0', '10.0.0.3')), r('10.0.0.0', '10.0.0.2'));
  assert.deepEqual(biggestCidrBlock(r('10.0.0.1', '10.0.0.2')), r('10.0.0.1', '10.0.0.2'));
  assert.equal(formatRangeAsCidr(r('10.32.0.0', '10.48.0.0')), '10.32.0.0/12');
  assert.equal(formatRangeAsCidr(r('10.32.0.0', '10.32.0.3')), '10.32.0.0-10.32.0.2');
  for (let i = 0; i < 500; i++) {
    const rnd = seeded(i);
    const start = Math.floor(rnd() * 1000);
    const end = start + 1 + Math.floor(rnd() * 1000);
    const b = biggestCidrBlock({ start, end });
    const size = rangeSize(b);
    assert.ok(b.start >= start && b.end <= end && size > 0 && b.start % size === 0, `block of ${start}-${end}`);
    // No aligned block twice as big fits.
    const twice = Math.ceil(start / (2 * size)) * 2 * size;
    assert.ok(twice + 2 * size > end, `a bigger block fits in ${start}-${end}`);
  }
});

test('random operations agree with a plain set model', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = seeded(seed);
    const s = new Space();
    const owned = new Set<number>();
    const used = new Set<number>();
    const base = 1000;
    const n = () => base + Math.floor(rnd() * 200);
    for (let step = 0; step < 300; step++) {
      const what = rnd();
      if (what < 0.15) {
        const a = n();
        const b = a + 1 + Math.floor(rnd() * 30);
        let clash = false;
        for (let x = a; x < b; x++) if (used.has(x)) clash = true;
        if (clash) continue; // the allocator never adds free space over allocated addresses
        s.addFree({ start: a, end: b });
        for (let x = a; x < b; x++) if (!used.has(x)) owned.add(x);
      } else if (what < 0.5) {
        const a = n();
        const b = a + Math.floor(rnd() * 50);
        const got = s.allocate({ start: a, end: b });
        let want: number | undefined;
        for (let x = a; x < b; x++) if (owned.has(x) && !used.has(x)) { want = x; break; }
        assert.equal(got, want, `seed ${seed} step ${step}`);
        if (want !== undefined) used.add(want);
      } else if (what < 0.7) {
        const a = n();
        assert.equal(s.claim(a), owned.has(a) && !used.has(a));
        if (owned.has(a)) used.add(a);
      } else if (what < 0.85) {
        const a = n();
        if (used.has(a)) {
          s.release(a);
          used.delete(a);
        }
      } else {
        const a = n();
        const b = a + 1 + Math.floor(rnd() * 60);
        const gift = s.donate({ start: a, end: b });
        let freeIn = 0;
        for (let x = a; x < b; x++) if (owned.has(x) && !used.has(x)) freeIn++;
        if (!gift) assert.equal(freeIn, 0);
        else {
          const size = rangeSize(gift);
          assert.ok((size & (size - 1)) === 0 && gift.start % size === 0, `seed ${seed}: gift not CIDR-aligned`);
          assert.ok(size <= freeIn / 2 || size === 1, `seed ${seed}: gave ${size} of ${freeIn}`);
          for (let x = gift.start; x < gift.end; x++) {
            assert.ok(owned.has(x) && !used.has(x), 'donated a used or foreign address');
            owned.delete(x);
          }
        }
      }
      let free = 0;
      for (const x of owned) if (!used.has(x)) free++;
      assert.equal(s.numFree(), free);
      assert.equal(s.numAllocated(), [...used].filter((x) => owned.has(x)).length);
    }
  }
});

test('held space: not allocated nor donated in bulk, but claimable, and released later', () => {
  const s = new Space();
  s.addFree(r('10.0.0.0', '10.0.0.16'));
  s.claim(ip('10.0.0.1'));
  s.hold(r('10.0.0.0', '10.0.0.8'));
  assert.equal(s.numHeld(), 7);
  assert.equal(s.numFree(), 8);
  assert.equal(s.allocate(r('10.0.0.0', '10.0.0.8')), undefined);
  assert.equal(s.allocate(r('10.0.0.0', '10.0.0.16')), ip('10.0.0.8'));
  assert.deepEqual(s.donate(r('10.0.0.0', '10.0.0.8')), undefined);
  assert.deepEqual(s.donate(r('10.0.0.5', '10.0.0.6')), r('10.0.0.5', '10.0.0.6')); // a claim from another peer
  assert.equal(s.claim(ip('10.0.0.2')), true);
  assert.equal(s.isHeld(ip('10.0.0.3')), true);
  assert.deepEqual(s.ownedRanges(), [r('10.0.0.0', '10.0.0.5'), r('10.0.0.6', '10.0.0.16')]);
  s.releaseHeld(r('10.0.0.0', '10.0.0.4'));
  assert.equal(s.allocate(r('10.0.0.0', '10.0.0.8')), ip('10.0.0.0'));
  assert.equal(s.allocate(r('10.0.0.0', '10.0.0.8')), ip('10.0.0.3'));
  assert.equal(s.allocate(r('10.0.0.0', '10.0.0.8')), undefined);
  s.reconcile([r('10.0.0.8', '10.0.0.16')]);
  assert.equal(s.numHeld(), 0);
});
