// Decoding `ip -j` output (platform/iproute.ts): what iproute2 prints, and what it never should.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLinkStats } from '../../../src/platform/iproute.js';

test('parseLinkStats: the first link\'s stats64, each direction; absent counters are 0', () => {
  const text = JSON.stringify([
    {
      ifindex: 7,
      ifname: 'vethwe-tap',
      stats64: {
        rx: { bytes: 1200, packets: 12, errors: 0, dropped: 3, over_errors: 0, multicast: 0 },
        tx: { bytes: 900000, packets: 28, errors: 0, dropped: 5, carrier_errors: 0 },
      },
    },
  ]);
  assert.deepEqual(parseLinkStats(text), {
    rx: { packets: 12, bytes: 1200, dropped: 3 },
    tx: { packets: 28, bytes: 900000, dropped: 5 },
  });
  assert.deepEqual(parseLinkStats('[{"ifname":"x","stats64":{"tx":{"packets":"many"}}}]'), {
    rx: { packets: 0, bytes: 0, dropped: 0 },
    tx: { packets: 0, bytes: 0, dropped: 0 },
  });
});

test('parseLinkStats: no link or no counters is undefined; text that is not JSON is DECODE_FAILED', () => {
  assert.equal(parseLinkStats(''), undefined);
  assert.equal(parseLinkStats('[]'), undefined);
  assert.equal(parseLinkStats('[{"ifname":"x"}]'), undefined);
  assert.equal(parseLinkStats('{"stats64":{}}'), undefined);
  assert.throws(() => parseLinkStats('[{"ifname":'), { code: 'DECODE_FAILED' });
});
