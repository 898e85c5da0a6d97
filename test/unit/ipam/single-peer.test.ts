// The allocator behind the HTTP API with one peer (a host launched without peers, quorum 1):
// the contract the CNI plugin and `weave attach` rely on, as the single-host version had it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatCidr, parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { MemoryStore } from '../../../src/platform/sqlite-store.js';
import { IpamNet } from './ipam-net.js';

function make(range = '10.32.0.0/12', defaultSubnet?: string, store = new MemoryStore()) {
  const net = new IpamNet(1, { range });
  net.add(1, { store, ...(defaultSubnet ? { defaultSubnet: parseCidr(defaultSubnet) } : {}) });
  return { net, a: net.alloc(1), store };
}

test('allocates the lowest free host address and returns the same one again', async () => {
  const { net, a } = make();
  assert.equal(formatCidr(await net.value(a.allocate('c1'))), '10.32.0.1/12');
  assert.equal(formatCidr(await net.value(a.allocate('c2'))), '10.32.0.2/12');
  assert.equal(formatCidr(await net.value(a.allocate('c1'))), '10.32.0.1/12');
  assert.equal(a.activeCount(), 2);
});

test('allocates inside a given subnet, excluding its network and broadcast addresses', async () => {
  const { net, a } = make();
  const s = a.parseSubnet('10.33.0.0/30');
  assert.equal(formatCidr(await net.value(a.allocate('c1', s))), '10.33.0.1/30');
  assert.equal(formatCidr(await net.value(a.allocate('c2', s))), '10.33.0.2/30');
  assert.throws(() => a.parseSubnet('10.33.0.1/30'), /bits after network prefix are not all zero/);
});

test('a full subnet makes allocation wait until an address is freed, or until cancelled', async () => {
  const { net, a } = make('10.0.0.0/29');
  for (const c of ['a', 'b', 'c', 'd', 'e', 'f']) await net.value(a.allocate(c));
  const waiting = a.allocate('g');
  assert.equal(await net.settle(waiting, 20_000), undefined);
  assert.deepEqual(a.pendingAllocateIdents(), ['g']);
  a.free('a');
  assert.equal(formatCidr(await net.value(waiting)), '10.0.0.1/29');
  const ac = new AbortController();
  const cancelled = a.allocate('h', undefined, { signal: ac.signal });
  ac.abort();
  await assert.rejects(cancelled, (e) => isWeaveError(e, 'CANCELLED'));
  assert.deepEqual(a.pendingAllocateIdents(), []);
});

test("claims: own address ok, someone else's is refused, outside the range is not tracked", async () => {
  const { net, a } = make();
  await net.value(a.allocate('c0'));
  await net.value(a.claim('c1', parseCidr('10.32.0.9/12')));
  await net.value(a.claim('c1', parseCidr('10.32.0.9/12')));
  await assert.rejects(net.value(a.claim('c2', parseCidr('10.32.0.9/12'))), /10\.32\.0\.9.*c1/);
  await net.value(a.claim('c3', parseCidr('192.168.0.5/24')));
  assert.equal(a.activeCount(), 2);
});

test('free errors say what the original said', async () => {
  const { net, a } = make();
  assert.throws(() => a.free('nobody'), (e) => isWeaveError(e, 'NOT_FOUND') && (e as Error).message === 'Delete: no addresses for nobody');
  await net.value(a.allocate('c1'));
  assert.throws(() => a.freeAddress('c1', parseIPv4('10.32.0.7')), /Free: address 10.32.0.7 not found for c1/);
  a.freeAddress('c1', parseIPv4('10.32.0.1'));
  assert.deepEqual(a.lookup('c1'), []);
});

test('allocations survive a restart from the store; another range discards them', async () => {
  const store = new MemoryStore();
  const first = make('10.32.0.0/12', undefined, store);
  await first.net.value(first.a.allocate('c1', undefined, { owner: 'cni:weave' }));
  await first.net.value(first.a.allocate('c2'));
  first.a.stop();
  const again = make('10.32.0.0/12', undefined, store);
  assert.deepEqual(again.a.lookup('c1').map(formatCidr), ['10.32.0.1/12']);
  assert.equal(formatCidr(await again.net.value(again.a.allocate('c3'))), '10.32.0.3/12');
  assert.equal(again.a.all().find((o) => o.ident === 'c1')?.owner, 'cni:weave');
  again.a.stop();
  const other = make('10.40.0.0/16', undefined, store);
  assert.deepEqual(other.a.all(), []);
  assert.equal(formatCidr(await other.net.value(other.a.allocate('c4'))), '10.40.0.1/16');
});

test('a failing store (full disk) fails the request and changes nothing', async () => {
  const { net, a, store } = make();
  await net.value(a.allocate('c1'));
  store.failWrites = true;
  await assert.rejects(net.value(a.allocate('c2')), (e) => isWeaveError(e, 'STORE_FAILED'));
  assert.throws(() => a.free('c1'), (e) => isWeaveError(e, 'STORE_FAILED'));
  assert.equal(a.activeCount(), 1);
  assert.deepEqual(a.lookup('c1').map(formatCidr), ['10.32.0.1/12']);
  store.failWrites = false;
  assert.equal(formatCidr(await net.value(a.allocate('c2'))), '10.32.0.2/12');
});

test('addresses found in use at start (reclaim) are never handed out, even without a store', async () => {
  const net = new IpamNet(1);
  net.add(1, { reclaim: [{ ident: 'old', cidr: parseCidr('10.32.0.1/12') }, { ident: 'weave:expose', cidr: parseCidr('10.32.0.2/12') }] });
  const a = net.alloc(1);
  assert.equal(formatCidr(await net.value(a.allocate('new'))), '10.32.0.3/12');
  assert.deepEqual(a.lookup('old').map(formatCidr), ['10.32.0.1/12']);
});

test('range validation', () => {
  assert.throws(() => make('10.0.0.0/31'));
  assert.throws(() => make('10.32.0.0/12', '192.168.0.0/24'));
});

test('a restart: allocating for an ident found in use (reclaim) gives its address back, not a second one', async () => {
  // Regression: establishing the ring inside the allocation claimed the address back, and the
  // allocation went on from its lookup made before that, handing out another address.
  for (const ident of ['c1', 'weave:expose']) {
    const net = new IpamNet(1);
    net.add(1, { reclaim: [{ ident, cidr: parseCidr('10.32.0.1/12') }] });
    const a = net.alloc(1);
    assert.equal(formatCidr(await net.value(a.allocate(ident))), '10.32.0.1/12', ident);
    assert.deepEqual(a.lookup(ident).map(formatCidr), ['10.32.0.1/12'], ident);
    assert.equal(a.activeCount(), 1, ident);
    net.stop();
  }
});
