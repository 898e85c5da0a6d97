// `weave prime` (GET /ring: returns once the IPAM ring exists, so scripts can wait for
// consensus) and `weave rmpeer <peer>...` (DELETE /peer/<peer>: take over the address space
// of peers that are gone for good; prints "N IPs taken over from X" per peer, as the original).
import { WeaveError } from '../core/errors.js';
import type { CliContext } from './context.js';

export async function prime(ctx: CliContext): Promise<number> {
  // Consensus needs a quorum of peers, which may take as long as the user takes to start them.
  const r = await ctx.client.request('GET', '/ring');
  if (r.status === 200 || r.status === 204) return 0;
  ctx.err(r.body.endsWith('\n') ? r.body : r.body + '\n');
  return 1;
}

export async function rmpeer(ctx: CliContext, peers: string[]): Promise<number> {
  // DELETE /peer/ names no peer; checked for all before the first request.
  if (peers.some((p) => p === '')) throw new WeaveError('INVALID_ARGUMENT', 'rmpeer: empty peer id (give a peer name or nickname)');
  let rc = 0;
  for (const p of peers) {
    const r = await ctx.client.request('DELETE', `/peer/${encodeURIComponent(p)}`, { timeoutMs: 10_000 });
    const body = r.body.endsWith('\n') || r.body === '' ? r.body : r.body + '\n';
    if (r.status === 200 || r.status === 204) {
      ctx.out(body);
    } else {
      ctx.err(body);
      rc = 1;
    }
  }
  return rc;
}
