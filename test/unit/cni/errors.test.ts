// Error mapping: WeaveError codes to CNI numbers, CniError numbers kept, the error document's
// exact shape, exit code 1 and nothing but that document on stdout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WeaveError, type ErrorCode } from '../../../src/core/errors.js';
import { ApiError } from '../../../src/api/client.js';
import { CniError, cniCodeOf, errorDocument } from '../../../src/cni/cni-error.js';
import { cniEnv, deadAddress, fakeKernel, run } from './helpers.js';

test('WeaveError codes map to CNI numbers', () => {
  const want: [ErrorCode, number][] = [
    ['INCOMPATIBLE_VERSION', 1],
    ['UNSUPPORTED_FIELD', 2],
    ['CONTAINER_UNKNOWN', 3],
    ['MISSING_ENV', 4],
    ['IO_FAILED', 5],
    ['DECODE_FAILED', 6],
    ['INVALID_CONFIG', 7],
    ['INVALID_ARGUMENT', 7],
    ['UNAVAILABLE', 11],
    ['TIMEOUT', 11],
    ['ALREADY_EXISTS', 100],
    ['KERNEL_FAILED', 100],
    ['INTERNAL', 999],
  ];
  for (const [code, n] of want) assert.equal(cniCodeOf(new WeaveError(code, 'x')), n, code);
  assert.equal(cniCodeOf(new ApiError('UNAVAILABLE', 503, 'not ready', 'unable')), 11);
  assert.equal(cniCodeOf(new CniError(50, 'x', { code: 'UNAVAILABLE' })), 50);
  assert.equal(cniCodeOf(new Error('plain')), 999);
  assert.equal(cniCodeOf('a string'), 999);
});

test('errorDocument: exact shape, details only when present', () => {
  assert.deepEqual(errorDocument(new WeaveError('INVALID_CONFIG', 'bad subnet'), '0.4.0'), { cniVersion: '0.4.0', code: 7, msg: 'bad subnet' });
  assert.deepEqual(errorDocument(new WeaveError('UNAVAILABLE', 'later', { details: 'ECONNREFUSED' }), '1.0.0'), {
    cniVersion: '1.0.0',
    code: 11,
    msg: 'later',
    details: 'ECONNREFUSED',
  });
  assert.deepEqual(errorDocument(new Error('boom'), '1.1.0'), { cniVersion: '1.1.0', code: 999, msg: 'boom' });
});

test('a missing netns on ADD is code 3; the host netns is refused with 7', async () => {
  const k = fakeKernel();
  const r = await run('net', cniEnv('ADD', { CNI_NETNS: '/proc/999999/ns/net' }), { cniVersion: '0.4.0', name: 'weave', routerWaitMs: 0 }, { kernel: k });
  assert.equal(r.code, 1);
  assert.deepEqual(r.doc, { cniVersion: '0.4.0', code: 3, msg: 'network namespace /proc/999999/ns/net does not exist' });
  assert.equal(k.attached.length, 0);
  k.checkNetns = () => {
    throw new WeaveError('INVALID_ARGUMENT', 'can not specify host network namespace /proc/1/ns/net');
  };
  const host = await run('net', cniEnv('ADD', { CNI_NETNS: '/proc/1/ns/net' }), { cniVersion: '0.4.0', name: 'weave', routerWaitMs: 0 }, { kernel: k });
  assert.equal(host.doc?.code, 7);
});

test('an unreachable router is code 11 naming its address, after routerWaitMs', async () => {
  const addr = await deadAddress();
  const started = Date.now();
  const r = await run('net', cniEnv('ADD'), { cniVersion: '1.0.0', name: 'weave', weaveHttpAddr: addr, routerWaitMs: 300 }, { kernel: fakeKernel() });
  const took = Date.now() - started;
  assert.equal(r.code, 1);
  assert.equal(r.doc?.code, 11);
  assert.equal(r.doc?.msg, `weave router at ${addr} is not reachable (waited 300 ms); try again later`);
  assert.match(String(r.doc?.details), /ECONNREFUSED/);
  assert.ok(took >= 290, `waited only ${took} ms`);
  assert.match(r.stderr, /^weave-cni: weave router at .* is not reachable yet; waiting up to 300 ms\n$/);
  // stdout holds exactly the error document and nothing else.
  assert.equal(r.stdout, JSON.stringify(r.doc) + '\n');
});

test('DEL with the router unreachable fails with 11 rather than leaking the address', async () => {
  const addr = await deadAddress();
  const k = fakeKernel();
  const r = await run('net', cniEnv('DEL', { CNI_NETNS: '' }), { cniVersion: '1.0.0', name: 'weave', weaveHttpAddr: addr, routerWaitMs: 0 }, { kernel: k });
  assert.equal(r.code, 1);
  assert.equal(r.doc?.code, 11);
  assert.equal(k.detached.length, 1, 'the veth is removed even so');
});
