#!/usr/bin/env node
// weaver: the weave router daemon.
import { runWeaver } from '../dist/src/daemon/main.js';

const code = await runWeaver(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
});
process.exit(code);
