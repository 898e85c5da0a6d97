// The sleeve's syscall layer (platform/ffi/libc, tap, udp-socket) exercised for real. The
// test process stays in the root namespace and creates no device there: every binding runs
// in a small node child started under `nsenter --net=` inside namespaces made here.
//
//   c1 (192.0.2.65/26) ─veth─ br0 ─ tap0 ⇄ [forwarder] ⇄ UDP eth0 192.0.2.1 ═╗
//   h1                                                                        ║ veth, MTU 1500
//   c2 (192.0.2.66/26) ─veth─ br0 ─ tap0 ⇄ [forwarder] ⇄ UDP eth0 192.0.2.2 ═╝
//   h1 eth1 192.0.2.17/28 ═══ veth, MTU 1400 ═══ h2 eth1 192.0.2.18/28 (DF and path MTU)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Netns, requireRoot, uniquePrefix } from '../helpers/netns.js';
import { ErrnoError, errnoName, isErrno, libc } from '../../src/platform/ffi/libc.js';
import { openTap, decodeVnetHdr } from '../../src/platform/tap.js';
import { isWeaveError } from '../../src/core/errors.js';

const prefix = uniquePrefix();
const platformUrl = new URL('../../src/platform/', import.meta.url).href;
const namespaces: Netns[] = [];
const children = new Set<Child>();
let h1: Netns;
let h2: Netns;
let c1: Netns;
let c2: Netns;

type Msg = Record<string, unknown>;

/** A node child running an ESM script inside a namespace, speaking JSON lines both ways. */
class Child {
  readonly proc: ChildProcess;
  private readonly queue: Msg[] = [];
  private readonly waiters: ((m: Msg | Error) => void)[] = [];
  private stderr = '';
  readonly exited: Promise<number | null>;

  constructor(ns: Netns, script: string, env: Record<string, string> = {}) {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, WEAVE_PLATFORM_URL: platformUrl, ...env };
    delete childEnv.NODE_EXTRA_CA_CERTS;
    this.proc = spawn('nsenter', [`--net=${ns.path}`, '--', process.execPath, '--input-type=module', '-e', prologue + script], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: childEnv,
    });
    children.add(this);
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      let m: Msg;
      try {
        m = JSON.parse(line) as Msg;
      } catch {
        m = { raw: line };
      }
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    });
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code) => {
        children.delete(this);
        for (const w of this.waiters.splice(0)) w(new Error(`child exited (${code}): ${this.stderr}`));
        resolve(code);
      }),
    );
  }

  /** The next JSON line the child prints. */
  next(timeoutMs = 20_000): Promise<Msg> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.proc.exitCode !== null) return Promise.reject(new Error(`child exited (${this.proc.exitCode}): ${this.stderr}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message from child within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      this.waiters.push((v) => {
        clearTimeout(timer);
        if (v instanceof Error) reject(v);
        else resolve(v);
      });
    });
  }

  send(m: Msg): void {
    this.proc.stdin!.write(JSON.stringify(m) + '\n');
  }

  /** Closes stdin (the child's signal to finish) and waits for a clean exit. */
  async finish(): Promise<void> {
    this.proc.stdin!.end();
    const code = await this.exited;
    assert.equal(code, 0, `child failed: ${this.stderr}`);
  }

  kill(): void {
    this.proc.kill('SIGKILL');
  }
}

// Shared by every child: the platform modules, `emit` and an inbox of JSON lines from stdin.
const prologue = `
const lib = process.env.WEAVE_PLATFORM_URL;
const { openTap, TapDevice, decodeVnetHdr, VNET_HDR_BYTES } = await import(lib + 'tap.js');
const { UdpSocket, pathMtu } = await import(lib + 'udp-socket.js');
const { ErrnoError, isErrno, libc } = await import(lib + 'ffi/libc.js');
const { WeaveError } = await import(lib + '../core/errors.js');
const { createInterface } = await import('node:readline');
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const inbox = (() => {
  const q = []; const w = []; let ended = false;
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (l) => { const m = JSON.parse(l); const f = w.shift(); if (f) f(m); else q.push(m); });
  rl.on('close', () => { ended = true; for (const f of w.splice(0)) f(null); });
  return { next: () => q.length ? Promise.resolve(q.shift()) : ended ? Promise.resolve(null) : new Promise((r) => w.push(r)) };
})();
const errInfo = (e) => ({ name: e.name, code: e.code, errnoName: e.errnoName, batchIndex: e.batchIndex, weave: e instanceof WeaveError, message: e.message });
`;

function ns(label: string): Netns {
  const n = new Netns(`${prefix}-${label}`);
  namespaces.push(n);
  return n;
}

before(() => {
  if (process.getuid?.() !== 0) return;
  h1 = ns('h1');
  h2 = ns('h2');
  c1 = ns('c1');
  c2 = ns('c2');
  // Every link is created from inside a test namespace, never in the root one.
  h1.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h2.name);
  h1.ip('link', 'add', 'eth1', 'mtu', '1400', 'type', 'veth', 'peer', 'name', 'eth1', 'mtu', '1400', 'netns', h2.name);
  for (const [h, i] of [[h1, 1], [h2, 2]] as const) {
    h.ip('addr', 'add', `192.0.2.${i}/28`, 'dev', 'eth0');
    h.ip('addr', 'add', `192.0.2.${16 + i}/28`, 'dev', 'eth1');
    h.ip('link', 'set', 'eth0', 'up');
    h.ip('link', 'set', 'eth1', 'up');
    // A TSO super-frame must fit one UDP datagram (65507 bytes) with its vnet header.
    h.ip('link', 'add', 'br0', 'gso_max_size', '65000', 'type', 'bridge');
    h.ip('link', 'set', 'br0', 'up');
    const c = i === 1 ? c1 : c2;
    h.ip('link', 'add', 'vc', 'gso_max_size', '65000', 'type', 'veth', 'peer', 'name', 'eth0', 'gso_max_size', '65000', 'netns', c.name);
    h.ip('link', 'set', 'vc', 'master', 'br0', 'up');
    c.ip('addr', 'add', `192.0.2.${64 + i}/26`, 'dev', 'eth0');
    c.ip('link', 'set', 'eth0', 'up');
  }
});

after(async () => {
  for (const c of [...children]) {
    c.kill();
    await c.exited;
  }
  for (const n of namespaces) n.destroy();
});

test('errno mapping and argument checks (no syscalls that change anything)', (t) => {
  if (!requireRoot(t)) return;
  const c = libc();
  assert.equal(c.close(-1), -1);
  const e = new ErrnoError('close', c.errno());
  assert.equal(e.errnoName, 'EBADF');
  assert.equal(e.code, 'IO_FAILED');
  assert.ok(isWeaveError(e) && isErrno(e, 'EBADF') && !isErrno(e, 'EAGAIN'));
  assert.equal(errnoName(11), 'EAGAIN');
  assert.equal(errnoName(90), 'EMSGSIZE');
  assert.equal(new ErrnoError('sendto', 105).code, 'UNAVAILABLE');
  assert.equal(new ErrnoError('bind', 98).code, 'ALREADY_EXISTS');
  assert.deepEqual([c.layout.iovecBytes, c.layout.mmsghdrBytes, c.layout.msgLen, c.layout.pollfdBytes], [16, 64, 56, 8]);
  assert.throws(() => openTap({ name: 'a-name-too-long-for-linux', vnetHdr: false }), (x) => isWeaveError(x, 'INVALID_ARGUMENT'));
  assert.throws(() => openTap({ name: 'x', vnetHdr: false, offload: { csum: true } }), (x) => isWeaveError(x, 'INVALID_ARGUMENT'));
  assert.throws(() => openTap({ name: 'x', vnetHdr: true, offload: { csum: false, tso4: true } }), (x) => isWeaveError(x, 'INVALID_ARGUMENT'));
  const h = decodeVnetHdr(Buffer.from([1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]));
  assert.deepEqual(h, { flags: 1, gsoType: 1, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
});

test('rtnetlink RTM_GETLINK in a namespace reads what ip -j reads, and no link as undefined', async (t) => {
  if (!requireRoot(t)) return;
  h1.ip('link', 'add', 'rtbr0', 'mtu', '1376', 'type', 'bridge');
  h1.ip('link', 'set', 'rtbr0', 'address', '7a:00:00:00:00:0a');
  const child = new Child(h1, `
const { RtnlLinkReader } = await import(lib + 'rtnetlink.js');
const r = RtnlLinkReader.open();
for (let m = await inbox.next(); m; m = await inbox.next()) {
  try { emit({ link: r.get(m.name) ?? null }); } catch (e) { emit({ err: errInfo(e) }); }
}
r.close();
`);
  try {
    const read = async (name: string) => {
      child.send({ name });
      return (await child.next()) as { link?: Record<string, unknown> | null; err?: { code: string; message: string } };
    };
    const ip = (name: string) => JSON.parse(h1.ip('-j', '-d', 'link', 'show', 'dev', name))[0] as Record<string, unknown> & { linkinfo?: { info_kind?: string } };
    for (const name of ['rtbr0', 'eth0', 'lo']) {
      const want = ip(name);
      const got = (await read(name)).link;
      assert.ok(got, `${name} found`);
      assert.deepEqual(got, {
        ifindex: want.ifindex, ifname: name, mtu: want.mtu, address: want.address, flags: want.flags,
        ...(want.linkinfo?.info_kind ? { kind: want.linkinfo.info_kind } : {}),
      }, name);
    }
    h1.ip('link', 'set', 'rtbr0', 'up');
    assert.ok(((await read('rtbr0')).link!.flags as string[]).includes('UP'));
    h1.ip('link', 'del', 'rtbr0');
    assert.equal((await read('rtbr0')).link, null, 'a deleted link is undefined');
    assert.equal((await read('x'.repeat(15))).link, null);
    assert.equal((await read('x'.repeat(16))).err?.code, 'INVALID_ARGUMENT');
    await child.finish();
  } finally {
    child.kill();
  }
});

test('TAP devices in a namespace: plain and vnet-header frames, read timeout, fromFd, misuse, short buffer', async (t) => {
  if (!requireRoot(t)) return;
  const child = new Child(
    h1,
    `
const plain = openTap({ name: 'tp0', vnetHdr: false });
const vnet = openTap({ name: 'tp1', vnetHdr: true, offload: { csum: true, tso4: true, tso6: true, ecn: true } });
const borrowed = TapDevice.fromFd(vnet.fd);
const misuse = [];
try { TapDevice.fromFd(vnet.fd, { vnetHdr: false }); } catch (e) { misuse.push(errInfo(e).code); }
try { UdpSocket.fromFd(vnet.fd); } catch (e) { misuse.push(errInfo(e).errnoName); }
try { plain.write(Buffer.alloc(10), 11); } catch (e) { misuse.push(errInfo(e).code); }
const buf = Buffer.alloc(70000);
let t0 = Date.now();
const idle = plain.readTimeout(buf, 150);
const idleMs = Date.now() - t0;
emit({ ready: true, names: [plain.name, vnet.name], idle, idleMs, misuse, borrowed: { name: borrowed.name, vnetHdr: borrowed.vnetHdr } });
await inbox.next(); // the links are up and something is sending ARP
const firstArp = (dev, hdr) => {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const n = dev.readTimeout(buf, 200);
    if (n > 0 && buf.readUInt16BE(hdr + 12) === 0x0806) return { n, vnet: hdr ? decodeVnetHdr(buf) : null, target: [...buf.subarray(hdr + 38, hdr + 42)].join('.') };
  }
  return null;
};
const a = firstArp(plain, 0);
const b = firstArp(borrowed, VNET_HDR_BYTES);
// A buffer shorter than the frame: what does the kernel report?
let short = null;
{
  const small = Buffer.alloc(30);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && short === null) {
    const n = plain.readTimeout(small, 200);
    if (n > 0) short = n;
  }
}
borrowed.close();
const stillOpen = vnet.fd >= 0;
plain.close(); vnet.close(); plain.close();
let afterClose = null;
try { plain.readTimeout(buf, 10); } catch (e) { afterClose = errInfo(e); }
emit({ a, b, short, stillOpen, afterClose });
await inbox.next();
`,
  );
  const ready = await child.next();
  assert.deepEqual(ready.names, ['tp0', 'tp1']);
  assert.equal(ready.idle, 0);
  assert.ok((ready.idleMs as number) >= 140 && (ready.idleMs as number) < 1000, `idle read took ${String(ready.idleMs)} ms`);
  assert.deepEqual(ready.borrowed, { name: 'tp1', vnetHdr: true });
  assert.deepEqual(ready.misuse, ['INVALID_ARGUMENT', 'ENOTSOCK', 'INVALID_ARGUMENT']);
  h1.ip('addr', 'add', '192.0.2.33/28', 'dev', 'tp0');
  h1.ip('addr', 'add', '192.0.2.49/28', 'dev', 'tp1');
  h1.ip('link', 'set', 'tp0', 'up');
  h1.ip('link', 'set', 'tp1', 'up');
  // Pings to absent neighbours make the kernel send ARP requests out of each TAP.
  const pings = [spawn('nsenter', [`--net=${h1.path}`, 'ping', '-c', '8', '-i', '0.3', '-W', '1', '192.0.2.34'], { stdio: 'ignore' }),
    spawn('nsenter', [`--net=${h1.path}`, 'ping', '-c', '8', '-i', '0.3', '-W', '1', '192.0.2.50'], { stdio: 'ignore' })];
  try {
    child.send({ go: true });
    const r = await child.next();
    const a = r.a as { n: number; target: string } | null;
    const b = r.b as { n: number; target: string; vnet: { gsoType: number } } | null;
    assert.ok(a && a.n === 42 && a.target === '192.0.2.34', `plain ARP frame: ${JSON.stringify(a)}`);
    assert.ok(b && b.n === 52 && b.target === '192.0.2.50' && b.vnet.gsoType === 0, `vnet ARP frame: ${JSON.stringify(b)}`);
    assert.equal(r.short, 30, 'a frame longer than the buffer is cut to the buffer');
    assert.equal(r.stillOpen, true, 'closing a borrowed (not owned) wrapper must not close the fd');
    assert.equal((r.afterClose as { errnoName: string }).errnoName, 'EBADF');
    child.send({ done: true });
    await child.finish();
  } finally {
    for (const p of pings) p.kill();
  }
  assert.equal(h1.run('ip', ['link', 'show', 'tp0']).code !== 0, true, 'a non-persistent TAP vanishes with its fd');
});

const receiver = `
const sock = UdpSocket.bind(process.env.BIND_IP, Number(process.env.BIND_PORT), { rcvBuf: 1 << 20, reuseAddr: true });
emit({ ready: true, local: sock.localAddress() });
const got = [];
const first = sock.recvFrom(Buffer.alloc(4096));
got.push({ ...first, via: 'recvFrom' });
const bufs = Array.from({ length: 16 }, () => Buffer.alloc(2048));
const out = [];
const want = Number(process.env.WANT);
let idleSince = Date.now();
while (got.length < want && Date.now() - idleSince < 3000) {
  const k = sock.recvBatch(bufs, out, 200);
  if (k > 0) idleSince = Date.now();
  for (let i = 0; i < k; i++) got.push({ ...out[i], seq: bufs[i].readUInt32BE(0), via: 'recvBatch' });
}
const zero = sock.recvBatch(bufs, out, 0);
emit({ got, zero });
sock.close();
`;

test('UDP between namespaces: sendTo, sendBatch of 32, recvFrom, recvBatch, truncation', async (t) => {
  if (!requireRoot(t)) return;
  const rx = new Child(h2, receiver, { BIND_IP: '192.0.2.2', BIND_PORT: '7000', WANT: '34' });
  const ready = await rx.next();
  assert.deepEqual(ready.local, { ip: 0xc0000202, port: 7000 });
  const tx = new Child(
    h1,
    `
const sock = UdpSocket.bind('192.0.2.1', 0, { sndBuf: 1 << 20 });
const local = sock.localAddress();
const one = Buffer.alloc(100); one.writeUInt32BE(0);
const sent1 = sock.sendTo(one, 100, '192.0.2.2', 7000);
await new Promise((r) => setTimeout(r, 100)); // the receiver takes the first one with recvFrom
const packets = Array.from({ length: 32 }, (_, i) => { const b = Buffer.alloc(1000 + i); b.writeUInt32BE(i + 1); return { buf: b, len: 1000 + i, ip: 0xc0000202, port: 7000 }; });
const batch = sock.sendBatch(packets);
const big = Buffer.alloc(3000); big.writeUInt32BE(33);
const sentBig = sock.sendTo(big, 3000, 0xc0000202, 7000); // fragmented on a 1500 link, truncated by a 2048 buffer
emit({ local, sent1, batch, sentBig });
sock.close();
`,
  );
  const sent = await tx.next();
  await tx.finish();
  assert.deepEqual([sent.sent1, sent.batch, sent.sentBig], [100, 32, 3000]);
  const r = await rx.next();
  await rx.finish();
  const got = r.got as { len: number; ip: number; port: number; truncated: boolean; seq?: number; via: string }[];
  const local = sent.local as { port: number };
  assert.equal(got.length, 34);
  assert.deepEqual(got[0], { len: 100, ip: 0xc0000201, port: local.port, truncated: false, segmentSize: 0, via: 'recvFrom' });
  for (let i = 1; i <= 32; i++) {
    const g = got.find((x) => x.seq === i);
    assert.ok(g && g.len === 999 + i && g.ip === 0xc0000201 && g.port === local.port && !g.truncated, `datagram ${i}: ${JSON.stringify(g)}`);
  }
  const big = got.find((x) => x.seq === 33);
  assert.ok(big && big.len === 2048 && big.truncated, `truncated datagram: ${JSON.stringify(big)}`);
  assert.equal(r.zero, 0);
});

test('DF and path MTU: EMSGSIZE with DF on, fragments with DF off, pathMtu reads the route', async (t) => {
  if (!requireRoot(t)) return;
  const reasmBefore = reasmOks(h2);
  const rx = new Child(h2, receiver, { BIND_IP: '192.0.2.18', BIND_PORT: '7001', WANT: '5' });
  await rx.next();
  const tx = new Child(
    h1,
    `
const mtus = { narrow: pathMtu('192.0.2.18'), wide: pathMtu(0xc0000202) };
let unreachable = null;
try { pathMtu('203.0.113.1'); } catch (e) { unreachable = errInfo(e); }
const sock = UdpSocket.bind('192.0.2.17', 0);
const buf = Buffer.alloc(2000);
buf.writeUInt32BE(0);
sock.sendTo(buf, 100, '192.0.2.18', 7001); // for recvFrom
sock.setDontFragment(true);
sock.setDontFragment(true);
let dfErr = null;
try { sock.sendTo(buf, 2000, '192.0.2.18', 7001); } catch (e) { dfErr = errInfo(e); }
const fits = sock.sendTo(buf, 1372, '192.0.2.18', 7001); // 1400 - 20 (IP) - 8 (UDP)
let pastEnd = null;
try { sock.sendTo(buf, 2001, '192.0.2.18', 7001); } catch (e) { pastEnd = errInfo(e); }
const bufs = [1, 2, 3].map((s) => { const b = Buffer.alloc(2000); b.writeUInt32BE(s); return b; });
const errors = [];
const batch = sock.sendBatch([{ buf: bufs[0], len: 200, ip: '192.0.2.18', port: 7001 }, { buf: bufs[1], len: 2000, ip: '192.0.2.18', port: 7001 }, { buf: bufs[2], len: 300, ip: '192.0.2.18', port: 7001 }], 3, (i, e) => errors.push({ i, ...errInfo(e) }));
let thrown = null;
try { sock.sendBatch([{ buf: bufs[1], len: 2000, ip: 0xc0000212, port: 7001 }]); } catch (e) { thrown = errInfo(e); }
sock.setDontFragment(false);
buf.writeUInt32BE(9);
const fragmented = sock.sendTo(buf, 2000, '192.0.2.18', 7001);
emit({ mtus, unreachable, dfErr, fits, pastEnd, batch, errors, thrown, fragmented });
sock.close();
`,
  );
  const r = await tx.next();
  await tx.finish();
  assert.deepEqual(r.mtus, { narrow: 1400, wide: 1500 });
  assert.equal((r.unreachable as { errnoName: string }).errnoName, 'ENETUNREACH');
  const dfErr = r.dfErr as { name: string; errnoName: string; weave: boolean; code: string };
  assert.deepEqual([dfErr.name, dfErr.errnoName, dfErr.weave, dfErr.code], ['ErrnoError', 'EMSGSIZE', true, 'IO_FAILED']);
  assert.equal(r.fits, 1372);
  assert.equal((r.pastEnd as { code: string }).code, 'INVALID_ARGUMENT');
  assert.equal(r.batch, 2);
  assert.deepEqual((r.errors as { i: number; errnoName: string }[]).map((e) => [e.i, e.errnoName]), [[1, 'EMSGSIZE']]);
  assert.deepEqual([(r.thrown as { errnoName: string }).errnoName, (r.thrown as { batchIndex: number }).batchIndex], ['EMSGSIZE', 0]);
  assert.equal(r.fragmented, 2000);
  const got = (await rx.next()).got as { len: number; seq?: number }[];
  await rx.finish();
  // 100 (recvFrom), 1372 (seq 0), 200 (seq 1), 300 (seq 3) and the reassembled 2000 (seq 9).
  assert.deepEqual(got.map((g) => g.len).sort((a, b) => a - b), [100, 200, 300, 1372, 2000]);
  assert.ok(reasmOks(h2) > reasmBefore, 'the 2000-byte datagram arrived as fragments');
});

test('UDP GSO and GRO between namespaces: one send of many datagrams, one receive of the train, segmented for a socket without GRO', async (t) => {
  if (!requireRoot(t)) return;
  const rx = new Child(
    h2,
    `
const gro = UdpSocket.bind('192.0.2.2', 7003, { rcvBuf: 4 << 20, gro: true });
const plain = UdpSocket.bind('192.0.2.2', 7004, { rcvBuf: 4 << 20 });
emit({ ready: true, groEnabled: gro.groEnabled, plainGro: plain.groEnabled });
const read = (sock, want) => {
  const bufs = Array.from({ length: 8 }, () => Buffer.alloc(65536));
  const out = [];
  const got = [];
  const deadline = Date.now() + 3000;
  let bytes = 0;
  while (bytes < want && Date.now() < deadline) {
    const k = sock.recvBatch(bufs, out, 200);
    for (let i = 0; i < k; i++) {
      const d = out[i];
      bytes += d.len;
      // Every datagram of a train starts with its index (u16) and carries it in every byte after.
      const seg = d.segmentSize || d.len;
      const idx = [];
      let ok = true;
      for (let o = 0; o < d.len; o += seg) {
        const n = bufs[i].readUInt16BE(o);
        idx.push(n);
        for (let j = o + 2; j < Math.min(o + seg, d.len); j++) ok &&= bufs[i][j] === (n & 0xff);
      }
      got.push({ len: d.len, segmentSize: d.segmentSize, idx, ok });
    }
  }
  return got;
};
const viaGro = read(gro, 40 * 1400 + 700 + 3000);
const viaPlain = read(plain, 40 * 1400 + 700);
emit({ viaGro, viaPlain });
gro.close(); plain.close();
`,
  );
  const ready = await rx.next();
  assert.equal(ready.groEnabled, true, 'UDP_GRO is on');
  assert.equal(ready.plainGro, false);
  const tx = new Child(
    h1,
    `
const sock = UdpSocket.bind('192.0.2.1', 0);
const canGso = sock.supportsSegmentation();
const noCsum = UdpSocket.bind('192.0.2.1', 0, { noChecksum: true });
const noCsumGso = noCsum.supportsSegmentation();
// 40 datagrams of 1400 bytes and a last one of 700, in one buffer.
const train = Buffer.alloc(40 * 1400 + 700);
for (let k = 0; k <= 40; k++) { train.fill(k & 0xff, k * 1400, Math.min((k + 1) * 1400, train.length)); train.writeUInt16BE(k, k * 1400); }
sock.setDontFragment(true);
const errors = [];
const one = Buffer.alloc(3000, 0); one.writeUInt16BE(99, 0); one.fill(99, 2);
const sent = sock.sendBatch([
  { buf: train, len: train.length, ip: '192.0.2.2', port: 7003, segmentSize: 1400 },
  { buf: train, len: train.length, ip: '192.0.2.2', port: 7004, segmentSize: 1400 },
  { buf: train, len: 1600 * 2, ip: '192.0.2.2', port: 7003, segmentSize: 1600 }, // a segment over the MTU: refused
], 3, (i, e) => errors.push([i, e.errnoName]));
sock.setDontFragment(false);
const plainSent = sock.sendTo(one, 3000, '192.0.2.2', 7003); // an ordinary fragmented datagram
emit({ canGso, noCsumGso, sent, errors, plainSent });
sock.close(); noCsum.close();
`,
  );
  const s = await tx.next();
  await tx.finish();
  assert.equal(s.canGso, true, 'UDP_SEGMENT is supported');
  assert.equal(s.noCsumGso, false, 'no segmentation without UDP checksums');
  assert.equal(s.sent, 2);
  // EMSGSIZE on current kernels, EINVAL on older ones.
  const errors = s.errors as [number, string][];
  assert.ok(errors.length === 1 && errors[0]![0] === 2 && ['EMSGSIZE', 'EINVAL'].includes(errors[0]![1]), JSON.stringify(errors));
  const r = await rx.next();
  await rx.finish();
  const viaGro = r.viaGro as { len: number; segmentSize: number; idx: number[]; ok: boolean }[];
  const viaPlain = r.viaPlain as { len: number; segmentSize: number; idx: number[]; ok: boolean }[];
  const all = Array.from({ length: 41 }, (_, k) => k);
  // Between namespaces the train crosses as one buffer and the GRO socket takes it whole.
  assert.deepEqual(viaGro.filter((d) => d.segmentSize === 1400).flatMap((d) => d.idx), all, JSON.stringify(viaGro));
  assert.ok(viaGro.every((d) => d.ok), 'every datagram intact');
  const big = viaGro.find((d) => d.segmentSize === 0);
  assert.ok(big && big.len === 3000 && big.idx[0] === 99, `the fragmented datagram comes alone: ${JSON.stringify(big)}`);
  // A socket without GRO gets the same train as 41 datagrams.
  assert.ok(viaPlain.every((d) => d.segmentSize === 0 && d.ok));
  assert.deepEqual(viaPlain.map((d) => d.len), [...Array(40).fill(1400), 700]);
  assert.deepEqual(viaPlain.flatMap((d) => d.idx), all);
});

function reasmOks(n: Netns): number {
  const lines = n.must('cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Ip:'));
  const keys = lines[0]!.split(/\s+/);
  const vals = lines[1]!.split(/\s+/);
  return Number(vals[keys.indexOf('ReasmOKs')]);
}

test('worker_threads: a worker drives fds opened by the main thread, errno per thread', async (t) => {
  if (!requireRoot(t)) return;
  const rx = new Child(h2, receiver, { BIND_IP: '192.0.2.2', BIND_PORT: '7002', WANT: '2' });
  await rx.next();
  const tx = new Child(
    h1,
    `
const { Worker } = await import('node:worker_threads');
const tap = openTap({ name: 'wt0', vnetHdr: true, offload: { csum: true, tso4: true } });
const sock = UdpSocket.bind('192.0.2.1', 0);
const w = new Worker(\`
const { workerData, parentPort } = await import('node:worker_threads');
await (async () => {
  const lib = workerData.lib;
  const { TapDevice } = await import(lib + 'tap.js');
  const { UdpSocket } = await import(lib + 'udp-socket.js');
  const tap = TapDevice.fromFd(workerData.tapFd);
  const t0 = Date.now();
  const idle = tap.readTimeout(Buffer.alloc(70000), 100);
  const idleMs = Date.now() - t0;
  const sock = UdpSocket.fromFd(workerData.udpFd);
  sock.setDontFragment(true);
  let err = null;
  try { sock.sendTo(Buffer.alloc(3000), 3000, '192.0.2.2', 7002); } catch (e) { err = { errnoName: e.errnoName, code: e.code }; }
  const sent = sock.sendTo(Buffer.alloc(64), 64, 0xc0000202, 7002);
  sock.close(); tap.close(); // borrowed: the fds stay open for the main thread
  parentPort.postMessage({ name: tap.name, vnetHdr: tap.vnetHdr, idle, idleMs, err, sent });
})().catch((e) => parentPort.postMessage({ fatal: String(e && e.stack || e) }));
\`, { eval: true, execArgv: ['--input-type=module'], workerData: { lib, tapFd: tap.fd, udpFd: sock.fd } });
const fromWorker = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
await new Promise((r) => w.once('exit', r));
const mainSent = sock.sendTo(Buffer.alloc(80), 80, '192.0.2.2', 7002);
emit({ fromWorker, mainSent, tapName: tap.name });
sock.close(); tap.close();
`,
  );
  const r = await tx.next();
  await tx.finish();
  const w = r.fromWorker as Record<string, unknown>;
  assert.equal(w.fatal, undefined, String(w.fatal));
  assert.equal(w.name, 'wt0');
  assert.equal(w.vnetHdr, true);
  assert.equal(w.idle, 0);
  assert.ok((w.idleMs as number) >= 90, `worker readTimeout returned after ${String(w.idleMs)} ms`);
  assert.deepEqual(w.err, { errnoName: 'EMSGSIZE', code: 'IO_FAILED' });
  assert.equal(w.sent, 64);
  assert.equal(r.mainSent, 80);
  const got = (await rx.next()).got as { len: number }[];
  await rx.finish();
  assert.deepEqual(got.map((g) => g.len), [64, 80]);
});

// Two worker threads per host, as the sleeve runs them: TAP -> UDP (one datagram per frame,
// super-frames included) and UDP -> TAP (recvBatch of 32). Frames travel with their virtio
// header so the receiving TAP finishes checksums and segmentation.
const forwarder = `
const { Worker } = await import('node:worker_threads');
const vnet = process.env.VNET === '1';
const tap = openTap({ name: 'tap0', vnetHdr: vnet, ...(vnet ? { offload: { csum: true, tso4: true, tso6: true, ecn: true } } : {}) });
const sock = UdpSocket.bind(process.env.LOCAL_IP, 6799, { rcvBuf: 8 << 20, sndBuf: 8 << 20 });
sock.setDontFragment(false); // super-frames travel as fragmented datagrams
const stats = new Float64Array(new SharedArrayBuffer(8 * 8)); // frames, gso, maxLen, received, writeErr, sendErr
const stop = new Int32Array(new SharedArrayBuffer(4));
const code = \`
const { workerData: d, parentPort } = await import('node:worker_threads');
await (async () => {
  const { TapDevice, decodeVnetHdr } = await import(d.lib + 'tap.js');
  const { UdpSocket } = await import(d.lib + 'udp-socket.js');
  const tap = TapDevice.fromFd(d.tapFd);
  const sock = UdpSocket.fromFd(d.udpFd);
  const st = new Float64Array(d.stats);
  const stop = new Int32Array(d.stop);
  parentPort.postMessage('ready');
  if (d.role === 'tx') {
    const buf = Buffer.alloc(70000);
    const h = decodeVnetHdr(Buffer.alloc(10));
    while (Atomics.load(stop, 0) === 0) {
      const n = tap.readTimeout(buf, 100);
      if (n === 0) continue;
      st[0]++;
      if (tap.vnetHdr && decodeVnetHdr(buf, h).gsoType !== 0) st[1]++;
      if (n > st[2]) st[2] = n;
      try { sock.sendTo(buf, n, d.peer, 6799); } catch { st[5]++; }
    }
  } else {
    const bufs = Array.from({ length: 32 }, () => Buffer.alloc(70000));
    const out = [];
    while (Atomics.load(stop, 0) === 0) {
      const k = sock.recvBatch(bufs, out, 100);
      st[3] += k;
      for (let i = 0; i < k; i++) { try { tap.write(bufs[i], out[i].len); } catch { st[4]++; } }
    }
  }
  parentPort.postMessage('done');
})().catch((e) => parentPort.postMessage(String(e && e.stack || e)));
\`;
const workers = ['tx', 'rx'].map((role) => new Worker(code, { eval: true, execArgv: ['--input-type=module'], workerData: { role, lib, tapFd: tap.fd, udpFd: sock.fd, peer: Number(process.env.PEER_IP), stats: stats.buffer, stop: stop.buffer } }));
const started = workers.map((w) => new Promise((r) => w.once('message', r)));
const exits = workers.map((w) => new Promise((r) => { w.on('message', (m) => { if (m !== 'done' && m !== 'ready') emit({ workerError: m }); }); w.once('exit', r); }));
emit({ ready: (await Promise.all(started)).every((m) => m === 'ready') });
for (;;) {
  const m = await inbox.next();
  if (m === null) break;
  emit({ frames: stats[0], gso: stats[1], maxLen: stats[2], received: stats[3], writeErrors: stats[4], sendErrors: stats[5] });
}
Atomics.store(stop, 0, 1);
await Promise.all(exits);
sock.close();
tap.close();
`;

interface FwdStats {
  frames: number;
  gso: number;
  maxLen: number;
  received: number;
  writeErrors: number;
  sendErrors: number;
}

async function startForwarders(vnet: boolean): Promise<Child[]> {
  const f1 = new Child(h1, forwarder, { LOCAL_IP: '192.0.2.1', PEER_IP: String(0xc0000202), VNET: vnet ? '1' : '0' });
  const f2 = new Child(h2, forwarder, { LOCAL_IP: '192.0.2.2', PEER_IP: String(0xc0000201), VNET: vnet ? '1' : '0' });
  for (const [f, h] of [[f1, h1], [f2, h2]] as const) {
    assert.equal((await f.next()).ready, true);
    h.ip('link', 'set', 'tap0', 'master', 'br0', 'up');
  }
  return [f1, f2];
}

async function stats(f: Child): Promise<FwdStats> {
  f.send({ stats: true });
  const m = await f.next();
  assert.equal(m.workerError, undefined, String(m.workerError));
  return m as unknown as FwdStats;
}

/** iperf3 from one namespace to another for `seconds`; bits per second received, or undefined when it failed. */
async function iperf(seconds: number, from = c1, to = c2, toIp = '192.0.2.66'): Promise<number | undefined> {
  const server = spawn('nsenter', [`--net=${to.path}`, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise<void>((resolve) => {
      server.stdout.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
      setTimeout(resolve, 2000);
    });
    const r = from.run('iperf3', ['-c', toIp, '-p', '5201', '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
    const j = JSON.parse(r.stdout || '{}') as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
    if (j.error) console.log(`# iperf3: ${j.error}`);
    return j.end?.sum_received?.bits_per_second;
  } finally {
    server.kill();
  }
}

/** Average ping c1 -> c2 in ms, after one ping that resolves ARP and fills the bridges' tables. */
function pingAvgMs(count: number): number {
  c1.must('ping', ['-c', '1', '-W', '2', '192.0.2.66']);
  const out = c1.must('ping', ['-c', String(count), '-i', '0.2', '-W', '2', '192.0.2.66']);
  const m = /= [\d.]+\/([\d.]+)\//.exec(out);
  return m ? Number(m[1]) : NaN;
}

const rate = (bps: number | undefined) => (bps === undefined ? 'failed' : `${(bps / 8e6).toFixed(0)} MB/s (${(bps / 1e9).toFixed(2)} Gbit/s)`);

test('TAP <-> UDP <-> TAP between namespaces in worker threads: ping, TSO super-frames, throughput', async (t) => {
  if (!requireRoot(t)) return;
  const fwd = await startForwarders(true);
  let overlayBps: number | undefined;
  try {
    const rtt = pingAvgMs(5);
    assert.ok(rtt > 0, 'ping c1 -> c2 through the forwarders');
    // Errors before this point are IPv6 chatter from one TAP while the other was still down.
    const [b1, b2] = [await stats(fwd[0]!), await stats(fwd[1]!)];
    overlayBps = await iperf(3);
    const [s1, s2] = [await stats(fwd[0]!), await stats(fwd[1]!)];
    console.log(`# vnet+offload: ping avg ${rtt} ms; iperf3 c1->c2 ${rate(overlayBps)}`);
    console.log(`# h1: ${JSON.stringify(s1)}\n# h2: ${JSON.stringify(s2)}`);
    assert.ok(overlayBps !== undefined && overlayBps > 0, 'iperf3 moved data');
    // c1's TCP segments reach h1's TAP as super-frames with gso_type set.
    assert.ok(s1.gso > 0, `h1 read no GSO frame: ${JSON.stringify(s1)}`);
    assert.ok(s1.maxLen > 1500 + 10 && s1.maxLen <= 65000 + 14 + 10, `largest frame ${s1.maxLen}`);
    assert.equal(s1.sendErrors + s2.sendErrors - b1.sendErrors - b2.sendErrors, 0, 'UDP send errors during the transfer');
    assert.equal(s1.writeErrors + s2.writeErrors - b1.writeErrors - b2.writeErrors, 0, 'TAP write errors during the transfer');
  } finally {
    for (const f of fwd) await f.finish();
  }
  await t.test('throughput probe: plain frames and the underlay, for comparison (printed, not asserted)', async () => {
    const plain = await startForwarders(false);
    try {
      const rtt = pingAvgMs(3);
      const bps = await iperf(3);
      const s1 = await stats(plain[0]!);
      console.log(`# plain frames: ping avg ${rtt} ms; iperf3 c1->c2 ${rate(bps)}; h1 largest frame ${s1.maxLen}`);
      assert.ok(rtt > 0);
    } finally {
      for (const f of plain) await f.finish();
    }
    const under = await iperf(3, h1, h2, '192.0.2.2');
    console.log(`# underlay h1->h2: ${rate(under)}; vnet forwarder = ${overlayBps && under ? (overlayBps / under).toFixed(2) : '?'}x underlay`);
  });
});

test('the data path\'s thread survives a command that throws, and stops even when the thread died before', async (t) => {
  if (!requireRoot(t)) return;
  const n = ns('dp');
  n.ip('link', 'add', 'weave', 'type', 'bridge');
  n.ip('link', 'set', 'weave', 'up');
  // A script file, not \`-e\`: the worker thread inherits the process's execArgv, and
  // \`--input-type\` would stop it from loading.
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-dp-`));
  const file = join(dir, 'stop.mjs');
  writeFileSync(file, `
    const lib = ${JSON.stringify(platformUrl)};
    const { Datapath } = await import(lib + '../daemon/datapath.js');
    const { IpRoute } = await import(lib + 'iproute.js');
    const { systemClock } = await import(lib + '../core/clock.js');
    const { MemoryLogger } = await import(lib + '../core/logger.js');
    const log = new MemoryLogger();
    const d = await Datapath.start({ links: new IpRoute(), clock: systemClock, logger: log },
      { bridge: 'weave', ourName: 0x7a0000000001, port: 6783, host: '', mtu: 1376, fastdp: false });
    let exited = false;
    d.worker.once('exit', () => (exited = true));
    d.worker.postMessage({ t: 'special', peer: 1, df: true, frame: null }); // throws in the thread
    d.wake.wake();
    const t1 = Date.now();
    await d.macTable(); // answered by the thread (1 s: nobody answered)
    const answeredMs = Date.now() - t1;
    const warned = log.records.some((r) => r.level === 'warn' && /command special/.test(r.msg));
    const survived = !exited;
    await d.worker.terminate(); // the thread is gone before anyone asks the data path to stop
    const t0 = Date.now();
    const stopped = await Promise.race([d.stop().then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
    console.log(JSON.stringify({ survived, answeredMs, warned, stopped, ms: Date.now() - t0 }));
    process.exit(0);
  `);
  try {
    const r = n.run(process.execPath, [file], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    assert.equal(m.survived, true, `the thread outlived the bad command (${r.stdout.trim()})`);
    assert.ok((m.answeredMs as number) < 900, `and answered afterwards (${r.stdout.trim()})`);
    assert.equal(m.warned, true, 'the failure was logged');
    assert.equal(m.stopped, true, `stop() returned within 5 s (${r.stdout.trim()})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
