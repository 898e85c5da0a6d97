// The address arguments of attach/detach/expose/hide, as Weave Net's script took them:
// `net:default` (or nothing) = allocate in the default subnet, `net:<cidr>` = allocate in that
// subnet, `[ip:]<cidr>` = claim exactly that address.
import { WeaveError } from '../core/errors.js';
import { parseCidr, formatCidr, isNetworkCidr, type Cidr } from '../core/ip.js';
import type { CliContext } from './context.js';

export type AddrSpec = { kind: 'default' } | { kind: 'net'; cidr: Cidr } | { kind: 'ip'; cidr: Cidr };

export function isAddrArg(a: string): boolean {
  return a === 'net:default' || a.startsWith('net:') || a.startsWith('ip:') || /^[0-9.]+\/[0-9]+$/.test(a);
}

export function parseAddrSpec(a: string): AddrSpec {
  if (a === 'net:default') return { kind: 'default' };
  if (a.startsWith('net:')) {
    const c = parseCidr(a.slice(4));
    if (!isNetworkCidr(c)) throw new WeaveError('INVALID_ARGUMENT', `invalid subnet ${a.slice(4)}: bits after the network prefix are not all zero`);
    return { kind: 'net', cidr: c };
  }
  return { kind: 'ip', cidr: parseCidr(a.startsWith('ip:') ? a.slice(3) : a) };
}

/** Allocates or claims each spec for ident; returns the CIDRs in argument order. */
export async function acquire(ctx: CliContext, ident: string, specs: AddrSpec[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of specs.length ? specs : [{ kind: 'default' } as AddrSpec]) {
    if (s.kind === 'default') out.push(await ctx.client.allocate(ident));
    else if (s.kind === 'net') out.push(await ctx.client.allocate(ident, formatCidr(s.cidr)));
    else {
      await ctx.client.claim(ident, formatCidr(s.cidr));
      out.push(formatCidr(s.cidr));
    }
  }
  return out;
}

/** The addresses (without prefix length) as the script's show_addrs printed them. */
export function showAddrs(cidrs: string[]): string {
  return cidrs.map((c) => c.split('/')[0]).join(' ') + '\n';
}

/** Every CIDR ident holds, in any subnet (GET /ip). */
export async function ownedBy(ctx: CliContext, ident: string): Promise<string[]> {
  const body = await ctx.client.call('GET', '/ip', 'unable to list addresses', { timeoutMs: 10_000 });
  const owned = (JSON.parse(body) as { owned?: { containerid: string; addrs: string[] }[] }).owned ?? [];
  return owned.find((o) => o.containerid === ident)?.addrs ?? [];
}
