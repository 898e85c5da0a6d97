import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderConnections, renderDns, renderIpam, renderPeers, renderStatus, renderTargets } from '../../../src/api/server/status-text.js';
import type { WeaveReport } from '../../../src/api/types.js';

const dir = join(process.env.WEAVE_REPO_ROOT ?? process.cwd(), 'test/fixtures/wire-vectors/plain');
const read = (f: string) => readFileSync(join(dir, f), 'utf8');

// The /report documents of two real Weave Net 2.8.1 routers, rendered by our templates, must
// give exactly the /status texts those routers served.
for (const h of ['h1', 'h2']) {
  const report = JSON.parse(read(`${h}-report.json`)) as WeaveReport;
  test(`${h}: /status matches the original byte for byte`, () => {
    assert.equal(renderStatus(report), read(`${h}-status.txt`));
  });
  test(`${h}: /status sub-views match the original`, () => {
    assert.equal(renderConnections(report), read(`${h}-status-connections.txt`));
    assert.equal(renderPeers(report), read(`${h}-status-peers.txt`));
    assert.equal(renderTargets(report), read(`${h}-status-targets.txt`));
    assert.equal(renderDns(report), read(`${h}-status-dns.txt`));
    // The original ranges over a Go map for the other peers; with two peers the order is fixed.
    assert.equal(renderIpam(report), read(`${h}-status-ipam.txt`));
  });
}

test('status sections and counts follow the original template rules', () => {
  const report = JSON.parse(read('h1-report.json')) as WeaveReport;
  const r: WeaveReport = {
    ...report,
    DNS: undefined,
    Router: { ...report.Router, Peers: [{ ...report.Router.Peers[0]!, Connections: [] }], Connections: [], Targets: ['192.0.2.9'] },
    IPAM: { ...report.IPAM!, Entries: null, Paxos: { Elector: true, Quorum: 2, KnownNodes: 1 } },
  };
  const s = renderStatus(r);
  assert.match(s, /\n        Targets: 1\n    Connections: 0\n          Peers: 1\n/);
  assert.match(s, /Status: awaiting consensus \(quorum: 2, known: 1\)\n/);
  assert.doesNotMatch(s, /Service: dns/);
  assert.equal(renderIpam(r), '');
  assert.equal(renderTargets(r), '192.0.2.9\n');
});

test('a lone router: null connection lists (as Go writes empty ones) render as none', () => {
  const report = JSON.parse(read('h1-report.json')) as WeaveReport;
  const lone: WeaveReport = {
    ...report,
    Router: { ...report.Router, Connections: null, Peers: [{ ...report.Router.Peers[0]!, Connections: null }] },
  };
  assert.equal(renderConnections(lone), '');
  assert.match(renderPeers(lone), /^\S+\(\S+\)\n$/);
  assert.match(renderStatus(lone), /\n    Connections: 0\n          Peers: 1\n/);
});
