// Registering and removing weaveDNS names through the router's API, for the verbs that name
// addresses (attach --name, expose -h, dns-add) and those that take them away (detach, hide).
import { WeaveError } from '../core/errors.js';
import type { CliContext } from './context.js';

export const DNS_OFF = 'weaveDNS is disabled in this router (--no-dns)';

/** Fails unless `fqdn` is in the router's domain (the router would ignore it silently). */
export async function checkInDomain(ctx: CliContext, fqdn: string): Promise<void> {
  const domain = await ctx.client.dnsDomain();
  if (domain === undefined) throw new WeaveError('NOT_FOUND', DNS_OFF);
  const name = (fqdn.endsWith('.') ? fqdn : `${fqdn}.`).toLowerCase();
  const d = domain.toLowerCase();
  if (name !== d && !name.endsWith(`.${d}`)) {
    throw new WeaveError('INVALID_ARGUMENT', `${fqdn} is not in the weaveDNS domain ${domain}; use a name such as ${fqdn.replace(/\.$/, '').split('.')[0]}.${domain}`);
  }
}

/** Registers `fqdn` for each address of ident (attach --name, expose -h, dns-add). */
export async function registerName(ctx: CliContext, ident: string, ips: string[], fqdn: string): Promise<void> {
  await checkInDomain(ctx, fqdn);
  for (const ip of ips) {
    if (!(await ctx.client.putName(ident, ip, fqdn))) throw new WeaveError('NOT_FOUND', DNS_OFF);
  }
}

/** Removes the names of ident's addresses (detach, hide); nothing to do when weaveDNS is off. */
export async function unregisterNames(ctx: CliContext, ident: string, ips: string[] | 'all'): Promise<void> {
  if (ips === 'all') {
    await ctx.client.deleteName(ident, undefined, undefined);
    return;
  }
  for (const ip of ips) if (!(await ctx.client.deleteName(ident, ip, undefined))) return;
}
