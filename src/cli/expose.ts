// `weave expose [addrs] [--without-masquerade]` and `weave hide [addrs]`: addresses for the
// host on the bridge (ident `weave:expose`), with their NAT rules, through the router.
import { EXPOSE_IDENT } from '../api/types.js';
import { cidrContains, parseCidr } from '../core/ip.js';
import type { CliContext } from './context.js';
import { acquire, ownedBy, parseAddrSpec, showAddrs } from './address-args.js';
import { checkInDomain, registerName, unregisterNames } from './dns-names.js';

export async function expose(ctx: CliContext, args: string[], opts: { withoutMasquerade?: boolean; hostname?: string }): Promise<number> {
  if (opts.hostname) await checkInDomain(ctx, opts.hostname);
  const cidrs = await acquire(ctx, EXPOSE_IDENT, args.map(parseAddrSpec));
  for (const c of cidrs) await ctx.client.expose(c, { skipNAT: !!opts.withoutMasquerade });
  if (opts.hostname) await registerName(ctx, EXPOSE_IDENT, cidrs.map((c) => c.split('/')[0]!), opts.hostname);
  ctx.out(showAddrs(cidrs));
  return 0;
}

export async function hide(ctx: CliContext, args: string[]): Promise<number> {
  const held = await ownedBy(ctx, EXPOSE_IDENT);
  let targets: string[] = held;
  if (args.length) {
    const defaultSubnet = parseCidr(await ctx.client.defaultSubnet());
    const specs = args.map(parseAddrSpec);
    targets = held.filter((text) => {
      const c = parseCidr(text);
      return specs.some((s) =>
        s.kind === 'ip' ? s.cidr.ip === c.ip : cidrContains(s.kind === 'net' ? s.cidr : defaultSubnet, c.ip),
      );
    });
  }
  await unregisterNames(ctx, EXPOSE_IDENT, targets.map((c) => c.split('/')[0]!));
  for (const c of targets) {
    await ctx.client.hide(c);
    await ctx.client.releaseAddress(EXPOSE_IDENT, c.split('/')[0]!);
  }
  ctx.out(showAddrs(targets));
  return 0;
}
