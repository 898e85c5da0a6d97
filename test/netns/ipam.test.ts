// Distributed IPAM across three hosts (network namespaces on one underlay bridge), the
// original's scenarios: concurrent allocations are unique; kill -9 during allocations and a
// restart keep what was given (also without the store: attached containers are claimed back);
// observers cannot vote but can call an election; seed mode allocates while disconnected; a
// range change discards the old ring; rolling reset + launch keeps allocation working; rmpeer
// of a killed owner frees its space, and is refused for a live one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Netns, eventually, hostsOnUnderlay, requireRoot, uniquePrefix } from '../helpers/netns.js';

const prefix = uniquePrefix();
const containers: Netns[] = [];
const { hosts, host: h } = hostsOnUnderlay(prefix, 'i', 3, () => {
  for (const c of containers) c.destroy();
});
const ip = (i: number) => `192.0.2.${i}`;
const name = (i: number) => `7a:00:00:00:00:0${i}`;
const others = (i: number) => [1, 2, 3].filter((j) => j !== i).map(ip);

async function launch(i: number, args: string[] = []): Promise<void> {
  await h(i).stopWeaver('SIGKILL');
  await h(i).startWeaver({ name: name(i), nickname: `host${i}`, args: ['--no-dns', ...args] });
}

/** Every router stopped, containers gone and stores wiped: each test starts from scratch. */
async function fresh(): Promise<void> {
  for (const c of containers.splice(0)) c.destroy();
  for (const x of hosts) {
    await x.stopWeaver('SIGKILL');
    rmSync(join(x.dir, 'data'), { recursive: true, force: true });
    x.ns.run('ip', ['link', 'del', 'weave']);
  }
}

/** Resolves with the promise's value, or undefined if it takes longer than ms. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const addrOf = (cidr: string) => cidr.split('/')[0]!;
/** The end of a host's log, for failure messages. */
const tail = (i: number) => `--- host${i} log:\n${h(i).log().split('\n').slice(-40).join('\n')}`;

function assertUnique(cidrs: string[], what: string): void {
  const seen = new Map<string, number>();
  for (const c of cidrs) seen.set(addrOf(c), (seen.get(addrOf(c)) ?? 0) + 1);
  const dups = [...seen].filter(([, n]) => n > 1).map(([a]) => a);
  assert.deepEqual(dups, [], `${what}: addresses given twice`);
}

async function statusIpam(i: number): Promise<string> {
  return (await h(i).client.request('GET', '/status/ipam')).body;
}

test('concurrent allocations on all hosts give unique addresses from one ring', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  await Promise.all([1, 2, 3].map((i) => launch(i, others(i))));
  const per = 15;
  const got = await within(
    Promise.all([1, 2, 3].flatMap((i) => Array.from({ length: per }, (_, k) => h(i).client.allocate(`h${i}-c${k}`)))),
    60_000,
  );
  assert.ok(got, 'allocations finished within 60 s');
  assert.equal(got.length, 3 * per);
  assertUnique(got, 'concurrent allocations');
  for (const c of got) assert.match(c, /^10\.(3[2-9]|4[0-7])\.\d+\.\d+\/12$/);
  // Every host sees the same ring: three owners sharing the whole /12.
  for (const i of [1, 2, 3]) {
    const text = await eventually(async () => {
      const s = await statusIpam(i);
      return s.split('\n').filter((l) => /IPs \(/.test(l)).length === 3 ? s : undefined;
    }, 20_000, `host${i} sees three owners`) ?? '';
    const total = text.split('\n').filter((l) => l).reduce((n, l) => n + Number(/ (\d+) IPs/.exec(l)?.[1] ?? 0), 0);
    assert.equal(total, 1 << 20, text);
    assert.match(text, new RegExp(`^${name(i)}\\(host${i}\\) +\\d+ IPs \\(\\d\\d\\.\\d% of total\\) \\(${per} active\\)$`, 'm'));
  }
  assert.equal((await within(h(2).client.request('GET', '/ring'), 5000))?.status, 200);
  assert.match((await h(3).client.request('GET', '/status')).body, /\n         Status: ready\n/);
});

test('kill -9 during allocations and restart: what was given stays given; without the store attached containers are claimed back', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  await Promise.all([1, 2, 3].map((i) => launch(i, others(i))));
  const before = await within(Promise.all([1, 2, 3].map((i) => h(i).client.allocate(`first${i}`))), 60_000);
  assert.ok(before, 'first allocations');
  // A container attached on host 2 (its address recorded on the host veth).
  const ns = new Netns(`${prefix}-c2`);
  containers.push(ns);
  const att = h(2).weave(['attach', ns.path]);
  assert.equal(att.code, 0, att.stderr);
  const containerAddr = att.stdout.trim();
  // Allocations in flight on host 2 when it dies.
  const inFlight = Array.from({ length: 10 }, (_, k) => h(2).client.allocate(`flight${k}`).catch(() => undefined));
  await new Promise((r) => setTimeout(r, 30));
  await h(2).stopWeaver('SIGKILL');
  const answered = (await Promise.all(inFlight)).filter((x): x is string => typeof x === 'string');
  await launch(2, others(2));
  // Whatever host 2 answered before it died is still held by the same ident.
  for (let k = 0; k < 10; k++) {
    const cidr = await inFlight[k];
    if (typeof cidr === 'string') assert.deepEqual(await h(2).client.lookup(`flight${k}`), [cidr], `flight${k}`);
  }
  assert.deepEqual(await h(2).client.lookup('first2'), [before[1]!]);
  // Now lose the store: host 2 must not hand out the attached container's address.
  await h(2).stopWeaver('SIGKILL');
  rmSync(join(h(2).dir, 'data'), { recursive: true, force: true });
  await launch(2, others(2));
  const reclaimed = await eventually(async () => {
    const ids = (await h(2).client.lookup(ns.name)).map(addrOf);
    return ids.includes(containerAddr) ? ids : undefined;
  }, 20_000, 'the attached container\'s address claimed back under its ident');
  assert.ok(reclaimed);
  const after = await within(Promise.all([1, 2, 3].flatMap((i) => [0, 1, 2, 3, 4].map((k) => h(i).client.allocate(`after${i}-${k}`)))), 60_000);
  assert.ok(after, 'allocations after the restarts');
  // Host 2 lost the record of its other allocations, but their owners (this test) still hold them.
  assertUnique([...before.filter((_, k) => k !== 1), containerAddr, ...after], 'after kill -9 and store loss');
  assert.ok(!after.map(addrOf).includes(containerAddr), 'the container\'s address was not given again');
  void answered;
});

test('observers cannot vote: an elector and an observer never reach consensus=2; a second elector does', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  await launch(1, ['--ipalloc-init', 'consensus=2', ip(2), ip(3)]);
  await launch(2, ['--ipalloc-init', 'observer', ip(1), ip(3)]);
  const waiting = h(1).client.allocate('e1');
  assert.equal(await within(waiting, 4000), undefined, 'no ring from one vote');
  assert.match((await h(1).client.request('GET', '/status')).body, /\n         Status: awaiting consensus \(quorum: 2, known: \d\)\n/);
  // The observer has not been asked for anything: nothing to wait for yet; once asked, it primes.
  assert.match((await h(2).client.request('GET', '/status')).body, /\n         Status: idle\n/);
  const observerWaiting = h(2).client.allocate('o2');
  await eventually(async () => /\n         Status: priming\n/.test((await h(2).client.request('GET', '/status')).body), 5000, 'observer priming');
  await launch(3, ['--ipalloc-init', 'consensus=2', ip(1), ip(2)]);
  assert.ok(await within(waiting, 10_000), `the second elector completed the vote\n${tail(1)}`);
  assert.ok(await within(observerWaiting, 10_000), 'the observer allocates from the ring');
});

test('observers can call an election: an allocation on an observer makes the electors agree', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  await launch(1, [ip(2), ip(3)]);
  await launch(2, [ip(1), ip(3)]);
  await launch(3, ['--ipalloc-init', 'observer', ip(1), ip(2)]);
  await new Promise((r) => setTimeout(r, 2000));
  for (const i of [1, 2, 3]) assert.equal(await statusIpam(i), '', `host${i}: no ring while nobody asked`);
  const got = await within(h(3).client.allocate('o3'), 10_000);
  assert.ok(got, `the observer's request started consensus\n${tail(3)}`);
  assert.deepEqual(await h(3).client.lookup('o3'), [got]);
});

test('seed mode allocates while disconnected; the two halves join into one ring', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  const seed = `seed=${name(1)},${name(2)}`;
  await launch(1, ['--ipalloc-init', seed]);
  await launch(2, ['--ipalloc-init', seed]);
  // A peer without a store first gives owners it cannot reach 10 s to show up (it cannot tell
  // a first start from a lost store), then trusts the ring the seed defines.
  const a = await within(h(1).client.allocate('s1'), 20_000);
  const b = await within(h(2).client.allocate('s2'), 20_000);
  assert.ok(a && b, 'both allocate at once without any connection');
  assert.notEqual(addrOf(a), addrOf(b));
  const r = h(1).weave(['connect', ip(2)]);
  assert.equal(r.code, 0, r.stderr);
  for (const i of [1, 2]) {
    await eventually(async () => (await statusIpam(i)).split('\n').filter((l) => /IPs \(/.test(l)).length === 2, 20_000, `host${i} ring has both seeds`);
    assert.match((await h(i).client.request('GET', '/status')).body, /\n         Status: ready\n/);
  }
});

test('a range change discards the persisted ring', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  await launch(1);
  assert.equal(await h(1).client.allocate('r1'), '10.32.0.1/12');
  await launch(1, ['--ipalloc-range', '10.40.0.0/16']);
  assert.deepEqual(await h(1).client.lookup('r1'), []);
  assert.equal(await within(h(1).client.allocate('r2'), 5000), '10.40.0.1/16');
  assert.match(h(1).log(), /Deleting persisted data for IPAM range/);
});

test('rolling reset and launch of every host keeps allocation working', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  await Promise.all([1, 2, 3].map((i) => launch(i, others(i))));
  const held = new Map<string, string>();
  const alloc = async (i: number, ident: string) => {
    const c = await within(h(i).client.allocate(ident), 30_000);
    assert.ok(c, `${ident} on host${i}`);
    held.set(ident, c);
  };
  for (const i of [1, 2, 3]) await alloc(i, `base${i}`);
  for (const i of [1, 2, 3]) {
    // weave reset: leave (our space goes to a live peer), stop, remove the store.
    assert.equal((await h(i).client.request('DELETE', '/peer')).status, 204);
    for (const [k] of held) if (k.endsWith(String(i))) held.delete(k);
    await h(i).stopWeaver('SIGTERM');
    rmSync(join(h(i).dir, 'data'), { recursive: true, force: true });
    await launch(i, others(i));
    for (const j of [1, 2, 3]) await alloc(j, `round${i}-${j}`);
  }
  assertUnique([...held.values()], 'after rolling resets');
  // Nobody's space is left with a peer that left: every owner is one of the running routers.
  const text = await eventually(async () => {
    const s = await statusIpam(1);
    return s.includes('unreachable') ? undefined : s;
  }, 20_000, 'no unreachable owners');
  assert.ok(text);
});

test('rmpeer of a killed owner frees its space for the others; a live peer is refused', async (t) => {
  if (!requireRoot(t)) return;
  await fresh();
  // Host 1 alone makes the ring and owns all of it; then the others join and borrow.
  await launch(1);
  assert.ok(await within(h(1).client.allocate('own1'), 10_000));
  await launch(2, [ip(1)]);
  await launch(3, [ip(1), ip(2)]);
  assert.ok(await within(h(2).client.allocate('own2'), 30_000));
  const refused = h(2).weave(['rmpeer', name(3)]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /reachable/);
  await h(1).stopWeaver('SIGKILL');
  await eventually(async () => (await statusIpam(2)).includes(`${name(1)}(host1)`) && (await statusIpam(2)).includes('- unreachable!'), 20_000, 'host1 shown unreachable');
  assert.match(await h(2).client.call('GET', '/metrics', 'm'), /^weave_ipam_unreachable_count 1$/m);
  const r = h(2).weave(['rmpeer', name(1)]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^\\d+ IPs taken over from ${name(1)}\\n$`));
  assert.ok(Number(/^(\d+)/.exec(r.stdout)?.[1]) > 0);
  const a = await within(h(2).client.allocate('after2'), 10_000);
  const b = await within(h(3).client.allocate('after3'), 10_000);
  assert.ok(a && b, 'allocation works on host2 and host3 after rmpeer');
  await eventually(async () => !(await statusIpam(3)).includes(name(1)), 20_000, 'host1 gone from host3\'s ring');
});
