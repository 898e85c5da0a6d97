// Real container runtimes drive the installed CNI plugin (`weave setup`): podman 4 with its
// CNI backend (weave-net chained with Debian's portmap: address, default route via the
// bridge, hostPort DNAT, DEL on rm -f and on --rm cleanup from conmon's process) and
// containerd 1.6 `ctr run --cni` (DEL with an empty CNI_NETNS). Both run inside the host
// namespace where weaver listens, isolated from the machine's runtime configuration.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WeaveHost, eventually, requireRoot, uniquePrefix, type RunResult } from '../helpers/netns.js';
import {
  Containerd,
  Podman,
  SystemPaths,
  buildBusyboxRootfs,
  cgroupExists,
  removeCgroupTree,
  removeTempDir,
  writeBusyboxOciArchive,
} from '../helpers/runtimes.js';

const prefix = uniquePrefix();
const hosts: WeaveHost[] = [];
const paths = new SystemPaths();
const podmanCgroup = `${prefix}-podman`;
const ctrCgroup = `${prefix}-ctr`;
let dir: string | undefined;
let pod: WeaveHost;
let podman: Podman | undefined;
let rootfs: string;
let containerd: Containerd | undefined;

const RUN_SHOW = ['/bin/sh', '-c', 'ip -4 addr show eth0; ip route'];

interface Owned {
  containerid: string;
  addrs: string[];
}

async function owned(h: WeaveHost): Promise<Owned[]> {
  return (JSON.parse(await h.client.call('GET', '/ip', 'ip')) as { owned?: Owned[] }).owned ?? [];
}

function bridgeIp(h: WeaveHost): string {
  const link = JSON.parse(h.ns.ip('-j', 'addr', 'show', 'dev', 'weave'))[0] as { addr_info: { family: string; local: string }[] };
  const a = link.addr_info.find((x) => x.family === 'inet');
  assert.ok(a, 'the bridge has an IPv4 address');
  return a.local;
}

function hostVeths(h: WeaveHost): string[] {
  return (JSON.parse(h.ns.ip('-j', 'link', 'show')) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith('vethwepl'));
}

/** The eth0 address from `ip -4 addr show eth0`, checked to be in weave's 10.32.0.0/12. */
function weaveAddress(out: string): string {
  const m = /inet (10\.(\d+)\.\d+\.\d+)\/12 /.exec(out);
  assert.ok(m, `an address in 10.32.0.0/12 on eth0:\n${out}`);
  assert.ok(Number(m[2]) >= 32 && Number(m[2]) <= 47, `${m[1]} is in 10.32.0.0/12`);
  return m[1]!;
}

function ok(r: RunResult, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  // Runtime state the runtimes keep at fixed machine paths (libcni's result cache, runc).
  paths.remember(['/var/lib/cni/results', '/var/lib/cni', '/run/runc', '/var/lib/containers', '/run/containers']);
  dir = mkdtempSync(join(tmpdir(), `${prefix}-runtimes-`));
  pod = new WeaveHost(prefix, 'pod');
  hosts.push(pod);
  await pod.startWeaver({ name: '7a:00:00:00:00:31', nickname: 'podhost' });
  ok(pod.weave(['setup', '--create-dirs']), 'weave setup');
  rootfs = buildBusyboxRootfs(join(dir, 'rootfs'));
  podman = new Podman({
    netnsPath: pod.ns.path,
    dir: join(dir, 'podman'),
    cniPluginDir: pod.env.WEAVE_CNI_PLUGIN_DIR!,
    cniConfDir: pod.env.WEAVE_CNI_CONF_DIR!,
    cgroupParent: podmanCgroup,
  });
});

after(async () => {
  const problems: string[] = [];
  if (podman) {
    const r = podman.run(['rm', '-af', '-t', '0']);
    if (r.code !== 0) problems.push(`podman rm -af: ${r.stderr}`);
  }
  await removeCgroupTree(podmanCgroup);
  if (containerd) await containerd.stop();
  await removeCgroupTree(ctrCgroup);
  for (const h of hosts) await h.destroy(); // the portmap chains live in the host's netns
  for (const cg of [podmanCgroup, ctrCgroup]) if (cgroupExists(cg)) problems.push(`cgroup ${cg} is still there`);
  problems.push(...paths.removeCreated());
  if (dir) removeTempDir(dir);
  if (problems.length > 0) throw new Error(`teardown: ${problems.join('; ')}`);
});

test('podman lists the weave network from the conflist weave setup wrote', (t) => {
  if (!requireRoot(t)) return;
  const names = ok(podman!.run(['network', 'ls', '--format', '{{.Name}}']), 'podman network ls').split('\n');
  assert.ok(names.includes('weave'), `weave in ${names.join(', ')}`);
});

test('podman run attaches to weave: address from the router, default route via the bridge', async (t) => {
  if (!requireRoot(t)) return;
  const out = ok(podman!.run(['run', '--rm', ...podman!.runFlags, '--network', 'weave', '--rootfs', rootfs, ...RUN_SHOW]), 'podman run');
  const ip = weaveAddress(out);
  const gw = bridgeIp(pod);
  assert.notEqual(ip, gw);
  assert.match(out, new RegExp(`^default via ${gw.replace(/\./g, '\\.')} dev eth0`, 'm'));
  await eventually(async () => !(await owned(pod)).some((o) => o.addrs.includes(`${ip}/12`)), 10_000, `${ip} released after podman run --rm`);
});

test('podman --rm: the cleanup DEL from conmon releases the address and the veth', async (t) => {
  if (!requireRoot(t)) return;
  // Detached, so the only DEL comes from `podman container cleanup` started by conmon (no test env).
  const stop = `stop-${prefix}`;
  const id = ok(
    podman!.run([
      'run', '-d', '--rm', ...podman!.runFlags, '--network', 'weave', '--rootfs', rootfs,
      '/bin/sh', '-c', `while [ ! -e /tmp/${stop} ]; do sleep 0.1; done`,
    ]),
    'podman run -d --rm',
  ).trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  const mine = (await owned(pod)).find((o) => o.containerid === id);
  assert.ok(mine, `the router holds an address for ${id}`);
  assert.equal(mine.addrs.length, 1);
  assert.equal(hostVeths(pod).length, 1, 'one host veth');
  writeFileSync(join(rootfs, 'tmp', stop), '');
  await eventually(async () => !(await owned(pod)).some((o) => o.containerid === id), 20_000, `the address of ${id.slice(0, 12)} released`);
  await eventually(() => hostVeths(pod).length === 0, 5000, 'host veth removed');
  assert.notEqual(podman!.run(['container', 'exists', id]).code, 0, 'the container is gone');
});

test('podman -p publishes a port through portmap; rm -f removes veth, address and DNAT', async (t) => {
  if (!requireRoot(t)) return;
  const name = `${prefix}-web`;
  const id = ok(
    podman!.run([
      'run', '-d', '--name', name, ...podman!.runFlags, '--network', 'weave', '-p', '18081:80', '--rootfs', rootfs,
      '/bin/sh', '-c', 'echo hello-weave > /tmp/index.html; exec httpd -f -p 80 -h /tmp',
    ]),
    'podman run -d -p',
  ).trim();
  const ip = ok(podman!.run(['inspect', '-f', '{{.NetworkSettings.Networks.weave.IPAddress}}', name]), 'podman inspect').trim();
  weaveAddress(`inet ${ip}/12 `);
  assert.deepEqual((await owned(pod)).find((o) => o.containerid === id)?.addrs, [`${ip}/12`]);
  const veths = hostVeths(pod);
  assert.deepEqual(veths, [`vethwepl${id.slice(0, 7)}`]);
  // busybox wget (its -T option crashes this busybox build; sh's timeout bounds it instead).
  const fetch = (url: string) => pod.ns.run('/bin/busybox', ['wget', '-qO-', url], { timeoutMs: 5000 });
  const direct = await eventually(() => {
    const r = fetch(`http://${ip}/index.html`);
    return r.code === 0 ? r : undefined;
  }, 10_000, `httpd at ${ip}`);
  assert.equal(direct!.stdout, 'hello-weave\n');
  const viaPortmap = fetch('http://127.0.0.1:18081/index.html');
  assert.equal(viaPortmap.code, 0, `portmap 127.0.0.1:18081 → ${ip}:80: ${viaPortmap.stderr}`);
  assert.equal(viaPortmap.stdout, 'hello-weave\n');
  const nat = pod.ns.must('iptables', ['-t', 'nat', '-S']);
  assert.match(nat, new RegExp(`-A CNI-HOSTPORT-DNAT .*id: \\\\"${id}\\\\".* -j CNI-DN-`));

  ok(podman!.run(['rm', '-f', '-t', '0', name]), 'podman rm -f');
  assert.deepEqual(hostVeths(pod), []);
  assert.ok(!(await owned(pod)).some((o) => o.containerid === id), 'the address is released');
  assert.doesNotMatch(pod.ns.must('iptables', ['-t', 'nat', '-S']), /-N CNI-DN-/, 'portmap removed the DNAT chain');
  assert.notEqual(fetch('http://127.0.0.1:18081/index.html').code, 0);
});

test('ctr run --cni: address and default route via the bridge; DEL with empty CNI_NETNS releases both', async (t) => {
  if (!requireRoot(t)) return;
  const h = new WeaveHost(prefix, 'ctr');
  hosts.push(h);
  await h.startWeaver({ name: '7a:00:00:00:00:32', nickname: 'ctrhost' });
  ok(h.weave(['setup', '--create-dirs']), 'weave setup');
  const cdir = join(dir!, 'containerd');
  mkdirSync(cdir, { recursive: true });
  containerd = new Containerd({
    netnsPath: h.ns.path,
    dir: cdir,
    cniPluginDir: h.env.WEAVE_CNI_PLUGIN_DIR!,
    cniConfDir: h.env.WEAVE_CNI_CONF_DIR!,
    cgroupParent: ctrCgroup,
    paths,
  });
  await containerd.start();
  const image = `docker.io/library/${prefix}-busybox:latest`;
  const archive = join(cdir, 'busybox-oci.tar');
  writeBusyboxOciArchive(mkdtempSync(join(cdir, 'oci-')), archive, image);
  ok(containerd.ctr(['images', 'import', archive]), 'ctr images import');

  // The container waits for a file in a bind-mounted dir, so the attachment can be seen live.
  const id = `${prefix}-c1`;
  const shared = join(cdir, 'shared');
  mkdirSync(shared);
  const [cmd, argv] = containerd.ctrCniArgv([
    'run', '--rm', '--cni', ...containerd.runFlags(id),
    '--mount', `type=bind,src=${shared},dst=/shared,options=rbind:rw`,
    image, id, '/bin/sh', '-c', 'ip -4 addr show eth0; ip route; while [ ! -e /shared/stop ]; do sleep 0.1; done',
  ]);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  try {
    const cniId = `default-${id}`;
    const entry = await eventually(async () => (await owned(h)).find((o) => o.containerid === cniId), 20_000, `an address for ${cniId}`).catch((e: Error) => {
      throw new Error(`${e.message}\nctr: ${stderr}${stdout}\ncontainerd: ${containerd!.log().slice(-3000)}`);
    });
    await eventually(() => /default via/.test(stdout), 10_000, 'the container printed its routes');
    assert.equal(hostVeths(h).length, 1, 'one host veth while it runs');
    const ip = weaveAddress(stdout);
    assert.deepEqual(entry!.addrs, [`${ip}/12`]);
    const gw = bridgeIp(h);
    assert.match(stdout, new RegExp(`^default via ${gw.replace(/\./g, '\\.')} dev eth0`, 'm'));
  } finally {
    writeFileSync(join(shared, 'stop'), '');
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await exited;
  clearTimeout(timer);
  assert.equal(code, 0, `ctr run: ${stderr}`);
  assert.ok(!(await owned(h)).some((o) => o.containerid === `default-${id}`), 'the address is released after ctr --rm');
  assert.deepEqual(hostVeths(h), []);
  assert.equal(containerd.ctr(['containers', 'ls', '-q']).stdout.trim(), '', 'ctr removed the container');
});
