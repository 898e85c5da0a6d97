// The sleeve data path's thread: frames from the TAP and datagrams from UDP go through the
// SleeveEngine here, off the main event loop. The loop blocks in poll() on both fds (20 ms at
// most, so control messages are never late), reads everything ready in bursts, and sends each
// burst's datagrams with sendmmsg. Control messages arrive with receiveMessageOnPort, which
// works while this thread never returns to its event loop.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../core/errors.js';
import type { PeerName } from '../core/peer-name.js';
import { SleeveEngine, type DatapathEvent, type EngineIo } from '../dataplane/sleeve/engine.js';
import type { SleevePeerState } from '../dataplane/sleeve/overlay.js';
import { NO_VNET_HDR, VNET_HDR_BYTES, encodeVnetHdr } from '../dataplane/sleeve/vnet-hdr.js';
import { POLLIN, libc } from '../platform/ffi/libc.js';
import { TapDevice, TAP_READ_BUFFER_BYTES } from '../platform/tap.js';
import { UdpSocket, pathMtu, type Datagram, type OutgoingDatagram } from '../platform/udp-socket.js';

export interface SleeveWorkerData {
  tapFd: number;
  udpFd: number;
  ourName: PeerName;
  bridgeMtu: number;
}

/** Main thread → worker. */
export type WorkerCommand =
  | { t: 'peer'; state: SleevePeerState }
  | { t: 'peer-del'; name: PeerName; connUid: bigint }
  | { t: 'routes'; unicast: [PeerName, PeerName][]; broadcast: [PeerName, PeerName[]][] }
  | { t: 'special'; peer: PeerName; df: boolean; frame: Uint8Array }
  | { t: 'inject'; frame: Uint8Array }
  | { t: 'hbmac'; mac: number }
  | { t: 'pin'; mac: number; on: boolean }
  | { t: 'forget-peer'; peer: PeerName }
  | { t: 'stop' };

const ZERO_HDR = Buffer.alloc(VNET_HDR_BYTES);
const TAP_BURST = 64;
const UDP_BURST = 32;
const POLL_MS = 50;
const EXPIRE_EVERY_MS = 60_000;

function run(data: SleeveWorkerData): void {
  const port = parentPort;
  if (!port) throw new Error('sleeve-worker must run as a worker thread');
  const post = (ev: DatapathEvent) => port.postMessage(ev);
  const tap = TapDevice.fromFd(data.tapFd);
  const udp = UdpSocket.fromFd(data.udpFd);
  const c = libc();
  const hdrBuf = Buffer.alloc(VNET_HDR_BYTES);

  const dfOut: OutgoingDatagram[] = [];
  const nonDfOut: OutgoingDatagram[] = [];
  const dfIndex: number[] = [];
  const nonDfIndex: number[] = [];
  let queued = 0;
  const io: EngineIo = {
    queueUdp(buf, len, ip, p, df) {
      (df ? dfOut : nonDfOut).push({ buf, len, ip, port: p });
      (df ? dfIndex : nonDfIndex).push(queued++);
    },
    flushUdp() {
      const tooBig: number[] = [];
      const send = (list: OutgoingDatagram[], index: number[], df: boolean) => {
        if (!list.length) return;
        udp.setDontFragment(df);
        udp.sendBatch(list, list.length, (i, err) => {
          if (err.errnoName === 'EMSGSIZE') tooBig.push(index[i] as number);
        });
      };
      try {
        send(dfOut, dfIndex, true);
        send(nonDfOut, nonDfIndex, false);
      } catch (e) {
        post({ t: 'log', level: 'warn', msg: `sleeve send failed: ${errorMessage(e)}` });
      }
      dfOut.length = nonDfOut.length = dfIndex.length = nonDfIndex.length = 0;
      queued = 0;
      return { tooBig };
    },
    writeTap(frame, hdr) {
      try {
        if (!tap.vnetHdr) tap.write(frame, frame.byteLength);
        else tap.writeParts(hdr && hdr !== NO_VNET_HDR ? encodeVnetHdr(hdr, hdrBuf) : ZERO_HDR, VNET_HDR_BYTES, frame, frame.byteLength);
      } catch {
        // The TAP is down or the frame is malformed: drop it, as a switch would.
      }
    },
    post,
    pathMtu(ip) {
      try {
        return pathMtu(ip);
      } catch {
        return 1500;
      }
    },
    now: () => Date.now(),
  };
  const engine = new SleeveEngine(io, data.ourName, { vnetHdr: tap.vnetHdr, bridgeMtu: data.bridgeMtu });

  const command = (m: WorkerCommand): boolean => {
    switch (m.t) {
      case 'peer':
        engine.setPeer(m.state);
        break;
      case 'peer-del':
        engine.removePeer(m.name, m.connUid);
        break;
      case 'routes':
        engine.setRoutes(m.unicast, m.broadcast);
        break;
      case 'special':
        engine.sendSpecial(m.peer, m.df, Buffer.from(m.frame.buffer, m.frame.byteOffset, m.frame.byteLength));
        break;
      case 'inject':
        io.writeTap(m.frame);
        break;
      case 'hbmac':
        engine.setHeartbeatMac(m.mac);
        break;
      case 'pin':
        engine.pin(m.mac, m.on);
        break;
      case 'forget-peer':
        engine.forgetPeerMacs(m.peer);
        break;
      case 'stop':
        return false;
    }
    return true;
  };

  const pfd = Buffer.alloc(2 * c.layout.pollfdBytes);
  const l = c.layout;
  pfd.writeInt32LE(data.tapFd, l.pollFd);
  pfd.writeInt16LE(POLLIN, l.pollEvents);
  pfd.writeInt32LE(data.udpFd, l.pollfdBytes + l.pollFd);
  pfd.writeInt16LE(POLLIN, l.pollfdBytes + l.pollEvents);
  const tapBuf = Buffer.allocUnsafe(TAP_READ_BUFFER_BYTES);
  const udpBufs = Array.from({ length: UDP_BURST }, () => Buffer.allocUnsafe(65536));
  const got: Datagram[] = [];
  let lastExpire = Date.now();

  for (;;) {
    for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
      if (!command(m.message as WorkerCommand)) return;
    }
    // Idle, this loop costs one poll per POLL_MS; busy, only the reads that poll said will work.
    const ready = c.poll(pfd, 2, POLL_MS) > 0;
    try {
      if (ready && pfd.readInt16LE(l.pollRevents) !== 0) {
        for (let i = 0; i < TAP_BURST; i++) {
          // The fd is non-blocking: -1 (EAGAIN) ends the burst.
          const n = c.read(data.tapFd, tapBuf, tapBuf.length);
          if (n <= 0) break;
          engine.onCaptured(tapBuf.subarray(0, n));
        }
      }
      if (ready && pfd.readInt16LE(l.pollfdBytes + l.pollRevents) !== 0) {
        const k = udp.recvBatch(udpBufs, got, 0);
        for (let i = 0; i < k; i++) {
          const d = got[i] as Datagram;
          if (!d.truncated) engine.onDatagram((udpBufs[i] as Buffer).subarray(0, d.len), d.ip, d.port);
        }
      }
      // Also sends the specials the control side asked for.
      engine.flush();
    } catch (e) {
      post({ t: 'log', level: 'warn', msg: `sleeve data path: ${errorMessage(e)}` });
    }
    const now = Date.now();
    if (now - lastExpire > EXPIRE_EVERY_MS) {
      lastExpire = now;
      engine.expire();
    }
  }
}

run(workerData as SleeveWorkerData);
