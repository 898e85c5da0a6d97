// Re-encoding the captured messages: every gob stream decoded from the plain capture encodes
// back to the very same bytes (the decoder records the sender's type ids and the map order),
// and a whole direction of the connection is rebuilt byte for byte from decoded values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFeatures, encodeFeatures } from '../../../src/mesh/features.js';
import { encodeFrame } from '../../../src/mesh/framing.js';
import { decodeGossipMessage, encodeGossipMessage } from '../../../src/mesh/gossip-message.js';
import {
  decodeOverlayControlMsg, decodeProtocolMsg, encodeEncryptionFlag, encodeOverlayControlMsg, encodeProtocolHeader, encodeProtocolMsg, ProtocolTag,
} from '../../../src/mesh/protocol.js';
import { decodeTopologyUpdate, encodeTopologyUpdate } from '../../../src/mesh/topology-update.js';
import { decodeGobStream, encodeGobStream, type GobDecoded, type GobType } from '../../../src/mesh/gob/index.js';
import { DIRS, readStream, simplify, splitStream, type Dir } from './wire-fixtures.js';

/** Every gob stream in a direction: the features message, gossip bodies and their payloads. */
function gobStreams(dir: Dir): Array<{ what: string; bytes: Buffer }> {
  const out: Array<{ what: string; bytes: Buffer }> = [];
  splitStream(readStream('plain', dir)).messages.forEach((m, i) => {
    if (i === 0) {
      out.push({ what: `${dir} #0 features`, bytes: m.bytes });
      return;
    }
    const msg = decodeProtocolMsg(m.bytes);
    if (!msg || msg.tag < 4 || msg.tag > 6) return;
    out.push({ what: `${dir} #${i} body`, bytes: msg.body });
    out.push({ what: `${dir} #${i} payload`, bytes: decodeGossipMessage(msg.tag, msg.body).payload });
  });
  return out;
}

/** A deep copy of a type graph without ids, so the encoder picks its own (65 up). */
function withoutIds(t: GobType, seen = new Map<GobType, GobType>()): GobType {
  if (t.kind !== 'slice' && t.kind !== 'array' && t.kind !== 'map' && t.kind !== 'struct') {
    return 'name' in t ? { kind: t.kind, name: t.name } : t;
  }
  const done = seen.get(t);
  if (done) return done;
  if (t.kind === 'struct') {
    const c = { kind: 'struct' as const, name: t.name, fields: [] as Array<{ name: string; type: GobType }> };
    seen.set(t, c);
    for (const f of t.fields) c.fields.push({ name: f.name, type: withoutIds(f.type, seen) });
    return c;
  }
  const c = { ...t } as GobType & { id?: number };
  delete c.id;
  seen.set(t, c);
  if (c.kind === 'map') c.key = withoutIds(c.key, seen);
  if (c.kind === 'slice' || c.kind === 'array' || c.kind === 'map') c.elem = withoutIds(c.elem, seen);
  return c;
}

/** Type shape without ids, for comparing streams whose ids differ. */
function shape(t: GobType, seen = new Set<GobType>()): unknown {
  if (seen.has(t)) return `<cycle ${'name' in t ? t.name : t.kind}>`;
  seen.add(t);
  switch (t.kind) {
    case 'struct':
      return { struct: t.name, fields: t.fields.map((f) => [f.name, shape(f.type, seen)]) };
    case 'slice':
      return { slice: t.name, elem: shape(t.elem, seen) };
    case 'array':
      return { array: t.name, len: t.len, elem: shape(t.elem, seen) };
    case 'map':
      return { map: t.name, key: shape(t.key, seen), elem: shape(t.elem, seen) };
    default:
      return t.kind;
  }
}

const all = DIRS.flatMap(gobStreams);

test('every captured gob stream re-encodes to the identical bytes', () => {
  assert.equal(all.length, 44, '2 feature maps + 21 gossip bodies + 21 payloads');
  for (const { what, bytes } of all) {
    const decoded = decodeGobStream(bytes);
    assert.ok(decoded.length > 0, what);
    assert.equal(encodeGobStream(decoded).toString('hex'), bytes.toString('hex'), what);
  }
});

test('with fresh type ids the bytes differ only in ids: same values, same type shapes', () => {
  let differ = 0;
  for (const { what, bytes } of all) {
    const decoded = decodeGobStream(bytes);
    const memo = new Map<GobType, GobType>();
    const fresh = encodeGobStream(decoded.map((d) => ({ type: withoutIds(d.type, memo), value: d.value })));
    if (!fresh.equals(bytes)) differ++;
    const again = decodeGobStream(fresh);
    assert.deepEqual(again.map((d: GobDecoded) => simplify(d.value)), decoded.map((d) => simplify(d.value)), what);
    assert.deepEqual(again.map((d) => shape(d.type)), decoded.map((d) => shape(d.type)), what);
    for (const d of again) if (d.typeId > 8) assert.ok(d.typeId >= 65 && d.typeId < 65 + 30, what);
  }
  assert.ok(differ >= 20, 'user types were renumbered from 65');
});

for (const dir of DIRS) {
  test(`plain ${dir}: the whole direction is rebuilt byte for byte from decoded values`, () => {
    const stream = readStream('plain', dir);
    const parts: Buffer[] = [encodeProtocolHeader(), encodeEncryptionFlag()];
    splitStream(stream).messages.forEach((m, i) => {
      if (i === 0) {
        parts.push(encodeFrame(encodeGobStream(decodeGobStream(m.bytes))));
        return;
      }
      const msg = decodeProtocolMsg(m.bytes);
      assert.ok(msg);
      if (msg.tag === ProtocolTag.OverlayControlMsg) {
        parts.push(encodeFrame(encodeProtocolMsg(msg.tag, encodeOverlayControlMsg(decodeOverlayControlMsg(msg.body)))));
      } else if (msg.tag === ProtocolTag.Heartbeat) {
        parts.push(encodeFrame(encodeProtocolMsg(ProtocolTag.Heartbeat)));
      } else {
        const g = decodeGossipMessage(msg.tag, msg.body);
        const payload = encodeGobStream(decodeGobStream(g.payload));
        parts.push(encodeFrame(encodeGossipMessage({ ...g, payload })));
      }
    });
    assert.equal(Buffer.concat(parts).toString('hex'), stream.toString('hex'));
  });

  test(`plain ${dir}: encodeFeatures matches Go's bytes but for the type id (74 there, 65 here)`, () => {
    const original = (splitStream(readStream('plain', dir)).messages[0] as { bytes: Buffer }).bytes;
    const features = decodeFeatures(original);
    const ours = encodeFeatures(features); // same (wire) key order
    assert.deepEqual(decodeFeatures(ours), features);
    // -74 = ff93, 74 = ff94; -65 = ff81, 65 = ff82: same lengths, so a byte swap aligns them.
    const h = ours.toString('hex');
    assert.ok(h.startsWith('0eff81040102ff8200010c010c0000'));
    assert.equal(h.replace('0eff81040102ff82', '0eff93040102ff94').replace('ff82000', 'ff94000'), original.toString('hex'));
    assert.deepEqual(decodeFeatures(encodeFeatures(Object.fromEntries(features))), features);
  });

  test(`plain ${dir}: topology updates re-encode to the same values and types`, () => {
    let n = 0;
    for (const { bytes } of gobStreams(dir).filter((s) => s.what.endsWith('payload'))) {
      const original = decodeGobStream(bytes);
      if ((original[0]?.type as { name?: string }).name !== 'peerSummary') continue;
      const peers = decodeTopologyUpdate(bytes);
      const ours = encodeTopologyUpdate(peers);
      assert.deepEqual(decodeTopologyUpdate(ours), peers);
      const again = decodeGobStream(ours);
      assert.deepEqual(again.map((d) => simplify(d.value)), original.map((d) => simplify(d.value)));
      assert.deepEqual(again.map((d) => shape(d.type)), original.map((d) => shape(d.type)));
      assert.equal(ours.length, bytes.length, 'ids 65..67 encode as long as 75..77');
      n++;
    }
    assert.equal(n, 3);
  });
}
