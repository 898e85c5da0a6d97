// weaver's weaveDNS flags: defaults, --no-dns, the domain with or without its trailing dot, Go
// durations, and values refused before anything starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDaemonArgs, parseGoDurationMs } from '../../../src/daemon/config.js';
import { isWeaveError } from '../../../src/core/errors.js';

test('DNS is on by default with the original defaults and no listen address', () => {
  const c = parseDaemonArgs([]);
  assert.deepEqual(c.dns, { domain: 'weave.local.', ttl: 1, fallbackTimeoutMs: 5000, resolvConf: '/etc/resolv.conf' });
});

test('--no-dns turns it off; the other flags are taken as given', () => {
  assert.equal(parseDaemonArgs(['--no-dns']).dns, undefined);
  const c = parseDaemonArgs(['--dns-listen-address', '127.0.0.1:5353', '--dns-domain', 'foo.bar', '--dns-ttl', '30', '--dns-fallback-timeout', '1m30s', '--resolv-conf', '/tmp/r.conf']);
  assert.deepEqual(c.dns, { listenAddress: '127.0.0.1:5353', domain: 'foo.bar.', ttl: 30, fallbackTimeoutMs: 90_000, resolvConf: '/tmp/r.conf' });
  assert.equal(parseDaemonArgs(['--dns-domain', 'foo.bar.']).dns?.domain, 'foo.bar.');
  assert.equal(parseDaemonArgs(['--dns-listen-address', ':53']).dns?.listenAddress, ':53');
});

test('Go durations', () => {
  assert.equal(parseGoDurationMs('5s'), 5000);
  assert.equal(parseGoDurationMs('250ms'), 250);
  assert.equal(parseGoDurationMs('1.5s'), 1500);
  assert.equal(parseGoDurationMs('1h2m'), 3_720_000);
  assert.equal(parseGoDurationMs('0'), 0);
  for (const bad of ['', '5', 's', '5x', '5s junk', '-1s']) assert.throws(() => parseGoDurationMs(bad), Error, bad);
});

test('bad DNS values are refused with INVALID_ARGUMENT', () => {
  for (const args of [
    ['--dns-listen-address', 'localhost:53'],
    ['--dns-listen-address', '127.0.0.1'],
    ['--dns-listen-address', '127.0.0.1:70000'],
    ['--dns-domain', '.'],
    ['--dns-domain', 'a..b'],
    ['--dns-domain', 'bad_-.x'],
    ['--dns-ttl', '-1'],
    ['--dns-fallback-timeout', '5'],
  ]) {
    assert.throws(() => parseDaemonArgs(args), (e) => isWeaveError(e, 'INVALID_ARGUMENT'), args.join(' '));
  }
});
