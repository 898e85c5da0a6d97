// Mesh TCP protocol, Weave Net protocol 2 (weaveworks/mesh `protocol.go`, `connection.go`):
// the 7-byte header, version negotiation, the v2 encryption flag and the protocol messages.
//
// Design note for src/mesh/. A connection starts with both sides writing `weave` + min + max
// version at once; the version is the highest both speak. In v2 each side then writes one
// encryption flag byte (0 plain, 1 NaCl followed by a 32-byte ephemeral public key), and from
// then on every message is a u32 BE length + body (framing.ts), sealed with secretbox when
// encrypted. The first message each way is the gob feature map (features.ts); every later one
// is a tag byte + body: heartbeats, gossip envelopes (gossip-message.ts) whose payloads are
// gob streams of the channel's own types (topology-update.ts for `topology`), and overlay
// control messages. Every message is an independent gob stream, so no gob state outlives a
// message. Decoders here are total: bad bytes give WeaveError DECODE_FAILED, never a crash.
import { WeaveError } from '../core/errors.js';

/** mesh `Protocol`: the magic at the start of every connection. */
export const PROTOCOL_MAGIC = 'weave';
/** mesh `ProtocolMinVersion` / `ProtocolMaxVersion` as weaver 2.8 sends them. */
export const PROTOCOL_MIN_VERSION = 1;
export const PROTOCOL_MAX_VERSION = 2;
export const PROTOCOL_HEADER_BYTES = PROTOCOL_MAGIC.length + 2;
/** NaCl box public key that follows an encryption flag of 1. */
export const PUBLIC_KEY_BYTES = 32;

export interface ProtocolVersionRange {
  readonly min: number;
  readonly max: number;
}

export const OUR_PROTOCOL_VERSIONS: ProtocolVersionRange = Object.freeze({ min: PROTOCOL_MIN_VERSION, max: PROTOCOL_MAX_VERSION });

const magic = Buffer.from(PROTOCOL_MAGIC, 'latin1');

function checkVersionByte(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 255) throw new WeaveError('INVALID_ARGUMENT', `${what} ${v} does not fit a byte`);
}

export function encodeProtocolHeader(range: ProtocolVersionRange = OUR_PROTOCOL_VERSIONS): Buffer {
  checkVersionByte(range.min, 'min version');
  checkVersionByte(range.max, 'max version');
  return Buffer.concat([magic, Buffer.from([range.min, range.max])]);
}

/** Reads the first 7 bytes; the messages match the original's. */
export function decodeProtocolHeader(b: Uint8Array): ProtocolVersionRange {
  if (b.length < PROTOCOL_HEADER_BYTES) {
    throw new WeaveError('DECODE_FAILED', `received incomplete remote protocol header (${b.length} octets instead of ${PROTOCOL_HEADER_BYTES})`);
  }
  if (!magic.equals(b.subarray(0, magic.length))) {
    throw new WeaveError('DECODE_FAILED', `remote protocol header not recognised: [${[...b.subarray(0, magic.length)].join(' ')}]`);
  }
  return { min: b[magic.length] ?? 0, max: b[magic.length + 1] ?? 0 };
}

/**
 * mesh `exchangeProtocolHeader`: the highest version both ranges contain, i.e.
 * min(ourMax, theirMax) when max(ourMin, theirMin) <= that; otherwise INCOMPATIBLE_VERSION.
 */
export function negotiateProtocolVersion(ours: ProtocolVersionRange, theirs: ProtocolVersionRange): number {
  const min = Math.max(ours.min, theirs.min);
  const max = Math.min(ours.max, theirs.max);
  if (min > max) {
    throw new WeaveError(
      'INCOMPATIBLE_VERSION',
      `remote version range [${theirs.min},${theirs.max}] is incompatible with ours [${ours.min},${ours.max}]`,
    );
  }
  return max;
}

/** The v2 flag: `00`, or `01` + the 32-byte public key. */
export function encodeEncryptionFlag(publicKey?: Uint8Array): Buffer {
  if (publicKey === undefined) return Buffer.from([0]);
  if (publicKey.length !== PUBLIC_KEY_BYTES) {
    throw new WeaveError('INVALID_ARGUMENT', `public key must be ${PUBLIC_KEY_BYTES} bytes, got ${publicKey.length}`);
  }
  return Buffer.concat([Buffer.from([1]), publicKey]);
}

export type EncryptionFlag =
  | { readonly encrypted: false; readonly bytes: 1 }
  | { readonly encrypted: true; readonly publicKey: Buffer; readonly bytes: 33 };

/** The flag at `offset`; undefined while more bytes are needed. `bytes` is what it used. */
export function tryDecodeEncryptionFlag(b: Uint8Array, offset = 0): EncryptionFlag | undefined {
  if (offset >= b.length) return undefined;
  const flag = b[offset];
  if (flag === 0) return { encrypted: false, bytes: 1 };
  if (flag !== 1) throw new WeaveError('DECODE_FAILED', `Bad encryption flag ${flag}`);
  if (b.length - offset - 1 < PUBLIC_KEY_BYTES) return undefined;
  return { encrypted: true, publicKey: Buffer.from(b.subarray(offset + 1, offset + 1 + PUBLIC_KEY_BYTES)), bytes: 33 };
}

/** mesh `protocolTag`: the first byte of every message after the features map. */
export const ProtocolTag = Object.freeze({
  Heartbeat: 0,
  // 1..3 were sleeve's control messages before the overlay switch; still routed to overlay 0.
  Reserved1: 1,
  Reserved2: 2,
  Reserved3: 3,
  Gossip: 4,
  GossipUnicast: 5,
  GossipBroadcast: 6,
  OverlayControlMsg: 7,
} as const);
export type ProtocolTag = (typeof ProtocolTag)[keyof typeof ProtocolTag];

export function isKnownProtocolTag(tag: number): tag is ProtocolTag {
  return Number.isInteger(tag) && tag >= 0 && tag <= 7;
}

export interface ProtocolMsg {
  readonly tag: number;
  readonly body: Buffer;
  /**
   * The whole message (tag + body) as received, when its protocol 2 length prefix precedes it
   * in bytes nobody changes (an unencrypted connection; see OutboundMessage.received).
   */
  readonly wire?: Buffer;
}

/** INVALID_ARGUMENT unless `tag` fits the message's tag byte. */
export function checkProtocolTag(tag: number): void {
  checkVersionByte(tag, 'protocol tag');
}

export function encodeProtocolMsg(tag: number, body: Uint8Array = Buffer.alloc(0)): Buffer {
  checkProtocolTag(tag);
  const out = Buffer.allocUnsafe(1 + body.length);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

/**
 * Tag + body of one message. An empty message gives undefined: the original logs
 * "ignoring blank msg" and carries on. Unknown tags are returned for the caller to ignore.
 */
export function decodeProtocolMsg(msg: Uint8Array, prefixed = false): ProtocolMsg | undefined {
  if (msg.length === 0) return undefined;
  // A view, not a copy: inbound messages are buffers of their own (see framing's ByteQueue).
  const body = Buffer.from(msg.buffer, msg.byteOffset + 1, msg.length - 1);
  if (!prefixed) return { tag: msg[0] ?? 0, body };
  return { tag: msg[0] ?? 0, body, wire: Buffer.isBuffer(msg) ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.length) };
}

/** weave `overlay_switch.go`: tag 7 bodies name the overlay (index in `Overlays`) and its own tag. */
export interface OverlayControlMsg {
  readonly overlayIndex: number;
  readonly subTag: number;
  readonly msg: Buffer;
}

export function encodeOverlayControlMsg(m: OverlayControlMsg): Buffer {
  checkVersionByte(m.overlayIndex, 'overlay index');
  checkVersionByte(m.subTag, 'overlay tag');
  return Buffer.concat([Buffer.from([m.overlayIndex, m.subTag]), m.msg]);
}

export function decodeOverlayControlMsg(body: Uint8Array): OverlayControlMsg {
  if (body.length < 2) throw new WeaveError('DECODE_FAILED', `overlay control message of ${body.length} bytes, need at least 2`);
  return { overlayIndex: body[0] ?? 0, subTag: body[1] ?? 0, msg: Buffer.from(body.subarray(2)) };
}
