// The address arguments of attach/detach/expose/hide, as Weave Net's script took them:
// `net:default` (or nothing) = allocate in the default subnet, `net:<cidr>` = allocate in that
// subnet, `[ip:]<cidr>` = claim exactly that address.
import { ApiError } from '../api/client.js';
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

/**
 * A router without IPAM (`--ipalloc-range ""`) registers no /ip routes and answers 404 there;
 * the original's script read any 404 from them this way.
 */
export function isIpamOff(e: unknown): boolean {
  return e instanceof ApiError && e.status === 404;
}

function allocationDisabled(cause: unknown): WeaveError {
  return new WeaveError(
    'INVALID_CONFIG',
    'unable to allocate IP address: IP allocation is disabled on the router (it runs without --ipalloc-range); give the address explicitly, as [ip:]<cidr>',
    { cause },
  );
}

/** Allocates or claims each spec for ident; returns the CIDRs in argument order. */
export async function acquire(ctx: CliContext, ident: string, specs: AddrSpec[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of specs.length ? specs : [{ kind: 'default' } as AddrSpec]) {
    if (s.kind === 'ip') {
      // 404 = IPAM off: an explicit address needs no claim there (the original's "404 ok").
      await ctx.client.claim(ident, formatCidr(s.cidr)).catch((e: unknown) => {
        if (!isIpamOff(e)) throw e;
      });
      out.push(formatCidr(s.cidr));
      continue;
    }
    try {
      out.push(await ctx.client.allocate(ident, s.kind === 'net' ? formatCidr(s.cidr) : undefined));
    } catch (e) {
      throw isIpamOff(e) ? allocationDisabled(e) : e;
    }
  }
  return out;
}

/** The addresses (without prefix length) as the script's show_addrs printed them. */
export function showAddrs(cidrs: string[]): string {
  return cidrs.map((c) => c.split('/')[0]).join(' ') + '\n';
}

/** Every ident's CIDRs (GET /ip); undefined when the router runs without IPAM. */
export async function ownedAll(ctx: CliContext): Promise<{ containerid: string; addrs: string[] }[] | undefined> {
  let body: string;
  try {
    body = await ctx.client.call('GET', '/ip', 'unable to list addresses', { timeoutMs: 10_000 });
  } catch (e) {
    if (isIpamOff(e)) return undefined;
    throw e;
  }
  return (JSON.parse(body) as { owned?: { containerid: string; addrs: string[] }[] }).owned ?? [];
}

/** Every CIDR ident holds, in any subnet; undefined when the router runs without IPAM. */
export async function ownedAddresses(ctx: CliContext, ident: string): Promise<string[] | undefined> {
  const all = await ownedAll(ctx);
  return all && (all.find((o) => o.containerid === ident)?.addrs ?? []);
}

/** Every CIDR ident holds in IPAM; none when the router runs without IPAM. */
export async function ownedBy(ctx: CliContext, ident: string): Promise<string[]> {
  return (await ownedAddresses(ctx, ident)) ?? [];
}
