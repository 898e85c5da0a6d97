// Bridge port settings and forwarding entries through iproute2's `bridge` tool (netlink).
// Used for the fast path: static entries put a MAC on the VXLAN port and name the remote VTEP.
import { WeaveError } from '../core/errors.js';
import { execFile } from './exec.js';

export interface FdbEntry {
  mac: string;
  dev?: string;
  dst?: string;
  master?: string;
  state?: string;
  flags: string[];
  /** Seconds since the kernel last forwarded a frame with it (`bridge -s`). */
  used?: number;
}

export class BridgeTool {
  constructor(private readonly netnsPath?: string) {}

  private cmd(args: string[]): [string, string[]] {
    return this.netnsPath ? ['nsenter', [`--net=${this.netnsPath}`, 'bridge', ...args]] : ['bridge', args];
  }

  /** Runs `bridge -batch -`; every line must succeed. */
  async batch(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    const [c, a] = this.cmd(['-batch', '-']);
    const r = await execFile(c, a, { input: lines.join('\n') + '\n' });
    if (r.code !== 0) throw new WeaveError('KERNEL_FAILED', `bridge -batch: ${r.stderr.trim() || `exit ${r.code}`}`);
  }

  /**
   * Frames to `mac` leave through `dev` (a VXLAN device) towards `ip:port`. Sticky: otherwise
   * a frame from `mac` arriving on another port (sleeve injects through the TAP) moves it.
   */
  routeLines(dev: string, mac: string, ip: string, port: number): string[] {
    return [`fdb replace ${mac} dev ${dev} master static sticky`, `fdb replace ${mac} dev ${dev} dst ${ip} port ${port} self permanent`];
  }

  /** Deleting what is not there is success (the goal is "not routed"). */
  async unroute(dev: string, mac: string): Promise<void> {
    for (const args of [['fdb', 'del', mac, 'dev', dev, 'master'], ['fdb', 'del', mac, 'dev', dev, 'self']]) {
      const [c, a] = this.cmd(args);
      const r = await execFile(c, a);
      if (r.code !== 0 && !/No such file|not found|Cannot find/i.test(r.stderr)) {
        throw new WeaveError('KERNEL_FAILED', `bridge ${args.join(' ')}: ${r.stderr.trim()}`);
      }
    }
  }

  async show(dev: string): Promise<FdbEntry[]> {
    const [c, a] = this.cmd(['-j', '-s', 'fdb', 'show', 'dev', dev]);
    const r = await execFile(c, a);
    if (r.code !== 0) throw new WeaveError('KERNEL_FAILED', `bridge fdb show dev ${dev}: ${r.stderr.trim()}`);
    let raw: unknown;
    try {
      raw = JSON.parse(r.stdout.trim() || '[]');
    } catch (e) {
      throw new WeaveError('DECODE_FAILED', `cannot decode bridge -j output: ${(e as Error).message}`);
    }
    if (!Array.isArray(raw)) return [];
    const out: FdbEntry[] = [];
    for (const e of raw as Record<string, unknown>[]) {
      if (typeof e?.mac !== 'string') continue;
      out.push({
        mac: e.mac,
        ...(typeof e.ifname === 'string' ? { dev: e.ifname } : {}),
        ...(typeof e.dst === 'string' ? { dst: e.dst } : {}),
        ...(typeof e.master === 'string' ? { master: e.master } : {}),
        ...(typeof e.state === 'string' ? { state: e.state } : {}),
        flags: Array.isArray(e.flags) ? e.flags.filter((f): f is string => typeof f === 'string') : [],
        ...(typeof e.used === 'number' ? { used: e.used } : {}),
      });
    }
    return out;
  }
}
