// The daemon's DNS UDP listener (daemon/dns-worker-udp.ts): a worker thread reads the server's
// UDP socket and answers names in the domain from a copy of the names; the rest goes to the main
// thread. Checked here over real sockets on 127.0.0.1 (DNS is only ever sent to loopback):
//   - its answers are the main thread's answers (same bytes; for several addresses the same
//     records, shuffled independently), and what it does not answer is answered by the main
//     thread exactly as node:dgram's server answers it;
//   - every kind of change of the entry set reaches it before the next query, with no wait,
//     also while the thread is starting;
//   - many queries in flight are all answered, each under its own id;
//   - what waits for the main thread is bounded: past maxQueued the worker drops queries;
//   - a worker that dies hands the socket to the main thread, which keeps answering;
//   - stop is prompt and frees the port; IPv6 addresses use node:dgram.
// server.test.ts runs the server's whole socket suite with this listener as well.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Worker } from 'node:worker_threads';
import dnsPacket from 'dns-packet';
import type { Answer, Packet } from 'dns-packet';
import { systemClock } from '../../../src/core/clock.js';
import { MemoryLogger, silentLogger } from '../../../src/core/logger.js';
import { Nameserver } from '../../../src/dns/nameserver.js';
import { DnsServer } from '../../../src/dns/server.js';
import { staticUpstream } from '../../../src/dns/upstream.js';
import { WorkerUdpListener } from '../../../src/daemon/dns-worker-udp.js';
import { seeded } from '../../helpers/prng.js';

const US = 0x7a0000000001;
const PEER = 0x7a0000000002;

function newNameserver(ourName = US): Nameserver {
  return new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName });
}

async function startServer(ns: Nameserver, listener: WorkerUdpListener | undefined, listenAddress = '127.0.0.1:0'): Promise<DnsServer> {
  const s = new DnsServer(
    { names: ns, upstream: staticUpstream([]), clock: systemClock, logger: silentLogger, random: seeded(4), udpListener: listener },
    { listenAddress },
  );
  await s.start();
  return s;
}

/** Sends each query from one socket and collects the replies by id (undefined: none within the wait). */
async function askAll(port: number, queries: Buffer[], host = '127.0.0.1', waitMs = 1500): Promise<(Buffer | undefined)[]> {
  const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const byId = new Map<number, Buffer>();
  await new Promise<void>((r) => s.bind(0, host, r));
  const done = new Promise<void>((resolve) => {
    const t = setTimeout(resolve, waitMs);
    s.on('message', (m) => {
      byId.set(m.readUInt16BE(0), m);
      if (byId.size === queries.length) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  for (const q of queries) s.send(q, port, host);
  await done;
  s.close();
  return queries.map((q) => byId.get(q.readUInt16BE(0)));
}

/** In bursts small enough for the receive buffer of a server that reads one datagram per callback. */
async function askInBursts(port: number, queries: Buffer[]): Promise<(Buffer | undefined)[]> {
  const out: (Buffer | undefined)[] = [];
  for (let k = 0; k < queries.length; k += 100) out.push(...(await askAll(port, queries.slice(k, k + 100))));
  return out;
}

async function ask(port: number, q: Buffer): Promise<Buffer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const [r] = await askAll(port, [q], '127.0.0.1', 400);
    if (r) return r;
  }
  throw new Error('no answer');
}

let nextId = 1;
function query(name: string, type: dnsPacket.RecordType = 'A', opts: { udpSize?: number; flags?: number } = {}): Buffer {
  const p: Packet = { type: 'query', id: nextId++ & 0xffff, flags: opts.flags ?? dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] };
  if (opts.udpSize) p.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: opts.udpSize, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as Answer];
  return dnsPacket.encode(p);
}

const rcode = (b: Buffer) => (b[3] as number) & 0xf;
const ancount = (b: Buffer) => b.readUInt16BE(6);
const addrs = (b: Buffer) => (dnsPacket.decode(b).answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data);

/**
 * A reply with its answer records sorted: replies to the same query from two servers that
 * shuffle independently compare equal when they hold the same records. Answers here are never
 * compressed (fast-reply.ts), so each A record is the question name and 14 bytes.
 */
function canonical(b: Buffer): string {
  const n = ancount(b);
  if (n < 2) return b.toString('hex');
  let at = 12;
  while (b[at] !== 0) at += (b[at] as number) + 1;
  const nameBytes = at + 1 - 12;
  const qEnd = at + 5;
  const per = nameBytes + 14;
  const records: string[] = [];
  for (let i = 0; i < n; i++) records.push(b.toString('hex', qEnd + i * per, qEnd + (i + 1) * per));
  return b.toString('hex', 0, qEnd) + records.sort().join('') + b.toString('hex', qEnd + n * per);
}

test('the worker answers as the main thread does, byte for byte up to the shuffle; what it does not answer the main thread does', async () => {
  const ns = newNameserver();
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
  ns.addEntryFqdn('Mixed.Case.weave.local.', 'c2', 0x0a200002);
  for (let i = 1; i <= 60; i++) ns.addEntryFqdn('many.weave.local.', `c${i}`, 0x0a010000 + i);
  for (let i = 1; i <= 3; i++) ns.addEntryFqdn('few.weave.local.', `c${i}`, 0x0a020000 + i);
  const listener = new WorkerUdpListener({ names: ns, logger: silentLogger });
  const viaWorker = await startServer(ns, listener);
  const viaMain = await startServer(ns, undefined);
  try {
    assert.equal(listener.stats().thread, 'worker');
    const rand = seeded(21);
    const names = ['web.weave.local', 'WEB.weave.local', 'web', 'Web', 'many.weave.local', 'many', 'few.weave.local', 'FEW', 'mixed.case.weave.local', 'nope.weave.local', 'nope', 'weave.local', 'x-y_z.weave.local'];
    const types: dnsPacket.RecordType[] = ['A', 'AAAA', 'MX', 'TXT'];
    const queries: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      const name = names[Math.floor(rand() * names.length)]!;
      const type = types[Math.floor(rand() * types.length)]!;
      const udpSize = rand() < 0.5 ? [100, 512, 700, 1232, 4096][Math.floor(rand() * 5)] : undefined;
      const flags = (rand() < 0.7 ? dnsPacket.RECURSION_DESIRED : 0) | (rand() < 0.3 ? 0x10 : 0);
      queries.push(query(name, type, { udpSize, flags }));
    }
    // Not for the worker: PTR (ours, and not ours: upstream, none here, so SERVFAIL), names
    // outside the domain (SERVFAIL), two questions (FORMERR), another opcode (NOTIMP), class CH.
    const passed = [
      query('1.0.32.10.in-addr.arpa', 'PTR'),
      query('9.9.9.9.in-addr.arpa', 'PTR'),
      query('example.com'),
      dnsPacket.encode({ type: 'query', id: nextId++, questions: [{ name: 'a.weave.local', type: 'A' }, { name: 'b.weave.local', type: 'A' }] }),
      (() => {
        const q = query('web.weave.local');
        q[2] = ((q[2] as number) & 0x87) | (4 << 3);
        return q;
      })(),
      dnsPacket.encode({ type: 'query', id: nextId++, questions: [{ name: 'web.weave.local', type: 'A', class: 'CH' }] }),
    ];
    const all = [...queries, ...passed];
    const fromWorker = await askInBursts(viaWorker.address.port, all);
    const fromMain = await askInBursts(viaMain.address.port, all);
    for (let i = 0; i < all.length; i++) {
      const a = fromWorker[i];
      const b = fromMain[i];
      assert.ok(a && b, `query ${i} answered by both (${a ? 'worker' : ''} ${b ? 'main' : ''}): ${dnsPacket.decode(all[i]!).questions![0]!.name}`);
      if ((a[2] as number) & 0x02) {
        // TC: the same header and count, a random choice of the records.
        assert.equal(a.subarray(0, 12).toString('hex'), b.subarray(0, 12).toString('hex'), `query ${i} header`);
        assert.equal(a.length, b.length, `query ${i} length`);
      } else {
        assert.equal(canonical(a), canonical(b), `query ${i}`);
      }
    }
    const s = listener.stats();
    assert.equal(s.answered, queries.length, 'the worker answered the simple queries');
    assert.equal(s.passed, passed.length, 'and passed the others on');
    assert.deepEqual(
      [...fromWorker.slice(queries.length)].map((b) => rcode(b!)),
      [0, 2, 2, 1, 4, 0],
      'PTR, SERVFAIL (no upstream), FORMERR, NOTIMP; another class through the general path',
    );
    assert.deepEqual(addrs(fromWorker[queries.length]!), []);
    assert.equal(dnsPacket.decode(fromWorker[queries.length]!).answers![0]!.type, 'PTR');
  } finally {
    await viaWorker.stop();
    await viaMain.stop();
  }
});

test('every change of the names reaches the worker before the next query', async () => {
  const ns = newNameserver();
  const listener = new WorkerUdpListener({ names: ns, logger: silentLogger });
  const server = await startServer(ns, listener);
  const port = server.address.port;
  const a = async (name: string) => {
    const r = await ask(port, query(name));
    return rcode(r) === 3 ? 'NXDOMAIN' : addrs(r).sort().join(',');
  };
  try {
    assert.equal(await a('web.weave.local'), 'NXDOMAIN');
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    assert.equal(await a('web.weave.local'), '10.32.0.1', 'added');
    ns.addEntryFqdn('WEB.weave.local.', 'c2', 0x0a200002);
    assert.equal(await a('Web'), '10.32.0.1,10.32.0.2', 'another spelling of the name');
    ns.delete('*', 'c1', '*');
    assert.equal(await a('web.weave.local'), '10.32.0.2', 'tombstoned');
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    assert.equal(await a('web.weave.local'), '10.32.0.1,10.32.0.2', 'revived');
    ns.containerDied('c2');
    assert.equal(await a('web.weave.local'), '10.32.0.1', 'container died');
    // Gossip from another peer, then that peer leaves.
    const other = newNameserver(PEER);
    other.addEntryFqdn('db.weave.local.', 'p1', 0x0a280001);
    other.addEntryFqdn('web.weave.local.', 'p2', 0x0a280002);
    ns.onGossipBroadcast(PEER, Buffer.concat(other.gossip().encode()));
    assert.equal(await a('db.weave.local'), '10.40.0.1', 'learnt by gossip');
    assert.equal(await a('web'), '10.32.0.1,10.40.0.2');
    ns.peerGone(PEER);
    assert.equal(await a('db.weave.local'), 'NXDOMAIN', 'peer gone');
    assert.equal(await a('web'), '10.32.0.1');
    // Many names at once (one message for the whole change).
    const many = newNameserver(PEER);
    for (let i = 0; i < 500; i++) many.addEntryFqdn(`h${i}.weave.local.`, 'm', 0x0a300000 + i);
    ns.onGossipBroadcast(PEER, Buffer.concat(many.gossip().encode()));
    assert.equal(await a('h499.weave.local'), '10.48.1.243');
    assert.equal(listener.stats().passed, 0, 'all answered on the worker');
    assert.equal(listener.stats().answered, 11);
  } finally {
    await server.stop();
  }
});

test('changes made while the worker thread starts reach it too', async () => {
  const ns = newNameserver();
  ns.addEntryFqdn('before.weave.local.', 'c0', 0x0a200000);
  const listener = new WorkerUdpListener({ names: ns, logger: silentLogger });
  const server = new DnsServer({ names: ns, upstream: staticUpstream([]), clock: systemClock, logger: silentLogger, udpListener: listener }, { listenAddress: '127.0.0.1:0' });
  const starting = server.start();
  // The thread exists but has not run yet.
  ns.addEntryFqdn('during.weave.local.', 'c1', 0x0a200001);
  ns.delete('*', 'c0', '*');
  await starting;
  try {
    const port = server.address.port;
    assert.deepEqual(addrs(await ask(port, query('during.weave.local'))), ['10.32.0.1']);
    assert.equal(rcode(await ask(port, query('before.weave.local'))), 3);
    assert.equal(listener.stats().answered, 2);
  } finally {
    await server.stop();
  }
});

test('many queries in flight: all answered, each under its own id', async () => {
  const ns = newNameserver();
  for (let i = 0; i < 200; i++) ns.addEntryFqdn(`h${i}.weave.local.`, 'c', 0x0a000000 + i);
  const listener = new WorkerUdpListener({ names: ns, logger: silentLogger }, { batch: 8 });
  const server = await startServer(ns, listener);
  try {
    const queries = Array.from({ length: 2000 }, (_, i) => {
      const q = query(`h${i % 200}.weave.local`);
      q.writeUInt16BE(i, 0);
      return q;
    });
    const replies = await askInBursts(server.address.port, queries);
    replies.forEach((r, i) => {
      assert.ok(r, `reply ${i}`);
      assert.deepEqual(addrs(r), [`10.0.0.${i % 200}`]);
    });
    assert.equal(listener.stats().answered, 2000);
  } finally {
    await server.stop();
  }
});

test('queries for the main thread wait there at most maxQueued at once; past that the worker drops them', async () => {
  const ns = newNameserver();
  const listener = new WorkerUdpListener({ names: ns, logger: silentLogger }, { maxQueued: 8 });
  const server = await startServer(ns, listener);
  try {
    // Another thread sends 200 queries the worker does not answer while this one is blocked,
    // so nothing is taken from the queue meanwhile.
    const done = new Int32Array(new SharedArrayBuffer(4));
    const sender = new Worker(
      `const { workerData } = require('node:worker_threads');
       const s = require('node:dgram').createSocket('udp4');
       let left = workerData.queries.length;
       for (const q of workerData.queries) s.send(Buffer.from(q), workerData.port, '127.0.0.1', () => {
         if (--left === 0) { s.close(); Atomics.store(workerData.done, 0, 1); Atomics.notify(workerData.done, 0); }
       });`,
      { eval: true, workerData: { port: server.address.port, done, queries: Array.from({ length: 200 }, (_, i) => query(`host${i}.example.com`)) } },
    );
    Atomics.wait(done, 0, 0, 10_000);
    // Still blocked, until the worker has read them all.
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let t = 0; t < 100 && listener.stats().passed + listener.stats().dropped < 200; t++) Atomics.wait(pause, 0, 0, 50);
    const s = listener.stats();
    assert.equal(s.passed, 8);
    assert.equal(s.dropped, 192);
    await sender.terminate();
  } finally {
    await server.stop();
  }
});

test('a worker that dies hands the socket to the main thread, which answers from then on', async () => {
  const ns = newNameserver();
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
  const log = new MemoryLogger();
  const listener = new WorkerUdpListener({ names: ns, logger: log });
  const server = await startServer(ns, listener);
  const port = server.address.port;
  try {
    assert.deepEqual(addrs(await ask(port, query('web.weave.local'))), ['10.32.0.1']);
    listener.injectWorkerFault();
    // The query that wakes the dying worker is handed over, not lost (asked once).
    const [r] = await askAll(port, [query('web.weave.local')], '127.0.0.1', 3000);
    assert.ok(r, 'answered');
    assert.deepEqual(addrs(r), ['10.32.0.1']);
    for (let i = 0; i < 100 && listener.stats().thread !== 'main'; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(listener.stats().thread, 'main');
    assert.ok(log.records.some((r) => r.level === 'error' && /answering DNS over UDP on the main thread/.test(r.msg)));
    const answered = listener.stats().answered;
    ns.addEntryFqdn('db.weave.local.', 'c2', 0x0a280001);
    assert.deepEqual(addrs(await ask(port, query('db.weave.local'))), ['10.40.0.1']);
    assert.equal(rcode(await ask(port, query('nope.weave.local'))), 3);
    assert.equal(rcode(await ask(port, query('1.0.32.10.in-addr.arpa', 'PTR'))), 0);
    assert.equal(listener.stats().answered, answered, 'nothing on the worker any more');
  } finally {
    await server.stop();
  }
  // The port is free again: node:dgram closed the socket it took over.
  const again = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject);
    again.bind(port, '127.0.0.1', () => resolve());
  });
  again.close();
});

test('stop is prompt and frees the port; started again on the same port it answers', async () => {
  const ns = newNameserver();
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
  const listener = new WorkerUdpListener({ names: ns, logger: silentLogger });
  const first = await startServer(ns, listener);
  const port = first.address.port;
  await ask(port, query('web.weave.local'));
  const t0 = Date.now();
  await first.stop();
  assert.ok(Date.now() - t0 < 500, `stopped in ${Date.now() - t0} ms`);
  assert.equal(listener.stats().thread, 'none');
  const second = await startServer(ns, listener, `127.0.0.1:${port}`);
  try {
    assert.equal(second.address.port, port);
    assert.deepEqual(addrs(await ask(port, query('web.weave.local'))), ['10.32.0.1']);
    assert.equal(listener.stats().thread, 'worker');
  } finally {
    await second.stop();
  }
});

test('an IPv6 listen address is served by node:dgram on the main thread', async (t) => {
  const probe = createSocket('udp6');
  const ok = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.bind(0, '::1', () => resolve(true));
  });
  probe.close();
  if (!ok) {
    t.skip('no IPv6 loopback');
    return;
  }
  const ns = newNameserver();
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
  const listener = new WorkerUdpListener({ names: ns, logger: silentLogger });
  const server = await startServer(ns, listener, '[::1]:0');
  try {
    const [r] = await askAll(server.address.port, [query('web.weave.local')], '::1');
    assert.ok(r);
    assert.deepEqual(addrs(r), ['10.32.0.1']);
    assert.equal(listener.stats().thread, 'none');
  } finally {
    await server.stop();
  }
});
