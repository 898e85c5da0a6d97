// The crash-safe embedded store under the data directory: one SQLite file (WAL, synchronous
// FULL) holding a key/value table. A write either reaches the disk or throws STORE_FAILED
// (disk full, read-only, corrupt file), so callers change memory only after a write succeeded.
// Reads throw STORE_FAILED too, and a file whose pages are damaged is refused at open.
import Database from 'better-sqlite3';
import { mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { WeaveError } from '../core/errors.js';

export interface KeyValueStore {
  get(key: string): string | undefined;
  /** Keys and values whose key starts with `prefix`, in key order. */
  scan(prefix: string): { key: string; value: string }[];
  set(key: string, value: string): void;
  delete(key: string): void;
  /** Runs `fn` atomically: all of its writes land, or none. */
  transaction<T>(fn: () => T): T;
  close(): void;
}

/** Free space of a directory's filesystem (fs.statfsSync's fields we need). */
export type StatFs = (dir: string) => { bavail: number | bigint; bsize: number | bigint };

/**
 * Bytes under which a filesystem counts as full: SQLite grows the file, the WAL and the -shm
 * index by a page or a 32 KiB region at a time, so less than that left fails a write.
 */
const FULL_BELOW_BYTES = 64 * 1024;

/**
 * Why a store operation failed, for the message: SQLITE_FULL is a full disk, but so is an
 * I/O error while the directory has no room left (at open in WAL mode, the -shm file cannot
 * grow: SQLITE_IOERR_SHMSIZE, "disk I/O error"), which only the free space tells apart.
 */
export function failureHint(e: unknown, path: string, statfs: StatFs = statfsSync): string {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return '';
  if (code === 'SQLITE_FULL') return ' (disk full)';
  if (code.startsWith('SQLITE_READONLY')) return ' (read-only)';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return ` (corrupt file: run \`weave reset\`, or remove ${path} with its -wal and -shm files)`;
  if (code.startsWith('SQLITE_IOERR')) {
    try {
      const s = statfs(dirname(path));
      if (BigInt(s.bavail) * BigInt(s.bsize) < FULL_BELOW_BYTES) return ' (disk full)';
    } catch {
      // No better hint than SQLite's own message.
    }
  }
  return '';
}

function storeError(what: string, e: unknown, path: string, statfs: StatFs | undefined): WeaveError {
  const hint = failureHint(e, path, statfs);
  return new WeaveError('STORE_FAILED', `store ${what} failed${hint}: ${(e as Error).message}`, { cause: e });
}

export class SqliteStore implements KeyValueStore {
  private readonly path: string;
  private readonly statfs: StatFs | undefined;
  private readonly db: Database.Database;
  private readonly stmts: {
    get: Database.Statement;
    scan: Database.Statement;
    set: Database.Statement;
    del: Database.Statement;
  };

  /** `statfs` replaces fs.statfsSync (tests). */
  constructor(path: string, opts: { statfs?: StatFs } = {}) {
    this.path = path;
    this.statfs = opts.statfs;
    let db: Database.Database | undefined;
    try {
      mkdirSync(dirname(path), { recursive: true });
      db = new Database(path);
      this.db = db;
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      // Damaged pages otherwise surface later, as a failed read deep in IPAM or DNS. The check
      // reads every page once: about 1 ms for 3000 entries (500 KB), 30 ms for 30000 (5 MB).
      const check = String(this.db.pragma('quick_check', { simple: true }));
      if (check !== 'ok') {
        const problems = check.split('\n').filter((l) => !l.startsWith('***'));
        const more = problems.length > 1 ? ` and ${problems.length - 1} more` : '';
        throw Object.assign(new Error(`database disk image is malformed (quick_check: ${problems[0] ?? check}${more})`), { code: 'SQLITE_CORRUPT' });
      }
      this.db.exec('CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID');
      this.stmts = {
        get: this.db.prepare('SELECT value FROM kv WHERE key = ?'),
        scan: this.db.prepare('SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key'),
        set: this.db.prepare('INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
        del: this.db.prepare('DELETE FROM kv WHERE key = ?'),
      };
    } catch (e) {
      if (db?.open) db.close();
      throw storeError(`open of ${path}`, e, path, opts.statfs);
    }
  }

  /** STORE_FAILED naming the file: the advice (reset, free space) is about that file. */
  private error(what: string, e: unknown): WeaveError {
    return storeError(`${what} in ${this.path}`, e, this.path, this.statfs);
  }

  get(key: string): string | undefined {
    try {
      const row = this.stmts.get.get(key) as { value: string } | undefined;
      return row?.value;
    } catch (e) {
      throw this.error(`read of ${key}`, e);
    }
  }

  scan(prefix: string): { key: string; value: string }[] {
    try {
      // Every key with the prefix sorts below prefix + U+FFFF.
      return this.stmts.scan.all(prefix, prefix + '\uffff') as { key: string; value: string }[];
    } catch (e) {
      throw this.error(`scan of ${prefix}`, e);
    }
  }

  set(key: string, value: string): void {
    try {
      this.stmts.set.run(key, value);
    } catch (e) {
      throw this.error(`write of ${key}`, e);
    }
  }

  delete(key: string): void {
    try {
      this.stmts.del.run(key);
    } catch (e) {
      throw this.error(`delete of ${key}`, e);
    }
  }

  transaction<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn)();
    } catch (e) {
      if (e instanceof WeaveError) throw e;
      throw this.error('transaction', e);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** An in-memory store with the same contract, for tests. */
export class MemoryStore implements KeyValueStore {
  private readonly map = new Map<string, string>();
  /** When set, the next writes throw STORE_FAILED (to test a full disk). */
  failWrites = false;

  get(key: string): string | undefined {
    return this.map.get(key);
  }
  scan(prefix: string): { key: string; value: string }[] {
    return [...this.map.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, value]) => ({ key, value }));
  }
  set(key: string, value: string): void {
    if (this.failWrites) throw new WeaveError('STORE_FAILED', `store write of ${key} failed (disk full)`);
    this.map.set(key, value);
  }
  delete(key: string): void {
    if (this.failWrites) throw new WeaveError('STORE_FAILED', `store delete of ${key} failed (disk full)`);
    this.map.delete(key);
  }
  transaction<T>(fn: () => T): T {
    const snapshot = new Map(this.map);
    try {
      return fn();
    } catch (e) {
      this.map.clear();
      for (const [k, v] of snapshot) this.map.set(k, v);
      throw e;
    }
  }
  close(): void {}
}
