// The fast path's outer UDP packets skip connection tracking. This kernel hands bridged and
// local traffic to netfilter, and a weave host's NAT rules turn conntrack on, so every VXLAN
// datagram would be tracked twice (sent and received) on top of the frame inside it. Nothing
// needs those entries: the kernel picks VXLAN source ports by flow hash, so a peer's
// datagrams are never replies to ours, and a firewall has to accept UDP to this port by port
// (weave's documented requirement) anyway. Inner frames stay tracked (Kubernetes un-NATs
// service traffic between pods on the bridge through conntrack). A firewall that accepts the
// port only in state NEW drops untracked datagrams: the fast path's heartbeats then fail and
// traffic stays on sleeve, as for any blocked port.
import type { FirewallOps, FirewallTable } from '../ports.js';

export const NOTRACK_CHAIN = 'WEAVE-NOTRACK';

const HOOKS = ['PREROUTING', 'OUTPUT'] as const;
const RAW: FirewallTable = 'raw';

/** Installs (converging) the raw-table chain that exempts UDP to `port` from conntrack. */
export async function ensureVxlanNoTrack(fw: FirewallOps, port: number): Promise<void> {
  await fw.ensureChain(RAW, NOTRACK_CHAIN);
  await fw.ensureRule(RAW, NOTRACK_CHAIN, ['-p', 'udp', '--dport', String(port), '-j', 'NOTRACK']);
  for (const hook of HOOKS) await fw.ensureRule(RAW, hook, ['-j', NOTRACK_CHAIN]);
}

/** Removes the chain and its jumps, whatever port it named; missing pieces are fine. */
export async function removeVxlanNoTrack(fw: FirewallOps): Promise<void> {
  for (const hook of HOOKS) await fw.removeRule(RAW, hook, ['-j', NOTRACK_CHAIN]);
  await fw.removeChain(RAW, NOTRACK_CHAIN);
}
