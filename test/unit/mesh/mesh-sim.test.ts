// The simulation helper's per-router accounting (bench/mesh reports it): each router's own
// handling is timed into its account, and nothing is counted twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { SimNetwork } from '../../helpers/mesh-sim.js';

test('with accounting, every router that handled traffic has time on its account, within the time that passed', async () => {
  const net = new SimNetwork(3, undefined, { account: true });
  for (let i = 1; i <= 4; i++) net.add(i).connect(i > 1 ? [SimNetwork.address(i - 1)] : [], false);
  const t0 = performance.now();
  await net.run(3000);
  const elapsed = performance.now() - t0;
  const busy = net.busyMs!;
  for (let i = 1; i <= 4; i++) assert.ok((busy.get(SimNetwork.address(i)) ?? 0) > 0, `router ${i} has time on its account`);
  // All share one thread: the accounts cannot add up to more than the time that passed.
  const sum = [...busy.values()].reduce((a, b) => a + b, 0);
  assert.ok(sum <= elapsed, `${sum} ms accounted in ${elapsed} ms`);
});

test('without accounting there are no accounts', () => {
  assert.equal(new SimNetwork(3).busyMs, undefined);
});
