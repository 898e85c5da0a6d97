import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../../../src/ipam/allocator.js';
import { MemoryStore } from '../../../src/platform/sqlite-store.js';
import { silentLogger } from '../../../src/core/logger.js';
import { formatCidr, parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { isWeaveError } from '../../../src/core/errors.js';

function make(range = '10.32.0.0/12', def?: string, store = new MemoryStore()) {
  const a = new Allocator({ store, logger: silentLogger }, { range: parseCidr(range), defaultSubnet: parseCidr(def ?? range) });
  a.load();
  return { a, store };
}

test('allocates the lowest free host address and returns the same one again', async () => {
  const { a } = make();
  assert.equal(formatCidr(await a.allocate('c1')), '10.32.0.1/12');
  assert.equal(formatCidr(await a.allocate('c2')), '10.32.0.2/12');
  assert.equal(formatCidr(await a.allocate('c1')), '10.32.0.1/12');
  a.free('c1');
  assert.equal(formatCidr(await a.allocate('c3')), '10.32.0.1/12');
});

test('allocates inside a given subnet, excluding its network and broadcast addresses', async () => {
  const { a } = make('10.2.0.0/16', '10.2.2.0/24');
  const sub = a.parseSubnet('10.2.3.0/30');
  assert.equal(formatCidr(await a.allocate('x', sub)), '10.2.3.1/30');
  assert.equal(formatCidr(await a.allocate('y', sub)), '10.2.3.2/30');
  assert.equal(formatCidr(await a.allocate('z')), '10.2.2.1/24');
  assert.throws(() => a.parseSubnet('10.2.3.2/30'), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  assert.throws(() => a.parseSubnet('10.2.3.0/31'), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  assert.throws(() => a.parseSubnet('10.9.0.0/24'), /outside/);
});

test('a full subnet makes allocation wait until an address is freed, or until cancelled', async () => {
  const { a } = make('10.0.0.0/30');
  await a.allocate('a');
  await a.allocate('b');
  const waiting = a.allocate('c');
  assert.deepEqual(a.pendingAllocates(), ['c']);
  a.free('a');
  assert.equal(formatCidr(await waiting), '10.0.0.1/30');
  const ac = new AbortController();
  const cancelled = a.allocate('d', undefined, { signal: ac.signal });
  ac.abort();
  await assert.rejects(cancelled, (e) => isWeaveError(e, 'CANCELLED'));
  assert.deepEqual(a.pendingAllocates(), []);
});

test('claims: own address ok, someone else\'s is a conflict, outside the range is not tracked', async () => {
  const { a } = make();
  a.claim('c1', parseCidr('10.32.0.9/12'));
  a.claim('c1', parseCidr('10.32.0.9/12'));
  assert.throws(() => a.claim('c2', parseCidr('10.32.0.9/12')), (e) => isWeaveError(e, 'CONFLICT') && /owned by c1/.test((e as Error).message));
  a.claim('c3', parseCidr('192.168.0.5/24'));
  assert.deepEqual(a.lookup('c3'), []);
  assert.equal(a.activeCount(), 1);
});

test('free errors say what the original said', async () => {
  const { a } = make();
  assert.throws(() => a.free('nobody'), (e) => isWeaveError(e, 'NOT_FOUND') && (e as Error).message === 'Delete: no addresses for nobody');
  await a.allocate('c1');
  assert.throws(() => a.freeAddress('c1', parseIPv4('10.32.0.7')), /Free: address 10.32.0.7 not found for c1/);
  a.freeAddress('c1', parseIPv4('10.32.0.1'));
  assert.deepEqual(a.lookup('c1'), []);
});

test('allocations survive a reload from the store; another range discards them', async () => {
  const store = new MemoryStore();
  const first = make('10.32.0.0/12', undefined, store).a;
  await first.allocate('c1', undefined, { owner: 'cni:weave' });
  await first.allocate('c2');
  const again = make('10.32.0.0/12', undefined, store).a;
  assert.deepEqual(again.lookup('c1').map(formatCidr), ['10.32.0.1/12']);
  assert.equal(formatCidr(await again.allocate('c3')), '10.32.0.3/12');
  assert.equal(again.all().find((o) => o.ident === 'c1')?.owner, 'cni:weave');
  const other = make('10.40.0.0/16', undefined, store).a;
  assert.deepEqual(other.all(), []);
});

test('a failing store (full disk) fails the request and changes nothing', async () => {
  const { a, store } = make();
  await a.allocate('c1');
  store.failWrites = true;
  await assert.rejects(a.allocate('c2'), (e) => isWeaveError(e, 'STORE_FAILED'));
  assert.throws(() => a.free('c1'), (e) => isWeaveError(e, 'STORE_FAILED'));
  assert.equal(a.activeCount(), 1);
  assert.deepEqual(a.lookup('c1').map(formatCidr), ['10.32.0.1/12']);
  store.failWrites = false;
  assert.equal(formatCidr(await a.allocate('c2')), '10.32.0.2/12');
});

test('range validation', () => {
  assert.throws(() => make('10.0.0.0/31'), /too small/);
  assert.throws(() => make('10.32.0.0/12', '192.168.0.0/24'), /does not overlap/);
});
