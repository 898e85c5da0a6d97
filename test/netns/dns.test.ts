// weaveDNS on three hosts (network namespaces on one underlay), after the original's DNS
// integration tests 200–295: names registered on one host resolve on every host; one name on
// several hosts gives every address; delete / re-add cycles converge; unqualified names and
// any letter case; negative answers; 50 A records over UDP (TC), TCP and a small EDNS buffer;
// names outside the domain forwarded to an upstream the test runs inside a host namespace (no
// query ever leaves the namespaces: every router's --resolv-conf names only test resolvers on
// its own loopback); entries back after kill -9 and a restart; --no-dns; a custom domain with
// subdomains. Hosts 1 and 2 listen on --dns-listen-address 127.0.0.1:5353; host 3 has no
// listen address, so its server waits for `weave expose` and then listens on the bridge, :53.
// UDP queries are answered by each router's DNS worker thread (the logs show no fallback); the
// restart test also checks that names learnt while that thread starts reach it.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Netns, eventually, hostsOnUnderlay, repoRoot, requireRoot, uniquePrefix } from '../helpers/netns.js';
import type { DnsQueryOutcome, DnsQuerySpec } from '../helpers/dns-query.js';

const prefix = uniquePrefix();
const containers: Netns[] = [];
const helpers: ChildProcess[] = [];
const { host: h } = hostsOnUnderlay(prefix, 'n', 3, () => {
  for (const p of helpers) p.kill('SIGKILL');
  for (const c of containers) c.destroy();
});
const ip = (i: number) => `192.0.2.${i}`;
const name = (i: number) => `7a:00:00:00:00:0${i}`;
const queryScript = () => join(repoRoot, 'dist/test/helpers/dns-query.js');
const upstreamScript = () => join(repoRoot, 'dist/test/helpers/dns-upstream.js');
/** Host 3's bridge address, where its DNS server listens once exposed. */
const BRIDGE3 = '10.32.3.1';

function resolvConf(i: number): string {
  return join(h(i).dir, 'resolv.conf');
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  for (let i = 1; i <= 3; i++) {
    // Host 1 also names its own DNS address, which the router must filter out; host 2 first
    // names a server it has no route to (203.0.113.1, TEST-NET-3: the send fails at once).
    const servers = i === 1 ? ['127.0.0.1', '127.0.0.53'] : i === 2 ? ['203.0.113.1', '127.0.0.53'] : ['127.0.0.53'];
    writeFileSync(resolvConf(i), servers.map((x) => `nameserver ${x}\n`).join(''));
  }
  // The only upstream resolver: on host 1's loopback, inside its namespace.
  const up = spawn('nsenter', [`--net=${h(1).ns.path}`, '--', process.execPath, upstreamScript(), '127.0.0.53'], { stdio: ['ignore', 'pipe', 'pipe'] });
  helpers.push(up);
  up.stderr!.resume();
  await new Promise<void>((resolve, reject) => {
    up.stdout!.once('data', () => resolve());
    up.once('exit', (c) => reject(new Error(`test upstream exited ${c}`)));
  });
});

const defaultPeers = (i: number) => [ip(1), ip(2)].slice(0, i - 1);

async function launch(i: number, extra: string[] = [], peers = defaultPeers(i)): Promise<void> {
  await h(i).stopWeaver('SIGKILL');
  const listen = i === 3 ? [] : ['--dns-listen-address', '127.0.0.1:5353'];
  await h(i).startWeaver({ name: name(i), nickname: `host${i}`, args: [...listen, '--resolv-conf', resolvConf(i), ...extra, ...peers] });
}

async function meshUp(): Promise<void> {
  for (const i of [1, 2, 3]) {
    await eventually(async () => {
      const s = (await h(i).client.request('GET', '/status/connections')).body;
      return s.split('\n').filter((l) => /\bestablished\b/.test(l)).length === 2;
    }, 30_000, `host${i} connected to both others`);
  }
}

function server(i: number): { host: string; port: number } {
  return i === 3 ? { host: BRIDGE3, port: 53 } : { host: '127.0.0.1', port: 5353 };
}

/** A long-lived query process inside one namespace (test/helpers/dns-query.ts --serve). */
class Resolver {
  private readonly proc: ChildProcess;
  private readonly waiting: ((line: string) => void)[] = [];
  readonly ready: Promise<void>;
  constructor(ns: Netns) {
    this.proc = spawn('nsenter', [`--net=${ns.path}`, '--', process.execPath, queryScript(), '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
    helpers.push(this.proc);
    const lines = createInterface({ input: this.proc.stdout! });
    let first: () => void = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      first = resolve;
      this.proc.once('exit', (c) => reject(new Error(`dns-query helper exited ${c}`)));
    });
    lines.on('line', (l) => (l === 'ready' ? first() : this.waiting.shift()?.(l)));
  }
  async query(specs: DnsQuerySpec[]): Promise<DnsQueryOutcome[]> {
    await this.ready;
    const answer = new Promise<string>((resolve) => this.waiting.push(resolve));
    this.proc.stdin!.write(JSON.stringify(specs) + '\n');
    return JSON.parse(await answer) as DnsQueryOutcome[];
  }
}
const resolvers = new Map<string, Resolver>();

/** Queries host i's DNS server from inside host i's namespace (or `from`, e.g. a container). */
async function ask(i: number, specs: Partial<DnsQuerySpec>[], from?: Netns): Promise<DnsQueryOutcome[]> {
  const ns = from ?? h(i).ns;
  let r = resolvers.get(ns.name);
  if (!r) {
    r = new Resolver(ns);
    resolvers.set(ns.name, r);
  }
  return r.query(specs.map((s) => ({ ...server(i), name: '', ...s })));
}

async function ask1(i: number, spec: Partial<DnsQuerySpec>, from?: Netns): Promise<DnsQueryOutcome> {
  return (await ask(i, [spec], from))[0]!;
}

/** The sorted A answers for `qname` on host i (over TCP when truncated); undefined for NXDOMAIN. */
async function lookup(i: number, qname: string): Promise<string[] | undefined> {
  let r = await ask1(i, { name: qname });
  if (r.tc) r = await ask1(i, { name: qname, transport: 'tcp' });
  if (r.error) throw new Error(r.error);
  if (r.rcode === 'NXDOMAIN') return undefined;
  return (r.answers ?? []).filter((a) => a.type === 'A').map((a) => a.data).sort();
}

async function resolvesEverywhere(qname: string, want: string[] | undefined, timeoutMs = 15_000): Promise<number> {
  const started = Date.now();
  for (const i of [1, 2, 3]) {
    await eventually(async () => JSON.stringify(await lookup(i, qname)) === JSON.stringify(want), timeoutMs, `${qname} -> ${JSON.stringify(want)} on host${i}`);
  }
  return Date.now() - started;
}

function weave(i: number, args: string[]): string {
  const r = h(i).weave(args);
  assert.equal(r.code, 0, `weave ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('without --dns-listen-address weaveDNS waits for weave expose, then serves on the bridge address', async (t) => {
  if (!requireRoot(t)) return;
  await launch(1);
  await launch(2);
  await launch(3);
  await meshUp();
  const st = weave(3, ['status']);
  assert.match(st, /\n        Service: dns\n         Domain: weave\.local\.\n        Address: not listening \(/);
  const lk = h(3).weave(['dns-lookup', 'x']);
  assert.equal(lk.code, 1);
  assert.match(lk.stderr, /weaveDNS is not listening/);
  assert.equal(h(3).weave(['dns-args']).code, 1);
  assert.equal(weave(3, ['expose', `${BRIDGE3}/12`]), `${BRIDGE3}\n`);
  assert.equal(await h(3).client.call('GET', '/dns-address-port', 'dns'), `${BRIDGE3}:53`);
  assert.equal(await h(3).client.call('GET', '/dns-address', 'dns'), BRIDGE3);
  assert.equal(weave(3, ['dns-args']), `--dns=${BRIDGE3} --dns-search=weave.local.\n`);
  assert.equal(weave(1, ['dns-args']), '--dns=127.0.0.1 --dns-search=weave.local.\n');
  assert.doesNotMatch(weave(3, ['status']), /not listening/);
  assert.equal((await ask1(3, { name: 'nobody.weave.local' })).rcode, 'NXDOMAIN');
  // Hidden: the server stops; exposed again: it is back.
  assert.equal(weave(3, ['hide']), `${BRIDGE3}\n`);
  assert.match(weave(3, ['status']), /not listening/);
  assert.match((await ask1(3, { name: 'nobody.weave.local', timeoutMs: 1000 })).error ?? '', /ECONNREFUSED|no DNS answer|failed/);
  weave(3, ['expose', `${BRIDGE3}/12`]);
  assert.equal((await ask1(3, { name: 'nobody.weave.local' })).rcode, 'NXDOMAIN');
});

test('names resolve across hosts; one name on every host returns all addresses (210)', async (t) => {
  if (!requireRoot(t)) return;
  for (const i of [1, 2, 3]) {
    weave(i, ['dns-add', `10.40.0.${i}`, '-h', `host${i}.weave.local`]);
    weave(i, ['dns-add', `10.40.1.${i}`, '-h', 'svc.weave.local.']);
  }
  const ms = await resolvesEverywhere('svc.weave.local', ['10.40.1.1', '10.40.1.2', '10.40.1.3']);
  t.diagnostic(`one name on three hosts converged in ${ms} ms`);
  for (const i of [1, 2, 3]) await resolvesEverywhere(`host${i}.weave.local`, [`10.40.0.${i}`]);
  assert.deepEqual(weave(2, ['dns-lookup', 'svc.weave.local']).trim().split('\n').sort(), ['10.40.1.1', '10.40.1.2', '10.40.1.3']);
  assert.equal(weave(1, ['dns-lookup', 'host3.weave.local']), '10.40.0.3\n');
  assert.equal(weave(1, ['dns-lookup', 'nobody.weave.local']), '');
  // weave status dns: every live entry, here and remote; the metric counts ours only.
  const sd = weave(1, ['status', 'dns']);
  assert.match(sd, /^host3 {8}10\.40\.0\.3 {7}weave:extern 7a:00:00:00:00:03$/m);
  assert.equal(sd.trim().split('\n').length, 6);
  assert.match(weave(1, ['status']), /\n        Service: dns\n         Domain: weave\.local\.\n       Upstream: 127\.0\.0\.53\n            TTL: 1\n        Entries: 6\n/);
  assert.match(await h(2).client.call('GET', '/metrics', 'm'), /^weave_dns_entries 2$/m);
  const names = await h(1).client.dnsEntries();
  assert.equal(names?.filter((e) => e.Tombstone === 0).length, 6);
  assert.equal(await h(1).client.call('GET', '/domain', 'd'), 'weave.local.');
  assert.equal(JSON.parse(weave(1, ['report'])).DNS.Address, '127.0.0.1:5353');
  // A bad address is refused with the original's text.
  const bad = await h(1).client.request('PUT', '/name/weave:extern/10.1.2', { form: { fqdn: 'x.weave.local' } });
  assert.equal(bad.status, 400);
  assert.match(bad.body, /invalid IP Address: 10\.1\.2/);
  const outside = h(1).weave(['dns-add', '10.40.9.9', '-h', 'x.example.com']);
  assert.equal(outside.code, 1);
  assert.match(outside.stderr, /not in the weaveDNS domain weave\.local\./);
  // UDP was answered by the routers' DNS worker threads: none fell back to the main thread.
  for (const i of [1, 2, 3]) {
    const log = h(i).log();
    assert.match(log, /Listening for DNS queries/, `host${i}`);
    assert.doesNotMatch(log, /DNS UDP worker|answering (DNS over UDP )?on the main thread/, `host${i}`);
  }
});

test('containers named with attach --name and expose -h find each other by name across hosts (200)', async (t) => {
  if (!requireRoot(t)) return;
  const c1 = new Netns(`${prefix}-c1`);
  containers.push(c1);
  const c3 = new Netns(`${prefix}-c3`);
  containers.push(c3);
  assert.equal(weave(1, ['attach', '10.32.1.2/12', '--name', 'c1.weave.local', c1.path]), '10.32.1.2\n');
  assert.equal(weave(3, ['attach', '10.32.3.2/12', '--name', 'c3.weave.local', c3.path]), '10.32.3.2\n');
  weave(1, ['expose', '10.32.1.1/12', '-h', 'gw1.weave.local']);
  await resolvesEverywhere('c1.weave.local', ['10.32.1.2']);
  await resolvesEverywhere('gw1.weave.local', ['10.32.1.1']);
  // From inside the container on host 3, through the DNS server on host 3's bridge.
  const r = await ask1(3, { name: 'c1.weave.local' }, c3);
  assert.deepEqual(r.answers?.map((a) => a.data), ['10.32.1.2']);
  await eventually(() => c3.run('ping', ['-c', '1', '-W', '1', r.answers![0]!.data]).code === 0, 20_000, 'c3 pings c1 by the address DNS gave');
  // Detach takes the name away; hide takes the host's.
  assert.equal(weave(1, ['detach', c1.path]), '10.32.1.2\n');
  weave(1, ['hide']);
  await resolvesEverywhere('c1.weave.local', undefined);
  await resolvesEverywhere('gw1.weave.local', undefined);
});

test('dns-add and dns-remove with address and container, container only, address only; cycles converge (240, 210)', async (t) => {
  if (!requireRoot(t)) return;
  // A CNI-attached container: the plugin allocated its address under the container id.
  await h(2).client.claim('cni-0123456789ab', '10.32.2.50/12');
  weave(2, ['dns-add', 'cni-0123456789ab', '-h', 'cni.weave.local']);
  await resolvesEverywhere('cni.weave.local', ['10.32.2.50']);
  weave(2, ['dns-add', '10.32.2.51', 'cni-0123456789ab', '-h', 'cni.weave.local']);
  await resolvesEverywhere('cni.weave.local', ['10.32.2.50', '10.32.2.51']);
  weave(2, ['dns-remove', '10.32.2.50', 'cni-0123456789ab']);
  await resolvesEverywhere('cni.weave.local', ['10.32.2.51']);
  weave(2, ['dns-remove', 'cni-0123456789ab']);
  await resolvesEverywhere('cni.weave.local', undefined);
  const started = Date.now();
  for (let n = 0; n < 5; n++) {
    weave(1, ['dns-add', '10.40.2.1', '-h', 'cycle.weave.local']);
    await resolvesEverywhere('cycle.weave.local', ['10.40.2.1']);
    weave(1, ['dns-remove', '10.40.2.1', '-h', 'cycle.weave.local']);
    await resolvesEverywhere('cycle.weave.local', undefined);
  }
  t.diagnostic(`5 add/remove cycles converged on 3 hosts in ${Date.now() - started} ms`);
  weave(1, ['dns-add', '10.40.2.1', '-h', 'cycle.weave.local']);
  await resolvesEverywhere('cycle.weave.local', ['10.40.2.1']);
});

test('unqualified names and any letter case, A and PTR (230, 245)', async (t) => {
  if (!requireRoot(t)) return;
  for (const i of [1, 2, 3]) {
    assert.deepEqual(await lookup(i, 'host2'), ['10.40.0.2']);
    assert.deepEqual(await lookup(i, 'HoSt2.WeAvE.LoCaL'), ['10.40.0.2']);
    const ptr = await ask1(i, { name: '2.0.40.10.IN-ADDR.ARPA', type: 'PTR' });
    assert.equal(ptr.rcode, 'NOERROR');
    assert.deepEqual(ptr.answers?.map((a) => a.data), ['host2.weave.local']);
  }
  assert.equal(weave(3, ['dns-lookup', 'host1']), '10.40.0.1\n');
  weave(1, ['dns-add', '10.40.3.1', '-h', 'Case.weave.local']);
  weave(2, ['dns-add', '10.40.3.2', '-h', 'case.weave.local']);
  await resolvesEverywhere('CASE.weave.local', ['10.40.3.1', '10.40.3.2']);
});

test('negative answers: other types of a name NOERROR and empty, unknown names NXDOMAIN (250)', async (t) => {
  if (!requireRoot(t)) return;
  for (const i of [1, 2, 3]) {
    const mx = await ask1(i, { name: 'host1.weave.local', type: 'MX' });
    assert.equal(mx.rcode, 'NOERROR');
    assert.equal(mx.aa, true);
    assert.deepEqual(mx.answers, []);
    assert.equal((await ask1(i, { name: 'nosuch.weave.local' })).rcode, 'NXDOMAIN');
    assert.equal((await ask1(i, { name: 'nosuch.weave.local', transport: 'tcp' })).rcode, 'NXDOMAIN');
    assert.equal((await ask1(i, { name: '9.9.9.10.in-addr.arpa', type: 'A' })).rcode, 'NXDOMAIN');
  }
  // Outside the domain: host 1's upstream says NXDOMAIN; hosts 2 and 3 have no live upstream.
  assert.equal((await ask1(1, { name: 'nosuch.invalid' })).rcode, 'NXDOMAIN');
  assert.equal((await ask1(2, { name: 'nosuch.invalid' })).rcode, 'SERVFAIL');
});

test('50 A records: truncated over UDP, complete over TCP and with a large EDNS buffer, cut to a small one (295)', async (t) => {
  if (!requireRoot(t)) return;
  const ips = Array.from({ length: 50 }, (_, k) => `10.40.4.${k + 1}`);
  weave(1, ['dns-add', ...ips, '-h', 'big.weave.local']);
  await resolvesEverywhere('big.weave.local', ips.slice().sort());
  for (const i of [2, 3]) {
    const [udp, tcp, edns700, edns4096] = await ask(i, [
      { name: 'big.weave.local' },
      { name: 'big.weave.local', transport: 'tcp' },
      { name: 'big.weave.local', ednsSize: 700 },
      { name: 'big.weave.local', ednsSize: 4096 },
    ]);
    assert.equal(udp!.tc, true);
    assert.ok(udp!.bytes! <= 512 && udp!.answers!.length > 10 && udp!.answers!.length < 50, `UDP: ${udp!.answers!.length} answers in ${udp!.bytes} bytes`);
    assert.equal(tcp!.tc, false);
    assert.equal(tcp!.answers!.length, 50);
    assert.deepEqual(tcp!.answers!.map((a) => a.data).sort(), ips.slice().sort());
    assert.equal(edns700!.tc, true);
    assert.ok(edns700!.bytes! <= 700 && edns700!.answers!.length > udp!.answers!.length, `EDNS 700: ${edns700!.answers!.length} answers in ${edns700!.bytes} bytes`);
    assert.equal(edns700!.opt, 1);
    assert.equal(edns4096!.tc, false);
    assert.equal(edns4096!.answers!.length, 50);
  }
  // dns-lookup retries over TCP and prints every address.
  assert.equal(weave(2, ['dns-lookup', 'big.weave.local']).trim().split('\n').length, 50);
  // Answers are shuffled.
  const orders = new Set((await ask(2, Array.from({ length: 5 }, () => ({ name: 'big.weave.local', transport: 'tcp' as const })))).map((r) => r.answers!.map((a) => a.data).join()));
  assert.ok(orders.size > 1, 'answers come in different orders');
  weave(1, ['dns-remove', ...ips, '-h', 'big.weave.local']);
  await resolvesEverywhere('big.weave.local', undefined);
});

test('names outside the domain go to the --resolv-conf upstream, over UDP and TCP (290)', async (t) => {
  if (!requireRoot(t)) return;
  const [a, tcp, mx, ptr] = await ask(1, [
    { name: 'ext.example.test' },
    { name: 'ext.example.test', transport: 'tcp' },
    { name: 'ext.example.test', type: 'MX' },
    { name: '99.2.0.192.in-addr.arpa', type: 'PTR' },
  ]);
  assert.deepEqual(a!.answers!.map((x) => x.data), ['192.0.2.99']);
  assert.deepEqual(tcp!.answers!.map((x) => x.data), ['192.0.2.99']);
  assert.equal(mx!.rcode, 'NOERROR');
  assert.match(mx!.answers![0]!.data, /mail\.example\.test/);
  assert.deepEqual(ptr!.answers!.map((x) => x.data), ['ext.example.test']);
  // Our own address (127.0.0.1 in host 1's resolv.conf) is never an upstream.
  assert.deepEqual(JSON.parse(weave(1, ['report'])).DNS.Upstream, ['127.0.0.53']);
});

test('entries come back after kill -9 and a restart (255)', async (t) => {
  if (!requireRoot(t)) return;
  await h(1).stopWeaver('SIGKILL');
  // The others drop the entries of the peer that left.
  await eventually(async () => (await lookup(2, 'host1.weave.local')) === undefined && (await lookup(3, 'host1.weave.local')) === undefined, 20_000, 'host1 entries gone on hosts 2 and 3');
  assert.deepEqual(await lookup(2, 'svc.weave.local'), ['10.40.1.2', '10.40.1.3']);
  const started = Date.now();
  await launch(1, [], [ip(2), ip(3)]);
  await meshUp();
  // Host 1 re-registers its own names (persisted) and learns the others' by gossip.
  await resolvesEverywhere('svc.weave.local', ['10.40.1.1', '10.40.1.2', '10.40.1.3']);
  await resolvesEverywhere('host1.weave.local', ['10.40.0.1']);
  await resolvesEverywhere('host3.weave.local', ['10.40.0.3']);
  await resolvesEverywhere('cycle.weave.local', ['10.40.2.1']);
  await resolvesEverywhere('CASE.weave.local', ['10.40.3.1', '10.40.3.2']);
  t.diagnostic(`restarted host1 and all names back everywhere in ${Date.now() - started} ms`);
  // What was removed before the restart stays removed.
  await resolvesEverywhere('big.weave.local', undefined);
  assert.match(await h(1).client.call('GET', '/metrics', 'm'), /^weave_dns_entries 4$/m);
});

test('--no-dns: no DNS routes, section, metric or server (205)', async (t) => {
  if (!requireRoot(t)) return;
  await launch(2, ['--no-dns']);
  assert.equal(weave(2, ['dns-args']), '');
  assert.equal((await h(2).client.request('GET', '/domain')).status, 404);
  assert.equal((await h(2).client.request('PUT', '/name/x/10.1.1.1', { form: { fqdn: 'x.weave.local' } })).status, 404);
  assert.doesNotMatch(weave(2, ['status']), /Service: dns/);
  assert.equal(weave(2, ['status', 'dns']), '');
  assert.doesNotMatch(await h(2).client.call('GET', '/metrics', 'm'), /weave_dns_entries/);
  const add = h(2).weave(['dns-add', '10.40.9.1', '-h', 'x.weave.local']);
  assert.equal(add.code, 1);
  assert.match(add.stderr, /--no-dns/);
  assert.match((await ask1(2, { name: 'host1.weave.local', timeoutMs: 1000 })).error ?? '', /ECONNREFUSED|no DNS answer|failed/);
  // The others carry on without it.
  await meshUp();
  assert.deepEqual(await lookup(1, 'host3.weave.local'), ['10.40.0.3']);
});

test('a custom domain with and without the trailing dot, subdomains and unqualified names (220, 225)', async (t) => {
  if (!requireRoot(t)) return;
  for (const i of [1, 2, 3]) await h(i).stopWeaver('SIGKILL');
  await launch(1, ['--dns-domain', 'foo.bar']);
  await launch(2, ['--dns-domain', 'foo.bar.']);
  await launch(3, ['--dns-domain', 'foo.bar.']);
  await meshUp();
  assert.equal(await h(1).client.call('GET', '/domain', 'd'), 'foo.bar.');
  // Host 3's exposed address persisted: its DNS server is back on the bridge.
  assert.equal(await h(3).client.call('GET', '/dns-address-port', 'd'), `${BRIDGE3}:53`);
  // Names of the old domain did not come back.
  assert.equal(weave(1, ['status', 'dns']), '');
  weave(1, ['dns-add', '10.40.5.1', '-h', 'a.foo.bar']);
  weave(2, ['dns-add', '10.40.5.2', '-h', 'b.sub.foo.bar.']);
  await resolvesEverywhere('a.foo.bar', ['10.40.5.1']);
  await resolvesEverywhere('b.sub.foo.bar', ['10.40.5.2']);
  await resolvesEverywhere('a', ['10.40.5.1']);
  assert.equal((await ask1(3, { name: 'nosuch.sub.foo.bar' })).rcode, 'NXDOMAIN');
  assert.equal(weave(3, ['dns-args']), `--dns=${BRIDGE3} --dns-search=foo.bar.\n`);
  assert.match(weave(2, ['status']), /\n         Domain: foo\.bar\.\n/);
  const wrong = h(1).weave(['dns-add', '10.40.5.3', '-h', 'c.weave.local']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /not in the weaveDNS domain foo\.bar\./);
  // weave.local is not ours any more: forwarded (host 1's upstream does not know it).
  assert.equal((await ask1(1, { name: 'host1.weave.local' })).rcode, 'NXDOMAIN');
});
