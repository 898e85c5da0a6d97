import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { formatPeerName, parsePeerName, peerNameFromUUID, randomPeerName, tryParsePeerName } from '../../../src/core/peer-name.js';
import { isWeaveError } from '../../../src/core/errors.js';

test('MAC-flavour peer names, including ::-compressed forms', () => {
  assert.equal(formatPeerName(parsePeerName('::1')), '00:00:00:00:00:01');
  assert.equal(formatPeerName(parsePeerName('12::34')), '12:00:00:00:00:34');
  assert.equal(formatPeerName(parsePeerName('7a:00:00:00:00:01')), '7a:00:00:00:00:01');
  assert.equal(formatPeerName(parsePeerName('8A:3E:3E:3E:3E:3E')), '8a:3e:3e:3e:3e:3e');
  for (const s of ['1:2:3', ':::', '1::2::3', 'zz:00:00:00:00:00', '123:0:0:0:0:0', '', '::', '1:2:3:4:5:6:7']) {
    assert.equal(tryParsePeerName(s), undefined, s);
    assert.throws(() => parsePeerName(s), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  }
});

test('names derived from a machine id match the original MACfromUUID', () => {
  const sum = createHash('sha256').update('9oBJ0Jmip-abc').digest();
  sum[0] = (sum[0]! & 0xfe) | 0x02;
  const want = [...sum.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
  assert.equal(formatPeerName(peerNameFromUUID('abc')), want);
  assert.equal(peerNameFromUUID('abc'), peerNameFromUUID('abc'));
  const r = formatPeerName(randomPeerName(() => Buffer.from([0xff, 1, 2, 3, 4, 5])));
  assert.equal(r, 'fe:01:02:03:04:05');
});
