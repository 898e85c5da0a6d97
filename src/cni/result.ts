// The CNI result: one internal model (interfaces, ips, routes, dns) and its exact JSON shape
// for every spec version we speak, in both directions.
//   0.1.0/0.2.0  {"cniVersion","ip4":{"ip","gateway","routes"},"ip6":{..},"dns"}  (Mesos reads only this)
//   0.3.x/0.4.0  {"cniVersion","interfaces":[{name,mac,sandbox}],"ips":[{version,address,gateway,interface}],"routes","dns"}
//   1.0.0        the same without ips[].version
//   1.1.0        plus interfaces[].mtu/socketPath/pciID and routes[].mtu/advmss/priority/table/scope
// Invariants: `cniVersion` is always written (the original omitted it and broke containerd
// 1.6.0-1.6.4); `dns` is always written (as {} when empty, like the original); empty
// `interfaces` and `routes` are left out (Go's omitempty). IPAM results have no interfaces and
// no ips[].interface. parseResult is total: any version in, a typed model or DECODE_FAILED out.
import { WeaveError } from '../core/errors.js';
import { tryParseCidr, tryParseIPv4 } from '../core/ip.js';
import { compareVersions } from './versions.js';

export interface CniInterface {
  name: string;
  mac?: string;
  /** The netns path for container-side interfaces; absent for host interfaces. */
  sandbox?: string;
  /** 1.1.0 only. */
  mtu?: number;
  socketPath?: string;
  pciID?: string;
}

export interface CniIp {
  /** CIDR, e.g. 10.32.0.5/12. */
  address: string;
  gateway?: string;
  /** Index into interfaces; absent in IPAM results. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  /** 1.1.0 only. */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export type CniDns = Record<string, unknown>;

export interface CniResult {
  interfaces: CniInterface[];
  ips: CniIp[];
  /** undefined = the result said nothing about routes (a caller may then add a default). */
  routes?: CniRoute[];
  dns: CniDns;
}

const ROUTE_EXTRAS_1_1 = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;

export function ipVersionOf(cidrOrIp: string): '4' | '6' {
  return cidrOrIp.includes(':') ? '6' : '4';
}

function isLegacy(version: string): boolean {
  return compareVersions(version, '0.3.0') < 0;
}

function formatLegacy(result: CniResult, version: string): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version };
  for (const family of ['4', '6'] as const) {
    const ip = result.ips.find((i) => ipVersionOf(i.address) === family);
    if (!ip) continue;
    const routes = (result.routes ?? []).filter((r) => ipVersionOf(r.dst) === family).map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) }));
    out[`ip${family}`] = { ip: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}), ...(routes.length > 0 ? { routes } : {}) };
  }
  out.dns = { ...result.dns };
  return out;
}

/** The result document exactly as `version` defines it. */
export function formatResult(result: CniResult, version: string): Record<string, unknown> {
  if (isLegacy(version)) return formatLegacy(result, version);
  const withVersion = compareVersions(version, '1.0.0') < 0;
  const v11 = compareVersions(version, '1.1.0') >= 0;
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces.length > 0) {
    out.interfaces = result.interfaces.map((i) => ({
      name: i.name,
      ...(i.mac ? { mac: i.mac } : {}),
      ...(v11 && i.mtu ? { mtu: i.mtu } : {}),
      ...(i.sandbox ? { sandbox: i.sandbox } : {}),
      ...(v11 && i.socketPath ? { socketPath: i.socketPath } : {}),
      ...(v11 && i.pciID ? { pciID: i.pciID } : {}),
    }));
  }
  out.ips = result.ips.map((ip) => ({
    ...(withVersion ? { version: ipVersionOf(ip.address) } : {}),
    address: ip.address,
    ...(ip.gateway ? { gateway: ip.gateway } : {}),
    ...(ip.interface !== undefined ? { interface: ip.interface } : {}),
  }));
  if (result.routes && result.routes.length > 0) {
    out.routes = result.routes.map((r) => {
      const o: Record<string, unknown> = { dst: r.dst, ...(r.gw ? { gw: r.gw } : {}) };
      if (v11) for (const k of ROUTE_EXTRAS_1_1) if (r[k] !== undefined) o[k] = r[k];
      return o;
    });
  }
  out.dns = { ...result.dns };
  return out;
}

/** The abbreviated result of an IPAM plugin: no interfaces, no ips[].interface. */
export function formatIpamResult(result: CniResult, version: string): Record<string, unknown> {
  return formatResult(
    {
      interfaces: [],
      ips: result.ips.map((ip) => ({ address: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}) })),
      ...(result.routes ? { routes: result.routes } : {}),
      dns: result.dns,
    },
    version,
  );
}

// --- decoding ---

function fail(what: string): never {
  throw new WeaveError('DECODE_FAILED', `cannot decode CNI result: ${what}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const ipv6CidrRe = /^[0-9a-fA-F:.]+\/[0-9]{1,3}$/;
const ipv6Re = /^[0-9a-fA-F:.]+$/;

function checkCidr(v: unknown, where: string): string {
  if (typeof v !== 'string') fail(`${where} is not a string`);
  const ok = v.includes(':') ? ipv6CidrRe.test(v) : tryParseCidr(v) !== undefined;
  if (!ok) fail(`${where} "${v}" is not an address with a prefix length`);
  return v;
}

function optIp(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') fail(`${where} is not a string`);
  const ok = v.includes(':') ? ipv6Re.test(v) : tryParseIPv4(v) !== undefined;
  if (!ok) fail(`${where} "${v}" is not an IP address`);
  return v;
}

function optString(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') fail(`${where} is not a string`);
  return v;
}

function optInt(v: unknown, where: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(`${where} is not an integer`);
  return v;
}

function decodeRoutes(v: unknown, where: string): CniRoute[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) fail(`${where} is not a list`);
  return v.map((r, i) => {
    const w = `${where}[${i}]`;
    if (!isObject(r)) fail(`${w} is not an object`);
    const route: CniRoute = { dst: checkCidr(r.dst, `${w}.dst`) };
    const gw = optIp(r.gw, `${w}.gw`);
    if (gw) route.gw = gw;
    for (const k of ROUTE_EXTRAS_1_1) {
      const n = optInt(r[k], `${w}.${k}`);
      if (n !== undefined) route[k] = n;
    }
    return route;
  });
}

function decodeDns(v: unknown): CniDns {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) fail('dns is not an object');
  return { ...v };
}

function decodeLegacy(doc: Record<string, unknown>): CniResult {
  const ips: CniIp[] = [];
  let routes: CniRoute[] | undefined;
  for (const family of ['ip4', 'ip6'] as const) {
    const c = doc[family];
    if (c === undefined || c === null) continue;
    if (!isObject(c)) fail(`${family} is not an object`);
    const ip: CniIp = { address: checkCidr(c.ip, `${family}.ip`) };
    const gw = optIp(c.gateway, `${family}.gateway`);
    if (gw) ip.gateway = gw;
    ips.push(ip);
    const r = decodeRoutes(c.routes, `${family}.routes`);
    if (r) routes = [...(routes ?? []), ...r];
  }
  return { interfaces: [], ips, ...(routes ? { routes } : {}), dns: decodeDns(doc.dns) };
}

/** Reads a result of any version: a delegated IPAM plugin's output, or prevResult. */
export function parseResult(json: unknown): CniResult {
  let doc = json;
  if (typeof json === 'string') {
    try {
      doc = JSON.parse(json);
    } catch (e) {
      fail((e as Error).message);
    }
  }
  if (!isObject(doc)) fail('not a JSON object');
  if (doc.ips === undefined && (doc.ip4 !== undefined || doc.ip6 !== undefined)) return decodeLegacy(doc);

  const rawIfs = doc.interfaces ?? [];
  if (!Array.isArray(rawIfs)) fail('interfaces is not a list');
  const interfaces: CniInterface[] = rawIfs.map((x, i) => {
    const w = `interfaces[${i}]`;
    if (!isObject(x)) fail(`${w} is not an object`);
    if (typeof x.name !== 'string' || x.name === '') fail(`${w}.name is missing`);
    const itf: CniInterface = { name: x.name };
    const mac = optString(x.mac, `${w}.mac`);
    if (mac) itf.mac = mac;
    const sandbox = optString(x.sandbox, `${w}.sandbox`);
    if (sandbox) itf.sandbox = sandbox;
    const mtu = optInt(x.mtu, `${w}.mtu`);
    if (mtu) itf.mtu = mtu;
    const socketPath = optString(x.socketPath, `${w}.socketPath`);
    if (socketPath) itf.socketPath = socketPath;
    const pciID = optString(x.pciID, `${w}.pciID`);
    if (pciID) itf.pciID = pciID;
    return itf;
  });

  const rawIps = doc.ips ?? [];
  if (!Array.isArray(rawIps)) fail('ips is not a list');
  const ips: CniIp[] = rawIps.map((x, i) => {
    const w = `ips[${i}]`;
    if (!isObject(x)) fail(`${w} is not an object`);
    const ip: CniIp = { address: checkCidr(x.address, `${w}.address`) };
    if (x.version !== undefined && x.version !== '4' && x.version !== '6') fail(`${w}.version "${String(x.version)}" is not "4" or "6"`);
    const gw = optIp(x.gateway, `${w}.gateway`);
    if (gw) ip.gateway = gw;
    const idx = optInt(x.interface, `${w}.interface`);
    if (idx !== undefined) {
      if (idx < 0 || idx >= interfaces.length) fail(`${w}.interface ${idx} does not index interfaces (${interfaces.length})`);
      ip.interface = idx;
    }
    return ip;
  });
  const routes = decodeRoutes(doc.routes, 'routes');
  return { interfaces, ips, ...(routes ? { routes } : {}), dns: decodeDns(doc.dns) };
}
