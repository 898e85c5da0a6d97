// Connection maker: when and what it dials, driven by a FakeClock and a seeded random source;
// and the duplicate-connection tie-break both ends must agree on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { WeaveError, isWeaveError } from '../../../src/core/errors.js';
import { MemoryLogger, silentLogger } from '../../../src/core/logger.js';
import type { PeerName } from '../../../src/core/peer-name.js';
import {
  ConnectionMaker, DEFAULT_MESH_PORT, DuplicateConnectionError, HOST_LOOKUP_REFRESH_MS, INITIAL_RETRY_INTERVAL_MS, MAX_RETRY_INTERVAL_MS, RESET_AFTER_MS,
  formatGoTime, parsePeerAddress, preferConnection, type ConnectionIdentity, type ConnectionMakerOptions, type TopologyConnection,
} from '../../../src/mesh/connection-maker.js';
import { seeded } from '../../helpers/prng.js';

const OUR_NAME: PeerName = 0x0a0000000001;
const START_MS = 1_700_000_000_000;

interface Dial { address: string; direct: boolean; atMs: number }

function setup(opts: Partial<ConnectionMakerOptions> & { random?: () => number; start?: boolean } = {}) {
  const clock = new FakeClock(START_MS);
  const dials: Dial[] = [];
  const persisted: string[][] = [];
  let saveFails = false;
  const cm = new ConnectionMaker(
    {
      clock,
      random: opts.random ?? seeded(42),
      logger: silentLogger,
      dial: (address, attempt) => dials.push({ address, direct: attempt.direct, atMs: clock.now() }),
      saveTargets: (t) => {
        if (saveFails) throw new Error('store write of directPeers failed (disk full)');
        persisted.push(t);
      },
    },
    { ourName: OUR_NAME, port: opts.port ?? DEFAULT_MESH_PORT, discovery: opts.discovery ?? true },
  );
  if (opts.start !== false) cm.start();
  const dialled = () => dials.map((d) => d.address);
  const row = (address: string) => cm.status().find((s) => s.address === address);
  return { clock, dials, persisted, cm, dialled, row, failSaves: (on: boolean) => void (saveFails = on) };
}

const fail = new Error('dial tcp4 10.0.0.2:6783: connect: connection refused');

test('first try is immediate; nothing is dialled before start()', () => {
  const { cm, dials, clock } = setup({ start: false });
  assert.deepEqual(cm.initiate(['10.0.0.2'], false), []);
  assert.equal(dials.length, 0);
  cm.start();
  assert.deepEqual(dials, [{ address: '10.0.0.2:6783', direct: true, atMs: START_MS }]);
  assert.deepEqual(cm.status(), [{ address: '10.0.0.2:6783', state: 'connecting', info: '' }]);
  cm.start(); // idempotent: no second dial
  clock.advance(60_000);
  assert.equal(dials.length, 1, 'an attempt in flight is not re-dialled');
});

test('backoff: 2 s then x1.5 per failure, jittered in [i/2, 3i/2), capped at 6 min', () => {
  for (const seed of [1, 7, 42, 2024]) {
    const { cm, dials, clock, row } = setup({ random: seeded(seed) });
    cm.initiate(['10.0.0.2:6783'], false);
    let interval = INITIAL_RETRY_INTERVAL_MS;
    for (let n = 0; n < 30; n++) {
      assert.equal(dials.length, n + 1);
      cm.connectionFailed('10.0.0.2:6783', fail);
      const r = row('10.0.0.2:6783');
      assert.equal(r?.state, 'failed');
      const delay = (r?.tryAfter ?? NaN) - clock.now();
      assert.ok(delay >= interval / 2 && delay < (3 * interval) / 2, `seed ${seed} failure ${n}: ${delay} not in [${interval / 2}, ${(3 * interval) / 2})`);
      clock.advance(delay - 1);
      assert.equal(dials.length, n + 1, 'not before its time');
      clock.advance(1);
      assert.equal(dials.length, n + 2, 'exactly on its time');
      assert.equal(row('10.0.0.2:6783')?.state, 'retrying');
      interval = Math.min(interval * 1.5, MAX_RETRY_INTERVAL_MS);
    }
    assert.equal(interval, MAX_RETRY_INTERVAL_MS, 'the cap was reached');
  }
});

test('backoff with the jitter at its midpoint is exactly 2, 3, 4.5, 6.75 s ... 6 min', () => {
  const { cm, dials, clock, row } = setup({ random: () => 0.5 });
  cm.initiate(['10.0.0.2'], false);
  for (let n = 0; n < 16; n++) {
    cm.connectionFailed('10.0.0.2:6783', fail);
    const before = dials.length;
    clock.advance((row('10.0.0.2:6783')?.tryAfter ?? NaN) - clock.now());
    assert.equal(dials.length, before + 1);
  }
  const gaps = dials.slice(1).map((d, i) => d.atMs - (dials[i]?.atMs ?? 0));
  const expected = [2000, 3000, 4500, 6750, 10125, 15187.5, 22781.25, 34171.875, 51257.8125, 76886.71875, 115330.078125,
    172995.1171875, 259492.67578125, 360000, 360000, 360000];
  assert.equal(gaps.length, expected.length);
  gaps.forEach((g, i) => assert.ok(Math.abs(g - (expected[i] ?? 0)) < 1e-6, `gap ${i}: ${g} != ${expected[i]}`));
});

test('a connection that outlived its try time by more than 1 min is retried at once, with the backoff reset', () => {
  const { cm, dials, clock, row } = setup({ random: () => 0.999 });
  cm.initiate(['10.0.0.2'], false);
  for (let n = 0; n < 5; n++) {
    cm.connectionFailed('10.0.0.2:6783', fail);
    clock.advance(MAX_RETRY_INTERVAL_MS);
  }
  assert.equal(dials.length, 6);
  const triedAt = clock.now();
  cm.connectionAdded('10.0.0.2:6783', 0x0a0000000002);
  assert.equal(row('10.0.0.2:6783')?.state, 'connected');
  clock.advance(RESET_AFTER_MS + 1);
  cm.connectionTerminated('10.0.0.2:6783', new Error('read: connection reset by peer'));
  assert.equal(dials.length, 7, 'immediate redial');
  assert.equal(dials[6]?.atMs, triedAt + RESET_AFTER_MS + 1);
  cm.connectionFailed('10.0.0.2:6783', fail);
  const delay = (row('10.0.0.2:6783')?.tryAfter ?? NaN) - clock.now();
  assert.ok(delay >= 1000 && delay < 3000, `backoff restarted from 2 s, got ${delay}`);
});

test('a short-lived connection is retried after the next backoff step', () => {
  const { cm, dials, clock, row } = setup({ random: () => 0.5 });
  cm.initiate(['10.0.0.2'], false);
  cm.connectionFailed('10.0.0.2:6783', fail); // next try in 2 s, interval now 3 s
  clock.advance(2000);
  cm.connectionAdded('10.0.0.2:6783', 0x0a0000000002);
  clock.advance(RESET_AFTER_MS); // exactly 1 min: not more than
  cm.connectionTerminated('10.0.0.2:6783', new Error('EOF'));
  assert.equal(dials.length, 2);
  const r = row('10.0.0.2:6783');
  assert.equal(r?.state, 'failed');
  assert.equal((r?.tryAfter ?? NaN) - clock.now(), 3000);
  assert.equal(r?.info, `EOF, retry: ${formatGoTime(r?.tryAfter ?? 0)}`);
});

test('handshake failures reported as a termination (no connection added) back off too', () => {
  const { cm, dials, clock, row } = setup({ random: () => 0.5 });
  cm.initiate(['10.0.0.2'], false);
  cm.connectionTerminated('10.0.0.2:6783', new Error('remote protocol header not recognised'));
  assert.equal(row('10.0.0.2:6783')?.state, 'failed');
  clock.advance(1999);
  assert.equal(dials.length, 1);
  clock.advance(1);
  assert.equal(dials.length, 2);
});

test('name collision / connection to ourselves: never retried until asked again', () => {
  const { cm, dials, clock, row } = setup();
  cm.initiate(['10.0.0.2', '10.0.0.3'], false);
  cm.connectionRefusedPermanently('10.0.0.2:6783', new Error('cannot connect to ourself'));
  cm.connectionAdded('10.0.0.3:6783', 0x0a0000000003);
  cm.connectionRefusedPermanently('10.0.0.3:6783', new Error('Peer name collision'));
  cm.connectionFailed('10.0.0.2:6783', new Error('closed')); // the router's later close report changes nothing
  cm.connectionTerminated('10.0.0.3:6783', new Error('closed'));
  const r = row('10.0.0.2:6783');
  assert.equal(r?.state, 'failed');
  assert.equal(r?.info, 'cannot connect to ourself, retry: never');
  assert.equal(r?.tryAfter, undefined);
  assert.equal(row('10.0.0.3:6783')?.info, 'Peer name collision, retry: never');
  clock.advance(24 * 3600_000);
  assert.equal(dials.length, 2);
  assert.equal(clock.pendingCount, 0, 'no timer for targets that are never retried');
  assert.deepEqual(cm.targets(), ['10.0.0.2', '10.0.0.3'], 'still a direct peer');
  cm.initiate(['10.0.0.2'], false);
  assert.equal(dials.length, 3, 'asking again retries at once');
  assert.equal(dials[2]?.address, '10.0.0.2:6783');
});

test('discovery: outbound addresses as gossiped, inbound ones on our port; forgotten when gone', () => {
  const { cm, dials, clock, row } = setup({ port: 7000 });
  const A = 0x0a0000000002, B = 0x0a0000000003, C = 0x0a0000000004, D = 0x0a0000000005;
  const topology: TopologyConnection[] = [
    { from: A, to: B, remoteTcpAddr: '10.0.0.3:6783', outbound: true },
    { from: B, to: C, remoteTcpAddr: '10.0.0.4:45678', outbound: false },
    { from: A, to: OUR_NAME, remoteTcpAddr: '10.0.0.1:7000', outbound: true }, // a connection to us: no target
    { from: OUR_NAME, to: D, remoteTcpAddr: '10.0.0.5:7000', outbound: true }, // our own: no target
    { from: C, to: A, remoteTcpAddr: '10.0.0.2:7000', outbound: true }, // A is connected to us: skipped
    { from: C, to: B, remoteTcpAddr: 'garbage', outbound: true },
  ];
  cm.connectionAdded('10.0.0.2:7000', A);
  cm.refresh({ connections: topology });
  assert.deepEqual(dials.map((d) => [d.address, d.direct]), [['10.0.0.3:6783', false], ['10.0.0.4:7000', false]]);

  cm.connectionFailed('10.0.0.3:6783', fail);
  cm.connectionFailed('10.0.0.4:7000', fail);
  assert.equal(row('10.0.0.3:6783')?.state, 'failed');
  cm.refresh({ connections: [] });
  assert.equal(row('10.0.0.3:6783'), undefined, 'discovered targets are forgotten when no longer valid');
  assert.equal(row('10.0.0.4:7000'), undefined);
  clock.advance(MAX_RETRY_INTERVAL_MS * 2);
  assert.equal(dials.length, 2);

  // A target in flight survives until its outcome, then goes.
  cm.refresh({ connections: topology.slice(0, 1) });
  assert.equal(dials.length, 3);
  cm.refresh({ connections: [] });
  assert.equal(row('10.0.0.3:6783')?.state, 'connecting');
  cm.connectionFailed('10.0.0.3:6783', fail);
  assert.equal(row('10.0.0.3:6783'), undefined);
});

test('a discovered peer that closes on us backs off: the refresh still listing it as connected does not drop the target', () => {
  const { cm, dials, clock, row } = setup({ random: () => 0.5 });
  const A = 0x0a0000000002, H = 0x0a0000000009;
  // A is connected to H, which takes us in after the handshake, then closes (at its connection limit).
  const topology: TopologyConnection[] = [{ from: A, to: H, remoteTcpAddr: '10.0.0.9:6783', outbound: true }];
  cm.refresh({ connections: topology });
  for (let n = 1; n <= 4; n++) {
    assert.equal(dials.length, n);
    cm.connectionAdded('10.0.0.9:6783', H);
    cm.refresh({ connections: topology, connectedPeers: [H] }); // the router's refresh after the add
    // The router reports the close at once and refreshes later (a microtask): its snapshot says H.
    cm.connectionTerminated('10.0.0.9:6783', new Error('connection closed by peer'));
    assert.equal(row('10.0.0.9:6783')?.state, 'failed', 'kept, as the connection it judges by is gone');
    cm.refresh({ connections: topology, connectedPeers: [] });
    assert.equal(dials.length, n, 'not redialled at once');
    const r = row('10.0.0.9:6783');
    assert.equal(r?.state, 'failed');
    const delay = (r?.tryAfter ?? NaN) - clock.now();
    assert.equal(delay, INITIAL_RETRY_INTERVAL_MS * 1.5 ** (n - 1), 'the backoff grows');
    clock.advance(delay);
  }
});

test('a target dropped while it backs off takes its backoff up again when re-created, until 1 min past its try time', () => {
  const { cm, dials, clock, row } = setup({ random: () => 0.5 });
  const A = 0x0a0000000002, H = 0x0a0000000009;
  const topology: TopologyConnection[] = [{ from: A, to: H, remoteTcpAddr: '10.0.0.9:6783', outbound: true }];
  cm.refresh({ connections: topology });
  cm.connectionFailed('10.0.0.9:6783', fail); // next try in 2 s, then 3 s
  const tryAfter = row('10.0.0.9:6783')?.tryAfter;
  // The link A-H flaps in the gossip: the target goes, and comes back.
  cm.refresh({ connections: [] });
  assert.equal(row('10.0.0.9:6783'), undefined);
  clock.advance(500);
  cm.refresh({ connections: topology });
  assert.equal(dials.length, 1, 'not dialled at once');
  assert.equal(row('10.0.0.9:6783')?.tryAfter, tryAfter);
  assert.equal(row('10.0.0.9:6783')?.info, `${fail.message}, retry: ${formatGoTime(tryAfter ?? 0)}`);
  clock.advance(1500);
  assert.equal(dials.length, 2, 'on its time');
  cm.connectionFailed('10.0.0.9:6783', fail);
  assert.equal((row('10.0.0.9:6783')?.tryAfter ?? NaN) - clock.now(), 3000, 'and the next step');

  // Gone for longer than its try time + 1 min: a fresh start, as a connection that lived as long.
  cm.refresh({ connections: [] });
  clock.advance(3000 + RESET_AFTER_MS + 1);
  cm.refresh({ connections: topology });
  assert.equal(dials.length, 3);
  cm.connectionFailed('10.0.0.9:6783', fail);
  assert.equal((row('10.0.0.9:6783')?.tryAfter ?? NaN) - clock.now(), INITIAL_RETRY_INTERVAL_MS);

  // Asking for the address cuts a remembered backoff short, as any other.
  cm.refresh({ connections: [] });
  cm.initiate(['10.0.0.9'], false);
  assert.equal(dials.length, 4);
});

test('discovery: peers we are already connected to are not dialled at another address', () => {
  const { cm, dials } = setup();
  const B = 0x0a0000000003;
  cm.connectionAdded('10.9.9.9:51000', B, false);
  cm.refresh({ connections: [{ from: 0x0a0000000002, to: B, remoteTcpAddr: '10.0.0.3:6783', outbound: true }] });
  assert.equal(dials.length, 0);
  cm.refresh({ connections: [{ from: 0x0a0000000002, to: 0x0a0000000007, remoteTcpAddr: '10.0.0.7:6783', outbound: true }], connectedPeers: [0x0a0000000007] });
  assert.equal(dials.length, 0, 'the caller may say whom we are connected to');
  cm.connectionTerminated('10.9.9.9:51000', new Error('EOF'), false);
  cm.refresh({ connections: [{ from: 0x0a0000000002, to: B, remoteTcpAddr: '10.0.0.3:6783', outbound: true }] });
  assert.deepEqual(dials.map((d) => d.address), ['10.0.0.3:6783']);
});

test('discovery off: only direct peers are dialled', () => {
  const { cm, dialled } = setup({ discovery: false });
  cm.initiate(['10.0.0.2'], false);
  cm.refresh({ connections: [{ from: 0x0a0000000002, to: 0x0a0000000003, remoteTcpAddr: '10.0.0.3:6783', outbound: true }] });
  assert.deepEqual(dialled(), ['10.0.0.2:6783']);
});

test('initiate: normalises host[:port], keeps the text given, reports unparsable addresses', () => {
  const { cm, dials, persisted } = setup();
  const errors = cm.initiate(['10.0.0.2', 'peer-3.example.com:7000', 'node4', '1.2.3.4:99999', 'bad host', '::1', '[::1]:6783', '', '10.0.0.256', 'h:x'], false);
  assert.equal(errors.length, 7);
  assert.ok(errors.every((e) => e.startsWith('invalid peer address')));
  assert.deepEqual(cm.targets(), ['10.0.0.2', 'peer-3.example.com:7000', 'node4']);
  assert.deepEqual(dials.map((d) => [d.address, d.direct]), [['10.0.0.2:6783', true], ['peer-3.example.com:7000', true], ['node4:6783', true]]);
  assert.deepEqual(persisted, [['10.0.0.2', 'peer-3.example.com:7000', 'node4']]);
  cm.initiate(['10.0.0.2'], false);
  assert.equal(persisted.length, 1, 'no change, no persistence call');
});

test('a launch with no peers saves the empty list, so a later --resume does not dial the peers of a run before', () => {
  const { cm, persisted, dials } = setup();
  cm.initiate([], true); // weaver's launch: the list given, replacing
  assert.deepEqual(persisted, [[]]);
  assert.deepEqual(dials, []);
  cm.initiate([], true);
  assert.equal(persisted.length, 1, 'no change since, no persistence call');
});

test('initiate with replace: the old direct peers go, their waiting targets with them', () => {
  const { cm, dials, clock, persisted, row } = setup();
  cm.initiate(['10.0.0.2', '10.0.0.3'], false);
  cm.connectionFailed('10.0.0.2:6783', fail);
  cm.connectionAdded('10.0.0.3:6783', 0x0a0000000003);
  cm.initiate(['10.0.0.4'], true);
  assert.deepEqual(cm.targets(), ['10.0.0.4']);
  assert.deepEqual(persisted.at(-1), ['10.0.0.4']);
  assert.equal(row('10.0.0.2:6783'), undefined);
  assert.equal(row('10.0.0.3:6783')?.state, 'connected', 'live connections are left alone');
  clock.advance(MAX_RETRY_INTERVAL_MS);
  assert.deepEqual(dials.map((d) => d.address), ['10.0.0.2:6783', '10.0.0.3:6783', '10.0.0.4:6783']);
  cm.connectionTerminated('10.0.0.3:6783', new Error('EOF'));
  assert.equal(row('10.0.0.3:6783'), undefined, 'no longer a target once its connection ends');
  clock.advance(MAX_RETRY_INTERVAL_MS);
  assert.equal(dials.length, 3);
  // Without replace, initiate adds, and cuts any backoff short.
  cm.connectionFailed('10.0.0.4:6783', fail);
  cm.initiate(['10.0.0.5', '10.0.0.4'], false);
  assert.deepEqual(cm.targets(), ['10.0.0.4', '10.0.0.5']);
  assert.deepEqual(dials.slice(3).map((d) => d.address).sort(), ['10.0.0.4:6783', '10.0.0.5:6783']);
});

test('a change the store cannot save (a full disk) is not made: the error reaches the caller, nothing is dialled', () => {
  const { cm, dials, clock, persisted, failSaves } = setup();
  cm.initiate(['10.0.0.2'], false);
  assert.equal(dials.length, 1);
  failSaves(true);
  assert.throws(() => cm.initiate(['10.0.0.3'], false), /disk full/);
  assert.throws(() => cm.initiate(['10.0.0.4'], true), /disk full/);
  assert.throws(() => cm.forget(['10.0.0.2']), /disk full/);
  assert.deepEqual(cm.targets(), ['10.0.0.2'], 'the targets as they were');
  clock.advance(MAX_RETRY_INTERVAL_MS);
  assert.ok(dials.every((d) => d.address === '10.0.0.2:6783'), 'no new peer dialled');
  // Asking again without a change saves nothing, so it still works on a full disk.
  assert.deepEqual(cm.initiate(['10.0.0.2'], false), []);
  failSaves(false);
  cm.initiate(['10.0.0.3'], false);
  assert.deepEqual(persisted.at(-1), ['10.0.0.2', '10.0.0.3']);
  assert.deepEqual(cm.targets(), ['10.0.0.2', '10.0.0.3']);
});

test('forget: by the text given or the address it means; connections stay, retries stop', () => {
  const { cm, dials, clock, persisted, row } = setup();
  cm.initiate(['10.0.0.2', '10.0.0.3:6783', 'node4'], false);
  cm.connectionFailed('10.0.0.2:6783', fail);
  cm.connectionAdded('10.0.0.3:6783', 0x0a0000000003);
  cm.forget(['10.0.0.2:6783', '10.0.0.3:6783', 'not an address!']);
  assert.deepEqual(cm.targets(), ['node4']);
  assert.deepEqual(persisted.at(-1), ['node4']);
  assert.equal(row('10.0.0.2:6783'), undefined);
  assert.equal(row('10.0.0.3:6783')?.state, 'connected');
  clock.advance(MAX_RETRY_INTERVAL_MS);
  assert.equal(dials.length, 3);
  const calls = persisted.length;
  cm.forget(['10.0.0.9']);
  assert.equal(persisted.length, calls, 'nothing forgotten, nothing persisted');
});

test('a direct peer without a port is not dialled while that IP is connected to us inbound', () => {
  const { cm, dialled } = setup();
  const B = 0x0a0000000003;
  cm.connectionAdded('10.0.0.3:40001', B, false);
  cm.initiate(['10.0.0.3'], false);
  assert.deepEqual(dialled(), []);
  assert.deepEqual(cm.targets(), ['10.0.0.3'], 'kept as a direct peer, suspended');
  assert.deepEqual(cm.status(), []);
  cm.initiate(['10.0.0.3:6783'], false);
  assert.deepEqual(dialled(), ['10.0.0.3:6783'], 'with an explicit port it is dialled');
  cm.connectionFailed('10.0.0.3:6783', new DuplicateConnectionError(B));
  cm.forget(['10.0.0.3:6783']);
  cm.initiate(['10.0.0.3'], false);
  cm.connectionTerminated('10.0.0.3:40001', new Error('EOF'), false);
  assert.deepEqual(dialled(), ['10.0.0.3:6783', '10.0.0.3:6783'], 'the inbound one gone, the portless peer is dialled');
});

test('a direct peer written as a host name without a port is not dialled while what it resolves to is connected to us inbound', async () => {
  const clock = new FakeClock(START_MS);
  const dials: string[] = [];
  const lookups: string[] = [];
  const dns = new Map([['host3', ['10.0.0.3']]]);
  const cm = new ConnectionMaker(
    {
      clock,
      random: seeded(1),
      logger: silentLogger,
      dial: (address) => dials.push(address),
      lookupHost: async (host) => {
        lookups.push(host);
        const ips = dns.get(host);
        if (!ips) throw new Error(`lookup ${host}: no such host`);
        return ips;
      },
    },
    { ourName: OUR_NAME },
  );
  cm.start();
  const B = 0x0a0000000003;
  cm.connectionAdded('10.0.0.3:40001', B, false); // host3 found us first
  cm.initiate(['host3', 'host4', '10.0.0.5', 'host6:6783'], false);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(lookups, ['host3', 'host4'], 'only names without a port are looked up');
  // Dialled at once, before the answers came: host3 too, which the lookup then suspends.
  assert.deepEqual(dials, ['host3:6783', 'host4:6783', '10.0.0.5:6783', 'host6:6783']);
  cm.connectionFailed('host3:6783', new DuplicateConnectionError(B));
  cm.connectionFailed('host4:6783', new Error('dial tcp4 host4:6783: lookup host4: no such host'));
  clock.advance(MAX_RETRY_INTERVAL_MS);
  await new Promise((r) => setImmediate(r));
  assert.ok(!dials.slice(4).includes('host3:6783'), `host3 re-dialled while it is connected to us: ${dials.join(' ')}`);
  assert.ok(dials.slice(4).includes('host4:6783'), 'a name that does not resolve is still retried');
  assert.deepEqual(cm.targets().sort(), ['10.0.0.5', 'host3', 'host4', 'host6:6783']);
  // The inbound connection goes: host3 is dialled again.
  cm.connectionTerminated('10.0.0.3:40001', new Error('EOF'), false);
  assert.ok(dials.slice(4).includes('host3:6783'));
});

test('host name lookups: one at a time per name, answers in order, again while the name is not dialled, none kept after forget', async () => {
  const clock = new FakeClock(START_MS);
  const dials: string[] = [];
  const pending: { host: string; answer: (ips: string[]) => void }[] = [];
  const cm = new ConnectionMaker(
    {
      clock,
      random: seeded(3),
      logger: silentLogger,
      dial: (address) => dials.push(address),
      lookupHost: (host) => new Promise((resolve) => pending.push({ host, answer: resolve })),
    },
    { ourName: OUR_NAME },
  );
  const settle = () => new Promise((r) => setImmediate(r));
  cm.start();
  const B = 0x0a0000000003;
  cm.initiate(['hostb'], false);
  assert.deepEqual(dials, ['hostb:6783']);
  cm.connectionFailed('hostb:6783', new Error('refused'));
  clock.advance(MAX_RETRY_INTERVAL_MS);
  assert.equal(dials.length, 2, 'dialled again');
  assert.equal(pending.length, 1, 'no second lookup of the name while the first is out');
  pending[0]!.answer(['10.0.0.3']);
  await settle();
  // Connected to us from there: not dialled, and looked up again after HOST_LOOKUP_REFRESH_MS.
  cm.connectionFailed('hostb:6783', new DuplicateConnectionError(B));
  cm.connectionAdded('10.0.0.3:40001', B, false);
  const before = dials.length;
  clock.advance(HOST_LOOKUP_REFRESH_MS + 1);
  assert.equal(pending.length, 2, 'looked up again while not dialled for it');
  assert.equal(dials.length, before);
  // The name moved: now dialled, though 10.0.0.3 is still connected to us.
  pending[1]!.answer(['10.0.0.9']);
  await settle();
  clock.advance(MAX_RETRY_INTERVAL_MS);
  assert.ok(dials.length > before, 'the moved name is dialled');
  // An answer that lands after the name was forgotten is dropped.
  cm.connectionFailed('hostb:6783', new Error('refused'));
  clock.advance(MAX_RETRY_INTERVAL_MS);
  const out = pending.length;
  assert.ok(out > 2);
  cm.forget(['hostb']);
  pending[out - 1]!.answer(['10.0.0.3']);
  await settle();
  assert.equal((cm as unknown as { hostIps: Map<string, unknown> }).hostIps.size, 0);
});

test('duplicate closed: not re-dialled while a connection to that peer stands, promptly after', () => {
  const { cm, dials, clock, row } = setup();
  const B = 0x0a0000000003;
  cm.initiate(['10.0.0.3:6783'], false); // with a port: the inbound-from-same-IP rule does not apply
  // B dialled us at the same moment; its connection won the tie-break and ours was closed.
  cm.connectionAdded('10.0.0.3:51515', B, false);
  cm.connectionFailed('10.0.0.3:6783', new DuplicateConnectionError(B, '0a:00:00:00:00:03(b)', '0a:00:00:00:00:01(a)'));
  const r = row('10.0.0.3:6783');
  assert.equal(r?.state, 'waiting');
  assert.equal(r?.lastError, 'Multiple connections to 0a:00:00:00:00:03(b) added to 0a:00:00:00:00:01(a)');
  clock.advance(3600_000);
  assert.equal(dials.length, 1, 'no retry storm while the surviving connection lives');
  cm.connectionTerminated('10.0.0.3:51515', new Error('EOF'), false);
  assert.equal(dials.length, 2, 'redialled at once when it goes');

  // Same when our established outbound connection is the one closed as a duplicate.
  cm.connectionAdded('10.0.0.3:6783', B);
  cm.connectionAdded('10.0.0.3:52000', B, false);
  cm.connectionTerminated('10.0.0.3:6783', new DuplicateConnectionError(B));
  clock.advance(3600_000);
  assert.equal(dials.length, 2);
  cm.connectionTerminated('10.0.0.3:52000', new Error('EOF'));
  assert.equal(dials.length, 3);
});

test('duplicate closed before the winner is reported: held once it shows; retried by backoff if it never does', () => {
  const { cm, dials, clock, row } = setup({ random: () => 0.5 });
  const B = 0x0a0000000003;
  cm.initiate(['10.0.0.3:6783'], false);
  cm.connectionAdded('10.0.0.3:6783', B);
  cm.connectionTerminated('10.0.0.3:6783', new DuplicateConnectionError(B)); // the winner is not known yet
  assert.equal(dials.length, 1, 'not redialled at once');
  cm.connectionAdded('10.0.0.3:60000', B, false); // ... here it is
  assert.equal(row('10.0.0.3:6783')?.state, 'waiting');
  clock.advance(3600_000);
  assert.equal(dials.length, 1);
  cm.connectionTerminated('10.0.0.3:60000', new Error('EOF'), false);
  assert.equal(dials.length, 2);

  // The winner died before we ever heard of it: the ordinary backoff retries.
  cm.connectionFailed('10.0.0.3:6783', new DuplicateConnectionError(B));
  assert.equal(row('10.0.0.3:6783')?.state, 'failed');
  clock.advance(1999);
  assert.equal(dials.length, 2);
  clock.advance(1);
  assert.equal(dials.length, 3);
});

test('a dial that throws counts as a failed attempt, with backoff', () => {
  const clock = new FakeClock(START_MS);
  const logger = new MemoryLogger();
  let calls = 0;
  const cm = new ConnectionMaker({
    clock, random: () => 0.5, logger,
    dial: () => {
      calls++;
      throw new WeaveError('UNAVAILABLE', 'no route');
    },
  }, { ourName: OUR_NAME });
  cm.start();
  cm.initiate(['10.0.0.2'], false);
  assert.equal(calls, 1);
  assert.equal(cm.status()[0]?.state, 'failed');
  assert.equal(cm.status()[0]?.lastError, 'no route');
  clock.advance(2000);
  assert.equal(calls, 2);
  assert.ok(logger.records.some((r) => r.msg === 'attempting connection' && r.fields.component === 'connection-maker'));
});

test('stop cancels the timer and dials nothing more; start resumes; both idempotent', () => {
  const { cm, dials, clock } = setup();
  cm.initiate(['10.0.0.2'], false);
  cm.connectionFailed('10.0.0.2:6783', fail);
  assert.equal(clock.pendingCount, 1);
  cm.stop();
  cm.stop();
  assert.equal(clock.pendingCount, 0);
  clock.advance(MAX_RETRY_INTERVAL_MS);
  cm.initiate(['10.0.0.3'], false);
  assert.equal(dials.length, 1);
  cm.start();
  assert.deepEqual(dials.slice(1).map((d) => d.address).sort(), ['10.0.0.2:6783', '10.0.0.3:6783']);
});

test('status wording: connecting, retrying <err>, failed <err>, retry: <time>', () => {
  const { cm, clock, row } = setup({ random: () => 0 });
  cm.initiate(['10.0.0.2'], false);
  assert.deepEqual(row('10.0.0.2:6783'), { address: '10.0.0.2:6783', state: 'connecting', info: '' });
  cm.connectionFailed('10.0.0.2:6783', fail);
  const at = START_MS + 1000;
  assert.deepEqual(row('10.0.0.2:6783'), {
    address: '10.0.0.2:6783', state: 'failed', lastError: fail.message, tryAfter: at, info: `${fail.message}, retry: ${formatGoTime(at)}`,
  });
  clock.advance(1000);
  assert.deepEqual(row('10.0.0.2:6783'), { address: '10.0.0.2:6783', state: 'retrying', lastError: fail.message, info: fail.message });
  assert.equal(formatGoTime(Date.UTC(2023, 10, 14, 22, 13, 20, 500)), '2023-11-14 22:13:20.5 +0000 UTC');
  assert.equal(formatGoTime(Date.UTC(2021, 1, 1, 12, 0, 0)), '2021-02-01 12:00:00 +0000 UTC');
});

test('parsePeerAddress', () => {
  assert.deepEqual(parsePeerAddress('10.0.0.2'), { host: '10.0.0.2', port: undefined, address: '10.0.0.2:6783' });
  assert.deepEqual(parsePeerAddress('10.0.0.2:0'), { host: '10.0.0.2', port: undefined, address: '10.0.0.2:6783' });
  assert.deepEqual(parsePeerAddress('10.0.0.2:7000'), { host: '10.0.0.2', port: 7000, address: '10.0.0.2:7000' });
  assert.deepEqual(parsePeerAddress('Host-1.Example.COM.', 9000), { host: 'Host-1.Example.COM.', port: undefined, address: 'Host-1.Example.COM.:9000' });
  for (const bad of ['', ':6783', 'a:', 'a:65536', 'a:-1', 'a b', '-a', 'a_b', '1.2.3', '1.2.3.4.5', '01.2.3.4', '::1', '[::1]:1', 'a:1:2', 'x'.repeat(64)]) {
    assert.throws(() => parsePeerAddress(bad), (e) => isWeaveError(e, 'INVALID_ARGUMENT'), bad);
  }
});

test('constructor rejects an invalid port', () => {
  const deps = { clock: new FakeClock(), random: Math.random, logger: silentLogger, dial: () => {} };
  assert.throws(() => new ConnectionMaker(deps, { ourName: OUR_NAME, port: 0 }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  assert.throws(() => new ConnectionMaker(deps, { ourName: OUR_NAME, port: 70000 }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

// ---- preferConnection ------------------------------------------------------------------

function randomUid(r: () => number): bigint {
  return (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
}

function randomName(r: () => number): PeerName {
  return Math.floor(r() * 2 ** 48);
}

// One connection between x and y, as each end sees it.
function views(uid: bigint, dialer: PeerName, x: PeerName, y: PeerName): { atX: ConnectionIdentity; atY: ConnectionIdentity } {
  return {
    atX: { uid, outbound: dialer === x, localName: x, remoteName: y },
    atY: { uid, outbound: dialer === y, localName: y, remoteName: x },
  };
}

test('preferConnection: both ends keep the same connection, for many random pairs', () => {
  const r = seeded(12345);
  for (let i = 0; i < 5000; i++) {
    const x = randomName(r);
    let y = randomName(r);
    if (y === x) y = x + 1;
    // Mostly distinct UIDs; sometimes a deliberate tie.
    const uid1 = randomUid(r);
    const uid2 = i % 97 === 0 ? uid1 : randomUid(r);
    const c1 = views(uid1, r() < 0.5 ? x : y, x, y);
    const c2 = views(uid2, r() < 0.5 ? x : y, x, y);
    for (const rule of ['dialer', 'uid'] as const) {
      const keptAtX = preferConnection(c1.atX, c2.atX, rule);
      const keptAtY = preferConnection(c2.atY, c1.atY, rule); // argument order must not matter either
      assert.equal(keptAtX?.uid, keptAtY?.uid, `pair ${i} rule ${rule}`);
      if (keptAtX && keptAtY) {
        const dialerAtX = keptAtX.outbound ? x : y;
        const dialerAtY = keptAtY.outbound ? y : x;
        assert.equal(dialerAtX, dialerAtY, 'the very same connection');
      }
    }
  }
});

test('preferConnection: the lower-named dialer wins, then the lower UID; equal UIDs tie', () => {
  const low = 0x020000000001, high = 0x020000000002;
  const byLow = { uid: 900n, outbound: true, localName: low, remoteName: high };
  const byHigh = { uid: 1n, outbound: false, localName: low, remoteName: high };
  assert.equal(preferConnection(byLow, byHigh), byLow);
  assert.equal(preferConnection(byHigh, byLow), byLow);
  assert.equal(preferConnection(byLow, byHigh, 'uid'), byHigh, 'the original rule: lower UID');
  const byLow2 = { ...byLow, uid: 5n };
  assert.equal(preferConnection(byLow, byLow2), byLow2);
  assert.equal(preferConnection(byLow, { ...byLow }), undefined);
  assert.throws(() => preferConnection(byLow, { ...byLow, remoteName: 7 }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});

// ---- two peers dialling each other at once (Weave Net issue 12 item 9) -------------------

interface SimConn { uid: bigint; dialer: PeerName; other: PeerName; dialAddress: string; inboundAddress: string }

// A minimal router pair: a dial completes its handshake 10 ms later; a second connection to
// the same peer is settled by preferConnection, the loser closed at both ends as the router
// would report it. Returns counters to check that things settle.
function simulate(firstToStart: 'low' | 'high') {
  const clock = new FakeClock(START_MS);
  const r = seeded(99);
  const names = { low: 0x020000000001, high: 0x020000000002 };
  const ips = new Map<PeerName, string>([[names.low, '10.1.0.1'], [names.high, '10.1.0.2']]);
  const byIp = new Map<string, PeerName>([['10.1.0.1', names.low], ['10.1.0.2', names.high]]);
  const cms = new Map<PeerName, ConnectionMaker>();
  const live = new Map<PeerName, SimConn>(); // keyed by the dialer... per pair there is one slot per end
  const counts = { dials: 0, added: 0, closedAsDuplicate: 0 };
  let nextPort = 40000;

  const report = (end: PeerName, c: SimConn, err: Error) => {
    const cm = cms.get(end)!;
    if (c.dialer === end) cm.connectionTerminated(c.dialAddress, err, true);
    else cm.connectionTerminated(c.inboundAddress, err, false);
  };
  const add = (end: PeerName, c: SimConn) => {
    const peer = end === c.dialer ? c.other : c.dialer;
    live.set(end, c);
    counts.added++;
    if (c.dialer === end) cms.get(end)!.connectionAdded(c.dialAddress, peer, true);
    else cms.get(end)!.connectionAdded(c.inboundAddress, peer, false);
  };
  const identity = (end: PeerName, c: SimConn): ConnectionIdentity & { c: SimConn } => ({
    c, uid: c.uid, outbound: c.dialer === end, localName: end, remoteName: end === names.low ? names.high : names.low,
  });

  for (const me of [names.low, names.high]) {
    cms.set(me, new ConnectionMaker({
      clock, random: r, logger: silentLogger,
      dial: (address) => {
        counts.dials++;
        clock.setTimeout(() => {
          const other = byIp.get(address.split(':')[0] ?? '')!;
          const c: SimConn = { uid: randomUid(r), dialer: me, other, dialAddress: address, inboundAddress: `${ips.get(me)}:${nextPort++}` };
          const existing = live.get(me);
          if (!existing) {
            add(me, c);
            add(other, c);
            return;
          }
          const keptHere = preferConnection(identity(me, existing), identity(me, c))?.c;
          const keptThere = preferConnection(identity(other, c), identity(other, existing))?.c;
          assert.equal(keptHere, keptThere, 'both ends keep the same connection');
          counts.closedAsDuplicate++;
          if (keptHere === c) {
            const dup = new DuplicateConnectionError(other);
            live.delete(me);
            live.delete(other);
            report(me, existing, dup);
            report(other, existing, new DuplicateConnectionError(me));
            add(me, c);
            add(other, c);
          } else {
            cms.get(me)!.connectionFailed(address, new DuplicateConnectionError(other));
          }
        }, 10);
      },
    }, { ourName: me }));
  }
  for (const me of [names.low, names.high]) {
    const other = me === names.low ? names.high : names.low;
    cms.get(me)!.initiate([`${ips.get(other)}:6783`], false);
  }
  const order = firstToStart === 'low' ? [names.low, names.high] : [names.high, names.low];
  for (const n of order) cms.get(n)!.start();
  const breakConnection = () => {
    const c = live.get(names.low)!;
    live.clear();
    report(names.low, c, new Error('EOF'));
    report(names.high, c, new Error('EOF'));
  };
  return { clock, counts, live, names, breakConnection, cms };
}

test('simultaneous dials settle on one connection and stay settled (no "Multiple connections" flapping)', () => {
  for (const first of ['low', 'high'] as const) {
    const { clock, counts, live, names, breakConnection } = simulate(first);
    clock.advance(3600_000);
    assert.equal(counts.dials, 2, `${first}: each end dialled once`);
    assert.equal(counts.closedAsDuplicate, 1);
    const survivor = live.get(names.low);
    assert.ok(survivor && survivor === live.get(names.high), 'one connection, the same at both ends');
    assert.equal(survivor.dialer, names.low, 'the lower-named peer\'s dial survives');

    // The link breaks after an hour: both ends redial at once, and it settles again.
    breakConnection();
    clock.advance(3600_000);
    assert.equal(counts.dials, 4, `${first}: one redial per end`);
    assert.equal(counts.closedAsDuplicate, 2);
    assert.equal(live.get(names.low)?.dialer, names.low);
  }
});
