// The router's HTTP API on --http-addr (127.0.0.1:6784): Weave Net's routes and shapes
// (inventory section 4). Handlers only parse the request and call service interfaces, which
// the daemon implements; errors become the original's status and text plus ERROR_CODE_HEADER.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { unlinkSync } from 'node:fs';
import { WeaveError, httpStatusFor, toWeaveError, errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { formatCidr, parseCidr, parseIPv4, type Cidr, type IPv4 } from '../../core/ip.js';
import { compileGoTemplate, goJsonMarshal } from '../../core/go-template.js';
import { ERROR_CODE_HEADER, type DnsNameJson, type OwnedAddresses, type WeaveReport } from '../types.js';
import { renderConnections, renderDns, renderIpam, renderPeers, renderStatus, renderTargets } from './status-text.js';

export interface IpamService {
  readonly defaultSubnet: Cidr;
  parseSubnet(text: string): Cidr;
  allocate(ident: string, subnet: Cidr | undefined, opts: { owner?: string; signal?: AbortSignal }): Promise<Cidr>;
  /** Resolves once the address is ours for ident (the owner may have to hand it over). */
  claim(ident: string, cidr: Cidr, opts: { owner?: string; signal?: AbortSignal; noErrorOnUnknown?: boolean }): Promise<void>;
  lookup(ident: string, subnet?: Cidr): Cidr[];
  free(ident: string): Cidr[];
  freeAddress(ident: string, ip: IPv4): void;
  all(): { ident: string; cidrs: Cidr[]; owner?: string }[];
  /** GET /ring (`weave prime`): resolves once the ring exists. */
  prime(opts: { signal?: AbortSignal }): Promise<void>;
  /** DELETE /peer/<name or nickname> (`weave rmpeer`): takes over a dead peer's space; the number of addresses gained. */
  takeOver(peer: string): number;
  /** Shown as IPAM's `Status:` instead of the original's line while a ring conflict is remembered. */
  conflictLine(): string | undefined;
}

export interface ExposeService {
  expose(cidr: Cidr, opts: { skipNAT?: boolean }): Promise<void>;
  hide(cidr: Cidr): Promise<void>;
}

/** Runs one CNI plugin invocation inside the router (the fast path of the installed plugin). */
export interface CniService {
  /** Checks the caller's token (the file only root can read). */
  authorized(token: string | undefined): boolean;
  /** `signal`: aborted when the caller (the plugin's front end) goes away before the answer. */
  run(kind: 'net' | 'ipam', env: Record<string, string>, stdin: string, signal?: AbortSignal): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** Headers of a CNI call: the plugin's CNI_* environment, one header per variable. */
export const CNI_ENV_HEADER_PREFIX = 'x-cni-env-';

/** The mesh's part of the API: targets of the connection maker (POST /connect, /forget). */
export interface MeshService {
  /** Adds (or, with replace, sets) direct peers; returns one error text per unusable peer. */
  connect(peers: string[], replace: boolean): string[];
  forget(peers: string[]): void;
}

/** weaveDNS's part of the API (`/name`, `/domain`, `/dns-address[-port]`). */
export interface DnsService {
  /** The domain, fully qualified (weave.local.). */
  readonly domain: string;
  /** PUT /name/<container>/<ip> fqdn=: registers the name (ignored outside the domain). */
  putName(container: string, ip: string, fqdn: string): void;
  /** DELETE /name[/<container>[/<ip>]] [fqdn=]: absent parts match anything. */
  deleteName(container: string | undefined, ip: string | undefined, fqdn: string | undefined): void;
  /** Every entry, tombstones included. */
  entries(): DnsNameJson[];
  /** host:port the DNS server listens on; undefined while it does not listen. */
  listenAddress(): string | undefined;
}

export interface ApiServices {
  report(): WeaveReport;
  /** The data path's part of the Router section (MAC table, capture counters), for /report only: it asks the data path's thread and the kernel. */
  datapathStatus?(): Promise<Pick<WeaveReport['Router'], 'Interface' | 'CaptureStats' | 'MACs'>>;
  metrics(): Promise<{ contentType: string; body: string }>;
  ipam?: IpamService;
  expose: ExposeService;
  /** DELETE /peer: leave the network (hand our address space to a live peer). */
  leave(): Promise<void>;
  cni?: CniService;
  mesh?: MeshService;
  /** Absent with --no-dns: its routes answer 404, as the original's. */
  dns?: DnsService;
}

type Handler = (req: IncomingMessage, res: ServerResponse, parts: string[], query: URLSearchParams) => Promise<void> | void;

class HttpStatusError extends WeaveError {
  readonly status: number;
  constructor(base: WeaveError, status: number, message: string) {
    super(base.code, message, { cause: base });
    this.status = status;
  }
}

/** Keeps the error's code but answers with the status and text prefix the original used. */
function asOriginal(e: unknown, status: number, prefix: string): never {
  const w = toWeaveError(e);
  if (w.code === 'STORE_FAILED' || w.code === 'INTERNAL' || w.code === 'KERNEL_FAILED') throw w;
  throw new HttpStatusError(w, status, `${prefix}${w.message}`);
}

function send(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Request bodies taken: forms and CNI calls alike (a CNI config is a few KB). */
const MAX_BODY_BYTES = 1 << 20;

/**
 * The body, refused past MAX_BODY_BYTES. What comes after the limit is read and dropped rather
 * than the request destroyed (as leaving a `for await` early does), so the client gets its 400
 * instead of a reset connection; Node's request timeout bounds how long that may go on.
 */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
      else if (!refused) {
        refused = true;
        chunks.length = 0;
        reject(new WeaveError('INVALID_ARGUMENT', 'request body too large'));
      }
    });
    req.on('end', () => {
      if (size <= MAX_BODY_BYTES) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
    // A client gone in the middle of its body: no 'end' comes (a settled promise ignores this).
    req.on('close', () => {
      if (!req.complete) reject(new WeaveError('CANCELLED', 'the client went away before its request was complete'));
    });
  });
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const body = new URLSearchParams(await readBody(req));
  // Also accept the parameters in the query string, as Go's r.FormValue does.
  const url = new URL(req.url ?? '/', 'http://weave');
  for (const [k, v] of url.searchParams) body.append(k, v);
  return body;
}

/**
 * Go's path.Clean as gorilla/mux applies it (a trailing slash kept) when the path has empty,
 * "." or ".." segments (also percent-encoded), else undefined: the path is clean.
 */
export function cleanPath(raw: string): string | undefined {
  const segs = raw.split('/').slice(1);
  const dot = (s: string) => /^(?:\.|%2e){1,2}$/i.test(s);
  if (!segs.some((s, i) => dot(s) || (s === '' && i < segs.length - 1))) return undefined;
  const out: string[] = [];
  for (const s of segs) {
    if (s === '' || /^(?:\.|%2e)$/i.test(s)) continue;
    if (dot(s)) out.pop();
    else out.push(s);
  }
  const trailing = raw.endsWith('/') && out.length > 0 ? '/' : '';
  return '/' + out.join('/') + trailing;
}

function cidrFromParts(ip: string | undefined, len: string | undefined): Cidr {
  return parseCidr(`${ip ?? ''}/${len ?? ''}`);
}

export class ApiServer {
  private readonly svc: ApiServices;
  private readonly log: Logger;
  private readonly isReady: () => boolean;
  /**
   * A read-only listener serves only status, report and metrics (`--status-addr`), or only
   * metrics (`--metrics-addr`, as the original's: Kubernetes puts it on 0.0.0.0, where the report's
   * peers, names and MACs have no business).
   */
  private readonly readOnly: boolean | 'metrics';
  private server: Server | undefined;
  private socketPath: string | undefined;

  constructor(deps: { services: ApiServices; logger: Logger; isReady: () => boolean; readOnly?: boolean | 'metrics' }) {
    this.svc = deps.services;
    this.log = deps.logger;
    this.isReady = deps.isReady;
    this.readOnly = deps.readOnly ?? false;
  }

  /** Listens on `host:port` or a unix socket path; resolves once listening. */
  listen(addr: { host?: string; port?: number; socketPath?: string }): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = () => {
        server.off('error', reject);
        resolve();
      };
      if (addr.socketPath) {
        try {
          unlinkSync(addr.socketPath);
        } catch {
          // no stale socket
        }
        this.socketPath = addr.socketPath;
        server.listen(addr.socketPath, done);
      } else {
        server.listen(addr.port, addr.host, done);
      }
    });
  }

  address(): string {
    const a = this.server?.address();
    if (!a) return '';
    return typeof a === 'string' ? a : `${a.address}:${a.port}`;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
    if (this.socketPath) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
    }
  }

  private route(method: string, parts: string[]): Handler | undefined {
    // As gorilla/mux: no route variable matches an empty value and /peer is not /peer/, so a
    // trailing slash is 404 (DELETE /peer/ must not leave, DELETE /ip/x/ not free all of x).
    if (parts.some((s) => s === '')) return undefined;
    const [head, ...rest] = parts;
    if (this.readOnly === 'metrics' && !(method === 'GET' && head === 'metrics')) return undefined;
    if (this.readOnly && !(method === 'GET' && (head === 'status' || head === 'report' || head === 'metrics'))) return undefined;
    const n = rest.length;
    switch (`${method} ${head ?? ''}`) {
      case 'GET status':
        return n <= 1 ? (_q, res) => this.status(res, rest[0]) : undefined;
      case 'GET report':
        return n === 0 ? (req, res, _p, q) => this.report(req, res, q) : undefined;
      case 'GET metrics':
        return n === 0 ? async (_q, res) => {
          const m = await this.svc.metrics();
          send(res, 200, m.body, m.contentType);
        } : undefined;
      case 'DELETE peer':
        if (n === 1 && this.svc.ipam) {
          return (_q, res, p) => {
            const ipam = this.svc.ipam!;
            send(res, 200, `${ipam.takeOver(p[1]!)} IPs taken over from ${p[1]!}\n`);
          };
        }
        return n === 0 ? async (_q, res) => {
          await this.svc.leave();
          send(res, 204, '');
        } : undefined;
      case 'POST expose':
      case 'DELETE expose':
        return n === 2 ? (req, res, p, q) => this.expose(method, res, p, q) : undefined;
      case 'POST connect':
      case 'POST forget':
        return n === 0 && this.svc.mesh ? (req, res) => this.meshTargets(head!, req, res) : undefined;
      case 'POST cni':
        return n === 1 && this.svc.cni && (rest[0] === 'net' || rest[0] === 'ipam') ? (req, res, p) => this.cni(req, res, p[1] as 'net' | 'ipam') : undefined;
    }
    if (this.svc.dns) {
      const h = this.dnsRoute(method, head, rest);
      if (h) return h;
    }
    if (!this.svc.ipam) return undefined;
    switch (`${method} ${head ?? ''}`) {
      case 'GET ip':
        if (n === 0) return (_q, res) => this.ownedJson(res);
        return n === 1 || n === 3 ? (_q, res, p) => this.lookup(res, p) : undefined;
      case 'POST ip':
        return n === 1 || n === 3 ? (req, res, p, q) => this.allocate(req, res, p, q) : undefined;
      case 'PUT ip':
        return n === 3 ? (req, res, p, q) => this.claim(req, res, p, q) : undefined;
      case 'DELETE ip':
        return n === 1 || n === 2 ? (_q, res, p) => this.free(res, p) : undefined;
      case 'GET ipinfo':
        if (rest[0] === 'defaultsubnet' && n === 1) return (_q, res) => send(res, 200, formatCidr(this.svc.ipam!.defaultSubnet) + '\n');
        if (rest[0] === 'tracker' && n === 1) return (_q, res) => send(res, 200, '\n');
        return undefined;
      case 'GET ring':
        return n === 0 ? async (_q, res) => {
          await this.untilDone(res, (signal) => this.svc.ipam!.prime({ signal }));
          if (!res.writableEnded && !res.destroyed) send(res, 200, '');
        } : undefined;
    }
    return undefined;
  }

  /** weaveDNS routes (nameserver/http.go); undefined when none matches. */
  private dnsRoute(method: string, head: string | undefined, rest: string[]): Handler | undefined {
    const dns = this.svc.dns!;
    const n = rest.length;
    switch (`${method} ${head ?? ''}`) {
      case 'GET domain':
        return n === 0 ? (_q, res) => send(res, 200, dns.domain) : undefined;
      case 'GET dns-address':
      case 'GET dns-address-port':
        return n === 0 ? (_q, res) => {
          const addr = dns.listenAddress();
          if (addr === undefined) {
            res.setHeader(ERROR_CODE_HEADER, 'NOT_RUNNING');
            send(res, 503, 'weaveDNS is not listening: no --dns-listen-address, and no address exposed on the bridge yet (weave expose)\n');
            return;
          }
          send(res, 200, head === 'dns-address' ? addr.slice(0, addr.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1') : addr);
        } : undefined;
      case 'GET name':
        // The original's route matches only with Accept: application/json.
        return n === 0 ? (req, res) => {
          if (!(req.headers.accept ?? '').includes('application/json')) {
            send(res, 404, '404 page not found\n');
            return;
          }
          send(res, 200, JSON.stringify(dns.entries()) + '\n', 'application/json');
        } : undefined;
      case 'PUT name':
        return n === 2 ? async (req, res, p) => {
          const form = await readForm(req);
          dns.putName(p[1]!, p[2]!, form.get('fqdn') ?? '');
          send(res, 204, '');
        } : undefined;
      case 'DELETE name':
        return n <= 2 ? async (req, res, p) => {
          const form = await readForm(req);
          dns.deleteName(p[1], p[2], form.get('fqdn') || undefined);
          send(res, 204, '');
        } : undefined;
    }
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    let parts: string[];
    let query: URLSearchParams;
    try {
      const url = new URL(req.url ?? '/', 'http://weave');
      const raw = req.url?.startsWith('/') ? (req.url.split(/[?#]/, 1)[0] as string) : url.pathname;
      const clean = cleanPath(raw);
      if (clean !== undefined) {
        // As the original's router (gorilla/mux): a path with empty, "." or ".." segments is
        // redirected to its clean form, not served: DELETE /ip/x/../../peer must not leave the network.
        res.setHeader('location', clean + url.search);
        send(res, 301, 'Moved Permanently\n');
        return;
      }
      // Every segment, the empty one after a trailing slash included (route() matches none).
      parts = raw.split('/').slice(1).map((s) => decodeURIComponent(s));
      query = url.searchParams;
    } catch {
      send(res, 400, 'invalid request path\n');
      return;
    }
    const h = this.route(req.method ?? 'GET', parts);
    try {
      if (!h) {
        send(res, 404, '404 page not found\n');
      } else {
        await h(req, res, parts, query);
      }
    } catch (e) {
      if (req.destroyed && !req.complete) {
        // The client went away while sending its body: nobody is left to answer.
        this.log.debug({ method: req.method, url: req.url, err: errorMessage(e) }, 'request aborted by the client');
        res.destroy();
        return;
      }
      const w = toWeaveError(e);
      const status = e instanceof HttpStatusError ? e.status : httpStatusFor(w.code);
      if (status >= 500) this.log.error({ method: req.method, url: req.url, err: errorMessage(e), code: w.code }, 'request failed');
      if (!res.headersSent) {
        res.setHeader(ERROR_CODE_HEADER, w.code);
        send(res, status, w.message + '\n');
      } else {
        res.destroy();
      }
    }
    this.log.debug({ method: req.method, url: req.url, status: res.statusCode, ms: Date.now() - started }, 'http');
  }

  private status(res: ServerResponse, sub: string | undefined): void {
    const views: Record<string, (r: WeaveReport) => string> = {
      '': renderStatus,
      targets: renderTargets,
      connections: renderConnections,
      peers: renderPeers,
      dns: renderDns,
      ipam: renderIpam,
    };
    // Own keys only: /status/constructor is no view.
    const render = Object.hasOwn(views, sub ?? '') ? views[sub ?? ''] : undefined;
    if (!render) {
      send(res, 404, '404 page not found\n');
      return;
    }
    const report = this.svc.report();
    send(res, this.isReady() ? 200 : 503, render === renderStatus ? renderStatus(report, { ipamConflict: this.svc.ipam?.conflictLine() }) : render(report));
  }

  private async report(req: IncomingMessage, res: ServerResponse, q: URLSearchParams): Promise<void> {
    const full = async () => {
      const r = this.svc.report();
      // Assigned in place: the Router section keeps the original's field order.
      if (this.svc.datapathStatus) Object.assign(r.Router, await this.svc.datapathStatus());
      return r;
    };
    if (req.headers.accept === 'application/json') {
      send(res, 200, goJsonMarshal(await full(), '    '), 'application/json');
      return;
    }
    // As gorilla/mux's query matcher: no format matches no route (404); of several, the first.
    const format = q.get('format');
    if (format === null) {
      send(res, 404, '404 page not found\n');
      return;
    }
    const tmpl = compileGoTemplate(format);
    send(res, 200, tmpl.execute(await full()));
  }

  private ownedJson(res: ServerResponse): void {
    const body: OwnedAddresses & { owned: { owner?: string }[] } = {
      owned: this.svc.ipam!.all().map((o) => ({
        containerid: o.ident,
        addrs: o.cidrs.map(formatCidr),
        ...(o.owner ? { owner: o.owner } : {}),
      })),
    };
    send(res, 200, JSON.stringify(body), 'application/json');
  }

  private subnetOf(p: string[]): Cidr | undefined {
    return p.length === 4 ? this.svc.ipam!.parseSubnet(`${p[2]}/${p[3]}`) : undefined;
  }

  private lookup(res: ServerResponse, p: string[]): void {
    const ipam = this.svc.ipam!;
    const subnet = this.subnetOf(p) ?? ipam.defaultSubnet;
    send(res, 200, ipam.lookup(p[1]!, subnet).map(formatCidr).join(' ') + '\n');
  }

  private async allocate(req: IncomingMessage, res: ServerResponse, p: string[], q: URLSearchParams): Promise<void> {
    const ipam = this.svc.ipam!;
    let subnet: Cidr | undefined;
    try {
      subnet = this.subnetOf(p);
    } catch (e) {
      asOriginal(e, 400, '');
    }
    const owner = q.get('owner') ?? undefined;
    const c = await this.untilDone(res, (signal) => ipam.allocate(p[1]!, subnet, { signal, ...(owner ? { owner } : {}) }), '');
    if (c) send(res, 200, formatCidr(c));
  }

  /**
   * Runs a request that may wait (for consensus, for space from another peer): a client that
   * goes away cancels it, and the original then answers "cancelled". Undefined when cancelled.
   */
  private async untilDone<T>(res: ServerResponse, op: (signal: AbortSignal) => Promise<T>, errorPrefix = ''): Promise<T | undefined> {
    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort();
    };
    res.on('close', onClose);
    try {
      return await op(ac.signal);
    } catch (e) {
      if (e instanceof WeaveError && e.code === 'CANCELLED') {
        if (!res.destroyed) send(res, 200, 'cancelled');
        return undefined;
      }
      return asOriginal(e, 400, errorPrefix);
    } finally {
      res.off('close', onClose);
    }
  }

  private async claim(_req: IncomingMessage, res: ServerResponse, p: string[], q: URLSearchParams): Promise<void> {
    const ipam = this.svc.ipam!;
    let cidr: Cidr;
    try {
      cidr = cidrFromParts(p[2], p[3]);
    } catch (e) {
      asOriginal(e, 400, 'Unable to claim: ');
    }
    const owner = q.get('owner') ?? undefined;
    const noErrorOnUnknown = q.get('noErrorOnUnknown') === 'true';
    const done = await this.untilDone(res, async (signal) => {
      await ipam.claim(p[1]!, cidr, { signal, noErrorOnUnknown, ...(owner ? { owner } : {}) });
      return true;
    }, 'Unable to claim: ');
    if (done) send(res, 204, '');
  }

  private free(res: ServerResponse, p: string[]): void {
    const ipam = this.svc.ipam!;
    try {
      if (p.length === 2) ipam.free(p[1]!);
      else ipam.freeAddress(p[1]!, parseIPv4(p[2]!));
    } catch (e) {
      asOriginal(e, 400, p.length === 2 ? '' : 'Unable to free: ');
    }
    send(res, 204, '');
  }

  private async cni(req: IncomingMessage, res: ServerResponse, kind: 'net' | 'ipam'): Promise<void> {
    const cni = this.svc.cni!;
    const token = req.headers['x-weave-cni-token'];
    if (!cni.authorized(typeof token === 'string' ? token : undefined)) {
      send(res, 403, 'bad or missing CNI token\n');
      return;
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.startsWith(CNI_ENV_HEADER_PREFIX) && typeof v === 'string') env[k.slice(CNI_ENV_HEADER_PREFIX.length).toUpperCase().replace(/-/g, '_')] = v;
    }
    const stdin = await readBody(req);
    // A runtime that gives up kills the front end: its connection closes, and the call must not
    // go on (an ADD finishing later would attach a container the runtime has deleted).
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const r = await cni.run(kind, env, stdin, gone.signal);
    if (gone.signal.aborted) return;
    // The installed plugin prints the body as its stdout and exits with x-cni-exit.
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(r.stdout),
      'x-cni-exit': String(r.code),
      'x-cni-log': encodeURIComponent(r.stderr.trimEnd()),
    });
    res.end(r.stdout);
  }

  private async meshTargets(verb: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const peers = form.getAll('peer');
    if (verb === 'forget') {
      this.svc.mesh!.forget(peers);
      send(res, 200, '');
      return;
    }
    const errors = this.svc.mesh!.connect(peers, form.get('replace') === 'true');
    // The original answers 400 with the joined errors, after acting on the good peers.
    if (errors.length) send(res, 400, errors.join('\n') + '\n');
    else send(res, 200, '');
  }

  private async expose(method: string, res: ServerResponse, p: string[], q: URLSearchParams): Promise<void> {
    const cidr = cidrFromParts(p[1], p[2]);
    if (method === 'POST') await this.svc.expose.expose(cidr, { skipNAT: q.get('skipNAT') === 'true' });
    else await this.svc.expose.hide(cidr);
    send(res, 204, '');
  }
}

