// The record a container's host-side veth carries (its alias): who holds which addresses, read
// back by the router's reclaim after a restart; anything else in an alias is not ours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attachAlias, parseAttachAlias } from '../../../src/platform/container-link.js';
import { formatCidr, parseCidr } from '../../../src/core/ip.js';

test('alias round trip for CNI container IDs and weave attach idents', () => {
  for (const [ident, cidrs] of [
    ['0123456789abcdef'.repeat(4), ['10.32.0.1/12']],
    ['default-web_1.x', ['10.32.0.5/12', '10.40.1.2/24']],
    ['/run/netns/h1', ['10.32.0.9/12']],
  ] as const) {
    const alias = attachAlias(ident, cidrs.map(parseCidr));
    assert.ok(alias && alias.length <= 255);
    const back = parseAttachAlias(alias);
    assert.equal(back?.ident, ident);
    assert.deepEqual(back?.cidrs.map(formatCidr), cidrs);
  }
});

test('idents the alias cannot carry, and foreign or damaged aliases', () => {
  assert.equal(attachAlias('has space', [parseCidr('10.32.0.1/12')]), undefined);
  assert.equal(attachAlias('semi;colon', [parseCidr('10.32.0.1/12')]), undefined);
  assert.equal(attachAlias('x'.repeat(200), [parseCidr('10.32.0.1/12')]), undefined);
  assert.equal(attachAlias('ok', []), undefined);
  for (const bad of ['', 'my uplink', 'weave;', 'weave;id', 'weave;id;', 'weave;id;10.1.1.1', 'weave;id;10.1.1.1/12;x', 'weave;a b;10.1.1.1/12', 'weave;id;10.1.1.300/12']) {
    assert.equal(parseAttachAlias(bad), undefined, bad);
  }
});
