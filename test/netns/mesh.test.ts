// Three hosts (network namespaces on one underlay bridge) running weaver: the mesh forms,
// discovery, gossip through a middle host without discovery, connect --replace and forget,
// a wrong password, kill -9 and restart, and a cut underlay link.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, hostsOnUnderlay, requireRoot, uniquePrefix } from '../helpers/netns.js';

const prefix = uniquePrefix();
const { hosts, host: h, underlay } = hostsOnUnderlay(prefix, 'm', 3);
const ip = (i: number) => `192.0.2.${i}`;
const name = (i: number) => `7a:00:00:00:00:0${i}`;

async function launch(i: number, args: string[] = []): Promise<void> {
  await h(i).stopWeaver('SIGKILL');
  await h(i).startWeaver({ name: name(i), nickname: `host${i}`, args: ['--ipalloc-default-subnet', `10.${32 + i}.0.0/16`, '--ipalloc-range', '10.32.0.0/12', ...args] });
}

async function status(i: number, sub = ''): Promise<string> {
  return (await h(i).client.request('GET', `/status${sub ? '/' + sub : ''}`)).body;
}

function establishedTo(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => /\bestablished\b/.test(l))
    .map((l) => /(7a:00:00:00:00:0\d)\(/.exec(l)?.[1] ?? '?')
    .sort();
}

async function stopAll(): Promise<void> {
  for (const x of hosts) await x.stopWeaver('SIGKILL');
}

test('launch with peers gives a full mesh; status shows peers and connections', async (t) => {
  if (!requireRoot(t)) return;
  await launch(1);
  await launch(2, [ip(1)]);
  // Host 3 the way a user does it: `weave launch <peers>` starts weaver in the background.
  await h(3).stopWeaver('SIGKILL');
  const launched = h(3).weave(['launch', '--name', name(3), '--nickname', 'host3', '--ipalloc-default-subnet', '10.35.0.0/16', '--ipalloc-range', '10.32.0.0/12', ip(1), ip(2)]);
  assert.equal(launched.code, 0, launched.stderr);
  t.after(() => void h(3).weave(['stop']));
  await h(3).startProxy();
  await h(3).client.waitUntilUp(20_000);
  for (const i of [1, 2, 3]) {
    await eventually(async () => establishedTo(await status(i, 'connections')).length === 2, 15_000, `host${i} connected to both others`);
  }
  // Every peer's view of every connection arrives with topology gossip (1 s debounce).
  const s = await eventually(async () => {
    const text = await status(1);
    return /          Peers: 3 \(with 6 established connections\)\n/.test(text) ? text : undefined;
  }, 15_000, 'all six connection ends known');
  assert.match(s!, /    Connections: 2 \(2 established\)\n/);
  const peers = await status(2, 'peers');
  for (const i of [1, 2, 3]) assert.match(peers, new RegExp(`^${name(i)}\\(host${i}\\)$`, 'm'));
  // Targets are printed as given (the original's status/targets).
  assert.equal(await status(3, 'targets'), `${ip(1)}\n${ip(2)}\n`);
  const m = await h(1).client.call('GET', '/metrics', 'm');
  assert.match(m, /^weave_connections\{encryption="",state="established",type="fastdp"\} 2$/m);
  assert.equal(h(3).weave(['stop']).code, 0);
  await stopAll();
});

test('discovery turns a chain into a full mesh; without discovery gossip still reaches the far end', async (t) => {
  if (!requireRoot(t)) return;
  await launch(1);
  await launch(2, [ip(1)]);
  await launch(3, [ip(2)]);
  await eventually(async () => establishedTo(await status(1, 'connections')).includes(name(3)), 20_000, 'h1–h3 direct connection by discovery');
  await stopAll();
  await launch(1, ['--no-discovery']);
  await launch(2, ['--no-discovery', ip(1)]);
  await launch(3, ['--no-discovery', ip(2)]);
  await eventually(async () => (await status(1, 'peers')).includes(`${name(3)}(host3)`), 20_000, 'h1 learns about h3 through h2');
  assert.deepEqual(establishedTo(await status(1, 'connections')), [name(2)]);
  assert.match(await status(1), /  PeerDiscovery: disabled\n/);
  const routes = () => h(1).client.call('GET', '/report?format=' + encodeURIComponent('{{range .Router.UnicastRoutes}}{{.Dest}}>{{.Via}} {{end}}'), 'r');
  await eventually(async () => new RegExp(`${name(3)}>${name(2)}`).test(await routes()), 10_000, 'h1 routes to h3 via h2');
  await stopAll();
});

test('connect --replace and forget change the targets', async (t) => {
  if (!requireRoot(t)) return;
  await launch(1);
  await launch(2);
  await launch(3);
  const weave = (i: number, ...args: string[]) => h(i).weave(args);
  assert.equal(weave(1, 'connect', ip(2)).code, 0);
  await eventually(async () => establishedTo(await status(1, 'connections')).includes(name(2)), 15_000, 'h1–h2');
  assert.equal(weave(1, 'connect', '--replace', ip(3)).code, 0);
  assert.equal(await status(1, 'targets'), `${ip(3)}\n`);
  await eventually(async () => establishedTo(await status(1, 'connections')).includes(name(3)), 15_000, 'h1–h3');
  assert.equal(weave(1, 'forget', ip(3)).code, 0);
  assert.equal(await status(1, 'targets'), '');
  const bad = weave(1, 'connect', 'not a host!');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /not a host/);
  // Targets are persisted: --resume starts from them.
  assert.equal(weave(1, 'connect', '--replace', ip(2)).code, 0);
  await launch(1, ['--resume']);
  assert.equal(await status(1, 'targets'), `${ip(2)}\n`);
  await stopAll();
});

test('a peer with the wrong password is refused, with a clear status line', async (t) => {
  if (!requireRoot(t)) return;
  await launch(1, ['--password', 'right']);
  await launch(2, ['--password', 'wrong', ip(1)]);
  await launch(3, ['--password', 'right', ip(1)]);
  await eventually(async () => establishedTo(await status(3, 'connections')).includes(name(1)), 15_000, 'same password connects');
  await eventually(async () => /decrypt/i.test(await status(2, 'connections')), 15_000, 'wrong password refused');
  assert.deepEqual(establishedTo(await status(2, 'connections')), []);
  assert.match(await status(3, 'connections'), /established encrypted/);
  assert.match(await status(1), /     Encryption: enabled\n/);
  await stopAll();
});

test('kill -9 and restart of one router: the mesh re-forms', async (t) => {
  if (!requireRoot(t)) return;
  await launch(1);
  await launch(2, [ip(1)]);
  await launch(3, [ip(1)]);
  await eventually(async () => establishedTo(await status(1, 'connections')).length === 2, 15_000, 'mesh');
  await h(2).stopWeaver('SIGKILL');
  await eventually(async () => !establishedTo(await status(1, 'connections')).includes(name(2)), 15_000, 'h1 notices h2 gone');
  await h(2).startWeaver({ name: name(2), nickname: 'host2', args: ['--resume'] });
  assert.match(await h(1).client.call('GET', '/metrics', 'm'), /^weave_connection_terminations_total [1-9]/m);
  for (const i of [1, 3]) {
    await eventually(async () => establishedTo(await status(i, 'connections')).includes(name(2)), 20_000, `host${i} reconnected to h2`);
  }
  await stopAll();
});

test('cutting the underlay link between two hosts and restoring it', async (t) => {
  if (!requireRoot(t)) return;
  await launch(1);
  await launch(2, [ip(1)]);
  await eventually(async () => establishedTo(await status(1, 'connections')).includes(name(2)), 15_000, 'h1–h2');
  underlay().cut(2);
  // TCP notices a dead peer through the heartbeat (30 s) and the read deadline (60 s) at the
  // latest; a killed link with pending writes fails sooner. Give it the read deadline.
  await eventually(async () => !establishedTo(await status(1, 'connections')).includes(name(2)), 75_000, 'connection dropped');
  underlay().restore(2);
  await eventually(async () => establishedTo(await status(2, 'connections')).includes(name(1)), 30_000, 'connection back');
  await stopAll();
});
