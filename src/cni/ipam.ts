// Where a plugin run gets addresses: weave's own IPAM through the router, or a delegated
// IPAM plugin (ipam.type names one; the interface plugin only). Both answer the same five
// verbs; the router one keys everything by the attachment (attachmentIdent: CNI_CONTAINERID
// for eth0, as the original's POST/DELETE /ip/<id>), and tags allocations `owner=cni:<network>`
// for GC.
import { formatCidr, formatIPv4, tryParseCidr, tryParseIPv4, type Cidr, type IPv4 } from '../core/ip.js';
import { CniError, CNI_ERR } from './cni-error.js';
import type { Attachment } from './config.js';
import type { PluginContext } from './context.js';
import { DelegatePlugin } from './delegate.js';
import type { CniResult } from './result.js';
import { cniOwner } from './router.js';
import { requireCniPath } from './skel.js';
import { attachmentIdent } from '../platform/container-link.js';

export { attachmentIdent, parseAttachmentIdent } from '../platform/container-link.js';

export interface GcOutcome {
  /** Idents whose addresses were released. */
  released: string[];
  errors: unknown[];
}

export interface IpamBackend {
  readonly delegated: boolean;
  /** An IPAM-shaped result: no interfaces, ips without interface index. */
  add(): Promise<CniResult>;
  del(): Promise<void>;
  /** Verifies that the addresses (CIDRs) are still held for this container. */
  check(addresses: string[]): Promise<void>;
  status(): Promise<void>;
  gc(valid: Attachment[]): Promise<GcOutcome>;
}

/**
 * The address a runtime asked for, by the CNI conventions: `runtimeConfig.ips` (capability
 * `ips`), then `args.cni.ips`, then `CNI_ARGS` `IP=` (args win over CNI_ARGS); the first IPv4
 * address, with its prefix length when given. Undefined when none was asked for.
 */
export function requestedAddress(
  runtimeConfig: Record<string, unknown>,
  args: Record<string, unknown>,
  cniArgs: Record<string, string>,
): { ip: IPv4; prefix?: number } | undefined {
  const lists: unknown[] = [runtimeConfig.ips, (args.cni as Record<string, unknown> | undefined)?.ips, cniArgs.IP?.split(',')];
  for (const list of lists) {
    if (!Array.isArray(list)) continue;
    for (const item of list) {
      if (typeof item !== 'string') continue;
      const c = tryParseCidr(item.trim());
      if (c) return { ip: c.ip, prefix: c.prefix };
      const ip = tryParseIPv4(item.trim());
      if (ip !== undefined) return { ip };
    }
  }
  return undefined;
}

export class WeaveIpam implements IpamBackend {
  readonly delegated = false;
  private readonly ctx: PluginContext;

  constructor(ctx: PluginContext) {
    this.ctx = ctx;
  }

  async add(): Promise<CniResult> {
    const { conf, env } = this.ctx;
    const requested = requestedAddress(conf.runtimeConfig, conf.args, env.args);
    let cidr: Cidr;
    if (requested) {
      // A runtime asked for this address (podman --ip, the `ips` capability): claim it, with
      // the prefix length of the configured subnet or the router's default subnet.
      const prefix = requested.prefix ?? (conf.ipam.subnet ?? (await this.ctx.router().defaultSubnet())).prefix;
      cidr = { ip: requested.ip, prefix };
      await this.ctx.router().claim(attachmentIdent(env.containerId, env.ifName), cidr, { owner: cniOwner(conf.name) });
    } else {
      cidr = await this.ctx.router().allocate(attachmentIdent(env.containerId, env.ifName), {
        ...(conf.ipam.subnet ? { subnet: conf.ipam.subnet } : {}),
        owner: cniOwner(conf.name),
      });
    }
    const gateway = conf.ipam.gateway;
    return {
      interfaces: [],
      ips: [{ address: formatCidr(cidr), ...(gateway !== undefined ? { gateway: formatIPv4(gateway) } : {}) }],
      ...(conf.ipam.routes
        ? { routes: conf.ipam.routes.map((r) => ({ dst: formatCidr(r.dst), ...(r.gw !== undefined ? { gw: formatIPv4(r.gw) } : {}) })) }
        : {}),
      dns: {},
    };
  }

  async del(): Promise<void> {
    const id = attachmentIdent(this.ctx.env.containerId, this.ctx.env.ifName);
    if (!(await this.ctx.router().release(id))) this.ctx.log(`DEL ${id}: the router held no address for it`);
  }

  async check(addresses: string[]): Promise<void> {
    const id = attachmentIdent(this.ctx.env.containerId, this.ctx.env.ifName);
    const held = await this.ctx.router().lookup(id, this.ctx.conf.ipam.subnet);
    if (held.length === 0) throw new CniError(CNI_ERR.CHECK_FAILED, `the weave router holds no address for container ${id}`, { code: 'NOT_FOUND' });
    for (const a of addresses) {
      if (!held.includes(a)) {
        throw new CniError(CNI_ERR.CHECK_FAILED, `the weave router does not hold ${a} for container ${id} (it holds ${held.join(', ')})`, { code: 'NOT_FOUND' });
      }
    }
  }

  async status(): Promise<void> {
    const router = this.ctx.router();
    const p = await router.probe(Math.min(Math.max(this.ctx.conf.routerWaitMs, 500), 5000));
    if (!p.up) throw new CniError(CNI_ERR.NOT_AVAILABLE, `weave router at ${router.address} is not available`, { code: 'UNAVAILABLE', details: p.why });
  }

  async gc(valid: Attachment[]): Promise<GcOutcome> {
    const keep = new Set(valid.map((a) => attachmentIdent(a.containerID, a.ifname)));
    const owner = cniOwner(this.ctx.conf.name);
    const out: GcOutcome = { released: [], errors: [] };
    const owned = await this.ctx.router().listOwned();
    for (const entry of owned) {
      if (entry.owner !== owner || keep.has(entry.containerid)) continue;
      try {
        await this.ctx.router().release(entry.containerid);
        this.ctx.log(`GC: released ${entry.addrs.join(', ') || 'the addresses'} of ${entry.containerid}`);
        out.released.push(entry.containerid);
      } catch (e) {
        out.errors.push(e);
      }
    }
    return out;
  }
}

export class DelegatedIpam implements IpamBackend {
  readonly delegated = true;
  private readonly plugin: DelegatePlugin;

  constructor(ctx: PluginContext) {
    this.plugin = new DelegatePlugin({
      type: ctx.conf.ipam.type,
      dirs: requireCniPath(ctx.env, `to find IPAM plugin "${ctx.conf.ipam.type}"`),
      env: ctx.rawEnv,
      stdin: ctx.stdin,
      exec: ctx.deps.exec,
      find: ctx.deps.findExecutable,
      stderr: ctx.stderr,
    });
  }

  add(): Promise<CniResult> {
    return this.plugin.add();
  }

  async del(): Promise<void> {
    await this.plugin.run('DEL');
  }

  async check(): Promise<void> {
    // The delegate reads prevResult from the same stdin.
    await this.plugin.run('CHECK');
  }

  async status(): Promise<void> {
    await this.plugin.run('STATUS');
  }

  async gc(): Promise<GcOutcome> {
    await this.plugin.run('GC');
    return { released: [], errors: [] };
  }
}

/** The backend of this run: the IPAM plugin always uses the router; weave-net may delegate. */
export function ipamFor(ctx: PluginContext): IpamBackend {
  return ctx.kind === 'net' && ctx.conf.ipam.delegated ? new DelegatedIpam(ctx) : new WeaveIpam(ctx);
}
