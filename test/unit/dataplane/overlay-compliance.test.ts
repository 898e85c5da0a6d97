// The overlays' control side run by real mesh routers in one process (fake clock, in-memory
// TCP), over a simulated underlay: sleeve specials and VXLAN heartbeats are delivered between
// routers unless the test blocks them, with a per-path MTU. The same compliance cases run
// against both overlay sets: establish, forward (where a frame for a container behind a peer goes),
// heartbeat loss, recovery and stop; and an underlay that drops fragments. Then the fast path's
// own cases: fallback and recovery, and connections recycled once nothing carries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryLogger, silentLogger, type Logger } from '../../../src/core/logger.js';
import type { PeerName } from '../../../src/core/peer-name.js';
import { OverlaySwitch } from '../../../src/dataplane/overlay-switch.js';
import { SleeveOverlay, type SleevePeerState } from '../../../src/dataplane/sleeve/overlay.js';
import { VxlanOverlay, decodeHeartbeatFrame, heartbeatMac } from '../../../src/dataplane/vxlan/overlay.js';
import type { MeshRouter } from '../../../src/mesh/router.js';
import { SimNetwork } from '../../helpers/mesh-sim.js';

const NAME = (i: number): PeerName => 0x7a0000000000 + i;
const ipOf = (i: number) => SimNetwork.address(i).split(':')[0] as string;

interface Node {
  i: number;
  router: MeshRouter;
  sw: OverlaySwitch;
  sleeve: SleeveOverlay;
  vxlan: VxlanOverlay | undefined;
  peers: Map<PeerName, SleevePeerState>;
  routes: Map<string, string>;
  best: Map<PeerName, string | undefined>;
}

/** The underlay between simulated hosts. */
class Underlay {
  readonly nodes = new Map<number, Node>();
  readonly blockedSleeve = new Set<string>();
  readonly blockedVxlan = new Set<string>();
  pmtu = 1500;
  /** An MTU black hole: bigger packets vanish without ICMP. */
  dropAbove = Infinity;
  fragmentsPass = true;
  constructor(readonly net: SimNetwork, readonly log: Logger = silentLogger) {}

  key(a: number, b: number) {
    return `${a}>${b}`;
  }

  nodeByIp(ip: string): Node | undefined {
    return [...this.nodes.values()].find((n) => ipOf(n.i) === ip);
  }

  add(i: number, opts: { vxlan: boolean; overlays?: string; password?: string }): Node {
    const clock = this.net.clock;
    const node = { i, peers: new Map(), routes: new Map(), best: new Map() } as unknown as Node;
    node.sw = new OverlaySwitch({ logger: this.log, clock });
    node.sleeve = new SleeveOverlay(
      {
        clock,
        logger: silentLogger,
        datapath: {
          setPeer: (s) => node.peers.set(s.name, s),
          removePeer: (n) => node.peers.delete(n),
          sendSpecial: (peer, df, frame) => {
            const s = node.peers.get(peer);
            if (!s?.ip) return;
            const size = frame.length + (s.sessionKey ? 30 : 6) + 14 + 28;
            if (df && size > this.pmtu) {
              clock.setTimeout(() => node.sleeve.messageTooBig(peer, this.pmtu), 0);
              return;
            }
            if (!df && size > this.pmtu && !this.fragmentsPass) return;
            if (Math.min(size, this.fragmentsPass && !df ? 1500 : size) > this.dropAbove) return;
            const to = this.nodeByIp(s.ip);
            if (!to || this.blockedSleeve.has(this.key(i, to.i))) return;
            clock.setTimeout(() => to.sleeve.specialReceived(NAME(i), ipOf(i), 6783, frame), 1);
          },
        },
      },
      { port: 6783 },
    );
    if (opts.vxlan) {
      node.vxlan = new VxlanOverlay(
        {
          clock,
          logger: silentLogger,
          datapath: {
            route: async (mac, ip, port) => void node.routes.set(mac, `${ip}:${port}`),
            unroute: async (mac) => void node.routes.delete(mac),
            inject: (frame) => {
              const dst = [...frame.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
              const via = node.routes.get(dst);
              if (!via) return;
              const to = this.nodeByIp(via.split(':')[0] as string);
              if (!to || this.blockedVxlan.has(this.key(i, to.i)) || frame.length + 36 > this.pmtu) return;
              clock.setTimeout(() => to.vxlan?.heartbeatReceived(frame), 1);
            },
          },
        },
        { ourName: NAME(i), port: 6784, mtu: 1376 },
      );
      node.sw.add(node.vxlan);
    }
    node.sw.add(node.sleeve);
    node.sw.compat = node.sleeve;
    if (opts.overlays !== undefined) {
      // Pretend to be a router offering other overlay names (e.g. the original's "fastdp sleeve").
      const names = opts.overlays;
      const orig = node.sw.addFeaturesTo.bind(node.sw);
      node.sw.addFeaturesTo = (f) => {
        orig(f);
        f.set('Overlays', names);
      };
    }
    node.sw.onBestChanged = (peer, uid, o) => {
      node.best.set(peer, o);
      node.vxlan?.bestChanged(peer, uid, o);
    };
    node.router = this.net.add(i, { overlay: node.sw, ...(opts.password ? { password: opts.password } : {}) });
    this.nodes.set(i, node);
    return node;
  }
}

function row(n: Node, peer: number) {
  return n.router.connectionRows().find((r) => r.info.includes(`7a:00:00:00:00:0${peer}`));
}

for (const variant of ['sleeve', 'vxlan+sleeve'] as const) {
  const vxlan = variant === 'vxlan+sleeve';

  test(`${variant}: connections establish once heartbeats are acknowledged, MTU verified`, async () => {
    const net = new SimNetwork(11);
    const u = new Underlay(net);
    const [a, b, c] = [1, 2, 3].map((i) => u.add(i, { vxlan }));
    a!.router.connect([SimNetwork.address(2), SimNetwork.address(3)], false);
    b!.router.connect([SimNetwork.address(3)], false);
    await net.run(3000);
    for (const [n, peers] of [[a!, [2, 3]], [b!, [1, 3]], [c!, [1, 2]]] as const) {
      for (const p of peers) {
        const r = row(n, p);
        assert.equal(r?.state, 'established', `${n.i}→${p}`);
        assert.match(r!.info, vxlan ? /^vxlan  7a:/ : /^sleeve 7a:/);
        assert.deepEqual(r!.attrs, vxlan ? { mtu: 1376, name: 'vxlan' } : { mtu: 1438, name: 'sleeve' });
        assert.equal(n.best.get(NAME(p)), vxlan ? 'vxlan' : 'sleeve');
        // Sleeve verified the path MTU whatever carries the traffic.
        assert.equal(n.sleeve.forwarder(NAME(p))?.mtu, 1438);
        assert.equal(n.sleeve.forwarder(NAME(p))?.stackFrag, true);
      }
    }
    if (vxlan) {
      assert.equal(a!.routes.get(heartbeatMac(NAME(2))), `${ipOf(2)}:6784`);
      assert.deepEqual(a!.vxlan!.activePeers().sort(), [NAME(2), NAME(3)]);
    }
  });

  test(`${variant}: frames to a container behind a peer go ${vxlan ? 'onto the fast path' : 'through sleeve'}`, async () => {
    const net = new SimNetwork(19);
    const u = new Underlay(net);
    const [a] = [1, 2].map((i) => u.add(i, { vxlan }));
    a!.router.connect([SimNetwork.address(2)], false);
    await net.run(2000);
    assert.equal(row(a!, 2)?.state, 'established');
    // The data path learns a container MAC behind host 2 (as its engine does from a frame).
    const mac = 'aa:bb:cc:00:00:02';
    a!.vxlan?.macLearned(mac, NAME(2));
    await a!.vxlan?.settled();
    // Sleeve always knows where host 2 is: it carries whatever the fast path does not.
    const s = a!.peers.get(NAME(2));
    assert.equal(s?.ip, ipOf(2));
    assert.equal(s?.port, 6783);
    assert.equal(s?.mtu, 1438);
    if (vxlan) assert.equal(a!.routes.get(mac), `${ipOf(2)}:6784`, 'the kernel forwards it to host 2 over VXLAN');
    else assert.equal(a!.routes.size, 0, 'nothing on a fast path');
  });

  test(`${variant}: sleeve heartbeats lost for 60 s ${vxlan ? 'leave the fast path carrying' : 'close the connection'}`, async () => {
    const net = new SimNetwork(12);
    const u = new Underlay(net);
    const [a, b] = [1, 2].map((i) => u.add(i, { vxlan }));
    a!.router.connect([SimNetwork.address(2)], false);
    await net.run(2000);
    assert.equal(row(a!, 2)?.state, 'established');
    const terminations = a!.router.terminationCount;
    const firstUid = a!.peers.get(NAME(2))?.connUid;
    u.blockedSleeve.add(u.key(1, 2)).add(u.key(2, 1));
    // The last heartbeat arrived within the first second; the timeout is 60 s after it.
    await net.run(55_000, 500);
    assert.equal(row(a!, 2)?.state, 'established', 'still up before the timeout');
    await net.run(10_000, 500);
    if (vxlan) {
      assert.equal(row(a!, 2)?.state, 'established');
      assert.match(row(a!, 2)!.info, /^vxlan /);
      assert.equal(a!.sleeve.forwarder(NAME(2)), undefined, 'the sleeve forwarder is gone');
      assert.equal(a!.router.terminationCount, terminations);
    } else {
      assert.ok(a!.router.terminationCount > terminations, 'connection terminated');
      // The maker dials again; the new connection stays pending while UDP is blocked.
      assert.notEqual(a!.peers.get(NAME(2))?.connUid, firstUid, 'the data path forgot the old connection');
      assert.notEqual(row(a!, 2)?.state, 'established');
    }
    void b;
  });

  test(`${variant}: stopping a router removes the peer from the data path`, async () => {
    const net = new SimNetwork(13);
    const u = new Underlay(net);
    const [a] = [1, 2].map((i) => u.add(i, { vxlan }));
    a!.router.connect([SimNetwork.address(2)], false);
    await net.run(2000);
    assert.ok(a!.peers.has(NAME(2)));
    await net.remove(2);
    await net.run(1000);
    assert.equal(a!.peers.has(NAME(2)), false);
    assert.equal(a!.best.get(NAME(2)), undefined);
    if (vxlan) {
      await a!.vxlan!.settled();
      assert.equal(a!.routes.has(heartbeatMac(NAME(2))), false, 'heartbeat route removed');
      assert.deepEqual(a!.vxlan!.activePeers(), []);
    }
  });
}

test('vxlan: blocked fast path falls back to sleeve within seconds and comes back', async () => {
  const net = new SimNetwork(14);
  const u = new Underlay(net);
  const [a, b] = [1, 2].map((i) => u.add(i, { vxlan: true }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(2000);
  // A learned container MAC of h2 goes onto the fast path while it is healthy.
  a!.vxlan!.macLearned('aa:bb:cc:00:00:02', NAME(2));
  await a!.vxlan!.settled();
  assert.equal(a!.routes.get('aa:bb:cc:00:00:02'), `${ipOf(2)}:6784`);
  u.blockedVxlan.add(u.key(1, 2));
  let t = 0;
  while (a!.best.get(NAME(2)) === 'vxlan' && t < 10_000) {
    await net.run(100, 100);
    t += 100;
  }
  assert.equal(a!.best.get(NAME(2)), 'sleeve');
  assert.ok(t <= 5000, `fell back after ${t} ms`);
  await a!.vxlan!.settled();
  assert.equal(a!.routes.has('aa:bb:cc:00:00:02'), false, 'the MAC left the fast path');
  assert.match(row(a!, 2)!.info, /^sleeve /);
  assert.equal(b!.best.get(NAME(1)), 'vxlan', 'the other direction is unaffected');
  u.blockedVxlan.clear();
  t = 0;
  while (a!.best.get(NAME(2)) !== 'vxlan' && t < 10_000) {
    await net.run(100, 100);
    t += 100;
  }
  assert.equal(a!.best.get(NAME(2)), 'vxlan');
  assert.ok(t <= 2000, `back on the fast path after ${t} ms`);
  await a!.vxlan!.settled();
  assert.equal(a!.routes.get('aa:bb:cc:00:00:02'), `${ipOf(2)}:6784`);
});

test('vxlan: a fast path blocked for minutes while sleeve carries comes back when unblocked, and the connection stays', async () => {
  const net = new SimNetwork(16);
  const u = new Underlay(net);
  const [a] = [1, 2].map((i) => u.add(i, { vxlan: true }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(2000);
  assert.equal(a!.best.get(NAME(2)), 'vxlan');
  u.blockedVxlan.add(u.key(1, 2)).add(u.key(2, 1));
  await net.run(5 * 60_000, 1000);
  assert.equal(a!.best.get(NAME(2)), 'sleeve');
  assert.equal(a!.router.terminationCount, 0, 'sleeve carried all along: nothing to recycle');
  u.blockedVxlan.clear();
  await net.run(3000, 100);
  assert.equal(a!.best.get(NAME(2)), 'vxlan', 'back on the fast path (the original stayed on sleeve)');
});

/** Runs until `a` has closed more connections than `before` (at most `limitMs`); the time taken. */
async function untilTerminated(net: SimNetwork, a: Node, before: number, limitMs: number): Promise<number> {
  let t = 0;
  while (a.router.terminationCount === before && t < limitMs) {
    await net.run(500, 500);
    t += 500;
  }
  return t;
}

test('vxlan: a connection whose fast path never carried is recycled once sleeve times out too', async () => {
  const records: MemoryLogger['records'] = [];
  const net = new SimNetwork(15, new MemoryLogger(records));
  const u = new Underlay(net, new MemoryLogger(records));
  u.pmtu = 1400; // full-MTU fast path heartbeats never fit
  const [a] = [1, 2].map((i) => u.add(i, { vxlan: true }));
  u.blockedSleeve.add(u.key(1, 2)).add(u.key(2, 1)); // UDP 6783 not open yet
  a!.router.connect([SimNetwork.address(2)], false);
  // No heartbeat of either overlay ever arrives: nothing has carried 60 s after the start.
  const t = await untilTerminated(net, a!, 0, 90_000);
  assert.ok(t >= 59_000 && t <= 62_000, `recycled after ${t} ms`);
  assert.ok(records.some((r) => r.msg.includes('no working forwarders to')));
  u.blockedSleeve.clear();
  await net.run(15_000, 500);
  assert.equal(row(a!, 2)?.state, 'established', 'the reconnect brings fresh forwarders');
  assert.match(row(a!, 2)!.info, /^sleeve /);
  // The fast path never carries here, but sleeve does: the connection stays.
  const terminations = a!.router.terminationCount;
  await net.run(90_000, 1000);
  assert.equal(a!.router.terminationCount, terminations);
  assert.match(row(a!, 2)!.info, /^sleeve /);
});

test('vxlan: a fast path that breaks after sleeve timed out recycles the connection', async () => {
  const records: MemoryLogger['records'] = [];
  const net = new SimNetwork(12, new MemoryLogger(records));
  const u = new Underlay(net, new MemoryLogger(records));
  const [a] = [1, 2].map((i) => u.add(i, { vxlan: true }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(2000);
  const mac = 'aa:bb:cc:00:00:02';
  a!.vxlan!.macLearned(mac, NAME(2));
  u.blockedSleeve.add(u.key(1, 2)).add(u.key(2, 1));
  await net.run(70_000, 500);
  u.blockedSleeve.clear();
  assert.equal(a!.sleeve.forwarder(NAME(2)), undefined, 'sleeve timed out; the fast path alone carries');
  // Heartbeats that flow keep it, however long.
  await net.run(3 * 60_000, 1000);
  await a!.vxlan!.settled();
  assert.equal(row(a!, 2)?.state, 'established');
  assert.match(row(a!, 2)!.info, /^vxlan /);
  assert.equal(a!.routes.get(mac), `${ipOf(2)}:6784`);
  assert.equal(a!.router.terminationCount, 0);
  u.blockedVxlan.add(u.key(1, 2)).add(u.key(2, 1));
  // Unhealthy 3.5 s after the last acknowledgement, then 60 s with nothing that carries.
  const t = await untilTerminated(net, a!, 0, 90_000);
  assert.ok(t >= 60_000 && t <= 66_000, `recycled after ${t} ms`);
  assert.ok(records.some((r) => r.msg.includes('no working forwarders to')));
  await a!.vxlan!.settled();
  assert.equal(a!.routes.has(mac), false, 'the MAC left the dead fast path');
  await net.run(15_000, 500);
  assert.equal(row(a!, 2)?.state, 'established');
  assert.match(row(a!, 2)!.info, /^sleeve /);
  assert.equal(a!.best.get(NAME(2)), 'sleeve');
});

test('vxlan: with sleeve gone, a fast path dead one way is recycled by the end whose heartbeats go unanswered', async () => {
  const net = new SimNetwork(21);
  const u = new Underlay(net);
  const [a, b] = [1, 2].map((i) => u.add(i, { vxlan: true }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(2000);
  u.blockedSleeve.add(u.key(1, 2)).add(u.key(2, 1));
  await net.run(70_000, 500);
  assert.match(row(a!, 2)!.info, /^vxlan /);
  // 2 no longer hears 1, so 1's heartbeats go unacknowledged and 1's fast path is unhealthy;
  // 1 still hears 2 (and acknowledges), so 2's side stays healthy.
  u.blockedVxlan.add(u.key(1, 2));
  const t = await untilTerminated(net, a!, a!.router.terminationCount, 90_000);
  assert.ok(t >= 60_000 && t <= 66_000, `recycled after ${t} ms`);
  await net.run(1000, 500);
  assert.equal(b!.router.terminationCount, 1, 'the other end sees the connection go too');
});

test('vxlan: an underlay too small for full-MTU heartbeats never uses the fast path', async () => {
  const net = new SimNetwork(15);
  const u = new Underlay(net);
  u.pmtu = 1400; // 1376 + 50 bytes of VXLAN does not fit
  const [a] = [1, 2].map((i) => u.add(i, { vxlan: true }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(5000);
  assert.equal(row(a!, 2)?.state, 'established');
  assert.match(row(a!, 2)!.info, /^sleeve /);
  assert.deepEqual(row(a!, 2)!.attrs, { mtu: 1338, name: 'sleeve' });
});

test('sleeve: an MTU black hole that appears later is found by the periodic re-verification', async () => {
  const net = new SimNetwork(18);
  const u = new Underlay(net);
  const [a] = [1, 2].map((i) => u.add(i, { vxlan: false }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(2000);
  assert.deepEqual(row(a!, 2)!.attrs, { mtu: 1438, name: 'sleeve' });
  u.dropAbove = 700;
  await net.run(5 * 60_000 + 60_000, 1000);
  assert.equal(row(a!, 2)?.state, 'established');
  assert.deepEqual(row(a!, 2)!.attrs, { mtu: 638, name: 'sleeve' });
});

test('sleeve: an underlay that drops fragments gets frames cut by sleeve itself, at the verified MTU', async () => {
  const net = new SimNetwork(20);
  const u = new Underlay(net);
  u.fragmentsPass = false;
  const [a, b] = [1, 2].map((i) => u.add(i, { vxlan: false }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(5000);
  assert.equal(row(a!, 2)?.state, 'established');
  for (const [n, p] of [[a!, 2], [b!, 1]] as const) {
    // The fragmentation probe got no answer: no kernel fragments; the PMTU is verified still.
    assert.equal(n.sleeve.forwarder(NAME(p))?.stackFrag, false, `${n.i}→${p}`);
    assert.equal(n.peers.get(NAME(p))?.stackFrag, false);
    assert.equal(n.sleeve.forwarder(NAME(p))?.mtu, 1438);
  }
});

test('a router that offers "fastdp sleeve" (the original) gets sleeve from us', async () => {
  const net = new SimNetwork(16);
  const u = new Underlay(net);
  const [a, b] = [u.add(1, { vxlan: true }), u.add(2, { vxlan: false, overlays: 'fastdp sleeve' })];
  a.router.connect([SimNetwork.address(2)], false);
  await net.run(2000);
  assert.equal(row(a, 2)?.state, 'established');
  assert.match(row(a, 2)!.info, /^sleeve /);
  assert.equal(row(b, 1)?.state, 'established');
  assert.deepEqual(a.sw.commonOverlays({ features: new Map([['Overlays', 'fastdp sleeve']]), outbound: true }).map((o) => o.name), ['sleeve']);
  assert.deepEqual(a.sw.commonOverlays({ features: new Map(), outbound: true }).map((o) => o.name), ['sleeve'], 'no Overlays feature: compat sleeve');
  assert.deepEqual(a.sw.commonOverlays({ features: new Map([['Overlays', 'awsvpc']]), outbound: true }), []);
});

test('with a password, connections are encrypted sleeve (no ESP here) with the smaller MTU', async () => {
  const net = new SimNetwork(17);
  const u = new Underlay(net);
  const [a] = [1, 2].map((i) => u.add(i, { vxlan: true, password: 'secret' }));
  a!.router.connect([SimNetwork.address(2)], false);
  await net.run(3000);
  const r = row(a!, 2)!;
  assert.equal(r.state, 'established');
  assert.match(r.info, /^encrypted {3}sleeve 7a:/);
  assert.deepEqual(r.attrs, { encrypted: true, mtu: 1414, name: 'sleeve' });
});

test('heartbeat frames: full MTU, our ethertype, decodable, heartbeat MACs unicast and distinct', () => {
  const f = decodeHeartbeatFrame(Buffer.alloc(10));
  assert.equal(f, undefined);
  const mac = heartbeatMac(0x7a0000000001);
  assert.equal(mac, '7e:00:00:00:00:01');
  assert.equal(parseInt(mac.slice(0, 2), 16) & 1, 0, 'unicast');
  assert.notEqual(heartbeatMac(0x000000000001), '00:00:00:00:00:01');
});
