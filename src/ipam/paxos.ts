// Single-decree Paxos over gossip (weave `ipam/paxos`), used once per cluster: to agree on
// the set of peers the first ring is divided between.
//
// Every node gossips everything it knows of every node's claims (promise, accepted proposal
// and value); the Paxos steps happen in `think()` as knowledge arrives: copy the highest
// promise seen (Promise); when our own proposal has been promised by a quorum, accept it with
// the best value already accepted by one of them, or the set of nodes we know (Accept
// request); accept what the proposal we promised was accepted with (Accepted). Consensus is a
// quorum of nodes having accepted values of one origin. Node ids include the peer's UID: an
// acceptor must not forget its promises, and a restarted peer is a new node.
//
// Observers (`--ipalloc-init observer`) never vote: their gossip state is nil, which electing
// peers read as a request to form a ring.
import type { PeerName } from '../core/peer-name.js';

export interface NodeId {
  readonly name: PeerName;
  readonly uid: bigint;
}

export interface ProposalId {
  /** Rounds start at 1; 0 is "none" and precedes every proposal. */
  readonly round: number;
  readonly proposer: NodeId;
}

export interface AcceptedValue {
  readonly value: readonly PeerName[];
  readonly origin: ProposalId;
}

export interface NodeClaims {
  readonly promise: ProposalId;
  readonly accepted: ProposalId;
  readonly acceptedVal: AcceptedValue;
}

/** What a node gossips: claims per node, in a stable order (wire order when decoded). */
export type PaxosGossip = ReadonlyArray<readonly [NodeId, NodeClaims]>;

export interface PaxosStatus {
  readonly Elector: boolean;
  readonly KnownNodes: number;
  readonly Quorum: number;
}

export const NO_NODE: NodeId = Object.freeze({ name: 0, uid: 0n });
export const NO_PROPOSAL: ProposalId = Object.freeze({ round: 0, proposer: NO_NODE });
export const NO_CLAIMS: NodeClaims = Object.freeze({
  promise: NO_PROPOSAL,
  accepted: NO_PROPOSAL,
  acceptedVal: Object.freeze({ value: [], origin: NO_PROPOSAL }),
});

function nodeKey(id: NodeId): string {
  return `${id.name}/${id.uid}`;
}

function sameNode(a: NodeId, b: NodeId): boolean {
  return a.name === b.name && a.uid === b.uid;
}

export function sameProposal(a: ProposalId, b: ProposalId): boolean {
  return a.round === b.round && sameNode(a.proposer, b.proposer);
}

/** Whether a comes before b (round, then proposer name, then UID). */
export function precedes(a: ProposalId, b: ProposalId): boolean {
  if (a.round !== b.round) return a.round < b.round;
  if (a.proposer.name !== b.proposer.name) return a.proposer.name < b.proposer.name;
  return a.proposer.uid < b.proposer.uid;
}

function valid(p: ProposalId): boolean {
  return p.round > 0;
}

function sameClaims(a: NodeClaims, b: NodeClaims): boolean {
  return sameProposal(a.promise, b.promise) && sameProposal(a.accepted, b.accepted) && sameProposal(a.acceptedVal.origin, b.acceptedVal.origin);
}

/** A consensus participant: an electing node or an observer. */
export interface PaxosParticipant {
  readonly isElector: boolean;
  /** Our gossip; undefined for an observer (sent as a nil map). */
  gossipState(): PaxosGossip | undefined;
  /** Learns from another node's gossip; true when something was new. */
  update(from: PaxosGossip): boolean;
  setQuorum(quorum: number): void;
  propose(): void;
  /** Runs the Paxos steps; true when our own claims changed. */
  think(): boolean;
  consensus(): AcceptedValue | undefined;
  status(): PaxosStatus;
}

export class PaxosNode implements PaxosParticipant {
  readonly isElector = true;
  readonly id: NodeId;
  private quorum: number;
  private readonly knows = new Map<string, { id: NodeId; claims: NodeClaims }>();

  /** `knows`: the state a previous run of this node stored (an acceptor keeps its promises). */
  constructor(id: NodeId, quorum = 0, knows: PaxosGossip = []) {
    this.id = id;
    this.quorum = quorum;
    for (const [n, claims] of knows) this.knows.set(nodeKey(n), { id: n, claims });
  }

  setQuorum(quorum: number): void {
    this.quorum = quorum;
  }

  gossipState(): PaxosGossip {
    return [...this.knows.values()].map(({ id, claims }) => [id, claims] as const);
  }

  private ours(): NodeClaims {
    return this.knows.get(nodeKey(this.id))?.claims ?? NO_CLAIMS;
  }

  private setOurs(claims: NodeClaims): void {
    this.knows.set(nodeKey(this.id), { id: this.id, claims });
  }

  update(from: PaxosGossip): boolean {
    let changed = false;
    for (const [id, theirs] of from) {
      const key = nodeKey(id);
      const have = this.knows.get(key);
      if (!have) {
        this.knows.set(key, { id, claims: theirs });
        changed = true;
        continue;
      }
      let claims = have.claims;
      if (precedes(claims.promise, theirs.promise)) {
        claims = { ...claims, promise: theirs.promise };
        changed = true;
      }
      if (precedes(claims.accepted, theirs.accepted)) {
        claims = { ...claims, accepted: theirs.accepted, acceptedVal: theirs.acceptedVal };
        changed = true;
      }
      this.knows.set(key, { id: have.id, claims });
    }
    return changed;
  }

  /** The Prepare step: a proposal above every round we have heard of. */
  propose(): void {
    if (this.quorum <= 0) throw new Error('Paxos propose() without a quorum');
    let round = 0;
    for (const { claims } of this.knows.values()) round = Math.max(round, claims.promise.round, claims.accepted.round);
    this.setOurs({ ...this.ours(), promise: { round: round + 1, proposer: this.id } });
    if (this.quorum === 1) this.think();
  }

  think(): boolean {
    const before = this.ours();
    let ours = before;
    for (const { claims } of this.knows.values()) {
      if (precedes(ours.promise, claims.promise)) ours = { ...ours, promise: claims.promise };
    }
    // Our proposal is in the running only while it is also our promise.
    if (sameNode(ours.promise.proposer, this.id)) {
      let count = 0;
      let accepted = NO_PROPOSAL;
      let acceptedVal: AcceptedValue = NO_CLAIMS.acceptedVal;
      for (const { claims } of this.knows.values()) {
        if (!sameProposal(claims.promise, ours.promise)) continue;
        count++;
        if (precedes(accepted, claims.accepted)) {
          accepted = claims.accepted;
          acceptedVal = claims.acceptedVal;
        }
      }
      // A node resumed from its store has no quorum until the allocator sets one; counting
      // against 0 would accept its own proposal on any gossip, alone (two rings could form).
      if (this.quorum > 0 && count >= this.quorum) {
        if (!valid(accepted)) acceptedVal = { value: this.pickValue(), origin: ours.promise };
        ours = { ...ours, accepted: ours.promise, acceptedVal };
      }
    }
    for (const { claims } of this.knows.values()) {
      if (sameProposal(claims.accepted, ours.promise)) {
        ours = { ...ours, accepted: claims.accepted, acceptedVal: claims.acceptedVal };
        break;
      }
    }
    if (sameClaims(ours, before)) return false;
    this.setOurs(ours);
    return true;
  }

  /** The names of every node we know of (at least a quorum): who the ring is divided between. */
  private pickValue(): PeerName[] {
    return [...this.knows.values()].map(({ id }) => id.name);
  }

  consensus(): AcceptedValue | undefined {
    if (this.quorum <= 0) return undefined;
    const counts = new Map<string, number>();
    for (const { claims } of this.knows.values()) {
      if (!valid(claims.accepted)) continue;
      const o = claims.acceptedVal.origin;
      const key = `${o.round}/${nodeKey(o.proposer)}`;
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      if (n >= this.quorum) return claims.acceptedVal;
    }
    return undefined;
  }

  knownNodes(): number {
    return this.knows.size;
  }

  status(): PaxosStatus {
    return { Elector: true, KnownNodes: this.knows.size, Quorum: this.quorum };
  }
}

export class PaxosObserver implements PaxosParticipant {
  readonly isElector = false;
  gossipState(): undefined {
    return undefined;
  }
  update(_from: PaxosGossip): boolean {
    return false;
  }
  setQuorum(_quorum: number): void {}
  propose(): void {}
  think(): boolean {
    return false;
  }
  consensus(): undefined {
    return undefined;
  }
  status(): PaxosStatus {
    return { Elector: false, KnownNodes: 0, Quorum: 0 };
  }
}

/** Sorted, without duplicates (consensus values list names in no order and may repeat). */
export function normalizeConsensus(names: readonly PeerName[]): PeerName[] {
  return [...new Set(names)].sort((a, b) => a - b);
}

/** `--ipalloc-init consensus=N` gives N/2+1; otherwise a majority of the targets plus us. */
export function determineQuorum(initPeerCount: number | undefined, targetCount: number): number {
  if (initPeerCount !== undefined && initPeerCount > 0) return Math.floor(initPeerCount / 2) + 1;
  return Math.floor((targetCount + 1) / 2) + 1;
}
