// The IPallocation gossipState without the general gob value model (codec.ts has the format).
//
// Why: every IPAM message carries the whole ring and, as Go sends it, all twelve type
// definitions; a peer encodes its state for every gossip, broadcast and ring reply, and decodes
// every one it receives. Through the general codec that is most of the allocator's CPU (a
// simulated cluster spent a third of its time there). So, as topology-update.ts does:
//  - encoding writes the value directly and puts in front the definitions the general encoder
//    sends for those type ids (taken once from its own output, so they cannot differ);
//  - decoding reads each definition with the general decoder once (kept by its bytes: a sender
//    repeats the same ones in every message), checks that the types are the shapes Go and we
//    send, and then reads the value straight into an IpamGossipState. Anything else (other
//    shapes, non-ASCII nicknames, duplicate keys, any fault) goes to the general decoder,
//    which gives the answer or the DECODE_FAILED it always gives; so this is exactly as total.
// Both are checked against the general codec on the captured messages and on random states.
import type { PeerName } from '../core/peer-name.js';
import { decodeGobDefinition } from '../mesh/gob/gob-decoder.js';
import { gobDecodeError } from '../mesh/gob/gob-type.js';
import type { WireDef } from '../mesh/gob/wire-type.js';
import { DEFAULT_TYPE_IDS, MIN_PAXOS_ENTRY_BYTES, decodeGossipState, encodeGossipState, type IpamGossipState, type IpamTypeIds } from './codec.js';
import type { NodeClaims, NodeId, ProposalId } from './paxos.js';
import type { RingEntry, RingState } from './ring.js';

const FALLBACK = new Error('fallback');

// --- encoding -------------------------------------------------------------------------------

/** A byte buffer with gob's number encodings, on JS numbers where they are exact. */
class Out {
  buf = Buffer.allocUnsafe(1024);
  len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  /** A uint below 2^53. */
  uint(n: number): void {
    if (n < 0x80) {
      this.byte(n);
      return;
    }
    let k = 0;
    for (let x = n; x >= 1; x = Math.floor(x / 256)) k++;
    this.reserve(k + 1);
    this.buf[this.len++] = 256 - k;
    for (let i = k - 1; i >= 0; i--) this.buf[this.len++] = Math.floor(n / 2 ** (8 * i)) & 0xff;
  }

  bigUint(v: bigint): void {
    if (v < 2n ** 53n) {
      this.uint(Number(v));
      return;
    }
    let k = 0;
    for (let x = v; x > 0n; x >>= 8n) k++;
    this.reserve(k + 1);
    this.buf[this.len++] = 256 - k;
    for (let i = k - 1; i >= 0; i--) this.buf[this.len++] = Number((v >> BigInt(8 * i)) & 0xffn);
  }

  int(v: bigint): void {
    this.bigUint(v < 0n ? ((-v - 1n) << 1n) | 1n : v << 1n);
  }

  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.uint(b.length);
    this.reserve(b.length);
    b.copy(this.buf, this.len);
    this.len += b.length;
  }

  raw(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
}

interface Frame {
  /** The type definitions, as the general encoder sends them before the value. */
  readonly defs: Buffer;
  /** The gossipState type id, encoded. */
  readonly id: Buffer;
}

const frames = new Map<string, Frame>();

function frameFor(ids: IpamTypeIds | undefined): Frame {
  const key = JSON.stringify(ids ?? {});
  let f = frames.get(key);
  if (f) return f;
  const bytes = encodeGossipState({ now: 0n, nicknames: [] }, ids ? { typeIds: ids } : {});
  // Messages: the definitions, then the value {Nicknames: {}}: id, field delta 2, count 0, end.
  const c = new Cursor(bytes, 0, bytes.length);
  let last = 0;
  let idStart = 0;
  let idEnd = 0;
  while (c.pos < bytes.length) {
    last = c.pos;
    const len = c.uint();
    idStart = c.pos;
    c.int();
    idEnd = c.pos;
    c.pos = idStart + len;
  }
  if (bytes.length - idEnd !== 3) throw new Error('gossipState frame: unexpected encoder output');
  f = { defs: Buffer.from(bytes.subarray(0, last)), id: Buffer.from(bytes.subarray(idStart, idEnd)) };
  if (frames.size > 64) frames.clear();
  frames.set(key, f);
  return f;
}


function writeNodeId(o: Out, id: NodeId): void {
  let at = -1;
  if (id.name !== 0) {
    o.uint(1);
    o.uint(id.name);
    at = 0;
  }
  if (id.uid !== 0n) {
    o.uint(1 - at);
    o.bigUint(id.uid);
  }
  o.byte(0);
}

function writeProposal(o: Out, p: ProposalId): void {
  let at = -1;
  if (p.round !== 0) {
    o.uint(1);
    o.uint(p.round);
    at = 0;
  }
  o.uint(1 - at);
  writeNodeId(o, p.proposer);
  o.byte(0);
}

function writeClaims(o: Out, c: NodeClaims): void {
  o.uint(1);
  writeProposal(o, c.promise);
  o.uint(1);
  writeProposal(o, c.accepted);
  o.uint(1);
  let at = -1;
  if (c.acceptedVal.value.length > 0) {
    o.uint(1);
    o.uint(c.acceptedVal.value.length);
    for (const v of c.acceptedVal.value) o.uint(v);
    at = 0;
  }
  o.uint(1 - at);
  writeProposal(o, c.acceptedVal.origin);
  o.byte(0);
  o.byte(0);
}

function writeEntry(o: Out, e: RingEntry): void {
  let at = -1;
  const field = (i: number, v: number) => {
    if (v === 0) return;
    o.uint(i - at);
    o.uint(v);
    at = i;
  };
  field(0, e.token);
  field(1, e.peer);
  field(2, e.version);
  field(3, e.free);
  o.byte(0);
}

function writeRing(o: Out, r: RingState): void {
  let at = -1;
  const field = (i: number) => {
    o.uint(i - at);
    at = i;
  };
  for (const [i, v] of [[0, r.start], [1, r.end], [2, r.peer]] as const) {
    if (v !== 0) {
      field(i);
      o.uint(v);
    }
  }
  if (r.entries.length > 0) {
    field(3);
    o.uint(r.entries.length);
    for (const e of r.entries) writeEntry(o, e);
  }
  if (r.seeds.length > 0) {
    field(4);
    o.uint(r.seeds.length);
    for (const s of r.seeds) o.uint(s);
  }
  o.byte(0);
}

function safe(n: number, bits: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < 2 ** bits;
}

function encodable(state: IpamGossipState): boolean {
  if (state.now < -(2n ** 63n) || state.now >= 2n ** 63n) return false;
  if (!state.nicknames.every(([p]) => safe(p, 48))) return false;
  const node = (id: NodeId) => safe(id.name, 48) && id.uid >= 0n && id.uid < 2n ** 64n;
  const prop = (p: ProposalId) => safe(p.round, 53) && node(p.proposer);
  if (state.paxos && !state.paxos.every(([id, c]) => node(id) && prop(c.promise) && prop(c.accepted) && prop(c.acceptedVal.origin) && c.acceptedVal.value.every((v) => safe(v, 48)))) return false;
  const r = state.ring;
  if (r && !(safe(r.start, 32) && safe(r.end, 32) && safe(r.peer, 48) && r.seeds.every((s) => safe(s, 48)) && r.entries.every((e) => safe(e.token, 32) && safe(e.peer, 48) && safe(e.version, 32) && safe(e.free, 32)))) {
    return false;
  }
  return true;
}

/** encodeGossipState's bytes, written directly (values it cannot hold go the general way). */
export function encodeGossipStateDirect(state: IpamGossipState, opts: { typeIds?: IpamTypeIds } = {}): Buffer {
  if (!encodable(state)) return encodeGossipState(state, opts);
  const frame = frameFor(opts.typeIds);
  const o = new Out();
  o.raw(frame.id);
  let at = -1;
  if (state.now !== 0n) {
    o.uint(1);
    o.int(state.now);
    at = 0;
  }
  o.uint(1 - at);
  o.uint(state.nicknames.length);
  for (const [p, n] of state.nicknames) {
    o.uint(p);
    o.string(n);
  }
  at = 1;
  if (state.paxos) {
    o.uint(2 - at);
    o.uint(state.paxos.length);
    for (const [id, c] of state.paxos) {
      writeNodeId(o, id);
      writeClaims(o, c);
    }
    at = 2;
  }
  if (state.ring) {
    o.uint(3 - at);
    writeRing(o, state.ring);
  }
  o.byte(0);
  const body = o.buf.subarray(0, o.len);
  const len = new Out();
  len.uint(body.length);
  return Buffer.concat([frame.defs, len.buf.subarray(0, len.len), body]);
}

// --- decoding -------------------------------------------------------------------------------

class Cursor {
  constructor(
    readonly b: Buffer,
    public pos: number,
    public end: number,
  ) {}

  uint(): number {
    if (this.pos >= this.end) throw FALLBACK;
    const first = this.b[this.pos++] as number;
    if (first < 0x80) return first;
    const n = 256 - first;
    if (n > 7 || n > this.end - this.pos) throw FALLBACK;
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + (this.b[this.pos++] as number);
    if (v > Number.MAX_SAFE_INTEGER) throw FALLBACK;
    return v;
  }

  /** A uint that fits `bits` bits (as Go refuses to decode 2^32 into a uint32). */
  bits(bits: number): number {
    const v = this.uint();
    if (v >= 2 ** bits) throw FALLBACK;
    return v;
  }

  bigUint(): bigint {
    if (this.pos >= this.end) throw FALLBACK;
    const first = this.b[this.pos++] as number;
    if (first < 0x80) return BigInt(first);
    const n = 256 - first;
    if (n > 8 || n > this.end - this.pos) throw FALLBACK;
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.b[this.pos++] as number);
    return v;
  }

  int(): bigint {
    const u = this.bigUint();
    return u & 1n ? -(u >> 1n) - 1n : u >> 1n;
  }

  count(): number {
    const n = this.uint();
    if (n > this.end - this.pos) throw FALLBACK;
    return n;
  }

  /** Printable ASCII only; anything else is for the general decoder to check. */
  string(): string {
    const n = this.count();
    const start = this.pos;
    this.pos += n;
    for (let i = start; i < this.pos; i++) if ((this.b[i] as number) >= 0x80) throw FALLBACK;
    return this.b.toString('latin1', start, this.pos);
  }
}

/** Reads a struct's fields: f(field number) for each, in wire order. */
function fields(c: Cursor, max: number, f: (i: number) => void): void {
  for (let i = -1; ; ) {
    const delta = c.uint();
    if (delta === 0) return;
    i += delta;
    if (i > max) throw FALLBACK;
    f(i);
  }
}

function readNodeId(c: Cursor): NodeId {
  let name = 0;
  let uid = 0n;
  fields(c, 1, (i) => {
    if (i === 0) name = c.bits(48);
    else uid = c.bigUint();
  });
  return { name, uid };
}

// Go always sends nested structs, and decodeGossipState refuses claims without them (which is
// what bounds a Paxos entry from below); so does this, definitively (no fallback).
function missing(what: string): Error {
  return gobDecodeError(`IPAM: ${what} missing`);
}

function readProposal(c: Cursor): ProposalId {
  let round = 0;
  let proposer: NodeId | undefined;
  fields(c, 1, (i) => {
    if (i === 0) round = c.bits(53);
    else proposer = readNodeId(c);
  });
  if (!proposer) throw missing('ProposalID.Proposer');
  return { round, proposer };
}

/**
 * A list of peer names, as decodeGossipState: none zero, and for Seeds none repeated (an
 * AcceptedVal may repeat a name: a peer restarted without its store has a new UID).
 */
function readPeerList(c: Cursor, what: string, distinct: boolean): PeerName[] {
  const n = c.count();
  const out: PeerName[] = [];
  const seen = new Set<number>();
  for (let k = 0; k < n; k++) {
    const p = c.bits(48);
    if (p === 0 || (distinct && seen.has(p))) throw gobDecodeError(`IPAM: ${what}: zero or repeated peer name`);
    if (distinct) seen.add(p);
    out.push(p);
  }
  return out;
}

function readClaims(c: Cursor): NodeClaims {
  let promise: ProposalId | undefined;
  let accepted: ProposalId | undefined;
  let value: PeerName[] = [];
  let origin: ProposalId | undefined;
  let acceptedVal = false;
  fields(c, 2, (i) => {
    if (i === 0) promise = readProposal(c);
    else if (i === 1) accepted = readProposal(c);
    else {
      acceptedVal = true;
      fields(c, 1, (j) => {
        if (j === 0) value = readPeerList(c, 'AcceptedVal.Value', false);
        else origin = readProposal(c);
      });
      if (!origin) throw missing('AcceptedValue.Origin');
    }
  });
  if (!promise || !accepted || !acceptedVal || !origin) throw missing('NodeClaims field');
  return { promise, accepted, acceptedVal: { value, origin } };
}

function readRing(c: Cursor): RingState {
  let start = 0;
  let end = 0;
  let peer = 0;
  let entries: RingEntry[] = [];
  let seeds: PeerName[] = [];
  fields(c, 4, (i) => {
    switch (i) {
      case 0:
        start = c.bits(32);
        break;
      case 1:
        end = c.bits(32);
        break;
      case 2:
        peer = c.bits(48);
        break;
      case 3: {
        const n = c.count();
        entries = [];
        for (let k = 0; k < n; k++) {
          const e: RingEntry = { token: 0, peer: 0, version: 0, free: 0 };
          fields(c, 3, (j) => {
            if (j === 0) e.token = c.bits(32);
            else if (j === 1) e.peer = c.bits(48);
            else if (j === 2) e.version = c.bits(32);
            else e.free = c.bits(32);
          });
          // Start and End are read by now (fields ascend). As decodeGossipState: definitive.
          const prev = entries[k - 1];
          if ((prev && e.token <= prev.token) || e.token < start || e.token >= end || e.peer === 0) {
            throw gobDecodeError('IPAM: ring entry out of order, out of range or without a peer');
          }
          entries.push(e);
        }
        break;
      }
      default:
        seeds = readPeerList(c, 'Ring.Seeds', true);
    }
  });
  return { start, end, peer, entries, seeds };
}

function readState(c: Cursor): IpamGossipState {
  let now = 0n;
  let nicknames: [PeerName, string][] = [];
  let paxos: [NodeId, NodeClaims][] | undefined;
  let ring: RingState | undefined;
  fields(c, 3, (i) => {
    switch (i) {
      case 0:
        now = c.int();
        break;
      case 1: {
        const n = c.count();
        const seen = new Set<number>();
        nicknames = [];
        for (let k = 0; k < n; k++) {
          const p = c.bits(48);
          if (seen.has(p)) throw FALLBACK; // the general decoder keeps the last of duplicates
          seen.add(p);
          nicknames.push([p, c.string()]);
        }
        break;
      }
      case 2: {
        const n = c.count();
        // Every entry Go sends (and decodeGossipState accepts) takes this many bytes at least.
        if (n * MIN_PAXOS_ENTRY_BYTES > c.end - c.pos) throw gobDecodeError('IPAM: Paxos entry count exceeds the bytes left');
        const seen = new Set<string>();
        paxos = [];
        for (let k = 0; k < n; k++) {
          const id = readNodeId(c);
          const key = `${id.name}/${id.uid}`;
          if (id.name === 0 || seen.has(key)) throw gobDecodeError('IPAM: Paxos NodeID zero or repeated');
          seen.add(key);
          paxos.push([id, readClaims(c)]);
        }
        break;
      }
      default:
        ring = readRing(c);
    }
  });
  return { now, nicknames, ...(paxos ? { paxos } : {}), ...(ring ? { ring } : {}) };
}

// The shapes the definitions must describe for the direct reader (field name -> type: a basic
// id, or a shape name).
type Shape = { kind: 'struct'; fields: [string, number | string][] } | { kind: 'map'; key: number | string; elem: number | string } | { kind: 'slice'; elem: number | string };

const UINT = 3;
const INT = 2;
const STRING = 6;
const SHAPES: Record<string, Shape> = {
  gossipState: { kind: 'struct', fields: [['Now', INT], ['Nicknames', 'nicknames'], ['Paxos', 'paxos'], ['Ring', 'ring']] },
  nicknames: { kind: 'map', key: UINT, elem: STRING },
  paxos: { kind: 'map', key: 'nodeId', elem: 'nodeClaims' },
  nodeId: { kind: 'struct', fields: [['Name', UINT], ['UID', UINT]] },
  nodeClaims: { kind: 'struct', fields: [['Promise', 'proposal'], ['Accepted', 'proposal'], ['AcceptedVal', 'acceptedValue']] },
  proposal: { kind: 'struct', fields: [['Round', UINT], ['Proposer', 'nodeId']] },
  acceptedValue: { kind: 'struct', fields: [['Value', 'uints'], ['Origin', 'proposal']] },
  uints: { kind: 'slice', elem: UINT },
  ring: { kind: 'struct', fields: [['Start', UINT], ['End', UINT], ['Peer', UINT], ['Entries', 'entries'], ['Seeds', 'uints']] },
  entries: { kind: 'slice', elem: 'entry' },
  entry: { kind: 'struct', fields: [['Token', UINT], ['Peer', UINT], ['Version', UINT], ['Free', UINT]] },
};

/** Whether type `id` is `shape` (recursively; each id bound to one shape). */
function matches(id: number, shape: string, defs: ReadonlyMap<number, WireDef>, bound: Map<number, string>): boolean {
  const was = bound.get(id);
  if (was !== undefined) return was === shape;
  const def = defs.get(id);
  const want = SHAPES[shape];
  if (!def || !want || def.kind !== want.kind) return false;
  bound.set(id, shape);
  const sub = (got: number, w: number | string) => (typeof w === 'number' ? got === w : matches(got, w, defs, bound));
  switch (want.kind) {
    case 'struct':
      return def.kind === 'struct' && def.fields.length === want.fields.length && def.fields.every((f, i) => f.name === want.fields[i]?.[0] && sub(f.id, want.fields[i]?.[1] as number | string));
    case 'map':
      return def.kind === 'map' && sub(def.key, want.key) && sub(def.elem, want.elem);
    case 'slice':
      return def.kind === 'slice' && sub(def.elem, want.elem);
  }
}

/**
 * Decodes gossipState payloads, directly when they have the usual shape, else with the
 * general decoder. Keeps what it learnt of definitions (bounded): one per peer is plenty.
 */
/** Definitions (all of a payload's) the direct decoder keeps what it learnt of, at most. */
const MAX_CACHED_DEFINITIONS_BYTES = 4096;

export class IpamDecoder {
  private readonly defs = new Map<string, { id: number; def: WireDef }>();
  private readonly plans = new Map<string, number | null>();

  constructor(private readonly max = 256) {}

  decode(payload: Buffer): IpamGossipState {
    try {
      return this.direct(payload);
    } catch (e) {
      if (e !== FALLBACK) throw e;
      return decodeGossipState(payload).state;
    }
  }

  private definition(b: Buffer, start: number, end: number): { id: number; def: WireDef } {
    const key = b.toString('latin1', start, end);
    let d = this.defs.get(key);
    if (!d) {
      try {
        d = decodeGobDefinition(b.subarray(start, end));
      } catch {
        throw FALLBACK;
      }
      if (this.defs.size >= this.max) this.defs.clear();
      this.defs.set(key, d);
    }
    return d;
  }

  private direct(b: Buffer): IpamGossipState {
    // Find the value message: the definitions before it are usually ones we have seen.
    const c = new Cursor(b, 0, b.length);
    const defStarts: number[] = [];
    let valueStart = -1;
    let valueEnd = 0;
    let id = 0;
    while (c.pos < b.length) {
      const start = c.pos;
      const len = c.uint();
      if (len === 0 || len > b.length - c.pos) throw FALLBACK;
      const end = c.pos + len;
      c.end = end;
      id = Number(c.int());
      c.end = b.length;
      if (id >= 0) {
        valueStart = start;
        valueEnd = end;
        break;
      }
      defStarts.push(start);
      c.pos = end;
    }
    if (valueStart < 0 || valueEnd !== b.length) throw FALLBACK; // one value, last
    // The definitions are a few hundred bytes from any router; what is learnt is kept by their
    // bytes, so bigger ones (a peer may send megabytes) go to the general decoder, uncached.
    if (valueStart > MAX_CACHED_DEFINITIONS_BYTES) throw FALLBACK;
    const key = b.toString('latin1', 0, valueStart);
    let top = this.plans.get(key);
    if (top === undefined) {
      const defs = new Map<number, WireDef>();
      defStarts.forEach((start, k) => {
        const d = this.definition(b, start, defStarts[k + 1] ?? valueStart);
        if (defs.has(d.id)) throw FALLBACK;
        defs.set(d.id, d.def);
      });
      top = matches(id, 'gossipState', defs, new Map()) ? id : null;
      if (this.plans.size >= this.max) this.plans.clear();
      this.plans.set(key, top);
    }
    if (top !== id) throw FALLBACK;
    c.end = valueEnd;
    const state = readState(c);
    if (c.pos !== valueEnd) throw FALLBACK;
    return state;
  }
}

export { DEFAULT_TYPE_IDS };
