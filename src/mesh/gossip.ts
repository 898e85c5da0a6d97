// The gossip API that IPAM, DNS and the topology plug into (mesh `gossip.go`,
// `gossip_channel.go`, `surrogate_gossiper.go`), without knowing about connections:
//   - gossip: state sent to a few neighbours chosen at random (weighted by how many peers they
//     reach); whatever a receiver learns (its "delta") it gossips on, until nothing is new;
//   - broadcast: an update relayed along the broadcast tree of its source to every peer;
//   - unicast: a message relayed hop by hop along the unicast routes to one peer (never back to
//     the neighbour it came from: see relayUnicast).
// A channel nobody here runs gets a surrogate gossiper that relays its messages untouched, so
// peers without IPAM or DNS still carry that gossip (Weave Net's test 120).
//
// Sends are coalesced per (neighbour, channel): data queued while a send is pending merges into
// it (GossipData.merge), so a burst of topology changes costs one message per neighbour.
import * as crypto from 'node:crypto';
import { createHash } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PeerName } from '../core/peer-name.js';
import type { OutboundMessage } from './framing.js';
import { encodeGossipOutbound } from './gossip-message.js';
import { ProtocolTag } from './protocol.js';

/** Mergeable state or updates of one channel. */
export interface GossipData {
  /** One or more gob payloads (each becomes its own message). */
  encode(): Buffer[];
  /** This data merged with `other` (may return this, mutated). */
  merge(other: GossipData): GossipData;
}

/** What a channel's owner (IPAM, DNS, topology) implements. */
export interface Gossiper {
  onGossipUnicast(src: PeerName, msg: Buffer): void;
  /** Applies a broadcast; returns what was new (undefined: nothing). */
  onGossipBroadcast(src: PeerName, update: Buffer): GossipData | undefined;
  /** The complete state, for periodic gossip and new connections (undefined: nothing to say). */
  gossip(): GossipData | undefined;
  /** Applies gossip from the neighbour `from`; returns the delta to gossip on (undefined: nothing new). */
  onGossip(msg: Buffer, from?: PeerName): GossipData | undefined;
}

/** What channels need from the router: its name, its routes and its neighbours' links. */
export interface GossipNetwork {
  readonly ourName: PeerName;
  /** Next hop towards `dst` over all connections (unicastAll), or undefined. */
  nextHop(dst: PeerName): PeerName | undefined;
  /** Neighbours a broadcast from `src` must go to next (broadcastAll). */
  broadcastHops(src: PeerName): readonly PeerName[];
  /** A few neighbours for gossip (randomNeighbours), never `except` (the neighbour it came from). */
  gossipTargets(except?: PeerName): PeerName[];
  /** Sends one protocol message to a neighbour; false if not connected. */
  sendTo(neighbour: PeerName, msg: OutboundMessage): boolean;
}

class BytesData implements GossipData {
  constructor(readonly parts: Buffer[]) {}
  encode(): Buffer[] {
    return this.parts;
  }
  merge(other: GossipData): GossipData {
    return new BytesData([...this.parts, ...other.encode()]);
  }
}

/** Wraps raw payloads as GossipData (used for relaying and by the surrogate). */
export function bytesGossipData(...parts: Buffer[]): GossipData {
  return new BytesData(parts);
}

/**
 * Relays a channel nobody here runs. Gossip is passed on once per distinct payload (a bounded
 * memory of hashes stops loops); broadcasts are relayed by the channel itself.
 */
export class SurrogateGossiper implements Gossiper {
  private readonly seen = new Map<string, number>();
  private readonly clock: Clock;
  private static readonly KEEP_MS = 2 * 60_000;
  private static readonly KEEP_MAX = 4096;

  constructor(deps: { clock: Clock }) {
    this.clock = deps.clock;
  }

  onGossipUnicast(): void {}

  onGossipBroadcast(_src: PeerName, update: Buffer): GossipData | undefined {
    return bytesGossipData(update);
  }

  gossip(): GossipData | undefined {
    return undefined;
  }

  onGossip(msg: Buffer): GossipData | undefined {
    const now = this.clock.now();
    // Oldest first (a hash is inserted once, when first seen): stop at the first one still kept.
    // A sweep of the whole memory per message made 40 000 distinct payloads block for 8 s.
    for (const [k, t] of this.seen) {
      if (now - t > SurrogateGossiper.KEEP_MS || this.seen.size >= SurrogateGossiper.KEEP_MAX) this.seen.delete(k);
      else break;
    }
    const h = createHash('sha256').update(msg).digest('base64');
    if (this.seen.has(h)) return undefined;
    this.seen.set(h, now);
    return bytesGossipData(msg);
  }
}

const oneShotHash = (crypto as { hash?: (algorithm: string, data: Uint8Array, encoding: 'binary') => string }).hash;

export class GossipChannel {
  readonly name: string;
  readonly gossiper: Gossiper;
  private readonly net: GossipNetwork;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** Pending coalesced gossip per neighbour. */
  private readonly pending = new Map<PeerName, GossipData>();
  /** Broadcasts seen lately (hash → time): each is applied and relayed once. */
  private readonly recentBroadcasts = new Map<string, number>();
  private static readonly BROADCAST_MEMORY_MS = 60_000;
  private static readonly BROADCAST_MEMORY_MAX = 4096;
  private flushScheduled = false;

  constructor(deps: { net: GossipNetwork; clock: Clock; logger: Logger }, name: string, gossiper: Gossiper) {
    this.name = name;
    this.gossiper = gossiper;
    this.net = deps.net;
    this.clock = deps.clock;
    this.log = deps.logger;
  }

  /**
   * Gossips `data` to a few random neighbours (coalesced): mesh `GossipNeighbourSubset`, and the
   * relay of a delta, which as the original's never goes back to the neighbour `from` it came from.
   */
  send(data: GossipData, from?: PeerName): void {
    for (const n of this.net.gossipTargets(from)) this.queue(n, data);
  }

  /** Gossips `data` directly to one neighbour (a new connection gets our full state). */
  sendDown(neighbour: PeerName, data: GossipData): void {
    this.queue(neighbour, data);
  }

  private queue(neighbour: PeerName, data: GossipData): void {
    const cur = this.pending.get(neighbour);
    this.pending.set(neighbour, cur ? cur.merge(data) : data);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.clock.setTimeout(() => this.flush(), 0);
    }
  }

  /** Sends everything queued; called on the next turn after the first queue(). */
  flush(): void {
    this.flushScheduled = false;
    const batch = [...this.pending.entries()];
    this.pending.clear();
    // Data sent to several neighbours unchanged (the whole state, memoised by its owner) gives
    // the same payloads: one message, one frame, for all of them.
    let made: Map<Buffer, OutboundMessage> | undefined;
    for (const [n, data] of batch) {
      for (const payload of data.encode()) {
        let msg = made?.get(payload);
        if (!msg) {
          msg = encodeGossipOutbound({ tag: ProtocolTag.Gossip, channel: this.name, src: this.net.ourName, payload });
          if (batch.length > 1) (made ??= new Map()).set(payload, msg);
        }
        this.net.sendTo(n, msg);
      }
    }
  }

  /** Broadcasts an update from us to every peer. */
  broadcast(update: GossipData): void {
    for (const payload of update.encode()) this.relayBroadcast(this.net.ourName, payload);
  }

  /** Sends a message to one peer, relayed along the unicast routes. */
  unicast(dst: PeerName, payload: Buffer): boolean {
    return this.relayUnicast(this.net.ourName, dst, payload);
  }

  /**
   * Passes a unicast on towards `dst`; `from` is the neighbour it came from (none: ours), `wire`
   * the message as it came (sent as it is when it is our own encoding; encodeGossipOutbound).
   */
  relayUnicast(src: PeerName, dst: PeerName, payload: Buffer, from?: PeerName, wire?: Buffer): boolean {
    const hop = this.net.nextHop(dst);
    if (hop === undefined) {
      this.log.debug({ channel: this.name, dst }, 'unicast gossip: no route');
      return false;
    }
    if (hop === from) {
      // Our route to dst leads back to the neighbour that routed it to us, so its routes and ours
      // disagree (a link just went and one of us has not recalculated yet). The wire format has
      // no hop limit (the original's has none either), so passing it back would bounce it between
      // us until one of us recalculates. A shortest route never points back to where it came from.
      this.log.debug({ channel: this.name, src, dst, via: from }, 'unicast gossip: route leads back to the neighbour it came from; dropped');
      return false;
    }
    return this.net.sendTo(hop, encodeGossipOutbound({ tag: ProtocolTag.GossipUnicast, channel: this.name, src, dst, payload }, wire));
  }

  /** Passes a broadcast on along src's tree; `wire` as for relayUnicast. */
  relayBroadcast(src: PeerName, payload: Buffer, wire?: Buffer): void {
    const hops = this.net.broadcastHops(src);
    if (hops.length === 0) return;
    const msg = encodeGossipOutbound({ tag: ProtocolTag.GossipBroadcast, channel: this.name, src, payload }, wire);
    for (const hop of hops) this.net.sendTo(hop, msg);
  }

  private readonly keyBytes = Buffer.alloc(6 + 20);

  /**
   * What a broadcast is remembered by: its source and the SHA-1 of its payload, as one flat
   * 26-char string (a router remembers one per peer's broadcast, so it is kept small). One-shot
   * hashing where Node has it (20.12+) costs a third of a Hash object.
   */
  private broadcastKey(src: PeerName, payload: Uint8Array): string {
    const k = this.keyBytes;
    k.writeUIntBE(src, 0, 6);
    if (!oneShotHash) return createHash('sha1').update(k.subarray(0, 6)).update(payload).digest('binary');
    // The digest as a string: a Buffer result would be an ArrayBuffer of its own per broadcast,
    // which the garbage collector tracks apart and which, by the million, came to dominate.
    k.write(oneShotHash('sha1', payload, 'binary'), 6, 'latin1');
    return k.toString('latin1');
  }

  private firstSighting(src: PeerName, payload: Buffer): boolean {
    const now = this.clock.now();
    const key = this.broadcastKey(src, payload);
    if (this.recentBroadcasts.has(key)) return false;
    if (this.recentBroadcasts.size >= GossipChannel.BROADCAST_MEMORY_MAX) {
      for (const [k, t] of this.recentBroadcasts) {
        if (now - t > GossipChannel.BROADCAST_MEMORY_MS || this.recentBroadcasts.size >= GossipChannel.BROADCAST_MEMORY_MAX) this.recentBroadcasts.delete(k);
        else break;
      }
    }
    this.recentBroadcasts.set(key, now);
    return true;
  }

  /**
   * Handles a gossip message of this channel received from the neighbour `from`; `wire` is the
   * whole message as it came, when it may be passed on as it is (ProtocolMsg.wire).
   */
  deliver(tag: number, src: PeerName, payload: Buffer, dst?: PeerName, from?: PeerName, wire?: Buffer): void {
    try {
      if (tag === ProtocolTag.GossipUnicast) {
        if (dst === this.net.ourName) this.gossiper.onGossipUnicast(src, payload);
        else if (dst !== undefined) this.relayUnicast(src, dst, payload, from, wire);
      } else if (tag === ProtocolTag.GossipBroadcast) {
        // Broadcast trees are computed from each router's own view of the topology; while views
        // disagree two routers can relay one broadcast back and forth. Relaying each broadcast
        // once breaks such cycles (the original had no such guard); updates are idempotent.
        if (!this.firstSighting(src, payload)) return;
        this.gossiper.onGossipBroadcast(src, payload);
        this.relayBroadcast(src, payload, wire);
      } else {
        const delta = this.gossiper.onGossip(payload, from);
        if (delta) this.send(delta, from ?? src);
      }
    } catch (e) {
      // A peer's bad payload must not take the router down; the original logged and dropped it.
      this.log.warn({ channel: this.name, src, err: errorMessage(e) }, 'dropped gossip');
    }
  }
}

/**
 * Surrogate channels kept at most: any peer may name any channel, and each name cost a channel
 * kept for good (20 000 names: 26 MB, and every periodic gossip walks them all). The least
 * recently used surrogate goes first; it holds nothing but its memory of payloads relayed.
 */
export const MAX_SURROGATE_CHANNELS = 64;

/** The channels of one router, by name; unknown names get a surrogate on first use. */
export class GossipChannels {
  private readonly channels = new Map<string, GossipChannel>();
  /** The surrogates among them, least recently used first. */
  private readonly surrogates = new Map<string, GossipChannel>();
  private readonly deps: { net: GossipNetwork; clock: Clock; logger: Logger };

  constructor(deps: { net: GossipNetwork; clock: Clock; logger: Logger }) {
    this.deps = deps;
  }

  /** Registers a channel (IPallocation, nameserver, topology). */
  add(name: string, gossiper: Gossiper): GossipChannel {
    const c = new GossipChannel(this.deps, name, gossiper);
    this.channels.set(name, c);
    this.surrogates.delete(name);
    return c;
  }

  get(name: string): GossipChannel {
    let c = this.channels.get(name);
    if (c) {
      if (this.surrogates.delete(name)) this.surrogates.set(name, c);
      return c;
    }
    for (const old of this.surrogates.keys()) {
      if (this.surrogates.size < MAX_SURROGATE_CHANNELS) break;
      this.surrogates.delete(old);
      this.channels.delete(old);
    }
    c = new GossipChannel(this.deps, name, new SurrogateGossiper({ clock: this.deps.clock }));
    this.channels.set(name, c);
    this.surrogates.set(name, c);
    return c;
  }

  all(): GossipChannel[] {
    return [...this.channels.values()];
  }

  /** Every channel's complete state to random neighbours (periodic gossip, every 30 s). */
  gossipAll(): void {
    for (const c of this.channels.values()) {
      const g = c.gossiper.gossip();
      if (g) c.send(g);
    }
  }

  /** Every channel's complete state down one new connection. */
  gossipDown(neighbour: PeerName): void {
    for (const c of this.channels.values()) {
      const g = c.gossiper.gossip();
      if (g) c.sendDown(neighbour, g);
    }
  }
}
