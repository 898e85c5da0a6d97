// weaver on one host (a network namespace): the bridge, the HTTP API, persistence across a
// restart, expose with its iptables rules, bridge recreation, and clean SIGTERM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WeaveHost, eventually, requireRoot, uniquePrefix } from '../helpers/netns.js';

const prefix = uniquePrefix();
let h: WeaveHost;
const hosts: WeaveHost[] = [];

before(async () => {
  if (process.getuid?.() !== 0) return;
  h = new WeaveHost(prefix, 'd1');
  hosts.push(h);
  await h.startWeaver({ name: '7a:00:00:00:00:01', nickname: 'host1' });
});
after(async () => {
  for (const x of hosts) await x.destroy();
});

test('creates the weave bridge with the peer name as MAC and the MTU', (t) => {
  if (!requireRoot(t)) return;
  const link = JSON.parse(h.ns.ip('-j', '-d', 'link', 'show', 'dev', 'weave'))[0];
  assert.equal(link.address, '7a:00:00:00:00:01');
  assert.equal(link.mtu, 1376);
  assert.equal(link.linkinfo.info_kind, 'bridge');
  assert.ok(link.flags.includes('UP'));
});

test('serves /status in the original format and /report as JSON and template', async (t) => {
  if (!requireRoot(t)) return;
  const s = await h.client.request('GET', '/status');
  assert.equal(s.status, 200);
  assert.match(s.body, /^        Version: \S+ \(version check update disabled\)\n\n        Service: router\n       Protocol: weave 1\.\.2\n           Name: 7a:00:00:00:00:01\(host1\)\n/);
  // No allocation yet: the ring does not exist (the original's "idle").
  assert.match(s.body, /\n        Service: ipam\n         Status: idle\n          Range: 10\.32\.0\.0\/12\n  DefaultSubnet: 10\.32\.0\.0\/12\n\n        Service: dns\n         Domain: weave\.local\.\n/);
  assert.match(s.body, /\n            TTL: 1\n        Entries: 0\n$/);
  const json = await h.client.call('GET', '/report', 'report', { headers: { accept: 'application/json' } });
  assert.match(json, /^\{\n    "Ready": true,\n/);
  assert.equal(await h.client.call('GET', '/report?format=' + encodeURIComponent('{{.Router.Name}} {{len .Router.Peers}}'), 'r'), '7a:00:00:00:00:01 1');
  // A lone router: lists nothing was appended to are null, as Go writes them.
  const doc = JSON.parse(json) as { Router: { Connections: unknown; Peers: { Connections: unknown }[] } };
  assert.equal(doc.Router.Connections, null);
  assert.equal(doc.Router.Peers[0]?.Connections, null);
  // No format: no route, as the original's (gorilla/mux); of two formats the first.
  assert.equal((await h.client.request('GET', '/report')).status, 404);
  assert.equal(await h.client.call('GET', '/report?format=a&format=b', 'r'), 'a');
  assert.equal((await h.client.request('GET', '/status/bogus')).status, 404);
  assert.equal(await h.client.call('GET', '/ipinfo/defaultsubnet', 'd'), '10.32.0.0/12\n');
});

test('IPAM over HTTP: allocate, idempotent re-allocate, claim, conflict, free', async (t) => {
  if (!requireRoot(t)) return;
  const c = h.client;
  assert.equal(await c.allocate('ctr-a'), '10.32.0.1/12');
  assert.equal(await c.allocate('ctr-a'), '10.32.0.1/12');
  assert.equal(await c.allocate('ctr-b', '10.40.0.0/16'), '10.40.0.1/16');
  await c.claim('ctr-c', '10.32.5.5/12');
  const conflict = await c.request('PUT', '/ip/ctr-d/10.32.5.5/12');
  assert.equal(conflict.status, 400);
  assert.match(conflict.body, /^Unable to claim: address 10\.32\.5\.5\/12 is already owned by ctr-c/);
  assert.deepEqual(await c.lookup('ctr-c'), ['10.32.5.5/12']);
  const none = await c.request('DELETE', '/ip/nobody');
  assert.equal(none.status, 400);
  assert.equal(none.body, 'Delete: no addresses for nobody\n');
  assert.equal(await c.release('ctr-c'), true);
  assert.equal(await c.release('ctr-c'), false);
  const owned = JSON.parse(await c.call('GET', '/ip', 'ip')) as { owned: { containerid: string; addrs: string[] }[] };
  assert.deepEqual(owned.owned.map((o) => o.containerid).sort(), ['ctr-a', 'ctr-b']);
  const metrics = await c.call('GET', '/metrics', 'm');
  assert.match(metrics, /^weave_ips\{state="local-used"\} 2$/m);
  assert.match(metrics, /^weave_max_ips 1048576$/m);
  assert.match(metrics, /^weave_ipam_unreachable_count 0$/m);
  assert.match(metrics, /^weave_ipam_pending_claims 0$/m);
  // The first allocation made the ring (quorum 1: no peers); prime returns at once now.
  assert.match(await c.call('GET', '/status', 's'), /\n         Status: ready\n/);
  assert.equal((await c.request('GET', '/ring')).status, 200);
  assert.match(await c.call('GET', '/status/ipam', 's'), /^7a:00:00:00:00:01\(host1\) +1048576 IPs \(100\.0% of total\) \(2 active\)\n$/);
  const rm = await c.request('DELETE', '/peer/7a:00:00:00:00:99');
  assert.equal(rm.status, 200);
  assert.equal(rm.body, '0 IPs taken over from 7a:00:00:00:00:99\n');
});

test('expose puts the address on the bridge with NAT rules; hide removes them', async (t) => {
  if (!requireRoot(t)) return;
  // No conntrack match before an expose (it would track every bridged frame of the host).
  const tracked = /-A FORWARD -o weave -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT/;
  assert.doesNotMatch(h.ns.must('iptables', ['-S']), /conntrack/);
  await h.client.expose('10.32.0.200/12');
  await h.client.expose('10.32.0.200/12');
  assert.match(h.ns.must('iptables', ['-S', 'FORWARD']), tracked);
  const addrs = JSON.parse(h.ns.ip('-j', 'addr', 'show', 'dev', 'weave'))[0].addr_info.map((a: { local: string }) => a.local);
  assert.ok(addrs.includes('10.32.0.200'));
  const nat = h.ns.must('iptables', ['-t', 'nat', '-S', 'WEAVE']);
  assert.match(nat, /-A WEAVE ! -s 10\.32\.0\.0\/12 -d 10\.32\.0\.0\/12 -j MASQUERADE/);
  assert.match(nat, /-A WEAVE -s 10\.32\.0\.0\/12 ! -d 10\.32\.0\.0\/12 -j MASQUERADE/);
  assert.match(h.ns.must('iptables', ['-S', 'WEAVE-EXPOSE']), /-A WEAVE-EXPOSE -d 10\.32\.0\.0\/12 -j ACCEPT/);
  assert.match(h.ns.must('iptables', ['-S', 'FORWARD']), /-A FORWARD -o weave -j WEAVE-EXPOSE/);
  // The original's guard of the API on 127.0.0.1 (route_localnet=1 lets others reach it), first in INPUT.
  const input = h.ns.must('iptables', ['-S', 'INPUT']).split('\n').filter((l) => l.startsWith('-A'));
  assert.match(input[0] ?? '', /-d 127\.0\.0\.1\/32 -p tcp .*--dport 6784 .*! --src-type LOCAL .*Block non-local access to Weave Net control port.* -j DROP/);
  await h.client.hide('10.32.0.200/12');
  assert.doesNotMatch(h.ns.must('iptables', ['-t', 'nat', '-S', 'WEAVE']), /MASQUERADE/);
  assert.doesNotMatch(h.ns.must('iptables', ['-S', 'FORWARD']), tracked);
  assert.doesNotMatch(h.ns.ip('addr', 'show', 'dev', 'weave'), /10\.32\.0\.200/);
});

test('a deleted bridge is recreated with its exposed address', async (t) => {
  if (!requireRoot(t)) return;
  await h.client.expose('10.32.0.201/12');
  h.ns.ip('link', 'del', 'weave');
  await eventually(() => /10\.32\.0\.201/.test(h.ns.run('ip', ['addr', 'show', 'dev', 'weave']).stdout), 5000, 'bridge recreated with its address');
  const link = JSON.parse(h.ns.ip('-j', 'link', 'show', 'dev', 'weave'))[0];
  assert.equal(link.address, '7a:00:00:00:00:01');
});

test('allocations and exposes survive a restart; SIGTERM stops cleanly', async (t) => {
  if (!requireRoot(t)) return;
  const before = await h.client.lookup('ctr-a');
  assert.equal(await h.stopWeaver('SIGTERM'), 0);
  assert.match(h.log(), /weave stopped/);
  await h.startWeaver({ name: '7a:00:00:00:00:01', nickname: 'host1' });
  assert.deepEqual(await h.client.lookup('ctr-a'), before);
  const fresh = await h.client.allocate('ctr-new');
  assert.notEqual(fresh, before[0]);
  assert.match(h.ns.ip('addr', 'show', 'dev', 'weave'), /10\.32\.0\.201\/12/);
});

test('the peer name is derived and persisted when --name is absent', async (t) => {
  if (!requireRoot(t)) return;
  const h2 = new WeaveHost(prefix, 'd2');
  hosts.push(h2);
  await h2.startWeaver({ name: null });
  const name = (await h2.client.call('GET', '/report?format={{.Router.Name}}', 'r')).trim();
  assert.match(name, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  assert.equal(parseInt(name.slice(0, 2), 16) & 3, 2, 'unicast, locally administered');
  await h2.stopWeaver();
  h2.ns.ip('link', 'del', 'weave');
  await h2.startWeaver({ name: null });
  assert.equal((await h2.client.call('GET', '/report?format={{.Router.Name}}', 'r')).trim(), name);
});
