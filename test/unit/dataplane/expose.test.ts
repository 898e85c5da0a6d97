// Exposer over fake links, firewall and store: the rules a subnet keeps while other exposed
// addresses of it need them, and the guard of the API port in INPUT.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Exposer, controlPortRule, controlPortsIn } from '../../../src/dataplane/expose.js';
import { parseCidr } from '../../../src/core/ip.js';
import { silentLogger } from '../../../src/core/logger.js';

function fakes() {
  const rules: string[] = [];
  const kv = new Map<string, string>();
  const key = (t: string, c: string, r: string[]) => `${t} ${c} ${r.join(' ')}`;
  const firewall = {
    ensureChain: async () => {},
    ensureRule: async (t: string, c: string, r: string[], position?: number) => {
      if (rules.includes(key(t, c, r))) return;
      // `position` counts within the chain, as iptables -I.
      const chain = rules.filter((x) => x.startsWith(`${t} ${c} `));
      const at = position === undefined || position > chain.length ? undefined : rules.indexOf(chain[position - 1]!);
      if (at === undefined) rules.push(key(t, c, r));
      else rules.splice(at, 0, key(t, c, r));
    },
    removeRule: async (t: string, c: string, r: string[]) => {
      const i = rules.indexOf(key(t, c, r));
      if (i >= 0) rules.splice(i, 1);
    },
    removeChain: async () => {},
    // As `iptables -S` prints them.
    listRules: async (t: string, c: string) => rules.filter((r) => r.startsWith(`${t} ${c} `)).map((r) => `-A ${r.slice(t.length + 1)}`),
  };
  const links = { addAddress: async () => {}, deleteAddress: async () => {} } as unknown as ConstructorParameters<typeof Exposer>[0]['links'];
  const store = {
    scan: (p: string) => [...kv].filter(([k]) => k.startsWith(p)).map(([k, value]) => ({ key: k, value })),
    set: (k: string, v: string) => void kv.set(k, v),
    delete: (k: string) => void kv.delete(k),
  };
  return { rules, deps: { links, firewall, store, logger: silentLogger } };
}

test('hide keeps the NAT rules only while an exposed address of the subnet masquerades', async () => {
  const { rules, deps } = fakes();
  const ex = new Exposer(deps, { bridge: 'weave' });
  const nat = () => rules.filter((r) => r.startsWith('nat '));
  const filter = () => rules.filter((r) => r.startsWith('filter WEAVE-EXPOSE'));
  await ex.expose(parseCidr('10.32.0.1/12'));
  await ex.expose(parseCidr('10.32.0.2/12'), { skipNAT: true }); // --without-masquerade
  await ex.expose(parseCidr('10.32.0.3/12'));
  assert.equal(nat().length, 3);
  await ex.hide(parseCidr('10.32.0.1/12'));
  assert.equal(nat().length, 3, '10.32.0.3 still masquerades');
  await ex.hide(parseCidr('10.32.0.3/12'));
  assert.deepEqual(nat(), [], 'only an address without masquerading is left');
  assert.deepEqual(filter(), ['filter WEAVE-EXPOSE -d 10.32.0.0/12 -j ACCEPT']);
  await ex.hide(parseCidr('10.32.0.2/12'));
  assert.deepEqual(filter(), []);
});

test('the conntrack rule is in FORWARD, after the outbound ACCEPT, only while something is exposed', async () => {
  const { rules, deps } = fakes();
  await deps.firewall.ensureRule('filter', 'FORWARD', ['-o', 'weave', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']); // an earlier router's
  const ex = new Exposer(deps, { bridge: 'weave', controlPort: 6784 });
  await ex.installBaseRules();
  await deps.firewall.ensureRule('filter', 'FORWARD', ['-j', 'KUBE-FORWARD']); // someone else's, after ours
  assert.ok(!rules.some((r) => r.includes('conntrack')), `nothing tracks connections before an expose: ${rules.join('\n')}`);
  await ex.expose(parseCidr('10.32.0.1/12'));
  await ex.expose(parseCidr('10.32.0.2/12'));
  assert.deepEqual(rules.filter((r) => r.startsWith('filter FORWARD')), [
    'filter FORWARD -i weave -o weave -j ACCEPT',
    'filter FORWARD -o weave -j WEAVE-EXPOSE',
    'filter FORWARD -i weave ! -o weave -j ACCEPT',
    'filter FORWARD -o weave -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    'filter FORWARD -j KUBE-FORWARD',
  ]);
  await ex.hide(parseCidr('10.32.0.1/12'));
  assert.equal(rules.filter((r) => r.includes('conntrack')).length, 1, 'still exposed: 10.32.0.2');
  await ex.hide(parseCidr('10.32.0.2/12'));
  assert.ok(!rules.some((r) => r.includes('conntrack')));
  // After a restart with an address exposed, it comes back with the address.
  await ex.expose(parseCidr('10.32.0.3/12'));
  await deps.firewall.removeRule('filter', 'FORWARD', ['-o', 'weave', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
  const again = new Exposer(deps, { bridge: 'weave', controlPort: 6784 });
  await again.installBaseRules();
  await again.reapply();
  assert.equal(rules.filter((r) => r.includes('conntrack')).length, 1);
  await again.removeBaseRules();
  assert.deepEqual(rules.filter((r) => / (FORWARD|INPUT|POSTROUTING) /.test(r)), ['filter FORWARD -j KUBE-FORWARD']);
});

test('the API port guard goes first in INPUT, and reset finds it by its comment', async () => {
  const { rules, deps } = fakes();
  await deps.firewall.ensureRule('filter', 'INPUT', ['-j', 'ACCEPT']);
  const ex = new Exposer(deps, { bridge: 'weave', controlPort: 6784 });
  await ex.installBaseRules();
  assert.equal(rules.filter((r) => r.startsWith('filter INPUT'))[0], `filter INPUT ${controlPortRule(6784).join(' ')}`);
  assert.deepEqual(controlPortsIn(['-A INPUT -j ACCEPT', '-A INPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 6790 -m addrtype ! --src-type LOCAL -m comment --comment "Block non-local access to Weave Net control port" -j DROP']), [6790]);
  await new Exposer(deps, { bridge: 'weave' }).removeBaseRules([6784]);
  assert.deepEqual(rules.filter((r) => r.startsWith('filter INPUT')), ['filter INPUT -j ACCEPT']);
  // The original's form (with a conntrack match) is replaced at start and removed by reset.
  const original = ['-p', 'tcp', '--dst', '127.0.0.1', '--dport', '6784', '-m', 'addrtype', '!', '--src-type', 'LOCAL', '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED', '-m', 'comment', '--comment', 'Block non-local access to Weave Net control port', '-j', 'DROP'];
  await deps.firewall.ensureRule('filter', 'INPUT', original, 1);
  await ex.installBaseRules();
  assert.deepEqual(rules.filter((r) => r.startsWith('filter INPUT')), [`filter INPUT ${controlPortRule(6784).join(' ')}`, 'filter INPUT -j ACCEPT']);
  await deps.firewall.ensureRule('filter', 'INPUT', original, 1);
  await new Exposer(deps, { bridge: 'weave' }).removeBaseRules([6784]);
  assert.deepEqual(rules.filter((r) => r.startsWith('filter INPUT')), ['filter INPUT -j ACCEPT']);
});
