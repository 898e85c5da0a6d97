// The CNI plugin called the way runtimes call it (env + stdin → stdout), inside a host
// namespace that runs weaver: every cniVersion, routes, hairpin, MTU, DEL semantics, error
// codes, the router-down bound, persistence across a router restart, delegation, and a soak.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Netns, WeaveHost, eventually, must, requireRoot, uniquePrefix, type RunResult } from '../helpers/netns.js';

const prefix = uniquePrefix();
let h: WeaveHost;
const containers: Netns[] = [];
const VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

before(async () => {
  if (process.getuid?.() !== 0) return;
  h = new WeaveHost(prefix, 'cni');
  await h.startWeaver({ name: '7a:00:00:00:00:21', nickname: 'cnihost' });
  const s = h.weave(['setup', '--create-dirs']);
  if (s.code !== 0) throw new Error(s.stderr);
});
after(async () => {
  for (const c of containers) c.destroy();
  if (h) await h.destroy();
});

function container(label: string): Netns {
  const n = new Netns(`${prefix}-${label}`);
  containers.push(n);
  return n;
}

interface Call extends RunResult {
  json: Record<string, unknown> | undefined;
}

function cni(command: string, conf: Record<string, unknown>, env: Record<string, string | undefined>, plugin = 'weave-net'): Call {
  const full: NodeJS.ProcessEnv = { PATH: process.env.PATH, CNI_COMMAND: command, CNI_IFNAME: 'eth0', CNI_PATH: `${h.env.WEAVE_CNI_PLUGIN_DIR}:/usr/lib/cni`, ...env };
  for (const k of Object.keys(full)) if (full[k] === undefined) delete full[k];
  const exe = plugin === 'portmap' ? '/usr/lib/cni/portmap' : join(h.env.WEAVE_CNI_PLUGIN_DIR!, plugin);
  const r = h.ns.run(exe, [], { input: JSON.stringify(conf), env: full });
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

const conf = (version: string, extra: Record<string, unknown> = {}) => ({ cniVersion: version, name: 'weave', type: 'weave-net', ...extra });

function addrOf(n: Netns, dev = 'eth0'): { ip: string; mtu: number } {
  const l = JSON.parse(n.ip('-j', 'addr', 'show', 'dev', dev))[0];
  return { ip: l.addr_info.find((a: { family: string }) => a.family === 'inet')?.local, mtu: l.mtu };
}

function hostVeth(id: string): { hairpin: boolean; master: string } | undefined {
  const r = h.ns.run('ip', ['-j', '-d', 'link', 'show', 'type', 'veth']);
  const links = JSON.parse(r.stdout || '[]') as { ifname: string; master?: string; linkinfo?: { info_slave_data?: { hairpin?: boolean } } }[];
  // The host end of a container veth is vethwepl + the first 7 hex characters of a hex id.
  const l = links.find((x) => x.ifname === `vethwepl${id.slice(0, 7)}`);
  return l && { hairpin: !!l.linkinfo?.info_slave_data?.hairpin, master: l.master ?? '' };
}

const ids = new Map<string, string>();
function idFor(label: string): string {
  // Runtimes use random 64-hex ids (Docker, containerd CRI); the veth name takes the first 7.
  if (!ids.has(label)) ids.set(label, createHash('sha256').update(`${prefix}/${label}`).digest('hex'));
  return ids.get(label)!;
}

test('ADD for every cniVersion gives that version\'s result shape, an address and a default route', (t) => {
  if (!requireRoot(t)) return;
  let bridgeIp = '';
  for (const v of VERSIONS) {
    const c = container(`v${v.replace(/\./g, '')}`);
    const id = idFor(c.name);
    const r = cni('ADD', conf(v), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
    assert.equal(r.code, 0, `${v}: ${r.stdout}${r.stderr}`);
    const res = r.json!;
    assert.equal(res.cniVersion, v);
    const { ip, mtu } = addrOf(c);
    assert.match(ip, /^10\.(3[2-9]|4[0-7])\./, `${v}: ${ip} is in 10.32.0.0/12`);
    assert.equal(mtu, 1376);
    if (v === '0.1.0' || v === '0.2.0') {
      const ip4 = res.ip4 as { ip: string; gateway: string };
      assert.equal(ip4.ip, `${ip}/12`);
      bridgeIp = ip4.gateway;
      assert.equal(res.interfaces, undefined);
    } else {
      const ifs = res.interfaces as { name: string; mac: string; sandbox?: string }[];
      const ips = res.ips as { address: string; gateway: string; interface: number; version?: string }[];
      assert.equal(ips[0]!.address, `${ip}/12`);
      assert.equal(ifs[ips[0]!.interface]!.name, 'eth0');
      assert.equal(ifs[ips[0]!.interface]!.sandbox, c.path);
      assert.equal(ips[0]!.version, v.startsWith('0.') ? '4' : undefined);
      bridgeIp = ips[0]!.gateway;
    }
    assert.match(c.ip('route', 'show', 'default'), new RegExp(`default via ${bridgeIp.replace(/\./g, '\\.')} dev eth0`));
    const veth = hostVeth(id);
    assert.deepEqual(veth, { hairpin: true, master: 'weave' });
  }
  assert.match(bridgeIp, /^10\.32\.0\./, 'the first ADD exposed the bridge with an address of the default subnet');
  assert.ok(!containers.some((c) => addrOf(c).ip === bridgeIp), 'no container got the bridge address');
  // container ↔ container and container ↔ bridge
  const [a, b] = [containers[0]!, containers[containers.length - 1]!];
  assert.equal(a.run('ping', ['-c', '1', '-W', '2', addrOf(b).ip]).code, 0);
  assert.equal(b.run('ping', ['-c', '1', '-W', '2', bridgeIp]).code, 0);
  assert.equal(h.ns.run('ping', ['-c', '1', '-W', '2', addrOf(a).ip]).code, 0);
});

test('routes: [] means no default route; hairpinMode false; mtu from the config', (t) => {
  if (!requireRoot(t)) return;
  const c = container('noroute');
  const id = idFor(c.name);
  const r = cni('ADD', conf('1.0.0', { hairpinMode: false, mtu: 1400, ipam: { routes: [] } }), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(c.ip('route', 'show', 'default').trim(), '');
  assert.equal(addrOf(c).mtu, 1400);
  assert.deepEqual(hostVeth(id), { hairpin: false, master: 'weave' });
  // The sysfs value Weave Net's test 830 reads (ip netns exec mounts the namespace's own /sys).
  const sysfs = (veth: string) => must('ip', ['netns', 'exec', h.ns.name, 'cat', `/sys/class/net/weave/brif/${veth}/hairpin_mode`]).trim();
  assert.equal(sysfs(`vethwepl${id.slice(0, 7)}`), '0');
  assert.equal(sysfs(`vethwepl${idFor(containers[0]!.name).slice(0, 7)}`), '1');
  const sub = container('subnet');
  const r2 = cni('ADD', conf('0.3.1', { ipam: { subnet: '10.40.1.0/24', routes: [{ dst: '10.32.0.0/12' }] } }), { CNI_CONTAINERID: idFor(sub.name), CNI_NETNS: sub.path });
  assert.equal(r2.code, 0, r2.stdout + r2.stderr);
  assert.match(addrOf(sub).ip, /^10\.40\.1\./);
  assert.equal(sub.ip('route', 'show', 'default').trim(), '');
  const bridgeIp = addrOf(h.ns, 'weave').ip;
  assert.equal(sub.ip('route', 'show', '10.32.0.0/12').trim(), `10.32.0.0/12 via ${bridgeIp} dev eth0`);
});

test('a requested address (CNI_ARGS IP=, as podman --ip sends it) is claimed', async (t) => {
  if (!requireRoot(t)) return;
  const c = container('static');
  const id = idFor(c.name);
  const r = cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.32.77.7' });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(addrOf(c).ip, '10.32.77.7');
  assert.deepEqual(await h.client.lookup(id), ['10.32.77.7/12']);
  const other = container('static2');
  const clash = cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: idFor(other.name), CNI_NETNS: other.path, CNI_ARGS: 'IP=10.32.77.7' });
  assert.equal(clash.code, 1);
  assert.match(String(clash.json?.msg), /already owned/);
  assert.equal(cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path }).code, 0);
});

test('DEL removes the veth and frees the address; DEL repeats and DEL without netns succeed', async (t) => {
  if (!requireRoot(t)) return;
  const c = container('del');
  const id = idFor(c.name);
  assert.equal(cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path }).code, 0);
  const ip = addrOf(c).ip;
  assert.deepEqual(await h.client.lookup(id), [`${ip}/12`]);
  const del = cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
  assert.equal(del.code, 0, del.stdout + del.stderr);
  assert.equal(del.stdout, '');
  assert.equal(hostVeth(id), undefined);
  assert.notEqual(c.run('ip', ['link', 'show', 'eth0']).code, 0);
  assert.deepEqual(await h.client.lookup(id), []);
  assert.equal(cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path }).code, 0);
  assert.equal(cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: '' }).code, 0);
  assert.equal(cni('DEL', conf('0.3.0'), { CNI_CONTAINERID: 'never-added', CNI_NETNS: undefined }).code, 0);
  // An address freed by DEL is the lowest free one again.
  const c2 = container('del2');
  assert.equal(cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: idFor(c2.name), CNI_NETNS: c2.path }).code, 0);
  assert.equal(addrOf(c2).ip, ip);
});

test('weave as a second network: the container\'s default route stays, and DEL removes only this attachment', async (t) => {
  if (!requireRoot(t)) return;
  const c = container('second');
  const id = idFor(c.name);
  // Another network attached first and set the default route (podman with two networks, Multus).
  // (This kernel has no dummy links: a veth pair inside the namespace, both ends up.)
  c.ip('link', 'add', 'dummy0', 'type', 'veth', 'peer', 'name', 'dummy1');
  c.ip('addr', 'add', '198.51.100.2/24', 'dev', 'dummy0');
  c.ip('link', 'set', 'dummy1', 'up');
  c.ip('link', 'set', 'dummy0', 'up');
  c.ip('route', 'add', 'default', 'via', '198.51.100.1');
  const r = cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path, CNI_IFNAME: 'eth1' });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const ip = addrOf(c, 'eth1').ip;
  assert.match(ip, /^10\.3[2-9]\./);
  // Held for this attachment (container and interface), not for the container alone.
  assert.deepEqual(await h.client.lookup(`${id}@eth1`), [`${ip}/12`]);
  assert.equal(c.ip('route', 'show', 'default').trim(), 'default via 198.51.100.1 dev dummy0');
  const routes = (r.json?.routes ?? []) as { dst: string }[];
  assert.ok(!routes.some((x) => x.dst === '0.0.0.0/0'), `the result reports no default route of ours: ${JSON.stringify(routes)}`);
  const del = cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path, CNI_IFNAME: 'eth1' });
  assert.equal(del.code, 0, del.stdout + del.stderr);
  assert.notEqual(c.run('ip', ['link', 'show', 'eth1']).code, 0);
  assert.equal(c.run('ip', ['link', 'show', 'dummy0']).code, 0);
  assert.deepEqual(await h.client.lookup(`${id}@eth1`), []);
});

test('two IDs sharing the host veth name: the second ADD fails naming the first, and its DEL leaves the first attached', async (t) => {
  if (!requireRoot(t)) return;
  const a = container('twina');
  const b = container('twinb');
  const idA = idFor(a.name);
  const idB = idA.slice(0, 7) + idFor(b.name).slice(7);
  assert.equal(cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: idA, CNI_NETNS: a.path }).code, 0);
  const ipA = addrOf(a).ip;
  const addB = cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: idB, CNI_NETNS: b.path });
  assert.notEqual(addB.code, 0);
  assert.match(String(addB.json?.msg), new RegExp(`belongs to container ${idA}`));
  // The runtime cleans up after a failed ADD, with and without the namespace.
  assert.equal(cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: idB, CNI_NETNS: b.path }).code, 0);
  assert.equal(cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: idB, CNI_NETNS: '' }).code, 0);
  assert.deepEqual(hostVeth(idA), { hairpin: true, master: 'weave' });
  assert.equal(addrOf(a).ip, ipA);
  assert.deepEqual(await h.client.lookup(idA), [`${ipA}/12`]);
  assert.equal(cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: idA, CNI_NETNS: '' }).code, 0);
  assert.equal(hostVeth(idA), undefined);
});

test('bad configurations and environments give the spec\'s error codes, only JSON on stdout', (t) => {
  if (!requireRoot(t)) return;
  const c = container('errs');
  const env = { CNI_CONTAINERID: idFor(c.name), CNI_NETNS: c.path };
  const cases: [string, ReturnType<typeof cni>, number][] = [
    ['unsupported version', cni('ADD', conf('9.9.9'), env), 1],
    ['isGateway', cni('ADD', conf('1.0.0', { isGateway: true }), env), 2],
    ['bad subnet', cni('ADD', conf('1.0.0', { ipam: { subnet: '10.40.1.0/33' } }), env), 7],
    ['missing CNI_NETNS', cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: env.CNI_CONTAINERID }), 4],
    ['missing CNI_CONTAINERID', cni('ADD', conf('1.0.0'), { CNI_NETNS: c.path }), 4],
    ['bad CNI_IFNAME', cni('ADD', conf('1.0.0'), { ...env, CNI_IFNAME: 'a/b' }), 4],
    ['unknown command', cni('FROB', conf('1.0.0'), env), 4],
    ['netns does not exist', cni('ADD', conf('1.0.0'), { ...env, CNI_NETNS: `/run/netns/${prefix}-absent` }), 3],
  ];
  for (const [what, r, code] of cases) {
    assert.equal(r.code, 1, `${what}: exit code`);
    assert.ok(r.json, `${what}: stdout is one JSON document: ${r.stdout}`);
    assert.equal(r.json!.code, code, `${what}: ${r.stdout}`);
    assert.equal(typeof r.json!.msg, 'string');
    assert.ok(r.json!.cniVersion);
  }
  const bad = h.ns.run(join(h.env.WEAVE_CNI_PLUGIN_DIR!, 'weave-net'), [], { input: '{not json', env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', ...env, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' } });
  assert.equal(JSON.parse(bad.stdout).code, 6);
  assert.equal(hostVeth(env.CNI_CONTAINERID), undefined, 'failed ADDs leave no veth');
});

test('CHECK, STATUS and GC', async (t) => {
  if (!requireRoot(t)) return;
  const c = container('check');
  const id = idFor(c.name);
  const add = cni('ADD', conf('1.1.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
  assert.equal(add.code, 0, add.stderr);
  const chk = cni('CHECK', conf('1.1.0', { prevResult: add.json }), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
  assert.equal(chk.stdout, '');
  c.ip('link', 'del', 'eth0');
  const chk2 = cni('CHECK', conf('1.1.0', { prevResult: add.json }), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
  assert.equal(chk2.code, 1);
  assert.equal(cni('STATUS', conf('1.1.0'), {}).code, 0);
  // GC: everything of this network not in the valid list goes (its address and its veth).
  const keep = container('gckeep');
  const keepId = idFor(keep.name);
  assert.equal(cni('ADD', conf('1.1.0'), { CNI_CONTAINERID: keepId, CNI_NETNS: keep.path }).code, 0);
  const valid = (await h.client.call('GET', '/ip', 'ip'));
  const owned = (JSON.parse(valid) as { owned: { containerid: string }[] }).owned.map((o) => o.containerid).filter((x) => x !== 'weave:expose' && x !== id);
  const gc = cni('GC', conf('1.1.0', { 'cni.dev/attachments': owned.map((x) => ({ containerID: x, ifname: 'eth0' })) }), {});
  assert.equal(gc.code, 0, gc.stdout + gc.stderr);
  assert.deepEqual(await h.client.lookup(id), []);
  assert.equal((await h.client.lookup(keepId)).length, 1);
});

test('delegated IPAM (host-local) through CNI_PATH', (t) => {
  if (!requireRoot(t)) return;
  const c = container('hl');
  const id = idFor(c.name);
  const dir = join(h.dir, 'host-local');
  const cfg = conf('1.0.0', { ipam: { type: 'host-local', subnet: '10.40.9.0/24', gateway: '10.32.0.1', dataDir: dir, routes: [{ dst: '0.0.0.0/0' }] } });
  const r = cni('ADD', cfg, { CNI_CONTAINERID: id, CNI_NETNS: c.path });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(addrOf(c).ip, /^10\.40\.9\./);
  assert.equal(cni('DEL', cfg, { CNI_CONTAINERID: id, CNI_NETNS: c.path }).code, 0);
  assert.equal(hostVeth(id), undefined);
});

test('after a router restart the address stays with its container and is not handed out again', async (t) => {
  if (!requireRoot(t)) return;
  const c = container('keep');
  const id = idFor(c.name);
  assert.equal(cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path }).code, 0);
  const ip = addrOf(c).ip;
  await h.stopWeaver('SIGKILL');
  await h.startWeaver({ name: '7a:00:00:00:00:21', nickname: 'cnihost' });
  assert.equal(await h.client.call('GET', `/ip/${id}`, 'lookup'), `${ip}/12\n`);
  const n = container('after');
  assert.equal(cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: idFor(n.name), CNI_NETNS: n.path }).code, 0);
  assert.notEqual(addrOf(n).ip, ip);
  assert.equal(c.run('ping', ['-c', '1', '-W', '2', addrOf(n).ip]).code, 0);
});

test('the installed plugin goes through the router (token-checked) and works without it too', async (t) => {
  if (!requireRoot(t)) return;
  const denied = await h.client.request('POST', '/cni/net', { headers: { 'x-weave-cni-token': 'wrong' } });
  assert.equal(denied.status, 403);
  const tokenFile = join(h.env.WEAVE_RUN_DIR!, 'cni.token');
  assert.equal((statSync(tokenFile).mode & 0o777).toString(8), '600');
  // Without a readable token the front end runs the standalone plugin: same result shape.
  const saved = readFileSync(tokenFile);
  rmSync(tokenFile);
  try {
    const c = container('standalone');
    const r = cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: idFor(c.name), CNI_NETNS: c.path });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(addrOf(c).ip, /^10\.3[2-9]\./);
    assert.equal(cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: idFor(c.name), CNI_NETNS: c.path }).code, 0);
  } finally {
    writeFileSync(tokenFile, saved, { mode: 0o600 });
  }
});

test('an ADD whose caller gave up (the runtime killed the plugin) is cancelled and undone: nothing stays attached or held', async (t) => {
  if (!requireRoot(t)) return;
  // A subnet of two addresses, both taken: the ADD waits for one.
  const subnet = '10.32.200.0/30';
  for (const f of ['filler1', 'filler2']) await h.client.call('POST', `/ip/${f}/${subnet}`, 'fill');
  const c = container('gaveup');
  const id = idFor(c.name);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0', CNI_PATH: `${h.env.WEAVE_CNI_PLUGIN_DIR}:/usr/lib/cni`, CNI_CONTAINERID: id, CNI_NETNS: c.path };
  const add = spawn('nsenter', [`--net=${h.ns.path}`, '--', join(h.env.WEAVE_CNI_PLUGIN_DIR!, 'weave-net')], { env, stdio: ['pipe', 'ignore', 'ignore'] });
  add.stdin.end(JSON.stringify(conf('1.0.0', { ipam: { subnet } })));
  const pending = async () => (await h.client.call('GET', `/report?format=${encodeURIComponent('{{range .IPAM.PendingAllocates}}{{.}};{{end}}')}`, 'report')).includes(id);
  await eventually(async () => (await pending()) || undefined, 10_000, 'the ADD waiting for an address');
  // The runtime's timeout kills the plugin; the router's allocation for it goes with it.
  add.kill('SIGKILL');
  await new Promise((r) => add.once('exit', r));
  await eventually(async () => !(await pending()) || undefined, 10_000, 'the waiting allocation cancelled');
  assert.equal(cni('DEL', conf('1.0.0', { ipam: { subnet } }), { CNI_CONTAINERID: id, CNI_NETNS: c.path }).code, 0);
  // Space again: an allocation still waiting would take it now and attach the container.
  await h.client.call('DELETE', '/ip/filler1', 'free');
  assert.notEqual(c.run('ip', ['link', 'show', 'eth0']).code, 0, 'the container was attached after its ADD was given up');
  assert.equal(hostVeth(id), undefined);
  assert.deepEqual(await h.client.lookup(id), []);
  await h.client.call('DELETE', '/ip/filler2', 'free');
});

test('ADD with the router stopped fails with code 11 within the bound, naming the router', async (t) => {
  if (!requireRoot(t)) return;
  await h.stopWeaver();
  const c = container('down');
  const started = Date.now();
  const r = cni('ADD', conf('1.0.0', { routerWaitMs: 1500 }), { CNI_CONTAINERID: idFor(c.name), CNI_NETNS: c.path });
  const took = Date.now() - started;
  assert.equal(r.code, 1);
  assert.equal(r.json!.code, 11, r.stdout);
  assert.match(String(r.json!.msg) + String(r.json!.details ?? ''), /127\.0\.0\.1:6784/);
  assert.ok(took >= 1400 && took < 6000, `took ${took} ms`);
  assert.equal(hostVeth(idFor(c.name)), undefined);
  await h.startWeaver({ name: '7a:00:00:00:00:21', nickname: 'cnihost' });
});

test('soak: 500 ADD/DEL cycles chained with portmap leave no veth, address or iptables rule', async (t) => {
  if (!requireRoot(t)) return;
  const c = container('soak');
  const snapshot = () => {
    const links = JSON.parse(h.ns.ip('-j', 'link', 'show')).map((l: { ifname: string }) => l.ifname).sort();
    const rules = h.ns.must('iptables-save', []).split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':')).sort();
    return { links, rules };
  };
  // portmap's top-level chains appear with its first use and stay (CNI-HOSTPORT-*): create them first.
  const warm = idFor('soak-warm');
  const pm = { cniVersion: '1.0.0', name: 'weave', type: 'portmap', capabilities: { portMappings: true }, snat: true, runtimeConfig: { portMappings: [{ hostPort: 18089, containerPort: 80, protocol: 'tcp' }] } };
  const cycle = (id: string) => {
    const add = cni('ADD', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const p = cni('ADD', { ...pm, prevResult: add.json }, { CNI_CONTAINERID: id, CNI_NETNS: c.path }, 'portmap');
    assert.equal(p.code, 0, p.stdout + p.stderr);
    assert.equal(cni('DEL', { ...pm, prevResult: add.json }, { CNI_CONTAINERID: id, CNI_NETNS: c.path }, 'portmap').code, 0);
    const del = cni('DEL', conf('1.0.0'), { CNI_CONTAINERID: id, CNI_NETNS: c.path });
    assert.equal(del.code, 0, del.stdout + del.stderr);
  };
  cycle(warm);
  const before = snapshot();
  const ownedBefore = await h.client.call('GET', '/ip', 'ip');
  for (let i = 0; i < 500; i++) cycle(idFor(`soak${i}`));
  assert.deepEqual(snapshot(), before);
  assert.equal(await h.client.call('GET', '/ip', 'ip'), ownedBefore);
  assert.equal(c.run('ip', ['link', 'show', 'eth0']).code, 1);
});
