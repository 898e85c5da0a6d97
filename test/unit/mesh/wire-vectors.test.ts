// The plain capture of two real weave 2.8 routers, decoded end to end and compared with the
// Python decode (tcp-messages.jsonl) and the README's tables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPeerName } from '../../../src/core/peer-name.js';
import { checkRequiredFeatures, decodeFeatures } from '../../../src/mesh/features.js';
import { decodeGossipMessage } from '../../../src/mesh/gossip-message.js';
import { decodeOverlayControlMsg, decodeProtocolMsg, ProtocolTag } from '../../../src/mesh/protocol.js';
import { decodeTopologyUpdate } from '../../../src/mesh/topology-update.js';
import { GobDecoder, type GobType } from '../../../src/mesh/gob/index.js';
import { DIRS, bigints, prng, randInt, readStream, readUnits, simplify, splitStream, type Dir, type Unit } from './wire-fixtures.js';

const units = readUnits('plain');
const messageUnits = (dir: Dir): Unit[] => units.filter((u) => u.dir === dir && u.unit.startsWith('length-prefixed message'));

// README section 1, "The two feature maps of the plain run".
const FEATURES: Record<Dir, Record<string, string>> = {
  'h1-to-h2': {
    ConnID: '8342498688095197973', Name: '7a:00:00:00:00:01', NickName: 'tv-h1', Overlays: 'sleeve',
    PeerNameFlavour: 'mac', ShortID: '1020', Trusted: 'false', UID: '17594046188109229802',
  },
  'h2-to-h1': {
    ConnID: '8644476810478507277', Name: '7a:00:00:00:00:02', NickName: 'tv-h2', Overlays: 'sleeve',
    PeerNameFlavour: 'mac', ShortID: '3765', Trusted: 'false', UID: '13432794895296517552',
  },
};

function typeName(t: GobType): string {
  const basic: Record<string, string> = { bool: 'bool', int: 'int', uint: 'uint', float: 'float', bytes: '[]byte', string: 'string' };
  if (basic[t.kind]) return basic[t.kind] as string;
  if ('name' in t && t.name) return t.name;
  if (t.kind === 'slice') return `[]${typeName(t.elem)}`;
  if (t.kind === 'map') return `map[${typeName(t.key)}]${typeName(t.elem)}`;
  return `?${t.id}`; // wirevec.py's name for an unnamed struct
}

const ref = (t: GobType): string => `${typeName(t)}(id ${t.id})`;

/** The type table of a stream, in wirevec.py's `gob_types` form. */
function prettyTypes(dec: GobDecoder): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const id of dec.definedTypeIds) {
    const t = dec.typeOf(id);
    assert.ok(t);
    const d: Record<string, unknown> = { kind: t.kind, name: 'name' in t ? t.name : '' };
    if (t.kind === 'struct') d.fields = t.fields.map((f) => `${f.name} ${ref(f.type)}`);
    if (t.kind === 'map') Object.assign(d, { key: ref(t.key), elem: ref(t.elem) });
    if (t.kind === 'slice') d.elem = ref(t.elem);
    out[String(id)] = d;
  }
  return out;
}

function decodeAll(payload: Buffer): { dec: GobDecoder; values: ReturnType<GobDecoder['next']>[] } {
  const dec = new GobDecoder(payload);
  const values = [];
  for (let v = dec.next(); v; v = dec.next()) values.push(v);
  return { dec, values };
}

for (const dir of DIRS) {
  test(`plain ${dir}: the stream splits into the recorded units, whatever the chunking`, () => {
    const stream = readStream('plain', dir);
    const whole = splitStream(stream);
    assert.deepEqual(whole.versions, { min: 1, max: 2 });
    assert.deepEqual(whole.flag, { encrypted: false, bytes: 1 });
    const header = units.find((u) => u.dir === dir && u.unit === 'protocol header');
    assert.equal(header?.hex, stream.subarray(0, 7).toString('hex'));
    const mu = messageUnits(dir);
    assert.equal(whole.messages.length, mu.length);
    whole.messages.forEach((m, i) => {
      const u = mu[i] as Unit;
      assert.equal(m.offset, u.offset, `message ${i} offset`);
      assert.equal(m.bytes.length + 4, u.len);
      assert.equal(m.bytes.length, u.length_prefix);
      assert.equal(m.bytes.toString('hex'), u.hex);
    });
    const rand = prng(dir === 'h1-to-h2' ? 1 : 2);
    for (let seed = 0; seed < 30; seed++) {
      const sizes = Array.from({ length: 50 }, () => 1 + randInt(rand, seed < 10 ? 8 : 300));
      assert.deepEqual(splitStream(stream, sizes).messages, whole.messages, `chunking ${seed}`);
    }
    assert.deepEqual(splitStream(stream, [1]).messages, whole.messages);
  });

  test(`plain ${dir}: the feature map matches the README table`, () => {
    const first = splitStream(readStream('plain', dir)).messages[0];
    assert.ok(first);
    const features = decodeFeatures(first.bytes);
    assert.deepEqual(Object.fromEntries(features), FEATURES[dir]);
    const u = messageUnits(dir)[0] as Unit;
    assert.deepEqual([...features], u.features_wire_order, 'wire order is kept');
    checkRequiredFeatures(features);
  });

  test(`plain ${dir}: every message decodes to what the Python decoder saw`, () => {
    const { messages } = splitStream(readStream('plain', dir));
    const counts = new Map<number, number>();
    messages.slice(1).forEach((m, i) => {
      const u = messageUnits(dir)[i + 1] as Unit;
      const msg = decodeProtocolMsg(m.bytes);
      assert.ok(msg);
      assert.equal(msg.tag, Number(u.tag));
      counts.set(msg.tag, (counts.get(msg.tag) ?? 0) + 1);
      if (msg.tag === ProtocolTag.Heartbeat) {
        assert.equal(msg.body.length, 0);
      } else if (msg.tag === ProtocolTag.OverlayControlMsg) {
        const c = decodeOverlayControlMsg(msg.body);
        assert.equal(c.overlayIndex, Number(u.overlay_index));
        assert.equal(c.subTag, Number(String(u.control_tag).split(' ')[0]));
        assert.equal(c.msg.toString('hex'), u.control_msg_hex);
        if (c.subTag === 3) assert.equal(c.msg.readUInt16BE(0), 1438);
      } else {
        const g = decodeGossipMessage(msg.tag, msg.body);
        assert.equal(g.channel, u.channel);
        assert.equal(formatPeerName(g.src), u.src);
        assert.equal(g.payload.toString('hex'), u.payload_hex);
        const gv = u.gob_values as Array<{ type: string }>;
        assert.deepEqual(gv.map((x) => x.type), ['string', 'uint', '[]byte']);
      }
    });
    // 16 or 15 messages after the features: gossip, broadcasts, 3 control messages, 1 heartbeat.
    assert.equal(counts.get(ProtocolTag.Heartbeat), 1);
    assert.equal(counts.get(ProtocolTag.OverlayControlMsg), 3);
    assert.equal((counts.get(ProtocolTag.Gossip) ?? 0) + (counts.get(ProtocolTag.GossipBroadcast) ?? 0), messages.length - 5);
  });

  test(`plain ${dir}: topology payloads decode to the recorded peers`, () => {
    let seen = 0;
    for (const u of messageUnits(dir).filter((x) => x.channel === 'topology')) {
      const peers = decodeTopologyUpdate(Buffer.from(String(u.payload_hex), 'hex'));
      const want = (u.payload_decoded as { peers: Array<{ peerSummary: Record<string, unknown>; connectionSummaries: Array<Record<string, unknown>> }> }).peers;
      assert.equal(peers.length, want.length);
      peers.forEach((p, i) => {
        const w = want[i];
        assert.ok(w);
        assert.equal(formatPeerName(p.peer.name), w.peerSummary.NameByte_decoded);
        assert.equal(p.peer.nickName, w.peerSummary.NickName);
        assert.equal(p.peer.uid, BigInt(w.peerSummary.UID as bigint));
        assert.equal(p.peer.version, BigInt((w.peerSummary.Version as number | undefined) ?? 0));
        assert.equal(p.peer.shortId, w.peerSummary.ShortID);
        assert.equal(p.peer.hasShortId, w.peerSummary.HasShortID);
        assert.deepEqual(
          p.connections.map((c) => [formatPeerName(c.remoteName), c.remoteTcpAddr, c.outbound, c.established]),
          w.connectionSummaries.map((c) => [c.NameByte_decoded, c.RemoteTCPAddr, c.Outbound ?? false, c.Established ?? false]),
        );
        seen++;
      });
    }
    assert.equal(seen, 6, 'three topology messages of two peers each');
  });

  test(`plain ${dir}: IPAM and DNS payloads decode generically to the recorded values and types`, () => {
    let seen = 0;
    for (const u of messageUnits(dir).filter((x) => x.channel === 'IPallocation' || x.channel === 'nameserver' || x.channel === 'topology')) {
      const { dec, values } = decodeAll(Buffer.from(String(u.payload_hex), 'hex'));
      const pd = u.payload_decoded as { gob_types: unknown; values?: Array<{ type: string; value: unknown }> };
      assert.deepEqual(prettyTypes(dec), pd.gob_types);
      if (pd.values) {
        assert.deepEqual(values.map((v) => v && typeName(v.type)), pd.values.map((v) => v.type));
        assert.deepEqual(values.map((v) => v && simplify(v.value)), bigints(pd.values.map((v) => v.value)));
      }
      seen++;
    }
    assert.ok(seen >= 10);
  });
}

test('plain: both feature maps give the connection UID of the sleeve heartbeats', () => {
  const conn = (dir: Dir) => BigInt(FEATURES[dir].ConnID as string);
  assert.equal(conn('h1-to-h2') ^ conn('h2-to-h1'), 0x0431db80eebfce18n);
  for (const dir of DIRS) {
    const f = decodeFeatures((splitStream(readStream('plain', dir)).messages[0] as { bytes: Buffer }).bytes);
    assert.equal(BigInt(f.get('ConnID') ?? ''), conn(dir));
  }
});

test('plain: IPAM ring tokens and DNS entries', () => {
  const ring = messageUnits('h1-to-h2').find((u) => u.channel === 'IPallocation' && hasRing(u));
  assert.ok(ring, 'the ring broadcast');
  const { values } = decodeAll(Buffer.from(String(ring.payload_hex), 'hex'));
  const state = simplify(values[0]?.value ?? null) as { Ring: { Start: bigint; End: bigint; Entries: Array<Record<string, bigint>>; Seeds: bigint[] } };
  assert.equal(state.Ring.Start, 0x0a200000n); // 10.32.0.0
  assert.equal(state.Ring.End, 0x0a300000n); // 10.48.0.0
  assert.deepEqual(state.Ring.Entries, [
    { Token: 0x0a200000n, Peer: 0x7a0000000001n, Version: 1n, Free: 524287n },
    { Token: 0x0a280000n, Peer: 0x7a0000000002n, Free: 524288n },
  ]);
  assert.deepEqual(state.Ring.Seeds, [0x7a0000000001n, 0x7a0000000002n]);

  const dns = messageUnits('h2-to-h1').filter((u) => u.channel === 'nameserver').at(-1);
  assert.ok(dns);
  const gd = simplify(decodeAll(Buffer.from(String(dns.payload_hex), 'hex')).values[0]?.value ?? null) as { Entries: Array<Record<string, unknown>> };
  assert.deepEqual(gd.Entries, [
    { ContainerID: 'ctr2', Origin: 0x7a0000000002n, Addr: 0x0a280000n, Hostname: 'db.weave.local.' },
    { ContainerID: 'ctr1', Origin: 0x7a0000000001n, Addr: 0x0a200001n, Hostname: 'web.weave.local.' },
  ]);
});

function hasRing(u: Unit): boolean {
  const values = (u.payload_decoded as { values?: Array<{ value: Record<string, unknown> }> } | undefined)?.values;
  return values?.[0]?.value.Ring !== undefined;
}
