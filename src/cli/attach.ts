// `weave attach [addrs] [--no-multicast-route] <netns-path|pid>` and `weave detach`: without
// Docker, a container is named by its network namespace (a path such as /run/netns/NAME, or a
// process id). Its IPAM ident is `--id`, else the namespace name, else `pid-<pid>`.
import { basename } from 'node:path';
import { WeaveError } from '../core/errors.js';
import { parseCidr, formatCidr } from '../core/ip.js';
import { attachContainer, checkNetns, detachContainer } from '../platform/container-link.js';
import { IpRoute } from '../platform/iproute.js';
import type { CliContext } from './context.js';
import { acquire, ownedAddresses, parseAddrSpec, showAddrs } from './address-args.js';
import { checkInDomain, registerName, unregisterNames } from './dns-names.js';

/** The interface name Weave Net gives containers it attaches. */
export const ATTACH_IFNAME = 'ethwe';

export function resolveTarget(target: string, id?: string): { netns: string; ident: string } {
  if (/^[0-9]+$/.test(target)) return { netns: `/proc/${target}/ns/net`, ident: id ?? `pid-${target}` };
  if (!target.startsWith('/')) throw new WeaveError('INVALID_ARGUMENT', `"${target}" is neither a network namespace path nor a process id`);
  const underRun = /^\/(var\/)?run\/netns\/[^/]+$/.test(target);
  return { netns: target, ident: id ?? (underRun ? basename(target) : target) };
}

export async function attach(ctx: CliContext, target: string, addrs: string[], opts: { id?: string; name?: string; multicastRoute: boolean; bridge: string }): Promise<number> {
  const { netns, ident } = resolveTarget(target, opts.id);
  const specs = addrs.map(parseAddrSpec);
  if (opts.name) await checkInDomain(ctx, opts.name);
  // Before any address is taken: a namespace or process that is not there gets none.
  checkNetns(netns);
  const cidrs = await acquire(ctx, ident, specs);
  try {
    const inNs = new IpRoute({ netnsPath: netns });
    if (await inNs.getLink(ATTACH_IFNAME)) {
      // Already attached: add the new addresses to its interface, as the original did.
      for (const c of cidrs) await inNs.addAddress(ATTACH_IFNAME, c);
    } else {
      await attachContainer({
        netns,
        containerId: ident,
        ident,
        ifName: ATTACH_IFNAME,
        bridge: opts.bridge,
        addresses: cidrs.map(parseCidr),
        routes: [],
        hairpin: true,
        multicastRoute: opts.multicastRoute,
      });
    }
  } catch (e) {
    for (const c of cidrs) await ctx.client.releaseAddress(ident, c.split('/')[0]!).catch(() => undefined);
    throw e;
  }
  // weaveDNS: the attached addresses under --name (the original used the container's hostname).
  if (opts.name) await registerName(ctx, ident, cidrs.map((c) => c.split('/')[0]!), opts.name);
  ctx.out(showAddrs(cidrs));
  return 0;
}

export async function detach(ctx: CliContext, target: string, addrs: string[], opts: { id?: string }): Promise<number> {
  const { netns, ident } = resolveTarget(target, opts.id);
  let inNs: IpRoute | undefined = new IpRoute({ netnsPath: netns });
  try {
    checkNetns(netns);
  } catch {
    inNs = undefined; // gone: only the host end may be left
  }
  const ipam = await ownedAddresses(ctx, ident);
  // Without IPAM the interface is the only record of the addresses.
  const held = ipam ?? ((inNs && (await inNs.getLink(ATTACH_IFNAME))?.addrs) || []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
  const specs = addrs.map(parseAddrSpec);
  const chosen = specs.length
    ? held.filter((h) => specs.some((s) => s.kind !== 'default' && formatCidr(s.cidr).split('/')[0] === h.split('/')[0]) || specs.some((s) => s.kind === 'default'))
    : held;
  if (inNs) {
    // As the original: take this ident's addresses off, and the interface only when no IPv4
    // address is left on it (another ident attached to the same namespace may still use it).
    for (const c of chosen) await inNs.deleteAddress(ATTACH_IFNAME, c);
    const link = await inNs.getLink(ATTACH_IFNAME);
    if (link && !link.addrs.some((a) => a.family === 'inet')) await inNs.deleteLink(ATTACH_IFNAME);
  } else if (chosen.length === held.length) {
    await detachContainer({ containerId: ident, ifName: ATTACH_IFNAME, ident, netns });
  }
  await unregisterNames(ctx, ident, chosen.length === held.length ? 'all' : chosen.map((c) => c.split('/')[0]!));
  if (ipam) for (const c of chosen) await ctx.client.releaseAddress(ident, c.split('/')[0]!);
  ctx.out(showAddrs(chosen));
  return 0;
}
