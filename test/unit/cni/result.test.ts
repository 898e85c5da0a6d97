// Result formatting for every version (exact JSON shapes) and parseResult of delegated and
// chained results in the 0.2.0, 0.4.0 and 1.0.0 shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIpamResult, formatResult, parseResult, type CniResult } from '../../../src/cni/result.js';
import { SUPPORTED_VERSIONS } from '../../../src/cni/versions.js';

const NS = '/var/run/netns/cni-test';

const weaveResult: CniResult = {
  interfaces: [
    { name: 'vethwepl3f2a9c1', mac: '0a:00:00:00:00:01', mtu: 1376 },
    { name: 'eth0', mac: '0a:00:00:00:00:02', sandbox: NS, mtu: 1376 },
  ],
  ips: [{ address: '10.32.0.2/12', gateway: '10.32.0.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }],
  dns: { nameservers: ['10.32.0.1'], search: ['weave.local'] },
};

const legacy = (v: string) => ({
  cniVersion: v,
  ip4: { ip: '10.32.0.2/12', gateway: '10.32.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }] },
  dns: { nameservers: ['10.32.0.1'], search: ['weave.local'] },
});

const current = (v: string, withVersion: boolean, withMtu: boolean) => ({
  cniVersion: v,
  interfaces: [
    { name: 'vethwepl3f2a9c1', mac: '0a:00:00:00:00:01', ...(withMtu ? { mtu: 1376 } : {}) },
    { name: 'eth0', mac: '0a:00:00:00:00:02', sandbox: NS, ...(withMtu ? { mtu: 1376 } : {}) },
  ],
  ips: [{ ...(withVersion ? { version: '4' } : {}), address: '10.32.0.2/12', gateway: '10.32.0.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }],
  dns: { nameservers: ['10.32.0.1'], search: ['weave.local'] },
});

const expected: Record<string, object> = {
  '0.1.0': legacy('0.1.0'),
  '0.2.0': legacy('0.2.0'),
  '0.3.0': current('0.3.0', true, false),
  '0.3.1': current('0.3.1', true, false),
  '0.4.0': current('0.4.0', true, false),
  '1.0.0': current('1.0.0', false, false),
  '1.1.0': current('1.1.0', false, true),
};

test('formatResult: the exact shape of every version', () => {
  for (const v of SUPPORTED_VERSIONS) {
    assert.deepEqual(formatResult(weaveResult, v), expected[v], v);
  }
});

test('formatResult: cniVersion and dns always present', () => {
  const bare: CniResult = { interfaces: [], ips: [{ address: '10.32.0.9/12' }], dns: {} };
  for (const v of SUPPORTED_VERSIONS) {
    const doc = formatResult(bare, v);
    assert.equal(doc.cniVersion, v);
    assert.deepEqual(doc.dns, {});
    assert.equal('routes' in doc, false, v);
    assert.equal('interfaces' in doc, false, v);
  }
  assert.deepEqual(formatResult(bare, '0.2.0'), { cniVersion: '0.2.0', ip4: { ip: '10.32.0.9/12' }, dns: {} });
  // The original's 0.3.0 output lacked cniVersion; ours must not.
  assert.deepEqual(formatResult(bare, '0.3.0'), { cniVersion: '0.3.0', ips: [{ version: '4', address: '10.32.0.9/12' }], dns: {} });
});

test('formatResult: portmap finds the container IP (interface index -> CNI_IFNAME with sandbox)', () => {
  for (const v of SUPPORTED_VERSIONS.filter((x) => x >= '0.3.0')) {
    const doc = formatResult(weaveResult, v) as { interfaces: { name: string; sandbox?: string }[]; ips: { interface: number }[] };
    const itf = doc.interfaces[doc.ips[0]!.interface]!;
    assert.equal(itf.name, 'eth0', v);
    assert.equal(itf.sandbox, NS, v);
  }
});

test('formatResult: ips[].version only for 0.3.x and 0.4.0; mtu only for 1.1.0', () => {
  for (const v of SUPPORTED_VERSIONS.filter((x) => x >= '0.3.0')) {
    const doc = formatResult(weaveResult, v) as { ips: Record<string, unknown>[]; interfaces: Record<string, unknown>[] };
    assert.equal('version' in doc.ips[0]!, v < '1.0.0', v);
    assert.equal('mtu' in doc.interfaces[0]!, v === '1.1.0', v);
  }
});

test('formatResult: 1.1.0 route extras; legacy ip6', () => {
  const r: CniResult = {
    interfaces: [],
    ips: [{ address: '10.32.0.2/12' }, { address: 'fd00::2/64', gateway: 'fd00::1' }],
    routes: [{ dst: '10.0.0.0/8', mtu: 1300, priority: 5 }, { dst: '::/0' }],
    dns: {},
  };
  assert.deepEqual((formatResult(r, '1.1.0').routes as object[])[0], { dst: '10.0.0.0/8', mtu: 1300, priority: 5 });
  assert.deepEqual((formatResult(r, '1.0.0').routes as object[])[0], { dst: '10.0.0.0/8' });
  assert.deepEqual(formatResult(r, '0.2.0'), {
    cniVersion: '0.2.0',
    ip4: { ip: '10.32.0.2/12', routes: [{ dst: '10.0.0.0/8' }] },
    ip6: { ip: 'fd00::2/64', gateway: 'fd00::1', routes: [{ dst: '::/0' }] },
    dns: {},
  });
  assert.equal((formatResult(r, '0.4.0').ips as { version: string }[])[1]!.version, '6');
});

test('formatIpamResult: no interfaces, no ips[].interface', () => {
  assert.deepEqual(formatIpamResult(weaveResult, '0.4.0'), {
    cniVersion: '0.4.0',
    ips: [{ version: '4', address: '10.32.0.2/12', gateway: '10.32.0.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }],
    dns: { nameservers: ['10.32.0.1'], search: ['weave.local'] },
  });
  assert.deepEqual(formatIpamResult(weaveResult, '1.1.0'), {
    cniVersion: '1.1.0',
    ips: [{ address: '10.32.0.2/12', gateway: '10.32.0.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.32.0.1' }],
    dns: { nameservers: ['10.32.0.1'], search: ['weave.local'] },
  });
  assert.deepEqual(formatIpamResult(weaveResult, '0.1.0'), legacy('0.1.0'));
});

test('parseResult: host-local style 0.2.0 result', () => {
  const r = parseResult('{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.5/16","gateway":"10.1.0.1","routes":[{"dst":"0.0.0.0/0"}]},"dns":{"nameservers":["10.1.0.1"]}}');
  assert.deepEqual(r, {
    interfaces: [],
    ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1' }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: { nameservers: ['10.1.0.1'] },
  });
  assert.equal(parseResult({ cniVersion: '0.1.0', ip4: { ip: '10.1.0.5/16' } }).routes, undefined);
});

test('parseResult: 0.4.0 IPAM and interface results', () => {
  const ipam = parseResult({ cniVersion: '0.4.0', ips: [{ version: '4', address: '10.199.0.2/24', gateway: '10.199.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
  assert.deepEqual(ipam, { interfaces: [], ips: [{ address: '10.199.0.2/24', gateway: '10.199.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
  const full = parseResult({
    cniVersion: '0.4.0',
    interfaces: [{ name: 'cnixfa6b1a8b', mac: '56:b6:a5:24:14:95' }, { name: 'eth0', mac: '22:d0:36:c6:ed:3e', sandbox: '/var/run/netns/cnix-a' }],
    ips: [{ version: '4', interface: 1, address: '10.199.0.2/24', gateway: '10.199.0.1' }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: {},
  });
  assert.equal(full.ips[0]!.interface, 1);
  assert.equal(full.interfaces[1]!.sandbox, '/var/run/netns/cnix-a');
});

test('parseResult: 1.0.0 result (no ips[].version), and round trips of every version', () => {
  const r = parseResult({
    cniVersion: '1.0.0',
    interfaces: [{ mac: 'd6:4e:f9:81:28:f6', name: 'cnix70e3e108' }, { mac: 'd6:7d:10:70:02:b0', name: 'eth0', sandbox: '/run/netns/x' }],
    ips: [{ address: '10.199.0.10/24', gateway: '10.199.0.1', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0' }],
  });
  assert.deepEqual(r.ips, [{ address: '10.199.0.10/24', gateway: '10.199.0.1', interface: 1 }]);
  assert.deepEqual(r.dns, {});
  for (const v of SUPPORTED_VERSIONS) {
    const back = parseResult(JSON.stringify(formatResult(weaveResult, v)));
    if (v < '0.3.0') {
      assert.deepEqual(back.ips, [{ address: '10.32.0.2/12', gateway: '10.32.0.1' }], v);
    } else {
      assert.deepEqual(back.ips, weaveResult.ips, v);
      assert.equal(back.interfaces[1]!.sandbox, NS, v);
    }
    assert.deepEqual(back.routes, weaveResult.routes, v);
    assert.deepEqual(back.dns, weaveResult.dns, v);
  }
});

test('parseResult: bad results are DECODE_FAILED, never a crash', () => {
  const bad: unknown[] = [
    'not json',
    '[]',
    42,
    null,
    { ips: 'x' },
    { ips: [{ address: '10.0.0.1' }] },
    { ips: [{ address: '10.0.0.1/24', version: '5' }] },
    { ips: [{ address: '10.0.0.1/24', interface: 0 }] },
    { ips: [{ address: '10.0.0.1/24', gateway: 'x' }] },
    { interfaces: [{}] },
    { routes: [{ dst: 'x' }] },
    { dns: [] },
    { ip4: { ip: 'x' } },
  ];
  for (const b of bad) {
    assert.throws(() => parseResult(b), (e: unknown) => (e as { code?: string }).code === 'DECODE_FAILED', JSON.stringify(b));
  }
});
