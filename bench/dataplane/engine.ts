// bench/dataplane/engine: the sleeve engine's own CPU cost, no kernel, no threads. A sending
// engine takes 64 KiB TCP super-frames as the TAP hands them over (virtio header, partial
// checksum) and a receiving engine takes what the first queued, as the UDP socket would hand
// it over (one GRO buffer per UDP GSO train), down to the frames it writes to its TAP. Prints
// µs per super-frame on each side and the implied Gbit/s per core, for the ways a super-frame
// crosses: a UDP GSO train between our routers (partial checksums, merged on arrival) or to an
// original router (whole checksums, one TAP write per segment), whole when the kernel lacks UDP
// GSO, and whole in one box when encrypted.
// The figures are CPU time of this thread only (process.cpuUsage), so a loaded machine
// stretches the wall time but not them, much. What the kernel would copy out of the engine's
// buffers is copied here too, after the send's time is taken: it is the kernel's cost. (Before 2026-11-28 08:00 UTC that copy was in the send figures.)
//
//   npm run build && node dist/bench/dataplane/engine.js [--seconds S] [--only TEXT]
//   (default 2 s per row; --only keeps the rows whose mode contains TEXT, e.g. for --cpu-prof)
import { performance } from 'node:perf_hooks';
import type { PeerName } from '../../src/core/peer-name.js';
import { SleeveEngine, type EngineIo } from '../../src/dataplane/sleeve/engine.js';
import type { SleevePeerState } from '../../src/dataplane/sleeve/overlay.js';
import { tcpSuperFrame } from '../../test/helpers/tcp-frames.js';
import { table } from '../lib/stats.js';

const A: PeerName = 0x7a0000000001;
const B: PeerName = 0x7a0000000002;
const MAC_A = Buffer.from([2, 0, 0, 0, 0, 1]);
const MAC_B = Buffer.from([2, 0, 0, 0, 0, 2]);
const MSS = 1324; // a 1376 bridge MTU with TCP timestamps

function parseArgs(argv: string[]): { seconds: number; only: string } {
  let seconds = 2;
  let only = '';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--seconds') seconds = Number(argv[++i]);
    else if (argv[i] === '--only') only = argv[++i] ?? '';
    else throw new Error(`unknown argument ${argv[i]} (usage: engine.js [--seconds S] [--only TEXT])`);
  }
  if (!(seconds > 0)) throw new Error('--seconds needs a positive number');
  return { seconds, only };
}

/** The TAP read of a TCP/IPv4 super-frame from MAC_A to MAC_B: virtio header, timestamps, partial checksum. */
function superFrameRead(payload: number, seq: number): Buffer {
  const { hdr, frame } = tcpSuperFrame({ dst: MAC_B, src: MAC_A, payload, mss: MSS, seq, ack: 1, flags: 0x10, srcPort: 40000, dstPort: 5201, window: 512, timestamps: true });
  return Buffer.concat([hdr, frame]);
}

interface Row {
  mode: string;
  sendUs: number;
  recvUs: number;
  datagrams: number;
  tapWrites: number;
}

function measure(mode: string, opts: { key: boolean; udpGso: boolean; version: number }, seconds: number): Row {
  const payload = 65535 - 14 - 20 - 32 - 1000; // as Linux fills a 64 KiB GSO skb
  // What each send queued, as the kernel would take it: views, copied once the engine's time is
  // taken (the copy is the kernel's cost, not the engine's).
  const queue: Queued[] = [];
  let tapWrites = 0;
  const base = { post: () => undefined, pathMtu: () => 1500, now: () => 0, flushUdp: () => ({ tooBig: [] }) };
  const ioA: EngineIo = {
    ...base,
    queueUdp: (buf, len, _ip, _port, _df, seg = 0) => queue.push({ buf: buf.subarray(0, len), len, seg }),
    writeTap: () => undefined,
    writeTapv: () => undefined,
  };
  const ioB: EngineIo = { ...base, queueUdp: () => undefined, writeTap: () => void tapWrites++, writeTapv: () => void tapWrites++ };
  const key = opts.key ? Buffer.alloc(32, 9) : undefined;
  const state = (name: PeerName, ip: string, outbound: boolean): SleevePeerState => ({
    name, connUid: 1n, ip, port: 6783, mtu: 1438 - (key ? 24 : 0), maxPayload: 1472, stackFrag: true, sessionKey: key, outbound,
    gso: opts.version >= 1, udpChecksums: opts.version >= 2, partialChecksums: opts.version >= 3, boxChunks: opts.version >= 4,
  });
  const a = new SleeveEngine(ioA, A, { vnetHdr: true, bridgeMtu: 1376, udpGso: opts.udpGso });
  const b = new SleeveEngine(ioB, B, { vnetHdr: true, bridgeMtu: 1376, udpGso: opts.udpGso });
  a.setPeer(state(B, '192.0.2.2', true));
  b.setPeer(state(A, '192.0.2.1', false));
  a.setRoutes([[B, B]], [[A, [B]]]);
  b.setRoutes([[A, A]], [[B, [A]]]);
  // B's MAC is known to A (as after the first ARP reply).
  const arp = Buffer.alloc(10 + 60);
  MAC_A.copy(arp, 10);
  MAC_B.copy(arp, 16);
  arp.writeUInt16BE(0x0806, 22);
  b.onCaptured(arp);
  b.flush();
  copyOut(queue, 0);
  for (const q of queue.splice(0)) a.onDatagram(q.buf.subarray(0, q.len), 0xc0000202, 6783, q.seg);
  a.flush();
  const reads = Array.from({ length: 16 }, (_, i) => superFrameRead(payload, i * payload));
  let n = 0;
  let sendCpu = 0;
  let recvCpu = 0;
  let datagrams = 0;
  tapWrites = 0;
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    // 16 reads, then what each queued received as one burst (the receiver's frames are only
    // good until its flush).
    const ends: number[] = [];
    for (const r of reads) {
      const c0 = process.cpuUsage();
      const from = queue.length;
      a.onCaptured(r);
      a.flush();
      const c1 = process.cpuUsage(c0);
      sendCpu += c1.user + c1.system;
      // Before the next read reuses the engine's send buffers.
      copyOut(queue, from);
      ends.push(queue.length);
    }
    const views = queue.map((q) => q.buf.subarray(0, q.len));
    const d0 = process.cpuUsage();
    let e = 0;
    for (let i = 0; i < queue.length; i++) {
      b.onDatagram(views[i]!, 0xc0000201, 6783, queue[i]!.seg);
      if (i + 1 === ends[e]) {
        b.flush();
        e++;
      }
    }
    const d1 = process.cpuUsage(d0);
    recvCpu += d1.user + d1.system;
    for (const q of queue) datagrams += q.seg ? Math.ceil(q.len / q.seg) : 1;
    queue.length = 0;
    n += reads.length;
  }
  return { mode, sendUs: sendCpu / n, recvUs: recvCpu / n, datagrams: datagrams / n, tapWrites: tapWrites / n };
}

interface Queued {
  buf: Buffer;
  len: number;
  seg: number;
}

/** Copies queue[from...] out of the engine's buffers, as sendmmsg would (the receiver decrypts in place). */
function copyOut(queue: Queued[], from: number): void {
  for (let i = from; i < queue.length; i++) {
    const q = queue[i]!;
    q.buf = Buffer.from(q.buf.subarray(0, q.len));
  }
}

const { seconds, only } = parseArgs(process.argv.slice(2));
const rows: Row[] = [];
const cases: [string, { key: boolean; udpGso: boolean; version: number }][] = [
  ['plain, UDP GSO train to our router (SleeveGSO 3)', { key: false, udpGso: true, version: 3 }],
  ['plain, UDP GSO train to an original router', { key: false, udpGso: true, version: 0 }],
  ['plain, whole (no UDP GSO)', { key: false, udpGso: false, version: 3 }],
  ['encrypted, whole in one box (SleeveGSO 3)', { key: true, udpGso: true, version: 3 }],
  ['encrypted, one box in chunks (SleeveGSO 4)', { key: true, udpGso: true, version: 4 }],
];
for (const [mode, opts] of cases) {
  if (!mode.includes(only)) continue;
  measure(mode, opts, Math.min(0.5, seconds)); // warm-up
  rows.push(measure(mode, opts, seconds));
}
const bytes = 65535 - 1000;
const gbps = (us: number) => ((bytes * 8) / (us * 1000)).toFixed(1);
console.log(`bench/dataplane/engine: ${bytes}-byte TCP super-frames (MSS ${MSS}), CPU µs per super-frame on this thread, ${new Date().toISOString()}\n`);
console.log(table([
  ['mode', 'send µs', 'receive µs', 'send Gbit/s per core', 'receive Gbit/s per core', 'datagrams', 'TAP writes'],
  ...rows.map((r) => [r.mode, r.sendUs.toFixed(1), r.recvUs.toFixed(1), gbps(r.sendUs), gbps(r.recvUs), r.datagrams.toFixed(1), r.tapWrites.toFixed(1)]),
]));
