// Wire format of the `IPallocation` gossip channel (weave `ipam/allocator.go`, `ring`, `paxos`),
// on the general gob codec of mesh/gob:
//
//   gossipState   {Now int64; Nicknames map[mesh.PeerName]string; Paxos paxos.GossipState;
//                  Ring *ring.Ring}            (broadcast and periodic gossip payload)
//   Ring          {Start, End address.Address; Peer mesh.PeerName; Entries []*entry;
//                  Seeds []mesh.PeerName}
//   entry         {Token address.Address; Peer mesh.PeerName; Version uint32; Free address.Count}
//   GossipState   map[NodeID]NodeClaims, NodeID {Name mesh.PeerName; UID mesh.PeerUID}
//   NodeClaims    {Promise, Accepted ProposalID; AcceptedVal AcceptedValue}
//   ProposalID    {Round uint; Proposer NodeID}   AcceptedValue {Value []mesh.PeerName; Origin ProposalID}
//   address.Range {Start, End address.Address}
//
// Unicast payloads start with one byte: 0 space request (then a Range), 1 ring update (then a
// gossipState), 2 space request denied (then a Range).
//
// Go omits zero fields, sends non-nil maps even when empty and nested structs always, and
// omits nil pointers: so `paxos` undefined is a nil map (an observer, or a peer with a ring)
// and `ring` undefined a nil Ring. Decoding follows Go's decoding into those structs (fields
// by name, unknown fields ignored, a wrong kind or an out-of-range number is DECODE_FAILED),
// so it is total. Type ids are the sender's: decoding reports the ones it met, and encoding
// takes them back (`typeIds`), which is how a captured message re-encodes byte for byte; by
// default ours are the ids an original router used in the captures (Ring 65-68, gossipState
// 81-88).
import { WeaveError } from '../core/errors.js';
import type { PeerName } from '../core/peer-name.js';
import { decodeGobStream } from '../mesh/gob/gob-decoder.js';
import { GobEncoder } from '../mesh/gob/gob-encoder.js';
import {
  expectMap, expectString, expectStruct, expectUintBits, type GobStructView, type GobTyped,
} from '../mesh/gob/gob-expect.js';
import {
  GOB_INT, GOB_STRING, GOB_UINT, gobDecodeError, gobStructValue,
  type GobMapType, type GobSliceType, type GobStruct, type GobStructType, type GobType, type GobValue,
} from '../mesh/gob/gob-type.js';
import type { AddressRange } from './address-range.js';
import type { AcceptedValue, NodeClaims, NodeId, PaxosGossip, ProposalId } from './paxos.js';
import type { RingEntry, RingState } from './ring.js';

/** The name of the gossip channel (prog/weaver: router.NewGossip("IPallocation", ...)). */
export const IPAM_CHANNEL = 'IPallocation';

/** Leading byte of unicast messages (allocator.go: msgSpaceRequest = iota ...). */
export const MSG_SPACE_REQUEST = 0;
export const MSG_RING_UPDATE = 1;
export const MSG_SPACE_REQUEST_DENIED = 2;

export interface IpamGossipState {
  /** Sender's clock, Unix seconds (kept for compatibility; the original ignores it). */
  readonly now: bigint;
  readonly nicknames: ReadonlyArray<readonly [PeerName, string]>;
  /** Paxos claims; undefined is Go's nil map (observers, and every peer once a ring exists). */
  readonly paxos?: PaxosGossip;
  readonly ring?: RingState;
}

export type IpamUnicast =
  | { readonly kind: 'spaceRequest'; readonly range: AddressRange }
  | { readonly kind: 'ringUpdate'; readonly state: IpamGossipState }
  | { readonly kind: 'spaceRequestDenied'; readonly range: AddressRange };

/** The Go types of this channel, by role; values are gob type ids. */
export interface IpamTypeIds {
  gossipState?: number;
  nicknames?: number;
  paxos?: number;
  nodeId?: number;
  nodeClaims?: number;
  proposalId?: number;
  acceptedValue?: number;
  value?: number;
  ring?: number;
  entries?: number;
  entry?: number;
  seeds?: number;
  range?: number;
}

/** The ids an original router used in the captured run (plain/tcp-messages.jsonl, h1). */
export const DEFAULT_TYPE_IDS: Readonly<Required<IpamTypeIds>> = Object.freeze({
  ring: 65,
  entry: 66,
  entries: 67,
  seeds: 68,
  range: 69,
  gossipState: 81,
  nicknames: 82,
  nodeId: 83,
  nodeClaims: 84,
  proposalId: 85,
  acceptedValue: 86,
  value: 87,
  paxos: 88,
});

const PEER_NAME_BITS = 48;
const ADDRESS_BITS = 32;
/** Rounds are Go uints; we keep them exact in JS numbers. */
const ROUND_BITS = 53;
/**
 * The fewest bytes a Paxos entry takes on the wire once decoding has checked it: a NodeID with a
 * non-zero Name (3) and NodeClaims with all its nested structs, which Go always sends (15).
 * The direct decoder refuses a count that cannot fit; this file refuses the entries that could.
 */
export const MIN_PAXOS_ENTRY_BYTES = 18;

interface IpamTypes {
  gossipState: GobStructType;
  ring: GobStructType;
  range: GobStructType;
}

function buildTypes(ids: Required<IpamTypeIds>): IpamTypes {
  const nodeId: GobStructType = { kind: 'struct', name: '', id: ids.nodeId, fields: [{ name: 'Name', type: GOB_UINT }, { name: 'UID', type: GOB_UINT }] };
  const proposalId: GobStructType = {
    kind: 'struct', name: 'ProposalID', id: ids.proposalId,
    fields: [{ name: 'Round', type: GOB_UINT }, { name: 'Proposer', type: nodeId }],
  };
  const value: GobSliceType = { kind: 'slice', name: 'Value', elem: GOB_UINT, id: ids.value };
  const acceptedValue: GobStructType = {
    kind: 'struct', name: 'AcceptedValue', id: ids.acceptedValue,
    fields: [{ name: 'Value', type: value }, { name: 'Origin', type: proposalId }],
  };
  const nodeClaims: GobStructType = {
    kind: 'struct', name: '', id: ids.nodeClaims,
    fields: [{ name: 'Promise', type: proposalId }, { name: 'Accepted', type: proposalId }, { name: 'AcceptedVal', type: acceptedValue }],
  };
  const paxos: GobMapType = { kind: 'map', name: 'GossipState', key: nodeId, elem: nodeClaims, id: ids.paxos };
  const nicknames: GobMapType = { kind: 'map', name: 'map[mesh.PeerName]string', key: GOB_UINT, elem: GOB_STRING, id: ids.nicknames };
  const entry: GobStructType = {
    kind: 'struct', name: '', id: ids.entry,
    fields: ['Token', 'Peer', 'Version', 'Free'].map((name) => ({ name, type: GOB_UINT })),
  };
  const entries: GobSliceType = { kind: 'slice', name: 'entries', elem: entry, id: ids.entries };
  const seeds: GobSliceType = { kind: 'slice', name: '[]mesh.PeerName', elem: GOB_UINT, id: ids.seeds };
  const ring: GobStructType = {
    kind: 'struct', name: 'Ring', id: ids.ring,
    fields: [
      { name: 'Start', type: GOB_UINT },
      { name: 'End', type: GOB_UINT },
      { name: 'Peer', type: GOB_UINT },
      { name: 'Entries', type: entries },
      { name: 'Seeds', type: seeds },
    ],
  };
  const gossipState: GobStructType = {
    kind: 'struct', name: 'gossipState', id: ids.gossipState,
    fields: [
      { name: 'Now', type: GOB_INT },
      { name: 'Nicknames', type: nicknames },
      { name: 'Paxos', type: paxos },
      { name: 'Ring', type: ring },
    ],
  };
  const range: GobStructType = { kind: 'struct', name: 'Range', id: ids.range, fields: [{ name: 'Start', type: GOB_UINT }, { name: 'End', type: GOB_UINT }] };
  return { gossipState, ring, range };
}

let defaultTypes: IpamTypes | undefined;

function typesFor(ids: IpamTypeIds | undefined): IpamTypes {
  if (!ids || Object.keys(ids).length === 0) return (defaultTypes ??= buildTypes({ ...DEFAULT_TYPE_IDS }));
  return buildTypes({ ...DEFAULT_TYPE_IDS, ...ids });
}

// --- encoding -----------------------------------------------------------------------------------

function nodeIdValue(id: NodeId): GobStruct {
  return gobStructValue('', [['Name', id.name], ['UID', id.uid]]);
}

function proposalValue(p: ProposalId): GobStruct {
  return gobStructValue('ProposalID', [['Round', p.round], ['Proposer', nodeIdValue(p.proposer)]]);
}

function claimsValue(c: NodeClaims): GobStruct {
  return gobStructValue('', [
    ['Promise', proposalValue(c.promise)],
    ['Accepted', proposalValue(c.accepted)],
    ['AcceptedVal', gobStructValue('AcceptedValue', [['Value', [...c.acceptedVal.value]], ['Origin', proposalValue(c.acceptedVal.origin)]])],
  ]);
}

function ringValue(r: RingState): GobStruct {
  return gobStructValue('Ring', [
    ['Start', r.start],
    ['End', r.end],
    ['Peer', r.peer],
    ['Entries', r.entries.map((e) => gobStructValue('', [['Token', e.token], ['Peer', e.peer], ['Version', e.version], ['Free', e.free]]))],
    ['Seeds', [...r.seeds]],
  ]);
}

function encodeWith(type: GobType, value: GobValue): Buffer {
  try {
    return new GobEncoder().encode(type, value).toBuffer();
  } catch (e) {
    throw new WeaveError('INVALID_ARGUMENT', `IPAM message does not encode: ${(e as Error).message}`, { cause: e });
  }
}

/** One gossipState as its own gob stream (what the original's `encode()` returns). */
export function encodeGossipState(state: IpamGossipState, opts: { typeIds?: IpamTypeIds } = {}): Buffer {
  const t = typesFor(opts.typeIds);
  const fields: [string, GobValue][] = [
    ['Now', state.now],
    ['Nicknames', new Map<GobValue, GobValue>(state.nicknames.map(([k, v]) => [k, v]))],
  ];
  if (state.paxos) fields.push(['Paxos', new Map<GobValue, GobValue>(state.paxos.map(([id, c]) => [nodeIdValue(id), claimsValue(c)]))]);
  if (state.ring) fields.push(['Ring', ringValue(state.ring)]);
  return encodeWith(t.gossipState, gobStructValue('gossipState', fields));
}

export function encodeRange(r: AddressRange, opts: { typeIds?: IpamTypeIds } = {}): Buffer {
  return encodeWith(typesFor(opts.typeIds).range, gobStructValue('Range', [['Start', r.start], ['End', r.end]]));
}

export function encodeUnicast(msg: IpamUnicast, opts: { typeIds?: IpamTypeIds } = {}): Buffer {
  switch (msg.kind) {
    case 'spaceRequest':
      return Buffer.concat([Buffer.of(MSG_SPACE_REQUEST), encodeRange(msg.range, opts)]);
    case 'spaceRequestDenied':
      return Buffer.concat([Buffer.of(MSG_SPACE_REQUEST_DENIED), encodeRange(msg.range, opts)]);
    case 'ringUpdate':
      return Buffer.concat([Buffer.of(MSG_RING_UPDATE), encodeGossipState(msg.state, opts)]);
  }
}

// --- decoding -----------------------------------------------------------------------------------

function struct(d: GobTyped | undefined, what: string): GobStructView | undefined {
  return d === undefined ? undefined : expectStruct(d, what);
}

function nodeIdOf(v: GobStructView | undefined): NodeId {
  if (!v) return { name: 0, uid: 0n };
  return { name: v.uintBits('Name', PEER_NAME_BITS), uid: v.uint('UID') };
}

// Refusals beyond Go's decoding (a Weave Net peer never sends these, and they would let a peer
// make us build millions of empty values): Paxos claims without their nested structs (Go always
// sends them), zero peer names in lists and Paxos keys, repeated ones in Seeds and Paxos keys
// (not in AcceptedVal.Value: Go's repeats a peer restarted with a new UID), and ring entries out
// of order, outside [Start, End) or without a peer (Go's checkInvariants refuses those on
// merge). codec-direct.ts refuses exactly the same.

function present(v: GobStructView | undefined, what: string): GobStructView {
  if (!v) throw gobDecodeError(`IPAM: ${what} missing`);
  return v;
}

/** Peer names, none zero; for Seeds none repeated (an AcceptedVal repeats a restarted peer's). */
function peerList(v: GobStructView, field: string, what: string, distinct: boolean): PeerName[] {
  const out = v.list(field).map((d) => expectUintBits(d, what, PEER_NAME_BITS));
  if (out.includes(0) || (distinct && new Set(out).size !== out.length)) throw gobDecodeError(`IPAM: ${what}: zero or repeated peer name`);
  return out;
}

function proposalOf(v: GobStructView | undefined, what: string): ProposalId {
  const p = present(v, what);
  return { round: p.uintBits('Round', ROUND_BITS), proposer: nodeIdOf(present(struct(p.field('Proposer'), `${what}.Proposer`), `${what}.Proposer`)) };
}

function acceptedValueOf(v: GobStructView | undefined, what: string): AcceptedValue {
  const a = present(v, what);
  return {
    value: peerList(a, 'Value', `${what}.Value`, false),
    origin: proposalOf(struct(a.field('Origin'), `${what}.Origin`), `${what}.Origin`),
  };
}

function claimsOf(v: GobStructView): NodeClaims {
  return {
    promise: proposalOf(struct(v.field('Promise'), 'NodeClaims.Promise'), 'NodeClaims.Promise'),
    accepted: proposalOf(struct(v.field('Accepted'), 'NodeClaims.Accepted'), 'NodeClaims.Accepted'),
    acceptedVal: acceptedValueOf(struct(v.field('AcceptedVal'), 'NodeClaims.AcceptedVal'), 'NodeClaims.AcceptedVal'),
  };
}

function ringOf(v: GobStructView): RingState {
  const entries: RingEntry[] = v.list('Entries').map((d) => {
    const e = expectStruct(d, 'entry');
    return {
      token: e.uintBits('Token', ADDRESS_BITS),
      peer: e.uintBits('Peer', PEER_NAME_BITS),
      version: e.uintBits('Version', ADDRESS_BITS),
      free: e.uintBits('Free', ADDRESS_BITS),
    };
  });
  const start = v.uintBits('Start', ADDRESS_BITS);
  const end = v.uintBits('End', ADDRESS_BITS);
  entries.forEach((e, k) => {
    const prev = entries[k - 1];
    if ((prev && e.token <= prev.token) || e.token < start || e.token >= end || e.peer === 0) {
      throw gobDecodeError('IPAM: ring entry out of order, out of range or without a peer');
    }
  });
  return { start, end, peer: v.uintBits('Peer', PEER_NAME_BITS), entries, seeds: peerList(v, 'Seeds', 'Ring.Seeds', true) };
}

function idOf(t: GobType | undefined): number | undefined {
  return t && 'id' in t && typeof t.id === 'number' ? t.id : undefined;
}

function fieldType(t: GobType | undefined, name: string): GobType | undefined {
  return t?.kind === 'struct' ? t.fields.find((f) => f.name === name)?.type : undefined;
}

/** The type ids a decoded gossipState stream used, by role (absent roles left out). */
function typeIdsOf(gs: GobType): IpamTypeIds {
  const out: IpamTypeIds = {};
  const set = (k: keyof IpamTypeIds, t: GobType | undefined) => {
    const id = idOf(t);
    if (id !== undefined) out[k] = id;
  };
  set('gossipState', gs);
  set('nicknames', fieldType(gs, 'Nicknames'));
  const paxos = fieldType(gs, 'Paxos');
  set('paxos', paxos);
  if (paxos?.kind === 'map') {
    set('nodeId', paxos.key);
    set('nodeClaims', paxos.elem);
    const accepted = fieldType(paxos.elem, 'AcceptedVal');
    set('proposalId', fieldType(paxos.elem, 'Promise'));
    set('acceptedValue', accepted);
    set('value', fieldType(accepted, 'Value'));
  }
  const ring = fieldType(gs, 'Ring');
  set('ring', ring);
  const entries = fieldType(ring, 'Entries');
  set('entries', entries);
  if (entries?.kind === 'slice') set('entry', entries.elem);
  set('seeds', fieldType(ring, 'Seeds'));
  return out;
}

function single(payload: Uint8Array, what: string): GobTyped {
  const values = decodeGobStream(payload);
  if (values.length !== 1) throw gobDecodeError(`${what}: expected 1 value, received ${values.length}`);
  return values[0] as GobTyped;
}

/** One gossipState stream; DECODE_FAILED for anything else. */
export function decodeGossipState(payload: Uint8Array): { state: IpamGossipState; typeIds: IpamTypeIds } {
  const top = single(payload, 'gossipState');
  const gs = expectStruct(top, 'gossipState');
  const nicknames = (() => {
    const f = gs.field('Nicknames');
    if (!f) return [];
    return expectMap(f, 'gossipState.Nicknames').map(([k, v]) => [expectUintBits(k, 'Nicknames key', PEER_NAME_BITS), expectString(v, 'Nicknames value')] as const);
  })();
  let paxos: PaxosGossip | undefined;
  const p = gs.field('Paxos');
  if (p) {
    const seen = new Set<string>();
    paxos = expectMap(p, 'gossipState.Paxos').map(([k, v]) => {
      const id = nodeIdOf(expectStruct(k, 'NodeID'));
      const key = `${id.name}/${id.uid}`;
      if (id.name === 0 || seen.has(key)) throw gobDecodeError('IPAM: Paxos NodeID zero or repeated');
      seen.add(key);
      return [id, claimsOf(expectStruct(v, 'NodeClaims'))] as const;
    });
  }
  const r = gs.field('Ring');
  const state: IpamGossipState = {
    now: gs.int('Now'),
    nicknames,
    ...(paxos ? { paxos } : {}),
    ...(r ? { ring: ringOf(expectStruct(r, 'Ring')) } : {}),
  };
  return { state, typeIds: typeIdsOf(top.type) };
}

function decodeRangeTyped(payload: Uint8Array): { range: AddressRange; typeIds: IpamTypeIds } {
  const top = single(payload, 'Range');
  const v = expectStruct(top, 'Range');
  const id = idOf(top.type);
  return { range: { start: v.uintBits('Start', ADDRESS_BITS), end: v.uintBits('End', ADDRESS_BITS) }, typeIds: id === undefined ? {} : { range: id } };
}

export function decodeRange(payload: Uint8Array): AddressRange {
  return decodeRangeTyped(payload).range;
}

/** A unicast payload: its leading kind byte, then the gob stream; DECODE_FAILED when malformed. */
export function decodeUnicast(payload: Uint8Array): IpamUnicast & { typeIds: IpamTypeIds } {
  if (payload.length === 0) throw gobDecodeError('empty IPAM unicast message');
  const body = payload.subarray(1);
  switch (payload[0]) {
    case MSG_SPACE_REQUEST:
      return { kind: 'spaceRequest', ...decodeRangeTyped(body) };
    case MSG_SPACE_REQUEST_DENIED:
      return { kind: 'spaceRequestDenied', ...decodeRangeTyped(body) };
    case MSG_RING_UPDATE: {
      const { state, typeIds } = decodeGossipState(body);
      return { kind: 'ringUpdate', state, typeIds };
    }
    default:
      throw gobDecodeError(`unknown IPAM unicast message type ${payload[0]}`);
  }
}
