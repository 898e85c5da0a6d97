// DEL: best effort and repeatable. weave-net removes the veth pair (by its host end, so an
// empty or vanished CNI_NETNS is fine; failures are logged, never fatal), then releases the
// container's addresses. The release must not be skipped silently: when the router cannot be
// reached within routerWaitMs the DEL fails with code 11 so the runtime tries again. Nothing
// left to delete (no veth, no address) is success. An unusable config is logged and treated
// as success by the caller (entry), as the original did.
import { errorMessage } from '../core/errors.js';
import type { PluginContext } from './context.js';
import { ipamFor } from './ipam.js';

export async function cmdDel(ctx: PluginContext): Promise<void> {
  const { env } = ctx;
  if (ctx.kind === 'net') {
    try {
      await ctx.deps.kernel.detach({ containerId: env.containerId, ifName: env.ifName, ...(env.netns ? { netns: env.netns } : {}) });
    } catch (e) {
      ctx.log(`DEL ${env.containerId}: could not remove ${env.ifName}: ${errorMessage(e)}`);
    }
  }
  await ipamFor(ctx).del();
}
