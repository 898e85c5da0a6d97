// Config parsing: defaults, every refused field with its CNI code, tolerated unknown keys,
// both GC keys, weave's own keys, and the IPAM-only reading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr, parseIPv4 } from '../../../src/core/ip.js';
import { cniCodeOf } from '../../../src/cni/cni-error.js';
import { parseNetConf, DEFAULT_ROUTER_WAIT_MS } from '../../../src/cni/config.js';
import { compareVersions, isSupportedVersion, versionAtLeast, SUPPORTED_VERSIONS } from '../../../src/cni/versions.js';

const base = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net' };

function codeOf(json: unknown, opts = {}): number {
  try {
    parseNetConf(json, opts);
  } catch (e) {
    return cniCodeOf(e);
  }
  return 0;
}

function messageOf(json: unknown, opts = {}): string {
  try {
    parseNetConf(json, opts);
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

test('versions: list, compare, implicit 0.1.0', () => {
  assert.deepEqual([...SUPPORTED_VERSIONS], ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
  assert.ok(compareVersions('0.3.1', '0.4.0') < 0);
  assert.ok(compareVersions('1.1.0', '1.0.0') > 0);
  assert.equal(compareVersions('0.10.0', '0.9.0') > 0, true);
  assert.ok(versionAtLeast('0.4.0', '0.4.0'));
  assert.ok(!isSupportedVersion(''));
  assert.ok(!isSupportedVersion('0.5.0'));
  assert.equal(parseNetConf({ name: 'weave' }).cniVersion, '0.1.0');
  assert.equal(parseNetConf({ name: 'weave', cniVersion: '' }).cniVersion, '0.1.0');
});

test('defaults match Weave Net', () => {
  const c = parseNetConf(JSON.stringify(base), { env: {} });
  assert.equal(c.name, 'weave');
  assert.equal(c.type, 'weave-net');
  assert.equal(c.cniVersion, '1.0.0');
  assert.equal(c.bridge, 'weave');
  assert.equal(c.mtu, 0);
  assert.equal(c.hairpinMode, true);
  assert.deepEqual(c.dns, {});
  assert.deepEqual(c.ipam, { type: '', delegated: false });
  assert.deepEqual(c.runtimeConfig, {});
  assert.deepEqual(c.args, {});
  assert.equal(c.prevResult, undefined);
  assert.equal(c.validAttachments, undefined);
  assert.equal(c.weaveHttpAddr, '127.0.0.1:6784');
  assert.equal(c.routerWaitMs, DEFAULT_ROUTER_WAIT_MS);
  assert.equal(c.routerWaitMs, 10000);
});

test('the reference weave conflist plugin entry parses', () => {
  const c = parseNetConf({ cniVersion: '0.3.0', name: 'weave', type: 'weave-net', hairpinMode: true });
  assert.equal(c.cniVersion, '0.3.0');
  assert.equal(c.hairpinMode, true);
});

test('weave keys: bridge, mtu, hairpinMode, dns copied verbatim', () => {
  const dns = { nameservers: ['10.32.0.1'], domain: 'weave.local', search: ['a'], options: ['ndots:2'], extra: { x: 1 } };
  const c = parseNetConf({ ...base, bridge: 'br-test', mtu: 1400, hairpinMode: false, dns, isGateway: false, ipMasq: false });
  assert.equal(c.bridge, 'br-test');
  assert.equal(c.mtu, 1400);
  assert.equal(c.hairpinMode, false);
  assert.deepEqual(c.dns, dns);
});

test('weaveHttpAddr: conflist wins over WEAVE_HTTP_ADDR, which wins over the default', () => {
  assert.equal(parseNetConf({ ...base, weaveHttpAddr: '127.0.0.1:7000' }, { env: { WEAVE_HTTP_ADDR: '127.0.0.1:8000' } }).weaveHttpAddr, '127.0.0.1:7000');
  assert.equal(parseNetConf(base, { env: { WEAVE_HTTP_ADDR: '127.0.0.1:8000' } }).weaveHttpAddr, '127.0.0.1:8000');
  assert.equal(parseNetConf({ ...base, weaveHttpAddr: '/run/weave/weave.sock' }).weaveHttpAddr, '/run/weave/weave.sock');
  assert.equal(parseNetConf({ ...base, routerWaitMs: 0 }).routerWaitMs, 0);
  assert.equal(codeOf({ ...base, weaveHttpAddr: 'nonsense' }), 7);
  assert.equal(codeOf({ ...base, weaveHttpAddr: 6784 }), 7);
  assert.equal(codeOf({ ...base, routerWaitMs: -1 }), 7);
  assert.equal(codeOf({ ...base, routerWaitMs: '10' }), 7);
});

test('unsupported fields: isGateway and ipMasq true are code 2 naming key and value', () => {
  assert.equal(codeOf({ ...base, isGateway: true }), 2);
  assert.equal(messageOf({ ...base, isGateway: true }), 'unsupported field isGateway: true (gateway functionality not supported)');
  assert.equal(codeOf({ ...base, ipMasq: true }), 2);
  assert.match(messageOf({ ...base, ipMasq: true }), /^unsupported field ipMasq: true \(IP masquerading/);
});

test('incompatible or bad versions', () => {
  assert.equal(codeOf({ ...base, cniVersion: '0.5.0' }), 1);
  assert.equal(
    messageOf({ ...base, cniVersion: '2.0.0' }),
    'incompatible CNI versions; config is "2.0.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]',
  );
  assert.equal(codeOf({ ...base, cniVersion: 1 }), 7);
  for (const v of SUPPORTED_VERSIONS) assert.equal(parseNetConf({ ...base, cniVersion: v }).cniVersion, v);
});

test('bad fields are code 7 naming the field and the value', () => {
  const cases: [object, RegExp][] = [
    [{ mtu: -1 }, /mtu -1/],
    [{ mtu: 1.5 }, /mtu 1.5/],
    [{ mtu: '1400' }, /mtu "1400"/],
    [{ hairpinMode: 'yes' }, /hairpinMode "yes"/],
    [{ bridge: 'a-very-long-bridge-name' }, /bridge "a-very-long-bridge-name"/],
    [{ bridge: 'we/ave' }, /bridge "we\/ave"/],
    [{ dns: 'x' }, /dns "x"/],
    [{ name: '' }, /network name ""/],
    [{ name: 'bad name' }, /network name "bad name"/],
    [{ ipam: 'x' }, /ipam "x"/],
    [{ ipam: { subnet: '10.32.0.0' } }, /ipam.subnet "10.32.0.0"/],
    [{ ipam: { subnet: '10.32.0.0/33' } }, /ipam.subnet "10.32.0.0\/33"/],
    [{ ipam: { gateway: '10.32.0.256' } }, /ipam.gateway "10.32.0.256"/],
    [{ ipam: { gateway: 7 } }, /ipam.gateway 7/],
    [{ ipam: { routes: {} } }, /ipam.routes \{\}/],
    [{ ipam: { routes: [{ dst: 'default' }] } }, /ipam.routes\[0\].dst "default"/],
    [{ ipam: { routes: [{ dst: '0.0.0.0/0' }, { dst: '10.0.0.0/8', gw: 'x' }] } }, /ipam.routes\[1\].gw "x"/],
    [{ ipam: { routes: ['0.0.0.0/0'] } }, /ipam.routes\[0\] "0.0.0.0\/0"/],
    [{ ipam: { type: '../evil' } }, /ipam.type "..\/evil"/],
    [{ runtimeConfig: [] }, /runtimeConfig \[\]/],
    [{ 'cni.dev/attachments': 'x' }, /cni.dev\/attachments "x"/],
    [{ 'cni.dev/valid-attachments': [{ ifname: 'eth0' }] }, /cni.dev\/valid-attachments\[0\]/],
  ];
  for (const [extra, re] of cases) {
    const json = { ...base, ...extra };
    assert.equal(codeOf(json), 7, JSON.stringify(extra));
    assert.match(messageOf(json), re, JSON.stringify(extra));
  }
});

test('undecodable configs are code 6', () => {
  assert.equal(codeOf('{not json'), 6);
  assert.equal(codeOf('[]'), 6);
  assert.equal(codeOf('"x"'), 6);
  assert.equal(codeOf({ ...base, prevResult: { ips: [{ address: 'nonsense' }] } }), 6);
});

test('ipam: weave own IPAM keys are parsed and normalised', () => {
  const c = parseNetConf({
    ...base,
    ipam: { subnet: '10.40.0.5/16', gateway: '10.40.0.1', routes: [{ dst: '10.32.0.0/12' }, { dst: '192.168.1.7/24', gw: '10.40.0.254' }] },
  });
  assert.equal(c.ipam.type, '');
  assert.equal(c.ipam.delegated, false);
  assert.deepEqual(c.ipam.subnet, parseCidr('10.40.0.0/16'));
  assert.equal(c.ipam.gateway, parseIPv4('10.40.0.1'));
  assert.deepEqual(c.ipam.routes, [{ dst: parseCidr('10.32.0.0/12') }, { dst: parseCidr('192.168.1.0/24'), gw: parseIPv4('10.40.0.254') }]);
  assert.deepEqual(parseNetConf({ ...base, ipam: { routes: [] } }).ipam.routes, []);
  assert.equal(parseNetConf({ ...base, ipam: {} }).ipam.routes, undefined);
  assert.equal(parseNetConf({ ...base, ipam: { type: '' } }).ipam.delegated, false);
});

test('ipam: a delegated type leaves its keys to the delegate', () => {
  const c = parseNetConf({ ...base, ipam: { type: 'host-local', ranges: [[{ subnet: 'fd00::/64' }]], subnet: 'fd00::/64', routes: [{ dst: '::/0' }] } });
  assert.deepEqual(c.ipam, { type: 'host-local', delegated: true });
});

test('IPAM-only reading: ipam.type is ourselves, interface keys belong to the caller', () => {
  const c = parseNetConf(
    { ...base, type: 'bridge', isGateway: true, ipMasq: true, bridge: 'a-very-long-bridge-name', mtu: 'x', dns: { nameservers: ['1.1.1.1'] }, ipam: { type: 'weave-ipam', subnet: '10.40.0.0/16' } },
    { ipamPlugin: true },
  );
  assert.equal(c.ipam.type, 'weave-ipam');
  assert.equal(c.ipam.delegated, false);
  assert.deepEqual(c.ipam.subnet, parseCidr('10.40.0.0/16'));
  assert.equal(codeOf({ ...base, ipam: { type: 'weave-ipam', subnet: 'x' } }, { ipamPlugin: true }), 7);
});

test('unknown and reserved keys are tolerated', () => {
  const c = parseNetConf({
    ...base,
    capabilities: { portMappings: true, ips: true },
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
    args: { cni: { ips: ['10.32.0.9/12'] }, 'org.apache.mesos': { network_info: { name: 'weave' } } },
    'cni.dev/some-future-key': 1,
    vendorKey: [1, 2, 3],
    snat: true,
  });
  assert.deepEqual(c.runtimeConfig, { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] });
  assert.deepEqual(c.args, { cni: { ips: ['10.32.0.9/12'] }, 'org.apache.mesos': { network_info: { name: 'weave' } } });
  // args that are not an object are ignored, never an error.
  assert.deepEqual(parseNetConf({ ...base, args: 'x' }).args, {});
});

test('GC attachments: either key is accepted', () => {
  const list = [
    { containerID: 'a1', ifname: 'eth0' },
    { containerID: 'b2', ifname: 'eth1' },
  ];
  assert.deepEqual(parseNetConf({ ...base, cniVersion: '1.1.0', 'cni.dev/attachments': list }).validAttachments, list);
  assert.deepEqual(parseNetConf({ ...base, cniVersion: '1.1.0', 'cni.dev/valid-attachments': list }).validAttachments, list);
  assert.deepEqual(parseNetConf({ ...base, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [], 'cni.dev/attachments': [] }).validAttachments, []);
});

test('prevResult of any version is parsed', () => {
  const c = parseNetConf({
    ...base,
    cniVersion: '0.4.0',
    prevResult: {
      cniVersion: '0.4.0',
      interfaces: [{ name: 'vethwepl3f2a9c1', mac: '0a:00:00:00:00:01' }, { name: 'eth0', mac: '0a:00:00:00:00:02', sandbox: '/var/run/netns/x' }],
      ips: [{ version: '4', address: '10.32.0.2/12', gateway: '10.32.0.1', interface: 1 }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: {},
    },
  });
  assert.equal(c.prevResult?.ips[0]?.interface, 1);
  assert.equal(c.prevResult?.interfaces[1]?.sandbox, '/var/run/netns/x');
});
