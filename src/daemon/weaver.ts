// The composition root of the router daemon: builds every service from the configuration and
// the platform adapters, starts them in order and stops them in reverse. Nothing else in the
// code base constructs platform objects for the daemon.
import { mkdirSync } from 'node:fs';
import { claimPidFile, releasePidFile } from '../platform/pid-file.js';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { formatCidr, parseCidr, type Cidr } from '../core/ip.js';
import { weaveVersion } from '../core/version.js';
import { goJsonTime, goNilSlice } from '../core/go-json.js';
import { IpRoute } from '../platform/iproute.js';
import { RtnlLinkReader } from '../platform/rtnetlink.js';
import { CAPTURE_INTERFACE, Datapath } from './datapath.js';
import { HOST_VETH_PREFIX, parseAttachAlias } from '../platform/container-link.js';
import { Iptables } from '../platform/iptables.js';
import { Sysctl } from '../platform/sysctl.js';
import { SqliteStore } from '../platform/sqlite-store.js';
import { Bridge } from '../dataplane/bridge.js';
import { Exposer } from '../dataplane/expose.js';
import { DistributedAllocator, type ReclaimEntry } from '../ipam/distributed-allocator.js';
import { IPAM_CHANNEL } from '../ipam/codec.js';
import { determineQuorum } from '../ipam/paxos.js';
import { ApiServer } from '../api/server/http-server.js';
import { parseEndpoint } from '../api/client.js';
import { EXPOSE_IDENT, STORE_FILE, WEAVER_PID_FILE, type WeaveReport } from '../api/types.js';
import type { IpamService } from '../api/server/http-server.js';
import { DEFAULTS, type DaemonConfig } from './config.js';
import { resolvePeerName, systemIdentity } from './peer-identity.js';
import { RouterMetrics } from './metrics.js';
import { RouterCniService } from './cni-service.js';
import { MeshRouter } from '../mesh/router.js';
import { formatPeerName, parsePeerName } from '../core/peer-name.js';
import { TcpListener, dialTcp, lookupIPv4 } from '../platform/tcp-transport.js';
import { RouterDns } from './router-dns.js';

const KEY_TARGETS = 'directPeers';

/** The stored direct peers; undefined when what is stored cannot be read as a list of them. */
function parseTargets(text: string | undefined): string[] | undefined {
  if (!text) return [];
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A list as Go's slice built by appending: nil when nothing was appended, which JSON writes as
 * null and templates print as [] (goNilSlice).
 */
function orNull<T>(list: T[]): T[] {
  return list.length ? list : goNilSlice();
}

export class Weaver {
  private readonly cfg: DaemonConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private store: SqliteStore | undefined;
  private bridge: Bridge | undefined;
  /** The bridge check's way to read the bridge without a process (closed at stop). */
  private linkReader: RtnlLinkReader | undefined;
  private exposer: Exposer | undefined;
  private allocator: DistributedAllocator | undefined;
  private servers: ApiServer[] = [];
  private metrics: RouterMetrics | undefined;
  private cni: RouterCniService | undefined;
  private mesh: MeshRouter | undefined;
  private datapath: Datapath | undefined;
  private listener: TcpListener | undefined;
  private dns: RouterDns | undefined;
  private ready = false;
  private stopped = false;
  name = '';
  nickname = '';

  constructor(deps: { logger: Logger; clock: Clock }, cfg: DaemonConfig) {
    this.cfg = cfg;
    this.log = deps.logger;
    this.clock = deps.clock;
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    mkdirSync(cfg.dataDir, { recursive: true });
    mkdirSync(cfg.runDir, { recursive: true });
    // First of all: one router per host. A second one used to get as far as deleting the first's
    // VXLAN device before failing, and then removed its pid file. Taken this early, the file
    // also lets `weave stop` find a router that is still starting.
    claimPidFile(join(cfg.runDir, WEAVER_PID_FILE), 'weaver');
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
    try {
      this.linkReader = RtnlLinkReader.open();
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, `no rtnetlink socket (${errorMessage(e)}): the bridge check runs ip`);
    }
    this.bridge = new Bridge(
      { links, ...(this.linkReader ? { probe: this.linkReader } : {}), sysctl, clock: this.clock, logger: this.log.child({ component: 'bridge' }) },
      { name: cfg.bridge, mac: this.name, mtu: cfg.mtu, checkIntervalMs: cfg.bridgeCheckIntervalMs },
    );
    await this.bridge.ensure();
    const api = /^127\.0\.0\.1:(\d+)$/.exec(cfg.httpAddr);
    this.exposer = new Exposer(
      { links, firewall, store, logger: this.log.child({ component: 'expose' }) },
      { bridge: cfg.bridge, ...(api ? { controlPort: Number(api[1]) } : {}) },
    );
    await this.exposer.installBaseRules();

    await this.exposer.reapply();
    const exposer = this.exposer;
    this.bridge.onRecreated = async () => {
      // Containers' host ends lost their master with the old bridge: plug them back in.
      const lines = (await links.listLinks()).filter((l) => l.ifname.startsWith(HOST_VETH_PREFIX)).map((l) => `link set dev ${l.ifname} master ${cfg.bridge}`);
      if (lines.length) await links.batch(lines);
      await exposer.reapply();
      await this.datapath?.reattach();
    };
    this.bridge.start();

    const inUse = cfg.ipallocRange ? await addressesInUse(links, cfg.bridge) : [];
    await this.startMesh(inUse);
    await this.startDns();

    const alloc = this.allocator;
    const mesh = this.mesh!;
    this.metrics = new RouterMetrics({
      ...(alloc ? { ipam: () => alloc.metrics() } : {}),
      connections: () =>
        mesh.connectionRows().map((r) => ({
          state: r.state,
          // Weave Net's label values: our VXLAN fast path counts as its fast datapath.
          type: r.overlay === 'vxlan' ? 'fastdp' : r.overlay === 'sleeve' ? 'sleeve' : 'unknown',
          encryption: mesh.usingPassword && r.attrs?.encrypted === true ? 'yes' : '',
        })),
      ...(this.dns ? { dnsEntries: () => this.dns!.localEntryCount() } : {}),
      terminations: () => mesh.terminationCount,
    });

    this.cni = new RouterCniService({ runDir: cfg.runDir, httpAddr: cfg.httpAddr, logger: this.log.child({ component: 'cni' }) });
    await this.listen(cfg.httpAddr, false);
    if (cfg.statusAddr) await this.listen(cfg.statusAddr, true);
    if (cfg.metricsAddr) await this.listen(cfg.metricsAddr, 'metrics');
    this.cni.publish();
    this.ready = true;
    this.log.info({ httpAddr: cfg.httpAddr }, `Listening for HTTP control messages on ${cfg.httpAddr}`);
  }

  /**
   * The mesh: TCP listener on --host:--port, targets from the command line or the store, and
   * IPAM's gossip channel, joined before any connection can deliver on it.
   */
  private async startMesh(inUse: readonly ReclaimEntry[]): Promise<void> {
    const cfg = this.cfg;
    const store = this.store!;
    const ourName = parsePeerName(this.name);
    const datapath = await Datapath.start(
      { links: new IpRoute(), clock: this.clock, logger: this.log.child({ component: 'datapath' }) },
      { bridge: cfg.bridge, ourName, port: cfg.port, host: cfg.host, mtu: cfg.mtu, fastdp: cfg.fastdp },
    );
    this.datapath = datapath;
    const mesh = new MeshRouter(
      {
        clock: this.clock,
        logger: this.log.child({ component: 'mesh' }),
        randomBytes,
        random: Math.random,
        dial: (address) => dialTcp(address, { timeoutMs: 10_000, ...(cfg.host ? { localHost: cfg.host } : {}) }),
        // Targets survive restarts (weave connect/forget; --resume starts from them). Saved
        // before a change takes effect: on a full disk the request fails and nothing changes.
        saveTargets: (targets) => store.set(KEY_TARGETS, JSON.stringify(targets)),
        lookupHost: lookupIPv4,
      },
      {
        name: ourName,
        nickName: this.nickname,
        port: cfg.port,
        ...(cfg.password ? { password: cfg.password } : {}),
        trustedSubnets: cfg.trustedSubnets,
        discovery: cfg.discovery,
        connLimit: cfg.connLimit,
        minProtocolVersion: cfg.minProtocolVersion,
        overlay: datapath.overlay,
      },
    );
    this.mesh = mesh;
    mesh.routes.onChange(() => datapath.updateRoutes(mesh.routes, mesh.peers));
    mesh.peers.onGC((removed) => {
      for (const p of removed) datapath.peerGone(p.name);
    });
    this.log.info({}, cfg.password ? 'Communication between peers via untrusted networks is encrypted.' : 'Communication between peers is unencrypted.');
    const listener = new TcpListener();
    try {
      await listener.listen(cfg.host, cfg.port, (t) => mesh.accept(t));
    } catch (e) {
      throw new WeaveError('UNAVAILABLE', `cannot listen for peers on ${cfg.host || '0.0.0.0'}:${cfg.port}: ${errorMessage(e)}`, { cause: e });
    }
    this.listener = listener;
    this.startIpam(mesh, inUse);
    const stored = store.get(KEY_TARGETS);
    const persisted = parseTargets(stored);
    // --resume with a peer list that cannot be read would start alone without saying why.
    if (cfg.resume && persisted === undefined) this.log.warn({ stored }, 'the persisted peer list cannot be read; resuming with no peers');
    const initial = cfg.resume ? (persisted ?? []) : cfg.peers;
    this.log.info({ peers: initial }, cfg.resume ? `Resuming with the persisted peer list: ${JSON.stringify(initial)}` : `Launch detected - using supplied peer list: ${JSON.stringify(initial)}`);
    mesh.start();
    const errors = mesh.connect(initial, true);
    for (const e of errors) this.log.warn({ err: e }, 'ignoring peer');
  }

  /**
   * Distributed IPAM (unless `--ipalloc-range ""`): one ring over the range shared by every
   * router, agreed on by consensus (quorum from `consensus=N` or the targets), seed or
   * observer. `inUse`: what this host's containers and the bridge hold now, claimed back so a
   * router that lost its store never hands those addresses out again.
   */
  private startIpam(mesh: MeshRouter, inUse: readonly ReclaimEntry[]): void {
    const cfg = this.cfg;
    if (!cfg.ipallocRange) return;
    const init = cfg.ipallocInit;
    const alloc = new DistributedAllocator(
      {
        clock: this.clock,
        logger: this.log.child({ component: 'ipam' }),
        store: this.store!,
        random: Math.random,
        isKnownPeer: (p) => mesh.peers.has(p),
        isReachable: (p) => mesh.reachable(p),
        knownPeers: () => mesh.peers.names(),
        quorum: () => determineQuorum(init.mode === 'consensus' ? init.count : undefined, mesh.connectionMaker.targets().length),
      },
      {
        name: mesh.name,
        uid: mesh.ourself.uid,
        nickname: this.nickname,
        range: cfg.ipallocRange,
        ...(cfg.ipallocDefaultSubnet ? { defaultSubnet: cfg.ipallocDefaultSubnet } : {}),
        ...(init.mode === 'seed' ? { seed: init.peers } : {}),
        observer: init.mode === 'observer',
      },
    );
    alloc.setGossip(mesh.newGossip(IPAM_CHANNEL, alloc));
    mesh.peers.onGC((removed) => {
      for (const p of removed) alloc.peerGone(p.name);
    });
    alloc.start({ reclaim: inUse });
    this.allocator = alloc;
  }

  /** The HTTP API's view of the allocator. */
  private ipamService(alloc: DistributedAllocator): IpamService {
    return {
      defaultSubnet: alloc.defaultSubnet,
      parseSubnet: (t) => alloc.parseSubnet(t),
      allocate: (ident, subnet, o) => alloc.allocate(ident, subnet, o),
      claim: (ident, cidr, o) => alloc.claim(ident, cidr, o),
      lookup: (ident, subnet) => alloc.lookup(ident, subnet),
      free: (ident) => alloc.free(ident),
      freeAddress: (ident, ip) => alloc.freeAddress(ident, ip),
      all: () => alloc.all(),
      prime: (o) => alloc.prime(o),
      takeOver: (peer) => alloc.adminTakeoverRanges(peer),
      conflictLine: () => alloc.conflictLine(),
    };
  }

  /**
   * weaveDNS (unless --no-dns): joins the nameserver gossip channel at once, before any
   * connection is up, then listens on --dns-listen-address or the exposed bridge address.
   */
  private async startDns(): Promise<void> {
    const dnsCfg = this.cfg.dns;
    if (!dnsCfg) return;
    const mesh = this.mesh!;
    this.dns = new RouterDns(
      { clock: this.clock, logger: this.log.child({ component: 'weavedns' }), mesh, store: this.store! },
      { ...dnsCfg, defaultPort: DEFAULTS.dnsPort },
    );
    await this.dns.start(this.exposer!.exposed().map((e) => e.cidr.ip));
  }

  private meshService() {
    const mesh = this.mesh!;
    return {
      connect: (peers: string[], replace: boolean) => mesh.connect(peers, replace),
      forget: (peers: string[]) => mesh.forget(peers),
    };
  }

  private async listen(addr: string, readOnly: boolean | 'metrics'): Promise<void> {
    const exposer = this.exposer!;
    const server = new ApiServer({
      logger: this.log.child({ component: 'http' }),
      isReady: () => this.ready,
      readOnly,
      services: {
        report: () => this.report(),
        datapathStatus: () => this.datapathStatus(),
        metrics: () => this.metrics!.render(),
        ...(this.allocator ? { ipam: this.ipamService(this.allocator) } : {}),
        expose: {
          // weaveDNS follows the bridge's addresses when it has no --dns-listen-address.
          expose: async (c: Cidr, o: { skipNAT?: boolean }) => {
            await exposer.expose(c, o);
            await this.dns?.exposedChanged(exposer.exposed().map((e) => e.cidr.ip));
          },
          hide: async (c: Cidr) => {
            await exposer.hide(c);
            await this.dns?.exposedChanged(exposer.exposed().map((e) => e.cidr.ip));
          },
        },
        // DELETE /peer (weave reset): hand our space to a live peer before we go.
        leave: async () => {
          this.allocator?.shutdown();
        },
        ...(readOnly || !this.cni ? {} : { cni: this.cni }),
        ...(readOnly || !this.mesh ? {} : { mesh: this.meshService() }),
        ...(readOnly || !this.dns ? {} : { dns: this.dns }),
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
    const report: WeaveReport = {
      Ready: this.ready,
      Version: weaveVersion(),
      VersionCheck: { Enabled: false, Success: false, NewVersion: '', NextCheckAt: '0001-01-01T00:00:00Z' },
      Router: this.routerStatus(),
    };
    if (this.allocator) report.IPAM = this.allocator.status();
    if (this.dns) report.DNS = this.dns.status();
    return report;
  }

  /**
   * The data path's part of the report: the interface frames are captured on and its counters
   * (the original's: `vethwe-pcap (via pcap)` and pcap's), and the MAC table as the original's
   * report lists it (local MACs under our name).
   */
  private async datapathStatus(): Promise<Pick<WeaveReport['Router'], 'Interface' | 'CaptureStats' | 'MACs'>> {
    const dp = this.datapath;
    // Empty lists are null, as Go's JSON writes a slice nothing was appended to.
    if (!dp) return { Interface: this.cfg.bridge, CaptureStats: null, MACs: goNilSlice() };
    const [entries, captureStats] = await Promise.all([dp.macTable(), dp.captureStats()]);
    const mesh = this.mesh!;
    return {
      Interface: CAPTURE_INTERFACE,
      CaptureStats: captureStats,
      MACs: orNull(entries.map(([mac, peer, seenMs]) => ({
        Mac: formatPeerName(mac),
        Name: formatPeerName(peer),
        NickName: mesh.peers.get(peer)?.nickName ?? '',
        LastSeen: goJsonTime(seenMs),
      }))),
    };
  }

  private routerStatus(): WeaveReport['Router'] {
    const cfg = this.cfg;
    // The API listens only after the mesh exists (start order), so it is always there here.
    const mesh = this.mesh!;
    // Fields in the original's order (its struct's), which /report's JSON keeps.
    const head = {
      Protocol: 'weave',
      ProtocolMinVersion: 1,
      ProtocolMaxVersion: 2,
      Encryption: !!cfg.password,
      PeerDiscovery: cfg.discovery,
      Name: this.name,
      NickName: this.nickname,
      Port: cfg.port,
    };
    const tail = {
      // The original's overlays give no diagnostics (sleeve: null); nor do ours. A Go map: keys sorted.
      OverlayDiagnostics: Object.fromEntries((this.datapath?.overlay.names ?? []).toSorted().map((n) => [n, null])),
      TrustedSubnets: cfg.trustedSubnets.map(formatCidr),
      Interface: cfg.bridge,
      CaptureStats: null,
      MACs: null,
    };
    const nick = (n: number) => mesh.peers.get(n)?.nickName ?? '';
    const targets = mesh.connectionMaker.targets();
    const names = mesh.peers.names();
    return {
      ...head,
      Peers: names.map((n) => {
        const p = mesh.peers.get(n)!;
        return {
          Name: formatPeerName(n),
          NickName: p.nickName,
          UID: p.uid,
          ShortID: p.shortId,
          Version: Number(p.version),
          Connections: orNull([...p.connections.values()].map((c) => ({
            Name: formatPeerName(c.remoteName),
            NickName: nick(c.remoteName),
            Address: c.remoteTcpAddr,
            Outbound: c.outbound,
            Established: c.established,
          }))),
        };
      }),
      UnicastRoutes: names
        .filter((n) => mesh.routes.unicast(n) !== undefined)
        .map((n) => ({ Dest: formatPeerName(n), Via: formatPeerName(mesh.routes.unicast(n)!) })),
      BroadcastRoutes: names.map((n) => {
        const via = mesh.routes.broadcast(n);
        return { Source: formatPeerName(n), Via: orNull(via.map(formatPeerName)) };
      }),
      Connections: orNull(mesh.connectionRows().map((r) => ({ Address: r.address, Outbound: r.outbound, State: r.state, Info: r.info, Attrs: r.attrs }))),
      TerminationCount: mesh.terminationCount,
      Targets: orNull(targets),
      ...tail,
    };
  }

  /** Stops serving and releases everything; idempotent. The bridge stays (weave reset removes it). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.ready = false;
    this.bridge?.stop();
    this.linkReader?.close();
    this.allocator?.stop();
    await this.dns?.stop();
    await this.mesh?.stop();
    await this.datapath?.stop();
    await this.listener?.close();
    await Promise.all(this.servers.map((s) => s.close()));
    this.servers = [];
    this.store?.close();
    this.cni?.unpublish();
    releasePidFile(join(this.cfg.runDir, WEAVER_PID_FILE));
    this.log.info({}, 'weave stopped');
  }
}

/**
 * Addresses in use on this host now: those of attached containers (the alias their host end
 * carries, see container-link.ts) and the bridge's own (`weave expose`). The original scanned
 * Docker's containers or every process for veths on the bridge; the alias also tells us the
 * ident, so a reclaimed address stays with its container and a later DEL frees it.
 */
async function addressesInUse(links: IpRoute, bridge: string): Promise<ReclaimEntry[]> {
  const out: ReclaimEntry[] = [];
  for (const l of await links.listLinks()) {
    if (l.ifname === bridge) {
      for (const a of l.addrs) if (a.family === 'inet') out.push({ ident: EXPOSE_IDENT, cidr: parseCidr(`${a.local}/${a.prefixlen}`) });
    } else if (l.master === bridge && l.alias) {
      const rec = parseAttachAlias(l.alias);
      if (rec) for (const cidr of rec.cidrs) out.push({ ident: rec.ident, cidr });
    }
  }
  return out;
}
