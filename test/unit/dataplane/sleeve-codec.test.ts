// Sleeve packet format against the datagrams two original routers exchanged (plain and
// encrypted captures), special frames, control messages as seen on the TCP stream, batching
// limits and every malformation the decoder must refuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWeaveError } from '../../../src/core/errors.js';
import { parseJsonBigInt } from '../../../src/core/go-json.js';
import { formatPeerName, parsePeerName } from '../../../src/core/peer-name.js';
import { decodeOverlayControlMsg, decodeProtocolMsg, encodeOverlayControlMsg, encodeProtocolMsg, ProtocolTag } from '../../../src/mesh/protocol.js';
import {
  DEFAULT_MAX_PAYLOAD, ENCRYPTED_PACKET_OVERHEAD, FRAG_TEST_FRAME_BYTES, HEARTBEAT_FRAME_BYTES, MAX_FRAMES_PER_PACKET, NON_DF_MAX_PAYLOAD,
  PMTU_DISCOVERY_FRAME_BYTES, SLEEVE_FRAME_HEADER_BYTES, SLEEVE_PREFIX_BYTES, SleeveBatch, SleeveControlTag, UDP_OVERHEAD, classifySpecialFrame,
  decodeSleeveControlMsg, decodeSleeveFrames, decodeSleevePacket, encodeSleevePacket, frameFits, frameTooBig, isSpecialFrame, makeFragTestFrame,
  makeHeartbeatFrame, makeMtuTestFrame, makePmtuDiscoveryFrame, packetOverhead, readPeerNameAt, sleeveMaxPayload, sleeveMtu, sleeveOverheadDF,
  sleeveOverlayControlMsg, sleevePacketSender, validateSleeveFrames, visitSleeveFrames, writePeerNameAt,
} from '../../../src/dataplane/sleeve/codec.js';
import { peekEncryptedSleeveHeader, SleeveDecryptor } from '../../../src/dataplane/sleeve/frame-crypto.js';
import { etherType, ipv4Checksum, ipv4DontFragment, ipv4Protocol, internetChecksum } from '../../../src/dataplane/sleeve/ipv4.js';

// Fixtures are copies of reference/wire-vectors, found from the repository root (the tests
// run from dist/test/..., so relative to the working directory as the mesh tests do).
const fixtureDir = join(process.env.WEAVE_REPO_ROOT ?? process.cwd(), 'test/fixtures/wire-vectors');

interface UdpFrameRec {
  src_peer: string;
  dst_peer: string;
  frame_len: number;
  kind: string;
  conn_uid?: bigint | number;
  eth_dst?: string;
  eth_src?: string;
  ethertype?: string;
  arp_op?: number;
  inner_ip?: string;
  icmp_type?: number;
}
interface UdpRec {
  pcap_frame: number;
  len: number;
  ip_df: boolean;
  sender_peer: string;
  framing: string;
  hex: string;
  hex_truncated_to?: number;
  sha256?: string;
  frames?: UdpFrameRec[];
  seq_no?: number;
  df_flag?: boolean;
  ciphertext_len?: number;
  plaintext_len?: number;
}

function readUdp(run: 'plain' | 'encrypted'): UdpRec[] {
  return readFileSync(join(fixtureDir, run, 'udp-frames.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => parseJsonBigInt(l) as UdpRec);
}

const code = (c: string) => (e: unknown) => isWeaveError(e) && e.code === c;
const macText = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The full datagram of a record; the big ones are stored truncated but are zero-filled probes. */
function fullDatagram(r: UdpRec): Buffer {
  const head = Buffer.from(r.hex, 'hex');
  if (r.hex_truncated_to === undefined) return head;
  const frames = (r.frames ?? []).map((f) => ({ src: parsePeerName(f.src_peer), dst: parsePeerName(f.dst_peer), frame: Buffer.alloc(f.frame_len) }));
  const full = encodeSleevePacket(parsePeerName(r.sender_peer), frames);
  assert.deepEqual(full.subarray(0, head.length), head, `frame ${r.pcap_frame}: rebuilt head`);
  return full;
}

test('sizes: overheads and MTUs as the original computes them', () => {
  assert.equal(packetOverhead(false), 6);
  assert.equal(packetOverhead(true), 30);
  assert.equal(ENCRYPTED_PACKET_OVERHEAD, 30);
  assert.equal(sleeveOverheadDF(false), 62);
  assert.equal(sleeveOverheadDF(true), 86);
  assert.equal(sleeveMtu(1500, false), 1438);
  assert.equal(sleeveMtu(1500, true), 1414);
  // maxPayload after verification is the path MTU less IP+UDP, whatever the crypto.
  assert.equal(sleeveMaxPayload(1438, false), 1472);
  assert.equal(sleeveMaxPayload(1414, true), 1472);
  assert.equal(DEFAULT_MAX_PAYLOAD, 65535 - 28);
  assert.equal(NON_DF_MAX_PAYLOAD, 65535 - 28);
  assert.equal(UDP_OVERHEAD + SLEEVE_PREFIX_BYTES + SLEEVE_FRAME_HEADER_BYTES + 14, 62);
  assert.equal(frameTooBig(1438 + 14, 1438), false);
  assert.equal(frameTooBig(1438 + 15, 1438), true);
  assert.equal(frameFits(6, 1452, 1472), true);
  assert.equal(frameFits(6, 1453, 1472), false);
});

test('plain capture: every datagram decodes to the recorded frames and re-encodes identically', () => {
  const recs = readUdp('plain');
  assert.equal(recs.length, 50);
  const kinds = new Map<string, number>();
  for (const r of recs) {
    assert.equal(r.framing, 'plain sleeve');
    const buf = fullDatagram(r);
    assert.equal(buf.length, r.len, `frame ${r.pcap_frame}: length`);
    if (r.sha256) assert.equal(sha256(buf), r.sha256, `frame ${r.pcap_frame}: sha256 of the rebuilt datagram`);
    const p = decodeSleevePacket(buf);
    assert.equal(formatPeerName(p.sender), r.sender_peer);
    assert.equal(sleevePacketSender(buf), p.sender);
    const want = r.frames ?? [];
    assert.equal(p.frames.length, want.length, `frame ${r.pcap_frame}: frame count`);
    for (let i = 0; i < want.length; i++) {
      const w = want[i]!;
      const f = p.frames[i]!;
      assert.equal(formatPeerName(f.src), w.src_peer);
      assert.equal(formatPeerName(f.dst), w.dst_peer);
      assert.equal(f.frame.length, w.frame_len);
      const special = classifySpecialFrame(f.frame);
      const kind = w.kind.split(' (')[0]!;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      if (kind === 'heartbeat') {
        assert.deepEqual(special, { kind: 'heartbeat', connUid: BigInt(w.conn_uid!) });
        assert.deepEqual(makeHeartbeatFrame(BigInt(w.conn_uid!)), f.frame);
        assert.equal(r.ip_df, true, 'heartbeats go DF');
      } else if (kind === 'frag test') {
        assert.deepEqual(special, { kind: 'frag-test', allZero: true });
        assert.deepEqual(makeFragTestFrame(), f.frame);
        assert.equal(r.ip_df, false, 'the frag test goes without DF');
      } else if (kind === 'PMTU test') {
        assert.deepEqual(special, { kind: 'mtu-test', mtu: sleeveMtu(1500, false) });
        assert.deepEqual(makeMtuTestFrame(1438), f.frame);
        assert.equal(r.len, 1500 - UDP_OVERHEAD);
        assert.equal(r.ip_df, true);
      } else {
        assert.equal(kind, 'ethernet frame');
        assert.equal(special, undefined);
        assert.equal(isSpecialFrame(f.frame), false);
        assert.equal(macText(f.frame.subarray(0, 6)), w.eth_dst);
        assert.equal(macText(f.frame.subarray(6, 12)), w.eth_src);
        assert.equal('0x' + etherType(f.frame)!.toString(16).padStart(4, '0'), w.ethertype);
        // The original sends a frame DF exactly when it is IPv4 with DF set (stackFrag is true
        // after the frag test, so everything else takes the non-DF socket).
        assert.equal(ipv4DontFragment(f.frame), r.ip_df, `frame ${r.pcap_frame}: DF path`);
        if (w.inner_ip) {
          assert.equal(ipv4Protocol(f.frame), Number(/proto (\d+)/.exec(w.inner_ip)![1]));
          assert.equal(ipv4Checksum(f.frame, 14), f.frame.readUInt16BE(24), 'IPv4 header checksum');
          const ipEnd = 14 + f.frame.readUInt16BE(16);
          assert.equal(internetChecksum(f.frame, 34, ipEnd), 0, 'ICMP checksum verifies');
          assert.equal(f.frame[34], w.icmp_type);
        }
        if (w.arp_op !== undefined) assert.equal(f.frame.readUInt16BE(20), w.arp_op);
      }
    }
    const again = encodeSleevePacket(p.sender, p.frames);
    assert.deepEqual(again, buf, `frame ${r.pcap_frame}: re-encoding`);
    // The batcher builds the same bytes; 1-frame probes need the lone-frame (channel) limit.
    const batch = new SleeveBatch(Buffer.alloc(65535), p.sender);
    for (const f of p.frames) assert.ok(batch.tryAdd(f.src, f.dst, f.frame, batch.isEmpty ? NON_DF_MAX_PAYLOAD : batch.maxPayloadBytes));
    assert.deepEqual(batch.bytes(), buf);
  }
  assert.deepEqual(Object.fromEntries(kinds), { heartbeat: 11, 'frag test': 2, 'PMTU test': 2, 'ethernet frame': 38 });
});

test('plain capture: heartbeat bytes annotated in the README', () => {
  const r = readUdp('plain')[0]!;
  const hb = Buffer.from(r.hex, 'hex');
  assert.equal(hb.length, SLEEVE_PREFIX_BYTES + SLEEVE_FRAME_HEADER_BYTES + HEARTBEAT_FRAME_BYTES);
  const expected = encodeSleevePacket(parsePeerName('7a:00:00:00:00:02'), [
    { src: parsePeerName('7a:00:00:00:00:02'), dst: parsePeerName('7a:00:00:00:00:01'), frame: makeHeartbeatFrame(0x0431db80eebfce18n) },
  ]);
  assert.equal(expected.toString('hex'), '7a00000000027a00000000027a0000000001001600000000000000000000000000000431db80eebfce18');
  assert.deepEqual(hb, expected);
});

test('encrypted capture: header fields and sizes (the key is ephemeral, so only structure)', () => {
  const recs = readUdp('encrypted');
  assert.equal(recs.length, 10);
  const dec = new SleeveDecryptor(Buffer.alloc(32, 7), false);
  for (const r of recs) {
    assert.equal(r.framing, 'NaCl sleeve');
    const head = Buffer.from(r.hex, 'hex');
    // Truncated records keep the header; the lengths come from the record.
    const h = peekEncryptedSleeveHeader(r.hex_truncated_to === undefined ? head : Buffer.concat([head, Buffer.alloc(r.len - head.length)]));
    assert.equal(formatPeerName(h.sender), r.sender_peer);
    assert.equal(h.seq, r.seq_no);
    assert.equal(h.df, r.df_flag);
    assert.equal(h.df, r.ip_df, 'the DF channel flag matches the IP DF bit');
    assert.equal(h.boxBytes, r.ciphertext_len);
    assert.equal(h.plaintextBytes, r.plaintext_len);
    assert.equal(r.len, ENCRYPTED_PACKET_OVERHEAD + r.plaintext_len!);
    if (r.hex_truncated_to === undefined) {
      assert.equal(dec.open(head), undefined, 'a wrong key never opens');
      assert.equal(dec.lastDropReason, 'auth');
    }
  }
  const sizes = recs.map((r) => r.len);
  // heartbeat: 30 + 14 + 22
  assert.equal(sizes[0], ENCRYPTED_PACKET_OVERHEAD + SLEEVE_FRAME_HEADER_BYTES + HEARTBEAT_FRAME_BYTES);
  assert.equal(sizes[0], 66);
  // frag test: 30 + 14 + 60001
  assert.equal(sizes[2], ENCRYPTED_PACKET_OVERHEAD + SLEEVE_FRAME_HEADER_BYTES + FRAG_TEST_FRAME_BYTES);
  assert.equal(sizes[2], 60045);
  // PMTU test: UDP 1472 carries an MTU test of 1414 = sleeveMtu(1500, encrypted)
  const pmtu = recs[3]!;
  assert.equal(pmtu.len, 1472);
  assert.equal(pmtu.plaintext_len! - SLEEVE_FRAME_HEADER_BYTES - 14, 1414);
  assert.equal(sleeveMtu(1500, true), 1414);
  assert.equal(sleeveMaxPayload(1414, true), pmtu.len);
  // The DF channel's seq 1 went to the refused 60000-byte probe: tests are 2, 3, 4, 5.
  assert.deepEqual(recs.filter((r) => r.len === 1472 && r.sender_peer.endsWith('02')).map((r) => r.seq_no), [2, 3, 4, 5]);
});

test('control messages: the TCP capture decodes and re-encodes', () => {
  const lines = readFileSync(join(fixtureDir, 'plain', 'tcp-messages.jsonl'), 'utf8').trim().split('\n');
  const recs = lines.map((l) => JSON.parse(l) as { tag?: number; hex?: string; control_tag?: string; pmtu_verified?: number });
  const ctl = recs.filter((r) => r.tag === ProtocolTag.OverlayControlMsg);
  assert.equal(ctl.length, 6);
  for (const r of ctl) {
    const msg = decodeProtocolMsg(Buffer.from(r.hex!, 'hex'))!;
    const o = decodeOverlayControlMsg(msg.body);
    assert.equal(o.overlayIndex, 0);
    assert.equal(o.subTag, Number(r.control_tag!.split(' ')[0]));
    const m = decodeSleeveControlMsg(o.subTag, o.msg)!;
    if (o.subTag === SleeveControlTag.PMTUVerified) assert.deepEqual(m, { kind: 'pmtu-verified', mtu: r.pmtu_verified });
    else assert.equal(m.kind, o.subTag === 1 ? 'connection-established' : 'fragmentation-received');
    const again = encodeProtocolMsg(ProtocolTag.OverlayControlMsg, encodeOverlayControlMsg(sleeveOverlayControlMsg(0, m)));
    assert.equal(again.toString('hex'), r.hex);
  }
});

test('control messages: unknown tags, truncated and over-long PMTUVerified', () => {
  assert.equal(decodeSleeveControlMsg(4, Buffer.alloc(0)), undefined);
  assert.equal(decodeSleeveControlMsg(0, Buffer.alloc(3)), undefined);
  assert.throws(() => decodeSleeveControlMsg(3, Buffer.from([5])), code('DECODE_FAILED'));
  assert.deepEqual(decodeSleeveControlMsg(3, Buffer.from([5, 0x9e, 1, 2])), { kind: 'pmtu-verified', mtu: 1438 });
  assert.throws(() => sleeveOverlayControlMsg(0, { kind: 'pmtu-verified', mtu: 70000 }), code('INVALID_ARGUMENT'));
});

test('special frames: builders, classification by length, the zero-header rule', () => {
  const hb = makeHeartbeatFrame(0xffffffffffffffffn);
  assert.equal(hb.length, 22);
  assert.deepEqual(classifySpecialFrame(hb), { kind: 'heartbeat', connUid: 0xffffffffffffffffn });
  assert.throws(() => makeHeartbeatFrame(-1n), code('INVALID_ARGUMENT'));
  assert.throws(() => makeHeartbeatFrame(1n << 64n), code('INVALID_ARGUMENT'));
  assert.equal(makeFragTestFrame().length, 60001);
  assert.equal(makePmtuDiscoveryFrame().length, PMTU_DISCOVERY_FRAME_BYTES);
  assert.deepEqual(classifySpecialFrame(makePmtuDiscoveryFrame()), { kind: 'mtu-test', mtu: 59986 });
  const dirty = makeFragTestFrame();
  dirty[60000] = 1;
  assert.deepEqual(classifySpecialFrame(dirty), { kind: 'frag-test', allZero: false });
  assert.deepEqual(classifySpecialFrame(makeMtuTestFrame(0)), { kind: 'mtu-test', mtu: 0 });
  assert.deepEqual(classifySpecialFrame(makeMtuTestFrame(65521)), { kind: 'mtu-test', mtu: 65521 });
  assert.throws(() => makeMtuTestFrame(65522), code('INVALID_ARGUMENT'));
  assert.throws(() => makeMtuTestFrame(1.5), code('INVALID_ARGUMENT'));
  // Content of an MTU test is not looked at; the header must be zero.
  const mtu = makeMtuTestFrame(1000);
  mtu[500] = 0xff;
  assert.deepEqual(classifySpecialFrame(mtu), { kind: 'mtu-test', mtu: 1000 });
  for (let i = 0; i < 14; i++) {
    const f = makeHeartbeatFrame(1n);
    f[i] = 1;
    assert.equal(classifySpecialFrame(f), undefined, `non-zero header byte ${i}`);
  }
  assert.equal(classifySpecialFrame(Buffer.alloc(13)), undefined);
  assert.equal(classifySpecialFrame(new Uint8Array(22))?.kind, 'heartbeat');
});

test('peer names: fast 48-bit read and write', () => {
  const b = Buffer.alloc(8);
  for (const n of [0, 1, 0xffffffff, 0x100000000, 2 ** 48 - 1, 0x7a0000000002]) {
    writePeerNameAt(b, 1, n);
    assert.equal(b.readUIntBE(1, 6), n);
    assert.equal(readPeerNameAt(b, 1), n);
  }
});

test('batch: limits of the original (maxPayload fit, 100 frames, u16 lengths)', () => {
  const me = parsePeerName('7a:00:00:00:00:01');
  const them = parsePeerName('7a:00:00:00:00:02');
  const buf = Buffer.alloc(65535);
  const b = new SleeveBatch(buf, me, { maxPayloadBytes: sleeveMaxPayload(1438, false) });
  assert.equal(b.length, 6);
  assert.ok(b.isEmpty);
  // A full-MTU frame fills a 1472-byte datagram exactly.
  assert.ok(b.tryAdd(me, them, Buffer.alloc(1452, 1)));
  assert.equal(b.length, 1472);
  assert.equal(b.tryAdd(me, them, Buffer.alloc(1, 1)), false);
  assert.equal(b.length, 1472, 'a refused frame writes nothing');
  b.reset();
  assert.ok(b.isEmpty);
  // 100 frames at most, even small ones.
  for (let i = 0; i < MAX_FRAMES_PER_PACKET; i++) assert.ok(b.tryAdd(me, them, Buffer.alloc(1, i), Infinity));
  assert.ok(b.isFull);
  assert.equal(b.tryAdd(me, them, Buffer.alloc(1), Infinity), false);
  const p = decodeSleevePacket(b.bytes());
  assert.equal(p.frames.length, 100);
  assert.equal(p.frames[99]!.frame[0], 99);
  b.reset();
  assert.equal(b.tryAdd(me, them, Buffer.alloc(0), Infinity), false, 'empty frames are refused');
  assert.equal(b.tryAdd(me, them, Buffer.alloc(65536), Infinity), false, 'frames over 65535 bytes are refused');
  // The buffer bounds the batch too.
  const small = new SleeveBatch(Buffer.alloc(40), me);
  assert.ok(small.tryAdd(me, them, Buffer.alloc(20, 1), Infinity));
  assert.equal(small.tryAdd(me, them, Buffer.alloc(1), Infinity), false);
  assert.throws(() => new SleeveBatch(Buffer.alloc(5), me), code('INVALID_ARGUMENT'));
  // reserve() hands out the place for the frame bytes.
  b.reset();
  const at = b.reserve(me, them, 3);
  assert.equal(at, 6 + 14);
  b.buf.set([7, 8, 9], at);
  assert.deepEqual(decodeSleevePacket(b.bytes()).frames.map((f) => [...f.frame]), [[7, 8, 9]]);
  // Encrypted batches leave the 30-byte gap and count it, as NaClEncryptor.TotalLen().
  const e = new SleeveBatch(Buffer.alloc(2000), me, { encrypted: true, maxPayloadBytes: 1472 });
  assert.equal(e.length, 30);
  assert.ok(e.tryAdd(me, them, Buffer.alloc(1428, 1)));
  assert.equal(e.length, 1472);
  assert.equal(e.tryAdd(me, them, Buffer.alloc(1)), false);
  assert.deepEqual(decodeSleeveFrames(e.frames()).map((f) => f.frame.length), [1428]);
});

test('decoder: malformed packets are DECODE_FAILED, nothing is visited', () => {
  const me = parsePeerName('7a:00:00:00:00:01');
  const good = encodeSleevePacket(me, [
    { src: me, dst: 2, frame: Buffer.alloc(30, 1) },
    { src: 3, dst: 4, frame: Buffer.alloc(5, 2) },
  ]);
  assert.equal(decodeSleevePacket(good).frames.length, 2);
  for (let n = 0; n < 6; n++) assert.throws(() => decodeSleevePacket(good.subarray(0, n)), code('DECODE_FAILED'), `short ${n}`);
  // Only the sender: no frames, as the original accepts.
  assert.deepEqual(decodeSleevePacket(good.subarray(0, 6)).frames, []);
  // Trailing garbage of 1..13 bytes.
  for (let n = 1; n < 14; n++) {
    assert.throws(() => decodeSleevePacket(Buffer.concat([good, Buffer.alloc(n)])), code('DECODE_FAILED'), `trailing ${n}`);
  }
  // Length overrun: every cut inside a frame.
  for (let cut = 7; cut < good.length; cut++) {
    if (cut === 6 + 14 + 30) continue; // a cut between frames leaves a valid one-frame packet
    assert.throws(() => decodeSleevePacket(good.subarray(0, cut)), code('DECODE_FAILED'), `cut ${cut}`);
  }
  const zero = Buffer.from(good);
  zero.writeUInt16BE(0, 6 + 12);
  assert.throws(() => decodeSleevePacket(zero), code('DECODE_FAILED'));
  const over = Buffer.from(good);
  over.writeUInt16BE(0xffff, 6 + 12);
  assert.throws(() => decodeSleevePacket(over), code('DECODE_FAILED'));
  let visited = 0;
  assert.throws(() => visitSleeveFrames(Buffer.concat([good, Buffer.alloc(3)]), 6, good.length + 3, () => visited++), code('DECODE_FAILED'));
  assert.equal(visited, 0, 'all or nothing');
  assert.throws(() => validateSleeveFrames(good, 10, 5), code('DECODE_FAILED'));
  assert.throws(() => validateSleeveFrames(good, 0, good.length + 1), code('DECODE_FAILED'));
  // Frames are views, not copies; the visitor gets bounds.
  const p = decodeSleevePacket(good);
  assert.equal(p.frames[0]!.frame.buffer, good.buffer);
  const seen: Array<[number, number, number, number]> = [];
  assert.equal(visitSleeveFrames(good, 6, good.length, (s, d, _b, st, en) => seen.push([s, d, st, en])), 2);
  assert.deepEqual(seen, [[me, 2, 20, 50], [3, 4, 64, 69]]);
  assert.throws(() => encodeSleevePacket(me, [{ src: 1, dst: 2, frame: Buffer.alloc(0) }]), code('INVALID_ARGUMENT'));
  assert.throws(() => encodeSleevePacket(me, [{ src: 1, dst: 2, frame: Buffer.alloc(70000) }]), code('INVALID_ARGUMENT'));
});
