// Property: random values of random gob types (seeded) survive encode → decode, as Go's rules
// say they should (struct fields that Go omits come back absent), and re-encoding what was
// decoded gives the same bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GOB_BOOL, GOB_BYTES, GOB_COMPLEX, GOB_FLOAT, GOB_INT, GOB_INTERFACE, GOB_STRING, GOB_UINT, GobEncoder, decodeGobStream, encodeGobStream,
  type GobStructType, type GobType, type GobValue,
} from '../../../src/mesh/gob/index.js';
import { prng, randInt } from './wire-fixtures.js';

type Rand = () => number;
const BASICS = [GOB_BOOL, GOB_INT, GOB_UINT, GOB_FLOAT, GOB_BYTES, GOB_STRING, GOB_COMPLEX, GOB_INTERFACE];
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[randInt(rand, xs.length)] as T;

// `indirect`: reached through a slice or map, where Go allows a type to contain itself.
function genType(rand: Rand, depth: number, structs: GobStructType[], indirect = false): GobType {
  const r = rand();
  if (depth <= 0 || r < 0.35) return pick(rand, BASICS);
  const name = rand() < 0.5 ? '' : `T${randInt(rand, 1000)}`;
  if (r < 0.5) return { kind: 'slice', name, elem: genType(rand, depth - 1, structs, true) };
  if (r < 0.58) return { kind: 'array', name, elem: genType(rand, depth - 1, structs), len: randInt(rand, 4) };
  if (r < 0.7) return { kind: 'map', name, key: genType(rand, depth - 1, structs, true), elem: genType(rand, depth - 1, structs, true) };
  if (r < 0.74) return { kind: pick(rand, ['gobEncoder', 'binaryMarshaler', 'textMarshaler'] as const), name: name || 'Opaque' };
  if (r < 0.8 && indirect && structs.length > 0) return pick(rand, structs); // shared or recursive
  const s: GobStructType = { kind: 'struct', name: name || `S${randInt(rand, 1000)}`, fields: [] };
  structs.push(s);
  const n = randInt(rand, 7);
  for (let i = 0; i < n; i++) s.fields.push({ name: `F${i}_${randInt(rand, 99)}`, type: genType(rand, depth - 1, structs) });
  return s;
}

function genString(rand: Rand): string {
  const n = randInt(rand, 8);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rand();
    const cp = r < 0.6 ? 32 + randInt(rand, 95) : r < 0.8 ? 0xa0 + randInt(rand, 0x700) : r < 0.9 ? 0x4e00 + randInt(rand, 0x5000) : 0x1f300 + randInt(rand, 0x300);
    s += String.fromCodePoint(cp);
  }
  return s;
}

function genUint(rand: Rand): bigint | number {
  const r = rand();
  if (r < 0.2) return 0n;
  if (r < 0.4) return randInt(rand, 300); // numbers are accepted for ints
  if (r < 0.5) return 2n ** 64n - 1n;
  return BigInt.asUintN(64, BigInt(randInt(rand, 2 ** 31)) * BigInt(randInt(rand, 2 ** 31)) * BigInt(1 + randInt(rand, 2 ** 6)));
}

function genFloat(rand: Rand): number {
  const r = rand();
  if (r < 0.15) return 0;
  if (r < 0.2) return pick(rand, [Infinity, -Infinity, NaN, -0, Number.MAX_VALUE, Number.MIN_VALUE]);
  return (rand() - 0.5) * 10 ** randInt(rand, 40);
}

function genValue(rand: Rand, t: GobType, depth: number): GobValue {
  const count = () => (depth > 6 ? 0 : randInt(rand, 4));
  switch (t.kind) {
    case 'bool':
      return rand() < 0.5;
    case 'uint':
      return genUint(rand);
    case 'int': {
      const u = genUint(rand);
      const v = BigInt.asIntN(64, BigInt(u));
      return typeof u === 'number' && rand() < 0.5 ? -u : v;
    }
    case 'float':
      return genFloat(rand);
    case 'complex':
      return { kind: 'complex', re: genFloat(rand), im: genFloat(rand) };
    case 'string':
      return genString(rand);
    case 'interface':
      return null;
    case 'slice':
      return Array.from({ length: count() }, () => genValue(rand, t.elem, depth + 1));
    case 'array':
      return Array.from({ length: t.len }, () => genValue(rand, t.elem, depth + 1));
    case 'map': {
      const m = new Map<GobValue, GobValue>();
      for (let i = count(); i > 0; i--) {
        const k = genValue(rand, t.key, depth + 1);
        // 5 and 5n are one gob key: use the decoded form so the map has no duplicates.
        m.set(typeof k === 'number' && (t.key.kind === 'int' || t.key.kind === 'uint') ? BigInt(k) : k, genValue(rand, t.elem, depth + 1));
      }
      return m;
    }
    case 'struct': {
      const fields = new Map<string, GobValue>();
      for (const f of t.fields) {
        if (rand() < 0.8 && (depth < 6 || f.type.kind !== 'struct')) fields.set(f.name, genValue(rand, f.type, depth + 1));
      }
      return { kind: 'struct', name: 'ignored by the encoder', fields };
    }
    default:
      return Buffer.from(Array.from({ length: count() * 3 }, () => randInt(rand, 256)));
  }
}

/** What the decoder must return: ints as bigint, struct names from the type, Go-omitted fields gone. */
function expected(t: GobType, v: GobValue): GobValue {
  switch (t.kind) {
    case 'int':
    case 'uint':
      return BigInt(v as bigint | number);
    case 'slice':
    case 'array':
      return (v as GobValue[]).map((e) => expected(t.elem, e));
    case 'map': {
      const out = new Map<GobValue, GobValue>();
      for (const [k, e] of v as Map<GobValue, GobValue>) {
        out.set(expected(t.key, k), expected(t.elem, e));
      }
      return out;
    }
    case 'struct': {
      const fields = new Map<string, GobValue>();
      const given = (v as { fields: Map<string, GobValue> }).fields;
      for (const f of t.fields) {
        if (!given.has(f.name)) continue;
        const fv = given.get(f.name) as GobValue;
        if (!omitted(f.type, fv)) fields.set(f.name, expected(f.type, fv));
      }
      return { kind: 'struct', name: t.name, fields };
    }
    default:
      return v;
  }
}

function omitted(t: GobType, v: GobValue): boolean {
  switch (t.kind) {
    case 'bool':
      return v === false;
    case 'int':
    case 'uint':
      return BigInt(v as bigint | number) === 0n;
    case 'float':
      return v === 0;
    case 'complex':
      return (v as { re: number; im: number }).re === 0 && (v as { re: number; im: number }).im === 0;
    case 'string':
      return v === '';
    case 'bytes':
    case 'slice':
      return (v as { length: number }).length === 0;
    case 'interface':
      return v === null;
    default:
      return false;
  }
}

test('random types and values round-trip (2000 seeded cases)', () => {
  let structs = 0;
  let bytes = 0;
  for (let seed = 1; seed <= 2000; seed++) {
    const rand = prng(seed);
    const shared: GobStructType[] = [];
    const items = Array.from({ length: 1 + randInt(rand, 3) }, () => {
      const type = genType(rand, 1 + randInt(rand, 4), shared);
      return { type, value: genValue(rand, type, 0) };
    });
    structs += shared.length;
    const enc = new GobEncoder();
    for (const it of items) enc.encode(it.type, it.value);
    const buf = enc.toBuffer();
    bytes += buf.length;
    const decoded = decodeGobStream(buf);
    assert.equal(decoded.length, items.length, `seed ${seed}`);
    decoded.forEach((d, i) => {
      const it = items[i]!;
      assert.deepStrictEqual(d.value, expected(it.type, it.value), `seed ${seed} item ${i}`);
      assert.equal(d.type.kind, it.type.kind);
    });
    assert.ok(encodeGobStream(decoded).equals(buf), `seed ${seed}: re-encoding the decoded values gives the same bytes`);
  }
  assert.ok(structs > 1000 && bytes > 50_000, `coverage: ${structs} struct types, ${bytes} bytes`);
});
