// bench/cni: wall time of CNI ADD and DEL as a runtime sees it (exec + stdin → stdout), over
// many cycles, for weave-net (through `weave setup`'s installed wrapper, as kubelet/containerd
// run it) and, in the same run, the reference Go `bridge` plugin with `host-local` IPAM from
// Debian as the baseline; plus VERSION alone and `node -e 0`. Run as root:
//   node dist/bench/cni/run.js [cycles]       (default 300)
// It creates a host network namespace running weaver and a container namespace, and removes
// them afterwards. The driver loop runs inside the host namespace (as a runtime would).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { summarize, table } from '../lib/stats.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  // Runtimes pass their own environment; NODE_EXTRA_CA_CERTS would make every node start load a CA bundle.
  const env: NodeJS.ProcessEnv = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...extra };
  return env;
}

function time(cmd: string, args: string[], input: string, env: NodeJS.ProcessEnv): { ms: number; code: number; out: string; err: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { input, env, encoding: 'utf8' });
  return { ms: performance.now() - t0, code: r.status ?? 1, out: r.stdout, err: r.stderr };
}

function inner(dir: string, netns: string, cycles: number): void {
  const pluginDir = join(dir, 'cni-bin');
  const base = { CNI_IFNAME: 'eth0', CNI_NETNS: netns, CNI_PATH: `${pluginDir}:/usr/lib/cni` };
  const weaveConf = JSON.stringify({ cniVersion: '1.0.0', name: 'weave', type: 'weave-net' });
  const bridgeConf = JSON.stringify({
    cniVersion: '1.0.0', name: 'benchbr', type: 'bridge', bridge: 'benchbr0', isGateway: true,
    ipam: { type: 'host-local', subnet: '10.99.0.0/16', dataDir: join(dir, 'host-local'), routes: [{ dst: '0.0.0.0/0' }] },
  });
  const samples: Record<string, number[]> = {};
  const add = (k: string, v: number) => (samples[k] ??= []).push(v);
  const run = (label: string, exe: string, conf: string, id: string, command: string) => {
    // "standalone" = the bundle without the router's fast path (what runs when no router takes the call).
    const [cmd, args] = label === 'standalone' ? [process.execPath, [join(pluginDir, readdirSync(pluginDir).find((f) => /^weave-plugin-.*\.cjs$/.test(f))!), 'net']] : [exe, []];
    const r = time(cmd, args, conf, cleanEnv({ ...base, CNI_COMMAND: command, CNI_CONTAINERID: id }));
    if (r.code !== 0) throw new Error(`${label} ${command} failed: ${r.out}${r.err}`);
    add(`${label} ${command}`, r.ms);
  };
  // Warm-up (page cache, first bridge IP for weave, bridge creation for the baseline).
  for (let i = 0; i < 5; i++) {
    run('weave-net', join(pluginDir, 'weave-net'), weaveConf, `warm${i}`, 'ADD');
    run('weave-net', join(pluginDir, 'weave-net'), weaveConf, `warm${i}`, 'DEL');
    run('bridge', '/usr/lib/cni/bridge', bridgeConf, `warm${i}`, 'ADD');
    run('bridge', '/usr/lib/cni/bridge', bridgeConf, `warm${i}`, 'DEL');
  }
  for (const k of Object.keys(samples)) delete samples[k];
  for (let i = 0; i < cycles; i++) {
    const id = `${(0x1000000 + i).toString(16)}${'0'.repeat(57)}`;
    // Alternate the order so neither plugin always runs on a warmer cache.
    const order = i % 2 === 0 ? ['weave-net', 'standalone', 'bridge'] : ['bridge', 'standalone', 'weave-net'];
    for (const p of order) {
      const [exe, conf] = p === 'bridge' ? ['/usr/lib/cni/bridge', bridgeConf] : [join(pluginDir, 'weave-net'), weaveConf];
      run(p, exe, conf, id, 'ADD');
      run(p, exe, conf, id, 'DEL');
    }
    add('weave-net VERSION', time(join(pluginDir, 'weave-net'), [], '{"cniVersion":"1.0.0"}', cleanEnv({ CNI_COMMAND: 'VERSION' })).ms);
    add('node -e 0', time(process.execPath, ['-e', '0'], '', cleanEnv({})).ms);
  }
  const rows: (string | number)[][] = [['operation', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'p50 × bridge']];
  const cmp = (k: string, op: string) => (k.startsWith('weave-net') || k.startsWith('standalone')) && (op === 'ADD' || op === 'DEL');
  const ref = (op: string) => summarize(samples[`bridge ${op}`] ?? []).p50;
  for (const k of ['weave-net ADD', 'standalone ADD', 'bridge ADD', 'weave-net DEL', 'standalone DEL', 'bridge DEL', 'weave-net VERSION', 'node -e 0']) {
    const s = summarize(samples[k] ?? []);
    const op = k.split(' ')[1]!;
    const ratio = cmp(k, op) ? (s.p50 / ref(op)).toFixed(2) : '';
    rows.push([k, String(s.n), s.p50, s.p90, s.p99, s.mean, ratio]);
  }
  process.stdout.write(table(rows) + '\n');
}

async function outer(cycles: number): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/cni needs root (it creates network namespaces)');
  const tag = `wb${process.pid % 10000}`;
  const dir = mkdtempSync(join(tmpdir(), 'weave-bench-cni-'));
  const host = `${tag}-host`;
  const ctr = `${tag}-ctr`;
  const env = cleanEnv({
    WEAVE_DATA_DIR: join(dir, 'data'), WEAVE_RUN_DIR: join(dir, 'run'), WEAVE_LOG_FILE: join(dir, 'weaver.log'),
    WEAVE_CNI_CONF_DIR: join(dir, 'net.d'), WEAVE_CNI_PLUGIN_DIR: join(dir, 'cni-bin'),
  });
  const ns = (...a: string[]) => spawnSync('nsenter', [`--net=/run/netns/${host}`, '--', ...a], { env, encoding: 'utf8' });
  let weaver: ReturnType<typeof spawn> | undefined;
  try {
    spawnSync('ip', ['netns', 'add', host]);
    spawnSync('ip', ['netns', 'add', ctr]);
    ns('ip', 'link', 'set', 'lo', 'up');
    ns(process.execPath, join(root, 'bin/weave.js'), 'setup', '--create-dirs');
    const fd = openSync(join(dir, 'weaver.log'), 'a');
    weaver = spawn('nsenter', [`--net=/run/netns/${host}`, '--', process.execPath, join(root, 'bin/weaver.js'), '--name', '7a:00:00:00:00:b1',
      '--nickname', 'bench', '--data-dir', env.WEAVE_DATA_DIR!, '--run-dir', env.WEAVE_RUN_DIR!, '--log-level', 'warning'], { env, stdio: ['ignore', fd, fd] });
    for (let i = 0; i < 100; i++) {
      if (ns(process.execPath, join(root, 'bin/weave.js'), 'status').status === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = spawnSync('nsenter', [`--net=/run/netns/${host}`, '--', process.execPath, fileURLToPath(import.meta.url), '--inner', dir, `/run/netns/${ctr}`, String(cycles)], {
      env, stdio: 'inherit',
    });
    if (r.status !== 0) throw new Error('benchmark driver failed');
  } finally {
    weaver?.kill('SIGTERM');
    spawnSync('ip', ['netns', 'del', ctr]);
    spawnSync('ip', ['netns', 'del', host]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
if (args[0] === '--inner') {
  inner(args[1]!, args[2]!, Number(args[3]));
} else {
  const cycles = Number(args[0] ?? 300);
  console.log(`bench/cni: ${cycles} ADD/DEL cycles per plugin, one container namespace, ${new Date().toISOString()}`);
  await outer(cycles);
}
