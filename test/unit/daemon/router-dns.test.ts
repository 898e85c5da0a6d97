// The router's weaveDNS wiring without a mesh or root: the listen address follows the exposed
// bridge addresses when none is configured (bound, kept, moved, dropped), a configured one is
// bound at start, names given through the API persist and come back in a new router (names
// outside the domain do not), and the status says where it listens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../../src/core/clock.js';
import { parseIPv4 } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/logger.js';
import { MemoryStore } from '../../../src/platform/sqlite-store.js';
import { RouterDns, type RouterDnsOptions } from '../../../src/daemon/router-dns.js';
import { dnsQuery } from '../../../src/cli/dns-query.js';

const OUR_NAME = 0x7a0000000001;

function make(store: MemoryStore, opts: Partial<RouterDnsOptions> = {}): RouterDns {
  return new RouterDns(
    {
      clock: systemClock,
      logger: silentLogger,
      store,
      mesh: { name: OUR_NAME, peers: { has: () => true, onGC: () => undefined }, newGossip: () => ({ broadcast: () => undefined }) },
    },
    { domain: 'weave.local.', ttl: 1, fallbackTimeoutMs: 500, resolvConf: join(tmpdir(), 'weave-no-such-resolv.conf'), defaultPort: 0, ...opts },
  );
}

async function ask(dns: RouterDns, name: string): Promise<string[] | string> {
  const addr = dns.listenAddress()!;
  const at = addr.lastIndexOf(':');
  const r = await dnsQuery({ host: addr.slice(0, at), port: Number(addr.slice(at + 1)) }, name, { timeoutMs: 2000 });
  const rcode = (r.packet as { rcode?: string }).rcode;
  return rcode === 'NOERROR' ? (r.packet.answers ?? []).map((a) => String((a as { data: unknown }).data)) : String(rcode);
}

test('without a listen address it listens on the first exposed address, and follows it', async () => {
  const dns = make(new MemoryStore());
  try {
    await dns.start([]);
    assert.equal(dns.listenAddress(), undefined);
    assert.equal(dns.status().Address, '');
    dns.putName('c1', '10.32.0.5', 'web.weave.local');
    await dns.exposedChanged([parseIPv4('127.0.0.1')]);
    const first = dns.listenAddress();
    assert.match(first ?? '', /^127\.0\.0\.1:[0-9]+$/);
    assert.equal(dns.status().Address, first);
    assert.deepEqual(await ask(dns, 'web.weave.local'), ['10.32.0.5']);
    // Another address exposed: we stay where we are.
    await dns.exposedChanged([parseIPv4('127.0.0.2'), parseIPv4('127.0.0.1')]);
    assert.equal(dns.listenAddress(), first);
    // Ours hidden: move to what is left.
    await dns.exposedChanged([parseIPv4('127.0.0.2')]);
    assert.match(dns.listenAddress() ?? '', /^127\.0\.0\.2:[0-9]+$/);
    assert.deepEqual(await ask(dns, 'web'), ['10.32.0.5']);
    await dns.exposedChanged([]);
    assert.equal(dns.listenAddress(), undefined);
  } finally {
    await dns.stop();
  }
});

test('a configured listen address is bound at start and exposes do not move it', async () => {
  const dns = make(new MemoryStore(), { listenAddress: '127.0.0.1:0' });
  try {
    await dns.start([parseIPv4('127.0.0.2')]);
    const addr = dns.listenAddress();
    assert.match(addr ?? '', /^127\.0\.0\.1:[0-9]+$/);
    await dns.exposedChanged([]);
    assert.equal(dns.listenAddress(), addr);
    assert.equal(await ask(dns, 'nobody.weave.local'), 'NXDOMAIN');
  } finally {
    await dns.stop();
  }
});

test('our names persist across routers; deleted ones and those outside the domain do not', async () => {
  const store = new MemoryStore();
  const a = make(store);
  a.putName('c1', '10.32.0.5', 'web.weave.local');
  a.putName('c1', '10.32.0.6', 'web.weave.local');
  a.putName('weave:extern', '10.40.0.1', 'ext.weave.local.');
  a.putName('c2', '10.32.0.7', 'gone.weave.local');
  a.deleteName('c2', undefined, undefined);
  assert.throws(() => a.putName('c3', '10.1', 'x.weave.local'), /invalid IP Address/);
  assert.equal(a.localEntryCount(), 3);
  await a.stop();
  const b = make(store);
  assert.deepEqual(b.ns.lookup('web.weave.local.').sort(), [parseIPv4('10.32.0.5'), parseIPv4('10.32.0.6')]);
  assert.deepEqual(b.ns.lookup('ext.weave.local.'), [parseIPv4('10.40.0.1')]);
  assert.deepEqual(b.ns.lookup('gone.weave.local.'), []);
  assert.equal(b.entries().length, 3);
  await b.stop();
  const c = make(store, { domain: 'foo.bar.' });
  assert.equal(c.localEntryCount(), 0);
  await c.stop();
  const d = make(store);
  assert.equal(d.localEntryCount(), 0, 'the other domain dropped them from the store');
  await d.stop();
});
