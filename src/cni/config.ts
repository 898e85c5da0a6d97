// The network configuration a runtime writes on stdin, parsed once into a typed NetConf before
// any side effect. Standard keys: name, type, cniVersion, dns, ipam, runtimeConfig,
// prevResult, args, cni.dev/attachments (spec 1.1.0 text) and cni.dev/valid-attachments (spec
// HEAD; libcni sends both). Weave Net's keys (plugin/net/cni.go): bridge (default "weave"),
// mtu (0 = the bridge's), hairpinMode (default true), isGateway/ipMasq (true is refused:
// code 2), ipam.subnet/gateway/routes for weave's own IPAM (ipam.type "" or absent; any
// other type names a delegated IPAM plugin, which reads those keys itself).
// Keys this implementation adds (the conflist carries them because podman's cleanup DEL runs
// in a process without the runtime's environment):
//   weaveHttpAddr  the router's API address, host:port or /unix/socket; else env
//                  WEAVE_HTTP_ADDR; else 127.0.0.1:6784.
//   routerWaitMs   how long a verb waits for an unreachable router before failing with
//                  code 11 (default 10000).
// Unknown keys (capabilities, vendor keys) are tolerated. When parsing for the IPAM-only
// plugin, the interface plugin's keys are not ours to judge and are ignored.
import { WeaveError } from '../core/errors.js';
import { subnetOf, tryParseCidr, tryParseIPv4, type Cidr, type IPv4 } from '../core/ip.js';
import { parseEndpoint } from '../api/client.js';
import { DEFAULT_HTTP_ADDR } from '../api/types.js';
import { parseResult, type CniDns, type CniResult } from './result.js';
import { CNI_ID_RE, interfaceNameProblem, type EnvMap } from './skel.js';
import { IMPLICIT_CONFIG_VERSION, formatVersionList, isSupportedVersion, type CniVersion } from './versions.js';

export const DEFAULT_BRIDGE = 'weave';
export const DEFAULT_ROUTER_WAIT_MS = 10_000;

export interface RouteConf {
  dst: Cidr;
  /** undefined = via the gateway. */
  gw?: IPv4;
}

export interface IpamConf {
  /** '' = weave's own IPAM through the router. */
  type: string;
  /** Whether an IPAM plugin found in CNI_PATH does the work. */
  delegated: boolean;
  /** Normalised network CIDR (host bits cleared, as the original's net.IPNet). */
  subnet?: Cidr;
  gateway?: IPv4;
  /** undefined = absent (a default route via the gateway); [] = no routes at all. */
  routes?: RouteConf[];
}

export interface Attachment {
  containerID: string;
  ifname: string;
}

export interface NetConf {
  name: string;
  type: string;
  cniVersion: CniVersion;
  bridge: string;
  /** 0 = the bridge's MTU. */
  mtu: number;
  hairpinMode: boolean;
  dns: CniDns;
  ipam: IpamConf;
  runtimeConfig: Record<string, unknown>;
  prevResult?: CniResult;
  args: Record<string, unknown>;
  /** GC: the attachments still in use (either GC key). */
  validAttachments?: Attachment[];
  weaveHttpAddr: string;
  routerWaitMs: number;
}

export interface ParseNetConfOptions {
  /** For WEAVE_HTTP_ADDR. */
  env?: EnvMap;
  /** Parsing for weave-ipam: ipam is ours whatever its type, interface keys are ignored. */
  ipamPlugin?: boolean;
}

function invalid(msg: string): WeaveError {
  return new WeaveError('INVALID_CONFIG', msg);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function optString(o: Record<string, unknown>, key: string, where = key): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalid(`invalid ${where} ${show(v)}: expected a string`);
  return v;
}

function optObject(o: Record<string, unknown>, key: string): Record<string, unknown> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw invalid(`invalid ${key} ${show(v)}: expected an object`);
  return v;
}

function parseCidrField(v: unknown, where: string): Cidr {
  const c = typeof v === 'string' ? tryParseCidr(v) : undefined;
  if (!c) throw invalid(`invalid ${where} ${show(v)}: expected an IPv4 CIDR a.b.c.d/n`);
  return c;
}

function parseIpField(v: unknown, where: string): IPv4 {
  const ip = typeof v === 'string' ? tryParseIPv4(v) : undefined;
  if (ip === undefined) throw invalid(`invalid ${where} ${show(v)}: expected an IPv4 address`);
  return ip;
}

function parseVersion(o: Record<string, unknown>): CniVersion {
  const v = o.cniVersion;
  if (v === undefined || v === null || v === '') return IMPLICIT_CONFIG_VERSION;
  if (typeof v !== 'string') throw invalid(`invalid cniVersion ${show(v)}: expected a string`);
  if (!isSupportedVersion(v)) {
    throw new WeaveError('INCOMPATIBLE_VERSION', `incompatible CNI versions; config is "${v}", plugin supports ${formatVersionList()}`);
  }
  return v;
}

function parseIpam(o: Record<string, unknown>, ipamPlugin: boolean): IpamConf {
  const raw = optObject(o, 'ipam') ?? {};
  const type = optString(raw, 'type', 'ipam.type') ?? '';
  const delegated = !ipamPlugin && type !== '';
  if (delegated) {
    if (type.includes('/') || type === '.' || type === '..') throw invalid(`invalid ipam.type "${type}": must be a plugin name, not a path`);
    // The delegate reads subnet/gateway/routes (and its own keys) itself.
    return { type, delegated };
  }
  const ipam: IpamConf = { type, delegated };
  if (raw.subnet !== undefined && raw.subnet !== null && raw.subnet !== '') ipam.subnet = subnetOf(parseCidrField(raw.subnet, 'ipam.subnet'));
  if (raw.gateway !== undefined && raw.gateway !== null && raw.gateway !== '') ipam.gateway = parseIpField(raw.gateway, 'ipam.gateway');
  if (raw.routes !== undefined && raw.routes !== null) {
    if (!Array.isArray(raw.routes)) throw invalid(`invalid ipam.routes ${show(raw.routes)}: expected a list`);
    ipam.routes = raw.routes.map((r: unknown, i) => {
      const where = `ipam.routes[${i}]`;
      if (!isObject(r)) throw invalid(`invalid ${where} ${show(r)}: expected {"dst": CIDR, "gw"?: IP}`);
      const route: RouteConf = { dst: subnetOf(parseCidrField(r.dst, `${where}.dst`)) };
      if (r.gw !== undefined && r.gw !== null && r.gw !== '') route.gw = parseIpField(r.gw, `${where}.gw`);
      return route;
    });
  }
  return ipam;
}

function parseAttachments(o: Record<string, unknown>): Attachment[] | undefined {
  const key = o['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const v = o[key];
  if (v === undefined) return undefined;
  // libcni sends a runtime's empty list (a nil Go slice) as null: nothing is valid any more.
  if (v === null) return [];
  if (!Array.isArray(v)) throw invalid(`invalid ${key} ${show(v)}: expected a list`);
  return v.map((a: unknown, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string') {
      throw invalid(`invalid ${key}[${i}] ${show(a)}: expected {"containerID": string, "ifname": string}`);
    }
    return { containerID: a.containerID, ifname: typeof a.ifname === 'string' ? a.ifname : '' };
  });
}

function parseBool(o: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw invalid(`invalid ${key} ${show(v)}: expected true or false`);
  return v;
}

function parseNonNegativeInt(o: Record<string, unknown>, key: string, dflt: number, max: number): number {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw invalid(`invalid ${key} ${show(v)}: expected an integer from 0 to ${max}`);
  }
  return v;
}

/** Parses stdin (text or already-decoded JSON) into a NetConf; throws WeaveErrors with CNI-mapped codes. */
export function parseNetConf(json: unknown, opts: ParseNetConfOptions = {}): NetConf {
  let o = json;
  if (typeof json === 'string') {
    try {
      o = JSON.parse(json);
    } catch (e) {
      throw new WeaveError('DECODE_FAILED', `cannot decode the network configuration: ${(e as Error).message}`);
    }
  }
  if (!isObject(o)) throw new WeaveError('DECODE_FAILED', 'cannot decode the network configuration: not a JSON object');

  const cniVersion = parseVersion(o);
  const name = optString(o, 'name') ?? '';
  if (!CNI_ID_RE.test(name)) throw invalid(`invalid network name ${show(name)}: must match ${CNI_ID_RE.source}`);
  const type = optString(o, 'type') ?? '';
  const ipamPlugin = opts.ipamPlugin ?? false;

  let bridge = DEFAULT_BRIDGE;
  let mtu = 0;
  let hairpinMode = true;
  if (!ipamPlugin) {
    for (const key of ['isGateway', 'ipMasq'] as const) {
      if (o[key] === true) {
        const what = key === 'isGateway' ? 'gateway functionality' : 'IP masquerading functionality';
        throw new WeaveError('UNSUPPORTED_FIELD', `unsupported field ${key}: true (${what} not supported)`);
      }
    }
    bridge = optString(o, 'bridge') || DEFAULT_BRIDGE;
    const problem = interfaceNameProblem(bridge);
    if (problem) throw invalid(`invalid bridge "${bridge}": ${problem}`);
    mtu = parseNonNegativeInt(o, 'mtu', 0, 65535);
    hairpinMode = parseBool(o, 'hairpinMode', true);
  }

  const weaveHttpAddr = optString(o, 'weaveHttpAddr') || opts.env?.WEAVE_HTTP_ADDR || DEFAULT_HTTP_ADDR;
  try {
    parseEndpoint(weaveHttpAddr);
  } catch (e) {
    throw invalid(`invalid weaveHttpAddr: ${(e as Error).message}`);
  }
  const routerWaitMs = parseNonNegativeInt(o, 'routerWaitMs', DEFAULT_ROUTER_WAIT_MS, 3_600_000);

  let prevResult: CniResult | undefined;
  if (o.prevResult !== undefined && o.prevResult !== null) {
    try {
      prevResult = parseResult(o.prevResult);
    } catch (e) {
      throw new WeaveError('DECODE_FAILED', `invalid prevResult: ${(e as Error).message}`);
    }
  }
  const validAttachments = parseAttachments(o);
  const argsValue = o.args;

  return {
    name,
    type,
    cniVersion,
    bridge,
    mtu,
    hairpinMode,
    // The interface plugin copies its dns verbatim; an IPAM plugin ignores the key.
    dns: ipamPlugin ? {} : { ...(optObject(o, 'dns') ?? {}) },
    ipam: parseIpam(o, ipamPlugin),
    runtimeConfig: { ...(optObject(o, 'runtimeConfig') ?? {}) },
    ...(prevResult ? { prevResult } : {}),
    // `args` is metadata plugins must ignore when they do not understand it: never an error.
    args: isObject(argsValue) ? { ...argsValue } : {},
    ...(validAttachments ? { validAttachments } : {}),
    weaveHttpAddr,
    routerWaitMs,
  };
}
