// bench/mesh: (1) in-process convergence of N routers over in-memory pipes with a fake clock:
// each joins through two random earlier routers (discovery off, so the graph stays sparse);
// reported: fake-clock time until every router holds the same topology, wall time, and bytes
// of topology gossip per router; then the same for one topology change (a new router joining).
// (2) with --netns (root): POST /connect → both sides established, between two weaver hosts in
// network namespaces, median of several runs.
//   node dist/bench/mesh/run.js [N ...]        default 10 100
//   node dist/bench/mesh/run.js --netns [runs]
import { performance } from 'node:perf_hooks';
import { SimNetwork } from '../../test/helpers/mesh-sim.js';
import { ProtocolTag } from '../../src/mesh/protocol.js';
import { summarize, table } from '../lib/stats.js';

const addr = SimNetwork.address;

async function converge(net: SimNetwork, stepMs: number, maxMs: number): Promise<number> {
  const start = net.clock.now();
  for (;;) {
    await net.run(stepMs, stepMs);
    // Same peers at the same versions means the same entries: a cheap fingerprint per router.
    const views = [...net.routers.values()].map((r) => {
      let f = '';
      for (const n of r.peers.names()) f += `${n}:${r.peers.get(n)!.version};`;
      return f;
    });
    if (views.every((v) => v === views[0])) return net.clock.now() - start;
    if (net.clock.now() - start > maxMs) return NaN;
  }
}

async function inProcess(n: number): Promise<(string | number)[]> {
  const net = new SimNetwork(n);
  let sent = 0;
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) {
    const r = net.add(i, { discovery: false });
    if (i > 1) r.connect([addr(1 + Math.floor(net.random() * (i - 1))), addr(1 + Math.floor(net.random() * (i - 1)))], false);
  }
  const joinFake = await converge(net, 500, 600_000);
  const joinWall = performance.now() - t0;
  // One topology change: a new router joins; measure until everyone agrees again.
  const t1 = performance.now();
  for (const r of net.routers.values()) {
    for (const c of r.localConnections()) {
      const conn = c.conn as unknown as { send(tag: number, body?: Uint8Array): void };
      const s = conn.send.bind(conn);
      conn.send = (tag: number, body?: Uint8Array) => {
        if (tag === ProtocolTag.Gossip || tag === ProtocolTag.GossipBroadcast) sent += 5 + (body?.length ?? 0);
        s(tag, body);
      };
    }
  }
  net.add(n + 1, { discovery: false }).connect([addr(1 + Math.floor(net.random() * n))], false);
  const changeFake = await converge(net, 250, 600_000);
  const changeWall = performance.now() - t1;
  for (const r of net.routers.values()) await r.stop();
  return [String(n), joinFake / 1000, joinWall / 1000, changeFake / 1000, changeWall / 1000, (sent / (n + 1) / 1024).toFixed(1)];
}

async function netns(runs: number): Promise<void> {
  const { WeaveHost, Underlay, uniquePrefix, eventually } = await import('../../test/helpers/netns.js');
  const prefix = uniquePrefix();
  const u = new Underlay(prefix);
  const a = new WeaveHost(prefix, 'b1');
  const b = new WeaveHost(prefix, 'b2');
  const times: number[] = [];
  try {
    u.attach(a, 1);
    u.attach(b, 2);
    for (let i = 0; i < runs; i++) {
      await a.startWeaver({ name: '7a:00:00:00:00:01', nickname: 'b1' });
      await b.startWeaver({ name: '7a:00:00:00:00:02', nickname: 'b2' });
      const established = async (h: typeof a) => /established/.test((await h.client.request('GET', '/status/connections')).body);
      const t0 = performance.now();
      await b.client.call('POST', '/connect', 'connect', { form: { peer: '192.0.2.1' } });
      await eventually(async () => (await established(a)) && (await established(b)), 10_000, 'established');
      times.push(performance.now() - t0);
      await a.stopWeaver('SIGKILL');
      await b.stopWeaver('SIGKILL');
    }
  } finally {
    await a.destroy();
    await b.destroy();
    u.destroy();
  }
  const s = summarize(times);
  console.log(table([
    ['POST /connect → established both sides', 'runs', 'p50 ms', 'min ms', 'max ms', 'original (perf-anchors)'],
    ['weave (this run)', String(s.n), s.p50, Math.min(...times), Math.max(...times), '115–128 ms'],
  ]));
  console.log('(polling /status/connections every 50 ms adds up to 50 ms to each figure)');
}

const args = process.argv.slice(2);
if (args[0] === '--netns') {
  await netns(Number(args[1] ?? 5));
} else {
  const sizes = args.length ? args.map(Number) : [10, 100];
  const rows: (string | number)[][] = [['peers', 'join: fake s', 'join: wall s', '+1 peer: fake s', '+1 peer: wall s', 'gossip KiB/router for +1']];
  for (const n of sizes) rows.push(await inProcess(n));
  console.log(`bench/mesh in-process (discovery off, each router joins through two random earlier ones), ${new Date().toISOString()}`);
  console.log(table(rows));
}
process.exit(0);
