// bench/mesh: (1) in-process convergence of N routers over in-memory pipes with a fake clock:
// each joins through two random earlier routers (discovery off, so the graph stays sparse);
// reported: fake-clock time until every router holds the same topology (same peers at the same
// versions) and routes are consistent (every router's next hop towards every peer is a neighbour
// one hop closer, so next hops lead everywhere by shortest paths), wall and CPU time, and bytes
// of topology gossip per router; then the same for one topology change (a new router joining).
// For the join also the messages and bytes the routers wrote to each other, per router (a
// measure of the protocol's work that, unlike time, load on the machine cannot inflate).
// Wall and CPU time leave out the route check itself; CPU time counts every thread of the
// process (the garbage collector's too), and unlike wall time is not inflated by other work on
// the machine.
// (2) with --netns (root): POST /connect → both sides established, between two weaver hosts in
// network namespaces, median of several runs, right after the routers started and 1.5 s later.
//   node dist/bench/mesh/run.js [N ...]        default 10 100
//   node dist/bench/mesh/run.js --netns [runs]
import { performance } from 'node:perf_hooks';
import { SimNetwork } from '../../test/helpers/mesh-sim.js';
import { FRAME_PREFIX_BYTES, type OutboundMessage } from '../../src/mesh/framing.js';
import { ProtocolTag } from '../../src/mesh/protocol.js';
import { summarize, table } from '../lib/stats.js';

const addr = SimNetwork.address;

/** True when every router holds the same peers at the same versions (the same entries). */
function agreed(net: SimNetwork): boolean {
  const routers = [...net.routers.values()];
  const first = routers[0];
  if (!first) return true;
  const names = first.peers.names();
  const versions = names.map((n) => first.peers.get(n)!.version);
  // Early exit on the first difference: while gossip is still spreading this costs little.
  for (const r of routers) {
    if (r.peers.size !== names.length) return false;
    for (let i = 0; i < names.length; i++) {
      if (r.peers.get(names[i]!)?.version !== versions[i]) return false;
    }
  }
  return true;
}

/** Fake-clock time until `agreed` and `routesConsistent`; wall time spent verifying routes apart. */
async function converge(net: SimNetwork, stepMs: number, maxMs: number): Promise<{ fakeMs: number; checkMs: number }> {
  const start = net.clock.now();
  let checkMs = 0;
  for (;;) {
    await net.run(stepMs, stepMs);
    if (agreed(net)) {
      const t = performance.now();
      const bad = routesConsistent(net);
      checkMs += performance.now() - t;
      if (!bad) return { fakeMs: net.clock.now() - start, checkMs };
    }
    if (net.clock.now() - start > maxMs) return { fakeMs: NaN, checkMs };
  }
}

/**
 * Routes are consistent: for every router and every destination, the router's unicastAll next
 * hop is one of its neighbours and one hop closer to the destination in the topology they all
 * agree on; so following next hops from anywhere reaches anywhere by a shortest path, no loops.
 * Returns what is wrong, or undefined.
 */
function routesConsistent(net: SimNetwork): string | undefined {
  const byName = new Map([...net.routers.values()].map((r) => [r.name, r]));
  const any = [...byName.values()][0]!;
  const preds = new Map<number, number[]>();
  for (const p of any.peers.values()) {
    for (const c of p.connections.keys()) {
      if (!any.peers.has(c)) continue;
      let l = preds.get(c);
      if (!l) preds.set(c, (l = []));
      l.push(p.name);
    }
  }
  for (const dst of byName.keys()) {
    // Hop distances to dst over reported connections (a search backwards from dst).
    const dist = new Map<number, number>([[dst, 0]]);
    let level = [dst];
    for (let d = 1; level.length; d++) {
      const next: number[] = [];
      for (const x of level) for (const p of preds.get(x) ?? []) if (!dist.has(p)) {
        dist.set(p, d);
        next.push(p);
      }
      level = next;
    }
    for (const [src, r] of byName) {
      if (src === dst) continue;
      const hop = r.routes.unicastAll(dst);
      const want = dist.get(src);
      if (want === undefined) return `${src} cannot reach ${dst} in the agreed topology`;
      if (hop === undefined || hop === 0) return `${src} has no route to ${dst}`;
      if (!any.peers.get(src)!.connections.has(hop) || dist.get(hop) !== want - 1) return `${src} → ${dst} goes via ${hop}, not a shortest path`;
    }
  }
  return undefined;
}

async function inProcess(n: number): Promise<(string | number)[]> {
  const net = new SimNetwork(n);
  let sent = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 1; i <= n; i++) {
    const r = net.add(i, { discovery: false });
    if (i > 1) r.connect([addr(1 + Math.floor(net.random() * (i - 1))), addr(1 + Math.floor(net.random() * (i - 1)))], false);
  }
  const join = await converge(net, 500, 600_000);
  const joinWall = performance.now() - t0 - join.checkMs;
  // Handshakes and heartbeats included.
  const joinTraffic = { ...net.traffic };
  const cpu1 = process.cpuUsage(cpu0);
  // CPU time of this process (all threads, the garbage collector's too), less the route check's.
  const joinCpu = (cpu1.user + cpu1.system) / 1000 - join.checkMs;
  // One topology change: a new router joins; measure until everyone agrees again.
  const t1 = performance.now();
  for (const r of net.routers.values()) {
    for (const c of r.localConnections()) {
      const conn = c.conn;
      const s = conn.sendMessage.bind(conn);
      conn.sendMessage = (m: OutboundMessage) => {
        if (m.tag === ProtocolTag.Gossip || m.tag === ProtocolTag.GossipBroadcast) sent += FRAME_PREFIX_BYTES + m.message.length;
        s(m);
      };
    }
  }
  net.add(n + 1, { discovery: false }).connect([addr(1 + Math.floor(net.random() * n))], false);
  const change = await converge(net, 250, 600_000);
  const changeWall = performance.now() - t1 - change.checkMs;
  for (const r of net.routers.values()) await r.stop();
  return [
    String(n), join.fakeMs / 1000, joinWall / 1000, joinCpu / 1000, String(Math.round(joinTraffic.writes / n)), (joinTraffic.bytes / n / 1024).toFixed(0),
    change.fakeMs / 1000, changeWall / 1000, (sent / (n + 1) / 1024).toFixed(1),
  ];
}

async function netns(runs: number): Promise<void> {
  const { WeaveHost, Underlay, uniquePrefix, eventually } = await import('../../test/helpers/netns.js');
  const prefix = uniquePrefix();
  const u = new Underlay(prefix);
  const a = new WeaveHost(prefix, 'b1');
  const b = new WeaveHost(prefix, 'b2');
  // Right after start, and 1.5 s later: a router that reported itself started before its data
  // path was ready (it used to) delayed the first heartbeats of an early connection.
  const modes = [
    { label: 'weave, connect right after start', settleMs: 0, times: [] as number[] },
    { label: 'weave, connect 1.5 s after start', settleMs: 1500, times: [] as number[] },
  ];
  try {
    u.attach(a, 1);
    u.attach(b, 2);
    for (let i = 0; i < runs; i++) {
      for (const m of modes) {
        await a.startWeaver({ name: '7a:00:00:00:00:01', nickname: 'b1' });
        await b.startWeaver({ name: '7a:00:00:00:00:02', nickname: 'b2' });
        if (m.settleMs) await new Promise((r) => setTimeout(r, m.settleMs));
        const established = async (h: typeof a) => /established/.test((await h.client.request('GET', '/status/connections')).body);
        const t0 = performance.now();
        await b.client.call('POST', '/connect', 'connect', { form: { peer: '192.0.2.1' } });
        await eventually(async () => (await established(a)) && (await established(b)), 10_000, 'established');
        m.times.push(performance.now() - t0);
        await a.stopWeaver('SIGKILL');
        await b.stopWeaver('SIGKILL');
      }
    }
  } finally {
    await a.destroy();
    await b.destroy();
    u.destroy();
  }
  const rows: (string | number)[][] = [['POST /connect → established both sides', 'runs', 'p50 ms', 'min ms', 'max ms', 'original (perf-anchors)']];
  for (const m of modes) {
    const s = summarize(m.times);
    rows.push([m.label, String(s.n), s.p50, Math.min(...m.times), Math.max(...m.times), '115–128 ms']);
  }
  console.log(table(rows));
  console.log('(polling /status/connections every 50 ms adds up to 50 ms to each figure)');
}

const args = process.argv.slice(2);
if (args[0] === '--netns') {
  await netns(Number(args[1] ?? 5));
} else {
  const sizes = args.length ? args.map(Number) : [10, 100];
  const rows: (string | number)[][] = [['peers', 'join: fake s', 'join: wall s', 'join: cpu s', 'join: msgs sent/router', 'join: KiB sent/router', '+1 peer: fake s', '+1 peer: wall s', 'gossip KiB/router for +1']];
  for (const n of sizes) rows.push(await inProcess(n));
  console.log(`bench/mesh in-process (discovery off, each router joins through two random earlier ones), ${new Date().toISOString()}`);
  console.log(table(rows));
}
process.exit(0);
