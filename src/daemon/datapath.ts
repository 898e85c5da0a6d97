// Puts the data plane together: the TAP port (`vethwe-tap`) and, unless --no-fastdp, the VXLAN
// port (`vxlan-<port+1>`) on the bridge, the UDP socket of sleeve, the worker thread that moves
// frames, and the overlays the mesh negotiates per connection (vxlan preferred, then sleeve).
// Teardown undoes the kernel side: the TAP vanishes with its fd, the VXLAN device is deleted.
import { Worker } from 'node:worker_threads';
import type { Clock } from '../core/clock.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { formatPeerName, type PeerName } from '../core/peer-name.js';
import { OverlaySwitch } from '../dataplane/overlay-switch.js';
import { macOf, type DatapathEvent, type MacTableEntry } from '../dataplane/sleeve/engine.js';
import { SleeveOverlay, type SleeveDatapath, type SleevePeerState } from '../dataplane/sleeve/overlay.js';
import { VXLAN_VNI, VxlanOverlay, heartbeatMac } from '../dataplane/vxlan/overlay.js';
import type { Routes } from '../mesh/routes.js';
import type { Peers } from '../mesh/peers.js';
import { BridgeTool } from '../platform/bridge-fdb.js';
import type { IpRoute } from '../platform/iproute.js';
import { openTap, type TapDevice } from '../platform/tap.js';
import { EventFd } from '../platform/event-fd.js';
import { UdpSocket } from '../platform/udp-socket.js';
import type { SleeveWorkerData, WorkerCommand } from './sleeve-worker.js';

export const TAP_NAME = 'vethwe-tap';
/** Where frames are captured, as the original named its (`vethwe-pcap (via pcap)`): report and log. */
export const CAPTURE_INTERFACE = `${TAP_NAME} (via TAP)`;
/** How long the data path's thread may take to start before the router gives up. */
const WORKER_READY_TIMEOUT_MS = 10_000;
export const vxlanName = (port: number) => `vxlan-${port}`;

export interface DatapathOptions {
  bridge: string;
  ourName: PeerName;
  /** Mesh port: sleeve's UDP port; VXLAN uses port + 1. */
  port: number;
  host: string;
  mtu: number;
  fastdp: boolean;
}

export class Datapath {
  readonly overlay: OverlaySwitch;
  readonly sleeve: SleeveOverlay;
  readonly vxlan: VxlanOverlay | undefined;
  private readonly log: Logger;
  private worker: Worker | undefined;
  /** Settles when the worker thread has exited, whenever that was (stop may come later). */
  private workerExited: Promise<void> = Promise.resolve();
  private tap: TapDevice | undefined;
  private udp: UdpSocket | undefined;
  /** Wakes the worker from its poll() when a command is posted (else it sees it up to 50 ms late). */
  private wake: EventFd | undefined;
  private readonly fdb = new BridgeTool();
  private stopped = false;
  private workerReady: () => void = () => {};
  /** Callers waiting for the data path thread's MAC table. */
  private macTableWaiters: ((entries: MacTableEntry[]) => void)[] = [];

  private constructor(
    private readonly deps: { links: IpRoute; clock: Clock; logger: Logger },
    readonly opts: DatapathOptions,
  ) {
    this.log = deps.logger;
    const proxy: SleeveDatapath = {
      setPeer: (state: SleevePeerState) => this.send({ t: 'peer', state }),
      removePeer: (name, connUid) => this.send({ t: 'peer-del', name, connUid }),
      sendSpecial: (peer, df, frame) => this.send({ t: 'special', peer, df, frame }),
    };
    this.overlay = new OverlaySwitch({ logger: deps.logger, clock: deps.clock });
    this.sleeve = new SleeveOverlay({ clock: deps.clock, logger: deps.logger, datapath: proxy }, { port: opts.port, gso: true });
    const vx = vxlanName(opts.port + 1);
    if (opts.fastdp) {
      this.vxlan = new VxlanOverlay(
        {
          clock: deps.clock,
          logger: deps.logger,
          datapath: {
            route: async (mac, ip, port) => {
              await this.fdb.batch(this.fdb.routeLines(vx, mac, ip, port));
              this.send({ t: 'pin', mac: macNumber(mac), on: true });
            },
            unroute: async (mac) => {
              this.send({ t: 'pin', mac: macNumber(mac), on: false });
              await this.fdb.unroute(vx, mac);
            },
            inject: (frame) => this.send({ t: 'inject', frame }),
          },
        },
        { ourName: opts.ourName, port: opts.port + 1, mtu: opts.mtu },
      );
      this.overlay.add(this.vxlan);
    }
    this.overlay.add(this.sleeve);
    this.overlay.compat = this.sleeve;
    this.overlay.onBestChanged = (peer, connUid, name) => this.vxlan?.bestChanged(peer, connUid, name);
  }

  /** Creates the devices and the socket and starts the worker. */
  static async start(deps: { links: IpRoute; clock: Clock; logger: Logger }, opts: DatapathOptions): Promise<Datapath> {
    const d = new Datapath(deps, opts);
    try {
      await d.setUp();
    } catch (e) {
      await d.stop();
      throw e;
    }
    return d;
  }

  private async setUp(): Promise<void> {
    const { bridge, port, mtu } = this.opts;
    const links = this.deps.links;
    // A TAP left by a crashed router is gone with its process; a VXLAN device is not.
    const vx = vxlanName(port + 1);
    await links.deleteLink(vx);
    // With the virtio header and offloads the bridge hands us TCP super-frames (up to the
    // containers' gso_max_size) with partial checksums: one read per 64 KiB instead of 45.
    this.tap = openTap({ name: TAP_NAME, vnetHdr: true, offload: { csum: true, tso4: true, tso6: true, ecn: true } });
    // The TAP's own MTU does not limit what we inject; its maximum (65535 less the Ethernet
    // header) lets the bridge hand us any frame.
    await links.batch([`link set dev ${TAP_NAME} mtu 65521`, `link set dev ${TAP_NAME} master ${bridge}`, `link set dev ${TAP_NAME} up`]);
    const lines = [`fdb replace ${heartbeatMac(this.opts.ourName)} dev ${TAP_NAME} master static`];
    if (this.opts.fastdp) {
      await links.batch([
        `link add ${vx} mtu ${mtu} type vxlan id ${VXLAN_VNI} dstport ${port + 1} nolearning df set ttl 64`,
        `link set dev ${vx} master ${bridge}`,
        `link set dev ${vx} up`,
      ]);
      // Only what we program goes out over VXLAN: no learning, no flooding of any kind.
      lines.push(`link set dev ${vx} learning off flood off mcast_flood off bcast_flood off`);
    }
    await this.fdb.batch(lines);
    // UDP checksums on: UDP GSO needs them (and then costs nothing: the NIC, or nobody between
    // namespaces, computes them); the worker turns them off for encrypted datagrams only. GRO
    // hands us a peer's GSO trains whole.
    this.udp = UdpSocket.bind(this.opts.host || '0.0.0.0', port, { reuseAddr: true, rcvBuf: 4 << 20, sndBuf: 4 << 20, gro: true });
    this.wake = EventFd.create();
    const data: SleeveWorkerData = { tapFd: this.tap.fd, udpFd: this.udp.fd, wakeFd: this.wake.fd, ourName: this.opts.ourName, bridgeMtu: mtu };
    const worker = new Worker(new URL('./sleeve-worker.js', import.meta.url), { workerData: data });
    this.worker = worker;
    this.workerExited = new Promise((resolve) => worker.once('exit', () => resolve()));
    // Started means able to carry frames: wait for the thread to be set up (tens of ms of module
    // loading), or a peer connecting right after start waits for heartbeats nobody reads yet.
    const ready = new Promise<void>((resolve, reject) => {
      const timer = this.deps.clock.setTimeout(() => failed(`not ready after ${WORKER_READY_TIMEOUT_MS} ms`), WORKER_READY_TIMEOUT_MS);
      const failed = (why: string) => {
        timer.cancel();
        worker.off('exit', exited);
        reject(new WeaveError('KERNEL_FAILED', `the sleeve data path thread did not start: ${why}`));
      };
      const exited = (code: number) => failed(`exited with code ${code}`);
      worker.once('exit', exited);
      worker.once('error', (e) => failed(errorMessage(e)));
      this.workerReady = () => {
        timer.cancel();
        worker.off('exit', exited);
        resolve();
      };
    });
    worker.on('message', (ev: DatapathEvent) => this.onEvent(ev));
    worker.on('error', (e) => this.log.error({ err: errorMessage(e) }, 'sleeve data path thread failed'));
    this.send({ t: 'hbmac', mac: macNumber(heartbeatMac(this.opts.ourName)) });
    await ready;
    this.log.info({ tap: TAP_NAME, vxlan: this.opts.fastdp ? vx : undefined, overlays: this.overlay.names }, `Data plane on ${bridge}: overlays ${this.overlay.names.join(', ')}`);
    // The original's line, which its users look for.
    this.log.info({ interface: CAPTURE_INTERFACE }, `Sniffing traffic on ${CAPTURE_INTERFACE}`);
  }

  /** The bridge was deleted and created again: plug our ports back in and reprogram it. */
  async reattach(): Promise<void> {
    if (this.stopped) return;
    const { bridge, port } = this.opts;
    await this.deps.links.batch([`link set dev ${TAP_NAME} master ${bridge}`, `link set dev ${TAP_NAME} up`]);
    const lines = [`fdb replace ${heartbeatMac(this.opts.ourName)} dev ${TAP_NAME} master static`];
    if (this.opts.fastdp) {
      const vx = vxlanName(port + 1);
      await this.deps.links.batch([`link set dev ${vx} master ${bridge}`, `link set dev ${vx} up`]);
      lines.push(`link set dev ${vx} learning off flood off mcast_flood off bcast_flood off`);
    }
    await this.fdb.batch(lines);
    this.vxlan?.reprogram();
    this.log.info({ bridge }, 'data plane ports re-attached to the recreated bridge');
  }

  private send(cmd: WorkerCommand): void {
    if (this.stopped || !this.worker) return;
    this.worker.postMessage(cmd);
    this.wake?.wake();
  }

  private onEvent(ev: DatapathEvent): void {
    switch (ev.t) {
      case 'special':
        this.sleeve.specialReceived(ev.peer, ev.ip, ev.port, Buffer.from(ev.frame));
        return;
      case 'too-big':
        this.log.info({ peer: formatPeerName(ev.peer), pmtu: ev.pmtu }, `EMSGSIZE on send, expecting PMTU update (PMTU ${ev.pmtu})`);
        this.sleeve.messageTooBig(ev.peer, ev.pmtu);
        return;
      case 'heartbeat':
        this.vxlan?.heartbeatReceived(ev.frame);
        return;
      case 'macs':
        for (const [mac, peer] of ev.learned) {
          const m = formatPeerName(mac);
          if (peer === this.opts.ourName) {
            this.log.debug({ mac: m }, `Discovered local MAC ${m}`);
            this.vxlan?.macForgotten(m);
          } else {
            this.log.debug({ mac: m, peer: formatPeerName(peer) }, `Discovered remote MAC ${m} at ${formatPeerName(peer)}`);
            this.vxlan?.macLearned(m, peer);
          }
        }
        for (const mac of ev.forgotten) this.vxlan?.macForgotten(formatPeerName(mac));
        return;
      case 'log':
        this.log[ev.level]({ component: 'sleeve' }, ev.msg);
        return;
      case 'ready':
        this.workerReady();
        return;
      case 'mac-table': {
        const waiters = this.macTableWaiters;
        this.macTableWaiters = [];
        for (const w of waiters) w(ev.entries);
        return;
      }
    }
  }

  /** Pushes the mesh's established-connection routes to the data path. */
  updateRoutes(routes: Routes, peers: Peers): void {
    const unicast: [PeerName, PeerName][] = [];
    const broadcast: [PeerName, PeerName[]][] = [];
    for (const name of peers.names()) {
      const hop = routes.unicast(name);
      if (hop !== undefined && name !== this.opts.ourName) unicast.push([name, hop]);
      broadcast.push([name, [...routes.broadcast(name)]]);
    }
    this.send({ t: 'routes', unicast, broadcast });
  }

  /**
   * The MAC table of the data path's thread, for `weave report` (empty if the thread does not
   * answer within a second: a report must not hang on it).
   */
  macTable(): Promise<MacTableEntry[]> {
    if (!this.worker || this.stopped) return Promise.resolve([]);
    return new Promise((resolve) => {
      const timer = this.deps.clock.setTimeout(() => {
        this.macTableWaiters = this.macTableWaiters.filter((w) => w !== done);
        resolve([]);
      }, 1000);
      const done = (entries: MacTableEntry[]) => {
        timer.cancel();
        resolve(entries);
      };
      this.macTableWaiters.push(done);
      this.send({ t: 'mac-table' });
    });
  }

  /**
   * The capture counters of `weave report`: the original's were pcap's on `vethwe-pcap`; ours
   * are the TAP's kernel counters. PacketsReceived: frames the TAP handed to the router;
   * PacketsDropped: frames it dropped because the router did not read them in time (pcap's "no
   * room in the buffer"); PacketsIfDropped: frames the router wrote that the kernel dropped.
   * Null when the TAP cannot be read (a report must not fail on it).
   */
  async captureStats(): Promise<Record<string, number> | null> {
    if (!this.tap || this.stopped) return null;
    try {
      const s = await this.deps.links.linkStats(TAP_NAME);
      return s ? { PacketsDropped: s.tx.dropped, PacketsIfDropped: s.rx.dropped, PacketsReceived: s.tx.packets } : null;
    } catch (e) {
      this.log.debug({ err: errorMessage(e) }, 'capture counters unavailable');
      return null;
    }
  }

  /** A peer left the topology: its MACs are stale. */
  peerGone(peer: PeerName): void {
    this.send({ t: 'forget-peer', peer });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.worker?.postMessage({ t: 'stop' } satisfies WorkerCommand);
    this.wake?.wake();
    this.stopped = true;
    const w = this.worker;
    if (w) {
      // Listening for 'exit' only now would wait forever for a thread that died before.
      const timer = setTimeout(() => void w.terminate(), 1000);
      await this.workerExited;
      clearTimeout(timer);
    }
    this.udp?.close();
    this.tap?.close();
    this.wake?.close();
    if (this.opts.fastdp) {
      try {
        await this.deps.links.deleteLink(vxlanName(this.opts.port + 1));
      } catch (e) {
        this.log.warn({ err: errorMessage(e) }, 'cannot delete the VXLAN device');
      }
    }
  }
}

function macNumber(mac: string): number {
  return macOf(Buffer.from(mac.replace(/:/g, ''), 'hex'), 0);
}
