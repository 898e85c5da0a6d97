// The HTTP server's request handling apart from any one route: paths that are not clean are
// redirected as the original's router (gorilla/mux) does, not served; /status views are only
// the original's; a client that goes away mid-body is no server error; a trailing slash is no
// route's path (an empty segment is no route variable).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { MemoryLogger } from '../../../src/core/logger.js';
import { ApiServer, cleanPath, type ApiServices, type IpamService } from '../../../src/api/server/http-server.js';
import type { WeaveReport } from '../../../src/api/types.js';
import { parseCidr } from '../../../src/core/ip.js';

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

async function serve(log: MemoryLogger, readOnly?: boolean | 'metrics'): Promise<{ port: number; calls: string[]; server: ApiServer }> {
  const calls: string[] = [];
  const none = () => {
    throw new Error('not used by these tests');
  };
  const ipam: IpamService = {
    defaultSubnet: parseCidr('10.32.0.0/12'),
    parseSubnet: parseCidr,
    allocate: none,
    claim: none,
    lookup: none,
    free: (ident) => (calls.push(`free ${ident}`), []),
    freeAddress: (ident, ip) => void calls.push(`free ${ident} ${ip}`),
    all: () => [],
    prime: async () => {},
    takeOver: (peer) => (calls.push(`takeOver ${peer}`), 0),
    conflictLine: () => undefined,
  };
  const services: ApiServices = {
    ipam,
    cni: {
      authorized: (token) => token === undefined || token === 'tok',
      run: async (kind, _env, stdin) => (calls.push(`cni ${kind} ${stdin.length}`), { code: 0, stdout: '{}', stderr: '' }),
    },
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
  const server = new ApiServer({ services, logger: log, isReady: () => true, ...(readOnly !== undefined ? { readOnly } : {}) });
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

test('a trailing slash matches no route: DELETE /peer/, /name/c1/, /ip/c1/ are 404 and do nothing', async () => {
  const { port, calls, server } = await serve(new MemoryLogger());
  try {
    // Before: the empty last segment was dropped, so these left the network, removed every
    // name of c1, freed every address of c1. gorilla/mux matches no variable with an empty value.
    for (const [method, path] of [['DELETE', '/peer/'], ['DELETE', '/name/c1/'], ['DELETE', '/ip/c1/'], ['GET', '/status/'], ['DELETE', '/name/'], ['GET', '/']]) {
      const r = await raw(port, method!, path!);
      assert.deepEqual([r.status, r.text], [404, '404 page not found\n'], `${method} ${path}`);
    }
    assert.deepEqual(calls, []);
    // The routes themselves still answer.
    assert.equal((await raw(port, 'DELETE', '/peer/p1')).status, 200);
    assert.equal((await raw(port, 'DELETE', '/name/c1')).status, 204);
    assert.equal((await raw(port, 'DELETE', '/ip/c1')).status, 204);
    assert.deepEqual(calls, ['takeOver p1', 'delete c1 * *', 'free c1']);
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

test('--metrics-addr serves /metrics alone; --status-addr the read-only status, report and metrics', async () => {
  const paths = ['/metrics', '/status/targets', '/report?format=x', '/ip/c1'];
  const served = { metrics: ['/metrics'], status: ['/metrics', '/status/targets', '/report?format=x'] };
  for (const [mode, want] of [['metrics', served.metrics], [true, served.status]] as const) {
    const { port, server } = await serve(new MemoryLogger(), mode);
    try {
      for (const path of paths) {
        const { status } = await raw(port, 'GET', path);
        assert.equal(status !== 404, want.includes(path), `${String(mode)} listener, GET ${path}: ${status}`);
      }
      assert.equal((await raw(port, 'DELETE', '/peer')).status, 404);
    } finally {
      await server.close();
    }
  }
});

test('request bodies over 1 MiB are refused, CNI calls as forms', async () => {
  const { port, calls, server } = await serve(new MemoryLogger());
  try {
    const big = 'x'.repeat((1 << 20) + 1);
    assert.equal((await raw(port, 'PUT', '/name/c1/10.32.0.5', `fqdn=a&pad=${big}`)).status, 400);
    assert.equal((await raw(port, 'POST', '/cni/net', big)).status, 400);
    assert.equal((await raw(port, 'POST', '/cni/net', '{"cniVersion":"1.0.0"}')).status, 200);
    assert.deepEqual(calls.filter((c) => c.startsWith('cni')), ['cni net 22']);
  } finally {
    await server.close();
  }
});
