// The mesh's TCP transport over real loopback sockets: a peer that stops reading gets its
// connection closed once what we queued for it passes the limit, instead of our keeping every
// message sent to it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { SocketTransport, lookupIPv4 } from '../../../src/platform/tcp-transport.js';

/** A loopback server whose connections go to `accept`, and a socket connected to it. */
async function pair(accept: (s: Socket) => void): Promise<{ server: Server; s: Socket }> {
  const server = createServer(accept);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const s = connect((server.address() as { port: number }).port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  return { server, s };
}

test('a peer that stops reading is closed with a clear error once 1 MiB is queued for it', { timeout: 20_000 }, async () => {
  let peer: Socket | undefined;
  const { server, s } = await pair((c) => {
    peer = c;
    c.pause(); // never reads
  });
  try {
    const t = new SocketTransport(s, { maxQueuedBytes: 1 << 20 });
    const closed = new Promise<Error | undefined>((r) => t.onClose(r));
    let written = 0;
    const chunk = Buffer.alloc(64 * 1024, 7);
    // Far more than the kernel's buffers hold (a few MB on loopback): the queue in our process grows.
    for (let i = 0; i < 2000 && !s.destroyed; i++) {
      t.write(chunk);
      written += chunk.length;
      if (i % 16 === 15) await new Promise((r) => setImmediate(r));
    }
    assert.ok(s.destroyed, `still open after ${written} bytes`);
    const err = await closed;
    assert.ok(err && /peer is not reading: \d+ bytes queued for it/.test(err.message), String(err));
    assert.ok(s.writableLength <= 1 << 20);
    t.write(chunk); // after the close: ignored, no throw
  } finally {
    s.destroy();
    peer?.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('a peer that reads gets everything, in order', { timeout: 20_000 }, async () => {
  const got: Buffer[] = [];
  const { server, s } = await pair((c) => c.on('data', (d: Buffer) => got.push(d)));
  try {
    const t = new SocketTransport(s, { maxQueuedBytes: 1 << 20 });
    const sent: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const b = Buffer.alloc(50_000, i & 0xff);
      sent.push(b);
      t.write(b);
      await new Promise((r) => setImmediate(r));
    }
    const total = sent.reduce((n, b) => n + b.length, 0);
    const t0 = Date.now();
    while (got.reduce((n, b) => n + b.length, 0) < total && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.ok(Buffer.concat(got).equals(Buffer.concat(sent)));
  } finally {
    s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('lookupIPv4 gives the IPv4 addresses of a name (the hosts file here: no DNS query leaves the machine)', async () => {
  assert.ok((await lookupIPv4('localhost')).includes('127.0.0.1'));
});
