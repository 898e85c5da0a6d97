// Paxos over gossip: a quorum of one decides alone; with messages delivered in random order,
// lost and duplicated, every node that sees a consensus sees the same value, and when the
// nodes keep talking they all get there. Observers never vote.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PaxosNode, PaxosObserver, determineQuorum, normalizeConsensus, type PaxosGossip } from '../../../src/ipam/paxos.js';
import { seeded } from '../../helpers/prng.js';

const name = (i: number) => 0x7a0000000000 + i;

test('a quorum of one reaches consensus on proposing, with itself as the value', () => {
  const n = new PaxosNode({ name: name(1), uid: 11n }, 1);
  n.propose();
  assert.deepEqual(n.consensus()?.value, [name(1)]);
  assert.deepEqual(n.status(), { Elector: true, KnownNodes: 1, Quorum: 1 });
});

test('no quorum, no proposal; observers have no state and never decide', () => {
  const n = new PaxosNode({ name: name(1), uid: 1n });
  assert.throws(() => n.propose(), /without a quorum/);
  assert.equal(n.consensus(), undefined);
  const o = new PaxosObserver();
  o.setQuorum(1);
  o.propose();
  assert.equal(o.gossipState(), undefined);
  assert.equal(o.update([]), false);
  assert.equal(o.consensus(), undefined);
  assert.deepEqual(o.status(), { Elector: false, KnownNodes: 0, Quorum: 0 });
});

test('a node resumed without a quorum does not accept its own proposal on gossip until it has one', () => {
  const id = (i: number) => ({ name: name(i), uid: BigInt(100 + i) });
  const q = 3;
  const a = new PaxosNode(id(1), q);
  const e = new PaxosNode(id(5), q);
  a.propose();
  if (e.update(a.gossipState()!)) e.think(); // E promises A's round
  // A stops and resumes as the same node from its stored state, quorum not yet known (0).
  const resumed = new PaxosNode(id(1), 0, a.gossipState()!);
  resumed.update(e.gossipState()!);
  resumed.think();
  const ours = () => resumed.gossipState()!.find(([n]) => n.name === name(1))![1];
  assert.equal(ours().accepted.round, 0, 'two promises of five are no quorum: nothing accepted');
  // Once the allocator sets the quorum, the same count still falls short; a third promise does it.
  resumed.setQuorum(q);
  resumed.think();
  assert.equal(ours().accepted.round, 0);
  const b = new PaxosNode(id(2), q);
  if (b.update(resumed.gossipState()!)) b.think();
  resumed.update(b.gossipState()!);
  resumed.think();
  assert.notEqual(ours().accepted.round, 0);
});

test('quorum sizes as the original', () => {
  assert.equal(determineQuorum(2, 0), 2);
  assert.equal(determineQuorum(3, 9), 2);
  assert.equal(determineQuorum(5, 0), 3);
  assert.equal(determineQuorum(undefined, 0), 1);
  assert.equal(determineQuorum(undefined, 1), 2);
  assert.equal(determineQuorum(undefined, 2), 2);
  assert.equal(determineQuorum(undefined, 4), 3);
  assert.deepEqual(normalizeConsensus([3, 1, 3, 2, 1]), [1, 2, 3]);
});

test('random delivery: agreement, and progress while everyone keeps proposing', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const rnd = seeded(seed);
    const count = 2 + Math.floor(rnd() * 6);
    const quorum = Math.floor(count / 2) + 1;
    const nodes = Array.from({ length: count }, (_, i) => new PaxosNode({ name: name(i + 1), uid: BigInt(seed * 100 + i) }, quorum));
    const inbox: { to: number; msg: PaxosGossip }[] = [];
    const send = (from: number) => {
      const msg = nodes[from]!.gossipState().map(([id, c]) => [id, c] as const);
      for (let to = 0; to < count; to++) if (to !== from && rnd() > 0.2) inbox.push({ to, msg });
    };
    const proposers = nodes.filter(() => rnd() < 0.6);
    if (proposers.length === 0) proposers.push(nodes[0]!);
    for (const p of proposers) {
      p.propose();
      send(nodes.indexOf(p));
    }
    const decided = new Map<number, string>();
    for (let step = 0; step < 4000 && decided.size < count; step++) {
      if (inbox.length === 0 || rnd() < 0.02) {
        // Retry, as the allocator does every tick while awaiting consensus.
        const p = proposers[Math.floor(rnd() * proposers.length)]!;
        p.propose();
        send(nodes.indexOf(p));
        continue;
      }
      const { to, msg } = inbox.splice(Math.floor(rnd() * inbox.length), 1)[0]!;
      const n = nodes[to]!;
      if (rnd() < 0.1) inbox.push({ to, msg }); // duplicate
      if (n.update(msg) && n.think()) send(to);
      for (let i = 0; i < count; i++) {
        const c = nodes[i]!.consensus();
        if (c) {
          const v = JSON.stringify(normalizeConsensus(c.value));
          const before = decided.get(i);
          if (before !== undefined) assert.equal(v, before, `seed ${seed}: node ${i} changed its mind`);
          decided.set(i, v);
        }
      }
      if (decided.size > 0 && rnd() < 0.05) for (let i = 0; i < count; i++) send(i);
    }
    const values = new Set(decided.values());
    assert.ok(values.size <= 1, `seed ${seed}: nodes decided differently: ${[...values].join(' / ')}`);
    assert.ok(decided.size >= 1, `seed ${seed}: no consensus`);
    const value = JSON.parse([...values][0]!) as number[];
    assert.ok(value.length >= quorum, `seed ${seed}: value smaller than a quorum`);
  }
});
