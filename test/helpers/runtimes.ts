// Real container runtimes (podman with its CNI backend, containerd's `ctr run --cni`) driven
// against a WeaveHost, isolated from the machine's own configuration: their state, configs
// and cgroups live under a temp dir or a unique cgroup name, and `SystemPaths` remembers the
// machine directories they cannot be kept out of (libcni's /var/lib/cni cache, containerd's
// hard-coded shim socket dir /run/containerd/s, the mount points /opt/cni/bin that ctr needs)
// so teardown removes those the test created, and only those.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { must, sh, type RunResult } from './netns.js';

const BUSYBOX = '/bin/busybox';

/** A busybox-static root fs: /bin/busybox plus a symlink per applet, root in passwd/group. */
export function buildBusyboxRootfs(dir: string): string {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(BUSYBOX, join(dir, 'bin', 'busybox'));
  for (const applet of must(BUSYBOX, ['--list']).split('\n').filter(Boolean)) {
    const p = join(dir, 'bin', applet);
    if (!existsSync(p)) symlinkSync('busybox', p);
  }
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\n');
  return dir;
}

/**
 * Writes an OCI image layout archive of a busybox rootfs that `ctr images import` accepts
 * (one uncompressed layer; index.json names the image with io.containerd.image.name).
 */
export function writeBusyboxOciArchive(workDir: string, out: string, imageName: string): void {
  const rootfs = buildBusyboxRootfs(join(workDir, 'rootfs'));
  const img = join(workDir, 'img');
  const blobs = join(img, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const blob = (file: string): { digest: string; size: number } => {
    const hex = createHash('sha256').update(readFileSync(file)).digest('hex');
    const size = statSync(file).size;
    renameSync(file, join(blobs, hex));
    return { digest: `sha256:${hex}`, size };
  };
  const jsonBlob = (name: string, value: unknown) => {
    const file = join(workDir, name);
    writeFileSync(file, JSON.stringify(value));
    return blob(file);
  };
  const layerTar = join(workDir, 'layer.tar');
  must('tar', ['--numeric-owner', '--owner=0', '--group=0', '--sort=name', '--mtime=@0', '-C', rootfs, '-cf', layerTar, '.']);
  const layer = blob(layerTar);
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const config = jsonBlob('config.json', {
    architecture: arch,
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
  });
  const manifest = jsonBlob('manifest.json', {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  });
  writeFileSync(
    join(img, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          platform: { architecture: arch, os: 'linux' },
          annotations: { 'io.containerd.image.name': imageName, 'org.opencontainers.image.ref.name': imageName.replace(/^.*:/, '') },
        },
      ],
    }),
  );
  writeFileSync(join(img, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  must('tar', ['-C', img, '-cf', out, 'oci-layout', 'index.json', 'blobs']);
}

/**
 * Machine directories a runtime may create outside our temp dirs. `remember()` notes which do
 * not exist yet; `removeCreated()` removes exactly those (deepest first), so directories that
 * were there before the test are never touched.
 */
export class SystemPaths {
  private readonly created: string[] = [];

  remember(paths: string[]): void {
    for (const p of paths) if (!existsSync(p) && !this.created.includes(p)) this.created.push(p);
  }

  /** mkdir -p, remembering each level that did not exist. */
  ensureDir(path: string): void {
    const parts = path.split('/').filter(Boolean);
    this.remember(parts.map((_, i) => '/' + parts.slice(0, i + 1).join('/')));
    mkdirSync(path, { recursive: true });
  }

  /** Paths that were created and are still there (for assertions). */
  leftovers(): string[] {
    return this.created.filter((p) => existsSync(p));
  }

  removeCreated(): string[] {
    const failed: string[] = [];
    for (const p of [...this.created].sort((a, b) => b.length - a.length)) {
      try {
        rmSync(p, { recursive: true, force: true });
      } catch (e) {
        failed.push(`${p}: ${String(e)}`);
      }
    }
    return failed;
  }
}

const CGROUP_ROOT = '/sys/fs/cgroup';

/** The cgroup directories named `name` (a top-level cgroup) in every mounted hierarchy. */
function cgroupDirs(name: string): string[] {
  if (!existsSync(CGROUP_ROOT)) return [];
  const hierarchies = readdirSync(CGROUP_ROOT).map((h) => join(CGROUP_ROOT, h));
  // A pure cgroup v2 host has the cgroup directly under the root.
  return [...hierarchies.map((h) => join(h, name)), join(CGROUP_ROOT, name)].filter((d) => {
    try {
      return statSync(d).isDirectory();
    } catch {
      return false;
    }
  });
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(dir, e.name));
  } catch {
    return [];
  }
}

/** Pids in the cgroup tree `name` (any hierarchy). */
export function cgroupPids(name: string): number[] {
  const pids = new Set<number>();
  const walk = (d: string) => {
    try {
      for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l.trim()) pids.add(Number(l));
    } catch {
      // gone meanwhile
    }
    for (const s of subdirs(d)) walk(s);
  };
  for (const d of cgroupDirs(name)) walk(d);
  return [...pids];
}

/** SIGKILLs whatever is left in the cgroup tree `name` (processes we started), then removes it. */
export async function removeCgroupTree(name: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const pids = cgroupPids(name);
    if (pids.length === 0) break;
    for (const pid of pids) killPid(pid, 'SIGKILL');
    await sleep(100);
  }
  const rmTree = (d: string) => {
    for (const s of subdirs(d)) rmTree(s);
    try {
      rmdirSync(d);
    } catch {
      // busy or gone; reported by the caller's leftovers check
    }
  };
  for (const d of cgroupDirs(name)) rmTree(d);
}

export function cgroupExists(name: string): boolean {
  return cgroupDirs(name).length > 0;
}

export function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Pids of processes whose command line contains `needle` (e.g. our containerd's socket path). */
export function pidsWithArg(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').some((a) => a.includes(needle))) out.push(Number(e));
    } catch {
      // exited
    }
  }
  return out;
}

/** Mounts (in this mount namespace) at or under `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .map((p) => p.replace(/\\040/g, ' '))
    .filter((p) => p === dir || p.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

/** Lazily unmounts anything left under `dir`, then removes it. */
export function removeTempDir(dir: string): void {
  for (const m of mountsUnder(dir)) sh('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
}

export interface PodmanOptions {
  /** The network namespace podman (and so the CNI plugins it execs) runs in. */
  netnsPath: string;
  /** Temp dir for podman's config, storage and state. */
  dir: string;
  cniPluginDir: string;
  cniConfDir: string;
  /** A unique top-level cgroup for conmon and the containers. */
  cgroupParent: string;
}

/**
 * podman with the CNI backend and runc, isolated from /etc/containers and /var/lib/containers:
 * a containers.conf of its own (CONTAINERS_CONF), --root/--runroot and runc's --root in `dir`.
 * Runs via `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the cgroups).
 */
export class Podman {
  readonly conf: string;
  readonly opts: PodmanOptions;

  constructor(opts: PodmanOptions) {
    this.opts = opts;
    mkdirSync(join(opts.dir, 'podman-tmp'), { recursive: true });
    this.conf = join(opts.dir, 'containers.conf');
    const q = (s: string) => JSON.stringify(s);
    writeFileSync(
      this.conf,
      [
        '[containers]',
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = [${q(opts.cniPluginDir)}, "/usr/lib/cni"]`,
        `network_config_dir = ${q(opts.cniConfDir)}`,
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        'runtime = "runc"',
        `tmp_dir = ${q(join(opts.dir, 'podman-tmp'))}`,
        '',
      ].join('\n'),
    );
  }

  /** The ulimits that fit under this VM's hard limits, and our own cgroup parent (for `run`). */
  get runFlags(): string[] {
    return ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--cgroup-parent', `/${this.opts.cgroupParent}`];
  }

  run(args: string[], timeoutMs = 60_000): RunResult {
    const { dir, netnsPath } = this.opts;
    const env: NodeJS.ProcessEnv = { ...process.env, CONTAINERS_CONF: this.conf };
    for (const k of Object.keys(env)) if (k.startsWith('WEAVE_')) delete env[k];
    return sh(
      'nsenter',
      [
        `--net=${netnsPath}`,
        '--',
        'podman',
        '--root',
        join(dir, 'root'),
        '--runroot',
        join(dir, 'runroot'),
        '--storage-driver',
        'vfs',
        '--runtime-flag',
        `root=${join(dir, 'runc')}`,
        ...args,
      ],
      { env, timeoutMs },
    );
  }

  must(args: string[], timeoutMs?: number): string {
    const r = this.run(args, timeoutMs);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  }
}

export interface ContainerdOptions {
  netnsPath: string;
  dir: string;
  cniPluginDir: string;
  cniConfDir: string;
  /** A unique top-level cgroup for the containers. */
  cgroupParent: string;
  /** Records /run/containerd/s (hard-coded shim socket dir), /opt/cni/bin and friends. */
  paths: SystemPaths;
}

/**
 * containerd 1.6 with root, state, sockets and the opt dir under `dir`, the CRI plugin off,
 * in the given network namespace and a private mount namespace (so its snapshot and rootfs
 * mounts vanish with it). `ctr run --cni` reads plugins from /opt/cni/bin:/usr/lib/cni and
 * the conflist from /etc/cni/net.d with no override, so `ctrCni` bind-mounts our dirs there in
 * a private mount namespace of its own.
 */
export class Containerd {
  readonly opts: ContainerdOptions;
  readonly socket: string;
  readonly logFile: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  constructor(opts: ContainerdOptions) {
    this.opts = opts;
    this.socket = join(opts.dir, 'containerd.sock');
    this.logFile = join(opts.dir, 'containerd.log');
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  async start(): Promise<void> {
    const { dir, netnsPath, paths } = this.opts;
    // containerd 1.6 puts shim sockets in /run/containerd/s whatever the config says.
    paths.remember(['/run/containerd/s', '/run/containerd', '/var/lib/cni/results', '/var/lib/cni']);
    const q = (s: string) => JSON.stringify(s);
    const config = join(dir, 'config.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = ${q(join(dir, 'root'))}`,
        `state = ${q(join(dir, 'state'))}`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = ${q(this.socket)}`,
        '[ttrpc]',
        `  address = ${q(this.socket + '.ttrpc')}`,
        '[plugins]',
        '  [plugins."io.containerd.internal.v1.opt"]',
        `    path = ${q(join(dir, 'opt'))}`,
        '',
      ].join('\n'),
    );
    const fd = openSync(this.logFile, 'a');
    // unshare and nsenter exec, so the child's pid is containerd's.
    const child = spawn('unshare', ['--mount', '--', 'nsenter', `--net=${netnsPath}`, '--', 'containerd', '--config', config], {
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`containerd exited: ${this.log()}`);
      if (existsSync(this.socket) && this.ctr(['version']).code === 0) return;
      if (Date.now() > deadline) throw new Error(`containerd did not start: ${this.log()}`);
      await sleep(100);
    }
  }

  /** ctr against our containerd, in the host namespace. */
  ctr(args: string[], timeoutMs = 60_000): RunResult {
    return sh('nsenter', [`--net=${this.opts.netnsPath}`, '--', 'ctr', '--address', this.socket, ...args], { timeoutMs });
  }

  /** The argv of a `ctr` run that sees our CNI plugin and conflist at ctr's fixed paths. */
  ctrCniArgv(args: string[]): [string, string[]] {
    const { paths, cniPluginDir, cniConfDir, netnsPath } = this.opts;
    paths.ensureDir('/opt/cni/bin');
    paths.ensureDir('/etc/cni/net.d');
    // mount -n: do not record the mounts in /run/mount/utab (outside the private namespace).
    const script =
      'set -e; mount -n --bind "$1" /opt/cni/bin; mount -n --bind "$2" /etc/cni/net.d; ns=$3; shift 3; exec nsenter --net="$ns" -- ctr "$@"';
    return ['unshare', ['--mount', '--', 'sh', '-c', script, 'sh', cniPluginDir, cniConfDir, netnsPath, '--address', this.socket, ...args]];
  }

  /** Common `ctr run` flags: runc state, FIFOs and the cgroup kept in our dirs. */
  runFlags(id: string): string[] {
    const { dir, cgroupParent } = this.opts;
    return ['--runc-root', join(dir, 'runc'), '--fifo-dir', join(dir, 'fifo'), '--cgroup', `/${cgroupParent}/${id}`];
  }

  /** Stops containerd (by pid) and any shim of ours still running. */
  async stop(): Promise<void> {
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 3000);
      await this.exited;
      clearTimeout(t);
    }
    this.child = undefined;
    // Shims outlive containerd; theirs carry our socket path in -address.
    for (let i = 0; i < 30; i++) {
      const shims = pidsWithArg(this.socket);
      if (shims.length === 0) break;
      for (const pid of shims) killPid(pid, 'SIGKILL');
      await sleep(100);
    }
  }
}
