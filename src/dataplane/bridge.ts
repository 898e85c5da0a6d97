// The `weave` bridge: created with the peer name as its MAC and the configured MTU, converged
// when it exists, recreated when someone deletes it (checked every `checkIntervalMs`). The
// bridge's own addresses (weave expose) are re-applied by the owner through `onRecreated`.
import type { Clock, TimerHandle } from '../core/clock.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { LinkOps, LinkProbe, LinkState, SysctlOps } from './ports.js';

export interface BridgeOptions {
  name: string;
  mac: string;
  mtu: number;
  checkIntervalMs: number;
}

export class Bridge {
  private readonly links: LinkOps;
  /** How ensure() reads the bridge (no process per check); `links` when absent or failed. */
  private probe: LinkProbe | undefined;
  private readonly sysctl: SysctlOps;
  private readonly clock: Clock;
  private readonly log: Logger;
  readonly opts: BridgeOptions;
  private timer: TimerHandle | undefined;
  private checking = false;
  /** Called after the bridge had to be created again while we were running. */
  onRecreated: () => Promise<void> = async () => {};

  constructor(deps: { links: LinkOps; probe?: LinkProbe; sysctl: SysctlOps; clock: Clock; logger: Logger }, opts: BridgeOptions) {
    this.links = deps.links;
    this.probe = deps.probe;
    this.sysctl = deps.sysctl;
    this.clock = deps.clock;
    this.log = deps.logger;
    this.opts = opts;
  }

  /** Makes the bridge exist as configured; returns true if it had to be created. */
  async ensure(): Promise<boolean> {
    const { name, mac, mtu } = this.opts;
    const cur = await this.read(name);
    if (cur && cur.kind !== undefined && cur.kind !== 'bridge') {
      throw new Error(`existing device "${name}" is a ${cur.kind}, not a bridge; run 'weave reset' to remove it`);
    }
    const lines: string[] = [];
    if (!cur) lines.push(`link add name ${name} type bridge`);
    if (!cur || cur.address.toLowerCase() !== mac) lines.push(`link set dev ${name} address ${mac}`);
    if (!cur || cur.mtu !== mtu) lines.push(`link set dev ${name} mtu ${mtu}`);
    if (!cur || !cur.flags.includes('UP')) lines.push(`link set dev ${name} up`);
    if (lines.length) await this.links.batch(lines);
    if (!cur) {
      // No router advertisements on the overlay (original: accept_ra=0 on the bridge).
      this.sysctl.write(`net/ipv6/conf/${name}/accept_ra`, '0');
      this.log.info({ bridge: name, mac, mtu }, 'created bridge');
    } else if (lines.length) {
      this.log.info({ bridge: name, changes: lines }, 'converged bridge');
    }
    return !cur;
  }

  private async read(name: string): Promise<Pick<LinkState, 'mtu' | 'address' | 'flags' | 'kind'> | undefined> {
    if (this.probe) {
      try {
        return this.probe.get(name);
      } catch (e) {
        this.log.warn({ bridge: name, err: errorMessage(e) }, `cannot read the bridge through rtnetlink (${errorMessage(e)}); using ip from now on`);
        this.probe = undefined;
      }
    }
    return this.links.getLink(name);
  }

  async state(): Promise<LinkState | undefined> {
    return this.links.getLink(this.opts.name);
  }

  /** Starts the periodic check that recreates a deleted bridge. */
  start(): void {
    if (this.timer) return;
    this.timer = this.clock.setInterval(() => void this.check(), this.opts.checkIntervalMs);
  }

  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      if (await this.ensure()) {
        this.log.warn({ bridge: this.opts.name }, 'bridge was missing and has been recreated');
        await this.onRecreated();
      }
    } catch (e) {
      this.log.error({ bridge: this.opts.name, err: errorMessage(e) }, 'bridge check failed');
    } finally {
      this.checking = false;
    }
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Removes the bridge (weave reset). */
  async destroy(): Promise<void> {
    await this.links.deleteLink(this.opts.name);
  }
}
