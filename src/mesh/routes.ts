// Routing tables of our peer (mesh `routes.go`), computed from the topology table.
//
//  - unicast:    destination → next hop, over connections that are established and symmetric
//                (both ends report them, both established). Used for data frames.
//  - unicastAll: the same over every reported connection. Used for gossip, which must flow
//                before the overlay has proven a path.
//  - broadcast(src) / broadcastAll(src): the neighbours to forward a broadcast from `src` to.
//                We search breadth-first from `src` until we reach ourselves; our neighbours not
//                reached by then are the ones whose tree parent we are, so in a stable topology
//                a broadcast reaches every peer exactly once. Computed on demand, cached per
//                source until the next recalculation.
//
// Every table comes from Peer.routes, which is deterministic: peers holding the same topology
// agree, so following next hops strictly shortens the distance and cannot loop.
//
// recalculate() is synchronous; debouncing it (the original waits 100 ms, ROUTES_RECALC_DELAY_MS)
// is the owner's job, as is holding it to a clock.
import { UNKNOWN_PEER_NAME, type PeerName } from '../core/peer-name.js';
import type { NextHops } from './peer.js';
import type { Peers, RandomInt } from './peers.js';

/** mesh `recalcDeferTime`: route recalculation requests are coalesced over this long. */
export const ROUTES_RECALC_DELAY_MS = 100;

export interface RoutesDeps {
  peers: Peers;
  randomInt: RandomInt;
}

export class Routes {
  private readonly peers: Peers;
  private readonly randomInt: RandomInt;
  private unicastTable: NextHops;
  private unicastAllTable: NextHops;
  private broadcastCache = new Map<PeerName, readonly PeerName[]>();
  private broadcastAllCache = new Map<PeerName, readonly PeerName[]>();
  private readonly changeCallbacks: (() => void)[] = [];

  constructor(deps: RoutesDeps) {
    this.peers = deps.peers;
    this.randomInt = deps.randomInt;
    // Until the first recalculation we only know how to reach ourselves, as the original.
    const us = this.peers.ourself.name;
    this.unicastTable = new Map([[us, UNKNOWN_PEER_NAME]]);
    this.unicastAllTable = new Map([[us, UNKNOWN_PEER_NAME]]);
    this.broadcastCache.set(us, []);
    this.broadcastAllCache.set(us, []);
  }

  /** Called after every recalculation (fastdp drops flows that may now go elsewhere). */
  onChange(cb: () => void): () => void {
    this.changeCallbacks.push(cb);
    return () => {
      const i = this.changeCallbacks.indexOf(cb);
      if (i >= 0) this.changeCallbacks.splice(i, 1);
    };
  }

  /** Rebuilds both unicast tables from the current topology and drops cached broadcast routes. */
  recalculate(): void {
    const ourself = this.peers.ourself;
    this.unicastTable = ourself.routes(undefined, true, this.peers).routes;
    this.unicastAllTable = ourself.routes(undefined, false, this.peers).routes;
    this.broadcastCache = new Map([[ourself.name, this.calculateBroadcast(ourself.name, true)]]);
    this.broadcastAllCache = new Map([[ourself.name, this.calculateBroadcast(ourself.name, false)]]);
    for (const cb of [...this.changeCallbacks]) cb();
  }

  /**
   * Next hop towards `dest` over established, symmetric connections; undefined when it cannot
   * be reached that way. For ourselves it is UNKNOWN_PEER_NAME (0), as in the original.
   */
  unicast(dest: PeerName): PeerName | undefined {
    return this.unicastTable.get(dest);
  }

  /** Next hop towards `dest` over all reported connections (gossip unicast relays use this). */
  unicastAll(dest: PeerName): PeerName | undefined {
    return this.unicastAllTable.get(dest);
  }

  /** Neighbours (in name order) to forward a broadcast from `source` to, over established symmetric connections. */
  broadcast(source: PeerName): readonly PeerName[] {
    return this.lookupOrCalculate(source, this.broadcastCache, true);
  }

  /** Neighbours to forward a broadcast from `source` to, over all connections (gossip broadcast). */
  broadcastAll(source: PeerName): readonly PeerName[] {
    return this.lookupOrCalculate(source, this.broadcastAllCache, false);
  }

  /** Where a data frame for `dest` goes next: undefined for ourselves or when unreachable. */
  lookup(dest: PeerName): PeerName | undefined {
    const hop = this.unicastTable.get(dest);
    return hop === UNKNOWN_PEER_NAME ? undefined : hop;
  }

  /**
   * The neighbours a frame we originate goes to, as the original's network router forwards:
   * `dest` undefined (unknown MAC) → our broadcast tree; ourselves → nobody; a reachable peer →
   * its next hop; a known but unreachable peer → nobody (the original drops the frame).
   */
  lookupOrBroadcast(dest: PeerName | undefined): readonly PeerName[] {
    if (dest === undefined) return this.broadcast(this.peers.ourself.name);
    const hop = this.lookup(dest);
    return hop === undefined ? [] : [hop];
  }

  /**
   * Neighbours for a round of gossip (mesh `randomNeighbours`): min(2·log2(#peers routed),
   * #candidate neighbours) distinct neighbours other than `except`, drawn without replacement
   * with weight = how many destinations are reached through each, so that neighbours behind
   * bottleneck links are favoured. Candidates are weighed in name order, so the choice depends
   * only on the table and the injected random source.
   */
  randomNeighbours(except: PeerName): PeerName[] {
    const weights = new Map<PeerName, number>();
    let total = 0;
    for (const hop of this.unicastAllTable.values()) {
      if (hop === UNKNOWN_PEER_NAME || hop === except) continue;
      weights.set(hop, (weights.get(hop) ?? 0) + 1);
      total++;
    }
    const candidates = [...weights.entries()].sort((a, b) => a[0] - b[0]);
    const needed = Math.floor(Math.min(2 * Math.log2(this.unicastAllTable.size), candidates.length));
    const chosen: PeerName[] = [];
    while (chosen.length < needed && total > 0) {
      let point = this.randomInt(total);
      for (let i = 0; i < candidates.length; i++) {
        const [name, weight] = candidates[i] as [PeerName, number];
        if (point < weight) {
          chosen.push(name);
          candidates.splice(i, 1);
          total -= weight;
          break;
        }
        point -= weight;
      }
    }
    return chosen;
  }

  /** Names of every peer in the topology table (reachable or not yet collected). */
  peerNames(): PeerName[] {
    return this.peers.names();
  }

  private lookupOrCalculate(source: PeerName, cache: Map<PeerName, readonly PeerName[]>, establishedAndSymmetric: boolean): readonly PeerName[] {
    let hops = cache.get(source);
    if (!hops) {
      hops = this.calculateBroadcast(source, establishedAndSymmetric);
      cache.set(source, hops);
    }
    return hops;
  }

  private calculateBroadcast(source: PeerName, establishedAndSymmetric: boolean): readonly PeerName[] {
    const peer = this.peers.get(source);
    if (!peer) return Object.freeze([]);
    const ourself = this.peers.ourself;
    const { found, routes: reached } = peer.routes(ourself.name, establishedAndSymmetric, this.peers);
    const hops: PeerName[] = [];
    if (found) ourself.forEachConnectedPeer(establishedAndSymmetric, reached, this.peers, (remote) => hops.push(remote.name));
    return Object.freeze(hops.sort((a, b) => a - b));
  }
}
