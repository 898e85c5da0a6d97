// The composition root of the router daemon: builds every service from the configuration and
// the platform adapters, starts them in order and stops them in reverse. Nothing else in the
// code base constructs platform objects for the daemon.
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { cidrSize, formatCidr, formatIPv4, networkOf, type Cidr } from '../core/ip.js';
import { weaveVersion } from '../core/version.js';
import { IpRoute } from '../platform/iproute.js';
import { Iptables } from '../platform/iptables.js';
import { Sysctl } from '../platform/sysctl.js';
import { SqliteStore } from '../platform/sqlite-store.js';
import { Bridge } from '../dataplane/bridge.js';
import { Exposer } from '../dataplane/expose.js';
import { Allocator } from '../ipam/allocator.js';
import { ApiServer } from '../api/server/http-server.js';
import { parseEndpoint } from '../api/client.js';
import { STORE_FILE, WEAVER_PID_FILE, type WeaveReport } from '../api/types.js';
import { DEFAULTS, type DaemonConfig } from './config.js';
import { resolvePeerName, systemIdentity } from './peer-identity.js';
import { RouterMetrics } from './metrics.js';
import { RouterCniService } from './cni-service.js';

export class Weaver {
  private readonly cfg: DaemonConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private store: SqliteStore | undefined;
  private bridge: Bridge | undefined;
  private exposer: Exposer | undefined;
  private allocator: Allocator | undefined;
  private servers: ApiServer[] = [];
  private metrics: RouterMetrics | undefined;
  private cni: RouterCniService | undefined;
  private ready = false;
  private stopped = false;
  name = '';
  nickname = '';
  private readonly uid = randomBytes(8).readBigUInt64BE() || 1n;
  private readonly shortId = randomBytes(2).readUInt16BE() & 0xfff;

  constructor(deps: { logger: Logger; clock: Clock }, cfg: DaemonConfig) {
    this.cfg = cfg;
    this.log = deps.logger;
    this.clock = deps.clock;
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    mkdirSync(cfg.dataDir, { recursive: true });
    mkdirSync(cfg.runDir, { recursive: true });
    this.log.info(
      {
        version: weaveVersion(),
        config: {
          ...cfg,
          password: cfg.password ? '<redacted>' : undefined,
          ipallocRange: cfg.ipallocRange && formatCidr(cfg.ipallocRange),
          ipallocDefaultSubnet: cfg.ipallocDefaultSubnet && formatCidr(cfg.ipallocDefaultSubnet),
          trustedSubnets: cfg.trustedSubnets.map(formatCidr),
        },
      },
      'weave starting',
    );
    const store = new SqliteStore(join(cfg.dataDir, STORE_FILE));
    this.store = store;

    const links = new IpRoute();
    const existing = await links.getLink(cfg.bridge);
    const id = resolvePeerName({
      ...(cfg.name ? { flag: cfg.name } : {}),
      ...(existing?.address ? { bridgeMac: existing.address } : {}),
      store,
      systemId: systemIdentity(cfg.dataDir, DEFAULTS.dataDir),
    });
    this.name = id.name;
    this.nickname = cfg.nickname ?? hostname();
    this.log.info({ name: this.name, nickname: this.nickname, source: id.source }, `Our name is ${this.name}(${this.nickname})`);

    const sysctl = new Sysctl();
    const firewall = new Iptables();
    this.bridge = new Bridge(
      { links, sysctl, clock: this.clock, logger: this.log.child({ component: 'bridge' }) },
      { name: cfg.bridge, mac: this.name, mtu: cfg.mtu, checkIntervalMs: cfg.bridgeCheckIntervalMs },
    );
    await this.bridge.ensure();
    this.exposer = new Exposer({ links, firewall, store, logger: this.log.child({ component: 'expose' }) }, { bridge: cfg.bridge });
    await this.exposer.installBaseRules();

    if (cfg.ipallocRange) {
      this.allocator = new Allocator(
        { store, logger: this.log.child({ component: 'allocator' }) },
        { range: cfg.ipallocRange, defaultSubnet: cfg.ipallocDefaultSubnet ?? cfg.ipallocRange },
      );
      this.allocator.load();
    }
    await this.exposer.reapply();
    const exposer = this.exposer;
    this.bridge.onRecreated = () => exposer.reapply();
    this.bridge.start();

    const alloc = this.allocator;
    this.metrics = new RouterMetrics({
      ipamEnabled: !!alloc,
      localUsedIps: () => alloc?.activeCount() ?? 0,
      maxIps: () => (cfg.ipallocRange ? cidrSize(cfg.ipallocRange.prefix) : 0),
      pendingAllocates: () => alloc?.pendingAllocates().length ?? 0,
      pendingClaims: () => 0,
      connections: () => [],
      dnsEntries: () => 0,
    });

    this.cni = new RouterCniService({ runDir: cfg.runDir, httpAddr: cfg.httpAddr });
    await this.listen(cfg.httpAddr, false);
    if (cfg.statusAddr) await this.listen(cfg.statusAddr, true);
    if (cfg.metricsAddr) await this.listen(cfg.metricsAddr, true);
    this.cni.publish();
    writeFileSync(join(cfg.runDir, WEAVER_PID_FILE), `${process.pid}\n`);
    this.ready = true;
    this.log.info({ httpAddr: cfg.httpAddr }, `Listening for HTTP control messages on ${cfg.httpAddr}`);
  }

  private async listen(addr: string, readOnly: boolean): Promise<void> {
    const exposer = this.exposer!;
    const server = new ApiServer({
      logger: this.log.child({ component: 'http' }),
      isReady: () => this.ready,
      readOnly,
      services: {
        report: () => this.report(),
        metrics: () => this.metrics!.render(),
        ...(this.allocator ? { ipam: this.allocator } : {}),
        expose: {
          expose: (c: Cidr, o: { skipNAT?: boolean }) => exposer.expose(c, o),
          hide: (c: Cidr) => exposer.hide(c),
        },
        // One peer owns everything: there is nobody to hand our space to.
        leave: async () => {},
        ...(readOnly || !this.cni ? {} : { cni: this.cni }),
      },
    });
    try {
      await server.listen(parseEndpoint(addr));
    } catch (e) {
      throw new WeaveError('UNAVAILABLE', `cannot listen on ${addr}: ${errorMessage(e)}`, { cause: e });
    }
    this.servers.push(server);
  }

  report(): WeaveReport {
    const cfg = this.cfg;
    const report: WeaveReport = {
      Ready: this.ready,
      Version: weaveVersion(),
      VersionCheck: { Enabled: false, Success: false, NewVersion: '', NextCheckAt: '0001-01-01T00:00:00Z' },
      Router: {
        Protocol: 'weave',
        ProtocolMinVersion: 1,
        ProtocolMaxVersion: 2,
        Encryption: false,
        PeerDiscovery: true,
        Name: this.name,
        NickName: this.nickname,
        Port: cfg.port,
        Peers: [{ Name: this.name, NickName: this.nickname, UID: this.uid, ShortID: this.shortId, Version: 1, Connections: [] }],
        UnicastRoutes: [{ Dest: this.name, Via: '00:00:00:00:00:00' }],
        BroadcastRoutes: [{ Source: this.name, Via: null }],
        Connections: [],
        TerminationCount: 0,
        Targets: null,
        OverlayDiagnostics: {},
        TrustedSubnets: [],
        Interface: cfg.bridge,
        CaptureStats: null,
        MACs: null,
      },
    };
    const a = this.allocator;
    if (a && cfg.ipallocRange) {
      const pending = a.pendingAllocates();
      report.IPAM = {
        Paxos: null,
        Range: formatCidr(a.range),
        RangeNumIPs: cidrSize(a.range.prefix),
        ActiveIPs: a.activeCount(),
        DefaultSubnet: formatCidr(a.defaultSubnet),
        Entries: [{ Token: formatIPv4(networkOf(a.range)), Size: cidrSize(a.range.prefix), Peer: this.name, Nickname: this.nickname, IsKnownPeer: true, Version: 0 }],
        PendingClaims: null,
        PendingAllocates: pending.length ? pending : null,
      };
    }
    return report;
  }

  /** Stops serving and releases everything; idempotent. The bridge stays (weave reset removes it). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.ready = false;
    this.bridge?.stop();
    this.allocator?.cancelPending();
    await Promise.all(this.servers.map((s) => s.close()));
    this.servers = [];
    this.store?.close();
    this.cni?.unpublish();
    rmSync(join(this.cfg.runDir, WEAVER_PID_FILE), { force: true });
    this.log.info({}, 'weave stopped');
  }
}
