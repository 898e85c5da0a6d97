// Routing tables on hand-built topologies: unicast (established and symmetric connections only)
// versus unicastAll (every connection), broadcast next hops (the BFS tree from the source, so a
// broadcast reaches each peer once), lookups for the data plane, and gossip neighbour choice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UNKNOWN_PEER_NAME, type PeerName } from '../../../src/core/peer-name.js';
import { Peer, type ConnectionSummary, type TopologyEntry } from '../../../src/mesh/peer.js';
import { Peers, type RandomInt } from '../../../src/mesh/peers.js';
import { Routes } from '../../../src/mesh/routes.js';
import { Rng } from '../../helpers/prng.js';

// Peers are named A=1, B=2, ... in these tests.
const N = (s: string): PeerName => s.charCodeAt(0) - 64;
const S = (n: PeerName): string => String.fromCharCode(64 + n);

/** One reported connection `from → to`; `established` false marks it not yet proven. */
interface Link {
  from: string;
  to: string;
  established?: boolean;
}

/** Both directions, established: how a healthy connection is reported. */
function sym(a: string, b: string): Link[] {
  return [{ from: a, to: b }, { from: b, to: a }];
}

function chain(...names: string[]): Link[] {
  const out: Link[] = [];
  for (let i = 1; i < names.length; i++) out.push(...sym(names[i - 1] as string, names[i] as string));
  return out;
}

const zero: RandomInt = () => 0;

/** The topology as `us` knows it (everyone has gossiped), with its routes recalculated. */
function view(us: string, links: Link[], randomInt: RandomInt = zero): { peers: Peers; routes: Routes } {
  const byFrom = new Map<PeerName, ConnectionSummary[]>();
  const all = new Set<PeerName>([N(us)]);
  for (const l of links) {
    all.add(N(l.from));
    all.add(N(l.to));
    const list = byFrom.get(N(l.from)) ?? [];
    list.push({ remoteName: N(l.to), remoteTcpAddr: `10.0.0.${N(l.to)}:6783`, outbound: l.from < l.to, established: l.established ?? true });
    byFrom.set(N(l.from), list);
  }
  const ourself = Peer.local({ name: N(us), nickName: us, uid: 1n, shortId: N(us) });
  const peers = new Peers({ ourself, randomInt });
  const update: TopologyEntry[] = [];
  for (const name of all) {
    const conns = byFrom.get(name) ?? [];
    if (name === ourself.name) for (const c of conns) ourself.addConnection(c);
    else update.push({ peer: { name, nickName: S(name), uid: BigInt(name), version: 1n, shortId: name, hasShortId: true }, connections: conns });
  }
  peers.applyUpdate(update);
  const routes = new Routes({ peers, randomInt });
  routes.recalculate();
  return { peers, routes };
}

/** dest → next hop as letters, for every peer in the table that has a route (ourselves as '-'). */
function table(r: Routes, peers: Peers, all: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of peers.names()) {
    const hop = all ? r.unicastAll(n) : r.unicast(n);
    if (hop !== undefined) out[S(n)] = hop === UNKNOWN_PEER_NAME ? '-' : S(hop);
  }
  return out;
}

const letters = (names: readonly PeerName[]): string => names.map(S).join('');

test('before the first recalculation only ourselves is routed', () => {
  const ourself = Peer.local({ name: 1, nickName: 'A', uid: 1n, shortId: 1 });
  ourself.addConnection({ remoteName: 2, remoteTcpAddr: '', outbound: true, established: true });
  const peers = new Peers({ ourself, randomInt: zero });
  const r = new Routes({ peers, randomInt: zero });
  assert.equal(r.unicast(1), UNKNOWN_PEER_NAME);
  assert.equal(r.unicast(2), undefined);
  assert.deepEqual(r.broadcast(1), []);
});

test('line A-B-C-D: every destination through the one neighbour', () => {
  const links = chain('A', 'B', 'C', 'D');
  const a = view('A', links);
  assert.deepEqual(table(a.routes, a.peers, false), { A: '-', B: 'B', C: 'B', D: 'B' });
  assert.deepEqual(table(a.routes, a.peers, true), { A: '-', B: 'B', C: 'B', D: 'B' });
  const b = view('B', links);
  assert.deepEqual(table(b.routes, b.peers, false), { A: 'A', B: '-', C: 'C', D: 'C' });
  // Broadcasts travel along the line, away from the source.
  assert.equal(letters(a.routes.broadcast(N('A'))), 'B');
  assert.equal(letters(b.routes.broadcast(N('A'))), 'C');
  assert.equal(letters(b.routes.broadcast(N('D'))), 'A');
  assert.equal(letters(b.routes.broadcast(N('B'))), 'AC');
  assert.equal(letters(view('D', links).routes.broadcast(N('A'))), '');
  assert.equal(letters(view('C', links).routes.broadcast(N('A'))), 'D');
});

test('star around H: leaves go through H, H fans a leaf broadcast out to the others', () => {
  const links = [...sym('H', 'A'), ...sym('H', 'B'), ...sym('H', 'C'), ...sym('H', 'D')];
  const a = view('A', links);
  assert.deepEqual(table(a.routes, a.peers, false), { A: '-', B: 'H', C: 'H', D: 'H', H: 'H' });
  const h = view('H', links);
  assert.deepEqual(table(h.routes, h.peers, false), { A: 'A', B: 'B', C: 'C', D: 'D', H: '-' });
  assert.equal(letters(h.routes.broadcast(N('A'))), 'BCD');
  assert.equal(letters(h.routes.broadcast(N('H'))), 'ABCD');
  assert.equal(letters(view('B', links).routes.broadcast(N('A'))), '');
  assert.equal(letters(a.routes.broadcast(N('A'))), 'H');
});

test('ring of five: shortest way round, ties broken by the lower name; broadcast halves', () => {
  const links = [...chain('A', 'B', 'C', 'D', 'E'), ...sym('E', 'A')];
  const a = view('A', links);
  assert.deepEqual(table(a.routes, a.peers, false), { A: '-', B: 'B', C: 'B', D: 'E', E: 'E' });
  const c = view('C', links);
  // From C, A and E are both two hops away: A via B, E via D.
  assert.deepEqual(table(c.routes, c.peers, false), { A: 'B', B: 'B', C: '-', D: 'D', E: 'D' });
  // A broadcast from A: A→B,E; B→C; E→D; C and D forward nothing.
  const hops = (at: string) => letters(view(at, links).routes.broadcast(N('A')));
  assert.deepEqual(['A', 'B', 'C', 'D', 'E'].map(hops), ['BE', 'C', '', '', 'D']);
});

test('ring of four: the far peer is reached through the lower-named side only', () => {
  const links = [...chain('A', 'B', 'C', 'D'), ...sym('D', 'A')];
  const a = view('A', links);
  assert.deepEqual(table(a.routes, a.peers, false), { A: '-', B: 'B', C: 'B', D: 'D' });
  const hops = (at: string) => letters(view(at, links).routes.broadcast(N('A')));
  assert.deepEqual(['A', 'B', 'C', 'D'].map(hops), ['BD', 'C', '', '']);
  // From B, D is two hops away either way round: through A, the lower name.
  const b = view('B', links);
  assert.deepEqual(table(b.routes, b.peers, false), { A: 'A', B: '-', C: 'C', D: 'A' });
});

test('a one-sided connection routes gossip (unicastAll) but never data (unicast)', () => {
  // A reports A→B, B does not report B→A; B↔C is healthy.
  const links: Link[] = [{ from: 'A', to: 'B' }, ...sym('B', 'C')];
  const a = view('A', links);
  assert.deepEqual(table(a.routes, a.peers, false), { A: '-' });
  assert.deepEqual(table(a.routes, a.peers, true), { A: '-', B: 'B', C: 'B' });
  assert.deepEqual(a.routes.broadcast(N('A')), []);
  assert.equal(letters(a.routes.broadcastAll(N('A'))), 'B');
  // From B there is no way back to A at all: B does not report a connection to it.
  const b = view('B', links);
  assert.equal(b.routes.unicastAll(N('A')), undefined);
  assert.equal(b.routes.unicast(N('C')), N('C'));
});

test('unestablished connections: unicastAll goes through them, unicast around them', () => {
  // A-B unestablished on A's side; A-C-B healthy: data goes the long way, gossip the short one.
  const links: Link[] = [
    { from: 'A', to: 'B', established: false },
    { from: 'B', to: 'A' },
    ...chain('A', 'C', 'B'),
    ...sym('B', 'D'),
  ];
  const a = view('A', links);
  assert.deepEqual(table(a.routes, a.peers, false), { A: '-', B: 'C', C: 'C', D: 'C' });
  assert.deepEqual(table(a.routes, a.peers, true), { A: '-', B: 'B', C: 'C', D: 'B' });
  assert.equal(letters(a.routes.broadcast(N('A'))), 'C');
  assert.equal(letters(a.routes.broadcastAll(N('A'))), 'BC');
  // At B, a broadcast from A: over all connections B is A's child and forwards to D only
  // (C was reached by A directly); over established ones B is C's child.
  const b = view('B', links);
  assert.equal(letters(b.routes.broadcastAll(N('A'))), 'D');
  assert.equal(letters(b.routes.broadcast(N('A'))), 'D');
  const c = view('C', links);
  assert.equal(letters(c.routes.broadcast(N('A'))), 'B');
  assert.equal(letters(c.routes.broadcastAll(N('A'))), '');
  // Unestablished on both sides, or established on one side only, is the same for data.
  for (const l of [[{ from: 'A', to: 'B', established: false }, { from: 'B', to: 'A', established: false }], [{ from: 'A', to: 'B' }, { from: 'B', to: 'A', established: false }]]) {
    const v = view('A', l);
    assert.equal(v.routes.unicast(N('B')), undefined);
    assert.equal(v.routes.unicastAll(N('B')), N('B'));
  }
});

test('broadcast from a source we do not know, or cannot be reached from, goes nowhere', () => {
  const links = [...chain('A', 'B'), ...chain('C', 'D')];
  const a = view('A', links);
  assert.deepEqual(a.routes.broadcast(N('Z')), []);
  assert.deepEqual(a.routes.broadcast(N('C')), []);
  assert.deepEqual(a.routes.broadcastAll(N('C')), []);
});

test('lookup and lookupOrBroadcast, as the data plane forwards frames we originate', () => {
  const links = [...chain('A', 'B', 'C'), ...sym('A', 'D'), { from: 'A', to: 'E' } as Link, { from: 'E', to: 'A', established: false } as Link];
  const a = view('A', links);
  assert.equal(a.routes.lookup(N('C')), N('B'));
  assert.equal(a.routes.lookup(N('A')), undefined);
  assert.equal(a.routes.lookup(N('E')), undefined);
  assert.deepEqual(a.routes.lookupOrBroadcast(N('C')), [N('B')]);
  assert.deepEqual(a.routes.lookupOrBroadcast(N('A')), []);
  assert.deepEqual(a.routes.lookupOrBroadcast(N('E')), [], 'known but unreachable: dropped');
  assert.equal(letters(a.routes.lookupOrBroadcast(undefined)), 'BD', 'unknown destination: our broadcast tree');
});

test('broadcast routes are cached until recalculate; onChange fires on each recalculation', () => {
  const links = chain('A', 'B', 'C');
  const b = view('B', links);
  let changes = 0;
  const off = b.routes.onChange(() => changes++);
  assert.equal(letters(b.routes.broadcast(N('A'))), 'C');
  // C goes away from A's point of view... B learns that C now connects to nobody.
  b.peers.applyUpdate([{ peer: { name: N('C'), nickName: 'C', uid: BigInt(N('C')), version: 5n, shortId: 3, hasShortId: true }, connections: [] }]);
  assert.equal(letters(b.routes.broadcast(N('A'))), 'C', 'cached');
  assert.equal(b.routes.unicast(N('C')), N('C'), 'not recalculated yet');
  b.routes.recalculate();
  assert.equal(changes, 1);
  assert.equal(letters(b.routes.broadcast(N('A'))), '', 'C is no longer symmetric');
  assert.equal(b.routes.unicast(N('C')), undefined);
  assert.equal(b.routes.unicastAll(N('C')), N('C'));
  off();
  b.routes.recalculate();
  assert.equal(changes, 1);
});

test('randomNeighbours: min(2·log2(#peers), #neighbours), never `except`', () => {
  const star = [...sym('H', 'A'), ...sym('H', 'B'), ...sym('H', 'C'), ...sym('H', 'D')];
  // 5 peers: 2·log2(5) = 4.6 → 4, and H has 4 neighbours: all of them.
  assert.equal(letters(view('H', star).routes.randomNeighbours(UNKNOWN_PEER_NAME).sort((x, y) => x - y)), 'ABCD');
  assert.equal(letters(view('H', star).routes.randomNeighbours(N('B')).sort((x, y) => x - y)), 'ACD');
  // A leaf has one neighbour.
  assert.equal(letters(view('A', star).routes.randomNeighbours(UNKNOWN_PEER_NAME)), 'H');
  assert.deepEqual(view('A', star).routes.randomNeighbours(N('H')), []);
  // Alone: log2(1) = 0.
  assert.deepEqual(view('A', []).routes.randomNeighbours(UNKNOWN_PEER_NAME), []);
  // 12 neighbours, 13 peers: 2·log2(13) = 7.4 → 7 of them.
  const wide: Link[] = [];
  for (let i = 1; i <= 12; i++) wide.push(...sym('Z', String.fromCharCode(64 + i)));
  const z = view('Z', wide, counter());
  const picked = z.routes.randomNeighbours(UNKNOWN_PEER_NAME);
  assert.equal(picked.length, 7);
  assert.equal(new Set(picked).size, 7);
});

function counter(): RandomInt {
  let i = 0;
  return (bound) => i++ % bound;
}

test('randomNeighbours favours neighbours that lead to more peers, deterministically', () => {
  // Z has 10 neighbours A..J; behind A hang 20 more peers, so A carries 21 of 30 destinations.
  const links: Link[] = [];
  for (let i = 1; i <= 10; i++) links.push(...sym('Z', String.fromCharCode(64 + i)));
  for (let i = 0; i < 20; i++) links.push(...sym('A', String.fromCharCode(97 + i)));
  // 31 peers: 2·log2(31) = 9.9 → 9 of the 10 neighbours; A is left out far less than 1 in 10.
  const draw = (seed: number) => view('Z', links, new Rng(seed).int).routes.randomNeighbours(UNKNOWN_PEER_NAME);
  let aFirst = 0;
  let aMissing = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const got = draw(seed);
    assert.equal(got.length, 9);
    if (got[0] === N('A')) aFirst++;
    if (!got.includes(N('A'))) aMissing++;
  }
  assert.ok(aFirst > 100, `A drawn first ${aFirst}/200 times (weight 21/30)`);
  assert.ok(aMissing < 5, `A left out ${aMissing}/200 times`);
  assert.deepEqual(draw(7), draw(7), 'same random source, same choice');
  // A point just past A's weight lands on the next neighbour in name order (B).
  const z = view('Z', links, seq([21]));
  assert.equal(z.routes.randomNeighbours(UNKNOWN_PEER_NAME)[0], N('B'));
});

function seq(values: number[]): RandomInt {
  let i = 0;
  return (bound) => (values[i++ % values.length] ?? 0) % bound;
}
