// Running a delegated IPAM plugin, as libcni's DelegateAdd/Del/Check/Status/GC do: find the
// executable named by ipam.type in the CNI_PATH directories, run it with our own environment
// and our own stdin (only CNI_COMMAND differs), copy its stderr to ours, and read its stdout:
// a result of any version on ADD, nothing on the other verbs, or a CNI error document whose
// code and msg we pass through unchanged.
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { WeaveError } from '../core/errors.js';
import type { ExecOptions, ExecResult } from '../platform/exec.js';
import { CniError, CNI_ERR } from './cni-error.js';
import { parseResult, type CniResult } from './result.js';
import type { CniCommand, EnvMap } from './skel.js';

export type ExecFn = (cmd: string, args: readonly string[], opts?: ExecOptions) => Promise<ExecResult>;
export type FindExecutableFn = (dirs: readonly string[], name: string) => string | undefined;

/** The first regular, executable file `name` in `dirs` (libcni's FindInPath). */
export function findExecutable(dirs: readonly string[], name: string): string | undefined {
  for (const dir of dirs) {
    const p = join(dir, name);
    try {
      if (!statSync(p).isFile()) continue;
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface DelegateOptions {
  type: string;
  dirs: readonly string[];
  env: EnvMap;
  stdin: string;
  exec: ExecFn;
  find: FindExecutableFn;
  /** Where the delegate's stderr goes (ours). */
  stderr: (s: string) => void;
}

export class DelegatePlugin {
  private readonly opts: DelegateOptions;

  constructor(opts: DelegateOptions) {
    this.opts = opts;
  }

  private locate(): string {
    const p = this.opts.find(this.opts.dirs, this.opts.type);
    if (!p) {
      throw new WeaveError('NOT_FOUND', `failed to find IPAM plugin "${this.opts.type}" in CNI_PATH [${this.opts.dirs.join(' ')}]`);
    }
    return p;
  }

  /** Runs the delegate for `command`; its stdout on success. */
  async run(command: CniCommand): Promise<string> {
    const path = this.locate();
    const env: Record<string, string | undefined> = { ...this.opts.env, CNI_COMMAND: command };
    const r = await this.opts.exec(path, [], { input: this.opts.stdin, env });
    if (r.stderr !== '') this.opts.stderr(r.stderr.endsWith('\n') ? r.stderr : r.stderr + '\n');
    if (r.code === 0) return r.stdout;
    throw delegateError(this.opts.type, command, r);
  }

  async add(): Promise<CniResult> {
    const out = await this.run('ADD');
    try {
      return parseResult(out);
    } catch (e) {
      throw new WeaveError('DECODE_FAILED', `IPAM plugin "${this.opts.type}" returned an unusable result: ${(e as Error).message}`);
    }
  }
}

/** The delegate's own error document passed through, or a description of how it failed. */
function delegateError(type: string, command: CniCommand, r: ExecResult): CniError {
  try {
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    if (typeof doc === 'object' && doc !== null && typeof doc.code === 'number' && typeof doc.msg === 'string') {
      return new CniError(doc.code, doc.msg, typeof doc.details === 'string' && doc.details !== '' ? { details: doc.details } : {});
    }
  } catch {
    // not an error document
  }
  const text = (r.stdout.trim() || r.stderr.trim()).slice(0, 500);
  return new CniError(CNI_ERR.INTERNAL, `IPAM plugin "${type}" failed (${command}, exit ${r.code})${text ? `: ${text}` : ''}`);
}
