// The process edge, driven through runPlugin's injected io: env validation (code 4 naming the
// variable), unknown and empty commands, VERSION that never fails, stdin and decode errors,
// lenient CNI_ARGS, and the output discipline (one JSON document, exit code 1 on error).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCniArgs, parseCniEnv, interfaceNameProblem } from '../../../src/cni/skel.js';
import { runPlugin } from '../../../src/cni/entry.js';
import { cniEnv, memoryIo, run, fakeKernel } from './helpers.js';

const conf = { cniVersion: '1.0.0', name: 'weave', type: 'weave-net', routerWaitMs: 0, weaveHttpAddr: '127.0.0.1:1' };
const SUPPORTED = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

test('VERSION answers with the stdin version, whatever else is wrong', async () => {
  const probe = { CNI_COMMAND: 'VERSION', CNI_CONTAINERID: '', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_PATH: 'dummy', CNI_ARGS: '' };
  for (const kind of ['net', 'ipam'] as const) {
    const r = await run(kind, probe, '{"cniVersion":"1.0.0"}');
    assert.equal(r.code, 0);
    assert.deepEqual(r.doc, { cniVersion: '1.0.0', supportedVersions: SUPPORTED });
  }
  const cases: [string, string][] = [
    ['garbage{', '1.1.0'],
    ['', '1.1.0'],
    ['{"cniVersion":"9.9.9"}', '1.1.0'],
    ['{"cniVersion":""}', '1.1.0'],
    ['[1,2]', '1.1.0'],
    ['{"cniVersion":"0.2.0"}', '0.2.0'],
    ['{"cniVersion":"1.1.0","name":"x"}', '1.1.0'],
  ];
  for (const [stdin, v] of cases) {
    const r = await run('net', { CNI_COMMAND: 'VERSION', CNI_NETNS: 'dummy', CNI_IFNAME: 'this-name-is-far-too-long', CNI_CONTAINERID: 'bad id!' }, stdin);
    assert.equal(r.code, 0, stdin);
    assert.deepEqual(r.doc, { cniVersion: v, supportedVersions: SUPPORTED }, stdin);
  }
  // Even a failing stdin.
  const io = memoryIo({ CNI_COMMAND: 'VERSION' }, () => Promise.reject(new Error('EIO')));
  assert.equal(await runPlugin('net', io), 0);
  assert.equal(JSON.parse(io.out.join('')).cniVersion, '1.1.0');
});

test('empty CNI_COMMAND prints the about line on stderr and exits 0', async () => {
  for (const env of [{}, { CNI_COMMAND: '' }]) {
    const r = await run('net', env, '');
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^weave-net: .*0\.1\.0, 0\.2\.0, 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0\n$/);
  }
  assert.match((await run('ipam', {}, '')).stderr, /^weave-ipam: /);
});

test('unknown CNI_COMMAND is code 4', async () => {
  const r = await run('net', cniEnv('FROB'), conf);
  assert.equal(r.code, 1);
  assert.deepEqual(r.doc, { cniVersion: '1.1.0', code: 4, msg: 'unknown CNI_COMMAND: FROB' });
});

test('missing variables are code 4 naming them, per verb', async () => {
  const cases: [string, string, string][] = [
    ['ADD', 'CNI_CONTAINERID', 'required env variables [CNI_CONTAINERID] missing'],
    ['ADD', 'CNI_IFNAME', 'required env variables [CNI_IFNAME] missing'],
    ['ADD', 'CNI_NETNS', 'required env variables [CNI_NETNS] missing'],
    ['DEL', 'CNI_CONTAINERID', 'required env variables [CNI_CONTAINERID] missing'],
    ['DEL', 'CNI_IFNAME', 'required env variables [CNI_IFNAME] missing'],
    ['CHECK', 'CNI_CONTAINERID', 'required env variables [CNI_CONTAINERID] missing'],
    ['CHECK', 'CNI_IFNAME', 'required env variables [CNI_IFNAME] missing'],
    ['CHECK', 'CNI_NETNS', 'required env variables [CNI_NETNS] missing'],
    ['GC', 'CNI_PATH', 'required env variables [CNI_PATH] missing'],
  ];
  for (const [cmd, variable, msg] of cases) {
    for (const value of [undefined, '']) {
      const r = await run('net', cniEnv(cmd, { [variable]: value }), { ...conf, cniVersion: '1.1.0' });
      assert.equal(r.code, 1, `${cmd} ${variable}`);
      assert.deepEqual(r.doc, { cniVersion: '1.1.0', code: 4, msg }, `${cmd} ${variable}`);
    }
  }
  const all = await run('net', { CNI_COMMAND: 'ADD' }, conf);
  assert.equal(all.doc?.msg, 'required env variables [CNI_CONTAINERID CNI_IFNAME CNI_NETNS] missing');
});

test('invalid CNI_CONTAINERID and CNI_IFNAME are code 4 naming them', async () => {
  for (const id of ['-leading-dash', 'has space', 'a/b', 'x:y', '.hidden']) {
    const r = await run('net', cniEnv('ADD', { CNI_CONTAINERID: id }), conf);
    assert.equal(r.doc?.code, 4, id);
    assert.match(String(r.doc?.msg), /CNI_CONTAINERID/, id);
  }
  for (const ifn of ['.', '..', 'eth0/1', 'eth:0', 'eth 0', 'eth\t0', 'a123456789012345']) {
    const r = await run('net', cniEnv('DEL', { CNI_IFNAME: ifn }), conf);
    assert.equal(r.doc?.code, 4, ifn);
    assert.match(String(r.doc?.msg), /CNI_IFNAME/, ifn);
  }
  assert.equal(interfaceNameProblem('a12345678901234'), undefined);
  assert.equal(interfaceNameProblem('eth0'), undefined);
});

test('DEL does not need CNI_NETNS; STATUS and GC do not need container variables', () => {
  const del = parseCniEnv('DEL', { CNI_CONTAINERID: 'default-ctr1', CNI_IFNAME: 'eth0', CNI_NETNS: '' });
  assert.equal(del.netns, '');
  assert.deepEqual(del.path, []);
  const st = parseCniEnv('STATUS', { CNI_CONTAINERID: '', CNI_NETNS: '', CNI_IFNAME: '' });
  assert.equal(st.containerId, '');
  const gc = parseCniEnv('GC', { CNI_PATH: '/opt/cni/bin::/usr/lib/cni' });
  assert.deepEqual(gc.path, ['/opt/cni/bin', '/usr/lib/cni']);
});

test('CNI_ARGS is parsed leniently', () => {
  assert.deepEqual(parseCniArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;IP=10.32.0.9'), {
    IgnoreUnknown: '1',
    K8S_POD_NAMESPACE: 'default',
    K8S_POD_NAME: 'web',
    IP: '10.32.0.9',
  });
  assert.deepEqual(parseCniArgs(undefined), {});
  assert.deepEqual(parseCniArgs(';;junk;=v;K=;A=b=c'), { K: '', A: 'b=c' });
  const env = parseCniEnv('ADD', cniEnv('ADD', { CNI_ARGS: 'garbage;;;MAC=02:00:00:00:00:50' }));
  assert.deepEqual(env.args, { MAC: '02:00:00:00:00:50' });
});

test('stdin I/O failure is code 5; undecodable stdin is code 6', async () => {
  const io = memoryIo(cniEnv('ADD'), () => Promise.reject(new Error('EIO: read failed')));
  assert.equal(await runPlugin('net', io), 1);
  const doc = JSON.parse(io.out.join(''));
  assert.equal(doc.code, 5);
  assert.equal(doc.cniVersion, '1.1.0');
  assert.match(doc.msg, /EIO/);

  for (const stdin of ['', '{', '[]', '"weave"']) {
    const r = await run('net', cniEnv('ADD'), stdin);
    assert.equal(r.code, 1, stdin);
    assert.equal(r.doc?.code, 6, stdin);
    assert.equal(r.doc?.cniVersion, '1.1.0', stdin);
  }
});

test('the error document carries the config version (0.1.0 when implicit, 1.1.0 when unusable)', async () => {
  const k = fakeKernel();
  for (const [v, want] of [['0.3.0', '0.3.0'], ['1.0.0', '1.0.0'], ['', '0.1.0'], [undefined, '0.1.0'], ['7.0.0', '1.1.0']] as const) {
    const r = await run('net', cniEnv('ADD', { CNI_NETNS: '/nonexistent' }), { ...conf, cniVersion: v }, { kernel: k });
    assert.equal(r.code, 1);
    assert.equal(r.doc?.cniVersion, want, String(v));
  }
  const incompatible = await run('net', cniEnv('ADD'), { ...conf, cniVersion: '7.0.0' });
  assert.equal(incompatible.doc?.code, 1);
});

test('DEL with an unusable config logs and succeeds with no output', async () => {
  for (const stdin of ['{', '{"cniVersion":"1.0.0","name":"weave","isGateway":true}', '{"cniVersion":"5.0.0","name":"weave"}']) {
    const r = await run('net', cniEnv('DEL'), stdin);
    assert.equal(r.code, 0, stdin);
    assert.equal(r.stdout, '', stdin);
    assert.match(r.stderr, /^weave-cni: DEL .*ignoring an unusable network configuration/, stdin);
  }
});
