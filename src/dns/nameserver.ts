// The nameserver (nameserver `nameserver.go`, `http.go`, `status.go`): the router's gossiper on
// the `nameserver` channel and the API the daemon's HTTP routes, status and metrics call.
//
// It owns the entry set (entries.ts) and applies the original's rules around it:
//   - our own changes (add, delete, container death) are broadcast at once, with our clock;
//   - received gossip older or newer than 15 min by our clock is refused (clock-skew guard);
//     entries whose origin is not a known peer are dropped; an incoming claim about one of our
//     own entries that is newer than ours (or a tombstone of ours that we do not have) is
//     answered by re-broadcasting our view at a higher version: after a restart a router
//     thereby deletes what it no longer holds, and keeps what it re-registered;
//   - entries of a peer that leaves the topology go at once (`peerGone`, wired to mesh GC);
//   - tombstones older than 30 min are purged every 30 min.
// The DNS server (server.ts) reads it through `lookup` and `reverseLookup`; a copy of the names
// elsewhere (the daemon's DNS worker thread) starts from `liveNames` and follows
// `onNamesChanged`, which is called synchronously within each change, so a reader told of a
// change before it answers a query never answers from older names than `lookup` would.
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError } from '../core/errors.js';
import { goNilSlice } from '../core/go-json.js';
import { formatIPv4, tryParseIPv4, type IPv4 } from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import { formatPeerName, type PeerName } from '../core/peer-name.js';
import type { GossipData, Gossiper } from '../mesh/gossip.js';
import { GOSSIP_WINDOW_S, checkClockSkew, decodeNameserverGossip, encodeNameserverGossip } from './codec.js';
import { Entries, type Entry } from './entries.js';

/** The gossip channel name (prog/weaver `router.NewGossip("nameserver", ns)`). */
export const NAMESERVER_CHANNEL = 'nameserver';
/** nameserver `DefaultDomain`. */
export const DEFAULT_DOMAIN = 'weave.local.';
/** nameserver `tombstoneTimeout`: how long a tombstone is kept, and how often they are purged. */
export const TOMBSTONE_TIMEOUT_MS = 30 * 60_000;

/** `dns.Fqdn`: the name with a trailing dot. */
export function fqdn(name: string): string {
  return name.endsWith('.') ? name : `${name}.`;
}

/** A name DNS can carry: labels of 1..63 bytes, 255 bytes in all on the wire ("" and "." are the root). */
export function encodableName(name: string): boolean {
  const n = name === '.' ? '' : name.replace(/\.$/, '');
  if (n === '') return true;
  let total = 1;
  for (const label of n.split('.')) {
    const len = Buffer.byteLength(label);
    if (len === 0 || len > 63) return false;
    total += len + 1;
  }
  return total <= 255;
}

/** `dns.IsSubDomain(parent, child)`: child equals parent or ends in ".parent", any case. */
export function isSubDomain(parent: string, child: string): boolean {
  const p = fqdn(parent).toLowerCase();
  const c = fqdn(child).toLowerCase();
  if (p === '.') return true;
  return c === p || c.endsWith(`.${p}`);
}

/** The gossip data of this channel: a timestamp and entries; merges keep the later timestamp. */
export class NameserverGossipData implements GossipData {
  constructor(
    readonly timestamp: number,
    readonly entries: readonly Entry[],
  ) {}

  encode(): Buffer[] {
    return [encodeNameserverGossip({ timestamp: this.timestamp, entries: this.entries })];
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof NameserverGossipData)) return this;
    const set = new Entries();
    set.merge(this.entries);
    set.merge(other.entries);
    return new NameserverGossipData(Math.max(this.timestamp, other.timestamp), set.all());
  }
}

/** Where our own changes are broadcast (the channel mesh's `newGossip` returns). */
export interface NameserverBroadcaster {
  broadcast(update: GossipData): void;
}

export interface NameserverDeps {
  clock: Clock;
  logger: Logger;
  /** True for peers in the topology (mesh `Peers` has them); entries of others are dropped. */
  isKnownPeer(name: PeerName): boolean;
}

export interface NameserverOptions {
  ourName: PeerName;
  /** `--dns-domain`, with or without the trailing dot (default weave.local.). */
  domain?: string;
}

/** `GET /report` DNS section (nameserver `Status`); the same shape as api/types DnsStatus. */
export interface NameserverStatus {
  Domain: string;
  Upstream: string[] | null;
  Address: string;
  TTL: number;
  Entries: NameserverEntryStatus[] | null;
}

export interface NameserverEntryStatus {
  Hostname: string;
  Origin: string;
  ContainerID: string;
  Address: string;
  Version: number;
  Tombstone: number;
}

/** `GET /name` with Accept: application/json: the entries as Go marshals them. */
export interface NameserverEntryJson {
  ContainerID: string;
  Origin: string;
  Addr: string;
  Hostname: string;
  Version: number;
  Tombstone: number;
}

/** What the status needs from the DNS server. */
export interface DnsServerInfo {
  /** The configured listen address (`--dns-listen-address`). */
  readonly listenAddress: string;
  readonly ttl: number;
  /** The upstream servers currently in use. */
  upstreamServers(): string[];
}

export class Nameserver implements Gossiper {
  readonly ourName: PeerName;
  /** The domain, fully qualified (`dns.Fqdn(--dns-domain)`). */
  readonly domain: string;
  private readonly entries = new Entries();
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly isKnownPeer: (name: PeerName) => boolean;
  private channel: NameserverBroadcaster | undefined;
  private purgeTimer: TimerHandle | undefined;
  private readonly nameListeners = new Set<(names: ReadonlySet<string>) => void>();

  constructor(deps: NameserverDeps, opts: NameserverOptions) {
    this.clock = deps.clock;
    this.log = deps.logger;
    this.isKnownPeer = deps.isKnownPeer;
    this.ourName = opts.ourName;
    this.domain = fqdn(opts.domain ?? DEFAULT_DOMAIN);
    this.entries.setChangeListener((names) => {
      for (const l of this.nameListeners) l(names);
    });
  }

  /**
   * Calls `listener` within every change of the entry set, with the names (lower case) whose
   * `lookup` may now answer differently; returns the function that removes it.
   */
  onNamesChanged(listener: (names: ReadonlySet<string>) => void): () => void {
    this.nameListeners.add(listener);
    return () => this.nameListeners.delete(listener);
  }

  /** Every name with live entries (lower case) and its `lookup` answer. */
  liveNames(): Map<string, IPv4[]> {
    return this.entries.liveNames();
  }

  /** The channel returned by `router.newGossip(NAMESERVER_CHANNEL, this)`. */
  setGossip(channel: NameserverBroadcaster): void {
    this.channel = channel;
  }

  /** Starts the tombstone purge (every 30 min). */
  start(): void {
    if (this.purgeTimer) return;
    this.purgeTimer = this.clock.setInterval(() => this.deleteTombstones(), TOMBSTONE_TIMEOUT_MS);
  }

  stop(): void {
    this.purgeTimer?.cancel();
    this.purgeTimer = undefined;
  }

  private nowSec(): number {
    return Math.floor(this.clock.now() / 1000);
  }

  private broadcastEntries(entries: readonly Entry[]): void {
    if (!this.channel || entries.length === 0) return;
    this.channel.broadcast(new NameserverGossipData(this.nowSec(), entries));
  }

  // --- changes of our own -------------------------------------------------------------------

  /** Registers `hostname` (fully qualified) → `addr` for a container (nameserver `AddEntry`). */
  addEntry(hostname: string, containerId: string, origin: PeerName, addr: IPv4): Entry {
    this.log.info({ containerId, hostname, addr: formatIPv4(addr) }, `adding entry for ${containerId}: ${hostname} -> ${formatIPv4(addr)}`);
    const e = this.entries.add(hostname, containerId, origin, addr);
    this.broadcastEntries([e]);
    return e;
  }

  /**
   * Registers a name given by a user or the CLI (nameserver `AddEntryFQDN`): qualified with a
   * trailing dot, ignored (false) unless it is in our domain. Origin is ourselves.
   */
  addEntryFqdn(name: string, containerId: string, addr: IPv4): boolean {
    const hostname = fqdn(name);
    if (!isSubDomain(this.domain, hostname)) {
      this.log.info({ hostname, containerId }, `Ignoring registration ${hostname} ${formatIPv4(addr)} ${containerId} (not a subdomain of ${this.domain})`);
      return false;
    }
    this.addEntry(hostname, containerId, this.ourName, addr);
    return true;
  }

  /**
   * Tombstones our entries matching all given parts, '*' matching anything (nameserver
   * `Delete`): hostname exactly as registered, container id, address.
   */
  delete(hostname: string, containerId: string, addr: IPv4 | '*'): Entry[] {
    this.log.info({ hostname, containerId, addr: addr === '*' ? '*' : formatIPv4(addr) }, 'tombstoning');
    const gone = this.entries.tombstone(this.ourName, this.nowSec(), (e) =>
      (hostname === '*' || e.hostname === hostname) && (containerId === '*' || e.containerId === containerId) && (addr === '*' || e.addr === addr),
    );
    this.broadcastEntries(gone);
    return gone;
  }

  /** A container of ours died: tombstone all its entries (nameserver `ContainerDied`). */
  containerDied(containerId: string): Entry[] {
    const gone = this.entries.tombstone(this.ourName, this.nowSec(), (e) => e.containerId === containerId);
    for (const e of gone) this.log.info({ containerId, hostname: e.hostname }, `container ${containerId} died; tombstoning entry ${e.hostname} -> ${formatIPv4(e.addr)}`);
    this.broadcastEntries(gone);
    return gone;
  }

  /** A peer left the topology: forget its entries (wired to the mesh's GC). */
  peerGone(peer: PeerName): void {
    const n = this.entries.filter((e) => e.origin !== peer);
    this.log.info({ peer: formatPeerName(peer), removed: n }, `peer ${formatPeerName(peer)} gone`);
  }

  /**
   * Drops tombstones older than the tombstone life; returns how many. Also those dated further
   * ahead than the clock skew gossip may have: a peer sets the time, and one far in the future
   * was never old enough to go (the original kept it for good).
   */
  deleteTombstones(): number {
    const now = this.nowSec();
    const limit = TOMBSTONE_TIMEOUT_MS / 1000;
    return this.entries.filter((e) => e.tombstone === 0 || (now - e.tombstone <= limit && e.tombstone - now <= GOSSIP_WINDOW_S));
  }

  // --- reads ----------------------------------------------------------------------------------

  /** Live addresses of `hostname` (fully qualified, any case). */
  lookup(hostname: string): IPv4[] {
    return this.entries.lookup(hostname);
  }

  /** The hostname of a live entry holding `addr`, if any. */
  reverseLookup(addr: IPv4): string | undefined {
    return this.entries.reverseLookup(addr);
  }

  /** Every entry, tombstones included, in the original's order. */
  allEntries(): Entry[] {
    return this.entries.all();
  }

  /** Live entries (the `Entries:` line of `weave status`). */
  entryCount(): number {
    let n = 0;
    for (const e of this.entries.all()) if (e.tombstone === 0) n++;
    return n;
  }

  /** Live entries we originate: the `weave_dns_entries` metric (countDNSEntriesForPeer). */
  localEntryCount(): number {
    let n = 0;
    for (const e of this.entries.all()) if (e.tombstone === 0 && e.origin === this.ourName) n++;
    return n;
  }

  /** The `/report` DNS section; `server` is the running DNS server (nameserver `NewStatus`). */
  status(server: DnsServerInfo): NameserverStatus {
    const entries = this.entries.all().map((e) => ({
      Hostname: e.hostname,
      Origin: formatPeerName(e.origin),
      ContainerID: e.containerId,
      Address: formatIPv4(e.addr),
      Version: e.version,
      Tombstone: e.tombstone,
    }));
    const upstream = server.upstreamServers();
    return {
      Domain: this.domain,
      // Empty lists are Go's nil slices: null in JSON, [] in templates.
      Upstream: upstream.length > 0 ? upstream : goNilSlice(),
      Address: server.listenAddress,
      TTL: server.ttl,
      Entries: entries.length > 0 ? entries : goNilSlice(),
    };
  }

  /** `GET /name` (Accept: application/json): the entries as the original marshals them. */
  entriesJson(): NameserverEntryJson[] {
    return this.entries.all().map((e) => ({
      ContainerID: e.containerId,
      Origin: formatPeerName(e.origin),
      Addr: formatIPv4(e.addr),
      Hostname: e.hostname,
      Version: e.version,
      Tombstone: e.tombstone,
    }));
  }

  // --- HTTP helpers (parse at the edge, then the calls above) ----------------------------------

  /**
   * `PUT /name/{container}/{ip}` with form value `fqdn`: INVALID_ARGUMENT (400, the original's
   * text) for a bad address; a name outside the domain is ignored, as the original (204 all the same).
   * Also INVALID_ARGUMENT for a name no DNS message can carry (an empty label, a label over 63
   * bytes, over 255 in all), which the original stored and gossiped though nobody could look it up.
   */
  httpPutName(container: string, ip: string, fqdnValue: string): void {
    const addr = parseEntryAddress(ip);
    if (!encodableName(fqdn(fqdnValue))) {
      throw new WeaveError('INVALID_ARGUMENT', `Invalid hostname "${fqdnValue}": DNS names have labels of 1 to 63 bytes, 255 in all`);
    }
    this.addEntryFqdn(fqdnValue, container, addr);
  }

  /**
   * `DELETE /name[/{container}[/{ip}]]` with optional form value `fqdn`: absent parts match
   * anything; INVALID_ARGUMENT for a bad address.
   */
  httpDeleteName(container: string | undefined, ip: string | undefined, fqdnValue: string | undefined): void {
    const addr = ip === undefined ? '*' : parseEntryAddress(ip);
    this.delete(fqdnValue ? fqdn(fqdnValue) : '*', container ?? '*', addr);
  }

  // --- Gossiper -------------------------------------------------------------------------------

  onGossipUnicast(): void {}

  gossip(): GossipData {
    return new NameserverGossipData(this.nowSec(), this.entries.all());
  }

  onGossip(msg: Buffer): GossipData | undefined {
    const fresh = this.receive(msg);
    return fresh.length > 0 ? new NameserverGossipData(this.nowSec(), fresh) : undefined;
  }

  onGossipBroadcast(_src: PeerName, update: Buffer): GossipData | undefined {
    const received = decodeNameserverGossip(update);
    this.receive(update, received);
    return new NameserverGossipData(received.timestamp, received.entries);
  }

  /** Applies received gossip (nameserver `receiveGossip`); returns what was new here. */
  private receive(msg: Buffer, decoded = decodeNameserverGossip(msg)): Entry[] {
    checkClockSkew(decoded.timestamp, this.nowSec());
    const overridden: Entry[] = [];
    const incoming: Entry[] = [];
    for (const e of decoded.entries) {
      if (!this.isKnownPeer(e.origin)) continue;
      if (e.origin !== this.ourName) {
        incoming.push(e);
        continue;
      }
      const ours = this.entries.findEqual(e);
      if (ours) {
        if (ours.version < e.version || (ours.version === e.version && ours.tombstone !== e.tombstone)) {
          // Someone holds a newer claim about our entry: ours stands, at a version above theirs.
          const mine = { ...ours, version: e.version + 1 };
          overridden.push(mine);
          incoming.push(mine);
        } else {
          incoming.push(e);
        }
      } else if (e.tombstone === 0) {
        // An entry of ours we no longer hold (we restarted): delete it everywhere.
        const dead = { ...e, version: e.version + 1, tombstone: this.nowSec() };
        overridden.push(dead);
        incoming.push(dead);
      } else {
        incoming.push(e);
      }
    }
    const fresh = this.entries.merge(incoming);
    this.broadcastEntries(overridden);
    return fresh;
  }
}

/** An entry address from the HTTP API: IPv4 only (the original took IPv6 text as 0.0.0.0). */
export function parseEntryAddress(s: string): IPv4 {
  const ip = tryParseIPv4(s);
  if (ip === undefined) throw new WeaveError('INVALID_ARGUMENT', `invalid IP Address: ${s}`);
  return ip;
}

/**
 * `weave status dns` (prog/weaver `dnsEntries` template): one line per live entry, the
 * hostname without the domain padded to 12, the address padded to 15, the container id cut
 * and right-aligned to 12, the origin.
 */
export function formatDnsStatus(status: Pick<NameserverStatus, 'Domain' | 'Entries'>): string {
  const suffix = `.${status.Domain}`;
  let s = '';
  for (const e of status.Entries ?? []) {
    if (e.Tombstone !== 0) continue;
    const host = e.Hostname.endsWith(suffix) ? e.Hostname.slice(0, -suffix.length) : e.Hostname;
    s += `${host.padEnd(12)} ${e.Address.padEnd(15)} ${[...e.ContainerID].slice(0, 12).join('').padStart(12)} ${e.Origin}\n`;
  }
  return s;
}
