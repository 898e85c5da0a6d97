// `weave connect [--replace] <peer>...` and `weave forget <peer>...`: change the router's
// targets (POST /connect, /forget with form fields `peer`, as the original script).
import type { CliContext } from './context.js';

export async function connect(ctx: CliContext, peers: string[], replace: boolean): Promise<number> {
  const form: Record<string, string | string[]> = { peer: peers };
  if (replace) form.replace = 'true';
  const r = await ctx.client.request('POST', '/connect', { form, timeoutMs: 10_000 });
  if (r.status === 200 || r.status === 204) return 0;
  ctx.err(r.body.endsWith('\n') ? r.body : r.body + '\n');
  return 1;
}

export async function forget(ctx: CliContext, peers: string[]): Promise<number> {
  const r = await ctx.client.request('POST', '/forget', { form: { peer: peers }, timeoutMs: 10_000 });
  if (r.status === 200 || r.status === 204) return 0;
  ctx.err(r.body.endsWith('\n') ? r.body : r.body + '\n');
  return 1;
}
