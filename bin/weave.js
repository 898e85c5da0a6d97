#!/usr/bin/env node
// weave: the command line.
import { runCli } from '../dist/src/cli/main.js';

const code = await runCli(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  env: process.env,
});
process.exit(code);
