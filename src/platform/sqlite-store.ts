// The crash-safe embedded store under the data directory: one SQLite file (WAL, synchronous
// FULL) holding a key/value table. A write either reaches the disk or throws STORE_FAILED
// (disk full, read-only, corrupt file), so callers change memory only after a write succeeded.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
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

function storeError(what: string, e: unknown): WeaveError {
  const code = (e as { code?: string }).code ?? '';
  const hint = code === 'SQLITE_FULL' ? ' (disk full)' : code === 'SQLITE_READONLY' ? ' (read-only)' : '';
  return new WeaveError('STORE_FAILED', `store ${what} failed${hint}: ${(e as Error).message}`, { cause: e });
}

export class SqliteStore implements KeyValueStore {
  private readonly db: Database.Database;
  private readonly stmts: {
    get: Database.Statement;
    scan: Database.Statement;
    set: Database.Statement;
    del: Database.Statement;
  };

  constructor(path: string) {
    try {
      mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.exec('CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID');
      this.stmts = {
        get: this.db.prepare('SELECT value FROM kv WHERE key = ?'),
        scan: this.db.prepare('SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key'),
        set: this.db.prepare('INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
        del: this.db.prepare('DELETE FROM kv WHERE key = ?'),
      };
    } catch (e) {
      throw storeError(`open of ${path}`, e);
    }
  }

  get(key: string): string | undefined {
    const row = this.stmts.get.get(key) as { value: string } | undefined;
    return row?.value;
  }

  scan(prefix: string): { key: string; value: string }[] {
    // Every key with the prefix sorts below prefix + U+FFFF.
    return this.stmts.scan.all(prefix, prefix + '\uffff') as { key: string; value: string }[];
  }

  set(key: string, value: string): void {
    try {
      this.stmts.set.run(key, value);
    } catch (e) {
      throw storeError(`write of ${key}`, e);
    }
  }

  delete(key: string): void {
    try {
      this.stmts.del.run(key);
    } catch (e) {
      throw storeError(`delete of ${key}`, e);
    }
  }

  transaction<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn)();
    } catch (e) {
      if (e instanceof WeaveError) throw e;
      throw storeError('transaction', e);
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
