// The mesh TCP intro and the message connection over in-memory pipes with a FakeClock: v2
// plain and encrypted, v1, version negotiation, password mismatches, deadlines, heartbeats,
// bad bytes at every stage, and a replay of the real routers' captured streams.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { WeaveError, isWeaveError } from '../../../src/core/errors.js';
import { formatPeerName, parsePeerName } from '../../../src/core/peer-name.js';
import { decodeFeatures, encodeFeatures } from '../../../src/mesh/features.js';
import { MeshStreamReader, encodeFrame } from '../../../src/mesh/framing.js';
import { decodeGobStream } from '../../../src/mesh/gob/gob-decoder.js';
import {
  ERR_EXPECTED_CRYPTO, ERR_EXPECTED_NO_CRYPTO, PROTOCOL_V1_FEATURES, runHandshake, type HandshakeOptions, type HandshakeOutcome,
} from '../../../src/mesh/handshake.js';
import { GobBytesReceiver, GobStreamSplitter, LengthPrefixReceiver, MAX_FEATURES_MSG_BYTES, MessageConn } from '../../../src/mesh/message-conn.js';
import { GobEncoder, encodeGobValue } from '../../../src/mesh/gob/gob-encoder.js';
import { GOB_BYTES, GOB_STRING } from '../../../src/mesh/gob/gob-type.js';
import type { ProtocolMsg } from '../../../src/mesh/protocol.js';
import { encodeProtocolHeader } from '../../../src/mesh/protocol.js';
import { createDuplexPipe, flush, type PipeEnd } from '../../helpers/duplex-pipe.js';
import { prng, readStream, readUnits } from './wire-fixtures.js';

type Settled = { ok: true; value: HandshakeOutcome } | { ok: false; error: unknown };

function settle(p: Promise<HandshakeOutcome>): { readonly current: Settled | undefined } {
  const box: { current: Settled | undefined } = { current: undefined };
  p.then((value) => (box.current = { ok: true, value }), (error: unknown) => (box.current = { ok: false, error }));
  return box;
}

function ok(s: { readonly current: Settled | undefined }): HandshakeOutcome {
  const c = s.current;
  assert.ok(c, 'handshake still pending');
  if (!c.ok) throw c.error;
  return c.value;
}

function failed(s: { readonly current: Settled | undefined }): WeaveError {
  const c = s.current;
  assert.ok(c, 'handshake still pending');
  assert.ok(!c.ok, 'handshake succeeded');
  assert.ok(c.error instanceof WeaveError, `not a WeaveError: ${String(c.error)}`);
  return c.error;
}

function rng(seed: number): (n: number) => Buffer {
  const r = prng(seed);
  return (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));
}

function opts(n: number, over: Partial<HandshakeOptions> = {}): HandshakeOptions {
  return {
    outbound: n === 1,
    name: parsePeerName(`7a:00:00:00:00:0${n}`),
    nickName: `peer-${n}`,
    uid: 1000n + BigInt(n),
    shortId: 100 + n,
    extraFeatures: { Overlays: 'sleeve' },
    ...over,
  };
}

/** Peer 1 dials peer 2 over a fresh pipe. */
function connect(o1: Partial<HandshakeOptions> = {}, o2: Partial<HandshakeOptions> = {}) {
  const clock = new FakeClock();
  const [t1, t2] = createDuplexPipe();
  const h1 = settle(runHandshake({ transport: t1, clock, randomBytes: rng(1) }, opts(1, o1)));
  const h2 = settle(runHandshake({ transport: t2, clock, randomBytes: rng(2) }, opts(2, o2)));
  return { clock, t1, t2, h1, h2 };
}

interface Recorder {
  msgs: ProtocolMsg[];
  closes: Array<WeaveError | undefined>;
}

function startConn(o: HandshakeOutcome | MessageConn): Recorder {
  const r: Recorder = { msgs: [], closes: [] };
  (o instanceof MessageConn ? o : o.conn).start({ onMessage: (m) => r.msgs.push({ tag: m.tag, body: m.body }), onClose: (e) => r.closes.push(e) });
  return r;
}

const isCode = (c: string) => (e: unknown) => isWeaveError(e) && e.code === c;

test('v2 plain: features both ways, the same connection UID, Trusted flags', async () => {
  const { h1, h2 } = connect({ trustRemote: true, connId: 0x0123456789abcdefn }, { trustRemote: false, connId: 0xfedcba9876543210n });
  await flush();
  const a = ok(h1).result;
  const b = ok(h2).result;
  assert.equal(a.version, 2);
  assert.equal(b.version, 2);
  assert.equal(formatPeerName(a.remote.name), '7a:00:00:00:00:02');
  assert.equal(a.remote.nickName, 'peer-2');
  assert.equal(a.remote.uid, 1002n);
  assert.equal(a.remote.shortId, 102);
  assert.equal(b.remote.connId, 0x0123456789abcdefn);
  assert.equal(a.remote.features.get('Overlays'), 'sleeve');
  assert.equal(b.remote.features.get('PeerNameFlavour'), 'mac');
  assert.equal(a.connUid, 0x0123456789abcdefn ^ 0xfedcba9876543210n);
  assert.equal(b.connUid, a.connUid);
  // 1 trusts 2, 2 does not trust 1.
  assert.equal(a.remote.trusted, false);
  assert.equal(b.remote.trusted, true);
  assert.equal(a.untrusted, true);
  assert.equal(b.untrusted, true);
  assert.equal(a.sessionKey, undefined);
  assert.equal(ok(h1).conn.encrypted, false);
});

test('v2 plain: mutual trust, random ConnIDs, messages both ways in order', async () => {
  const { h1, h2, t1 } = connect({ trustRemote: true }, { trustRemote: true });
  await flush();
  const a = ok(h1);
  const b = ok(h2);
  assert.equal(a.result.untrusted, false);
  assert.equal(b.result.untrusted, false);
  assert.equal(a.result.connUid, b.result.connUid);
  assert.equal(a.result.localConnId, b.result.remote.connId);
  const ra = startConn(a);
  const rb = startConn(b);
  for (let i = 0; i < 50; i++) a.conn.send(4, Buffer.from(`gossip ${i}`));
  b.conn.send(7, Buffer.from([0, 1]));
  await flush();
  assert.deepEqual(rb.msgs.map((m) => m.body.toString()), Array.from({ length: 50 }, (_, i) => `gossip ${i}`));
  assert.ok(rb.msgs.every((m) => m.tag === 4));
  assert.deepEqual(ra.msgs, [{ tag: 7, body: Buffer.from([0, 1]) }]);
  assert.ok(t1.writtenBytes.includes(Buffer.from('gossip 49')), 'plain on the wire');
  assert.equal(a.conn.messagesSent, 50);
  assert.equal(b.conn.messagesReceived, 50);
});

test('v2 encrypted, same password: messages round-trip and nothing is readable on the wire', async () => {
  const { h1, h2, t1, t2 } = connect({ password: 'testpassword' }, { password: Buffer.from('testpassword') });
  await flush();
  const a = ok(h1);
  const b = ok(h2);
  assert.equal(a.conn.encrypted, true);
  assert.ok(a.result.sessionKey && b.result.sessionKey);
  assert.deepEqual(a.result.sessionKey, b.result.sessionKey);
  assert.equal(a.result.remote.nickName, 'peer-2');
  const ra = startConn(a);
  const rb = startConn(b);
  a.conn.send(4, Buffer.from('SECRET-PAYLOAD-1'));
  a.conn.send(0);
  b.conn.send(6, Buffer.from('SECRET-PAYLOAD-2'));
  await flush();
  assert.deepEqual(rb.msgs, [{ tag: 4, body: Buffer.from('SECRET-PAYLOAD-1') }, { tag: 0, body: Buffer.alloc(0) }]);
  assert.deepEqual(ra.msgs, [{ tag: 6, body: Buffer.from('SECRET-PAYLOAD-2') }]);
  const sides = [
    { t: t1, secrets: ['SECRET-PAYLOAD-1', 'peer-1', 'Overlays'], sentFeatures: b.result.remote.features },
    { t: t2, secrets: ['SECRET-PAYLOAD-2', 'peer-2', 'NickName'], sentFeatures: a.result.remote.features },
  ];
  for (const { t, secrets, sentFeatures } of sides) {
    const wire = t.writtenBytes;
    for (const s of secrets) assert.ok(!wire.includes(Buffer.from(s)), `"${s}" not on the wire`);
    // header, flag 1 + key, then frames each 16 bytes longer than their plaintext
    assert.equal(wire.subarray(0, 8).toString('hex'), '7765617665010201');
    const frames = new MeshStreamReader().push(wire).flatMap((e) => (e.kind === 'message' ? [e.bytes] : []));
    assert.equal(frames[0]?.length, encodeFeatures(sentFeatures).length + 16, 'sealed feature map');
  }
  const secondFrame = new MeshStreamReader().push(t1.writtenBytes).flatMap((e) => (e.kind === 'message' ? [e.bytes] : []))[1];
  assert.equal(secondFrame?.length, 1 + 'SECRET-PAYLOAD-1'.length + 16, 'tag + body + Poly1305 tag');
});

test('v2 encrypted, different passwords: the first message fails to decrypt on both sides', async () => {
  const { h1, h2, t1, t2 } = connect({ password: 'one' }, { password: 'two' });
  await flush();
  for (const h of [h1, h2]) {
    const e = failed(h);
    assert.equal(e.code, 'DECODE_FAILED');
    assert.equal(e.message, 'Unable to decrypt TCP msg');
  }
  assert.ok(t1.closed && t2.closed, 'transports closed');
});

test('password on one side only: the original error texts', async () => {
  const { h1, h2 } = connect({ password: 'secret' }, {});
  await flush();
  const e1 = failed(h1);
  const e2 = failed(h2);
  assert.equal(e1.message, ERR_EXPECTED_CRYPTO);
  assert.equal(e1.message, 'password specified, but peer requested an unencrypted connection');
  assert.equal(e2.message, ERR_EXPECTED_NO_CRYPTO);
  assert.match(e2.message, /^no password specificed, but peer requested an encrypted connection$/);
  assert.equal(e1.code, 'INVALID_CONFIG');
  // An empty password means no encryption, as weaver treats `--password ""`.
  const c = connect({ password: '' }, {});
  await flush();
  assert.equal(ok(c.h1).conn.encrypted, false);
});

test('version negotiation: 1..2 with 1..1 gives 1; min 2 against max 1 is refused', async () => {
  const c = connect({}, { maxVersion: 1 });
  await flush();
  assert.equal(ok(c.h1).result.version, 1);
  assert.equal(ok(c.h2).result.version, 1);
  const d = connect({ minVersion: 2 }, { maxVersion: 1 });
  await flush();
  for (const h of [d.h1, d.h2]) {
    const e = failed(h);
    assert.equal(e.code, 'INCOMPATIBLE_VERSION');
  }
  assert.match(failed(d.h1).message, /remote version range \[1,1\] is incompatible with ours \[2,2\]/);
  assert.ok(d.t1.closed);
  const bad = settle(runHandshake({ transport: createDuplexPipe()[0], clock: new FakeClock(), randomBytes: rng(3) }, opts(1, { minVersion: 3, maxVersion: 3 })));
  await flush();
  assert.equal(failed(bad).code, 'INVALID_ARGUMENT');
  const clash = settle(runHandshake({ transport: createDuplexPipe()[0], clock: new FakeClock(), randomBytes: rng(3) }, opts(1, { extraFeatures: { Name: 'x' } })));
  await flush();
  assert.equal(failed(clash).code, 'INVALID_ARGUMENT');
});

test('v1 plain: gob stream on the wire, features cut to the v1 set, messages round-trip', async () => {
  const { h1, h2, t1 } = connect({ maxVersion: 1, trustRemote: true }, { maxVersion: 1, trustRemote: true });
  await flush();
  const a = ok(h1);
  const b = ok(h2);
  assert.equal(a.result.version, 1);
  assert.deepEqual([...a.result.remote.features.keys()].sort(), [...PROTOCOL_V1_FEATURES].sort());
  assert.equal(a.result.remote.shortId, undefined);
  assert.equal(a.result.remote.trusted, false, 'Trusted is not a v1 feature');
  assert.equal(a.result.untrusted, true);
  assert.equal(a.result.connUid, b.result.connUid);
  const ra = startConn(a);
  const rb = startConn(b);
  a.conn.send(4, Buffer.from('v1 gossip'));
  a.conn.send(0);
  b.conn.send(5, Buffer.alloc(3000, 7));
  await flush();
  assert.deepEqual(rb.msgs, [{ tag: 4, body: Buffer.from('v1 gossip') }, { tag: 0, body: Buffer.alloc(0) }]);
  assert.deepEqual(ra.msgs, [{ tag: 5, body: Buffer.alloc(3000, 7) }]);
  // What peer 1 wrote after the header is one gob stream: the map, then []byte values.
  const values = decodeGobStream(t1.writtenBytes.subarray(7));
  assert.equal(values[0]?.type.kind, 'map');
  assert.deepEqual(values.slice(1).map((v) => v.type.kind), ['bytes', 'bytes']);
  assert.deepEqual(values[1]?.value, Buffer.from('\x04v1 gossip', 'latin1'));
  assert.ok(t1.writtenBytes.includes(Buffer.from('peer-1')), 'v1 features travel in the clear');
});

test('v1 stream: later values are []byte alone; other types and bad definitions are refused; definitions are read once', () => {
  const features = encodeFeatures({ PeerNameFlavour: 'mac', Name: 'peer-1' });
  // Definitions only (each encode of an empty slice writes its type's definition, then the value).
  const definition = (id: number): Buffer => {
    const enc = new GobEncoder();
    enc.encode({ kind: 'slice', name: '', elem: GOB_STRING, id }, []);
    const b = enc.toBuffer();
    return b.subarray(0, 1 + (b[0] as number));
  };
  const defs: Buffer[] = [];
  for (let id = 70, n = 0; n < 60_000; id++) {
    defs.push(definition(id));
    n += (defs.at(-1) as Buffer).length;
  }
  const value = encodeGobValue(GOB_BYTES, Buffer.from([4, 1, 2, 3]));
  const input = Buffer.concat([features, ...defs, ...Array<Buffer>(3000).fill(value)]);
  const split = new GobStreamSplitter().push(input);
  assert.equal(split.error, undefined);
  assert.equal(split.frames.length, 3001);
  assert.deepEqual(decodeFeatures(split.frames[0] as Buffer).get('Name'), 'peer-1');
  // Each []byte value comes out as itself: before, each carried the 60 KB of definitions ahead
  // of it (180 MB here), decoded again for every value.
  for (const f of split.frames.slice(1)) assert.deepEqual(f, value);
  const msgs = new GobBytesReceiver(new GobStreamSplitter()).decode({ frames: split.frames.slice(1) });
  assert.equal(msgs.error, undefined);
  assert.deepEqual(msgs.frames[2999], Buffer.from([4, 1, 2, 3]));

  // After the feature map, a value of any other type: Go's decoder refuses it for a []byte.
  // (The feature map's value message again: the last message of its stream; lengths < 128 here.)
  let last = 0;
  for (let at = 0; at < features.length; at += 1 + (features[at] as number)) last = at;
  const other = new GobStreamSplitter().push(Buffer.concat([features, value, features.subarray(last)]));
  assert.equal(other.frames.length, 2);
  assert.ok(isWeaveError(other.error) && other.error.code === 'DECODE_FAILED' && /not \[\]byte/.test(other.error.message), String(other.error));

  // A malformed definition is refused when it arrives, not when a value needs it.
  const bad = Buffer.from(definition(70));
  bad[bad.length - 2] = 0x7f;
  const early = new GobStreamSplitter().push(Buffer.concat([features, bad]));
  assert.equal(early.frames.length, 1);
  assert.ok(isWeaveError(early.error) && early.error.code === 'DECODE_FAILED', String(early.error));
});

test('the first message (the feature map) may be 64 KiB, those after it 10 MiB: checked before buffering', () => {
  const frame = (n: number) => Buffer.concat([Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]), Buffer.alloc(n, 1)]);
  // Only the prefix of an oversized first message: refused at once, not after 10 MiB arrive.
  const big = new LengthPrefixReceiver(10 << 20, MAX_FEATURES_MSG_BYTES).push(frame(MAX_FEATURES_MSG_BYTES + 1).subarray(0, 4));
  assert.ok(isWeaveError(big.error) && big.error.code === 'DECODE_FAILED' && /65537 > 65536/.test(big.error.message), String(big.error));
  const ok = new LengthPrefixReceiver(10 << 20, MAX_FEATURES_MSG_BYTES).push(Buffer.concat([frame(MAX_FEATURES_MSG_BYTES), frame(1 << 20)]));
  assert.equal(ok.error, undefined);
  assert.deepEqual(ok.frames.map((f) => f.length), [MAX_FEATURES_MSG_BYTES, 1 << 20]);
  // v1: the same for the first gob value.
  const v1 = new GobStreamSplitter(10 << 20, MAX_FEATURES_MSG_BYTES).push(Buffer.from([0xfc, 0x00, 0x02, 0x00, 0x00]));
  assert.ok(isWeaveError(v1.error) && v1.error.code === 'DECODE_FAILED' && /exceeds maximum size/.test(v1.error.message), String(v1.error));
});

test('v1 encrypted: the key travels as PublicKey hex; messages are sealed []byte values', async () => {
  const { h1, h2, t1 } = connect({ maxVersion: 1, password: 'pw' }, { maxVersion: 1, password: 'pw' });
  await flush();
  const a = ok(h1);
  const b = ok(h2);
  assert.deepEqual(a.result.sessionKey, b.result.sessionKey);
  assert.ok(!a.result.remote.features.has('PublicKey'), 'filtered out of the result');
  const rb = startConn(b);
  startConn(a);
  a.conn.send(4, Buffer.from('hidden v1'));
  await flush();
  assert.deepEqual(rb.msgs, [{ tag: 4, body: Buffer.from('hidden v1') }]);
  const values = decodeGobStream(t1.writtenBytes.subarray(7));
  const features = decodeFeatures(t1.writtenBytes.subarray(7, 7 + (t1.written[1]?.length ?? 0)));
  assert.match(features.get('PublicKey') ?? '', /^[0-9a-f]{64}$/);
  assert.equal((values[1]?.value as Buffer).length, 1 + 'hidden v1'.length + 16);
  assert.ok(!t1.writtenBytes.includes(Buffer.from('hidden v1')));

  const mixed = connect({ maxVersion: 1, password: 'pw' }, { maxVersion: 1 });
  await flush();
  assert.equal(failed(mixed.h1).message, ERR_EXPECTED_CRYPTO);
  assert.equal(failed(mixed.h2).message, ERR_EXPECTED_NO_CRYPTO);
});

/** Our side (peer 2 unless told) against a wire end the test writes raw bytes into. */
function againstWire(o: Partial<HandshakeOptions> = {}, n = 2) {
  const clock = new FakeClock();
  const [ours, wire] = createDuplexPipe({ a: '192.0.2.2:58463', b: '192.0.2.1:6783' });
  const h = settle(runHandshake({ transport: ours, clock, randomBytes: rng(9) }, opts(n, o)));
  return { clock, ours, wire, h };
}

function remoteFeatures(over: Record<string, string | undefined> = {}): Buffer {
  const f = new Map<string, string>(Object.entries({
    PeerNameFlavour: 'mac', Name: '7a:00:00:00:00:01', NickName: 'wire', UID: '77', ConnID: '5', ShortID: '9', Trusted: 'true',
  }));
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) f.delete(k);
    else f.set(k, v);
  }
  return encodeFeatures(f);
}

function v2Intro(features = remoteFeatures()): Buffer {
  return Buffer.concat([encodeProtocolHeader(), Buffer.from([0]), encodeFrame(features)]);
}

test('header garbage, early EOF and a bad flag are typed errors', async () => {
  const g = againstWire();
  g.wire.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  await flush();
  const e = failed(g.h);
  assert.equal(e.code, 'DECODE_FAILED');
  assert.match(e.message, /^remote protocol header not recognised: \[71 69 84 32 47\]$/);
  assert.ok(g.ours.closed);

  const eof = againstWire();
  eof.wire.write(Buffer.from('wea'));
  eof.wire.close();
  await flush();
  assert.equal(failed(eof.h).code, 'IO_FAILED');
  assert.match(failed(eof.h).message, /received incomplete remote protocol header \(3 octets instead of 7\)/);

  const none = againstWire();
  none.wire.close();
  await flush();
  assert.match(failed(none.h).message, /failed to receive remote protocol header/);

  const flag = againstWire();
  flag.wire.write(Buffer.concat([encodeProtocolHeader(), Buffer.from([2])]));
  await flush();
  assert.match(failed(flag.h).message, /Bad encryption flag 2/);
});

test('header deadline 10 s, then the 60 s read deadline for the rest of the intro', async () => {
  const g = againstWire();
  await flush();
  g.clock.advance(9_999);
  await flush();
  assert.equal(g.h.current, undefined);
  g.clock.advance(1);
  await flush();
  assert.equal(failed(g.h).code, 'TIMEOUT');
  assert.ok(g.ours.closed);
  assert.equal(g.clock.pendingCount, 0);

  const f = againstWire();
  f.wire.write(encodeProtocolHeader());
  await flush();
  f.clock.advance(59_999);
  await flush();
  assert.equal(f.h.current, undefined, 'the header deadline no longer applies');
  f.clock.advance(1);
  await flush();
  assert.equal(failed(f.h).code, 'TIMEOUT');
});

test('bad feature maps are refused with clear errors', async () => {
  const cases: Array<[Buffer, string, RegExp]> = [
    [remoteFeatures({ UID: undefined }), 'DECODE_FAILED', /field UID is missing/],
    [remoteFeatures({ ConnID: undefined }), 'DECODE_FAILED', /field ConnID is missing/],
    [remoteFeatures({ PeerNameFlavour: 'uuid' }), 'INCOMPATIBLE_VERSION', /Peer name flavour mismatch \(ours: 'mac', theirs: 'uuid'\)/],
    [remoteFeatures({ Name: 'not-a-name' }), 'DECODE_FAILED', /invalid peer name/],
    [remoteFeatures({ UID: '18446744073709551616' }), 'DECODE_FAILED', /UID: value out of range/],
    [remoteFeatures({ ConnID: '-1' }), 'DECODE_FAILED', /ConnID: invalid syntax/],
    [remoteFeatures({ ShortID: '4096' }), 'DECODE_FAILED', /ShortID/],
    [remoteFeatures({ Trusted: 'yes' }), 'DECODE_FAILED', /Trusted/],
    [Buffer.from('this is not gob at all'), 'DECODE_FAILED', /gob/],
    [Buffer.alloc(0), 'DECODE_FAILED', /features/],
  ];
  for (const [features, c, re] of cases) {
    const g = againstWire();
    g.wire.write(v2Intro(features));
    await flush();
    const e = failed(g.h);
    assert.equal(e.code, c, e.message);
    assert.match(e.message, re);
  }
  const good = againstWire();
  good.wire.write(v2Intro(remoteFeatures({ Trusted: 'T', ShortID: undefined })));
  await flush();
  const r = ok(good.h).result;
  assert.equal(r.remote.trusted, true);
  assert.equal(r.remote.shortId, undefined);
  assert.equal(r.remote.uid, 77n);
});

test('after the intro: an oversized length, a blank message, garbage and EOF', async () => {
  const g = againstWire();
  g.wire.write(Buffer.concat([v2Intro(), encodeFrame(Buffer.alloc(0)), encodeFrame(Buffer.from([4, 9])), Buffer.from('ffffffff', 'hex')]));
  await flush();
  const r = startConn(ok(g.h));
  assert.deepEqual(r.msgs, [{ tag: 4, body: Buffer.from([9]) }], 'blank message skipped, the next delivered');
  assert.equal(r.closes.length, 1);
  assert.equal(r.closes[0]?.code, 'DECODE_FAILED');
  assert.match(r.closes[0]?.message ?? '', /incoming message exceeds maximum size: 4294967295 > 10485760/);
  assert.ok(g.ours.closed);

  const t = againstWire();
  t.wire.write(v2Intro());
  await flush();
  const rt = startConn(ok(t.h));
  t.wire.write(Buffer.from('0000001004', 'hex')); // a frame cut short
  t.wire.close();
  await flush();
  assert.equal(rt.msgs.length, 0);
  assert.equal(rt.closes[0]?.code, 'IO_FAILED');

  const v1 = againstWire({ maxVersion: 1 });
  v1.wire.write(Buffer.concat([encodeProtocolHeader({ min: 1, max: 1 }), remoteFeatures()]));
  await flush();
  const r1 = startConn(ok(v1.h));
  v1.wire.write(Buffer.from('03ff0000', 'hex')); // a gob message of an unknown type id
  await flush();
  assert.equal(r1.closes[0]?.code, 'DECODE_FAILED');
});

test('encrypted: garbage injected into the stream closes the connection', async () => {
  const { h1, h2, t2 } = connect({ password: 'pw' }, { password: 'pw' });
  await flush();
  const ra = startConn(ok(h1));
  startConn(ok(h2));
  t2.write(encodeFrame(Buffer.alloc(40, 1)));
  await flush();
  assert.equal(ra.closes[0]?.code, 'DECODE_FAILED');
  assert.equal(ra.closes[0]?.message, 'Unable to decrypt TCP msg');
});

test('heartbeats every 30 s keep a connection up; 60 s of silence closes it', async () => {
  const { clock, h1, h2, t1 } = connect();
  await flush();
  const a = ok(h1);
  const b = ok(h2);
  const ra = startConn(a);
  const rb = startConn(b);
  for (let i = 0; i < 20; i++) {
    clock.advance(15_000);
    await flush();
  }
  assert.equal(ra.closes.length, 0);
  assert.equal(rb.closes.length, 0);
  assert.equal(rb.msgs.length, 10);
  assert.ok(rb.msgs.every((m) => m.tag === 0 && m.body.length === 0));
  assert.ok(t1.writtenBytes.includes(Buffer.from('0000000100', 'hex')), 'heartbeat frame as in the capture');

  // A peer that completes the intro and then says nothing.
  const g = againstWire();
  g.wire.write(v2Intro());
  await flush();
  const conn = ok(g.h).conn;
  const r = startConn(conn);
  const heard: Buffer[] = [];
  g.wire.onData((c) => heard.push(c));
  await flush();
  g.clock.advance(30_000);
  await flush();
  assert.ok(Buffer.concat(heard).includes(Buffer.from('0000000100', 'hex')), 'we sent a heartbeat');
  g.clock.advance(29_999);
  await flush();
  assert.equal(r.closes.length, 0);
  g.clock.advance(1);
  await flush();
  assert.equal(r.closes.length, 1);
  assert.equal(r.closes[0]?.code, 'TIMEOUT');
  assert.ok(conn.closed && g.ours.closed);
  assert.equal(g.clock.pendingCount, 0, 'timers cancelled');
});

test('message connection: close is idempotent, send after close, oversize, throwing handler', async () => {
  const { h1, h2 } = connect({ maxMessageBytes: 1024 }, { maxMessageBytes: 1024 });
  await flush();
  const a = ok(h1);
  const b = ok(h2);
  const ra = startConn(a);
  const rb = startConn(b);
  a.conn.start({ onMessage: () => assert.fail('start twice must not replace handlers'), onClose: () => {} });
  assert.throws(() => a.conn.send(4, Buffer.alloc(2000)), isCode('INVALID_ARGUMENT'));
  assert.ok(a.conn.closed);
  assert.equal(ra.closes[0]?.code, 'INVALID_ARGUMENT');
  a.conn.close();
  a.conn.close(new WeaveError('INTERNAL', 'again'));
  assert.equal(ra.closes.length, 1);
  assert.throws(() => a.conn.send(0), isCode('NOT_RUNNING'));
  await flush();
  assert.equal(rb.closes.length, 1);
  assert.equal(rb.closes[0]?.code, 'IO_FAILED');
  assert.match(rb.closes[0]?.message ?? '', /closed by peer/);

  const c = connect();
  await flush();
  const x = ok(c.h1);
  const y = ok(c.h2);
  const closes: Array<WeaveError | undefined> = [];
  y.conn.start({
    onMessage: () => {
      throw new WeaveError('DECODE_FAILED', 'bad gossip');
    },
    onClose: (e) => closes.push(e),
  });
  startConn(x);
  x.conn.send(4, Buffer.from('a'));
  x.conn.send(4, Buffer.from('b'));
  await flush();
  assert.equal(closes.length, 1);
  assert.equal(closes[0]?.message, 'bad gossip');

  const d = connect();
  await flush();
  const z = ok(d.h1);
  z.conn.close();
  assert.throws(() => z.conn.start({ onMessage: () => {}, onClose: () => {} }), isCode('NOT_RUNNING'));
  const rz = startConn(ok(d.h2));
  await flush();
  assert.equal(rz.closes[0]?.code, 'IO_FAILED', 'closed before start(): the backlog carries the EOF');
});

test('an aborted handshake rejects with CANCELLED and closes the transport', async () => {
  const clock = new FakeClock();
  const [t] = createDuplexPipe();
  const ac = new AbortController();
  const h = settle(runHandshake({ transport: t, clock, randomBytes: rng(4) }, opts(1, { signal: ac.signal })));
  ac.abort();
  await flush();
  assert.equal(failed(h).code, 'CANCELLED');
  assert.ok(t.closed);
  assert.equal(clock.pendingCount, 0);
});

function writeChunked(wire: PipeEnd, stream: Buffer, seed: number): void {
  const r = prng(seed);
  for (let pos = 0; pos < stream.length; ) {
    const n = 1 + Math.floor(r() * 300);
    wire.write(stream.subarray(pos, pos + n));
    pos += n;
  }
}

test('replay: h1 → h2 as captured from two real routers, delivered to our h2', async () => {
  const stream = readStream('plain', 'h1-to-h2');
  const units = readUnits('plain').filter((u) => u.dir === 'h1-to-h2' && typeof u.tag === 'number');
  for (const chunked of [false, true]) {
    // h2 dialled h1 in the capture, so our h2 is the outbound side.
    const g = againstWire({ outbound: true, nickName: 'tv-h2' }, 2);
    if (chunked) writeChunked(g.wire, stream, 5);
    else g.wire.write(stream);
    await flush();
    const { result, conn } = ok(g.h);
    assert.equal(result.version, 2);
    assert.equal(formatPeerName(result.remote.name), '7a:00:00:00:00:01');
    assert.equal(result.remote.nickName, 'tv-h1');
    assert.equal(result.remote.uid, 17594046188109229802n);
    assert.equal(result.remote.connId, 8342498688095197973n);
    assert.equal(result.remote.shortId, 1020);
    assert.equal(result.remote.trusted, false);
    assert.equal(result.remote.features.get('Overlays'), 'sleeve');
    assert.equal(result.connUid, result.localConnId ^ 8342498688095197973n);
    const r = startConn(conn);
    assert.equal(r.msgs.length, units.length);
    assert.deepEqual(r.msgs.map((m) => m.tag), units.map((u) => u.tag));
    assert.deepEqual(r.msgs.map((m) => m.body.length), units.map((u) => u.body_len));
    assert.deepEqual(r.msgs.map((m) => m.tag).slice(-1), [0], 'ends with the 30 s heartbeat');
    assert.equal(r.closes.length, 0);
    // What we sent: the header, a plain flag, then our feature map.
    const ev = new MeshStreamReader().push(g.wire.peer.writtenBytes);
    assert.equal(g.wire.peer.writtenBytes.subarray(0, 8).toString('hex'), '7765617665010200');
    const msg = ev.find((e) => e.kind === 'message');
    assert.ok(msg && msg.kind === 'message');
    const ours = decodeFeatures(msg.bytes);
    assert.equal(ours.get('Name'), '7a:00:00:00:00:02');
    assert.equal(ours.get('ConnID'), result.localConnId.toString());
    assert.equal(ours.get('Trusted'), 'false');
    g.wire.close();
    await flush();
    assert.equal(r.closes[0]?.code, 'IO_FAILED');
  }
});

test('replay: the encrypted capture gets as far as the sealed feature map', async () => {
  const g = againstWire({ outbound: true, password: 'testpassword' }, 2);
  g.wire.write(readStream('encrypted', 'h1-to-h2'));
  await flush();
  const e = failed(g.h);
  assert.equal(e.code, 'DECODE_FAILED');
  assert.equal(e.message, 'Unable to decrypt TCP msg', 'the keys were ephemeral');
  const sent = g.wire.peer.writtenBytes;
  assert.equal(sent.subarray(0, 8).toString('hex'), '7765617665010201');
  assert.equal(sent.length, 7 + 33 + 4 + sent.readUInt32BE(40));
  assert.equal(sent.readUInt32BE(40), encodeFeatures(decodeFeaturesOf(opts(2))).length + 16);
});

/** The feature map `runHandshake` sends for these options (key order aside), for size checks. */
function decodeFeaturesOf(o: HandshakeOptions): Map<string, string> {
  return new Map([
    ['PeerNameFlavour', 'mac'], ['Name', formatPeerName(o.name)], ['NickName', o.nickName], ['ShortID', String(o.shortId)],
    ['UID', o.uid.toString()], ['ConnID', rng(9)(8).readBigUInt64BE(0).toString()], ['Trusted', 'false'], ['Overlays', 'sleeve'],
  ]);
}

test('fuzz: mutated captures and random bytes never crash, they settle with typed errors', async () => {
  const plain = readStream('plain', 'h1-to-h2');
  const rand = prng(2024);
  const v1Intro = Buffer.concat([encodeProtocolHeader({ min: 1, max: 1 }), remoteFeatures(), GOB_BYTES_MSG]);
  const seen = { pending: 0, failed: 0, ok: 0 };
  for (let i = 0; i < 300; i++) {
    const base = i % 3 === 0 ? plain.subarray(0, 1400) : i % 3 === 1 ? v1Intro : Buffer.alloc(64);
    const stream = Buffer.from(base);
    const flips = 1 + Math.floor(rand() * 4);
    for (let k = 0; k < flips; k++) {
      // Leave the header mostly alone so that the later stages get exercised too.
      const at = i % 3 === 2 ? Math.floor(rand() * stream.length) : 7 + Math.floor(rand() * (stream.length - 7));
      stream[at] = Math.floor(rand() * 256);
    }
    if (i % 3 === 2) encodeProtocolHeader().copy(stream, 0);
    const g = againstWire({ maxVersion: i % 3 === 1 ? 1 : 2 });
    writeChunked(g.wire, stream, i);
    await flush();
    const s = g.h.current;
    if (s === undefined) {
      seen.pending++; // waiting for more bytes is fine
      continue;
    }
    if (!s.ok) {
      seen.failed++;
      assert.ok(s.error instanceof WeaveError, String(s.error));
      continue;
    }
    seen.ok++;
    const r = startConn(s.value);
    g.wire.write(Buffer.from(Array.from({ length: 50 }, () => Math.floor(rand() * 256))));
    await flush();
    g.wire.close();
    await flush();
    assert.equal(r.closes.length, 1);
    assert.ok(r.closes[0] instanceof WeaveError);
  }
  assert.ok(seen.failed > 50 && seen.ok > 20, JSON.stringify(seen));
});

/** A v1 `[]byte` value carrying a heartbeat (tag 0). */
const GOB_BYTES_MSG = Buffer.from('040a000100', 'hex');
