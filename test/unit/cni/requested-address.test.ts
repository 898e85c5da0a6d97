import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestedAddress } from '../../../src/cni/ipam.js';
import { parseIPv4 } from '../../../src/core/ip.js';

test('a requested address comes from runtimeConfig.ips, then args.cni.ips, then CNI_ARGS IP=', () => {
  assert.equal(requestedAddress({}, {}, {}), undefined);
  assert.deepEqual(requestedAddress({}, {}, { IP: '10.32.9.9', IgnoreUnknown: '1' }), { ip: parseIPv4('10.32.9.9') });
  assert.deepEqual(requestedAddress({}, { cni: { ips: ['10.40.0.7/16'] } }, { IP: '10.32.9.9' }), { ip: parseIPv4('10.40.0.7'), prefix: 16 });
  assert.deepEqual(requestedAddress({ ips: ['10.41.0.1/24'] }, { cni: { ips: ['10.40.0.7/16'] } }, { IP: '10.32.9.9' }), { ip: parseIPv4('10.41.0.1'), prefix: 24 });
  // IPv6 and garbage are skipped; the first IPv4 wins.
  assert.deepEqual(requestedAddress({ ips: ['fd00::1/64', 'nonsense', '10.42.0.2'] }, {}, {}), { ip: parseIPv4('10.42.0.2') });
});
