// IPv4 address and CIDR maths. Addresses are unsigned 32-bit integers held in JS numbers;
// every parser here is total: bad text gives a WeaveError('INVALID_ARGUMENT'), never NaN.
import { WeaveError } from './errors.js';

export type IPv4 = number;

/** An address with a prefix length; `ip` may carry host bits (10.32.0.5/12). */
export interface Cidr {
  readonly ip: IPv4;
  readonly prefix: number;
}

const octetRe = /^(0|[1-9][0-9]{0,2})$/;

export function tryParseIPv4(s: string): IPv4 | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!octetRe.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function parseIPv4(s: string): IPv4 {
  const n = tryParseIPv4(s);
  if (n === undefined) throw new WeaveError('INVALID_ARGUMENT', `invalid IPv4 address "${s}"`);
  return n;
}

export function formatIPv4(n: IPv4): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function tryParseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = tryParseIPv4(s.slice(0, slash));
  const p = s.slice(slash + 1);
  if (ip === undefined || !/^[0-9]{1,2}$/.test(p)) return undefined;
  const prefix = Number(p);
  if (prefix > 32) return undefined;
  return { ip, prefix };
}

export function parseCidr(s: string): Cidr {
  const c = tryParseCidr(s);
  if (!c) throw new WeaveError('INVALID_ARGUMENT', `invalid CIDR "${s}" (expected a.b.c.d/n)`);
  return c;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function cidrSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

/** The network address of a CIDR (host bits cleared). */
export function networkOf(c: Cidr): IPv4 {
  return (c.ip & maskOf(c.prefix)) >>> 0;
}

export function broadcastOf(c: Cidr): IPv4 {
  return (networkOf(c) + cidrSize(c.prefix) - 1) >>> 0;
}

/** The CIDR with host bits cleared: 10.32.0.5/12 -> 10.32.0.0/12. */
export function subnetOf(c: Cidr): Cidr {
  return { ip: networkOf(c), prefix: c.prefix };
}

export function isNetworkCidr(c: Cidr): boolean {
  return networkOf(c) === c.ip;
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.ip)}/${c.prefix}`;
}

export function cidrContains(c: Cidr, ip: IPv4): boolean {
  return ((ip & maskOf(c.prefix)) >>> 0) === networkOf(c);
}

/** Whether subnet `inner` lies entirely within `outer`. */
export function cidrCovers(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrContains(outer, networkOf(inner));
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, networkOf(b)) || cidrContains(b, networkOf(a));
}

/**
 * Addresses usable by hosts: the network and broadcast addresses are excluded, as the
 * original's CIDR.HostRange does. Inclusive bounds; empty (start > end) for /31 and /32.
 */
export function hostRange(c: Cidr): { start: IPv4; end: IPv4 } {
  return { start: networkOf(c) + 1, end: broadcastOf(c) - 1 };
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.ip === b.ip && a.prefix === b.prefix;
}
