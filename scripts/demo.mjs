#!/usr/bin/env node
// The quick-start demo, on this one machine: two hosts made of network namespaces, joined by
// an underlay bridge, each run a weave router; the second is launched with the first as its
// peer and the two form a mesh (Weave Net protocol 2). Two containers (namespaces) on the
// first host are attached through the CNI plugin exactly as a runtime calls it (chained with
// Debian's portmap); they ping each other and the bridge; `weave status` is printed; then
// everything is removed again, also when a step fails. (Containers on different hosts talk
// once the data plane exists; this version connects the routers only.)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tag = `wd${process.pid % 10000}`;
const host = `${tag}-host1`;
const host2 = `${tag}-host2`;
const underlay = `${tag}-u`;
const containers = [`${tag}-c1`, `${tag}-c2`];
const work = mkdtempSync(join(tmpdir(), 'weave-demo-'));
const envFor = (dir) => ({
  ...process.env,
  WEAVE_DATA_DIR: join(dir, 'data'),
  WEAVE_RUN_DIR: join(dir, 'run'),
  WEAVE_LOG_FILE: join(dir, 'weaver.log'),
  WEAVE_CNI_CONF_DIR: join(dir, 'net.d'),
  WEAVE_CNI_PLUGIN_DIR: join(dir, 'cni-bin'),
});
const env = envFor(join(work, 'host1'));
const env2 = envFor(join(work, 'host2'));

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, ...opts });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return r.stdout ?? '';
}
const inHost = (cmd, args, opts) => run('nsenter', [`--net=/run/netns/${host}`, '--', cmd, ...args], opts);
const weave = (...args) => inHost(process.execPath, [join(root, 'bin/weave.js'), ...args]);
const weave2 = (...args) =>
  run('nsenter', [`--net=/run/netns/${host2}`, '--', process.execPath, join(root, 'bin/weave.js'), ...args], { env: env2 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const step = (s) => console.log(`\n==> ${s}`);

function cni(command, container, i, prevResult) {
  const conflist = JSON.parse(readFileSync(join(env.WEAVE_CNI_CONF_DIR, '10-weave.conflist'), 'utf8'));
  const plugin = conflist.plugins[i];
  const conf = { ...plugin, cniVersion: conflist.cniVersion, name: conflist.name, ...(prevResult ? { prevResult } : {}) };
  const path = `${env.WEAVE_CNI_PLUGIN_DIR}:/usr/lib/cni`;
  const exe = plugin.type === 'portmap' ? '/usr/lib/cni/portmap' : join(env.WEAVE_CNI_PLUGIN_DIR, plugin.type);
  return inHost(exe, [], {
    input: JSON.stringify(conf),
    env: {
      ...env, CNI_COMMAND: command, CNI_CONTAINERID: `demo-${container}`, CNI_NETNS: `/run/netns/${container}`,
      CNI_IFNAME: 'eth0', CNI_PATH: path,
    },
  });
}

let failed = false;
try {
  if (process.getuid() !== 0) throw new Error('the demo creates network namespaces: run it as root');
  step(`hosts ${host} and ${host2}: network namespaces on an underlay bridge (192.0.2.0/24)`);
  run('ip', ['netns', 'add', underlay]);
  run('ip', ['-n', underlay, 'link', 'add', 'br0', 'type', 'bridge']);
  run('ip', ['-n', underlay, 'link', 'set', 'br0', 'up']);
  for (const [i, h] of [[1, host], [2, host2]]) {
    run('ip', ['netns', 'add', h]);
    run('ip', ['-n', h, 'link', 'set', 'lo', 'up']);
    run('ip', ['link', 'add', `${tag}e${i}`, 'netns', h, 'type', 'veth', 'peer', 'name', `u${i}`, 'netns', underlay]);
    run('ip', ['-n', h, 'link', 'set', `${tag}e${i}`, 'name', 'eth0']);
    run('ip', ['-n', h, 'addr', 'add', `192.0.2.${i}/24`, 'dev', 'eth0']);
    run('ip', ['-n', h, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', underlay, 'link', 'set', `u${i}`, 'master', 'br0', 'up']);
  }
  inHost(process.execPath, [join(root, 'bin/weave.js'), 'setup', '--create-dirs'], { stdio: ['ignore', 'inherit', 'inherit'] });
  console.log(`router pid ${weave('launch', '--name', '7a:00:00:00:00:01', '--nickname', 'demo-host1').trim()}`);
  // Each host allocates from its own default subnet until IPAM is shared across the mesh.
  console.log(`router pid ${weave2('launch', '--name', '7a:00:00:00:00:02', '--nickname', 'demo-host2', '--ipalloc-default-subnet', '10.40.0.0/16', '192.0.2.1').trim()} (peer: 192.0.2.1)`);
  for (let i = 0; i < 100 && !/established/.test(weave('status', 'connections')); i++) await sleep(100);

  step('two containers attached through the CNI plugin (weave-net, then portmap)');
  const ips = [];
  let gateway = '';
  for (const c of containers) {
    run('ip', ['netns', 'add', c]);
    run('ip', ['-n', c, 'link', 'set', 'lo', 'up']);
    const result = JSON.parse(cni('ADD', c, 0));
    cni('ADD', c, 1, result);
    const ip = result.ips[0].address.split('/')[0];
    ips.push(ip);
    gateway = result.ips[0].gateway;
    console.log(`${c}: ${result.ips[0].address} via ${result.ips[0].gateway} (interface ${result.interfaces[1].name}, mac ${result.interfaces[1].mac})`);
  }

  step(`ping ${containers[0]} -> ${containers[1]} (${ips[1]}), and ${containers[1]} -> the bridge (${gateway})`);
  console.log(run('ip', ['netns', 'exec', containers[0], 'ping', '-c', '3', '-i', '0.2', '-W', '2', ips[1]]).trim());
  console.log(run('ip', ['netns', 'exec', containers[1], 'ping', '-c', '1', '-W', '2', gateway]).trim().split('\n').slice(-2).join('\n'));

  step('weave status (host1), weave status connections and peers (host2)');
  console.log(weave('status'));
  console.log(weave2('status', 'connections') + weave2('status', 'peers'));
  step('weave status ipam / weave ps');
  console.log(weave('status', 'ipam') + weave('ps'));

  step('CNI DEL for both containers');
  for (const c of containers) {
    cni('DEL', c, 1, undefined);
    cni('DEL', c, 0, undefined);
  }
  console.log(weave('ps'));
} catch (e) {
  failed = true;
  console.error(`demo failed: ${e.message}`);
} finally {
  step('cleaning up');
  spawnSync('nsenter', [`--net=/run/netns/${host}`, '--', process.execPath, join(root, 'bin/weave.js'), 'reset', '--force'], { env, stdio: 'inherit' });
  spawnSync('nsenter', [`--net=/run/netns/${host2}`, '--', process.execPath, join(root, 'bin/weave.js'), 'reset', '--force'], { env: env2, stdio: 'inherit' });
  for (const n of [...containers, host, host2, underlay]) spawnSync('ip', ['netns', 'del', n]);
  rmSync(work, { recursive: true, force: true });
  console.log(failed ? 'demo FAILED' : 'demo done: everything removed');
}
process.exit(failed ? 1 : 0);
