// Gob stream decoder (gob `decoder.go`, `decode.go`): reads messages, keeps the stream's type
// table, and turns each value message into a `GobDecoded`.
//
// Total: every failure is a WeaveError with code DECODE_FAILED. Guards: message lengths and
// element counts are checked against the bytes left (so a 2^60 length allocates nothing),
// values nest at most `maxDepth` levels, type resolution is iterative (a long chain of
// definitions cannot exhaust the stack), a message must be consumed exactly, and a type id
// may be defined once (as Go: "duplicate type received").
import { isWeaveError } from '../../core/errors.js';
import { GobReader } from './gob-bytes.js';
import {
  GOB_BASIC_BY_ID, GOB_BOOL, GOB_FIRST_USER_ID, gobDecodeError,
  type GobDecoded, type GobStruct, type GobStructType, type GobType, type GobValue,
} from './gob-type.js';
import { WIRE_TYPE, wireDefFromValue, type WireDef } from './wire-type.js';

export interface GobDecodeOptions {
  /** Deepest nesting of values accepted (default 100; weave's deepest payload nests 6). */
  maxDepth?: number;
}

const DEFAULT_MAX_DEPTH = 100;
const MAX_TYPE_ID = 0x7fffffff;
/** Most type definitions one stream may make (weave 2.8.1 makes at most 12, IPAM). */
export const MAX_STREAM_TYPES = 64;
/** Values (structs, list elements, map entries, []byte) a stream may build: base + bytes / 8. */
const VALUE_BUDGET_BASE = 65_536;
const VALUE_BUDGET_BYTES_PER_VALUE = 8;

export class GobDecoder {
  private pos = 0;
  private readonly defs = new Map<number, WireDef>();
  private readonly resolved = new Map<number, GobType>();
  private readonly maxDepth: number;
  // Values left to build; caps memory and time per input byte (an empty struct costs 1 byte
  // on the wire but far more in memory). A real 250-peer topology uses ~1 per 14 bytes.
  private budget: number;

  constructor(
    private readonly buf: Uint8Array,
    opts: GobDecodeOptions = {},
  ) {
    this.maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.budget = VALUE_BUDGET_BASE + Math.floor(buf.length / VALUE_BUDGET_BYTES_PER_VALUE);
  }

  private spend(): void {
    if (--this.budget < 0) throw gobDecodeError('too many values for the stream size');
  }

  /** True when every byte has been consumed. */
  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** Byte offset of the next message. */
  get offset(): number {
    return this.pos;
  }

  /** User type ids defined so far in this stream, in definition order. */
  get definedTypeIds(): number[] {
    return [...this.defs.keys()];
  }

  /** The definition of a user type id as read in this stream, child types as ids. */
  definition(id: number): WireDef | undefined {
    return this.defs.get(id);
  }

  /** The type a user id stands for in this stream (after its definition was read). */
  typeOf(id: number): GobType | undefined {
    try {
      return this.resolve(id);
    } catch {
      return undefined;
    }
  }

  /** The next value (type definitions before it are absorbed); undefined at the end. */
  next(): GobDecoded | undefined {
    try {
      return this.readNext();
    } catch (e) {
      throw asDecodeError(e);
    }
  }

  private readNext(): GobDecoded | undefined {
    while (this.pos < this.buf.length) {
      const outer = new GobReader(this.buf, this.pos, this.buf.length);
      const len = outer.uintSmall('message length');
      if (len === 0) throw gobDecodeError('empty message');
      if (len > outer.remaining) throw gobDecodeError(`message length ${len} exceeds the ${outer.remaining} bytes left`);
      const r = new GobReader(this.buf, outer.pos, outer.pos + len);
      this.pos = outer.pos + len;
      const id = r.intSmall('type id');
      if (id < 0) {
        this.define(-id, r);
        if (r.remaining !== 0) throw gobDecodeError('extra data after type definition');
        continue;
      }
      const type = this.resolve(id);
      let value: GobValue;
      if (type.kind === 'struct') {
        value = this.decodeStruct(r, type, 0);
      } else {
        if (r.uintSmall('singleton delta') !== 0) throw gobDecodeError('non-zero delta for singleton');
        value = this.decodeValue(r, type, 0);
      }
      if (r.remaining !== 0) throw gobDecodeError(`${r.remaining} bytes of extra data after value`);
      return { typeId: id, type, value };
    }
    return undefined;
  }

  private define(id: number, r: GobReader): void {
    if (id < GOB_FIRST_USER_ID || id > MAX_TYPE_ID || this.defs.has(id)) {
      throw gobDecodeError(`duplicate type received (id ${id})`);
    }
    if (this.defs.size >= MAX_STREAM_TYPES) throw gobDecodeError(`more than ${MAX_STREAM_TYPES} type definitions in one stream`);
    const def = wireDefFromValue(this.decodeStruct(r, WIRE_TYPE, 0));
    this.defs.set(id, def);
  }

  private known(id: number, fresh: Map<number, GobType>): GobType | undefined {
    return GOB_BASIC_BY_ID.get(id) ?? this.resolved.get(id) ?? fresh.get(id);
  }

  /** Builds the GobType graph for `id`: shells first (iteratively), then the links. */
  private resolve(id: number): GobType {
    const done = this.known(id, new Map());
    if (done) return done;
    const fresh = new Map<number, GobType>();
    const stack = [id];
    while (stack.length > 0) {
      const cur = stack.pop() ?? 0;
      if (this.known(cur, fresh)) continue;
      const def = this.defs.get(cur);
      if (!def) throw gobDecodeError(`type id ${cur} is not defined`);
      const p = GOB_BOOL; // placeholder until linked below
      switch (def.kind) {
        case 'slice':
          fresh.set(cur, { kind: 'slice', name: def.name, elem: p, id: cur });
          stack.push(def.elem);
          break;
        case 'array':
          fresh.set(cur, { kind: 'array', name: def.name, elem: p, len: def.len, id: cur });
          stack.push(def.elem);
          break;
        case 'map':
          fresh.set(cur, { kind: 'map', name: def.name, key: p, elem: p, id: cur });
          stack.push(def.elem, def.key);
          break;
        case 'struct':
          fresh.set(cur, { kind: 'struct', name: def.name, fields: def.fields.map((f) => ({ name: f.name, type: p })), id: cur });
          for (let i = def.fields.length - 1; i >= 0; i--) stack.push(def.fields[i]?.id ?? 0);
          break;
        default:
          fresh.set(cur, { kind: def.kind, name: def.name, id: cur });
      }
    }
    const link = (child: number): GobType => {
      const t = this.known(child, fresh);
      if (!t) throw gobDecodeError(`type id ${child} is not defined`);
      return t;
    };
    for (const [cur, t] of fresh) {
      const def = this.defs.get(cur);
      if (!def) continue;
      if (t.kind === 'slice' && def.kind === 'slice') t.elem = link(def.elem);
      else if (t.kind === 'array' && def.kind === 'array') t.elem = link(def.elem);
      else if (t.kind === 'map' && def.kind === 'map') {
        t.key = link(def.key);
        t.elem = link(def.elem);
      } else if (t.kind === 'struct' && def.kind === 'struct') {
        t.fields.forEach((f, i) => (f.type = link(def.fields[i]?.id ?? 0)));
      }
    }
    for (const [cur, t] of fresh) this.resolved.set(cur, t);
    return link(id);
  }

  private decodeStruct(r: GobReader, t: GobStructType, depth: number): GobStruct {
    if (depth > this.maxDepth) throw gobDecodeError(`values nest deeper than ${this.maxDepth}`);
    this.spend();
    const fields = new Map<string, GobValue>();
    let index = -1;
    for (;;) {
      const delta = r.uintSmall('field delta');
      if (delta === 0) break;
      index += delta;
      const f = t.fields[index];
      if (!f) throw gobDecodeError(`field number ${index} out of range for ${t.name || 'struct'} (${t.fields.length} fields)`);
      fields.set(f.name, this.decodeValue(r, f.type, depth + 1));
    }
    return { kind: 'struct', name: t.name, fields };
  }

  private decodeValue(r: GobReader, t: GobType, depth: number): GobValue {
    if (depth > this.maxDepth) throw gobDecodeError(`values nest deeper than ${this.maxDepth}`);
    switch (t.kind) {
      case 'bool':
        return r.uint() !== 0n;
      case 'int':
        return r.int();
      case 'uint':
        return r.uint();
      case 'float':
        return r.float();
      case 'bytes':
        this.spend();
        return r.bytes();
      case 'string':
        return r.string();
      case 'complex':
        return { kind: 'complex', re: r.float(), im: r.float() };
      case 'interface':
        if (r.count('interface name', 1) !== 0) throw gobDecodeError('non-nil interface values are not supported');
        return null;
      case 'slice':
      case 'array': {
        const n = r.count(t.kind, 1);
        if (t.kind === 'array' && n !== t.len) throw gobDecodeError(`array length ${n}, type says ${t.len}`);
        const out: GobValue[] = [];
        for (let i = 0; i < n; i++) {
          this.spend();
          out.push(this.decodeValue(r, t.elem, depth + 1));
        }
        return out;
      }
      case 'map': {
        const n = r.count('map', 2);
        const out = new Map<GobValue, GobValue>();
        for (let i = 0; i < n; i++) {
          this.spend();
          const k = this.decodeValue(r, t.key, depth + 1);
          out.set(k, this.decodeValue(r, t.elem, depth + 1));
        }
        return out;
      }
      case 'struct':
        return this.decodeStruct(r, t, depth + 1);
      default:
        this.spend();
        return r.bytes();
    }
  }
}

function asDecodeError(e: unknown): Error {
  if (isWeaveError(e)) return e;
  if (e instanceof RangeError) return gobDecodeError('input too deeply nested', e);
  return gobDecodeError('internal decoder error', e);
}

/**
 * One type-definition message (length prefix, negative id, `wireType` value) on its own: its
 * id and definition; DECODE_FAILED when it is anything else or malformed. Codecs that walk a
 * stream themselves use it for the definitions and may keep the results by the message bytes
 * (a definition's meaning depends on nothing but its bytes).
 */
export function decodeGobDefinition(message: Uint8Array): { id: number; def: WireDef } {
  const dec = new GobDecoder(message);
  if (dec.next() !== undefined) throw gobDecodeError('a value where a type definition was expected');
  const ids = dec.definedTypeIds;
  const id = ids[0];
  if (ids.length !== 1 || id === undefined) throw gobDecodeError(`${ids.length} type definitions where one was expected`);
  return { id, def: dec.definition(id) as WireDef };
}

/** Decodes a complete stream (one Go Encoder's output) into its values, in order. */
export function decodeGobStream(buf: Uint8Array, opts: GobDecodeOptions = {}): GobDecoded[] {
  const dec = new GobDecoder(buf, opts);
  const out: GobDecoded[] = [];
  for (let d = dec.next(); d !== undefined; d = dec.next()) out.push(d);
  return out;
}
