#!/usr/bin/env node
// The quick-start demo, on this one machine: a host made of a network namespace runs a weave
// router; two containers (namespaces) are attached through the CNI plugin exactly as a
// runtime would call it (chained with Debian's portmap); they ping each other and the bridge;
// `weave status` is printed; then everything is removed again, also when a step fails.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tag = `wd${process.pid % 10000}`;
const host = `${tag}-host1`;
const containers = [`${tag}-c1`, `${tag}-c2`];
const work = mkdtempSync(join(tmpdir(), 'weave-demo-'));
const env = {
  ...process.env,
  WEAVE_DATA_DIR: join(work, 'data'),
  WEAVE_RUN_DIR: join(work, 'run'),
  WEAVE_LOG_FILE: join(work, 'weaver.log'),
  WEAVE_CNI_CONF_DIR: join(work, 'net.d'),
  WEAVE_CNI_PLUGIN_DIR: join(work, 'cni-bin'),
};

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, ...opts });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return r.stdout ?? '';
}
const inHost = (cmd, args, opts) => run('nsenter', [`--net=/run/netns/${host}`, '--', cmd, ...args], opts);
const weave = (...args) => inHost(process.execPath, [join(root, 'bin/weave.js'), ...args]);
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
  step(`host ${host}: a network namespace with its own weave router`);
  run('ip', ['netns', 'add', host]);
  inHost('ip', ['link', 'set', 'lo', 'up']);
  inHost(process.execPath, [join(root, 'bin/weave.js'), 'setup', '--create-dirs'], { stdio: ['ignore', 'inherit', 'inherit'] });
  console.log(`router pid ${weave('launch', '--name', '7a:00:00:00:00:01', '--nickname', 'demo-host1').trim()}`);

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

  step('weave status');
  console.log(weave('status'));
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
  for (const n of [...containers, host]) spawnSync('ip', ['netns', 'del', n]);
  rmSync(work, { recursive: true, force: true });
  console.log(failed ? 'demo FAILED' : 'demo done: everything removed');
}
process.exit(failed ? 1 : 0);
