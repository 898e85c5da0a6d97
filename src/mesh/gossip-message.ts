// Gossip envelopes (mesh `gossip_channel.go` gobEncode, `router.go` handleGossip): the body of
// a Gossip (tag 4) or GossipBroadcast (tag 6) message is one gob stream of three values,
// `string channel`, `uint src PeerName`, `[]byte payload`; GossipUnicast (tag 5) puts
// `uint dst PeerName` before the payload. The payload is the channel's own gob stream (or, for
// IPAM unicast, one kind byte and then a stream) and is left as bytes here, so that channels
// nobody here knows can still be relayed untouched, as the original's surrogate gossiper does.
//
// Every gossip message is wrapped this way (a mesh of n routers relays each broadcast to n of
// them), so encoding writes the envelope directly and decoding reads it directly, with the bytes
// and results of the general gob codec, which remains the reference (`...WithGob`) and the
// fallback for anything unusual (type definitions in an envelope, non-ASCII channel names, any
// fault), so errors are still exactly its own.
import { WeaveError } from '../core/errors.js';
import { type PeerName } from '../core/peer-name.js';
import { GobReader } from './gob/gob-bytes.js';
import { GobDecoder, decodeGobStream } from './gob/gob-decoder.js';
import { GobEncoder } from './gob/gob-encoder.js';
import { expectBytes, expectCount, expectString, expectUint, type GobTyped } from './gob/gob-expect.js';
import {
  GOB_BYTES, GOB_STRING, GOB_UINT, describeGobType, gobDecodeError, type GobBasicType, type GobDecoded,
} from './gob/gob-type.js';
import { FRAME_PREFIX_BYTES, OutboundMessage } from './framing.js';
import { ProtocolTag } from './protocol.js';

export interface GossipEnvelope {
  readonly channel: string;
  readonly src: PeerName;
  readonly payload: Buffer;
}

export interface GossipUnicastEnvelope extends GossipEnvelope {
  readonly dst: PeerName;
}

/** A decoded gossip message of any of the three tags. */
export type GossipMessage =
  | ({ readonly tag: typeof ProtocolTag.Gossip | typeof ProtocolTag.GossipBroadcast } & GossipEnvelope)
  | ({ readonly tag: typeof ProtocolTag.GossipUnicast } & GossipUnicastEnvelope);

const PEER_NAME_LIMIT = 2n ** 48n;

function peerNameValue(name: PeerName, what: string): bigint {
  if (!Number.isInteger(name) || name < 0 || name >= 2 ** 48) {
    throw new WeaveError('INVALID_ARGUMENT', `${what}: peer name out of range: ${String(name)}`);
  }
  return BigInt(name);
}

function peerNameOf(d: GobTyped, what: string): PeerName {
  const v = expectUint(d, what);
  if (v >= PEER_NAME_LIMIT) throw gobDecodeError(`${what}: peer name ${v} exceeds 48 bits`);
  return Number(v);
}

// Values after expectCount has checked how many there are.
const at = (v: readonly GobTyped[], i: number): GobTyped => v[i] as GobTyped;

export function encodeGossipBody(m: GossipEnvelope): Buffer {
  return new GobEncoder()
    .encode(GOB_STRING, m.channel)
    .encode(GOB_UINT, peerNameValue(m.src, 'src'))
    .encode(GOB_BYTES, Buffer.from(m.payload))
    .toBuffer();
}

export function encodeGossipUnicastBody(m: GossipUnicastEnvelope): Buffer {
  return new GobEncoder()
    .encode(GOB_STRING, m.channel)
    .encode(GOB_UINT, peerNameValue(m.src, 'src'))
    .encode(GOB_UINT, peerNameValue(m.dst, 'dst'))
    .encode(GOB_BYTES, Buffer.from(m.payload))
    .toBuffer();
}

const ENVELOPE_VALUES: ReadonlyArray<readonly [GobBasicType, string, string]> = [
  [GOB_STRING, 'string', 'gossip channel'],
  [GOB_UINT, 'uint', 'gossip src'],
  [GOB_BYTES, '[]byte', 'gossip payload'],
];
const UNICAST_ENVELOPE_VALUES: ReadonlyArray<readonly [GobBasicType, string, string]> = [
  [GOB_STRING, 'string', 'gossip channel'],
  [GOB_UINT, 'uint', 'gossip src'],
  [GOB_UINT, 'uint', 'gossip dst'],
  [GOB_BYTES, '[]byte', 'gossip payload'],
];

/**
 * decodeGobStream for an envelope: an envelope is nothing but basic values, so each value's
 * wire type id is checked against the one expected there before anything decodes it, and a
 * value past the last is refused undecoded (a []struct{} of 10M elements, say, would otherwise
 * be decoded in full before the type checks). Type definitions are read as ever. Whatever
 * passes is decoded by the general decoder, so envelopes come out exactly as before.
 */
function decodeEnvelopeValues(body: Uint8Array, expected: ReadonlyArray<readonly [GobBasicType, string, string]>, what: string): GobDecoded[] {
  let pos = 0;
  let k = 0;
  while (pos < body.length) {
    // The decoder's own framing reads; where they fail, it fails there too, having decoded
    // only definitions and values already checked.
    let id: number;
    let next: number;
    try {
      const outer = new GobReader(body, pos, body.length);
      const len = outer.uintSmall('message length');
      if (len === 0 || len > outer.remaining) break;
      next = outer.pos + len;
      id = new GobReader(body, outer.pos, next).intSmall('type id');
    } catch {
      break;
    }
    if (id >= 0) {
      const want = expected[k];
      if (want === undefined || id !== want[0].id) {
        // What comes before is decoded and checked first, so its faults are reported as ever.
        const dec = new GobDecoder(body.subarray(0, pos));
        for (let d = dec.next(), i = 0; d !== undefined; d = dec.next(), i++) {
          const e = expected[i];
          if (e?.[0] === GOB_UINT) peerNameOf(d, e[2]);
        }
        if (want === undefined) throw gobDecodeError(`${what}: expected ${expected.length} values, received more`);
        const t = dec.typeOf(id);
        if (t === undefined) throw gobDecodeError(`type id ${id} is not defined`);
        throw gobDecodeError(`${want[2]}: expected ${want[1]}, received ${describeGobType(t)}`);
      }
      k++;
    }
    pos = next;
  }
  return decodeGobStream(body);
}

function decodeGossipBodyWithGob(body: Uint8Array): GossipEnvelope {
  const v = decodeEnvelopeValues(body, ENVELOPE_VALUES, 'gossip');
  expectCount(v, 3, 'gossip');
  return {
    channel: expectString(at(v, 0), 'gossip channel'),
    src: peerNameOf(at(v, 1), 'gossip src'),
    payload: expectBytes(at(v, 2), 'gossip payload'),
  };
}

function decodeGossipUnicastBodyWithGob(body: Uint8Array): GossipUnicastEnvelope {
  const v = decodeEnvelopeValues(body, UNICAST_ENVELOPE_VALUES, 'gossip unicast');
  expectCount(v, 4, 'gossip unicast');
  return {
    channel: expectString(at(v, 0), 'gossip channel'),
    src: peerNameOf(at(v, 1), 'gossip src'),
    dst: peerNameOf(at(v, 2), 'gossip dst'),
    payload: expectBytes(at(v, 3), 'gossip payload'),
  };
}

export function decodeGossipBody(body: Uint8Array): GossipEnvelope {
  return readEnvelope(body, false) ?? decodeGossipBodyWithGob(body);
}

export function decodeGossipUnicastBody(body: Uint8Array): GossipUnicastEnvelope {
  return (readEnvelope(body, true) as GossipUnicastEnvelope | undefined) ?? decodeGossipUnicastBodyWithGob(body);
}

/** Body of a tag 4, 5 or 6 message; DECODE_FAILED for any other tag. */
export function decodeGossipMessage(tag: number, body: Uint8Array): GossipMessage {
  switch (tag) {
    case ProtocolTag.Gossip:
    case ProtocolTag.GossipBroadcast:
      return (readEnvelope(body, false, tag) as GossipMessage | undefined) ?? { tag, ...decodeGossipBodyWithGob(body) };
    case ProtocolTag.GossipUnicast:
      return (readEnvelope(body, true, tag) as GossipMessage | undefined) ?? { tag, ...decodeGossipUnicastBodyWithGob(body) };
    default:
      throw new WeaveError('DECODE_FAILED', `tag ${tag} is not a gossip message`);
  }
}

/**
 * decodeGossipMessage by the general gob decoder alone, behind the envelope's wire type checks
 * (the reference the direct path matches).
 */
export function decodeGossipMessageWithGob(tag: number, body: Uint8Array): GossipMessage {
  switch (tag) {
    case ProtocolTag.Gossip:
    case ProtocolTag.GossipBroadcast:
      return { tag, ...decodeGossipBodyWithGob(body) };
    case ProtocolTag.GossipUnicast:
      return { tag, ...decodeGossipUnicastBodyWithGob(body) };
    default:
      throw new WeaveError('DECODE_FAILED', `tag ${tag} is not a gossip message`);
  }
}

/** The full protocol message (tag byte + body) for a gossip message. */
export function encodeGossipMessage(m: GossipMessage): Buffer {
  return writeGossipMessage(m, 0);
}

/**
 * encodeGossipOutbound(m) written straight into its frame (one buffer for the message, its
 * length prefix and whatever number of connections it goes to). With `wire`, the message m was
 * read from (ProtocolMsg.wire), a message passed on unchanged (a relayed broadcast or unicast)
 * is sent as it came, frame and all, when its bytes are exactly the ones this would write:
 * no allocation, no copy; a mesh of n routers relays each broadcast to n of them.
 */
export function encodeGossipOutbound(m: GossipMessage, wire?: Buffer): OutboundMessage {
  if (wire !== undefined && isOurEncoding(m, wire)) {
    const out = OutboundMessage.received(wire);
    if (out) return out;
  }
  return OutboundMessage.inFrame(writeGossipMessage(m, FRAME_PREFIX_BYTES));
}

interface GossipLayout {
  readonly channelBytes: number;
  readonly strLen: number;
  readonly srcLen: number;
  readonly dstLen: number;
  readonly payLen: number;
  /** Of the whole message. */
  readonly size: number;
}

function layoutOf(m: GossipMessage): GossipLayout {
  checkPeerName(m.src, 'src');
  const unicast = m.tag === ProtocolTag.GossipUnicast;
  if (unicast) checkPeerName(m.dst, 'dst');
  const channelBytes = Buffer.byteLength(m.channel, 'utf8');
  // Each value: uint length, type id, 0 (the delta before a top-level non-struct value), value.
  const strLen = 2 + uintSize(channelBytes) + channelBytes;
  const srcLen = 2 + uintSize(m.src);
  const dstLen = unicast ? 2 + uintSize(m.dst) : 0;
  const payLen = 2 + uintSize(m.payload.length) + m.payload.length;
  const size = 1 + uintSize(strLen) + strLen + uintSize(srcLen) + srcLen + (unicast ? uintSize(dstLen) + dstLen : 0) + uintSize(payLen) + payLen;
  return { channelBytes, strLen, srcLen, dstLen, payLen, size };
}

/** Everything before the payload's bytes, from `at`; returns where the payload goes. */
function writeHeader(m: GossipMessage, l: GossipLayout, out: Buffer, at: number): number {
  out[at++] = m.tag;
  at = putUint(out, at, l.strLen);
  out[at++] = GOB_STRING.id * 2;
  out[at++] = 0;
  at = putUint(out, at, l.channelBytes);
  at += out.write(m.channel, at, 'utf8');
  at = putName(out, at, l.srcLen, m.src);
  if (m.tag === ProtocolTag.GossipUnicast) at = putName(out, at, l.dstLen, m.dst);
  at = putUint(out, at, l.payLen);
  out[at++] = GOB_BYTES.id * 2;
  out[at++] = 0;
  return putUint(out, at, m.payload.length);
}

/** The message written after `room` bytes left for the caller. */
function writeGossipMessage(m: GossipMessage, room: number): Buffer {
  const l = layoutOf(m);
  const out = Buffer.allocUnsafe(room + l.size);
  out.set(m.payload, writeHeader(m, l, out, room));
  return out;
}

/** Headers longer than this (channel names of hundreds of bytes) are not compared: re-encoded. */
const MAX_COMPARED_HEADER_BYTES = 256;
const headerScratch = Buffer.alloc(MAX_COMPARED_HEADER_BYTES);

/**
 * True when `wire` is byte for byte what writeGossipMessage(m) writes: m's payload is wire's
 * tail (a view of the same bytes) and the header before it is ours. Other encodings a decoder
 * accepts (longer forms of a number, type definitions) are re-encoded, as the original does.
 */
function isOurEncoding(m: GossipMessage, wire: Buffer): boolean {
  const p = m.payload;
  if (p.buffer !== wire.buffer || p.byteOffset + p.length !== wire.byteOffset + wire.length) return false;
  const l = layoutOf(m);
  const header = l.size - p.length;
  if (l.size !== wire.length || header > MAX_COMPARED_HEADER_BYTES) return false;
  writeHeader(m, l, headerScratch, 0);
  return headerScratch.compare(wire, 0, header, 0, header) === 0;
}

/** peerNameValue's check, without making the bigint. */
function checkPeerName(name: PeerName, what: string): void {
  if (!Number.isInteger(name) || name < 0 || name >= 2 ** 48) {
    throw new WeaveError('INVALID_ARGUMENT', `${what}: peer name out of range: ${String(name)}`);
  }
}

/** One uint value message: its length, the uint type id, the 0 delta, the name. */
function putName(out: Buffer, at: number, len: number, name: PeerName): number {
  at = putUint(out, at, len);
  out[at++] = GOB_UINT.id * 2;
  out[at++] = 0;
  return putUint(out, at, name);
}

/** encodeGossipMessage by the general gob encoder (the reference the direct path matches). */
export function encodeGossipMessageWithGob(m: GossipMessage): Buffer {
  const body = m.tag === ProtocolTag.GossipUnicast ? encodeGossipUnicastBody(m) : encodeGossipBody(m);
  return Buffer.concat([Buffer.from([m.tag]), body]);
}

/** Bytes of a gob uint below 2^53 (lengths and 48-bit peer names here). */
function uintSize(v: number | bigint): number {
  const n = Number(v);
  if (n < 0x80) return 1;
  let k = 1;
  for (let x = Math.floor(n / 256); x > 0; x = Math.floor(x / 256)) k++;
  return 1 + k;
}

/** A gob uint (below 2^53 here: lengths and 48-bit peer names). */
function putUint(out: Buffer, at: number, v: number | bigint): number {
  const n = Number(v);
  if (n < 0x80) {
    out[at] = n;
    return at + 1;
  }
  const k = uintSize(n) - 1;
  out[at++] = 256 - k;
  for (let i = k - 1; i >= 0; i--) out[at++] = Math.floor(n / 2 ** (8 * i)) % 256;
  return at;
}

/**
 * The envelope read directly: three (four) messages, each a basic-typed value as the general
 * codec writes them. undefined whenever anything differs, for the general decoder to decide.
 */
function readEnvelope(body: Uint8Array, unicast: boolean, tag?: number): GossipEnvelope | GossipUnicastEnvelope | undefined {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  let pos = 0;
  const uint = (end: number): number => {
    if (pos >= end) return -1;
    const first = b[pos++] as number;
    if (first < 0x80) return first;
    const n = 256 - first;
    if (n > 6 || n > end - pos) return -1; // 7 and 8 bytes exceed a peer name and any length here
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + (b[pos++] as number);
    return v;
  };
  /** Starts the next message: its end, once the length, the type id and the 0 delta check out. */
  const open = (typeId: number): number => {
    const len = uint(b.length);
    if (len < 3 || len > b.length - pos) return -1;
    const end = pos + len;
    if (b[pos] !== typeId * 2 || b[pos + 1] !== 0) return -1;
    pos += 2;
    return end;
  };
  let end = open(GOB_STRING.id);
  if (end < 0) return undefined;
  const n = uint(end);
  if (n < 0 || n !== end - pos) return undefined;
  for (let i = pos; i < end; i++) if ((b[i] as number) >= 0x80) return undefined;
  const channel = b.toString('latin1', pos, end);
  pos = end;
  const names: number[] = [];
  for (let k = unicast ? 2 : 1; k > 0; k--) {
    end = open(GOB_UINT.id);
    if (end < 0) return undefined;
    const v = uint(end);
    if (v < 0 || pos !== end || v >= 2 ** 48) return undefined;
    names.push(v);
  }
  end = open(GOB_BYTES.id);
  if (end < 0 || end !== b.length) return undefined;
  const len = uint(end);
  if (len < 0 || len !== end - pos) return undefined;
  const payload = b.subarray(pos, end);
  const src = names[0] as PeerName;
  // With `tag`, the whole message (as decodeGossipMessage returns it), in one object.
  if (tag !== undefined) return unicast ? ({ tag, channel, src, dst: names[1] as PeerName, payload } as GossipUnicastEnvelope) : ({ tag, channel, src, payload } as GossipEnvelope);
  return unicast ? { channel, src, dst: names[1] as PeerName, payload } : { channel, src, payload };
}
