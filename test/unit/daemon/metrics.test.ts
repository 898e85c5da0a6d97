// /metrics as the original writes it: weave_connections with its labels in name order and both
// encryption values for every state and type seen; HELP texts as the original's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RouterMetrics } from '../../../src/daemon/metrics.js';

test('weave_connections: labels in name order, both encryption values per state and type, as Go writes them', async () => {
  const conns = [
    { state: 'established', type: 'sleeve', encryption: 'yes' },
    { state: 'established', type: 'sleeve', encryption: 'yes' },
    { state: 'established', type: 'fastdp', encryption: '' },
    { state: 'failed', type: 'unknown', encryption: '' },
  ];
  const m = new RouterMetrics({
    connections: () => conns,
    terminations: () => 3,
    ipam: () => ({ ips: 2, maxIps: 1048576, unreachableCount: 0, unreachablePercentage: 0, pendingAllocates: 0, pendingClaims: 0 }),
  });
  const { body } = await m.render();
  const lines = body.split('\n').filter((l) => l.startsWith('weave_connections{')).sort();
  assert.deepEqual(lines, [
    'weave_connections{encryption="",state="established",type="fastdp"} 1',
    'weave_connections{encryption="",state="established",type="sleeve"} 0',
    'weave_connections{encryption="",state="failed",type="unknown"} 1',
    'weave_connections{encryption="yes",state="established",type="fastdp"} 0',
    'weave_connections{encryption="yes",state="established",type="sleeve"} 2',
    'weave_connections{encryption="yes",state="failed",type="unknown"} 0',
  ]);
  assert.match(body, /^weave_connection_terminations_total 3$/m);
  assert.match(body, /^# HELP weave_ipam_unreachable_percentage Percentage of IP addresses owned {2}by unreachable peers\.$/m);
  // A connection gone: its lines go with it (the gauge is rebuilt at every scrape).
  conns.splice(3, 1);
  assert.ok(!(await m.render()).body.includes('state="failed"'));
});
