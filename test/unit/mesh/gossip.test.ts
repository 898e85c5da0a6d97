// Gossip channels relaying unicasts: a unicast is never passed back to the neighbour it came
// from (routes that disagree would otherwise bounce it between two routers, as the wire format
// has no hop limit), first with channels over a hand-wired network whose routes are set by the
// test, then through real routers. Also the bounds on what peers can make us keep: the
// surrogate's memory of payloads, and how many surrogate channels there are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/core/clock.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import type { PeerName } from '../../../src/core/peer-name.js';
import { decodeGossipMessage } from '../../../src/mesh/gossip-message.js';
import { GossipChannel, GossipChannels, MAX_SURROGATE_CHANNELS, SurrogateGossiper, type GossipData, type Gossiper } from '../../../src/mesh/gossip.js';
import { SimNetwork } from '../../helpers/mesh-sim.js';

const addr = SimNetwork.address;

class Inbox implements Gossiper {
  readonly unicasts: [PeerName, string][] = [];
  onGossipUnicast(src: PeerName, msg: Buffer): void {
    this.unicasts.push([src, msg.toString()]);
  }
  onGossipBroadcast(): GossipData | undefined {
    return undefined;
  }
  gossip(): GossipData | undefined {
    return undefined;
  }
  onGossip(): GossipData | undefined {
    return undefined;
  }
}

/**
 * Channels of peers 1, 2, 3 wired directly: `routes[us][dst]` is our next hop. Sends are counted
 * and delivered synchronously; past `limit` they are dropped, so that a bounce ends the test
 * instead of recursing for ever.
 */
function wire(routes: Record<number, Record<number, number>>, limit = 50) {
  const clock = new FakeClock();
  const logger = new MemoryLogger();
  const inboxes = new Map<PeerName, Inbox>();
  const channels = new Map<PeerName, GossipChannel>();
  const sends: [PeerName, PeerName][] = [];
  for (const us of [1, 2, 3]) {
    const inbox = new Inbox();
    inboxes.set(us, inbox);
    const channel = new GossipChannel(
      {
        clock,
        logger,
        net: {
          ourName: us,
          nextHop: (dst) => routes[us]?.[dst],
          broadcastHops: () => [],
          gossipTargets: () => [],
          sendTo: (n, msg) => {
            sends.push([us, n]);
            if (sends.length > limit) return false;
            const g = decodeGossipMessage(msg.tag, msg.message.subarray(1));
            channels.get(n)?.deliver(g.tag, g.src, g.payload, 'dst' in g ? g.dst : undefined, us);
            return true;
          },
        },
      },
      'svc',
      inbox,
    );
    channels.set(us, channel);
  }
  return { channels, inboxes, sends, logger };
}

test('a unicast whose next hop is the neighbour it came from is dropped, not bounced back', () => {
  // 1 routes to 3 through 2, but 2 (whose link to 3 just went) routes to 3 through 1.
  const w = wire({ 1: { 3: 2 }, 2: { 3: 1 } });
  assert.equal(w.channels.get(1)!.unicast(3, Buffer.from('to 3')), true);
  assert.deepEqual(w.sends, [[1, 2]], 'sent once, to 2, and not back');
  assert.deepEqual(w.inboxes.get(3)!.unicasts, []);
  const dropped = w.logger.records.filter((r) => r.level === 'debug' && /back to the neighbour it came from/.test(r.msg));
  assert.equal(dropped.length, 1);
  assert.deepEqual([dropped[0]!.fields.src, dropped[0]!.fields.dst, dropped[0]!.fields.via], [1, 3, 1]);
});

test('unicasts are relayed on when routes agree, and our own go out whatever the route', () => {
  const w = wire({ 1: { 3: 2 }, 2: { 3: 3, 1: 1 }, 3: { 1: 2 } });
  w.channels.get(1)!.unicast(3, Buffer.from('1 to 3'));
  w.channels.get(3)!.unicast(1, Buffer.from('3 to 1'));
  assert.deepEqual(w.inboxes.get(3)!.unicasts, [[1, '1 to 3']]);
  assert.deepEqual(w.inboxes.get(1)!.unicasts, [[3, '3 to 1']]);
  assert.deepEqual(w.sends, [[1, 2], [2, 3], [3, 2], [2, 1]]);
  // A message of 2's own to 3 goes to 1 when that is 2's route, even though 1 will route it back.
  const v = wire({ 2: { 3: 1 }, 1: { 3: 2 } });
  v.channels.get(2)!.unicast(3, Buffer.from('2 to 3'));
  assert.deepEqual(v.sends, [[2, 1]], '1 drops it rather than send it back to 2');
});

test('routers: a unicast is not passed back to the router it came from while their routes disagree', async () => {
  // A chain 1 - 2 - 3; 2's route to 3 is made to point back to 1 (stale, as right after a link
  // change), for as many lookups as a bounce would make before the test's limit.
  const net = new SimNetwork(21);
  const r1 = net.add(1, { discovery: false });
  const r2 = net.add(2, { discovery: false });
  const r3 = net.add(3, { discovery: false });
  r2.connect([addr(1)], false);
  r3.connect([addr(2)], false);
  await net.run(5000);
  const inbox = new Inbox();
  const c1 = r1.newGossip('svc', new Inbox());
  r3.newGossip('svc', inbox);
  const real = r2.routes.unicastAll.bind(r2.routes);
  let staleLookups = 0;
  r2.routes.unicastAll = (dst) => {
    if (dst === r3.name && staleLookups < 50) {
      staleLookups++;
      return r1.name;
    }
    return real(dst);
  };
  assert.equal(c1.unicast(r3.name, Buffer.from('to 3')), true);
  await net.run(1000);
  assert.equal(staleLookups, 1, '2 looked its route up once and did not send the message back to 1');
  assert.deepEqual(inbox.unicasts, []);
  r2.routes.unicastAll = real;
  c1.unicast(r3.name, Buffer.from('again'));
  await net.run(1000);
  assert.deepEqual(inbox.unicasts, [[r1.name, 'again']]);
});

test('the surrogate relays each payload once, remembers at most 4096 for up to 2 min, and is quick about it', () => {
  const clock = new FakeClock();
  const s = new SurrogateGossiper({ clock });
  const payload = (i: number) => Buffer.from(`payload ${i}`);
  assert.ok(s.onGossip(payload(0)));
  assert.equal(s.onGossip(payload(0)), undefined, 'a repeat is not relayed');
  const t0 = performance.now();
  for (let i = 1; i <= 40_000; i++) assert.ok(s.onGossip(payload(i)));
  // A sweep of the whole memory per message took 8 s for this many.
  assert.ok(performance.now() - t0 < 3000, `${Math.round(performance.now() - t0)} ms`);
  assert.equal(s.onGossip(payload(40_000)), undefined, 'the latest are remembered');
  assert.ok(s.onGossip(payload(1)), 'one 40 000 payloads ago is forgotten: at most 4096 are kept');
  clock.advance(2 * 60_000 + 1);
  assert.ok(s.onGossip(payload(40_000)), 'and none past 2 min');
});

test('channels nobody here runs: at most 64 surrogates, the least recently used going first', () => {
  const clock = new FakeClock();
  const channels = new GossipChannels({
    clock,
    logger: new MemoryLogger(),
    net: { ourName: 1, nextHop: () => undefined, broadcastHops: () => [], gossipTargets: () => [], sendTo: () => true },
  });
  const ours = channels.add('topology', new Inbox());
  const kept = channels.get('busy');
  for (let i = 0; i < 20_000; i++) {
    channels.get(`name ${i}`);
    if (i % 50 === 0) assert.equal(channels.get('busy'), kept);
  }
  assert.equal(channels.all().length, 1 + MAX_SURROGATE_CHANNELS);
  assert.equal(channels.get('topology'), ours, 'our own channels are never evicted');
  assert.equal(channels.get('busy'), kept, 'a channel in use stays');
  assert.ok(channels.all().includes(channels.get('name 19999')));
  // A channel we start later replaces its surrogate and is not counted among them.
  const late = channels.add('name 19999', new Inbox());
  assert.equal(channels.get('name 19999'), late);
  for (let i = 0; i < 200; i++) channels.get(`other ${i}`);
  assert.equal(channels.get('name 19999'), late);
  assert.equal(channels.all().length, 2 + MAX_SURROGATE_CHANNELS);
});
