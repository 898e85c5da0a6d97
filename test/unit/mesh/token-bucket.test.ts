// The accept limiter: full at start, one token back per interval, capped, FIFO waiters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, type Clock } from '../../../src/core/clock.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { ACCEPT_MAX_TOKENS, ACCEPT_TOKEN_INTERVAL_MS, TokenBucket } from '../../../src/mesh/token-bucket.js';

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

function drain(b: TokenBucket): number {
  let n = 0;
  while (b.tryTake()) n++;
  return n;
}

test('defaults are the original accept limiter: 20 tokens, one per 50 ms', () => {
  const b = new TokenBucket({ clock: new FakeClock() });
  assert.equal(ACCEPT_MAX_TOKENS, 20);
  assert.equal(ACCEPT_TOKEN_INTERVAL_MS, 50);
  assert.equal(b.capacity, 20);
  assert.equal(b.tokenIntervalMs, 50);
});

test('starts full: a burst of capacity, then nothing', () => {
  const b = new TokenBucket({ clock: new FakeClock() });
  assert.equal(drain(b), 20);
  assert.equal(b.tryTake(), false);
  assert.equal(b.msUntilNextToken(), 50);
});

test('refills one token per interval, exactly on the boundary', () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ clock });
  drain(b);
  clock.advance(49);
  assert.equal(b.tryTake(), false);
  assert.equal(b.msUntilNextToken(), 1);
  clock.advance(1);
  assert.equal(b.tryTake(), true);
  assert.equal(b.tryTake(), false);
  clock.advance(150);
  assert.equal(b.available(), 3);
});

test('partial progress towards a token is kept across takes', () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ clock });
  drain(b);
  clock.advance(75);
  assert.equal(b.tryTake(), true); // the token due at 50
  clock.advance(25);
  assert.equal(b.tryTake(), true); // the token due at 100, not at 125
  assert.equal(b.tryTake(), false);
});

test('never holds more than capacity, however long it idles', () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ clock }, { capacity: 5, tokenIntervalMs: 10 });
  drain(b);
  clock.advance(10_000);
  assert.equal(b.available(), 5);
  assert.equal(drain(b), 5);
  clock.advance(10);
  assert.equal(drain(b), 1);
});

test('a clock going backwards credits nothing', () => {
  const fake = new FakeClock();
  let skewMs = 0;
  const clock: Clock = {
    now: () => fake.now() + skewMs,
    setTimeout: (fn, ms) => fake.setTimeout(fn, ms),
    setInterval: (fn, ms) => fake.setInterval(fn, ms),
    sleep: (ms, signal) => fake.sleep(ms, signal),
  };
  const b = new TokenBucket({ clock }, { capacity: 2, tokenIntervalMs: 50 });
  drain(b);
  skewMs = -100_000;
  assert.equal(b.tryTake(), false);
  fake.advance(49);
  assert.equal(b.tryTake(), false);
  fake.advance(1);
  assert.equal(b.tryTake(), true);
});

test('wait(): immediate while tokens last, then one waiter per interval in FIFO order', async () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ clock }, { capacity: 2, tokenIntervalMs: 50 });
  const order: string[] = [];
  await b.wait();
  await b.wait();
  void b.wait().then(() => order.push('a'));
  void b.wait().then(() => order.push('b'));
  void b.wait().then(() => order.push('c'));
  await flush();
  assert.deepEqual(order, []);
  assert.equal(b.tryTake(), false, 'tryTake never jumps the queue');
  clock.advance(49);
  await flush();
  assert.deepEqual(order, []);
  clock.advance(1);
  await flush();
  assert.deepEqual(order, ['a']);
  clock.advance(50);
  await flush();
  assert.deepEqual(order, ['a', 'b']);
  clock.advance(50);
  await flush();
  assert.deepEqual(order, ['a', 'b', 'c']);
  assert.equal(clock.pendingCount, 0, 'no timer left once the queue is empty');
});

test('wait(): an aborted waiter leaves the queue and the next one gets its token', async () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ clock }, { capacity: 1, tokenIntervalMs: 50 });
  b.tryTake();
  const ac = new AbortController();
  const first = b.wait({ signal: ac.signal });
  let secondDone = false;
  const second = b.wait().then(() => (secondDone = true));
  ac.abort(new Error('gone'));
  await assert.rejects(first, /gone/);
  clock.advance(50);
  await second;
  assert.equal(secondDone, true);
  await assert.rejects(b.wait({ signal: AbortSignal.abort(new Error('already')) }), /already/);
});

test('stop(): rejects waiters with CANCELLED, clears the timer, idempotent', async () => {
  const clock = new FakeClock();
  const b = new TokenBucket({ clock }, { capacity: 1, tokenIntervalMs: 50 });
  b.tryTake();
  const p = b.wait();
  b.stop();
  b.stop();
  await assert.rejects(p, (e) => isWeaveError(e, 'CANCELLED'));
  assert.equal(clock.pendingCount, 0);
  await assert.rejects(b.wait(), (e) => isWeaveError(e, 'CANCELLED'));
  assert.equal(b.tryTake(), false);
});

test('rejects nonsense options', () => {
  const clock = new FakeClock();
  assert.throws(() => new TokenBucket({ clock }, { capacity: 0 }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  assert.throws(() => new TokenBucket({ clock }, { tokenIntervalMs: 0 }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
  assert.throws(() => new TokenBucket({ clock }, { tokenIntervalMs: Number.NaN }), (e) => isWeaveError(e, 'INVALID_ARGUMENT'));
});
