// `weave rmpeer`: an empty peer id is refused before any request (DELETE /peer/ is no peer,
// and a router that drops the empty segment would take it for DELETE /peer: leave).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCli } from '../../../src/cli/main.js';

test('weave rmpeer refuses an empty peer id with an error and exit code 1, sending nothing', async () => {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.end('0 IPs taken over\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (const peers of [[''], ['7a:00:00:00:00:01', '']]) {
      let err = '';
      const code = await runCli(['--http-addr', addr, 'rmpeer', ...peers], { out: () => {}, err: (s) => (err += s), env: {} });
      assert.equal(code, 1, JSON.stringify(peers));
      assert.match(err, /empty peer/, JSON.stringify(peers));
    }
    assert.deepEqual(seen, []);
    // A real peer id still goes through.
    assert.equal(await runCli(['--http-addr', addr, 'rmpeer', 'host1'], { out: () => {}, err: () => {}, env: {} }), 0);
    assert.deepEqual(seen, ['DELETE /peer/host1']);
  } finally {
    server.close();
  }
});
