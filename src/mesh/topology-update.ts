// Topology gossip payload (mesh `peers.go` encodePeers/decodePeer): one gob stream holding, for
// each peer in the update, a `peerSummary` value then a `[]connectionSummary` value:
//
//   peerSummary       {NameByte []byte; NickName string; UID uint64; Version uint64;
//                      ShortID uint16; HasShortID bool}
//   connectionSummary {NameByte []byte; RemoteTCPAddr string; Outbound bool; Established bool}
//
// NameByte is the 6-byte big-endian peer name (mac flavour). Zero fields are omitted on the
// wire (a peer at Version 0 sends no Version). Decoding follows Go's decoding into those
// structs: fields by name, unknown fields ignored, a wrong field type is an error.
//
// Cost: topology gossip is most of what a mesh says (every router relays every peer's entry,
// and the periodic gossip carries the whole table), so both directions avoid the general gob
// codec's value model on the common path, with the same bytes and results:
//  - encoding writes each entry's two value bodies directly (`encodeTopologyEntry`; the table
//    keeps them per peer until the peer changes) and assembles the stream around them with the
//    type definitions the general encoder would send (same ids, same order);
//  - decoding walks the stream's messages itself, reads type definitions with the general
//    decoder (kept by their bytes in a TopologyDecodeCache, since a sender repeats them in every
//    update), and reads values straight into entries when the types are the structs above with
//    fields of the expected kinds (Go's and ours always are). Anything else, and any fault, goes
//    to the general decoder, which gives the answer or the error it always gave.
import { WeaveError } from '../core/errors.js';
import { PEER_NAME_BYTES, peerNameFromBytes, peerNameToBytes, type PeerName } from '../core/peer-name.js';
import { decodeGobDefinition, decodeGobStream } from './gob/gob-decoder.js';
import type { ConnectionSummary, EncodedTopologyEntry, PeerSummary, TopologyEntry } from './peer.js';
import { GobWriter } from './gob/gob-bytes.js';
import { GobEncoder } from './gob/gob-encoder.js';
import { expectList, expectStruct, type GobStructView } from './gob/gob-expect.js';
import {
  GOB_BOOL, GOB_BYTES, GOB_STRING, GOB_UINT, gobDecodeError, gobSlice, gobStruct, gobStructValue,
  type GobSliceType, type GobStructType,
} from './gob/gob-type.js';
import type { WireDef } from './gob/wire-type.js';

/** The peers of an update: the topology's own entry type (peer.ts), so nothing converts. */
export type TopologyPeer = TopologyEntry;

export const PEER_SUMMARY_GOB_TYPE: GobStructType = gobStruct('peerSummary', [
  ['NameByte', GOB_BYTES],
  ['NickName', GOB_STRING],
  ['UID', GOB_UINT],
  ['Version', GOB_UINT],
  ['ShortID', GOB_UINT],
  ['HasShortID', GOB_BOOL],
]);

export const CONNECTION_SUMMARY_GOB_TYPE: GobStructType = gobStruct('connectionSummary', [
  ['NameByte', GOB_BYTES],
  ['RemoteTCPAddr', GOB_STRING],
  ['Outbound', GOB_BOOL],
  ['Established', GOB_BOOL],
]);

export const CONNECTION_SUMMARIES_GOB_TYPE: GobSliceType = gobSlice(CONNECTION_SUMMARY_GOB_TYPE);

function nameOf(s: GobStructView, what: string): PeerName {
  const b = s.bytes('NameByte');
  if (b.length !== PEER_NAME_BYTES) throw gobDecodeError(`${what}.NameByte: ${b.length} bytes, expected ${PEER_NAME_BYTES}`);
  return peerNameFromBytes(b);
}

function checkShortId(shortId: number): void {
  if (!Number.isInteger(shortId) || shortId < 0 || shortId > 0xffff) {
    throw new WeaveError('INVALID_ARGUMENT', `ShortID ${shortId} does not fit a uint16`);
  }
}

// --- encoding ---------------------------------------------------------------------------------

/** One entry's two value bodies (defined with the entry type, in peer.ts). */
export type { EncodedTopologyEntry };

/** The entry's bodies, written as the general encoder writes those values (zero fields omitted). */
export function encodeTopologyEntry({ peer, connections }: TopologyEntry): EncodedTopologyEntry {
  checkShortId(peer.shortId);
  const s = new GobWriter();
  // Field deltas: NameByte is never empty, so it is field 0 sent first (delta 1).
  s.uint(1);
  s.lenBytes(peerNameToBytes(peer.name));
  let last = 0;
  const field = (i: number) => {
    s.uint(i - last);
    last = i;
  };
  if (peer.nickName !== '') {
    field(1);
    s.string(peer.nickName);
  }
  if (peer.uid !== 0n) {
    field(2);
    s.uint(peer.uid); // refuses values outside uint64 (INVALID_ARGUMENT)
  }
  if (peer.version !== 0n) {
    field(3);
    s.uint(peer.version);
  }
  if (peer.shortId !== 0) {
    field(4);
    s.uint(peer.shortId);
  }
  if (peer.hasShortId) {
    field(5);
    s.uint(1);
  }
  s.uint(0);
  const c = new GobWriter();
  c.uint(0); // a top-level non-struct value follows a 0 delta
  c.uint(connections.length);
  for (const conn of connections) {
    c.uint(1);
    c.lenBytes(peerNameToBytes(conn.remoteName));
    let at = 0;
    if (conn.remoteTcpAddr !== '') {
      c.uint(1 - at);
      at = 1;
      c.string(conn.remoteTcpAddr);
    }
    if (conn.outbound) {
      c.uint(2 - at);
      at = 2;
      c.uint(1);
    }
    if (conn.established) {
      c.uint(3 - at);
      c.uint(1);
    }
    c.uint(0);
  }
  return { summary: s.toBuffer().toString('latin1'), connections: c.toBuffer().toString('latin1') };
}

/** What the general encoder sends around the values: the definitions and the type ids. */
interface StreamFrame {
  readonly summaryDefs: Buffer;
  readonly connectionDefs: Buffer;
  readonly summaryId: Buffer;
  readonly connectionsId: Buffer;
}

let frame: StreamFrame | undefined;

/** Taken once from the general encoder's own output for a one-entry update, so they cannot differ. */
function streamFrame(): StreamFrame {
  if (frame) return frame;
  const enc = new GobEncoder();
  const e = encodeTopologyEntry({ peer: { name: 1, nickName: '', uid: 0n, version: 0n, shortId: 0, hasShortId: false }, connections: [] });
  enc.encode(PEER_SUMMARY_GOB_TYPE, gobStructValue('peerSummary', [['NameByte', peerNameToBytes(1)]]));
  enc.encode(CONNECTION_SUMMARIES_GOB_TYPE, []);
  const bytes = enc.toBuffer();
  const msgs = splitMessages(bytes);
  // definitions of peerSummary, its value, definitions of the slice and its element, its value
  const values = msgs.filter((m) => m.typeId >= 0);
  const [v1, v2] = values;
  if (values.length !== 2 || !v1 || !v2) throw new Error('topology stream frame: unexpected encoder output');
  const idBytes = (m: Message) => bytes.subarray(m.idStart, m.bodyStart);
  frame = {
    summaryDefs: bytes.subarray(0, v1.start),
    connectionDefs: bytes.subarray(v1.end, v2.start),
    summaryId: Buffer.from(idBytes(v1)),
    connectionsId: Buffer.from(idBytes(v2)),
  };
  // The bodies written above must be the general encoder's, or nothing here holds.
  if (bytes.toString('latin1', v1.bodyStart, v1.end) !== e.summary || bytes.toString('latin1', v2.bodyStart, v2.end) !== e.connections) {
    throw new Error('topology stream frame: entry bodies differ from the gob encoder');
  }
  return frame;
}

function uintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1000000 ? 4 : 5;
}

function writeUint(out: Buffer, at: number, n: number): number {
  if (n < 0x80) {
    out[at] = n;
    return at + 1;
  }
  const k = uintBytes(n) - 1;
  out[at++] = 256 - k;
  for (let i = k - 1; i >= 0; i--) out[at++] = Math.floor(n / 2 ** (8 * i)) & 0xff;
  return at;
}

/** The update stream for entries already encoded (the general encoder's bytes exactly). */
export function assembleTopologyUpdate(entries: readonly EncodedTopologyEntry[]): Buffer {
  if (entries.length === 0) return Buffer.alloc(0);
  const f = streamFrame();
  let size = f.summaryDefs.length + f.connectionDefs.length;
  for (const e of entries) {
    const a = f.summaryId.length + e.summary.length;
    const b = f.connectionsId.length + e.connections.length;
    size += uintBytes(a) + a + uintBytes(b) + b;
  }
  const out = Buffer.allocUnsafe(size);
  let at = f.summaryDefs.copy(out, 0);
  let first = true;
  for (const e of entries) {
    at = writeUint(out, at, f.summaryId.length + e.summary.length);
    at += f.summaryId.copy(out, at);
    at += out.write(e.summary, at, 'latin1');
    if (first) at += f.connectionDefs.copy(out, at);
    first = false;
    at = writeUint(out, at, f.connectionsId.length + e.connections.length);
    at += f.connectionsId.copy(out, at);
    at += out.write(e.connections, at, 'latin1');
  }
  return out;
}

/** One update's payload; INVALID_ARGUMENT when a value does not fit its Go field. */
export function encodeTopologyUpdate(peers: readonly TopologyPeer[]): Buffer {
  return assembleTopologyUpdate(peers.map(encodeTopologyEntry));
}

/** The same stream through the general gob encoder: the reference the direct writer must match. */
export function encodeTopologyUpdateWithGob(peers: readonly TopologyPeer[]): Buffer {
  const enc = new GobEncoder();
  for (const { peer, connections } of peers) {
    checkShortId(peer.shortId);
    enc.encode(
      PEER_SUMMARY_GOB_TYPE,
      gobStructValue('peerSummary', [
        ['NameByte', peerNameToBytes(peer.name)],
        ['NickName', peer.nickName],
        ['UID', peer.uid], // the encoder refuses values outside uint64 (INVALID_ARGUMENT)
        ['Version', peer.version],
        ['ShortID', peer.shortId],
        ['HasShortID', peer.hasShortId],
      ]),
    );
    enc.encode(
      CONNECTION_SUMMARIES_GOB_TYPE,
      connections.map((c) =>
        gobStructValue('connectionSummary', [
          ['NameByte', peerNameToBytes(c.remoteName)],
          ['RemoteTCPAddr', c.remoteTcpAddr],
          ['Outbound', c.outbound],
          ['Established', c.established],
        ]),
      ),
    );
  }
  return enc.toBuffer();
}

// --- decoding ---------------------------------------------------------------------------------

/** The peers of one update by the general gob decoder (the reference, and the fallback). */
export function decodeTopologyUpdateWithGob(payload: Uint8Array): TopologyPeer[] {
  const values = decodeGobStream(payload);
  if (values.length % 2 !== 0) throw gobDecodeError('topology update: a peerSummary without its connections');
  const out: TopologyPeer[] = [];
  for (let i = 0; i < values.length; i += 2) {
    const ps = expectStruct(values[i] as (typeof values)[number], 'peerSummary');
    const peer: PeerSummary = {
      name: nameOf(ps, 'peerSummary'),
      nickName: ps.string('NickName'),
      uid: ps.uint('UID'),
      version: ps.uint('Version'),
      shortId: ps.uintBits('ShortID', 16),
      hasShortId: ps.bool('HasShortID'),
    };
    const connections = expectList(values[i + 1] as (typeof values)[number], 'connectionSummaries').map((d): ConnectionSummary => {
      const cs = expectStruct(d, 'connectionSummary');
      return {
        remoteName: nameOf(cs, 'connectionSummary'),
        remoteTcpAddr: cs.string('RemoteTCPAddr'),
        outbound: cs.bool('Outbound'),
        established: cs.bool('Established'),
      };
    });
    out.push({ peer, connections });
  }
  return out;
}

/**
 * Type definitions already read, by their message bytes. One per router: a sender repeats the
 * same definitions at the start of every update. Bounded; forgets everything when full.
 */
export class TopologyDecodeCache {
  private readonly defs: CachedDefinition[] = [];
  private next = 0;
  constructor(private readonly max = 16) {}

  /** The definition in message bytes [start, end) of `bytes`. */
  definition(bytes: Buffer, start: number, end: number): CachedDefinition {
    const n = end - start;
    for (const d of this.defs) {
      // Compared in place: no copy, no key string.
      if (d.bytes.length === n && d.bytes.compare(bytes, start, end) === 0) return d;
    }
    const { id, def } = decodeGobDefinition(bytes.subarray(start, end));
    const d: CachedDefinition = { bytes: Buffer.from(bytes.subarray(start, end)), id, def, summary: layout(def, SUMMARY_FIELDS) };
    // A few senders' worth of definitions; the oldest goes first.
    if (this.defs.length < this.max) this.defs.push(d);
    else {
      this.defs[this.next] = d;
      this.next = (this.next + 1) % this.max;
    }
    return d;
  }
}

/** A type definition read once, with what the direct decoder derives from it. */
interface CachedDefinition {
  readonly bytes: Buffer;
  readonly id: number;
  readonly def: WireDef;
  /** Field codes when it is the peerSummary struct (layout()), else undefined. */
  readonly summary: number[] | undefined;
  /** Field codes of the connectionSummary elements when it is a slice of them, by element definition. */
  list?: { readonly elem: CachedDefinition; readonly fields: number[] | undefined };
}

/** The peers of one update, in wire order (`cache`: definitions seen before, see above). */
export function decodeTopologyUpdate(payload: Uint8Array, cache?: TopologyDecodeCache): TopologyPeer[] {
  // Without `known`, every entry is decoded.
  return decodeTopologyUpdateEncoded(payload, cache).entries as TopologyPeer[];
}

/** The encoding of the entry we hold for a peer, if we keep it (Peer.encoded). */
export type KnownEntries = (name: PeerName) => EncodedTopologyEntry | undefined;

export interface DecodedTopologyUpdate {
  /**
   * The entries in wire order; with `known`, an entry that is byte for byte the one we hold
   * (canonical, so the same peer, version and connections) is not decoded and is undefined here.
   */
  readonly entries: (TopologyPeer | undefined)[];
  /** The peer of each entry. */
  readonly names: PeerName[];
  /**
   * Entry i's bodies (copied out) when they are exactly what encodeTopologyEntry writes for it
   * (canonical: fields in Go's order, zero fields omitted, shortest integers, connections in
   * name order, each once), so a receiver that takes the entry can pass it on without encoding
   * it again; undefined otherwise (e.g. the original lists connections in map order).
   */
  encoded(i: number): EncodedTopologyEntry | undefined;
}

/**
 * decodeTopologyUpdate, with the entries' canonical bodies where they are; entries equal to the
 * ones `known` gives are recognised by their bytes and not decoded at all (the periodic gossip
 * repeats the whole table, and almost all of it is what the receiver holds already).
 */
export function decodeTopologyUpdateEncoded(payload: Uint8Array, cache?: TopologyDecodeCache, known?: KnownEntries): DecodedTopologyUpdate {
  const fast = decodeDirect(payload, cache ?? new TopologyDecodeCache(), known);
  if (fast) return fast;
  const entries = decodeTopologyUpdateWithGob(payload);
  return { entries, names: entries.map((e) => e.peer.name), encoded: () => undefined };
}

/** Bytes [start, end) of `b` are the latin1 string `s` (a copy and a native compare beat a loop). */
function sameBytes(b: Buffer, start: number, end: number, s: string): boolean {
  return end - start === s.length && b.toString('latin1', start, end) === s;
}

interface Message {
  readonly typeId: number;
  /** Offsets: message start (its length prefix), type id, body (after the id), end. */
  readonly start: number;
  readonly idStart: number;
  readonly bodyStart: number;
  readonly end: number;
}

/** Splits a well-formed stream into its messages (used on our own encoder's output). */
function splitMessages(b: Buffer): Message[] {
  const out: Message[] = [];
  const r = new Cursor(b, 0, b.length);
  while (r.pos < b.length) {
    const start = r.pos;
    const len = r.uint();
    const idStart = r.pos;
    const typeId = r.int();
    out.push({ typeId, start, idStart, bodyStart: r.pos, end: idStart + len });
    r.pos = idStart + len;
  }
  return out;
}

/** Thrown inside the direct decoder: not a fault to report, just "let the general decoder say". */
const FALLBACK = new Error('fallback');

/** A bounds-checked reader over [pos, end); any problem throws FALLBACK. */
class Cursor {
  /** False once something was read that encodeTopologyEntry would have written differently. */
  canonical = true;

  constructor(
    readonly b: Buffer,
    public pos: number,
    public end: number,
  ) {}

  /** A gob uint as a number (values above 2^53 are not needed where this is used). */
  uint(): number {
    if (this.pos >= this.end) throw FALLBACK;
    const first = this.b[this.pos++] as number;
    if (first < 0x80) return first;
    const n = 256 - first;
    if (n > 8 || n > this.end - this.pos) throw FALLBACK;
    if (this.b[this.pos] === 0 || (n === 1 && (this.b[this.pos] as number) < 0x80)) this.canonical = false;
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + (this.b[this.pos++] as number);
    if (v > Number.MAX_SAFE_INTEGER) throw FALLBACK;
    return v;
  }

  /** A gob uint as a bigint (UIDs and versions use all 64 bits). */
  bigUint(): bigint {
    if (this.pos >= this.end) throw FALLBACK;
    const first = this.b[this.pos++] as number;
    if (first < 0x80) return BigInt(first);
    const n = 256 - first;
    if (n > 8 || n > this.end - this.pos) throw FALLBACK;
    if (this.b[this.pos] === 0 || (n === 1 && (this.b[this.pos] as number) < 0x80)) this.canonical = false;
    if (n <= 6) {
      let v = 0;
      for (let i = 0; i < n; i++) v = v * 256 + (this.b[this.pos++] as number);
      return BigInt(v);
    }
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.b[this.pos++] as number);
    return v;
  }

  int(): number {
    const u = this.uint();
    return u % 2 === 1 ? -(u - 1) / 2 - 1 : u / 2;
  }

  /** A 6-byte []byte holding a peer name; other lengths are for the general decoder to refuse. */
  name(): PeerName {
    const n = this.uint();
    if (n !== PEER_NAME_BYTES || n > this.end - this.pos) throw FALLBACK;
    const v = peerNameFromBytes(this.b, this.pos);
    this.pos += n;
    return v;
  }

  string(): string {
    const n = this.uint();
    if (n > this.end - this.pos) throw FALLBACK;
    const start = this.pos;
    this.pos += n;
    for (let i = start; i < this.pos; i++) {
      // Not plain ASCII: let the general decoder check and decode the UTF-8.
      if ((this.b[i] as number) >= 0x80) throw FALLBACK;
    }
    return this.b.toString('latin1', start, this.pos);
  }
}

// Field codes of the two structs, by field name, with the basic type id each must have.
const SUMMARY_FIELDS = new Map<string, [number, number]>([
  ['NameByte', [0, GOB_BYTES.id]],
  ['NickName', [1, GOB_STRING.id]],
  ['UID', [2, GOB_UINT.id]],
  ['Version', [3, GOB_UINT.id]],
  ['ShortID', [4, GOB_UINT.id]],
  ['HasShortID', [5, GOB_BOOL.id]],
]);
const CONNECTION_FIELDS = new Map<string, [number, number]>([
  ['NameByte', [0, GOB_BYTES.id]],
  ['RemoteTCPAddr', [1, GOB_STRING.id]],
  ['Outbound', [2, GOB_BOOL.id]],
  ['Established', [3, GOB_BOOL.id]],
]);

/** Field number → field code, when a definition is the struct `fields` describes; else undefined. */
function layout(def: WireDef | undefined, fields: ReadonlyMap<string, [number, number]>): number[] | undefined {
  if (!def || def.kind !== 'struct') return undefined;
  const out: number[] = [];
  for (const f of def.fields) {
    const want = fields.get(f.name);
    if (!want || want[1] !== f.id) return undefined;
    out.push(want[0]);
  }
  return out;
}

/** Field codes in Go's order: the struct as encodeTopologyEntry writes it. */
function inOrder(fields: readonly number[]): boolean {
  return fields.every((f, i) => f === i);
}

/** In Go's order and every field there: the definition encodeTopologyEntry's bytes are written for. */
function whole(fields: readonly number[], all: ReadonlyMap<string, unknown>): boolean {
  return fields.length === all.size && inOrder(fields);
}

/** A bool as encodeTopologyEntry writes it is 1 (and false is never sent). */
function flag(r: Cursor): boolean {
  const v = r.uint();
  if (v !== 1) r.canonical = false;
  return v !== 0;
}

function readSummary(r: Cursor, fields: readonly number[]): PeerSummary {
  let name: PeerName | undefined;
  let nickName = '';
  let uid = 0n;
  let version = 0n;
  let shortId = 0;
  let hasShortId = false;
  for (let i = -1; ; ) {
    const delta = r.uint();
    if (delta === 0) break;
    i += delta;
    switch (fields[i]) {
      case 0:
        name = r.name();
        break;
      case 1:
        nickName = r.string();
        if (nickName === '') r.canonical = false;
        break;
      case 2:
        uid = r.bigUint();
        if (uid === 0n) r.canonical = false;
        break;
      case 3:
        version = r.bigUint();
        if (version === 0n) r.canonical = false;
        break;
      case 4: {
        const v = r.uint();
        if (v > 0xffff) throw FALLBACK;
        if (v === 0) r.canonical = false;
        shortId = v;
        break;
      }
      case 5:
        hasShortId = flag(r);
        break;
      default:
        throw FALLBACK;
    }
  }
  if (name === undefined) throw FALLBACK;
  return { name, nickName, uid, version, shortId, hasShortId };
}

function readConnection(r: Cursor, fields: readonly number[]): ConnectionSummary {
  let remoteName: PeerName | undefined;
  let remoteTcpAddr = '';
  let outbound = false;
  let established = false;
  for (let i = -1; ; ) {
    const delta = r.uint();
    if (delta === 0) break;
    i += delta;
    switch (fields[i]) {
      case 0:
        remoteName = r.name();
        break;
      case 1:
        remoteTcpAddr = r.string();
        if (remoteTcpAddr === '') r.canonical = false;
        break;
      case 2:
        outbound = flag(r);
        break;
      case 3:
        established = flag(r);
        break;
      default:
        throw FALLBACK;
    }
  }
  if (remoteName === undefined) throw FALLBACK;
  return { remoteName, remoteTcpAddr, outbound, established };
}

/** The update read directly, or undefined when the general decoder must have the last word. */
function decodeDirect(payload: Uint8Array, cache: TopologyDecodeCache, known?: KnownEntries): DecodedTopologyUpdate | undefined {
  const b = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  // This stream's definitions by id: a handful from a router, but a peer may send thousands
  // (a scan of a list per lookup made 1 MB of them take 8 s).
  const defs = new Map<number, CachedDefinition>();
  const defOf = (id: number): CachedDefinition | undefined => defs.get(id);
  const summaryLayout = (id: number): number[] | undefined => defOf(id)?.summary;
  const listLayout = (id: number): number[] | undefined => {
    const d = defOf(id);
    if (!d || d.def.kind !== 'slice') return undefined;
    const elem = defOf(d.def.elem);
    if (!elem) return undefined;
    if (d.list?.elem !== elem) d.list = { elem, fields: layout(elem.def, CONNECTION_FIELDS) };
    return d.list.fields;
  };
  const entries: (TopologyPeer | undefined)[] = [];
  const names: PeerName[] = [];
  /** Entries recognised as the ones we hold, by index. */
  let held: Map<number, EncodedTopologyEntry> | undefined;
  /** Per entry: summary body start and end, connections body start and end; -1 when not canonical. */
  const bodies: number[] = [];
  let summary: PeerSummary | undefined;
  let summaryBody: [number, number] | undefined;
  /**
   * A summary byte for byte the one we hold of that peer, not decoded (yet): if its connections
   * are ours too, the entry is ours and neither is decoded; else the summary is read then. The
   * connections' type definitions come between the two in the first entry of a stream.
   */
  let candidate: { name: PeerName; mine: EncodedTopologyEntry; fields: number[]; start: number; end: number } | undefined;
  try {
    const r = new Cursor(b, 0, b.length);
    while (r.pos < b.length) {
      r.end = b.length;
      const start = r.pos;
      const len = r.uint();
      if (len === 0 || len > b.length - r.pos) throw FALLBACK;
      const end = r.pos + len;
      r.end = end;
      const id = r.int();
      if (id < 0) {
        const d = cache.definition(b, start, end);
        if (d.id !== -id || defs.has(d.id)) throw FALLBACK;
        defs.set(d.id, d);
        r.pos = end;
        continue;
      }
      const bodyStart = r.pos;
      if (summary === undefined && candidate === undefined) {
        const fields = summaryLayout(id);
        if (!fields) throw FALLBACK;
        // The entry we hold, byte for byte (canonical layout, NameByte first)? Only under the
        // whole struct: the same bytes under a definition with fewer fields name fields it does
        // not have, which the general decoder refuses.
        if (known && whole(fields, SUMMARY_FIELDS) && b[bodyStart] === 1 && b[bodyStart + 1] === PEER_NAME_BYTES && end - bodyStart >= 2 + PEER_NAME_BYTES) {
          const name = peerNameFromBytes(b, bodyStart + 2);
          const mine = known(name);
          if (mine && sameBytes(b, bodyStart, end, mine.summary)) {
            candidate = { name, mine, fields, start: bodyStart, end };
            r.pos = end;
            continue;
          }
        }
        r.canonical = inOrder(fields);
        summary = readSummary(r, fields);
        summaryBody = r.canonical ? [bodyStart, end] : undefined;
      } else {
        const fields = listLayout(id);
        if (!fields) throw FALLBACK;
        if (candidate) {
          const c = candidate;
          candidate = undefined;
          if (whole(fields, CONNECTION_FIELDS) && sameBytes(b, bodyStart, end, c.mine.connections)) {
            (held ??= new Map()).set(entries.length, c.mine);
            entries.push(undefined);
            names.push(c.name);
            bodies.push(-1, -1, -1, -1);
            r.pos = end;
            continue;
          }
          // Newer connections under the summary we hold: read that summary after all.
          const rs = new Cursor(b, c.start, c.end);
          rs.canonical = inOrder(c.fields);
          summary = readSummary(rs, c.fields);
          if (rs.pos !== c.end) throw FALLBACK;
          summaryBody = rs.canonical ? [c.start, c.end] : undefined;
        }
        r.canonical = summaryBody !== undefined && inOrder(fields);
        if (r.uint() !== 0) throw FALLBACK;
        const n = r.uint();
        if (n > r.end - r.pos) throw FALLBACK;
        const connections: ConnectionSummary[] = [];
        for (let k = 0; k < n; k++) {
          const c = readConnection(r, fields);
          // Canonical lists are in name order, each name once (as Peer.toEntry gives them).
          if (k > 0 && c.remoteName <= (connections[k - 1] as ConnectionSummary).remoteName) r.canonical = false;
          connections.push(c);
        }
        entries.push({ peer: summary!, connections });
        names.push(summary!.name);
        if (r.canonical && summaryBody && r.pos === end) bodies.push(summaryBody[0], summaryBody[1], bodyStart, end);
        else bodies.push(-1, -1, -1, -1);
        summary = undefined;
      }
      if (r.pos !== end) throw FALLBACK;
    }
  } catch (e) {
    if (e === FALLBACK || (e instanceof WeaveError && e.code === 'DECODE_FAILED')) return undefined;
    throw e;
  }
  if (summary !== undefined || candidate !== undefined) return undefined;
  const encoded = (i: number): EncodedTopologyEntry | undefined => {
    const same = held?.get(i);
    if (same) return same;
    const k = 4 * i;
    const s0 = bodies[k];
    if (s0 === undefined || s0 < 0) return undefined;
    // Copies (strings): an entry may outlive the update it came in by far.
    return { summary: b.toString('latin1', s0, bodies[k + 1]), connections: b.toString('latin1', bodies[k + 2], bodies[k + 3]) };
  };
  return { entries, names, encoded };
}
