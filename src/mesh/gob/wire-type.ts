// Gob type definitions: the `wireType` struct that follows a negative type id.
//
// Go describes its types with gob itself (gob `type.go`): a definition is a `wireType` value
// whose one non-nil field says the kind. Those meta types have fixed builtin ids (16..23) and
// are modelled here as ordinary `GobType`s, so definitions are read and written by the same
// struct machinery as user values (deltas, omitted zero fields) instead of by hand:
//
//   wireType   {ArrayT *arrayType; SliceT *sliceType; StructT *structType; MapT *mapType;
//               GobEncoderT, BinaryMarshalerT, TextMarshalerT *gobEncoderType}
//   CommonType {Name string; Id typeId}            typeId is an int32, sent as an int
//   arrayType  {CommonType; Elem typeId; Len int}  sliceType {CommonType; Elem typeId}
//   structType {CommonType; Field []*fieldType}    fieldType {Name string; Id typeId}
//   mapType    {CommonType; Key, Elem typeId}      gobEncoderType {CommonType}
import {
  GOB_INT, GOB_STRING, gobDecodeError, type GobStruct, type GobStructType, type GobSliceType, type GobValue,
} from './gob-type.js';

function metaStruct(name: string, id: number, fields: Array<[string, GobStructType['fields'][number]['type']]>): GobStructType {
  return { kind: 'struct', name, id, fields: fields.map(([n, type]) => ({ name: n, type })) };
}

const COMMON_TYPE = metaStruct('CommonType', 18, [['Name', GOB_STRING], ['Id', GOB_INT]]);
const ARRAY_TYPE = metaStruct('arrayType', 17, [['CommonType', COMMON_TYPE], ['Elem', GOB_INT], ['Len', GOB_INT]]);
const SLICE_TYPE = metaStruct('sliceType', 19, [['CommonType', COMMON_TYPE], ['Elem', GOB_INT]]);
const FIELD_TYPE = metaStruct('fieldType', 21, [['Name', GOB_STRING], ['Id', GOB_INT]]);
const FIELD_SLICE: GobSliceType = { kind: 'slice', name: '', elem: FIELD_TYPE, id: 22 };
const STRUCT_TYPE = metaStruct('structType', 20, [['CommonType', COMMON_TYPE], ['Field', FIELD_SLICE]]);
const MAP_TYPE = metaStruct('mapType', 23, [['CommonType', COMMON_TYPE], ['Key', GOB_INT], ['Elem', GOB_INT]]);
// Never sent as a definition, so its id only has to be below 65.
const GOB_ENCODER_TYPE = metaStruct('gobEncoderType', 24, [['CommonType', COMMON_TYPE]]);

/** The builtin `wireType` (id 16) that every type definition is a value of. */
export const WIRE_TYPE: GobStructType = metaStruct('wireType', 16, [
  ['ArrayT', ARRAY_TYPE],
  ['SliceT', SLICE_TYPE],
  ['StructT', STRUCT_TYPE],
  ['MapT', MAP_TYPE],
  ['GobEncoderT', GOB_ENCODER_TYPE],
  ['BinaryMarshalerT', GOB_ENCODER_TYPE],
  ['TextMarshalerT', GOB_ENCODER_TYPE],
]);

/** A definition as read from the wire: kinds and names, with child types still as ids. */
export type WireDef =
  | { kind: 'slice'; name: string; elem: number }
  | { kind: 'array'; name: string; elem: number; len: number }
  | { kind: 'map'; name: string; key: number; elem: number }
  | { kind: 'struct'; name: string; fields: Array<{ name: string; id: number }> }
  | { kind: 'gobEncoder' | 'binaryMarshaler' | 'textMarshaler'; name: string };

const MAX_TYPE_ID = 0x7fffffff; // typeId is an int32
/** Most fields a peer's struct definition may have (weave 2.8.1's widest has 6). */
export const MAX_STRUCT_FIELDS = 64;

function struct(v: GobValue | undefined, what: string): GobStruct {
  if (v === undefined) return { kind: 'struct', name: '', fields: new Map() };
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Map || Buffer.isBuffer(v) || v.kind !== 'struct') {
    throw gobDecodeError(`type definition: ${what} is not a struct`);
  }
  return v;
}

function typeIdField(s: GobStruct, field: string, what: string): number {
  const v = s.fields.get(field) ?? 0n;
  if (typeof v !== 'bigint' || v <= 0n || v > BigInt(MAX_TYPE_ID)) {
    throw gobDecodeError(`type definition: ${what}.${field} is not a valid type id`);
  }
  return Number(v);
}

function nameOf(s: GobStruct): string {
  const common = struct(s.fields.get('CommonType'), 'CommonType');
  const name = common.fields.get('Name') ?? '';
  return typeof name === 'string' ? name : '';
}

/** Turns a decoded `wireType` value into a definition; refuses anything malformed. */
export function wireDefFromValue(v: GobValue): WireDef {
  const wt = struct(v, 'wireType');
  if (wt.fields.size !== 1) throw gobDecodeError(`type definition sets ${wt.fields.size} kinds, expected 1`);
  const [kindField, inner] = wt.fields.entries().next().value as [string, GobValue];
  const s = struct(inner, kindField);
  const name = nameOf(s);
  switch (kindField) {
    case 'ArrayT': {
      const len = s.fields.get('Len') ?? 0n;
      if (typeof len !== 'bigint' || len < 0n || len > BigInt(MAX_TYPE_ID)) throw gobDecodeError('array type: bad length');
      return { kind: 'array', name, elem: typeIdField(s, 'Elem', 'arrayType'), len: Number(len) };
    }
    case 'SliceT':
      return { kind: 'slice', name, elem: typeIdField(s, 'Elem', 'sliceType') };
    case 'MapT':
      return { kind: 'map', name, key: typeIdField(s, 'Key', 'mapType'), elem: typeIdField(s, 'Elem', 'mapType') };
    case 'StructT': {
      const list = s.fields.get('Field') ?? [];
      if (!Array.isArray(list)) throw gobDecodeError('struct type: Field is not a list');
      if (list.length > MAX_STRUCT_FIELDS) {
        throw gobDecodeError(`struct type: ${list.length} fields, at most ${MAX_STRUCT_FIELDS} accepted`);
      }
      const seen = new Set<string>();
      const fields = list.map((f) => {
        const fs = struct(f, 'fieldType');
        const fname = fs.fields.get('Name') ?? '';
        if (typeof fname !== 'string' || fname === '') throw gobDecodeError('struct type: field without a name');
        if (seen.has(fname)) throw gobDecodeError(`struct type: duplicate field ${JSON.stringify(fname)}`);
        seen.add(fname);
        return { name: fname, id: typeIdField(fs, 'Id', 'fieldType') };
      });
      return { kind: 'struct', name, fields };
    }
    case 'GobEncoderT':
      return { kind: 'gobEncoder', name };
    case 'BinaryMarshalerT':
      return { kind: 'binaryMarshaler', name };
    default:
      return { kind: 'textMarshaler', name };
  }
}

function common(name: string, id: number): GobStruct {
  const fields = new Map<string, GobValue>();
  if (name !== '') fields.set('Name', name);
  fields.set('Id', BigInt(id));
  return { kind: 'struct', name: 'CommonType', fields };
}

function inner(name: string, fields: Array<[string, GobValue]>): GobStruct {
  return { kind: 'struct', name, fields: new Map(fields) };
}

/** The `wireType` value that defines type `id`, child types given by their ids. */
export function wireDefToValue(def: WireDef, id: number): GobStruct {
  const c = common(def.name, id);
  let kindField: string;
  let body: GobStruct;
  switch (def.kind) {
    case 'array':
      kindField = 'ArrayT';
      body = inner('arrayType', [['CommonType', c], ['Elem', BigInt(def.elem)], ['Len', BigInt(def.len)]]);
      break;
    case 'slice':
      kindField = 'SliceT';
      body = inner('sliceType', [['CommonType', c], ['Elem', BigInt(def.elem)]]);
      break;
    case 'map':
      kindField = 'MapT';
      body = inner('mapType', [['CommonType', c], ['Key', BigInt(def.key)], ['Elem', BigInt(def.elem)]]);
      break;
    case 'struct':
      kindField = 'StructT';
      body = inner('structType', [
        ['CommonType', c],
        ['Field', def.fields.map((f) => inner('fieldType', [['Name', f.name], ['Id', BigInt(f.id)]]))],
      ]);
      break;
    default:
      kindField = def.kind === 'gobEncoder' ? 'GobEncoderT' : def.kind === 'binaryMarshaler' ? 'BinaryMarshalerT' : 'TextMarshalerT';
      body = inner('gobEncoderType', [['CommonType', c]]);
  }
  return { kind: 'struct', name: 'wireType', fields: new Map([[kindField, body]]) };
}
