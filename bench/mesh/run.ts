// bench/mesh: (1) in-process convergence of N routers over in-memory pipes with a fake clock:
// each joins through two random earlier routers (discovery off, so the graph stays sparse);
// reported: fake-clock time until every router holds the same topology (same peers at the same
// versions), no route recalculation is still due, and routes are consistent (every router's next
// hop towards every peer is a neighbour one hop closer, so next hops lead everywhere by shortest
// paths), wall and CPU time; then the same, and the topology gossip written per router, for four
// single changes in the converged mesh (a router joins, a router stops, a link is cut, the link
// comes back).
// For the join also the messages and bytes the routers wrote to each other, per router (a
// measure of the protocol's work that, unlike time, load on the machine cannot inflate), and
// the time each router spent handling its own connections and timers (median and busiest):
// all routers share one thread here, so the wall time is about their sum, while on real hosts
// each router does only its own share, beside the others.
// Each single change starts after a full garbage collection (see collectGarbage). Wall and CPU
// time leave out the route check itself; CPU time counts every thread of the process (the
// garbage collector's too), and unlike wall time is not inflated by other work on the machine.
// (2) with --netns (root): POST /connect → both sides established, between two weaver hosts in
// network namespaces, median of several runs, right after the routers started and 1.5 s later.
//   node dist/bench/mesh/run.js [N ...]        default 10 100
//   node dist/bench/mesh/run.js --netns [runs]
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { SimNetwork } from '../../test/helpers/mesh-sim.js';
import type { MeshRouter } from '../../src/mesh/router.js';
import { FRAME_PREFIX_BYTES, type OutboundMessage } from '../../src/mesh/framing.js';
import { ProtocolTag } from '../../src/mesh/protocol.js';
import { ROUTES_RECALC_DELAY_MS } from '../../src/mesh/routes.js';
import { summarize, table } from '../lib/stats.js';

const addr = SimNetwork.address;

// A full garbage collection before each single change: the heap of 1000 routers (over 1 GB)
// still holds the garbage of the change before, and its collection, which lands in whichever
// change comes next, is not that change's work (a real router holds one table, not a thousand).
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

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

/**
 * Fake-clock time until `agreed`, `done` (what every router must also see), no route
 * recalculation still due (the tables reflect the topology held; otherwise the work left
 * pending is charged to the next change measured) and `routesConsistent`; wall time spent
 * verifying routes apart. `eachStep` runs after every step; once only the recalculations are
 * due, steps are as long as their delay, so the figure keeps that resolution.
 */
async function converge(
  net: SimNetwork,
  stepMs: number,
  maxMs: number,
  opts: { done?: (r: MeshRouter) => boolean; eachStep?: () => void } = {},
): Promise<{ fakeMs: number; checkMs: number }> {
  const start = net.clock.now();
  let checkMs = 0;
  let step = stepMs;
  for (;;) {
    await net.run(step, step);
    opts.eachStep?.();
    step = stepMs;
    const routers = [...net.routers.values()];
    if (agreed(net) && (!opts.done || routers.every(opts.done))) {
      if (routers.some((r) => r.routesPending)) step = ROUTES_RECALC_DELAY_MS;
      else {
        const t = performance.now();
        const bad = routesConsistent(net);
        checkMs += performance.now() - t;
        if (!bad) return { fakeMs: net.clock.now() - start, checkMs };
      }
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

const { graph: graphOf, stillConnected, indexOf } = SimNetwork;

interface Change {
  label: string;
  apply: (net: SimNetwork) => Promise<void> | void;
  /** What every router must see besides agreement, so that the change itself is counted. */
  seen: (r: MeshRouter) => boolean;
}

/** Whether a reports an established connection to b. */
const linked = (r: MeshRouter, a: number, b: number) => r.peers.get(a)?.connections.get(b)?.established === true;

/** One topology change in a converged mesh, until everyone agrees again: fake, wall and CPU s, gossip KiB per router. */
async function measureChange(net: SimNetwork, change: Change): Promise<(string | number)[]> {
  let sent = 0;
  // Topology gossip written from now on, on every connection (new ones included).
  const counted = new WeakSet<object>();
  const count = () => {
    for (const r of net.routers.values()) {
      for (const c of r.localConnections()) {
        const conn = c.conn;
        if (counted.has(conn)) continue;
        counted.add(conn);
        const s = conn.sendMessage.bind(conn);
        conn.sendMessage = (m: OutboundMessage) => {
          if (m.tag === ProtocolTag.Gossip || m.tag === ProtocolTag.GossipBroadcast) sent += FRAME_PREFIX_BYTES + m.message.length;
          s(m);
        };
      }
    }
  };
  collectGarbage();
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  count();
  await change.apply(net);
  const { fakeMs, checkMs } = await converge(net, 250, 600_000, { done: change.seen, eachStep: count });
  const wall = performance.now() - t - checkMs;
  const cpu = process.cpuUsage(cpu0);
  return [change.label, fakeMs / 1000, wall / 1000, ((cpu.user + cpu.system) / 1000 - checkMs) / 1000, (sent / net.routers.size / 1024).toFixed(1)];
}

async function inProcess(n: number): Promise<{ join: (string | number)[]; changes: (string | number)[][] }> {
  const net = new SimNetwork(n, undefined, { account: true });
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
  // What each router itself spent (net.busyMs): the work one host would do alone.
  const busy = [...net.busyMs!.values()].sort((x, y) => x - y);
  const perRouter = { median: busy[Math.floor(busy.length / 2)] ?? 0, max: busy[busy.length - 1] ?? 0 };
  // Single topology changes, each in the mesh the one before left converged. The router that
  // stops and the link that is cut are picked so that the mesh stays connected (else the two
  // halves would rightly never agree).
  const pick = <T>(xs: T[]): T => xs[Math.floor(net.random() * xs.length)]!;
  let cutLink: [number, number] = [0, 0];
  let gone = 0;
  const changes: Change[] = [
    {
      label: '+1 peer (joins through one router)',
      apply: (s) => void s.add(n + 1, { discovery: false }).connect([addr(1 + Math.floor(s.random() * n))], false),
      seen: (r) => r.peers.has(0x7a0000000000 + n + 1),
    },
    {
      label: '−1 peer (a router stops)',
      apply: async (s) => {
        const g = graphOf(s);
        gone = pick([...g.keys()].filter((x) => stillConnected(g, x)));
        await s.remove(indexOf(gone));
      },
      seen: (r) => !r.peers.has(gone),
    },
    {
      label: 'link cut (both ends stay reachable)',
      apply: (s) => {
        const g = graphOf(s);
        const edges = [...g].flatMap(([a, bs]) => [...bs].filter((b) => a < b).map((b): [number, number] => [a, b]));
        cutLink = pick(edges.filter((e) => stillConnected(g, undefined, e)));
        s.partition(indexOf(cutLink[0]), indexOf(cutLink[1]));
      },
      seen: (r) => !r.peers.get(cutLink[0])?.connections.has(cutLink[1]) && !r.peers.get(cutLink[1])?.connections.has(cutLink[0]),
    },
    // The connection maker redials after its backoff (2 s, ×1.5 per failure), so the fake
    // time includes that wait.
    {
      label: 'link restored',
      apply: (s) => s.partition(indexOf(cutLink[0]), indexOf(cutLink[1]), false),
      seen: (r) => linked(r, cutLink[0], cutLink[1]) && linked(r, cutLink[1], cutLink[0]),
    },
  ];
  const rows: (string | number)[][] = [];
  for (const c of changes) rows.push([String(n), ...(await measureChange(net, c))]);
  for (const r of net.routers.values()) await r.stop();
  return {
    join: [
      String(n), join.fakeMs / 1000, joinWall / 1000, joinCpu / 1000, perRouter.median.toFixed(0), perRouter.max.toFixed(0),
      String(Math.round(joinTraffic.writes / n)), (joinTraffic.bytes / n / 1024).toFixed(0),
    ],
    changes: rows,
  };
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
        // The bridge check as in production (the tests' 200 ms spawns an `ip` five times a second).
        const args = ['--bridge-check-interval-ms', '2000'];
        await a.startWeaver({ name: '7a:00:00:00:00:01', nickname: 'b1', args });
        await b.startWeaver({ name: '7a:00:00:00:00:02', nickname: 'b2', args });
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
  const joins: (string | number)[][] = [['peers', 'join: fake s', 'join: wall s', 'join: cpu s', 'per router: median ms', 'busiest router ms', 'join: msgs sent/router', 'join: KiB sent/router']];
  const changes: (string | number)[][] = [['peers', 'change', 'fake s', 'wall s', 'cpu s', 'gossip KiB/router']];
  for (const n of sizes) {
    const r = await inProcess(n);
    joins.push(r.join);
    changes.push(...r.changes);
  }
  console.log(`bench/mesh in-process (discovery off, each router joins through two random earlier ones), ${new Date().toISOString()}`);
  console.log('Forming the mesh from nothing:');
  console.log(table(joins));
  console.log('(per router: the time each router spent handling its own connections and timers, all in one thread here; the work one host would do alone)');
  console.log('One topology change at a time in the converged mesh, until every router agrees again:');
  console.log(table(changes));
}
process.exit(0);
