// The router's weaveDNS when things fail or change: a name added or deleted while the store
// cannot be written is refused and changes nothing (here, in gossip, after a restart); the
// status shows resolv.conf's servers from the first call on, and a change at the next check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock, systemClock, type Clock } from '../../../src/core/clock.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { parseIPv4 } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/logger.js';
import { MemoryStore } from '../../../src/platform/sqlite-store.js';
import { RouterDns, type RouterDnsOptions } from '../../../src/daemon/router-dns.js';
import { goJsonMarshal } from '../../../src/core/go-json.js';

const OUR_NAME = 0x7a0000000001;

function make(store: MemoryStore, opts: Partial<RouterDnsOptions> = {}, clock: Clock = systemClock) {
  const broadcasts: unknown[] = [];
  const dns = new RouterDns(
    {
      clock,
      logger: silentLogger,
      store,
      mesh: { name: OUR_NAME, peers: { has: () => true, onGC: () => undefined }, newGossip: () => ({ broadcast: (d: unknown) => void broadcasts.push(d) }) },
    },
    { domain: 'weave.local.', ttl: 1, fallbackTimeoutMs: 500, resolvConf: join(tmpdir(), 'weave-no-such-resolv.conf'), defaultPort: 0, ...opts },
  );
  return { dns, broadcasts };
}

const live = (dns: RouterDns) => dns.entries().filter((e) => e.Tombstone === 0).map((e) => `${e.Hostname} ${e.ContainerID} ${e.Addr}`).sort();

test('a name put or deleted while the store fails is refused and changes nothing', async () => {
  const store = new MemoryStore();
  const { dns: a, broadcasts } = make(store);
  a.putName('c1', '10.32.0.5', 'web.weave.local');
  a.putName('c2', '10.32.0.6', 'db.weave.local');
  const before = live(a);
  const sent = broadcasts.length;
  store.failWrites = true;
  assert.throws(() => a.putName('c3', '10.32.0.7', 'new.weave.local'), (e: unknown) => isWeaveError(e, 'STORE_FAILED'));
  assert.throws(() => a.deleteName('c1', undefined, undefined), (e: unknown) => isWeaveError(e, 'STORE_FAILED'));
  assert.throws(() => a.deleteName(undefined, '10.32.0.6', 'db.weave.local'), (e: unknown) => isWeaveError(e, 'STORE_FAILED'));
  assert.deepEqual(live(a), before, 'nothing changed here');
  assert.equal(a.entries().length, 2, 'no tombstone either');
  assert.equal(broadcasts.length, sent, 'nothing was gossiped');
  // What changes nothing needs no write: a name we have, a delete matching none, a name outside the domain.
  a.putName('c1', '10.32.0.5', 'web.weave.local.');
  a.deleteName('nobody', undefined, undefined);
  a.putName('c9', '10.32.0.9', 'elsewhere.example.com');
  assert.throws(() => a.putName('c3', '10.1', 'x.weave.local'), /invalid IP Address/);
  await a.stop();
  store.failWrites = false;
  const { dns: b } = make(store);
  assert.deepEqual(live(b), before, 'a restart has what the failed requests left: all of it');
  await b.stop();
});

test('what is stored before a put or delete is what the nameserver has after it', async () => {
  const store = new MemoryStore();
  const { dns: a } = make(store);
  a.putName('c1', '10.32.0.5', 'web.weave.local');
  a.putName('c1', '10.32.0.6', 'Web.weave.local');
  a.putName('c2', '10.32.0.5', 'other.weave.local');
  a.deleteName('c2', undefined, undefined);
  a.putName('c2', '10.32.0.5', 'other.weave.local'); // revives the tombstone
  a.deleteName(undefined, '10.32.0.5', undefined);
  a.deleteName('*', '10.32.0.6', 'Web.weave.local');
  a.putName('c3', '10.32.0.7', 'x.weave.local');
  const stored = (JSON.parse(store.get('dns/entries') ?? '[]') as string[][]).map((r) => r.join(' ')).sort();
  assert.deepEqual(stored, live(a));
  assert.deepEqual(live(a), ['x.weave.local. c3 10.32.0.7']);
  await a.stop();
});

test('the status shows resolv.conf servers on its first call, and a change at the next check', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weave-resolv-'));
  const resolvConf = join(dir, 'resolv.conf');
  writeFileSync(resolvConf, 'nameserver 192.0.2.1\nnameserver 192.0.2.2\n');
  const clock = new FakeClock();
  const { dns } = make(new MemoryStore(), { resolvConf }, clock);
  try {
    // Not listening: the status reads the file itself.
    assert.deepEqual(dns.status().Upstream, ['192.0.2.1', '192.0.2.2']);
    writeFileSync(resolvConf, 'nameserver 192.0.2.3\n# changed\n');
    clock.advance(5000);
    assert.deepEqual(dns.status().Upstream, ['192.0.2.3']);
    // Listening: the server's upstream, read at start, our own address left out.
    writeFileSync(resolvConf, 'nameserver 127.0.0.1\nnameserver 192.0.2.4\n');
    await dns.exposedChanged([parseIPv4('127.0.0.1')]);
    assert.deepEqual(dns.status().Upstream, ['192.0.2.4']);
    writeFileSync(resolvConf, 'nameserver 192.0.2.5\nnameserver 127.0.0.1\nnameserver 192.0.2.6\n');
    clock.advance(5000);
    assert.deepEqual(dns.status().Upstream, ['192.0.2.5', '192.0.2.6']);
    rmSync(resolvConf);
    clock.advance(5000);
    assert.equal(goJsonMarshal(dns.status().Upstream), 'null');
  } finally {
    await dns.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
