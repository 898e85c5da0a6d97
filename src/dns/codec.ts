// The `nameserver` gossip payload (nameserver `entry.go` GossipData.Encode/Decode): one gob
// stream holding one value of
//
//   GossipData {Timestamp int64; Entries}            Entries = []Entry
//   Entry      {ContainerID string; Origin mesh.PeerName (uint64); Addr address.Address
//               (uint32); Hostname string; Version int; Tombstone int64}
//
// Timestamp and Tombstone are Unix seconds. Zero fields are omitted (gob), so a fresh entry
// sends no Version and no Tombstone. The encoder sorts the entries in the original's gossip
// order (case-sensitive hostname, origin, container id, address), so the same table gives the
// same bytes as a Go router. Type ids are per process in Go (the captured routers used 78-80
// and 86-88); ours default to 65-67 in Go's relative order (GossipData, Entry, Entries), and a
// caller may pick others (tests re-encode the captured messages byte for byte that way).
//
// The decoder is total: any fault is DECODE_FAILED; values that cannot be a Go router's (an
// origin beyond 48 bits, an address beyond 32 bits, integers beyond 2^53) are refused. As Go's
// Decoder, it reads the first value and ignores what follows it.
import { WeaveError } from '../core/errors.js';
import type { IPv4 } from '../core/ip.js';
import type { PeerName } from '../core/peer-name.js';
import { GobDecoder } from '../mesh/gob/gob-decoder.js';
import { GobEncoder } from '../mesh/gob/gob-encoder.js';
import { expectStruct, type GobStructView } from '../mesh/gob/gob-expect.js';
import {
  GOB_INT, GOB_STRING, GOB_UINT, gobDecodeError, gobSlice, gobStruct, gobStructValue,
  type GobSliceType, type GobStructType,
} from '../mesh/gob/gob-type.js';
import { sortForGossip, type Entry } from './entries.js';

/** One gossip payload: the sender's clock and some entries. */
export interface NameserverGossip {
  /** Unix seconds at the sender when it was made. */
  readonly timestamp: number;
  readonly entries: readonly Entry[];
}

/** Gob type ids used for the three types of the payload. */
export interface NameserverGobIds {
  readonly gossipData: number;
  readonly entry: number;
  readonly entries: number;
}

export const DEFAULT_NAMESERVER_GOB_IDS: NameserverGobIds = Object.freeze({ gossipData: 65, entry: 66, entries: 67 });

interface GobTypes {
  readonly gossipData: GobStructType;
}

const typeCache = new Map<string, GobTypes>();

/** The payload's gob types with the given ids (built once per id triple). */
export function nameserverGobTypes(ids: NameserverGobIds = DEFAULT_NAMESERVER_GOB_IDS): GobTypes {
  const key = `${ids.gossipData}/${ids.entry}/${ids.entries}`;
  let t = typeCache.get(key);
  if (t) return t;
  const entry = gobStruct('Entry', [
    ['ContainerID', GOB_STRING],
    ['Origin', GOB_UINT],
    ['Addr', GOB_UINT],
    ['Hostname', GOB_STRING],
    ['Version', GOB_INT],
    ['Tombstone', GOB_INT],
  ]);
  entry.id = ids.entry;
  const entries: GobSliceType = gobSlice(entry, 'Entries');
  entries.id = ids.entries;
  const gossipData = gobStruct('GossipData', [
    ['Timestamp', GOB_INT],
    ['Entries', entries],
  ]);
  gossipData.id = ids.gossipData;
  t = { gossipData };
  typeCache.set(key, t);
  return t;
}

function checkEntry(e: Entry): void {
  const bad = (what: string) => {
    throw new WeaveError('INVALID_ARGUMENT', `nameserver entry ${JSON.stringify(e.hostname)}: ${what}`);
  };
  if (!Number.isSafeInteger(e.origin) || e.origin < 0 || e.origin >= 2 ** 48) bad(`origin ${e.origin} is not a peer name`);
  if (!Number.isInteger(e.addr) || e.addr < 0 || e.addr > 0xffffffff) bad(`address ${e.addr} is not IPv4`);
  if (!Number.isSafeInteger(e.version)) bad(`version ${e.version} is not an integer`);
  if (!Number.isSafeInteger(e.tombstone)) bad(`tombstone ${e.tombstone} is not an integer`);
}

/** The payload for `g`, as a Go router would send it. INVALID_ARGUMENT for values Go could not hold. */
export function encodeNameserverGossip(g: NameserverGossip, ids: NameserverGobIds = DEFAULT_NAMESERVER_GOB_IDS): Buffer {
  if (!Number.isSafeInteger(g.timestamp)) throw new WeaveError('INVALID_ARGUMENT', `nameserver gossip: timestamp ${g.timestamp} is not an integer`);
  const types = nameserverGobTypes(ids);
  const entries = sortForGossip(g.entries).map((e) => {
    checkEntry(e);
    return gobStructValue('Entry', [
      ['ContainerID', e.containerId],
      ['Origin', e.origin],
      ['Addr', e.addr],
      ['Hostname', e.hostname],
      ['Version', e.version],
      ['Tombstone', e.tombstone],
    ]);
  });
  const value = gobStructValue('GossipData', [
    ['Timestamp', g.timestamp],
    ['Entries', entries],
  ]);
  return new GobEncoder().encode(types.gossipData, value).toBuffer();
}

function safeInt(s: GobStructView, name: string, what: string): number {
  const v = s.int(name);
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw gobDecodeError(`${what}.${name}: ${v} out of range`);
  return Number(v);
}

/** The payload's timestamp and entries; DECODE_FAILED on anything else. */
export function decodeNameserverGossip(payload: Uint8Array): NameserverGossip {
  const first = new GobDecoder(payload).next();
  if (!first) throw gobDecodeError('nameserver gossip: no value');
  const g = expectStruct(first, 'GossipData');
  const timestamp = safeInt(g, 'Timestamp', 'GossipData');
  const entries = g.list('Entries').map((d): Entry => {
    const s = expectStruct(d, 'Entry');
    const origin: PeerName = s.uintBits('Origin', 48);
    const addr: IPv4 = s.uintBits('Addr', 32);
    return {
      containerId: s.string('ContainerID'),
      origin,
      addr,
      hostname: s.string('Hostname'),
      version: safeInt(s, 'Version', 'Entry'),
      tombstone: safeInt(s, 'Tombstone', 'Entry'),
    };
  });
  return { timestamp, entries };
}

/**
 * nameserver `gossipWindow`: half the tombstone life, so that a tombstone outlives any gossip
 * old enough to resurrect what it deleted.
 */
export const GOSSIP_WINDOW_S = 900;

/** Refuses gossip from a clock more than 15 min away from ours, with the original's message. */
export function checkClockSkew(timestampSec: number, nowSec: number): void {
  const delta = timestampSec - nowSec;
  if (delta > GOSSIP_WINDOW_S || delta < -GOSSIP_WINDOW_S) {
    throw new WeaveError('INVALID_ARGUMENT', `host clock skew of ${delta}s exceeds ${GOSSIP_WINDOW_S}s limit`);
  }
}
