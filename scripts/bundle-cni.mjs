#!/usr/bin/env node
// Bundles the CNI plugins into one ESM file so that a plugin start loads a single module
// (runtimes exec the plugin for every ADD/DEL; module resolution would dominate otherwise).
import { build } from 'esbuild';
import { dirname, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
await build({
  entryPoints: [resolve(root, 'src/cni/entry.ts')],
  outfile: resolve(root, 'dist/cni/weave-cni.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: false,
  minify: false,
  logLevel: 'warning',
});
