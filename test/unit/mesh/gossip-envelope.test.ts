// Gossip envelopes by the general decoder: each value's wire type is checked before it is decoded,
// so a body that is no envelope is refused without decoding whatever it carries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeaveError } from '../../../src/core/errors.js';
import { decodeGossipMessage, decodeGossipMessageWithGob, encodeGossipMessage, encodeGossipOutbound } from '../../../src/mesh/gossip-message.js';
import { encodeFrame } from '../../../src/mesh/framing.js';
import { LengthPrefixReceiver } from '../../../src/mesh/message-conn.js';
import { GOB_BOOL, GOB_BYTES, GOB_STRING, GOB_UINT, GobEncoder, gobSlice, gobStruct } from '../../../src/mesh/gob/index.js';
import { ProtocolTag, decodeProtocolMsg } from '../../../src/mesh/protocol.js';

const failed = (re: RegExp) => (e: unknown) => isWeaveError(e) && e.code === 'DECODE_FAILED' && re.test(e.message);

function uint(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x % 256);
  return Buffer.from([256 - bytes.length, ...bytes]);
}
const message = (b: Buffer): Buffer => Buffer.concat([uint(b.length), b]);

/** The messages of a gob stream, as byte ranges. */
function messages(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < b.length; ) {
    const first = b[at] as number;
    const k = first < 0x80 ? 0 : 256 - first;
    const len = k === 0 ? first : b.subarray(at + 1, at + 1 + k).reduce((v, x) => v * 256 + x, 0);
    out.push(b.subarray(at, at + 1 + k + len));
    at += 1 + k + len;
  }
  return out;
}

test('a body whose first value is a []struct{} of 10M elements is refused at once', () => {
  const t = gobSlice(gobStruct('E', [['A', GOB_BOOL]]));
  const ms = messages(new GobEncoder().encode(t, []).toBuffer());
  const value = ms[ms.length - 1] as Buffer; // length, type id, 0 delta, 0 count
  const idBytes = value.subarray(1, value.length - 2);
  const n = 10_000_000;
  const body = Buffer.concat([...ms.slice(0, -1), message(Buffer.concat([idBytes, uint(0), uint(n), Buffer.alloc(n)]))]);
  for (const tag of [ProtocolTag.Gossip, ProtocolTag.GossipUnicast, ProtocolTag.GossipBroadcast]) {
    const t0 = performance.now();
    assert.throws(() => decodeGossipMessage(tag, body), failed(/gossip channel: expected string, received \[\]E/));
    assert.throws(() => decodeGossipMessageWithGob(tag, body), failed(/expected string/));
    const ms = performance.now() - t0;
    assert.ok(ms < 100, `refused in ${ms.toFixed(0)} ms`);
  }
});

test('a value past the last of an envelope is refused without being decoded', () => {
  const t = gobSlice(GOB_UINT);
  const ms = messages(new GobEncoder().encode(t, []).toBuffer());
  const value = ms[ms.length - 1] as Buffer;
  const n = 10_000_000;
  const extra = Buffer.concat([...ms.slice(0, -1), message(Buffer.concat([value.subarray(1, value.length - 2), uint(0), uint(n), Buffer.alloc(n)]))]);
  const env = encodeGossipMessage({ tag: ProtocolTag.Gossip, channel: 'x', src: 1, payload: Buffer.from('p') }).subarray(1);
  const t0 = performance.now();
  assert.throws(() => decodeGossipMessage(ProtocolTag.Gossip, Buffer.concat([env, extra])), failed(/gossip: expected 3 values, received more/));
  const elapsed = performance.now() - t0;
  assert.ok(elapsed < 100, `refused in ${elapsed.toFixed(0)} ms`);
});

test('envelopes the direct reader leaves to the general decoder decode as before', () => {
  // Type definitions before and after the values, a non-ASCII channel: all valid envelopes.
  const def = messages(new GobEncoder().encode(gobSlice(GOB_UINT), []).toBuffer())[0] as Buffer;
  const src = 0x7a0000000001;
  const vals = new GobEncoder().encode(GOB_STRING, 'ünï').encode(GOB_UINT, BigInt(src)).encode(GOB_BYTES, Buffer.from('payload')).toBuffer();
  for (const body of [Buffer.concat([def, vals]), Buffer.concat([vals, def])]) {
    assert.deepEqual(decodeGossipMessage(4, body), { tag: 4, channel: 'ünï', src, payload: Buffer.from('payload') });
  }
  const uni = new GobEncoder().encode(GOB_STRING, 'ünï').encode(GOB_UINT, 1n).encode(GOB_UINT, 2n).encode(GOB_BYTES, Buffer.alloc(3)).toBuffer();
  assert.deepEqual(decodeGossipMessage(5, Buffer.concat([def, uni])), { tag: 5, channel: 'ünï', src: 1, dst: 2, payload: Buffer.alloc(3) });
  // Wrong basic types are still refused, with the same messages.
  assert.throws(() => decodeGossipMessage(5, vals), failed(/gossip dst: expected uint, received \[\]byte/));
  assert.throws(() => decodeGossipMessage(4, uni), failed(/gossip payload: expected \[\]byte, received uint/));
});

/** What a prefixed receiver hands on: the message of one frame, as ProtocolMsg.wire. */
function received(frame: Buffer): { wire: Buffer; chunk: Buffer } {
  const chunk = Buffer.allocUnsafeSlow(frame.length); // a transport's chunk, a buffer of its own
  frame.copy(chunk);
  const r = new LengthPrefixReceiver();
  const { frames } = r.push(chunk);
  assert.equal(frames.length, 1);
  const m = decodeProtocolMsg(frames[0]!, r.prefixed);
  assert.ok(m?.wire);
  return { wire: m.wire, chunk };
}

test('a relayed gossip message in our own encoding is sent as it came, frame and all, without a copy', () => {
  for (const m of [
    { tag: ProtocolTag.GossipBroadcast, channel: 'topology', src: 0x7a0000000001, payload: Buffer.alloc(1200, 3) },
    { tag: ProtocolTag.GossipUnicast, channel: 'IPallocation', src: 0x7a0000000001, dst: 0x7a0000000002, payload: Buffer.from([1, 2, 3]) },
  ] as const) {
    const { wire, chunk } = received(encodeFrame(encodeGossipMessage(m)));
    const g = decodeGossipMessage(wire[0]!, wire.subarray(1));
    const out = encodeGossipOutbound(g, wire);
    assert.equal(out.frame().buffer, chunk.buffer, 'the relayed frame was copied');
    assert.deepEqual(out.frame(), encodeFrame(encodeGossipMessage(m)));
  }
});

test('a relayed gossip message in another valid encoding (a long form of a number) is re-encoded, as the original does', () => {
  const m = { tag: ProtocolTag.GossipBroadcast, channel: 'topology', src: 0x7a0000000001, payload: Buffer.from('payload') } as const;
  const ours = encodeGossipMessage(m);
  // The channel's length (8) written in gob's two-byte form: valid, one byte longer.
  const [str, ...rest] = messages(ours.subarray(1));
  const body = str!.subarray(1); // type id, 0 delta, length 8, "topology"
  const longStr = message(Buffer.concat([body.subarray(0, 2), Buffer.from([0xff, 8]), body.subarray(3)]));
  const theirs = Buffer.concat([Buffer.from([m.tag]), longStr, ...rest]);
  const { wire, chunk } = received(encodeFrame(theirs));
  const g = decodeGossipMessage(wire[0]!, wire.subarray(1));
  assert.deepEqual({ ...g, payload: Buffer.from(g.payload) }, { ...m });
  const out = encodeGossipOutbound(g, wire);
  assert.notEqual(out.frame().buffer, chunk.buffer);
  assert.deepEqual(out.frame(), encodeFrame(ours));
  // Without the bytes it came in (an encrypted connection), the same.
  assert.deepEqual(encodeGossipOutbound(g).frame(), encodeFrame(ours));
});

test('a relayed message that came in a much bigger read is copied, not kept as a view that would hold the whole read', () => {
  const small = { tag: ProtocolTag.GossipBroadcast, channel: 'topology', src: 0x7a0000000001, payload: Buffer.alloc(100, 5) } as const;
  const big = encodeFrame(Buffer.concat([Buffer.from([ProtocolTag.Gossip]), Buffer.alloc(16_000)]));
  const read = Buffer.allocUnsafeSlow(big.length + encodeFrame(encodeGossipMessage(small)).length);
  big.copy(read);
  encodeFrame(encodeGossipMessage(small)).copy(read, big.length);
  const r = new LengthPrefixReceiver();
  const { frames } = r.push(read);
  assert.equal(frames.length, 2);
  const m = decodeProtocolMsg(frames[1]!, true)!;
  assert.equal(m.wire!.buffer, read.buffer, 'the message itself is a view of the read');
  const g = decodeGossipMessage(m.tag, m.body);
  const out = encodeGossipOutbound(g, m.wire);
  assert.notEqual(out.frame().buffer, read.buffer, 'a 16 KB read held by a 100-byte relay');
  assert.deepEqual(out.frame(), encodeFrame(encodeGossipMessage(small)));
});
