// The kernel fast path: a VXLAN device (`vxlan-<port+1>`) on the `weave` bridge, whose
// forwarding database we program from what the mesh learns. The original did this with the
// openvswitch datapath (`fastdp`), which this kernel lacks; we use a plain Linux VXLAN port in
// the bridge and advertise it as `vxlan`, so an original router (which offers `fastdp sleeve`)
// negotiates sleeve with us.
//
// How traffic moves: the bridge port of the VXLAN device neither learns nor floods. A remote
// MAC goes onto it (a static bridge entry plus a VXLAN entry naming the peer's address) only
// while that peer is directly connected and its fast path is healthy; every other frame still
// reaches the sleeve data path through the TAP port (broadcasts, unknown destinations, peers
// reached through another hop, encrypted connections).
//
// Health: per connection, a full-MTU heartbeat frame goes through the fast path every second
// (250 ms until the first acknowledgement) to a per-peer heartbeat MAC that the remote's bridge
// delivers to its TAP; the remote acknowledges each over TCP (control tag 0). No ack for 3.5 s
// marks the path unhealthy and traffic moves to sleeve; acks again move it back. Because the
// heartbeat is as big as the overlay MTU and the outer header has DF set, a path that cannot
// carry full frames never becomes healthy.
import type { Clock, TimerHandle } from '../../core/clock.js';
import { WeaveError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { formatPeerName, type PeerName } from '../../core/peer-name.js';
import type { Forwarder, ForwarderParams, NetworkOverlay } from '../overlay-switch.js';

export const VXLAN_OVERLAY = 'vxlan';
/** Our own feature: the UDP port of our VXLAN device (the original's port + 1 convention). */
export const VXLAN_PORT_FEATURE = 'VxlanPort';
export const VXLAN_VNI = 0x5745;
export const VXLAN_FAST_HEARTBEAT_MS = 250;
export const VXLAN_HEARTBEAT_MS = 1000;
export const VXLAN_UNHEALTHY_AFTER_MS = 3500;
/** Outer IPv4 + UDP + VXLAN + inner Ethernet. */
export const VXLAN_OVERHEAD = 20 + 8 + 8 + 14;
/** An IEEE "local experimental" ethertype marks our heartbeat frames. */
export const HEARTBEAT_ETHERTYPE = 0x88b5;
const HEARTBEAT_HEADER = 14 + 8 + 2 + 6;

export const VxlanControl = Object.freeze({ HeartbeatAck: 0 });

/** The MAC our heartbeats to `peer` are addressed to: the peer name, flipped so it is neither
 * the peer's bridge MAC nor a multicast address. */
export function heartbeatMac(peer: PeerName): string {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(peer));
  const mac = b.subarray(2);
  mac[0] = ((mac[0] as number) ^ 0x04) | 0x02;
  mac[0] = (mac[0] as number) & 0xfe;
  return [...mac].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

export function encodeHeartbeatFrame(from: PeerName, to: PeerName, connUid: bigint, mtu: number): Buffer {
  const frame = Buffer.alloc(Math.max(14 + mtu, HEARTBEAT_HEADER));
  macBytes(heartbeatMac(to)).copy(frame, 0);
  macBytes(heartbeatMac(from)).copy(frame, 6);
  frame.writeUInt16BE(HEARTBEAT_ETHERTYPE, 12);
  frame.writeBigUInt64BE(connUid, 14);
  frame.writeUInt16BE(frame.length & 0xffff, 22);
  frame.writeUIntBE(from, 24, 6);
  return frame;
}

export interface HeartbeatFrame {
  connUid: bigint;
  from: PeerName;
  /** Whether it arrived whole (the length it says it has). */
  complete: boolean;
}

/** undefined unless `frame` is one of our heartbeats. */
export function decodeHeartbeatFrame(frame: Uint8Array): HeartbeatFrame | undefined {
  if (frame.length < HEARTBEAT_HEADER) return undefined;
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
  if (b.readUInt16BE(12) !== HEARTBEAT_ETHERTYPE) return undefined;
  return { connUid: b.readBigUInt64BE(14), from: b.readUIntBE(24, 6), complete: b.readUInt16BE(22) === b.length };
}

/** Kernel side of the fast path (implemented over `bridge fdb` and the TAP). */
export interface VxlanDatapath {
  /** Frames to `mac` go out of the VXLAN port to `ip:port`. */
  route(mac: string, ip: string, port: number): Promise<void>;
  unroute(mac: string): Promise<void>;
  /** Writes a frame into the bridge through the TAP (our heartbeats). */
  inject(frame: Buffer): void;
}

export interface VxlanOverlayDeps {
  clock: Clock;
  logger: Logger;
  datapath: VxlanDatapath;
}

export interface VxlanOverlayOptions {
  ourName: PeerName;
  /** Our VXLAN UDP port (weave port + 1). */
  port: number;
  /** The bridge MTU: heartbeats are this big. */
  mtu: number;
}

interface PeerPath {
  fwd: VxlanForwarder;
  ip: string;
  port: number;
}

export class VxlanOverlay implements NetworkOverlay {
  readonly name = VXLAN_OVERLAY;
  private readonly log: Logger;
  /** Confirmed forwarders by peer. */
  private readonly forwarders = new Map<PeerName, VxlanForwarder>();
  /** Peers whose traffic the switch put on the fast path. */
  private readonly active = new Map<PeerName, PeerPath>();
  /** Remote MACs learned by the data path. */
  private readonly macs = new Map<string, PeerName>();
  /** What the kernel has: MAC → `ip:port`. */
  private readonly programmed = new Map<string, string>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly deps: VxlanOverlayDeps, readonly opts: VxlanOverlayOptions) {
    this.log = deps.logger;
  }

  addFeaturesTo(features: Map<string, string>): void {
    features.set(VXLAN_PORT_FEATURE, String(this.opts.port));
  }

  prepare(params: ForwarderParams): Forwarder {
    if (params.sessionKey) throw new WeaveError('UNAVAILABLE', 'encryption needs sleeve: this kernel has no ESP for an encrypted fast path');
    const portText = params.features.get(VXLAN_PORT_FEATURE);
    const port = Number(portText);
    if (!portText || !Number.isInteger(port) || port < 1 || port > 65535) throw new WeaveError('UNAVAILABLE', 'peer did not say its VXLAN port');
    const ip = params.remoteAddress.slice(0, params.remoteAddress.lastIndexOf(':'));
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) throw new WeaveError('UNAVAILABLE', `fast path needs an IPv4 peer address, not ${ip}`);
    return new VxlanForwarder(this, this.deps, params, { ip, port, mtu: this.opts.mtu, ourName: this.opts.ourName });
  }

  /** @internal */
  register(f: VxlanForwarder): void {
    this.forwarders.set(f.remote, f);
  }

  /** @internal */
  unregister(f: VxlanForwarder): void {
    if (this.forwarders.get(f.remote) === f) this.forwarders.delete(f.remote);
    if (this.active.get(f.remote)?.fwd === f) this.setActive(f.remote, undefined);
  }

  /** A heartbeat frame came out of the TAP (addressed to our heartbeat MAC). */
  heartbeatReceived(frame: Uint8Array): void {
    const hb = decodeHeartbeatFrame(frame);
    if (!hb) return;
    this.forwarders.get(hb.from)?.heartbeatReceived(hb);
  }

  /** The switch's choice for `peer`'s traffic (from OverlaySwitch.onBestChanged). */
  bestChanged(peer: PeerName, connUid: bigint, overlay: string | undefined): void {
    const f = this.forwarders.get(peer);
    if (overlay === VXLAN_OVERLAY && f && f.connUid === connUid) this.setActive(peer, f);
    else if (!f || f.connUid === connUid || overlay !== VXLAN_OVERLAY) {
      const cur = this.active.get(peer);
      if (cur && (cur.fwd.connUid === connUid || !f)) this.setActive(peer, undefined);
    }
  }

  private setActive(peer: PeerName, f: VxlanForwarder | undefined): void {
    if (f) this.active.set(peer, { fwd: f, ip: f.ip, port: f.port });
    else this.active.delete(peer);
    for (const [mac, owner] of this.macs) if (owner === peer) this.reconcile(mac);
  }

  /** The data path learned (or moved) a remote MAC. */
  macLearned(mac: string, peer: PeerName): void {
    if (this.macs.get(mac) === peer) return;
    this.macs.set(mac, peer);
    this.reconcile(mac);
  }

  macForgotten(mac: string): void {
    if (!this.macs.delete(mac)) return;
    this.reconcile(mac);
  }

  private reconcile(mac: string): void {
    const owner = this.macs.get(mac);
    const path = owner === undefined ? undefined : this.active.get(owner);
    const want = path ? `${path.ip}:${path.port}` : undefined;
    if (this.programmed.get(mac) === want) return;
    if (want) this.programmed.set(mac, want);
    else this.programmed.delete(mac);
    // Kernel changes in order, one at a time: a later change for the same MAC wins.
    this.queue = this.queue.then(async () => {
      try {
        if (path) await this.deps.datapath.route(mac, path.ip, path.port);
        else await this.deps.datapath.unroute(mac);
      } catch (e) {
        this.log.warn({ mac, err: errorMessage(e) }, 'fast path: cannot program forwarding entry');
      }
    });
  }

  /** Programs everything again (the bridge was recreated and lost its entries). */
  reprogram(): void {
    for (const [mac, to] of this.programmed) {
      const i = to.lastIndexOf(':');
      this.enqueue(() => this.deps.datapath.route(mac, to.slice(0, i), Number(to.slice(i + 1))));
    }
    for (const f of this.forwarders.values()) this.enqueue(() => this.deps.datapath.route(heartbeatMac(f.remote), f.ip, f.port));
  }

  /** Resolves when queued kernel changes are done (tests). */
  settled(): Promise<void> {
    return this.queue;
  }

  /** @internal heartbeat MAC entries go through the same ordered queue. */
  enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((e) => this.log.warn({ err: errorMessage(e) }, 'fast path: kernel change failed'));
  }

  activePeers(): PeerName[] {
    return [...this.active.keys()];
  }

  programmedMacs(): ReadonlyMap<string, string> {
    return this.programmed;
  }
}

export class VxlanForwarder implements Forwarder {
  readonly remote: PeerName;
  readonly connUid: bigint;
  readonly ip: string;
  readonly port: number;
  private readonly label: string;
  private readonly mtu: number;
  private readonly ourName: PeerName;
  private confirmed = false;
  private stopped = false;
  private establishedOnce = false;
  private healthy = false;
  private lastAck = -Infinity;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly overlay: VxlanOverlay,
    private readonly deps: VxlanOverlayDeps,
    private readonly params: ForwarderParams,
    o: { ip: string; port: number; mtu: number; ourName: PeerName },
  ) {
    this.remote = params.remoteName;
    this.connUid = params.connUid;
    this.ip = o.ip;
    this.port = o.port;
    this.mtu = o.mtu;
    this.ourName = o.ourName;
    this.label = `${formatPeerName(params.remoteName)}(${params.remoteNickName})`;
  }

  confirm(): void {
    if (this.confirmed || this.stopped) return;
    this.confirmed = true;
    this.overlay.register(this);
    const mac = heartbeatMac(this.remote);
    this.overlay.enqueue(() => this.deps.datapath.route(mac, this.ip, this.port));
    this.overlay.enqueue(async () => this.tick());
  }

  private tick(): void {
    if (this.stopped) return;
    const now = this.deps.clock.now();
    if (this.healthy && now - this.lastAck > VXLAN_UNHEALTHY_AFTER_MS) {
      this.healthy = false;
      this.params.healthChanged(false);
    }
    this.deps.datapath.inject(encodeHeartbeatFrame(this.ourName, this.remote, this.connUid, this.mtu));
    const interval = this.establishedOnce ? VXLAN_HEARTBEAT_MS : VXLAN_FAST_HEARTBEAT_MS;
    this.timer = this.deps.clock.setTimeout(() => this.tick(), interval);
  }

  /** @internal a heartbeat from our remote arrived through the fast path: acknowledge it. */
  heartbeatReceived(hb: { connUid: bigint; complete: boolean }): void {
    if (this.stopped || hb.connUid !== this.connUid || !hb.complete) return;
    this.params.sendControl(VxlanControl.HeartbeatAck);
  }

  controlMessage(tag: number): void {
    if (this.stopped || tag !== VxlanControl.HeartbeatAck) return;
    this.lastAck = this.deps.clock.now();
    if (!this.establishedOnce) {
      this.establishedOnce = true;
      this.healthy = true;
      this.params.established();
      return;
    }
    if (!this.healthy) {
      this.healthy = true;
      this.params.healthChanged(true);
    }
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.overlay.unregister(this);
    if (this.confirmed) {
      const mac = heartbeatMac(this.remote);
      this.overlay.enqueue(() => this.deps.datapath.unroute(mac));
    }
    void this.label;
  }

  attrs(): Record<string, unknown> {
    return { mtu: this.mtu, name: VXLAN_OVERLAY };
  }
}
