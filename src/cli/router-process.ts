// Finding, starting and stopping the background weaver through its pid file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WEAVER_PID_FILE } from '../api/types.js';

export function pidFile(runDir: string): string {
  return join(runDir, WEAVER_PID_FILE);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of a live weaver recorded in the run directory, if any. */
export function runningPid(runDir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(pidFile(runDir), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  try {
    // Guard against a recycled pid: it must still be a weaver.
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmd.includes('weaver')) return undefined;
  } catch {
    return undefined;
  }
  return pid;
}

export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}
