// Links, addresses and routes through iproute2 (`ip -j` reads netlink; we never read
// /sys/class/net, which shows whichever namespace mounted /sys). Every ensure/remove converges:
// running it twice is harmless and "not found" on removal is success.
import { WeaveError } from '../core/errors.js';
import { execFile, execChecked } from './exec.js';

export interface AddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  prefixlen: number;
}

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  operstate: string;
  master?: string;
  kind?: string;
  /** ifalias: the container link's record of who holds which address (container-link.ts). */
  alias?: string;
  addrs: AddrInfo[];
}

interface RawLink {
  ifindex?: unknown;
  ifname?: unknown;
  mtu?: unknown;
  address?: unknown;
  flags?: unknown;
  operstate?: unknown;
  master?: unknown;
  ifalias?: unknown;
  linkinfo?: { info_kind?: unknown };
  addr_info?: { family?: unknown; local?: unknown; prefixlen?: unknown }[];
}

/** Decodes `ip -j [-d] link|addr show` output; tolerant of fields iproute2 versions omit. */
/** `ip -j` output as JSON (empty output is an empty list); DECODE_FAILED when it is not JSON. */
function parseIpJson(text: string): unknown {
  try {
    return JSON.parse(text.trim() === '' ? '[]' : text);
  } catch (e) {
    throw new WeaveError('DECODE_FAILED', `cannot decode ip -j output: ${(e as Error).message}`);
  }
}

export function parseLinkJson(text: string): LinkInfo[] {
  const raw = parseIpJson(text);
  if (!Array.isArray(raw)) throw new WeaveError('DECODE_FAILED', 'ip -j output is not a list');
  const out: LinkInfo[] = [];
  for (const r of raw as RawLink[]) {
    if (typeof r !== 'object' || r === null || typeof r.ifname !== 'string') continue;
    out.push({
      ifindex: typeof r.ifindex === 'number' ? r.ifindex : 0,
      ifname: r.ifname,
      mtu: typeof r.mtu === 'number' ? r.mtu : 0,
      address: typeof r.address === 'string' ? r.address : '',
      flags: Array.isArray(r.flags) ? r.flags.filter((f): f is string => typeof f === 'string') : [],
      operstate: typeof r.operstate === 'string' ? r.operstate : '',
      ...(typeof r.master === 'string' ? { master: r.master } : {}),
      ...(typeof r.linkinfo?.info_kind === 'string' ? { kind: r.linkinfo.info_kind } : {}),
      ...(typeof r.ifalias === 'string' && r.ifalias !== '' ? { alias: r.ifalias } : {}),
      addrs: (r.addr_info ?? [])
        .filter((a) => (a.family === 'inet' || a.family === 'inet6') && typeof a.local === 'string' && typeof a.prefixlen === 'number')
        .map((a) => ({ family: a.family as 'inet' | 'inet6', local: a.local as string, prefixlen: a.prefixlen as number })),
    });
  }
  return out;
}

/** A link's kernel counters in one direction (`ip -j -s link show`, stats64). */
export interface LinkCounters {
  packets: number;
  bytes: number;
  dropped: number;
}

/** Decodes the first link's stats64 of `ip -j -s link show` output; undefined when it has none. */
export function parseLinkStats(text: string): { rx: LinkCounters; tx: LinkCounters } | undefined {
  const raw = parseIpJson(text);
  const stats = Array.isArray(raw) ? (raw[0] as { stats64?: Record<string, unknown> } | undefined)?.stats64 : undefined;
  if (typeof stats !== 'object' || stats === null) return undefined;
  const dir = (d: unknown): LinkCounters => {
    const o = (typeof d === 'object' && d !== null ? d : {}) as Record<string, unknown>;
    const n = (k: string) => (typeof o[k] === 'number' ? o[k] : 0);
    return { packets: n('packets'), bytes: n('bytes'), dropped: n('dropped') };
  };
  return { rx: dir(stats.rx), tx: dir(stats.tx) };
}

function isNoSuchDevice(stderr: string): boolean {
  return /does not exist|Cannot find device|No such device/i.test(stderr);
}

/** `ip` in the current namespace, or in another through `nsenter --net=<path>`. */
export class IpRoute {
  private readonly netnsPath: string | undefined;

  constructor(opts: { netnsPath?: string } = {}) {
    this.netnsPath = opts.netnsPath;
  }

  private cmd(args: string[]): [string, string[]] {
    return this.netnsPath ? ['nsenter', [`--net=${this.netnsPath}`, '--', 'ip', ...args]] : ['ip', args];
  }

  async run(args: string[]): Promise<string> {
    const [c, a] = this.cmd(args);
    return execChecked(c, a);
  }

  /** Runs `ip -batch -`; stops at the first failing line (reported with its line number). */
  async batch(lines: string[], opts: { json?: boolean } = {}): Promise<string> {
    if (lines.length === 0) return '';
    const [c, a] = this.cmd([...(opts.json ? ['-j'] : []), '-batch', '-']);
    const r = await execFile(c, a, { input: lines.join('\n') + '\n' });
    if (r.code !== 0) {
      const m = /Command failed -:(\d+)/.exec(r.stderr);
      const line = m ? lines[Number(m[1]) - 1] : undefined;
      throw new WeaveError('KERNEL_FAILED', `ip ${line ?? '-batch'}: ${r.stderr.replace(/Command failed -:\d+\s*/, '').trim()}`);
    }
    return r.stdout;
  }

  /** The link with its addresses, or undefined if it does not exist. */
  async getLink(name: string): Promise<LinkInfo | undefined> {
    const out = await this.showDev(['-j', '-d', 'addr', 'show'], name);
    return out === undefined ? undefined : parseLinkJson(out)[0];
  }

  /** The link's kernel counters, or undefined if it does not exist. */
  async linkStats(name: string): Promise<{ rx: LinkCounters; tx: LinkCounters } | undefined> {
    const out = await this.showDev(['-j', '-s', 'link', 'show'], name);
    return out === undefined ? undefined : parseLinkStats(out);
  }

  /** `ip <show> dev <name>`'s output, or undefined if there is no such link. */
  private async showDev(show: string[], name: string): Promise<string | undefined> {
    const [c, a] = this.cmd([...show, 'dev', name]);
    const r = await execFile(c, a);
    if (r.code === 0) return r.stdout;
    if (isNoSuchDevice(r.stderr)) return undefined;
    throw new WeaveError('KERNEL_FAILED', `ip ${show.filter((x) => x !== '-j').join(' ')} dev ${name}: ${r.stderr.trim()}`);
  }

  async listLinks(): Promise<LinkInfo[]> {
    return parseLinkJson(await this.run(['-j', '-d', 'addr', 'show']));
  }

  /** Deletes a link; a missing link is success. */
  async deleteLink(name: string): Promise<boolean> {
    const [c, a] = this.cmd(['link', 'del', 'dev', name]);
    const r = await execFile(c, a);
    if (r.code === 0) return true;
    if (isNoSuchDevice(r.stderr)) return false;
    throw new WeaveError('KERNEL_FAILED', `ip link del ${name}: ${r.stderr.trim()}`);
  }

  async addAddress(dev: string, cidr: string): Promise<void> {
    const [c, a] = this.cmd(['addr', 'add', cidr, 'dev', dev]);
    const r = await execFile(c, a);
    if (r.code !== 0 && !/File exists|already assigned/.test(r.stderr)) {
      throw new WeaveError('KERNEL_FAILED', `ip addr add ${cidr} dev ${dev}: ${r.stderr.trim()}`);
    }
  }

  async deleteAddress(dev: string, cidr: string): Promise<void> {
    const [c, a] = this.cmd(['addr', 'del', cidr, 'dev', dev]);
    const r = await execFile(c, a);
    if (r.code !== 0 && !/Cannot assign requested address|does not exist|Cannot find device/.test(r.stderr)) {
      throw new WeaveError('KERNEL_FAILED', `ip addr del ${cidr} dev ${dev}: ${r.stderr.trim()}`);
    }
  }
}
