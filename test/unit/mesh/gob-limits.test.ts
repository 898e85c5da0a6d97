// The gob decoder's resource limits against a hostile peer: field lookups are O(1), a stream
// may define only so many types and fields, and the values it builds are bounded by its size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isWeaveError } from '../../../src/core/errors.js';
import { GobWriter } from '../../../src/mesh/gob/gob-bytes.js';
import {
  GOB_UINT, GobEncoder, decodeGobStream, encodeGobValue, expectStruct, gobSlice, gobStruct, gobStructValue,
  type GobType,
} from '../../../src/mesh/gob/index.js';

const decodeFails = (b: Buffer, re: RegExp) =>
  assert.throws(() => decodeGobStream(b), (e) => isWeaveError(e, 'DECODE_FAILED') && re.test(e.message));

const wide = (n: number, name = 'Wide'): GobType =>
  gobStruct(name, Array.from({ length: n }, (_, i) => [`F${i}`, GOB_UINT] as const));

test('struct field lookups do not scan the fields (many fields, many lookups, fast)', () => {
  const n = 50_000;
  const t = wide(n);
  const view = expectStruct({ type: t, value: gobStructValue('Wide', [[`F${n - 1}`, 7n]]) }, 'wide');
  const start = performance.now();
  let sum = 0n;
  for (let i = 0; i < 50_000; i++) sum += view.uint(`F${n - 1}`) + view.uint('Missing') + (view.field(`F${n - 2}`) ? 1n : 0n);
  assert.equal(sum, 7n * 50_000n);
  assert.ok(performance.now() - start < 1000, `${performance.now() - start} ms`);
});

test('a struct definition with more than 64 fields is refused; 64 are fine', () => {
  const ok = decodeGobStream(encodeGobValue(wide(64), gobStructValue('Wide', [['F63', 1n]])));
  assert.equal(ok.length, 1);
  decodeFails(encodeGobValue(wide(65), gobStructValue('Wide', [['F64', 1n]])), /65 fields, at most 64/);
});

test('a peer struct with 55k fields and many values is refused fast', () => {
  const enc = new GobEncoder();
  const t = wide(55_000);
  enc.encode(gobSlice(t), Array.from({ length: 1000 }, () => gobStructValue('Wide', [['F54999', 1n]])));
  const start = performance.now();
  decodeFails(enc.toBuffer(), /fields, at most 64/);
  assert.ok(performance.now() - start < 1000, `${performance.now() - start} ms`);
});

test('a stream with more than 64 type definitions is refused; 64 are fine', () => {
  const stream = (n: number): Buffer => {
    const enc = new GobEncoder();
    for (let i = 0; i < n; i++) enc.encode(gobStruct(`T${i}`, [['A', GOB_UINT]]), gobStructValue(`T${i}`, [['A', 1n]]));
    return enc.toBuffer();
  };
  assert.equal(decodeGobStream(stream(64)).length, 64);
  decodeFails(stream(65), /more than 64 type definitions/);
});

test('a 10 MiB stream of empty struct elements is refused without building them all', () => {
  // Definitions for []struct{} from the encoder, then one value message of n one-byte elements.
  const t = gobSlice(gobStruct('E', []));
  const enc = new GobEncoder();
  const id = enc.idOf(t);
  const one = enc.encode(t, [gobStructValue('E', [])]).toBuffer();
  const valueMessage = (count: number): Buffer => {
    const head = new GobWriter();
    head.int(id);
    head.uint(0);
    head.uint(count);
    const prefix = new GobWriter();
    prefix.uint(head.length + count);
    return Buffer.concat([prefix.toBuffer(), head.toBuffer(), Buffer.alloc(count)]);
  };
  assert.deepEqual(one.subarray(one.length - valueMessage(1).length), valueMessage(1));
  const defs = one.subarray(0, one.length - valueMessage(1).length);
  const buf = Buffer.concat([defs, valueMessage(10 * 1024 * 1024)]);

  const heap0 = process.memoryUsage().heapUsed;
  const start = performance.now();
  decodeFails(buf, /too many values/);
  const ms = performance.now() - start;
  const heapDelta = process.memoryUsage().heapUsed - heap0;
  assert.ok(ms < 2000, `${ms} ms`);
  assert.ok(heapDelta < 500 * 1024 * 1024, `${heapDelta} bytes`);
});

test('a stream within the value budget still decodes (a slice of 30k small structs)', () => {
  const e = gobStruct('P', [['A', GOB_UINT]]);
  const buf = encodeGobValue(gobSlice(e), Array.from({ length: 30_000 }, (_, i) => gobStructValue('P', [['A', BigInt(i % 100)]])));
  const [d] = decodeGobStream(buf);
  assert.equal((d?.value as unknown[]).length, 30_000);
});
