// The HTTP API's weaveDNS routes against a fake service, through the client the CLI uses:
// /name PUT, DELETE (all three forms, fqdn in the query), GET (only with Accept: JSON),
// /domain, /dns-address[-port] (503 NOT_RUNNING while not listening), 404 everywhere with --no-dns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../../src/core/logger.js';
import { ApiServer, type ApiServices, type DnsService } from '../../../src/api/server/http-server.js';
import { ApiError, WeaveClient } from '../../../src/api/client.js';
import type { WeaveReport } from '../../../src/api/types.js';

function fakeDns(): DnsService & { calls: string[]; listening: string | undefined } {
  const calls: string[] = [];
  return {
    calls,
    listening: undefined,
    domain: 'weave.local.',
    putName(c, ip, fqdn) {
      calls.push(`put ${c} ${ip} ${fqdn}`);
    },
    deleteName(c, ip, fqdn) {
      calls.push(`delete ${c ?? '*'} ${ip ?? '*'} ${fqdn ?? '*'}`);
    },
    entries: () => [{ ContainerID: 'c1', Origin: '7a:00:00:00:00:01', Addr: '10.32.0.5', Hostname: 'web.weave.local.', Version: 0, Tombstone: 0 }],
    listenAddress() {
      return this.listening;
    },
  };
}

async function serve(dns: DnsService | undefined): Promise<{ client: WeaveClient; close: () => Promise<void> }> {
  const services: ApiServices = {
    report: () => ({}) as WeaveReport,
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    expose: { expose: async () => {}, hide: async () => {} },
    leave: async () => {},
    ...(dns ? { dns } : {}),
  };
  const server = new ApiServer({ services, logger: silentLogger, isReady: () => true });
  await server.listen({ host: '127.0.0.1', port: 0 });
  return { client: new WeaveClient(server.address()), close: () => server.close() };
}

test('names are added, listed and removed', async () => {
  const dns = fakeDns();
  const { client, close } = await serve(dns);
  try {
    assert.equal(await client.putName('weave:extern', '10.40.0.1', 'ext.weave.local'), true);
    assert.equal(await client.deleteName('c/1', '10.32.0.5', 'web.weave.local'), true);
    assert.equal(await client.deleteName('c1', undefined, undefined), true);
    assert.equal(await client.deleteName(undefined, undefined, undefined), true);
    assert.deepEqual(dns.calls, ['put weave:extern 10.40.0.1 ext.weave.local', 'delete c/1 10.32.0.5 web.weave.local', 'delete c1 * *', 'delete * * *']);
    assert.equal((await client.dnsEntries())?.[0]?.Hostname, 'web.weave.local.');
    assert.equal((await client.request('GET', '/name')).status, 404, 'only with Accept: application/json');
    assert.equal(await client.dnsDomain(), 'weave.local.');
  } finally {
    await close();
  }
});

test('the DNS address: 503 NOT_RUNNING while not listening, then host:port and host', async () => {
  const dns = fakeDns();
  const { client, close } = await serve(dns);
  try {
    await assert.rejects(client.dnsAddress(), (e) => e instanceof ApiError && e.status === 503 && e.code === 'NOT_RUNNING' && /not listening/.test(e.body));
    dns.listening = '10.32.0.1:53';
    assert.equal(await client.dnsAddress(), '10.32.0.1:53');
    assert.equal(await client.dnsAddress({ hostOnly: true }), '10.32.0.1');
  } finally {
    await close();
  }
});

test('with --no-dns every DNS route is 404, which the client reads as "off"', async () => {
  const { client, close } = await serve(undefined);
  try {
    assert.equal(await client.dnsDomain(), undefined);
    assert.equal(await client.dnsAddress(), undefined);
    assert.equal(await client.putName('c', '10.1.1.1', 'x.weave.local'), false);
    assert.equal(await client.deleteName('c', undefined, undefined), false);
    assert.equal(await client.dnsEntries(), undefined);
  } finally {
    await close();
  }
});
