#!/usr/bin/env node
// The quick-start demo, on this one machine: two hosts made of network namespaces, joined by
// an underlay bridge, each run a weave router; the second is launched with the first as its
// peer and the two form a mesh (Weave Net protocol 2) sharing one address range. A container
// (namespace) on each host is attached through the CNI plugin exactly as a runtime calls it
// (chained with Debian's portmap); they get addresses from the shared range and ping each other
// across the hosts, and the bridge; `weave status` is printed; then everything is removed
// again, also when a step fails.
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
const inHost2 = (cmd, args, opts) => run('nsenter', [`--net=/run/netns/${host2}`, '--', cmd, ...args], { env: env2, ...opts });
const weave = (...args) => inHost(process.execPath, [join(root, 'bin/weave.js'), ...args]);
const weave2 = (...args) =>
  run('nsenter', [`--net=/run/netns/${host2}`, '--', process.execPath, join(root, 'bin/weave.js'), ...args], { env: env2 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const step = (s) => console.log(`\n==> ${s}`);

/** Runs plugin i of the conflist for a container on host h (0: host1, 1: host2) as a runtime does. */
function cni(command, container, h, i, prevResult) {
  const e = h === 0 ? env : env2;
  const conflist = JSON.parse(readFileSync(join(e.WEAVE_CNI_CONF_DIR, '10-weave.conflist'), 'utf8'));
  const plugin = conflist.plugins[i];
  const conf = { ...plugin, cniVersion: conflist.cniVersion, name: conflist.name, ...(prevResult ? { prevResult } : {}) };
  const path = `${e.WEAVE_CNI_PLUGIN_DIR}:/usr/lib/cni`;
  const exe = plugin.type === 'portmap' ? '/usr/lib/cni/portmap' : join(e.WEAVE_CNI_PLUGIN_DIR, plugin.type);
  return (h === 0 ? inHost : inHost2)(exe, [], {
    input: JSON.stringify(conf),
    env: {
      ...e, CNI_COMMAND: command, CNI_CONTAINERID: `demo-${container}`, CNI_NETNS: `/run/netns/${container}`,
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
  for (const h of [inHost, inHost2]) h(process.execPath, [join(root, 'bin/weave.js'), 'setup', '--create-dirs'], { stdio: ['ignore', 'inherit', 'inherit'] });
  console.log(`router pid ${weave('launch', '--name', '7a:00:00:00:00:01', '--nickname', 'demo-host1').trim()}`);
  console.log(`router pid ${weave2('launch', '--name', '7a:00:00:00:00:02', '--nickname', 'demo-host2', '192.0.2.1').trim()} (peer: 192.0.2.1)`);
  for (let i = 0; i < 100 && !/established/.test(weave('status', 'connections')); i++) await sleep(100);

  step('a container on each host, attached through the CNI plugin (weave-net, then portmap)');
  const ips = [];
  let gateway = '';
  for (const [h, c] of containers.entries()) {
    run('ip', ['netns', 'add', c]);
    run('ip', ['-n', c, 'link', 'set', 'lo', 'up']);
    const result = JSON.parse(cni('ADD', c, h, 0));
    cni('ADD', c, h, 1, result);
    const ip = result.ips[0].address.split('/')[0];
    ips.push(ip);
    gateway = result.ips[0].gateway;
    console.log(`${c} on host${h + 1}: ${result.ips[0].address} via ${result.ips[0].gateway} (interface ${result.interfaces[1].name}, mac ${result.interfaces[1].mac})`);
  }

  step(`ping across the hosts ${containers[0]} -> ${containers[1]} (${ips[1]}), and ${containers[1]} -> its bridge (${gateway})`);
  // The first packets may wait for the routers to learn where the other container is.
  let pinged = '';
  for (let i = 0; i < 10 && !pinged; i++) {
    const r = spawnSync('ip', ['netns', 'exec', containers[0], 'ping', '-c', '3', '-i', '0.2', '-W', '2', ips[1]], { encoding: 'utf8' });
    if (r.status === 0) pinged = r.stdout;
    else await sleep(500);
  }
  if (!pinged) throw new Error(`${containers[0]} cannot reach ${ips[1]} on the other host`);
  console.log(pinged.trim());
  console.log(run('ip', ['netns', 'exec', containers[1], 'ping', '-c', '1', '-W', '2', gateway]).trim().split('\n').slice(-2).join('\n'));

  step('weave status (host1), weave status connections and peers (host2)');
  console.log(weave('status'));
  console.log(weave2('status', 'connections') + weave2('status', 'peers'));
  step('weave status ipam (the range shared by both hosts) / weave ps on each host');
  console.log(weave('status', 'ipam') + weave('ps') + weave2('ps'));

  step('CNI DEL for both containers');
  for (const [h, c] of containers.entries()) {
    cni('DEL', c, h, 1, undefined);
    cni('DEL', c, h, 0, undefined);
  }
  console.log(weave('ps') + weave2('ps'));
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
