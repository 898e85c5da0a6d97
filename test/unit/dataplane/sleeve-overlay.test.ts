// The sleeve forwarder's path MTU verification on a fake clock, against a scripted underlay:
// the kernel refuses DF sends over its path MTU (EMSGSIZE), the remote acknowledges the test
// frames that arrive, and an outage loses everything for a while. The MTU found at the start
// is verified again every 5 min; an outage during that must not lower it below the original's
// floor (552), nor for longer than until the next re-check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { FRAG_TEST_INTERVAL_MS, SleeveControl, SleeveOverlay, type SleeveForwarder, type SleevePeerState } from '../../../src/dataplane/sleeve/overlay.js';

const PEER = 0x7a0000000002;
const HEARTBEAT = 22;

interface Path {
  clock: FakeClock;
  fwd: SleeveForwarder;
  /** Every MTU pushed to the data path, in order. */
  mtus: number[];
  state: () => SleevePeerState;
  underlay: { pmtu: number; down: boolean; dropAbove: number };
}

const mtuOf = (p: Path): number => p.fwd.mtu;

/** One plain connection, established and through its first discovery (5 s). */
function path(pmtu = 1500): Path {
  const clock = new FakeClock(0);
  const underlay = { pmtu, down: false, dropAbove: Infinity };
  const mtus: number[] = [];
  let state: SleevePeerState | undefined;
  const sleeve = new SleeveOverlay({
    clock,
    logger: silentLogger,
    datapath: {
      setPeer: (s) => {
        state = s;
        mtus.push(s.mtu);
      },
      removePeer: () => {},
      sendSpecial: (p, df, frame) => {
        const size = frame.length + 6 + 14 + 28;
        if (df && size > underlay.pmtu) return void clock.setTimeout(() => sleeve.messageTooBig(p, underlay.pmtu), 0);
        if (underlay.down || frame.length === HEARTBEAT || size > underlay.dropAbove) return;
        if (frame.length === 60001) return void clock.setTimeout(() => fwd.controlMessage(SleeveControl.FragmentationReceived, Buffer.alloc(0)), 1);
        if (size > underlay.pmtu) return;
        // The remote acknowledges a test frame over TCP with its size.
        const body = Buffer.alloc(2);
        body.writeUInt16BE(frame.length - 14);
        clock.setTimeout(() => fwd.controlMessage(SleeveControl.PMTUVerified, body), 1);
      },
    },
  }, { port: 6783 });
  const fwd = sleeve.prepare({
    remoteName: PEER, remoteNickName: 'h2', remoteAddress: '192.0.2.2:6783', outbound: true, connUid: 42n, sessionKey: undefined,
    features: new Map(), sendControl: () => {}, established: () => {}, healthChanged: () => {}, failed: () => assert.fail('the connection failed'),
  }) as SleeveForwarder;
  fwd.confirm();
  // Heartbeats keep the connection (60 s timeout) through the outages below.
  const hb = Buffer.alloc(HEARTBEAT);
  hb.writeBigUInt64BE(42n, 14);
  clock.setInterval(() => {
    if (!underlay.down) sleeve.specialReceived(PEER, '192.0.2.2', 6783, hb);
  }, 10_000);
  fwd.controlMessage(SleeveControl.ConnectionEstablished, Buffer.alloc(0));
  clock.advance(5000);
  return { clock, fwd, mtus, state: () => state!, underlay };
}

for (const outageS of [2, 12, 30]) {
  test(`an outage of ${outageS} s during the MTU re-check: never below 552, back to the path's MTU at the next re-check`, () => {
    const p = path();
    assert.equal(mtuOf(p), 1438);
    p.mtus.length = 0;
    // The outage begins just before the first re-check (5 min after the connection's ack).
    p.clock.advance(FRAG_TEST_INTERVAL_MS - 5000 - 100);
    p.underlay.down = true;
    p.clock.advance(outageS * 1000);
    p.underlay.down = false;
    p.clock.advance(60_000);
    assert.ok(p.mtus.every((m) => m >= 552), `MTUs pushed: ${p.mtus.join(' ')}`);
    // Within one re-check period of the path healing, it carries 1438 again.
    p.clock.advance(FRAG_TEST_INTERVAL_MS);
    assert.equal(mtuOf(p), 1438);
    assert.equal(p.state().mtu, 1438);
    assert.equal(p.state().maxPayload, 1472);
    p.clock.advance(3 * FRAG_TEST_INTERVAL_MS);
    assert.equal(mtuOf(p), 1438, 'and stays there');
  });
}

test('a healthy re-check leaves the MTU alone; a black hole is found, and left behind once it goes', () => {
  const p = path();
  p.mtus.length = 0;
  p.clock.advance(FRAG_TEST_INTERVAL_MS);
  assert.deepEqual(p.mtus.filter((m) => m !== 1438), [], 'the current MTU stays during the re-check');
  assert.equal(mtuOf(p), 1438);
  p.underlay.dropAbove = 700;
  p.clock.advance(FRAG_TEST_INTERVAL_MS + 60_000);
  assert.equal(mtuOf(p), 638);
  // Re-checks behind the black hole try the kernel's MTU again, without raising ours meanwhile.
  p.mtus.length = 0;
  p.clock.advance(FRAG_TEST_INTERVAL_MS);
  assert.equal(mtuOf(p), 638);
  assert.deepEqual(p.mtus.filter((m) => m !== 638), []);
  p.underlay.dropAbove = Infinity;
  p.clock.advance(FRAG_TEST_INTERVAL_MS);
  assert.equal(mtuOf(p), 1438);
});

/** Loses everything for 45 s from just before the first re-check (its whole search). */
function loseRecheck(p: Path): void {
  p.clock.advance(FRAG_TEST_INTERVAL_MS - 5000 - 100);
  p.underlay.down = true;
  p.clock.advance(45_000);
  p.underlay.down = false;
}

test('the floor is 552, but never above what the kernel takes', () => {
  const lost = path();
  loseRecheck(lost);
  assert.equal(mtuOf(lost), 552, 'every test lost: the floor');
  const small = path(576);
  assert.equal(mtuOf(small), 576 - 62);
  loseRecheck(small);
  assert.equal(mtuOf(small), 576 - 62, 'a kernel path MTU of 576 leaves 514');
});
