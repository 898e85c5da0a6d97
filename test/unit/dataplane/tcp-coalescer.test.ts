// Userspace GRO (TcpCoalescer) and the partial-checksum helpers it pairs with: segments cut by
// writeTcpSegment merge back into the super-frame they came from (v4 and v6), and the kernel's
// segmentation of the merged frame gives the same segments; anything that is not the next
// segment of the same flow ends the merge without reordering; the 64 KiB limit holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpCoalescer } from '../../../src/dataplane/sleeve/tcp-coalescer.js';
import { Rng } from '../../helpers/prng.js';
import { internetChecksum, ipv4PseudoHeaderSum, ipv6PseudoHeaderSum, onesComplementSum } from '../../../src/dataplane/sleeve/ipv4.js';
import {
  NO_VNET_HDR, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, completeChecksum, finishPartialTcpChecksum,
  partialTcpChecksumHdr, partialTcpChecksumStart, planTcpSegments, segmentGso, writeTcpSegment, type VnetHdr,
} from '../../../src/dataplane/sleeve/vnet-hdr.js';

const TS_OPTIONS = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];

/** A TCP super-frame as a TAP hands it over (partial checksum), with timestamps. */
function superFrame(opts: { v6?: boolean; payload: number; mss: number; flags?: number; seq?: number }): { hdr: VnetHdr; frame: Buffer } {
  const v6 = opts.v6 ?? false;
  const ipHeader = v6 ? 40 : 20;
  const t = 14 + ipHeader;
  const headers = t + 32;
  const f = Buffer.alloc(headers + opts.payload);
  Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]).copy(f, 0);
  f.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
  if (v6) {
    f[14] = 0x60;
    f.writeUInt16BE(32 + opts.payload, 18);
    f[20] = 6;
    f[21] = 64;
    f.fill(0xfd, 22, 38);
    f.fill(0xfe, 38, 54);
  } else {
    f[14] = 0x45;
    f.writeUInt16BE(20 + 32 + opts.payload, 16);
    f.writeUInt16BE(0x1000, 18);
    f[20] = 0x40;
    f[22] = 64;
    f[23] = 6;
    Buffer.from([10, 32, 1, 1, 10, 32, 2, 1]).copy(f, 26);
    f.writeUInt16BE(internetChecksum(f, 14, 34), 24);
  }
  f.writeUInt16BE(40000, t);
  f.writeUInt16BE(5201, t + 2);
  f.writeUInt32BE(opts.seq ?? 0xfffff000, t + 4); // wraps past 2^32 on the way
  f.writeUInt32BE(77, t + 8);
  f[t + 12] = 0x80;
  f[t + 13] = opts.flags ?? 0x18;
  f.writeUInt16BE(512, t + 14);
  f.set(TS_OPTIONS, t + 20);
  for (let k = headers; k < f.length; k++) f[k] = (k * 13 + 5) & 0xff;
  const pseudo = v6 ? ipv6PseudoHeaderSum(f, 14, 6, 32 + opts.payload) : ipv4PseudoHeaderSum(f, 14, 6, 32 + opts.payload);
  f.writeUInt16BE(pseudo, t + 16);
  return { hdr: { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: headers, gsoSize: opts.mss, csumStart: t, csumOffset: 16 }, frame: f };
}

/** The segments, back to back in one buffer at odd offsets (as in a GRO buffer), and their ranges. */
function cut(hdr: VnetHdr, frame: Buffer, partial: boolean): { buf: Buffer; ranges: [number, number][] } {
  const plan = planTcpSegments(hdr, frame);
  const buf = Buffer.alloc(plan.count * (plan.headers + plan.mss + 7) + 3);
  const ranges: [number, number][] = [];
  let at = 3;
  for (let i = 0; i < plan.count; i++) {
    const n = writeTcpSegment(plan, frame, i, buf, at, partial);
    ranges.push([at, at + n]);
    at += n + 7;
  }
  return { buf, ranges };
}

function tcpChecksumOk(f: Buffer): boolean {
  const v6 = f[12] === 0x86;
  const t = v6 ? 54 : 34;
  const l4 = f.length - t;
  const pseudo = v6 ? ipv6PseudoHeaderSum(f, 14, 6, l4) : ipv4PseudoHeaderSum(f, 14, 6, l4);
  return onesComplementSum(f, t, f.length, pseudo) === 0xffff;
}

interface Written {
  frame: Buffer;
  hdr: VnetHdr | undefined;
}

function sink(out: Written[]) {
  return {
    frame: (buf: Buffer, s: number, e: number) => void out.push({ frame: Buffer.from(buf.subarray(s, e)), hdr: undefined }),
    merged: (bufs: readonly Buffer[], starts: readonly number[], ends: readonly number[], count: number, hdr: VnetHdr) =>
      void out.push({ frame: Buffer.concat(bufs.slice(0, count).map((b, i) => b.subarray(starts[i], ends[i]))), hdr }),
  };
}

for (const v6 of [false, true]) {
  test(`${v6 ? 'IPv6' : 'IPv4'}: the segments of a super-frame merge back into it; the kernel would cut it the same way`, () => {
    for (const partial of [false, true]) {
      const { hdr, frame } = superFrame({ v6, payload: 30000, mss: 1324 });
      const { buf, ranges } = cut(hdr, frame, partial);
      for (const [s, e] of ranges) {
        const seg = buf.subarray(s, e);
        assert.equal(partialTcpChecksumStart(seg) >= 0, partial, 'partial checksums are recognised as such, whole ones are not');
        if (!partial) assert.ok(tcpChecksumOk(seg));
      }
      const out: Written[] = [];
      const c = new TcpCoalescer(sink(out));
      for (const [s, e] of ranges) c.push(buf, s, e);
      c.flush();
      assert.equal(out.length, 1);
      assert.deepEqual(out[0]!.frame, frame, 'the very frame the TAP handed over');
      assert.deepEqual(out[0]!.hdr, hdr);
      assert.equal(c.merged, ranges.length);
      const again = segmentGso(out[0]!.hdr!, out[0]!.frame);
      assert.deepEqual(again.map((f) => f.length), ranges.map(([s, e]) => e - s));
      assert.ok(again.every(tcpChecksumOk));
    }
  });
}

test('partial checksums: finished in place to the whole checksum; the NEEDS_CSUM header for the kernel', () => {
  const { hdr, frame } = superFrame({ payload: 3000, mss: 1000 });
  const whole = cut(hdr, frame, false);
  const part = cut(hdr, frame, true);
  for (let i = 0; i < whole.ranges.length; i++) {
    const w = whole.buf.subarray(...whole.ranges[i]!);
    const p = Buffer.from(part.buf.subarray(...part.ranges[i]!));
    const h = partialTcpChecksumHdr(p);
    assert.deepEqual(h, { flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 });
    const viaHdr = Buffer.from(p);
    completeChecksum(h, viaHdr);
    assert.ok(finishPartialTcpChecksum(p));
    assert.deepEqual(p, w);
    assert.deepEqual(viaHdr, w);
    assert.equal(finishPartialTcpChecksum(p), false, 'a whole checksum is left alone');
    assert.equal(partialTcpChecksumHdr(w), NO_VNET_HDR);
  }
  // Not TCP, a fragment, too short: never partial.
  const udp = Buffer.from(frame.subarray(0, 200));
  udp[23] = 17;
  assert.equal(partialTcpChecksumStart(udp), -1);
  assert.equal(partialTcpChecksumStart(Buffer.alloc(20)), -1);
});

test('what ends a merge: a gap, another flow, PSH, a shorter segment, a non-candidate; nothing overtakes', () => {
  const { hdr, frame } = superFrame({ payload: 1324 * 6, mss: 1324, flags: 0x10 });
  const { buf, ranges } = cut(hdr, frame, true);
  const seg = (i: number) => Buffer.from(buf.subarray(...ranges[i]!));
  const run = (frames: Buffer[]) => {
    const out: Written[] = [];
    const c = new TcpCoalescer(sink(out));
    for (const f of frames) c.push(f, 0, f.length);
    c.flush();
    return out.map((w) => (w.hdr ? `merged ${(w.frame.length - 66) / 1324}` : `single ${w.frame.readUInt32BE(38)}`));
  };
  const seqOf = (i: number) => seg(i).readUInt32BE(38);
  // A gap (segment 2 missing).
  assert.deepEqual(run([seg(0), seg(1), seg(3), seg(4)]), ['merged 2', 'merged 2']);
  // Another flow in between (different port).
  const other = seg(2);
  other.writeUInt16BE(40001, 34);
  assert.deepEqual(run([seg(0), seg(1), other, seg(2)]), ['merged 2', `single ${seqOf(2)}`, `single ${seqOf(2)}`]);
  // A different ack, window or TTL is another "flow" too.
  for (const [at, v] of [[42, 78], [48, 1], [22, 63]] as const) {
    const x = seg(1);
    x[at] = v;
    assert.deepEqual(run([seg(0), x, seg(2)]), [`single ${seqOf(0)}`, `single ${seqOf(1)}`, `single ${seqOf(2)}`], `byte ${at}`);
  }
  // PSH ends it (and is carried on the merged frame).
  const psh = seg(2);
  psh[47] = 0x18;
  const out: Written[] = [];
  const c = new TcpCoalescer(sink(out));
  for (const f of [seg(0), seg(1), psh, seg(3), seg(4)]) c.push(f, 0, f.length);
  c.flush();
  assert.deepEqual(out.map((w) => w.frame.length), [66 + 3 * 1324, 66 + 2 * 1324]);
  assert.equal(out[0]!.frame[47], 0x18);
  assert.equal(out[1]!.frame[47], 0x10);
  // A FIN (not a candidate) flushes what is pending, then goes alone.
  const fin = seg(2);
  fin[47] = 0x11;
  assert.deepEqual(run([seg(0), seg(1), fin, seg(3)]), ['merged 2', `single ${seqOf(2)}`, `single ${seqOf(3)}`]);
  // A pure ACK (no payload) is never merged.
  const ack = Buffer.from(frame.subarray(0, 66));
  ack.writeUInt16BE(52, 16);
  assert.deepEqual(run([ack, seg(0), seg(1)]), [`single ${ack.readUInt32BE(38)}`, 'merged 2']);
  // An IPv4 id that does not follow (and no DF) ends it.
  const id = seg(1);
  id[20] = 0;
  assert.deepEqual(run([seg(0), id]).length, 2);
});

test('a shorter segment is the last one merged; 64 KiB is the limit', () => {
  const { hdr, frame } = superFrame({ payload: 1324 * 3 + 100, mss: 1324, flags: 0x10 });
  const { buf, ranges } = cut(hdr, frame, false);
  const out: Written[] = [];
  const c = new TcpCoalescer(sink(out));
  for (const [s, e] of ranges) c.push(buf, s, e);
  assert.equal(out.length, 1, 'written as soon as the short segment arrives');
  assert.equal(out[0]!.frame.length, frame.length);
  // Two super-frames of 30 segments in a row would be 79 KB: the merge stops below 64 KiB.
  const first = superFrame({ payload: 1324 * 30, mss: 1324, flags: 0x10, seq: 1000 });
  const second = superFrame({ payload: 1324 * 30, mss: 1324, flags: 0x10, seq: 1000 + 1324 * 30 });
  second.frame.writeUInt16BE(0x1000 + 30, 18); // the ids go on too
  second.frame.writeUInt16BE(0, 24);
  second.frame.writeUInt16BE(internetChecksum(second.frame, 14, 34), 24);
  const a = cut(first.hdr, first.frame, true);
  const b = cut(second.hdr, second.frame, true);
  const out2: Written[] = [];
  const c2 = new TcpCoalescer(sink(out2));
  for (const [s, e] of a.ranges) c2.push(a.buf, s, e);
  for (const [s, e] of b.ranges) c2.push(b.buf, s, e);
  c2.flush();
  assert.ok(out2.every((w) => w.frame.length - 14 <= 0xffff));
  assert.deepEqual(out2.map((w) => (w.frame.length - 66) / 1324), [49, 11]);
  assert.deepEqual(Buffer.concat(out2.map((w) => w.frame.subarray(66))), Buffer.concat([first.frame.subarray(66), second.frame.subarray(66)]));
});

// tryAppend is the receiving thread's shortcut for the rest of a GRO train: on a segment at an
// even address it skips candidate() and lets the header compare stand for its checks. It must
// decide exactly as push() does, for any header byte changed, at even and odd addresses.
for (const v6 of [false, true]) {
  test(`${v6 ? 'IPv6' : 'IPv4'}: tryAppend merges exactly what push merges, whatever header byte differs`, () => {
    const { hdr, frame } = superFrame({ v6, payload: 1324 * 3, mss: 1324, flags: 0x10 });
    const plan = planTcpSegments(hdr, frame);
    const headers = plan.headers;
    const one = Buffer.alloc(headers + 1324);
    const seg = [0, 1].map((i) => Buffer.from(one.subarray(0, writeTcpSegment(plan, frame, i, one, 0, true))));
    const rng = new Rng(v6 ? 6 : 4);
    const outcome = (second: Buffer, at: number, fast: boolean) => {
      const buf = Buffer.alloc(at + seg[0]!.length + second.length);
      seg[0]!.copy(buf, at);
      second.copy(buf, at + seg[0]!.length);
      const out: Written[] = [];
      const c = new TcpCoalescer(sink(out));
      const e0 = at + seg[0]!.length;
      c.push(buf, at, e0);
      const took = fast && c.tryAppend(buf, e0, buf.length, e0);
      if (!took) c.push(buf, e0, buf.length);
      c.flush();
      return { took, out };
    };
    let changed = 0;
    let mergedAnyway = 0;
    for (const at of [0, 1, 2]) assert.ok(outcome(seg[1]!, at, true).took, `the next segment is taken at offset ${at}`);
    for (let p = 0; p < headers; p++) {
      for (let k = 0; k < 3; k++) {
        const x = Buffer.from(seg[1]!);
        x[p] = k === 0 ? x[p]! ^ (1 << rng.int(8)) : rng.int(256);
        if (x[p] === seg[1]![p]) continue;
        // The same decision at even and odd addresses (word compares there, bytes here).
        const even = outcome(x, 0, false);
        for (const at of [0, 1, 2]) {
          const fast = outcome(x, at, true);
          const slow = outcome(x, at, false);
          assert.deepEqual(fast.out, slow.out, `byte ${p} = ${x[p]} at offset ${at}`);
          assert.deepEqual(slow.out, even.out, `byte ${p} = ${x[p]} at offset ${at} as at offset 0`);
          changed++;
          if (fast.took) mergedAnyway++;
        }
      }
    }
    for (const at of [0, 1, 2]) {
      // A frame longer than its IP packet (Ethernet padding) is never merged.
      const padded = Buffer.concat([seg[1]!, Buffer.alloc(2)]);
      assert.equal(outcome(padded, at, true).took, false, `padding at offset ${at}`);
      assert.deepEqual(outcome(padded, at, true).out, outcome(padded, at, false).out);
    }
    // A last segment of 1–4 bytes ending its buffer, at every address: its headers may reach
    // bytes no 32-bit word of the buffer covers, and it still merges (and with a byte changed, not).
    for (let short = 1; short <= 4; short++) {
      const last = Buffer.from(seg[1]!.subarray(0, headers + short));
      if (v6) last.writeUInt16BE(last.length - 54, 18);
      else {
        last.writeUInt16BE(last.length - 14, 16);
        last.writeUInt16BE(0, 24);
        last.writeUInt16BE(internetChecksum(last, 14, 34), 24);
      }
      const changedAddr = Buffer.from(last);
      changedAddr[headers - 1] = changedAddr[headers - 1]! ^ 1;
      for (const at of [0, 1, 2, 3]) {
        assert.equal(outcome(last, at, true).took, true, `${short}-byte last segment at offset ${at}`);
        assert.deepEqual(outcome(last, at, true).out, outcome(last, 0, false).out);
        assert.deepEqual(outcome(changedAddr, at, true).out, outcome(changedAddr, 0, false).out, `changed, ${short} bytes at offset ${at}`);
      }
    }
    assert.ok(changed > 3 * headers * 2, `${changed} changed headers tried`);
    // Some bytes may differ (sequence number, ids, checksums) and some of those still merge.
    assert.ok(mergedAnyway > 0 && mergedAnyway < changed / 2, `${mergedAnyway} of ${changed} still merged`);
  });
}

test('writeTcpSegment writes exactly the segments segmentGso cuts (the reference), at any size and address', () => {
  const rng = new Rng(2811);
  for (let n = 0; n < 300; n++) {
    const v6 = rng.int(2) === 1;
    const mss = [1, 7, 536, 1000, 1324, 1336, 1398, 8948][rng.int(8)]!;
    const payload = 1 + rng.int(Math.min(65000 - 94, mss * 60));
    const { hdr, frame } = superFrame({ v6, payload, mss, flags: rng.int(2) ? 0x18 : 0x10, seq: rng.int(2 ** 32) });
    const want = segmentGso(hdr, frame);
    const plan = planTcpSegments(hdr, frame);
    assert.equal(plan.count, want.length, `segments of ${payload} bytes at MSS ${mss}`);
    const at = rng.int(4);
    const buf = Buffer.alloc(at + plan.headers + mss);
    for (let i = 0; i < plan.count; i++) {
      const len = writeTcpSegment(plan, frame, i, buf, at, false);
      assert.deepEqual(buf.subarray(at, at + len), want[i], `segment ${i} of ${plan.count} (${v6 ? 'IPv6' : 'IPv4'}, MSS ${mss}, offset ${at})`);
    }
  }
});
