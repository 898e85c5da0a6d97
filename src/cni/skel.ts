// The process edge of a CNI plugin: the environment variables, stdin and stdout. Owns the
// rules that turn CNI_* variables into a typed CniEnv (every missing or bad variable is CNI
// error 4 naming it), reading stdin (I/O failure: 5) and decoding it (6), and the output
// discipline: exactly one JSON document on stdout (a result or an error) and nothing else;
// diagnostics go to stderr prefixed `weave-cni:`. Nothing here exits the process.
import { CniError, CNI_ERR } from './cni-error.js';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];

export type EnvMap = Readonly<Record<string, string | undefined>>;

/** Where a plugin run reads and writes; tests inject their own. */
export interface PluginIo {
  env: EnvMap;
  stdin: () => Promise<string>;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export interface CniEnv {
  command: CniCommand;
  /** '' for the verbs that do not take one (VERSION, STATUS, GC). */
  containerId: string;
  /** '' when not given (DEL may come without it: ctr, a netns already gone). */
  netns: string;
  ifName: string;
  /** CNI_PATH split on ':'; empty when not given. */
  path: string[];
  /** CNI_ARGS `K=V;K2=V2`, parsed leniently. */
  args: Record<string, string>;
}

/** Spec regex for container IDs and network names. */
export const CNI_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const IFNAMSIZ_MAX = 15;

/**
 * The command, '' when CNI_COMMAND is empty or missing (the caller prints the "about" line),
 * or code 4 `unknown CNI_COMMAND: X`.
 */
export function parseCommand(env: EnvMap): CniCommand | '' {
  const c = env.CNI_COMMAND ?? '';
  if (c === '') return '';
  if ((COMMANDS as readonly string[]).includes(c)) return c as CniCommand;
  throw new CniError(CNI_ERR.INVALID_ENV, `unknown CNI_COMMAND: ${c}`, { code: 'MISSING_ENV' });
}

/** `K=V;K2=V2`: pairs without '=' or with an empty key are skipped; never fails. */
export function parseCniArgs(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (s ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

/** Why an interface name is unusable, or undefined when it is fine (spec + kernel rules). */
export function interfaceNameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (Buffer.byteLength(name) > IFNAMSIZ_MAX) return `is longer than ${IFNAMSIZ_MAX} characters`;
  if (name === '.' || name === '..') return 'may not be "." or ".."';
  if (/[/:\s]/.test(name)) return 'may not contain "/", ":" or whitespace';
  return undefined;
}

function envError(msg: string): CniError {
  return new CniError(CNI_ERR.INVALID_ENV, msg, { code: 'MISSING_ENV' });
}

/** Validates the variables `command` needs; the message names every missing one. */
export function parseCniEnv(command: CniCommand, env: EnvMap): CniEnv {
  const needsContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  const required: string[] = [];
  if (needsContainer) required.push('CNI_CONTAINERID', 'CNI_IFNAME');
  if (command === 'ADD' || command === 'CHECK') required.push('CNI_NETNS');
  if (command === 'GC') required.push('CNI_PATH');
  const missing = required.filter((k) => (env[k] ?? '') === '');
  if (missing.length > 0) throw envError(`required env variables [${missing.join(' ')}] missing`);

  const containerId = needsContainer ? (env.CNI_CONTAINERID ?? '') : '';
  if (needsContainer && !CNI_ID_RE.test(containerId)) {
    throw envError(`invalid characters in CNI_CONTAINERID "${containerId}": must match ${CNI_ID_RE.source}`);
  }
  const ifName = needsContainer ? (env.CNI_IFNAME ?? '') : '';
  const problem = needsContainer ? interfaceNameProblem(ifName) : undefined;
  if (problem) throw envError(`invalid CNI_IFNAME "${ifName}": ${problem}`);
  return {
    command,
    containerId,
    netns: needsContainer ? (env.CNI_NETNS ?? '') : '',
    ifName,
    path: (env.CNI_PATH ?? '').split(':').filter((d) => d !== ''),
    args: parseCniArgs(env.CNI_ARGS),
  };
}

/** CNI_PATH, which is needed only to find a delegated plugin; code 4 when it is empty. */
export function requireCniPath(env: CniEnv, why: string): string[] {
  if (env.path.length === 0) throw envError(`required env variables [CNI_PATH] missing (needed ${why})`);
  return env.path;
}

/** Decodes stdin; code 6 when it is not a JSON object. */
export function decodeConfigText(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    const why = text.trim() === '' ? 'stdin is empty' : (e as Error).message;
    throw new CniError(CNI_ERR.DECODE, `cannot decode the network configuration: ${why}`, { code: 'DECODE_FAILED' });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CniError(CNI_ERR.DECODE, 'cannot decode the network configuration: not a JSON object', { code: 'DECODE_FAILED' });
  }
  return v as Record<string, unknown>;
}

/** The config's `cniVersion` if stdin is an object carrying a string one; never throws. */
export function sniffVersion(text: string): string | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const cv = (v as Record<string, unknown>).cniVersion;
      return typeof cv === 'string' ? cv : cv === undefined ? '' : undefined;
    }
  } catch {
    // not JSON: no version
  }
  return undefined;
}

/** One JSON document on stdout. */
export function writeJson(io: PluginIo, doc: unknown): void {
  io.stdout(JSON.stringify(doc) + '\n');
}

export type Log = (msg: string) => void;

export function stderrLog(io: PluginIo): Log {
  return (msg) => io.stderr(`weave-cni: ${msg}\n`);
}

async function readProcessStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The real process: env, stdin, stdout and stderr (writes to pipes are synchronous on Linux). */
export function processIo(): PluginIo {
  return {
    env: process.env,
    stdin: readProcessStdin,
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
  };
}
