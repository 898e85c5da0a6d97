// Go `encoding/gob`: the type and value model shared by the decoder and the encoder.
//
// Design note for src/mesh/gob/. Weave Net protocol 2 carries Go gob streams everywhere: the
// feature map of the handshake, the gossip envelope (channel, source, payload) and the
// topology, IPAM and DNS payloads. Gob is self-describing: a stream is a sequence of messages
// (uint byte count, then an int type id); a negative id introduces a type definition (a
// `wireType` value), a non-negative id a value of that type. Type ids 1..8 are the basic types
// and 16..23 the type-definition types themselves; user types get ids from 65 in the order the
// sending process first met them, so ids differ between processes and must be read, never
// assumed. This codec is general (no byte templates): the decoder keeps a type table per
// stream and turns every value into the model below; the encoder writes definitions for every
// non-basic type it meets (once per stream, pre-order as Go's `sendType`) and values with Go's
// rules (struct fields as deltas, zero fields omitted, a 0 delta before non-struct top-level
// values). Cost: linear in the bytes; allocation is bounded by the input length because every
// count is checked against the bytes that remain before anything is allocated.
//
// Invariants: a `GobType` may be cyclic (recursive Go types), so code walking types must keep
// a visited set; a decoded struct holds exactly the fields present on the wire (Go omits zero
// fields), in wire order; maps keep wire order.
import { WeaveError } from '../../core/errors.js';

/** Basic kinds, with Go's fixed type ids (gob `type.go`: tBool = 1 … tInterface = 8). */
export type GobBasicKind = 'bool' | 'int' | 'uint' | 'float' | 'bytes' | 'string' | 'complex' | 'interface';

export interface GobBasicType {
  readonly kind: GobBasicKind;
  /** Fixed builtin id (1..8). */
  readonly id: number;
}

/**
 * Composite types. `name` is the Go type name sent on the wire ('' for unnamed slices and
 * maps); it is informational. `id` is optional: the decoder sets it to the id the sender used,
 * and the encoder reuses it when it is free (so a decoded message re-encodes byte for byte);
 * an id below 65 marks the builtin definition types, which are never sent.
 */
export interface GobSliceType {
  readonly kind: 'slice';
  name: string;
  elem: GobType;
  id?: number;
}

export interface GobArrayType {
  readonly kind: 'array';
  name: string;
  elem: GobType;
  len: number;
  id?: number;
}

export interface GobMapType {
  readonly kind: 'map';
  name: string;
  key: GobType;
  elem: GobType;
  id?: number;
}

export interface GobField {
  readonly name: string;
  type: GobType;
}

export interface GobStructType {
  readonly kind: 'struct';
  name: string;
  readonly fields: GobField[];
  id?: number;
}

/** Types that implement GobEncoder, BinaryMarshaler or TextMarshaler: opaque bytes on the wire. */
export interface GobOpaqueType {
  readonly kind: 'gobEncoder' | 'binaryMarshaler' | 'textMarshaler';
  name: string;
  id?: number;
}

export type GobCompositeType = GobSliceType | GobArrayType | GobMapType | GobStructType | GobOpaqueType;
export type GobType = GobBasicType | GobCompositeType;

export interface GobStruct {
  readonly kind: 'struct';
  /** The struct's type name, as in its type definition. */
  readonly name: string;
  /** Fields present on the wire, in wire order; absent fields are Go zero values. */
  readonly fields: Map<string, GobValue>;
}

export interface GobComplex {
  readonly kind: 'complex';
  readonly re: number;
  readonly im: number;
}

/**
 * A decoded value. bool → boolean; int and uint → bigint (uint64 peer UIDs exceed 2^53; the
 * encoder also takes safe-integer numbers); float → number; string → string; []byte and opaque
 * marshaler bytes → Buffer; slice and array → array; map → Map in wire order; struct →
 * GobStruct; complex → GobComplex; a nil interface → null (non-nil interfaces are refused).
 */
export type GobValue =
  | boolean
  | bigint
  | number
  | string
  | Buffer
  | GobComplex
  | GobStruct
  | GobValue[]
  | Map<GobValue, GobValue>
  | null;

/** One top-level value read from a stream, with its type as defined in that stream. */
export interface GobDecoded {
  readonly typeId: number;
  readonly type: GobType;
  readonly value: GobValue;
}

export const GOB_BOOL: GobBasicType = Object.freeze({ kind: 'bool', id: 1 });
export const GOB_INT: GobBasicType = Object.freeze({ kind: 'int', id: 2 });
export const GOB_UINT: GobBasicType = Object.freeze({ kind: 'uint', id: 3 });
export const GOB_FLOAT: GobBasicType = Object.freeze({ kind: 'float', id: 4 });
export const GOB_BYTES: GobBasicType = Object.freeze({ kind: 'bytes', id: 5 });
export const GOB_STRING: GobBasicType = Object.freeze({ kind: 'string', id: 6 });
export const GOB_COMPLEX: GobBasicType = Object.freeze({ kind: 'complex', id: 7 });
export const GOB_INTERFACE: GobBasicType = Object.freeze({ kind: 'interface', id: 8 });

/** Builtin basic types by id. */
export const GOB_BASIC_BY_ID: ReadonlyMap<number, GobBasicType> = new Map(
  [GOB_BOOL, GOB_INT, GOB_UINT, GOB_FLOAT, GOB_BYTES, GOB_STRING, GOB_COMPLEX, GOB_INTERFACE].map((t) => [t.id, t]),
);

/** gob `firstUserId`: ids below this are reserved for builtin types. */
export const GOB_FIRST_USER_ID = 65;

export function gobSlice(elem: GobType, name = ''): GobSliceType {
  return { kind: 'slice', name, elem };
}

export function gobArray(elem: GobType, len: number, name = ''): GobArrayType {
  return { kind: 'array', name, elem, len };
}

export function gobMap(key: GobType, elem: GobType, name = ''): GobMapType {
  return { kind: 'map', name, key, elem };
}

export function gobStruct(name: string, fields: ReadonlyArray<readonly [string, GobType]>): GobStructType {
  return { kind: 'struct', name, fields: fields.map(([n, type]) => ({ name: n, type })) };
}

export function gobStructValue(name: string, fields: Iterable<readonly [string, GobValue]>): GobStruct {
  return { kind: 'struct', name, fields: new Map(fields) };
}

const BASIC_KINDS: Record<GobBasicKind, true> = {
  bool: true, int: true, uint: true, float: true, bytes: true, string: true, complex: true, interface: true,
};

export function isBasicType(t: GobType): t is GobBasicType {
  return Object.hasOwn(BASIC_KINDS, t.kind);
}

/** A short, non-recursive description of a type for error messages. */
export function describeGobType(t: GobType): string {
  switch (t.kind) {
    case 'slice':
      return t.name || `[]${shortName(t.elem)}`;
    case 'array':
      return t.name || `[${t.len}]${shortName(t.elem)}`;
    case 'map':
      return t.name || `map[${shortName(t.key)}]${shortName(t.elem)}`;
    case 'bytes':
      return '[]byte';
    default:
      return 'name' in t && t.name ? t.name : t.kind;
  }
}

function shortName(t: GobType): string {
  if (t.kind === 'bytes') return '[]byte';
  if ('name' in t && t.name) return t.name;
  return t.kind;
}

/** The one error every gob decoder throws. */
export function gobDecodeError(message: string, cause?: unknown): WeaveError {
  return new WeaveError('DECODE_FAILED', `gob: ${message}`, cause === undefined ? {} : { cause });
}

/** The error the encoder throws when a value does not fit its type. */
export function gobEncodeError(message: string): WeaveError {
  return new WeaveError('INVALID_ARGUMENT', `gob: ${message}`);
}
