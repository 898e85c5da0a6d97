// weaver's mesh and data-path flags and their environment variables, as the original's: the
// defaults, each flag taken as given, a flag beating its variable, and bad values (from either)
// refused before anything starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDaemonArgs } from '../../../src/daemon/config.js';
import { isWeaveError } from '../../../src/core/errors.js';
import { formatCidr } from '../../../src/core/ip.js';

const VARS = ['WEAVE_PORT', 'WEAVE_MTU', 'WEAVE_PASSWORD', 'WEAVE_NO_FASTDP'] as const;

/** Parses with exactly these variables set (the others unset), restoring the environment after. */
function withEnv<T>(vars: Partial<Record<(typeof VARS)[number], string>>, f: () => T): T {
  const saved = VARS.map((k) => [k, process.env[k]] as const);
  for (const k of VARS) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    return f();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const parse = (args: string[], vars: Partial<Record<(typeof VARS)[number], string>> = {}) => withEnv(vars, () => parseDaemonArgs(args));

test('mesh defaults are the original\'s', () => {
  const c = parse([]);
  assert.equal(c.port, 6783);
  assert.equal(c.host, '');
  assert.equal(c.mtu, 1376);
  assert.equal(c.connLimit, 200);
  assert.equal(c.discovery, true);
  assert.equal(c.resume, false);
  assert.equal(c.minProtocolVersion, 1);
  assert.equal(c.fastdp, true);
  assert.equal(c.password, undefined);
  assert.deepEqual(c.trustedSubnets, []);
  assert.deepEqual(c.peers, []);
});

test('mesh flags are taken as given', () => {
  const c = parse([
    '--name', '7a:00:00:00:00:01', '--nickname', 'h1', '--port', '7000', '--host', '192.0.2.1',
    '--password', 'secret', '--trusted-subnets', '192.0.2.0/24, 198.51.100.0/24', '--no-discovery',
    '--conn-limit', '5', '--min-protocol-version', '2', '--mtu', '1400', '--no-fastdp', '192.0.2.2', '192.0.2.3:7000',
  ]);
  assert.equal(c.name, '7a:00:00:00:00:01');
  assert.equal(c.nickname, 'h1');
  assert.equal(c.port, 7000);
  assert.equal(c.host, '192.0.2.1');
  assert.equal(c.password, 'secret');
  assert.deepEqual(c.trustedSubnets.map(formatCidr), ['192.0.2.0/24', '198.51.100.0/24']);
  assert.equal(c.discovery, false);
  assert.equal(c.connLimit, 5);
  assert.equal(c.minProtocolVersion, 2);
  assert.equal(c.mtu, 1400);
  assert.equal(c.fastdp, false);
  assert.deepEqual(c.peers, ['192.0.2.2', '192.0.2.3:7000']);
  assert.equal(parse(['--resume']).resume, true);
});

test('WEAVE_PORT, WEAVE_MTU, WEAVE_PASSWORD and WEAVE_NO_FASTDP stand in for their flags; a flag wins', () => {
  const c = parse([], { WEAVE_PORT: '7000', WEAVE_MTU: '1400', WEAVE_PASSWORD: 'pw', WEAVE_NO_FASTDP: '1' });
  assert.equal(c.port, 7000);
  assert.equal(c.mtu, 1400);
  assert.equal(c.password, 'pw');
  assert.equal(c.fastdp, false);
  const f = parse(['--port', '7001', '--mtu', '1500', '--password', 'flag'], { WEAVE_PORT: '7000', WEAVE_MTU: '1400', WEAVE_PASSWORD: 'pw' });
  assert.equal(f.port, 7001);
  assert.equal(f.mtu, 1500);
  assert.equal(f.password, 'flag');
});

test('bad mesh values are refused with INVALID_ARGUMENT, from flags and from the environment', () => {
  const bad: [string[], Partial<Record<(typeof VARS)[number], string>>][] = [
    [['--port', '0'], {}],
    [['--port', '65536'], {}],
    [['--port', 'x'], {}],
    [[], { WEAVE_PORT: '99999' }],
    [[], { WEAVE_PORT: 'abc' }],
    [['--mtu', '100'], {}],
    [[], { WEAVE_MTU: 'abc' }],
    [[], { WEAVE_MTU: '70000' }],
    [['--conn-limit', '-1'], {}],
    [['--min-protocol-version', '3'], {}],
    [['--trusted-subnets', '192.0.2.0/33'], {}],
    [['--host', 'not-an-ip'], {}],
    [['--name', 'not-a-mac'], {}],
    [['--resume', '192.0.2.2'], {}],
  ];
  for (const [args, vars] of bad) {
    assert.throws(
      () => parse(args, vars),
      (e: unknown) => isWeaveError(e) && e.code === 'INVALID_ARGUMENT',
      `${args.join(' ')} ${JSON.stringify(vars)}`,
    );
  }
  // The variable's name is in the message, so a user knows where the bad value came from.
  assert.throws(() => parse([], { WEAVE_MTU: 'abc' }), /WEAVE_MTU/);
});

test("the original weaver's flags: Go's single-dash form taken; Docker and datapath flags accepted and reported as ignored", () => {
  const c = parseDaemonArgs(['-name', '7a:00:00:00:00:01', '-nickname=h1', '-conn-limit', '30', '--docker-api=', '--no-bridged-fastdp', '--host-root', '/host', '--datapath=datapath', '192.0.2.2']);
  assert.equal(c.name, '7a:00:00:00:00:01');
  assert.equal(c.nickname, 'h1');
  assert.equal(c.connLimit, 30);
  assert.deepEqual(c.peers, ['192.0.2.2']);
  assert.deepEqual(c.ignored, ['--docker-api', '--datapath', '--no-bridged-fastdp', '--host-root']);
  assert.equal(parseDaemonArgs([]).ignored, undefined);
  // What is not ours stays refused.
  assert.throws(() => parseDaemonArgs(['--expect-npc']), /unknown option/);
  assert.throws(() => parseDaemonArgs(['-bogus']), /unknown option/);
});
