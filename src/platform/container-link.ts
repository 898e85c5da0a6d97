// Attaching a container's network namespace to the weave bridge, and detaching it: the kernel
// work of the CNI plugin and of `weave attach`. Runs in the caller's process with two
// `ip -batch` invocations, because a CNI ADD pays for every process it starts:
//   1. host namespace: the veth pair, created with its peer directly inside the container
//      namespace under its final name (no move, no rename), enslaved to the bridge, hairpin, up;
//   2. container namespace (nsenter): addresses, ARP timers, link up, routes.
// The container interface gets `arp_notify=1` before it comes up, so the kernel sends the
// gratuitous ARP the original sent with arping. On failure everything created is removed.
import { statSync, writeFileSync } from 'node:fs';
import { WeaveError } from '../core/errors.js';
import { formatCidr, formatIPv4, cidrContains, parseCidr, type Cidr, type IPv4 } from '../core/ip.js';
import { execFile } from './exec.js';
import { IpRoute, parseLinkJson, type LinkInfo } from './iproute.js';

/** Largest TCP super-frame a container sends: with sleeve's headers it still fits one datagram. */
export const GSO_MAX_SIZE = 65000;

/** Host-side veth prefix of Weave Net (`vethwepl<id>`); the `vethwe` prefix is reserved for us. */
export const HOST_VETH_PREFIX = 'vethwepl';
const IFNAMSIZ_MAX = 15;

export interface RouteSpec {
  dst: Cidr;
  gw?: IPv4;
}

export interface AttachSpec {
  /** Path of the container's network namespace (/run/netns/x or /proc/PID/ns/net). */
  netns: string;
  containerId: string;
  /** Interface name inside the container. */
  ifName: string;
  bridge: string;
  /** MTU of the veth pair; 0 or undefined = the bridge's MTU. */
  mtu?: number;
  addresses: Cidr[];
  /** Routes to add; routes without `gw` go via `gateway`. */
  routes: RouteSpec[];
  gateway?: IPv4;
  hairpin: boolean;
  /** Add `224.0.0.0/4 dev <if>` (weave attach's default; the CNI plugin does not). */
  multicastRoute?: boolean;
  /** The bridge, if the caller already looked it up (saves one `ip` call). */
  bridgeLink?: LinkInfo;
  /**
   * The IPAM ident of the addresses: recorded on the host end (see attachAlias) so that a
   * router that lost its store can tell which addresses are in use and by whom.
   */
  ident?: string;
}

const ALIAS_PREFIX = 'weave;';
// ifalias takes up to 255 bytes; the batch line splits on blanks and quotes.
const ALIAS_IDENT = /^[A-Za-z0-9_.:@+=/-]{1,160}$/;

/**
 * The host end's alias: `weave;<ident>;<cidr>,<cidr>`. The kernel keeps it as long as the
 * container is attached, which is exactly how long its addresses are in use. Undefined when
 * the ident has characters the alias cannot carry (the addresses then go unrecorded).
 */
export function attachAlias(ident: string, addresses: readonly Cidr[]): string | undefined {
  if (!ALIAS_IDENT.test(ident) || addresses.length === 0) return undefined;
  const s = `${ALIAS_PREFIX}${ident};${addresses.map(formatCidr).join(',')}`;
  return s.length <= 255 ? s : undefined;
}

/** Reads an alias written by attachAlias; undefined for any other alias. */
export function parseAttachAlias(alias: string): { ident: string; cidrs: Cidr[] } | undefined {
  if (!alias.startsWith(ALIAS_PREFIX)) return undefined;
  const [ident, list, extra] = alias.slice(ALIAS_PREFIX.length).split(';');
  if (ident === undefined || list === undefined || extra !== undefined || !ALIAS_IDENT.test(ident)) return undefined;
  const cidrs: Cidr[] = [];
  for (const t of list.split(',')) {
    try {
      cidrs.push(parseCidr(t));
    } catch {
      return undefined;
    }
  }
  return { ident, cidrs };
}

export interface AttachResult {
  hostIfName: string;
  hostMac: string;
  ifName: string;
  containerMac: string;
  mtu: number;
  /** Routes the container had already (kept as they were, not added). */
  existingRoutes: Cidr[];
}

/**
 * The IPAM ident of an attachment. The spec keys plugin state by (network, container,
 * interface); the original keyed it by the container alone, so a container attached twice
 * (two weave networks, podman's eth0 and eth1) had one ident, and the DEL of one attachment
 * freed the other's address while it was still in use. eth0, every Kubernetes pod's and
 * the original's case, keeps the container ID; other interfaces get `<id>@<ifname>` (a
 * container ID has no `@`, CNI_ID_RE, so the first one splits them).
 */
export function attachmentIdent(containerId: string, ifName: string): string {
  return ifName === '' || ifName === 'eth0' ? containerId : `${containerId}@${ifName}`;
}

/** The container ID and interface of an attachmentIdent. */
export function parseAttachmentIdent(ident: string): { containerId: string; ifName: string } {
  const at = ident.indexOf('@');
  return at < 0 ? { containerId: ident, ifName: 'eth0' } : { containerId: ident.slice(0, at), ifName: ident.slice(at + 1) };
}

/**
 * Host-side veth name. Weave Net used the first 7 characters of the container ID, which
 * collides for IDs that share a prefix (containerd's `default-<name>`, Mesos UUIDs of one
 * agent); we keep that name for hex IDs (Docker, Kubernetes) and use a hash otherwise.
 */
export function hostVethName(containerId: string, ifName = 'eth0'): string {
  const room = IFNAMSIZ_MAX - HOST_VETH_PREFIX.length;
  if (ifName === 'eth0' && /^[0-9a-f]{7,}$/.test(containerId)) return HOST_VETH_PREFIX + containerId.slice(0, room);
  return HOST_VETH_PREFIX + fnv1a32(`${containerId}/${ifName}`).toString(16).padStart(8, '0').slice(0, room);
}

// FNV-1a, 32 bits: enough for 7 hex digits of name, and it spares every plugin start the
// cost of loading node:crypto.
function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Validates a netns path and refuses the caller's own namespace. */
export function checkNetns(path: string): void {
  // The path goes into an `ip -batch` line: keep it to characters that need no quoting.
  if (!/^\/[^\s"'\\]*$/.test(path)) throw new WeaveError('INVALID_ARGUMENT', `unsupported network namespace path "${path}"`);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new WeaveError('CONTAINER_UNKNOWN', `network namespace ${path} does not exist`, { cause: e });
  }
  let self;
  try {
    self = statSync('/proc/self/ns/net');
  } catch {
    return;
  }
  if (st.ino === self.ino && st.dev === self.dev) {
    throw new WeaveError('INVALID_ARGUMENT', `can not specify host network namespace ${path}`);
  }
}

function setHostSysctl(path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch {
    // IPv6 may be disabled: then there is no accept_ra to turn off.
  }
}

export async function attachContainer(spec: AttachSpec): Promise<AttachResult> {
  checkNetns(spec.netns);
  if (!/^[A-Za-z0-9_.@+=-]{1,15}$/.test(spec.ifName) || spec.ifName === '.' || spec.ifName === '..') {
    throw new WeaveError('INVALID_ARGUMENT', `unsupported interface name "${spec.ifName}"`);
  }
  const host = new IpRoute();
  const bridge = spec.bridgeLink ?? (await host.getLink(spec.bridge));
  if (!bridge) {
    throw new WeaveError('UNAVAILABLE', `bridge "${spec.bridge}" not found: is the weave router running?`);
  }
  const mtu = spec.mtu && spec.mtu > 0 ? spec.mtu : bridge.mtu;
  const hostIf = hostVethName(spec.containerId, spec.ifName);
  const ifn = spec.ifName;
  const alias = spec.ident !== undefined ? attachAlias(spec.ident, spec.addresses) : undefined;

  let hostJson: string;
  try {
    hostJson = await host.batch(
      [
        `link add ${hostIf} mtu ${mtu} type veth peer name ${ifn} mtu ${mtu} netns ${spec.netns}`,
        `link set dev ${hostIf} master ${spec.bridge}`,
        // Sleeve carries a TCP super-frame in one UDP datagram: keep them under 64 KiB.
        `link set dev ${hostIf} gso_max_size ${GSO_MAX_SIZE}`,
        `link set dev ${hostIf} type bridge_slave hairpin ${spec.hairpin ? 'on' : 'off'}`,
        `link set dev ${hostIf} up`,
        ...(alias ? [`link set dev ${hostIf} alias ${alias}`] : []),
        `link show dev ${hostIf}`,
      ],
      { json: true },
    );
  } catch (e) {
    const msg = (e as Error).message;
    if (/^ip link add/.test(msg) && /File exists/.test(msg)) {
      const owner = await host.getLink(hostIf).then((l) => (l?.alias !== undefined ? parseAttachAlias(l.alias)?.ident : undefined), () => undefined);
      if (owner !== undefined && owner !== (spec.ident ?? spec.containerId)) {
        throw new WeaveError('ALREADY_EXISTS', `host interface ${hostIf} belongs to container ${owner}, whose ID starts with the same 7 characters as ${spec.containerId}`, { cause: e });
      }
      throw new WeaveError('ALREADY_EXISTS', `interface ${hostIf} or ${ifn} already exists: container ${spec.containerId} is already attached (${msg})`, { cause: e });
    }
    // Created but not finished: take it down again (deleting one end removes both).
    if (!/^ip link add/.test(msg)) await host.deleteLink(hostIf).catch(() => undefined);
    throw e;
  }
  setHostSysctl(`/proc/sys/net/ipv6/conf/${hostIf}/accept_ra`, '0');

  const lines: string[] = [];
  for (const a of spec.addresses) lines.push(`addr add ${formatCidr(a)} dev ${ifn}`);
  // The original's ARP timers for containers (net/arp.go): re-resolve quickly after moves.
  lines.push(`ntable change name arp_cache dev ${ifn} base_reachable 5000 delay_probe 2000 ucast_probes 1`);
  lines.push(`link set dev ${ifn} gso_max_size ${GSO_MAX_SIZE}`);
  lines.push(`link set dev ${ifn} up`);
  if (spec.multicastRoute) lines.push(`route add 224.0.0.0/4 dev ${ifn}`);
  // Route lines (by index) and the destination each adds: a route the container has already
  // (another network set its default route: podman with two networks, Multus) is kept, as the
  // original squashed "File exists" for routes.
  const routeDst = new Map<number, Cidr>();
  const onLink = new Set<number>();
  for (const r of spec.routes) {
    const gw = r.gw ?? spec.gateway;
    if (gw !== undefined && !spec.addresses.some((a) => cidrContains(a, gw)) && !onLink.has(gw)) {
      // A gateway outside the container's subnet is reachable only by a link-scope route.
      routeDst.set(lines.length, { ip: gw, prefix: 32 });
      lines.push(`route add ${formatIPv4(gw)}/32 dev ${ifn} scope link`);
      onLink.add(gw);
    }
    routeDst.set(lines.length, r.dst);
    lines.push(`route add ${formatCidr(r.dst)}${gw !== undefined ? ` via ${formatIPv4(gw)}` : ''} dev ${ifn}`);
  }
  lines.push(`link show dev ${ifn}`);
  // sysctls under /proc/sys/net follow the writer's namespace, so a shell inside nsenter sets
  // them for the container. arp_notify makes the kernel announce the address on link-up, but
  // that announcement can beat the bridge port to the forwarding state; so arping (when
  // installed) repeats it once the batch is done, in the background (the runtime is not kept
  // waiting for its one-second linger).
  const script =
    'echo 1 > "/proc/sys/net/ipv4/conf/$1/arp_notify"; ' +
    '[ -e "/proc/sys/net/ipv6/conf/$1/accept_ra" ] && echo 0 > "/proc/sys/net/ipv6/conf/$1/accept_ra"; ' +
    'ip -j -batch -; rc=$?; ' +
    'if [ $rc -eq 0 ] && command -v arping >/dev/null 2>&1; then ' +
    'i=$1; shift; for a in "$@"; do (arping -q -U -c 1 -I "$i" "$a" </dev/null >/dev/null 2>&1 &); done; fi; ' +
    'exit $rc';
  const ips = spec.addresses.map((a) => formatIPv4(a.ip));
  const existingRoutes: Cidr[] = [];
  let r;
  // `ip -batch` stops at the first failure, everything before it done: after a route that
  // exists already, go on from the line after it.
  for (let from = 0; ; ) {
    r = await execFile('nsenter', [`--net=${spec.netns}`, '--', 'sh', '-c', script, 'sh', ifn, ...ips], { input: lines.slice(from).join('\n') + '\n' });
    if (r.code === 0) break;
    const m = /Command failed -:(\d+)/.exec(r.stderr);
    const at = m ? from + Number(m[1]) - 1 : -1;
    const dst = routeDst.get(at);
    if (dst !== undefined && /File exists/.test(r.stderr)) {
      existingRoutes.push(dst);
      from = at + 1;
      continue;
    }
    await host.deleteLink(hostIf).catch(() => undefined);
    const line = at >= 0 ? lines[at] : undefined;
    throw new WeaveError('KERNEL_FAILED', `in ${spec.netns}: ip ${line ?? ''}: ${r.stderr.replace(/Command failed -:\d+\s*/, '').trim()}`);
  }
  const hostLink = parseLinkJson(hostJson)[0];
  const contLink = parseLinkJson(r.stdout)[0];
  return {
    hostIfName: hostIf,
    hostMac: hostLink?.address ?? '',
    ifName: ifn,
    containerMac: contLink?.address ?? '',
    mtu,
    existingRoutes,
  };
}

/**
 * Removes a container's veth pair (deleting one end removes both). Inside the container's
 * namespace when it is there, as the original did: exactly this attachment, whatever the host
 * end is called. By the host end's name only when the namespace is not given (CNI DEL with an
 * empty CNI_NETNS) or gone, and not if the link's record (attachAlias) names another
 * ident than `ident` (default: the container ID): hex IDs share that name when their first 7 characters agree, and a DEL after a
 * failed ADD would otherwise take down the container that had the name first.
 * Returns whether anything was deleted.
 */
export async function detachContainer(opts: { containerId: string; ifName: string; ident?: string; netns?: string }): Promise<boolean> {
  if (opts.netns) {
    let present = true;
    try {
      checkNetns(opts.netns);
    } catch {
      present = false;
    }
    if (present) return new IpRoute({ netnsPath: opts.netns }).deleteLink(opts.ifName);
  }
  const host = new IpRoute();
  const name = hostVethName(opts.containerId, opts.ifName);
  const link = await host.getLink(name);
  if (!link) return false;
  const record = link.alias !== undefined ? parseAttachAlias(link.alias) : undefined;
  if (record && record.ident !== (opts.ident ?? opts.containerId)) return false;
  return host.deleteLink(name);
}

/** The container-side interface as the kernel sees it now, or undefined. */
export async function inspectContainerLink(netns: string, ifName: string): Promise<LinkInfo | undefined> {
  checkNetns(netns);
  return new IpRoute({ netnsPath: netns }).getLink(ifName);
}
