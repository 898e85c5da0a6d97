// The hint of a failed store operation: an I/O error on a full filesystem (SQLite says only
// "disk I/O error", e.g. when the -shm file cannot grow at open) is a full disk. A real full
// disk needs a mount; a fake statfs stands in for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { failureHint } from '../../../src/platform/sqlite-store.js';

test('an I/O error on a full filesystem is reported as a full disk', () => {
  const ioerr = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_SHMSIZE' });
  const full = () => ({ bavail: 0, bsize: 4096 });
  const roomy = () => ({ bavail: 1_000_000n, bsize: 4096n });
  assert.equal(failureHint(ioerr, '/var/lib/weave/weave.db', full), ' (disk full)');
  assert.equal(failureHint(ioerr, '/var/lib/weave/weave.db', roomy), '', 'with room left it is some other I/O error');
  assert.equal(failureHint(ioerr, '/var/lib/weave/weave.db', () => { throw new Error('ENOSYS'); }), '');
  assert.equal(failureHint(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }), '/x/weave.db', roomy), ' (disk full)');
  assert.equal(failureHint(Object.assign(new Error('readonly'), { code: 'SQLITE_READONLY_DIRECTORY' }), '/x/weave.db', roomy), ' (read-only)');
});
