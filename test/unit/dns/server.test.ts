// The DNS server on 127.0.0.1 with ephemeral ports, over real UDP and TCP sockets: A and PTR
// answers, case-insensitivity, unqualified names, negative answers, 50 records over UDP (cut,
// TC), TCP (complete) and a small EDNS buffer, forwarding to a fake resolver this test starts
// on 127.0.0.1 (never a real upstream), failover and SERVFAIL, resolv.conf changes, malformed
// queries. DNS is only ever sent to loopback.
// Every test over sockets runs twice: with the server's default UDP listener (node:dgram on
// the main thread) and with the daemon's (a worker thread answering names in the domain, the
// rest passed to the main thread): the same assertions hold for both.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket as PacketFlags, Packet } from 'dns-packet';

/** A decoded message as dns-packet returns it (its types lack the rcode). */
type DecodedPacket = PacketFlags & { rcode: string };
import { FakeClock, systemClock, type Clock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { Nameserver } from '../../../src/dns/nameserver.js';
import { answerLocalInto, parseSimpleQuery } from '../../../src/dns/fast-reply.js';
import { DnsServer, MAX_FORWARDING, MAX_TCP_CONNECTIONS, TCP_MAX_QUERIES, TCP_READ_TIMEOUT_MS, parseListenAddress } from '../../../src/dns/server.js';
import { WorkerUdpListener } from '../../../src/daemon/dns-worker-udp.js';
import { ResolvConfUpstream, parseResolvConf, staticUpstream } from '../../../src/dns/upstream.js';
import { seeded } from '../../helpers/prng.js';

const US = 0x7a0000000001;
const dir = mkdtempSync(join(tmpdir(), 'weave-dns-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let nextId = 1;
function query(name: string, type: dnsPacket.RecordType = 'A', opts: { udpSize?: number } = {}): Buffer {
  const p: Packet = { type: 'query', id: nextId++ & 0xffff, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type, class: 'IN' }] };
  if (opts.udpSize) p.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: opts.udpSize, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as Answer];
  return dnsPacket.encode(p);
}

function udpAsk(port: number, msg: Buffer, timeoutMs = 2000): Promise<{ bytes: Buffer; packet: DecodedPacket }> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      reject(new Error('udp query timed out'));
    }, timeoutMs);
    s.on('message', (bytes) => {
      clearTimeout(t);
      s.close();
      resolve({ bytes, packet: dnsPacket.decode(bytes) as DecodedPacket });
    });
    s.send(msg, port, '127.0.0.1');
  });
}

function tcpAsk(port: number, msg: Buffer): Promise<{ bytes: Buffer; packet: DecodedPacket }> {
  return new Promise((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    c.on('error', reject);
    c.on('connect', () => c.write(dnsPacket.streamEncode(dnsPacket.decode(msg))));
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const bytes = buf.subarray(2, 2 + buf.readUInt16BE(0));
        c.destroy();
        resolve({ bytes, packet: dnsPacket.decode(bytes) as DecodedPacket });
      }
    });
  });
}

const addrs = (p: DecodedPacket) => (p.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data);

/** A fake upstream resolver on 127.0.0.1 (UDP and TCP on one port): A records from a table. */
class FakeResolver {
  udp!: Socket;
  tcp!: Server;
  port = 0;
  queries = 0;
  constructor(private readonly table: Record<string, string[]>) {}

  private reply(msg: Buffer): Buffer {
    this.queries++;
    const q = dnsPacket.decode(msg) as DecodedPacket;
    const question = q.questions![0]!;
    const found = this.table[question.name.toLowerCase()];
    return dnsPacket.encode({
      type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (found ? 0 : 3), questions: q.questions,
      answers: (found ?? []).map((data) => ({ name: question.name, type: 'A', class: 'IN', ttl: 300, data })),
    });
  }

  async start(): Promise<void> {
    this.udp = createSocket('udp4');
    await new Promise<void>((r) => this.udp.bind(0, '127.0.0.1', r));
    this.port = this.udp.address().port;
    this.udp.on('message', (m, rinfo) => this.udp.send(this.reply(m), rinfo.port, rinfo.address));
    this.tcp = createServer((c) => {
      let buf = Buffer.alloc(0);
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + m.length);
          const r = this.reply(m);
          const len = Buffer.alloc(2);
          len.writeUInt16BE(r.length);
          c.write(Buffer.concat([len, r]));
        }
      });
      c.on('error', () => undefined);
    });
    await new Promise<void>((r) => this.tcp.listen(this.port, '127.0.0.1', r));
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.udp.close(() => r()));
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}

/** Who reads the server's UDP socket. */
const VIA = ['node:dgram', 'worker thread'] as const;
type Via = (typeof VIA)[number];

/** One test per UDP listener. */
function socketTest(name: string, fn: (via: Via) => Promise<void>): void {
  for (const via of VIA) test(`${name} [UDP: ${via}]`, () => fn(via));
}

async function withServer(
  via: Via,
  opts: { resolvConf?: string; upstreamPort?: number; servers?: string[]; domain?: string; timeoutMs?: number; filter?: string; clock?: Clock; maxTcpQueries?: number },
  fn: (s: { port: number; ns: Nameserver; server: DnsServer }) => Promise<void>,
): Promise<void> {
  const ns = new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName: US, ...(opts.domain ? { domain: opts.domain } : {}) });
  const upstream = opts.resolvConf
    ? new ResolvConfUpstream({ clock: systemClock, logger: silentLogger }, { path: opts.resolvConf, checkIntervalMs: 0, ...(opts.filter ? { filterAddress: opts.filter } : {}) })
    : staticUpstream(opts.servers ?? []);
  const server = new DnsServer(
    { names: ns, upstream, clock: opts.clock ?? systemClock, logger: silentLogger, random: seeded(5), udpListener: via === 'worker thread' ? new WorkerUdpListener({ names: ns, logger: silentLogger }) : undefined },
    { listenAddress: '127.0.0.1:0', fallbackTimeoutMs: opts.timeoutMs ?? 1000, upstreamPort: opts.upstreamPort ?? 53, ...(opts.domain ? { domain: opts.domain } : {}), ...(opts.maxTcpQueries ? { maxTcpQueries: opts.maxTcpQueries } : {}) },
  );
  await server.start();
  try {
    await fn({ port: server.address.port, ns, server });
  } finally {
    await server.stop();
  }
}

test('parseListenAddress and parseResolvConf', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:5353'), { host: '127.0.0.1', port: 5353 });
  assert.deepEqual(parseListenAddress(':53'), { host: '0.0.0.0', port: 53 });
  assert.deepEqual(parseListenAddress('[::1]:53'), { host: '::1', port: 53 });
  for (const bad of ['127.0.0.1', 'host:53', '1.2.3.4:70000', '']) assert.throws(() => parseListenAddress(bad), /invalid DNS listen address/);
  assert.deepEqual(parseResolvConf('# c\nnameserver 10.0.0.1\nsearch x\nnameserver   ::1 \nnameserver dns.example\nnameserver\n'), ['10.0.0.1', '::1']);
});

socketTest('A and PTR answers, case-insensitive, unqualified names, TTL, AA and RA', async (via) => {
  await withServer(via, {}, async ({ port, ns }) => {
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    ns.addEntryFqdn('Db.Weave.Local.', 'c2', 0x0a280000);
    for (const [name, want] of [['web.weave.local', ['10.32.0.1']], ['WEB.Weave.LOCAL', ['10.32.0.1']], ['db.weave.local', ['10.40.0.0']], ['web', ['10.32.0.1']], ['DB', ['10.40.0.0']]] as const) {
      const { packet } = await udpAsk(port, query(name));
      assert.equal(packet.rcode, 'NOERROR', name);
      assert.deepEqual(addrs(packet), want, name);
      assert.equal(packet.answers![0]!.name, name, 'the owner name is the question as asked');
      assert.equal((packet.answers![0] as { ttl: number }).ttl, 1);
      assert.ok(packet.flag_aa && packet.flag_ra && packet.flag_rd && packet.flag_qr);
    }
    const ptr = await udpAsk(port, query('1.0.32.10.in-addr.arpa', 'PTR'));
    assert.equal(ptr.packet.rcode, 'NOERROR');
    assert.deepEqual(ptr.packet.answers!.map((a) => [a.type, (a as { data: string }).data]), [['PTR', 'web.weave.local']]);
    const ptrCase = await udpAsk(port, query('0.0.40.10.IN-ADDR.ARPA', 'PTR'));
    assert.deepEqual(ptrCase.packet.answers!.map((a) => (a as { data: string }).data), ['Db.Weave.Local']);
    // The same over TCP.
    const tcp = await tcpAsk(port, query('web.weave.local'));
    assert.deepEqual(addrs(tcp.packet), ['10.32.0.1']);
  });
});

socketTest('several addresses for one name, shuffled; a custom domain without the trailing dot', async (via) => {
  await withServer(via, { domain: 'corp.example' }, async ({ port, ns }) => {
    for (let i = 1; i <= 5; i++) ns.addEntryFqdn('svc.corp.example', `c${i}`, 0x0a000000 + i);
    const orders = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { packet } = await udpAsk(port, query('svc.corp.example'));
      assert.deepEqual([...addrs(packet)].sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
      orders.add(addrs(packet).join(','));
    }
    assert.ok(orders.size > 1, 'answers are shuffled');
    const sub = await udpAsk(port, query('svc'));
    assert.equal(addrs(sub.packet).length, 5, 'unqualified names take the custom domain');
  });
});

socketTest('negative answers: NXDOMAIN for unknown names, NOERROR-empty for other types of a known name', async (via) => {
  await withServer(via, {}, async ({ port, ns }) => {
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    const nx = await udpAsk(port, query('nope.weave.local'));
    assert.equal(nx.packet.rcode, 'NXDOMAIN');
    assert.ok(!nx.packet.flag_aa && nx.packet.flag_ra);
    assert.equal(nx.packet.questions![0]!.name, 'nope.weave.local');
    for (const type of ['AAAA', 'MX', 'TXT'] as const) {
      const { packet } = await udpAsk(port, query('web.weave.local', type));
      assert.equal(packet.rcode, 'NOERROR', type);
      assert.equal(packet.answers!.length, 0, type);
      assert.ok(packet.flag_aa);
    }
    assert.equal((await udpAsk(port, query('nope', 'A'))).packet.rcode, 'NXDOMAIN', 'unqualified and unknown');
    assert.equal((await udpAsk(port, query('9.9.9.9.in-addr.arpa', 'A'))).packet.rcode, 'NXDOMAIN', 'reverse zone, not PTR');
    assert.equal((await udpAsk(port, query('9.9.in-addr.arpa', 'PTR'))).packet.rcode, 'NXDOMAIN', 'not an address');
    // Deleting the last entry makes the name unknown.
    ns.delete('*', 'c1', '*');
    assert.equal((await udpAsk(port, query('web.weave.local'))).packet.rcode, 'NXDOMAIN');
  });
});

test('TCP: a client that sends queries and never reads the answers is not answered without end', async () => {
  // Without the cap on queries per connection, which would end it after 128.
  await withServer('node:dgram', { maxTcpQueries: Infinity }, async ({ port, ns, server }) => {
    const name = 'many.weave.local';
    for (let i = 1; i <= 50; i++) ns.addEntryFqdn(name, 'c0', 0x0a020100 + i);
    let answered = 0;
    const answer = server.answer.bind(server);
    server.answer = (msg, transport) => {
      answered++;
      return answer(msg, transport);
    };
    const q = query(name);
    const frame = Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
    const c = connect(port, '127.0.0.1');
    c.pause(); // never reads
    c.on('error', () => undefined);
    await new Promise((r) => c.once('connect', r));
    // 40 000 queries (1.4 MB) whose answers are about 70 times as big (100 MB before, all of it
    // queued in the server).
    for (let round = 0; round < 40; round++) {
      c.write(Buffer.concat(Array.from({ length: 1000 }, () => frame)));
      await new Promise((r) => setTimeout(r, 20));
    }
    // Until the server stops answering (all 40 000 without backpressure), however slow the machine.
    for (let last = -1, t0 = Date.now(); answered !== last && Date.now() - t0 < 10_000; ) {
      last = answered;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(answered < 20_000, `${answered} of 40000 queries answered into a socket nobody reads`);
    // Others are still served meanwhile.
    assert.equal(new Set(addrs((await tcpAsk(port, query(name))).packet)).size, 50);
    // Once the client reads, the rest is answered.
    let got = 0;
    let pending = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        got++;
        pending = pending.subarray(2 + pending.readUInt16BE(0));
      }
    });
    c.resume();
    const t0 = Date.now();
    while (got < 40_000 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 50));
    c.destroy();
    assert.equal(got, 40_000);
  });
});

test('at most 256 queries wait on the upstream at once; past that, SERVFAIL at once', async () => {
  // An upstream that never answers.
  const silent = createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  try {
    await withServer('node:dgram', { servers: ['127.0.0.1'], upstreamPort: silent.address().port, timeoutMs: 4000 }, async ({ port }) => {
      const client = createSocket('udp4');
      const replies: Buffer[] = [];
      client.on('message', (m) => replies.push(m));
      await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
      for (let i = 0; i < MAX_FORWARDING + 44; i++) {
        client.send(query(`host${i}.example.com`), port, '127.0.0.1');
        // In small bursts: a few hundred datagrams at once overflow the server socket's buffer.
        if (i % 16 === 15) await new Promise((r) => setTimeout(r, 5));
      }
      const t0 = Date.now();
      while (replies.length < 44 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      client.close();
      assert.equal(replies.length, 44, 'only those past the cap are answered before the upstream times out');
      for (const r of replies) assert.equal((dnsPacket.decode(r) as DecodedPacket).rcode, 'SERVFAIL');
    });
  } finally {
    silent.close();
  }
});

socketTest('50 A records: cut with TC over UDP (512 bytes, or the EDNS size), complete over TCP', async (via) => {
  await withServer(via, {}, async ({ port, ns }) => {
    const name = 'seetwo.weave.local';
    for (let i = 1; i <= 50; i++) ns.addEntryFqdn(name, 'c0', 0x0a020100 + i);
    const udp = await udpAsk(port, query(name));
    assert.ok(udp.packet.flag_tc, 'TC over UDP');
    assert.ok(udp.bytes.length <= 512);
    const n512 = addrs(udp.packet).length;
    assert.ok(n512 > 1 && n512 < 50, `${n512} answers fit 512 bytes`);
    // One more answer would not have fitted: the cut is as late as possible.
    assert.ok(udp.bytes.length + 34 > 512);

    const tcp = await tcpAsk(port, query(name));
    assert.ok(!tcp.packet.flag_tc);
    assert.equal(new Set(addrs(tcp.packet)).size, 50);

    const edns = await udpAsk(port, query(name, 'A', { udpSize: 700 }));
    assert.ok(edns.packet.flag_tc);
    assert.ok(edns.bytes.length <= 700 && edns.bytes.length + 34 > 700);
    const n700 = addrs(edns.packet).length;
    assert.ok(n700 > n512 && n700 < 50, `${n700} answers fit 700 bytes`);
    assert.ok(edns.packet.additionals!.some((a) => a.type === 'OPT'), 'EDNS is answered with EDNS');

    const big = await udpAsk(port, query(name, 'A', { udpSize: 4096 }));
    assert.ok(!big.packet.flag_tc);
    assert.equal(addrs(big.packet).length, 50);

    // An EDNS size below 512 counts as 512 (RFC 6891).
    const tiny = await udpAsk(port, query(name, 'A', { udpSize: 100 }));
    assert.ok(tiny.bytes.length <= 512 && addrs(tiny.packet).length >= n512 - 1);

    // TCP with EDNS too.
    const tcpEdns = await tcpAsk(port, query(name, 'A', { udpSize: 700 }));
    assert.equal(addrs(tcpEdns.packet).length, 50);
  });
});

socketTest('names outside the domain go to the upstream servers in order; SERVFAIL when all fail', async (via) => {
  const fake = new FakeResolver({ 'example.com': ['192.0.2.10', '192.0.2.11'] });
  await fake.start();
  try {
    // 127.0.0.3 has nothing on the fake's port: refused, then the next server answers.
    await withServer(via, { servers: ['127.0.0.3', '127.0.0.1'], upstreamPort: fake.port }, async ({ port }) => {
      const { packet } = await udpAsk(port, query('Example.COM'));
      assert.equal(packet.rcode, 'NOERROR');
      assert.deepEqual(addrs(packet), ['192.0.2.10', '192.0.2.11']);
      assert.equal(packet.questions![0]!.name, 'Example.COM');
      const tcp = await tcpAsk(port, query('example.com'));
      assert.deepEqual(addrs(tcp.packet), ['192.0.2.10', '192.0.2.11']);
      const nx = await udpAsk(port, query('missing.example.com'));
      assert.equal(nx.packet.rcode, 'NXDOMAIN', 'upstream answers are relayed as they are');
      // A reverse lookup that is not ours goes upstream too.
      const before = fake.queries;
      await udpAsk(port, query('1.2.0.192.in-addr.arpa', 'PTR'));
      assert.equal(fake.queries, before + 1);
    });
    await withServer(via, { servers: ['127.0.0.3', '127.0.0.4'], upstreamPort: fake.port, timeoutMs: 300 }, async ({ port }) => {
      const t0 = Date.now();
      assert.equal((await udpAsk(port, query('example.com'))).packet.rcode, 'SERVFAIL');
      assert.equal((await tcpAsk(port, query('example.com'))).packet.rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 < 2000);
    });
    await withServer(via, { servers: [] }, async ({ port }) => {
      assert.equal((await udpAsk(port, query('example.com'))).packet.rcode, 'SERVFAIL', 'no upstream at all');
    });
  } finally {
    await fake.stop();
  }
});

socketTest('a silent upstream is given the fallback timeout, then the next one is asked', async (via) => {
  const fake = new FakeResolver({ 'example.com': ['192.0.2.10'] });
  await fake.start();
  // A UDP socket that reads queries and never answers, on 127.0.0.2 at the fake's port.
  const silent = createSocket('udp4');
  await new Promise<void>((r) => silent.bind(fake.port, '127.0.0.2', r));
  let heard = 0;
  silent.on('message', () => heard++);
  try {
    await withServer(via, { servers: ['127.0.0.2', '127.0.0.1'], upstreamPort: fake.port, timeoutMs: 200 }, async ({ port }) => {
      const t0 = Date.now();
      const { packet } = await udpAsk(port, query('example.com'));
      assert.deepEqual(addrs(packet), ['192.0.2.10']);
      assert.equal(heard, 1);
      assert.ok(Date.now() - t0 >= 180, 'waited for the silent one');
    });
  } finally {
    silent.close();
    await fake.stop();
  }
});

socketTest('resolv.conf: re-read when it changes; our own address is never an upstream', async (via) => {
  const fake = new FakeResolver({ 'example.com': ['192.0.2.10'] });
  await fake.start();
  const conf = join(dir, 'resolv.conf');
  try {
    writeFileSync(conf, 'nameserver 127.0.0.3\n');
    await withServer(via, { resolvConf: conf, upstreamPort: fake.port, timeoutMs: 300 }, async ({ port, server }) => {
      assert.equal((await udpAsk(port, query('example.com'))).packet.rcode, 'SERVFAIL');
      assert.deepEqual(server.upstreamServers(), ['127.0.0.3']);
      // The status call above starts a re-read; a query waits for it, so it is over before the file changes.
      await udpAsk(port, query('example.com'));
      writeFileSync(conf, '# changed\nnameserver 127.0.0.1\n');
      assert.deepEqual(addrs((await udpAsk(port, query('example.com'))).packet), ['192.0.2.10']);
      assert.deepEqual(server.upstreamServers(), ['127.0.0.1']);
      await udpAsk(port, query('example.com'));
      rmSync(conf);
      assert.equal((await udpAsk(port, query('example.com'))).packet.rcode, 'SERVFAIL', 'a removed file means no upstream');
    });
    writeFileSync(conf, 'nameserver 127.0.0.1\nnameserver 127.0.0.5\n');
    await withServer(via, { resolvConf: conf, upstreamPort: fake.port, filter: '127.0.0.1', timeoutMs: 300 }, async ({ port, server }) => {
      assert.equal((await udpAsk(port, query('example.com'))).packet.rcode, 'SERVFAIL');
      assert.deepEqual(server.upstreamServers(), ['127.0.0.5']);
      assert.equal(fake.queries, 2, 'only the first server block asked the fake (twice)');
    });
  } finally {
    await fake.stop();
  }
});

socketTest('malformed queries: FORMERR when the header reads, silence otherwise; NOTIMP for other opcodes', async (via) => {
  await withServer(via, {}, async ({ port, server }) => {
    const garbage = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]), Buffer.from([0x3f, 0x61])]);
    const r = await udpAsk(port, garbage);
    assert.equal(r.packet.id, 0x1234);
    assert.equal(r.packet.rcode, 'FORMERR');
    assert.equal(server.answer(Buffer.from([1, 2, 3]), 'udp'), undefined);
    const response = query('web.weave.local');
    response[2] = (response[2] as number) | 0x80;
    assert.equal(server.answer(response, 'udp'), undefined, 'responses are not answered');
    const notify = query('web.weave.local');
    notify[2] = ((notify[2] as number) & 0x87) | (4 << 3);
    assert.equal((dnsPacket.decode(server.answer(notify, 'udp') as Buffer) as DecodedPacket).rcode, 'NOTIMP');
    const two = dnsPacket.encode({ type: 'query', id: 7, questions: [{ name: 'a.weave.local', type: 'A' }, { name: 'b.weave.local', type: 'A' }] });
    assert.equal((dnsPacket.decode(server.answer(two, 'udp') as Buffer) as DecodedPacket).rcode, 'FORMERR');
    // The server still answers afterwards.
    assert.equal((await udpAsk(port, query('x.weave.local'))).packet.rcode, 'NXDOMAIN');
  });
});

test('the fast path writes exactly the bytes of the general (dns-packet) path', () => {
  const ns = new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName: US });
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
  for (let i = 1; i <= 60; i++) ns.addEntryFqdn('many.weave.local.', `c${i}`, 0x0a010000 + i);
  ns.addEntryFqdn('Mixed.Case.weave.local.', 'c1', 0x0a200002);
  const make = (fastPath: boolean) =>
    new DnsServer({ names: ns, upstream: staticUpstream([]), clock: systemClock, logger: silentLogger, random: seeded(3) }, { listenAddress: '127.0.0.1:0', fastPath });
  const fast = make(true);
  const slow = make(false);
  const rand = seeded(12);
  const names = ['web.weave.local', 'WEB.weave.local', 'web', 'Web', 'many.weave.local', 'many', 'mixed.case.weave.local', 'nope.weave.local', 'nope', 'weave.local', 'a b.weave.local', 'x-y_z.weave.local'];
  const types: dnsPacket.RecordType[] = ['A', 'AAAA', 'MX', 'TXT', 'ANY' as dnsPacket.RecordType, 'UNKNOWN_999' as dnsPacket.RecordType];
  let taken = 0;
  for (let i = 0; i < 3000; i++) {
    const name = names[Math.floor(rand() * names.length)]!;
    const type = types[Math.floor(rand() * types.length)]!;
    const p: Packet = { type: 'query', id: Math.floor(rand() * 65536), flags: Math.floor(rand() * 4) * 0x100 * (rand() < 0.5 ? 1 : 0) | (rand() < 0.3 ? 0x10 : 0), questions: [{ name, type, class: 'IN' }] };
    if (rand() < 0.5) {
      const options = rand() < 0.5 ? [{ code: 10, data: Buffer.from('0123456789abcdef', 'hex') }] : [];
      p.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: [100, 512, 700, 1232, 4096][Math.floor(rand() * 5)], extendedRcode: 0, ednsVersion: 0, flags: rand() < 0.5 ? 0x8000 : 0, options } as unknown as Answer];
    }
    const msg = dnsPacket.encode(p);
    const transport = rand() < 0.5 ? 'udp' : 'tcp';
    const a = fast.answer(msg, transport);
    const b = slow.answer(msg, transport);
    assert.ok(Buffer.isBuffer(a) && Buffer.isBuffer(b), `query ${i} (${name} ${type}) answered locally`);
    assert.equal(a.toString('hex'), b.toString('hex'), `query ${i}: ${name} ${type} ${transport}`);
    if (parseSimpleQuery(msg)) taken++;
  }
  assert.ok(taken > 2500, `the fast path took ${taken} of 3000`);
});

test('fuzz: random and damaged queries never throw', async () => {
  const ns = new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName: US });
  ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
  const server = new DnsServer({ names: ns, upstream: staticUpstream([]), clock: systemClock, logger: silentLogger }, { listenAddress: '127.0.0.1:0' });
  const rand = seeded(9);
  const seeds = [query('web.weave.local'), query('web'), query('1.0.32.10.in-addr.arpa', 'PTR'), query('web.weave.local', 'A', { udpSize: 1232 })];
  const later: Promise<unknown>[] = [];
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.from(seeds[i % seeds.length]!);
    for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    const cut = rand() < 0.3 ? b.subarray(0, Math.floor(rand() * b.length)) : b;
    const r = server.answer(cut, rand() < 0.5 ? 'udp' : 'tcp');
    if (r instanceof Promise) later.push(r.then((x) => assert.ok(x && x.length >= 12))); // upstream: none, so SERVFAIL
    else if (r) assert.ok(r.length >= 12);
  }
  await Promise.all(later);
});

/** A query framed for TCP (two length bytes). */
const frame = (m: Buffer) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);

/** The server's side of its TCP connections. */
const serverConns = (s: DnsServer) => (s as unknown as { tcpConns: Set<TcpSocket> }).tcpConns;

async function waitFor(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  for (const t0 = Date.now(); !cond(); await new Promise((r) => setTimeout(r, 5))) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
  }
}

/** A TCP client of `port` that counts the answers it reads and notes the server's FIN. */
async function tcpClient(port: number, server: DnsServer): Promise<{ c: TcpSocket; peer: TcpSocket; answers: Buffer[]; ended: () => boolean; closed: () => boolean }> {
  const c = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  c.on('error', () => undefined);
  const answers: Buffer[] = [];
  let buf = Buffer.alloc(0);
  let ended = false;
  let closed = false;
  c.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      answers.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
  });
  c.on('end', () => (ended = true));
  c.on('close', () => (closed = true));
  await new Promise((r) => c.once('connect', r));
  let peer: TcpSocket | undefined;
  await waitFor(() => (peer = [...serverConns(server)].find((s) => s.remotePort === c.localPort)) !== undefined || ended || closed, 'the server to take the connection');
  return { c, peer: peer!, answers, ended: () => ended, closed: () => closed };
}

test('a query of 8188 questions behind a chain of 8180 compression pointers gets FORMERR at once', () => {
  const ns = new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName: US });
  for (const fastPath of [true, false]) {
    const server = new DnsServer({ names: ns, upstream: staticUpstream([]), clock: systemClock, logger: silentLogger }, { listenAddress: '127.0.0.1:0', fastPath });
    // The root at offset 12, each pointer to the one before, every question to the last (64 KB).
    const hops = 8180;
    const questions = 8188;
    const msg = Buffer.alloc(13 + 2 * hops + 6 * questions);
    msg.writeUInt16BE(0x1234, 0);
    msg.writeUInt16BE(0x0100, 2);
    msg.writeUInt16BE(questions, 4);
    let at = 13;
    for (let i = 0, prev = 12; i < hops; prev = at, at += 2, i++) msg.writeUInt16BE(0xc000 | prev, at);
    for (let i = 0, last = at - 2; i < questions; i++, at += 6) {
      msg.writeUInt16BE(0xc000 | last, at);
      msg.writeUInt16BE(1, at + 2); // A
      msg.writeUInt16BE(1, at + 4); // IN
    }
    const formerr = (m: Buffer, what: string) => {
      const t0 = performance.now();
      const r = server.answer(m, 'tcp');
      const ms = performance.now() - t0;
      assert.ok(Buffer.isBuffer(r), what);
      assert.equal(r.toString('hex'), `${m.subarray(0, 2).toString('hex')}8101${'0'.repeat(16)}`, `${what}: FORMERR, header only`);
      assert.ok(ms < 50, `${what}: answered in ${ms.toFixed(1)} ms`);
    };
    formerr(msg, 'the crafted message');
    // A name that points to itself: refused, not followed for ever.
    const loop = Buffer.from('123401000001000000000000c00c00010001', 'hex');
    formerr(loop, 'a pointer loop');
    // Records a query does not carry: answers, authority, a second additional.
    const record = [{ name: 'web.weave.local', type: 'A', class: 'IN', ttl: 1, data: '10.32.0.9' }] as Answer[];
    const question = [{ name: 'web.weave.local', type: 'A', class: 'IN' }] as dnsPacket.Question[];
    formerr(dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: question, answers: record }), 'an answer record');
    formerr(dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: question, authorities: record }), 'an authority record');
    const two = dnsPacket.decode(query('web.weave.local', 'A', { udpSize: 1232 }));
    two.additionals!.push(two.additionals![0]!);
    formerr(dnsPacket.encode(two), 'two OPT records');
    // EDNS (one OPT record) is a query as any other.
    const edns = server.answer(query('web.weave.local', 'A', { udpSize: 1232 }), 'udp') as Buffer;
    assert.equal((dnsPacket.decode(edns) as DecodedPacket).rcode, 'NXDOMAIN');
  }
});

test('TCP: a message must arrive whole within 2 s of its start, however slowly it trickles; 8 s idle between messages', async () => {
  const clock = new FakeClock();
  await withServer('node:dgram', { clock }, async ({ port, ns, server }) => {
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    const q = frame(query('web.weave.local'));
    // The first message: its deadline runs from the connection (as miekg), bytes do not extend it.
    const a = await tcpClient(port, server);
    a.c.write(q.subarray(0, 1));
    await waitFor(() => a.peer.bytesRead === 1, 'the first byte');
    clock.advance(TCP_READ_TIMEOUT_MS - 500);
    a.c.write(q.subarray(1, 2));
    await waitFor(() => a.peer.bytesRead === 2, 'the second byte');
    clock.advance(499);
    assert.ok(!a.peer.destroyed);
    clock.advance(1);
    assert.ok(a.peer.destroyed, 'bytes trickling in do not extend the deadline');
    // After an answer: 8 s idle; a message started then has 2 s.
    const b = await tcpClient(port, server);
    b.c.write(q);
    await waitFor(() => b.answers.length === 1, 'the answer');
    clock.advance(7999);
    assert.ok(!b.peer.destroyed, 'idle between messages for less than 8 s');
    b.c.write(q.subarray(0, 3));
    await waitFor(() => b.peer.bytesRead === q.length + 3, 'the next message to start');
    clock.advance(TCP_READ_TIMEOUT_MS - 1);
    b.c.write(q.subarray(3, 4));
    await waitFor(() => b.peer.bytesRead === q.length + 4, 'another byte');
    assert.ok(!b.peer.destroyed);
    clock.advance(1);
    assert.ok(b.peer.destroyed, 'the second message did not arrive within 2 s of its start');
    const c = await tcpClient(port, server);
    c.c.write(q);
    await waitFor(() => c.answers.length === 1, 'the answer');
    clock.advance(8000);
    assert.ok(c.peer.destroyed, 'idle for 8 s');
  });
});

test(`TCP: at most ${MAX_TCP_CONNECTIONS} connections at once; past that, new ones are closed`, async () => {
  // A clock that stands still: no connection reaches its read deadline meanwhile.
  await withServer('node:dgram', { clock: new FakeClock() }, async ({ port, ns, server }) => {
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    const clients = await Promise.all(Array.from({ length: MAX_TCP_CONNECTIONS }, () => tcpClient(port, server)));
    assert.equal(serverConns(server).size, MAX_TCP_CONNECTIONS);
    const extra = await tcpClient(port, server);
    await waitFor(() => extra.ended() || extra.closed(), 'the server to close the connection past the cap');
    assert.equal(serverConns(server).size, MAX_TCP_CONNECTIONS);
    assert.ok(clients.every((x) => !x.ended() && !x.closed()));
    // Once one goes, another is served.
    clients[0]!.c.destroy();
    await waitFor(() => serverConns(server).size === MAX_TCP_CONNECTIONS - 1, 'the server to see it go');
    const next = await tcpClient(port, server);
    next.c.write(frame(query('web.weave.local')));
    await waitFor(() => next.answers.length === 1, 'an answer');
    for (const x of [...clients, next]) x.c.destroy();
  });
});

test(`TCP: ${TCP_MAX_QUERIES} queries per connection (as miekg), then the server closes it`, async () => {
  await withServer('node:dgram', {}, async ({ port, ns, server }) => {
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    const a = await tcpClient(port, server);
    a.c.write(Buffer.concat(Array.from({ length: TCP_MAX_QUERIES + 5 }, () => frame(query('web.weave.local')))));
    await waitFor(() => a.ended(), 'the server to end the connection');
    assert.equal(a.answers.length, TCP_MAX_QUERIES);
    a.c.destroy();
  });
});

test('TCP: a client that half-closes after its queries gets every answer, forwarded ones included, then FIN', async () => {
  const fake = new FakeResolver({ 'example.com': ['192.0.2.10'] });
  await fake.start();
  try {
    await withServer('node:dgram', { servers: ['127.0.0.1'], upstreamPort: fake.port }, async ({ port, ns, server }) => {
      ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
      for (const names of [['example.com'], ['web.weave.local'], ['example.com', 'web.weave.local', 'example.com']]) {
        const a = await tcpClient(port, server);
        a.c.end(Buffer.concat(names.map((n) => frame(query(n)))));
        await waitFor(() => a.ended(), `the server's FIN (${names})`);
        assert.deepEqual(a.answers.map((m) => addrs(dnsPacket.decode(m) as DecodedPacket)).sort(), names.map((n) => (n === 'web.weave.local' ? ['10.32.0.1'] : ['192.0.2.10'])).sort(), `${names}`);
        await waitFor(() => a.closed(), 'the connection to close');
      }
      // A partial message before the FIN is dropped, and the connection ends.
      const b = await tcpClient(port, server);
      b.c.end(frame(query('example.com')).subarray(0, 7));
      await waitFor(() => b.closed(), 'the connection to close');
      assert.equal(b.answers.length, 0);
      await waitFor(() => serverConns(server).size === 0, 'the server to drop its connections');
    });
  } finally {
    await fake.stop();
  }
});

test('the root is not a single-label name: ". NS" goes upstream; "web" is still ours', async () => {
  const fake = new FakeResolver({});
  await fake.start();
  try {
    const ns = new Nameserver({ clock: systemClock, logger: silentLogger, isKnownPeer: () => true }, { ourName: US });
    ns.addEntryFqdn('web.weave.local.', 'c1', 0x0a200001);
    for (const fastPath of [true, false]) {
      const server = new DnsServer({ names: ns, upstream: staticUpstream(['127.0.0.1']), clock: systemClock, logger: silentLogger }, { listenAddress: '127.0.0.1:0', fastPath, upstreamPort: fake.port });
      const before = fake.queries;
      const root = server.answer(query('.', 'NS'), 'udp');
      assert.ok(root instanceof Promise, 'forwarded');
      assert.equal((dnsPacket.decode((await root)!) as DecodedPacket).rcode, 'NXDOMAIN', 'as the upstream said');
      assert.equal(fake.queries, before + 1);
      const web = server.answer(query('web'), 'udp');
      assert.deepEqual(addrs(dnsPacket.decode(web as Buffer) as DecodedPacket), ['10.32.0.1']);
    }
    // The fast path's local answer declines the root (0: not local), as any name it does not own.
    const zone = { domain: 'weave.local.', ttl: 1, random: Math.random, lookup: (h: string) => ns.lookup(h) };
    const msg = query('.', 'NS');
    const q = { id: msg.readUInt16BE(0), flags: msg.readUInt16BE(2), name: '.', nameBytes: 1, questionEnd: 17, qtype: 2, ednsSize: undefined };
    assert.equal(answerLocalInto(Buffer.alloc(512), msg, q, 'udp', zone), 0);
  } finally {
    await fake.stop();
  }
});
