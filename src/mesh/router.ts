// The mesh router (mesh `router.go`, `local_peer.go`, `connection.go`): accepts and dials TCP
// connections, runs the protocol intro on each, keeps one connection per remote peer, keeps
// the topology (ourselves + what gossip tells us), routes, and the gossip channels.
//
// How it holds together:
// - Transports are injected (`dial`, and `accept()` for inbound streams), so a whole mesh runs in
//   one process over in-memory pipes with a FakeClock; the daemon passes TCP.
// - A connection becomes part of the topology once its intro succeeds. With an overlay (the data
//   plane) it counts as established when the overlay proves the data path; without one at once,
//   as with the original's null overlay.
// - Topology changes of our own bump our version and are broadcast after a 1 s debounce (the
//   original's deferTopologyUpdateDuration); routes are recalculated 100 ms after changes; GC of
//   unreachable peers runs right after a connection goes and with every applied update.
// - A restarted peer (same name, new UID) is accepted while we still hold its old entry, as by
//   the original; it learns that entry from our gossip and supersedes it.
// - Two connections to the same peer (simultaneous dials) keep the same one on both sides
//   (preferConnection), and the loser's address is not re-dialled while the winner lives: the
//   original's "Multiple connections" flapping does not happen.
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError, errorMessage, toWeaveError } from '../core/errors.js';
import { cidrContains, tryParseIPv4, type Cidr } from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import { formatPeerName, type PeerName } from '../core/peer-name.js';
import { ConnectionMaker, DuplicateConnectionError, preferConnection, type TargetStatus } from './connection-maker.js';
import type { OutboundMessage } from './framing.js';
import { decodeGossipMessage } from './gossip-message.js';
import { GossipChannels, type GossipChannel, type Gossiper, type GossipData } from './gossip.js';
import { HEADER_TIMEOUT_MS, runHandshake, type HandshakeResult } from './handshake.js';
import type { MessageConn } from './message-conn.js';
import type { Overlay, OverlayConnection } from './overlay.js';
import { Peer } from './peer.js';
import { Peers } from './peers.js';
import { ProtocolTag, type ProtocolMsg } from './protocol.js';
import { ROUTES_RECALC_DELAY_MS, Routes } from './routes.js';
import { ACCEPT_TOKEN_INTERVAL_MS, TokenBucket } from './token-bucket.js';
import { TopologyDecodeCache, assembleTopologyUpdate, decodeTopologyUpdateEncoded } from './topology-update.js';
import type { MeshTransport } from './transport.js';

/** mesh `deferTopologyUpdateDuration`. */
export const TOPOLOGY_UPDATE_DELAY_MS = 1000;
/** mesh `defaultGossipInterval`. */
export const GOSSIP_INTERVAL_MS = 30_000;
/** After we lose a connection, when our table goes to the neighbours left (see catchUp). */
export const CATCH_UP_DELAY_MS = 2 * TOPOLOGY_UPDATE_DELAY_MS;
export const TOPOLOGY_CHANNEL = 'topology';
/**
 * Inbound streams that may wait for an accept token: one served every 50 ms, a stream further
 * back would wait longer than its dialer waits for our protocol header, and fail anyway.
 */
export const MAX_ACCEPT_QUEUE = Math.floor(HEADER_TIMEOUT_MS / ACCEPT_TOKEN_INTERVAL_MS);

export interface MeshRouterDeps {
  clock: Clock;
  logger: Logger;
  randomBytes: (n: number) => Buffer;
  /** Uniform in [0, 1). */
  random: () => number;
  /** Opens a stream to `host:port` (TCP in production, pipes in tests). */
  dial(address: string): Promise<MeshTransport>;
  /** Persists the direct peers before a change to them takes effect (ConnectionMakerDeps.saveTargets). */
  saveTargets?(targets: string[]): void;
  /** IPv4 addresses of a host name (ConnectionMakerDeps.lookupHost). */
  lookupHost?(host: string): Promise<string[]>;
}

export interface MeshRouterOptions {
  name: PeerName;
  nickName: string;
  /** Port we listen on; discovered peers are dialled at `<ip>:<port>`. */
  port: number;
  password?: string;
  trustedSubnets?: Cidr[];
  discovery?: boolean;
  /** 0 = unlimited. */
  connLimit?: number;
  minProtocolVersion?: number;
  /** The data plane; without one connections are established once added. */
  overlay?: Overlay;
}

export interface LocalConnection {
  readonly remote: Peer;
  readonly address: string;
  readonly outbound: boolean;
  readonly connUid: bigint;
  readonly untrusted: boolean;
  readonly conn: MessageConn;
  established: boolean;
  overlay?: OverlayConnection;
}

/** Connection status rows as the original's LocalConnectionStatus. */
export interface LocalConnectionRow {
  address: string;
  outbound: boolean;
  state: string;
  info: string;
  attrs: Record<string, unknown> | null;
  /** The overlay carrying the connection's traffic (live connections with an overlay). */
  overlay?: string;
}

class TopologyData implements GossipData {
  /** The last encoding, while the table and the names are as they were (one send to several neighbours). */
  private memo: { generation: number; ourStamp: number; out: Buffer[] } | undefined;
  constructor(private readonly peers: Peers, readonly names: Set<PeerName>) {}
  encode(): Buffer[] {
    const { generation } = this.peers;
    const ourStamp = this.peers.ourself.stamp;
    if (this.memo && this.memo.generation === generation && this.memo.ourStamp === ourStamp) return this.memo.out;
    // Each peer's entry is encoded once per change of that peer (Peers keeps it), not per send.
    const entries = this.peers.encodedPeers(this.names);
    const out = entries.length ? [assembleTopologyUpdate(entries)] : [];
    this.memo = { generation, ourStamp, out };
    return out;
  }
  merge(other: GossipData): GossipData {
    if (other instanceof TopologyData) for (const n of other.names) this.names.add(n);
    this.memo = undefined;
    return this;
  }
}

export class MeshRouter {
  readonly ourself: Peer;
  readonly peers: Peers;
  readonly routes: Routes;
  readonly channels: GossipChannels;
  readonly connectionMaker: ConnectionMaker;
  private readonly deps: MeshRouterDeps;
  private readonly opts: Required<Omit<MeshRouterOptions, 'password' | 'overlay'>> & { password?: string; overlay?: Overlay };
  private readonly extraFeatures = new Map<string, string>();
  private readonly log: Logger;
  private readonly connections = new Map<PeerName, LocalConnection>();
  private readonly handshaking = new Set<MeshTransport>();
  private readonly acceptLimiter: TokenBucket;
  private acceptQueued = 0;
  private topologyTimer: TimerHandle | undefined;
  /** Peers whose entries go with our next topology update, besides ours. */
  private readonly topologyNames = new Set<PeerName>();
  private routesTimer: TimerHandle | undefined;
  private gossipTimer: TimerHandle | undefined;
  private catchUpTimer: TimerHandle | undefined;
  private topologyChannel!: GossipChannel;
  private running = false;
  private refreshQueued = false;
  /**
   * Connections torn down, in the handshake or after it, both ways, except those to ourselves
   * (mesh ConnectionTerminated): weave_connection_terminations_total.
   */
  terminationCount = 0;
  /** Called whenever connections or their states change (metrics, status). */
  onConnectionsChanged: () => void = () => {};

  constructor(deps: MeshRouterDeps, opts: MeshRouterOptions) {
    this.deps = deps;
    this.log = deps.logger;
    this.opts = {
      trustedSubnets: [],
      discovery: true,
      connLimit: 200,
      minProtocolVersion: 1,
      ...opts,
    };
    opts.overlay?.addFeaturesTo(this.extraFeatures);
    const uid = deps.randomBytes(8).readBigUInt64BE() || 1n;
    const shortId = deps.randomBytes(2).readUInt16BE() & 0xfff;
    this.ourself = Peer.local({ name: opts.name, nickName: opts.nickName, uid, shortId });
    const randomInt = (bound: number) => Math.floor(deps.random() * bound);
    this.peers = new Peers({ ourself: this.ourself, randomInt, logger: deps.logger });
    this.routes = new Routes({ peers: this.peers, randomInt });
    this.acceptLimiter = new TokenBucket({ clock: deps.clock }, {});
    this.channels = new GossipChannels({
      clock: deps.clock,
      logger: deps.logger,
      net: {
        ourName: opts.name,
        nextHop: (dst) => {
          const h = this.routes.unicastAll(dst);
          return h === undefined || h === 0 ? undefined : h;
        },
        broadcastHops: (src) => this.routes.broadcastAll(src),
        gossipTargets: (except) => this.routes.randomNeighbours(except ?? opts.name),
        sendTo: (n, msg) => this.sendTo(n, msg),
      },
    });
    this.topologyChannel = this.channels.add(TOPOLOGY_CHANNEL, this.topologyGossiper());
    this.connectionMaker = new ConnectionMaker(
      {
        clock: deps.clock,
        random: deps.random,
        logger: deps.logger.child({ component: 'connection-maker' }),
        dial: (address, attempt) => void this.dial(address, attempt.direct),
        ...(deps.saveTargets ? { saveTargets: deps.saveTargets } : {}),
        ...(deps.lookupHost ? { lookupHost: deps.lookupHost } : {}),
      },
      { ourName: opts.name, port: opts.port, discovery: this.opts.discovery },
    );
    this.peers.onGC((removed) => {
      for (const p of removed) this.log.info({ peer: p.toString() }, `Removed unreachable peer ${p.toString()}`);
    });
  }

  get name(): PeerName {
    return this.opts.name;
  }

  get usingPassword(): boolean {
    return !!this.opts.password;
  }

  /** A route recalculation is scheduled: the routing tables do not yet reflect the topology held. */
  get routesPending(): boolean {
    return this.routesTimer !== undefined;
  }

  /**
   * Whether `name` is ourselves, or a peer the topology holds and gossip has a route to. The
   * topology is asked too: routes are recalculated only 100 ms after a change, and until then
   * they still lead to a peer the topology has just dropped (`weave rmpeer` asked within those
   * 100 ms refused a killed owner as reachable while `weave status ipam` showed it unreachable).
   */
  reachable(name: PeerName): boolean {
    return name === this.name || (this.peers.has(name) && this.routes.unicastAll(name) !== undefined);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.connectionMaker.start();
    this.gossipTimer = this.deps.clock.setInterval(() => this.channels.gossipAll(), GOSSIP_INTERVAL_MS);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.connectionMaker.stop();
    this.acceptLimiter.stop();
    for (const t of [this.gossipTimer, this.topologyTimer, this.routesTimer, this.catchUpTimer]) t?.cancel();
    for (const t of this.handshaking) t.close();
    for (const c of [...this.connections.values()]) c.conn.close(new WeaveError('CANCELLED', 'router stopping'));
  }

  /** Adds a gossip channel for a service (IPAM, DNS). */
  newGossip(name: string, gossiper: Gossiper): GossipChannel {
    return this.channels.add(name, gossiper);
  }

  // --- connections ----------------------------------------------------------------------------

  private trusts(address: string): boolean {
    const ip = tryParseIPv4(address.slice(0, address.lastIndexOf(':')));
    return ip !== undefined && this.opts.trustedSubnets.some((s) => cidrContains(s, ip));
  }

  /** `direct`: a peer the user asked for, which may be one we never heard of (see handshake). */
  private async dial(address: string, direct = true): Promise<void> {
    let transport: MeshTransport;
    try {
      transport = await this.deps.dial(address);
    } catch (e) {
      this.connectionMaker.connectionFailed(address, toWeaveError(e));
      return;
    }
    if (!this.running) {
      transport.close();
      return;
    }
    await this.handshake(transport, address, true, direct);
  }

  /** An inbound stream (the daemon's TCP listener calls this). */
  accept(transport: MeshTransport): void {
    if (!this.running) {
      transport.close();
      return;
    }
    if (this.acceptLimiter.tryTake()) {
      this.startAccepted(transport);
      return;
    }
    // Out of tokens the original accepts nothing until the next one, and the kernel's backlog
    // holds the rest: a burst is slowed, nobody is refused. The streams reach us accepted, so
    // they queue here instead, as far as they can be served in time (MAX_ACCEPT_QUEUE).
    if (this.acceptQueued >= MAX_ACCEPT_QUEUE) {
      this.log.warn({ remote: transport.remoteAddress }, 'connection refused: too many connection attempts');
      transport.close();
      return;
    }
    this.acceptQueued++;
    this.acceptLimiter.wait().then(
      () => {
        this.acceptQueued--;
        if (this.running) this.startAccepted(transport);
        else transport.close();
      },
      () => {
        this.acceptQueued--;
        transport.close();
      },
    );
  }

  private startAccepted(transport: MeshTransport): void {
    this.log.info({ remote: transport.remoteAddress }, `->[${transport.remoteAddress}] connection accepted`);
    void this.handshake(transport, transport.remoteAddress, false);
  }

  private async handshake(transport: MeshTransport, address: string, outbound: boolean, direct = true): Promise<void> {
    this.handshaking.add(transport);
    let result: HandshakeResult;
    let conn: MessageConn;
    try {
      ({ result, conn } = await runHandshake(
        { transport, clock: this.deps.clock, randomBytes: this.deps.randomBytes, logger: this.log },
        {
          outbound,
          name: this.opts.name,
          nickName: this.opts.nickName,
          uid: this.ourself.uid,
          shortId: this.ourself.shortId,
          ...(this.opts.password ? { password: this.opts.password } : {}),
          trustRemote: this.trusts(transport.remoteAddress),
          minVersion: this.opts.minProtocolVersion,
          extraFeatures: this.extraFeatures,
        },
      ));
    } catch (e) {
      const w = toWeaveError(e);
      this.log.info({ remote: address, err: w.message }, `->[${address}] connection shutting down due to error during handshake: ${w.message}`);
      this.terminationCount++;
      if (outbound) this.connectionMaker.connectionFailed(address, w);
      return;
    } finally {
      this.handshaking.delete(transport);
    }
    const remoteName = result.remote.name;
    const remoteLabel = `${formatPeerName(remoteName)}(${result.remote.nickName})`;
    // `toSelf`: the original does not count connecting to ourselves as a termination.
    const refuse = (err: WeaveError, permanent: boolean, toSelf = false) => {
      this.log.info({ remote: address, peer: remoteLabel, err: err.message }, `->[${address}|${remoteLabel}]: connection shutting down due to error: ${err.message}`);
      conn.close(err);
      if (!toSelf) this.terminationCount++;
      if (!outbound) return;
      if (permanent) this.connectionMaker.connectionRefusedPermanently(address, err.message);
      else this.connectionMaker.connectionFailed(address, err);
    };
    if (remoteName === this.opts.name) {
      // Same name, another UID: another router was given (or derived) our name (mesh
      // peerNameCollisionError). Neither is retried.
      if (result.remote.uid !== this.ourself.uid) {
        const us = `${formatPeerName(this.opts.name)}(${this.opts.nickName})`;
        refuse(new WeaveError('CONFLICT', `local "${us}" and remote "${remoteLabel}" peer names collision`), true);
      } else refuse(new WeaveError('INVALID_ARGUMENT', 'cannot connect to ourself'), true, true);
      return;
    }
    // A discovered address may only lead to a peer the topology already told us of (mesh
    // acceptNewPeer): else a stale address that someone else now uses would bring in a stranger.
    if (outbound && !direct && !this.peers.has(remoteName)) {
      refuse(new WeaveError('NOT_FOUND', `Found unknown remote name: ${formatPeerName(remoteName)} at ${address}`), false);
      return;
    }
    const candidate = Peer.fromSummary({
      name: remoteName,
      nickName: result.remote.nickName,
      uid: result.remote.uid,
      version: 0n,
      shortId: result.remote.shortId ?? 0,
      hasShortId: result.remote.shortId !== undefined,
    });
    const remote = this.peers.fetchWithDefault(candidate);
    // Another incarnation of a peer we hold (it restarted: same name, new UID), or one we only
    // know as a placeholder, is accepted as the original does (Weave Net PR #1641, mesh PR #29):
    // the full gossip we send down a new connection includes its old entry, so it moves its
    // version past it and its next update supersedes that entry everywhere. Refusing it instead
    // kept it out until every router had collected the old entry, which other peers' stale
    // entries keep reachable until their updates arrive (and, if gossip misses one, until a
    // periodic gossip, up to 30 s later).
    const restarted = remote !== candidate && remote.uid !== result.remote.uid && remote.uid !== 0n;
    const existing = this.connections.get(remoteName);
    const local: LocalConnection = { remote, address, outbound, connUid: result.connUid, untrusted: result.untrusted, conn, established: false };
    if (existing) {
      // The original's rule (lower connection UID wins), which Go peers apply too, so both ends
      // of a mixed pair keep the same connection; the loser is not re-dialled (see onClose).
      const keep = preferConnection(
        { uid: existing.connUid, outbound: existing.outbound, localName: this.opts.name, remoteName },
        { uid: local.connUid, outbound: local.outbound, localName: this.opts.name, remoteName },
        'uid',
      );
      const loser = keep === undefined ? local : keep.uid === existing.connUid && keep.outbound === existing.outbound ? local : existing;
      const dup = new DuplicateConnectionError(remoteName, remoteLabel, `${formatPeerName(this.opts.name)}(${this.opts.nickName})`);
      this.peers.dereference(remoteName);
      if (loser === local) {
        conn.close(dup);
        this.terminationCount++;
        if (outbound) this.connectionMaker.connectionTerminated(address, dup, outbound);
        return;
      }
      this.connections.delete(remoteName);
      existing.conn.close(dup);
    }
    if (this.opts.connLimit > 0 && this.connections.size >= this.opts.connLimit) {
      this.peers.dereference(remoteName);
      refuse(new WeaveError('UNAVAILABLE', `Connection limit reached (${this.opts.connLimit})`), false);
      return;
    }
    if (this.opts.overlay) {
      try {
        local.overlay = this.opts.overlay.prepareConnection({
          remoteName,
          remoteNickName: result.remote.nickName,
          remoteAddress: transport.remoteAddress,
          outbound,
          connUid: result.connUid,
          sessionKey: result.untrusted ? result.sessionKey : undefined,
          features: result.remote.features,
          sendControl: (body) => {
            if (!conn.closed) conn.send(ProtocolTag.OverlayControlMsg, body);
          },
          established: () => this.overlayEstablished(local),
          failed: (err) => {
            if (!conn.closed) conn.close(err);
          },
        });
      } catch (e) {
        this.peers.dereference(remoteName);
        refuse(toWeaveError(e), false);
        return;
      }
    }
    this.connections.set(remoteName, local);
    this.ourself.addConnection({ remoteName, remoteTcpAddr: address, outbound, established: false });
    this.log.info({ remote: address, peer: remoteLabel, version: result.version }, `->[${address}|${remoteLabel}]: connection ready; using protocol version ${result.version}`);
    if (restarted) this.log.info({ remote: address, peer: remoteLabel }, `->[${address}|${remoteLabel}]: connection added (restarted peer)`);
    // Reported before start(), as the original registers a connection before reading from it:
    // start() delivers what arrived with the handshake, and a bad frame there closes the
    // connection at once, whose termination must not come before its addition (the maker
    // would take the target as connected for good).
    this.connectionMaker.connectionAdded(address, remoteName, outbound);
    conn.start({
      onMessage: (m) => this.onMessage(local, m),
      onClose: (err) => this.onClose(local, err),
    });
    if (conn.closed) return;
    this.topologyChanged(remoteName);
    if (local.overlay) {
      local.overlay.confirm();
      this.onConnectionsChanged();
      return;
    }
    this.overlayEstablished(local);
  }

  /** The data path to the remote works (at once without an overlay). */
  private overlayEstablished(local: LocalConnection): void {
    if (local.established || this.connections.get(local.remote.name) !== local || local.conn.closed) return;
    local.established = true;
    this.ourself.establishConnection(local.remote.name);
    this.log.info({ peer: local.remote.toString() }, `->[${local.address}|${local.remote.toString()}]: connection fully established`);
    this.topologyChanged();
    this.channels.gossipDown(local.remote.name);
    this.onConnectionsChanged();
  }

  private onMessage(c: LocalConnection, m: ProtocolMsg): void {
    switch (m.tag) {
      case ProtocolTag.Heartbeat:
        return;
      case ProtocolTag.Gossip:
      case ProtocolTag.GossipUnicast:
      case ProtocolTag.GossipBroadcast: {
        let g;
        try {
          g = decodeGossipMessage(m.tag, m.body);
        } catch (e) {
          c.conn.close(toWeaveError(e, 'DECODE_FAILED'));
          return;
        }
        this.channels.get(g.channel).deliver(g.tag, g.src, g.payload, 'dst' in g ? g.dst : undefined, c.remote.name, m.wire);
        return;
      }
      case ProtocolTag.OverlayControlMsg:
        c.overlay?.controlMessage(m.body);
        return;
      default:
        // Unknown tags are ignored, as the original does.
        return;
    }
  }

  private onClose(c: LocalConnection, err: WeaveError | undefined): void {
    c.overlay?.stop();
    const remoteLabel = c.remote.toString();
    // Counted whether it was still ours or had lost a tie-break to another connection.
    this.terminationCount++;
    if (this.connections.get(c.remote.name) === c) {
      this.connections.delete(c.remote.name);
      this.ourself.deleteConnection(c.remote.name);
      this.peers.dereference(c.remote.name);
      this.log.info({ peer: remoteLabel, err: err?.message }, `->[${c.address}|${remoteLabel}]: connection deleted${err ? `: ${err.message}` : ''}`);
      // Once stopped there is nobody to tell and nothing to route: a router closing all its
      // connections would otherwise search the whole table after each, and re-arm its timers.
      if (this.running) {
        this.topologyChanged();
        this.garbageCollect();
        this.catchUp();
      }
    }
    // A connection that goes while another one to the same peer lives was a duplicate, whoever
    // closed it (the remote may have closed it first): the maker must not re-dial it then.
    const other = this.connections.get(c.remote.name);
    const why = other && other !== c && !(err instanceof DuplicateConnectionError) ? new DuplicateConnectionError(c.remote.name, remoteLabel) : err;
    this.connectionMaker.connectionTerminated(c.address, why, c.outbound);
    this.onConnectionsChanged();
  }

  /** Sends one protocol message to a connected neighbour. */
  private sendTo(neighbour: PeerName, msg: OutboundMessage): boolean {
    const c = this.connections.get(neighbour);
    if (!c || c.conn.closed || msg.message.length === 0) return false;
    try {
      c.conn.sendMessage(msg);
      return true;
    } catch (e) {
      this.log.debug({ peer: c.remote.toString(), err: errorMessage(e) }, 'send failed');
      return false;
    }
  }

  // --- topology -------------------------------------------------------------------------------

  /**
   * Our own entry changed: routes soon, a broadcast of it after the debounce. `remote` is a peer we
   * just connected to: its entry goes with ours, as the original's (mesh broadcastPeerUpdate), so
   * a peer that learns of our new link also learns of the peer at its end (a receiver that gets
   * the newcomer's entry before ours cannot reach it yet and collects it at once).
   */
  private topologyChanged(remote?: PeerName): void {
    this.scheduleRoutes();
    if (remote !== undefined) this.topologyNames.add(remote);
    this.topologyTimer ??= this.deps.clock.setTimeout(() => {
      this.topologyTimer = undefined;
      const names = new Set(this.topologyNames);
      this.topologyNames.clear();
      names.add(this.opts.name);
      // Broadcast along our tree, so that every peer hears of it. Weave Net 2.8.1 gossips it
      // instead (tag 4 in the wire vectors) to a few random neighbours, favouring those behind
      // which many peers lie, and each receiver passes on what it learnt the same way: a router
      // hanging off a busy one alone then waits for periodic gossip rounds (30 s each) until it
      // happens to be picked (docs/mesh.md). Either kind is merged by any router, so mixed meshes
      // agree.
      this.topologyChannel.broadcast(new TopologyData(this.peers, names));
    }, TOPOLOGY_UPDATE_DELAY_MS);
    this.refreshTargets();
  }

  /**
   * Once the updates of a lost connection have spread, our whole table goes to the neighbours a
   * periodic gossip would pick (all of them in a sparse mesh, 2·log2(n) in a dense one, where
   * trees are shallow and one answer is enough), and each answers with the entries it holds
   * newer (applyTopology). Broadcasts follow trees that each router computes from its own view,
   * and while views still show the link we lost, routers reached through it miss the updates of
   * the same change: the peer at its other end, or the other neighbours of a router that died.
   * Nothing else would tell them before a periodic gossip, up to 30 s later (measured: 27 s for
   * two routers of 300).
   */
  private catchUp(): void {
    this.catchUpTimer ??= this.deps.clock.setTimeout(() => {
      this.catchUpTimer = undefined;
      const all = this.topologyChannel.gossiper.gossip();
      if (all) this.topologyChannel.send(all);
    }, CATCH_UP_DELAY_MS);
  }

  private scheduleRoutes(): void {
    this.routesTimer ??= this.deps.clock.setTimeout(() => {
      this.routesTimer = undefined;
      this.routes.recalculate();
    }, ROUTES_RECALC_DELAY_MS);
  }

  private garbageCollect(): void {
    const r = this.peers.garbageCollect();
    if (r.removed.length || r.ourselfModified) {
      this.scheduleRoutes();
      if (r.ourselfModified) this.topologyChanged();
      this.refreshTargets();
    }
  }

  /**
   * Merges a topology update; with `delta`, returns what it taught us (to gossip on). Gossip from
   * a neighbour (`from`) that holds older entries than ours gets ours back at once: the sender
   * is behind (see catchUp), and would otherwise wait for a periodic gossip to reach it.
   */
  private applyTopology(msg: Buffer, defs: TopologyDecodeCache, delta: boolean, from?: PeerName): GossipData | undefined {
    // Entries arriving in canonical form are kept as received, so passing them on re-encodes nothing,
    // and entries equal to what we hold are recognised by their bytes and not even decoded.
    const r = this.peers.applyDecoded(decodeTopologyUpdateEncoded(msg, defs, (name) => this.peers.get(name)?.encoded));
    if (r.ourselfModified) this.topologyChanged();
    const improved = delta ? new Set(r.improved) : undefined;
    // Collect at once, as the original's applyUpdate does, and never pass on entries of peers
    // we cannot reach: otherwise peers that left are taught back and forth forever. (Peers
    // keeps who we reach between collections, so this costs what the update changed.)
    const gc = this.peers.garbageCollect();
    if (improved) for (const p of gc.removed) improved.delete(p.name);
    if (from !== undefined && r.stale.length) {
      // What GC just removed we no longer hold: the sender collects it once it has the rest.
      const newer = new Set(r.stale.filter((n) => this.peers.has(n)));
      if (newer.size) this.topologyChannel.sendDown(from, new TopologyData(this.peers, newer));
    }
    if (gc.ourselfModified) this.topologyChanged();
    if (r.changed || gc.removed.length > 0) {
      this.scheduleRoutes();
      this.refreshTargets();
    }
    return improved?.size ? new TopologyData(this.peers, improved) : undefined;
  }

  private topologyGossiper(): Gossiper {
    // The gob type definitions senders repeat in every update, read once (per router).
    const defs = new TopologyDecodeCache();
    return {
      onGossipUnicast: () => {},
      // A broadcast is relayed as received (gossip.ts), so what it taught us is not needed.
      onGossipBroadcast: (_src, update) => this.applyTopology(update, defs, false),
      gossip: () => new TopologyData(this.peers, new Set(this.peers.names())),
      onGossip: (msg, from) => this.applyTopology(msg, defs, true, from),
    };
  }

  /**
   * Tells the connection maker about connections between other peers (discovery), once for a
   * burst of changes: its pass, and with discovery the list of every connection in the table,
   * cost as much as the table is big, and a big mesh changes it with every update it relays.
   * The original hands the refresh to the maker's own goroutine, so it runs later there too.
   */
  private refreshTargets(): void {
    if (this.refreshQueued) return;
    this.refreshQueued = true;
    queueMicrotask(() => {
      this.refreshQueued = false;
      if (this.running) this.refreshTargetsNow();
    });
  }

  private refreshTargetsNow(): void {
    const connections = [];
    // Without discovery the maker only needs to know whom we are connected to.
    for (const p of this.opts.discovery ? this.peers.values() : []) {
      if (p === this.ourself) continue;
      const l = p.connectionList;
      for (let i = 0; i < l.size; i++) {
        const to = l.nameAt(i);
        if (to === this.opts.name) continue;
        connections.push({ from: p.name, to, remoteTcpAddr: l.addressAt(i), outbound: l.outboundAt(i) });
      }
    }
    this.connectionMaker.refresh({ connections, connectedPeers: new Set(this.connections.keys()) });
  }

  // --- targets and status ---------------------------------------------------------------------

  connect(peers: string[], replace: boolean): string[] {
    return this.connectionMaker.initiate(peers, replace);
  }

  forget(peers: string[]): void {
    this.connectionMaker.forget(peers);
  }

  localConnections(): LocalConnection[] {
    return [...this.connections.values()];
  }

  /** Rows of `/status/connections`: live connections, then targets still being worked on. */
  connectionRows(): LocalConnectionRow[] {
    const rows: LocalConnectionRow[] = [];
    for (const c of this.connections.values()) {
      // `%-6v %v` of the overlay's name and the peer, as the original's connection status.
      let info = `${(c.overlay?.displayName() ?? '').padEnd(6)} ${c.remote.toString()}`;
      if (this.usingPassword) info = `${(c.untrusted ? 'encrypted' : 'unencrypted').padEnd(11)} ${info}`;
      const overlayAttrs = c.overlay?.attrs() ?? null;
      const attrs = this.usingPassword && c.untrusted ? { encrypted: true, ...overlayAttrs } : overlayAttrs;
      rows.push({
        address: c.address,
        outbound: c.outbound,
        state: c.established ? 'established' : 'pending',
        info,
        attrs,
        ...(c.overlay ? { overlay: c.overlay.displayName() } : {}),
      });
    }
    for (const t of this.connectionMaker.status()) {
      const row = targetRow(t);
      if (row) rows.push(row);
    }
    return rows;
  }
}

function targetRow(t: TargetStatus): LocalConnectionRow | undefined {
  if (t.state === 'connected') return undefined;
  return { address: t.address, outbound: true, state: t.state, info: t.info, attrs: null };
}
