// Control-plane crypto of the mesh TCP connection (mesh `protocol_crypto.go`).
//
// Each side makes a fresh Curve25519 key pair per connection and sends the public half after
// the encryption flag. The session key is SHA-256(box.Precompute(remotePub, localPriv) ‖
// password): the ephemeral exchange gives forward secrecy, the password authenticates, and a
// wrong password only shows up as the first message failing to open.
//
// Every message is a NaCl secretbox under a 24-byte nonce: byte 0 is 0x40 (TCP; overlays
// that share the session key use other values) ORed with 0x80 when the *sender* dialled the
// connection, bytes 16..23 the u64 BE count of messages sent so far in that direction, the
// rest zero. The polarity bit keeps the two directions from ever reusing a nonce; a receiver
// therefore uses the opposite polarity to its own. Sequence numbers are implicit, so a lost,
// repeated or reordered message fails to open: that is fatal for the connection.
//
// libsodium (sodium-native) has no crypto_box_beforenm binding, so Precompute is spelled out:
// HSalsa20(X25519(localPriv, remotePub), 16 zero bytes), which is what NaCl and Go compute.
import { createHash } from 'node:crypto';
import { WeaveError } from '../core/errors.js';
import {
  SECRETBOX_KEY_BYTES, SECRETBOX_MAC_BYTES, SECRETBOX_NONCE_BYTES, scalarMult, scalarMultBase, secretboxOpen, secretboxSeal,
} from './sodium.js';

export const BOX_KEY_BYTES = 32;
export const SESSION_KEY_BYTES = SECRETBOX_KEY_BYTES;
export const TCP_NONCE_BYTES = SECRETBOX_NONCE_BYTES;
/** What sealing adds to every message. */
export const SEAL_OVERHEAD_BYTES = SECRETBOX_MAC_BYTES;

/** Nonce byte 0 bits (mesh `newTCPCryptoState`). */
export const NONCE_OUTBOUND_BIT = 0x80;
export const NONCE_TCP_BIT = 0x40;

export interface BoxKeyPair {
  readonly publicKey: Buffer;
  readonly secretKey: Buffer;
}

/** Go `box.GenerateKey`: 32 random bytes are the secret key, its base-point multiple the public one. */
export function generateBoxKeyPair(randomBytes: (n: number) => Buffer): BoxKeyPair {
  const secretKey = Buffer.from(randomBytes(BOX_KEY_BYTES));
  if (secretKey.length !== BOX_KEY_BYTES) throw new WeaveError('INTERNAL', `random source gave ${secretKey.length} bytes, wanted ${BOX_KEY_BYTES}`);
  return { publicKey: scalarMultBase(secretKey), secretKey };
}

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]; // "expand 32-byte k"

function rotl(v: number, n: number): number {
  return (v << n) | (v >>> (32 - n));
}

/** The HSalsa20 core (NaCl `crypto_core_hsalsa20`): 32-byte key, 16-byte input, 32-byte output. */
export function hsalsa20(key: Uint8Array, input: Uint8Array): Buffer {
  if (key.length !== 32 || input.length !== 16) throw new WeaveError('INVALID_ARGUMENT', 'hsalsa20 needs a 32-byte key and a 16-byte input');
  const k = Buffer.from(key);
  const n = Buffer.from(input);
  const x = new Uint32Array(16);
  x[0] = SIGMA[0] ?? 0;
  x[5] = SIGMA[1] ?? 0;
  x[10] = SIGMA[2] ?? 0;
  x[15] = SIGMA[3] ?? 0;
  for (let i = 0; i < 4; i++) {
    x[1 + i] = k.readUInt32LE(4 * i);
    x[11 + i] = k.readUInt32LE(16 + 4 * i);
    x[6 + i] = n.readUInt32LE(4 * i);
  }
  const qr = (a: number, b: number, c: number, d: number) => {
    x[b] = (x[b] ?? 0) ^ rotl(((x[a] ?? 0) + (x[d] ?? 0)) | 0, 7);
    x[c] = (x[c] ?? 0) ^ rotl(((x[b] ?? 0) + (x[a] ?? 0)) | 0, 9);
    x[d] = (x[d] ?? 0) ^ rotl(((x[c] ?? 0) + (x[b] ?? 0)) | 0, 13);
    x[a] = (x[a] ?? 0) ^ rotl(((x[d] ?? 0) + (x[c] ?? 0)) | 0, 18);
  };
  for (let round = 0; round < 20; round += 2) {
    qr(0, 4, 8, 12); // columns
    qr(5, 9, 13, 1);
    qr(10, 14, 2, 6);
    qr(15, 3, 7, 11);
    qr(0, 1, 2, 3); // rows
    qr(5, 6, 7, 4);
    qr(10, 11, 8, 9);
    qr(15, 12, 13, 14);
  }
  const out = Buffer.alloc(32);
  [0, 5, 10, 15, 6, 7, 8, 9].forEach((idx, i) => out.writeUInt32LE(x[idx] ?? 0, 4 * i));
  return out;
}

/** Go `box.Precompute` / NaCl `crypto_box_beforenm`. */
export function boxPrecompute(remotePublicKey: Uint8Array, localSecretKey: Uint8Array): Buffer {
  if (remotePublicKey.length !== BOX_KEY_BYTES) throw new WeaveError('DECODE_FAILED', `public key of ${remotePublicKey.length} bytes, need ${BOX_KEY_BYTES}`);
  if (localSecretKey.length !== BOX_KEY_BYTES) throw new WeaveError('INVALID_ARGUMENT', `secret key of ${localSecretKey.length} bytes, need ${BOX_KEY_BYTES}`);
  let shared: Buffer;
  try {
    shared = scalarMult(localSecretKey, remotePublicKey);
  } catch (e) {
    throw new WeaveError('DECODE_FAILED', 'remote public key is a low-order point', { cause: e });
  }
  return hsalsa20(shared, Buffer.alloc(16));
}

/** mesh `formSessionKey`: SHA-256(Precompute(remotePub, localPriv) ‖ password). */
export function formSessionKey(remotePublicKey: Uint8Array, localSecretKey: Uint8Array, password: Uint8Array): Buffer {
  return createHash('sha256').update(boxPrecompute(remotePublicKey, localSecretKey)).update(password).digest();
}

/** The nonce of message `seq` sent by the outbound (dialling) side or not. */
export function tcpNonce(senderOutbound: boolean, seq: number): Buffer {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new WeaveError('INVALID_ARGUMENT', `bad sequence number ${seq}`);
  const nonce = Buffer.alloc(TCP_NONCE_BYTES);
  nonce[0] = NONCE_TCP_BIT | (senderOutbound ? NONCE_OUTBOUND_BIT : 0);
  nonce.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 16);
  nonce.writeUInt32BE(seq >>> 0, 20);
  return nonce;
}

function checkSessionKey(key: Uint8Array): Buffer {
  if (key.length !== SESSION_KEY_BYTES) throw new WeaveError('INVALID_ARGUMENT', `session key of ${key.length} bytes, need ${SESSION_KEY_BYTES}`);
  return Buffer.from(key);
}

/** One direction's crypto state (mesh `tCPCryptoState`): key, polarity, next sequence number. */
abstract class TcpCryptoState {
  protected readonly key: Buffer;
  private seq = 0;

  constructor(
    sessionKey: Uint8Array,
    /** Polarity of the side that seals this direction. */
    readonly senderOutbound: boolean,
  ) {
    this.key = checkSessionKey(sessionKey);
  }

  /** Sequence number the next message uses. */
  get nextSeq(): number {
    return this.seq;
  }

  protected takeNonce(): Buffer {
    return tcpNonce(this.senderOutbound, this.seq++);
  }
}

/** Seals what we send. `outbound`: whether we dialled the connection. */
export class TcpCryptoSender extends TcpCryptoState {
  constructor(sessionKey: Uint8Array, outbound: boolean) {
    super(sessionKey, outbound);
  }

  seal(msg: Uint8Array): Buffer {
    return secretboxSeal(msg, this.takeNonce(), this.key);
  }
}

/** Opens what the peer sent, under the peer's polarity. `outbound`: whether *we* dialled. */
export class TcpCryptoReceiver extends TcpCryptoState {
  constructor(sessionKey: Uint8Array, outbound: boolean) {
    super(sessionKey, !outbound);
  }

  /** DECODE_FAILED "Unable to decrypt TCP msg" (the original's text) when it does not open. */
  open(box: Uint8Array): Buffer {
    const seq = this.nextSeq;
    const nonce = tcpNonce(this.senderOutbound, seq);
    const msg = secretboxOpen(box, nonce, this.key);
    if (msg === undefined) {
      throw new WeaveError('DECODE_FAILED', 'Unable to decrypt TCP msg', { details: `message ${seq}, ${box.length} bytes` });
    }
    this.takeNonce(); // advance only on success, as the original; the connection dies anyway
    return msg;
  }
}

/** Both directions of one connection. */
export interface TcpCryptoPair {
  readonly sender: TcpCryptoSender;
  readonly receiver: TcpCryptoReceiver;
}

export function tcpCryptoPair(sessionKey: Uint8Array, outbound: boolean): TcpCryptoPair {
  return { sender: new TcpCryptoSender(sessionKey, outbound), receiver: new TcpCryptoReceiver(sessionKey, outbound) };
}
