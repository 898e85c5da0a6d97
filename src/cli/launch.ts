// `weave launch [flags] [peers]`: starts weaver in the background (pid file, log file),
// refuses when one is running, and waits until it answers, saying what it waits for.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { WeaveError } from '../core/errors.js';
import type { CliContext } from './context.js';
import { runningPid } from './router-process.js';
import { installCni } from './setup.js';

const READY_TIMEOUT_MS = 30_000;
const WAIT_NOTICE_MS = 5_000;
/** The original script's `--status-addr`. */
export const DEFAULT_STATUS_ADDR = '127.0.0.1:6782';

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * The original script's flags for its Docker proxy and plugin (`--proxy=false`, `-H`,
 * `--hostname-from-label`…), with whether they take a value as the next argument: there is
 * neither here, so they are dropped with a word rather than passed to weaver, which refuses them.
 */
const DOCKER_FLAGS: ReadonlyMap<string, boolean> = new Map([
  ['--plugin', false], ['--proxy', false], ['--no-multicast-route', false], ['--without-dns', false],
  ['--no-rewrite-hosts', false], ['--no-default-ipalloc', false], ['--rewrite-inspect', false],
  ['--no-detect-tls', false], ['--tls', false], ['--tlsverify', false],
  ['-H', true], ['--hostname-from-label', true], ['--hostname-match', true], ['--hostname-replacement', true],
  ['--token', true], ['--tlscacert', true], ['--tlscert', true], ['--tlskey', true],
]);

/**
 * The original script's own launch flags, turned into what weaver takes (the script's loop):
 * --password (and -password) leaves the command line, which every local user can read in
 * /proc/<pid>/cmdline, for WEAVE_PASSWORD; --iprange is the older name of --ipalloc-range;
 * --no-restart and the Docker proxy's and plugin's flags are dropped (`dropped`). Everything
 * else goes to weaver as given.
 */
function routerArgs(args: string[]): { args: string[]; password?: string; dropped: string[] } {
  const out: string[] = [];
  const dropped: string[] = [];
  let password: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = /^--?password=/.exec(a);
    const name = a.split('=')[0]!;
    const docker = DOCKER_FLAGS.get(name);
    if (docker !== undefined) {
      dropped.push(a);
      if (docker && !a.includes('=') && i + 1 < args.length) dropped.push(args[++i]!);
    } else if (eq) {
      password = a.slice(eq[0].length);
    } else if (a === '--password' || a === '-password') {
      if (i + 1 >= args.length) throw new WeaveError('INVALID_ARGUMENT', `launch: ${a} needs a value`);
      password = args[++i]!;
    } else if (a === '--iprange' || a.startsWith('--iprange=')) {
      out.push(a.replace(/^--iprange/, '--ipalloc-range'));
    } else if (a === '--no-restart') {
      // The original then starts its router container without a restart policy; a weaver
      // started here is never restarted on failure anyway: accepted, nothing to turn off.
    } else {
      out.push(a);
    }
  }
  return { args: out, dropped, ...(password !== undefined ? { password } : {}) };
}

/**
 * `bridge`: the CLI's bridge (`--weave-bridge`, WEAVE_BRIDGE), which reset, attach and ps use
 * too: the router gets it unless the launch flags name one themselves.
 */
export async function launch(ctx: CliContext, givenArgs: string[], bridge?: string): Promise<number> {
  const { paths } = ctx;
  if (givenArgs.includes('--help') || givenArgs.includes('-h')) {
    // weaver's own help, here (started in the background, it went to the log file).
    const r = spawnSync(process.execPath, [ctx.weaverBin, '--help'], { encoding: 'utf8', env: ctx.env });
    ctx.out(r.stdout ?? '');
    ctx.err(r.stderr ?? '');
    return r.status ?? 1;
  }
  const { args, password, dropped } = routerArgs(givenArgs);
  if (dropped.length) ctx.err(`weave launch: ignoring ${dropped.join(' ')}: there is no Docker proxy or plugin here\n`);
  const given = (flag: string) => args.some((a) => a === flag || a.startsWith(`${flag}=`));
  if (bridge !== undefined && !given('--weave-bridge')) args.unshift('--weave-bridge', bridge);
  // The original script's read-only status and metrics listener (WEAVE_STATUS_ADDR, else
  // 127.0.0.1:6782), which monitoring scrapes for /metrics; an empty value turns it off.
  const statusAddr = ctx.env.WEAVE_STATUS_ADDR ?? DEFAULT_STATUS_ADDR;
  if (statusAddr !== '' && !given('--status-addr')) args.unshift('--status-addr', statusAddr);
  const pid = runningPid(paths.runDir);
  if (pid !== undefined) {
    ctx.err(`weave is already running (pid ${pid}); 'weave stop' first\n`);
    return 1;
  }
  try {
    const r = await ctx.client.request('GET', '/status', { timeoutMs: 1000 });
    if (r.status === 200 || r.status === 503) {
      ctx.err(`weave is already running: a router answers at ${paths.httpAddr}\n`);
      return 1;
    }
  } catch {
    // nothing answers: good
  }
  // As the original: install the CNI plugin when the CNI directories exist.
  await installCni(ctx, { createDirs: false, quiet: true });

  mkdirSync(dirname(paths.logFile), { recursive: true });
  mkdirSync(paths.runDir, { recursive: true });
  const logFd = openSync(paths.logFile, 'a');
  const child = spawn(
    process.execPath,
    [ctx.weaverBin, '--data-dir', paths.dataDir, '--run-dir', paths.runDir, '--http-addr', paths.httpAddr, ...args],
    { detached: true, stdio: ['ignore', logFd, logFd], env: password === undefined ? ctx.env : { ...ctx.env, WEAVE_PASSWORD: password } },
  );
  closeSync(logFd);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  child.on('error', () => (exited = 1));
  child.unref();

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let told = false;
  let lastReason = '';
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      ctx.err(`weave router exited (code ${exited}) before it was ready; last log lines (${paths.logFile}):\n${tail(paths.logFile, 10)}\n`);
      return 1;
    }
    try {
      const r = await ctx.client.request('GET', '/status', { timeoutMs: 1000 });
      if (r.status === 200) {
        ctx.out(`${child.pid}\n`);
        return 0;
      }
      lastReason = `router answered ${r.status} (not ready yet)`;
    } catch (e) {
      lastReason = (e as Error).message;
    }
    // A router starts in a second or two (its bridge, rules and data path first): say what we
    // wait for only when it takes longer than that, so a launch that works prints its pid alone.
    if (!told && Date.now() > deadline - READY_TIMEOUT_MS + WAIT_NOTICE_MS) {
      ctx.err(`waiting for the weave router (pid ${child.pid}) to answer at ${paths.httpAddr}: ${lastReason}\n`);
      told = true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  ctx.err(`weave router (pid ${child.pid}) did not become ready within ${READY_TIMEOUT_MS / 1000} s (${lastReason}); see ${paths.logFile}; 'weave stop' stops it\n`);
  return 1;
}
