// Distributed IP address allocation (weave `ipam/allocator.go`, `allocate.go`, `claim.go`):
// every peer hands out addresses from its own part of one range, and no address is given twice.
//
// Design note for src/ipam/.
//  - Who owns what: the ring (ring.ts), a CRDT gossiped on the `IPallocation` channel. A peer
//    allocates only from ranges the ring gives it, tracked address by address in its Space
//    (space.ts). Allocation takes the lowest free host address of the subnet asked for.
//  - Moving space: a peer out of space asks another (weighted by reported free space) with a
//    unicast space request; the donor grants an aligned block of at most about half its free
//    space and sends its ring back (or a denial). Claims of a given address owned elsewhere
//    ask the owner for that one address. Pending operations are retried every 5 s and on
//    every ring change. Messages and their bytes are the original's (codec.ts).
//  - The first ring: seeded (`seed=`), or agreed by Paxos over gossip (paxos.ts) between
//    electors once an allocation, claim or prime needs it; observers ask electors to do so.
//  - Persistence: the ring, our name and the owned addresses are written to the injected
//    store before anything depending on them leaves this peer (an address is stored before it
//    is returned, a grant before the ring that shows it is sent); a store write that fails
//    fails the operation and changes nothing.
//  - Cost as the cluster grows: the ring has about two entries per donation and travels whole
//    in each message (a few KB for hundreds of peers); a ring change is broadcast once, free
//    counts travel with the periodic gossip (every 30 s), improvements are gossiped on.
//
// The original's users' complaints this fixes (inventory §12):
//  1. Split brain. A peer meeting a ring seeded by other peers keeps both apart (no merge of
//     unrelated rings) but never drops the connection: the conflict is logged on both sides
//     and shown in status. If our ring has no addresses in use anywhere (by every owner's
//     report, and nothing held or being claimed here) and theirs is preferred (one with
//     addresses in use beats one without, then more seeds, then the lower seeds), we drop
//     ours and join theirs: a new peer that formed a ring before meeting the cluster joins
//     it. A peer holding addresses never drops its ring.
//  2. Duplicates after data loss. A peer allocates only from space it can prove free. With its
//     store (ring + owned addresses persisted before each answer) the proof is the store.
//     Without it (store lost, first start, or a ring seeded or agreed while we had no store),
//     allocations and donations wait until (a) the addresses in use on this host are known:
//     the daemon passes what it found on the bridge to start()/reclaim(); they become claims,
//     processed before any allocation; and (b) when the ring we first learn gives us ranges
//     (we owned them before we lost our memory), we have the newest copy of our own entries:
//     we heard the ring from every IPAM peer we know of and can reach (asking each with a
//     ring-less unicast, which every peer, original or ours, answers with its ring), so grants
//     we made before losing the store, which perhaps only the recipient knows, are merged
//     before we allocate; peers we cannot reach are waited for UNREACHABLE_OWNER_GRACE_MS (the
//     mesh may not know them yet), then assumed to hold nothing of ours. Until then our copies
//     of our own entries are not authoritative (the newest copy wins a merge) and our free
//     counts are not reported. What remains: a grant made just before the store was lost,
//     known only to peers that stay cut off from us longer than the grace period, is not known
//     when we start allocating again (the simulation's store-loss crashes avoid exactly that).
//  3. Space of dead peers. Owners the mesh does not know are counted (status, metrics) and
//     logged every few minutes with the rmpeer hint; adminTakeoverRanges refuses a peer that
//     is reachable (unless forced), takes later-learnt space of that peer too (grants it made
//     that we had not heard of), and a peer that finds its space taken while it holds
//     addresses there keeps it and reports the conflict instead of crashing.
//
// Other departures from the original, each found by the simulation (test/unit/ipam/sim):
//  - a merge that would leave a free count longer than its entry caps the count (a hint)
//    instead of refusing the merge for ever; a token inserted into our range is refused only
//    when we hold addresses in what it really takes (its range up to the next token);
//  - a peer showing us an older ring gets ours back (rate-limited), so peers at the edge of
//    a sparse mesh do not wait for random periodic gossip to reach them;
//  - while awaiting consensus an elector proposes again only after a quiet tick, so slow
//    rounds in large clusters are not superseded for ever;
//  - the heir of a leaving peer must be reachable, not merely known to the topology;
//  - gossip that improved our ring is gossiped on (the original never propagated).
// Interoperability is unaffected: the messages, their bytes and their meaning are unchanged.
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError, errorMessage, isWeaveError } from '../core/errors.js';
import { fmtString, goNilSlice, type FmtStringer } from '../core/go-template.js';
import {
  cidrSize, formatCidr, formatIPv4, isNetworkCidr, parseCidr, subnetOf, type Cidr, type IPv4,
} from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import { formatPeerName, tryParsePeerName, type PeerName } from '../core/peer-name.js';
import type { GossipData, Gossiper } from '../mesh/gossip.js';
import {
  cidrHostRange, cidrRange, formatRangeAsCidr, rangeContains, rangesOverlap, type AddressRange,
} from './address-range.js';
import {
  MSG_RING_UPDATE, MSG_SPACE_REQUEST, MSG_SPACE_REQUEST_DENIED, decodeRange, encodeRange, type IpamGossipState,
} from './codec.js';
import { IpamDecoder, encodeGossipStateDirect } from './codec-direct.js';
import {
  ipamConflictLine, type IpamConflict, type IpamConflictKind, type IpamMetrics, type IpamStatusReport, type IpamEntryReport,
} from './ipam-status.js';
import { PaxosNode, PaxosObserver, normalizeConsensus, type PaxosParticipant } from './paxos.js';
import { Ring, formatPeerList, type RingState } from './ring.js';
import { Space } from './space.js';
import {
  KEY_NAME, KEY_OWNED, KEY_PAXOS, KEY_RANGE, KEY_RING, decodeOwned, decodePaxos, decodeRing, encodeOwned, encodePaxos, encodeRing,
  type IpamStore, type Owned,
} from './ipam-store.js';

export type { IpamStore } from './ipam-store.js';

/** allocator.go tickInterval: pending operations and proposals are retried this often. */
export const TICK_INTERVAL_MS = 5_000;
/** allocator.go containerDiedTimeout. */
export const CONTAINER_DIED_TIMEOUT_MS = 30_000;
/** allocator.go MinSubnetSize: first and last addresses are excluded, so 2 would be too small. */
export const MIN_SUBNET_SIZE = 4;
/** api.NoContainerID: an allocation without an ident is filed under its address. */
export const NO_CONTAINER_ID = '_';
/**
 * A conflict not seen again for this long is forgotten. Both sides keep it alive: whoever sees
 * a foreign ring logs it and sends its own ring back (at most once a minute per conflict).
 */
const CONFLICT_MEMORY_MS = 150_000;
/** Conflicts remembered at once, at most (the status shows them; each is a line of text). */
const MAX_CONFLICT_RECORDS = 64;
/**
 * After learning a ring without a store, how long we wait for owners we cannot reach (the mesh
 * may not have told us of them yet) before trusting the copies of our entries we have (note
 * 2). Long enough for a restarted router to connect and learn the topology; short enough that
 * a seeded peer started alone allocates soon (the original allocated at once).
 */
export const UNREACHABLE_OWNER_GRACE_MS = 10_000;
/**
 * Space that becomes ours from another peer (a leaving peer's transfer, rmpeer) while that
 * peer's last report said addresses in it were in use is held this long before we allocate
 * from it: its containers may still run (`weave reset` racing with them, a peer that comes
 * back under a new name), and claims of those addresses, which take held space, get there
 * first. Two periodic gossip intervals.
 */
export const INHERIT_HOLD_MS = 60_000;
/** A peer showing us an older copy of the ring gets ours at most this often. */
const STALE_REPLY_MS = 5_000;
/** Bytes of received gossip kept decoded (decodeCached); a payload over a quarter of it is not kept. */
const DECODED_CACHE_BYTES = 4 * 1024 * 1024;
/** A peer asked for its ring (note 2) that has not answered is asked again after this. */
const SOLICIT_REPEAT_MS = 10_000;
/** Repeated conflict and unreachable-space logs at most this often. */
const LOG_REPEAT_MS = 60_000;
const UNREACHABLE_LOG_MS = 5 * 60_000;

/** The sends of the `IPallocation` gossip channel (a mesh GossipChannel has them). */
export interface IpamGossipTransport {
  broadcast(update: GossipData): void;
  /** False when there is no route to `dst`. */
  unicast(dst: PeerName, payload: Buffer): boolean;
}

export interface DistributedAllocatorDeps {
  clock: Clock;
  logger: Logger;
  store: IpamStore;
  /** Uniform in [0, 1): the weighted choice of whom to ask for space. */
  random: () => number;
  /** The peer is in the mesh topology (IsKnownPeer of the status, unreachable space). */
  isKnownPeer(name: PeerName): boolean;
  /** There is a route to the peer now (rmpeer safety, heir choice, note 2); default isKnownPeer. */
  isReachable?(name: PeerName): boolean;
  /** Quorum for consensus, asked when consensus starts (see paxos.ts determineQuorum). */
  quorum(): number;
  /** The peers of the mesh topology (router.peers.names()): asked for their ring after a restart without store (note 2). */
  knownPeers?(): PeerName[];
}

export interface DistributedAllocatorOptions {
  name: PeerName;
  /** The router's UID: Paxos node ids include it. */
  uid: bigint;
  nickname: string;
  /** `--ipalloc-range`. */
  range: Cidr;
  /** `--ipalloc-default-subnet` (default: the range). */
  defaultSubnet?: Cidr;
  /** `--ipalloc-init seed=...`. */
  seed?: readonly PeerName[];
  /** `--ipalloc-init observer`. */
  observer?: boolean;
  tickIntervalMs?: number;
  containerDiedTimeoutMs?: number;
  /** See UNREACHABLE_OWNER_GRACE_MS. */
  unreachableOwnerGraceMs?: number;
}

/** An address found in use on this host at start (the bridge scan). */
export interface ReclaimEntry {
  readonly ident: string;
  readonly cidr: Cidr;
}

export interface Ownership {
  ident: string;
  cidrs: Cidr[];
  owner?: string;
}


interface OpBase {
  readonly ident: string;
  readonly signal: AbortSignal | undefined;
  /** The caller has its answer (or never wanted one); later outcomes are only logged. */
  settled: boolean;
  onAbort?: () => void;
}

interface AllocateOp extends OpBase {
  readonly kind: 'allocate';
  readonly subnet: Cidr;
  readonly isContainer: boolean;
  readonly owner: string | undefined;
  resolve(c: Cidr): void;
  reject(e: unknown): void;
}

interface ClaimOp extends OpBase {
  readonly kind: 'claim';
  readonly cidr: Cidr;
  readonly isContainer: boolean;
  readonly owner: string | undefined;
  readonly noErrorOnUnknown: boolean;
  /**
   * An address in use on this host (reclaim): never given up. A denial may only mean that
   * the owner granted it to us and we have not heard yet (we lost our store), so it is kept
   * and asked for again; a real clash is logged each minute.
   */
  readonly reclaim?: boolean;
  deniedLoggedMs?: number;
  resolve(): void;
  reject(e: unknown): void;
}

interface PrimeOp extends OpBase {
  readonly kind: 'prime';
  resolve(): void;
  reject(e: unknown): void;
}

type Op = AllocateOp | ClaimOp | PrimeOp;

interface ConflictRecord {
  kind: IpamConflictKind;
  peer: PeerName | undefined;
  message: string;
  firstSeenMs: number;
  lastSeenMs: number;
  count: number;
  lastLoggedMs: number;
}

function cancelled(kind: string, ident: string): WeaveError {
  return new WeaveError('CANCELLED', `${kind} request for ${ident} cancelled`);
}

function checkIdent(ident: string): void {
  if (typeof ident !== 'string' || ident === '' || ident.length > 512) throw new WeaveError('INVALID_ARGUMENT', 'blank or oversized container name');
}

/** allocator.go ParseCIDRSubnet: a network address (host bits zero) of at least 4 addresses. */
export function parseSubnet(text: string): Cidr {
  const c = parseCidr(text);
  if (!isNetworkCidr(c)) throw new WeaveError('INVALID_ARGUMENT', `invalid subnet - bits after network prefix are not all zero: ${text}`);
  if (cidrSize(c.prefix) < MIN_SUBNET_SIZE) throw new WeaveError('INVALID_ARGUMENT', `invalid subnet - smaller than minimum size ${MIN_SUBNET_SIZE}: ${text}`);
  return c;
}

/** Ring preference when two rings meet (note 1): in use, then more seeds, then lower seeds. */
function preferred(a: RingState, b: RingState, inUse: (r: RingState) => number): boolean {
  const ua = inUse(a) > 0;
  const ub = inUse(b) > 0;
  if (ua !== ub) return ua;
  if (a.seeds.length !== b.seeds.length) return a.seeds.length > b.seeds.length;
  for (let i = 0; i < a.seeds.length; i++) {
    const x = a.seeds[i] as PeerName;
    const y = b.seeds[i] as PeerName;
    if (x !== y) return x < y;
  }
  return false;
}

class IpamGossipData implements GossipData {
  constructor(private readonly alloc: DistributedAllocator) {}
  encode(): Buffer[] {
    const b = this.alloc.encodeState();
    return b ? [b] : [];
  }
  merge(): GossipData {
    return this; // we always send our latest state
  }
}

/**
 * The allocation range and default subnet a router can work with, or INVALID_CONFIG saying
 * why not. Also checked by weaver's flag parsing, before anything touches the kernel.
 */
export function checkAllocationRange(range: Cidr, defaultSubnet?: Cidr): void {
  const r = subnetOf(range);
  const universe = cidrRange(r);
  if (cidrSize(r.prefix) < MIN_SUBNET_SIZE) {
    throw new WeaveError('INVALID_CONFIG', `IP allocation range ${formatCidr(r)} is too small: it must hold at least ${MIN_SUBNET_SIZE} addresses`);
  }
  if (universe.end > 0xffffffff) {
    throw new WeaveError('INVALID_CONFIG', `IP allocation range ${formatCidr(r)} may not include 255.255.255.255`);
  }
  const d = subnetOf(defaultSubnet ?? range);
  if (!rangesOverlap(universe, cidrRange(d))) {
    throw new WeaveError('INVALID_CONFIG', `IP address allocation default subnet ${formatCidr(d)} does not overlap with allocation range ${formatCidr(r)}`);
  }
  if (cidrSize(d.prefix) < MIN_SUBNET_SIZE) {
    throw new WeaveError('INVALID_CONFIG', `default subnet ${formatCidr(d)} is too small`);
  }
}

/**
 * A CIDR in `/report` as the original's address.CIDR: a struct in JSON ({"Addr":"10.32.0.5",
 * "PrefixLen":12}, Address marshals as text) that templates print with its String() method.
 */
class ReportCidr implements FmtStringer {
  readonly Addr: string;
  readonly PrefixLen: number;
  constructor(c: Cidr) {
    this.Addr = formatIPv4(c.ip);
    this.PrefixLen = c.prefix;
  }

  [fmtString](): string {
    return `${this.Addr}/${this.PrefixLen}`;
  }
}

export class DistributedAllocator implements Gossiper {
  readonly range: Cidr;
  readonly defaultSubnet: Cidr;
  readonly ourName: PeerName;
  private readonly nickname: string;
  private readonly universe: AddressRange;
  private readonly seed: PeerName[];
  private readonly observer: boolean;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly store: IpamStore;
  private readonly deps: DistributedAllocatorDeps;
  private readonly tickMs: number;
  private readonly diedTimeoutMs: number;
  private readonly ownerGraceMs: number;
  private readonly uid: bigint;

  private ring: Ring;
  private readonly space = new Space();
  private readonly owned = new Map<string, Owned>();
  /** Address -> ident holding it. */
  private readonly byAddr = new Map<IPv4, string>();
  private readonly nicknames = new Map<PeerName, string>();
  private paxos: PaxosParticipant | undefined;
  private awaitingConsensus = false;
  private pendingAllocates: AllocateOp[] = [];
  private pendingClaims: ClaimOp[] = [];
  private pendingPrimes: PrimeOp[] = [];
  private readonly dead = new Map<string, number>();
  private transport: IpamGossipTransport | undefined;
  private ticker: TimerHandle | undefined;
  private started = false;
  private stopped = false;
  private shuttingDown = false;

  // Proof that our free space is free (note 2).
  private persistedLoaded = false;
  private storeTrusted = false;
  private reclaimDone = false;
  private inherited: boolean | undefined;
  private verified = false;
  private readonly heardFrom = new Set<PeerName>();
  private ringLearntAtMs: number | undefined;
  private lastVerifyKey = '';
  /** Something waits for our space to be proven free: ask peers for their ring (note 2). */
  private wantVerified = false;
  /** Peers that asked for our ring before we had one (a request can overtake a ring): sent it once we do. */
  private readonly ringWanted = new Set<PeerName>();
  /** Space requests that came while our ranges were unproven: answered once they are. */
  private deferredRequests: { r: AddressRange; to: PeerName }[] = [];
  /** When we last sent each peer our ring because its copy was older (answerStaleCopy). */
  private readonly staleReplies = new Map<PeerName, number>();
  /** When each peer was last asked for its ring (note 2). */
  private readonly solicited = new Map<PeerName, number>();

  private readonly conflictRecords = new Map<string, ConflictRecord>();
  /** Space held after inheriting it (INHERIT_HOLD_MS), and until when. */
  private holds: { range: AddressRange; untilMs: number }[] = [];
  /** Peers an administrator declared dead (rmpeer): space of theirs we learn of later is ours too. */
  private readonly takenOver = new Set<PeerName>();
  private lastUnreachableLogMs = -Infinity;
  private lastPaxosActivityMs = -Infinity;
  private lastUnreachableCheckMs = -Infinity;
  /** Our name is in the store (written with the first ring, as the original's persistRing). */
  private nameStored = false;
  private tryingOps = false;
  private tryAgain = false;
  private readonly gossipData: IpamGossipData;
  /** Bumped when Paxos state or nicknames may have changed (the ring has its own generation). */
  private stateGen = 0;
  private encoded: { ring: Ring; ringGen: number; stateGen: number; now: bigint; bytes: Buffer } | undefined;
  /** Recently decoded payloads: a broadcast or a gossip round often brings the same bytes again. */
  private readonly decoded = new Map<string, IpamGossipState>();
  private decodedBytes = 0;
  private readonly decoder = new IpamDecoder();

  constructor(deps: DistributedAllocatorDeps, opts: DistributedAllocatorOptions) {
    this.deps = deps;
    this.clock = deps.clock;
    this.log = deps.logger;
    this.store = deps.store;
    this.ourName = opts.name;
    this.uid = opts.uid;
    this.nickname = opts.nickname;
    checkAllocationRange(opts.range, opts.defaultSubnet);
    this.range = subnetOf(opts.range);
    this.universe = cidrRange(this.range);
    this.defaultSubnet = subnetOf(opts.defaultSubnet ?? opts.range);
    this.seed = normalizeConsensus(opts.seed ?? []);
    this.observer = opts.observer ?? false;
    this.tickMs = opts.tickIntervalMs ?? TICK_INTERVAL_MS;
    this.diedTimeoutMs = opts.containerDiedTimeoutMs ?? CONTAINER_DIED_TIMEOUT_MS;
    this.ownerGraceMs = opts.unreachableOwnerGraceMs ?? UNREACHABLE_OWNER_GRACE_MS;
    this.ring = new Ring(this.universe.start, this.universe.end, this.ourName);
    this.nicknames.set(this.ourName, this.nickname);
    this.gossipData = new IpamGossipData(this);
  }

  private newParticipant(): PaxosParticipant {
    if (this.observer) return new PaxosObserver();
    // Resume as the node we were if we stopped during consensus (see ipam-store KEY_PAXOS).
    const text = this.ring.empty() ? this.store.get(KEY_PAXOS) : undefined;
    const saved = text === undefined ? undefined : decodePaxos(text);
    if (saved && saved.id.name === this.ourName) return new PaxosNode(saved.id, 0, saved.knows);
    return new PaxosNode({ name: this.ourName, uid: this.uid });
  }

  /**
   * Stores our Paxos state before it is gossiped; false when the store refused, and then it is
   * not gossiped (an acceptor that cannot remember a promise must not make it).
   */
  private persistPaxos(): boolean {
    const p = this.paxos;
    if (!(p instanceof PaxosNode)) return true;
    try {
      this.store.set(KEY_PAXOS, encodePaxos(p.id, p.gossipState()));
      return true;
    } catch (e) {
      this.log.error({ err: errorMessage(e) }, 'could not store our Paxos state; not gossiping it');
      return false;
    }
  }

  /** The channel to send on: `router.newGossip(IPAM_CHANNEL, allocator)`. */
  setGossip(transport: IpamGossipTransport): void {
    this.transport = transport;
  }

  private isReachable(name: PeerName): boolean {
    return name === this.ourName || (this.deps.isReachable ?? this.deps.isKnownPeer)(name);
  }

  private isKnown(name: PeerName): boolean {
    return name === this.ourName || this.deps.isKnownPeer(name);
  }

  // --- lifecycle ----------------------------------------------------------------------------

  /**
   * Loads persisted state and begins. `reclaim`: the addresses found in use on this host (the
   * bridge scan); when omitted and the store cannot vouch for what is in use, allocation waits
   * for `reclaim()` (note 2).
   */
  start(opts: { reclaim?: readonly ReclaimEntry[] } = {}): void {
    if (this.started) return;
    this.started = true;
    this.persistedLoaded = this.loadPersisted();
    this.reclaimDone = this.storeTrusted || opts.reclaim !== undefined;
    if (!this.persistedLoaded) {
      // Addresses the store says we hold are in use: claim them once the ring says who owns them.
      for (const [ident, o] of this.owned) for (const c of o.cidrs) if (this.ring.contains(c.ip)) this.queueReclaim(ident, c, o.isContainer);
    }
    for (const r of opts.reclaim ?? []) this.queueReclaim(r.ident, r.cidr, true);
    if (this.ring.empty()) this.paxos = this.newParticipant();
    if (this.persistedLoaded) {
      this.verified = true;
      this.inherited = false;
      this.log.info({ seed: this.seed.length > 0 }, this.seed.length ? 'Found persisted IPAM data, ignoring supplied IPAM seed' : 'Initialising with persisted data');
    } else if (this.seed.length > 0) {
      this.log.info({ seed: this.seed.map(formatPeerName) }, 'Initialising with supplied IPAM seed');
      this.createRing(this.seed);
    } else if (!this.observer) {
      this.log.info({}, 'Initialising via deferred consensus');
    } else {
      this.log.info({}, 'Initialising as observer - awaiting IPAM data from another peer');
    }
    this.ticker = this.clock.setInterval(() => this.tick(), this.tickMs);
    this.afterChange();
  }

  /** The addresses found in use on this host, when not given to start(). */
  reclaim(entries: readonly ReclaimEntry[]): void {
    this.assertRunning();
    for (const r of entries) this.queueReclaim(r.ident, r.cidr, true);
    this.reclaimDone = true;
    this.afterChange();
  }

  private queueReclaim(ident: string, cidr: Cidr, isContainer: boolean): void {
    // Nobody waits for a reclaim: it is settled from the start, and a failure is only logged.
    const op: ClaimOp = {
      kind: 'claim', ident, cidr, isContainer, owner: undefined, noErrorOnUnknown: true, reclaim: true, signal: undefined, settled: true,
      resolve: () => {},
      reject: () => {},
    };
    this.pendingClaims.push(op);
  }

  /** Stops timers and fails pending requests; idempotent. State stays in the store. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.ticker?.cancel();
    this.ticker = undefined;
    this.cancelAll('router shutting down');
  }

  private cancelAll(why: string): void {
    const all: Op[] = [...this.pendingPrimes, ...this.pendingClaims, ...this.pendingAllocates];
    this.pendingPrimes = [];
    this.pendingClaims = [];
    this.pendingAllocates = [];
    for (const op of all) this.finish(op, new WeaveError('CANCELLED', `${op.kind} request for ${op.ident} cancelled: ${why}`));
  }

  private assertRunning(): void {
    if (!this.started) throw new WeaveError('NOT_RUNNING', 'IP allocator not started');
    if (this.stopped || this.shuttingDown) throw new WeaveError('UNAVAILABLE', 'IP allocator is shutting down');
  }

  // --- persistence --------------------------------------------------------------------------

  /** True when a usable ring was restored; fills `owned` either way (see start). */
  private loadPersisted(): boolean {
    const want = formatCidr(this.range);
    const storedRange = this.store.get(KEY_RANGE);
    if (storedRange !== undefined && storedRange !== want) {
      this.log.info({ old: storedRange, range: want }, `Deleting persisted data for IPAM range ${storedRange}; our range is ${want}`);
      this.store.transaction(() => {
        this.wipeStore();
        this.store.set(KEY_RANGE, want);
      });
      return false;
    }
    this.storeTrusted = storedRange !== undefined;
    if (storedRange === undefined) this.store.set(KEY_RANGE, want);
    const name = this.store.get(KEY_NAME);
    if (name !== undefined && tryParsePeerName(name) !== this.ourName) {
      this.log.info({ name }, `Deleting persisted data for peername ${name}`);
      this.store.transaction(() => {
        this.wipeStore();
        this.store.set(KEY_RANGE, want);
      });
      this.storeTrusted = false;
      return false;
    }
    for (const { key, value } of this.store.scan(KEY_OWNED)) {
      const ident = key.slice(KEY_OWNED.length);
      const o = decodeOwned(value);
      if (!o) {
        this.log.warn({ ident }, 'ignoring unreadable persisted allocation');
        continue;
      }
      this.owned.set(ident, o);
      for (const c of o.cidrs) this.byAddr.set(c.ip, ident);
    }
    const text = this.store.get(KEY_RING);
    const state = text === undefined ? undefined : decodeRing(text);
    if (!state || state.entries.length === 0 || state.start !== this.universe.start || state.end !== this.universe.end) {
      this.log.info({ owned: this.owned.size }, 'No valid persisted data');
      return false;
    }
    try {
      this.ring = Ring.restore(state, this.ourName);
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, 'No valid persisted data: unreadable ring');
      return false;
    }
    this.space.reconcile(this.ring.ownedRanges());
    for (const [ident, o] of this.owned) {
      for (const c of o.cidrs) {
        if (!this.ring.contains(c.ip) || this.space.claim(c.ip)) continue;
        // In use but not in our stored ranges (a grant to us we had not stored): claim it back
        // once the ring says where it is.
        this.queueReclaim(ident, c, o.isContainer);
      }
    }
    return true;
  }

  private wipeStore(): void {
    this.store.delete(KEY_NAME);
    this.store.delete(KEY_RING);
    this.store.delete(KEY_PAXOS);
    for (const { key } of this.store.scan(KEY_OWNED)) this.store.delete(key);
  }

  private persistRing(): void {
    const text = encodeRing(this.ring.state());
    if (this.nameStored) {
      this.store.set(KEY_RING, text);
      return;
    }
    this.store.transaction(() => {
      this.store.set(KEY_NAME, formatPeerName(this.ourName));
      this.store.set(KEY_RING, text);
    });
    this.nameStored = true;
  }

  /** Runs a ring change and persists it; on a store failure the ring is rolled back. */
  private commitRing<T>(change: () => T): T {
    const before = this.ring.state();
    try {
      const out = change();
      this.persistRing();
      return out;
    } catch (e) {
      this.ring.reset(before);
      throw e;
    }
  }

  private setOwned(ident: string, o: Owned | undefined): void {
    if (o && o.cidrs.length > 0) this.store.set(KEY_OWNED + ident, encodeOwned(o));
    else this.store.delete(KEY_OWNED + ident);
  }

  /** Records cidr for ident (store first); throws STORE_FAILED leaving memory as it was. */
  private addOwned(ident: string, cidr: Cidr, isContainer: boolean, owner: string | undefined): void {
    const prev = this.owned.get(ident);
    const keepOwner = prev?.owner ?? owner;
    const next: Owned = { cidrs: [...(prev?.cidrs ?? []), cidr], isContainer: (prev?.isContainer ?? false) || isContainer, ...(keepOwner ? { owner: keepOwner } : {}) };
    this.setOwned(ident, next);
    this.owned.set(ident, next);
    this.byAddr.set(cidr.ip, ident);
  }

  // --- client API ---------------------------------------------------------------------------

  /** `ipalloc` subnets from the API: a network address of at least 4 addresses. */
  parseSubnet(text: string): Cidr {
    return parseSubnet(text);
  }

  /**
   * The address `ident` holds in `subnet` (default subnet when omitted), or the lowest free one.
   * Waits while no space is free anywhere, the ring does not exist yet, or our space is not
   * yet proven free; `signal` cancels (CANCELLED).
   */
  allocate(ident: string, subnet?: Cidr, opts: { owner?: string; signal?: AbortSignal; isContainer?: boolean } = {}): Promise<Cidr> {
    checkIdent(ident);
    this.assertRunning();
    return new Promise<Cidr>((resolve, reject) => {
      const op: AllocateOp = {
        kind: 'allocate', ident, subnet: subnetOf(subnet ?? this.defaultSubnet), isContainer: opts.isContainer ?? false, owner: opts.owner,
        signal: opts.signal, settled: false, resolve, reject,
      };
      this.run(op);
    });
  }

  /**
   * Claims a given address for ident (PUT /ip/<id>/<ip>/<len>). Outside the range it is only
   * recorded; in space we own it is marked used; in space another peer owns we ask that peer
   * for it. `noErrorOnUnknown`: answer at once while the ring is unknown or the owner
   * unreachable, and keep trying in the background.
   */
  claim(ident: string, cidr: Cidr, opts: { owner?: string; signal?: AbortSignal; isContainer?: boolean; noErrorOnUnknown?: boolean } = {}): Promise<void> {
    checkIdent(ident);
    this.assertRunning();
    return new Promise<void>((resolve, reject) => {
      const op: ClaimOp = {
        kind: 'claim', ident, cidr, isContainer: opts.isContainer ?? false, owner: opts.owner, noErrorOnUnknown: opts.noErrorOnUnknown ?? false,
        signal: opts.signal, settled: false, resolve, reject,
      };
      this.run(op);
    });
  }

  /** GET /ring (`weave prime`): resolves once the ring exists, starting consensus if needed. */
  prime(opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.assertRunning();
    return new Promise<void>((resolve, reject) => {
      const op: PrimeOp = { kind: 'prime', ident: 'prime', signal: opts.signal, settled: false, resolve, reject };
      this.run(op);
    });
  }

  private queueOf(op: Op): Op[] {
    return op.kind === 'allocate' ? this.pendingAllocates : op.kind === 'claim' ? this.pendingClaims : this.pendingPrimes;
  }

  private run(op: Op): void {
    if (op.signal?.aborted) {
      this.finish(op, cancelled(opName(op), op.ident));
      return;
    }
    let done: boolean;
    try {
      done = this.tryOp(op);
    } catch (e) {
      this.finish(op, e);
      done = true;
    }
    if (!done) {
      this.queueOf(op).push(op);
      if (op.signal) {
        const onAbort = () => {
          const queue = this.queueOf(op);
          const i = queue.indexOf(op);
          if (i < 0) return;
          queue.splice(i, 1);
          this.finish(op, cancelled(opName(op), op.ident));
        };
        op.onAbort = onAbort;
        op.signal.addEventListener('abort', onAbort, { once: true });
      }
    }
    this.afterChange();
  }

  /** The addresses ident holds in subnet (all of them when omitted). */
  lookup(ident: string, subnet?: Cidr): Cidr[] {
    const o = this.owned.get(ident);
    if (!o) return [];
    if (!subnet) return [...o.cidrs];
    const r = cidrRange(subnet);
    return o.cidrs.filter((c) => rangeContains(r, c.ip));
  }

  /** DELETE /ip/<id>: frees every address of ident; NOT_FOUND when it holds none. */
  free(ident: string): Cidr[] {
    const o = this.owned.get(ident);
    // Addresses still being claimed back (a restart that has not learnt the ring yet) go too.
    const claims = this.pendingClaims.filter((op) => op.ident === ident);
    if (!o || o.cidrs.length === 0) {
      if (claims.length === 0) throw new WeaveError('NOT_FOUND', `Delete: no addresses for ${ident}`);
      this.dropClaims((op) => op.ident === ident);
      return claims.map((op) => op.cidr);
    }
    this.setOwned(ident, undefined);
    this.dropClaims((op) => op.ident === ident);
    this.owned.delete(ident);
    this.dead.delete(ident);
    for (const c of o.cidrs) this.releaseAddress(c.ip);
    this.afterChange(true);
    return o.cidrs;
  }

  /** DELETE /ip/<id>/<ip>: frees one address of ident. */
  freeAddress(ident: string, ip: IPv4): void {
    const o = this.owned.get(ident);
    const idx = o ? o.cidrs.findIndex((c) => c.ip === ip) : -1;
    if (!o || idx < 0) throw new WeaveError('NOT_FOUND', `Free: address ${formatIPv4(ip)} not found for ${ident}`);
    const rest = o.cidrs.filter((_, i) => i !== idx);
    const next = rest.length ? { ...o, cidrs: rest } : undefined;
    this.setOwned(ident, next);
    this.dropClaims((op) => op.ident === ident && op.cidr.ip === ip);
    if (next) this.owned.set(ident, next);
    else this.owned.delete(ident);
    this.releaseAddress(ip);
    this.afterChange(true);
  }

  private dropClaims(which: (op: ClaimOp) => boolean): void {
    for (let i = 0; i < this.pendingClaims.length; ) {
      const op = this.pendingClaims[i] as ClaimOp;
      if (!which(op)) {
        i++;
        continue;
      }
      this.pendingClaims.splice(i, 1);
      this.finish(op, cancelled('Claim', op.ident));
    }
  }

  private releaseAddress(ip: IPv4): void {
    if (this.byAddr.get(ip) !== undefined) this.byAddr.delete(ip);
    if (this.space.isAllocated(ip)) this.space.release(ip);
  }

  /** GET /ip: everything owned, by ident. */
  all(): Ownership[] {
    return [...this.owned.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([ident, o]) => ({ ident, cidrs: [...o.cidrs], ...(o.owner ? { owner: o.owner } : {}) }));
  }

  /** Addresses handed out here (weave_ips). */
  activeCount(): number {
    return this.space.numAllocated();
  }

  /** Pending allocations as the status lists them: `ident subnet`. */
  pendingAllocationList(): string[] {
    return this.pendingAllocates.map((op) => `${op.ident} ${formatCidr(op.subnet)}`);
  }

  /** Idents of pending allocations. */
  pendingAllocateIdents(): string[] {
    return this.pendingAllocates.map((op) => op.ident);
  }

  pendingClaimCount(): number {
    return this.pendingClaims.length;
  }

  /** Whether the ring exists (`weave prime` would return at once). */
  hasRing(): boolean {
    return !this.ring.empty();
  }

  /** Whether our free space is proven free (note 2); allocations wait until it is. */
  isVerified(): boolean {
    return this.verified;
  }

  // Docker-style container lifecycle (the original's updater interface).

  containerDied(ident: string): void {
    if (this.owned.has(ident)) this.dead.set(ident, this.clock.now());
    this.cancelOpsFor(ident);
  }

  containerStarted(ident: string): void {
    this.dead.delete(ident);
  }

  containerDestroyed(ident: string): void {
    if (this.owned.has(ident)) {
      this.dead.delete(ident);
      try {
        this.free(ident);
      } catch (e) {
        this.log.warn({ ident, err: errorMessage(e) }, 'could not free the addresses of a destroyed container');
      }
    }
  }

  /** Drops container allocations whose ident is not in `ids` (containers that no longer run). */
  pruneOwned(ids: readonly string[]): void {
    const keep = new Set(ids);
    for (const [ident, o] of [...this.owned]) {
      if (!o.isContainer || keep.has(ident)) continue;
      this.log.debug({ ident, cidrs: o.cidrs.map(formatCidr) }, `Deleting old entry ${ident}`);
      this.free(ident);
    }
  }

  private cancelOpsFor(ident: string): void {
    for (const queue of [this.pendingAllocates, this.pendingClaims] as Op[][]) {
      for (let i = 0; i < queue.length; ) {
        const op = queue[i] as Op;
        if (op.ident === ident && !op.settled) {
          queue.splice(i, 1);
          this.finish(op, cancelled(opName(op), ident));
        } else {
          i++;
        }
      }
    }
  }

  private removeDeadContainers(): void {
    const cutoff = this.clock.now() - this.diedTimeoutMs;
    for (const [ident, at] of [...this.dead]) {
      if (at >= cutoff) continue;
      this.dead.delete(ident);
      if (this.owned.has(ident)) {
        try {
          this.free(ident);
          this.log.debug({ ident }, `Removed addresses for container ${ident}`);
        } catch (e) {
          this.log.warn({ ident, err: errorMessage(e) }, 'could not free the addresses of a dead container');
        }
      }
    }
  }

  // --- operations ---------------------------------------------------------------------------

  private finish(op: Op, err: unknown, value?: Cidr): void {
    if (op.onAbort) op.signal?.removeEventListener('abort', op.onAbort);
    if (op.settled) {
      // The caller already has its answer (noErrorOnUnknown, reclaims): report what happened.
      if (err !== undefined && !isWeaveError(err, 'CANCELLED')) this.log.error({ ident: op.ident, err: errorMessage(err) }, `[allocator] ${errorMessage(err)}`);
      return;
    }
    op.settled = true;
    if (err !== undefined) op.reject(err);
    else if (op.kind === 'allocate') op.resolve(value as Cidr);
    else op.resolve();
  }

  /** True when the operation is finished (answered), false to retry later. */
  private tryOp(op: Op): boolean {
    if (op.signal?.aborted) {
      this.finish(op, cancelled(opName(op), op.ident));
      return true;
    }
    switch (op.kind) {
      case 'prime':
        if (!this.ring.empty()) {
          this.finish(op, undefined);
          return true;
        }
        this.establishRing();
        return false;
      case 'allocate':
        return this.tryAllocate(op);
      case 'claim':
        return this.tryClaim(op);
    }
  }

  private tryAllocate(op: AllocateOp): boolean {
    const subnetRange = cidrRange(op.subnet);
    if (this.answerExisting(op)) return true;
    if (!rangesOverlap(this.universe, subnetRange)) {
      this.finish(op, new WeaveError('INVALID_ARGUMENT', `range ${formatCidr(op.subnet)} out of bounds: ${formatCidr(this.range)}`));
      return true;
    }
    this.establishRing();
    // Making the ring runs the pending claims, which may have given ident its address back.
    if (this.answerExisting(op)) return true;
    // An address of ident still being claimed back (a restart) is the answer once it is ours:
    // allocating meanwhile would give ident a second one. Claims are retried before allocations.
    if (op.ident !== NO_CONTAINER_ID && this.pendingClaims.some((c) => c.ident === op.ident && rangeContains(subnetRange, c.cidr.ip))) return false;
    if (!this.verified) {
      this.wantVerified = true;
      return false;
    }
    const addr = this.space.allocate(cidrHostRange(op.subnet));
    if (addr !== undefined) {
      const ident = op.ident === NO_CONTAINER_ID ? formatIPv4(addr) : op.ident;
      const cidr = { ip: addr, prefix: op.subnet.prefix };
      try {
        this.addOwned(ident, cidr, op.isContainer, op.owner);
      } catch (e) {
        this.space.release(addr);
        this.finish(op, e);
        return true;
      }
      this.log.debug({ ident, cidr: formatCidr(cidr) }, `Allocated ${formatIPv4(addr)} for ${ident} in ${formatCidr(op.subnet)}`);
      this.finish(op, undefined, cidr);
      return true;
    }
    // Out of space here: ask one peer that reports free space in the subnet.
    for (const donor of this.ring.choosePeersToAskForSpace(subnetRange.start, subnetRange.end, this.deps.random)) {
      if (this.sendSpaceRequest(donor, subnetRange)) {
        this.log.debug({ donor: formatPeerName(donor), subnet: formatCidr(op.subnet) }, 'asked a peer for space');
        break;
      }
    }
    return false;
  }

  /** Answers op with an address ident already holds in its subnet, if any. */
  private answerExisting(op: AllocateOp): boolean {
    const existing = this.lookup(op.ident, op.subnet);
    if (existing.length === 0) return false;
    this.dead.delete(op.ident);
    this.finish(op, undefined, existing[0]);
    return true;
  }

  private deniedBy(op: ClaimOp, owner: PeerName): void {
    const nick = this.nicknames.get(owner);
    this.finish(op, new WeaveError('CONFLICT', `address ${formatCidr(op.cidr)} is owned by other peer ${formatPeerName(owner)}${nick !== undefined ? ` (${nick})` : ''}`));
  }

  private tryClaim(op: ClaimOp): boolean {
    const addr = op.cidr.ip;
    if (!this.ring.contains(addr)) {
      // Not within our universe; assume the user knows what they are doing.
      this.log.info({ ident: op.ident, cidr: formatCidr(op.cidr) }, `Address ${formatCidr(op.cidr)} claimed by ${op.ident} - not in our range`);
      if (this.byAddr.get(addr) !== op.ident) this.addOwned(op.ident, op.cidr, op.isContainer, op.owner);
      this.finish(op, undefined);
      return true;
    }
    this.establishRing();
    this.dead.delete(op.ident);
    const owner = this.ring.owner(addr);
    if (owner === undefined) {
      if (op.noErrorOnUnknown) this.finish(op, undefined);
      return false;
    }
    if (owner !== this.ourName) {
      if (!this.sendSpaceRequest(owner, { start: addr, end: addr + 1 })) {
        if (op.noErrorOnUnknown) {
          this.finish(op, undefined);
          return false;
        }
        this.deniedBy(op, owner);
        return true;
      }
      return false;
    }
    // As an allocation: after losing our store, what our ring copy gives us may have been
    // granted away (note 2), so a claim waits for the proof. Reclaims are what we hold already.
    if (!op.reclaim && !this.verified) {
      this.wantVerified = true;
      return false;
    }
    const text = formatIPv4(addr);
    const holder = this.byAddr.get(addr);
    if (holder === undefined) {
      if (!this.space.claim(addr)) {
        this.finish(op, new WeaveError('CONFLICT', `Address ${text} is not free to claim`));
        return true;
      }
      try {
        this.addOwned(op.ident === NO_CONTAINER_ID ? text : op.ident, op.cidr, op.isContainer, op.owner);
      } catch (e) {
        this.space.release(addr);
        this.finish(op, e);
        return true;
      }
      this.finish(op, undefined);
    } else if (holder === op.ident || (op.ident === NO_CONTAINER_ID && holder === text) || op.ident === NO_CONTAINER_ID) {
      // Re-claim by the same ident (or one we cannot tell apart); make sure the space agrees.
      if (this.space.isFree(addr)) this.space.claim(addr);
      this.finish(op, undefined);
    } else if (holder === text) {
      this.finish(op, new WeaveError('CONFLICT', `address ${formatCidr(op.cidr)} already in use`));
    } else {
      this.finish(op, new WeaveError('CONFLICT', `address ${formatCidr(op.cidr)} is already owned by ${holder}`));
    }
    return true;
  }

  private tryQueue<T extends Op>(queue: T[]): void {
    for (let i = 0; i < queue.length; ) {
      const op = queue[i] as T;
      let done: boolean;
      try {
        done = this.tryOp(op);
      } catch (e) {
        this.finish(op, e);
        done = true;
      }
      if (done) {
        const at = queue.indexOf(op);
        if (at >= 0) queue.splice(at, 1);
        if (op.onAbort) op.signal?.removeEventListener('abort', op.onAbort);
      } else {
        i++;
      }
    }
  }

  /** Retries pending operations: primes, then claims (so reclaims win), then allocations. */
  private tryPendingOps(): void {
    if (this.stopped || this.shuttingDown) return;
    if (this.tryingOps) {
      this.tryAgain = true;
      return;
    }
    this.tryingOps = true;
    try {
      do {
        this.tryAgain = false;
        this.tryQueue(this.pendingPrimes);
        this.tryQueue(this.pendingClaims);
        this.tryQueue(this.pendingAllocates);
      } while (this.tryAgain);
    } finally {
      this.tryingOps = false;
    }
  }

  /** After any change: proof of free space, pending operations, our free counts. */
  private afterChange(retry = false): void {
    if (this.stopped) return;
    const wasVerified = this.verified;
    this.checkVerified();
    if (retry || this.verified !== wasVerified) this.tryPendingOps();
    if (this.verified && this.deferredRequests.length > 0) {
      for (const d of this.deferredRequests.splice(0)) if (this.isReachable(d.to)) this.donateSpace(d.r, d.to);
    }
    this.reportFreeSpace();
  }

  private tick(): void {
    if (this.stopped || this.shuttingDown) return;
    if (this.awaitingConsensus) {
      // Propose again only when Paxos has been quiet for a whole tick (messages lost): with
      // every elector re-proposing each tick, as the original did, proposals that take longer
      // than a tick to go round (large clusters, slow links) keep superseding each other.
      if (this.clock.now() - this.lastPaxosActivityMs >= this.tickMs) this.propose();
    } else {
      this.tryPendingOps();
    }
    this.removeDeadContainers();
    if (this.releaseHolds()) this.tryPendingOps();
    this.expireConflicts();
    this.pruneNicknames();
    this.logUnreachable();
    this.afterChange();
  }

  // --- ring establishment -----------------------------------------------------------------

  private establishRing(): void {
    if (!this.ring.empty() || this.awaitingConsensus || this.stopped || this.shuttingDown) return;
    this.awaitingConsensus = true;
    this.stateGen++;
    this.paxos ??= this.newParticipant();
    const quorum = this.deps.quorum();
    this.paxos.setQuorum(quorum);
    if (this.paxos.isElector) this.log.info({ quorum }, `Assuming quorum size of ${quorum}`);
    this.propose();
    const cons = this.paxos.consensus();
    if (cons) this.createRing(cons.value);
  }

  private propose(): void {
    this.stateGen++;
    this.paxos?.propose();
    if (this.persistPaxos()) this.broadcastState();
  }

  private createRing(peers: readonly PeerName[]): void {
    const names = normalizeConsensus(peers);
    this.log.info({ peers: names.map(formatPeerName) }, `Paxos consensus: ${formatPeerList(names)}`);
    try {
      this.commitRing(() => this.ring.claimForPeers(names));
    } catch (e) {
      this.log.error({ err: errorMessage(e) }, 'could not store the new ring; will retry');
      return;
    }
    this.ringUpdated();
    this.broadcastState();
  }

  /**
   * Our ring changed (and is stored): consensus is over, our space follows the ring. `before`:
   * the ring before the change, to hold space inherited from other peers (INHERIT_HOLD_MS).
   */
  private ringUpdated(before?: RingState): void {
    if (this.awaitingConsensus || this.paxos) {
      this.awaitingConsensus = false;
      this.paxos = undefined;
      this.stateGen++;
      try {
        if (this.store.get(KEY_PAXOS) !== undefined) this.store.delete(KEY_PAXOS);
      } catch (e) {
        this.log.warn({ err: errorMessage(e) }, 'could not delete our Paxos state');
      }
    }
    if (this.inherited === undefined && !this.ring.empty()) {
      this.inherited = !this.persistedLoaded && this.ring.ownedRanges().length > 0;
      this.ringLearntAtMs = this.clock.now();
    }
    if (!this.ring.empty() && this.ringWanted.size > 0) {
      for (const p of this.ringWanted) if (this.isReachable(p)) this.sendRingUpdate(p);
      this.ringWanted.clear();
    }
    if (this.takeOverLateEntries()) return; // ringUpdated ran again for the transfer
    const had = this.space.ownedRanges();
    const orphans = this.space.reconcile(this.ring.ownedRanges());
    if (before) this.holdInherited(before, had);
    if (orphans.length > 0) this.log.error({ ranges: orphans.map(formatRangeAsCidr) }, 'addresses in use in ranges we no longer own');
    this.checkVerified();
    this.tryPendingOps();
  }

  /** Holds new space whose previous owner reported addresses in use (INHERIT_HOLD_MS). */
  /**
   * Space that became ours with a report of addresses in use is held (INHERIT_HOLD_MS). A grant
   * to us always reports all of it free (the donor gives free space), so this is space handed
   * to us by a transfer (a leaving peer, rmpeer): a token we did not own before, perhaps one we
   * had not even heard of. Not on the first ring we learn (that is note 2's business).
   */
  private holdInherited(before: RingState, had: readonly AddressRange[]): void {
    if (this.shuttingDown || before.entries.length === 0) return;
    const previous = new Map(before.entries.map((e) => [e.token, e.peer]));
    const until = this.clock.now() + INHERIT_HOLD_MS;
    for (const e of this.ring.ownEntries()) {
      const from = previous.get(e.token);
      if (from === this.ourName || e.free >= e.size) continue;
      const was = from === undefined ? 'a peer' : formatPeerName(from);
      for (const r of e.ranges) {
        for (const piece of subtractRanges(r, had)) {
          this.space.hold(piece);
          this.holds.push({ range: piece, untilMs: until });
          this.log.info(
            { peer: from === undefined ? undefined : formatPeerName(from), range: formatRangeAsCidr(piece), inUse: e.size - e.free },
            `holding ${formatRangeAsCidr(piece)}, inherited from ${was} with addresses in use, for ${INHERIT_HOLD_MS / 1000} s`,
          );
        }
      }
    }
  }

  private releaseHolds(): boolean {
    const now = this.clock.now();
    const due = this.holds.filter((h) => h.untilMs <= now);
    if (due.length === 0) return false;
    this.holds = this.holds.filter((h) => h.untilMs > now);
    for (const h of due) this.space.releaseHeld(h.range);
    return true;
  }

  /**
   * Ranges of a peer we took over with rmpeer may reach us later (grants it made that we had
   * not heard of when the administrator ran rmpeer): they are taken over too, as long as that
   * peer stays unreachable; once it is seen again it is no longer taken over. True when
   * something was taken (and broadcast).
   */
  private takeOverLateEntries(): boolean {
    if (this.takenOver.size === 0 || this.shuttingDown) return false;
    const present = this.ring.peerNames();
    const before = this.ring.state();
    let moved = 0;
    for (const p of this.takenOver) {
      if (this.isReachable(p)) {
        // It is back (the same host under the same name): what it owns from now on is its own,
        // and a later partition must not hand its addresses out again.
        this.takenOver.delete(p);
        continue;
      }
      if (!present.has(p)) continue;
      try {
        const ranges = this.commitRing(() => this.ring.transfer(p, this.ourName));
        const n = ranges.reduce((sum, r) => sum + (r.end - r.start), 0);
        moved += n;
        this.log.info({ peer: formatPeerName(p), ips: n }, `${n} IPs taken over from ${formatPeerName(p)} (learnt of after rmpeer)`);
      } catch (e) {
        this.log.error({ err: errorMessage(e) }, 'could not store a takeover');
      }
    }
    if (moved === 0) return false;
    this.ringUpdated(before);
    this.broadcastState();
    return true;
  }

  // --- proof of free space (note 2) ---------------------------------------------------------

  private checkVerified(): void {
    if (this.verified || !this.reclaimDone || this.ring.empty() || this.stopped) return;
    // Called after every message: look again only when something it depends on may have moved.
    const key = `${this.heardFrom.size}/${this.ring.generation}/${this.nicknames.size}/${this.wantVerified}/${Math.floor(this.clock.now() / 1000)}`;
    if (key === this.lastVerifyKey) return;
    this.lastVerifyKey = key;
    if (this.inherited) {
      // A grant we made may be known only to its recipient, which need not own anything else
      // in the copy of the ring we got: so every IPAM peer we know of (ring owners, nicknames
      // gossiped to us) and every peer of the mesh is asked. IPAM peers we can reach are
      // waited for; peers we cannot reach (our topology may not know them yet) and mesh peers
      // that may not run IPAM, only for the grace period.
      const waited = this.clock.now() - (this.ringLearntAtMs ?? this.clock.now());
      const ipam = new Set([...this.ring.peerNames(), ...this.nicknames.keys()]);
      ipam.delete(this.ourName);
      const others = (this.deps.knownPeers?.() ?? []).filter((p) => p !== this.ourName && !ipam.has(p));
      const missing = [...ipam].filter((p) => !this.heardFrom.has(p));
      const reachableIpam = missing.filter((p) => this.isReachable(p));
      const reachableOthers = others.filter((p) => !this.heardFrom.has(p) && this.isReachable(p));
      const inGrace = waited < this.ownerGraceMs;
      if (reachableIpam.length > 0 || (inGrace && (missing.length > 0 || reachableOthers.length > 0))) {
        // Only asked when we need our space (an allocation, or a peer asking for space): a
        // cluster starting up does not cost every peer a message from every other.
        if (this.wantVerified) this.solicit([...reachableIpam, ...reachableOthers]);
        return;
      }
    }
    this.verified = true;
    this.heardFrom.clear();
    this.solicited.clear();
    this.log.info({ inherited: this.inherited ?? false }, 'IP allocation ready: the addresses in use here are known');
  }

  /**
   * Asks peers for their ring (each again after SOLICIT_REPEAT_MS while it does not answer):
   * the first time with our ring first, so that a peer without one does not take the request
   * for a call to elect a ring; then a ring-less message, which every peer, original or
   * ours, answers with its ring.
   */
  private solicit(peers: readonly PeerName[]): void {
    const now = this.clock.now();
    let request: Buffer | undefined;
    for (const p of peers) {
      const last = this.solicited.get(p);
      if (last !== undefined && now - last < SOLICIT_REPEAT_MS) continue;
      this.solicited.set(p, now);
      if (last === undefined) this.sendRingUpdate(p);
      request ??= Buffer.concat([Buffer.of(MSG_RING_UPDATE), encodeGossipStateDirect({ now: this.nowSeconds(), nicknames: this.nicknameList() })]);
      this.transport?.unicast(p, request);
    }
  }

  // --- free space reports -------------------------------------------------------------------

  private reportFreeSpace(): void {
    if (this.ring.empty() || this.shuttingDown || (!this.verified && this.wantVerified)) return;
    const free = new Map<number, number>();
    let differs = false;
    for (const e of this.ring.ownEntries()) {
      let n = 0;
      for (const r of e.ranges) n += this.space.numFreeInRange(r);
      free.set(e.token, n);
      if (n !== e.free) differs = true;
    }
    if (!differs) return;
    // Unproven space is not advertised (note 2); but the ring's counts for us being wrong (say
    // 0, from before we lost our store) would keep peers from asking us, so prove it.
    if (!this.verified) {
      this.wantVerified = true;
      return;
    }
    this.ring.reportFree(free);
  }

  // --- gossip -------------------------------------------------------------------------------

  private nowSeconds(): bigint {
    return BigInt(Math.floor(this.clock.now() / 1000));
  }

  private nicknameList(): [PeerName, string][] {
    return [...this.nicknames].sort(([a], [b]) => a - b);
  }

  /** Our gossip payload (undefined once stopped); re-encoded only when something changed. */
  encodeState(): Buffer | undefined {
    if (this.stopped || !this.started) return undefined;
    const now = this.nowSeconds();
    const c = this.encoded;
    if (c && c.ring === this.ring && c.ringGen === this.ring.generation && c.stateGen === this.stateGen && c.now === now) return c.bytes;
    const bytes = this.encodeStateNow(now);
    this.encoded = { ring: this.ring, ringGen: this.ring.generation, stateGen: this.stateGen, now, bytes };
    return bytes;
  }

  private encodeStateNow(now: bigint): Buffer {
    const empty = this.ring.empty();
    const paxos = empty ? this.paxos?.gossipState() : undefined;
    const state: IpamGossipState = {
      now,
      nicknames: this.nicknameList(),
      ...(paxos ? { paxos } : {}),
      ...(empty ? {} : { ring: this.ring.state() }),
    };
    return encodeGossipStateDirect(state);
  }

  private broadcastState(): void {
    if (!this.stopped) this.transport?.broadcast(this.gossipData);
  }

  private sendRingUpdate(dst: PeerName): void {
    const state = this.encodeState();
    if (state) this.transport?.unicast(dst, Buffer.concat([Buffer.of(MSG_RING_UPDATE), state]));
  }

  private sendSpaceRequest(dst: PeerName, r: AddressRange): boolean {
    return this.transport?.unicast(dst, Buffer.concat([Buffer.of(MSG_SPACE_REQUEST), encodeRange(r)])) ?? false;
  }

  private sendSpaceRequestDenied(dst: PeerName, r: AddressRange): void {
    this.transport?.unicast(dst, Buffer.concat([Buffer.of(MSG_SPACE_REQUEST_DENIED), encodeRange(r)]));
  }

  /** Complete state for periodic gossip and new connections. */
  gossip(): GossipData | undefined {
    return this.started && !this.stopped ? this.gossipData : undefined;
  }

  /** Periodic gossip (sender unknown). Improvements to our ring are gossiped on. */
  onGossip(msg: Buffer): GossipData | undefined {
    const changed = this.receive(undefined, msg);
    return changed ? this.gossip() : undefined;
  }

  onGossipBroadcast(src: PeerName, update: Buffer): GossipData | undefined {
    this.receive(src, update);
    return undefined;
  }

  onGossipUnicast(src: PeerName, msg: Buffer): void {
    if (this.stopped || !this.started) return;
    try {
      switch (msg[0]) {
        case MSG_SPACE_REQUEST: {
          const r = decodeRange(msg.subarray(1));
          // Without a ring we cannot give anything; the requester asks again later.
          if (!this.ring.empty()) this.donateSpace(r, src);
          break;
        }
        case MSG_SPACE_REQUEST_DENIED:
          this.spaceRequestDenied(src, decodeRange(msg.subarray(1)));
          break;
        case MSG_RING_UPDATE:
          this.handleState(src, this.decodeCached(msg.subarray(1)));
          break;
        default:
          throw new WeaveError('DECODE_FAILED', `unknown IPAM unicast message type ${msg[0] ?? '(empty)'}`);
      }
    } catch (e) {
      if (!isWeaveError(e, 'DECODE_FAILED')) throw e;
      this.log.warn({ peer: formatPeerName(src), err: errorMessage(e) }, 'dropped undecodable IPAM message');
      return;
    }
    this.afterChange();
  }

  /** Decodes and applies a state; true when our ring changed. */
  private receive(sender: PeerName | undefined, payload: Buffer): boolean {
    if (this.stopped || !this.started) return false;
    let state: IpamGossipState;
    try {
      state = this.decodeCached(payload);
    } catch (e) {
      this.log.warn({ peer: sender === undefined ? undefined : formatPeerName(sender), err: errorMessage(e) }, 'dropped undecodable IPAM gossip');
      return false;
    }
    const changed = this.handleState(sender, state);
    this.afterChange();
    return changed;
  }

  /**
   * DECODE_FAILED for bytes that are not a gossipState. The same state arrives from every
   * neighbour, so the last few are kept decoded, by their bytes; within a byte budget, since a
   * peer may send 10 MiB payloads (16 of them were 160 MB kept).
   */
  private decodeCached(payload: Buffer): IpamGossipState {
    if (payload.length > DECODED_CACHE_BYTES / 4) return this.decoder.decode(payload);
    const key = payload.toString('latin1');
    let state = this.decoded.get(key);
    if (!state) {
      state = this.decoder.decode(payload);
      if (this.decoded.size >= 16 || this.decodedBytes + payload.length > DECODED_CACHE_BYTES) {
        this.decoded.clear();
        this.decodedBytes = 0;
      }
      this.decoded.set(key, state);
      this.decodedBytes += payload.length;
    }
    return state;
  }

  /** allocator.go update(): the heart of message handling. True when our ring changed. */
  private handleState(sender: PeerName | undefined, state: IpamGossipState): boolean {
    // A peer we took over with rmpeer that speaks again is back (see takeOverLateEntries).
    if (sender !== undefined) this.takenOver.delete(sender);
    // Only for peers the mesh knows or that own space: any peer may name any others, and a
    // nickname is passed on in every gossip, mesh-wide (the original kept them all).
    let inRing: Set<PeerName> | undefined;
    for (const [peer, nick] of state.nicknames) {
      if (peer === this.ourName || this.nicknames.get(peer) === nick) continue;
      if (!this.deps.isKnownPeer(peer) && !(inRing ??= this.ring.peerNames()).has(peer)) continue;
      this.nicknames.set(peer, nick);
      this.stateGen++;
    }
    if (state.ring) return this.mergeRing(sender, state.ring);
    if (!this.ring.empty()) {
      // A ring request, or Paxos from a peer that has not heard of our ring: send it.
      if (sender !== undefined) this.sendRingUpdate(sender);
      return false;
    }
    if (state.paxos !== undefined) {
      this.stateGen++;
      const p = (this.paxos ??= this.newParticipant());
      if (p.update(state.paxos)) {
        this.lastPaxosActivityMs = this.clock.now();
        if (p.think() && this.persistPaxos()) this.broadcastState();
        const cons = p.consensus();
        if (cons) this.createRing(cons.value);
      }
      return false;
    }
    // No Paxos: an observer asks electors to form a ring (only on an explicit broadcast, so
    // periodic gossip does not force consensus), or a restarted peer asks for our ring.
    if (sender !== undefined && this.ringWanted.size < 1024) this.ringWanted.add(sender);
    if (this.paxos?.isElector && sender !== undefined) this.establishRing();
    return false;
  }

  private hasAllocations = (ranges: AddressRange[]): boolean => this.space.hasAllocationsIn(ranges);

  private mergeRing(sender: PeerName | undefined, incoming: RingState): boolean {
    // Only the proof of our free space needs who we heard from (one entry per peer ever seen).
    if (sender !== undefined && !this.verified) this.heardFrom.add(sender);
    const before = this.ring.state();
    // Until our space is proven (note 2) our own entries are only others' copies of them.
    const res = this.ring.merge(incoming, this.hasAllocations, { authoritative: this.verified });
    if (!res.ok) {
      if (res.kind === 'seeds' && this.maybeJoin(sender, incoming)) return true;
      // Periodic gossip has no sender; the ring names the peer whose copy it is.
      const from = sender ?? (incoming.peer !== 0 && incoming.peer !== this.ourName ? incoming.peer : undefined);
      const logged = this.recordConflict(res.kind, from, this.conflictMessage(res.kind, res.message, incoming));
      // Let the other side see the conflict too: our ring, to the peer that showed us theirs.
      if (logged && (res.kind === 'seeds' || res.kind === 'range') && from !== undefined && this.isReachable(from)) this.sendRingUpdate(from);
      return false;
    }
    if (res.updated) {
      try {
        this.persistRing();
      } catch (e) {
        this.ring.reset(before);
        this.log.error({ err: errorMessage(e) }, 'could not store the merged ring; dropped the update');
        return false;
      }
    }
    this.answerStaleCopy(sender ?? incoming.peer, incoming);
    if (!res.updated) return false;
    this.pruneNicknames();
    this.ringUpdated(before);
    return true;
  }

  /**
   * When a peer shows us a copy of the ring older than ours, we send it ours (at most every
   * STALE_REPLY_MS per peer). Beyond the original, which left such a peer to hear the news
   * from random periodic gossip: in a sparse mesh a peer at the edge could wait many rounds.
   */
  private answerStaleCopy(peer: PeerName, incoming: RingState): void {
    if (peer === 0 || peer === this.ourName || this.ring.empty()) return;
    const now = this.clock.now();
    const last = this.staleReplies.get(peer);
    if (last !== undefined && now - last < STALE_REPLY_MS) return;
    const theirs = new Map(incoming.entries.map((e) => [e.token, e.version]));
    const behind = this.ring.entryList().some((e) => {
      const v = theirs.get(e.token);
      return v === undefined || v < e.version;
    });
    if (!behind) return;
    this.staleReplies.set(peer, now);
    if (this.staleReplies.size > 1024) this.staleReplies.clear();
    this.sendRingUpdate(peer);
  }

  private conflictMessage(kind: IpamConflictKind, message: string, incoming: RingState): string {
    switch (kind) {
      case 'seeds':
        return `IP allocation was seeded by different peers (received: [${this.annotate(incoming.seeds)}], ours: [${this.annotate(this.ring.seeds)}])`;
      case 'range':
        return `Incompatible IP allocation ranges (received: ${formatRangeAsCidr({ start: incoming.start, end: incoming.end })}, ours: ${formatRangeAsCidr(this.universe)})`;
      default:
        return message;
    }
  }

  private annotate(names: readonly PeerName[]): string {
    return names.map((n) => {
      const nick = this.nicknames.get(n);
      return nick !== undefined ? `${formatPeerName(n)}(${nick})` : formatPeerName(n);
    }).join(' ');
  }

  /** Note 1: drop our unused ring for a preferred one. True when we joined theirs. */
  private maybeJoin(sender: PeerName | undefined, incoming: RingState): boolean {
    const inUse = (r: RingState) => Ring.restore(r, this.ourName).reportedInUse();
    let theirsPreferred: boolean;
    try {
      theirsPreferred = preferred(incoming, this.ring.state(), inUse);
    } catch {
      return false;
    }
    const holding = this.space.numAllocated() > 0 || [...this.byAddr.keys()].some((a) => this.ring.contains(a)) || this.pendingClaims.length > 0;
    if (!theirsPreferred || holding || this.ring.reportedInUse() > 0) return false;
    const ours = this.ring.state();
    const fresh = new Ring(this.universe.start, this.universe.end, this.ourName);
    const res = fresh.merge(incoming, () => false);
    if (!res.ok) return false;
    const previous = this.ring;
    this.ring = fresh;
    try {
      this.persistRing();
    } catch (e) {
      this.ring = previous;
      this.log.error({ err: errorMessage(e) }, 'could not store the ring we meant to join');
      return false;
    }
    this.log.warn(
      { peer: sender === undefined ? undefined : formatPeerName(sender), ours: ours.seeds.map(formatPeerName), theirs: incoming.seeds.map(formatPeerName) },
      `IP allocation ring seeded by [${this.annotate(ours.seeds)}] met ring seeded by [${this.annotate(incoming.seeds)}]; no addresses are in use in ours, joining theirs`,
    );
    this.space.clear();
    // Space the joined ring gives us is from an earlier life of ours: prove it free first.
    this.inherited = this.ring.ownedRanges().length > 0;
    this.ringLearntAtMs = this.clock.now();
    if (this.inherited) this.verified = false;
    for (const k of [...this.conflictRecords.keys()]) if (k.startsWith('seeds/')) this.conflictRecords.delete(k);
    this.pruneNicknames();
    this.ringUpdated();
    this.broadcastState();
    return true;
  }

  /** Records a conflict; true when it was logged now (first sight, or a minute since). */
  private recordConflict(kind: IpamConflictKind, peer: PeerName | undefined, message: string): boolean {
    const now = this.clock.now();
    const key = `${kind}/${peer ?? '?'}/${message}`;
    let c = this.conflictRecords.get(key);
    if (!c) {
      // Keyed by text from peers' data: at most MAX_CONFLICT_RECORDS, the first recorded going first.
      if (this.conflictRecords.size >= MAX_CONFLICT_RECORDS) this.conflictRecords.delete(this.conflictRecords.keys().next().value as string);
      c = { kind, peer, message, firstSeenMs: now, lastSeenMs: now, count: 0, lastLoggedMs: -Infinity };
      this.conflictRecords.set(key, c);
    }
    c.lastSeenMs = now;
    c.count++;
    if (now - c.lastLoggedMs < LOG_REPEAT_MS) return false;
    c.lastLoggedMs = now;
    this.log.error({ peer: peer === undefined ? undefined : formatPeerName(peer), kind, count: c.count }, message);
    return true;
  }

  private expireConflicts(): void {
    const now = this.clock.now();
    for (const [k, c] of this.conflictRecords) if (now - c.lastSeenMs > CONFLICT_MEMORY_MS) this.conflictRecords.delete(k);
  }

  /** Ring conflicts seen lately, most recent first. */
  conflicts(): IpamConflict[] {
    return [...this.conflictRecords.values()]
      .sort((a, b) => b.lastSeenMs - a.lastSeenMs)
      .map(({ kind, peer, message, firstSeenMs, lastSeenMs, count }) => ({ kind, peer, message, firstSeenMs, lastSeenMs, count }));
  }

  private pruneNicknames(): void {
    const inRing = this.ring.peerNames();
    for (const name of [...this.nicknames.keys()]) {
      if (name !== this.ourName && !inRing.has(name) && !this.deps.isKnownPeer(name) && this.nicknames.delete(name)) this.stateGen++;
    }
  }

  /** The mesh forgot a peer (router.peers.onGC): forget its nickname unless it owns space. */
  peerGone(name: PeerName): void {
    if (name !== this.ourName && !this.ring.peerNames().has(name) && this.nicknames.delete(name)) this.stateGen++;
  }

  // --- space moving between peers -------------------------------------------------------------

  private donateSpace(r: AddressRange, to: PeerName): void {
    if (!this.verified) {
      // Unproven space is never given away (note 2). Not a denial, which would fail a claim of
      // an address we may well give once verified: the request is answered when we are (the
      // grant changes the asker's ring, which makes it try again at once), or asked again.
      this.wantVerified = true;
      if (!this.deferredRequests.some((d) => d.to === to && d.r.start === r.start && d.r.end === r.end)) {
        if (this.deferredRequests.length >= 256) this.deferredRequests.shift();
        this.deferredRequests.push({ r, to });
      }
      this.log.debug({ peer: formatPeerName(to) }, 'asked for space before our ranges are verified: answering once they are');
      return;
    }
    const chunk = !this.shuttingDown ? this.space.donate(r) : undefined;
    if (!chunk) {
      this.log.debug({ peer: formatPeerName(to) }, 'No space to give to peer');
      this.sendSpaceRequestDenied(to, r);
      this.sendRingUpdate(to);
      return;
    }
    try {
      this.commitRing(() => this.ring.grantRangeToHost(chunk.start, chunk.end, to));
    } catch (e) {
      this.space.addFree(chunk);
      this.log.error({ err: errorMessage(e) }, 'could not store a grant of space; refused it');
      this.sendSpaceRequestDenied(to, r);
      return;
    }
    this.log.debug({ peer: formatPeerName(to), range: formatRangeAsCidr(chunk) }, `Giving range ${formatRangeAsCidr(chunk)} to ${formatPeerName(to)}`);
    this.reportFreeSpace();
    this.sendRingUpdate(to);
  }

  private spaceRequestDenied(sender: PeerName, r: AddressRange): void {
    const now = this.clock.now();
    for (let i = 0; i < this.pendingClaims.length; ) {
      const op = this.pendingClaims[i] as ClaimOp;
      if (!rangeContains(r, op.cidr.ip)) {
        i++;
      } else if (op.reclaim) {
        if (now - (op.deniedLoggedMs ?? -Infinity) >= LOG_REPEAT_MS) {
          op.deniedLoggedMs = now;
          this.log.warn({ ident: op.ident, cidr: formatCidr(op.cidr), peer: formatPeerName(sender) }, `address ${formatCidr(op.cidr)} in use here by ${op.ident} is owned by ${formatPeerName(sender)}, which will not give it; asking again`);
        }
        i++;
      } else {
        this.pendingClaims.splice(i, 1);
        this.deniedBy(op, sender);
      }
    }
  }

  // --- leaving and taking over ----------------------------------------------------------------

  /**
   * The heir of our space (allocator.go pickPeerForTransfer): a live peer with ring entries,
   * a live IPAM peer, a gone peer with entries, any IPAM peer. "Live" is reachable now rather
   * than the original's known to the topology, which still lists a peer that left a moment
   * ago (two peers leaving together could each pick the other).
   */
  private pickPeerForTransfer(): PeerName | undefined {
    const fromNicknames = (ok: (p: PeerName) => boolean) => [...this.nicknames.keys()].find((p) => p !== this.ourName && ok(p));
    const live = (p: PeerName) => this.isReachable(p);
    const any = () => true;
    return this.ring.pickPeerForTransfer(live) ?? fromNicknames(live) ?? this.ring.pickPeerForTransfer(any) ?? fromNicknames(any);
  }

  /**
   * DELETE /peer (leaving, `weave reset`): hands all our ranges to a live peer if there is one
   * (its entries' versions +100 so the transfer wins), broadcasts, and stops allocating.
   * Returns the heir.
   */
  shutdown(): PeerName | undefined {
    if (!this.started || this.shuttingDown) return undefined;
    this.log.info({}, 'Shutdown');
    this.cancelAll('shutting down');
    this.reportFreeSpace();
    this.shuttingDown = true;
    const heir = this.ring.empty() ? undefined : this.pickPeerForTransfer();
    if (heir !== undefined) {
      try {
        this.commitRing(() => this.ring.transfer(this.ourName, heir));
      } catch (e) {
        this.log.error({ err: errorMessage(e) }, 'could not store the transfer of our ranges');
      }
      this.space.clear();
      this.log.info({ heir: formatPeerName(heir) }, `Transferred our address space to ${formatPeerName(heir)}`);
      this.transport?.broadcast(this.gossipData);
    }
    return heir;
  }

  /** Finds a peer by nickname or name, as rmpeer accepts either. */
  lookupPeerName(nameOrNickname: string): PeerName | undefined {
    for (const [peer, nick] of this.nicknames) if (nick === nameOrNickname) return peer;
    return tryParsePeerName(nameOrNickname);
  }

  /**
   * DELETE /peer/<id> (`weave rmpeer`): takes over the ranges of a peer that is gone and
   * returns how many addresses we gained. Refuses a peer that is reachable now (CONFLICT),
   * since two owners of one range would hand out the same addresses; `force` overrides.
   */
  adminTakeoverRanges(nameOrNickname: string, opts: { force?: boolean } = {}): number {
    this.assertRunning();
    const peer = this.lookupPeerName(nameOrNickname);
    if (peer === undefined) {
      this.log.warn({ peer: nameOrNickname }, `attempt to take over range from unknown peer '${nameOrNickname}'`);
      return 0;
    }
    if (peer === this.ourName) {
      this.log.warn({}, 'attempt to take over range from ourself');
      return 0;
    }
    if (!opts.force && this.isReachable(peer)) {
      throw new WeaveError('CONFLICT', `peer ${formatPeerName(peer)} is reachable: refusing to take over the address space of a live peer (stop it, or run 'weave reset' on it, first)`);
    }
    this.takenOver.add(peer);
    const before = this.space.numFree() + this.space.numHeld();
    const ringBefore = this.ring.state();
    let moved: AddressRange[];
    try {
      moved = this.commitRing(() => this.ring.transfer(peer, this.ourName));
    } catch (e) {
      throw isWeaveError(e) ? e : new WeaveError('STORE_FAILED', errorMessage(e), { cause: e });
    }
    if (moved.length === 0) return 0;
    this.ringUpdated(ringBefore);
    const gained = this.space.numFree() + this.space.numHeld() - before;
    this.log.info({ peer: formatPeerName(peer), ips: gained }, `${gained} IPs taken over from ${formatPeerName(peer)}`);
    this.broadcastState();
    this.afterChange();
    return gained;
  }

  // --- status -------------------------------------------------------------------------------

  /** The IPAM object of `/report` (Go's ipam.Status). */
  status(): IpamStatusReport {
    // Empty lists are Go's nil slices: null in JSON, [] in templates.
    const entries = this.ring.empty()
      ? goNilSlice<IpamEntryReport>()
      : this.ring.allRangeInfo().map((r) => ({
          Token: formatIPv4(r.start),
          Size: r.end - r.start,
          Peer: formatPeerName(r.peer),
          Nickname: this.nicknames.get(r.peer) ?? '',
          IsKnownPeer: this.isKnown(r.peer),
          Version: r.version,
        }));
    const claims = this.pendingClaims.map((op) => ({ Ident: op.ident, CIDR: new ReportCidr(op.cidr) }));
    const allocs = this.pendingAllocationList();
    return {
      Paxos: this.awaitingConsensus && this.paxos ? this.paxos.status() : null,
      Range: formatCidr(this.range),
      RangeNumIPs: cidrSize(this.range.prefix),
      ActiveIPs: this.space.numAllocated(),
      DefaultSubnet: formatCidr(this.defaultSubnet),
      Entries: entries,
      PendingClaims: claims.length ? claims : goNilSlice(),
      PendingAllocates: allocs.length ? allocs : goNilSlice(),
    };
  }

  /** The `Status:` line of `weave status` while a ring conflict is remembered (else undefined). */
  conflictLine(): string | undefined {
    return ipamConflictLine(this.conflicts());
  }

  /** Owners of ring space the mesh does not know, with how much they own. */
  unreachableOwners(): { peer: PeerName; nickname: string | undefined; ips: number }[] {
    const out = new Map<PeerName, number>();
    for (const r of this.ring.allRangeInfo()) if (!this.isKnown(r.peer)) out.set(r.peer, (out.get(r.peer) ?? 0) + (r.end - r.start));
    return [...out].map(([peer, ips]) => ({ peer, nickname: this.nicknames.get(peer), ips }));
  }

  metrics(): IpamMetrics {
    const unreachable = this.unreachableOwners();
    const size = cidrSize(this.range.prefix);
    const lost = unreachable.reduce((n, u) => n + u.ips, 0);
    return {
      ips: this.space.numAllocated(),
      maxIps: size,
      unreachableCount: unreachable.length,
      unreachablePercentage: (lost * 100) / size,
      pendingAllocates: this.pendingAllocates.length,
      pendingClaims: this.pendingClaims.length,
    };
  }

  private logUnreachable(): void {
    const now = this.clock.now();
    if (now - this.lastUnreachableLogMs < UNREACHABLE_LOG_MS || now - this.lastUnreachableCheckMs < LOG_REPEAT_MS) return;
    this.lastUnreachableCheckMs = now;
    const u = this.unreachableOwners();
    if (u.length === 0) return;
    this.lastUnreachableLogMs = now;
    const ips = u.reduce((n, x) => n + x.ips, 0);
    const names = u.map((x) => (x.nickname !== undefined ? `${formatPeerName(x.peer)}(${x.nickname})` : formatPeerName(x.peer))).join(', ');
    this.log.warn(
      { peers: u.map((x) => formatPeerName(x.peer)), ips },
      `${ips} IPs (${((ips * 100) / cidrSize(this.range.prefix)).toFixed(1)}% of the range) owned by unreachable peers ${names}; if they are gone for good, run 'weave rmpeer <peer>' on one live peer`,
    );
  }

  /** Our view of the ring (tests, debugging). */
  ringState(): RingState {
    return this.ring.state();
  }

  /** The address ranges of our space: allocated, free, held (tests, debugging). */
  spaceState(): { allocated: AddressRange[]; free: AddressRange[]; held: AddressRange[] } {
    return { allocated: this.space.allocatedRanges(), free: this.space.freeRanges(), held: this.space.heldRanges() };
  }

  /** `Ring [a, b)` with one line per entry and nicknames, as the original logs it. */
  describeRing(): string {
    return this.ring.toString(this.nicknames);
  }
}

/** The parts of r not covered by `cover` (sorted, disjoint ranges). */
function subtractRanges(r: AddressRange, cover: readonly AddressRange[]): AddressRange[] {
  const out: AddressRange[] = [];
  let at = r.start;
  for (const c of cover) {
    if (c.end <= at) continue;
    if (c.start >= r.end) break;
    if (c.start > at) out.push({ start: at, end: Math.min(c.start, r.end) });
    at = Math.max(at, c.end);
    if (at >= r.end) break;
  }
  if (at < r.end) out.push({ start: at, end: r.end });
  return out;
}

function opName(op: Op): string {
  return op.kind === 'allocate' ? 'Allocate' : op.kind === 'claim' ? 'Claim' : 'Prime';
}
