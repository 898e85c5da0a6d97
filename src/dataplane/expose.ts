// `weave expose`: the host's own addresses on the bridge, so the host reaches containers and
// containers reach the world through it, with Weave Net's iptables rules (net/expose.go,
// net/bridge.go ConfigureIPTables). Exposed CIDRs are persisted and re-applied after a restart
// or a recreated bridge. Every step converges, so re-applying is harmless.
import { WeaveError, errorMessage } from '../core/errors.js';
import { formatCidr, networkOf, parseCidr, subnetOf, type Cidr } from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import type { FirewallOps, LinkOps } from './ports.js';

export const NAT_CHAIN = 'WEAVE';
export const EXPOSE_CHAIN = 'WEAVE-EXPOSE';
const CONTROL_PORT_COMMENT = 'Block non-local access to Weave Net control port';

/**
 * The original's INPUT rule for the HTTP API on 127.0.0.1: with route_localnet=1 (kube-proxy
 * sets it) other hosts and pods can reach 127.0.0.1, and the API has no authentication.
 * The original also let RELATED,ESTABLISHED packets through (`-m conntrack`); no such packet can
 * be legitimate here (a non-local source talking to 127.0.0.1 is what the rule refuses), and the
 * match alone turns connection tracking on in the host, which every forwarded frame then pays.
 */
export function controlPortRule(port: number): string[] {
  return [
    '-p', 'tcp', '--dst', '127.0.0.1', '--dport', String(port),
    '-m', 'addrtype', '!', '--src-type', 'LOCAL',
    '-m', 'comment', '--comment', CONTROL_PORT_COMMENT, '-j', 'DROP',
  ];
}

/** The original's form of controlPortRule (Weave Net's and our earlier routers'), for reset. */
function originalControlPortRule(port: number): string[] {
  return [
    '-p', 'tcp', '--dst', '127.0.0.1', '--dport', String(port),
    '-m', 'addrtype', '!', '--src-type', 'LOCAL',
    '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED',
    '-m', 'comment', '--comment', CONTROL_PORT_COMMENT, '-j', 'DROP',
  ];
}

/** The ports of control-port rules in `iptables -S INPUT` lines (reset removes whichever). */
export function controlPortsIn(rules: readonly string[]): number[] {
  const ports: number[] = [];
  for (const r of rules) {
    const m = r.includes(CONTROL_PORT_COMMENT) ? /--dport (\d+)/.exec(r) : null;
    if (m) ports.push(Number(m[1]));
  }
  return ports;
}

export interface ExposeStore {
  scan(prefix: string): { key: string; value: string }[];
  set(key: string, value: string): void;
  delete(key: string): void;
}

const KEY = 'expose/';

function subnetText(c: Cidr): string {
  return formatCidr(subnetOf(c));
}

export class Exposer {
  private readonly links: LinkOps;
  private readonly fw: FirewallOps;
  private readonly store: ExposeStore;
  private readonly log: Logger;
  private readonly bridge: string;
  /** The HTTP API's port when it listens on 127.0.0.1 (controlPortRule), else undefined. */
  private readonly controlPort: number | undefined;
  /** expose/hide run one at a time: iptables check-then-append is not atomic. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(deps: { links: LinkOps; firewall: FirewallOps; store: ExposeStore; logger: Logger }, opts: { bridge: string; controlPort?: number }) {
    this.links = deps.links;
    this.fw = deps.firewall;
    this.store = deps.store;
    this.log = deps.logger;
    this.bridge = opts.bridge;
    this.controlPort = opts.controlPort;
  }

  /**
   * The forwarding and NAT skeleton every router installs at start (without NPC): the original's
   * but for its conntrack rule, which trackedRule() adds while something is exposed.
   */
  baseRules(): { table: 'filter' | 'nat'; chain: string; rule: string[] }[] {
    const b = this.bridge;
    return [
      { table: 'filter', chain: 'FORWARD', rule: ['-i', b, '-o', b, '-j', 'ACCEPT'] },
      { table: 'filter', chain: 'FORWARD', rule: ['-o', b, '-j', EXPOSE_CHAIN] },
      { table: 'filter', chain: 'FORWARD', rule: ['-i', b, '!', '-o', b, '-j', 'ACCEPT'] },
      { table: 'nat', chain: 'POSTROUTING', rule: ['-j', NAT_CHAIN] },
    ];
  }

  /**
   * Replies routed into the bridge. Only routed traffic needs it, and the host routes to and
   * from containers only through an exposed address, so it is there while one is. A conntrack
   * match turns connection tracking on in the whole host, and with br_netfilter every bridged
   * frame of the fast path then pays for it (5–8 % of its throughput, docs/performance.md); an
   * empty NAT chain does not.
   */
  private trackedRule(): string[] {
    return ['-o', this.bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'];
  }

  /** trackedRule() right after our `-i bridge ! -o bridge` ACCEPT, where the original has it. */
  private async ensureTrackedRule(): Promise<void> {
    const b = this.bridge;
    const lines = await this.fw.listRules('filter', 'FORWARD');
    const after = lines.indexOf(`-A FORWARD -i ${b} ! -o ${b} -j ACCEPT`);
    await this.fw.ensureRule('filter', 'FORWARD', this.trackedRule(), after >= 0 ? after + 2 : undefined);
  }

  async installBaseRules(): Promise<void> {
    await this.fw.ensureChain('filter', EXPOSE_CHAIN);
    await this.fw.ensureChain('nat', NAT_CHAIN);
    for (const r of this.baseRules()) await this.fw.ensureRule(r.table, r.chain, r.rule);
    // First in INPUT, so that no earlier ACCEPT lets the packets through.
    if (this.controlPort !== undefined) await this.fw.ensureRule('filter', 'INPUT', controlPortRule(this.controlPort), 1);
    // An earlier router's (or the original's) forms, which turn connection tracking on.
    if (this.controlPort !== undefined) await this.fw.removeRule('filter', 'INPUT', originalControlPortRule(this.controlPort));
    if (this.exposed().length === 0) await this.fw.removeRule('filter', 'FORWARD', this.trackedRule());
  }

  /** Removes the base rules, and the control-port rules of `controlPorts` (and our own port's). */
  async removeBaseRules(controlPorts: readonly number[] = []): Promise<void> {
    for (const p of new Set([...controlPorts, ...(this.controlPort !== undefined ? [this.controlPort] : [])])) {
      await this.fw.removeRule('filter', 'INPUT', controlPortRule(p));
      await this.fw.removeRule('filter', 'INPUT', originalControlPortRule(p));
    }
    for (const r of this.baseRules()) await this.fw.removeRule(r.table, r.chain, r.rule);
    await this.fw.removeRule('filter', 'FORWARD', this.trackedRule());
    await this.fw.removeChain('filter', EXPOSE_CHAIN);
    await this.fw.removeChain('nat', NAT_CHAIN);
  }

  private natRules(c: Cidr): string[][] {
    const s = subnetText(c);
    return [
      ['-s', s, '-d', '224.0.0.0/4', '-j', 'RETURN'],
      ['!', '-s', s, '-d', s, '-j', 'MASQUERADE'],
      ['-s', s, '!', '-d', s, '-j', 'MASQUERADE'],
    ];
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Puts `cidr` on the bridge and adds its rules; idempotent. */
  expose(cidr: Cidr, opts: { skipNAT?: boolean } = {}): Promise<void> {
    return this.serial(() => this.doExpose(cidr, opts));
  }

  private async doExpose(cidr: Cidr, opts: { skipNAT?: boolean }): Promise<void> {
    if (cidr.ip === networkOf(cidr) && cidr.prefix < 31) {
      throw new WeaveError('INVALID_ARGUMENT', `cannot expose the network address ${formatCidr(cidr)}`);
    }
    const text = formatCidr(cidr);
    this.store.set(KEY + text, JSON.stringify({ skipNAT: !!opts.skipNAT }));
    await this.apply(cidr, !!opts.skipNAT);
    this.log.info({ cidr: text, skipNAT: !!opts.skipNAT }, 'exposed');
  }

  private async apply(cidr: Cidr, skipNAT: boolean): Promise<void> {
    await this.links.addAddress(this.bridge, formatCidr(cidr));
    await this.ensureTrackedRule();
    await this.fw.ensureRule('filter', EXPOSE_CHAIN, ['-d', subnetText(cidr), '-j', 'ACCEPT']);
    if (!skipNAT) for (const r of this.natRules(cidr)) await this.fw.ensureRule('nat', NAT_CHAIN, r);
  }

  /** Removes `cidr` from the bridge and its rules; idempotent. */
  hide(cidr: Cidr): Promise<void> {
    return this.serial(() => this.doHide(cidr));
  }

  private async doHide(cidr: Cidr): Promise<void> {
    const text = formatCidr(cidr);
    const all = this.exposed();
    const mine = all.find((e) => formatCidr(e.cidr) === text);
    // The store first, as doExpose: a failed write (disk full) leaves the address in place,
    // where a restart would otherwise put it back after the user saw it go.
    if (mine) this.store.delete(KEY + text);
    try {
      await this.links.deleteAddress(this.bridge, text);
      // The subnet's rules stay while another exposed address of it needs them: the filter rule
      // for any, the NAT rules only for one exposed with masquerading (not --without-masquerade).
      const others = all.filter((e) => formatCidr(e.cidr) !== text && subnetText(e.cidr) === subnetText(cidr));
      if (others.length === 0) await this.fw.removeRule('filter', EXPOSE_CHAIN, ['-d', subnetText(cidr), '-j', 'ACCEPT']);
      if (!others.some((e) => !e.skipNAT)) for (const r of this.natRules(cidr)) await this.fw.removeRule('nat', NAT_CHAIN, r);
      if (all.length === 1 && mine) await this.fw.removeRule('filter', 'FORWARD', this.trackedRule());
    } catch (e) {
      // The request fails, so the address stays exposed: its record back, and what was removed
      // of it re-applied (best effort; a restart re-applies what the store holds).
      if (mine) await this.restore(mine.cidr, mine.skipNAT);
      throw e;
    }
    this.log.info({ cidr: text }, 'hidden');
  }

  private async restore(cidr: Cidr, skipNAT: boolean): Promise<void> {
    const text = formatCidr(cidr);
    try {
      this.store.set(KEY + text, JSON.stringify({ skipNAT }));
      await this.apply(cidr, skipNAT);
    } catch (e) {
      this.log.error({ cidr: text, err: errorMessage(e) }, `cannot put back exposed ${text} after a failed hide: ${errorMessage(e)}`);
    }
  }

  exposed(): { cidr: Cidr; skipNAT: boolean }[] {
    const out: { cidr: Cidr; skipNAT: boolean }[] = [];
    for (const { key, value } of this.store.scan(KEY)) {
      try {
        const v = JSON.parse(value) as { skipNAT?: unknown };
        out.push({ cidr: parseCidr(key.slice(KEY.length)), skipNAT: v.skipNAT === true });
      } catch {
        this.log.warn({ key }, 'ignoring unreadable persisted expose entry');
      }
    }
    return out;
  }

  /** Re-applies every persisted expose (after a restart or a recreated bridge). */
  reapply(): Promise<void> {
    return this.serial(async () => {
      for (const e of this.exposed()) await this.apply(e.cidr, e.skipNAT);
    });
  }
}
