// The built plugins as real processes: bin/weave-net.js and bin/weave-ipam.js load the esbuild
// bundle (dist/cni/weave-cni.cjs) and answer VERSION the way runtimes probe it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = process.env.WEAVE_REPO_ROOT ?? process.cwd();
const SUPPORTED = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

function runBin(name: string, env: Record<string, string>, input: string) {
  return spawnSync(process.execPath, [join(root, 'bin', name)], {
    input,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    encoding: 'utf8',
    timeout: 10_000,
  });
}

test('the bundle exists and carries no daemon-only dependency', () => {
  const bundle = join(root, 'dist', 'cni', 'weave-cni.cjs');
  assert.ok(existsSync(bundle), `${bundle} is missing: run npm run build`);
  const text = readFileSync(bundle, 'utf8');
  for (const heavy of ['pino', 'commander', 'better-sqlite3']) {
    assert.equal(new RegExp(`(from |require\\()["']${heavy}`).test(text), false, heavy);
  }
});

test('VERSION through the real processes, probed as libcni does', () => {
  for (const name of ['weave-net.js', 'weave-ipam.js']) {
    const r = runBin(name, { CNI_COMMAND: 'VERSION', CNI_CONTAINERID: '', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_PATH: 'dummy', CNI_ARGS: '' }, '{"cniVersion":"1.0.0"}');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, JSON.stringify({ cniVersion: '1.0.0', supportedVersions: SUPPORTED }) + '\n');
    assert.equal(r.stderr, '');
  }
  const garbage = runBin('weave-net.js', { CNI_COMMAND: 'VERSION' }, 'garbage');
  assert.equal(garbage.status, 0);
  assert.equal(JSON.parse(garbage.stdout).cniVersion, '1.1.0');
});

test('an error through the real process: one JSON document on stdout, exit code 1', () => {
  const r = runBin('weave-net.js', { CNI_COMMAND: 'ADD' }, '{"cniVersion":"0.4.0","name":"weave","type":"weave-net"}');
  assert.equal(r.status, 1);
  assert.deepEqual(JSON.parse(r.stdout), { cniVersion: '0.4.0', code: 4, msg: 'required env variables [CNI_CONTAINERID CNI_IFNAME CNI_NETNS] missing' });
  assert.equal(r.stdout.trim().split('\n').length, 1);
  const about = runBin('weave-ipam.js', {}, '');
  assert.equal(about.status, 0);
  assert.equal(about.stdout, '');
  assert.match(about.stderr, /^weave-ipam: /);
});
