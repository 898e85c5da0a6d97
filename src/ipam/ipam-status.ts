// What the allocator reports: the IPAM part of `/report` (weave `ipam/status.go`, field for
// field and in Go's order, so the daemon can put it into the report as is; api/server renders
// the text views from it), ring conflicts and the Prometheus numbers.
//
// Beyond the original: ring conflicts (a ring seeded by other peers, another range, entries
// that contradict ours) are kept with the peer and message, and the status line names them
// instead of claiming "ready" (the original dropped the connection and said nothing).
import { formatPeerName, type PeerName } from '../core/peer-name.js';
import type { PaxosStatus } from './paxos.js';

export interface IpamEntryReport {
  Token: string;
  Size: number;
  Peer: string;
  Nickname: string;
  IsKnownPeer: boolean;
  Version: number;
}

/** Shape of `/report`'s IPAM object (Go: ipam.Status); nil slices are null. */
export interface IpamStatusReport {
  Paxos: PaxosStatus | null;
  Range: string;
  RangeNumIPs: number;
  ActiveIPs: number;
  DefaultSubnet: string;
  Entries: IpamEntryReport[] | null;
  /** CIDR: Go's address.CIDR, printed by templates as 10.32.0.5/12. */
  PendingClaims: { Ident: string; CIDR: { Addr: string; PrefixLen: number } }[] | null;
  PendingAllocates: string[] | null;
}

export type IpamConflictKind = 'seeds' | 'range' | 'entries' | 'invalid';

export interface IpamConflict {
  readonly kind: IpamConflictKind;
  /** The peer whose message showed the conflict, when known (broadcasts and unicasts). */
  readonly peer: PeerName | undefined;
  readonly message: string;
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
  readonly count: number;
}

export interface IpamMetrics {
  /** weave_ips{state="local-used"}: addresses handed out here. */
  readonly ips: number;
  /** weave_max_ips: size of the allocation range. */
  readonly maxIps: number;
  /** weave_ipam_unreachable_count: peers owning space that are not known to the mesh. */
  readonly unreachableCount: number;
  /** weave_ipam_unreachable_percentage: share of the range those peers own. */
  readonly unreachablePercentage: number;
  readonly pendingAllocates: number;
  readonly pendingClaims: number;
}

/**
 * What `weave status` shows as IPAM's `Status:` instead of the original's line while a ring
 * conflict is remembered; undefined when there is none.
 */
export function ipamConflictLine(conflicts: readonly IpamConflict[]): string | undefined {
  const c = conflicts[0];
  if (!c) return undefined;
  const from = c.peer !== undefined ? ` from ${formatPeerName(c.peer)}` : '';
  const more = conflicts.length > 1 ? ` (+${conflicts.length - 1} more)` : '';
  return `conflict${from}: ${c.message}${more}`;
}
