// Finding, starting and stopping the background weaver through its pid file.
import { join } from 'node:path';
import { WEAVER_PID_FILE } from '../api/types.js';
import { isAlive, livePid } from '../platform/pid-file.js';


export function pidFile(runDir: string): string {
  return join(runDir, WEAVER_PID_FILE);
}

/** The pid of a live weaver recorded in the run directory, if any. */
export function runningPid(runDir: string): number | undefined {
  return livePid(pidFile(runDir), 'weaver');
}

export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}
