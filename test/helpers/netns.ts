// netns test harness: a "host" is a network namespace with a unique name; a weaver runs in it
// with its own data/run directories; everything is removed in teardown, also on failure.
// Teardown is registered before the first thing is created.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { before, after } from 'node:test';
import { WeaveClient } from '../../src/api/client.js';

export const repoRoot = process.env.WEAVE_REPO_ROOT ?? process.cwd();
export const bin = (name: string) => join(repoRoot, 'bin', `${name}.js`);

export function requireRoot(t: { skip: (msg: string) => void }): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI === 'true') throw new Error('netns tests need root and must run in CI');
  t.skip('needs root');
  return false;
}

/** A short unique prefix for names of namespaces and links (IFNAMSIZ is 15). */
export function uniquePrefix(): string {
  return `w${randomBytes(3).toString('hex')}`;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): RunResult {
  const r = spawnSync(cmd, args, {
    input: opts.input ?? '',
    env: opts.env ?? process.env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
  });
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

export function must(cmd: string, args: string[], opts: Parameters<typeof sh>[2] = {}): string {
  const r = sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A network namespace plus cleanups, removed by `destroy()`. */
export class Netns {
  readonly name: string;
  readonly path: string;
  constructor(name: string) {
    this.name = name;
    this.path = `/run/netns/${name}`;
    must('ip', ['netns', 'add', name]);
    must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }
  /** Runs a command inside the namespace (nsenter keeps the host's /sys and cgroups). */
  run(cmd: string, args: string[], opts: Parameters<typeof sh>[2] = {}): RunResult {
    return sh('nsenter', [`--net=${this.path}`, '--', cmd, ...args], opts);
  }
  must(cmd: string, args: string[], opts: Parameters<typeof sh>[2] = {}): string {
    const r = this.run(cmd, args, opts);
    if (r.code !== 0) throw new Error(`[${this.name}] ${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }
  ip(...args: string[]): string {
    return this.must('ip', args);
  }
  destroy(): void {
    sh('ip', ['netns', 'del', this.name]);
  }
}

export interface WeaverOptions {
  /** null = no --name (let weaver derive it). */
  name?: string | null;
  nickname?: string;
  args?: string[];
}

/** A host namespace running weaver at 127.0.0.1:6784, plus a unix-socket proxy for the test. */
export class WeaveHost {
  readonly ns: Netns;
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  private weaver: ChildProcess | undefined;
  private proxy: ChildProcess | undefined;
  client: WeaveClient;
  readonly socket: string;
  weaverExit: Promise<number | null> | undefined;

  constructor(prefix: string, label: string) {
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-${label}-`));
    this.ns = new Netns(`${prefix}-${label}`);
    this.socket = join(this.dir, 'api.sock');
    this.client = new WeaveClient(this.socket);
    this.env = {
      ...process.env,
      WEAVE_DATA_DIR: join(this.dir, 'data'),
      WEAVE_RUN_DIR: join(this.dir, 'run'),
      WEAVE_LOG_FILE: join(this.dir, 'weaver.log'),
      WEAVE_CNI_CONF_DIR: join(this.dir, 'net.d'),
      WEAVE_CNI_PLUGIN_DIR: join(this.dir, 'cni-bin'),
      WEAVE_HTTP_ADDR: '127.0.0.1:6784',
    };
    delete this.env.NODE_EXTRA_CA_CERTS;
  }

  get logFile(): string {
    return join(this.dir, 'weaver.log');
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  /** The running weaver's pid (nsenter execs node, so the child's pid is weaver's). */
  get weaverPid(): number | undefined {
    return this.weaver?.pid;
  }

  /** Starts weaver in the foreground of a child process (not via `weave launch`). */
  async startWeaver(opts: WeaverOptions = {}): Promise<void> {
    const args = [
      `--net=${this.ns.path}`, '--', process.execPath, bin('weaver'),
      ...(opts.name === null ? [] : ['--name', opts.name ?? '7a:00:00:00:00:01']),
      '--nickname', opts.nickname ?? this.ns.name,
      '--bridge-check-interval-ms', '200',
      ...(opts.args ?? []),
    ];
    const { openSync } = await import('node:fs');
    const fd = openSync(this.logFile, 'a');
    const child = spawn('nsenter', args, { env: this.env, stdio: ['ignore', fd, fd] });
    this.weaver = child;
    this.weaverExit = new Promise((r) => child.on('exit', (code) => r(code)));
    await this.startProxy();
    const exited = this.weaverExit.then((code) => {
      throw new Error(`weaver exited (${code}) before it was up`);
    });
    await Promise.race([this.client.waitUntilUp(20_000), exited]).catch((e: Error) => {
      throw new Error(`weaver did not start: ${e.message}\n${this.log()}`);
    });
    exited.catch(() => undefined);
  }

  async startProxy(): Promise<void> {
    if (this.proxy && this.proxy.exitCode === null) return;
    const p = spawn('nsenter', [`--net=${this.ns.path}`, '--', process.execPath, join(repoRoot, 'dist/test/helpers/netns-proxy.js'), this.socket, '127.0.0.1:6784'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.proxy = p;
    await new Promise<void>((resolve, reject) => {
      p.stdout!.once('data', () => resolve());
      p.once('exit', (c) => reject(new Error(`proxy exited ${c}`)));
    });
  }

  /** SIGTERM (or another signal) to weaver, and wait for it to exit. */
  async stopWeaver(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const w = this.weaver;
    if (!w || w.exitCode !== null || w.signalCode !== null) return w?.exitCode ?? null;
    // nsenter execs node, so the child pid is weaver's.
    w.kill(signal);
    const code = await this.weaverExit;
    this.weaver = undefined;
    return code ?? null;
  }

  /** Runs the weave CLI inside this host. */
  weave(args: string[], opts: { input?: string } = {}): RunResult {
    return this.ns.run(process.execPath, [bin('weave'), ...args], { env: this.env, ...opts });
  }

  async destroy(): Promise<void> {
    await this.stopWeaver('SIGKILL').catch(() => undefined);
    this.proxy?.kill('SIGKILL');
    this.ns.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes (for kernel state we do not control). */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * An underlay joining hosts: a namespace holding a bridge, one veth per host (`eth0` inside
 * the host, 192.0.2.<i>/24). `cut(i)`/`restore(i)` take a host's underlay link down and up.
 */
export class Underlay {
  readonly ns: Netns;
  private readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
    this.ns = new Netns(`${prefix}-u`);
    this.ns.ip('link', 'add', 'br0', 'type', 'bridge');
    this.ns.ip('link', 'set', 'br0', 'up');
  }
  /** Plugs host `i` in; returns its underlay address (without prefix length). */
  attach(host: WeaveHost, i: number): string {
    const inner = `${this.prefix}h${i}`;
    must('ip', ['link', 'add', inner, 'netns', host.ns.name, 'type', 'veth', 'peer', 'name', `u${i}`, 'netns', this.ns.name]);
    host.ns.ip('link', 'set', inner, 'name', 'eth0');
    host.ns.ip('addr', 'add', `192.0.2.${i}/24`, 'dev', 'eth0');
    host.ns.ip('link', 'set', 'eth0', 'up');
    this.ns.ip('link', 'set', `u${i}`, 'master', 'br0');
    this.ns.ip('link', 'set', `u${i}`, 'up');
    return `192.0.2.${i}`;
  }
  cut(i: number): void {
    this.ns.ip('link', 'set', `u${i}`, 'down');
  }
  restore(i: number): void {
    this.ns.ip('link', 'set', `u${i}`, 'up');
  }
  destroy(): void {
    this.ns.destroy();
  }
}

/**
 * `count` weave hosts on one underlay (host i at 192.0.2.<i>), created before the file's tests
 * (as root) and destroyed after them, even when a test failed. `teardownFirst` runs before the
 * hosts go (e.g. containers made in the tests). `host(i)` is 1-based.
 */
export function hostsOnUnderlay(prefix: string, label: string, count: number, teardownFirst: () => void = () => {}) {
  const hosts: WeaveHost[] = [];
  let underlay: Underlay | undefined;
  before(() => {
    if (process.getuid?.() !== 0) return;
    underlay = new Underlay(prefix);
    for (let i = 1; i <= count; i++) {
      const h = new WeaveHost(prefix, `${label}${i}`);
      hosts.push(h);
      underlay.attach(h, i);
    }
  });
  after(async () => {
    teardownFirst();
    for (const h of hosts) await h.destroy();
    underlay?.destroy();
  });
  return {
    hosts,
    host: (i: number) => hosts[i - 1]!,
    underlay: () => underlay!,
  };
}
