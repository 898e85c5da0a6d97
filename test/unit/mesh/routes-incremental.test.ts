// The routes keep their own copy of the search graph and hop distances to a few peers around
// us, updated as the table changes, instead of searching the whole table for every query. This
// checks that the tables and broadcast hops they give are exactly the original search's, on
// random topologies that keep changing (peers learnt and collected, connections made, dropped,
// established, one-sided, reported to peers we do not know), with queries asked between changes
// (so the copies are brought up to date at query time) and after recalculations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerName } from '../../../src/core/peer-name.js';
import { Peer, type ConnectionSummary, type TopologyEntry } from '../../../src/mesh/peer.js';
import { Peers } from '../../../src/mesh/peers.js';
import { Routes, broadcastHopsBySearch } from '../../../src/mesh/routes.js';
import { Rng } from '../../helpers/prng.js';

function conn(remoteName: PeerName, established: boolean): ConnectionSummary {
  return { remoteName, remoteTcpAddr: `10.0.0.${remoteName % 256}:6783`, outbound: true, established };
}

/** One random topology that keeps changing under a Peers/Routes pair; checks after each change. */
function run(seed: number, names: number, steps: number): void {
  const rng = new Rng(seed);
  const us = 1 + rng.int(names);
  const ourself = Peer.local({ name: us, nickName: 'us', uid: 1n, shortId: us });
  const peers = new Peers({ ourself, randomInt: rng.int });
  const routes = new Routes({ peers, randomInt: rng.int });
  const versions = new Map<PeerName, bigint>();
  // Before the first recalculation the routes only know that a broadcast of ours goes nowhere.
  const asked = new Set<string>([`${us}/false`, `${us}/true`]);
  const pick = (): PeerName => 1 + rng.int(names);
  // Connections each peer reports; a sparse random graph with a few dense spots.
  const reports = new Map<PeerName, Map<PeerName, boolean>>();
  const reportOf = (n: PeerName) => {
    let m = reports.get(n);
    if (!m) reports.set(n, (m = new Map()));
    return m;
  };

  // Before the first recalculation, only ourselves.
  let snapshot = { unicast: new Map([[us, 0]]), unicastAll: new Map([[us, 0]]) };
  const check = (label: string) => {
    for (let src = 0; src <= names + 1; src++) {
      for (const sym of [false, true]) {
        const key = `${src}/${sym}`;
        if (asked.has(key)) continue; // cached until the next recalculation, by design
        asked.add(key);
        const got = sym ? routes.broadcast(src) : routes.broadcastAll(src);
        const want = broadcastHopsBySearch(peers, src, sym);
        assert.deepEqual([...got], want, `seed ${seed} ${label}: broadcast${sym ? '' : 'All'}(${src}) at ${us}`);
      }
    }
  };

  for (let step = 0; step < steps; step++) {
    const r = rng.int(100);
    if (r < 45) {
      // A remote peer's new entry: connections added, dropped or flipped.
      const n = pick();
      if (n === us) continue;
      const rep = reportOf(n);
      const k = 1 + rng.int(3);
      for (let i = 0; i < k; i++) {
        const t = rng.chance(0.1) ? names + 1 + rng.int(5) : pick();
        if (rng.chance(0.3)) rep.delete(t);
        else rep.set(t, rng.chance(0.8));
      }
      const v = (versions.get(n) ?? 0n) + 1n;
      versions.set(n, v);
      const e: TopologyEntry = {
        peer: { name: n, nickName: `n${n}`, uid: BigInt(n), version: v, shortId: n, hasShortId: true },
        connections: [...rep].map(([t, est]) => conn(t, est)),
      };
      peers.applyUpdate([e]);
    } else if (r < 65) {
      // Our own connections, as the router makes them.
      const n = pick();
      if (n === us) continue;
      if (ourself.connections.has(n)) {
        if (!ourself.connections.get(n)?.established && rng.chance(0.5)) ourself.establishConnection(n);
        else {
          ourself.deleteConnection(n);
          peers.dereference(n);
        }
      } else {
        peers.fetchWithDefault(Peer.fromSummary({ name: n, nickName: `n${n}`, uid: BigInt(n), version: 0n, shortId: n, hasShortId: true }));
        ourself.addConnection(conn(n, rng.chance(0.5)));
      }
    } else if (r < 75) {
      peers.garbageCollect();
    } else if (r < 85) {
      routes.recalculate();
      asked.clear();
      const search = (sym: boolean) => ourself.routes(undefined, sym, peers).routes;
      snapshot = { unicast: search(true), unicastAll: search(false) };
    }
    // A query for a source never asked about brings the routes' copy of the table up to date
    // (peers collected since the recalculation leave it), which the tables must not notice.
    assert.deepEqual([...routes.broadcastAll(1_000_000 + step)], []);
    // The tables answer as of the last recalculation, for every name, whatever happened since.
    for (let n = 0; n <= names + 6; n++) {
      assert.equal(routes.unicast(n), snapshot.unicast.get(n), `seed ${seed} step ${step}: unicast(${n})`);
      assert.equal(routes.unicastAll(n), snapshot.unicastAll.get(n), `seed ${seed} step ${step}: unicastAll(${n})`);
    }
    // Queries between changes see the table as it is now (the first time after a recalculation).
    if (rng.chance(0.3)) {
      routes.recalculate();
      asked.clear();
      snapshot = { unicast: ourself.routes(undefined, true, peers).routes, unicastAll: ourself.routes(undefined, false, peers).routes };
    }
    check(`step ${step}`);
  }
}

test('incremental routes agree with the search on small changing topologies', () => {
  for (let seed = 1; seed <= 40; seed++) run(seed, 12, 150);
});

test('incremental routes agree with the search on larger changing topologies', () => {
  for (let seed = 100; seed < 106; seed++) run(seed, 60, 400);
});

test('incremental routes agree with the search on a growing sparse mesh (joins through two earlier peers)', () => {
  const rng = new Rng(7);
  const n = 150;
  const ourName = 1 + rng.int(n);
  const ourself = Peer.local({ name: ourName, nickName: 'us', uid: 1n, shortId: 1 });
  const peers = new Peers({ ourself, randomInt: rng.int });
  const routes = new Routes({ peers, randomInt: rng.int });
  const links = new Map<PeerName, Set<PeerName>>();
  const versions = new Map<PeerName, bigint>();
  const add = (a: PeerName, b: PeerName) => {
    if (a === b) return;
    for (const [x, y] of [[a, b], [b, a]] as const) {
      let s = links.get(x);
      if (!s) links.set(x, (s = new Set()));
      s.add(y);
    }
  };
  for (let i = 2; i <= n; i++) {
    add(i, 1 + rng.int(i - 1));
    add(i, 1 + rng.int(i - 1));
  }
  // Entries arrive in random order, as broadcasts do; we query some sources as they arrive.
  const order = [...links.keys()].filter((x) => x !== ourName);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j] as PeerName, order[i] as PeerName];
  }
  for (const t of links.get(ourName) ?? []) {
    peers.fetchWithDefault(Peer.fromSummary({ name: t, nickName: '', uid: BigInt(t), version: 0n, shortId: t, hasShortId: true }));
    ourself.addConnection(conn(t, true));
  }
  let k = 0;
  for (const x of order) {
    const v = (versions.get(x) ?? 0n) + 1n;
    versions.set(x, v);
    peers.applyUpdate([{ peer: { name: x, nickName: '', uid: BigInt(x), version: v, shortId: x, hasShortId: true }, connections: [...(links.get(x) ?? [])].map((t) => conn(t, true)) }]);
    if (k++ % 7 === 0) peers.garbageCollect();
    routes.recalculate();
    for (const src of [x, order[rng.int(order.length)] as PeerName]) {
      assert.deepEqual([...routes.broadcastAll(src)], broadcastHopsBySearch(peers, src, false), `broadcastAll(${src}) after ${k} entries`);
      assert.deepEqual([...routes.broadcast(src)], broadcastHopsBySearch(peers, src, true), `broadcast(${src}) after ${k} entries`);
    }
  }
});

test('route tables answer as of their recalculation for peers collected, re-learnt and collected again since', () => {
  const ourself = Peer.local({ name: 1, nickName: 'us', uid: 1n, shortId: 1 });
  const peers = new Peers({ ourself, randomInt: () => 0 });
  const routes = new Routes({ peers, randomInt: () => 0 });
  const entry = (n: PeerName, v: bigint, to: PeerName[]): TopologyEntry => ({
    peer: { name: n, nickName: `n${n}`, uid: BigInt(n), version: v, shortId: n, hasShortId: true },
    connections: to.map((t) => conn(t, true)),
  });
  peers.fetchWithDefault(Peer.fromSummary({ name: 2, nickName: 'n2', uid: 2n, version: 0n, shortId: 2, hasShortId: true }));
  ourself.addConnection(conn(2, true));
  // 1 - 2 - {3, 4}
  peers.applyUpdate([entry(2, 1n, [1, 3, 4]), entry(3, 1n, [2]), entry(4, 1n, [2])]);
  routes.recalculate();
  const at = (n: PeerName) => [routes.unicast(n), routes.unicastAll(n)];
  assert.deepEqual(at(3), [2, 2]);
  assert.deepEqual(at(4), [2, 2]);
  let fresh = 1000;
  const sync = () => routes.broadcastAll(fresh++); // an unasked source: the routes catch up with the table
  // 2 drops 3 and 4: both collected, their indices freed.
  peers.applyUpdate([entry(2, 2n, [1])]);
  peers.garbageCollect();
  sync();
  // 3 comes back (taking one of the freed indices), then goes again.
  peers.applyUpdate([entry(2, 3n, [1, 3]), entry(3, 2n, [2])]);
  sync();
  peers.applyUpdate([entry(2, 4n, [1])]);
  peers.garbageCollect();
  sync();
  assert.equal(peers.get(3), undefined);
  assert.deepEqual(at(3), [2, 2], 'still as of the recalculation');
  assert.deepEqual(at(4), [2, 2]);
  routes.recalculate();
  assert.deepEqual(at(3), [undefined, undefined]);
  assert.deepEqual(at(4), [undefined, undefined]);
});
