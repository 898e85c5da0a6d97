// The handshake feature map (mesh `protocol.go` doIntroV2, `connection.go`): the first message
// each way, one gob `map[string]string`. Weaver 2.8 sends PeerNameFlavour, Name, NickName,
// ShortID, UID, ConnID (decimal text), Trusted and Overlays. Go iterates maps in random order,
// so the wire order means nothing: compare decoded maps, never bytes.
import { WeaveError } from '../core/errors.js';
import { decodeGobStream } from './gob/gob-decoder.js';
import { encodeGobValue } from './gob/gob-encoder.js';
import { expectCount, expectMap, expectString } from './gob/gob-expect.js';
import { GOB_STRING, gobMap, type GobMapType, type GobValue } from './gob/gob-type.js';

export type Features = ReadonlyMap<string, string>;

/** map[string]string, sent with the first free user type id. */
export const FEATURES_GOB_TYPE: GobMapType = gobMap(GOB_STRING, GOB_STRING);

/** mesh `connection.go`: the remote is refused when one of these is missing. */
export const REQUIRED_FEATURES: readonly string[] = Object.freeze(['PeerNameFlavour', 'Name', 'NickName', 'UID', 'ConnID']);

export function encodeFeatures(features: Features | Readonly<Record<string, string>>): Buffer {
  const entries = features instanceof Map ? [...features] : Object.entries(features);
  const value = new Map<GobValue, GobValue>();
  for (const [k, v] of entries) {
    if (typeof k !== 'string' || typeof v !== 'string') throw new WeaveError('INVALID_ARGUMENT', 'features must map strings to strings');
    value.set(k, v);
  }
  return encodeGobValue(FEATURES_GOB_TYPE, value);
}

/** The map in wire order; DECODE_FAILED unless the message is exactly one map[string]string. */
export function decodeFeatures(msg: Uint8Array): Map<string, string> {
  const values = decodeGobStream(msg);
  expectCount(values, 1, 'features');
  const out = new Map<string, string>();
  for (const [k, v] of expectMap(values[0] as (typeof values)[number], 'features')) {
    out.set(expectString(k, 'features key'), expectString(v, 'features value'));
  }
  return out;
}

/** mesh `features.MustHave`: DECODE_FAILED "field X is missing" for the first absent key. */
export function checkRequiredFeatures(features: Features, required: readonly string[] = REQUIRED_FEATURES): void {
  for (const key of required) {
    if (!features.has(key)) throw new WeaveError('DECODE_FAILED', `field ${key} is missing`);
  }
}
