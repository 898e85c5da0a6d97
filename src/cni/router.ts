// The CNI plugins' view of the weave router's HTTP API: the calls they make, with the waiting
// policy they share. A plugin runs once per container event, often while the router is still
// starting (node boot, router restart), so a connection failure is retried until `waitMs`
// has passed (one budget per plugin run, not per call) and only then reported as CNI code 11
// "try again later" naming the router address. The original failed at once with
// "connection refused". HTTP answers (even 503) are not retried: the router spoke.
// Allocations carry `?owner=cni:<network>` so that GC can tell this network's addresses from
// those of `weave attach`, other networks and the bridge (weave:expose).
import { WeaveError } from '../core/errors.js';
import { formatCidr, tryParseCidr, type Cidr } from '../core/ip.js';
import type { Clock } from '../core/clock.js';
import { ApiError, type ApiResponse, type RequestOptions } from '../api/client.js';

/** The part of WeaveClient the plugins use (declared here, by the consumer). */
export interface RouterApi {
  readonly endpoint: { readonly display: string };
  request(method: string, path: string, opts?: RequestOptions): Promise<ApiResponse>;
  call(method: string, path: string, what: string, opts?: RequestOptions): Promise<string>;
  lookup(ident: string, subnet?: string, opts?: RequestOptions): Promise<string[]>;
  release(ident: string, opts?: RequestOptions): Promise<boolean>;
  expose(cidr: string, opts?: RequestOptions & { skipNAT?: boolean }): Promise<void>;
}

/** One entry of `GET /ip`. `owner` is absent for addresses not allocated by a CNI plugin. */
export interface OwnedEntry {
  containerid: string;
  addrs: string[];
  owner?: string;
}

export interface RouterSessionOptions {
  waitMs: number;
  clock: Clock;
  log: (msg: string) => void;
  /** First retry delay; doubles up to MAX_POLL_MS. */
  pollMs?: number;
}

const MAX_POLL_MS = 500;
/** The least time a call that does not wait on the router's side is given to be answered. */
const MIN_ANSWER_MS = 2000;

/** The owner tag of allocations made for CNI network `name`. */
export function cniOwner(networkName: string): string {
  return `cni:${networkName}`;
}

/** A connection-level failure (no HTTP answer): worth waiting for. */
function isUnreachable(e: unknown): boolean {
  return e instanceof WeaveError && !(e instanceof ApiError) && (e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT');
}

export class RouterSession {
  private readonly api: RouterApi;
  private readonly opts: RouterSessionOptions;
  private deadline: number | undefined;
  private warned = false;

  constructor(api: RouterApi, opts: RouterSessionOptions) {
    this.api = api;
    this.opts = opts;
  }

  get address(): string {
    return this.api.endpoint.display;
  }

  /**
   * For the calls that never wait on the router's side (everything but allocate, claim and
   * expose, which may wait for the ring): a time to answer, so that a router that takes
   * connections but says nothing (stopped, hung) fails the call with code 11, after about
   * twice routerWaitMs (the first silence, then the retries' budget), instead of holding DEL,
   * CHECK or GC for good. The budget left once waiting began, else all of it; at least
   * MIN_ANSWER_MS (routerWaitMs 0 means "do not wait for a router that is not there", not "a
   * router that is there must answer at once").
   */
  private bounded(): RequestOptions {
    const left = this.deadline === undefined ? this.opts.waitMs : this.deadline - this.opts.clock.now();
    return { timeoutMs: Math.max(MIN_ANSWER_MS, left) };
  }

  /** Runs `fn`, retrying while the router cannot be reached and the wait budget lasts. */
  private async retry<T>(fn: () => Promise<T>): Promise<T> {
    let delay = this.opts.pollMs ?? 50;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        if (!isUnreachable(e)) throw e;
        const now = this.opts.clock.now();
        this.deadline ??= now + this.opts.waitMs;
        const left = this.deadline - now;
        if (left <= 0) {
          throw new WeaveError('UNAVAILABLE', `weave router at ${this.address} is not reachable (waited ${this.opts.waitMs} ms); try again later`, {
            cause: e,
            details: (e as Error).message,
          });
        }
        if (!this.warned) {
          this.warned = true;
          this.opts.log(`weave router at ${this.address} is not reachable yet; waiting up to ${this.opts.waitMs} ms`);
        }
        await this.opts.clock.sleep(Math.min(delay, left));
        delay = Math.min(delay * 2, MAX_POLL_MS);
      }
    }
  }

  /** POST /ip/<ident>[/<subnet>][?owner=..]: the address of ident (allocated or existing). */
  async allocate(ident: string, opts: { subnet?: Cidr; owner?: string } = {}): Promise<Cidr> {
    const path = `/ip/${encodeURIComponent(ident)}${opts.subnet ? `/${formatCidr(opts.subnet)}` : ''}`;
    const query = opts.owner ? `?${new URLSearchParams({ owner: opts.owner }).toString()}` : '';
    const body = (await this.retry(() => this.api.call('POST', path + query, 'unable to allocate IP address'))).trim();
    const cidr = tryParseCidr(body);
    if (cidr) return cidr;
    // The original answers 200 "cancelled" when it gave up on the request.
    if (body === 'cancelled') throw new WeaveError('CANCELLED', `unable to allocate IP address for ${ident}: the router cancelled the request`);
    throw new WeaveError('INTERNAL', `unable to allocate IP address for ${ident}: unexpected answer "${body.slice(0, 100)}"`);
  }

  /** PUT /ip/<ident>/<cidr>[?owner=..]: claim exactly this address for ident. */
  async claim(ident: string, cidr: Cidr, opts: { owner?: string } = {}): Promise<void> {
    const query = opts.owner ? `?${new URLSearchParams({ owner: opts.owner }).toString()}` : '';
    await this.retry(() => this.api.call('PUT', `/ip/${encodeURIComponent(ident)}/${formatCidr(cidr)}${query}`, 'unable to claim IP address'));
  }

  /** GET /ipinfo/defaultsubnet. */
  async defaultSubnet(): Promise<Cidr> {
    const body = (await this.retry(() => this.api.call('GET', '/ipinfo/defaultsubnet', 'unable to get the default subnet', this.bounded()))).trim();
    const c = tryParseCidr(body);
    if (!c) throw new WeaveError('INTERNAL', `unexpected default subnet "${body.slice(0, 100)}"`);
    return c;
  }

  /** DELETE /ip/<ident>. False when the router held nothing for ident. */
  async release(ident: string): Promise<boolean> {
    try {
      return await this.retry(() => this.api.release(ident, this.bounded()));
    } catch (e) {
      // The original router answers 400 "Delete: no addresses for <id>" with no error code.
      if (e instanceof ApiError && e.status === 400 && /no addresses for/.test(e.body)) return false;
      throw e;
    }
  }

  /** GET /ip/<ident>[/<subnet>]: the CIDRs ident holds. */
  lookup(ident: string, subnet?: Cidr): Promise<string[]> {
    return this.retry(() => this.api.lookup(ident, subnet ? formatCidr(subnet) : undefined, this.bounded()));
  }

  /** GET /ip: every ident with addresses. */
  async listOwned(): Promise<OwnedEntry[]> {
    const body = await this.retry(() => this.api.call('GET', '/ip', 'unable to list IP addresses', { headers: { accept: 'application/json' }, ...this.bounded() }));
    return decodeOwned(body);
  }

  /** POST /expose/<cidr>: the router puts the address on the bridge (idempotent there). */
  expose(cidr: Cidr): Promise<void> {
    return this.retry(() => this.api.expose(formatCidr(cidr)));
  }

  /** Whether `/status` answers (200 or 503, as the original's IsReady); never waits. */
  async probe(timeoutMs: number): Promise<{ up: true } | { up: false; why: string }> {
    try {
      const res = await this.api.request('GET', '/status', { timeoutMs });
      if (res.status === 200 || res.status === 503) return { up: true };
      return { up: false, why: `GET /status answered ${res.status}` };
    } catch (e) {
      return { up: false, why: (e as Error).message };
    }
  }
}

/** Decodes `GET /ip`: {"owned":[{"containerid","addrs",["owner"]}]}; total. */
export function decodeOwned(body: string): OwnedEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch (e) {
    throw new WeaveError('DECODE_FAILED', `cannot decode GET /ip: ${(e as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null) throw new WeaveError('DECODE_FAILED', 'cannot decode GET /ip: not an object');
  const owned = (doc as { owned?: unknown }).owned;
  if (owned === null || owned === undefined) return [];
  if (!Array.isArray(owned)) throw new WeaveError('DECODE_FAILED', 'cannot decode GET /ip: owned is not a list');
  const out: OwnedEntry[] = [];
  for (const x of owned as unknown[]) {
    if (typeof x !== 'object' || x === null) continue;
    const r = x as Record<string, unknown>;
    if (typeof r.containerid !== 'string') continue;
    const addrs = Array.isArray(r.addrs) ? r.addrs.filter((a): a is string => typeof a === 'string') : [];
    out.push({ containerid: r.containerid, addrs, ...(typeof r.owner === 'string' ? { owner: r.owner } : {}) });
  }
  return out;
}
