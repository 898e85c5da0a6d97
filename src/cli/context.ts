// What every `weave` verb gets: where things live (flags > environment > defaults), the
// router's API client and the output streams. Verbs return an exit code and never exit.
import { WeaveClient } from '../api/client.js';
import { DEFAULT_HTTP_ADDR } from '../api/types.js';

export interface CliPaths {
  httpAddr: string;
  dataDir: string;
  runDir: string;
  logFile: string;
  cniConfDir: string;
  cniPluginDir: string;
}

export interface CliContext {
  paths: CliPaths;
  client: WeaveClient;
  out: (s: string) => void;
  err: (s: string) => void;
  env: NodeJS.ProcessEnv;
  /** The weaver entry point (bin/weaver.js of this installation). */
  weaverBin: string;
  /** The repository/package root (for the bundled CNI plugin). */
  packageRoot: string;
}

export function resolvePaths(env: NodeJS.ProcessEnv, flags: Partial<CliPaths>): CliPaths {
  return {
    httpAddr: flags.httpAddr ?? env.WEAVE_HTTP_ADDR ?? DEFAULT_HTTP_ADDR,
    dataDir: flags.dataDir ?? env.WEAVE_DATA_DIR ?? '/var/lib/weave',
    runDir: flags.runDir ?? env.WEAVE_RUN_DIR ?? '/run/weave',
    logFile: flags.logFile ?? env.WEAVE_LOG_FILE ?? '/var/log/weave/weaver.log',
    cniConfDir: flags.cniConfDir ?? env.WEAVE_CNI_CONF_DIR ?? '/etc/cni/net.d',
    cniPluginDir: flags.cniPluginDir ?? env.WEAVE_CNI_PLUGIN_DIR ?? '/opt/cni/bin',
  };
}

/** Message for any verb that needs a running router. */
export function notRunning(ctx: CliContext): string {
  return `weave is not running (no answer at ${ctx.paths.httpAddr}). Have you launched it?\n`;
}
