// weaver's IPAM flags: --ipalloc-init's three modes (and IPALLOC_INIT), the range flags, and
// values refused before anything starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDaemonArgs } from '../../../src/daemon/config.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { formatCidr } from '../../../src/core/ip.js';

test('--ipalloc-init: consensus by default, consensus=N, seed=<peers>, observer', () => {
  assert.deepEqual(parseDaemonArgs([]).ipallocInit, { mode: 'consensus' });
  assert.deepEqual(parseDaemonArgs(['--ipalloc-init', 'consensus=3']).ipallocInit, { mode: 'consensus', count: 3 });
  assert.deepEqual(parseDaemonArgs(['--ipalloc-init', 'seed=7a:00:00:00:00:01,7a:00:00:00:00:02']).ipallocInit, {
    mode: 'seed',
    peers: [0x7a0000000001, 0x7a0000000002],
  });
  assert.deepEqual(parseDaemonArgs(['--ipalloc-init=observer']).ipallocInit, { mode: 'observer' });
});

test('IPALLOC_INIT is used when the flag is absent (weave-kube sets it)', () => {
  process.env.IPALLOC_INIT = 'observer';
  try {
    assert.deepEqual(parseDaemonArgs([]).ipallocInit, { mode: 'observer' });
    assert.deepEqual(parseDaemonArgs(['--ipalloc-init', 'consensus']).ipallocInit, { mode: 'consensus' });
  } finally {
    delete process.env.IPALLOC_INIT;
  }
});

test('bad --ipalloc-init values are refused with INVALID_ARGUMENT and say why', () => {
  for (const [bad, why] of [
    ['consensus=0', /invalid peer count/],
    ['consensus=x', /invalid peer count/],
    ['seed=', /at least one peer/],
    ['seed=notapeer', /not a peer name/],
    ['voting', /unknown mode/],
  ] as const) {
    assert.throws(() => parseDaemonArgs(['--ipalloc-init', bad]), (e) => isWeaveError(e, 'INVALID_ARGUMENT') && why.test((e as Error).message), bad);
  }
});

test('range flags: default range, default subnet, "" disables IPAM', () => {
  const c = parseDaemonArgs(['--ipalloc-default-subnet', '10.32.1.0/24']);
  assert.equal(formatCidr(c.ipallocRange!), '10.32.0.0/12');
  assert.equal(formatCidr(c.ipallocDefaultSubnet!), '10.32.1.0/24');
  assert.equal(parseDaemonArgs(['--ipalloc-range', '']).ipallocRange, undefined);
  assert.throws(() => parseDaemonArgs(['--ipalloc-range', '10.0.0.0/33']), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

test('a too small --ipalloc-range or a default subnet outside it is refused at parse time', () => {
  const refused = (args: string[], msg: RegExp) =>
    assert.throws(() => parseDaemonArgs(args), (e: unknown) => isWeaveError(e, 'INVALID_CONFIG') && msg.test((e as Error).message), args.join(' '));
  refused(['--ipalloc-range', '10.32.0.0/31'], /too small/);
  refused(['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.48.0.0/24'], /does not overlap/);
  refused(['--ipalloc-range', '10.32.0.0/12', '--ipalloc-default-subnet', '10.32.0.0/31'], /too small/);
  assert.equal(parseDaemonArgs(['--ipalloc-range', '10.32.0.0/30']).ipallocRange?.prefix, 30);
});
