// weaveDNS over a simulated mesh (test/helpers/mesh-sim.ts: real MeshRouters over in-memory
// pipes, one FakeClock): each router runs a Nameserver on the `nameserver` channel, wired as the
// daemon will wire it (newGossip, isKnownPeer from the topology, peerGone from mesh GC).
// Entries added anywhere converge everywhere; delete / re-add cycles converge; a router that
// leaves takes its entries with it; a router that comes back under the same name gets the
// table back and its re-registered entries spread again; a late joiner learns everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../../src/core/logger.js';
import type { MeshRouter } from '../../../src/mesh/router.js';
import { NAMESERVER_CHANNEL, Nameserver } from '../../../src/dns/nameserver.js';
import { SimNetwork } from '../../helpers/mesh-sim.js';

const addr = SimNetwork.address;

interface Host {
  router: MeshRouter;
  ns: Nameserver;
}

function attach(net: SimNetwork, router: MeshRouter): Host {
  const ns = new Nameserver({ clock: net.clock, logger: silentLogger, isKnownPeer: (p) => router.peers.has(p) }, { ourName: router.name });
  ns.setGossip(router.newGossip(NAMESERVER_CHANNEL, ns));
  router.peers.onGC((removed) => {
    for (const p of removed) ns.peerGone(p.name);
  });
  ns.start();
  return { router, ns };
}

/** Every host's view of the live table: name → sorted addresses, plus the raw entry list. */
function view(h: Host): string {
  return JSON.stringify(h.ns.allEntries().filter((e) => e.tombstone === 0).map((e) => [e.hostname, e.origin, e.containerId, e.addr]));
}

function assertConverged(hosts: Host[], what: string): void {
  const want = view(hosts[0]!);
  for (const h of hosts) assert.equal(view(h), want, `${what}: ${h.router.name.toString(16)} differs`);
}

async function setup(): Promise<{ net: SimNetwork; hosts: Host[] }> {
  const net = new SimNetwork(61);
  const hosts = [1, 2, 3].map((i) => attach(net, net.add(i)));
  hosts[1]!.router.connect([addr(1)], false);
  hosts[2]!.router.connect([addr(2)], false); // a line: h3 reaches h1 only through h2
  await net.run(5000);
  return { net, hosts };
}

test('entries added on each router converge everywhere', async () => {
  const { net, hosts } = await setup();
  hosts.forEach((h, i) => {
    h.ns.addEntryFqdn(`h${i + 1}.weave.local`, `c${i + 1}`, 0x0a200001 + i);
    h.ns.addEntryFqdn('svc.weave.local', `c${i + 1}`, 0x0a300001 + i);
  });
  await net.run(2000);
  assertConverged(hosts, 'after adds');
  for (const h of hosts) {
    assert.deepEqual(h.ns.lookup('h3.weave.local.'), [0x0a200003]);
    assert.deepEqual([...h.ns.lookup('SVC.weave.local.')].sort(), [0x0a300001, 0x0a300002, 0x0a300003]);
  }
  for (const h of hosts) await h.router.stop();
});

test('removal and re-add cycles converge, also when changes come faster than gossip', async () => {
  const { net, hosts } = await setup();
  hosts.forEach((h, i) => h.ns.addEntryFqdn('svc.weave.local', `c${i + 1}`, 0x0a300001 + i));
  await net.run(2000);
  for (let cycle = 0; cycle < 5; cycle++) {
    const h = hosts[cycle % 3]!;
    const i = cycle % 3;
    h.ns.delete('svc.weave.local.', '*', '*');
    await net.run(1000);
    assertConverged(hosts, `cycle ${cycle} after delete`);
    for (const x of hosts) assert.ok(!x.ns.lookup('svc.weave.local.').includes(0x0a300001 + i), `cycle ${cycle}: deleted everywhere`);
    h.ns.addEntryFqdn('svc.weave.local', `c${i + 1}`, 0x0a300001 + i);
    await net.run(1000);
    assertConverged(hosts, `cycle ${cycle} after re-add`);
    for (const x of hosts) assert.equal(x.ns.lookup('svc.weave.local.').length, 3, `cycle ${cycle}: back everywhere`);
  }
  // Delete and re-add on every router without waiting, several times over: the last word wins.
  for (let k = 0; k < 4; k++) {
    hosts.forEach((h) => h.ns.delete('*', '*', '*'));
    hosts.forEach((h, i) => h.ns.addEntryFqdn('svc.weave.local', `c${i + 1}`, 0x0a300001 + i));
  }
  hosts[0]!.ns.delete('*', '*', '*');
  await net.run(1000);
  assertConverged(hosts, 'after bursts');
  for (const x of hosts) assert.deepEqual([...x.ns.lookup('svc.weave.local.')].sort(), [0x0a300002, 0x0a300003]);
  // Periodic gossip (every 30 s) keeps them equal, and the tombstones are purged after 30 min.
  await net.run(61 * 60_000, 1000);
  assertConverged(hosts, 'an hour later');
  for (const x of hosts) assert.equal(x.ns.allEntries().filter((e) => e.tombstone > 0).length, 0, 'tombstones purged');
  for (const h of hosts) await h.router.stop();
});

test('a router leaving removes its entries; back under the same name it gets the table and re-registers', async () => {
  const { net, hosts } = await setup();
  hosts.forEach((h, i) => h.ns.addEntryFqdn(`h${i + 1}.weave.local`, `c${i + 1}`, 0x0a200001 + i));
  await net.run(2000);
  assertConverged(hosts, 'before');

  await net.remove(3);
  await net.run(5000);
  for (const h of hosts.slice(0, 2)) {
    assert.deepEqual(h.ns.lookup('h3.weave.local.'), [], 'gone with its router');
    assert.equal(h.ns.allEntries().filter((e) => e.origin === 0x7a0000000003).length, 0);
  }

  // Restart: a new router and nameserver with the same peer name, empty state.
  const back = attach(net, net.add(3));
  back.router.connect([addr(2)], false);
  await net.run(5000);
  assert.deepEqual(back.ns.lookup('h1.weave.local.'), [0x0a200001], 'the table comes back');
  assert.deepEqual(back.ns.lookup('h2.weave.local.'), [0x0a200002]);
  // The daemon re-registers its running containers; the entry spreads again.
  back.ns.addEntryFqdn('h3.weave.local', 'c3', 0x0a200003);
  await net.run(2000);
  const all = [hosts[0]!, hosts[1]!, back];
  assertConverged(all, 'after restart');
  for (const h of all) assert.deepEqual(h.ns.lookup('h3.weave.local.'), [0x0a200003]);
  for (const h of all) await h.router.stop();
});

test('a quick restart: stale entries in our name are deleted unless re-registered', async () => {
  const { net, hosts } = await setup();
  hosts[2]!.ns.addEntryFqdn('keep.weave.local', 'c1', 0x0a200010);
  hosts[2]!.ns.addEntryFqdn('stale.weave.local', 'c2', 0x0a200011);
  await net.run(2000);
  // h3's nameserver loses its state but its router stays (the others never GC it), as when
  // weaver restarts faster than the topology notices: its old entries are still out there.
  const fresh = attach(net, hosts[2]!.router);
  fresh.ns.addEntryFqdn('keep.weave.local', 'c1', 0x0a200010);
  await net.run(31_000); // periodic gossip brings the old claims back to h3
  const all = [hosts[0]!, hosts[1]!, fresh];
  assertConverged(all, 'after the quick restart');
  for (const h of all) {
    assert.deepEqual(h.ns.lookup('keep.weave.local.'), [0x0a200010]);
    assert.deepEqual(h.ns.lookup('stale.weave.local.'), []);
  }
  for (const h of hosts) await h.router.stop();
});

test('a late joiner learns every entry from the gossip on its new connection', async () => {
  const { net, hosts } = await setup();
  hosts.forEach((h, i) => h.ns.addEntryFqdn(`h${i + 1}.weave.local`, `c${i + 1}`, 0x0a200001 + i));
  await net.run(2000);
  const late = attach(net, net.add(4));
  late.router.connect([addr(1)], false);
  await net.run(3000);
  assertConverged([...hosts, late], 'late joiner');
  assert.equal(late.ns.entryCount(), 3);
  for (const h of [...hosts, late]) await h.router.stop();
});
