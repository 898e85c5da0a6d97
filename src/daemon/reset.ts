// `weave reset`: removes everything a router leaves on the host once it is stopped: the
// bridge, every `vethwe*` link (container host ends included), our iptables chains and rules,
// and the persisted state. Each step converges, so a partial earlier reset is finished.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { IpRoute } from '../platform/iproute.js';
import { Iptables } from '../platform/iptables.js';
import { Exposer } from '../dataplane/expose.js';
import { STORE_FILE } from '../api/types.js';

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
  await step('delete bridge', () => links.deleteLink(opts.bridge));
  await step('delete vethwe* links', async () => {
    for (const l of await links.listLinks()) {
      // vxlan-<port>: the fast path's device (the original's vport had the same name).
      if (l.ifname.startsWith('vethwe') || (l.kind === 'vxlan' && l.ifname.startsWith('vxlan-'))) await links.deleteLink(l.ifname);
    }
  });
  const noStore = { scan: () => [], set: () => {}, delete: () => {} };
  const exposer = new Exposer({ links, firewall: new Iptables(), store: noStore, logger: opts.logger }, { bridge: opts.bridge });
  await step('remove iptables rules', () => exposer.removeBaseRules());
  for (const f of [STORE_FILE, `${STORE_FILE}-wal`, `${STORE_FILE}-shm`]) {
    await step(`remove ${f}`, async () => rmSync(join(opts.dataDir, f), { force: true }));
  }
  return problems;
}
