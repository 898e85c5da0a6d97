// The router's pid file: taken exclusively, a stale one taken over, another live holder refused,
// and only its own holder removes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimPidFile, livePid, releasePidFile } from '../../../src/platform/pid-file.js';
import { isWeaveError } from '../../../src/core/errors.js';

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'weave-pid-test-'));
}

test('claim writes our pid; a file of a process that is gone is taken over', () => {
  const d = dir();
  try {
    const f = join(d, 'weaver.pid');
    claimPidFile(f, 'node');
    assert.equal(readFileSync(f, 'utf8'), `${process.pid}\n`);
    claimPidFile(f, 'node'); // ours already
    writeFileSync(f, '999999999\n'); // no such process
    claimPidFile(f, 'node');
    assert.equal(livePid(f, 'node'), process.pid);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('another live holder is refused, and its file is left alone by our release', async () => {
  const d = dir();
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
  try {
    await new Promise((r) => other.once('spawn', r));
    const f = join(d, 'weaver.pid');
    writeFileSync(f, `${other.pid}\n`);
    assert.throws(() => claimPidFile(f, 'node'), (e: unknown) => isWeaveError(e, 'ALREADY_EXISTS') && /already running \(pid \d+/.test((e as Error).message));
    releasePidFile(f);
    assert.equal(readFileSync(f, 'utf8').trim(), String(other.pid));
    // A live process that is not the command named (a recycled pid) does not hold it.
    assert.equal(livePid(f, 'weaver-no-such-command'), undefined);
    claimPidFile(f, 'weaver-no-such-command');
    releasePidFile(f);
    assert.equal(existsSync(f), false);
  } finally {
    other.kill();
    rmSync(d, { recursive: true, force: true });
  }
});
