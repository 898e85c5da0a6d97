// Peer names, "mac" flavour (weaveworks/mesh `peer_name_mac.go`): a peer is named by a 48-bit
// MAC address, which is also the MAC of its `weave` bridge. Names are held in a JS number:
// 48 bits fit exactly (< 2^53), compare with ===, and work as Map keys without a bigint cost.
// Invariant: a PeerName is an integer in [0, 2^48); every parser here is total.
import { createHash } from 'node:crypto';
import { WeaveError } from './errors.js';

export type PeerName = number;

/** Bytes in a peer name on the wire (mesh `NameSize`). */
export const PEER_NAME_BYTES = 6;

/** mesh `UnknownPeerName`: the zero name is a sentinel, never a real peer. */
export const UNKNOWN_PEER_NAME: PeerName = 0;

// Salt the original puts in front of the system UUID before hashing (mesh `MACfromUUID`), so
// that a peer restarted on the same machine gets the same name as the Go router gave it.
const UUID_SALT = '9oBJ0Jmip-';

const groupRe = /^[0-9a-fA-F]{1,2}$/;

function parseGroups(part: string): number[] | undefined {
  if (part === '') return [];
  const out: number[] = [];
  for (const g of part.split(':')) {
    if (!groupRe.test(g)) return undefined;
    out.push(parseInt(g, 16));
  }
  return out;
}

/**
 * Parses `aa:bb:cc:dd:ee:ff` or a `::`-compressed form. As in the original's Sscanf patterns,
 * `::` stands for two or more zero groups and 1 to 4 groups must be written around it, so
 * `::1` is 00:00:00:00:00:01 and `12::34` is 12:00:00:00:00:34 (groups before `::` are the
 * leading bytes, groups after it the trailing bytes).
 */
export function tryParsePeerName(s: string): PeerName | undefined {
  if (typeof s !== 'string' || s.length > 17) return undefined;
  const halves = s.split('::');
  let groups: number[];
  if (halves.length === 1) {
    const g = parseGroups(s);
    if (!g || g.length !== 6) return undefined;
    groups = g;
  } else if (halves.length === 2) {
    const head = parseGroups(halves[0] ?? '');
    const tail = parseGroups(halves[1] ?? '');
    if (!head || !tail) return undefined;
    const given = head.length + tail.length;
    if (given < 1 || given > 4) return undefined;
    groups = [...head, ...new Array<number>(6 - given).fill(0), ...tail];
  } else {
    return undefined;
  }
  let n = 0;
  for (const b of groups) n = n * 256 + b;
  return n;
}

export function parsePeerName(s: string): PeerName {
  const n = tryParsePeerName(s);
  if (n === undefined) {
    throw new WeaveError('INVALID_ARGUMENT', `invalid peer name format: ${JSON.stringify(String(s))}`);
  }
  return n;
}

/** Lower-case colon hex, six groups of two digits, as Go's net.HardwareAddr.String(). */
export function formatPeerName(n: PeerName): string {
  const bytes = peerNameToBytes(n);
  let out = '';
  for (let i = 0; i < PEER_NAME_BYTES; i++) {
    if (i > 0) out += ':';
    out += (bytes[i] ?? 0).toString(16).padStart(2, '0');
  }
  return out;
}

/** The bridge MAC equals the peer name, so the text is the same. */
export function peerNameToMac(n: PeerName): string {
  return formatPeerName(n);
}

/** Big-endian 6 bytes, the wire form of a peer name. */
export function peerNameToBytes(n: PeerName): Buffer {
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 48) {
    throw new WeaveError('INVALID_ARGUMENT', `peer name out of range: ${String(n)}`);
  }
  const b = Buffer.alloc(PEER_NAME_BYTES);
  b.writeUIntBE(n, 0, PEER_NAME_BYTES);
  return b;
}

/** Reads 6 big-endian bytes at `offset`. */
export function peerNameFromBytes(b: Uint8Array, offset = 0): PeerName {
  if (offset < 0 || offset + PEER_NAME_BYTES > b.length) {
    throw new WeaveError('DECODE_FAILED', 'peer name: short buffer');
  }
  let n = 0;
  for (let i = 0; i < PEER_NAME_BYTES; i++) n = n * 256 + (b[offset + i] ?? 0);
  return n;
}

// Clears the multicast bit and sets the locally-administered bit, so a generated name can
// never collide with a vendor-assigned MAC nor be taken for a group address.
function unicastLocal(bytes: Uint8Array): PeerName {
  const b0 = ((bytes[0] ?? 0) & 0xfe) | 0x02;
  let n = b0;
  for (let i = 1; i < PEER_NAME_BYTES; i++) n = n * 256 + (bytes[i] ?? 0);
  return n;
}

/** The original's MACfromUUID: first 6 bytes of sha256(salt + text), made unicast+local. */
export function peerNameFromUUID(text: string): PeerName {
  const sum = createHash('sha256').update(UUID_SALT).update(text).digest();
  return unicastLocal(sum);
}

/** A random name with the same unicast+local fix; randomness is injected for tests. */
export function randomPeerName(randomBytes: (n: number) => Buffer): PeerName {
  const b = randomBytes(PEER_NAME_BYTES);
  if (b.length < PEER_NAME_BYTES) {
    throw new WeaveError('INTERNAL', 'randomPeerName: random source returned too few bytes');
  }
  return unicastLocal(b);
}
