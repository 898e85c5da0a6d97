#!/usr/bin/env node
// Checks the import rules of docs/architecture.md: each layer under src/ may import only the
// layers listed for it. Runs over the TypeScript sources, so it needs no build.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');

// layer -> layers it may import (itself always allowed)
const allowed = {
  core: [],
  platform: ['core'],
  mesh: ['core'],
  dataplane: ['core', 'mesh'],
  ipam: ['core', 'mesh'],
  dns: ['core', 'mesh'],
  'api/types': ['core'],
  'api/client': ['core', 'api/types'],
  'api/server': ['core', 'api/types'],
  cli: ['core', 'api/types', 'api/client', 'platform'],
  cni: ['core', 'api/types', 'api/client', 'platform'],
  daemon: ['core', 'platform', 'mesh', 'dataplane', 'ipam', 'dns', 'api/types', 'api/client', 'api/server', 'cni'],
};

function layerOf(file) {
  const rel = relative(src, file).split('/');
  if (rel[0] === 'api') {
    if (rel[1] === 'server') return 'api/server';
    if (rel[1] === 'client.ts' || rel[1] === 'client') return 'api/client';
    return 'api/types';
  }
  return rel[0];
}

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

const importRe = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
const problems = [];
const files = walk(src);
const graph = new Map();
for (const file of files) {
  const from = layerOf(file);
  if (!(from in allowed)) { problems.push(`${relative(root, file)}: unknown layer ${from}`); continue; }
  const text = readFileSync(file, 'utf8');
  const deps = [];
  for (const m of text.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    if (!spec.startsWith('.')) continue;
    const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
    deps.push(target);
    const to = layerOf(target);
    if (to !== from && !allowed[from].includes(to)) {
      problems.push(`${relative(root, file)}: layer ${from} may not import ${to} (${spec})`);
    }
  }
  graph.set(file, deps);
}
// No import cycles between modules.
const state = new Map();
function visit(f, stack) {
  if (state.get(f) === 2) return;
  if (state.get(f) === 1) { problems.push(`import cycle: ${[...stack, f].map((x) => relative(root, x)).join(' -> ')}`); return; }
  state.set(f, 1);
  for (const d of graph.get(f) ?? []) if (graph.has(d)) visit(d, [...stack, f]);
  state.set(f, 2);
}
for (const f of graph.keys()) visit(f, []);

if (problems.length) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log(`layers ok (${files.length} modules)`);
