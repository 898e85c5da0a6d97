// Commands of the original script that are names only here: setup-cni as setup, the commands
// removed in Weave Net 2.0 with its words, and the Docker proxy's env/config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../../../src/cli/main.js';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (s) => void (out += s), err: (s) => void (err += s), env: { WEAVE_HTTP_ADDR: '/nonexistent/weave.sock' } });
  return { code, out, err };
}

test('setup-cni is setup; removed commands say so, as the original; env and config say there is no proxy', async () => {
  assert.match((await cli(['setup-cni', '--help'])).out, /^Usage: weave setup\|setup-cni/);
  for (const name of ['run', 'launch-router', 'stop-proxy']) {
    const r = await cli([name, 'x', '--foo']);
    assert.equal(r.code, 1);
    assert.equal(r.err, `The '${name}' command has been removed as of Weave Net version 2.0\nPlease see release notes for further information\n`);
  }
  const env = await cli(['env', '--restore']);
  assert.equal(env.code, 1);
  assert.match(env.err, /no Docker proxy/);
});
