// The sleeve data path's thread: frames from the TAP and datagrams from UDP go through the
// SleeveEngine here, off the main event loop. The loop blocks in poll() on both fds and on an
// eventfd that the main thread writes to after each command (so a command is taken at once, not
// when poll next returns), reads everything ready in bursts, and sends each
// burst's datagrams with sendmmsg, in the order the engine queued them, in runs that share the
// socket's DF and checksum settings; UDP GSO trains go as one message each, and a train the
// kernel refuses goes again datagram by datagram. GRO trains are handed to the engine whole,
// and merged frames reach the TAP with one gathered writev. Control messages arrive with
// receiveMessageOnPort, which works while this thread never returns to its event loop.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../core/errors.js';
import type { PeerName } from '../core/peer-name.js';
import { SleeveEngine, type DatapathEvent, type EngineIo } from '../dataplane/sleeve/engine.js';
import type { SleevePeerState } from '../dataplane/sleeve/overlay.js';
import { NO_VNET_HDR, VNET_HDR_BYTES, encodeVnetHdr } from '../dataplane/sleeve/vnet-hdr.js';
import { POLLIN, libc } from '../platform/ffi/libc.js';
import { TapDevice, TAP_READ_BUFFER_BYTES } from '../platform/tap.js';
import { EventFd } from '../platform/event-fd.js';
import { UdpSocket, pathMtu, type Datagram, type OutgoingDatagram } from '../platform/udp-socket.js';

export interface SleeveWorkerData {
  tapFd: number;
  udpFd: number;
  /** An eventfd the main thread writes to after posting a command (see platform/event-fd.ts). */
  wakeFd: number;
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
  | { t: 'mac-table' }
  | { t: 'stop' };

const ZERO_HDR = Buffer.alloc(VNET_HDR_BYTES);
const TAP_BURST = 64;
const UDP_BURST = 32;
// Commands wake the thread through the eventfd, and nothing here runs on a shorter schedule
// than the minute of MAC expiry: an idle router wakes once a second, not 20 times.
const POLL_MS = 1000;
const EXPIRE_EVERY_MS = 60_000;

function run(data: SleeveWorkerData): void {
  const port = parentPort;
  if (!port) throw new Error('sleeve-worker must run as a worker thread');
  const post = (ev: DatapathEvent) => port.postMessage(ev);
  const tap = TapDevice.fromFd(data.tapFd);
  const udp = UdpSocket.fromFd(data.udpFd);
  const c = libc();
  const hdrBuf = Buffer.alloc(VNET_HDR_BYTES);

  // Datagrams go out in the order they were queued (a DF batch must not overtake the super-
  // frame before it), in runs that share the socket's DF and checksum settings.
  const out: OutgoingDatagram[] = [];
  const modes: number[] = [];
  const DF = 1;
  const NO_CHECKSUM = 2;
  const udpGso = udp.supportsSegmentation();
  const io: EngineIo = {
    queueUdp(buf, len, ip, p, df, segmentSize = 0, sealed = false) {
      out.push({ buf, len, ip, port: p, segmentSize });
      // A sealed datagram carries its own authenticator; GSO needs the checksum regardless.
      modes.push((df ? DF : 0) | (sealed && !segmentSize ? NO_CHECKSUM : 0));
    },
    flushUdp() {
      const tooBig: number[] = [];
      const send = (from: number, to: number, mode: number) => {
        udp.setDontFragment((mode & DF) !== 0);
        udp.setChecksums((mode & NO_CHECKSUM) === 0);
        const run = from === 0 && to === out.length ? out : out.slice(from, to);
        const split: [OutgoingDatagram, number, string][] = [];
        udp.sendBatch(run, run.length, (i, err) => {
          const d = run[i] as OutgoingDatagram;
          if (d.segmentSize && d.segmentSize < d.len) split.push([d, from + i, err.errnoName]);
          else if (err.errnoName === 'EMSGSIZE') tooBig.push(from + i);
        });
        // A refused train (EMSGSIZE or EINVAL: a segment over the path MTU; else no GSO) goes
        // again as separate datagrams, whose own errors tell what is wrong.
        for (const [d, at, errno] of split) {
          if (errno !== 'EINVAL' && errno !== 'EMSGSIZE') {
            engine.setUdpGso(false);
            post({ t: 'log', level: 'warn', msg: `sleeve: the kernel refused a UDP GSO send (${errno}); sending datagrams one by one from now on` });
          }
          const seg = d.segmentSize as number;
          const parts: OutgoingDatagram[] = [];
          for (let o = 0; o < d.len; o += seg) parts.push({ buf: d.buf.subarray(o), len: Math.min(seg, d.len - o), ip: d.ip, port: d.port });
          let big = false;
          udp.sendBatch(parts, parts.length, (_, err) => (big ||= err.errnoName === 'EMSGSIZE'));
          if (big) tooBig.push(at);
        }
      };
      try {
        for (let i = 0; i < out.length; ) {
          const mode = modes[i] as number;
          let j = i + 1;
          while (j < out.length && modes[j] === mode) j++;
          send(i, j, mode);
          i = j;
        }
      } catch (e) {
        post({ t: 'log', level: 'warn', msg: `sleeve send failed: ${errorMessage(e)}` });
      }
      out.length = modes.length = 0;
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
    writeTapv(bufs, starts, ends, count, hdr) {
      try {
        tap.writeGather(tap.vnetHdr ? encodeVnetHdr(hdr, hdrBuf) : undefined, bufs, starts, ends, count);
      } catch {
        // As writeTap.
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
  const engine = new SleeveEngine(io, data.ourName, { vnetHdr: tap.vnetHdr, bridgeMtu: data.bridgeMtu, udpGso });

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
      case 'mac-table':
        post({ t: 'mac-table', entries: engine.macTable() });
        break;
      case 'stop':
        return false;
    }
    return true;
  };

  const pfd = Buffer.alloc(3 * c.layout.pollfdBytes);
  const l = c.layout;
  pfd.writeInt32LE(data.tapFd, l.pollFd);
  pfd.writeInt16LE(POLLIN, l.pollEvents);
  pfd.writeInt32LE(data.udpFd, l.pollfdBytes + l.pollFd);
  pfd.writeInt16LE(POLLIN, l.pollfdBytes + l.pollEvents);
  pfd.writeInt32LE(data.wakeFd, 2 * l.pollfdBytes + l.pollFd);
  pfd.writeInt16LE(POLLIN, 2 * l.pollfdBytes + l.pollEvents);
  const wake = EventFd.fromFd(data.wakeFd);
  const tapBuf = Buffer.allocUnsafe(TAP_READ_BUFFER_BYTES);
  const udpBufs = Array.from({ length: UDP_BURST }, () => Buffer.allocUnsafe(65536));
  const got: Datagram[] = [];
  let lastExpire = Date.now();
  // The engine drops bad input rather than throwing; should it throw anyway (a bug), the rest of
  // the burst still goes through it and the flush still runs: frames waiting in the coalescer
  // are ranges of udpBufs, which the next receive overwrites. Logged at most every 10 s.
  let lastFault = -Infinity;
  let faults = 0;
  const fault = (e: unknown) => {
    faults++;
    const now = Date.now();
    if (now - lastFault < 10_000) return;
    lastFault = now;
    post({ t: 'log', level: 'warn', msg: `sleeve data path: ${errorMessage(e)} (${faults} so far)` });
  };

  post({ t: 'ready' });
  for (;;) {
    // A command or the expiry that throws is logged like a failed burst: an exception out of
    // this loop would end the thread, and with it the data path, while the router runs on.
    for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
      let more = true;
      try {
        more = command(m.message as WorkerCommand);
      } catch (e) {
        post({ t: 'log', level: 'warn', msg: `sleeve data path: command ${(m.message as WorkerCommand).t}: ${errorMessage(e)}` });
      }
      if (!more) return;
    }
    // Idle, this loop costs one poll per POLL_MS; busy, only the reads that poll said will work.
    const ready = c.poll(pfd, 3, POLL_MS) > 0;
    // Commands posted meanwhile are taken at the top of the next turn.
    if (ready && pfd.readInt16LE(2 * l.pollfdBytes + l.pollRevents) !== 0) wake.drain();
    try {
      if (ready && pfd.readInt16LE(l.pollRevents) !== 0) {
        for (let i = 0; i < TAP_BURST; i++) {
          // The fd is non-blocking: -1 (EAGAIN) ends the burst.
          const n = c.read(data.tapFd, tapBuf, tapBuf.length);
          if (n <= 0) break;
          try {
            engine.onCaptured(tapBuf.subarray(0, n));
          } catch (e) {
            fault(e);
          }
        }
      }
      if (ready && pfd.readInt16LE(l.pollfdBytes + l.pollRevents) !== 0) {
        const k = udp.recvBatch(udpBufs, got, 0);
        for (let i = 0; i < k; i++) {
          const d = got[i] as Datagram;
          if (d.truncated) continue;
          try {
            engine.onDatagram((udpBufs[i] as Buffer).subarray(0, d.len), d.ip, d.port, d.segmentSize);
          } catch (e) {
            fault(e);
          }
        }
      }
    } catch (e) {
      fault(e);
    }
    // Also sends the specials the control side asked for, and writes merged frames (before
    // the next receive reuses the buffers they are in). The coalescer lets go of them first
    // thing, even if a write then throws.
    try {
      engine.flush();
    } catch (e) {
      fault(e);
    }
    const now = Date.now();
    if (now - lastExpire > EXPIRE_EVERY_MS) {
      lastExpire = now;
      try {
        engine.expire();
      } catch (e) {
        post({ t: 'log', level: 'warn', msg: `sleeve data path: expiry: ${errorMessage(e)}` });
      }
    }
  }
}

run(workerData as SleeveWorkerData);
