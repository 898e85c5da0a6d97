// `weave ps`: one line per attached ident (`weave:expose` first): the ident (12 characters,
// as the original), its MAC and its addresses. Every line has all three columns (scripts take
// the addresses with `awk '{print $3}'`). The MAC is the container interface's, read from the
// host: the host veth names its peer's namespace (link_netnsid) and index (link_index).
import { EXPOSE_IDENT } from '../api/types.js';
import { formatCidr } from '../core/ip.js';
import { HOST_VETH_PREFIX, hostVethName, parseAttachAlias, parseAttachmentIdent } from '../platform/container-link.js';
import { IpRoute } from '../platform/iproute.js';
import { execFile } from '../platform/exec.js';
import type { CliContext } from './context.js';
import { ATTACH_IFNAME, resolveTarget } from './attach.js';
import { ownedAll } from './address-args.js';

/**
 * The MAC column when the container interface cannot be read (its namespace has no name and
 * the ident names no path, and the bridge has forgotten it). All zeros keeps the column's
 * MAC syntax for scripts that parse it, and no interface ever has it, so it cannot be
 * mistaken for a real one.
 */
export const UNKNOWN_MAC = '00:00:00:00:00:00';

interface RawLink {
  ifindex?: number;
  ifname?: string;
  address?: string;
  link_index?: number;
  link_netnsid?: number;
  ifalias?: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

/** The container end of an attachment as its namespace sees it. */
export interface PeerView {
  mac: string;
  /** Its IPv4 addresses as CIDRs. */
  inet: string[];
}

/** One line of `weave ps`: the column count never depends on what is known. */
export function psLine(ident: string, mac: string | undefined, cidrs: readonly string[]): string {
  return [ident.slice(0, 12), mac || UNKNOWN_MAC, ...cidrs].join(' ');
}

async function ipJson(args: string[]): Promise<RawLink[]> {
  const r = await execFile(args[0]!, args.slice(1));
  if (r.code !== 0) return [];
  try {
    const v = JSON.parse(r.stdout.trim() || '[]') as unknown;
    return Array.isArray(v) ? (v as RawLink[]) : [];
  } catch {
    return [];
  }
}

/**
 * Reads container ends of the bridge's veths from the host, without a runtime: one `ip` per
 * namespace. Named namespaces (/run/netns: `ip netns`, CNI runtimes) are found by nsid;
 * others only through a path the ident names (`pid-<pid>`, a netns path).
 */
class Peers {
  private readonly ports = new Map<string, RawLink>();
  private nsNames: Map<number, string> | undefined;
  private readonly nsLinks = new Map<string, Promise<RawLink[]>>();

  static async load(bridge: string): Promise<Peers> {
    const p = new Peers();
    for (const l of await ipJson(['ip', '-j', '-d', 'link', 'show', 'master', bridge])) {
      if (l.ifname?.startsWith(HOST_VETH_PREFIX)) p.ports.set(l.ifname, l);
    }
    return p;
  }

  /**
   * The container end holding any of cidrs, among all readable ones: an ident attached to a
   * namespace that another ident attached first has its addresses on that one's interface.
   */
  async holding(cidrs: readonly string[]): Promise<PeerView | undefined> {
    if (cidrs.length === 0) return undefined;
    for (const port of this.ports.keys()) {
      const v = await this.peer(port);
      if (v?.inet.some((c) => cidrs.includes(c))) return v;
    }
    return undefined;
  }

  hostPorts(): RawLink[] {
    return [...this.ports.values()];
  }

  async peer(hostIf: string, nsPathHint?: string): Promise<PeerView | undefined> {
    const port = this.ports.get(hostIf);
    if (!port || port.link_index === undefined || port.link_netnsid === undefined) return undefined;
    this.nsNames ??= new Map((await ipJson(['ip', '-j', 'netns', 'list-id'])).map((e) => [(e as { nsid: number }).nsid, (e as { name?: string }).name ?? '']));
    const name = this.nsNames.get(port.link_netnsid);
    const where = name ? `/run/netns/${name}` : nsPathHint;
    if (!where) return undefined;
    let links = this.nsLinks.get(where);
    if (!links) {
      links = ipJson(['nsenter', `--net=${where}`, '--', 'ip', '-j', 'addr', 'show']);
      this.nsLinks.set(where, links);
    }
    // Its peer index must name our port: a path from the ident may be another namespace now.
    const l = (await links).find((x) => x.ifindex === port.link_index && x.link_index === port.ifindex);
    if (!l?.address) return undefined;
    const inet = (l.addr_info ?? []).filter((a) => a.family === 'inet' && a.local && a.prefixlen !== undefined).map((a) => `${a.local}/${a.prefixlen}`);
    return { mac: l.address, inet };
  }
}

/** MACs the bridge learned on container ports; they age out after 300 s of silence. */
async function learnedMacs(bridge: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of (await ipJson(['bridge', '-j', 'fdb', 'show', 'br', bridge])) as { mac?: string; ifname?: string; state?: string }[]) {
    if (e.ifname?.startsWith(HOST_VETH_PREFIX) && e.mac && e.state !== 'permanent' && !out.has(e.ifname)) out.set(e.ifname, e.mac);
  }
  return out;
}

/** The namespace an ident from `weave attach` names, if it names one. */
function nsPathOf(ident: string): string | undefined {
  if (/^pid-[0-9]+$/.test(ident)) return resolveTarget(ident.slice(4)).netns;
  return ident.startsWith('/') ? ident : undefined;
}

export async function ps(ctx: CliContext, idents: string[], bridge: string): Promise<number> {
  const owned = await ownedAll(ctx);
  const br = await new IpRoute().getLink(bridge);
  const peers = await Peers.load(bridge);
  let fdb: Map<string, string> | undefined;
  const lines: string[] = [];
  const want = (id: string) => idents.length === 0 || idents.some((x) => id.startsWith(x));
  if (want(EXPOSE_IDENT) && br) {
    lines.push(psLine(EXPOSE_IDENT, br.address, br.addrs.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)));
  }
  // Without IPAM (404 on /ip) the host ends' records (attachAlias) name the idents.
  const entries =
    owned?.map((o) => ({ ident: o.containerid, addrs: o.addrs, recorded: [] as string[] })) ??
    peers.hostPorts().flatMap((l) => {
      const rec = l.ifalias ? parseAttachAlias(l.ifalias) : undefined;
      return rec ? [{ ident: rec.ident, addrs: undefined, recorded: rec.cidrs.map(formatCidr) }] : [];
    });
  for (const o of entries) {
    if (o.ident === EXPOSE_IDENT || !want(o.ident)) continue;
    const { containerId, ifName } = parseAttachmentIdent(o.ident);
    const candidates = [hostVethName(containerId, ifName), hostVethName(o.ident, ATTACH_IFNAME)];
    let view: PeerView | undefined;
    for (const c of candidates) if (!view) view = await peers.peer(c, nsPathOf(o.ident));
    view ??= await peers.holding(o.addrs ?? []);
    let mac = view?.mac;
    if (!mac) {
      fdb ??= await learnedMacs(bridge);
      mac = candidates.map((c) => fdb!.get(c)).find((m) => m !== undefined);
    }
    lines.push(psLine(o.ident, mac, o.addrs ?? view?.inet ?? o.recorded));
  }
  ctx.out(lines.map((l) => l + '\n').join(''));
  return 0;
}
