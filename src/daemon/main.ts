// weaver's entry: parse flags, build the logger and the router, run until SIGTERM/SIGINT.
// Returns the exit code; bin/weaver.js is the only place that exits.
import { systemClock } from '../core/clock.js';
import { errorMessage, isWeaveError } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { weaveVersion } from '../core/version.js';
import { buildDaemonCommand, parseDaemonArgs } from './config.js';
import { Weaver } from './weaver.js';
import { resetHost } from './reset.js';

export async function runWeaver(argv: string[], out: { stdout: (s: string) => void; stderr: (s: string) => void }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out.stdout(buildDaemonCommand().helpInformation());
    return 0;
  }
  if (argv.includes('--version')) {
    out.stdout(`weave ${weaveVersion()}\n`);
    return 0;
  }
  const resetting = argv.includes('--reset');
  let cfg;
  try {
    cfg = parseDaemonArgs(argv.filter((a) => a !== '--reset'));
  } catch (e) {
    out.stderr(`weaver: ${errorMessage(e)}\n`);
    return 1;
  }
  const log = createLogger({ level: cfg.logLevel, name: 'weaver' });
  if (cfg.ignored) log.warn({ flags: cfg.ignored }, `ignoring ${cfg.ignored.join(', ')}: no Docker and no ODP datapath here`);
  if (resetting) {
    // One-shot teardown for `weave reset` (the daemon owns all host state, also its removal).
    const problems = await resetHost({ bridge: cfg.bridge, dataDir: cfg.dataDir, logger: log });
    for (const p of problems) out.stderr(`weaver --reset: ${p}\n`);
    return problems.length ? 1 : 0;
  }
  const weaver = new Weaver({ logger: log, clock: systemClock }, cfg);
  let resolveStop: (code: number) => void = () => {};
  const stopped = new Promise<number>((r) => (resolveStop = r));
  // A signal while starting stops the router once start() is done: stopping beside it left
  // start() writing files after stop() had removed them. (A second signal kills at once.)
  let starting = true;
  let stopWanted = false;
  const stop = () =>
    void weaver.stop().then(() => resolveStop(0), (e) => {
      log.error({ err: errorMessage(e) }, 'error while stopping');
      resolveStop(1);
    });
  const onSignal = (sig: string) => {
    log.info({ signal: sig }, '=== received SIGINT/SIGTERM ===');
    if (starting) stopWanted = true;
    else stop();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  try {
    await weaver.start();
  } catch (e) {
    log.error({ err: errorMessage(e), code: isWeaveError(e) ? e.code : undefined }, 'weave failed to start');
    out.stderr(`weaver: ${errorMessage(e)}\n`);
    await weaver.stop().catch(() => undefined);
    return 1;
  }
  starting = false;
  if (stopWanted) stop();
  return stopped;
}
