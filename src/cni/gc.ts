// GC (spec 1.1.0): release what belongs to attachments the runtime no longer knows. With
// weave's IPAM: every ident the router lists with owner `cni:<network>` that is not in the
// valid-attachments list loses its addresses, and weave-net also removes its host veth (the
// interface is the ident's, attachmentIdent). It continues past errors and
// reports them together at the end. With a delegated IPAM plugin, GC is forwarded to it.
// Success prints nothing.
import { WeaveError, errorMessage } from '../core/errors.js';
import { CniError, cniCodeOf } from './cni-error.js';
import type { PluginContext } from './context.js';
import { ipamFor, parseAttachmentIdent } from './ipam.js';

export async function cmdGc(ctx: PluginContext): Promise<void> {
  const valid = ctx.conf.validAttachments;
  if (!valid) throw new WeaveError('INVALID_CONFIG', 'GC needs cni.dev/valid-attachments (or cni.dev/attachments) in the configuration');
  const ipam = ipamFor(ctx);
  const outcome = await ipam.gc(valid);
  const errors = [...outcome.errors];
  if (ctx.kind === 'net') {
    for (const id of outcome.released) {
      try {
        await ctx.deps.kernel.detach({ ...parseAttachmentIdent(id), ident: id });
      } catch (e) {
        errors.push(e);
      }
    }
  }
  if (errors.length > 0) {
    const first = errors[0];
    throw new CniError(cniCodeOf(first), `GC: ${errors.length} error(s): ${errors.map(errorMessage).join('; ')}`);
  }
}
