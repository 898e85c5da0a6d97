// `weave reset`: removes everything a router leaves on the host once it is stopped: the
// bridge, every `vethwe*` link (container host ends included), our iptables chains and rules,
// and the persisted state. Each step converges, so a partial earlier reset is finished.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { IpRoute } from '../platform/iproute.js';
import { Iptables } from '../platform/iptables.js';
import { Exposer, controlPortsIn } from '../dataplane/expose.js';
import { STORE_FILE } from '../api/types.js';

const DEFAULT_VXLAN_NAME = 'vxlan-6784';

export async function resetHost(opts: { bridge: string; dataDir: string; logger: Logger }): Promise<string[]> {
  const problems: string[] = [];
  const links = new IpRoute();
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (e) {
      problems.push(`${what}: ${errorMessage(e)}`);
    }
  };
  // The fast path's device (vxlan-<port+1>, the original's vport name) is ours when it is on
  // our bridge, or when it has the default name and no bridge (a reset that stopped halfway);
  // other vxlan devices (another overlay's, a user's vxlan-100) are not.
  let ours: string[] = [];
  await step('list links', async () => {
    ours = (await links.listLinks())
      .filter((l) => l.ifname.startsWith('vethwe') || (l.kind === 'vxlan' && (l.master === opts.bridge || (l.ifname === DEFAULT_VXLAN_NAME && !l.master))))
      .map((l) => l.ifname);
  });
  await step('delete bridge', () => links.deleteLink(opts.bridge));
  await step('delete vethwe* links', async () => {
    for (const name of ours) await links.deleteLink(name);
  });
  const noStore = { scan: () => [], set: () => {}, delete: () => {} };
  const exposer = new Exposer({ links, firewall: new Iptables(), store: noStore, logger: opts.logger }, { bridge: opts.bridge });
  const firewall = new Iptables();
  await step('remove iptables rules', async () => exposer.removeBaseRules(controlPortsIn(await firewall.listRules('filter', 'INPUT'))));
  for (const f of [STORE_FILE, `${STORE_FILE}-wal`, `${STORE_FILE}-shm`]) {
    await step(`remove ${f}`, async () => rmSync(join(opts.dataDir, f), { force: true }));
  }
  return problems;
}
