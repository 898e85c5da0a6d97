// weaveDNS verbs, as Weave Net's script had them:
//   weave dns-add [<ip> ...] <container> [-h <fqdn>] | <ip> ... -h <fqdn>
//   weave dns-remove (same forms) | dns-lookup <name> | dns-args
// A container is a network namespace path or a pid (as for `weave attach`, whose ident it
// resolves to) or any other ident, such as the container id a CNI runtime used (the CNI
// plugin's IPAM ident): `weave dns-add <container-id> -h web.weave.local` names a
// CNI-attached container. Addresses without a container are registered under `weave:extern`.
// Without addresses, a container's are those IPAM holds for its ident, else those of its
// `ethwe` interface. Our namespaces have no hostname to fall back on, so dns-add needs `-h`.
import { EXTERN_IDENT } from '../api/types.js';
import { ApiError } from '../api/client.js';
import { WeaveError } from '../core/errors.js';
import { tryParseCidr, tryParseIPv4, formatIPv4 } from '../core/ip.js';
import { inspectContainerLink } from '../platform/container-link.js';
import type { CliContext } from './context.js';
import { ATTACH_IFNAME, resolveTarget } from './attach.js';
import { ownedBy } from './address-args.js';
import { dnsQuery, queryHostFor } from './dns-query.js';
import { DNS_OFF, registerName } from './dns-names.js';

/** An address argument: an IPv4 address, or a CIDR (as `weave ps` prints them). */
function addressArg(a: string): string | undefined {
  const ip = tryParseIPv4(a);
  if (ip !== undefined) return formatIPv4(ip);
  const c = tryParseCidr(a);
  return c ? formatIPv4(c.ip) : undefined;
}

interface DnsTarget {
  ident: string;
  netns?: string;
  ips: string[];
}

/** Splits `[<ip> ...] [<container>]` into addresses and the container's ident. */
export function parseDnsArgs(args: string[]): { ips: string[]; container?: string } {
  const ips: string[] = [];
  let i = 0;
  for (; i < args.length; i++) {
    const ip = addressArg(args[i]!);
    if (ip === undefined) break;
    ips.push(ip);
  }
  const rest = args.slice(i);
  if (rest.length > 1) throw new WeaveError('INVALID_ARGUMENT', `expected [<ip> ...] <container>, got "${args.join(' ')}"`);
  return { ips, ...(rest[0] !== undefined ? { container: rest[0] } : {}) };
}

function targetOf(container: string): { ident: string; netns?: string } {
  // Paths and pids name a namespace as for `weave attach`; anything else is an ident as is.
  if (container.startsWith('/') || /^[0-9]+$/.test(container)) return resolveTarget(container);
  return { ident: container };
}

/** The container's addresses: IPAM's for its ident, else its ethwe interface's. */
async function containerAddresses(ctx: CliContext, ident: string, netns: string | undefined): Promise<string[]> {
  let owned: string[] = [];
  try {
    owned = await ownedBy(ctx, ident);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e; // 404: IPAM is off
  }
  if (owned.length) return owned.map((c) => c.split('/')[0]!);
  if (netns) {
    const link = await inspectContainerLink(netns, ATTACH_IFNAME);
    return (link?.addrs ?? []).filter((a) => a.family === 'inet').map((a) => a.local);
  }
  return [];
}

async function resolveDnsTarget(ctx: CliContext, args: string[], verb: string, fqdn: string | undefined): Promise<DnsTarget> {
  const { ips, container } = parseDnsArgs(args);
  if (container === undefined) {
    if (ips.length === 0) throw new WeaveError('INVALID_ARGUMENT', `usage: weave ${verb} [<ip> ...] <container> [-h <fqdn>] | <ip> ... -h <fqdn>`);
    if (!fqdn) throw new WeaveError('INVALID_ARGUMENT', `weave ${verb} <ip> ... needs -h <fqdn> when no container is given`);
    return { ident: EXTERN_IDENT, ips };
  }
  const t = targetOf(container);
  return { ...t, ips };
}

export async function dnsAdd(ctx: CliContext, args: string[], fqdn: string | undefined): Promise<number> {
  const t = await resolveDnsTarget(ctx, args, 'dns-add', fqdn);
  if (!fqdn) throw new WeaveError('INVALID_ARGUMENT', `weave dns-add: -h <fqdn> is required (weave does not know a hostname for ${t.ident})`);
  const ips = t.ips.length ? t.ips : await containerAddresses(ctx, t.ident, t.netns);
  if (ips.length === 0) throw new WeaveError('INVALID_ARGUMENT', `no weave addresses known for ${t.ident}; give them: weave dns-add <ip> ... ${args[args.length - 1]} -h ${fqdn}`);
  await registerName(ctx, t.ident, ips, fqdn);
  return 0;
}

export async function dnsRemove(ctx: CliContext, args: string[], fqdn: string | undefined): Promise<number> {
  const t = await resolveDnsTarget(ctx, args, 'dns-remove', fqdn);
  const targets: (string | undefined)[] = t.ips.length ? t.ips : [undefined];
  for (const ip of targets) {
    if (!(await ctx.client.deleteName(t.ident, ip, fqdn))) throw new WeaveError('NOT_FOUND', DNS_OFF);
  }
  return 0;
}

/** Where the router's DNS server answers, as host and port to send queries to. */
async function dnsServer(ctx: CliContext): Promise<{ host: string; port: number }> {
  let addr: string | undefined;
  try {
    addr = await ctx.client.dnsAddress();
  } catch (e) {
    if (e instanceof ApiError && e.code === 'NOT_RUNNING') throw new WeaveError('NOT_RUNNING', e.body.trim());
    throw e;
  }
  if (addr === undefined) throw new WeaveError('NOT_FOUND', DNS_OFF);
  const at = addr.lastIndexOf(':');
  return { host: queryHostFor(addr.slice(0, at).replace(/^\[(.*)\]$/, '$1')), port: Number(addr.slice(at + 1)) };
}

/** `weave dns-lookup <name>`: the A records the router's DNS server gives, one per line (dig +short). */
export async function dnsLookup(ctx: CliContext, name: string): Promise<number> {
  const server = await dnsServer(ctx);
  let r = await dnsQuery(server, name, { type: 'A', transport: 'udp' });
  // Truncated: ask again over TCP, as dig does.
  if (r.packet.flag_tc) r = await dnsQuery(server, name, { type: 'A', transport: 'tcp' });
  for (const a of r.packet.answers ?? []) if (a.type === 'A') ctx.out(`${a.data}\n`);
  return 0;
}

/** `weave dns-args`: docker-style flags pointing a container at weaveDNS; nothing when it is off. */
export async function dnsArgs(ctx: CliContext): Promise<number> {
  const domain = await ctx.client.dnsDomain();
  if (domain === undefined) return 0;
  let host: string | undefined;
  try {
    host = await ctx.client.dnsAddress({ hostOnly: true });
  } catch (e) {
    if (e instanceof ApiError && e.code === 'NOT_RUNNING') {
      ctx.err(`${e.body.trim()}\n`);
      return 1;
    }
    throw e;
  }
  if (host === undefined) return 0;
  ctx.out(`--dns=${host} --dns-search=${domain}\n`);
  return 0;
}
