// `weave ps`: one line per attached ident (`weave:expose` first): the ident (12 characters,
// as the original), its MAC and its addresses. MACs come from the bridge's forwarding
// database, learned on the container's host veth.
import { EXPOSE_IDENT } from '../api/types.js';
import { HOST_VETH_PREFIX, hostVethName, parseAttachmentIdent } from '../platform/container-link.js';
import { IpRoute } from '../platform/iproute.js';
import { execFile } from '../platform/exec.js';
import type { CliContext } from './context.js';
import { ATTACH_IFNAME } from './attach.js';

async function learnedMacs(bridge: string): Promise<Map<string, string>> {
  const r = await execFile('bridge', ['-j', 'fdb', 'show', 'br', bridge]);
  const out = new Map<string, string>();
  if (r.code !== 0) return out;
  try {
    for (const e of JSON.parse(r.stdout) as { mac?: string; ifname?: string; flags?: string[]; state?: string }[]) {
      if (e.ifname?.startsWith(HOST_VETH_PREFIX) && e.mac && e.state !== 'permanent' && !out.has(e.ifname)) out.set(e.ifname, e.mac);
    }
  } catch {
    // no usable fdb: MACs stay unknown
  }
  return out;
}

export async function ps(ctx: CliContext, idents: string[], bridge: string): Promise<number> {
  const body = await ctx.client.call('GET', '/ip', 'unable to list addresses', { timeoutMs: 10_000 });
  const owned = (JSON.parse(body) as { owned?: { containerid: string; addrs: string[] }[] }).owned ?? [];
  const br = await new IpRoute().getLink(bridge);
  const macs = await learnedMacs(bridge);
  const lines: string[] = [];
  const want = (id: string) => idents.length === 0 || idents.some((x) => id.startsWith(x));
  if (want(EXPOSE_IDENT) && br) {
    const addrs = br.addrs.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
    lines.push(`${EXPOSE_IDENT} ${br.address} ${addrs.join(' ')}`.trimEnd());
  }
  for (const o of owned) {
    if (o.containerid === EXPOSE_IDENT || !want(o.containerid)) continue;
    const { containerId, ifName } = parseAttachmentIdent(o.containerid);
    const mac = macs.get(hostVethName(containerId, ifName)) ?? macs.get(hostVethName(o.containerid, ATTACH_IFNAME)) ?? '';
    lines.push(`${o.containerid.slice(0, 12)} ${mac} ${o.addrs.join(' ')}`.replace(/ {2,}/g, ' '));
  }
  ctx.out(lines.map((l) => l + '\n').join(''));
  return 0;
}
