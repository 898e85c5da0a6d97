// bench/ipam: distributed IPAM through the router's HTTP API, with real weaver processes in
// network namespaces (issue 5).
//   1. Allocation latency after the ring exists, one host: `POST /ip/<new id>` (an allocation:
//      one SQLite write with fsync) interleaved with two requests that write nothing, measured
//      in the same run as the baseline: `POST /ip/<held id>` (the same route and allocator path,
//      answered from memory because the ident already holds an address) and `GET /ip/<id>` (a
//      lookup). Plus the store write alone: the router's SQLite store (WAL, synchronous=FULL)
//      opened by this process on the same file system, one `set` per sample.
//   2. Allocations per second, sequential per host, on 1 host and on 3 hosts at once (one
//      cluster of three routers that agreed a ring by consensus), with the routers' CPU per
//      allocation (user+sys from /proc of the weaver processes: the figure least disturbed by
//      other work on the machine), and a check that no address was handed out twice.
//   3. Time to first ring for N peers (default 2, 3 and 10): fresh routers (no store) started
//      one after another, each with all the others as peers (consensus, quorum from the
//      targets); from the launch of the last router: its API up, every router connected to
//      every other, then `GET /ring` on host 1 and one `POST /ip` on every host sent at once:
//      the ring on host 1, and an allocation answered on every host. Each run builds its own
//      namespaces and removes them before the next. These routers run with --no-dns and
//      --no-fastdp (by default; `--ring-full` runs them as launched by default): ten routers on
//      two cores, and neither is on the path measured.
// The latency clients run inside the host's namespace (nsenter) and talk to 127.0.0.1:6784 over
// one kept-alive connection, as a local client of the router would; sequential, one request in
// flight per host. Runs alternate (1 host, 3 hosts, store alone) so load from elsewhere on the
// machine falls on all alike; tables show medians over runs.
//
// Run as root from the repository:
//   npm run build && node dist/bench/ipam/run.js [--runs R] [--allocs N] [--ring-runs K]
//       [--peers 2,3,10] [--ring-full] [--skip-latency] [--skip-ring] [--logs DIR]
//       [--store-tmpfs] [--ring-args "ARGS"]
//   --store-tmpfs (an experiment, not how routers run): every router's data directory on
//   /dev/shm, where fsync costs nothing, and the store-alone row on /dev/shm too; what remains
//   is the cost without the disk. --logs DIR keeps the routers' logs; --ring-args passes extra
//   weaver arguments to the time-to-first-ring routers (e.g. "--log-level debug").
//   (defaults: 5 runs of 300 allocations per host; 3 ring runs per peer count)
//
// Everything lives in network namespaces named <prefix>-* (prefix unique per run) on a TEST-NET
// underlay (192.0.2.0/24, a bridge in its own namespace); links are created inside the
// namespaces, nothing in the root namespace is configured, nothing outside is dialled. All of
// it is removed at the end, also on failure or Ctrl-C.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { Agent, request as httpRequest } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { summarize, table, type Summary } from '../lib/stats.js';
import { Scratch } from '../lib/scratch.js';

const thisFile = fileURLToPath(import.meta.url);
const API_PORT = 6784;

// --- client mode: runs inside a host's namespace ------------------------------------------------

interface ClientResult {
  alloc: number[];
  repeat: number[];
  lookup: number[];
  addrs: string[];
  wallMs: number;
  errors: string[];
}

/**
 * `--client split|alloc|held N IDPREFIX`: warms up, prints "ready", waits for a line on stdin,
 * then makes N allocations of distinct idents one after another (split: each followed by a
 * repeat POST of the same ident and a GET of it; held: only the repeat POSTs, of idents an
 * `alloc` client with the same prefix allocated before), and prints the result as JSON.
 */
async function clientMode(mode: string, n: number, idPrefix: string): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const call = (method: string, path: string): Promise<{ status: number; body: string }> =>
    new Promise((done, fail) => {
      const req = httpRequest({ host: '127.0.0.1', port: API_PORT, method, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => done({ status: res.statusCode ?? 0, body }));
        res.on('error', fail);
      });
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
      req.on('error', fail);
      req.end();
    });
  const out: ClientResult = { alloc: [], repeat: [], lookup: [], addrs: [], wallMs: 0, errors: [] };
  const timed = async (into: number[], method: string, path: string): Promise<string | undefined> => {
    const t = performance.now();
    const r = await call(method, path);
    into.push(performance.now() - t);
    if (r.status !== 200) {
      out.errors.push(`${method} ${path}: ${r.status} ${r.body.trim()}`);
      return undefined;
    }
    return r.body.trim();
  };
  // Warm-up: the connection, both sides' JIT (lookups and repeats write nothing).
  for (let i = 0; i < 30; i++) {
    await call('GET', `/ip/${idPrefix}-warm`);
    await call('POST', `/ip/${idPrefix}-warm`);
  }
  process.stdout.write('ready\n');
  await new Promise((r) => process.stdin.once('data', r));
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const id = `${idPrefix}-${i}`;
    if (mode === 'held') {
      await timed(out.repeat, 'POST', `/ip/${id}`);
      continue;
    }
    const cidr = await timed(out.alloc, 'POST', `/ip/${id}`);
    if (cidr) out.addrs.push(cidr);
    if (mode === 'split') {
      const again = await timed(out.repeat, 'POST', `/ip/${id}`);
      if (cidr && again !== cidr) out.errors.push(`repeat POST /ip/${id} answered ${again}, first ${cidr}`);
      const held = await timed(out.lookup, 'GET', `/ip/${id}`);
      if (cidr && held !== cidr) out.errors.push(`GET /ip/${id} answered ${held}, allocated ${cidr}`);
    }
  }
  out.wallMs = performance.now() - t0;
  agent.destroy();
  process.stdout.write(JSON.stringify(out) + '\n');
}

if (process.argv[2] === '--client') {
  await clientMode(process.argv[3]!, Number(process.argv[4]), process.argv[5]!);
  process.exit(0);
}

// --- harness (root namespace, as root) ---------------------------------------------------------

// The helpers find bin/ through WEAVE_REPO_ROOT (or the working directory): pin it to this checkout.
process.env.WEAVE_REPO_ROOT ??= resolve(dirname(thisFile), '..', '..', '..');
const { Netns, WeaveHost, eventually, uniquePrefix } = await import('../../test/helpers/netns.js');
type NetnsT = InstanceType<typeof Netns>;
type WeaveHostT = InstanceType<typeof WeaveHost>;
const { SqliteStore } = await import('../../src/platform/sqlite-store.js');

interface Options {
  runs: number;
  allocs: number;
  ringRuns: number;
  peers: number[];
  ringFull: boolean;
  latency: boolean;
  ring: boolean;
  /** Copy each router's log here before its host is removed. */
  logs?: string;
  /** Experiment: routers' data directories on /dev/shm (tmpfs: fsync costs nothing). */
  storeTmpfs: boolean;
  /** Extra weaver arguments for the time-to-first-ring routers (e.g. --log-level debug). */
  ringArgs: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = { runs: 5, allocs: 300, ringRuns: 3, peers: [2, 3, 10], ringFull: false, latency: true, ring: true, storeTmpfs: false, ringArgs: [] };
  const usage = 'usage: run.js [--runs R] [--allocs N] [--ring-runs K] [--peers 2,3,10] [--ring-full] [--skip-latency] [--skip-ring] [--logs DIR] [--store-tmpfs] [--ring-args "ARGS"]';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = (v: string | undefined): number => {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1) throw new Error(`${a} needs a positive integer (${usage})`);
      return x;
    };
    if (a === '--runs') o.runs = num(argv[++i]);
    else if (a === '--allocs') o.allocs = num(argv[++i]);
    else if (a === '--ring-runs') o.ringRuns = num(argv[++i]);
    else if (a === '--peers') {
      o.peers = (argv[++i] ?? '').split(',').map(num);
      if (o.peers.some((p) => p < 2 || p > 200)) throw new Error('--peers: between 2 and 200 routers');
    } else if (a === '--ring-full') o.ringFull = true;
    else if (a === '--skip-latency') o.latency = false;
    else if (a === '--skip-ring') o.ring = false;
    else if (a === '--logs') o.logs = resolve(argv[++i] ?? '.');
    else if (a === '--store-tmpfs') o.storeTmpfs = true;
    else if (a === '--ring-args') o.ringArgs = (argv[++i] ?? '').split(/\s+/).filter(Boolean);
    else throw new Error(`unknown argument ${a} (${usage})`);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// --- everything we create, and its removal ------------------------------------------------------

const prefix = uniquePrefix();
const namespaces: NetnsT[] = [];
const hosts: WeaveHostT[] = [];
const tempDirs: string[] = [];

/** Removes hosts and namespaces (all of ours when `only` is absent). */
async function teardown(only?: { hosts: WeaveHostT[]; namespaces: NetnsT[] }): Promise<void> {
  const hs = only ? only.hosts : hosts.splice(0);
  const ns = only ? only.namespaces : namespaces.splice(0);
  for (const h of hs) {
    if (opts.logs) {
      mkdirSync(opts.logs, { recursive: true });
      writeFileSync(join(opts.logs, `${h.ns.name}.log`), h.log());
    }
    await h.destroy().catch(() => undefined);
    if (only) hosts.splice(hosts.indexOf(h), 1);
  }
  for (const n of [...ns].reverse()) {
    n.destroy();
    if (only) namespaces.splice(namespaces.indexOf(n), 1);
  }
}

const scratch = new Scratch(prefix, async () => {
  await teardown();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
const children = scratch.children;
const cleanup = () => scratch.cleanup();

/** An underlay: a namespace holding bridge br0; `plug` gives a host 192.0.2.<i>/24 on eth0. */
function underlay(label: string): { ns: NetnsT; plug: (h: WeaveHostT, i: number) => string } {
  const u = new Netns(`${prefix}-${label}`);
  namespaces.push(u);
  u.ip('link', 'add', 'br0', 'type', 'bridge');
  u.ip('link', 'set', 'br0', 'up');
  return {
    ns: u,
    plug(h, i) {
      const end = `v${i}`; // inside this underlay's namespace only
      u.must('ip', ['link', 'add', end, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns.name]);
      u.ip('link', 'set', end, 'master', 'br0');
      u.ip('link', 'set', end, 'up');
      h.ns.ip('addr', 'add', `192.0.2.${i}/24`, 'dev', 'eth0');
      h.ns.ip('link', 'set', 'eth0', 'up');
      return `192.0.2.${i}`;
    },
  };
}

function weaveHost(label: string): WeaveHostT {
  const h = new WeaveHost(prefix, label);
  hosts.push(h);
  if (opts.storeTmpfs) {
    const d = mkdtempSync(join('/dev/shm', `${prefix}-${label}-`));
    tempDirs.push(d);
    h.env.WEAVE_DATA_DIR = d;
  }
  return h;
}

/** Weaver as the netns tests start it, but with the default bridge check (the helper's is 200 ms). */
async function startWeaver(h: WeaveHostT, name: string, nickname: string, args: string[]): Promise<void> {
  await h.startWeaver({ name, nickname, args: ['--bridge-check-interval-ms', '2000', ...args] });
}

// --- measurements helpers -------------------------------------------------------------------------

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime of a process in milliseconds (/proc/<pid>/stat). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const fmt = (x: number, digits = 2): string => (Number.isNaN(x) ? '–' : x.toFixed(digits));
const loadText = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');

interface Client {
  child: ChildProcess;
  result: Promise<ClientResult>;
}

/** Starts a latency client in the host's namespace; resolves once it is warmed up and ready. */
async function startClient(h: WeaveHostT, mode: 'split' | 'alloc' | 'held', n: number, idPrefix: string): Promise<Client> {
  const child = spawn('nsenter', [`--net=${h.ns.path}`, '--', process.execPath, thisFile, '--client', mode, String(n), idPrefix], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  const result = new Promise<ClientResult>((done, fail) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) onReady();
    });
    child.on('close', (code) => {
      children.delete(child);
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code === 0 && line) done(JSON.parse(line) as ClientResult);
      else fail(new Error(`client on ${h.ns.name} exited ${code}: ${err.trim() || out.trim()}`));
    });
  });
  await Promise.race([ready, result.then(() => undefined)]);
  return { child, result };
}

/** Distinct peer names of established connections in /status/connections. */
async function establishedPeers(h: WeaveHostT): Promise<number> {
  const r = await h.client.request('GET', '/status/connections', { timeoutMs: 5_000 });
  const names = new Set<string>();
  for (const line of r.body.split('\n')) {
    if (!/\bestablished\b/.test(line)) continue;
    const m = /([0-9a-f]{2}(?::[0-9a-f]{2}){5})/.exec(line);
    names.add(m ? m[1]! : line);
  }
  return names.size;
}

async function allocateOnce(h: WeaveHostT, ident: string, timeoutMs: number): Promise<string> {
  const r = await h.client.request('POST', `/ip/${ident}`, { timeoutMs });
  if (r.status !== 200) throw new Error(`POST /ip/${ident} on ${h.ns.name}: ${r.status} ${r.body.trim()}`);
  return r.body.trim();
}

// --- 1 and 2: latency and allocations per second --------------------------------------------------

interface LatencyRun {
  alloc: Summary;
  repeat: Summary;
  lookup: Summary;
  store: Summary;
  single: { perSec: number; lat: Summary; cpuUs: number; heldCpuUs: number; heldPerSec: number };
  triple: { perSec: number; lat: Summary; cpuUs: number; perHost: number[] };
}

async function latency(o: Options): Promise<void> {
  const load0 = loadText();
  const started = new Date();
  // One standalone router (quorum 1) and a cluster of three on an underlay.
  const single = weaveHost('s1');
  await startWeaver(single, '7a:00:00:00:01:01', 's1', []);
  const u = underlay('u');
  const trio = [1, 2, 3].map((i) => weaveHost(`m${i}`));
  const addrs = trio.map((h, i) => u.plug(h, i + 1));
  for (const [i, h] of trio.entries()) {
    await startWeaver(h, `7a:00:00:00:02:0${i + 1}`, `m${i + 1}`, addrs.filter((_, j) => j !== i));
  }
  await eventually(async () => (await Promise.all(trio.map(establishedPeers))).every((n) => n >= 2), 30_000, 'the three routers connected');
  // The rings: first allocation on each host (consensus among the three; then hosts 2 and 3
  // ask for space). Not measured here (section 3 does); only the state after it is.
  const t0 = performance.now();
  const first = await Promise.all([single, ...trio].map((h) => allocateOnce(h, 'bench-first', 60_000)));
  const firstMs = performance.now() - t0;
  if (new Set(first.slice(1)).size !== 3) throw new Error(`first allocations on the three hosts overlap: ${first.join(' ')}`);

  const dir = mkdtempSync(join(opts.storeTmpfs ? '/dev/shm' : tmpdir(), `${prefix}-store-`));
  tempDirs.push(dir);
  const store = new SqliteStore(join(dir, 'weave.db'));
  const runs: LatencyRun[] = [];
  const errors: string[] = [];
  // Addresses handed out, per cluster (the standalone router and the trio are separate rings
  // over the same range, so only duplicates within one count).
  const seenByCluster = new Map<string, Map<string, string>>();
  const noDuplicates = (host: string, list: string[]) => {
    const cluster = host.startsWith('m') ? 'trio' : host;
    let seen = seenByCluster.get(cluster);
    if (!seen) seenByCluster.set(cluster, (seen = new Map()));
    for (const a of list) {
      const ip = a.split('/')[0]!;
      const had = seen.get(ip);
      if (had !== undefined) errors.push(`duplicate: ${ip} handed out on ${had} and on ${host}`);
      seen.set(ip, host);
    }
  };
  for (let r = 0; r < o.runs; r++) {
    const run: Partial<LatencyRun> = {};
    const steps: (() => Promise<void>)[] = [
      async () => {
        // One host: the cost split (allocation, repeat, lookup interleaved), then throughput.
        const c = await startClient(single, 'split', o.allocs, `split${r}`);
        c.child.stdin!.write('go\n');
        const res = await c.result;
        errors.push(...res.errors);
        noDuplicates('s1', res.addrs);
        run.alloc = summarize(res.alloc);
        run.repeat = summarize(res.repeat);
        run.lookup = summarize(res.lookup);
        const t = await startClient(single, 'alloc', o.allocs, `seq${r}`);
        const cpu0 = cpuMs(single.weaverPid!);
        t.child.stdin!.write('go\n');
        const tr = await t.result;
        const cpu = cpuMs(single.weaverPid!) - cpu0;
        errors.push(...tr.errors);
        noDuplicates('s1', tr.addrs);
        // The same idents again: POSTs that write nothing, for the router's CPU per request.
        const hc = await startClient(single, 'held', o.allocs, `seq${r}`);
        const hcpu0 = cpuMs(single.weaverPid!);
        hc.child.stdin!.write('go\n');
        const hr = await hc.result;
        const hcpu = cpuMs(single.weaverPid!) - hcpu0;
        errors.push(...hr.errors);
        run.single = {
          perSec: (tr.alloc.length / tr.wallMs) * 1000, lat: summarize(tr.alloc), cpuUs: (cpu * 1000) / tr.alloc.length,
          heldCpuUs: (hcpu * 1000) / hr.repeat.length, heldPerSec: (hr.repeat.length / hr.wallMs) * 1000,
        };
      },
      async () => {
        // Three hosts at once, sequential on each.
        const cs = await Promise.all(trio.map((h, i) => startClient(h, 'alloc', o.allocs, `tri${r}h${i + 1}`)));
        const pids = trio.map((h) => h.weaverPid!);
        const cpu0 = pids.map(cpuMs);
        const t = performance.now();
        for (const c of cs) c.child.stdin!.write('go\n');
        const res = await Promise.all(cs.map((c) => c.result));
        const wall = performance.now() - t;
        const cpu = pids.map((p, i) => cpuMs(p) - cpu0[i]!).reduce((a, b) => a + b, 0);
        const all = res.flatMap((x) => x.alloc);
        res.forEach((x, i) => {
          errors.push(...x.errors);
          noDuplicates(`m${i + 1}`, x.addrs);
        });
        run.triple = {
          perSec: (all.length / wall) * 1000,
          lat: summarize(all),
          cpuUs: (cpu * 1000) / all.length,
          perHost: res.map((x) => (x.alloc.length / x.wallMs) * 1000),
        };
      },
      async () => {
        // The store write alone: one autocommit `set` (WAL, synchronous=FULL), as addOwned does.
        const lat: number[] = [];
        for (let i = 0; i < 20; i++) store.set(`warm/${i}`, '{}');
        for (let i = 0; i < o.allocs; i++) {
          const t = performance.now();
          store.set(`ipam/owned/store${r}-${i}`, `{"cidrs":["10.32.${i >> 8}.${i & 255}/12"],"isContainer":true}`);
          lat.push(performance.now() - t);
        }
        run.store = summarize(lat);
      },
    ];
    // Alternate the order so that drifting load falls on each alike.
    for (const s of r % 2 ? [...steps].reverse() : steps) await s();
    runs.push(run as LatencyRun);
    process.stderr.write(`  latency run ${r + 1}/${o.runs} done (load ${loadText()})\n`);
  }
  store.close();
  const med = (f: (x: LatencyRun) => number) => median(runs.map(f));
  console.log(`\nIPAM allocation latency, one host (HTTP on 127.0.0.1 inside the host's namespace, one kept-alive`);
  console.log(`connection, one request at a time), ${o.runs} runs of ${o.allocs}, medians over runs of each run's percentiles;`);
  console.log(`started ${started.toISOString()}, load average before ${load0}, after ${loadText()}`);
  const row = (label: string, f: (x: LatencyRun) => Summary, ref: string) => [label, fmt(med((x) => f(x).p50)), fmt(med((x) => f(x).p90)), fmt(med((x) => f(x).p99)), fmt(med((x) => f(x).mean)), ref];
  console.log(table([
    ['request', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'original (perf-anchors)'],
    row('POST /ip/<new id> (allocation)', (x) => x.alloc, 'p50 0.90–0.97, p90 1.1–1.8'),
    row('POST /ip/<held id> (no write)', (x) => x.repeat, ''),
    row('GET /ip/<id> (lookup)', (x) => x.lookup, ''),
    row('store set alone (SQLite WAL+FULL)', (x) => x.store, ''),
  ]));
  const allocMinusRepeat = med((x) => x.alloc.p50 - x.repeat.p50);
  console.log(`allocation p50 − held-id POST p50 (the allocation's own cost, mostly the store write): ${fmt(allocMinusRepeat)} ms`);

  console.log(`\nIPAM allocations per second, sequential per host (one request in flight per host), ${o.runs} runs of ${o.allocs} per host, medians`);
  const one = med((x) => x.single.perSec);
  console.log(table([
    ['setup', 'alloc/s', '× 1 host', 'p50 ms', 'p90 ms', 'p99 ms', 'router CPU µs/alloc', 'alloc/s per host'],
    ['1 host', fmt(one, 0), '1.00', fmt(med((x) => x.single.lat.p50)), fmt(med((x) => x.single.lat.p90)), fmt(med((x) => x.single.lat.p99)), fmt(med((x) => x.single.cpuUs), 0), fmt(one, 0)],
    ['3 hosts at once', fmt(med((x) => x.triple.perSec), 0), fmt(med((x) => x.triple.perSec) / one), fmt(med((x) => x.triple.lat.p50)), fmt(med((x) => x.triple.lat.p90)), fmt(med((x) => x.triple.lat.p99)), fmt(med((x) => x.triple.cpuUs), 0),
      [0, 1, 2].map((i) => fmt(med((x) => x.triple.perHost[i]!), 0)).join(' / ')],
  ]));
  console.log(`1 host, the same idents POSTed again (no write): ${fmt(med((x) => x.single.heldPerSec), 0)} requests/s, router CPU ${fmt(med((x) => x.single.heldCpuUs), 0)} µs/request`);
  console.log(`(router CPU from /proc in ${1000 / CLK_TCK} ms ticks; the load generators' CPU is not included)`);
  console.log(`(set-up, once: first allocation on all four routers at once, the trio already connected, so a 3-peer consensus: ${fmt(firstMs, 0)} ms)`);
  const checked = [...seenByCluster.values()].reduce((a, m) => a + m.size, 0);
  console.log(`addresses checked for duplicates within each cluster: ${checked}; errors (duplicates, failed or inconsistent answers): ${errors.length}`);
  for (const e of errors.slice(0, 20)) console.log(`  ${e}`);
  await teardown();
}

// --- 3: time to first ring -------------------------------------------------------------------------

interface RingRun {
  lastUpMs: number;
  connectedMs: number;
  ringMs: number;
  allocMs: number;
  slowestHost: string;
  /** All routers' CPU (user+sys) from the requests until the last allocation answered. */
  cpuMs: number;
  /** When each host's first allocation was answered, ms from the requests. */
  perHostMs: number[];
  failure?: string;
}

async function ringRun(n: number, run: number, full: boolean): Promise<RingRun> {
  const label = `r${n}x${run}`;
  const own = { hosts: [] as WeaveHostT[], namespaces: [] as NetnsT[] };
  try {
    const u = underlay(`${label}u`);
    own.namespaces.push(u.ns);
    const hs: WeaveHostT[] = [];
    for (let i = 1; i <= n; i++) {
      hs.push(weaveHost(`${label}h${i}`));
      own.hosts.push(hs[i - 1]!);
    }
    const addrs = hs.map((h, i) => u.plug(h, i + 1));
    const flags = [...(full ? [] : ['--no-dns', '--no-fastdp']), ...opts.ringArgs];
    const peerName = (i: number) => `7a:00:00:00:${(0x10 + n).toString(16).padStart(2, '0')}:${(i + 1).toString(16).padStart(2, '0')}`;
    const start = (i: number) => startWeaver(hs[i]!, peerName(i), `h${i + 1}`, [...flags, ...addrs.filter((_, j) => j !== i)]);
    for (let i = 0; i < n - 1; i++) await start(i);
    const t0 = performance.now();
    await start(n - 1);
    const lastUpMs = performance.now() - t0;
    let connectedMs = NaN;
    try {
      await eventually(async () => (await Promise.all(hs.map(establishedPeers))).every((c) => c >= n - 1), 60_000, 'full mesh');
      connectedMs = performance.now() - t0;
    } catch {
      // Carry on: the allocation may well succeed without every connection.
    }
    const done = new Array<number>(n).fill(NaN);
    const pids = hs.map((h) => h.weaverPid!);
    const cpu0 = pids.map(cpuMs);
    const ring = hs[0]!.client.request('GET', '/ring', { timeoutMs: 120_000 }).then((r) => {
      if (r.status !== 200) throw new Error(`GET /ring: ${r.status} ${r.body.trim()}`);
      return performance.now() - t0;
    });
    const got = await Promise.all(hs.map(async (h, i) => {
      const a = await allocateOnce(h, 'bench-first', 120_000);
      done[i] = performance.now() - t0;
      return a;
    }));
    const ringMs = await ring;
    const cpu = pids.map((p, i) => cpuMs(p) - cpu0[i]!).reduce((a, b) => a + b, 0);
    if (new Set(got).size !== n) throw new Error(`duplicate first addresses: ${got.join(' ')}`);
    const slowest = done.indexOf(Math.max(...done));
    return { lastUpMs, connectedMs, ringMs, allocMs: Math.max(...done), slowestHost: `h${slowest + 1}`, cpuMs: cpu, perHostMs: done.map((d) => d - connectedMs) };
  } finally {
    await teardown(own);
  }
}

async function ringBench(o: Options): Promise<void> {
  const load0 = loadText();
  const started = new Date();
  const results = new Map<number, RingRun[]>();
  for (let r = 0; r < o.ringRuns; r++) {
    for (const n of o.peers) {
      let res: RingRun;
      try {
        res = await ringRun(n, r, o.ringFull);
      } catch (e) {
        res = { lastUpMs: NaN, connectedMs: NaN, ringMs: NaN, allocMs: NaN, slowestHost: '', cpuMs: NaN, perHostMs: [], failure: (e as Error).message.split('\n')[0]! };
      }
      results.set(n, [...(results.get(n) ?? []), res]);
      process.stderr.write(`  ring: ${n} peers, run ${r + 1}/${o.ringRuns}: ${res.failure ?? `allocation everywhere at ${res.allocMs.toFixed(0)} ms (ring on h1 ${res.ringMs.toFixed(0)}, connected ${res.connectedMs.toFixed(0)}, last up ${res.lastUpMs.toFixed(0)}, slowest ${res.slowestHost}, routers' CPU meanwhile ${res.cpuMs.toFixed(0)} ms; answered per host, ms from the requests: ${res.perHostMs.map((x) => x.toFixed(0)).join(' ')})`} (load ${loadText()})\n`);
    }
  }
  console.log(`\nIPAM time to first ring: fresh routers, each given all others as peers (consensus, default quorum),`);
  console.log(`${o.ringFull ? 'default flags' : '--no-dns --no-fastdp'}; ms, medians of ${o.ringRuns} runs [min–max];`);
  console.log(`started ${started.toISOString()}, load average before ${load0}, after ${loadText()}`);
  const cell = (xs: number[]) => {
    const ok = xs.filter((x) => !Number.isNaN(x));
    return ok.length ? `${fmt(median(ok), 0)} [${fmt(Math.min(...ok), 0)}–${fmt(Math.max(...ok), 0)}]` : '–';
  };
  const rows: (string | number)[][] = [['peers', 'quorum', 'last router up', 'all connected', 'alloc on every host', 'requests → ring on h1', 'requests → alloc on every host', 'routers\' CPU ms then', 'failed runs']];
  for (const n of o.peers) {
    const rs = results.get(n) ?? [];
    rows.push([String(n), String(Math.floor(n / 2) + 1), cell(rs.map((x) => x.lastUpMs)), cell(rs.map((x) => x.connectedMs)), cell(rs.map((x) => x.allocMs)),
      cell(rs.map((x) => x.ringMs - x.connectedMs)), cell(rs.map((x) => x.allocMs - x.connectedMs)), cell(rs.map((x) => x.cpuMs)), String(rs.filter((x) => x.failure).length)]);
  }
  console.log(table(rows));
  console.log('(the first three: from the launch of the last router; "all connected": every router shows an established');
  console.log(' connection to every other, polled every 50 ms; the requests (GET /ring on h1, POST /ip on every host) go out then;');
  console.log(' "routers\' CPU ms then": user+sys of all routers over that interval, summed; the original\'s first allocation');
  console.log(' with 2-peer consensus, perf-anchors: 74–75 ms)');
  for (const [n, rs] of results) for (const x of rs) if (x.failure) console.log(`  ${n} peers failed: ${x.failure}`);
}

// --- main ----------------------------------------------------------------------------------------------

if (process.getuid?.() !== 0) {
  console.error('bench/ipam needs root (network namespaces)');
  process.exit(2);
}
console.log(`bench/ipam ${new Date().toISOString()}, namespaces ${prefix}-*, load average ${loadText()}${opts.storeTmpfs ? ', EXPERIMENT: router stores on tmpfs (/dev/shm)' : ''}`);
let code = 0;
try {
  if (opts.latency) await latency(opts);
  if (opts.ring) await ringBench(opts);
} catch (e) {
  console.error(`bench/ipam failed: ${(e as Error).stack ?? String(e)}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
