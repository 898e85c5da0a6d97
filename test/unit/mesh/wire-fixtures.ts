// Shared helpers for the mesh tests: the captured wire vectors (copied from
// reference/wire-vectors into test/fixtures/wire-vectors), a stream splitter driven by
// MeshStreamReader, value views for comparing with the Python and Go decodes, and a PRNG.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseJsonBigInt } from '../../../src/core/go-json.js';
import { MeshStreamReader, type MeshStreamEvent } from '../../../src/mesh/framing.js';
import type { EncryptionFlag, ProtocolVersionRange } from '../../../src/mesh/protocol.js';
import type { GobType, GobValue } from '../../../src/mesh/gob/index.js';

export const fixtureDir = join(process.env.WEAVE_REPO_ROOT ?? process.cwd(), 'test/fixtures/wire-vectors');

export type Dir = 'h1-to-h2' | 'h2-to-h1';
export const DIRS: readonly Dir[] = ['h1-to-h2', 'h2-to-h1'];

export function readStream(run: 'plain' | 'encrypted', dir: Dir): Buffer {
  return Buffer.from(readFileSync(join(fixtureDir, run, `tcp-${dir}.hex`), 'utf8').trim(), 'hex');
}

export type Unit = Record<string, unknown> & { dir: Dir; offset: number; len: number; unit: string };

/** tcp-messages.jsonl, big integers kept exact. */
export function readUnits(run: 'plain' | 'encrypted'): Unit[] {
  return readFileSync(join(fixtureDir, run, 'tcp-messages.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => parseJsonBigInt(l) as Unit);
}

export function readGobcheck(dir: Dir): string {
  return readFileSync(join(fixtureDir, 'plain', `gobcheck-${dir}.txt`), 'utf8');
}

export interface SplitStream {
  versions: ProtocolVersionRange;
  flag: EncryptionFlag;
  /** Each length-prefixed message: offset of its prefix in the stream, and its bytes. */
  messages: Array<{ offset: number; bytes: Buffer }>;
}

/** Splits a recorded direction with MeshStreamReader, fed in the given chunk sizes (cycled). */
export function splitStream(stream: Buffer, chunkSizes: readonly number[] = [stream.length]): SplitStream {
  const reader = new MeshStreamReader();
  const events: MeshStreamEvent[] = [];
  let pos = 0;
  let i = 0;
  while (pos < stream.length) {
    const n = Math.max(1, chunkSizes[i++ % chunkSizes.length] ?? 1);
    events.push(...reader.push(stream.subarray(pos, pos + n)));
    pos += n;
  }
  let versions: ProtocolVersionRange | undefined;
  let flag: EncryptionFlag | undefined;
  const messages: SplitStream['messages'] = [];
  let offset = 0;
  for (const e of events) {
    if (e.kind === 'header') {
      versions = e.versions;
      offset = 7;
    } else if (e.kind === 'encryption') {
      flag = e.flag;
      offset += e.flag.bytes;
    } else {
      messages.push({ offset, bytes: e.bytes });
      offset += 4 + e.bytes.length;
    }
  }
  if (!versions || !flag) throw new Error('stream without header or flag');
  if (offset !== stream.length) throw new Error(`split ended at ${offset} of ${stream.length}`);
  return { versions, flag, messages };
}

/** Numbers from JSON as bigint, recursively, so they compare with decoded ints. */
export function bigints(v: unknown): unknown {
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (Array.isArray(v)) return v.map(bigints);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, bigints(x)]));
  return v;
}

/**
 * wirevec.py's `simplify`: structs as objects of the fields sent, []byte as {bytes: hex},
 * maps with scalar keys as objects (keys as text), other maps as [key, value] pairs.
 */
export function simplify(v: GobValue): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Buffer.isBuffer(v)) return { bytes: v.toString('hex') };
  if (Array.isArray(v)) return v.map(simplify);
  if (v instanceof Map) {
    const entries = [...v];
    if (entries.every(([k]) => typeof k === 'string' || typeof k === 'bigint')) {
      return Object.fromEntries(entries.map(([k, x]) => [String(k), simplify(x)]));
    }
    return entries.map(([k, x]) => [simplify(k), simplify(x)]);
  }
  if (v.kind === 'struct') return Object.fromEntries([...v.fields].map(([k, x]) => [k, simplify(x)]));
  return v;
}

/** What Go's json.Marshal of the decoded Go value shows: every struct field, zero-filled,
 * empty slices as null (Go decodes an absent or empty slice to nil). */
export function goView(t: GobType, v: GobValue | undefined): unknown {
  switch (t.kind) {
    case 'bool':
      return v ?? false;
    case 'int':
    case 'uint':
      return v ?? 0n;
    case 'string':
      return v ?? '';
    case 'bytes':
      return v === undefined || (Buffer.isBuffer(v) && v.length === 0) ? null : (v as Buffer).toString('base64');
    case 'slice':
      return Array.isArray(v) && v.length > 0 ? v.map((e) => goView(t.elem, e)) : null;
    case 'struct': {
      const fields = v && typeof v === 'object' && 'fields' in v ? v.fields : new Map<string, GobValue>();
      return Object.fromEntries(t.fields.map((f) => [f.name, goView(f.type, fields.get(f.name))]));
    }
    default:
      return v;
  }
}

/** mulberry32 (test/helpers/prng.ts), under the name these tests use. */
export { seeded as prng } from '../../helpers/prng.js';

export function randInt(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}
