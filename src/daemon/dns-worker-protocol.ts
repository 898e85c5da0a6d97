// What the DNS UDP worker thread (dns-worker.ts) and its owner (dns-worker-udp.ts) exchange:
// the start data, the shared control words, and the messages each way.
import type { IPv4 } from '../core/ip.js';

export interface DnsWorkerData {
  /** The bound UDP socket; the main thread owns it. */
  fd: number;
  /** Fully qualified, lower case. */
  domain: string;
  ttl: number;
  /** The live names (lower case) and their addresses when the thread was started. */
  names: [string, IPv4[]][];
  /** Int32Array view: see CTL_*. */
  control: SharedArrayBuffer;
  /** Datagrams per batch. */
  slots: number;
  /** Queries handed to the main thread and not yet taken by it, at most; past that, dropped. */
  maxQueued: number;
}

/** control[CTL_STOP] = 1: exit at the next wake-up. */
export const CTL_STOP = 0;
/** Bumped by the main thread after each command it posts. */
export const CTL_GEN = 1;
/** Queries this thread answered. */
export const CTL_ANSWERED = 2;
/** Datagrams handed to the main thread. */
export const CTL_PASSED = 3;
/** Of those, taken by the main thread (PASSED − TAKEN wait in its message queue). */
export const CTL_TAKEN = 4;
/** Datagrams dropped because that queue was full. */
export const CTL_DROPPED = 5;
export const CTL_WORDS = 6;

/** Default for DnsWorkerData.maxQueued. */
export const MAX_QUEUED_QUERIES = 1024;

/** Main thread → worker. */
export type DnsWorkerCommand =
  /** New answers for these names (empty: the name is gone). */
  | { t: 'names'; set: [string, IPv4[]][] }
  /** Fault injection for tests: the thread dies as from a bug. */
  | { t: 'fail' };

/** Worker → main thread. */
export type DnsWorkerEvent =
  | { t: 'ready' }
  /** A datagram for the main thread's server. */
  | { t: 'query'; msg: Uint8Array; ip: IPv4; port: number }
  | { t: 'log'; level: 'warn' | 'error'; msg: string };

/** How long recvmmsg sleeps at most, so mail is read and stop is seen even without queries. */
export const RECV_TIMEOUT_MS = 1000;
