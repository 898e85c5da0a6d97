// Topology gossip payload (mesh `peers.go` encodePeers/decodePeer): one gob stream holding, for
// each peer in the update, a `peerSummary` value then a `[]connectionSummary` value:
//
//   peerSummary       {NameByte []byte; NickName string; UID uint64; Version uint64;
//                      ShortID uint16; HasShortID bool}
//   connectionSummary {NameByte []byte; RemoteTCPAddr string; Outbound bool; Established bool}
//
// NameByte is the 6-byte big-endian peer name (mac flavour). Zero fields are omitted on the
// wire (a peer at Version 0 sends no Version). Decoding follows Go's decoding into those
// structs: fields by name, unknown fields ignored, a wrong field type is an error.
import { WeaveError } from '../core/errors.js';
import { PEER_NAME_BYTES, peerNameFromBytes, peerNameToBytes, type PeerName } from '../core/peer-name.js';
import { decodeGobStream } from './gob/gob-decoder.js';
import type { ConnectionSummary, PeerSummary, TopologyEntry } from './peer.js';
import { GobEncoder } from './gob/gob-encoder.js';
import { expectList, expectStruct, type GobStructView } from './gob/gob-expect.js';
import {
  GOB_BOOL, GOB_BYTES, GOB_STRING, GOB_UINT, gobDecodeError, gobSlice, gobStruct, gobStructValue,
  type GobSliceType, type GobStructType,
} from './gob/gob-type.js';

/** The peers of an update: the topology's own entry type (peer.ts), so nothing converts. */
export type TopologyPeer = TopologyEntry;

export const PEER_SUMMARY_GOB_TYPE: GobStructType = gobStruct('peerSummary', [
  ['NameByte', GOB_BYTES],
  ['NickName', GOB_STRING],
  ['UID', GOB_UINT],
  ['Version', GOB_UINT],
  ['ShortID', GOB_UINT],
  ['HasShortID', GOB_BOOL],
]);

export const CONNECTION_SUMMARY_GOB_TYPE: GobStructType = gobStruct('connectionSummary', [
  ['NameByte', GOB_BYTES],
  ['RemoteTCPAddr', GOB_STRING],
  ['Outbound', GOB_BOOL],
  ['Established', GOB_BOOL],
]);

export const CONNECTION_SUMMARIES_GOB_TYPE: GobSliceType = gobSlice(CONNECTION_SUMMARY_GOB_TYPE);

function nameOf(s: GobStructView, what: string): PeerName {
  const b = s.bytes('NameByte');
  if (b.length !== PEER_NAME_BYTES) throw gobDecodeError(`${what}.NameByte: ${b.length} bytes, expected ${PEER_NAME_BYTES}`);
  return peerNameFromBytes(b);
}

/** One update's payload; INVALID_ARGUMENT when a value does not fit its Go field. */
export function encodeTopologyUpdate(peers: readonly TopologyPeer[]): Buffer {
  const enc = new GobEncoder();
  for (const { peer, connections } of peers) {
    if (!Number.isInteger(peer.shortId) || peer.shortId < 0 || peer.shortId > 0xffff) {
      throw new WeaveError('INVALID_ARGUMENT', `ShortID ${peer.shortId} does not fit a uint16`);
    }
    enc.encode(
      PEER_SUMMARY_GOB_TYPE,
      gobStructValue('peerSummary', [
        ['NameByte', peerNameToBytes(peer.name)],
        ['NickName', peer.nickName],
        ['UID', peer.uid], // the encoder refuses values outside uint64 (INVALID_ARGUMENT)
        ['Version', peer.version],
        ['ShortID', peer.shortId],
        ['HasShortID', peer.hasShortId],
      ]),
    );
    enc.encode(
      CONNECTION_SUMMARIES_GOB_TYPE,
      connections.map((c) =>
        gobStructValue('connectionSummary', [
          ['NameByte', peerNameToBytes(c.remoteName)],
          ['RemoteTCPAddr', c.remoteTcpAddr],
          ['Outbound', c.outbound],
          ['Established', c.established],
        ]),
      ),
    );
  }
  return enc.toBuffer();
}

/** The peers of one update, in wire order. */
export function decodeTopologyUpdate(payload: Uint8Array): TopologyPeer[] {
  const values = decodeGobStream(payload);
  if (values.length % 2 !== 0) throw gobDecodeError('topology update: a peerSummary without its connections');
  const out: TopologyPeer[] = [];
  for (let i = 0; i < values.length; i += 2) {
    const ps = expectStruct(values[i] as (typeof values)[number], 'peerSummary');
    const peer: PeerSummary = {
      name: nameOf(ps, 'peerSummary'),
      nickName: ps.string('NickName'),
      uid: ps.uint('UID'),
      version: ps.uint('Version'),
      shortId: ps.uintBits('ShortID', 16),
      hasShortId: ps.bool('HasShortID'),
    };
    const connections = expectList(values[i + 1] as (typeof values)[number], 'connectionSummaries').map((d): ConnectionSummary => {
      const cs = expectStruct(d, 'connectionSummary');
      return {
        remoteName: nameOf(cs, 'connectionSummary'),
        remoteTcpAddr: cs.string('RemoteTCPAddr'),
        outbound: cs.bool('Outbound'),
        established: cs.bool('Established'),
      };
    });
    out.push({ peer, connections });
  }
  return out;
}
