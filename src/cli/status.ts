// `weave status [targets|connections|peers|dns|ipam]`, `weave report [-f FORMAT]` and
// `weave version`: print what the router's HTTP API returns, as the original script did.
import { WeaveError } from '../core/errors.js';
import { weaveVersion } from '../core/version.js';
import { type CliContext, notRunning } from './context.js';

const subViews = new Set(['targets', 'connections', 'peers', 'dns', 'ipam']);

export async function status(ctx: CliContext, sub: string | undefined): Promise<number> {
  if (sub !== undefined && !subViews.has(sub)) {
    ctx.err(`Invalid 'weave status' sub-command: ${sub}\n`);
    return 1;
  }
  let res;
  try {
    res = await ctx.client.request('GET', sub ? `/status/${sub}` : '/status', { timeoutMs: 10_000 });
  } catch (e) {
    if (e instanceof WeaveError && e.code === 'UNAVAILABLE') {
      ctx.err(notRunning(ctx));
      return 1;
    }
    throw e;
  }
  if (res.status === 404) {
    ctx.err(`Invalid 'weave status' sub-command: ${sub}\n`);
    return 1;
  }
  // The original printed the full status between blank lines, sub-views as they are.
  ctx.out(sub ? res.body : `\n${res.body}\n`);
  return res.status === 200 ? 0 : 1;
}

export async function report(ctx: CliContext, format: string | undefined): Promise<number> {
  try {
    if (format === undefined) {
      const body = await ctx.client.call('GET', '/report', 'report', { headers: { accept: 'application/json' }, timeoutMs: 10_000 });
      ctx.out(body.endsWith('\n') ? body : body + '\n');
    } else {
      const body = await ctx.client.call('GET', `/report?format=${encodeURIComponent(format)}`, 'report', { timeoutMs: 10_000 });
      ctx.out(body);
    }
    return 0;
  } catch (e) {
    if (e instanceof WeaveError && e.code === 'UNAVAILABLE') {
      ctx.err(notRunning(ctx));
      return 1;
    }
    ctx.err(`${(e as Error).message}\n`);
    return 1;
  }
}

export async function version(ctx: CliContext): Promise<number> {
  ctx.out(`weave script ${weaveVersion()}\n`);
  try {
    const v = await ctx.client.call('GET', '/report?format={{.Version}}', 'version', { timeoutMs: 2000 });
    // As the original: `weave <version>` from the running router, else what `weaver --version`
    // prints (the same line).
    ctx.out(`weave ${v.trim()}\n`);
  } catch {
    ctx.out(`weave ${weaveVersion()}\n`);
  }
  return 0;
}
