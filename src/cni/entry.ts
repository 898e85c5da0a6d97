// Entry of the weave-net and weave-ipam CNI plugins: one run = read env and stdin, do one verb,
// write one JSON document (or nothing), return the exit code. It never exits the process
// (bin/ does). Order: CNI_COMMAND (empty: "about" on stderr, exit 0; unknown: 4); VERSION
// answers whatever else is wrong; otherwise stdin (5), the CNI_* variables (4), the config
// (6/7/2/1; DEL logs and succeeds instead), then the verb. Errors become the CNI error
// document with exit code 1; its cniVersion is the config's when usable, else the latest.
// esbuild bundles this file into dist/cni/weave-cni.cjs, loaded on every plugin start: keep
// its imports to core, api/client, platform and cni (no pino, commander, sqlite, daemon code).
import { errorMessage } from '../core/errors.js';
import { cmdAdd } from './add.js';
import { cmdCheck } from './check.js';
import { CniError, CNI_ERR, errorDocument } from './cni-error.js';
import { parseNetConf, type NetConf } from './config.js';
import { createContext, defaultDeps, type PluginDeps, type PluginKind } from './context.js';
import { cmdDel } from './del.js';
import { cmdGc } from './gc.js';
import {
  decodeConfigText,
  parseCniEnv,
  parseCommand,
  processIo,
  sniffVersion,
  stderrLog,
  writeJson,
  type PluginIo,
} from './skel.js';
import { cmdStatus } from './status.js';
import { IMPLICIT_CONFIG_VERSION, LATEST_VERSION, SUPPORTED_VERSIONS, isSupportedVersion } from './versions.js';

export type { PluginIo } from './skel.js';
export type { PluginDeps, PluginKind } from './context.js';

const PLUGIN_NAMES: Record<PluginKind, string> = { net: 'weave-net', ipam: 'weave-ipam' };

function aboutLine(kind: PluginKind): string {
  const what = kind === 'net' ? 'interface plugin' : 'IPAM plugin';
  return `${PLUGIN_NAMES[kind]}: Weave CNI ${what}; CNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`;
}

async function answerVersion(io: PluginIo): Promise<void> {
  let text = '';
  try {
    text = await io.stdin();
  } catch {
    // VERSION never fails: stdin does not matter.
  }
  const asked = sniffVersion(text);
  writeJson(io, { cniVersion: isSupportedVersion(asked) ? asked : LATEST_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] });
}

/** Runs one plugin invocation; resolves with the process exit code. */
export async function runPlugin(kind: PluginKind, io: PluginIo = processIo(), deps: Partial<PluginDeps> = {}): Promise<number> {
  const log = stderrLog(io);
  let docVersion: string = LATEST_VERSION;
  try {
    const command = parseCommand(io.env);
    if (command === '') {
      io.stderr(aboutLine(kind));
      return 0;
    }
    if (command === 'VERSION') {
      await answerVersion(io);
      return 0;
    }
    let text: string;
    try {
      text = await io.stdin();
    } catch (e) {
      throw new CniError(CNI_ERR.IO, `cannot read the network configuration from stdin: ${errorMessage(e)}`, { code: 'IO_FAILED' });
    }
    const sniffed = sniffVersion(text);
    if (sniffed === '') docVersion = IMPLICIT_CONFIG_VERSION;
    else if (isSupportedVersion(sniffed)) docVersion = sniffed;

    const env = parseCniEnv(command, io.env);
    let conf: NetConf;
    try {
      conf = parseNetConf(decodeConfigText(text), { env: io.env, ipamPlugin: kind === 'ipam' });
    } catch (e) {
      if (command !== 'DEL') throw e;
      log(`DEL ${env.containerId}: ignoring an unusable network configuration: ${errorMessage(e)}`);
      return 0;
    }
    const ctx = createContext({ kind, env, rawEnv: io.env, conf, stdin: text, log, stderr: io.stderr, deps: { ...defaultDeps(), ...deps } });
    switch (command) {
      case 'ADD':
        writeJson(io, await cmdAdd(ctx));
        break;
      case 'DEL':
        await cmdDel(ctx);
        break;
      case 'CHECK':
        await cmdCheck(ctx);
        break;
      case 'STATUS':
        await cmdStatus(ctx);
        break;
      case 'GC':
        await cmdGc(ctx);
        break;
    }
    return 0;
  } catch (e) {
    writeJson(io, errorDocument(e, docVersion));
    return 1;
  }
}
