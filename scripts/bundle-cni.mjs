#!/usr/bin/env node
// Bundles the CNI plugins into one self-contained CommonJS file, so a plugin start loads a
// single module (runtimes exec the plugin for every ADD/DEL) and `weave setup` can install it
// into /opt/cni/bin without node_modules. Run directly (`node weave-cni.cjs net|ipam`) it is
// the installed plugin's entry point; bin/weave-net.js and bin/weave-ipam.js import it.
import { build } from 'esbuild';
import { dirname, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
await build({
  entryPoints: [resolve(root, 'src/cni/entry.ts')],
  outfile: resolve(root, 'dist/cni/weave-cni.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: false,
  minify: false,
  logLevel: 'warning',
  footer: {
    js: [
      'if (require.main === module) {',
      "  module.exports.runPlugin(process.argv[2] === 'ipam' ? 'ipam' : 'net').then(",
      '    (code) => process.exit(code),',
      "    (e) => { process.stderr.write('weave-cni: ' + String(e) + '\\n'); process.exit(1); });",
      '}',
    ].join('\n'),
  },
});
