// `weave launch` turns the original script's own flags into what weaver takes: --password goes
// to weaver in WEAVE_PASSWORD (a command line is readable by every local user), --no-restart
// is accepted and dropped, --iprange is --ipalloc-range. weaver is a stand-in here that
// records its arguments and WEAVE_PASSWORD, then exits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WeaveClient } from '../../../src/api/client.js';
import { launch } from '../../../src/cli/launch.js';
import type { CliContext } from '../../../src/cli/context.js';
import { parseDaemonArgs } from '../../../src/daemon/config.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { formatCidr } from '../../../src/core/ip.js';

const FAKE_WEAVER = `import { writeFileSync } from 'node:fs';
writeFileSync(process.env.FAKE_WEAVER_OUT, JSON.stringify({ argv: process.argv.slice(2), password: process.env.WEAVE_PASSWORD ?? null }));
process.exit(3);
`;

interface Spawned {
  argv: string[];
  password: string | null;
}

/** Runs launch with the stand-in weaver; what it was started with, or undefined when it was not. */
async function launchWith(args: string[], env: Record<string, string> = {}, bridge?: string): Promise<{ spawned?: Spawned; code?: number; error?: unknown }> {
  const dir = mkdtempSync(join(tmpdir(), 'weave-launch-test-'));
  try {
    const out = join(dir, 'spawned.json');
    writeFileSync(join(dir, 'weaver.mjs'), FAKE_WEAVER);
    const ctx: CliContext = {
      paths: {
        httpAddr: join(dir, 'api.sock'),
        dataDir: join(dir, 'data'),
        runDir: join(dir, 'run'),
        logFile: join(dir, 'log', 'weaver.log'),
        cniConfDir: join(dir, 'no-cni-conf'),
        cniPluginDir: join(dir, 'no-cni-bin'),
      },
      client: new WeaveClient(join(dir, 'api.sock')),
      out: () => {},
      err: () => {},
      env: { PATH: process.env.PATH ?? '', FAKE_WEAVER_OUT: out, ...env },
      weaverBin: join(dir, 'weaver.mjs'),
      packageRoot: dir,
    };
    let code: number | undefined;
    let error: unknown;
    try {
      code = await launch(ctx, args, bridge);
    } catch (e) {
      error = e;
    }
    let spawned: Spawned | undefined;
    try {
      spawned = JSON.parse(readFileSync(out, 'utf8')) as Spawned;
    } catch {
      // not started
    }
    return { ...(spawned ? { spawned } : {}), ...(code !== undefined ? { code } : {}), ...(error !== undefined ? { error } : {}) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('launch passes --password to weaver in WEAVE_PASSWORD, never on its command line', async () => {
  const forms: [string[], Record<string, string>][] = [
    [['--password', 's3cret'], {}],
    [['--password=s3cret'], {}],
    [['-password', 's3cret'], {}],
    [['-password=s3cret'], {}],
    // A given --password wins over an inherited WEAVE_PASSWORD.
    [['--password', 's3cret'], { WEAVE_PASSWORD: 'inherited' }],
    [['--password=s3cret'], { WEAVE_PASSWORD: 'inherited' }],
  ];
  for (const [flags, env] of forms) {
    const { spawned } = await launchWith(['--nickname', 'h1', ...flags, '192.0.2.2'], env);
    const what = JSON.stringify([flags, env]);
    assert.ok(spawned, what);
    assert.equal(spawned.password, 's3cret', what);
    assert.ok(!spawned.argv.some((a) => a.includes('s3cret') || a.includes('password')), `${what}: ${spawned.argv.join(' ')}`);
    assert.deepEqual(spawned.argv.slice(-3), ['--nickname', 'h1', '192.0.2.2'], what);
  }
  // Without --password, an inherited WEAVE_PASSWORD still reaches weaver.
  assert.equal((await launchWith([], { WEAVE_PASSWORD: 'inherited' })).spawned?.password, 'inherited');
});

test('launch --password without a value is refused before weaver starts', async () => {
  const r = await launchWith(['192.0.2.2', '--password']);
  assert.equal(r.spawned, undefined);
  assert.ok(isWeaveError(r.error, 'INVALID_ARGUMENT'), String(r.error));
  assert.match(String((r.error as Error).message), /--password/);
});

test('launch accepts --no-restart (ignored) and --iprange as --ipalloc-range, as the original script', async () => {
  for (const range of [['--iprange', '10.2.0.0/16'], ['--iprange=10.2.0.0/16']]) {
    const { spawned } = await launchWith(['--no-restart', ...range, '--password', 'pw', '192.0.2.2']);
    assert.ok(spawned, range.join(' '));
    assert.ok(!spawned.argv.includes('--no-restart') && !spawned.argv.some((a) => a.startsWith('--iprange')), spawned.argv.join(' '));
    // weaver takes what it was given.
    const saved = process.env.WEAVE_PASSWORD;
    process.env.WEAVE_PASSWORD = spawned.password ?? '';
    try {
      const c = parseDaemonArgs(spawned.argv);
      assert.equal(formatCidr(c.ipallocRange!), '10.2.0.0/16');
      assert.deepEqual(c.peers, ['192.0.2.2']);
      assert.equal(c.password, 'pw');
    } finally {
      if (saved === undefined) delete process.env.WEAVE_PASSWORD;
      else process.env.WEAVE_PASSWORD = saved;
    }
  }
});

test('launch gives the router the bridge of the CLI (--weave-bridge, WEAVE_BRIDGE) unless its flags name one', async () => {
  const given = await launchWith(['192.0.2.2'], {}, 'br1');
  assert.deepEqual(given.spawned?.argv.slice(-3), ['--weave-bridge', 'br1', '192.0.2.2']);
  const own = await launchWith(['--weave-bridge', 'br2', '192.0.2.2'], {}, 'br1');
  assert.deepEqual(own.spawned?.argv.filter((a) => a.startsWith('br')), ['br2']);
});

test('launch gives the router the original script\'s status address (WEAVE_STATUS_ADDR, else 127.0.0.1:6782) unless its flags name one', async () => {
  const argvOf = async (args: string[], env: Record<string, string> = {}) => (await launchWith(args, env)).spawned?.argv ?? [];
  const statusAddr = (argv: string[]) => argv.flatMap((a, i) => (a === '--status-addr' ? [argv[i + 1]] : a.startsWith('--status-addr=') ? [a.slice(14)] : []));
  assert.deepEqual(statusAddr(await argvOf(['192.0.2.2'])), ['127.0.0.1:6782']);
  assert.deepEqual(statusAddr(await argvOf(['192.0.2.2'], { WEAVE_STATUS_ADDR: '127.0.0.1:9782' })), ['127.0.0.1:9782']);
  assert.deepEqual(statusAddr(await argvOf(['192.0.2.2'], { WEAVE_STATUS_ADDR: '' })), [], 'an empty value turns it off');
  assert.deepEqual(statusAddr(await argvOf(['--status-addr=127.0.0.1:7000', '192.0.2.2'])), ['127.0.0.1:7000']);
  // weaver takes it.
  assert.equal(parseDaemonArgs(await argvOf(['192.0.2.2'])).statusAddr, '127.0.0.1:6782');
});

test("launch drops the original script's Docker proxy and plugin flags, with a word, and shows weaver's help in the foreground", async () => {
  const { spawned } = await launchWith(['--plugin=false', '--proxy=false', '-H', 'tcp://0.0.0.0:12375', '--no-multicast-route', '--hostname-from-label', 'x', '--nickname', 'h1', '192.0.2.2']);
  assert.ok(spawned);
  assert.deepEqual(spawned.argv.slice(-3), ['--nickname', 'h1', '192.0.2.2']);
  for (const gone of ['--plugin=false', '--proxy=false', '-H', 'tcp://0.0.0.0:12375', '--no-multicast-route', '--hostname-from-label', 'x']) {
    assert.ok(!spawned.argv.includes(gone), `${gone} reached weaver: ${spawned.argv.join(' ')}`);
  }
  // --help runs weaver --help at once (the stand-in exits 3), not a router in the background.
  const help = await launchWith(['--help']);
  assert.equal(help.code, 3);
  assert.deepEqual(help.spawned?.argv, ['--help']);
});
