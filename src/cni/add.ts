// ADD. weave-net: allocate an address (router or delegate) while looking up the bridge, choose
// the gateway, attach the container's netns to the bridge with a veth pair, and print the
// result in the config's version. weave-ipam: allocate and print the IPAM-shaped result.
//
// Gateway (plugin/net/cni.go): ipam.gateway (or the delegate's ips[].gateway) when given;
// otherwise, when a route needs one (routes absent = a default route, [] as the original, or
// a route without gw), the bridge's IPv4 address inside the container's subnet, else its
// first IPv4 address; a bridge without any gets one allocated for ident `weave:expose` and
// put there by the router (POST /expose), which the router does idempotently, so concurrent
// ADDs converge on one address. Routes: absent = 0.0.0.0/0 via the gateway; [] = none;
// otherwise as given, gw defaulting to the gateway. A route to the container's own subnet is
// already the kernel's connected route and is not added again (it would fail with EEXIST).
//
// Failure after the allocation releases it (best effort; a delegate gets DEL), except when the
// interface already exists (its host veth records this container): then the address belongs to
// that attachment and stays, whatever made this ADD fail.
import { WeaveError, errorMessage, isWeaveError } from '../core/errors.js';
import {
  cidrContains,
  cidrEquals,
  formatCidr,
  formatIPv4,
  parseCidr,
  parseIPv4,
  subnetOf,
  tryParseCidr,
  tryParseIPv4,
  type Cidr,
  type IPv4,
} from '../core/ip.js';
import { EXPOSE_IDENT } from '../api/types.js';
import type { LinkInfo } from '../platform/iproute.js';
import { hostVethName, parseAttachAlias, type RouteSpec } from '../platform/container-link.js';
import type { PluginContext } from './context.js';
import { CniError, CNI_ERR } from './cni-error.js';
import { attachmentIdent, ipamFor, type IpamBackend } from './ipam.js';
import { formatIpamResult, formatResult, ipVersionOf, type CniResult, type CniRoute } from './result.js';

export async function cmdAdd(ctx: PluginContext): Promise<Record<string, unknown>> {
  const ipam = ipamFor(ctx);
  if (ctx.kind === 'ipam') return formatIpamResult(await ipam.add(), ctx.conf.cniVersion);
  return addInterface(ctx, ipam);
}

interface Plan {
  addresses: Cidr[];
  gateway?: IPv4;
  install: RouteSpec[];
  reported: CniRoute[];
}

async function addInterface(ctx: PluginContext, ipam: IpamBackend): Promise<Record<string, unknown>> {
  const { env, conf, deps } = ctx;
  // A missing netns is CNI code 3; find out before allocating anything.
  deps.kernel.checkNetns(env.netns);
  const [alloc, bridgeLookup] = await Promise.allSettled([ipam.add(), deps.kernel.getLink(conf.bridge)]);
  if (alloc.status === 'rejected') throw alloc.reason;
  const allocated = alloc.value;
  try {
    if (bridgeLookup.status === 'rejected') throw bridgeLookup.reason;
    // The router creates the bridge when it starts; an allocation that had to wait for the
    // router may have finished after the lookup, so look once more before giving up.
    const bridge = bridgeLookup.value ?? (await deps.kernel.getLink(conf.bridge));
    if (!bridge) throw new WeaveError('UNAVAILABLE', `bridge "${conf.bridge}" does not exist: is the weave router running?`);
    const plan = await planAddresses(ctx, ipam, allocated, bridge);
    const attached = await deps.kernel.attach({
      netns: env.netns,
      containerId: env.containerId,
      ifName: env.ifName,
      bridge: conf.bridge,
      mtu: conf.mtu,
      addresses: plan.addresses,
      routes: plan.install,
      ...(plan.gateway !== undefined ? { gateway: plan.gateway } : {}),
      hairpin: conf.hairpinMode,
      bridgeLink: bridge,
      // Our own allocations are recorded on the link for the router's reclaim after data loss.
      ...(ipam.delegated ? {} : { ident: attachmentIdent(env.containerId, env.ifName) }),
    });
    for (const d of attached.existingRoutes) ctx.log(`ADD ${env.containerId}: the container has a route to ${formatCidr(d)} already; kept it`);
    const prev = conf.prevResult;
    const base = prev?.interfaces.length ?? 0;
    const gw = plan.gateway !== undefined ? formatIPv4(plan.gateway) : undefined;
    const result: CniResult = {
      interfaces: [
        ...(prev?.interfaces ?? []),
        { name: attached.hostIfName, mac: attached.hostMac, mtu: attached.mtu },
        { name: attached.ifName, mac: attached.containerMac, sandbox: env.netns, mtu: attached.mtu },
      ],
      ips: [
        ...(prev?.ips ?? []),
        ...plan.addresses.map((a) => ({ address: formatCidr(a), ...(gw ? { gateway: gw } : {}), interface: base + 1 })),
      ],
      // A route the container had already (another network's default route) stays theirs.
      routes: [...(prev?.routes ?? []), ...plan.reported.filter((r) => !attached.existingRoutes.some((d) => formatCidr(d) === r.dst))],
      // Ours (the config's, else the IPAM's), else what a plugin before us in the chain set.
      dns: [conf.dns, allocated.dns].find((d) => Object.keys(d).length > 0) ?? prev?.dns ?? {},
    };
    return formatResult(result, conf.cniVersion);
  } catch (e) {
    if (!isWeaveError(e, 'ALREADY_EXISTS') && !(await attachedAlready(ctx, ipam))) {
      await ipam.del().catch((u: unknown) => ctx.log(`ADD ${env.containerId}: could not undo the allocation: ${errorMessage(u)}`));
    }
    throw e;
  }
}

/**
 * Whether this container's interface is attached already, by the record on its host veth: a
 * repeated ADD was answered with the address that attachment holds, so a failure of this ADD
 * (any, not only "exists") must not release it from under the live interface.
 */
async function attachedAlready(ctx: PluginContext, ipam: IpamBackend): Promise<boolean> {
  if (ipam.delegated) return false;
  const { env, deps } = ctx;
  const link = await deps.kernel.getLink(hostVethName(env.containerId, env.ifName)).catch(() => undefined);
  const record = link?.alias !== undefined ? parseAttachAlias(link.alias) : undefined;
  return record?.ident === attachmentIdent(env.containerId, env.ifName);
}

async function planAddresses(ctx: PluginContext, ipam: IpamBackend, allocated: CniResult, bridge: LinkInfo): Promise<Plan> {
  const addresses: Cidr[] = [];
  let gateway: IPv4 | undefined;
  for (const ip of allocated.ips) {
    const c = ipVersionOf(ip.address) === '4' ? tryParseCidr(ip.address) : undefined;
    if (!c) {
      ctx.log(`ADD ${ctx.env.containerId}: ignoring ${ip.address} (weave attaches IPv4 addresses only)`);
      continue;
    }
    addresses.push(c);
    if (gateway === undefined && ip.gateway) gateway = tryParseIPv4(ip.gateway);
  }
  const first = addresses[0];
  if (!first) throw new CniError(CNI_ERR.INTERNAL, 'IPAM plugin failed to allocate an IPv4 address', { code: 'EXHAUSTED' });

  const routes = allocated.routes?.filter((r) => ipVersionOf(r.dst) === '4');
  const needGateway = gateway === undefined && (routes === undefined || routes.length === 0 || routes.some((r) => !r.gw));
  if (needGateway) gateway = await bridgeGateway(ctx, ipam, bridge, first);

  const wanted: { dst: Cidr; gw?: IPv4 }[] =
    routes === undefined
      ? [{ dst: { ip: 0, prefix: 0 } }]
      : routes.map((r) => ({ dst: subnetOf(parseCidr(r.dst)), ...(r.gw ? { gw: parseIPv4(r.gw) } : {}) }));
  const install: RouteSpec[] = [];
  const reported: CniRoute[] = [];
  for (const r of wanted) {
    const connected = addresses.some((a) => cidrEquals(subnetOf(a), r.dst));
    const via = r.gw ?? gateway;
    if (connected) {
      ctx.log(`ADD ${ctx.env.containerId}: ${formatCidr(r.dst)} is the container's own subnet; the kernel routes it already`);
      reported.push({ dst: formatCidr(r.dst) });
      continue;
    }
    install.push({ dst: r.dst, ...(r.gw !== undefined ? { gw: r.gw } : {}) });
    reported.push({ dst: formatCidr(r.dst), ...(via !== undefined ? { gw: formatIPv4(via) } : {}) });
  }
  return { addresses, ...(gateway !== undefined ? { gateway } : {}), install, reported };
}

/** The bridge's address to route through, creating it (weave:expose) when the bridge has none. */
async function bridgeGateway(ctx: PluginContext, ipam: IpamBackend, bridge: LinkInfo, addr: Cidr): Promise<IPv4> {
  const own = bridge.addrs
    .filter((a) => a.family === 'inet')
    .map((a) => tryParseIPv4(a.local))
    .filter((ip): ip is IPv4 => ip !== undefined);
  const inSubnet = own.find((ip) => cidrContains(addr, ip));
  if (inSubnet !== undefined) return inSubnet;
  if (own[0] !== undefined) return own[0];
  // As the original: the bridge gets an address of its own from the same IPAM space.
  const subnet = ipam.delegated ? subnetOf(addr) : ctx.conf.ipam.subnet;
  const router = ctx.router();
  const cidr = await router.allocate(EXPOSE_IDENT, subnet ? { subnet } : {});
  await router.expose(cidr);
  ctx.log(`ADD ${ctx.env.containerId}: bridge "${ctx.conf.bridge}" had no address; exposed ${formatCidr(cidr)}`);
  return cidr.ip;
}
