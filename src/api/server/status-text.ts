// The text views of `GET /status` and its sub-views, byte-compatible with Weave Net 2.8.1's
// templates (prog/weaver/http.go): column widths, count ordering and section omission.
import type { WeaveReport, IpamStatus } from '../types.js';
import { goFixed } from '../../core/go-template.js';

const connectionStates = ['established', 'pending', 'retrying', 'failed', 'connecting'];

function counts(map: Map<string, number>, keys: string[]): string {
  return keys.filter((k) => map.has(k)).map((k) => `${map.get(k)} ${k}`).join(', ');
}

function printList(list: string[] | null | undefined): string {
  return list && list.length ? list.join(', ') : 'none';
}

function versionCheckText(r: WeaveReport): string {
  const v = r.VersionCheck;
  if (!v.Enabled) return 'version check update disabled';
  if (!v.Success) return `failed to check latest version - see logs; next check at ${v.NextCheckAt}`;
  if (v.NewVersion) return `version ${v.NewVersion} available - please upgrade!`;
  return `up to date; next check at ${v.NextCheckAt}`;
}

/** The original's IPAM `Status:` line (prog/weaver/http.go). */
export function ipamStatusLine(ipam: IpamStatus): string {
  if (ipam.Entries && ipam.Entries.length) {
    if (ipam.Entries.every((e) => !(e.Size > 0 && e.IsKnownPeer))) {
      return "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead";
    }
    if (ipam.PendingAllocates && ipam.PendingAllocates.length) return 'waiting for IP(s) to become available';
    return 'ready';
  }
  if (ipam.Paxos) {
    return ipam.Paxos.Elector ? `awaiting consensus (quorum: ${ipam.Paxos.Quorum}, known: ${ipam.Paxos.KnownNodes})` : 'priming';
  }
  return 'idle';
}

/**
 * `weave status`. `ipamConflict`: shown as IPAM's status instead of the original's line (a
 * ring conflict, which the original only logged).
 */
export function renderStatus(r: WeaveReport, opts: { ipamConflict?: string | undefined } = {}): string {
  const rt = r.Router;
  const protocol = rt.ProtocolMinVersion === rt.ProtocolMaxVersion ? `${rt.ProtocolMaxVersion}` : `${rt.ProtocolMinVersion}..${rt.ProtocolMaxVersion}`;
  const connCounts = new Map<string, number>();
  for (const c of rt.Connections ?? []) connCounts.set(c.State, (connCounts.get(c.State) ?? 0) + 1);
  const peerCounts = new Map<string, number>();
  for (const p of rt.Peers) {
    for (const c of p.Connections ?? []) {
      const k = c.Established ? 'established' : 'pending';
      peerCounts.set(k, (peerCounts.get(k) ?? 0) + 1);
    }
  }
  const connText = counts(connCounts, connectionStates);
  const peerText = counts(peerCounts, ['established', 'pending']);
  let s =
    `        Version: ${r.Version} (${versionCheckText(r)})\n` +
    '\n' +
    '        Service: router\n' +
    `       Protocol: ${rt.Protocol} ${protocol}\n` +
    `           Name: ${rt.Name}(${rt.NickName})\n` +
    `     Encryption: ${rt.Encryption ? 'enabled' : 'disabled'}\n` +
    `  PeerDiscovery: ${rt.PeerDiscovery ? 'enabled' : 'disabled'}\n` +
    `        Targets: ${rt.Targets ? rt.Targets.length : 0}\n` +
    `    Connections: ${rt.Connections?.length ?? 0}${connText ? ` (${connText})` : ''}\n` +
    `          Peers: ${rt.Peers.length}${peerText ? ` (with ${peerText} connections)` : ''}\n` +
    ` TrustedSubnets: ${printList(rt.TrustedSubnets)}\n`;
  if (r.IPAM) {
    s +=
      '\n' +
      '        Service: ipam\n' +
      `         Status: ${opts.ipamConflict ?? ipamStatusLine(r.IPAM)}\n` +
      `          Range: ${r.IPAM.Range}\n` +
      `  DefaultSubnet: ${r.IPAM.DefaultSubnet}\n`;
  }
  if (r.DNS) {
    s +=
      '\n' +
      '        Service: dns\n' +
      `         Domain: ${r.DNS.Domain}\n` +
      // Ours only: without --dns-listen-address the server waits for an exposed bridge address.
      (r.DNS.Address === '' ? '        Address: not listening (no --dns-listen-address, no address exposed on the bridge yet)\n' : '') +
      `       Upstream: ${printList(r.DNS.Upstream)}\n` +
      `            TTL: ${r.DNS.TTL}\n` +
      `        Entries: ${(r.DNS.Entries ?? []).filter((e) => e.Tombstone === 0).length}\n`;
  }
  return s;
}

export function renderTargets(r: WeaveReport): string {
  return (r.Router.Targets ?? []).map((t) => `${t}\n`).join('');
}

function attrsText(attrs: Record<string, unknown> | null): string {
  if (!attrs) return '';
  // Go ranges over a map in key order and the template prints no separator between pairs.
  return Object.keys(attrs)
    .sort()
    .filter((k) => k !== 'name')
    .map((k) => `${k}=${String(attrs[k])}`)
    .join('');
}

export function renderConnections(r: WeaveReport): string {
  return (r.Router.Connections ?? []).map(
    (c) => `${c.Outbound ? '->' : '<-'} ${c.Address.padEnd(21)} ${c.State.padEnd(11)} ${c.Info} ${attrsText(c.Attrs)}\n`,
  ).join('');
}

export function renderPeers(r: WeaveReport): string {
  let s = '';
  for (const p of r.Router.Peers) {
    s += `${p.Name}(${p.NickName})\n`;
    for (const c of p.Connections ?? []) {
      s += `   ${c.Outbound ? '->' : '<-'} ${c.Address.padEnd(21)} ${`${c.Name}(${c.NickName})`.padEnd(37)} ${c.Established ? 'established' : 'pending'}\n`;
    }
  }
  return s;
}

export function renderDns(r: WeaveReport): string {
  if (!r.DNS) return '';
  const suffix = `.${r.DNS.Domain}`;
  let s = '';
  for (const e of r.DNS.Entries ?? []) {
    if (e.Tombstone !== 0) continue;
    const host = e.Hostname.endsWith(suffix) ? e.Hostname.slice(0, -suffix.length) : e.Hostname;
    s += `${host.padEnd(12)} ${e.Address.padEnd(15)} ${e.ContainerID.slice(0, 12).padStart(12)} ${e.Origin}\n`;
  }
  return s;
}

/** Go's "%04.1f": one decimal, zero-padded to width 4. */
function percent(v: number): string {
  return goFixed(v, 1).padStart(4, '0');
}

export function renderIpam(r: WeaveReport): string {
  const ipam = r.IPAM;
  if (!ipam || !ipam.Entries) return '';
  const stats = new Map<string, { ips: number; nickname: string; reachable: boolean }>();
  for (const e of ipam.Entries) {
    let st = stats.get(e.Peer);
    if (!st) {
      st = { ips: 0, nickname: e.Nickname, reachable: e.IsKnownPeer };
      stats.set(e.Peer, st);
    }
    st.ips += e.Size;
  }
  const line = (name: string, nick: string, info: string, ips: number) =>
    `${`${name}(${nick})`.padEnd(37)} ${String(ips).padStart(8)} IPs (${percent((ips * 100) / ipam.RangeNumIPs)}% of total) ${info}\n`;
  let s = '';
  const ours = stats.get(r.Router.Name);
  if (ours) s += line(r.Router.Name, ours.nickname, `(${ipam.ActiveIPs} active)`, ours.ips);
  for (const [peer, st] of stats) {
    if (peer !== r.Router.Name) s += line(peer, st.nickname, st.reachable ? '' : '- unreachable!', st.ips);
  }
  return s;
}
