// The verbs end to end through runPlugin, with a fake kernel, an in-process router and
// shell-script IPAM delegates: what is allocated, attached, released and printed.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { WeaveError } from '../../../src/core/errors.js';
import { formatIPv4, parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { SUPPORTED_VERSIONS } from '../../../src/cni/versions.js';
import { attachAlias } from '../../../src/platform/container-link.js';
import { bridgeLink, cniEnv, CONTAINER_ID, deadAddress, fakeKernel, FakeRouter, NETNS, run, type FakeKernel } from './helpers.js';

let router: FakeRouter;
let kernel: FakeKernel;
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weave-cni-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

beforeEach(async () => {
  await router?.stop();
  router = await new FakeRouter().start();
  kernel = fakeKernel();
});
after(async () => router?.stop());

function conf(extra: Record<string, unknown> = {}) {
  return { cniVersion: '1.0.0', name: 'weave', type: 'weave-net', weaveHttpAddr: router.addr, routerWaitMs: 0, ...extra };
}

const HOST_VETH = `vethwepl${CONTAINER_ID.slice(0, 7)}`;

test('ADD: allocates with owner, attaches, prints the 1.0.0 result', async () => {
  const r = await run('net', cniEnv('ADD'), conf(), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(r.doc, {
    cniVersion: '1.0.0',
    interfaces: [
      { name: HOST_VETH, mac: '0a:00:00:00:00:01' },
      { name: 'eth0', mac: '0a:00:00:00:00:02', sandbox: NETNS },
    ],
    ips: [{ address: '10.32.0.2/12', gateway: '10.32.0.1', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }],
    dns: {},
  });
  assert.deepEqual(router.requests, [{ method: 'POST', path: `/ip/${CONTAINER_ID}`, query: { owner: 'cni:weave' } }]);
  assert.equal(kernel.attached.length, 1);
  const spec = kernel.attached[0]!;
  assert.equal(spec.netns, NETNS);
  assert.equal(spec.containerId, CONTAINER_ID);
  assert.equal(spec.ifName, 'eth0');
  assert.equal(spec.bridge, 'weave');
  assert.equal(spec.mtu, 0);
  assert.equal(spec.hairpin, true);
  assert.deepEqual(spec.addresses, [parseCidr('10.32.0.2/12')]);
  assert.deepEqual(spec.routes, [{ dst: { ip: 0, prefix: 0 } }]);
  assert.equal(spec.gateway, parseIPv4('10.32.0.1'));
  assert.equal(spec.bridgeLink, kernel.bridge);
});

test('ADD: every config version gets its own result shape', async () => {
  for (const v of SUPPORTED_VERSIONS) {
    kernel = fakeKernel();
    const r = await run('net', cniEnv('ADD', { CNI_CONTAINERID: `c${v.replaceAll('.', '')}` }), conf({ cniVersion: v, dns: { nameservers: ['10.32.0.1'] } }), { kernel });
    assert.equal(r.code, 0, v);
    assert.equal(r.doc?.cniVersion, v);
    assert.deepEqual(r.doc?.dns, { nameservers: ['10.32.0.1'] });
    if (v < '0.3.0') {
      assert.deepEqual(Object.keys(r.doc!).sort(), ['cniVersion', 'dns', 'ip4'], v);
      const ip4 = r.doc?.ip4 as { ip: string; gateway: string; routes: unknown[] };
      assert.match(ip4.ip, /^10\.32\.0\.\d+\/12$/);
      assert.equal(ip4.gateway, '10.32.0.1');
      assert.deepEqual(ip4.routes, [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }]);
    } else {
      const ips = r.doc?.ips as { version?: string; interface: number }[];
      const itfs = r.doc?.interfaces as { name: string; sandbox?: string; mtu?: number }[];
      assert.equal(ips[0]!.version, v < '1.0.0' ? '4' : undefined, v);
      assert.equal(itfs[ips[0]!.interface]!.name, 'eth0');
      assert.equal(itfs[ips[0]!.interface]!.sandbox, NETNS);
      assert.equal(itfs[1]!.mtu, v === '1.1.0' ? 1376 : undefined, v);
    }
  }
});

test('ADD: ipam.subnet, mtu and hairpinMode; the gateway is the bridge address in that subnet', async () => {
  kernel.bridge = bridgeLink(['10.32.0.1/12', '10.40.0.1/16']);
  const r = await run('net', cniEnv('ADD'), conf({ mtu: 1400, hairpinMode: false, ipam: { subnet: '10.40.0.0/16' } }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.equal(router.requests[0]!.path, `/ip/${CONTAINER_ID}/10.40.0.0/16`);
  assert.equal(router.requests[0]!.query.owner, 'cni:weave');
  const spec = kernel.attached[0]!;
  assert.equal(spec.mtu, 1400);
  assert.equal(spec.hairpin, false);
  assert.equal(formatIPv4(spec.gateway!), '10.40.0.1');
});

test('ADD: ipam.gateway wins; the bridge is not consulted for it', async () => {
  kernel.bridge = bridgeLink([]);
  const r = await run('net', cniEnv('ADD'), conf({ ipam: { gateway: '10.32.0.254' } }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.equal(formatIPv4(kernel.attached[0]!.gateway!), '10.32.0.254');
  assert.equal(router.exposed.length, 0);
  assert.deepEqual((r.doc?.ips as object[])[0], { address: '10.32.0.2/12', gateway: '10.32.0.254', interface: 1 });
});

test('ADD: routes [] installs none; own-subnet routes are left to the kernel; explicit gw needs no gateway', async () => {
  let r = await run('net', cniEnv('ADD'), conf({ ipam: { routes: [] } }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(kernel.attached[0]!.routes, []);
  assert.equal('routes' in r.doc!, false);

  kernel = fakeKernel();
  r = await run('net', cniEnv('ADD', { CNI_CONTAINERID: 'c2' }), conf({ ipam: { routes: [{ dst: '10.32.0.0/12' }, { dst: '192.168.0.0/16' }] } }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(kernel.attached[0]!.routes, [{ dst: parseCidr('192.168.0.0/16') }]);
  assert.deepEqual(r.doc?.routes, [{ dst: '10.32.0.0/12' }, { dst: '192.168.0.0/16', gw: '10.32.0.1' }]);

  kernel = fakeKernel({ bridge: bridgeLink([]) });
  r = await run('net', cniEnv('ADD', { CNI_CONTAINERID: 'c3' }), conf({ ipam: { routes: [{ dst: '10.50.0.0/16', gw: '10.32.0.254' }] } }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.equal(kernel.attached[0]!.gateway, undefined);
  assert.deepEqual(kernel.attached[0]!.routes, [{ dst: parseCidr('10.50.0.0/16'), gw: parseIPv4('10.32.0.254') }]);
  assert.equal(router.exposed.length, 0);
});

test('ADD: a bridge without an address gets weave:expose, once per run', async () => {
  kernel.bridge = bridgeLink([]);
  const r = await run('net', cniEnv('ADD'), conf(), { kernel });
  assert.equal(r.code, 0, r.stdout);
  const expose = router.requests.find((q) => q.path === '/ip/weave:expose');
  assert.ok(expose, JSON.stringify(router.requests));
  assert.deepEqual(expose.query, {}, 'the bridge address is not owned by the CNI network (GC must not free it)');
  const exposedCidr = router.owned.get('weave:expose')!.addrs[0]!;
  assert.deepEqual(router.exposed, [exposedCidr]);
  assert.equal(formatIPv4(kernel.attached[0]!.gateway!), exposedCidr.split('/')[0]);
  // A second ADD converges on the same address (the router's allocation is per ident).
  const r2 = await run('net', cniEnv('ADD', { CNI_CONTAINERID: 'second' }), conf(), { kernel });
  assert.equal(r2.code, 0);
  assert.deepEqual(router.exposed, [exposedCidr, exposedCidr]);
});

test('ADD: a missing bridge is code 11 and the address is released', async () => {
  kernel.bridge = undefined;
  const r = await run('net', cniEnv('ADD'), conf(), { kernel });
  assert.equal(r.code, 1);
  assert.equal(r.doc?.code, 11);
  assert.match(String(r.doc?.msg), /bridge "weave" does not exist/);
  assert.equal(router.owned.has(CONTAINER_ID), false);
  assert.deepEqual(router.requests.map((q) => q.method), ['POST', 'DELETE']);
});

test('ADD: a bridge that appears while the allocation waits is found', async () => {
  const bridge = kernel.bridge;
  kernel.bridge = undefined;
  const getLink = kernel.getLink.bind(kernel);
  let calls = 0;
  kernel.getLink = async (name) => {
    calls++;
    const r = await getLink(name);
    kernel.bridge = bridge; // the router has started by the time it is asked again
    return r;
  };
  const r = await run('net', cniEnv('ADD'), conf(), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.equal(calls, 2);
});

test('ADD: an attach failure releases the address; an existing interface keeps it', async () => {
  kernel.attachError = new WeaveError('KERNEL_FAILED', 'ip link add: Operation not permitted');
  let r = await run('net', cniEnv('ADD'), conf(), { kernel });
  assert.equal(r.doc?.code, 100);
  assert.equal(r.doc?.msg, 'ip link add: Operation not permitted');
  assert.equal(router.owned.has(CONTAINER_ID), false);

  kernel.attachError = new WeaveError('ALREADY_EXISTS', `interface ${HOST_VETH} or eth0 already exists`);
  r = await run('net', cniEnv('ADD'), conf(), { kernel });
  assert.equal(r.doc?.code, 100);
  assert.match(String(r.doc?.msg), /already exists/);
  assert.equal(router.owned.has(CONTAINER_ID), true);
});

test('ADD repeated for an attached container: whatever makes it fail, the live attachment keeps its address', async () => {
  const first = await run('net', cniEnv('ADD'), conf(), { kernel });
  assert.equal(first.code, 0, first.stdout);
  // The record the real kernel ops put on the host veth (attachAlias).
  kernel.hostLinks.get(HOST_VETH)!.alias = attachAlias(CONTAINER_ID, [parseCidr('10.32.0.2/12')]);
  kernel.attachError = new WeaveError('KERNEL_FAILED', 'ip link add: Invalid argument');
  const again = await run('net', cniEnv('ADD'), conf({ mtu: 60 }), { kernel });
  assert.equal(again.doc?.code, 100);
  assert.equal(router.owned.has(CONTAINER_ID), true, 'the address of the live attachment was released');
});

test('ADD: a prevResult is kept and our interface indexes follow it', async () => {
  const prevResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'lo', sandbox: NETNS }],
    ips: [{ address: '127.0.0.1/8', interface: 0 }],
    dns: { nameservers: ['10.0.0.10'], search: ['svc.example'] },
  };
  const r = await run('net', cniEnv('ADD'), conf({ prevResult }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  const itfs = r.doc?.interfaces as { name: string }[];
  assert.deepEqual(itfs.map((i) => i.name), ['lo', HOST_VETH, 'eth0']);
  assert.deepEqual(r.doc?.ips, [
    { address: '127.0.0.1/8', interface: 0 },
    { address: '10.32.0.2/12', gateway: '10.32.0.1', interface: 2 },
  ]);
  // We set no DNS: the previous plugin's passes through; our own config's wins over it.
  assert.deepEqual(r.doc?.dns, prevResult.dns);
  const ours = await run('net', cniEnv('ADD'), conf({ prevResult, dns: { nameservers: ['10.32.0.1'] } }), { kernel });
  assert.deepEqual(ours.doc?.dns, { nameservers: ['10.32.0.1'] });
});

test('weave-ipam ADD: the IPAM shape with ipam.gateway and ipam.routes', async () => {
  const r = await run(
    'ipam',
    cniEnv('ADD'),
    { cniVersion: '0.4.0', name: 'weave', type: 'bridge', isGateway: true, weaveHttpAddr: router.addr, ipam: { type: 'weave-ipam', gateway: '10.32.0.1', routes: [{ dst: '0.0.0.0/0' }] } },
    { kernel },
  );
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(r.doc, {
    cniVersion: '0.4.0',
    ips: [{ version: '4', address: '10.32.0.2/12', gateway: '10.32.0.1' }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: {},
  });
  assert.equal(kernel.attached.length, 0);
  const legacy = await run('ipam', cniEnv('ADD', { CNI_CONTAINERID: 'mesos1' }), { cniVersion: '0.2.0', name: 'weave', weaveHttpAddr: router.addr, ipam: { type: 'weave-ipam' } });
  assert.deepEqual(legacy.doc, { cniVersion: '0.2.0', ip4: { ip: '10.32.0.3/12' }, dns: {} });
});

test('two attachments of one container (eth0, eth1) hold an address each; DEL and GC of one leave the other', async () => {
  const a = await run('net', cniEnv('ADD'), conf(), { kernel });
  const b = await run('net', cniEnv('ADD', { CNI_IFNAME: 'eth1' }), conf(), { kernel });
  const addr = (r: typeof a) => (r.doc?.ips as { address: string }[])[0]!.address;
  assert.notEqual(addr(a), addr(b));
  assert.deepEqual(router.owned.get(CONTAINER_ID)?.addrs, [addr(a)]);
  assert.deepEqual(router.owned.get(`${CONTAINER_ID}@eth1`)?.addrs, [addr(b)]);
  // The link records the attachment's own ident.
  assert.equal(kernel.attached[1]?.ident, `${CONTAINER_ID}@eth1`);
  assert.equal((await run('net', cniEnv('DEL', { CNI_IFNAME: 'eth1' }), conf(), { kernel })).code, 0);
  assert.equal(router.owned.has(`${CONTAINER_ID}@eth1`), false);
  assert.deepEqual(router.owned.get(CONTAINER_ID)?.addrs, [addr(a)]);
  // GC keeps an attachment listed with its interface, and removes the other's veth by its name.
  await run('net', cniEnv('ADD', { CNI_IFNAME: 'eth1' }), conf(), { kernel });
  const gc = await run('net', { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: CONTAINER_ID, ifname: 'eth0' }] }), { kernel });
  assert.equal(gc.code, 0, gc.stdout);
  assert.deepEqual([...router.owned.keys()].filter((k) => k.startsWith(CONTAINER_ID)), [CONTAINER_ID]);
  assert.deepEqual(kernel.detached.at(-1), { containerId: CONTAINER_ID, ifName: 'eth1', ident: `${CONTAINER_ID}@eth1` });
});

test('DEL: removes the veth, releases, and repeats happily (also with an empty CNI_NETNS)', async () => {
  await run('net', cniEnv('ADD'), conf(), { kernel });
  for (const netns of [NETNS, '', '']) {
    const r = await run('net', cniEnv('DEL', { CNI_NETNS: netns }), conf(), { kernel });
    assert.equal(r.code, 0, r.stdout);
    assert.equal(r.stdout, '');
  }
  assert.equal(router.owned.has(CONTAINER_ID), false);
  assert.deepEqual(kernel.detached, [
    { containerId: CONTAINER_ID, ifName: 'eth0', ident: CONTAINER_ID, netns: NETNS },
    { containerId: CONTAINER_ID, ifName: 'eth0', ident: CONTAINER_ID },
    { containerId: CONTAINER_ID, ifName: 'eth0', ident: CONTAINER_ID },
  ]);
  assert.deepEqual(
    router.requests.filter((q) => q.method === 'DELETE').map((q) => q.path),
    [`/ip/${CONTAINER_ID}`, `/ip/${CONTAINER_ID}`, `/ip/${CONTAINER_ID}`],
  );
});

test('DEL: the original router\'s 400 "no addresses" is success; other router errors are not', async () => {
  router.failWith = { status: 400, body: `Delete: no addresses for ${CONTAINER_ID}` };
  let r = await run('net', cniEnv('DEL'), conf(), { kernel });
  assert.equal(r.code, 0, r.stdout);
  router.failWith = { status: 500, body: 'disk full', code: 'STORE_FAILED' };
  r = await run('net', cniEnv('DEL'), conf(), { kernel });
  assert.equal(r.code, 1);
  assert.equal(r.doc?.code, 100);
  assert.match(String(r.doc?.msg), /disk full/);
});

test('DEL: a veth that will not go is logged, and the address is still released', async () => {
  await run('net', cniEnv('ADD'), conf(), { kernel });
  kernel.detach = () => Promise.reject(new WeaveError('KERNEL_FAILED', 'ip link del: Operation not permitted'));
  const r = await run('net', cniEnv('DEL'), conf(), { kernel });
  assert.equal(r.code, 0);
  assert.match(r.stderr, /could not remove eth0: ip link del: Operation not permitted/);
  assert.equal(router.owned.has(CONTAINER_ID), false);
});

test('weave-ipam DEL releases and touches no interface', async () => {
  await run('ipam', cniEnv('ADD'), conf({ ipam: { type: 'weave-ipam' } }));
  const r = await run('ipam', cniEnv('DEL'), conf({ ipam: { type: 'weave-ipam' } }), { kernel });
  assert.equal(r.code, 0);
  assert.equal(router.owned.size, 0);
  assert.equal(kernel.detached.length, 0);
});

async function addThenPrev(version = '1.0.0'): Promise<Record<string, unknown>> {
  const r = await run('net', cniEnv('ADD'), conf({ cniVersion: version }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  return r.doc!;
}

test('CHECK: passes right after ADD, in every version that allows it', async () => {
  for (const v of ['0.4.0', '1.0.0', '1.1.0']) {
    kernel = fakeKernel();
    router.owned.clear();
    const prevResult = await addThenPrev(v);
    const r = await run('net', cniEnv('CHECK'), conf({ cniVersion: v, prevResult }), { kernel });
    assert.equal(r.code, 0, `${v}: ${r.stdout}`);
    assert.equal(r.stdout, '');
  }
});

test('CHECK: refused below 0.4.0, needs prevResult', async () => {
  for (const v of ['0.1.0', '0.2.0', '0.3.0', '0.3.1']) {
    const r = await run('net', cniEnv('CHECK'), conf({ cniVersion: v }), { kernel });
    assert.deepEqual(r.doc, { cniVersion: v, code: 1, msg: 'config version does not allow CHECK' });
  }
  const r = await run('net', cniEnv('CHECK'), conf(), { kernel });
  assert.equal(r.doc?.code, 7);
  assert.match(String(r.doc?.msg), /prevResult/);
});

test('CHECK: each difference from prevResult is a clear error', async () => {
  const prevResult = await addThenPrev();
  const check = () => run('net', cniEnv('CHECK'), conf({ prevResult }), { kernel });

  const link = kernel.containerLinks.get(`${NETNS}/eth0`)!;
  kernel.containerLinks.set(`${NETNS}/eth0`, { ...link, addrs: [] });
  let r = await check();
  assert.equal(r.doc?.code, 100);
  assert.match(String(r.doc?.msg), /lacks address 10\.32\.0\.2\/12/);

  kernel.containerLinks.set(`${NETNS}/eth0`, { ...link, address: '0a:00:00:00:00:99' });
  r = await check();
  assert.match(String(r.doc?.msg), /has MAC 0a:00:00:00:00:99/);

  kernel.containerLinks.delete(`${NETNS}/eth0`);
  r = await check();
  assert.match(String(r.doc?.msg), /interface "eth0" does not exist in/);
  kernel.containerLinks.set(`${NETNS}/eth0`, link);

  const host = kernel.hostLinks.get(HOST_VETH)!;
  kernel.hostLinks.set(HOST_VETH, { ...host, master: 'docker0' });
  r = await check();
  assert.match(String(r.doc?.msg), /is not attached to bridge "weave" \(master: docker0\)/);
  kernel.hostLinks.set(HOST_VETH, host);

  router.owned.delete(CONTAINER_ID);
  r = await check();
  assert.equal(r.doc?.code, 100);
  assert.match(String(r.doc?.msg), /holds no address for container/);

  r = await run('net', cniEnv('CHECK', { CNI_NETNS: '/gone' }), conf({ prevResult }), { kernel });
  assert.equal(r.doc?.code, 3);

  r = await run('net', cniEnv('CHECK', { CNI_IFNAME: 'eth1' }), conf({ prevResult }), { kernel });
  assert.match(String(r.doc?.msg), /prevResult lists no interface "eth1"/);
});

test('weave-ipam CHECK asks the router', async () => {
  const add = await run('ipam', cniEnv('ADD'), conf({ cniVersion: '0.4.0', ipam: { type: 'weave-ipam' } }));
  const prevResult = add.doc;
  let r = await run('ipam', cniEnv('CHECK'), conf({ cniVersion: '0.4.0', prevResult, ipam: { type: 'weave-ipam' } }));
  assert.equal(r.code, 0, r.stdout);
  router.owned.set(CONTAINER_ID, { addrs: ['10.32.0.77/12'] });
  r = await run('ipam', cniEnv('CHECK'), conf({ cniVersion: '0.4.0', prevResult, ipam: { type: 'weave-ipam' } }));
  assert.equal(r.doc?.code, 100);
  assert.match(String(r.doc?.msg), /does not hold 10\.32\.0\.2\/12/);
});

test('STATUS: up when /status answers 200 or 503 and the bridge exists; else 50', async () => {
  const env = { CNI_COMMAND: 'STATUS', CNI_CONTAINERID: '', CNI_NETNS: '', CNI_IFNAME: '' };
  let r = await run('net', env, conf({ cniVersion: '1.1.0' }), { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.equal(r.stdout, '');
  router.statusCode = 503;
  r = await run('net', env, conf({ cniVersion: '1.1.0' }), { kernel });
  assert.equal(r.code, 0);
  router.statusCode = 500;
  r = await run('net', env, conf({ cniVersion: '1.1.0' }), { kernel });
  assert.equal(r.doc?.code, 50);
  router.statusCode = 200;

  kernel.bridge = undefined;
  r = await run('net', env, conf({ cniVersion: '1.1.0' }), { kernel });
  assert.equal(r.doc?.code, 50);
  assert.match(String(r.doc?.msg), /bridge "weave" does not exist/);
  r = await run('ipam', env, conf({ cniVersion: '1.1.0' }), { kernel });
  assert.equal(r.code, 0, 'the IPAM plugin does not need the bridge');

  const dead = await deadAddress();
  r = await run('net', env, conf({ cniVersion: '1.1.0', weaveHttpAddr: dead }), { kernel: fakeKernel() });
  assert.equal(r.code, 1);
  assert.equal(r.doc?.code, 50);
  assert.equal(r.doc?.msg, `weave router at ${dead} is not available`);
  assert.match(String(r.doc?.details), /ECONNREFUSED/);
});

test('GC: releases only this network\'s idents that are no longer valid, and their veths', async () => {
  router.owned.set('keep1', { addrs: ['10.32.0.10/12'], owner: 'cni:weave' });
  router.owned.set('stale1', { addrs: ['10.32.0.11/12'], owner: 'cni:weave' });
  router.owned.set('other-net', { addrs: ['10.32.0.12/12'], owner: 'cni:othernet' });
  router.owned.set('weave-attach', { addrs: ['10.32.0.13/12'] });
  router.owned.set('weave:expose', { addrs: ['10.32.0.1/12'] });
  const gcConf = conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'keep1', ifname: 'eth0' }] });
  const env = { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' };
  const r = await run('net', env, gcConf, { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.equal(r.stdout, '');
  assert.deepEqual([...router.owned.keys()].sort(), ['keep1', 'other-net', 'weave-attach', 'weave:expose']);
  assert.deepEqual(kernel.detached, [{ containerId: 'stale1', ifName: 'eth0', ident: 'stale1' }]);

  // The spec-1.1.0 key works as well; no list at all is refused.
  router.owned.set('stale2', { addrs: ['10.32.0.14/12'], owner: 'cni:weave' });
  const r2 = await run('ipam', env, conf({ cniVersion: '1.1.0', 'cni.dev/attachments': [{ containerID: 'keep1', ifname: 'eth0' }] }), { kernel });
  assert.equal(r2.code, 0);
  assert.equal(router.owned.has('stale2'), false);
  const r3 = await run('net', env, conf({ cniVersion: '1.1.0' }), { kernel });
  assert.equal(r3.doc?.code, 7);
  // A runtime with no containers left: libcni marshals its nil list as null.
  router.owned.set('stale3', { addrs: ['10.32.0.15/12'], owner: 'cni:weave' });
  const r4 = await run('net', env, conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': null }), { kernel });
  assert.equal(r4.code, 0, r4.stdout);
  assert.deepEqual([...router.owned.keys()].sort(), ['other-net', 'weave-attach', 'weave:expose']);
});

test('GC: continues past errors and reports them at the end', async () => {
  router.owned.set('stale1', { addrs: ['10.32.0.11/12'], owner: 'cni:weave' });
  router.owned.set('stale2', { addrs: ['10.32.0.12/12'], owner: 'cni:weave' });
  kernel.detach = async (o) => {
    if (o.containerId === 'stale1') throw new WeaveError('KERNEL_FAILED', 'ip link del: busy');
    return true;
  };
  const r = await run('net', { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] }), { kernel });
  assert.equal(r.code, 1);
  assert.equal(r.doc?.code, 100);
  assert.match(String(r.doc?.msg), /GC: 1 error\(s\): ip link del: busy/);
  assert.equal(router.owned.size, 0, 'both were released');
});

// --- delegated IPAM ---

function writeDelegate(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

test('delegated ADD: same env and stdin, only CNI_COMMAND differs; its result is used', async () => {
  const log = join(dir, 'fake-ipam.log');
  writeDelegate(
    'fake-ipam',
    `{ echo "cmd=$CNI_COMMAND id=$CNI_CONTAINERID ifname=$CNI_IFNAME netns=$CNI_NETNS args=$CNI_ARGS extra=$EXTRA_VAR"; cat; echo; } >> ${log}
echo "fake-ipam diagnostics" >&2
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.199.0.5/24","gateway":"10.199.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.199.0.1"]}}' ;;
esac
exit 0`,
  );
  const c = conf({ ipam: { type: 'fake-ipam', ranges: [[{ subnet: '10.199.0.0/24' }]] } });
  const stdin = JSON.stringify(c);
  const r = await run('net', cniEnv('ADD', { CNI_PATH: `/nonexistent:${dir}`, EXTRA_VAR: 'kept' }), stdin, { kernel });
  assert.equal(r.code, 0, r.stdout);
  const logged = readFileSync(log, 'utf8');
  assert.equal(logged, `cmd=ADD id=${CONTAINER_ID} ifname=eth0 netns=${NETNS} args=IgnoreUnknown=1;K8S_POD_NAME=web extra=kept\n${stdin}\n`);
  assert.match(r.stderr, /fake-ipam diagnostics/);
  assert.deepEqual(r.doc?.ips, [{ address: '10.199.0.5/24', gateway: '10.199.0.1', interface: 1 }]);
  assert.deepEqual(r.doc?.dns, { nameservers: ['10.199.0.1'] });
  assert.equal(formatIPv4(kernel.attached[0]!.gateway!), '10.199.0.1');
  assert.equal(router.requests.length, 0, 'the router is not asked for addresses');
  rmSync(log);
});

test('delegated IPAM: its error passes through; a failed ADD runs its DEL; other verbs are forwarded', async () => {
  const log = join(dir, 'fail-ipam.log');
  writeDelegate(
    'fail-ipam',
    `echo "$CNI_COMMAND" >> ${log}
case "$CNI_COMMAND" in
ADD) if [ -n "$FAIL_ADD" ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"no free address yet","details":"range full"}'; exit 1; fi
     echo '{"cniVersion":"1.0.0","ips":[{"address":"10.199.0.6/24","gateway":"10.199.0.1"}]}' ;;
CHECK) echo '{"code":101,"msg":"address not reserved"}'; exit 1 ;;
esac
exit 0`,
  );
  const c = conf({ cniVersion: '1.1.0', ipam: { type: 'fail-ipam' } });
  let r = await run('net', cniEnv('ADD', { CNI_PATH: dir, FAIL_ADD: '1' }), c, { kernel });
  assert.deepEqual(r.doc, { cniVersion: '1.1.0', code: 11, msg: 'no free address yet', details: 'range full' });

  kernel.attachError = new WeaveError('KERNEL_FAILED', 'nsenter: boom');
  r = await run('net', cniEnv('ADD', { CNI_PATH: dir }), c, { kernel });
  assert.equal(r.doc?.code, 100);
  kernel.attachError = undefined;

  r = await run('net', cniEnv('DEL', { CNI_PATH: dir }), c, { kernel });
  assert.equal(r.code, 0);
  r = await run('net', cniEnv('CHECK', { CNI_PATH: dir }), conf({ cniVersion: '1.1.0', ipam: { type: 'fail-ipam' }, prevResult: await addThenPrev('1.1.0') }), { kernel });
  assert.deepEqual(r.doc, { cniVersion: '1.1.0', code: 101, msg: 'address not reserved' });
  r = await run('net', { CNI_COMMAND: 'STATUS', CNI_PATH: dir }, c, { kernel });
  assert.equal(r.code, 0, r.stdout);
  r = await run('net', { CNI_COMMAND: 'GC', CNI_PATH: dir }, { ...c, 'cni.dev/valid-attachments': [] }, { kernel });
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n'), ['ADD', 'ADD', 'DEL', 'DEL', 'CHECK', 'STATUS', 'GC']);
});

test('delegated IPAM: CNI_PATH is required and the plugin must exist', async () => {
  const c = conf({ ipam: { type: 'no-such-ipam' } });
  let r = await run('net', cniEnv('ADD', { CNI_PATH: '' }), c, { kernel });
  assert.equal(r.doc?.code, 4);
  assert.match(String(r.doc?.msg), /CNI_PATH/);
  r = await run('net', cniEnv('ADD', { CNI_PATH: dir }), c, { kernel });
  assert.equal(r.doc?.code, 100);
  assert.match(String(r.doc?.msg), /failed to find IPAM plugin "no-such-ipam" in CNI_PATH/);
  writeFileSync(join(dir, 'not-exec'), '#!/bin/sh\n');
  r = await run('net', cniEnv('ADD', { CNI_PATH: dir }), conf({ ipam: { type: 'not-exec' } }), { kernel });
  assert.match(String(r.doc?.msg), /failed to find IPAM plugin "not-exec"/);
});

test('DEL against a router that takes connections and never answers (stopped) fails with code 11 within routerWaitMs', async () => {
  const held: import('node:net').Socket[] = [];
  const mute = createServer((s) => void held.push(s));
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  const addr = `127.0.0.1:${(mute.address() as import('node:net').AddressInfo).port}`;
  try {
    const t0 = Date.now();
    const r = await run('net', cniEnv('DEL'), conf({ weaveHttpAddr: addr, routerWaitMs: 600 }), { kernel });
    const took = Date.now() - t0;
    assert.equal(r.doc?.code, 11, r.stdout);
    assert.match(String(r.doc?.msg), /not reachable/);
    assert.ok(took < 5000, `took ${took} ms`);
  } finally {
    for (const s of held) s.destroy();
    await new Promise<void>((r) => mute.close(() => r()));
  }
});
