// Typed access to the few libsodium primitives mesh crypto needs (sodium-native v4 ships no
// TypeScript types). The addon is loaded on first use, not at import, so modules that never
// encrypt never load native code.
import { createRequire } from 'node:module';

interface SodiumNative {
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_scalarmult_base(q: Uint8Array, n: Uint8Array): void;
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
}

export const SECRETBOX_KEY_BYTES = 32;
export const SECRETBOX_NONCE_BYTES = 24;
/** Poly1305 tag that secretbox puts in front of the ciphertext (NaCl and Go layout). */
export const SECRETBOX_MAC_BYTES = 16;
export const SCALARMULT_BYTES = 32;

let loaded: SodiumNative | undefined;

function sodium(): SodiumNative {
  loaded ??= createRequire(import.meta.url)('sodium-native') as SodiumNative;
  return loaded;
}

/** Curve25519 public key of a (any 32-byte) secret key: Go `curve25519.ScalarBaseMult`. */
export function scalarMultBase(secretKey: Uint8Array): Buffer {
  const out = Buffer.alloc(SCALARMULT_BYTES);
  sodium().crypto_scalarmult_base(out, secretKey);
  return out;
}

/**
 * Raw X25519 shared point. libsodium refuses (throws) when the result is all zero, i.e. the
 * peer sent a low-order point; Go would carry on with a zero secret, we refuse instead.
 */
export function scalarMult(secretKey: Uint8Array, publicKey: Uint8Array): Buffer {
  const out = Buffer.alloc(SCALARMULT_BYTES);
  sodium().crypto_scalarmult(out, secretKey, publicKey);
  return out;
}

/** secretbox seal: 16-byte tag then ciphertext, as Go `secretbox.Seal`. */
export function secretboxSeal(msg: Uint8Array, nonce: Uint8Array, key: Uint8Array): Buffer {
  const out = Buffer.alloc(msg.length + SECRETBOX_MAC_BYTES);
  sodium().crypto_secretbox_easy(out, msg, nonce, key);
  return out;
}

/** secretbox open; undefined when the box is short or does not authenticate. */
export function secretboxOpen(box: Uint8Array, nonce: Uint8Array, key: Uint8Array): Buffer | undefined {
  if (box.length < SECRETBOX_MAC_BYTES) return undefined;
  const out = Buffer.alloc(box.length - SECRETBOX_MAC_BYTES);
  return sodium().crypto_secretbox_open_easy(out, box, nonce, key) ? out : undefined;
}
