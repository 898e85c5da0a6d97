import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  broadcastOf, cidrContains, cidrCovers, cidrsOverlap, formatCidr, formatIPv4, hostRange, networkOf, parseCidr, parseIPv4, subnetOf, tryParseCidr, tryParseIPv4,
} from '../../../src/core/ip.js';
import { isWeaveError } from '../../../src/core/errors.js';

test('IPv4 parse and format round trip', () => {
  for (const s of ['0.0.0.0', '10.32.0.1', '255.255.255.255', '192.0.2.1']) assert.equal(formatIPv4(parseIPv4(s)), s);
  for (const s of ['10.0.0.256', '1.2.3', '01.2.3.4', '', 'a.b.c.d', '1.2.3.4.5', '1..2.3', ' 1.2.3.4']) {
    assert.equal(tryParseIPv4(s), undefined, s);
    assert.throws(() => parseIPv4(s), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  }
});

test('CIDR parse, network, broadcast, host range', () => {
  const c = parseCidr('10.32.0.5/12');
  assert.equal(formatCidr(c), '10.32.0.5/12');
  assert.equal(formatIPv4(networkOf(c)), '10.32.0.0');
  assert.equal(formatIPv4(broadcastOf(c)), '10.47.255.255');
  assert.equal(formatCidr(subnetOf(c)), '10.32.0.0/12');
  const r = hostRange(parseCidr('10.32.0.0/12'));
  assert.equal(formatIPv4(r.start), '10.32.0.1');
  assert.equal(formatIPv4(r.end), '10.47.255.254');
  const r30 = hostRange(parseCidr('10.2.3.0/30'));
  assert.equal(r30.end - r30.start + 1, 2);
  const r31 = hostRange(parseCidr('10.2.3.0/31'));
  assert.ok(r31.start > r31.end);
  for (const s of ['1.2.3.4/33', '1.2.3.4', '1.2.3.4/', '1.2.3.4/x', '300.1.1.1/8']) assert.equal(tryParseCidr(s), undefined, s);
  assert.equal(formatCidr(parseCidr('0.0.0.0/0')), '0.0.0.0/0');
  assert.ok(cidrContains(parseCidr('0.0.0.0/0'), parseIPv4('8.8.8.8')));
});

test('covers and overlaps', () => {
  const range = parseCidr('10.32.0.0/12');
  assert.ok(cidrCovers(range, parseCidr('10.40.0.0/16')));
  assert.ok(!cidrCovers(range, parseCidr('10.0.0.0/8')));
  assert.ok(cidrsOverlap(range, parseCidr('10.0.0.0/8')));
  assert.ok(!cidrsOverlap(range, parseCidr('10.48.0.0/12')));
  assert.ok(cidrContains(range, parseIPv4('10.47.255.255')));
  assert.ok(!cidrContains(range, parseIPv4('10.48.0.0')));
});
