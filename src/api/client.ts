// Thin HTTP client of the router's API, used by the CLI and the CNI plugins. Mirrors the
// original's client contract: 200/204 succeed; anything else is an error carrying the status,
// the body text and our stable error code (from ERROR_CODE_HEADER when the server sent one).
import { request as httpRequest } from 'node:http';
import { WeaveError, type ErrorCode } from '../core/errors.js';
import { ERROR_CODE_HEADER, DEFAULT_HTTP_ADDR, type DnsNameJson } from './types.js';

export interface ApiResponse {
  status: number;
  body: string;
  /** Our stable error code, when the server sent ERROR_CODE_HEADER. */
  code?: ErrorCode;
}

export interface RequestOptions {
  form?: Record<string, string | string[]>;
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Error from the router: `code` is stable; `status` and `body` are the original's. */
export class ApiError extends WeaveError {
  readonly status: number;
  readonly body: string;
  constructor(code: ErrorCode, status: number, body: string, what: string) {
    super(code, `${what}: ${status}: ${body.trim()}`);
    this.status = status;
    this.body = body;
  }
}

export interface Endpoint {
  host?: string;
  port?: number;
  socketPath?: string;
  display: string;
}

/** `host:port`, or a unix socket path starting with `/` (as the original's --http-addr). */
export function parseEndpoint(addr: string): Endpoint {
  if (addr.startsWith('/')) return { socketPath: addr, display: addr };
  const m = /^(.*):([0-9]{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) throw new WeaveError('INVALID_ARGUMENT', `invalid HTTP address "${addr}" (host:port or /path)`);
  const host = m[1] === '' ? '127.0.0.1' : m[1]!.replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(m[2]), display: addr };
}

function encodeForm(form: Record<string, string | string[]>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x);
  return p.toString();
}

const transientErrnos = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);

export class WeaveClient {
  readonly endpoint: Endpoint;

  constructor(addr: string = DEFAULT_HTTP_ADDR) {
    this.endpoint = parseEndpoint(addr);
  }

  /** Raw request: resolves with any HTTP status; rejects only when no answer came. */
  request(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const body = opts.form ? encodeForm(opts.form) : undefined;
    const headers: Record<string, string> = { ...opts.headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          method,
          path,
          headers,
          host: this.endpoint.host,
          port: this.endpoint.port,
          socketPath: this.endpoint.socketPath,
          agent: false,
          signal: opts.signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const codeHeader = res.headers[ERROR_CODE_HEADER];
            const status = res.statusCode ?? 0;
            resolve({ status, body: text, ...(typeof codeHeader === 'string' ? { code: codeHeader as ErrorCode } : {}) });
          });
          res.on('error', reject);
        },
      );
      if (opts.timeoutMs !== undefined) {
        req.setTimeout(opts.timeoutMs, () => req.destroy(new WeaveError('TIMEOUT', `no answer from the weave router at ${this.endpoint.display} within ${opts.timeoutMs} ms`)));
      }
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e instanceof WeaveError) return reject(e);
        if (e.name === 'AbortError') return reject(new WeaveError('CANCELLED', 'request cancelled', { cause: e }));
        const transient = e.code !== undefined && transientErrnos.has(e.code);
        reject(
          new WeaveError(transient ? 'UNAVAILABLE' : 'IO_FAILED', `cannot reach the weave router at ${this.endpoint.display}: ${e.message}`, { cause: e }),
        );
      });
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  /** A request whose non-2xx answer becomes an ApiError. */
  async call(method: string, path: string, what: string, opts: RequestOptions = {}): Promise<string> {
    const res = await this.request(method, path, opts);
    if (res.status === 200 || res.status === 204) return res.body;
    const code = res.code ?? statusToCode(res.status);
    throw new ApiError(code, res.status, res.body, what);
  }

  /**
   * Waits until the router answers `/status` (200 or 503 both mean "up", as the original's
   * IsReady), retrying connection failures until `waitMs` has passed.
   */
  async waitUntilUp(waitMs: number, opts: { signal?: AbortSignal; pollMs?: number; onWait?: (why: string) => void } = {}): Promise<void> {
    const deadline = Date.now() + waitMs;
    let last: unknown;
    for (;;) {
      try {
        const res = await this.request('GET', '/status', { timeoutMs: Math.max(100, deadline - Date.now()), signal: opts.signal });
        if (res.status === 200 || res.status === 503) return;
        last = new WeaveError('UNAVAILABLE', `weave router at ${this.endpoint.display} answered ${res.status}`);
      } catch (e) {
        if (!(e instanceof WeaveError) || (e.code !== 'UNAVAILABLE' && e.code !== 'TIMEOUT')) throw e;
        last = e;
        opts.onWait?.(e.message);
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise((r) => setTimeout(r, Math.min(opts.pollMs ?? 50, left)));
    }
    throw new WeaveError('UNAVAILABLE', `weave router at ${this.endpoint.display} is not running or not ready (waited ${waitMs} ms)`, { cause: last });
  }

  // --- IPAM (original routes, section 4 of the inventory) ---

  /** POST /ip/<id>[/<subnet>]: allocate, or return the existing address; returns a CIDR. */
  async allocate(ident: string, subnet?: string, opts: RequestOptions = {}): Promise<string> {
    const path = `/ip/${encodeURIComponent(ident)}${subnet ? `/${subnet}` : ''}`;
    return (await this.call('POST', path, 'unable to allocate IP address', opts)).trim();
  }

  /** PUT /ip/<id>/<cidr>: claim a given address. */
  async claim(ident: string, cidr: string, opts: RequestOptions = {}): Promise<void> {
    await this.call('PUT', `/ip/${encodeURIComponent(ident)}/${cidr}`, 'unable to claim IP address', opts);
  }

  /** GET /ip/<id>[/<subnet>]: CIDRs owned by ident (may be empty). */
  async lookup(ident: string, subnet?: string, opts: RequestOptions = {}): Promise<string[]> {
    const path = `/ip/${encodeURIComponent(ident)}${subnet ? `/${subnet}` : ''}`;
    const body = await this.call('GET', path, 'unable to look up IP address', opts);
    return body.split(/\s+/).filter((s) => s !== '');
  }

  /** DELETE /ip/<id>: free everything of ident. Returns false when it owned nothing. */
  async release(ident: string, opts: RequestOptions = {}): Promise<boolean> {
    try {
      await this.call('DELETE', `/ip/${encodeURIComponent(ident)}`, 'unable to release IP address', opts);
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.code === 'NOT_FOUND') return false;
      throw e;
    }
  }

  /** DELETE /ip/<id>/<ip>: free one address. */
  async releaseAddress(ident: string, ip: string, opts: RequestOptions = {}): Promise<void> {
    await this.call('DELETE', `/ip/${encodeURIComponent(ident)}/${ip}`, 'unable to release IP address', opts);
  }

  async defaultSubnet(opts: RequestOptions = {}): Promise<string> {
    return (await this.call('GET', '/ipinfo/defaultsubnet', 'unable to get the default subnet', opts)).trim();
  }

  /** POST /expose/<cidr>: put the address on the bridge and add its NAT rules. */
  async expose(cidr: string, opts: RequestOptions & { skipNAT?: boolean } = {}): Promise<void> {
    await this.call('POST', `/expose/${cidr}${opts.skipNAT ? '?skipNAT=true' : ''}`, 'unable to expose', opts);
  }

  /** DELETE /expose/<cidr>: remove the address from the bridge and its NAT rules. */
  async hide(cidr: string, opts: RequestOptions = {}): Promise<void> {
    await this.call('DELETE', `/expose/${cidr}`, 'unable to hide', opts);
  }

  // --- weaveDNS (routes answer 404 when the router runs with --no-dns) ---

  /** GET /domain: the DNS domain (weave.local.), or undefined when weaveDNS is off. */
  async dnsDomain(opts: RequestOptions = {}): Promise<string | undefined> {
    return this.unlessDnsOff(async () => (await this.call('GET', '/domain', 'unable to get the DNS domain', opts)).trim());
  }

  /**
   * GET /dns-address-port (or /dns-address with `hostOnly`): where the DNS server listens;
   * undefined when weaveDNS is off; NOT_RUNNING while it has no address to listen on.
   */
  async dnsAddress(opts: RequestOptions & { hostOnly?: boolean } = {}): Promise<string | undefined> {
    const path = opts.hostOnly ? '/dns-address' : '/dns-address-port';
    return this.unlessDnsOff(async () => (await this.call('GET', path, 'unable to get the DNS address', opts)).trim());
  }

  /** PUT /name/<container>/<ip> fqdn=: register a name. False when weaveDNS is off. */
  async putName(container: string, ip: string, fqdn: string, opts: RequestOptions = {}): Promise<boolean> {
    const r = await this.unlessDnsOff(async () => {
      await this.call('PUT', `/name/${encodeURIComponent(container)}/${encodeURIComponent(ip)}`, 'unable to register the DNS name', { ...opts, form: { fqdn } });
      return true;
    });
    return r ?? false;
  }

  /** DELETE /name[/<container>[/<ip>]][?fqdn=]: remove names, absent parts matching all. False when weaveDNS is off. */
  async deleteName(container: string | undefined, ip: string | undefined, fqdn: string | undefined, opts: RequestOptions = {}): Promise<boolean> {
    if (container === undefined && ip !== undefined) throw new WeaveError('INVALID_ARGUMENT', 'deleteName: an address needs a container');
    let path = '/name';
    if (container !== undefined) path += `/${encodeURIComponent(container)}`;
    if (ip !== undefined) path += `/${encodeURIComponent(ip)}`;
    if (fqdn) path += `?${new URLSearchParams({ fqdn }).toString()}`;
    const r = await this.unlessDnsOff(async () => {
      await this.call('DELETE', path, 'unable to remove the DNS name', opts);
      return true;
    });
    return r ?? false;
  }

  /** GET /name: every entry (tombstones included), or undefined when weaveDNS is off. */
  async dnsEntries(opts: RequestOptions = {}): Promise<DnsNameJson[] | undefined> {
    return this.unlessDnsOff(async () => JSON.parse(await this.call('GET', '/name', 'unable to list DNS names', { ...opts, headers: { ...opts.headers, accept: 'application/json' } })) as DnsNameJson[]);
  }

  private async unlessDnsOff<T>(fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return undefined;
      throw e;
    }
  }
}

function statusToCode(status: number): ErrorCode {
  if (status === 404) return 'NOT_FOUND';
  if (status === 503) return 'UNAVAILABLE';
  if (status === 400) return 'INVALID_ARGUMENT';
  if (status === 409) return 'CONFLICT';
  return 'INTERNAL';
}
