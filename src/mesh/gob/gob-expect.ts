// Typed access to decoded gob values, for codecs of known Go types (features, gossip, topology).
//
// Mirrors what Go's decoder does when it decodes into a local type: fields are matched by
// name, wire fields the local type lacks are ignored, missing fields are zero values, and a
// field whose wire type does not match (say int where uint is expected) is an error. Every
// failure is DECODE_FAILED, so codecs built on this are total.
import {
  gobDecodeError, describeGobType, type GobDecoded, type GobField, type GobStruct, type GobStructType, type GobType, type GobValue,
} from './gob-type.js';

/** A value with the type it was decoded as. */
export interface GobTyped {
  readonly type: GobType;
  readonly value: GobValue;
}

function mismatch(what: string, want: string, t: GobType): never {
  throw gobDecodeError(`${what}: expected ${want}, received ${describeGobType(t)}`);
}

export function expectString(d: GobTyped, what: string): string {
  if (d.type.kind !== 'string' || typeof d.value !== 'string') mismatch(what, 'string', d.type);
  return d.value as string;
}

export function expectUint(d: GobTyped, what: string): bigint {
  if (d.type.kind !== 'uint' || typeof d.value !== 'bigint') mismatch(what, 'uint', d.type);
  return d.value as bigint;
}

export function expectInt(d: GobTyped, what: string): bigint {
  if (d.type.kind !== 'int' || typeof d.value !== 'bigint') mismatch(what, 'int', d.type);
  return d.value as bigint;
}

/** A uint that must fit `bits` bits (Go refuses to decode 70000 into a uint16). */
export function expectUintBits(d: GobTyped, what: string, bits: number): number {
  const v = expectUint(d, what);
  if (v >= 1n << BigInt(bits)) throw gobDecodeError(`${what}: ${v} overflows uint${bits}`);
  return Number(v);
}

export function expectBool(d: GobTyped, what: string): boolean {
  if (d.type.kind !== 'bool' || typeof d.value !== 'boolean') mismatch(what, 'bool', d.type);
  return d.value as boolean;
}

export function expectBytes(d: GobTyped, what: string): Buffer {
  if (d.type.kind !== 'bytes' || !Buffer.isBuffer(d.value)) mismatch(what, '[]byte', d.type);
  return d.value as Buffer;
}

/** Elements of a slice or array, each with the element type. */
export function expectList(d: GobTyped, what: string): GobTyped[] {
  const t = d.type;
  if ((t.kind !== 'slice' && t.kind !== 'array') || !Array.isArray(d.value)) return mismatch(what, 'slice', t);
  return d.value.map((value) => ({ type: t.elem, value }));
}

/** Entries of a map in wire order, keys and values with their types. */
export function expectMap(d: GobTyped, what: string): Array<[GobTyped, GobTyped]> {
  const t = d.type;
  if (t.kind !== 'map' || !(d.value instanceof Map)) return mismatch(what, 'map', t);
  return [...d.value].map(([k, v]) => [{ type: t.key, value: k }, { type: t.elem, value: v }]);
}

export function expectStruct(d: GobTyped, what: string): GobStructView {
  const t = d.type;
  const v = d.value;
  if (t.kind !== 'struct' || typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Map || Buffer.isBuffer(v) || v.kind !== 'struct') {
    return mismatch(what, 'struct', t);
  }
  return new GobStructView(t, v, what);
}

// Name → field per struct type, built once: a lookup must not cost O(fields), or a peer's
// struct with many junk fields and many values makes every lookup a scan. First name wins,
// as `fields.find` did.
const FIELD_INDEX = new WeakMap<GobStructType, Map<string, GobField>>();

function fieldIndex(t: GobStructType): Map<string, GobField> {
  let m = FIELD_INDEX.get(t);
  if (!m) {
    m = new Map();
    for (const f of t.fields) if (!m.has(f.name)) m.set(f.name, f);
    FIELD_INDEX.set(t, m);
  }
  return m;
}

/** A decoded struct seen as a Go struct: named fields, zero when absent. */
export class GobStructView {
  constructor(
    readonly type: GobStructType,
    readonly value: GobStruct,
    private readonly what: string,
  ) {}

  /** The field as sent, or undefined when the wire type lacks it or it was omitted (zero). */
  field(name: string): GobTyped | undefined {
    const f = fieldIndex(this.type).get(name);
    if (!f || !this.value.fields.has(name)) return undefined;
    return { type: f.type, value: this.value.fields.get(name) as GobValue };
  }

  private typed<T>(name: string, zero: T, get: (d: GobTyped, what: string) => T): T {
    const f = fieldIndex(this.type).get(name);
    if (!f) return zero;
    const what = `${this.what}.${name}`;
    if (!this.value.fields.has(name)) {
      get({ type: f.type, value: zeroProbe(f.type) }, what); // type check even when omitted
      return zero;
    }
    return get({ type: f.type, value: this.value.fields.get(name) as GobValue }, what);
  }

  string(name: string): string {
    return this.typed(name, '', expectString);
  }

  uint(name: string): bigint {
    return this.typed(name, 0n, expectUint);
  }

  uintBits(name: string, bits: number): number {
    return this.typed(name, 0, (d, w) => expectUintBits(d, w, bits));
  }

  int(name: string): bigint {
    return this.typed(name, 0n, expectInt);
  }

  bool(name: string): boolean {
    return this.typed(name, false, expectBool);
  }

  bytes(name: string): Buffer {
    return this.typed(name, Buffer.alloc(0), expectBytes);
  }

  list(name: string): GobTyped[] {
    return this.typed(name, [], expectList);
  }
}

// A value of the right JS shape for `t`, used only to type-check omitted fields.
function zeroProbe(t: GobType): GobValue {
  switch (t.kind) {
    case 'bool':
      return false;
    case 'int':
    case 'uint':
      return 0n;
    case 'string':
      return '';
    case 'bytes':
      return Buffer.alloc(0);
    case 'slice':
    case 'array':
      return [];
    default:
      return null;
  }
}

/** Exactly `n` values, or DECODE_FAILED. */
export function expectCount(values: readonly GobDecoded[], n: number, what: string): void {
  if (values.length !== n) throw gobDecodeError(`${what}: expected ${n} values, received ${values.length}`);
}
