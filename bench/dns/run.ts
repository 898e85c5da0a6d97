// bench/dns: queries per second and latency for names in the weave domain, our DNS server
// (src/dns/server.ts, in its own Node process) against Debian's dnsmasq serving the same
// records from a hosts file, all on 127.0.0.1 in the same run. Ours runs twice: as the router
// runs it (UDP read by the worker thread of daemon/dns-worker-udp.ts) and with node:dgram on
// the main thread (the server's default listener, as before the worker). Run:
//   npm run build && node dist/bench/dns/run.js [rounds] [seconds] [names]   (default 5 2 1000)
// The load comes from dnsperf (Debian's `dnsperf`, a C generator), when it is installed and
// BENCH_DNS_GENERATOR is not `node`, and from a closed loop in one Node process. The Node
// generator is slower than either server on this machine, so its q/s measure it as much as
// the servers; dnsperf does not have that limit. Each round measures each server in every
// mode, in alternating order with dnsmasq always in the middle; the table shows medians over
// the rounds and our/dnsmasq ratios (the median of each round's ratio: a ratio compares
// measurements seconds apart). Modes with dnsperf: saturated (100 queries in flight: as many
// as the server answers) and one query at a time (the round trip), with the mean latency, and
// a steady 20 000 q/s with p50 and p99; with the Node generator (always): 64 in flight and one
// at a time, with p50 and p99. "CPU µs/query" is the server process's user + system time (from
// /proc) per answered query: the efficiency figure, least disturbed by other load on the machine.
// Only loopback is used; nothing is sent anywhere else.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { systemClock } from '../../src/core/clock.js';
import { formatIPv4 } from '../../src/core/ip.js';
import { silentLogger } from '../../src/core/logger.js';
import { Nameserver } from '../../src/dns/nameserver.js';
import { DnsServer } from '../../src/dns/server.js';
import { WorkerUdpListener } from '../../src/daemon/dns-worker-udp.js';
import { staticUpstream } from '../../src/dns/upstream.js';
import { summarize, table } from '../lib/stats.js';

const OUR_NAME = 0x7a0000000001;

function records(n: number): { name: string; addr: number }[] {
  return Array.from({ length: n }, (_, i) => ({ name: `host${i}.weave.local`, addr: 0x0a200001 + i }));
}

/** Child mode: run our server on 127.0.0.1:port with the records, until killed. */
async function serve(port: number, n: number, udp: string): Promise<void> {
  const ns = new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName: OUR_NAME });
  for (const r of records(n)) ns.addEntryFqdn(r.name, 'bench', r.addr);
  const udpListener = udp === 'worker' ? new WorkerUdpListener({ names: ns, logger: silentLogger }) : undefined;
  const server = new DnsServer({ names: ns, upstream: staticUpstream([]), clock: systemClock, logger: silentLogger, udpListener }, { listenAddress: `127.0.0.1:${port}` });
  await server.start();
  process.stdout.write(`ready ${server.address.port}\n`);
  process.on('SIGTERM', () => void server.stop().then(() => process.exit(0)));
}

function queryTemplate(name: string): Buffer {
  const labels = name.split('.');
  const q = Buffer.alloc(12 + labels.reduce((a, l) => a + l.length + 1, 1) + 4);
  q.writeUInt16BE(0x0100, 2); // RD
  q.writeUInt16BE(1, 4); // one question
  let at = 12;
  for (const l of labels) {
    q[at++] = l.length;
    at += q.write(l, at, 'ascii');
  }
  q[at++] = 0;
  q.writeUInt16BE(1, at); // A
  q.writeUInt16BE(1, at + 2); // IN
  return q;
}

interface Result {
  qps: number;
  meanUs: number;
  p50us: number;
  p99us: number;
  errors: number;
  /** Server CPU time (user + system) per answered query, from /proc: robust to a busy machine. */
  cpuUs: number;
}

/** utime + stime of a process in microseconds (/proc/<pid>/stat, clock ticks of 10 ms). */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** A closed loop of `inflight` UDP queries for `seconds`; latencies in microseconds. */
function load(port: number, names: string[], inflight: number, seconds: number, pid?: number): Promise<Result> {
  const templates = names.map(queryTemplate);
  const sock = createSocket('udp4');
  const sent = new Map<number, number>();
  const lat: number[] = [];
  let errors = 0;
  let nextId = 0;
  let k = 0;
  let stopAt = 0;
  let done = false;
  return new Promise((resolve) => {
    const send = () => {
      if (done) return;
      let id = nextId;
      while (sent.has(id)) id = (id + 1) & 0xffff;
      nextId = (id + 1) & 0xffff;
      const q = Buffer.from(templates[k++ % templates.length]!);
      q.writeUInt16BE(id, 0);
      sent.set(id, performance.now());
      sock.send(q, port, '127.0.0.1');
    };
    sock.on('message', (msg) => {
      const id = msg.readUInt16BE(0);
      const t = sent.get(id);
      if (t === undefined) return;
      sent.delete(id);
      const now = performance.now();
      if ((msg[3]! & 0xf) !== 0 || msg.readUInt16BE(6) < 1) errors++;
      else lat.push((now - t) * 1000);
      if (now < stopAt) send();
      else if (sent.size === 0) finish();
    });
    // Lost datagrams: give up on queries older than 1 s and keep the loop full.
    const sweep = setInterval(() => {
      const now = performance.now();
      for (const [id, t] of sent) {
        if (now - t < 1000) continue;
        sent.delete(id);
        errors++;
        if (now < stopAt) send();
      }
      if (now >= stopAt && sent.size === 0) finish();
    }, 200);
    let t0 = 0;
    let cpu0 = 0;
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(sweep);
      const elapsed = (performance.now() - t0) / 1000;
      const cpu = pid === undefined ? NaN : (cpuMicros(pid) - cpu0) / Math.max(1, lat.length);
      sock.close();
      const s = summarize(lat);
      resolve({ qps: lat.length / elapsed, meanUs: s.mean, p50us: s.p50, p99us: s.p99, errors, cpuUs: cpu });
    };
    sock.bind(0, '127.0.0.1', () => {
      t0 = performance.now();
      if (pid !== undefined) cpu0 = cpuMicros(pid);
      stopAt = t0 + seconds * 1000;
      for (let i = 0; i < inflight; i++) send();
    });
  });
}

/**
 * dnsperf for `seconds` against the port with the query file, `inflight` queries outstanding;
 * `rate` fixes the offered load (q/s), and then each query's latency is read (-v) for p50 and
 * p99. (dnsperf 2.10 prints only the mean otherwise, and with -v and only one or ten queries
 * outstanding it stalls at a few thousand a second, so -v goes only with a rate and 100.)
 */
function dnsperf(port: number, queryFile: string, inflight: number, seconds: number, pid: number | undefined, rate?: number): Promise<Result> {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', queryFile, '-l', String(seconds), '-q', String(inflight), '-t', '1'];
  if (rate !== undefined) args.push('-Q', String(rate), '-v');
  const cpu0 = pid === undefined ? 0 : cpuMicros(pid);
  return new Promise((resolve, reject) => {
    execFile('dnsperf', args, { maxBuffer: 256 * 1024 * 1024 }, (err, stdout) => {
      if (err) return reject(new Error(`dnsperf: ${err.message}`));
      const num = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? NaN);
      const completed = num(/Queries completed:\s+(\d+)/);
      const noerror = num(/NOERROR (\d+)/);
      const cpu = pid === undefined ? NaN : (cpuMicros(pid) - cpu0) / Math.max(1, completed);
      const lat: number[] = [];
      if (rate !== undefined) {
        // "> NOERROR host1.weave.local A 0.000055"
        for (const line of stdout.split('\n')) if (line.startsWith('> NOERROR ')) lat.push(Number(line.slice(line.lastIndexOf(' ') + 1)) * 1e6);
      }
      const s = summarize(lat);
      resolve({
        qps: num(/Queries per second:\s+([\d.]+)/),
        meanUs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1e6,
        p50us: lat.length > 0 ? s.p50 : NaN,
        p99us: lat.length > 0 ? s.p99 : NaN,
        errors: num(/Queries sent:\s+(\d+)/) - noerror,
        cpuUs: cpu,
      });
    });
  });
}

function hasDnsperf(): boolean {
  return spawnSync('dnsperf', ['-h'], { stdio: 'ignore' }).error === undefined;
}

function waitForLine(child: ChildProcess, re: RegExp, ms: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}: ${out}`)), ms);
    const on = (d: Buffer) => {
      out += d.toString();
      const m = re.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.on('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
  });
}

async function probe(port: number, name: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = await load(port, [name], 1, 0.05).catch(() => undefined);
    if (r && r.errors === 0 && r.p50us > 0) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`no answer on port ${port}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 5);
  const seconds = Number(process.argv[3] ?? 2);
  const n = Number(process.argv[4] ?? 1000);
  const dir = mkdtempSync(join(tmpdir(), 'weave-bench-dns-'));
  const hosts = join(dir, 'hosts');
  writeFileSync(hosts, records(n).map((r) => `${formatIPv4(r.addr)} ${r.name}\n`).join(''));
  const children: ChildProcess[] = [];
  try {
    const startOurs = async (udp: string) => {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', '0', String(n), udp], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      return { child, port: Number((await waitForLine(child, /ready (\d+)/, 10_000))[1]) };
    };
    const ours = await startOurs('worker');
    const oursMain = await startOurs('main');
    // dnsmasq on another free port: take one from the kernel, then hand it over.
    const tmp = createSocket('udp4');
    await new Promise<void>((r) => tmp.bind(0, '127.0.0.1', r));
    const dnsmasqPort = tmp.address().port;
    await new Promise<void>((r) => tmp.close(() => r()));
    const dnsmasq = spawn('dnsmasq', [
      '--no-daemon', `--port=${dnsmasqPort}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      `--addn-hosts=${hosts}`, '--local-ttl=1', '--conf-file=/dev/null', '--pid-file=', '--cache-size=10000',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(dnsmasq);
    const names = records(n).map((r) => r.name);
    await probe(ours.port, names[0]!);
    await probe(oursMain.port, names[0]!);
    await probe(dnsmasqPort, names[0]!);
    const targets = [
      { label: 'weave (worker)', port: ours.port, pid: ours.child.pid },
      { label: 'dnsmasq', port: dnsmasqPort, pid: dnsmasq.pid },
      { label: 'weave (main thread)', port: oursMain.port, pid: oursMain.child.pid },
    ];
    const useDnsperf = process.env.BENCH_DNS_GENERATOR !== 'node' && hasDnsperf();
    const queryFile = join(dir, 'queries');
    writeFileSync(queryFile, names.map((x) => `${x} A\n`).join(''));
    type Run = (port: number, secs: number, pid?: number) => Promise<Result>;
    const nodeModes: { label: string; run: Run }[] = [
      { label: 'node: 64 in flight', run: (port, secs, pid) => load(port, names, 64, secs, pid) },
      { label: 'node: one at a time', run: (port, secs, pid) => load(port, names, 1, secs, pid) },
    ];
    const modes: { label: string; run: Run }[] = useDnsperf
      ? [
          { label: 'dnsperf: saturated (100 in flight)', run: (port, secs, pid) => dnsperf(port, queryFile, 100, secs, pid) },
          { label: 'dnsperf: steady 20000 q/s', run: (port, secs, pid) => dnsperf(port, queryFile, 100, secs, pid, 20_000) },
          { label: 'dnsperf: one at a time', run: (port, secs, pid) => dnsperf(port, queryFile, 1, secs, pid) },
          ...nodeModes,
        ]
      : nodeModes;
    const results = new Map<string, Result[]>();
    for (const t of targets) for (const m of modes) await m.run(t.port, 1); // warm-up
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const m of modes) {
        for (const t of order) {
          const res = await m.run(t.port, seconds, t.pid);
          if (process.env.BENCH_VERBOSE) console.error(`round ${r} ${t.label} ${m.label}: ${res.qps.toFixed(0)} q/s mean ${res.meanUs.toFixed(0)} p50 ${res.p50us.toFixed(0)} p99 ${res.p99us.toFixed(0)} µs, ${res.cpuUs.toFixed(1)} CPU µs/query`);
          const key = `${t.label}|${m.label}`;
          results.set(key, [...(results.get(key) ?? []), res]);
        }
      }
    }
    const rows: (string | number)[][] = [['server', 'mode', 'queries/s', 'mean µs', 'p50 µs', 'p99 µs', 'CPU µs/query', 'errors']];
    const med = (key: string, f: (x: Result) => number) => median((results.get(key) ?? []).map(f));
    const perRound: string[] = [];
    for (const m of modes) {
      for (const t of targets) {
        const key = `${t.label}|${m.label}`;
        rows.push([t.label, m.label, med(key, (x) => x.qps), med(key, (x) => x.meanUs), med(key, (x) => x.p50us), med(key, (x) => x.p99us), med(key, (x) => x.cpuUs), (results.get(key) ?? []).reduce((a, x) => a + x.errors, 0)]);
      }
      // Ratios per round (the two servers measured one after the other), then their median:
      // steadier than a ratio of medians when the machine's other load drifts.
      const d = results.get(`${targets[1]!.label}|${m.label}`) ?? [];
      const ratio = (label: string, t: (typeof targets)[number]) => {
        const o = results.get(`${t.label}|${m.label}`) ?? [];
        const r = (f: (x: Result) => number) => `${median(o.map((x, i) => f(x) / f(d[i]!))).toFixed(2)}x`;
        rows.push([label, m.label, r((x) => x.qps), r((x) => x.meanUs), r((x) => x.p50us), r((x) => x.p99us), r((x) => x.cpuUs), '']);
        perRound.push(`${label} ${m.label}: q/s ratio per round ${o.map((x, i) => (x.qps / d[i]!.qps).toFixed(2)).join(' ')}`);
      };
      ratio('worker/dnsmasq', targets[0]!);
      ratio('main/dnsmasq', targets[2]!);
    }
    console.log(`DNS: ${n} names in weave.local, load from ${useDnsperf ? 'dnsperf and ' : ''}one Node process, ${rounds} rounds of ${seconds} s per server and mode; medians over rounds, ratios: median of the per-round ratios`);
    // Percentiles a mode does not measure are NaN: shown as '-'.
    console.log(table(rows.map((row) => row.map((c) => (typeof c === 'number' && Number.isNaN(c) ? '-' : c === 'NaNx' ? '-' : c)))));
    for (const l of perRound) console.log(l);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--serve') {
  await serve(Number(process.argv[3] ?? 0), Number(process.argv[4] ?? 1000), process.argv[5] ?? 'worker');
} else {
  await main();
}
