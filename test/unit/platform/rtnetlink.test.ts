// The RTM_GETLINK codec on bytes built here: the request's layout, a link answer, the errors,
// and malformed answers, which fail with DECODE_FAILED and never crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { getLinkRequest, parseGetLinkReply } from '../../../src/platform/rtnetlink.js';
import { isWeaveError } from '../../../src/core/errors.js';

function attr(type: number, value: Buffer): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}

function message(type: number, seq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt32LE(seq, 8);
  return Buffer.concat([h, body]);
}

function linkAnswer(seq: number): Buffer {
  const ifi = Buffer.alloc(16);
  ifi.writeInt32LE(7, 4); // ifindex
  ifi.writeUInt32LE(0x1 | 0x2 | 0x1000 | 0x10000, 8); // UP BROADCAST MULTICAST LOWER_UP
  const mtu = Buffer.alloc(4);
  mtu.writeUInt32LE(1376);
  const kind = attr(1, Buffer.from('bridge\0'));
  return message(16, seq, Buffer.concat([
    ifi,
    attr(3, Buffer.from('weave\0')),
    attr(4, mtu),
    attr(1, Buffer.from([0x7a, 0, 0, 0, 0, 0x0a])),
    attr(18 | 0x8000, kind), // IFLA_LINKINFO, marked nested as the kernel does
  ]));
}

function errorAnswer(seq: number, errno: number): Buffer {
  const body = Buffer.alloc(4 + 16);
  body.writeInt32LE(-errno, 0);
  return message(2, seq, body);
}

test('the request: header, zero ifinfomsg, the name and the stats filter', () => {
  const b = getLinkRequest('weave', 42);
  assert.equal(b.readUInt32LE(0), b.length);
  assert.equal(b.length % 4, 0);
  assert.equal(b.readUInt16LE(4), 18); // RTM_GETLINK
  assert.equal(b.readUInt16LE(6), 1); // NLM_F_REQUEST, no dump
  assert.equal(b.readUInt32LE(8), 42);
  assert.ok(b.subarray(16, 32).equals(Buffer.alloc(16)));
  assert.equal(b.readUInt16LE(32), 4 + 6); // IFLA_IFNAME, "weave\0"
  assert.equal(b.readUInt16LE(34), 3);
  assert.equal(b.toString('latin1', 36, 42), 'weave\0');
  assert.deepEqual([b.readUInt16LE(44), b.readUInt16LE(46), b.readUInt32LE(48)], [8, 29, 8]); // IFLA_EXT_MASK, SKIP_STATS
  assert.throws(() => getLinkRequest('a'.repeat(16), 1), (e: unknown) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

test('a link answer decodes to name, index, MTU, MAC, flags in ip order and kind', () => {
  assert.deepEqual(parseGetLinkReply(linkAnswer(5), 5), {
    ifindex: 7, ifname: 'weave', mtu: 1376, address: '7a:00:00:00:00:0a', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], kind: 'bridge',
  });
});

test('ENODEV is no link; another errno is KERNEL_FAILED; the wrong request number is refused', () => {
  assert.equal(parseGetLinkReply(errorAnswer(9, 19), 9), undefined);
  assert.throws(() => parseGetLinkReply(errorAnswer(9, 1), 9), (e: unknown) => isWeaveError(e, 'KERNEL_FAILED'));
  assert.throws(() => parseGetLinkReply(linkAnswer(5), 6), (e: unknown) => isWeaveError(e, 'DECODE_FAILED'));
});

test('malformed answers fail with DECODE_FAILED, never anything else', () => {
  const good = linkAnswer(1);
  const bad = (b: Buffer) => assert.throws(() => parseGetLinkReply(b, 1), (e: unknown) => isWeaveError(e, 'DECODE_FAILED'), b.toString('hex'));
  bad(Buffer.alloc(8));
  for (let n = 0; n < good.length; n++) bad(good.subarray(0, n)); // every truncation (the length field no longer fits)
  const overrun = Buffer.from(good);
  overrun.writeUInt16LE(200, 32); // the name attribute claims more than the message has
  bad(overrun);
  bad(message(99, 1, Buffer.alloc(16)));
  bad(message(16, 1, Buffer.alloc(8)));
  // Random bytes and random corruptions of a good answer: an answer or a WeaveError.
  for (let i = 0; i < 20_000; i++) {
    const b = i % 2 ? randomBytes(i % 97) : Buffer.from(good);
    if (i % 2 === 0) for (let k = 0; k < 3; k++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
    if (i % 2 === 0) b.writeUInt32LE(1, 8);
    try {
      parseGetLinkReply(b, 1);
    } catch (e) {
      assert.ok(isWeaveError(e, 'DECODE_FAILED') || isWeaveError(e, 'KERNEL_FAILED'), String(e));
    }
  }
});
