// Header, version negotiation, encryption flag, framing (any chunking, the 10 MiB limit), the
// encrypted capture's framing, and the gossip envelope, feature and topology codecs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeaveError } from '../../../src/core/errors.js';
import { checkRequiredFeatures, decodeFeatures, encodeFeatures } from '../../../src/mesh/features.js';
import { FrameSplitter, MAX_TCP_MSG_BYTES, MeshStreamReader, encodeFrame } from '../../../src/mesh/framing.js';
import { decodeGossipMessage, encodeGossipMessage, encodeGossipBody, decodeGossipUnicastBody } from '../../../src/mesh/gossip-message.js';
import {
  decodeOverlayControlMsg, decodeProtocolHeader, decodeProtocolMsg, encodeEncryptionFlag, encodeProtocolHeader, negotiateProtocolVersion,
  ProtocolTag, tryDecodeEncryptionFlag,
} from '../../../src/mesh/protocol.js';
import { decodeTopologyUpdate, encodeTopologyUpdate, type TopologyPeer } from '../../../src/mesh/topology-update.js';
import { GOB_STRING, GOB_UINT, GobEncoder } from '../../../src/mesh/gob/index.js';
import { DIRS, prng, randInt, readStream, readUnits, splitStream, type Unit } from './wire-fixtures.js';

const code = (c: string) => (e: unknown) => isWeaveError(e) && e.code === c;

test('the 7-byte header', () => {
  assert.equal(encodeProtocolHeader().toString('hex'), '77656176650102');
  assert.deepEqual(decodeProtocolHeader(Buffer.from('77656176650305', 'hex')), { min: 3, max: 5 });
  assert.throws(() => decodeProtocolHeader(Buffer.from('776561766401', 'hex')), code('DECODE_FAILED'));
  assert.throws(() => decodeProtocolHeader(Buffer.from('57656176650102', 'hex')), /not recognised/);
  assert.throws(() => encodeProtocolHeader({ min: 1, max: 256 }), code('INVALID_ARGUMENT'));
});

test('version negotiation: min(ourMax, theirMax) if max(ourMin, theirMin) <= it', () => {
  const ours = { min: 1, max: 2 };
  assert.equal(negotiateProtocolVersion(ours, { min: 1, max: 2 }), 2);
  assert.equal(negotiateProtocolVersion(ours, { min: 1, max: 1 }), 1);
  assert.equal(negotiateProtocolVersion(ours, { min: 0, max: 9 }), 2);
  assert.equal(negotiateProtocolVersion(ours, { min: 2, max: 3 }), 2);
  assert.throws(() => negotiateProtocolVersion(ours, { min: 3, max: 4 }), /remote version range \[3,4\] is incompatible with ours \[1,2\]/);
  assert.throws(() => negotiateProtocolVersion(ours, { min: 2, max: 1 }), code('INCOMPATIBLE_VERSION'));
  assert.throws(() => negotiateProtocolVersion({ min: 2, max: 2 }, { min: 1, max: 1 }), code('INCOMPATIBLE_VERSION'));
});

test('v2 encryption flag', () => {
  assert.deepEqual(encodeEncryptionFlag(), Buffer.from([0]));
  const key = Buffer.alloc(32, 7);
  const flag = encodeEncryptionFlag(key);
  assert.equal(flag.length, 33);
  assert.deepEqual(tryDecodeEncryptionFlag(flag), { encrypted: true, publicKey: key, bytes: 33 });
  assert.equal(tryDecodeEncryptionFlag(flag.subarray(0, 20)), undefined, 'waits for the key');
  assert.equal(tryDecodeEncryptionFlag(Buffer.alloc(0)), undefined);
  assert.deepEqual(tryDecodeEncryptionFlag(Buffer.from([9, 0]), 1), { encrypted: false, bytes: 1 });
  assert.throws(() => tryDecodeEncryptionFlag(Buffer.from([2])), /Bad encryption flag 2/);
  assert.throws(() => encodeEncryptionFlag(Buffer.alloc(31)), code('INVALID_ARGUMENT'));
});

test('frames: any chunking, empty frames, and the 10 MiB limit', () => {
  const rand = prng(42);
  const msgs = Array.from({ length: 200 }, (_, i) => Buffer.alloc(i % 7 === 0 ? 0 : randInt(rand, 3000), i));
  const stream = Buffer.concat(msgs.map((m) => encodeFrame(m)));
  for (let round = 0; round < 50; round++) {
    const s = new FrameSplitter();
    const got: Buffer[] = [];
    for (let pos = 0; pos < stream.length; ) {
      const n = round === 0 ? 1 : 1 + randInt(rand, round < 25 ? 10 : 5000);
      got.push(...s.push(stream.subarray(pos, pos + n)));
      pos += n;
    }
    assert.deepEqual(got, msgs, `round ${round}`);
    assert.ok(s.idle);
  }
  assert.equal(encodeFrame(Buffer.alloc(MAX_TCP_MSG_BYTES)).length, MAX_TCP_MSG_BYTES + 4);
  assert.throws(() => encodeFrame(Buffer.alloc(MAX_TCP_MSG_BYTES + 1)), code('INVALID_ARGUMENT'));
  const s = new FrameSplitter();
  assert.deepEqual(s.push(Buffer.from([0x00, 0xa0])), []);
  assert.throws(() => s.push(Buffer.from([0x00, 0x01])), /incoming message exceeds maximum size: 10485761 > 10485760/);
  assert.throws(() => s.push(Buffer.from([0])), code('DECODE_FAILED'), 'stays failed');
  const huge = new FrameSplitter();
  assert.throws(() => huge.push(Buffer.from('fffffff0', 'hex')), code('DECODE_FAILED'));
  const exact = new FrameSplitter();
  assert.deepEqual(exact.push(Buffer.from('00a00000', 'hex')), []);
  assert.equal(exact.bufferedBytes, 0, 'nothing allocated for the announced body');
});

test('encrypted capture: header, flag with public key, and sealed frames split as recorded', () => {
  const units = readUnits('encrypted');
  for (const dir of DIRS) {
    const { versions, flag, messages } = splitStream(readStream('encrypted', dir));
    assert.deepEqual(versions, { min: 1, max: 2 });
    assert.ok(flag.encrypted);
    const keyUnit = units.find((u) => u.dir === dir && u.unit.startsWith('ephemeral'));
    assert.equal(flag.publicKey.toString('hex'), keyUnit?.hex);
    const mu = units.filter((u): u is Unit => u.dir === dir && u.unit.startsWith('length-prefixed'));
    assert.equal(messages.length, mu.length);
    messages.forEach((m, i) => {
      assert.equal(m.offset, mu[i]?.offset);
      assert.equal(m.bytes.length - 16, mu[i]?.plaintext_len, 'secretbox adds a 16-byte tag');
      assert.equal(m.bytes.toString('hex'), mu[i]?.ciphertext_hex);
    });
    assert.ok([172, 173].includes(messages[0]!.bytes.length - 16), 'the features map comes first');
  }
});

test('the stream reader refuses a foreign header, protocol 1 and a bad flag', () => {
  assert.throws(() => new MeshStreamReader().push(Buffer.from('776561766f0102', 'hex')), code('DECODE_FAILED'));
  assert.throws(() => new MeshStreamReader().push(Buffer.from('77656176650101', 'hex')), code('INCOMPATIBLE_VERSION'));
  assert.throws(() => new MeshStreamReader().push(Buffer.from('7765617665010207', 'hex')), /Bad encryption flag 7/);
  const r = new MeshStreamReader();
  assert.deepEqual(r.push(Buffer.from('776561', 'hex')), []);
  assert.equal(r.push(Buffer.from('76650102', 'hex'))[0]?.kind, 'header');
});

test('protocol messages and overlay control envelopes', () => {
  assert.equal(decodeProtocolMsg(Buffer.alloc(0)), undefined, 'blank messages are ignored');
  assert.deepEqual(decodeProtocolMsg(Buffer.from([0])), { tag: ProtocolTag.Heartbeat, body: Buffer.alloc(0) });
  assert.deepEqual(decodeOverlayControlMsg(Buffer.from('0003059e', 'hex')), { overlayIndex: 0, subTag: 3, msg: Buffer.from('059e', 'hex') });
  assert.throws(() => decodeOverlayControlMsg(Buffer.from([0])), code('DECODE_FAILED'));
});

test('gossip envelopes: all three tags, exact bytes, and type checks', () => {
  const src = 0x7a0000000001;
  const payload = Buffer.from('hello');
  const body = encodeGossipBody({ channel: 'nameserver', src, payload });
  assert.equal(body.toString('hex'), '0d0c000a6e616d65736572766572' + '0906' + '00fa7a0000000001' + '080a000568656c6c6f');
  for (const tag of [ProtocolTag.Gossip, ProtocolTag.GossipBroadcast] as const) {
    const msg = encodeGossipMessage({ tag, channel: 'topology', src, payload });
    assert.deepEqual(decodeGossipMessage(msg[0]!, msg.subarray(1)), { tag, channel: 'topology', src, payload });
  }
  const uni = encodeGossipMessage({ tag: ProtocolTag.GossipUnicast, channel: 'IPallocation', src, dst: 0x7a0000000002, payload });
  assert.deepEqual(decodeGossipUnicastBody(uni.subarray(1)), { channel: 'IPallocation', src, dst: 0x7a0000000002, payload });
  assert.throws(() => decodeGossipMessage(ProtocolTag.GossipUnicast, body), code('DECODE_FAILED'));
  assert.throws(() => decodeGossipMessage(ProtocolTag.Heartbeat, body), code('DECODE_FAILED'));
  const wrong = new GobEncoder().encode(GOB_UINT, 1n).encode(GOB_UINT, 1n).encode(GOB_STRING, 'x').toBuffer();
  assert.throws(() => decodeGossipMessage(4, wrong), /expected string, received uint/);
  const bigSrc = new GobEncoder().encode(GOB_STRING, 'x').encode(GOB_UINT, 2n ** 48n).encode(GOB_STRING, 'x').toBuffer();
  assert.throws(() => decodeGossipMessage(4, bigSrc), /exceeds 48 bits/);
  assert.throws(() => encodeGossipBody({ channel: 'x', src: -1, payload }), code('INVALID_ARGUMENT'));
});

test('features: encode, decode, required keys', () => {
  const f = { PeerNameFlavour: 'mac', Name: '7a:00:00:00:00:01', NickName: 'h', UID: '1', ConnID: '2' };
  const back = decodeFeatures(encodeFeatures(f));
  assert.deepEqual(Object.fromEntries(back), f);
  checkRequiredFeatures(back);
  back.delete('UID');
  assert.throws(() => checkRequiredFeatures(back), /field UID is missing/);
  assert.throws(() => decodeFeatures(new GobEncoder().encode(GOB_STRING, 'x').toBuffer()), /expected map/);
  assert.throws(() => decodeFeatures(Buffer.concat([encodeFeatures(f), encodeFeatures(f)])), code('DECODE_FAILED'));
  assert.deepEqual(decodeFeatures(encodeFeatures(new Map())), new Map());
});

test('topology updates: round trip, zero fields omitted, bad shapes refused', () => {
  const peers: TopologyPeer[] = [
    { peer: { name: 0x7a0000000001, nickName: 'a', uid: 2n ** 64n - 1n, version: 0n, shortId: 0, hasShortId: false }, connections: [] },
    {
      peer: { name: 0x7a0000000002, nickName: '', uid: 1n, version: 7n, shortId: 4095, hasShortId: true },
      connections: [
        { remoteName: 0x7a0000000001, remoteTcpAddr: '192.0.2.1:6783', outbound: true, established: false },
        { remoteName: 0x7a0000000003, remoteTcpAddr: '', outbound: false, established: true },
      ],
    },
  ];
  const bytes = encodeTopologyUpdate(peers);
  assert.deepEqual(decodeTopologyUpdate(bytes), peers);
  assert.deepEqual(decodeTopologyUpdate(encodeTopologyUpdate([])), []);
  assert.throws(() => decodeTopologyUpdate(bytes.subarray(0, bytes.length - 4)), code('DECODE_FAILED'));
  assert.throws(() => decodeTopologyUpdate(new GobEncoder().encode(GOB_STRING, 'x').encode(GOB_STRING, 'y').toBuffer()), /expected struct/);
  assert.throws(() => encodeTopologyUpdate([{ ...peers[0]!, peer: { ...peers[0]!.peer, uid: 2n ** 64n } }]), code('INVALID_ARGUMENT'));
  assert.throws(() => encodeTopologyUpdate([{ ...peers[0]!, peer: { ...peers[0]!.peer, shortId: -1 } }]), code('INVALID_ARGUMENT'));
});
