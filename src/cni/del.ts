// DEL: best effort and repeatable. weave-net removes the veth pair (by its host end, so an
// empty or vanished CNI_NETNS is fine; failures are logged, never fatal) while it releases the
// container's addresses (in parallel: deleting a veth waits ~20 ms for the kernel). The release must not be skipped silently: when the router cannot be
// reached within routerWaitMs the DEL fails with code 11 so the runtime tries again. Nothing
// left to delete (no veth, no address) is success. An unusable config is logged and treated
// as success by the caller (entry), as the original did.
import { errorMessage } from '../core/errors.js';
import type { PluginContext } from './context.js';
import { attachmentIdent, ipamFor } from './ipam.js';

export async function cmdDel(ctx: PluginContext): Promise<void> {
  const { env } = ctx;
  const detached =
    ctx.kind === 'net'
      ? ctx.deps.kernel
          .detach({ containerId: env.containerId, ifName: env.ifName, ident: attachmentIdent(env.containerId, env.ifName), ...(env.netns ? { netns: env.netns } : {}) })
          .then(
          () => undefined,
          (e: unknown) => ctx.log(`DEL ${env.containerId}: could not remove ${env.ifName}: ${errorMessage(e)}`),
        )
      : Promise.resolve();
  try {
    await ipamFor(ctx).del();
  } finally {
    await detached;
  }
}
