// What the allocator keeps in the daemon's store (the original kept the same things in BoltDB,
// gob-encoded: `peername`, `ring`, `ownedAddresses`; db/boltdb.go, ipam/allocator.go):
//
//   ipam/range           the allocation range the data belongs to ("10.32.0.0/12"); data for
//                        another range is discarded on start, as the original does
//   ipam/peername        our peer name ("7a:00:00:00:00:01"); data of another name is discarded
//   ipam/ring            the ring: {"v":1,"start":n,"end":n,"peer":n,"entries":[token,peer,
//                        version,free,...],"seeds":[n,...]} (numbers: compact and quick, the
//                        ring is written on every change)
//   ipam/owned/<ident>   {"cidrs":["10.32.0.1/12",...],"isContainer":true?,"owner":"..."?}: the
//                        single-peer allocator's format, so its data carries over
//   ipam/paxos           our Paxos node while the first ring is agreed (see KEY_PAXOS)
//
// Decoders are total: anything unreadable is undefined (and then ignored with a log line).
import { formatCidr, parseCidr, type Cidr } from '../core/ip.js';
import type { PeerName } from '../core/peer-name.js';
import type { NodeClaims, NodeId, PaxosGossip, ProposalId } from './paxos.js';
import type { RingEntry, RingState } from './ring.js';

export const KEY_RANGE = 'ipam/range';
export const KEY_NAME = 'ipam/peername';
export const KEY_RING = 'ipam/ring';
export const KEY_OWNED = 'ipam/owned/';

/** The key-value store the allocator persists to (the daemon passes its SQLite store). */
export interface IpamStore {
  get(key: string): string | undefined;
  scan(prefix: string): { key: string; value: string }[];
  set(key: string, value: string): void;
  delete(key: string): void;
  transaction<T>(fn: () => T): T;
}

/** The addresses one ident holds. */
export interface Owned {
  cidrs: Cidr[];
  isContainer: boolean;
  owner?: string;
}

export function encodeOwned(o: Owned): string {
  return JSON.stringify({ cidrs: o.cidrs.map(formatCidr), ...(o.isContainer ? { isContainer: true } : {}), ...(o.owner ? { owner: o.owner } : {}) });
}

export function decodeOwned(s: string): Owned | undefined {
  try {
    const v = JSON.parse(s) as { cidrs?: unknown; isContainer?: unknown; owner?: unknown };
    if (!Array.isArray(v.cidrs)) return undefined;
    const cidrs = v.cidrs.filter((x): x is string => typeof x === 'string').map((x) => parseCidr(x));
    return { cidrs, isContainer: v.isContainer === true, ...(typeof v.owner === 'string' ? { owner: v.owner } : {}) };
  } catch {
    return undefined;
  }
}

export function encodeRing(r: RingState): string {
  const entries: number[] = [];
  for (const e of r.entries) entries.push(e.token, e.peer, e.version, e.free);
  return JSON.stringify({ v: 1, start: r.start, end: r.end, peer: r.peer, entries, seeds: r.seeds });
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

export function decodeRing(s: string): RingState | undefined {
  try {
    const v = JSON.parse(s) as { v?: unknown; start?: unknown; end?: unknown; peer?: unknown; entries?: unknown; seeds?: unknown };
    if (v.v !== 1 || !isCount(v.start) || !isCount(v.end) || !isCount(v.peer) || !Array.isArray(v.entries) || !Array.isArray(v.seeds)) return undefined;
    const flat = v.entries as unknown[];
    if (flat.length % 4 !== 0 || !flat.every(isCount) || !(v.seeds as unknown[]).every(isCount)) return undefined;
    const entries: RingEntry[] = [];
    for (let i = 0; i < flat.length; i += 4) {
      entries.push({ token: flat[i] as number, peer: flat[i + 1] as PeerName, version: flat[i + 2] as number, free: flat[i + 3] as number });
    }
    return { start: v.start, end: v.end, peer: v.peer, entries, seeds: v.seeds as PeerName[] };
  } catch {
    return undefined;
  }
}

/**
 * ipam/paxos: our Paxos node id and what it knows, while the first ring is being agreed. An
 * acceptor must not forget its promises: a peer restarted during consensus resumes as the same
 * node (the original voted again as a new one, which can let two quorums, two rings, form).
 * Deleted once a ring exists.
 */
export const KEY_PAXOS = 'ipam/paxos';

export function encodePaxos(id: NodeId, knows: PaxosGossip): string {
  const node = (n: NodeId) => [n.name, n.uid.toString()];
  const proposal = (p: ProposalId) => [p.round, ...node(p.proposer)];
  return JSON.stringify({
    v: 1,
    id: node(id),
    knows: knows.map(([n, c]) => [node(n), proposal(c.promise), proposal(c.accepted), [...c.acceptedVal.value], proposal(c.acceptedVal.origin)]),
  });
}

export function decodePaxos(s: string): { id: NodeId; knows: PaxosGossip } | undefined {
  try {
    const v = JSON.parse(s) as { v?: unknown; id?: unknown; knows?: unknown };
    const node = (x: unknown): NodeId => {
      if (!Array.isArray(x) || x.length !== 2 || !isCount(x[0]) || typeof x[1] !== 'string' || !/^[0-9]{1,20}$/.test(x[1])) throw new Error('bad node');
      return { name: x[0], uid: BigInt(x[1]) };
    };
    const proposal = (x: unknown): ProposalId => {
      if (!Array.isArray(x) || x.length !== 3 || !isCount(x[0])) throw new Error('bad proposal');
      return { round: x[0], proposer: node(x.slice(1)) };
    };
    if (v.v !== 1 || !Array.isArray(v.knows)) return undefined;
    const knows = (v.knows as unknown[]).map((k): readonly [NodeId, NodeClaims] => {
      if (!Array.isArray(k) || k.length !== 5 || !Array.isArray(k[3]) || !(k[3] as unknown[]).every(isCount)) throw new Error('bad claims');
      return [node(k[0]), { promise: proposal(k[1]), accepted: proposal(k[2]), acceptedVal: { value: k[3] as PeerName[], origin: proposal(k[4]) } }];
    });
    return { id: node(v.id), knows };
  } catch {
    return undefined;
  }
}
