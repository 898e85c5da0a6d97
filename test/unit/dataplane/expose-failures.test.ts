// A hide that fails changes nothing: with the store full the address stays on the bridge
// (and in the store, so a restart keeps it); with a kernel step failing the record comes back
// and the address is put back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Exposer } from '../../../src/dataplane/expose.js';
import { parseCidr } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/logger.js';
import { WeaveError, isWeaveError } from '../../../src/core/errors.js';
import { MemoryStore } from '../../../src/platform/sqlite-store.js';

function fakes() {
  const addresses = new Set<string>();
  const rules = new Set<string>();
  const failing = { deleteAddress: false };
  const key = (t: string, c: string, r: string[]) => `${t} ${c} ${r.join(' ')}`;
  const firewall = {
    ensureChain: async () => {},
    ensureRule: async (t: string, c: string, r: string[]) => void rules.add(key(t, c, r)),
    removeRule: async (t: string, c: string, r: string[]) => void rules.delete(key(t, c, r)),
    removeChain: async () => {},
    listRules: async () => [],
  };
  const links = {
    addAddress: async (_dev: string, cidr: string) => void addresses.add(cidr),
    deleteAddress: async (_dev: string, cidr: string) => {
      if (failing.deleteAddress) throw new WeaveError('IO_FAILED', 'RTNETLINK answers: Operation not permitted');
      addresses.delete(cidr);
    },
  } as unknown as ConstructorParameters<typeof Exposer>[0]['links'];
  const store = new MemoryStore();
  return { addresses, rules, store, failing, deps: { links, firewall, store, logger: silentLogger } };
}

test('hide with the store failing leaves the address exposed, on the bridge and in the store', async () => {
  const f = fakes();
  const ex = new Exposer(f.deps, { bridge: 'weave' });
  await ex.expose(parseCidr('10.32.0.1/12'));
  const rulesBefore = [...f.rules].sort();
  f.store.failWrites = true;
  await assert.rejects(ex.hide(parseCidr('10.32.0.1/12')), (e: unknown) => isWeaveError(e, 'STORE_FAILED'));
  assert.deepEqual([...f.addresses], ['10.32.0.1/12'], 'the address is still on the bridge');
  assert.deepEqual([...f.rules].sort(), rulesBefore, 'its rules are still there');
  assert.deepEqual(ex.exposed().map((e) => e.cidr), [parseCidr('10.32.0.1/12')], 'a restart keeps it');
  f.store.failWrites = false;
  await ex.hide(parseCidr('10.32.0.1/12'));
  assert.deepEqual([...f.addresses], []);
  assert.deepEqual(ex.exposed(), []);
});

test('hide with the kernel step failing puts the record and the address back', async () => {
  const f = fakes();
  const ex = new Exposer(f.deps, { bridge: 'weave' });
  await ex.expose(parseCidr('10.32.0.1/12'), { skipNAT: true });
  f.failing.deleteAddress = true;
  await assert.rejects(ex.hide(parseCidr('10.32.0.1/12')), /Operation not permitted/);
  assert.deepEqual(ex.exposed(), [{ cidr: parseCidr('10.32.0.1/12'), skipNAT: true }]);
  assert.deepEqual([...f.addresses], ['10.32.0.1/12']);
});

test('hide of an address that was never exposed writes nothing', async () => {
  const f = fakes();
  const ex = new Exposer(f.deps, { bridge: 'weave' });
  f.store.failWrites = true;
  await ex.hide(parseCidr('10.32.0.9/12'));
  assert.deepEqual(ex.exposed(), []);
});
