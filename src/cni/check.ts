// CHECK (spec 0.4.0+): is the container's network still what ADD made it? weave-net verifies,
// against prevResult, that the container interface exists in CNI_NETNS with the same MAC and
// addresses, that its host end is still enslaved to the bridge, and that the router (or the
// delegated IPAM plugin) still holds the addresses. Routes are not compared: later plugins in
// a chain may change them. weave-ipam verifies the router's side only. Success prints nothing.
import { WeaveError } from '../core/errors.js';
import { formatCidr, tryParseCidr } from '../core/ip.js';
import { hostVethName } from '../platform/container-link.js';
import { CniError, CNI_ERR } from './cni-error.js';
import type { PluginContext } from './context.js';
import { ipamFor } from './ipam.js';
import { ipVersionOf, type CniResult } from './result.js';
import { versionAtLeast } from './versions.js';

function checkFailed(msg: string): CniError {
  return new CniError(CNI_ERR.CHECK_FAILED, msg, { code: 'NOT_FOUND' });
}

/** Normalised IPv4 CIDR text, so "10.32.0.5/12" from any source compares equal. */
function norm(cidr: string): string {
  const c = tryParseCidr(cidr);
  return c ? formatCidr(c) : cidr;
}

export async function cmdCheck(ctx: PluginContext): Promise<void> {
  const { conf } = ctx;
  if (!versionAtLeast(conf.cniVersion, '0.4.0')) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, 'config version does not allow CHECK', { code: 'INCOMPATIBLE_VERSION' });
  }
  const prev = conf.prevResult;
  if (!prev) throw new WeaveError('INVALID_CONFIG', 'CHECK needs prevResult (the result of ADD) in the configuration');
  const ipam = ipamFor(ctx);
  if (ctx.kind === 'ipam') {
    await ipam.check(prev.ips.map((i) => i.address).filter((a) => ipVersionOf(a) === '4').map(norm));
    return;
  }
  const addresses = await checkInterface(ctx, prev);
  await ipam.check(addresses);
}

/** Checks the kernel side; returns the container's IPv4 addresses listed in prevResult. */
async function checkInterface(ctx: PluginContext, prev: CniResult): Promise<string[]> {
  const { env, conf, deps } = ctx;
  deps.kernel.checkNetns(env.netns);
  const idx = prev.interfaces.findIndex((i) => i.name === env.ifName && i.sandbox === env.netns);
  const index = idx >= 0 ? idx : prev.interfaces.findIndex((i) => i.name === env.ifName && i.sandbox);
  if (index < 0) throw checkFailed(`prevResult lists no interface "${env.ifName}" in a sandbox`);
  const expected = prev.interfaces[index]!;
  const addresses = prev.ips.filter((i) => i.interface === index && ipVersionOf(i.address) === '4').map((i) => norm(i.address));

  const link = await deps.kernel.inspect(env.netns, env.ifName);
  if (!link) throw checkFailed(`interface "${env.ifName}" does not exist in ${env.netns}`);
  if (expected.mac && link.address && expected.mac.toLowerCase() !== link.address.toLowerCase()) {
    throw checkFailed(`interface "${env.ifName}" in ${env.netns} has MAC ${link.address}, prevResult says ${expected.mac}`);
  }
  const present = new Set(link.addrs.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`));
  for (const a of addresses) {
    if (!present.has(a)) throw checkFailed(`interface "${env.ifName}" in ${env.netns} lacks address ${a}`);
  }

  const hostIf = hostVethName(env.containerId, env.ifName);
  const host = await deps.kernel.getLink(hostIf);
  if (!host) throw checkFailed(`host interface "${hostIf}" of container ${env.containerId} does not exist`);
  if (host.master !== conf.bridge) {
    throw checkFailed(`host interface "${hostIf}" is not attached to bridge "${conf.bridge}" (master: ${host.master ?? 'none'})`);
  }
  return addresses;
}
