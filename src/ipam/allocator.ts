// Address allocation behind the router's /ip API. In this version one peer owns the whole
// range (`--ipalloc-range`); the distributed ring (issue 5) will replace the ownership rule,
// not this contract: allocate = the lowest free host address of the subnet, or the address the
// ident already holds there; claims of a given address; frees; lookups.
//
// Invariants: an address is held by at most one ident; memory changes only after the store
// accepted the write, so a full disk fails the request and loses nothing; an allocation that
// finds its subnet full waits (as the original) until an address is freed or it is cancelled.
import { WeaveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  cidrContains, cidrCovers, cidrSize, formatCidr, formatIPv4, hostRange, isNetworkCidr,
  parseCidr, subnetOf, type Cidr, type IPv4,
} from '../core/ip.js';

/** What the allocator needs from persistence (the daemon passes the SQLite store). */
export interface AllocatorStore {
  get(key: string): string | undefined;
  scan(prefix: string): { key: string; value: string }[];
  set(key: string, value: string): void;
  delete(key: string): void;
  transaction<T>(fn: () => T): T;
}

export interface Ownership {
  ident: string;
  cidrs: Cidr[];
  owner?: string;
}

interface Held {
  cidrs: Cidr[];
  owner?: string;
}

interface PendingAllocate {
  ident: string;
  subnet: Cidr;
  owner: string | undefined;
  resolve: (c: Cidr) => void;
  reject: (e: unknown) => void;
}

const KEY_RANGE = 'ipam/range';
const KEY_OWNED = 'ipam/owned/';

export interface AllocatorOptions {
  range: Cidr;
  defaultSubnet: Cidr;
}

export class Allocator {
  readonly range: Cidr;
  readonly defaultSubnet: Cidr;
  private readonly store: AllocatorStore;
  private readonly log: Logger;
  private readonly owned = new Map<string, Held>();
  /** address -> ident holding it */
  private readonly byAddr = new Map<IPv4, string>();
  private pending: PendingAllocate[] = [];

  constructor(deps: { store: AllocatorStore; logger: Logger }, opts: AllocatorOptions) {
    this.store = deps.store;
    this.log = deps.logger;
    this.range = subnetOf(opts.range);
    this.defaultSubnet = subnetOf(opts.defaultSubnet);
    validateRange(opts.range, opts.defaultSubnet);
  }

  /** Loads persisted ownership; data for another range is discarded, as the original does. */
  load(): void {
    const stored = this.store.get(KEY_RANGE);
    const want = formatCidr(this.range);
    if (stored !== undefined && stored !== want) {
      this.log.info({ old: stored, range: want }, `Deleting persisted data for IPAM range ${stored}`);
      this.store.transaction(() => {
        for (const { key } of this.store.scan(KEY_OWNED)) this.store.delete(key);
        this.store.set(KEY_RANGE, want);
      });
    } else if (stored === undefined) {
      this.store.set(KEY_RANGE, want);
    }
    for (const { key, value } of this.store.scan(KEY_OWNED)) {
      const ident = key.slice(KEY_OWNED.length);
      const held = decodeHeld(value);
      if (!held) {
        this.log.warn({ ident }, 'ignoring unreadable persisted allocation');
        continue;
      }
      this.owned.set(ident, held);
      for (const c of held.cidrs) this.byAddr.set(c.ip, ident);
    }
    this.log.info({ idents: this.owned.size }, 'loaded persisted allocations');
  }

  /** Parses a subnet from the API (`10.32.0.0/12`); it must be a network address inside the range. */
  parseSubnet(text: string): Cidr {
    const c = parseCidr(text);
    if (!isNetworkCidr(c)) {
      throw new WeaveError('INVALID_ARGUMENT', `invalid subnet ${text}: bits after the network prefix are not all zero`);
    }
    if (c.prefix > 30) throw new WeaveError('INVALID_ARGUMENT', `invalid subnet ${text}: too small to allocate from (at least 4 addresses)`);
    if (!cidrCovers(this.range, c)) {
      throw new WeaveError('INVALID_ARGUMENT', `subnet ${text} is outside the IP allocation range ${formatCidr(this.range)}`);
    }
    return c;
  }

  /** The address `ident` holds in `subnet`, or a new one (lowest free); waits while full. */
  async allocate(ident: string, subnet: Cidr = this.defaultSubnet, opts: { owner?: string; signal?: AbortSignal } = {}): Promise<Cidr> {
    checkIdent(ident);
    const existing = this.find(ident, subnet);
    if (existing) return existing;
    const got = this.tryAllocate(ident, subnet, opts.owner);
    if (got) return got;
    if (opts.signal?.aborted) throw new WeaveError('CANCELLED', 'allocation cancelled');
    this.log.info({ ident, subnet: formatCidr(subnet) }, 'no free address: waiting for one to be released');
    return new Promise<Cidr>((resolve, reject) => {
      const p: PendingAllocate = { ident, subnet, owner: opts.owner, resolve, reject };
      this.pending.push(p);
      opts.signal?.addEventListener('abort', () => {
        if (!this.pending.includes(p)) return;
        this.pending = this.pending.filter((x) => x !== p);
        reject(new WeaveError('CANCELLED', 'allocation cancelled'));
      }, { once: true });
    });
  }

  /** Claims a given address for ident. Addresses outside the range are not tracked (as the original). */
  claim(ident: string, cidr: Cidr, opts: { owner?: string } = {}): void {
    checkIdent(ident);
    if (!cidrContains(this.range, cidr.ip)) {
      this.log.info({ ident, cidr: formatCidr(cidr) }, 'claimed address is outside the allocation range; not tracked');
      return;
    }
    const holder = this.byAddr.get(cidr.ip);
    if (holder === ident) return;
    if (holder !== undefined) {
      throw new WeaveError('CONFLICT', `address ${formatIPv4(cidr.ip)} is already owned by ${holder}`);
    }
    this.add(ident, cidr, opts.owner);
  }

  lookup(ident: string, subnet?: Cidr): Cidr[] {
    const held = this.owned.get(ident);
    if (!held) return [];
    return subnet ? held.cidrs.filter((c) => cidrContains(subnet, c.ip)) : [...held.cidrs];
  }

  /** Frees every address of ident; NOT_FOUND if it held none. */
  free(ident: string): Cidr[] {
    const held = this.owned.get(ident);
    if (!held || held.cidrs.length === 0) throw new WeaveError('NOT_FOUND', `Delete: no addresses for ${ident}`);
    this.store.delete(KEY_OWNED + ident);
    this.owned.delete(ident);
    for (const c of held.cidrs) this.byAddr.delete(c.ip);
    this.log.debug({ ident, n: held.cidrs.length }, 'freed addresses');
    this.wakePending();
    return held.cidrs;
  }

  /** Frees one address of ident. */
  freeAddress(ident: string, ip: IPv4): void {
    const held = this.owned.get(ident);
    const idx = held ? held.cidrs.findIndex((c) => c.ip === ip) : -1;
    if (!held || idx < 0) throw new WeaveError('NOT_FOUND', `Free: address ${formatIPv4(ip)} not found for ${ident}`);
    const rest = held.cidrs.filter((_, i) => i !== idx);
    if (rest.length === 0) this.store.delete(KEY_OWNED + ident);
    else this.store.set(KEY_OWNED + ident, encodeHeld({ cidrs: rest, owner: held.owner }));
    if (rest.length === 0) this.owned.delete(ident);
    else held.cidrs = rest;
    this.byAddr.delete(ip);
    this.wakePending();
  }

  all(): Ownership[] {
    return [...this.owned.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([ident, h]) => ({ ident, cidrs: [...h.cidrs], ...(h.owner ? { owner: h.owner } : {}) }));
  }

  activeCount(): number {
    return this.byAddr.size;
  }

  pendingAllocates(): string[] {
    return this.pending.map((p) => p.ident);
  }

  /** Rejects waiting allocations; used on shutdown. */
  cancelPending(): void {
    const p = this.pending;
    this.pending = [];
    for (const x of p) x.reject(new WeaveError('CANCELLED', 'router shutting down'));
  }

  private find(ident: string, subnet: Cidr): Cidr | undefined {
    return this.owned.get(ident)?.cidrs.find((c) => c.prefix === subnet.prefix && cidrContains(subnet, c.ip));
  }

  private tryAllocate(ident: string, subnet: Cidr, owner: string | undefined): Cidr | undefined {
    const { start, end } = hostRange(subnet);
    for (let ip = start; ip <= end; ip++) {
      if (!this.byAddr.has(ip) && cidrContains(this.range, ip)) {
        const c = { ip, prefix: subnet.prefix };
        this.add(ident, c, owner);
        return c;
      }
    }
    return undefined;
  }

  private add(ident: string, c: Cidr, owner: string | undefined): void {
    const prev = this.owned.get(ident);
    const next: Held = { cidrs: [...(prev?.cidrs ?? []), c], owner: prev?.owner ?? owner };
    this.store.set(KEY_OWNED + ident, encodeHeld(next)); // throws STORE_FAILED before memory changes
    this.owned.set(ident, next);
    this.byAddr.set(c.ip, ident);
    this.log.debug({ ident, cidr: formatCidr(c) }, 'allocated');
  }

  private wakePending(): void {
    const still: PendingAllocate[] = [];
    for (const p of this.pending) {
      try {
        const got = this.find(p.ident, p.subnet) ?? this.tryAllocate(p.ident, p.subnet, p.owner);
        if (got) p.resolve(got);
        else still.push(p);
      } catch (e) {
        p.reject(e);
      }
    }
    this.pending = still;
  }
}

function checkIdent(ident: string): void {
  if (ident === '' || ident.length > 512) throw new WeaveError('INVALID_ARGUMENT', 'blank or oversized container name');
}

export function validateRange(range: Cidr, defaultSubnet: Cidr): void {
  if (range.prefix > 30) {
    throw new WeaveError('INVALID_CONFIG', `IP allocation range ${formatCidr(range)} is too small: it must hold at least 4 addresses`);
  }
  if (!cidrCovers(subnetOf(range), subnetOf(defaultSubnet)) && !cidrCovers(subnetOf(defaultSubnet), subnetOf(range))) {
    throw new WeaveError('INVALID_CONFIG', `default subnet ${formatCidr(defaultSubnet)} does not overlap the IP allocation range ${formatCidr(range)}`);
  }
  if (cidrSize(defaultSubnet.prefix) < 4) {
    throw new WeaveError('INVALID_CONFIG', `default subnet ${formatCidr(defaultSubnet)} is too small`);
  }
}

function encodeHeld(h: Held): string {
  return JSON.stringify({ cidrs: h.cidrs.map(formatCidr), ...(h.owner ? { owner: h.owner } : {}) });
}

function decodeHeld(s: string): Held | undefined {
  try {
    const v = JSON.parse(s) as { cidrs?: unknown; owner?: unknown };
    if (!Array.isArray(v.cidrs)) return undefined;
    const cidrs = v.cidrs.filter((x): x is string => typeof x === 'string').map((x) => parseCidr(x));
    return { cidrs, ...(typeof v.owner === 'string' ? { owner: v.owner } : {}) };
  } catch {
    return undefined;
  }
}
