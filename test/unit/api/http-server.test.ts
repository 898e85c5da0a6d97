// The HTTP server's request handling apart from any one route: paths that are not clean are
// redirected as the original's router (gorilla/mux) does, not served; /status views are only
// the original's; a client that goes away mid-body is no server error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { MemoryLogger } from '../../../src/core/logger.js';
import { ApiServer, cleanPath, type ApiServices } from '../../../src/api/server/http-server.js';
import type { WeaveReport } from '../../../src/api/types.js';

test('cleanPath: Go path.Clean for paths with empty, "." or ".." segments, undefined for clean ones', () => {
  for (const p of ['/', '/status', '/status/', '/ip/c1/10.32.0.1/12', '/name/c%2F1/10.32.0.5', '/a/.b/..c/...']) assert.equal(cleanPath(p), undefined, p);
  assert.equal(cleanPath('/ip/c1/../../peer'), '/peer');
  assert.equal(cleanPath('/ip/c1/%2e%2E/%2E./peer'), '/peer');
  assert.equal(cleanPath('/name//10.32.0.5'), '/name/10.32.0.5');
  assert.equal(cleanPath('//status'), '/status');
  assert.equal(cleanPath('/./status/.'), '/status');
  assert.equal(cleanPath('/../../status/'), '/status/');
  assert.equal(cleanPath('/a/..'), '/');
});

function raw(port: number, method: string, path: string, body?: string): Promise<{ status: number; location?: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ...(res.headers.location ? { location: res.headers.location } : {}), text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function serve(log: MemoryLogger): Promise<{ port: number; calls: string[]; server: ApiServer }> {
  const calls: string[] = [];
  const services: ApiServices = {
    report: () => ({}) as WeaveReport,
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    expose: { expose: async () => {}, hide: async () => {} },
    leave: async () => void calls.push('leave'),
    dns: {
      domain: 'weave.local.',
      putName: (c, ip, fqdn) => void calls.push(`put ${c} ${ip} ${fqdn}`),
      deleteName: (c, ip, fqdn) => void calls.push(`delete ${c ?? '*'} ${ip ?? '*'} ${fqdn ?? '*'}`),
      entries: () => [],
      listenAddress: () => undefined,
    },
  };
  const server = new ApiServer({ services, logger: log, isReady: () => true });
  await server.listen({ host: '127.0.0.1', port: 0 });
  return { port: Number(server.address().split(':').pop()), calls, server };
}

test('paths with empty, "." or ".." segments are redirected to their clean form, not served', async () => {
  const { port, calls, server } = await serve(new MemoryLogger());
  try {
    // Before: resolved, then routed, so this left the network (DELETE /peer).
    assert.deepEqual(await raw(port, 'DELETE', '/name/c1/../../peer'), { status: 301, location: '/peer', text: 'Moved Permanently\n' });
    assert.equal((await raw(port, 'DELETE', '/name/c1/%2e%2e/%2e%2e/peer')).location, '/peer');
    // Before: the empty segment was dropped, and 10.32.0.5 taken for the container.
    assert.deepEqual(await raw(port, 'DELETE', '/name//10.32.0.5?fqdn=x'), { status: 301, location: '/name/10.32.0.5?fqdn=x', text: 'Moved Permanently\n' });
    assert.deepEqual(calls, []);
    assert.equal((await raw(port, 'DELETE', '/peer')).status, 204);
    assert.deepEqual(calls, ['leave']);
  } finally {
    await server.close();
  }
});

test('/status views are the original six; names of Object.prototype members are 404', async () => {
  const { port, server } = await serve(new MemoryLogger());
  try {
    for (const sub of ['constructor', 'toString', '__proto__', 'valueOf', 'hasOwnProperty', 'nosuch']) {
      const r = await raw(port, 'GET', `/status/${sub}`);
      assert.deepEqual([r.status, r.text], [404, '404 page not found\n'], sub);
    }
  } finally {
    await server.close();
  }
});

test('a client that goes away in the middle of its body is logged at debug, not as a failed request', async () => {
  const log = new MemoryLogger();
  const { port, calls, server } = await serve(log);
  try {
    await new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/name/c1/10.32.0.5', headers: { 'content-length': '1000', 'content-type': 'application/x-www-form-urlencoded' } });
      req.on('error', () => resolve());
      req.write('fqdn=web.weave.local', () => setTimeout(() => req.destroy(), 50));
    });
    const t0 = Date.now();
    while (!log.records.some((r) => r.msg === 'request aborted by the client') && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(log.records.filter((r) => r.level === 'error'), []);
    assert.ok(log.records.some((r) => r.level === 'debug' && r.msg === 'request aborted by the client'));
    assert.deepEqual(calls, [], 'nothing was done with half a body');
  } finally {
    await server.close();
  }
});
