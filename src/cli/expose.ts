// `weave expose [addrs] [--without-masquerade]` and `weave hide [addrs]`: addresses for the
// host on the bridge (ident `weave:expose`), with their NAT rules, through the router.
import { EXPOSE_IDENT } from '../api/types.js';
import { WeaveError } from '../core/errors.js';
import { cidrContains, parseCidr } from '../core/ip.js';
import { IpRoute } from '../platform/iproute.js';
import type { CliContext } from './context.js';
import { acquire, isIpamOff, ownedAddresses, parseAddrSpec, showAddrs } from './address-args.js';
import { checkInDomain, registerName, unregisterNames } from './dns-names.js';

export async function expose(ctx: CliContext, args: string[], opts: { withoutMasquerade?: boolean; hostname?: string }): Promise<number> {
  if (opts.hostname) await checkInDomain(ctx, opts.hostname);
  const cidrs = await acquire(ctx, EXPOSE_IDENT, args.map(parseAddrSpec));
  for (const c of cidrs) await ctx.client.expose(c, { skipNAT: !!opts.withoutMasquerade });
  if (opts.hostname) await registerName(ctx, EXPOSE_IDENT, cidrs.map((c) => c.split('/')[0]!), opts.hostname);
  ctx.out(showAddrs(cidrs));
  return 0;
}

/** `bridge` defaults to WEAVE_BRIDGE, else `weave` (main.ts may pass --weave-bridge). */
export async function hide(ctx: CliContext, args: string[], bridge: string = ctx.env.WEAVE_BRIDGE ?? 'weave'): Promise<number> {
  // Without IPAM nothing records the host's addresses but the bridge itself.
  const ipam = await ownedAddresses(ctx, EXPOSE_IDENT);
  const held = ipam ?? ((await new IpRoute().getLink(bridge))?.addrs ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
  let targets: string[] = held;
  if (args.length) {
    const specs = args.map(parseAddrSpec);
    const defaultSubnet = specs.some((s) => s.kind === 'default') ? parseCidr(await defaultSubnetOf(ctx)) : undefined;
    targets = held.filter((text) => {
      const c = parseCidr(text);
      return specs.some((s) =>
        s.kind === 'ip' ? s.cidr.ip === c.ip : cidrContains(s.kind === 'net' ? s.cidr : defaultSubnet!, c.ip),
      );
    });
  }
  await unregisterNames(ctx, EXPOSE_IDENT, targets.map((c) => c.split('/')[0]!));
  for (const c of targets) {
    await ctx.client.hide(c);
    if (ipam) await ctx.client.releaseAddress(EXPOSE_IDENT, c.split('/')[0]!);
  }
  ctx.out(showAddrs(targets));
  return 0;
}

async function defaultSubnetOf(ctx: CliContext): Promise<string> {
  try {
    return await ctx.client.defaultSubnet();
  } catch (e) {
    if (!isIpamOff(e)) throw e;
    throw new WeaveError('INVALID_CONFIG', 'net:default: IP allocation is disabled on the router, so there is no default subnet', { cause: e });
  }
}
