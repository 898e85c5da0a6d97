// Test doubles for the CNI plugins: an in-memory PluginIo, a fake kernel that records what it
// is asked to do, and a tiny in-process weave router (HTTP on 127.0.0.1, random port) that
// implements the IPAM routes the plugins call. No root, no real router.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WeaveError } from '../../../src/core/errors.js';
import type { LinkInfo } from '../../../src/platform/iproute.js';
import type { AttachResult, AttachSpec } from '../../../src/platform/container-link.js';
import { hostVethName } from '../../../src/platform/container-link.js';
import type { KernelOps, PluginDeps } from '../../../src/cni/context.js';
import { runPlugin, type PluginIo } from '../../../src/cni/entry.js';

export interface MemoryIo extends PluginIo {
  out: string[];
  err: string[];
}

export function memoryIo(env: Record<string, string | undefined>, stdin: string | (() => Promise<string>) = ''): MemoryIo {
  const out: string[] = [];
  const err: string[] = [];
  return {
    env,
    stdin: typeof stdin === 'string' ? () => Promise.resolve(stdin) : stdin,
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    out,
    err,
  };
}

export interface RunOutcome {
  code: number;
  stdout: string;
  stderr: string;
  /** The one JSON document on stdout, or undefined when stdout is empty. */
  doc: Record<string, unknown> | undefined;
}

/** Runs a plugin with the given env and stdin; checks that stdout holds at most one JSON document. */
export async function run(
  kind: 'net' | 'ipam',
  env: Record<string, string | undefined>,
  stdin: string | object,
  deps: Partial<PluginDeps> = {},
): Promise<RunOutcome> {
  const io = memoryIo(env, typeof stdin === 'string' ? stdin : JSON.stringify(stdin));
  const code = await runPlugin(kind, io, deps);
  const stdout = io.out.join('');
  let doc: Record<string, unknown> | undefined;
  if (stdout !== '') {
    if (io.out.length !== 1) throw new Error(`more than one write to stdout: ${JSON.stringify(io.out)}`);
    doc = JSON.parse(stdout) as Record<string, unknown>;
  }
  return { code, stdout, stderr: io.err.join(''), doc };
}

export const NETNS = '/var/run/netns/cni-test';
export const CONTAINER_ID = '3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4';

export function cniEnv(command: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: CONTAINER_ID,
    CNI_NETNS: NETNS,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web',
    ...extra,
  };
}

export interface FakeKernel extends KernelOps {
  bridge: LinkInfo | undefined;
  netnsPaths: Set<string>;
  /** Links in container namespaces, by `${netns}/${ifName}`. */
  containerLinks: Map<string, LinkInfo>;
  /** Links in the host namespace other than the bridge. */
  hostLinks: Map<string, LinkInfo>;
  attached: AttachSpec[];
  detached: { containerId: string; ifName: string; netns?: string }[];
  attachError?: Error;
}

export function bridgeLink(addrs: string[] = ['10.32.0.1/12'], mtu = 1376): LinkInfo {
  return {
    ifindex: 3,
    ifname: 'weave',
    mtu,
    address: '7a:00:00:00:00:01',
    flags: ['UP'],
    operstate: 'UP',
    kind: 'bridge',
    addrs: addrs.map((a) => {
      const [local, len] = a.split('/');
      return { family: 'inet' as const, local: local!, prefixlen: Number(len) };
    }),
  };
}

export function fakeKernel(opts: { bridge?: LinkInfo | undefined } = {}): FakeKernel {
  const k: FakeKernel = {
    bridge: 'bridge' in opts ? opts.bridge : bridgeLink(),
    netnsPaths: new Set([NETNS]),
    containerLinks: new Map(),
    hostLinks: new Map(),
    attached: [],
    detached: [],
    async getLink(name) {
      if (name === 'weave') return k.bridge;
      return k.hostLinks.get(name);
    },
    checkNetns(path) {
      if (!k.netnsPaths.has(path)) throw new WeaveError('CONTAINER_UNKNOWN', `network namespace ${path} does not exist`);
    },
    async attach(spec): Promise<AttachResult> {
      if (k.attachError) throw k.attachError;
      k.attached.push(spec);
      const hostIfName = hostVethName(spec.containerId, spec.ifName);
      const mtu = spec.mtu && spec.mtu > 0 ? spec.mtu : (k.bridge?.mtu ?? 1500);
      const hostMac = '0a:00:00:00:00:01';
      const containerMac = '0a:00:00:00:00:02';
      k.hostLinks.set(hostIfName, { ifindex: 10, ifname: hostIfName, mtu, address: hostMac, flags: ['UP'], operstate: 'UP', master: 'weave', kind: 'veth', addrs: [] });
      k.containerLinks.set(`${spec.netns}/${spec.ifName}`, {
        ifindex: 2,
        ifname: spec.ifName,
        mtu,
        address: containerMac,
        flags: ['UP'],
        operstate: 'UP',
        kind: 'veth',
        addrs: spec.addresses.map((a) => ({ family: 'inet' as const, local: formatIp(a.ip), prefixlen: a.prefix })),
      });
      return { hostIfName, hostMac, ifName: spec.ifName, containerMac, mtu, existingRoutes: [] };
    },
    async detach(o) {
      k.detached.push(o);
      const name = hostVethName(o.containerId, o.ifName);
      const had = k.hostLinks.delete(name);
      for (const key of [...k.containerLinks.keys()]) if (key.endsWith(`/${o.ifName}`) && had) k.containerLinks.delete(key);
      return had;
    },
    async inspect(netns, ifName) {
      k.checkNetns(netns);
      return k.containerLinks.get(`${netns}/${ifName}`);
    },
  };
  return k;
}

function formatIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export interface RouterRequest {
  method: string;
  path: string;
  query: Record<string, string>;
}

/** An in-process weave router with just the IPAM, expose and status routes. */
export class FakeRouter {
  readonly requests: RouterRequest[] = [];
  /** ident -> { addrs, owner } */
  readonly owned = new Map<string, { addrs: string[]; owner?: string }>();
  readonly exposed: string[] = [];
  statusCode = 200;
  next = 2;
  /** When set, the router answers every /ip request with this status and body. */
  failWith: { status: number; body: string; code?: string } | undefined;
  private server: Server | undefined;
  addr = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.addr = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    this.requests.push({ method: req.method ?? '', path, query: Object.fromEntries(url.searchParams) });
    const send = (status: number, body = '', code?: string) => {
      res.writeHead(status, code ? { 'x-weave-error-code': code } : {});
      res.end(body);
    };
    req.resume();
    req.on('end', () => {
      if (path === '/status') return send(this.statusCode, 'status');
      if (path.startsWith('/expose/')) {
        this.exposed.push(path.slice('/expose/'.length));
        return send(204);
      }
      if (this.failWith && path.startsWith('/ip')) return send(this.failWith.status, this.failWith.body, this.failWith.code);
      if (path === '/ip' && req.method === 'GET') {
        return send(200, JSON.stringify({ owned: [...this.owned].map(([containerid, v]) => ({ containerid, addrs: v.addrs, ...(v.owner ? { owner: v.owner } : {}) })) }));
      }
      const m = /^\/ip\/([^/]+)(?:\/(.+))?$/.exec(path);
      if (!m) return send(404, 'not found');
      const ident = m[1]!;
      const subnet = m[2];
      if (req.method === 'POST') {
        let e = this.owned.get(ident);
        if (!e) {
          const prefix = subnet ? subnet.split('/')[0]!.split('.').slice(0, 3).join('.') : '10.32.0';
          const len = subnet ? subnet.split('/')[1] : '12';
          e = { addrs: [`${prefix}.${this.next++}/${len}`], ...(url.searchParams.get('owner') ? { owner: url.searchParams.get('owner')! } : {}) };
          this.owned.set(ident, e);
        }
        return send(200, e.addrs[0]);
      }
      if (req.method === 'GET') return send(200, (this.owned.get(ident)?.addrs ?? []).join(' '));
      if (req.method === 'DELETE') {
        if (!this.owned.delete(ident)) return send(404, `Delete: no addresses for ${ident}`, 'NOT_FOUND');
        return send(204);
      }
      return send(405, 'method not allowed');
    });
  }
}

/** An address where nothing listens (connection refused). */
export async function deadAddress(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `127.0.0.1:${port}`;
}
