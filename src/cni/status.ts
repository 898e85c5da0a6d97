// STATUS (spec 1.1.0): can this plugin service an ADD right now? Yes when the router answers
// /status (200 or 503 both mean it runs, as the original's IsReady) and, for weave-net, the
// bridge exists; a delegated IPAM plugin must pass its own STATUS too. Otherwise code 50.
// Success prints nothing.
import { CniError, CNI_ERR } from './cni-error.js';
import type { PluginContext } from './context.js';
import { WeaveIpam, ipamFor } from './ipam.js';

export async function cmdStatus(ctx: PluginContext): Promise<void> {
  await new WeaveIpam(ctx).status();
  if (ctx.kind === 'net') {
    const bridge = await ctx.deps.kernel.getLink(ctx.conf.bridge);
    if (!bridge) {
      throw new CniError(CNI_ERR.NOT_AVAILABLE, `weave router at ${ctx.router().address} is not available: bridge "${ctx.conf.bridge}" does not exist`, {
        code: 'UNAVAILABLE',
      });
    }
    const ipam = ipamFor(ctx);
    if (ipam.delegated) await ipam.status();
  }
}
