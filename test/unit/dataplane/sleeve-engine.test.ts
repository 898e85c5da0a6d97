// The sleeve data path's decisions, frame by frame: engines of three hosts wired by a fake UDP
// network and fake TAPs. MAC learning, unicast relaying and broadcast along routes (a chain
// h1–h2–h3), encryption end to end, DF frames over the MTU answered with ICMP (relayed ones
// back to their source peer), malformed frames dropped rather than thrown, our own IPv4
// fragmentation when fragments do not pass, TCP super-frames whole to peers that take them and
// segmented for the others, or as UDP GSO trains merged back on arrival, partial checksums
// between our routers only, frames in order, EMSGSIZE reported, specials handed to the
// control side.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerName } from '../../../src/core/peer-name.js';
import { SleeveEngine, type DatapathEvent, type EngineIo, ipv4ToNumber } from '../../../src/dataplane/sleeve/engine.js';
import type { SleevePeerState } from '../../../src/dataplane/sleeve/overlay.js';
import { NO_VNET_HDR, type VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 } from '../../../src/dataplane/sleeve/vnet-hdr.js';
import { internetChecksum, ipv4PseudoHeaderSum, onesComplementSum } from '../../../src/dataplane/sleeve/ipv4.js';
import { makeHeartbeatFrame, writePeerNameAt } from '../../../src/dataplane/sleeve/codec.js';
import { seeded } from '../../helpers/prng.js';
import { tcpSuperFrame } from '../../helpers/tcp-frames.js';

const NAME = (i: number): PeerName => 0x7a0000000000 + i;
const IP = (i: number) => `192.0.2.${i}`;
const KEY = Buffer.alloc(32, 7);

interface Host {
  i: number;
  engine: SleeveEngine;
  tap: { frame: Buffer; hdr: VnetHdr | undefined }[];
  events: DatapathEvent[];
  sent: { len: number; df: boolean; to: number; segmentSize: number; sealed: boolean }[];
}

class FakeNet {
  readonly hosts = new Map<number, Host>();
  /** Largest datagram each host's kernel accepts with DF (the route MTU minus 28). */
  pmtu = 1500;
  fragmentsPass = true;
  queue: (() => void)[] = [];

  /** Receivers take UDP GSO trains whole (GRO); false: as separate datagrams. */
  gro = true;

  add(i: number, opts: { vnetHdr?: boolean; udpGso?: boolean; maxMacs?: number } = {}): Host {
    const h = { i, tap: [], events: [], sent: [] } as unknown as Host;
    let pending: { buf: Buffer; len: number; ip: number; port: number; df: boolean; seg: number; sealed: boolean }[] = [];
    const io: EngineIo = {
      queueUdp: (buf, len, ip, port, df, seg = 0, sealed = false) => pending.push({ buf: Buffer.from(buf.subarray(0, len)), len, ip, port, df, seg, sealed }),
      flushUdp: () => {
        const tooBig: number[] = [];
        pending.forEach((p, idx) => {
          const largest = p.seg ? p.seg : p.len;
          if (p.df && largest + 28 > this.pmtu) return void tooBig.push(idx);
          if (!p.df && p.len + 28 > this.pmtu && !this.fragmentsPass) return;
          h.sent.push({ len: p.len, df: p.df, to: p.ip & 255, segmentSize: p.seg, sealed: p.sealed });
          const to = this.hosts.get(p.ip & 255);
          if (!to) return;
          if (p.seg && !this.gro) {
            for (let o = 0; o < p.len; o += p.seg) {
              const d = p.buf.subarray(o, Math.min(o + p.seg, p.len));
              this.queue.push(() => to.engine.onDatagram(d, ipv4ToNumber(IP(i)), 6783));
            }
          } else this.queue.push(() => to.engine.onDatagram(p.buf, ipv4ToNumber(IP(i)), 6783, p.seg));
        });
        pending = [];
        return { tooBig };
      },
      writeTap: (frame, hdr) => h.tap.push({ frame: Buffer.from(frame), hdr }),
      writeTapv: (bufs, starts, ends, count, hdr) => h.tap.push({ frame: Buffer.concat(bufs.slice(0, count).map((b, i) => b.subarray(starts[i], ends[i]))), hdr }),
      post: (ev) => h.events.push(ev),
      pathMtu: () => this.pmtu,
      now: () => 0,
    };
    h.engine = new SleeveEngine(io, NAME(i), { vnetHdr: opts.vnetHdr ?? false, bridgeMtu: 1376, udpGso: opts.udpGso ?? false, ...(opts.maxMacs ? { maxMacs: opts.maxMacs } : {}) });
    this.hosts.set(i, h);
    return h;
  }

  /** Delivers datagrams (and what they cause) until quiet. */
  run(): void {
    for (let n = 0; n < 1000 && this.queue.length; n++) {
      const q = this.queue;
      this.queue = [];
      for (const f of q) f();
      for (const h of this.hosts.values()) h.engine.flush();
    }
  }
}

function peer(i: number, over: Partial<SleevePeerState> = {}): SleevePeerState {
  return { name: NAME(i), connUid: 1n, ip: IP(i), port: 6783, mtu: 1438, maxPayload: 1472, stackFrag: true, sessionKey: undefined, outbound: true, gso: false, udpChecksums: false, partialChecksums: false, boxChunks: false, ...over };
}

const mac = (n: number) => Buffer.from([0x02, 0, 0, 0, 0, n]);
const BCAST = Buffer.alloc(6, 0xff);

function ipv4Frame(dst: Buffer, src: Buffer, opts: { len?: number; df?: boolean; proto?: number; srcIp?: string; dstIp?: string } = {}): Buffer {
  const len = opts.len ?? 100;
  const f = Buffer.alloc(14 + len);
  dst.copy(f, 0);
  src.copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(len, 16);
  f.writeUInt16BE(0x1234, 18);
  f[20] = opts.df ? 0x40 : 0;
  f[22] = 64;
  f[23] = opts.proto ?? 17;
  Buffer.from((opts.srcIp ?? '10.32.1.1').split('.').map(Number)).copy(f, 26);
  Buffer.from((opts.dstIp ?? '10.32.3.1').split('.').map(Number)).copy(f, 30);
  f.writeUInt16BE(internetChecksum(f, 14, 34), 24);
  for (let k = 34; k < f.length; k++) f[k] = k & 0xff;
  return f;
}

/** Routes of the chain h1 – h2 – h3, as the mesh computes them. */
function chainRoutes(h1: Host, h2: Host, h3: Host): void {
  h1.engine.setRoutes([[NAME(2), NAME(2)], [NAME(3), NAME(2)]], [[NAME(1), [NAME(2)]], [NAME(2), []], [NAME(3), []]]);
  h2.engine.setRoutes([[NAME(1), NAME(1)], [NAME(3), NAME(3)]], [[NAME(1), [NAME(3)]], [NAME(2), [NAME(1), NAME(3)]], [NAME(3), [NAME(1)]]]);
  h3.engine.setRoutes([[NAME(2), NAME(2)], [NAME(1), NAME(2)]], [[NAME(3), [NAME(2)]], [NAME(1), []], [NAME(2), []]]);
}

/** A chain h1 – h2 – h3 with routes as the mesh computes them. */
function chain(net: FakeNet, opts: { vnetHdr?: boolean; key?: boolean } = {}): [Host, Host, Host] {
  const [h1, h2, h3] = [1, 2, 3].map((i) => net.add(i, opts)) as [Host, Host, Host];
  const k = opts.key ? { sessionKey: KEY } : {};
  h1.engine.setPeer(peer(2, { ...k, outbound: true }));
  h2.engine.setPeer(peer(1, { ...k, outbound: false }));
  h2.engine.setPeer(peer(3, { ...k, outbound: true }));
  h3.engine.setPeer(peer(2, { ...k, outbound: false }));
  chainRoutes(h1, h2, h3);
  return [h1, h2, h3];
}

for (const key of [false, true]) {
  test(`${key ? 'encrypted' : 'plain'}: a broadcast floods the chain, the reply is unicast and relayed, MACs are learned`, () => {
    const net = new FakeNet();
    const [h1, h2, h3] = chain(net, { key });
    const arp = ipv4Frame(BCAST, mac(1));
    h1.engine.onCaptured(arp);
    h1.engine.flush();
    net.run();
    assert.equal(h2.tap.length, 1, 'h2 injects the broadcast');
    assert.equal(h3.tap.length, 1, 'h3 gets it through h2');
    assert.deepEqual(h3.tap[0]!.frame, arp);
    const learned = h3.events.find((e) => e.t === 'macs');
    assert.deepEqual(learned && learned.t === 'macs' ? learned.learned : [], [[0x020000000001, NAME(1)]]);
    // The reply from h3's container is unicast to mac(1): relayed by h2, not injected there.
    const reply = ipv4Frame(mac(1), mac(3), { srcIp: '10.32.3.1', dstIp: '10.32.1.1' });
    h3.engine.onCaptured(reply);
    h3.engine.flush();
    net.run();
    assert.equal(h1.tap.length, 1);
    assert.deepEqual(h1.tap[0]!.frame, reply);
    assert.equal(h2.tap.length, 1, 'h2 only relayed the unicast');
    // Now h1 knows mac(3) is at h3: its next frame goes unicast (h2 relays, does not inject).
    h1.engine.onCaptured(ipv4Frame(mac(3), mac(1)));
    h1.engine.flush();
    net.run();
    assert.equal(h3.tap.length, 2);
    assert.equal(h2.tap.length, 1);
  });
}

test('the MAC table keeps at most maxMacs: the one learnt longest ago goes, pinned or not, and is reported forgotten', () => {
  const net = new FakeNet();
  const h1 = net.add(1);
  const h2 = net.add(2, { maxMacs: 4 });
  h1.engine.setPeer(peer(2));
  h2.engine.setPeer(peer(1, { outbound: false }));
  h1.engine.setRoutes([[NAME(2), NAME(2)]], [[NAME(1), [NAME(2)]], [NAME(2), []]]);
  h2.engine.setRoutes([[NAME(1), NAME(1)]], [[NAME(2), [NAME(1)]], [NAME(1), []]]);
  h2.engine.pin(0x020000000011, true); // as the fast path pins what it carries
  for (const n of [0x11, 0x12, 0x13, 0x14, 0x15, 0x16]) {
    h1.engine.onCaptured(ipv4Frame(BCAST, mac(n)));
    h1.engine.flush();
    net.run();
  }
  assert.equal(h2.engine.macCount(), 4);
  assert.deepEqual(h2.engine.macTable().map(([m]) => m), [0x020000000013, 0x020000000014, 0x020000000015, 0x020000000016]);
  const forgotten = h2.events.flatMap((e) => (e.t === 'macs' ? e.forgotten : []));
  assert.deepEqual(forgotten, [0x020000000011, 0x020000000012]);
  // Our own MACs count too, and are not reported (nobody else programmed them).
  h2.engine.onCaptured(ipv4Frame(BCAST, mac(0x21)));
  h2.engine.flush();
  net.run();
  assert.equal(h2.engine.macCount(), 4);
  assert.deepEqual(h2.events.flatMap((e) => (e.t === 'macs' ? e.forgotten : [])), [0x020000000011, 0x020000000012, 0x020000000013]);
  // Evicted and learnt again before the control side heard: reported learnt only (it applies
  // what was learnt before what was forgotten).
  h2.events.length = 0;
  h1.engine.onCaptured(ipv4Frame(BCAST, mac(0x14)));
  h1.engine.flush(); // on its way to h2
  h2.engine.onCaptured(ipv4Frame(BCAST, mac(0x31))); // evicts mac(0x14); h2 does not flush yet
  net.run(); // mac(0x14) arrives from h1 and is learnt again; then h2 flushes
  const ev = h2.events.filter((e) => e.t === 'macs');
  assert.equal(ev.length, 1);
  assert.ok(ev.every((e) => e.t === 'macs' && !e.forgotten.includes(0x020000000014) && e.learned.some(([m]) => m === 0x020000000014)), JSON.stringify(ev));
  assert.ok(h2.engine.macTable().some(([m, p]) => m === 0x020000000014 && p === NAME(1)));
});

test('frames to local MACs and STP are dropped; a captured frame from a remote MAC is refused', () => {
  const net = new FakeNet();
  const [h1] = chain(net);
  h1.engine.onCaptured(ipv4Frame(BCAST, mac(1)));
  h1.engine.onCaptured(ipv4Frame(mac(1), mac(9))); // to a local MAC
  h1.engine.onCaptured(ipv4Frame(Buffer.from([0x01, 0x80, 0xc2, 0, 0, 0]), mac(1)));
  h1.engine.flush();
  assert.equal(h1.sent.length, 1, 'only the broadcast left');
  // A frame from h2's container teaches h1 that mac(2) is remote; capturing it locally is a conflict.
  const h2 = net.hosts.get(2)!;
  h2.engine.onCaptured(ipv4Frame(BCAST, mac(2)));
  h2.engine.flush();
  net.run();
  h1.sent.length = 0;
  h1.engine.onCaptured(ipv4Frame(BCAST, mac(2)));
  h1.engine.flush();
  assert.equal(h1.sent.length, 0);
  assert.ok(h1.events.some((e) => e.t === 'log' && /associated with another peer/.test(e.msg)));
});

test('DF frame over the MTU: ICMP fragmentation needed back into our bridge; non-DF: fragments', () => {
  const net = new FakeNet();
  const [h1, h2] = chain(net);
  h1.engine.setPeer(peer(2, { mtu: 600, maxPayload: 634, stackFrag: false }));
  h1.engine.onCaptured(ipv4Frame(BCAST, mac(1)));
  h2.engine.onCaptured(ipv4Frame(BCAST, mac(2)));
  h1.engine.flush();
  h2.engine.flush();
  net.run();
  h2.tap.length = 0;
  h1.engine.onCaptured(ipv4Frame(mac(2), mac(1), { len: 1000, df: true, proto: 6 }));
  h1.engine.flush();
  const icmp = h1.tap.at(-1)!.frame;
  assert.equal(icmp[23], 1, 'ICMP');
  assert.equal(icmp[34], 3);
  assert.equal(icmp[35], 4);
  assert.equal(icmp.readUInt16BE(40), 600, 'next-hop MTU');
  assert.deepEqual(icmp.subarray(0, 6), mac(1), 'back to the sender');
  net.run();
  assert.equal(h2.tap.length, 0);
  h1.engine.onCaptured(ipv4Frame(mac(2), mac(1), { len: 1000, df: false }));
  h1.engine.flush();
  net.run();
  assert.equal(h2.tap.length, 2, 'two fragments');
  assert.ok(h2.tap.every((t) => t.frame.length - 14 <= 600));
  assert.ok(h1.sent.every((s) => s.df), 'our fragments go DF');
});

test('a flooded DF frame over the MTU: ICMP back when it is unicast IP to a MAC not learned yet; a broadcast is dropped with a log', () => {
  const net = new FakeNet();
  const [h1] = chain(net, { vnetHdr: true });
  h1.engine.setPeer(peer(2, { mtu: 600, maxPayload: 634, stackFrag: false, gso: true, udpChecksums: true, partialChecksums: true }));
  const zero = Buffer.alloc(10);
  const icmps = () => h1.tap.filter((t) => t.frame[23] === 1 && t.frame[34] === 3 && t.frame[35] === 4);
  // mac(9) is known nowhere: the frame is flooded, and its sender still learns the path MTU.
  h1.engine.onCaptured(Buffer.concat([zero, ipv4Frame(mac(9), mac(1), { len: 1000, df: true, proto: 6 })]));
  h1.engine.flush();
  assert.equal(icmps().length, 1, 'fragmentation needed for a flooded unicast packet');
  assert.equal(icmps()[0]!.frame.readUInt16BE(40), 600);
  assert.deepEqual(icmps()[0]!.frame.subarray(0, 6), mac(1));
  // A TCP super-frame to mac(9) whose segments do not fit: the same.
  const { hdr, frame } = tcpSuperFrame({ dst: mac(9), src: mac(1), payload: 4000, mss: 1000 });
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  h1.engine.flush();
  assert.equal(icmps().length, 2, 'and for a super-frame');
  assert.equal(icmps()[1]!.frame.readUInt16BE(40), 600);
  // Broadcast and multicast packets get no ICMP (RFC 1122): dropped, with one log line.
  h1.events.length = 0;
  h1.engine.onCaptured(Buffer.concat([zero, ipv4Frame(BCAST, mac(1), { len: 1000, df: true, dstIp: '10.32.255.255' })]));
  const mcastMac = Buffer.from([0x01, 0x00, 0x5e, 0, 0, 5]);
  h1.engine.onCaptured(Buffer.concat([zero, ipv4Frame(mcastMac, mac(1), { len: 1000, df: true, dstIp: '224.0.0.5' })]));
  h1.engine.onCaptured(Buffer.concat([zero, ipv4Frame(mac(9), mac(1), { len: 1000, df: true, dstIp: '239.1.2.3' })]));
  h1.engine.flush();
  net.run();
  assert.equal(icmps().length, 2, 'none for broadcast or multicast');
  const logs = h1.events.filter((e) => e.t === 'log' && /dropping too big DF broadcast frame/.test(e.msg));
  assert.equal(logs.length, 1, 'logged once, not per frame');
  assert.ok(h1.sent.every((x) => x.len <= 634), 'nothing too big was sent');
});

test('a DF datagram the kernel refuses is reported with the path MTU; specials go to the control side', () => {
  const net = new FakeNet();
  const [h1, h2] = chain(net);
  net.pmtu = 1400;
  h1.engine.sendSpecial(NAME(2), true, Buffer.alloc(60000));
  h1.engine.flush();
  assert.deepEqual(h1.events.at(-1), { t: 'too-big', peer: NAME(2), pmtu: 1400 });
  h1.engine.sendSpecial(NAME(2), true, makeHeartbeatFrame(99n));
  h1.engine.flush();
  net.run();
  const ev = h2.events.find((e) => e.t === 'special');
  assert.ok(ev && ev.t === 'special');
  assert.equal(ev.peer, NAME(1));
  assert.equal(ev.ip, IP(1));
  assert.equal(ev.frame.readBigUInt64BE(14), 99n);
  assert.equal(h2.tap.length, 0, 'specials are not injected');
});

/** A TCP/IPv4 super-frame as the kernel hands it over a TAP with TSO: partial checksum. */
function superFrame(payload: number, mss: number): { hdr: Buffer; frame: Buffer } {
  return tcpSuperFrame({ dst: mac(2), src: mac(1), payload, mss });
}

function tcpChecksumOk(frame: Buffer): boolean {
  const l4 = frame.readUInt16BE(16) - 20;
  return (onesComplementSum(frame, 34, 34 + l4, ipv4PseudoHeaderSum(frame, 14, 6, l4)) & 0xffff) === 0xffff;
}

for (const gso of [true, false]) {
  test(`TCP super-frame to a peer ${gso ? 'that takes them: one datagram, a GSO packet on arrival' : 'without SleeveGSO (an original router): MTU-sized segments'}`, () => {
    const net = new FakeNet();
    const [h1, h2] = [net.add(1, { vnetHdr: true }), net.add(2, { vnetHdr: true })];
    h1.engine.setPeer(peer(2, { gso }));
    h2.engine.setPeer(peer(1, { gso, outbound: false }));
    h1.engine.setRoutes([[NAME(2), NAME(2)]], [[NAME(1), [NAME(2)]]]);
    h2.engine.setRoutes([[NAME(1), NAME(1)]], [[NAME(2), [NAME(1)]]]);
    const zero = Buffer.alloc(10);
    h2.engine.onCaptured(Buffer.concat([zero, ipv4Frame(BCAST, mac(2))]));
    h2.engine.flush();
    net.run();
    h1.tap.length = 0;
    const { hdr, frame } = superFrame(20000, 1336);
    h1.engine.onCaptured(Buffer.concat([hdr, frame]));
    h1.engine.flush();
    net.run();
    if (gso) {
      assert.equal(h1.sent.length, 1, 'one datagram');
      assert.equal(h1.sent[0]!.df, false, 'the kernel fragments it');
      assert.equal(h2.tap.length, 1);
      const got = h2.tap[0]!;
      assert.equal(got.frame.length, frame.length);
      assert.equal(got.hdr?.gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
      assert.equal(got.hdr?.gsoSize, 1376 - 40, 'segments sized for our bridge');
    } else {
      const n = Math.ceil(20000 / 1336);
      assert.equal(h2.tap.length, n);
      assert.ok(h2.tap.every((t) => t.frame.length <= 14 + 1438 && (t.hdr === undefined || t.hdr === NO_VNET_HDR)));
      assert.ok(h2.tap.every((t) => tcpChecksumOk(t.frame)), 'full checksums');
      assert.ok(h1.sent.every((s) => s.df && s.len <= 1472));
      const data = Buffer.concat(h2.tap.map((t) => t.frame.subarray(54)));
      assert.deepEqual(data, frame.subarray(54));
    }
  });
}

test('a super-frame whose segments exceed the path MTU gets ICMP back instead', () => {
  const net = new FakeNet();
  const h1 = net.add(1, { vnetHdr: true });
  const h2 = net.add(2, { vnetHdr: true });
  h1.engine.setPeer(peer(2, { gso: true, mtu: 1000 }));
  h2.engine.setPeer(peer(1, { gso: true, outbound: false }));
  h1.engine.setRoutes([[NAME(2), NAME(2)]], [[NAME(1), [NAME(2)]]]);
  h2.engine.setRoutes([[NAME(1), NAME(1)]], [[NAME(2), [NAME(1)]]]);
  // h1 learns where mac(2) is (a too-big broadcast is dropped, not answered).
  h2.engine.onCaptured(Buffer.concat([Buffer.alloc(10), ipv4Frame(BCAST, mac(2))]));
  h2.engine.flush();
  net.run();
  h1.sent.length = 0;
  const { hdr, frame } = superFrame(10000, 1336);
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  h1.engine.flush();
  assert.equal(h1.sent.length, 0);
  const icmp = h1.tap.at(-1)!.frame;
  assert.equal(icmp[34], 3);
  assert.equal(icmp.readUInt16BE(40), 1000);
});

const isFragNeeded = (f: Buffer) => f[23] === 1 && f[34] === 3 && f[35] === 4;

test('a relayed DF frame too big for the next hop: ICMP back to its source peer, as from its destination peer', () => {
  const net = new FakeNet();
  const [h1, h2, h3] = chain(net);
  // h1–h2 carries 1438, h2–h3 only 1338: only h2 can tell h1's container.
  h2.engine.setPeer(peer(3, { mtu: 1338, maxPayload: 1372 }));
  h3.engine.setPeer(peer(2, { mtu: 1338, maxPayload: 1372, outbound: false }));
  h3.engine.onCaptured(ipv4Frame(BCAST, mac(3)));
  h3.engine.flush();
  h1.engine.onCaptured(ipv4Frame(BCAST, mac(1)));
  h1.engine.flush();
  net.run();
  for (const h of [h1, h2, h3]) h.tap.length = 0;
  const big = ipv4Frame(mac(3), mac(1), { len: 1376, df: true, proto: 6 });
  h1.engine.onCaptured(big);
  h1.engine.flush();
  net.run();
  assert.equal(h3.tap.length, 0);
  assert.equal(h2.tap.length, 0, 'relayed to h1, not injected at h2');
  assert.equal(h1.tap.length, 1);
  const icmp = h1.tap[0]!.frame;
  assert.ok(isFragNeeded(icmp));
  assert.equal(icmp.readUInt16BE(40), 1338, "h2–h3's MTU");
  assert.deepEqual(icmp.subarray(0, 12), Buffer.concat([mac(1), mac(3)]));
  assert.deepEqual(icmp.subarray(26, 34), Buffer.from([10, 32, 3, 1, 10, 32, 1, 1]), 'from the unreachable destination to the sender');
  assert.deepEqual(icmp.subarray(42, 62), big.subarray(14, 34), 'quoting the packet');
  assert.ok(h1.engine.macTable().some(([m, p]) => m === 0x020000000003 && p === NAME(3)), 'mac(3) stays at h3');
  // A flooded one (its MAC unknown at h1) gets none: its destination peer is only a hop.
  h1.engine.onCaptured(ipv4Frame(mac(9), mac(1), { len: 1376, df: true, proto: 6 }));
  h1.engine.flush();
  net.run();
  assert.equal(h1.tap.length, 1);
  assert.equal(h3.tap.length, 0);
});

/** A plain sleeve datagram from h1 with one frame from `src` to `dst`. */
function datagram(src: number, dst: number, frame: Buffer): Buffer {
  const d = Buffer.alloc(20 + frame.length);
  writePeerNameAt(d, 0, NAME(1));
  writePeerNameAt(d, 6, NAME(src));
  writePeerNameAt(d, 12, NAME(dst));
  d.writeUInt16BE(frame.length, 18);
  frame.copy(d, 20);
  return d;
}

test('a frame that cannot be fragmented or answered (malformed IPv4) is dropped, not thrown: the rest of the burst goes on', () => {
  const net = new FakeNet();
  const h2 = net.add(2, { vnetHdr: true });
  h2.engine.setPeer(peer(1, { gso: true, udpChecksums: true, partialChecksums: true, outbound: false }));
  h2.engine.setPeer(peer(3, { mtu: 1338, maxPayload: 1372, stackFrag: false }));
  h2.engine.setRoutes([[NAME(1), NAME(1)], [NAME(3), NAME(3)]], [[NAME(1), [NAME(3)]], [NAME(2), [NAME(1), NAME(3)]], [NAME(3), [NAME(1)]]]);
  h2.engine.onCaptured(Buffer.concat([Buffer.alloc(10), ipv4Frame(BCAST, mac(2))]));
  h2.engine.flush();
  h2.tap.length = 0;
  h2.sent.length = 0;
  // Two segments of one flow for our bridge, waiting in the coalescer for the flush, around a
  // relayed non-DF frame for h3 over its MTU (fragments do not pass) whose IHL is 4.
  const segment = (seq: number, fill: number) => {
    const { frame } = tcpSuperFrame({ dst: mac(2), src: mac(1), payload: 1000, mss: 1000, seq, flags: 0x10 });
    frame.fill(fill, 54);
    frame.writeUInt16BE(0, 50);
    frame.writeUInt16BE(internetChecksum(frame, 34, frame.length, ipv4PseudoHeaderSum(frame, 14, 6, 1020)), 50);
    return frame;
  };
  const bad = ipv4Frame(mac(3), mac(1), { len: 1386 });
  bad[14] = 0x44;
  const burst = [datagram(1, 2, segment(1000, 0xaa)), datagram(1, 3, bad), datagram(1, 2, segment(2000, 0xbb))];
  for (const d of burst) h2.engine.onDatagram(d, ipv4ToNumber(IP(1)), 6783);
  // A captured DF frame over the MTU whose header does not parse gets no ICMP either.
  const badDf = ipv4Frame(mac(3), mac(2), { len: 1386, df: true });
  badDf[14] = 0x44;
  h2.engine.onCaptured(Buffer.concat([Buffer.alloc(10), badDf]));
  h2.engine.flush();
  // The next receive reuses the buffers: what was written must not change with them.
  for (const d of burst) d.fill(0xee, 20);
  assert.equal(h2.tap.length, 1, 'one merged write');
  const merged = h2.tap[0]!.frame;
  assert.equal(merged.length, 54 + 2000);
  assert.deepEqual(merged.subarray(54), Buffer.concat([Buffer.alloc(1000, 0xaa), Buffer.alloc(1000, 0xbb)]));
  assert.deepEqual(h2.sent.filter((x) => x.to === 3), [], 'nothing to h3');
  assert.equal(h2.engine.malformed, 2);
  assert.equal(h2.events.filter((e) => e.t === 'log' && e.level === 'debug' && /malformed/.test(e.msg)).length, 1, 'logged once, not per frame');
});

test('garbage datagrams and unknown senders are dropped without a throw', () => {
  const net = new FakeNet();
  const [h1] = chain(net, { key: true });
  const rand = seeded(42);
  for (let n = 0; n < 2000; n++) {
    const b = Buffer.alloc(Math.floor(rand() * 120));
    for (let k = 0; k < b.length; k++) b[k] = Math.floor(rand() * 256);
    if (n % 2 && b.length >= 6) Buffer.from([0x7a, 0, 0, 0, 0, 2]).copy(b);
    h1.engine.onDatagram(b, 1, 6783);
    h1.engine.onCaptured(b);
  }
  h1.engine.flush();
  assert.equal(h1.tap.length, 0);
});

/** Two hosts with virtio headers; h1 knows mac(2) is at h2. `v`: their SleeveGSO version. */
function gsoPair(net: FakeNet, v: number, opts: { key?: boolean; udpGso?: boolean } = {}): [Host, Host] {
  const [h1, h2] = [net.add(1, { vnetHdr: true, udpGso: opts.udpGso ?? true }), net.add(2, { vnetHdr: true, udpGso: opts.udpGso ?? true })];
  const k = opts.key ? { sessionKey: KEY } : {};
  const caps = { gso: v >= 1, udpChecksums: v >= 2, partialChecksums: v >= 3, boxChunks: v >= 4 };
  h1.engine.setPeer(peer(2, { ...caps, ...k }));
  h2.engine.setPeer(peer(1, { ...caps, ...k, outbound: false }));
  h1.engine.setRoutes([[NAME(2), NAME(2)]], [[NAME(1), [NAME(2)]]]);
  h2.engine.setRoutes([[NAME(1), NAME(1)]], [[NAME(2), [NAME(1)]]]);
  h2.engine.onCaptured(Buffer.concat([Buffer.alloc(10), ipv4Frame(BCAST, mac(2))]));
  h2.engine.flush();
  net.run();
  h1.tap.length = 0;
  h1.sent.length = 0;
  return [h1, h2];
}

for (const gro of [true, false]) {
  test(`UDP GSO: a super-frame leaves as one train of segments and arrives as one GSO write (${gro ? 'a GRO buffer' : 'separate datagrams'})`, () => {
    const net = new FakeNet();
    net.gro = gro;
    const [h1, h2] = gsoPair(net, 3);
    const { hdr, frame } = superFrame(20000, 1336);
    h1.engine.onCaptured(Buffer.concat([hdr, frame]));
    h1.engine.flush();
    const n = Math.ceil(20000 / 1336);
    assert.equal(h1.sent.length, 1, 'one send');
    const s = h1.sent[0]!;
    assert.equal(s.segmentSize, 6 + 14 + 54 + 1336, 'one frame of MSS payload per datagram');
    assert.equal(s.len, (n - 1) * s.segmentSize + 6 + 14 + 54 + (20000 - (n - 1) * 1336));
    assert.ok(s.df && !s.sealed);
    net.run();
    assert.equal(h2.tap.length, 1, 'merged back into one write');
    const got = h2.tap[0]!;
    assert.deepEqual(got.hdr, { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 1336, csumStart: 34, csumOffset: 16 });
    // The very super-frame h1's TAP handed over: same headers, PSH back on, partial checksum.
    assert.deepEqual(got.frame, frame);
  });
}

test('UDP GSO to an original router: segments with whole checksums, one write each; to SleeveGSO 2: whole checksums, merged', () => {
  for (const v of [0, 2]) {
    const net = new FakeNet();
    const [h1, h2] = gsoPair(net, v);
    const { hdr, frame } = superFrame(8000, 1336);
    h1.engine.onCaptured(Buffer.concat([hdr, frame]));
    h1.engine.flush();
    assert.equal(h1.sent.length, 1);
    assert.equal(h1.sent[0]!.segmentSize, 6 + 14 + 54 + 1336);
    // What the wire carries: every segment's checksum whole (an original checks nothing else).
    const wire = h1.sent[0]!;
    assert.ok(wire.len > 0);
    net.run();
    if (v === 0) {
      assert.equal(h2.tap.length, Math.ceil(8000 / 1336));
      assert.ok(h2.tap.every((t) => tcpChecksumOk(t.frame) && (t.hdr === undefined || t.hdr === NO_VNET_HDR)));
      assert.deepEqual(Buffer.concat(h2.tap.map((t) => t.frame.subarray(54))), frame.subarray(54));
    } else {
      assert.equal(h2.tap.length, 1);
      assert.deepEqual(h2.tap[0]!.frame, frame);
    }
  }
});

test('partial checksums: a lone segment keeps NEEDS_CSUM; relayed towards an original router they are finished', () => {
  const net = new FakeNet();
  const [h1, h2] = gsoPair(net, 3);
  // FIN on the last segment: it cannot be merged, so it is written alone, checksum partial.
  const { hdr, frame } = superFrame(4000, 1336);
  frame[47] = 0x19;
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  h1.engine.flush();
  net.run();
  assert.equal(h2.tap.length, 2);
  assert.equal(h2.tap[0]!.hdr?.gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
  const fin = h2.tap[1]!;
  assert.equal(fin.frame[47], 0x19);
  assert.deepEqual(fin.hdr, { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 });
  assert.ok(!tcpChecksumOk(fin.frame), 'partial on the wire');

  // h1 –v3– h2 –v0– h3: h2 finishes what it relays to h3.
  const net2 = new FakeNet();
  const [a, b, c] = [1, 2, 3].map((i) => net2.add(i, { vnetHdr: true, udpGso: true })) as [Host, Host, Host];
  const v3 = { gso: true, udpChecksums: true, partialChecksums: true };
  a.engine.setPeer(peer(2, v3));
  b.engine.setPeer(peer(1, { ...v3, outbound: false }));
  b.engine.setPeer(peer(3));
  c.engine.setPeer(peer(2, { outbound: false }));
  chainRoutes(a, b, c);
  c.engine.onCaptured(Buffer.concat([Buffer.alloc(10), ipv4Frame(BCAST, mac(2))]));
  c.engine.flush();
  net2.run();
  const sf = superFrame(4000, 1336);
  a.engine.onCaptured(Buffer.concat([sf.hdr, sf.frame]));
  a.engine.flush();
  net2.run();
  const data = c.tap.filter((t) => t.frame.length > 100);
  assert.equal(data.length, Math.ceil(4000 / 1336));
  assert.ok(data.every((t) => tcpChecksumOk(t.frame)), 'whole checksums after the relay');
  assert.deepEqual(Buffer.concat(data.map((t) => t.frame.subarray(54))), sf.frame.subarray(54));
});

test('encrypted: a super-frame goes whole in one box to a peer that takes it, in order after a queued DF frame', () => {
  const net = new FakeNet();
  const [h1, h2] = gsoPair(net, 3, { key: true });
  const small = ipv4Frame(mac(2), mac(1), { len: 200, df: true, proto: 6 });
  h1.engine.onCaptured(Buffer.concat([Buffer.alloc(10), small]));
  const { hdr, frame } = superFrame(20000, 1312);
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  h1.engine.flush();
  assert.deepEqual(h1.sent.map((s) => [s.df, s.segmentSize, s.sealed]), [[true, 0, true], [false, 0, true]], 'the small DF frame first, then the super-frame');
  net.run();
  assert.equal(h2.tap.length, 2);
  assert.deepEqual(h2.tap[0]!.frame, small);
  assert.equal(h2.tap[1]!.hdr?.gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
  assert.deepEqual(h2.tap[1]!.frame.subarray(54), frame.subarray(54));
});

for (const gro of [true, false]) {
  test(`encrypted, SleeveGSO 4: a super-frame's box leaves in MTU-sized chunks as UDP GSO trains, and arrives whole (${gro ? 'a GRO buffer' : 'separate datagrams'})`, () => {
    const net = new FakeNet();
    net.gro = gro;
    net.fragmentsPass = false; // chunks need no fragments
    const [h1, h2] = gsoPair(net, 4, { key: true });
    h1.engine.setPeer(peer(2, { gso: true, udpChecksums: true, partialChecksums: true, boxChunks: true, sessionKey: KEY, stackFrag: false }));
    const small = ipv4Frame(mac(2), mac(1), { len: 200, df: true, proto: 6 });
    h1.engine.onCaptured(Buffer.concat([Buffer.alloc(10), small]));
    for (let n = 0; n < 3; n++) {
      const { hdr, frame } = superFrame(60000, 1312);
      h1.engine.onCaptured(Buffer.concat([hdr, frame]));
    }
    h1.engine.flush();
    assert.deepEqual(h1.sent[0], { len: h1.sent[0]!.len, df: true, to: 2, segmentSize: 0, sealed: true }, 'the small DF frame first');
    const trains = h1.sent.slice(1);
    assert.ok(trains.length >= 3 && trains.every((t) => t.df && t.sealed && t.segmentSize > 0 && t.segmentSize <= 1472), 'DF trains of chunks that fit');
    net.run();
    assert.equal(h2.tap.length, 4);
    assert.deepEqual(h2.tap[0]!.frame, small);
    for (const t of h2.tap.slice(1)) {
      assert.equal(t.hdr?.gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
      assert.equal(t.frame.length, 54 + 60000);
    }
  });
}

test('encrypted, SleeveGSO 4: a box that lost a chunk is dropped, the next ones arrive, a version 3 peer still gets whole boxes', () => {
  const net = new FakeNet();
  net.gro = false;
  const [h1, h2] = gsoPair(net, 4, { key: true });
  const { hdr, frame } = superFrame(30000, 1312);
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  h1.engine.flush();
  assert.ok(h1.sent.every((t) => t.segmentSize > 0));
  net.queue.splice(5, 1); // one chunk lost
  net.run();
  assert.equal(h2.tap.length, 0);
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  h1.engine.flush();
  net.run();
  assert.equal(h2.tap.length, 1);
  assert.deepEqual(h2.tap[0]!.frame.subarray(54), frame.subarray(54));

  const net3 = new FakeNet();
  const [a, b] = gsoPair(net3, 3, { key: true });
  a.engine.onCaptured(Buffer.concat([hdr, frame]));
  a.engine.flush();
  assert.deepEqual(a.sent.map((s) => [s.df, s.segmentSize]), [[false, 0]], 'one whole box, fragmented by the kernel');
  net3.run();
  assert.equal(b.tap.length, 1);
});

test('encrypted, SleeveGSO 4, a path too small for a chunk: the box goes whole (fragmented) rather than failing', () => {
  const net = new FakeNet();
  const [h1, h2] = gsoPair(net, 4, { key: true });
  h1.engine.setPeer(peer(2, { gso: true, udpChecksums: true, partialChecksums: true, boxChunks: true, sessionKey: KEY, maxPayload: 80 }));
  const { hdr, frame } = superFrame(20000, 1312);
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  assert.doesNotThrow(() => h1.engine.flush());
  assert.deepEqual(h1.sent.map((s) => [s.df, s.segmentSize]), [[false, 0]]);
  net.run();
  assert.equal(h2.tap.length, 1);
});

test('without UDP GSO, plain super-frames still go whole to SleeveGSO peers, with whole checksums below version 3', () => {
  for (const v of [1, 3]) {
    const net = new FakeNet();
    const [h1, h2] = gsoPair(net, v, { udpGso: false });
    const { hdr, frame } = superFrame(20000, 1336);
    h1.engine.onCaptured(Buffer.concat([hdr, Buffer.from(frame)]));
    h1.engine.flush();
    assert.equal(h1.sent.length, 1);
    assert.equal(h1.sent[0]!.segmentSize, 0);
    net.run();
    assert.equal(h2.tap.length, 1);
    assert.equal(h2.tap[0]!.hdr?.gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
  }
});

/** h1 – h2 – h3 with virtio headers and UDP GSO, SleeveGSO 3 between neighbours; no routes yet. */
function chainV3(net: FakeNet): [Host, Host, Host] {
  const [h1, h2, h3] = [1, 2, 3].map((i) => net.add(i, { vnetHdr: true, udpGso: true })) as [Host, Host, Host];
  const v3 = { gso: true, udpChecksums: true, partialChecksums: true };
  h1.engine.setPeer(peer(2, v3));
  h2.engine.setPeer(peer(1, { ...v3, outbound: false }));
  h2.engine.setPeer(peer(3, v3));
  h3.engine.setPeer(peer(2, { ...v3, outbound: false }));
  return [h1, h2, h3];
}

test('a train for an unknown MAC is merged for our bridge and still relayed, segment by segment', () => {
  const net = new FakeNet();
  const [h1, h2, h3] = chainV3(net);
  chainRoutes(h1, h2, h3);
  // mac(2) is known nowhere: h1 floods the super-frame along its broadcast route.
  const { hdr, frame } = superFrame(20000, 1336);
  h1.engine.onCaptured(Buffer.concat([hdr, frame]));
  h1.engine.flush();
  assert.equal(h1.sent.length, 1);
  assert.ok(h1.sent[0]!.segmentSize > 0);
  net.run();
  for (const h of [h2, h3]) {
    assert.equal(h.tap.length, 1, `host ${h.i} writes one merged frame`);
    assert.deepEqual(h.tap[0]!.frame, frame);
  }
});

test('a GRO train whose later datagram has another sleeve header: that one takes the full path (relayed, or dropped)', () => {
  for (const change of ['dst', 'sender'] as const) {
    const net = new FakeNet();
    const [h1, h2, h3] = chainV3(net);
    h1.engine.setRoutes([[NAME(2), NAME(2)]], [[NAME(1), [NAME(2)]]]);
    h2.engine.setRoutes([[NAME(1), NAME(1)], [NAME(3), NAME(3)]], [[NAME(1), []], [NAME(2), []], [NAME(3), []]]);
    h3.engine.setRoutes([[NAME(2), NAME(2)]], [[NAME(3), [NAME(2)]]]);
    // h1 learns that mac(2) is at h2, so the super-frame goes to h2 alone.
    h2.engine.onCaptured(Buffer.concat([Buffer.alloc(10), ipv4Frame(BCAST, mac(2))]));
    h2.engine.flush();
    net.run();
    h1.tap.length = h2.tap.length = h3.tap.length = 0;
    const { hdr, frame } = superFrame(6 * 1336, 1336);
    // Datagram 2 of the train: its frame is for h3, or its sender is nobody h2 knows.
    const receive = h2.engine.onDatagram.bind(h2.engine);
    h2.engine.onDatagram = (buf, ip, port, seg = 0) => {
      assert.ok(seg > 0 && buf.length > 3 * seg, 'a GRO train');
      if (change === 'dst') writePeerNameAt(buf, 2 * seg + 12, NAME(3));
      else writePeerNameAt(buf, 2 * seg, NAME(9));
      receive(buf, ip, port, seg);
    };
    h1.engine.onCaptured(Buffer.concat([hdr, frame]));
    h1.engine.flush();
    net.run();
    const payload = (f: Buffer) => f.subarray(54);
    const segment = (i: number) => frame.subarray(54 + i * 1336, 54 + (i + 1) * 1336);
    // Segments 0–1 and 3–5 merge at h2 on either side of the gap.
    assert.deepEqual(h2.tap.map((t) => t.frame.length), [54 + 2 * 1336, 54 + 3 * 1336], change);
    assert.deepEqual(payload(h2.tap[0]!.frame), Buffer.concat([segment(0), segment(1)]));
    assert.deepEqual(payload(h2.tap[1]!.frame), Buffer.concat([segment(3), segment(4), segment(5)]));
    if (change === 'dst') {
      assert.equal(h3.tap.length, 1, 'segment 2 relayed to h3');
      assert.deepEqual(payload(h3.tap[0]!.frame), segment(2));
    } else assert.equal(h3.tap.length, 0);
  }
});

/**
 * Differential fuzz of the receive fast path: the same (mutated) UDP GSO trains go to one h2 as
 * GRO buffers (trainFrame, tryAppend; encrypted: chunks of boxes) and to another as separate
 * datagrams (the full path for each, coalescer.push), at even and odd addresses. Both must write the same frames with the same virtio headers to their
 * TAPs, learn the same MACs and relay the same frames to h3; neither may throw.
 */
for (const enc of [false, true]) {
test(`fuzz: mutated GRO trains are handled exactly as the same datagrams one by one (${enc ? 'encrypted, boxes in chunks' : 'plain'})`, { timeout: 120_000 }, () => {
  const rand = seeded(Number(process.env.FUZZ_SEED ?? 20261128));
  const int = (n: number) => Math.floor(rand() * n);
  const setup = (): [Host, Host, Host, FakeNet] => {
    const net = new FakeNet();
    const [h1, h2, h3] = chainV3(net);
    if (enc) {
      const v4 = { gso: true, udpChecksums: true, partialChecksums: true, boxChunks: true, sessionKey: KEY };
      h1.engine.setPeer(peer(2, v4));
      h2.engine.setPeer(peer(1, { ...v4, outbound: false }));
      h2.engine.setPeer(peer(3, v4));
      h3.engine.setPeer(peer(2, { ...v4, outbound: false }));
    }
    chainRoutes(h1, h2, h3);
    // h2's bridge has mac(2); mac(7) is known nowhere, so frames for it are flooded.
    h2.engine.onCaptured(Buffer.concat([Buffer.alloc(10), ipv4Frame(BCAST, mac(2))]));
    h2.engine.flush();
    net.run();
    return [h1, h2, h3, net];
  };
  // Trains as h1 sends them (captured on arrival at h2): flows to a known and to an unknown
  // MAC, with and without timestamps, various sizes and segment sizes, PSH or not.
  const trains: { buf: Buffer; seg: number }[] = [];
  const [s1, s2, , sNet] = setup();
  s2.engine.onDatagram = (buf, _ip, _port, seg = 0) => void (seg > 0 && trains.push({ buf: Buffer.from(buf), seg }));
  let sent = 0;
  const send = () => {
    const k = sent++;
    const mss = [1336, 1324, 1000, 536][k % 4]!;
    const { hdr, frame } = tcpSuperFrame({
      dst: k % 3 === 2 ? mac(7) : mac(2), src: mac(1), payload: mss * (2 + int(8)) - (k % 5 === 0 ? int(mss) : 0), mss,
      seq: int(2 ** 32), ack: int(2 ** 32), flags: k % 2 ? 0x18 : 0x10, srcPort: 40000 + (k % 3), dstPort: 5201, window: 512, timestamps: k % 4 !== 1,
    });
    s1.engine.onCaptured(Buffer.concat([hdr, frame]));
    s1.engine.flush();
    sNet.run();
  };
  for (let k = 0; k < 24; k++) send();
  assert.ok(trains.length >= 20, `trains recorded: ${trains.length}`);
  // A sealed train opens once (then it is a replay): encrypted cases take fresh ones, in order.
  const fresh = () => {
    trains.length = 0;
    while (trains.length === 0) send();
    return trains[0]!;
  };
  const pool = [...trains];

  const [, a2, a3, aNet] = setup();
  const [, b2, b3, bNet] = setup();
  const ip = ipv4ToNumber(IP(1));
  const view = (h: Host) => h.tap.map((t) => ({ frame: t.frame.toString('hex'), hdr: t.hdr }));
  let merged = 0;
  const cases = Number(process.env.FUZZ_CASES ?? 3000);
  for (let n = 0; n < cases; n++) {
    const picked = enc ? fresh() : pool[int(pool.length)]!;
    const seg = picked.seg;
    let buf = Buffer.from(picked.buf);
    // Two trains of one segment size may arrive as one GRO buffer.
    if (int(4) === 0) {
      const same = pool.filter((t) => t.seg === seg);
      const other = enc ? fresh() : same[int(same.length)]!;
      if (other.seg === seg) buf = Buffer.concat([buf, other.buf]);
    }
    const count = Math.ceil(buf.length / seg);
    // None (a quarter of the cases, so that sealed boxes still open now and then) to three.
    for (let m = int(4); m > 0; m--) {
      const d = int(count);
      switch (int(6)) {
        case 0: // a header byte of one datagram (sleeve prefix, frame header, Ethernet/IP/TCP)
          if (d * seg + 110 <= buf.length) {
            const at = d * seg + int(110);
            buf[at] = buf[at]! ^ (1 << int(8));
          }
          break;
        case 1: // a random byte anywhere
          buf[int(buf.length)] = int(256);
          break;
        case 2: // TCP flags of one segment (the frame starts 20 bytes in)
          if (d * seg + 20 + 48 <= buf.length) buf[d * seg + 20 + 47] = [0x10, 0x18, 0x11, 0x12, 0x14, 0x30, 0x50][int(7)]!;
          break;
        case 3: // the last datagram cut short
          buf = buf.subarray(0, Math.max(1, buf.length - int(seg)));
          break;
        case 4: // two datagrams swapped
          {
            const e = int(count);
            if ((d + 1) * seg <= buf.length && (e + 1) * seg <= buf.length && d !== e) {
              const x = Buffer.from(buf.subarray(d * seg, (d + 1) * seg));
              buf.copy(buf, d * seg, e * seg, (e + 1) * seg);
              x.copy(buf, e * seg);
            }
          }
          break;
        default: // a sequence number moved by a little
          if (d * seg + 20 + 42 <= buf.length) buf.writeUInt32BE((buf.readUInt32BE(d * seg + 20 + 38) + [1, -1, 1336, -1336][int(4)]!) >>> 0, d * seg + 20 + 38);
      }
    }
    a2.tap.length = b2.tap.length = a3.tap.length = b3.tap.length = 0;
    a2.events.length = b2.events.length = 0;
    // At an odd address half the time: the word compares then fall back to bytes.
    const at = (b: Buffer) => {
      const odd = int(2);
      const out = Buffer.alloc(b.length + odd).subarray(odd);
      b.copy(out);
      return out;
    };
    a2.engine.onDatagram(at(buf), ip, 6783, seg);
    const copy = at(buf);
    for (let o = 0; o < copy.length; o += seg) b2.engine.onDatagram(copy.subarray(o, Math.min(o + seg, copy.length)), ip, 6783);
    a2.engine.flush();
    b2.engine.flush();
    aNet.run();
    bNet.run();
    assert.deepEqual(view(a2), view(b2), `h2's TAP, case ${n}`);
    assert.deepEqual(a2.events, b2.events, `h2's events, case ${n}`);
    assert.deepEqual(view(a3), view(b3), `relayed to h3, case ${n}`);
    merged += a2.tap.filter((t) => t.hdr && t.hdr.gsoSize > 0).length;
  }
  assert.ok(merged > cases / 10, `merged frames written: ${merged} in ${cases} cases`);
});
}
