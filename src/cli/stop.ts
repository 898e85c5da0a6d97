// `weave stop`: SIGTERM to the background weaver, SIGKILL if it does not exit in time.
import type { CliContext } from './context.js';
import { runningPid, waitForExit } from './router-process.js';

export async function stopRouter(ctx: CliContext, opts: { quiet?: boolean } = {}): Promise<number> {
  const pid = runningPid(ctx.paths.runDir);
  if (pid === undefined) {
    if (!opts.quiet) ctx.err('weave is not running.\n');
    return 0;
  }
  process.kill(pid, 'SIGTERM');
  if (!(await waitForExit(pid, 10_000))) {
    ctx.err(`weave router (pid ${pid}) did not stop within 10 s; killing it\n`);
    process.kill(pid, 'SIGKILL');
    await waitForExit(pid, 5_000);
  }
  return 0;
}
