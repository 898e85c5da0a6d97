// SqliteStore's damaged files: refused at open, and reads that meet damage later throw
// STORE_FAILED naming the file and the way out, not SQLite's bare message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../../src/platform/sqlite-store.js';
import { isWeaveError } from '../../../src/core/errors.js';

const PAGE = 4096;

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'weave-store-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function fill(path: string): void {
  const s = new SqliteStore(path);
  s.transaction(() => {
    for (let i = 0; i < 3000; i++) s.set(`ipam/owned/c${String(i).padStart(4, '0')}`, 'x'.repeat(200));
  });
  s.close();
}

/** Overwrites `count` pages from page `first` (1-based) with junk, as a bad disk would. */
function damage(path: string, first: number, count: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.alloc(PAGE * count, 0xab), 0, PAGE * count, PAGE * (first - 1));
  } finally {
    closeSync(fd);
  }
}

function isCorruptStoreError(path: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(isWeaveError(e, 'STORE_FAILED'), `STORE_FAILED, got ${String(e)}`);
    assert.ok(e.message.includes(path), e.message);
    assert.match(e.message, /corrupt file: run `weave reset`/);
    return true;
  };
}

test('a file with damaged pages is refused at open, with the path and what to do', () => {
  withDir((dir) => {
    const path = join(dir, 'weave.db');
    fill(path);
    damage(path, 4, 10);
    assert.throws(() => new SqliteStore(path), isCorruptStoreError(path));
  });
});

test('reads that meet damage after open throw STORE_FAILED, not a bare SQLite error', () => {
  withDir((dir) => {
    const path = join(dir, 'weave.db');
    fill(path);
    const s = new SqliteStore(path);
    try {
      damage(path, 4, 10);
      // Another connection's commit makes ours drop its page cache and read the file again.
      const other = new Database(path);
      other.exec('CREATE TABLE t (x)');
      other.close();
      assert.throws(() => s.scan('ipam/owned/'), isCorruptStoreError(path));
      let failedGets = 0;
      for (let i = 0; i < 3000; i += 50) {
        try {
          s.get(`ipam/owned/c${String(i).padStart(4, '0')}`);
        } catch (e) {
          isCorruptStoreError(path)(e);
          failedGets++;
        }
      }
      assert.ok(failedGets > 0, 'some key lives on a damaged page');
    } finally {
      s.close();
    }
  });
});

test('a file that is not a database at all is refused at open', () => {
  withDir((dir) => {
    const path = join(dir, 'weave.db');
    const fd = openSync(path, 'w');
    writeSync(fd, Buffer.from('not a database '.repeat(500)));
    closeSync(fd);
    assert.throws(() => new SqliteStore(path), isCorruptStoreError(path));
  });
});
