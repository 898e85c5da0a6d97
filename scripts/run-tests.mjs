#!/usr/bin/env node
// Runs the compiled test suite with node's test runner, one file at a time in path order (the
// runner sorts them): the netns tests (root only; they must not skip in CI), then the unit tests.
// Optional args filter by path substring.
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const testRoot = join(root, 'dist', 'test');
if (!existsSync(testRoot)) {
  console.error('dist/test is missing: run `npm run build` first');
  process.exit(1);
}
function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2);
let files = walk(testRoot);
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  if (process.env.CI === 'true') {
    console.error('the netns tests need root, and CI must run them');
    process.exit(1);
  }
  console.error('not root: skipping test/netns (they need root)');
  files = files.filter((f) => !f.includes('/netns/'));
}
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, WEAVE_REPO_ROOT: root },
});
process.exit(r.status ?? 1);
