// The sleeve overlay's control side (the original's `router/sleeve.go` forwarder goroutine),
// on the main thread: per connection it sends heartbeats (500 ms until the remote acknowledges
// over TCP, then 10 s), gives up after 60 s without one, learns the remote's UDP address from
// its first heartbeat when we were dialled, tests whether IP fragments get through (every 5 min)
// and verifies the path MTU with DF test frames (8 tries, 10 ms doubling, then a binary search).
// The frames themselves move in the data path (a worker thread, see `SleeveDatapath`): it is
// told each peer's address, MTU, fragmentation verdict and key, sends the special frames we ask
// for (through the same sequence numbers as the data), and hands us the special frames it gets.
import type { Clock, TimerHandle } from '../../core/clock.js';
import { WeaveError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { formatPeerName, type PeerName } from '../../core/peer-name.js';
import type { Forwarder, ForwarderParams, NetworkOverlay } from '../overlay-switch.js';
import { MIN_VERIFIED_MTU } from './codec.js';

export const SLEEVE_OVERLAY = 'sleeve';
export const FAST_HEARTBEAT_MS = 500;
export const SLOW_HEARTBEAT_MS = 10_000;
export const HEARTBEAT_TIMEOUT_MS = 60_000;
export const FRAG_TEST_INTERVAL_MS = 5 * 60_000;
export const MTU_VERIFY_ATTEMPTS = 8;
export const MTU_VERIFY_TIMEOUT_MS = 10;
/** Before discovery (the original's DefaultMTU). */
export const DEFAULT_SLEEVE_MTU = 65535;
export const FRAG_TEST_SIZE = 60001;
export const PMTU_DISCOVERY_SIZE = 60000;
const UDP_OVERHEAD = 28;
const ETHERNET_OVERHEAD = 14;
const FRAME_OVERHEAD = 14;
/** Sender name; encrypted adds the sequence word and the secretbox tag. */
const PACKET_OVERHEAD_PLAIN = 6;
const PACKET_OVERHEAD_ENCRYPTED = 6 + 8 + 16;

/** Sleeve's control messages (inside OverlayControlMsg, after the overlay index). */
/**
 * Our own intro feature, a version: "1" when this router takes TCP super-frames (up to 64 KiB,
 * whole checksums) in one datagram over sleeve; "2" when, in addition, all its datagrams carry
 * UDP checksums (its super-frames leave as UDP GSO trains of segments); "3" when, in addition,
 * it takes TCP frames with partial checksums (the pseudo-header sum in the field, as the
 * kernel's checksum offload leaves it): integrity then rests on the UDP checksum or the NaCl
 * box; "4" when, in addition, it takes encrypted boxes cut into MTU-sized chunks
 * (box-chunks.ts). The original ignores features it does not know, never sends it, and so only
 * ever gets MTU-sized frames with whole checksums from us.
 */
export const SLEEVE_GSO_FEATURE = 'SleeveGSO';
export const SLEEVE_GSO_VERSION = 4;

export const SleeveControl = Object.freeze({ ConnectionEstablished: 1, FragmentationReceived: 2, PMTUVerified: 3 });

/** What the data path needs to carry frames to one directly connected peer. */
export interface SleevePeerState {
  name: PeerName;
  connUid: bigint;
  /** Unknown until the remote's first heartbeat when it dialled us. */
  ip: string | undefined;
  port: number;
  /** Largest IP packet (overlay MTU) that goes DF in one frame. */
  mtu: number;
  /** Largest UDP payload in one DF datagram. */
  maxPayload: number;
  /** Fragments get through: non-DF frames go out on the non-DF path, the kernel fragments. */
  stackFrag: boolean;
  sessionKey: Buffer | undefined;
  outbound: boolean;
  /** Both ends take TCP super-frames in one datagram (our `SleeveGSO` feature). */
  gso: boolean;
  /**
   * The peer's datagrams carry UDP checksums (SleeveGSO 2 and later), which the kernel checks
   * on arrival, so its TCP segments may be merged without checking their own checksums.
   */
  udpChecksums: boolean;
  /**
   * The peer takes TCP frames whose checksum field holds only the pseudo-header sum (SleeveGSO
   * 3 and later: it finishes them, or has the kernel do so), so we need not sum the payload.
   */
  partialChecksums: boolean;
  /** The peer takes a sealed super-frame as a train of chunks (SleeveGSO 4 and later). */
  boxChunks: boolean;
}

export interface SleeveDatapath {
  setPeer(state: SleevePeerState): void;
  removePeer(name: PeerName, connUid: bigint): void;
  /** Sends one special frame (zero MACs) to the peer, DF or not, through its encryptor. */
  sendSpecial(peer: PeerName, df: boolean, frame: Buffer): void;
}

export interface SleeveOverlayDeps {
  clock: Clock;
  logger: Logger;
  datapath: SleeveDatapath;
}

export class SleeveOverlay implements NetworkOverlay {
  readonly name = SLEEVE_OVERLAY;
  private readonly forwarders = new Map<PeerName, SleeveForwarder>();

  constructor(private readonly deps: SleeveOverlayDeps, private readonly opts: { port: number; gso?: boolean }) {}

  addFeaturesTo(features: Map<string, string>): void {
    if (this.opts.gso) features.set(SLEEVE_GSO_FEATURE, String(SLEEVE_GSO_VERSION));
  }

  prepare(params: ForwarderParams): Forwarder {
    const version = Number(params.features.get(SLEEVE_GSO_FEATURE) ?? 0);
    const v = this.opts.gso && Number.isInteger(version) ? version : 0;
    return new SleeveForwarder(this, this.deps, params, this.opts.port, v);
  }

  /** @internal */
  register(f: SleeveForwarder): void {
    // A confirmed connection is the only one to its peer (the mesh keeps one).
    this.forwarders.set(f.remote, f);
  }

  /** @internal */
  unregister(f: SleeveForwarder): void {
    if (this.forwarders.get(f.remote) === f) this.forwarders.delete(f.remote);
  }

  /** A special frame from `peer` (the data path checked src/dst names and zero MACs). */
  specialReceived(peer: PeerName, fromIp: string, fromPort: number, frame: Buffer): void {
    this.forwarders.get(peer)?.handleSpecial(fromIp, fromPort, frame);
  }

  /** A DF send to `peer` was refused as too big; `pmtu` is what the kernel now says. */
  messageTooBig(peer: PeerName, pmtu: number): void {
    this.forwarders.get(peer)?.messageTooBig(pmtu);
  }

  forwarder(peer: PeerName): SleeveForwarder | undefined {
    return this.forwarders.get(peer);
  }
}

export class SleeveForwarder implements Forwarder {
  readonly remote: PeerName;
  private readonly label: string;
  private readonly log: Logger;
  private readonly state: SleevePeerState;
  private readonly overheadDF: number;
  private confirmed = false;
  private stopped = false;
  private heartbeatInterval = 0;
  private ackedHeartbeat = false;
  private establishedOnce = false;
  private heartbeatTimer: TimerHandle | undefined;
  private heartbeatTimeout: TimerHandle | undefined;
  private fragTestTimer: TimerHandle | undefined;
  private mtuTestTimer: TimerHandle | undefined;
  private mtuTestsSent = 0;
  private mtuHighestGood = 0;
  private mtuLowestBad = 0;
  private mtuCandidate = 0;

  constructor(
    private readonly overlay: SleeveOverlay,
    private readonly deps: SleeveOverlayDeps,
    private readonly params: ForwarderParams,
    port: number,
    gsoVersion: number,
  ) {
    this.remote = params.remoteName;
    this.label = `${formatPeerName(params.remoteName)}(${params.remoteNickName})`;
    this.log = deps.logger;
    const encrypted = params.sessionKey !== undefined;
    this.overheadDF = UDP_OVERHEAD + (encrypted ? PACKET_OVERHEAD_ENCRYPTED : PACKET_OVERHEAD_PLAIN) + FRAME_OVERHEAD + ETHERNET_OVERHEAD;
    const colon = params.remoteAddress.lastIndexOf(':');
    this.state = {
      name: params.remoteName,
      connUid: params.connUid,
      // The dialling side knows where to send; the other learns it from the first heartbeat.
      ip: params.outbound ? params.remoteAddress.slice(0, colon) : undefined,
      port: params.outbound ? Number(params.remoteAddress.slice(colon + 1)) : port,
      mtu: DEFAULT_SLEEVE_MTU,
      maxPayload: DEFAULT_SLEEVE_MTU - UDP_OVERHEAD,
      stackFrag: false,
      sessionKey: params.sessionKey,
      outbound: params.outbound,
      gso: gsoVersion >= 1,
      udpChecksums: gsoVersion >= 2,
      partialChecksums: gsoVersion >= 3,
      boxChunks: gsoVersion >= 4,
    };
  }

  private prefix(): string {
    return `sleeve ->[${this.state.ip ?? '<nil>'}:${this.state.port}|${this.label}]: `;
  }

  private push(): void {
    if (!this.stopped && this.confirmed) this.deps.datapath.setPeer({ ...this.state });
  }

  private fail(message: string): void {
    if (this.stopped) return;
    this.params.failed(new WeaveError('UNAVAILABLE', message));
  }

  confirm(): void {
    if (this.confirmed || this.stopped) return;
    this.confirmed = true;
    this.overlay.register(this);
    this.push();
    this.heartbeatInterval = FAST_HEARTBEAT_MS;
    if (this.state.ip !== undefined) this.sendHeartbeat();
    this.heartbeatTimeout = this.deps.clock.setTimeout(() => this.fail('timed out waiting for UDP heartbeat'), HEARTBEAT_TIMEOUT_MS);
  }

  private sendHeartbeat(): void {
    if (this.stopped) return;
    this.heartbeatTimer?.cancel();
    this.heartbeatTimer = this.deps.clock.setTimeout(() => this.sendHeartbeat(), this.heartbeatInterval);
    const frame = Buffer.alloc(ETHERNET_OVERHEAD + 8);
    frame.writeBigUInt64BE(this.params.connUid, ETHERNET_OVERHEAD);
    this.deps.datapath.sendSpecial(this.remote, true, frame);
  }

  /** @internal from the overlay: a special frame from our remote. */
  handleSpecial(fromIp: string, fromPort: number, frame: Buffer): void {
    if (this.stopped) return;
    // The original tells special frames apart by their length only.
    if (frame.length === ETHERNET_OVERHEAD + 8) this.handleHeartbeat(fromIp, fromPort, frame);
    else if (frame.length === FRAG_TEST_SIZE) {
      if (frame.every((b) => b === 0)) this.params.sendControl(SleeveControl.FragmentationReceived);
    } else {
      const body = Buffer.alloc(2);
      body.writeUInt16BE((frame.length - ETHERNET_OVERHEAD) & 0xffff);
      this.params.sendControl(SleeveControl.PMTUVerified, body);
    }
  }

  private handleHeartbeat(fromIp: string, fromPort: number, frame: Buffer): void {
    if (frame.readBigUInt64BE(ETHERNET_OVERHEAD) !== this.params.connUid) return;
    if (this.state.ip === undefined) {
      this.state.ip = fromIp;
      this.state.port = fromPort;
      this.push();
      if (this.heartbeatInterval !== 0) this.sendHeartbeat();
    } else if (this.state.ip !== fromIp || this.state.port !== fromPort) {
      this.log.info({ peer: this.label }, `${this.prefix()}Peer UDP address changed to ${fromIp}:${fromPort}`);
      this.state.ip = fromIp;
      this.state.port = fromPort;
      this.push();
    }
    if (!this.ackedHeartbeat) {
      this.ackedHeartbeat = true;
      this.params.sendControl(SleeveControl.ConnectionEstablished);
    }
    this.heartbeatTimeout?.cancel();
    if (this.confirmed) this.heartbeatTimeout = this.deps.clock.setTimeout(() => this.fail('timed out waiting for UDP heartbeat'), HEARTBEAT_TIMEOUT_MS);
  }

  controlMessage(tag: number, body: Buffer): void {
    if (this.stopped) return;
    switch (tag) {
      case SleeveControl.ConnectionEstablished:
        return this.handleHeartbeatAck();
      case SleeveControl.FragmentationReceived:
        this.state.stackFrag = true;
        this.push();
        return;
      case SleeveControl.PMTUVerified:
        if (body.length < 2) {
          this.log.info({ peer: this.label }, `${this.prefix()}Received truncated MTUTestAck`);
          return;
        }
        return this.handleMtuTestAck(body.readUInt16BE(0));
      default:
        this.log.info({ peer: this.label, tag }, `${this.prefix()}Ignoring unknown control message tag: ${tag}`);
    }
  }

  private handleHeartbeatAck(): void {
    if (this.heartbeatInterval !== SLOW_HEARTBEAT_MS) {
      this.heartbeatInterval = SLOW_HEARTBEAT_MS;
      if (this.heartbeatTimer) {
        this.heartbeatTimer.cancel();
        this.heartbeatTimer = this.deps.clock.setTimeout(() => this.sendHeartbeat(), this.heartbeatInterval);
      }
      if (!this.establishedOnce) {
        this.establishedOnce = true;
        this.params.established();
      }
    }
    this.fragTestTimer?.cancel();
    this.fragTestTimer = this.deps.clock.setInterval(() => this.periodicTests(), FRAG_TEST_INTERVAL_MS);
    this.sendFragTest();
    // A DF frame far bigger than any path: the send fails with EMSGSIZE, which tells us the
    // path MTU the kernel knows (messageTooBig) and starts the verification.
    this.deps.datapath.sendSpecial(this.remote, true, Buffer.alloc(PMTU_DISCOVERY_SIZE));
  }

  /** Every 5 min: the fragmentation test again, and (unlike the original) the MTU too. */
  private periodicTests(): void {
    this.sendFragTest();
    this.reverifyMtu();
  }

  /**
   * The path may have shrunk without telling us (a black hole: no ICMP, so no EMSGSIZE), or
   * healed. The original verified once per connection and stayed on a dead MTU; we redo the
   * discovery as at the start (probe, the kernel's path MTU, search down to the floor), keeping
   * the current MTU until it ends. Searching down from the current MTU instead ratcheted it
   * down for good after an outage during a re-check; this way the next re-check restores it.
   */
  private reverifyMtu(): void {
    if (this.stopped || this.mtuCandidate !== 0 || this.state.mtu >= DEFAULT_SLEEVE_MTU) return;
    this.deps.datapath.sendSpecial(this.remote, true, Buffer.alloc(PMTU_DISCOVERY_SIZE));
  }

  private sendFragTest(): void {
    if (this.stopped) return;
    if (this.state.stackFrag) {
      this.state.stackFrag = false;
      this.push();
    }
    this.deps.datapath.sendSpecial(this.remote, false, Buffer.alloc(FRAG_TEST_SIZE));
  }

  /** @internal from the overlay: the original's processSendError for msgTooBigError. */
  messageTooBig(pmtu: number): void {
    if (this.stopped) return;
    const mtu = pmtu - this.overheadDF;
    if (this.mtuCandidate !== 0 && mtu >= this.mtuCandidate) return;
    // The original's floor; never above what the kernel takes, though.
    this.mtuHighestGood = Math.min(MIN_VERIFIED_MTU, mtu);
    this.mtuLowestBad = mtu + 1;
    this.mtuCandidate = mtu;
    this.mtuTestsSent = 0;
    // The kernel's word is final downwards; more than we have (a re-check) waits for the test.
    if (mtu < this.state.mtu) {
      this.state.maxPayload = pmtu - UDP_OVERHEAD;
      this.state.mtu = mtu;
      this.push();
    }
    this.sendMtuTest();
  }

  private sendMtuTest(): void {
    if (this.stopped) return;
    this.deps.datapath.sendSpecial(this.remote, true, Buffer.alloc(this.mtuCandidate + ETHERNET_OVERHEAD));
    this.mtuTestTimer?.cancel();
    this.mtuTestTimer = this.deps.clock.setTimeout(() => this.handleMtuTestFailure(), MTU_VERIFY_TIMEOUT_MS << this.mtuTestsSent);
    this.mtuTestsSent++;
  }

  private handleMtuTestAck(mtu: number): void {
    if (mtu !== this.mtuCandidate) return;
    this.mtuHighestGood = mtu;
    this.searchMtu();
  }

  private handleMtuTestFailure(): void {
    if (this.mtuTestsSent < MTU_VERIFY_ATTEMPTS) return this.sendMtuTest();
    this.mtuLowestBad = this.mtuCandidate;
    this.searchMtu();
  }

  private searchMtu(): void {
    if (this.mtuHighestGood + 1 >= this.mtuLowestBad) {
      const mtu = this.mtuHighestGood;
      this.log.info({ peer: this.label, mtu }, `${this.prefix()}Effective MTU verified at ${mtu}`);
      this.mtuTestTimer?.cancel();
      this.mtuTestTimer = undefined;
      this.mtuCandidate = 0;
      this.state.maxPayload = mtu + this.overheadDF - UDP_OVERHEAD;
      this.state.mtu = mtu;
      this.push();
      return;
    }
    this.mtuCandidate = Math.floor((this.mtuHighestGood + this.mtuLowestBad) / 2);
    this.mtuTestsSent = 0;
    this.sendMtuTest();
  }

  /** Overlay MTU of this connection (DF frames up to this size go in one piece). */
  get mtu(): number {
    return this.state.mtu;
  }

  get stackFrag(): boolean {
    return this.state.stackFrag;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of [this.heartbeatTimer, this.heartbeatTimeout, this.fragTestTimer, this.mtuTestTimer]) t?.cancel();
    this.overlay.unregister(this);
    if (this.confirmed) this.deps.datapath.removePeer(this.remote, this.params.connUid);
  }

  attrs(): Record<string, unknown> {
    return { mtu: this.state.mtu, name: SLEEVE_OVERLAY };
  }
}
