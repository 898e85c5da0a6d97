// A daemon's pid file: which process holds it, taking it (one router per host), giving it back.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { WeaveError } from '../core/errors.js';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live process the file names, if its command line contains `command` (not a recycled pid). */
export function livePid(path: string, command: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(command)) return undefined;
  } catch {
    return undefined;
  }
  return pid;
}

/**
 * Takes the pid file for this process, created exclusively so that of two starting at once
 * only one gets it; a file left by a process that is gone is taken over. Refuses (ALREADY_EXISTS)
 * while another live `command` holds it.
 */
export function claimPidFile(path: string, command: string): void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new WeaveError('IO_FAILED', `cannot write ${path}: ${(e as Error).message}`, { cause: e });
    }
    const other = livePid(path, command);
    if (other === process.pid) return;
    if (other !== undefined) throw new WeaveError('ALREADY_EXISTS', `a weave router is already running (pid ${other}, ${path})`);
    rmSync(path, { force: true });
  }
  throw new WeaveError('ALREADY_EXISTS', `could not take ${path}: another process keeps writing it`);
}

/** Removes the pid file if it is still ours (a second process that failed must not remove the first's). */
export function releasePidFile(path: string): void {
  try {
    if (Number(readFileSync(path, 'utf8').trim()) !== process.pid) return;
  } catch {
    return;
  }
  rmSync(path, { force: true });
}
