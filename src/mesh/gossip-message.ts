// Gossip envelopes (mesh `gossip_channel.go` gobEncode, `router.go` handleGossip): the body of
// a Gossip (tag 4) or GossipBroadcast (tag 6) message is one gob stream of three values,
// `string channel`, `uint src PeerName`, `[]byte payload`; GossipUnicast (tag 5) puts
// `uint dst PeerName` before the payload. The payload is the channel's own gob stream (or, for
// IPAM unicast, one kind byte and then a stream) and is left as bytes here, so that channels
// nobody here knows can still be relayed untouched, as the original's surrogate gossiper does.
import { WeaveError } from '../core/errors.js';
import { type PeerName } from '../core/peer-name.js';
import { decodeGobStream } from './gob/gob-decoder.js';
import { GobEncoder } from './gob/gob-encoder.js';
import { expectBytes, expectCount, expectString, expectUint, type GobTyped } from './gob/gob-expect.js';
import { GOB_BYTES, GOB_STRING, GOB_UINT, gobDecodeError } from './gob/gob-type.js';
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

export function decodeGossipBody(body: Uint8Array): GossipEnvelope {
  const v = decodeGobStream(body);
  expectCount(v, 3, 'gossip');
  return {
    channel: expectString(at(v, 0), 'gossip channel'),
    src: peerNameOf(at(v, 1), 'gossip src'),
    payload: expectBytes(at(v, 2), 'gossip payload'),
  };
}

export function decodeGossipUnicastBody(body: Uint8Array): GossipUnicastEnvelope {
  const v = decodeGobStream(body);
  expectCount(v, 4, 'gossip unicast');
  return {
    channel: expectString(at(v, 0), 'gossip channel'),
    src: peerNameOf(at(v, 1), 'gossip src'),
    dst: peerNameOf(at(v, 2), 'gossip dst'),
    payload: expectBytes(at(v, 3), 'gossip payload'),
  };
}

/** Body of a tag 4, 5 or 6 message; DECODE_FAILED for any other tag. */
export function decodeGossipMessage(tag: number, body: Uint8Array): GossipMessage {
  switch (tag) {
    case ProtocolTag.Gossip:
    case ProtocolTag.GossipBroadcast:
      return { tag, ...decodeGossipBody(body) };
    case ProtocolTag.GossipUnicast:
      return { tag, ...decodeGossipUnicastBody(body) };
    default:
      throw new WeaveError('DECODE_FAILED', `tag ${tag} is not a gossip message`);
  }
}

/** The full protocol message (tag byte + body) for a gossip message. */
export function encodeGossipMessage(m: GossipMessage): Buffer {
  const body = m.tag === ProtocolTag.GossipUnicast ? encodeGossipUnicastBody(m) : encodeGossipBody(m);
  return Buffer.concat([Buffer.from([m.tag]), body]);
}
