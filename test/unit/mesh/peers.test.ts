// The topology table: merge rules of topology gossip (newer wins, tie-breaks, placeholders,
// idempotence, updates about ourselves), local references, garbage collection, and ShortID
// collisions (lowest name keeps it; the loser takes a free one now or after a GC frees one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerName } from '../../../src/core/peer-name.js';
import { PEER_SHORT_ID_COUNT, Peer, type ConnectionSummary, type PeerSummary, type TopologyEntry } from '../../../src/mesh/peer.js';
import { Peers, type RandomInt } from '../../../src/mesh/peers.js';
import { decodeTopologyUpdateEncoded, encodeTopologyUpdate } from '../../../src/mesh/topology-update.js';
import { seeded } from '../../helpers/prng.js';

function seq(values: number[]): RandomInt {
  let i = 0;
  return (bound) => {
    const v = values[i++ % values.length] ?? 0;
    return v % bound;
  };
}

const counter = (): RandomInt => {
  let i = 0;
  return (bound) => i++ % bound;
};

function node(name: PeerName, shortId = name % PEER_SHORT_ID_COUNT, randomInt: RandomInt = counter()): Peers {
  return new Peers({ ourself: Peer.local({ name, nickName: `n${name}`, uid: BigInt(1000 + name), shortId }), randomInt });
}

function summary(name: PeerName, version: bigint, over: Partial<PeerSummary> = {}): PeerSummary {
  return { name, nickName: `n${name}`, uid: BigInt(1000 + name), version, shortId: name, hasShortId: true, ...over };
}

function conn(remoteName: PeerName, established = true, outbound = true): ConnectionSummary {
  return { remoteName, remoteTcpAddr: `10.0.0.${remoteName}:6783`, outbound, established };
}

function entry(s: PeerSummary, ...connections: ConnectionSummary[]): TopologyEntry {
  return { peer: s, connections };
}

/** What one peer's own Peers says about itself, as a remote would store it. */
function own(p: Peers): TopologyEntry {
  return p.ourself.toEntry();
}

/** Connects our peer to `remote` as the handshake and the local peer would (version 0 intro). */
function connectLocal(p: Peers, remote: Peers, established = true): void {
  p.fetchWithDefault(Peer.fromSummary({ ...remote.ourself.summary(), version: 0n }));
  p.ourself.addConnection(conn(remote.ourself.name, false));
  if (established) p.ourself.establishConnection(remote.ourself.name);
}

function disconnectLocal(p: Peers, remote: PeerName): void {
  p.ourself.deleteConnection(remote);
  p.dereference(remote);
}

test('an unknown peer is added and reported as improved; re-applying is a no-op', () => {
  const p = node(1);
  const u = [entry(summary(2, 3n), conn(1))];
  const r1 = p.applyUpdate(u);
  assert.deepEqual([...r1.improved], [2]);
  assert.deepEqual([...r1.received], [2]);
  assert.equal(r1.changed, true);
  assert.equal(r1.ourselfModified, false);
  assert.equal(p.get(2)?.version, 3n);
  assert.deepEqual([...(p.get(2)?.connections.keys() ?? [])], [1]);

  const before = p.encodeAll();
  const r2 = p.applyUpdate(u);
  assert.equal(r2.changed, false);
  assert.equal(r2.improved.size, 0);
  assert.deepEqual([...r2.received], [2]);
  assert.deepEqual(p.encodeAll(), before);
});

test('a newer version replaces, an older one is ignored', () => {
  const p = node(1);
  p.applyUpdate([entry(summary(2, 5n), conn(1))]);
  const older = p.applyUpdate([entry(summary(2, 4n))]);
  assert.equal(older.changed, false);
  // The sender is behind on 2 (the router answers with ours); an equal entry is not stale.
  assert.deepEqual(older.stale, [2]);
  assert.deepEqual(p.applyUpdate([entry(summary(2, 5n), conn(1))]).stale, []);
  assert.equal(p.get(2)?.connections.size, 1);
  const r = p.applyUpdate([entry(summary(2, 6n, { nickName: 'renamed' }), conn(1), conn(3))]);
  assert.deepEqual([...r.improved], [2]);
  assert.deepEqual(r.stale, []);
  const two = p.get(2);
  assert.equal(two?.version, 6n);
  assert.equal(two?.nickName, 'renamed');
  assert.deepEqual([...(two?.connections.keys() ?? [])].sort(), [1, 3]);
});

test('equal versions: the higher UID wins, then having a ShortID beats not having one', () => {
  const p = node(1);
  p.applyUpdate([entry(summary(2, 5n, { uid: 50n }))]);
  const lower = p.applyUpdate([entry(summary(2, 5n, { uid: 49n }))]);
  assert.equal(lower.changed, false);
  assert.deepEqual(lower.stale, [2]);
  assert.equal(p.applyUpdate([entry(summary(2, 5n, { uid: 51n }))]).changed, true);
  assert.equal(p.get(2)?.uid, 51n);

  const q = node(1);
  q.applyUpdate([entry(summary(2, 5n, { uid: 7n, hasShortId: false, shortId: 0 }))]);
  assert.equal(q.getByShortId(0), undefined);
  const r = q.applyUpdate([entry(summary(2, 5n, { uid: 7n, hasShortId: true, shortId: 9 }))]);
  assert.equal(r.changed, true);
  assert.equal(q.getByShortId(9)?.name, 2);
  // ...but not the other way round, and an identical entry changes nothing.
  assert.equal(q.applyUpdate([entry(summary(2, 5n, { uid: 7n, hasShortId: false, shortId: 0 }))]).changed, false);
  assert.equal(q.applyUpdate([entry(summary(2, 5n, { uid: 7n, hasShortId: true, shortId: 9 }))]).changed, false);
});

test('connection targets we do not know become placeholders, replaced by their own entry', () => {
  const p = node(1);
  const r = p.applyUpdate([entry(summary(2, 1n), conn(1), conn(9))]);
  assert.deepEqual([...r.improved], [2]);
  const ph = p.get(9);
  assert.ok(ph);
  assert.equal(ph.version, 0n);
  assert.equal(ph.uid, 0n);
  assert.equal(ph.hasShortId, false);
  assert.equal(ph.connections.size, 0);
  assert.equal(p.getByShortId(0), undefined);
  // The real peer at version 0 still beats the placeholder: its UID is higher.
  const r2 = p.applyUpdate([entry(summary(9, 0n), conn(2))]);
  assert.deepEqual([...r2.improved], [9]);
  assert.equal(p.get(9)?.uid, 1009n);
  assert.equal(p.getByShortId(9)?.name, 9);
});

test('an entry listed twice in one update: the newer wins whatever the order', () => {
  for (const order of [[1n, 2n], [2n, 1n]]) {
    const p = node(1);
    p.applyUpdate(order.map((v) => entry(summary(2, v), ...(v === 2n ? [conn(1)] : []))));
    assert.equal(p.get(2)?.version, 2n);
    assert.equal(p.get(2)?.connections.size, 1);
  }
});

test('merging commutes: two orders of the same updates give the same table', () => {
  const updates = [
    [entry(summary(2, 3n), conn(1), conn(3))],
    [entry(summary(3, 1n), conn(2)), entry(summary(2, 2n), conn(1))],
    [entry(summary(4, 7n, { uid: 3n }), conn(3)), entry(summary(3, 2n), conn(2), conn(4))],
    [entry(summary(4, 7n, { uid: 4n }), conn(3))],
  ];
  const a = node(1);
  const b = node(1);
  for (const u of updates) a.applyUpdate(u);
  for (const u of [...updates].reverse()) b.applyUpdate(u);
  assert.deepEqual(a.encodeAll(), b.encodeAll());
  assert.equal(a.get(4)?.uid, 4n);
});

test('updates about ourselves: ignored from this incarnation, jumped past from another', () => {
  const p = node(1);
  p.ourself.addConnection(conn(2));
  const before = p.ourself.version;
  // Same UID: whatever it says, we speak for ourselves.
  let r = p.applyUpdate([entry(summary(1, 99n), conn(7))]);
  assert.equal(r.ourselfModified, false);
  assert.equal(p.ourself.version, before);
  assert.deepEqual([...p.ourself.connections.keys()], [2]);
  assert.equal(p.get(7)?.version, 0n, 'the connection target still becomes a placeholder');
  // Another incarnation with a version at or above ours: ours goes past it.
  r = p.applyUpdate([entry(summary(1, 40n, { uid: 5n }))]);
  assert.equal(r.ourselfModified, true);
  assert.equal(r.changed, true);
  assert.equal(r.improved.size, 0);
  assert.equal(p.ourself.version, 41n);
  assert.deepEqual([...p.ourself.connections.keys()], [2]);
  // An older one changes nothing.
  r = p.applyUpdate([entry(summary(1, 12n, { uid: 5n }))]);
  assert.equal(r.ourselfModified, false);
  assert.equal(p.ourself.version, 41n);
  // The jump stays inside uint64, wrapping as the original does.
  p.applyUpdate([entry(summary(1, 2n ** 64n - 1n, { uid: 5n }))]);
  assert.equal(p.ourself.version, 0n);
});

test('local operations bump our version; establishing an unknown connection fails', () => {
  const p = node(1);
  assert.equal(p.ourself.version, 0n);
  p.ourself.addConnection(conn(2, false));
  assert.equal(p.ourself.version, 1n);
  assert.equal(p.ourself.establishConnection(2), true);
  assert.equal(p.ourself.connections.get(2)?.established, true);
  assert.equal(p.ourself.version, 2n);
  assert.equal(p.ourself.establishConnection(3), false);
  assert.equal(p.ourself.deleteConnection(3), false);
  assert.equal(p.ourself.version, 2n);
  assert.equal(p.ourself.deleteConnection(2), true);
  assert.equal(p.ourself.version, 3n);
});

test('encodeAll copies the whole topology into a peer connected to us; encodePeers a subset', () => {
  const a = node(1);
  const b = node(2);
  const c = node(3);
  connectLocal(a, b);
  connectLocal(b, a);
  connectLocal(b, c);
  connectLocal(c, b);
  b.applyUpdate([own(a), own(c)]);
  a.applyUpdate(b.encodeAll());
  const outsider = node(99);
  connectLocal(outsider, a);
  outsider.applyUpdate(a.encodeAll());
  assert.deepEqual(outsider.names(), [1, 2, 3, 99]);
  for (const n of [1, 2, 3]) assert.deepEqual(outsider.get(n)?.toEntry(), b.get(n)?.toEntry());

  assert.deepEqual(b.encodePeers([3, 42, 1, 3]).map((e) => e.peer.name), [3, 1]);
  assert.deepEqual(b.encodeAll().map((e) => e.peer.name), [1, 2, 3]);
  // Entries list connections in name order, so equal states encode equally.
  b.ourself.addConnection(conn(0x10));
  assert.deepEqual(b.ourself.toEntry().connections.map((x) => x.remoteName), [1, 3, 0x10]);
});

test('GC removes exactly the peers we cannot reach (the original test, adapted)', () => {
  const [p1, p2, p3] = [node(1), node(2), node(3)];
  // 1 → 2, 2 → 1, 2 → 3, 3 → 1, 1 → 3 (in 1's own connections); 2 also hears of 1↔3.
  connectLocal(p1, p2);
  connectLocal(p2, p1);
  connectLocal(p2, p3);
  connectLocal(p3, p1);
  connectLocal(p1, p3);
  p2.applyUpdate([own(p1), own(p3)]);
  const gone: Peer[][] = [];
  p1.onGC((removed) => gone.push([...removed]));
  for (const p of [p1, p2, p3]) assert.deepEqual(p.garbageCollect().removed, []);

  // 2 drops its connection to 3: 3 stays, since 1 still reports one to it.
  disconnectLocal(p2, 3);
  assert.deepEqual(p2.garbageCollect().removed, []);
  assert.ok(p2.has(3));

  // 1 drops its connection to 3: nobody 1 can reach connects to 3 any more.
  disconnectLocal(p1, 3);
  p1.applyUpdate([own(p2)]);
  const r = p1.garbageCollect();
  assert.deepEqual(r.removed.map((p) => p.name), [3]);
  assert.deepEqual(gone.map((g) => g.map((p) => p.name)), [[3]]);
  assert.deepEqual(p1.names(), [1, 2]);
});

test('GC keeps peers holding a local reference, and never removes ourselves', () => {
  const p = node(1);
  const intro = p.fetchWithDefault(Peer.fromSummary(summary(5, 0n)));
  assert.equal(p.fetchWithDefault(Peer.fromSummary(summary(5, 0n, { uid: 77n }))), intro, 'the known peer is returned');
  p.applyUpdate([entry(summary(6, 2n), conn(7))]);
  assert.equal(p.gcPending, true);
  let r = p.garbageCollect();
  assert.equal(p.gcPending, false);
  assert.deepEqual(r.removed.map((x) => x.name), [6, 7]);
  assert.deepEqual(p.names(), [1, 5]);
  p.dereference(5);
  assert.deepEqual(p.garbageCollect().removed, [], 'one reference left');
  p.dereference(5);
  r = p.garbageCollect();
  assert.deepEqual(r.removed.map((x) => x.name), [5]);
  p.dereference(1);
  assert.deepEqual(p.garbageCollect().removed, []);
  assert.deepEqual(p.names(), [1]);
});

test('applyUpdate only marks GC pending; peers it made unreachable stay until garbageCollect', () => {
  const p = node(1);
  const q = node(2);
  connectLocal(p, q);
  p.applyUpdate([entry(summary(2, 1n), conn(1), conn(3)), entry(summary(3, 1n), conn(2))]);
  p.garbageCollect();
  assert.deepEqual(p.names(), [1, 2, 3]);
  const r = p.applyUpdate([entry(summary(2, 2n), conn(1))]);
  assert.deepEqual([...r.improved], [2]);
  assert.ok(p.has(3));
  assert.equal(p.gcPending, true);
  assert.deepEqual(p.garbageCollect().removed.map((x) => x.name), [3]);
});

test('callbacks can be unregistered', () => {
  const p = node(1);
  let n = 0;
  const off = p.onGC(() => n++);
  p.applyUpdate([entry(summary(2, 1n))]);
  p.garbageCollect();
  off();
  p.applyUpdate([entry(summary(3, 1n))]);
  p.garbageCollect();
  assert.equal(n, 1);
});

test('ShortID: the lowest name owns it; deleting the owner promotes the next lowest', () => {
  const p = node(100, 7);
  for (const n of [30, 20, 40]) {
    p.fetchWithDefault(Peer.fromSummary(summary(n, 0n, { shortId: 5 })));
  }
  assert.equal(p.getByShortId(5)?.name, 20);
  p.dereference(20);
  p.garbageCollect();
  assert.equal(p.getByShortId(5)?.name, 30);
  p.dereference(30);
  p.dereference(40);
  p.garbageCollect();
  assert.equal(p.getByShortId(5), undefined);
  assert.equal(p.getByShortId(7), p.ourself);
});

test('ShortID invalidation fires exactly when the ShortID → peer mapping changes', () => {
  const p = node(100, 7);
  let fired = 0;
  p.onInvalidateShortIDs(() => fired++);
  const add = (name: PeerName) => p.fetchWithDefault(Peer.fromSummary(summary(name, 0n, { shortId: 8 })));
  const del = (name: PeerName) => {
    p.dereference(name);
    p.garbageCollect();
  };
  const expect = (n: number, what: string) => {
    assert.equal(fired, n, what);
  };
  add(10);
  expect(0, 'a fresh ShortID');
  add(20);
  expect(0, 'a second claimant with a higher name');
  add(5);
  expect(1, 'a lower name takes it over');
  del(20);
  expect(1, 'a non-owner leaves');
  del(5);
  expect(2, 'the owner leaves, 10 takes over');
  del(10);
  expect(2, 'the last claimant leaves');
  add(10);
  expect(3, 'a freed ShortID is reused');
});

test('ShortID collision with ourselves: a lower name takes ours, we pick a free one and gossip it', () => {
  const p = node(50, 7, seq([7, 9]));
  p.ourself.addConnection(conn(10));
  const v = p.ourself.version;
  let invalidated = 0;
  p.onInvalidateShortIDs(() => invalidated++);
  const r = p.applyUpdate([entry(summary(10, 1n, { shortId: 7 }), conn(50))]);
  assert.equal(r.ourselfModified, true);
  assert.equal(p.ourself.shortId, 9, 'the first random pick (7) is taken, the second is free');
  assert.equal(p.ourself.version, v + 1n);
  assert.equal(p.getByShortId(7)?.name, 10);
  assert.equal(p.getByShortId(9), p.ourself);
  assert.equal(invalidated, 1);
  // A higher name claiming our ShortID stays second; we keep it.
  const r2 = p.applyUpdate([entry(summary(60, 1n, { shortId: 9 }), conn(50))]);
  assert.equal(r2.ourselfModified, false);
  assert.equal(p.getByShortId(9), p.ourself);
});

test('ShortID collisions propagate: 1 keeps it, 2 moves, 3 hears of the move (the original test)', () => {
  const [p1, p2, p3] = [node(1, 1), node(2, 2), node(3, 3)];
  connectLocal(p2, p1);
  connectLocal(p3, p2);
  p2.applyUpdate(p1.encodeAll());
  p3.applyUpdate(p2.encodeAll());
  p1.setLocalShortId(2);
  const old = p2.ourself.shortId;
  const r = p2.applyUpdate(p1.encodeAll());
  assert.equal(r.ourselfModified, true);
  assert.notEqual(p2.ourself.shortId, old);
  p3.applyUpdate(p2.encodePeers([...r.improved, p2.ourself.name]));
  assert.equal(p3.get(2)?.shortId, p2.ourself.shortId);
  assert.equal(p3.get(1)?.shortId, 2);
  assert.equal(p3.getByShortId(2)?.name, 1);
});

test('ShortID: with every ShortID taken we wait, and take the one a GC frees', () => {
  const us = node(PEER_SHORT_ID_COUNT + 10, 3, counter());
  const entries: TopologyEntry[] = [];
  for (let i = 0; i < PEER_SHORT_ID_COUNT; i++) {
    const name = i + 1;
    entries.push(entry(summary(name, 1n, { shortId: i })));
    us.ourself.addConnection(conn(name));
  }
  const r = us.applyUpdate(entries);
  assert.equal(r.ourselfModified, false, 'no ShortID is free');
  assert.equal(us.ourself.shortId, 3);
  assert.notEqual(us.getByShortId(3), us.ourself);
  // Disconnect from the peer holding ShortID 1234: GC frees it, we take it.
  us.ourself.deleteConnection(1235);
  const gc = us.garbageCollect();
  assert.deepEqual(gc.removed.map((p) => p.name), [1235]);
  assert.equal(gc.ourselfModified, true);
  assert.equal(us.ourself.shortId, 1234);
  assert.equal(us.getByShortId(1234), us.ourself);
  assert.equal(us.getByShortId(3)?.name, 4);
});

test('GC keeps reachability between collections: the same result as a search of the whole table', () => {
  // Random updates (peers joining, connections coming and going, entries about peers only
  // named so far), our own connections and local references, with a collection after some of
  // them; each collection must leave exactly the reached and the referenced peers, and remove
  // only peers a search from us (over any reported connection) does not reach. (A lost
  // connection that no path of the last search used keeps that search: seed 2 caught a name
  // that joined the table after it, through a connection lost before the next. Another way in
  // found for a peer that lost its own must leave every chain of parents ending at us.)
  for (let seed = 1; seed <= 200; seed++) {
    const random = seeded(seed);
    const rnd = (n: number) => Math.floor(random() * n);
    const p = node(1);
    const refs = new Map<PeerName, number>();
    const versions = new Map<PeerName, bigint>();
    const reachable = (): Set<PeerName> => {
      const seen = new Set<PeerName>([1]);
      const todo: PeerName[] = [1];
      for (let n = todo.pop(); n !== undefined; n = todo.pop()) {
        for (const c of p.get(n)?.connectionItems ?? []) {
          if (!seen.has(c.remoteName) && p.has(c.remoteName)) {
            seen.add(c.remoteName);
            todo.push(c.remoteName);
          }
        }
      }
      return seen;
    };
    for (let step = 0; step < 300; step++) {
      const op = rnd(10);
      const a = 2 + rnd(14);
      if (op < 5) {
        // An entry for `a`, usually newer, listing a few random peers (us among them, sometimes).
        const v = (versions.get(a) ?? 0n) + BigInt(rnd(3));
        versions.set(a, v);
        const conns = [...new Set(Array.from({ length: rnd(4) }, () => 1 + rnd(15)))].filter((n) => n !== a).map((n) => conn(n));
        const update = [entry(summary(a, v), ...conns)];
        // Often with the other ends reporting the same connections (a mesh reports both ends),
        // so that other ways in to a peer whose own is lost exist, several hops long.
        if (rnd(2)) {
          for (const { remoteName: b } of conns) {
            if (b === 1) continue;
            const vb = (versions.get(b) ?? 0n) + 1n;
            versions.set(b, vb);
            const theirs = (p.get(b)?.connectionItems ?? []).map((c) => c.remoteName).filter((n) => n !== a);
            update.push(entry(summary(b, vb), ...theirs.map((n) => conn(n)), conn(a)));
          }
        }
        p.applyUpdate(update);
      } else if (op === 5) {
        // A connection being set up holds its remote; once added, we report it.
        p.fetchWithDefault(Peer.fromSummary(summary(a, 0n)));
        refs.set(a, (refs.get(a) ?? 0) + 1);
        if (rnd(2)) p.ourself.addConnection(conn(a));
      } else if (op === 6 && refs.size > 0) {
        const [b, n] = [...refs][rnd(refs.size)] as [PeerName, number];
        if (rnd(2)) p.ourself.addConnection(conn(b));
        else {
          p.ourself.deleteConnection(b);
          p.dereference(b);
          if (n > 1) refs.set(b, n - 1);
          else refs.delete(b);
        }
      } else {
        const before = reachable();
        const removed = p.garbageCollect().removed.map((q) => q.name);
        for (const n of removed) assert.ok(!before.has(n) && !refs.has(n), `seed ${seed} step ${step}: ${n} was reached or referenced`);
        const after = reachable();
        for (const n of p.names()) assert.ok(after.has(n) || refs.has(n), `seed ${seed} step ${step}: ${n} left though unreached`);
      }
    }
  }
});

test('an entry we hold, received again, still brings back placeholders collected since', () => {
  // 5 is held by a local reference but unreached, so what it reports is collected; the
  // original's merge makes a placeholder for every unknown peer an update names, even in an
  // entry it already has, and so do we.
  const p = node(1);
  p.fetchWithDefault(Peer.fromSummary(summary(5, 0n)));
  // Second in the update: the first entry's connections come after type definitions, so only
  // later entries can be recognised by their bytes.
  const bytes = encodeTopologyUpdate([own(p), entry(summary(5, 2n), conn(6))]);
  const receive = () => p.applyDecoded(decodeTopologyUpdateEncoded(bytes, undefined, (n) => p.get(n)?.encoded));
  receive();
  assert.ok(p.get(5)?.encoded, 'the entry is kept as received');
  receive();
  assert.deepEqual(p.garbageCollect().removed.map((x) => x.name), [6]);
  const r = receive();
  assert.deepEqual([...r.improved], [], 'nothing newer');
  assert.ok(p.has(6), 'the placeholder is back');
  assert.deepEqual(p.garbageCollect().removed.map((x) => x.name), [6]);
});

test("a peer's connections keep every field, in order, whatever their addresses hold", () => {
  const list = [
    { remoteName: 0xffffffffffff, remoteTcpAddr: '10.0.0.1:6783', outbound: true, established: false },
    { remoteName: 3, remoteTcpAddr: '', outbound: false, established: true },
    { remoteName: 2 ** 40 + 1, remoteTcpAddr: '[::1]:40000', outbound: true, established: true },
  ];
  for (const odd of ['', 'a\nb', '\n', 'x\n']) {
    const conns = [...list, { remoteName: 9, remoteTcpAddr: odd, outbound: false, established: false }];
    const p = Peer.fromSummary(summary(5, 1n), [...conns, { ...conns[1]!, remoteTcpAddr: 'again:1' }]);
    // A repeated remote keeps the last entry, at the place of the first (a map's assignment).
    const want = conns.map((c) => (c.remoteName === 3 ? { ...c, remoteTcpAddr: 'again:1' } : c));
    assert.deepEqual(p.connectionItems, want);
    assert.deepEqual([...p.connections.values()], want);
    assert.deepEqual([...p.connections.keys()], want.map((c) => c.remoteName));
    for (const c of want) assert.deepEqual(p.connections.get(c.remoteName), c);
    assert.equal(p.connections.get(4), undefined);
    assert.equal(p.connectionList.establishedTo(3), true);
    assert.equal(p.connectionList.establishedTo(0xffffffffffff), false);
    assert.equal(p.connectionList.establishedTo(4), undefined);
    assert.deepEqual(p.toEntry().connections.map((c) => c.remoteName), [3, 9, 2 ** 40 + 1, 0xffffffffffff]);
  }
});
