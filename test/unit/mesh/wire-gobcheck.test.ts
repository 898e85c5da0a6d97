// Cross-check with Go's own encoding/gob: gobcheck-*.txt was printed by tools/gobcheck.go,
// which decodes the same streams into mirror Go structs. Here the same report is rendered from
// our decoders (framing, features, gossip envelope, topology codec, and the generic decoder
// with Go struct semantics for IPAM and DNS) and must match it line for line. Only the order
// of Paxos lines differs by nature (Go map iteration), so those runs are sorted on both sides.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { goJsonMarshal } from '../../../src/core/go-json.js';
import { formatIPv4 } from '../../../src/core/ip.js';
import { formatPeerName, peerNameToBytes } from '../../../src/core/peer-name.js';
import { decodeFeatures } from '../../../src/mesh/features.js';
import { decodeGossipMessage } from '../../../src/mesh/gossip-message.js';
import { decodeProtocolMsg } from '../../../src/mesh/protocol.js';
import { decodeTopologyUpdate } from '../../../src/mesh/topology-update.js';
import {
  decodeGobStream, expectMap, expectStruct, expectUint, type GobStructView, type GobTyped,
} from '../../../src/mesh/gob/index.js';
import { DIRS, goView, readGobcheck, readStream, splitStream, type Dir } from './wire-fixtures.js';

const pn = (u: bigint): string => formatPeerName(Number(u));
const ip = (u: bigint): string => formatIPv4(Number(u));

function sub(s: GobStructView, name: string): GobStructView | undefined {
  const f = s.field(name);
  return f && expectStruct(f, name);
}

function renderIpam(payload: Buffer, lines: string[]): void {
  const [first] = decodeGobStream(payload);
  assert.ok(first);
  const gs = expectStruct(first, 'gossipState');
  const nn = gs.field('Nicknames');
  const nicknames = nn ? expectMap(nn, 'Nicknames').map(([k, v]) => [pn(expectUint(k, 'k')), v.value] as const) : [];
  nicknames.sort(([a], [b]) => (a < b ? -1 : 1)); // Go's json sorts map keys
  lines.push(`    Now=${gs.int('Now')} Nicknames=${goJsonMarshal(Object.fromEntries(nicknames))}`);
  const paxos = gs.field('Paxos');
  for (const [k, v] of paxos ? expectMap(paxos, 'Paxos') : []) {
    const id = expectStruct(k, 'NodeID');
    lines.push(`    Paxos[${pn(id.uint('Name'))} uid=${id.uint('UID')}] = ${goJsonMarshal(goView(v.type, v.value))}`);
  }
  const ring = sub(gs, 'Ring');
  if (ring) {
    const seeds = ring.list('Seeds').map((d: GobTyped) => expectUint(d, 'seed'));
    lines.push(`    Ring [${ip(ring.uint('Start'))},${ip(ring.uint('End'))}) owner=${pn(ring.uint('Peer'))} seeds=[${seeds.join(' ')}]`);
    for (const d of ring.list('Entries')) {
      const e = expectStruct(d, 'entry');
      lines.push(`      token=${ip(e.uint('Token'))} peer=${pn(e.uint('Peer'))} version=${e.uint('Version')} free=${e.uint('Free')}`);
    }
  }
}

function renderDns(payload: Buffer, lines: string[]): void {
  const [first] = decodeGobStream(payload);
  assert.ok(first);
  const gd = expectStruct(first, 'GossipData');
  lines.push(`    Timestamp=${gd.int('Timestamp')}`);
  for (const d of gd.list('Entries')) {
    const e = expectStruct(d, 'Entry');
    lines.push(
      `      ${e.string('ContainerID')} ${e.string('Hostname')} -> ${ip(e.uint('Addr'))} origin=${pn(e.uint('Origin'))} ` +
        `version=${e.int('Version')} tombstone=${e.int('Tombstone')}`,
    );
  }
}

function render(dir: Dir): string {
  const stream = readStream('plain', dir);
  const { versions, flag, messages } = splitStream(stream);
  const lines = [`header "weave" minVersion=${versions.min} maxVersion=${versions.max} encflag=${flag.encrypted ? 1 : 0}`];
  messages.forEach((m, i) => {
    if (i === 0) {
      const f = decodeFeatures(m.bytes);
      lines.push(`#0 features (len ${m.bytes.length}):`);
      for (const k of [...f.keys()].sort()) lines.push(`    ${k.padEnd(16)} = ${JSON.stringify(f.get(k))}`);
      return;
    }
    const msg = decodeProtocolMsg(m.bytes);
    assert.ok(msg);
    if (msg.tag < 4 || msg.tag > 6) {
      lines.push(`#${i} tag=${msg.tag} body=${msg.body.toString('hex')}`);
      return;
    }
    const g = decodeGossipMessage(msg.tag, msg.body);
    lines.push(`#${i} tag=${msg.tag} channel=${g.channel} src=${formatPeerName(g.src)} payload=${g.payload.length} bytes`);
    if (g.channel === 'topology') {
      for (const { peer, connections } of decodeTopologyUpdate(g.payload)) {
        const conns = connections.length === 0 ? null : connections.map((c) => ({
          NameByte: peerNameToBytes(c.remoteName).toString('base64'),
          RemoteTCPAddr: c.remoteTcpAddr,
          Outbound: c.outbound,
          Established: c.established,
        }));
        lines.push(
          `    peer ${peerNameToBytes(peer.name).toString('hex')} nick=${peer.nickName} uid=${peer.uid} version=${peer.version} ` +
            `shortid=${peer.shortId} hasShortID=${peer.hasShortId} conns=${goJsonMarshal(conns)}`,
        );
      }
    } else if (g.channel === 'IPallocation') {
      renderIpam(g.payload, lines);
    } else if (g.channel === 'nameserver') {
      renderDns(g.payload, lines);
    }
  });
  return lines.join('\n') + '\n';
}

/** Sorts each run of Paxos lines (they follow Go's random map order). */
function canonical(text: string): string[] {
  const out: string[] = [];
  let run: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('    Paxos[')) {
      run.push(line);
      continue;
    }
    out.push(...run.sort(), line);
    run = [];
  }
  return [...out, ...run.sort()];
}

for (const dir of DIRS) {
  test(`plain ${dir}: our decode renders exactly as Go's gobcheck`, () => {
    const want = readGobcheck(dir);
    const got = render(dir);
    assert.deepEqual(canonical(got), canonical(want));
    assert.ok(want.includes('Paxos[') && want.includes('token=10.40.0.0') && want.includes('db.weave.local.'));
  });
}
