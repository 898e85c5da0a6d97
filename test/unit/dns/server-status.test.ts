// The DNS server's upstream servers for the status: read before start returns, so the first
// status after start shows them; and read at call time from an upstream that can.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { Nameserver } from '../../../src/dns/nameserver.js';
import { DnsServer, type DnsServerUpstream } from '../../../src/dns/server.js';
import { ResolvConfUpstream } from '../../../src/dns/upstream.js';

function serverWith(upstream: DnsServerUpstream): DnsServer {
  const ns = new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName: 0x7a0000000001 });
  return new DnsServer({ names: ns, upstream, clock: systemClock, logger: silentLogger }, { listenAddress: '127.0.0.1:0' });
}

test('the first status after start shows the servers of resolv.conf', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weave-dns-status-'));
  const path = join(dir, 'resolv.conf');
  writeFileSync(path, 'nameserver 192.0.2.1\nnameserver 127.0.0.1\n');
  const server = serverWith(new ResolvConfUpstream({ clock: systemClock, logger: silentLogger }, { path, filterAddress: '127.0.0.1' }));
  await server.start();
  try {
    assert.deepEqual(server.upstreamServers(), ['192.0.2.1']);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an upstream that reads at call time gives the status the servers of now', async () => {
  let servers = ['192.0.2.1'];
  const upstream: DnsServerUpstream = {
    servers: () => Promise.resolve([...servers]),
    current: () => ['stale'],
    serversNow: () => [...servers],
  };
  const server = serverWith(upstream);
  await server.start();
  try {
    assert.deepEqual(server.upstreamServers(), ['192.0.2.1']);
    servers = ['192.0.2.2'];
    assert.deepEqual(server.upstreamServers(), ['192.0.2.2']);
  } finally {
    await server.stop();
  }
});
