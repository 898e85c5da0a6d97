// The weave CLI on one host: launch/stop/reset with the pid file, status and report output,
// expose/hide, attach/detach of a network namespace, ps, setup.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostVethName } from '../../src/platform/container-link.js';
import { Netns, WeaveHost, bin, eventually, requireRoot, uniquePrefix } from '../helpers/netns.js';

const prefix = uniquePrefix();
let h: WeaveHost;
const extra: Netns[] = [];

before(() => {
  if (process.getuid?.() !== 0) return;
  h = new WeaveHost(prefix, 'cli');
});
after(async () => {
  if (!h) return;
  h.weave(['reset', '--force']);
  for (const n of extra) n.destroy();
  await h.destroy();
});

test('launch starts weaver in the background and refuses a second one', (t) => {
  if (!requireRoot(t)) return;
  const r = h.weave(['launch', '--name', '7a:00:00:00:00:0a', '--nickname', 'clihost']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^[0-9]+\n$/);
  const pidFile = join(h.env.WEAVE_RUN_DIR!, 'weaver.pid');
  assert.equal(readFileSync(pidFile, 'utf8').trim(), r.stdout.trim());
  assert.ok(existsSync(h.env.WEAVE_LOG_FILE!));
  const again = h.weave(['launch']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already running/);
  // A second weaver started by hand refuses before touching anything: the first keeps its pid
  // file, its fast path device and its API.
  const second = h.ns.run(process.execPath, [bin('weaver'), '--name', '7a:00:00:00:00:0b'], { env: h.env, timeoutMs: 20_000 });
  assert.equal(second.code, 1, second.stderr);
  assert.match(second.stderr, /already running \(pid \d+/);
  assert.equal(readFileSync(pidFile, 'utf8').trim(), r.stdout.trim());
  assert.equal(h.ns.run('ip', ['link', 'show', 'vxlan-6784']).code, 0);
  assert.equal(h.weave(['status']).code, 0);
});

test('status and report print what the router serves', (t) => {
  if (!requireRoot(t)) return;
  const s = h.weave(['status']);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /^\n        Version: .*\n\n        Service: router\n/);
  assert.match(s.stdout, /           Name: 7a:00:00:00:00:0a\(clihost\)\n/);
  assert.match(s.stdout, /\n\n$/);
  assert.equal(h.weave(['status', 'targets']).stdout, '');
  const bad = h.weave(['status', 'bogus']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /Invalid 'weave status' sub-command: bogus/);
  assert.equal(h.weave(['report', '-f', '{{.Router.NickName}}']).stdout, 'clihost');
  assert.equal(JSON.parse(h.weave(['report']).stdout).Router.Name, '7a:00:00:00:00:0a');
  assert.match(h.weave(['version']).stdout, /^weave script \S+\nweave \S+\n$/);
});

test('expose, attach a namespace, ps, ping, detach, hide', (t) => {
  if (!requireRoot(t)) return;
  const e = h.weave(['expose']);
  assert.equal(e.code, 0, e.stderr);
  assert.equal(e.stdout, '10.32.0.1\n');
  const c = new Netns(`${prefix}-c1`);
  extra.push(c);
  const a = h.weave(['attach', c.path]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, '10.32.0.2\n');
  const link = JSON.parse(c.ip('-j', 'addr', 'show', 'dev', 'ethwe'))[0];
  assert.equal(link.addr_info.find((x: { family: string }) => x.family === 'inet').local, '10.32.0.2');
  assert.match(c.ip('route', 'show'), /224\.0\.0\.0\/4 dev ethwe/);
  assert.equal(c.run('ping', ['-c', '1', '-W', '2', '10.32.0.1']).code, 0);
  const ps = h.weave(['ps']).stdout;
  assert.match(ps, /^weave:expose 7a:00:00:00:00:0a 10\.32\.0\.1\/12\n/);
  const mac = JSON.parse(c.ip('-j', 'link', 'show', 'dev', 'ethwe'))[0].address as string;
  assert.match(ps, new RegExp(`^${c.name.slice(0, 12)} ${mac} 10\\.32\\.0\\.2/12$`, 'm'));
  const d = h.weave(['detach', c.path]);
  assert.equal(d.code, 0, d.stderr);
  assert.equal(d.stdout, '10.32.0.2\n');
  assert.notEqual(c.run('ip', ['link', 'show', 'ethwe']).code, 0);
  const hd = h.weave(['hide']);
  assert.equal(hd.stdout, '10.32.0.1\n');
  assert.doesNotMatch(h.ns.ip('addr', 'show', 'dev', 'weave'), /10\.32\.0\.1/);
});

test('ps reads MACs from the container; detach keeps an interface another ident uses; a failed attach takes no address', (t) => {
  if (!requireRoot(t)) return;
  const c = new Netns(`${prefix}-c2`);
  extra.push(c);
  const a = h.weave(['attach', '--id', 'identA', '198.51.100.11/24', c.path]);
  assert.equal(a.code, 0, a.stderr);
  const b = h.weave(['attach', '--id', 'identB', '198.51.100.12/24', c.path]);
  assert.equal(b.code, 0, b.stderr);
  // The bridge forgets a silent container's MAC after 300 s: ps must not depend on it.
  const mac = JSON.parse(c.ip('-j', 'link', 'show', 'dev', 'ethwe'))[0].address as string;
  h.ns.run('bridge', ['fdb', 'del', mac, 'dev', hostVethName('identA', 'ethwe'), 'master']);
  const ps = h.weave(['ps']).stdout;
  assert.match(ps, new RegExp(`^identA ${mac} 198\\.51\\.100\\.11/24$`, 'm'));
  assert.match(ps, new RegExp(`^identB ${mac} 198\\.51\\.100\\.12/24$`, 'm'));
  // As the original: the interface goes only with its last IPv4 address.
  const d = h.weave(['detach', '--id', 'identB', c.path]);
  assert.equal(d.code, 0, d.stderr);
  assert.equal(d.stdout, '198.51.100.12\n');
  const left = JSON.parse(c.ip('-j', 'addr', 'show', 'dev', 'ethwe'))[0].addr_info.filter((x: { family: string }) => x.family === 'inet');
  assert.deepEqual(left.map((x: { local: string }) => x.local), ['198.51.100.11']);
  assert.equal(h.weave(['detach', '--id', 'identA', c.path]).stdout, '198.51.100.11\n');
  assert.notEqual(c.run('ip', ['link', 'show', 'ethwe']).code, 0);
  const gone = h.weave(['attach', '198.51.100.13/24', `/run/netns/${prefix}-nope`]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /does not exist/);
  assert.doesNotMatch(h.weave(['ps']).stdout, /nope|identA|identB/);
});

test('setup installs the plugins and the conflist; stop and reset clean up', async (t) => {
  if (!requireRoot(t)) return;
  const s = h.weave(['setup', '--create-dirs']);
  assert.equal(s.code, 0, s.stderr);
  const conf = JSON.parse(readFileSync(join(h.env.WEAVE_CNI_CONF_DIR!, '10-weave.conflist'), 'utf8'));
  assert.equal(conf.plugins[0].type, 'weave-net');
  assert.deepEqual(conf.plugins[1], { type: 'portmap', capabilities: { portMappings: true }, snat: true });
  const ver = h.ns.run(join(h.env.WEAVE_CNI_PLUGIN_DIR!, 'weave-net'), [], { input: '{"cniVersion":"1.0.0"}', env: { ...h.env, CNI_COMMAND: 'VERSION' } });
  assert.equal(ver.code, 0, ver.stderr);
  assert.ok(JSON.parse(ver.stdout).supportedVersions.includes('1.1.0'));
  assert.equal(h.weave(['stop']).code, 0);
  await eventually(() => h.weave(['status']).code === 1, 5000, 'router stopped');
  assert.match(h.weave(['status']).stderr, /weave is not running/);
  // Another overlay's VXLAN device on the host is not ours to remove; a fast path device left
  // behind (a router killed, a reset that stopped halfway) is.
  h.ns.must('ip', ['link', 'add', 'vxlan-100', 'type', 'vxlan', 'id', '100', 'dstport', '4789', 'local', '127.0.0.1']);
  h.ns.must('ip', ['link', 'add', 'vxlan-6784', 'type', 'vxlan', 'id', '101', 'dstport', '6784', 'local', '127.0.0.1']);
  assert.equal(h.weave(['reset']).code, 0);
  assert.notEqual(h.ns.run('ip', ['link', 'show', 'vxlan-6784']).code, 0);
  assert.equal(h.ns.run('ip', ['link', 'show', 'vxlan-100']).code, 0, 'a vxlan device of someone else stays');
  h.ns.must('ip', ['link', 'del', 'vxlan-100']);
  assert.notEqual(h.ns.run('ip', ['link', 'show', 'weave']).code, 0);
  assert.notEqual(h.ns.run('iptables', ['-t', 'nat', '-S', 'WEAVE']).code, 0);
  assert.doesNotMatch(h.ns.must('iptables', ['-S', 'FORWARD']), /weave/);
  assert.doesNotMatch(h.ns.must('iptables', ['-S', 'INPUT']), /Weave Net control port/);
  assert.ok(!existsSync(join(h.env.WEAVE_DATA_DIR!, 'weave.db')));
});

test('without IPAM (--ipalloc-range ""): explicit addresses, ps, detach and hide work from the kernel', async (t) => {
  if (!requireRoot(t)) return;
  const l = h.weave(['launch', '--name', '7a:00:00:00:00:0a', '--ipalloc-range', '']);
  assert.equal(l.code, 0, l.stderr);
  const c = new Netns(`${prefix}-c3`);
  extra.push(c);
  // Allocation without IPAM (plain `expose`) is refused: the unit tests check that.
  assert.equal(h.weave(['expose', '198.51.100.1/24']).stdout, '198.51.100.1\n');
  const a = h.weave(['attach', '198.51.100.5/24', c.path]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, '198.51.100.5\n');
  const mac = JSON.parse(c.ip('-j', 'link', 'show', 'dev', 'ethwe'))[0].address as string;
  assert.equal(h.weave(['ps']).stdout, `weave:expose 7a:00:00:00:00:0a 198.51.100.1/24\n${c.name.slice(0, 12)} ${mac} 198.51.100.5/24\n`);
  assert.equal(h.weave(['detach', c.path]).stdout, '198.51.100.5\n');
  assert.notEqual(c.run('ip', ['link', 'show', 'ethwe']).code, 0);
  assert.equal(h.weave(['hide']).stdout, '198.51.100.1\n');
  assert.doesNotMatch(h.ns.ip('addr', 'show', 'dev', 'weave'), /198\.51\.100\.1/);
});
