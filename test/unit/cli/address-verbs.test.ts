// attach/detach/expose/hide/ps against a fake router: with IPAM off (every /ip route answers
// 404, as a weaver run with --ipalloc-range ""), `weave ps` columns, and an attach to a
// namespace that is not there. The bridge named here does not exist, so nothing touches the
// kernel beyond reading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { runCli } from '../../../src/cli/main.js';

// ps's stand-in for a MAC it cannot read (UNKNOWN_MAC): all zeros keeps the column a MAC.
const UNKNOWN_MAC = '00:00:00:00:00:00';
const noBridge = `fxc${randomBytes(3).toString('hex')}`;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A router whose /ip routes are absent (IPAM off); everything else answers 200. */
const ipamOff: Handler = (req, res) => {
  if (/^\/(ip|ipinfo)(\/|$)/.test(req.url ?? '')) {
    res.statusCode = 404;
    res.end('404 page not found\n');
    return;
  }
  res.statusCode = /^\/name/.test(req.url ?? '') ? 404 : 200; // --no-dns too
  res.end('');
};

async function withRouter(handler: Handler, fn: (cli: (args: string[]) => Promise<{ code: number; out: string; err: string }>, seen: string[]) => Promise<void>): Promise<void> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await fn(async (args) => {
      let out = '';
      let err = '';
      const code = await runCli(['--http-addr', addr, '--weave-bridge', noBridge, ...args], { out: (s) => (out += s), err: (s) => (err += s), env: {} });
      return { code, out, err };
    }, seen);
  } finally {
    server.close();
  }
}

test('IPAM off: an explicit address is taken as given (404 on the claim is no error)', async () => {
  await withRouter(ipamOff, async (cli, seen) => {
    const r = await cli(['expose', '198.51.100.9/24']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, '198.51.100.9\n');
    assert.ok(seen.includes('PUT /ip/weave%3Aexpose/198.51.100.9/24'), seen.join(', '));
    assert.ok(seen.includes('POST /expose/198.51.100.9/24'), seen.join(', '));
  });
});

test('IPAM off: allocation (no address, net:default, net:<cidr>) says IP allocation is disabled', async () => {
  await withRouter(ipamOff, async (cli) => {
    for (const args of [[], ['net:default'], ['net:198.51.100.0/24']]) {
      const r = await cli(['expose', ...args]);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, /IP allocation is disabled on the router/, args.join(' '));
      assert.doesNotMatch(r.err, /404/, args.join(' '));
    }
  });
});

test('IPAM off: ps, hide and detach work from the kernel instead of listing addresses', async () => {
  await withRouter(ipamOff, async (cli) => {
    const ps = await cli(['ps']);
    assert.equal(ps.code, 0, ps.err);
    assert.equal(ps.out, '');
    const hide = await cli(['hide']);
    assert.equal(hide.code, 0, hide.err);
    assert.equal(hide.out, '\n');
    const detach = await cli(['detach', `/run/netns/${noBridge}`]);
    assert.equal(detach.code, 0, detach.err);
    assert.equal(detach.out, '\n');
  });
});

test('ps keeps the MAC column when the MAC is unknown', async () => {
  const owned: Handler = (req, res) => {
    if (req.url === '/ip') {
      res.end(JSON.stringify({ owned: [{ containerid: 'deadbeefcafe0123', addrs: ['198.51.100.7/24'] }, { containerid: 'noaddrs', addrs: [] }] }));
      return;
    }
    res.statusCode = 404;
    res.end('404 page not found\n');
  };
  await withRouter(owned, async (cli) => {
    const r = await cli(['ps']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `deadbeefcafe ${UNKNOWN_MAC} 198.51.100.7/24\nnoaddrs ${UNKNOWN_MAC}\n`);
    for (const line of r.out.trim().split('\n')) assert.match(line.split(' ')[1]!, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });
});

test('attach to a namespace or process that is not there takes no address', async () => {
  const ok: Handler = (req, res) => {
    if (req.method === 'POST' && req.url?.startsWith('/ip/')) res.end('198.51.100.3/24\n');
    else res.end('');
  };
  await withRouter(ok, async (cli, seen) => {
    for (const target of [`/run/netns/${noBridge}`, '999999999']) {
      const r = await cli(['attach', target]);
      assert.equal(r.code, 1, target);
      assert.match(r.err, /does not exist/, target);
    }
    assert.deepEqual(seen.filter((s) => /^(POST|PUT) \/ip\//.test(s)), []);
  });
});
