// IPv4 and virtio-net helpers of the sleeve data path: the internet checksum (known vectors,
// a naive reference at every alignment, and a throughput figure), the original's own IPv4
// fragmentation and ICMP "fragmentation needed" reply against hand-computed frames, and
// virtio_net_hdr: checksum completion, software GSO (TCPv4, TCPv6, UDP) and the GSO header
// for large frames from peers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeaveError } from '../../../src/core/errors.js';
import {
  ETHERTYPE_IPV4, ETHERTYPE_IPV6, etherType, foldChecksum, fragmentIPv4Frame, icmpFragNeededFrame, internetChecksum, ipv4Checksum,
  ipv4DontFragment, ipv4PseudoHeaderSum, ipv4Protocol, ipv4TotalLength, ipv6PseudoHeaderSum, onesComplementSum, parseIpv4Frame,
} from '../../../src/dataplane/sleeve/ipv4.js';
import {
  NO_VNET_HDR, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP, completeChecksum, decodeVnetHdr, encodeVnetHdr, gsoForFrame, segmentGso, type VnetHdr,
} from '../../../src/dataplane/sleeve/vnet-hdr.js';
import { seeded } from '../../helpers/prng.js';

const code = (c: string) => (e: unknown) => isWeaveError(e) && e.code === c;
const MAC_A = Buffer.from('a221540ccf10', 'hex');
const MAC_B = Buffer.from('12f6d1d13445', 'hex');
const IP_A = [10, 32, 0, 1];
const IP_B = [10, 40, 0, 0];

function randomBuf(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** RFC 1071 by the book: 16-bit big-endian words, end-around carry each step. */
function naiveSum(b: Uint8Array, start: number, end: number): number {
  let s = 0;
  for (let i = start; i < end; i += 2) {
    s += ((b[i] ?? 0) << 8) | (i + 1 < end ? (b[i + 1] ?? 0) : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  return s;
}

interface Ipv4Opts {
  proto: number;
  payload: Buffer;
  df?: boolean;
  mf?: boolean;
  fragOffsetBytes?: number;
  id?: number;
  tos?: number;
  options?: Buffer;
}

function ipv4Frame(o: Ipv4Opts): Buffer {
  const opt = o.options ?? Buffer.alloc(0);
  const hlen = 20 + opt.length;
  const f = Buffer.alloc(14 + hlen + o.payload.length);
  MAC_B.copy(f, 0);
  MAC_A.copy(f, 6);
  f.writeUInt16BE(ETHERTYPE_IPV4, 12);
  f[14] = 0x40 | (hlen / 4);
  f[15] = o.tos ?? 0;
  f.writeUInt16BE(hlen + o.payload.length, 16);
  f.writeUInt16BE(o.id ?? 0x1234, 18);
  f.writeUInt16BE((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffsetBytes ?? 0) / 8), 20);
  f[22] = 64;
  f[23] = o.proto;
  Buffer.from(IP_A).copy(f, 26);
  Buffer.from(IP_B).copy(f, 30);
  opt.copy(f, 34);
  f.writeUInt16BE(ipv4Checksum(f, 14), 24);
  o.payload.copy(f, 14 + hlen);
  return f;
}

function ipv6Frame(payload: Buffer): Buffer {
  const f = Buffer.alloc(14 + 40 + payload.length);
  MAC_B.copy(f, 0);
  MAC_A.copy(f, 6);
  f.writeUInt16BE(ETHERTYPE_IPV6, 12);
  f[14] = 0x60;
  f.writeUInt16BE(payload.length, 18);
  f[20] = 6;
  f[21] = 64;
  for (let i = 0; i < 16; i++) {
    f[22 + i] = 0xfd + i;
    f[38 + i] = 0x20 + i;
  }
  payload.copy(f, 54);
  return f;
}

/** A TCP segment: header of `hlen` bytes (options filled with NOPs), seq, flags, payload. */
function tcpSegment(seq: number, flags: number, data: Buffer, hlen = 32): Buffer {
  const t = Buffer.alloc(hlen + data.length, 0);
  t.writeUInt16BE(40000, 0);
  t.writeUInt16BE(80, 2);
  t.writeUInt32BE(seq >>> 0, 4);
  t.writeUInt32BE(0xabcdef01, 8);
  t[12] = (hlen / 4) << 4;
  t[13] = flags;
  t.writeUInt16BE(501, 14);
  for (let i = 20; i < hlen; i++) t[i] = 1;
  data.copy(t, hlen);
  return t;
}

/** TCP/UDP checksum verifies when the sum over pseudo header and segment is 0xffff. */
function l4Verifies(frame: Buffer): boolean {
  const v6 = frame.readUInt16BE(12) === ETHERTYPE_IPV6;
  if (v6) {
    const len = frame.readUInt16BE(18);
    return internetChecksum(frame, 54, 54 + len, ipv6PseudoHeaderSum(frame, 14, frame[20]!, len)) === 0;
  }
  const hlen = (frame[14]! & 15) * 4;
  const len = frame.readUInt16BE(16) - hlen;
  return internetChecksum(frame, 14 + hlen, 14 + hlen + len, ipv4PseudoHeaderSum(frame, 14, frame[23]!, len)) === 0;
}

function fillL4Checksum(frame: Buffer, at: number): void {
  frame.writeUInt16BE(0, at);
  const v6 = frame.readUInt16BE(12) === ETHERTYPE_IPV6;
  if (v6) {
    const len = frame.readUInt16BE(18);
    frame.writeUInt16BE(internetChecksum(frame, 54, 54 + len, ipv6PseudoHeaderSum(frame, 14, frame[20]!, len)), at);
  } else {
    const hlen = (frame[14]! & 15) * 4;
    const len = frame.readUInt16BE(16) - hlen;
    frame.writeUInt16BE(internetChecksum(frame, 14 + hlen, 14 + hlen + len, ipv4PseudoHeaderSum(frame, 14, frame[23]!, len)), at);
  }
}

// ---------------------------------------------------------------------------------------------

// First, while the functions have only seen Buffers (later tests pass plain Uint8Arrays).
test('checksum: throughput (reported, not asserted)', (t) => {
  const rand = seeded(2);
  const big = randomBuf(rand, 65536 + 8);
  for (const len of [64, 1500, 9000, 65535]) {
    const bytes = 200e6;
    const iters = Math.ceil(bytes / len);
    let x = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) x ^= internetChecksum(big, 1 + (i & 3), 1 + (i & 3) + len);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    t.diagnostic(`internetChecksum ${len} B: ${((iters * len) / s / 1e6).toFixed(0)} MB/s (x=${x})`);
  }
});

test('checksum: RFC 1071 and a textbook IPv4 header', () => {
  const rfc = Buffer.from('0001f203f4f5f6f7', 'hex');
  assert.equal(onesComplementSum(rfc), 0xddf2);
  assert.equal(internetChecksum(rfc), 0x220d);
  const hdr = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
  assert.equal(ipv4Checksum(hdr), 0xb861);
  hdr.writeUInt16BE(0xb861, 10);
  assert.equal(ipv4Checksum(hdr), 0xb861, 'the stored checksum is ignored');
  assert.equal(internetChecksum(hdr), 0, 'a correct header sums to zero');
  assert.equal(internetChecksum(Buffer.alloc(0)), 0xffff);
  assert.equal(foldChecksum(0x1fffe), 0xffff);
  assert.equal(foldChecksum(2 ** 52), 16); // 2^52 = 2^(3*16+4)
  assert.throws(() => ipv4Checksum(Buffer.from([0x44, 0, 0, 0])), code('DECODE_FAILED'));
  assert.throws(() => ipv4Checksum(Buffer.from([0x46]), 0), code('DECODE_FAILED'));
  assert.throws(() => onesComplementSum(rfc, 2, 1), code('INVALID_ARGUMENT'));
  assert.throws(() => onesComplementSum(rfc, 0, 9), code('INVALID_ARGUMENT'));
});

test('checksum: equals the naive sum at every alignment, length and initial value', () => {
  const rand = seeded(1);
  const pool = randomBuf(rand, 70000);
  const lens = [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 66, 67, 127, 128, 129, 1499, 1500, 1501, 9000, 65535];
  for (let start = 0; start < 8; start++) {
    for (const len of lens) {
      const initial = Math.floor(rand() * 0x10000);
      const want = foldChecksum(naiveSum(pool, start, start + len) + initial);
      assert.equal(onesComplementSum(pool, start, start + len, initial), want, `start ${start} len ${len}`);
      // Also through a view whose byteOffset is unaligned.
      const view = pool.subarray(start, start + len);
      assert.equal(onesComplementSum(view, 0, len, initial), want);
      assert.equal(internetChecksum(new Uint8Array(view), 0, len, initial), ~want & 0xffff);
    }
  }
  // All ones and all zeros stress the carries.
  const ones = Buffer.alloc(65535, 0xff);
  assert.equal(onesComplementSum(ones), naiveSum(ones, 0, ones.length));
  assert.equal(onesComplementSum(Buffer.alloc(4096)), 0);
});

// ---------------------------------------------------------------------------------------------

test('parse helpers: ethertype, DF, total length, protocol', () => {
  const rand = seeded(3);
  const df = ipv4Frame({ proto: 1, payload: randomBuf(rand, 64), df: true });
  assert.equal(etherType(df), ETHERTYPE_IPV4);
  assert.equal(ipv4DontFragment(df), true);
  assert.equal(ipv4TotalLength(df), 84);
  assert.equal(ipv4Protocol(df), 1);
  const info = parseIpv4Frame(df)!;
  assert.equal(info.headerBytes, 20);
  assert.equal(info.version, 4);
  assert.equal(info.ttl, 64);
  assert.equal(info.id, 0x1234);
  assert.equal(info.truncated, false);
  assert.equal(ipv4DontFragment(ipv4Frame({ proto: 17, payload: Buffer.alloc(8) })), false);
  assert.equal(etherType(Buffer.alloc(13)), undefined);
  assert.equal(parseIpv4Frame(ipv6Frame(Buffer.alloc(20))), undefined);
  assert.equal(ipv4DontFragment(ipv6Frame(Buffer.alloc(20))), false);
  // gopacket's leniency: a zero total length means "the rest of the frame" (TSO), truncation
  // is flagged, a header longer than the frame is not IPv4.
  const tso = Buffer.from(df);
  tso.writeUInt16BE(0, 16);
  assert.equal(ipv4TotalLength(tso), 84);
  assert.equal(parseIpv4Frame(df.subarray(0, 60))!.truncated, true);
  const badIhl = Buffer.from(df);
  badIhl[14] = 0x44;
  assert.equal(parseIpv4Frame(badIhl), undefined);
  assert.equal(parseIpv4Frame(df.subarray(0, 33)), undefined);
});

test('fragment: 3000 bytes at MTU 1438 gives 1416 + 1416 + 168, as computed by hand', () => {
  const rand = seeded(4);
  const payload = randomBuf(rand, 3000);
  const frame = ipv4Frame({ proto: 17, payload, id: 0x4242, tos: 0x10 });
  const frags = fragmentIPv4Frame(frame, 1438);
  // (1438 - 20) & ~7 = 1416 payload bytes per fragment, offsets in units of 8: 0, 177, 354.
  assert.deepEqual(frags.map((f) => f.readUInt16BE(16)), [1436, 1436, 188]);
  assert.deepEqual(frags.map((f) => f.readUInt16BE(20)), [0x2000 | 0, 0x2000 | 177, 354]);
  assert.deepEqual(frags.map((f) => f.length), [1450, 1450, 202]);
  for (const f of frags) {
    assert.deepEqual(f.subarray(0, 14), frame.subarray(0, 14), 'Ethernet header copied');
    assert.equal(f.readUInt16BE(18), 0x4242, 'id kept');
    assert.equal(f[15], 0x10, 'TOS kept');
    assert.equal(internetChecksum(f, 14, 34), 0, 'header checksum valid');
    assert.ok(f.readUInt16BE(16) <= 1438);
  }
  assert.deepEqual(Buffer.concat(frags.map((f) => f.subarray(34, 14 + f.readUInt16BE(16)))), payload, 'reassembles');
});

test('fragment: options copied, fragments of a fragment, padding, trailing bytes, refusals', () => {
  const rand = seeded(5);
  const options = Buffer.from([0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]); // router alert + NOPs + EOL
  const payload = randomBuf(rand, 1000);
  // A middle fragment (MF set, offset 800) split again keeps MF on its last piece.
  const mid = ipv4Frame({ proto: 17, payload, options, mf: true, fragOffsetBytes: 800 });
  const frags = fragmentIPv4Frame(Buffer.concat([mid, Buffer.alloc(6)]), 500);
  const seg = (500 - 28) & ~7; // 472
  assert.deepEqual(frags.map((f) => f.readUInt16BE(16)), [28 + seg, 28 + seg, 28 + 1000 - 2 * seg]);
  assert.deepEqual(frags.map((f) => f.readUInt16BE(20)), [0x2000 | 100, 0x2000 | (100 + seg / 8), 0x2000 | (100 + (2 * seg) / 8)]);
  for (const f of frags) {
    assert.deepEqual(f.subarray(34, 42), options);
    assert.equal(internetChecksum(f, 14, 42), 0);
  }
  assert.deepEqual(Buffer.concat(frags.map((f) => f.subarray(42, 14 + f.readUInt16BE(16)))), payload);
  // A short last fragment is padded to the 60-byte Ethernet minimum, as gopacket does.
  const small = fragmentIPv4Frame(ipv4Frame({ proto: 17, payload: randomBuf(rand, 1416 + 8) }), 1438);
  assert.equal(small.length, 2);
  assert.equal(small[1]!.length, 60);
  assert.equal(small[1]!.readUInt16BE(16), 28);
  // A frame that fits comes back as one (new) frame.
  const fits = ipv4Frame({ proto: 17, payload: randomBuf(rand, 100) });
  assert.deepEqual(fragmentIPv4Frame(fits, 1438), [fits]);
  assert.throws(() => fragmentIPv4Frame(ipv4Frame({ proto: 6, payload, df: true }), 576), code('INVALID_ARGUMENT'));
  assert.throws(() => fragmentIPv4Frame(fits, 27), code('INVALID_ARGUMENT'));
  assert.throws(() => fragmentIPv4Frame(fits, Number.NaN), code('INVALID_ARGUMENT'));
  assert.throws(() => fragmentIPv4Frame(ipv6Frame(payload), 576), code('DECODE_FAILED'));
  assert.throws(() => fragmentIPv4Frame(fits.subarray(0, 60), 40), code('DECODE_FAILED'));
});

test('ICMP fragmentation needed: every field of the reply', () => {
  const rand = seeded(6);
  const tcp = tcpSegment(1, 0x18, randomBuf(rand, 1948), 20);
  const big = ipv4Frame({ proto: 6, payload: tcp, df: true, tos: 0x28, id: 777 });
  const r = icmpFragNeededFrame(big, 1438);
  assert.equal(r.length, 14 + 20 + 8 + 28);
  assert.deepEqual(r.subarray(0, 6), MAC_A, 'to the sender');
  assert.deepEqual(r.subarray(6, 12), MAC_B, 'from the original destination');
  assert.equal(r.readUInt16BE(12), ETHERTYPE_IPV4);
  assert.equal(r[14], 0x45);
  assert.equal(r[15], 0x28, 'TOS copied');
  assert.equal(r.readUInt16BE(16), 56);
  assert.equal(r.readUInt16BE(18), 0, 'id 0');
  assert.equal(r.readUInt16BE(20), 0, 'no flags, no offset');
  assert.equal(r[22], 64);
  assert.equal(r[23], 1);
  assert.deepEqual([...r.subarray(26, 30)], IP_B, 'from the unreachable destination');
  assert.deepEqual([...r.subarray(30, 34)], IP_A);
  assert.equal(internetChecksum(r, 14, 34), 0, 'IP checksum');
  assert.equal(r[34], 3);
  assert.equal(r[35], 4);
  assert.equal(r.readUInt16BE(38), 0);
  assert.equal(r.readUInt16BE(40), 1438, 'next-hop MTU');
  assert.deepEqual(r.subarray(42), big.subarray(14, 14 + 28), 'IP header + 8 bytes quoted');
  assert.equal(internetChecksum(r, 34, 70), 0, 'ICMP checksum');
  assert.equal(ipv4DontFragment(r), false, 'the reply is not DF (bounded recursion in the original)');
  assert.throws(() => icmpFragNeededFrame(ipv6Frame(tcp), 1438), code('DECODE_FAILED'));
  assert.throws(() => icmpFragNeededFrame(big, 70000), code('INVALID_ARGUMENT'));
  // A packet with fewer than 8 bytes after its header: quote what there is.
  const tiny = icmpFragNeededFrame(ipv4Frame({ proto: 17, payload: Buffer.from([1, 2, 3]), df: true }), 1000);
  assert.equal(tiny.readUInt16BE(16), 20 + 8 + 23);
  assert.equal(internetChecksum(tiny, 34, 14 + 51), 0);
});

// ---------------------------------------------------------------------------------------------

test('vnet header: little-endian layout, round trip, bounds', () => {
  const h: VnetHdr = { flags: 1, gsoType: 0x81, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
  const b = encodeVnetHdr(h);
  assert.equal(b.toString('hex'), '01814200a80522001000');
  assert.deepEqual(decodeVnetHdr(b), h);
  const out = Buffer.alloc(14, 0xee);
  encodeVnetHdr(h, out, 2);
  assert.deepEqual(decodeVnetHdr(out, 2), h);
  assert.throws(() => decodeVnetHdr(Buffer.alloc(9)), code('DECODE_FAILED'));
  assert.throws(() => decodeVnetHdr(b, 1), code('DECODE_FAILED'));
  assert.throws(() => encodeVnetHdr({ ...h, gsoSize: 65536 }), code('INVALID_ARGUMENT'));
  assert.throws(() => encodeVnetHdr({ ...h, flags: 256 }), code('INVALID_ARGUMENT'));
  assert.throws(() => encodeVnetHdr(h, Buffer.alloc(9)), code('INVALID_ARGUMENT'));
  assert.deepEqual(decodeVnetHdr(encodeVnetHdr(NO_VNET_HDR)), NO_VNET_HDR);
});

/** What the kernel hands over: the L4 checksum field holds the pseudo-header sum only. */
function partial(frame: Buffer, l4Start: number, at: number): VnetHdr {
  const v6 = frame.readUInt16BE(12) === ETHERTYPE_IPV6;
  const len = v6 ? frame.readUInt16BE(18) : frame.readUInt16BE(16) - (l4Start - 14);
  const proto = v6 ? frame[20]! : frame[23]!;
  const p = v6 ? ipv6PseudoHeaderSum(frame, 14, proto, len) : ipv4PseudoHeaderSum(frame, 14, proto, len);
  frame.writeUInt16BE(p, at);
  return { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: l4Start, csumOffset: at - l4Start };
}

test('completeChecksum: partial TCP and UDP checksums finished as the kernel would', () => {
  const rand = seeded(7);
  for (let i = 0; i < 50; i++) {
    const n = Math.floor(rand() * 1500);
    const f = ipv4Frame({ proto: 6, payload: tcpSegment(i, 0x10, randomBuf(rand, n)) });
    const h = partial(f, 34, 50);
    completeChecksum(h, f);
    assert.ok(l4Verifies(f), `tcp ${n}`);
    const want = Buffer.from(f);
    fillL4Checksum(want, 50);
    assert.deepEqual(f, want);
  }
  const v6 = ipv6Frame(tcpSegment(9, 0x10, randomBuf(rand, 777)));
  completeChecksum(partial(v6, 54, 70), v6);
  assert.ok(l4Verifies(v6));
  // A UDP checksum that comes out 0 is sent as 0xffff (0 would mean "no checksum").
  const data = randomBuf(rand, 100);
  const udp = Buffer.concat([Buffer.from([0x9c, 0x40, 0x00, 0x35, 0, 108, 0, 0]), data]);
  const f = ipv4Frame({ proto: 17, payload: udp });
  const h = partial(f, 34, 40);
  const s = onesComplementSum(f, 34, f.length);
  // Adjust the last data word so that the whole sum becomes 0xffff, i.e. checksum 0.
  f.writeUInt16BE((f.readUInt16BE(f.length - 2) + (0xffff - s)) % 0xffff, f.length - 2);
  assert.equal(onesComplementSum(f, 34, f.length), 0xffff);
  completeChecksum(h, f);
  assert.equal(f.readUInt16BE(40), 0xffff);
  assert.ok(l4Verifies(f));
  // Without NEEDS_CSUM nothing changes; out-of-range offsets are refused.
  const before = Buffer.from(f);
  completeChecksum(NO_VNET_HDR, f);
  assert.deepEqual(f, before);
  assert.throws(() => completeChecksum({ ...h, csumOffset: 1000 }, f), code('DECODE_FAILED'));
  assert.throws(() => completeChecksum({ ...h, csumStart: f.length }, f), code('DECODE_FAILED'));
});

function checkTcpSegments(segs: Buffer[], orig: Buffer, v6: boolean, mss: number, data: Buffer, seq0: number, flags0: number): void {
  const ipHdr = v6 ? 40 : 20;
  const tcpStart = 14 + ipHdr;
  const thl = (orig[tcpStart + 12]! >>> 4) * 4;
  assert.equal(segs.length, Math.max(1, Math.ceil(data.length / mss)));
  const parts: Buffer[] = [];
  segs.forEach((s, i) => {
    const segLen = Math.min(mss, data.length - i * mss);
    assert.equal(s.length, tcpStart + thl + segLen);
    assert.deepEqual(s.subarray(0, 14), orig.subarray(0, 14));
    if (v6) {
      assert.equal(s.readUInt16BE(18), thl + segLen);
      assert.deepEqual(s.subarray(14, 18), orig.subarray(14, 18));
      assert.deepEqual(s.subarray(20, 54), orig.subarray(20, 54));
    } else {
      assert.equal(s.readUInt16BE(16), 20 + thl + segLen);
      assert.equal(s.readUInt16BE(18), (orig.readUInt16BE(18) + i) & 0xffff, 'IP id + 1 per segment');
      assert.equal(internetChecksum(s, 14, 34), 0, 'IP header checksum');
    }
    assert.equal(s.readUInt32BE(tcpStart + 4), (seq0 + i * mss) >>> 0, 'TCP seq');
    const last = i === segs.length - 1;
    let want = flags0;
    if (!last) want &= ~0x09;
    if (i > 0) want &= ~0x80;
    assert.equal(s[tcpStart + 13], want, `flags of segment ${i}`);
    assert.deepEqual(s.subarray(tcpStart + 14, tcpStart + 16), orig.subarray(tcpStart + 14, tcpStart + 16), 'window');
    assert.deepEqual(s.subarray(tcpStart + 20, tcpStart + thl), orig.subarray(tcpStart + 20, tcpStart + thl), 'options');
    assert.ok(l4Verifies(s), `TCP checksum of segment ${i}`);
    parts.push(s.subarray(tcpStart + thl));
  });
  assert.deepEqual(Buffer.concat(parts), data, 'payload reassembles');
}

test('segmentGso: TCPv4 super-frame into MSS segments with full checksums', () => {
  const rand = seeded(8);
  for (const [n, mss] of [[10000, 1448], [1448 * 3, 1448], [1, 1448], [0, 536], [65000, 1398]] as const) {
    const data = randomBuf(rand, n);
    const seq0 = 0xffffff00; // wraps during the super-frame
    const flags0 = 0x80 | 0x18 | 0x01; // CWR, PSH+ACK, FIN
    const frame = ipv4Frame({ proto: 6, payload: tcpSegment(seq0, flags0, data), df: true, id: 0xfffe });
    const orig = Buffer.from(frame);
    const h = { ...partial(frame, 34, 50), gsoType: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, gsoSize: mss, hdrLen: 66 };
    const segs = segmentGso(h, frame);
    checkTcpSegments(segs, orig, false, mss, data, seq0, flags0);
    for (const s of segs) assert.equal(s.readUInt16BE(20) & 0x4000, 0x4000, 'DF kept');
  }
});

test('segmentGso: TCPv6, GSO_NONE and UDP (UFO) super-frames', () => {
  const rand = seeded(9);
  const data = randomBuf(rand, 7000);
  const frame = ipv6Frame(tcpSegment(12345, 0x18, data, 40));
  const orig = Buffer.from(frame);
  const h = { ...partial(frame, 54, 70), gsoType: VIRTIO_NET_HDR_GSO_TCPV6, gsoSize: 1000 };
  checkTcpSegments(segmentGso(h, frame), orig, true, 1000, data, 12345, 0x18);
  // GSO_NONE: the frame itself, checksum completed.
  const one = ipv4Frame({ proto: 6, payload: tcpSegment(5, 0x10, randomBuf(rand, 300)) });
  const same = segmentGso({ ...partial(one, 34, 50), gsoType: VIRTIO_NET_HDR_GSO_NONE }, one);
  assert.equal(same.length, 1);
  assert.equal(same[0], one);
  assert.ok(l4Verifies(one));
  // UFO: the UDP checksum over the whole datagram, then IP fragments of gso_size.
  const payload = randomBuf(rand, 4000);
  const udp = Buffer.concat([Buffer.from([0x9c, 0x40, 0x00, 0x35, (4008 >> 8) & 0xff, 4008 & 0xff, 0, 0]), payload]);
  const uf = ipv4Frame({ proto: 17, payload: udp });
  const frags = segmentGso({ ...partial(uf, 34, 40), gsoType: VIRTIO_NET_HDR_GSO_UDP, gsoSize: 1480 }, uf);
  assert.deepEqual(frags.map((f) => f.readUInt16BE(16)), [1500, 1500, 20 + 4008 - 2960]);
  const whole = Buffer.concat([uf.subarray(0, 34), ...frags.map((f) => f.subarray(34, 14 + f.readUInt16BE(16)))]);
  whole.writeUInt16BE(20 + 4008, 16);
  assert.ok(l4Verifies(whole), 'the reassembled datagram checksums');
  // Refusals.
  assert.throws(() => segmentGso({ ...h, gsoType: 2 }, frame), code('DECODE_FAILED'));
  assert.throws(() => segmentGso({ ...h, gsoType: VIRTIO_NET_HDR_GSO_TCPV4 }, frame), code('DECODE_FAILED'));
  assert.throws(() => segmentGso({ ...h, gsoSize: 0 }, frame), code('DECODE_FAILED'));
  assert.throws(() => segmentGso(h, frame.subarray(0, 60)), code('DECODE_FAILED'));
  assert.throws(() => segmentGso({ ...h, gsoType: VIRTIO_NET_HDR_GSO_TCPV4 }, uf), code('DECODE_FAILED'));
});

test('gsoForFrame: large TCP frames from a peer become one GSO write; the kernel segments right', () => {
  const rand = seeded(10);
  for (const v6 of [false, true]) {
    const data = randomBuf(rand, 20000);
    const tcp = tcpSegment(777, 0x80 | 0x18, data, 32);
    const frame = v6 ? ipv6Frame(tcp) : ipv4Frame({ proto: 6, payload: tcp, df: true });
    fillL4Checksum(frame, v6 ? 70 : 50); // peers send complete checksums
    const orig = Buffer.from(frame);
    const mtu = 1400;
    const h = gsoForFrame(frame, mtu);
    const ipHdr = v6 ? 40 : 20;
    assert.deepEqual(h, {
      flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
      gsoType: (v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4) | VIRTIO_NET_HDR_GSO_ECN,
      hdrLen: 14 + ipHdr + 32,
      gsoSize: mtu - ipHdr - 32,
      csumStart: 14 + ipHdr,
      csumOffset: 16,
    });
    // Only the checksum field changed: it now holds the pseudo-header sum.
    const at = 14 + ipHdr + 16;
    assert.deepEqual(frame.subarray(0, at), orig.subarray(0, at));
    assert.deepEqual(frame.subarray(at + 2), orig.subarray(at + 2));
    // Finishing it gives back the peer's checksum; segmenting it gives MTU-sized segments.
    const done = Buffer.from(frame);
    completeChecksum(h, done);
    assert.deepEqual(done, orig);
    const segs = segmentGso(h, frame);
    checkTcpSegments(segs, orig, v6, h.gsoSize, data, 777, 0x98);
    for (const s of segs) assert.ok(s.length - 14 <= mtu);
  }
  // Frames that fit, non-TCP, fragments: nothing to do, frame untouched.
  const small = ipv4Frame({ proto: 6, payload: tcpSegment(1, 0x10, randomBuf(rand, 100)) });
  const copy = Buffer.from(small);
  assert.equal(gsoForFrame(small, 1400), NO_VNET_HDR);
  assert.deepEqual(small, copy);
  assert.equal(gsoForFrame(ipv4Frame({ proto: 17, payload: randomBuf(rand, 3000) }), 1400), NO_VNET_HDR);
  assert.equal(gsoForFrame(ipv4Frame({ proto: 6, payload: tcpSegment(1, 0x10, randomBuf(rand, 3000)), mf: true }), 1400), NO_VNET_HDR);
  assert.equal(gsoForFrame(Buffer.alloc(3000), 1400), NO_VNET_HDR);
  // Without CWR there is no ECN flag.
  const plain = ipv4Frame({ proto: 6, payload: tcpSegment(1, 0x10, randomBuf(rand, 3000)) });
  assert.equal(gsoForFrame(plain, 1400).gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
});
