// Gob stream encoder (gob `encoder.go`, `encode.go`), byte-compatible with Go's Encoder.
//
// `encode(type, value)` first sends a definition for every non-basic type reachable from
// `type` that this stream has not defined yet, in Go's order (a type, then its field, element,
// key types, depth first), then the value message. Ids: a type's own `id` (as set by the
// decoder) is kept when free, so a decoded message re-encodes byte for byte; other types get
// the next free id from 65. Value rules as Go: a top-level non-struct value is preceded by a
// 0 delta and always sent; struct fields are sent as deltas and skipped when absent or zero
// (false, 0, "", empty slice or []byte, nil interface) — maps, arrays and structs are sent
// whenever present, as Go sends non-nil maps, arrays and nested structs.
// Bad input (a value that does not fit its type) throws INVALID_ARGUMENT.
import { GobWriter } from './gob-bytes.js';
import {
  GOB_FIRST_USER_ID, describeGobType, gobEncodeError, isBasicType,
  type GobComplex, type GobStruct, type GobStructType, type GobType, type GobValue,
} from './gob-type.js';
import { WIRE_TYPE, wireDefToValue, type WireDef } from './wire-type.js';

export interface GobEncodeOptions {
  /** Deepest nesting of values accepted (default 1000); guards against cyclic values. */
  maxDepth?: number;
}

function isStruct(v: GobValue): v is GobStruct {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && !Buffer.isBuffer(v) && v.kind === 'struct';
}

function isComplex(v: GobValue): v is GobComplex {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && !Buffer.isBuffer(v) && v.kind === 'complex';
}

function isInteger(v: GobValue): v is bigint | number {
  return typeof v === 'bigint' || (typeof v === 'number' && Number.isSafeInteger(v));
}

/** Go's encoder skips these struct fields (`sendZero` false): zero basics, empty slices. */
function omittedInStruct(t: GobType, v: GobValue): boolean {
  switch (t.kind) {
    case 'bool':
      return v === false;
    case 'int':
    case 'uint':
      return v === 0n || v === 0;
    case 'float':
      return v === 0;
    case 'complex':
      return isComplex(v) && v.re === 0 && v.im === 0;
    case 'string':
      return v === '';
    case 'bytes':
      return Buffer.isBuffer(v) && v.length === 0;
    case 'slice':
      return Array.isArray(v) && v.length === 0;
    case 'interface':
      return v === null;
    default:
      return false;
  }
}

export class GobEncoder {
  private readonly out = new GobWriter();
  private readonly ids = new Map<GobType, number>();
  private readonly usedIds = new Set<number>();
  private readonly sent = new Set<GobType>();
  private nextId = GOB_FIRST_USER_ID;
  private readonly maxDepth: number;

  constructor(opts: GobEncodeOptions = {}) {
    this.maxDepth = opts.maxDepth ?? 1000;
  }

  /** Appends the definitions `type` still needs, then one value message. */
  encode(type: GobType, value: GobValue): this {
    // All or nothing: a value that does not fit leaves the stream as it was.
    const mark = { length: this.out.length, ids: new Map(this.ids), used: new Set(this.usedIds), sent: new Set(this.sent), nextId: this.nextId };
    try {
      this.sendTypes(type);
      const msg = new GobWriter();
      msg.int(this.idOf(type));
      if (type.kind === 'struct') {
        this.encodeStruct(msg, type, value, 0);
      } else {
        msg.uint(0);
        this.encodeValue(msg, type, value, 0);
      }
      this.writeMessage(msg);
      return this;
    } catch (e) {
      this.out.truncate(mark.length);
      this.restore(mark.ids, mark.used, mark.sent, mark.nextId);
      throw e;
    }
  }

  private restore(ids: Map<GobType, number>, used: Set<number>, sent: Set<GobType>, nextId: number): void {
    this.ids.clear();
    for (const [k, v] of ids) this.ids.set(k, v);
    this.usedIds.clear();
    for (const v of used) this.usedIds.add(v);
    this.sent.clear();
    for (const v of sent) this.sent.add(v);
    this.nextId = nextId;
  }

  /** The stream so far. */
  toBuffer(): Buffer {
    return this.out.toBuffer();
  }

  /** The id this stream uses (or will use) for `t`. */
  idOf(t: GobType): number {
    if (isBasicType(t) || (t.id !== undefined && t.id < GOB_FIRST_USER_ID)) {
      if (t.id === undefined) throw gobEncodeError(`basic type ${t.kind} without an id`);
      return t.id;
    }
    const have = this.ids.get(t);
    if (have !== undefined) return have;
    let id = t.id;
    if (id === undefined || !Number.isInteger(id) || id > 0x7fffffff || this.usedIds.has(id)) {
      while (this.usedIds.has(this.nextId)) this.nextId++;
      id = this.nextId++;
    }
    this.ids.set(t, id);
    this.usedIds.add(id);
    return id;
  }

  private writeMessage(msg: GobWriter): void {
    this.out.uint(msg.length);
    this.out.raw(msg.toBuffer());
  }

  /** Go's sendType: pre-order, depth first, each type once; basic and builtin types never. */
  private sendTypes(root: GobType): void {
    const stack: GobType[] = [root];
    while (stack.length > 0) {
      const t = stack.pop();
      if (!t || isBasicType(t) || (t.id !== undefined && t.id < GOB_FIRST_USER_ID) || this.sent.has(t)) continue;
      this.sent.add(t);
      const id = this.idOf(t);
      let def: WireDef;
      const children: GobType[] = [];
      switch (t.kind) {
        case 'slice':
          def = { kind: 'slice', name: t.name, elem: this.idOf(t.elem) };
          children.push(t.elem);
          break;
        case 'array':
          if (!Number.isSafeInteger(t.len) || t.len < 0) throw gobEncodeError(`array type ${describeGobType(t)}: bad length`);
          def = { kind: 'array', name: t.name, elem: this.idOf(t.elem), len: t.len };
          children.push(t.elem);
          break;
        case 'map':
          def = { kind: 'map', name: t.name, key: this.idOf(t.key), elem: this.idOf(t.elem) };
          children.push(t.key, t.elem);
          break;
        case 'struct':
          def = { kind: 'struct', name: t.name, fields: t.fields.map((f) => ({ name: f.name, id: this.idOf(f.type) })) };
          children.push(...t.fields.map((f) => f.type));
          break;
        default:
          def = { kind: t.kind, name: t.name };
      }
      const msg = new GobWriter();
      msg.int(-id);
      this.encodeStruct(msg, WIRE_TYPE, wireDefToValue(def, id), 0);
      this.writeMessage(msg);
      for (let i = children.length - 1; i >= 0; i--) stack.push(children[i] as GobType);
    }
  }

  private encodeStruct(w: GobWriter, t: GobStructType, v: GobValue, depth: number): void {
    if (depth > this.maxDepth) throw gobEncodeError(`value nests deeper than ${this.maxDepth}`);
    if (!isStruct(v)) throw gobEncodeError(`${describeGobType(t)}: expected a struct value`);
    if (v.fields.size > 0) {
      for (const name of v.fields.keys()) {
        if (!t.fields.some((f) => f.name === name)) throw gobEncodeError(`${describeGobType(t)} has no field ${JSON.stringify(name)}`);
      }
    }
    let last = -1;
    t.fields.forEach((f, i) => {
      if (!v.fields.has(f.name)) return;
      const fv = v.fields.get(f.name) as GobValue;
      if (omittedInStruct(f.type, fv)) return;
      w.uint(i - last);
      last = i;
      this.encodeValue(w, f.type, fv, depth + 1);
    });
    w.uint(0);
  }

  private encodeValue(w: GobWriter, t: GobType, v: GobValue, depth: number): void {
    if (depth > this.maxDepth) throw gobEncodeError(`value nests deeper than ${this.maxDepth}`);
    const bad = (): never => {
      throw gobEncodeError(`value does not fit type ${describeGobType(t)}`);
    };
    switch (t.kind) {
      case 'bool':
        if (typeof v !== 'boolean') bad();
        w.uint(v ? 1 : 0);
        return;
      case 'int':
        if (!isInteger(v)) bad();
        w.int(v as bigint | number);
        return;
      case 'uint':
        if (!isInteger(v)) bad();
        w.uint(v as bigint | number);
        return;
      case 'float':
        if (typeof v !== 'number') bad();
        w.float(v as number);
        return;
      case 'complex':
        if (!isComplex(v)) bad();
        w.float((v as GobComplex).re);
        w.float((v as GobComplex).im);
        return;
      case 'string':
        if (typeof v !== 'string') bad();
        w.string(v as string);
        return;
      case 'bytes':
      case 'gobEncoder':
      case 'binaryMarshaler':
      case 'textMarshaler':
        if (!Buffer.isBuffer(v)) bad();
        w.lenBytes(v as Buffer);
        return;
      case 'interface':
        if (v !== null) throw gobEncodeError('non-nil interface values are not supported');
        w.uint(0);
        return;
      case 'slice':
      case 'array':
        if (!Array.isArray(v)) return bad();
        if (t.kind === 'array' && v.length !== t.len) throw gobEncodeError(`array of ${v.length}, type says ${t.len}`);
        w.uint(v.length);
        for (const e of v) this.encodeValue(w, t.elem, e, depth + 1);
        return;
      case 'map':
        if (!(v instanceof Map)) return bad();
        w.uint(v.size);
        for (const [k, e] of v) {
          this.encodeValue(w, t.key, k, depth + 1);
          this.encodeValue(w, t.elem, e, depth + 1);
        }
        return;
      case 'struct':
        this.encodeStruct(w, t, v, depth + 1);
        return;
    }
  }
}

/** One stream holding `items` in order (types defined once, as one Go Encoder would). */
export function encodeGobStream(items: Iterable<{ readonly type: GobType; readonly value: GobValue }>, opts: GobEncodeOptions = {}): Buffer {
  const enc = new GobEncoder(opts);
  for (const { type, value } of items) enc.encode(type, value);
  return enc.toBuffer();
}

/** A stream of one value. */
export function encodeGobValue(type: GobType, value: GobValue, opts: GobEncodeOptions = {}): Buffer {
  return new GobEncoder(opts).encode(type, value).toBuffer();
}
