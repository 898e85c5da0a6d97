// Half-open IPv4 address ranges [start, end), the unit the ring and the space work in
// (weave `net/address`: Range, CIDR.Range, CIDR.HostRange, Range.AsCIDRString).
//
// Addresses are unsigned 32-bit integers in JS numbers (core/ip.ts), so `end` may be 2^32 only
// in theory: the allocator refuses a universe that reaches 255.255.255.255 because the
// original's uint32 End would wrap to 0 there.
import { cidrSize, formatIPv4, networkOf, type Cidr, type IPv4 } from '../core/ip.js';

export interface AddressRange {
  readonly start: IPv4;
  readonly end: IPv4;
}

export function addressRange(start: IPv4, end: IPv4): AddressRange {
  return { start, end };
}

export function rangeSize(r: AddressRange): number {
  return r.end > r.start ? r.end - r.start : 0;
}

export function rangeContains(r: AddressRange, addr: IPv4): boolean {
  return addr >= r.start && addr < r.end;
}

export function rangesOverlap(a: AddressRange, b: AddressRange): boolean {
  return !(a.start >= b.end || a.end <= b.start);
}

/** The whole block of a CIDR, network to broadcast address. */
export function cidrRange(c: Cidr): AddressRange {
  const start = networkOf(c);
  return { start, end: start + cidrSize(c.prefix) };
}

/** The addresses hosts may use: the first and last of the block are excluded (RFC 1122). */
export function cidrHostRange(c: Cidr): AddressRange {
  const r = cidrRange(c);
  return r.end - r.start <= 2 ? { start: r.start, end: r.start } : { start: r.start + 1, end: r.end - 1 };
}

/** Go's Range.String: `first-last`. */
export function formatRange(r: AddressRange): string {
  return `${formatIPv4(r.start)}-${formatIPv4(r.end - 1)}`;
}

/** Go's Range.AsCIDRString: `a.b.c.d/n` when the size is a power of two, else `first-last`. */
export function formatRangeAsCidr(r: AddressRange): string {
  const size = rangeSize(r);
  if (size === 0 || (size & (size - 1)) !== 0 || size > 2 ** 31) {
    if (size === 2 ** 32) return `${formatIPv4(r.start)}/0`;
    return formatRange(r);
  }
  return `${formatIPv4(r.start)}/${32 - Math.log2(size)}`;
}

/**
 * The largest CIDR-aligned block inside `r` (lowest such block on ties); empty for an empty
 * range. Donations hand out aligned blocks so that the ring stays easy to read and subnets
 * stay whole (the original's BiggestCIDRRange, computed here exactly).
 */
export function biggestCidrBlock(r: AddressRange): AddressRange {
  const size = rangeSize(r);
  if (size === 0) return { start: r.start, end: r.start };
  for (let block = 2 ** Math.floor(Math.log2(size)); block >= 1; block /= 2) {
    const aligned = Math.ceil(r.start / block) * block;
    if (aligned + block <= r.end) return { start: aligned, end: aligned + block };
  }
  return { start: r.start, end: r.start + 1 };
}
