// weaveDNS in the router: the nameserver on the mesh's `nameserver` gossip channel, the DNS
// server (UDP and TCP) with resolv.conf upstreams, the HTTP API's DNS service, and the
// persistence of the names this router registered.
//
// UDP queries are read by a worker thread (dns-worker-udp.ts) that answers names in the domain
// from a copy of the nameserver's names and passes everything else to the server on the main
// thread; TCP, forwarding and the rest stay on the main thread.
//
// Upstream servers come from resolv.conf, read at call time (at most every 5 s) as the
// original's, so the status shows the servers of now (dns/upstream.ts ResolvConfUpstream).
//
// Where it listens: `--dns-listen-address` binds at start (a failure stops the router, as the
// original). Without it the server listens on the bridge's first exposed address, port 53, as
// soon as `weave expose` (or the CNI plugin) puts one there; `exposedChanged` re-binds when that
// address goes away, and until there is one the server does not listen (status says so).
//
// Persistence (an improvement on the original, which re-registered Docker's running containers
// at start): the live entries this router originates are written to the store before every
// change through the API (a failed write changes nothing) and registered again at start, so
// names given with `weave dns-add`, `attach --name` or `expose -h` survive a restart. Peers
// dropped our entries when we left the topology; gossip of the re-registered entries (and our
// override of any newer claim about them) brings them back everywhere, and the peers' entries
// come back to us by gossip.
import type { Clock } from '../core/clock.js';
import { errorMessage } from '../core/errors.js';
import { formatIPv4, tryParseIPv4, type IPv4 } from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import type { PeerName } from '../core/peer-name.js';
import type { Gossiper } from '../mesh/gossip.js';
import { NAMESERVER_CHANNEL, Nameserver, encodableName, fqdn, isSubDomain, parseEntryAddress, type DnsServerInfo, type NameserverBroadcaster } from '../dns/nameserver.js';
import { DnsServer } from '../dns/server.js';
import { ResolvConfUpstream } from '../dns/upstream.js';
import type { DnsService } from '../api/server/http-server.js';
import type { DnsNameJson, DnsStatus } from '../api/types.js';
import type { DnsConfig } from './config.js';
import { WorkerUdpListener } from './dns-worker-udp.js';

/** Store key of our own live entries: JSON [[hostname, containerId, address], ...]. */
const KEY_ENTRIES = 'dns/entries';

/** What the router needs from the mesh. */
export interface RouterDnsMesh {
  readonly name: PeerName;
  readonly peers: { has(name: PeerName): boolean; onGC(cb: (removed: readonly { name: PeerName }[]) => void): unknown };
  newGossip(name: string, gossiper: Gossiper): NameserverBroadcaster;
}

export interface RouterDnsStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

export interface RouterDnsDeps {
  clock: Clock;
  logger: Logger;
  mesh: RouterDnsMesh;
  store: RouterDnsStore;
}

export interface RouterDnsOptions extends DnsConfig {
  /** Port used with an exposed bridge address when no --dns-listen-address is given (53). */
  defaultPort: number;
}

export class RouterDns implements DnsService {
  readonly ns: Nameserver;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly store: RouterDnsStore;
  private readonly opts: RouterDnsOptions;
  private server: DnsServer | undefined;
  /** Host of the exposed address we listen on (default binding only). */
  private boundHost: string | undefined;
  /** resolv.conf servers for the status while there is no server (no address to filter). */
  private idleUpstream: ResolvConfUpstream | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  /** Builds the nameserver, joins its gossip channel and registers our persisted names. */
  constructor(deps: RouterDnsDeps, opts: RouterDnsOptions) {
    this.clock = deps.clock;
    this.log = deps.logger;
    this.store = deps.store;
    this.opts = opts;
    const mesh = deps.mesh;
    this.ns = new Nameserver({ clock: deps.clock, logger: deps.logger.child({ component: 'nameserver' }), isKnownPeer: (p) => mesh.peers.has(p) }, { ourName: mesh.name, domain: opts.domain });
    this.ns.setGossip(mesh.newGossip(NAMESERVER_CHANNEL, this.ns));
    mesh.peers.onGC((removed) => {
      for (const p of removed) this.ns.peerGone(p.name);
    });
    this.restore();
    this.ns.start();
  }

  get domain(): string {
    return this.ns.domain;
  }

  /** Binds --dns-listen-address, or the first exposed address when there is one. */
  async start(exposed: IPv4[]): Promise<void> {
    if (this.opts.listenAddress !== undefined) {
      await this.serial(() => this.bind(this.opts.listenAddress!, undefined));
      return;
    }
    await this.exposedChanged(exposed);
  }

  /**
   * The bridge's exposed addresses changed: keep listening where we are if that address is
   * still there, else move to the first one, or stop listening when there is none.
   */
  exposedChanged(exposed: IPv4[]): Promise<void> {
    if (this.opts.listenAddress !== undefined) return Promise.resolve();
    return this.serial(async () => {
      if (this.stopped) return;
      const hosts = exposed.map(formatIPv4);
      if (this.boundHost !== undefined && hosts.includes(this.boundHost)) return;
      await this.unbind();
      const host = hosts[0];
      if (host === undefined) {
        this.log.info({}, 'weaveDNS not listening: no address exposed on the bridge');
        return;
      }
      try {
        await this.bind(`${host}:${this.opts.defaultPort}`, host);
      } catch (e) {
        // The router carries on without DNS; the next expose tries again.
        this.log.error({ err: errorMessage(e) }, `weaveDNS cannot listen on ${host}:${this.opts.defaultPort}: ${errorMessage(e)}`);
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.serial(() => this.unbind());
    this.ns.stop();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async bind(listenAddress: string, exposedHost: string | undefined): Promise<void> {
    const filterHost = listenAddress.slice(0, listenAddress.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
    const filterPort = Number(listenAddress.slice(listenAddress.lastIndexOf(':') + 1));
    const upstream = new ResolvConfUpstream(
      { clock: this.clock, logger: this.log.child({ component: 'dns-upstream' }) },
      { path: this.opts.resolvConf, filterAddress: filterHost, filterPort },
    );
    const log = this.log.child({ component: 'dns' });
    const server = new DnsServer(
      { names: this.ns, upstream, clock: this.clock, logger: log, udpListener: new WorkerUdpListener({ names: this.ns, logger: log }) },
      { listenAddress, domain: this.opts.domain, ttl: this.opts.ttl, fallbackTimeoutMs: this.opts.fallbackTimeoutMs },
    );
    await server.start();
    this.server = server;
    this.boundHost = exposedHost;
  }

  private async unbind(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.boundHost = undefined;
    await s?.stop();
  }

  // --- the HTTP API's DNS service ------------------------------------------------------------

  listenAddress(): string | undefined {
    const s = this.server;
    if (!s) return undefined;
    const { host, port } = s.address;
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  // The store is written before the nameserver changes: a change is gossiped at once and
  // cannot be taken back, so a failed write (disk full) must leave everything as it was.

  putName(container: string, ip: string, fqdnValue: string): void {
    const addr = parseEntryAddress(ip);
    const hostname = fqdn(fqdnValue);
    // Names the nameserver refuses (INVALID_ARGUMENT) or ignores (outside the domain) change nothing.
    if (encodableName(hostname) && isSubDomain(this.ns.domain, hostname)) {
      const own = this.ownLive();
      if (!own.some(([h, c, a]) => h === hostname && c === container && a === formatIPv4(addr))) {
        this.persist([...own, [hostname, container, formatIPv4(addr)]]);
      }
    }
    this.ns.httpPutName(container, ip, fqdnValue);
  }

  deleteName(container: string | undefined, ip: string | undefined, fqdnValue: string | undefined): void {
    // What the nameserver's delete tombstones: our live entries matching every part, '*' any.
    const addr = ip === undefined ? '*' : formatIPv4(parseEntryAddress(ip));
    const hostname = fqdnValue ? fqdn(fqdnValue) : '*';
    const containerId = container ?? '*';
    const own = this.ownLive();
    const kept = own.filter(([h, c, a]) => !((hostname === '*' || h === hostname) && (containerId === '*' || c === containerId) && (addr === '*' || a === addr)));
    if (kept.length !== own.length) this.persist(kept);
    this.ns.httpDeleteName(container, ip, fqdnValue);
  }

  entries(): DnsNameJson[] {
    return this.ns.entriesJson();
  }

  // --- status and metrics --------------------------------------------------------------------

  /** The `/report` DNS section; Address is empty while the server does not listen. */
  status(): DnsStatus {
    const s = this.server;
    const info: DnsServerInfo = s
      ? { listenAddress: this.listenAddress() ?? '', ttl: s.ttl, upstreamServers: () => s.upstreamServers() }
      : { listenAddress: '', ttl: this.opts.ttl, upstreamServers: () => this.idleServers() };
    return this.ns.status(info);
  }

  private idleServers(): string[] {
    this.idleUpstream ??= new ResolvConfUpstream({ clock: this.clock, logger: this.log.child({ component: 'dns-upstream' }) }, { path: this.opts.resolvConf });
    return this.idleUpstream.serversNow();
  }

  /** The `weave_dns_entries` metric: live entries we originate. */
  localEntryCount(): number {
    return this.ns.localEntryCount();
  }

  // --- persistence of our own names ----------------------------------------------------------

  private ownLive(): [string, string, string][] {
    return this.ns
      .allEntries()
      .filter((e) => e.origin === this.ns.ourName && e.tombstone === 0)
      .map((e) => [e.hostname, e.containerId, formatIPv4(e.addr)]);
  }

  private persist(entries: [string, string, string][] = this.ownLive()): void {
    this.store.set(KEY_ENTRIES, JSON.stringify(entries));
  }

  private restore(): void {
    const text = this.store.get(KEY_ENTRIES);
    if (!text) return;
    let rows: unknown;
    try {
      rows = JSON.parse(text);
    } catch {
      this.log.warn({ key: KEY_ENTRIES }, 'ignoring unreadable persisted DNS entries');
      return;
    }
    if (!Array.isArray(rows)) return;
    let n = 0;
    for (const r of rows) {
      if (!Array.isArray(r) || r.length !== 3 || !r.every((x) => typeof x === 'string')) continue;
      const [hostname, containerId, addrText] = r as [string, string, string];
      const addr = tryParseIPv4(addrText);
      // Names outside the domain (the router came back with another --dns-domain) are dropped.
      if (addr !== undefined && this.ns.addEntryFqdn(hostname, containerId, addr)) n++;
    }
    this.log.info({ entries: n }, `re-registered ${n} persisted DNS entries`);
    this.persist();
  }
}

