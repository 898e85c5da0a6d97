// Running the kernel's command-line tools (ip, iptables, nsenter). The one place that spawns
// processes; callers get typed results and KERNEL_FAILED errors that carry the tool's stderr.
import { spawn } from 'node:child_process';
import { WeaveError } from '../core/errors.js';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Where the tools live; a daemon may have a minimal PATH, so fall back to the usual places. */
const extraPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function envWithPath(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  const base = env ?? process.env;
  const path = base.PATH ? `${base.PATH}:${extraPath}` : extraPath;
  return { ...base, PATH: path };
}

/** Runs a command and resolves with its exit code and output; rejects only if it cannot start. */
export function execFile(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: envWithPath(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    }
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new WeaveError('KERNEL_FAILED', `cannot run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `killed by ${signal}` : ''),
      });
    });
    child.stdin.on('error', () => {}); // the tool may exit before reading all input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command that must succeed; a non-zero exit becomes KERNEL_FAILED with its stderr. */
export async function execChecked(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await execFile(cmd, args, opts);
  if (r.code !== 0) {
    throw new WeaveError('KERNEL_FAILED', `${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
  return r.stdout;
}
