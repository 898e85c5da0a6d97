// What the allocator reports: the IPAM part of `/report` (weave `ipam/status.go`, field for
// field and in Go's order, so the daemon can put it into the report as is), the `Status:` line
// of `weave status`, the rows of `weave status ipam` and the Prometheus numbers.
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
  PendingClaims: { Ident: string; CIDR: string }[] | null;
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

/** The original's `Status:` line (prog/weaver/http.go), from the report alone. */
export function ipamStatusLine(r: IpamStatusReport): string {
  if (r.Entries && r.Entries.length > 0) {
    if (r.Entries.every((e) => !(e.Size > 0 && e.IsKnownPeer))) {
      return "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead";
    }
    if (r.PendingAllocates && r.PendingAllocates.length > 0) return 'waiting for IP(s) to become available';
    return 'ready';
  }
  if (r.Paxos) return r.Paxos.Elector ? `awaiting consensus (quorum: ${r.Paxos.Quorum}, known: ${r.Paxos.KnownNodes})` : 'priming';
  return 'idle';
}

/** The status line with conflicts first: what `weave status` should print for IPAM. */
export function ipamStatusLineWithConflicts(r: IpamStatusReport, conflicts: readonly IpamConflict[]): string {
  const c = conflicts[0];
  if (!c) return ipamStatusLine(r);
  const from = c.peer !== undefined ? ` from ${formatPeerName(c.peer)}` : '';
  const more = conflicts.length > 1 ? ` (+${conflicts.length - 1} more)` : '';
  return `conflict${from}: ${c.message}${more}`;
}

/** Go's "%04.1f". */
function percent(v: number): string {
  return v.toFixed(1).padStart(4, '0');
}

/**
 * `weave status ipam`: one line per owner, ours first with its active count, others marked
 * unreachable when the mesh does not know them (`ourName` as formatted in the report).
 */
export function renderIpamPeers(r: IpamStatusReport, ourName: string): string {
  if (!r.Entries) return '';
  const stats = new Map<string, { ips: number; nickname: string; reachable: boolean }>();
  for (const e of r.Entries) {
    let st = stats.get(e.Peer);
    if (!st) {
      st = { ips: 0, nickname: e.Nickname, reachable: e.IsKnownPeer };
      stats.set(e.Peer, st);
    }
    st.ips += e.Size;
  }
  const line = (name: string, nick: string, info: string, ips: number) =>
    `${`${name}(${nick})`.padEnd(37)} ${String(ips).padStart(8)} IPs (${percent((ips * 100) / r.RangeNumIPs)}% of total) ${info}\n`;
  let s = '';
  const ours = stats.get(ourName);
  if (ours) s += line(ourName, ours.nickname, `(${r.ActiveIPs} active)`, ours.ips);
  for (const [peer, st] of stats) if (peer !== ourName) s += line(peer, st.nickname, st.reachable ? '' : '- unreachable!', st.ips);
  return s;
}
