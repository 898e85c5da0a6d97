// The gob codec on hand-made inputs: Go's documented encodings, Go's struct rules, the type
// table, and the errors (DECODE_FAILED for bad bytes, INVALID_ARGUMENT for bad values).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeaveError } from '../../../src/core/errors.js';
import {
  GOB_BOOL, GOB_BYTES, GOB_COMPLEX, GOB_FLOAT, GOB_INT, GOB_INTERFACE, GOB_STRING, GOB_UINT, GobEncoder,
  decodeGobStream, encodeGobStream, encodeGobValue, gobArray, gobMap, gobSlice, gobStruct, gobStructValue,
  type GobSliceType, type GobStructType, type GobType, type GobValue,
} from '../../../src/mesh/gob/index.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const one = (t: GobType, v: GobValue): string => encodeGobValue(t, v).toString('hex');
const decodeOne = (b: Buffer): GobValue => {
  const d = decodeGobStream(b);
  assert.equal(d.length, 1);
  return (d[0] as { value: GobValue }).value;
};
const decodeFails = (b: Buffer, re?: RegExp) =>
  assert.throws(() => decodeGobStream(b), (e) => isWeaveError(e, 'DECODE_FAILED') && (!re || re.test(e.message)));

test("Go's documentation example: Point{22, 33}", () => {
  const point = gobStruct('Point', [['X', GOB_INT], ['Y', GOB_INT]]);
  const bytes = encodeGobValue(point, gobStructValue('Point', [['X', 22n], ['Y', 33n]]));
  assert.equal(bytes.toString('hex'), hex(`1f ff 81 03 01 01 05 50 6f 69 6e 74 01 ff 82 00 01 02 01 01 58 01 04 00 01 01 59 01 04 00 00 00
    07 ff 82 01 2c 01 42 00`).toString('hex'));
  const [d] = decodeGobStream(bytes);
  assert.equal(d?.typeId, 65);
  assert.deepEqual(d?.value, gobStructValue('Point', [['X', 22n], ['Y', 33n]]));
  assert.deepEqual((d?.type as GobStructType).fields.map((f) => [f.name, f.type]), [['X', GOB_INT], ['Y', GOB_INT]]);
});

test('uint encodings: one byte below 128, else negated byte count and big-endian bytes', () => {
  const cases: Array<[bigint, string]> = [
    [0n, '00'], [7n, '07'], [127n, '7f'], [128n, 'ff80'], [255n, 'ffff'], [256n, 'fe0100'],
    [0x7a0000000001n, 'fa7a0000000001'], [17594046188109229802n, 'f8f42a9bca7410eeea'], [2n ** 64n - 1n, 'f8ffffffffffffffff'],
  ];
  for (const [v, h] of cases) {
    const msg = one(GOB_UINT, v);
    assert.equal(msg.slice(6), h, String(v)); // len, type id 3 (06), singleton 00
    assert.equal(decodeOne(hex(msg)), v);
  }
  assert.equal(one(GOB_UINT, 300), one(GOB_UINT, 300n), 'numbers are accepted');
});

test('int encodings: zig-zag, (n<<1) or (^n<<1)|1', () => {
  const cases: Array<[bigint, string]> = [
    [0n, '00'], [-1n, '01'], [1n, '02'], [-2n, '03'], [63n, '7e'], [-64n, '7f'], [64n, 'ff80'], [-129n, 'fe0101'],
    [2n ** 63n - 1n, 'f8fffffffffffffffe'], [-(2n ** 63n), 'f8ffffffffffffffff'],
  ];
  for (const [v, h] of cases) {
    const msg = one(GOB_INT, v);
    assert.equal(msg.slice(6), h, String(v));
    assert.equal(decodeOne(hex(msg)), v);
  }
});

test('float encodings: IEEE bits byte-reversed', () => {
  assert.equal(one(GOB_FLOAT, 17).slice(6), 'fe3140');
  assert.equal(one(GOB_FLOAT, 0).slice(6), '00');
  assert.equal(one(GOB_FLOAT, -0).slice(6), 'ff80');
  for (const v of [17, 0.1, -2.5e-300, 1e308, Infinity, -Infinity, Number.MIN_VALUE]) assert.equal(decodeOne(hex(one(GOB_FLOAT, v))), v);
  assert.ok(Number.isNaN(decodeOne(hex(one(GOB_FLOAT, NaN)))));
  assert.ok(Object.is(decodeOne(hex(one(GOB_FLOAT, -0))), -0));
  assert.deepEqual(decodeOne(hex(one(GOB_COMPLEX, { kind: 'complex', re: 1.5, im: -2 }))), { kind: 'complex', re: 1.5, im: -2 });
});

test('basic top-level values are sent even when zero; strings and bytes are length-prefixed', () => {
  assert.equal(one(GOB_UINT, 0n), '03060000');
  assert.equal(one(GOB_BOOL, true), '03020001');
  assert.equal(one(GOB_STRING, 'topology'), '0b0c0008746f706f6c6f6779');
  assert.equal(one(GOB_BYTES, Buffer.from('7a0000000001', 'hex')), '090a00067a0000000001');
  assert.equal(one(GOB_STRING, ''), '030c0000');
  assert.equal(decodeOne(hex('030c0000')), '');
  assert.equal(decodeOne(hex(one(GOB_STRING, '\ufeffnoël ☃'))), '\ufeffnoël ☃', 'UTF-8 and a leading BOM survive');
});

test("struct rules: zero fields omitted, but maps (non-nil), arrays and nested structs are sent", () => {
  const inner = gobStruct('Inner', [['A', GOB_UINT]]);
  const t = gobStruct('S', [
    ['B', GOB_BOOL], ['I', GOB_INT], ['S', GOB_STRING], ['L', gobSlice(GOB_UINT)], ['M', gobMap(GOB_STRING, GOB_UINT)],
    ['N', inner], ['A', gobArray(GOB_UINT, 2)], ['X', GOB_INTERFACE], ['Z', GOB_BYTES],
  ]);
  const zeros = gobStructValue('S', [
    ['B', false], ['I', 0n], ['S', ''], ['L', []], ['M', new Map()], ['N', gobStructValue('Inner', [])], ['A', [0n, 0n]], ['X', null], ['Z', Buffer.alloc(0)],
  ]);
  const [d] = decodeGobStream(encodeGobValue(t, zeros));
  assert.deepEqual(d?.value, gobStructValue('S', [['M', new Map()], ['N', gobStructValue('Inner', [])], ['A', [0n, 0n]]]));
  const absent = decodeGobStream(encodeGobValue(t, gobStructValue('S', [])));
  assert.deepEqual(absent[0]?.value, gobStructValue('S', []), 'absent = nil map, nothing sent');
  // Field deltas: only field 4 (M) and 8 (Z) → deltas 5 and 4.
  const some = encodeGobValue(t, gobStructValue('S', [['M', new Map([['k', 1n]])], ['Z', Buffer.from([9])]])).toString('hex');
  assert.ok(some.endsWith('05' + '01016b01' + '04' + '0109' + '00'), some);
});

test('recursive types, arrays, struct-keyed maps and opaque marshalers round-trip', () => {
  const node: GobStructType = { kind: 'struct', name: 'Node', fields: [] };
  node.fields.push({ name: 'Val', type: GOB_INT }, { name: 'Kids', type: gobSlice(node) });
  const leaf = (v: bigint) => gobStructValue('Node', [['Val', v]]);
  const tree = gobStructValue('Node', [['Val', 1n], ['Kids', [leaf(2n), gobStructValue('Node', [['Kids', [leaf(-3n)]]])]]]);
  const [d] = decodeGobStream(encodeGobValue(node, tree));
  assert.deepEqual(d?.value, tree);
  const kids = (d?.type as GobStructType).fields[1]?.type;
  assert.equal(kids?.kind === 'slice' && kids.elem, d?.type, 'the decoded type graph is cyclic like the Go type');

  const id = gobStruct('NodeID', [['Name', GOB_UINT], ['UID', GOB_UINT]]);
  const m = gobMap(id, gobArray(GOB_STRING, 2));
  const mv = new Map<GobValue, GobValue>([[gobStructValue('NodeID', [['Name', 1n], ['UID', 2n]]), ['a', '']]]);
  assert.deepEqual(decodeOne(encodeGobValue(m, mv)), mv);

  const opaque: GobType = { kind: 'binaryMarshaler', name: 'Time' };
  const s = gobStruct('T', [['When', opaque]]);
  const v = gobStructValue('T', [['When', Buffer.from([1, 2, 3])]]);
  assert.deepEqual(decodeOne(encodeGobValue(s, v)), v);
});

test('one stream defines each type once, and decoded ids are reused when re-encoding', () => {
  const t = gobStruct('P', [['A', GOB_UINT]]);
  const enc = new GobEncoder().encode(t, gobStructValue('P', [['A', 1n]])).encode(t, gobStructValue('P', [['A', 2n]]));
  const bytes = enc.toBuffer();
  assert.equal(bytes.toString('hex').split('ff81').length - 1, 1, 'one definition (-65)');
  const decoded = decodeGobStream(bytes);
  assert.deepEqual(decoded.map((d) => d.typeId), [65, 65]);
  assert.ok(encodeGobStream(decoded).equals(bytes));
  // A preferred id that is taken falls back to the next free one.
  const a: GobType = { ...gobStruct('A', [['X', GOB_UINT]]), id: 70 };
  const b: GobType = { ...gobStruct('B', [['X', GOB_UINT]]), id: 70 };
  const both = decodeGobStream(new GobEncoder().encode(a, gobStructValue('A', [])).encode(b, gobStructValue('B', [])).toBuffer());
  assert.deepEqual(both.map((d) => d.typeId), [70, 65]);
});

test('the encoder refuses values that do not fit, and leaves the stream unchanged', () => {
  const t = gobStruct('P', [['A', GOB_UINT], ['L', gobSlice(GOB_STRING)]]);
  const enc = new GobEncoder().encode(GOB_STRING, 'x');
  const before = enc.toBuffer();
  const bad: Array<[GobType, GobValue]> = [
    [t, gobStructValue('P', [['A', -1n]])], [t, gobStructValue('P', [['L', [1n]]])], [t, gobStructValue('P', [['Nope', 1n]])],
    [t, 'not a struct'], [GOB_UINT, 2n ** 64n], [GOB_INT, 2n ** 63n], [GOB_UINT, 1.5], [GOB_INTERFACE, 'x'], [gobArray(GOB_UINT, 2), [1n]],
  ];
  for (const [type, value] of bad) {
    assert.throws(() => enc.encode(type, value), (e) => isWeaveError(e, 'INVALID_ARGUMENT'), String(value));
    assert.ok(enc.toBuffer().equals(before));
  }
  const cyclic: GobValue[] = [];
  cyclic.push(cyclic);
  const self: GobType = gobSlice(GOB_BOOL);
  (self as { elem: GobType }).elem = self;
  assert.throws(() => enc.encode(self, cyclic), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  assert.deepEqual(decodeGobStream(enc.encode(t, gobStructValue('P', [['A', 5]])).toBuffer()).map((d) => d.typeId), [6, 65]);
});

test('malformed streams fail with DECODE_FAILED and say why', () => {
  decodeFails(hex('f8 10 00 00 00 00 00 00 00 06 00 00'), /message length/); // 2^60-byte message
  decodeFails(hex('0b 0a 00 f8 10 00 00 00 00 00 00 00'), /\[\]byte length/); // 2^60-byte []byte
  decodeFails(hex('08 0a 00 fb 01 00 00 00 00'), /\[\]byte length/); // 2^32-byte []byte
  decodeFails(hex('09 ff82 00 fb 01 00 00 00 00'), /not defined/);
  decodeFails(hex('05 0c 00 03 61 62'), /string length/);
  decodeFails(hex('03 06 00 80'), /byte count/);
  decodeFails(hex('03 06 01 00'), /singleton/);
  decodeFails(hex('04 06 00 00 00'), /extra data/);
  decodeFails(hex('00'), /empty message/);
  decodeFails(hex('05 0c 00 02 c3 28'), /UTF-8/);
  decodeFails(hex('03 ff 82 00'), /not defined/); // value of undefined type 65
  decodeFails(hex('02 0c 00'), /unexpected end/);
  decodeFails(hex('10 01 00'), /exceeds/);
  decodeFails(hex('03 20 00 00'), /not defined/); // id 16 (wireType) is not a value type
  const full = encodeGobValue(gobSlice(GOB_UINT), []);
  const def = full.subarray(0, 1 + (full[0] ?? 0)); // the "-65 = []uint" definition only
  decodeFails(Buffer.concat([def, def]), /duplicate type/);
  decodeFails(hex('09 7f 02 01 02 7e 00 01 06 00'), /duplicate type/); // defining id 64 (< 65)
  const point = encodeGobValue(gobStruct('P', [['X', GOB_INT]]), gobStructValue('P', [['X', 1n]]));
  decodeFails(Buffer.concat([point.subarray(0, point.length - 6), hex('04 ff82 05 00')]), /field number/);
  decodeFails(hex('04 10 00 01 61'), /interface/); // a top-level interface (id 8) with a concrete type name
  assert.equal(decodeOne(hex('03 10 00 00')), null, 'a nil interface');
  // type R []R: one definition (a stream may make only 64), values 151 deep
  const deep: GobSliceType = { kind: 'slice', name: 'R', elem: GOB_BOOL };
  deep.elem = deep;
  let value: GobValue = [];
  for (let i = 0; i < 150; i++) value = [value];
  decodeFails(encodeGobValue(deep, value), /nest/);
  assert.equal(decodeGobStream(encodeGobValue(deep, value), { maxDepth: 200 }).length, 1);
});
