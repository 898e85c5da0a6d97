// `weave reset [--force]`: leave the network, stop the router, then remove the bridge, the
// container veths, the iptables rules and the persisted state (the teardown runs as
// `weaver --reset`, since the daemon owns that state).
import { spawnSync } from 'node:child_process';
import type { CliContext } from './context.js';
import { runningPid } from './router-process.js';
import { stopRouter } from './stop.js';

export async function reset(ctx: CliContext, opts: { force?: boolean; extraArgs?: string[] }): Promise<number> {
  if (runningPid(ctx.paths.runDir) !== undefined) {
    try {
      await ctx.client.call('DELETE', '/peer', 'unable to leave the network', { timeoutMs: 5000 });
    } catch (e) {
      if (!opts.force) {
        ctx.err(`${(e as Error).message}\nweave could not hand over its address space; use 'weave reset --force' to reset anyway\n`);
        return 1;
      }
    }
    await stopRouter(ctx, { quiet: true });
  }
  const r = spawnSync(process.execPath, [ctx.weaverBin, '--reset', '--log-level', 'error', '--data-dir', ctx.paths.dataDir, '--run-dir', ctx.paths.runDir, ...(opts.extraArgs ?? [])], {
    env: ctx.env,
    encoding: 'utf8',
  });
  if (r.stderr) ctx.err(r.stderr);
  return r.status ?? 1;
}
