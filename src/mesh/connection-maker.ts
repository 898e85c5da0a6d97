// Decides which addresses to dial and when (mesh `connection_maker.go`). It owns two sets:
// the direct peers the user asked for (launch arguments, `weave connect`, --resume), and the
// targets: one per address we mean to dial, each with its own backoff. Dialling itself and the
// handshake belong to the router, which reports every outcome back through the lifecycle
// methods below; this module never touches a socket.
//
// Every change (user request, lifecycle report, topology refresh, timer) runs one pass that
// recomputes the valid addresses, drops waiting targets that are no longer valid, dials the
// ones that are due, and sleeps until the next one falls due. Targets in flight (dialling or
// connected) are never dropped: their outcome decides.
//
// A waiting target that stops being valid while it backs off (its address dropped from the
// topology for a moment) leaves its backoff behind, which a target re-created at that address
// takes up again: else every flap of the gossip about a peer that refuses us (or its brief
// connections to us) would have it dialled at once.
//
// Beyond the original: a target whose connection was closed as a duplicate of another
// connection to the same peer (simultaneous dials, Weave Net issues #3619/#3641) is held, not
// retried, while any connection to that peer exists; together with `preferConnection`, which
// both ends evaluate identically, that ends the "Multiple connections" flapping.
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import { tryParseIPv4 } from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import { formatPeerName, type PeerName } from '../core/peer-name.js';

/** mesh `Port`: the TCP (and sleeve UDP) port of every peer unless told otherwise. */
export const DEFAULT_MESH_PORT = 6783;
/** mesh `initialInterval`: the first retry comes after about 2 s. */
export const INITIAL_RETRY_INTERVAL_MS = 2_000;
/** mesh `maxInterval`: backoff stops growing at 6 min. */
export const MAX_RETRY_INTERVAL_MS = 6 * 60_000;
/** mesh `resetAfter`: a connection that outlived its try time by this much is retried at once. */
export const RESET_AFTER_MS = 60_000;
/**
 * A direct peer's host name not dialled because what it resolved to is connected to us is looked
 * up again this often: the name may have moved to another host.
 */
export const HOST_LOOKUP_REFRESH_MS = 60_000;

export type TargetState = 'connecting' | 'retrying' | 'failed' | 'waiting' | 'connected';

/** One row of `/status/connections` for an address we dial (the router adds its live connections). */
export interface TargetStatus {
  address: string;
  state: TargetState;
  /** The original's wording: `<err>` when retrying, `<err>, retry: <time>` when failed. */
  info: string;
  lastError?: string;
  /** Epoch ms of the next try; absent when never (refused permanently) or not waiting. */
  tryAfter?: number;
}

/** A connection between two other peers, as topology gossip describes it. */
export interface TopologyConnection {
  from: PeerName;
  to: PeerName;
  /** `to`'s address as `from` sees it: the dialled address if outbound, else an ephemeral port. */
  remoteTcpAddr: string;
  /** True when `from` dialled `to`. */
  outbound: boolean;
}

export interface DiscoveryTopology {
  connections: Iterable<TopologyConnection>;
  /** Peers we hold a connection to, if the caller knows better than our own bookkeeping. */
  connectedPeers?: Iterable<PeerName>;
}

export interface DialAttempt {
  /** A direct peer may introduce a peer we have never heard of; a discovered one may not (mesh `acceptNewPeer`). */
  direct: boolean;
}

export interface ConnectionMakerDeps {
  clock: Clock;
  /** Uniform in [0, 1); drives the backoff jitter. */
  random: () => number;
  logger: Logger;
  /** Starts a dial and returns at once; the outcome comes back through the lifecycle methods. */
  dial(address: string, attempt: DialAttempt): void;
  /**
   * Called with the direct peers a change would leave, before it takes effect, so the daemon
   * can persist them for --resume. If it throws (a full disk), nothing changes and the error
   * reaches the caller of initiate/forget.
   */
  saveTargets?(targets: string[]): void;
  /**
   * The IPv4 addresses of a host name (DNS in production). A direct peer written as a name
   * without a port is not dialled while that host is connected to us, which is known by its IP
   * (the original resolves direct peers when they are given). Without it, names match no IP.
   */
  lookupHost?(host: string): Promise<string[]>;
}

export interface ConnectionMakerOptions {
  ourName: PeerName;
  /** Our listening port: the default for direct peers and for discovered inbound addresses. */
  port?: number;
  /** Dial the peers our neighbours are connected to (`--no-discovery` turns it off). */
  discovery?: boolean;
}

/** A direct peer, parsed: `port` is undefined when none was written. */
export interface PeerAddress {
  host: string;
  port: number | undefined;
  /** `host:port`, with the default port filled in: what gets dialled. */
  address: string;
}

/**
 * Closes a connection that lost to another connection to the same peer. The router raises it
 * (as `connectionFailed` or `connectionTerminated`) so that the address is not re-dialled
 * while the surviving connection stands. Message as the original's.
 */
export class DuplicateConnectionError extends WeaveError {
  readonly peer: PeerName;
  constructor(peer: PeerName, remoteLabel: string = formatPeerName(peer), localLabel = 'us') {
    super('ALREADY_EXISTS', `Multiple connections to ${remoteLabel} added to ${localLabel}`);
    this.peer = peer;
  }
}

const labelRe = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function isHostName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  if (!labels.every((l) => labelRe.test(l))) return false;
  // An all-numeric last label is a mistyped IPv4 address, not a name (RFC 3696 section 2).
  return !/^[0-9]+$/.test(labels[labels.length - 1] ?? '');
}

/**
 * Parses `host[:port]`, host an IPv4 literal or a DNS name (kept as written: resolving is the
 * caller's job). Port 0 means "none written", as in the original. INVALID_ARGUMENT otherwise.
 */
export function parsePeerAddress(s: string, defaultPort = DEFAULT_MESH_PORT): PeerAddress {
  const bad = (why: string) => new WeaveError('INVALID_ARGUMENT', `invalid peer address ${JSON.stringify(String(s))}: ${why}`);
  if (typeof s !== 'string' || s.length === 0) throw bad('empty');
  let host = s;
  let port: number | undefined;
  const colon = s.lastIndexOf(':');
  if (colon >= 0) {
    if (s.indexOf(':') !== colon || s.startsWith('[')) throw bad('IPv6 addresses are not supported');
    host = s.slice(0, colon);
    const portText = s.slice(colon + 1);
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) throw bad('invalid port');
    port = Number(portText) === 0 ? undefined : Number(portText);
  }
  if (tryParseIPv4(host) === undefined && !isHostName(host)) throw bad('not an IPv4 address or host name');
  return { host, port, address: `${host}:${port ?? defaultPort}` };
}

// `ip:port` of a live connection or a gossiped one; undefined when it does not parse.
function splitHostPort(address: string): { host: string; port: number } | undefined {
  const colon = address.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const port = Number(address.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { host: address.slice(0, colon), port };
}

/** What both ends know about one connection: its UID (ConnID xor ConnID) and who dialled. */
export interface ConnectionIdentity {
  readonly uid: bigint;
  /** True on the side that dialled. */
  readonly outbound: boolean;
  readonly localName: PeerName;
  readonly remoteName: PeerName;
}

/**
 * `dialer` (default): the connection dialled by the lower-named peer wins, then the lower UID.
 * The survivor depends on neither arrival order nor chance, so a peer can tell before dialling
 * whether its dial would displace the connection it already has.
 * `uid`: the original's rule (lower UID wins), for a remote that does not share ours.
 */
export type TieBreakRule = 'dialer' | 'uid';

/**
 * Of two connections between the same pair of peers, the one to keep. Both ends compute the
 * same answer, since UIDs are equal on both sides and the dialer is a fact about the pair.
 * Undefined when nothing tells them apart (equal UIDs): close both, as the original does.
 */
export function preferConnection<T extends ConnectionIdentity>(a: T, b: T, rule: TieBreakRule = 'dialer'): T | undefined {
  if (a.localName !== b.localName || a.remoteName !== b.remoteName) {
    throw new WeaveError('INVALID_ARGUMENT', 'preferConnection: the connections join different peers');
  }
  if (rule === 'dialer') {
    const dialerA = a.outbound ? a.localName : a.remoteName;
    const dialerB = b.outbound ? b.localName : b.remoteName;
    if (dialerA !== dialerB) return dialerA < dialerB ? a : b;
  }
  if (a.uid === b.uid) return undefined;
  return a.uid < b.uid ? a : b;
}

interface Target {
  phase: 'waiting' | 'attempting' | 'connected';
  lastError: string | undefined;
  /** Scheduled time of the next (or current) try; undefined = never. */
  tryAfterMs: number | undefined;
  retryIntervalMs: number;
  /** Set when our connection here lost a duplicate tie-break: wait while this peer is connected. */
  heldFor: PeerName | undefined;
  /** Whether the winning connection to `heldFor` has been seen since (its report may come later). */
  heldSeen: boolean;
}

/** What a dropped target leaves behind (see evaluate). */
type Backoff = Pick<Target, 'lastError' | 'tryAfterMs' | 'retryIntervalMs'>;

interface OurConnection {
  address: string;
  peer: PeerName;
  outbound: boolean;
}

export class ConnectionMaker {
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly deps: ConnectionMakerDeps;
  private readonly ourName: PeerName;
  private readonly port: number;
  private readonly discovery: boolean;

  /** Direct peers keyed by the text the user gave (mesh `directPeers`). */
  private directPeers = new Map<string, PeerAddress>();
  private readonly byAddress = new Map<string, Target>();
  /** Backoffs of waiting targets dropped while in force, by address, until they lapse. */
  private readonly backoffs = new Map<string, Backoff>();
  private readonly connections = new Map<string, OurConnection>();
  private topology: { connections: TopologyConnection[]; connectedPeers: PeerName[] } = { connections: [], connectedPeers: [] };

  private started = false;
  private timer: TimerHandle | undefined;
  private passing = false;
  private passAgain = false;
  /** What the direct peers' host names resolved to last (lookupHost), by name, and when. */
  private readonly hostIps = new Map<string, { ips: readonly string[]; atMs: number }>();
  /** Host names being looked up: one lookup per name at a time, so answers land in order. */
  private readonly lookingUp = new Set<string>();
  /** Whether the direct peers were saved since we started (setDirectPeers). */
  private savedOnce = false;

  constructor(deps: ConnectionMakerDeps, opts: ConnectionMakerOptions) {
    const port = opts.port ?? DEFAULT_MESH_PORT;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new WeaveError('INVALID_ARGUMENT', `invalid mesh port ${String(port)}`);
    }
    this.deps = deps;
    this.clock = deps.clock;
    this.random = deps.random;
    this.log = deps.logger.child({ component: 'connection-maker' });
    this.ourName = opts.ourName;
    this.port = port;
    this.discovery = opts.discovery ?? true;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.pass();
  }

  /** Cancels the retry timer; reports arriving afterwards update state but dial nothing. */
  stop(): void {
    this.started = false;
    this.timer?.cancel();
    this.timer = undefined;
  }

  // ---- direct peers --------------------------------------------------------------------

  /**
   * Adds direct peers (`replace`: instead of the current ones) and retries them now. Returns one
   * message per address that does not parse; the others are still taken (as the original).
   */
  initiate(peers: readonly string[], replace: boolean): string[] {
    const errors: string[] = [];
    const parsed = new Map<string, PeerAddress>();
    for (const peer of peers) {
      try {
        parsed.set(peer, parsePeerAddress(peer, this.port));
      } catch (e) {
        errors.push(errorMessage(e));
      }
    }
    const next = replace ? new Map<string, PeerAddress>() : new Map(this.directPeers);
    for (const [peer, addr] of parsed) next.set(peer, addr);
    this.setDirectPeers(next);
    for (const addr of parsed.values()) {
      // Asking again cuts short any backoff, and lifts a permanent refusal.
      const t = this.byAddress.get(addr.address);
      if (t) this.tryNow(t);
      this.backoffs.delete(addr.address);
    }
    this.pass();
    return errors;
  }

  /**
   * Resolves a direct peer written as a name without a port (see lookupHost): at each dial of it,
   * and every HOST_LOOKUP_REFRESH_MS while it is not dialled for what it resolved to (a name may
   * move to another IP); then a pass. One lookup per name at a time; an answer for a name that is
   * no longer a direct peer is dropped.
   */
  private lookup(addr: PeerAddress): void {
    const lookupHost = this.deps.lookupHost;
    const host = addr.host;
    if (!lookupHost || addr.port !== undefined || tryParseIPv4(host) !== undefined || this.lookingUp.has(host)) return;
    this.lookingUp.add(host);
    const wanted = () => this.started && [...this.directPeers.values()].some((a) => a.host === host && a.port === undefined);
    lookupHost(host).then(
      (ips) => {
        this.lookingUp.delete(host);
        if (!wanted()) return;
        this.hostIps.set(host, { ips, atMs: this.clock.now() });
        this.pass();
      },
      (e: unknown) => {
        this.lookingUp.delete(host);
        // Forgotten as unknown: the dial resolves the name itself and reports its own failure.
        this.hostIps.delete(host);
        this.log.debug({ host, err: errorMessage(e) }, 'direct peer: lookup failed');
        if (wanted()) this.pass();
      },
    );
  }

  /**
   * Removes direct peers, matched by the text given or by the address it normalises to.
   * Existing connections stay up, as in the original; only retries stop.
   */
  forget(peers: readonly string[]): void {
    const next = new Map(this.directPeers);
    for (const peer of peers) {
      next.delete(peer);
      let address: string | undefined;
      try {
        address = parsePeerAddress(peer, this.port).address;
      } catch {
        continue;
      }
      for (const [key, addr] of next) if (addr.address === address) next.delete(key);
    }
    this.setDirectPeers(next);
    for (const host of this.hostIps.keys()) if (![...next.values()].some((a) => a.host === host)) this.hostIps.delete(host);
    this.pass();
  }

  /** The direct peers as given (mesh `Router.Targets`, `/status/targets`). */
  targets(): string[] {
    return [...this.directPeers.keys()];
  }

  // ---- discovery ----------------------------------------------------------------------

  /** Takes a new topology snapshot (if given) and re-evaluates every target. */
  refresh(topology?: DiscoveryTopology): void {
    if (topology) {
      this.topology = {
        connections: [...topology.connections],
        connectedPeers: topology.connectedPeers ? [...topology.connectedPeers] : [],
      };
    }
    this.pass();
  }

  // ---- lifecycle reports from the router ------------------------------------------------

  /** A connection passed the handshake and was added (outbound: we dialled `address`). */
  connectionAdded(address: string, peer: PeerName, outbound = true): void {
    this.connections.set(connKey(address, outbound), { address, peer, outbound });
    if (outbound) {
      this.backoffs.delete(address);
      const t = this.byAddress.get(address) ?? this.newTarget();
      this.byAddress.set(address, t);
      t.phase = 'connected';
      t.heldFor = undefined;
      t.heldSeen = false;
    }
    this.pass();
  }

  /**
   * A connection ended (also accepted for an outbound handshake failure, which the original
   * reports this way). Outbound: if it lived more than RESET_AFTER_MS past its try time the
   * address is retried at once with the backoff reset, else after the next backoff step.
   * `outbound` undefined: outbound unless only an inbound connection is known at `address`.
   */
  connectionTerminated(address: string, err?: unknown, outbound?: boolean): void {
    const dir = outbound ?? (this.connections.has(connKey(address, true)) || !this.connections.has(connKey(address, false)));
    const gone = this.connections.get(connKey(address, dir));
    this.connections.delete(connKey(address, dir));
    // The router's snapshot (refresh) lists the peer as connected until its next refresh, which
    // comes later: judged by it, a discovered target backing off here is dropped as connected
    // elsewhere, and the refresh re-creates it to dial at once (a redial every few ms to a peer
    // that closes on us). The original judges by the list it has just updated, as we do now.
    if (gone && !(err instanceof DuplicateConnectionError) && ![...this.connections.values()].some((c) => c.peer === gone.peer)) {
      this.topology.connectedPeers = this.topology.connectedPeers.filter((p) => p !== gone.peer);
    }
    const t = dir ? this.byAddress.get(address) : undefined;
    // A waiting target has had its outcome already (a second report of one close is ignored).
    if (t && t.phase !== 'waiting') {
      t.phase = 'waiting';
      t.lastError = err === undefined ? undefined : errorMessage(err);
      const now = this.clock.now();
      if (err instanceof DuplicateConnectionError) this.hold(t, err.peer);
      else if (t.tryAfterMs === undefined || now > t.tryAfterMs + RESET_AFTER_MS) this.tryNow(t);
      else this.tryLater(t);
      this.log.info({ address, err: t.lastError }, 'connection terminated');
    }
    this.pass();
  }

  /** Our dial to `address` failed, in the dial itself or in the handshake. */
  connectionFailed(address: string, err: unknown): void {
    this.connections.delete(connKey(address, true));
    const t = this.byAddress.get(address);
    if (!t || t.phase === 'waiting') {
      this.log.debug({ address }, 'failure reported for an address not being dialled');
      return;
    }
    t.phase = 'waiting';
    t.lastError = errorMessage(err);
    if (err instanceof DuplicateConnectionError) this.hold(t, err.peer);
    else this.tryLater(t);
    this.log.info({ address, err: t.lastError, retryInMs: (t.tryAfterMs ?? 0) - this.clock.now() }, 'error during connection attempt');
    this.pass();
  }

  /** Name collision or a connection to ourselves: no retry until the user asks again. */
  connectionRefusedPermanently(address: string, reason: unknown): void {
    this.connections.delete(connKey(address, true));
    const t = this.byAddress.get(address) ?? this.newTarget();
    this.byAddress.set(address, t);
    t.phase = 'waiting';
    t.lastError = errorMessage(reason);
    t.tryAfterMs = undefined;
    t.retryIntervalMs = MAX_RETRY_INTERVAL_MS;
    t.heldFor = undefined;
    t.heldSeen = false;
    this.log.warn({ address, err: t.lastError }, 'connection refused permanently; not retrying');
    this.pass();
  }

  // ---- status ---------------------------------------------------------------------------

  /** Rows for `/status/connections`, sorted by address; `connected` rows duplicate the router's. */
  status(): TargetStatus[] {
    const out: TargetStatus[] = [];
    const connected = this.connectedPeers();
    for (const [address, t] of [...this.byAddress].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const row = (state: TargetState, info: string, tryAfter?: number): TargetStatus => ({
        address,
        state,
        info,
        ...(t.lastError === undefined ? {} : { lastError: t.lastError }),
        ...(tryAfter === undefined ? {} : { tryAfter }),
      });
      if (t.phase === 'connected') out.push(row('connected', ''));
      else if (t.phase === 'attempting') out.push(t.lastError === undefined ? row('connecting', '') : row('retrying', t.lastError));
      else if (t.heldFor !== undefined && connected.has(t.heldFor)) {
        out.push(row('waiting', `connected to ${formatPeerName(t.heldFor)} by another connection`));
      } else {
        const until = t.tryAfterMs === undefined ? 'never' : formatGoTime(t.tryAfterMs);
        if (t.lastError === undefined) out.push(row('waiting', `until: ${until}`, t.tryAfterMs));
        else out.push(row('failed', `${t.lastError}, retry: ${until}`, t.tryAfterMs));
      }
    }
    return out;
  }

  // ---- internals ----------------------------------------------------------------------

  /** A target to try now, or at `address` the backoff a dropped one left there (see evaluate). */
  private newTarget(address?: string): Target {
    let left = address === undefined ? undefined : this.backoffs.get(address);
    if (address !== undefined && left) {
      this.backoffs.delete(address);
      if (this.lapsed(left)) left = undefined;
    }
    return {
      phase: 'waiting', lastError: undefined, tryAfterMs: this.clock.now(), retryIntervalMs: INITIAL_RETRY_INTERVAL_MS,
      ...left,
      heldFor: undefined, heldSeen: false,
    };
  }

  // A backoff left behind lapses as a connection resets it (connectionTerminated): 1 min past
  // its try time.
  private lapsed(b: Backoff): boolean {
    return b.tryAfterMs === undefined || this.clock.now() > b.tryAfterMs + RESET_AFTER_MS;
  }

  private tryNow(t: Target): void {
    t.tryAfterMs = this.clock.now();
    t.retryIntervalMs = INITIAL_RETRY_INTERVAL_MS;
  }

  // A delay uniform in [i/2, 3i/2), then i grows by half, up to the cap.
  private tryLater(t: Target): void {
    const i = t.retryIntervalMs;
    t.tryAfterMs = this.clock.now() + i / 2 + this.random() * i;
    t.retryIntervalMs = Math.min(i * 1.5, MAX_RETRY_INTERVAL_MS);
  }

  // The router may report the loser's close before the winner's arrival, so until the winner
  // is seen the ordinary backoff applies: should the winner never show up, we still retry.
  private hold(t: Target, peer: PeerName): void {
    t.heldFor = peer;
    t.heldSeen = this.connectedPeers().has(peer);
    this.tryLater(t);
  }

  private connectedPeers(): Set<PeerName> {
    const peers = new Set<PeerName>(this.topology.connectedPeers);
    for (const c of this.connections.values()) peers.add(c.peer);
    return peers;
  }

  /**
   * Makes `next` the direct peers, saved first when the list changes (saveTargets), and always
   * the first time: a launch with no peers must replace the list a previous run saved, or a
   * later --resume would dial those again (the original saves on every launch).
   */
  private setDirectPeers(next: Map<string, PeerAddress>): void {
    const before = [...this.directPeers.keys()];
    const after = [...next.keys()];
    if (!this.savedOnce || !(before.length === after.length && before.every((p, i) => p === after[i]))) {
      this.deps.saveTargets?.(after);
      this.savedOnce = true;
    }
    this.directPeers = next;
  }

  // Runs `evaluate` and the dials it asks for. A report arriving from inside `dial` (a router
  // that fails synchronously) only flags another round, so state is never changed mid-pass.
  private pass(): void {
    if (!this.started) return;
    if (this.passing) {
      this.passAgain = true;
      return;
    }
    this.passing = true;
    try {
      do {
        this.passAgain = false;
        for (const { address, direct } of this.evaluate()) {
          if (!this.started) break;
          this.log.info({ address }, 'attempting connection');
          if (direct) for (const addr of this.directPeers.values()) if (addr.address === address) this.lookup(addr);
          try {
            this.deps.dial(address, { direct });
          } catch (e) {
            this.connectionFailed(address, e);
          }
        }
      } while (this.passAgain && this.started);
    } finally {
      this.passing = false;
    }
  }

  private evaluate(): { address: string; direct: boolean }[] {
    const now = this.clock.now();
    const connectedPeers = this.connectedPeers();
    const connectedAddresses = new Set<string>();
    const inboundIps = new Set<string>();
    for (const c of this.connections.values()) {
      connectedAddresses.add(c.address);
      const hp = c.outbound ? undefined : splitHostPort(c.address);
      if (hp) inboundIps.add(hp.host);
    }

    const valid = new Set<string>();
    const direct = new Set<string>();
    const consider = (address: string) => {
      if (connectedAddresses.has(address)) return;
      valid.add(address);
      if (!this.byAddress.has(address)) this.byAddress.set(address, this.newTarget(address));
    };

    let refreshInMs = Infinity;
    for (const addr of this.directPeers.values()) {
      direct.add(addr.address);
      // Written without a port and already connected to us from that IP (or from what the name
      // resolved to): the peer found us, and its real port is unknown, so dialling the default
      // one would likely duplicate.
      if (addr.port === undefined && inboundIps.has(addr.host)) continue;
      const resolved = addr.port === undefined ? this.hostIps.get(addr.host) : undefined;
      if (resolved?.ips.some((ip) => inboundIps.has(ip))) {
        const dueInMs = resolved.atMs + HOST_LOOKUP_REFRESH_MS - now;
        if (dueInMs <= 0) this.lookup(addr);
        else refreshInMs = Math.min(refreshInMs, dueInMs);
        continue;
      }
      consider(addr.address);
    }

    if (this.discovery) {
      for (const c of this.topology.connections) {
        if (c.from === this.ourName || c.to === this.ourName || connectedPeers.has(c.to)) continue;
        const hp = splitHostPort(c.remoteTcpAddr);
        if (!hp) continue;
        // The remote end of an inbound connection is an ephemeral port: try the mesh port.
        consider(c.outbound ? `${hp.host}:${hp.port}` : `${hp.host}:${this.port}`);
      }
    }

    const dials: { address: string; direct: boolean }[] = [];
    let nextInMs = refreshInMs;
    // A backoff left behind holds until it lapses, even if the peer reached us meanwhile, as it
    // does for a connection of ours that closes sooner (one the remote refuses after the handshake).
    for (const [address, b] of this.backoffs) if (this.lapsed(b) || this.byAddress.has(address)) this.backoffs.delete(address);
    for (const [address, t] of this.byAddress) {
      if (t.phase !== 'waiting') continue;
      if (!valid.has(address)) {
        this.byAddress.delete(address);
        if (t.tryAfterMs !== undefined && t.tryAfterMs > now) {
          this.backoffs.set(address, { lastError: t.lastError, tryAfterMs: t.tryAfterMs, retryIntervalMs: t.retryIntervalMs });
        }
        continue;
      }
      if (t.heldFor !== undefined) {
        if (connectedPeers.has(t.heldFor)) {
          t.heldSeen = true;
          continue;
        }
        if (t.heldSeen) {
          // The connection that beat ours is gone: the peer answered here moments ago.
          t.heldFor = undefined;
          t.heldSeen = false;
          this.tryNow(t);
        }
      }
      if (t.tryAfterMs === undefined) continue;
      const dueInMs = t.tryAfterMs - now;
      if (dueInMs <= 0) {
        t.phase = 'attempting';
        dials.push({ address, direct: direct.has(address) });
      } else if (dueInMs < nextInMs) {
        nextInMs = dueInMs;
      }
    }

    this.timer?.cancel();
    this.timer = undefined;
    if (Number.isFinite(nextInMs)) {
      this.timer = this.clock.setTimeout(() => {
        this.timer = undefined;
        this.pass();
      }, nextInMs);
    }
    return dials;
  }
}

function connKey(address: string, outbound: boolean): string {
  return `${outbound ? '>' : '<'}${address}`;
}

/** Go's `time.Time.String()` in UTC, e.g. `2023-11-14 22:13:20.5 +0000 UTC`. */
export function formatGoTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const frac = d.getUTCMilliseconds() === 0 ? '' : `.${p(d.getUTCMilliseconds(), 3).replace(/0+$/, '')}`;
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}${frac} +0000 UTC`;
}
