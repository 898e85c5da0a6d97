// ResolvConfUpstream's filter of our own address: exact by default; with a wildcard listen
// address, the loopback addresses and the wildcard of the families we listen on, on our port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { ResolvConfUpstream, type ResolvConfUpstreamOptions } from '../../../src/dns/upstream.js';

const ALL = ['127.0.0.1', '127.0.0.53', '0.0.0.0', '::ffff:127.0.0.1', '::1', '::', '10.0.0.2', 'fe80::1%eth0'];
const text = ALL.map((s) => `nameserver ${s}\n`).join('');
const reader = { stat: () => ({ mtimeNs: 1n, size: text.length }), read: () => text };

function servers(opts: Omit<ResolvConfUpstreamOptions, 'path'>): Promise<string[]> {
  return new ResolvConfUpstream({ clock: new FakeClock(), logger: silentLogger, reader }, { path: '/etc/resolv.conf', ...opts }).servers();
}

test('resolv.conf: our own address is never an upstream, wildcards included', async () => {
  assert.deepEqual(await servers({}), ALL);
  // Exact match for a specific address (the original's filter).
  assert.deepEqual(await servers({ filterAddress: '127.0.0.1' }), ALL.filter((s) => s !== '127.0.0.1'));
  assert.deepEqual(await servers({ filterAddress: '172.17.0.1', filterPort: 53 }), ALL);
  // 0.0.0.0 takes every IPv4 address of the host: IPv4 loopback (mapped too) and 0.0.0.0 are us.
  const v6 = ['::1', '::', '10.0.0.2', 'fe80::1%eth0'];
  assert.deepEqual(await servers({ filterAddress: '0.0.0.0' }), v6);
  assert.deepEqual(await servers({ filterAddress: '0.0.0.0', filterPort: 53 }), v6);
  assert.deepEqual(await servers({ filterAddress: '', filterPort: 53 }), v6, '":53" is 0.0.0.0');
  // :: (dual stack) takes both families.
  assert.deepEqual(await servers({ filterAddress: '::', filterPort: 53 }), ['10.0.0.2', 'fe80::1%eth0']);
  // On another port, the local servers (port 53) are someone else; the exact match stays.
  assert.deepEqual(await servers({ filterAddress: '0.0.0.0', filterPort: 5353 }), ALL.filter((s) => s !== '0.0.0.0'));
  assert.deepEqual(await servers({ filterAddress: '::', filterPort: 5353 }), ALL.filter((s) => s !== '::'));
});
