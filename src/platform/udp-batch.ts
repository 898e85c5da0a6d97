// Blocking batched UDP I/O on an existing IPv4 socket, for a server thread that does nothing
// but wait for requests and answer them (the DNS worker): one `recvmmsg(MSG_WAITFORONE)` per
// wake-up, which sleeps in the kernel until the first datagram and then takes whatever else
// is queued without waiting, and one `sendmmsg` for the replies of a batch. Compared with
// udp-socket.ts's `recvBatch` (MSG_DONTWAIT, then poll, then recvmmsg again) an idle server
// makes one syscall per wake-up instead of three, which is most of the cost of answering
// queries that come one at a time.
//
// Invariants:
// - The socket stays blocking. `recv` returns after a batch, after the receive timeout
//   (SO_RCVTIMEO, set by `fromFd`), on a signal, or once `wakeUdpReaders` shut the socket
//   down for reading: the caller checks its own stop flag after every return.
// - Hot calls allocate nothing: the mmsghdr, iovec and sockaddr_in arrays and the receive and
//   reply slots they point at are built once; a reply is written straight into its slot.
// - The fd belongs to whoever opened it: nothing here closes it.
import { WeaveError } from '../core/errors.js';
import type { IPv4 } from '../core/ip.js';
import { AF_INET, Errno, ErrnoError, MSG_TRUNC, SOCKADDR_IN_BYTES, SOL_SOCKET, libc, writeU64, type Libc } from './ffi/libc.js';

/** recvmmsg: block for the first datagram only. */
const MSG_WAITFORONE = 0x10000;
/** SO_RCVTIMEO (asm-generic, x86_64 and arm64; libc.ts checks the platform on load). */
const SO_RCVTIMEO = 20;
const SHUT_RD = 0;
/** Largest UDP payload over IPv4: a receive slot this size never truncates. */
export const MAX_UDP_PAYLOAD = 65507;

export interface UdpBatchOptions {
  /** Datagrams taken per wake-up (and replies per flush). */
  slots: number;
  /** Bytes per receive slot (MAX_UDP_PAYLOAD: nothing is ever cut). */
  slotBytes: number;
  /** Bytes per reply slot. */
  replyBytes: number;
  /** How long `recv` sleeps at most with nothing to read, so the caller can look at its mail. */
  recvTimeoutMs: number;
}

/**
 * mmsghdr[n], each with one iovec pointing at slot i of `data` (n slots of `slotBytes`) and one
 * sockaddr_in of its own. The 32-bit views index the fields the hot path reads and writes.
 */
class Vector {
  readonly hdrs: Buffer;
  readonly iovs: Buffer;
  readonly names: Buffer;
  readonly data: Buffer;
  readonly hdrs32: Uint32Array;
  readonly iovs32: Uint32Array;

  constructor(c: Libc, n: number, slotBytes: number) {
    const l = c.layout;
    this.hdrs = Buffer.alloc(n * l.mmsghdrBytes);
    this.iovs = Buffer.alloc(n * l.iovecBytes);
    this.names = Buffer.alloc(n * SOCKADDR_IN_BYTES);
    // One allocation for all slots: untouched pages of it cost no memory.
    this.data = Buffer.allocUnsafeSlow(n * slotBytes);
    this.hdrs32 = new Uint32Array(this.hdrs.buffer, this.hdrs.byteOffset, this.hdrs.length / 4);
    this.iovs32 = new Uint32Array(this.iovs.buffer, this.iovs.byteOffset, this.iovs.length / 4);
    const iovBase = c.addressOf(this.iovs);
    const nameBase = c.addressOf(this.names);
    const dataBase = c.addressOf(this.data);
    for (let i = 0; i < n; i++) {
      const h = i * l.mmsghdrBytes;
      writeU64(this.hdrs, h + l.msgName, nameBase + i * SOCKADDR_IN_BYTES);
      this.hdrs.writeUInt32LE(SOCKADDR_IN_BYTES, h + l.msgNamelen);
      writeU64(this.hdrs, h + l.msgIov, iovBase + i * l.iovecBytes);
      writeU64(this.hdrs, h + l.msgIovlen, 1);
      writeU64(this.iovs, i * l.iovecBytes + l.iovBase, dataBase + i * slotBytes);
      writeU64(this.iovs, i * l.iovecBytes + l.iovLen, slotBytes);
      this.names.writeUInt16LE(AF_INET, i * SOCKADDR_IN_BYTES);
    }
  }

  slots(n: number, slotBytes: number): Buffer[] {
    return Array.from({ length: n }, (_, i) => this.data.subarray(i * slotBytes, (i + 1) * slotBytes));
  }
}

/** 32-bit word index of a byte offset that must be 4-aligned. */
function word(off: number): number {
  if (off % 4 !== 0) throw new WeaveError('INTERNAL', `unaligned field at ${off}`);
  return off / 4;
}

export class UdpBatchIo {
  /** Receive slots; after `recv` returns k, slot i < k holds `lens[i]` bytes from `ips[i]`:`ports[i]`. */
  readonly bufs: Buffer[];
  readonly lens: Uint32Array;
  readonly ips: Uint32Array;
  readonly ports: Uint16Array;
  /** The datagram did not fit its slot (only with slotBytes < MAX_UDP_PAYLOAD). */
  readonly truncated: Uint8Array;
  /** Send slots: `replySlot` hands them out in turn. */
  private readonly replies: Buffer[];
  private readonly c: Libc;
  private readonly fd: number;
  private readonly slots: number;
  private readonly rx: Vector;
  private readonly tx: Vector;
  // Word offsets within one mmsghdr / iovec.
  private readonly hdrWords: number;
  private readonly msgLenWord: number;
  private readonly msgFlagsWord: number;
  private readonly msgNamelenWord: number;
  private readonly iovWords: number;
  private readonly iovLenWord: number;
  private queued = 0;
  private filled = 0;

  private constructor(fd: number, opts: UdpBatchOptions) {
    const c = libc();
    const l = c.layout;
    this.c = c;
    this.fd = fd;
    this.slots = opts.slots;
    this.rx = new Vector(c, opts.slots, opts.slotBytes);
    this.tx = new Vector(c, opts.slots, opts.replyBytes);
    this.bufs = this.rx.slots(opts.slots, opts.slotBytes);
    this.replies = this.tx.slots(opts.slots, opts.replyBytes);
    this.lens = new Uint32Array(opts.slots);
    this.ips = new Uint32Array(opts.slots);
    this.ports = new Uint16Array(opts.slots);
    this.truncated = new Uint8Array(opts.slots);
    this.hdrWords = word(l.mmsghdrBytes);
    this.msgLenWord = word(l.msgLen);
    this.msgFlagsWord = word(l.msgFlags);
    this.msgNamelenWord = word(l.msgNamelen);
    this.iovWords = word(l.iovecBytes);
    this.iovLenWord = word(l.iovLen);
  }

  /**
   * Wraps a bound IPv4 UDP socket of this process (opened by another thread, typically) and
   * sets its receive timeout. The fd stays its owner's.
   */
  static fromFd(fd: number, opts: UdpBatchOptions): UdpBatchIo {
    if (!(Number.isInteger(opts.slots) && opts.slots > 0 && opts.slots <= 1024)) throw new WeaveError('INVALID_ARGUMENT', `invalid batch size ${opts.slots}`);
    const io = new UdpBatchIo(fd, opts);
    setRecvTimeout(fd, opts.recvTimeoutMs);
    return io;
  }

  /**
   * Waits for datagrams and takes up to `slots` of them; returns how many (0 after the
   * timeout, a signal, or a shutdown). Throws ErrnoError for anything else (EBADF...).
   */
  recv(): number {
    const c = this.c;
    const h32 = this.rx.hdrs32;
    const hw = this.hdrWords;
    // The kernel rewrites msg_namelen only in the headers it filled last time.
    for (let i = 0; i < this.filled; i++) h32[i * hw + this.msgNamelenWord] = SOCKADDR_IN_BYTES;
    this.filled = 0;
    const r = c.recvmmsg(this.fd, this.rx.hdrs, this.slots, MSG_WAITFORONE, null);
    if (r < 0) {
      const e = c.errno();
      if (e === Errno.EAGAIN || e === Errno.EINTR) return 0;
      throw new ErrnoError('recvmmsg', e);
    }
    this.filled = r;
    const names = this.rx.names;
    for (let i = 0; i < r; i++) {
      const at = i * SOCKADDR_IN_BYTES;
      this.lens[i] = h32[i * hw + this.msgLenWord]!;
      this.truncated[i] = (h32[i * hw + this.msgFlagsWord]! & MSG_TRUNC) !== 0 ? 1 : 0;
      this.ports[i] = ((names[at + 2] as number) << 8) | (names[at + 3] as number);
      this.ips[i] = (((names[at + 4] as number) << 24) | ((names[at + 5] as number) << 16) | ((names[at + 6] as number) << 8) | (names[at + 7] as number)) >>> 0;
    }
    return r;
  }

  /** The buffer for the next reply (`replyBytes` long); send it with `queueReply`. */
  replySlot(): Buffer {
    if (this.queued === this.slots) this.flush();
    return this.replies[this.queued]!;
  }

  /** Queues the first `len` bytes of the current `replySlot` for `ip`:`port`; sent by `flush`. */
  queueReply(len: number, ip: IPv4, port: number): void {
    const i = this.queued;
    if (i === this.slots || !(len >= 0 && len <= this.replies[i]!.length)) throw new WeaveError('INVALID_ARGUMENT', `reply of ${len} bytes outside its slot`);
    this.queued++;
    this.tx.iovs32[i * this.iovWords + this.iovLenWord] = len; // the high word stays 0
    const names = this.tx.names;
    const at = i * SOCKADDR_IN_BYTES;
    names[at + 2] = port >>> 8;
    names[at + 3] = port & 0xff;
    names[at + 4] = ip >>> 24;
    names[at + 5] = (ip >>> 16) & 0xff;
    names[at + 6] = (ip >>> 8) & 0xff;
    names[at + 7] = ip & 0xff;
  }

  /**
   * Sends what `queueReply` collected; returns how many went. A datagram the kernel refuses
   * goes to `onError` (if given) and the rest are still sent: UDP replies are best effort.
   */
  flush(onError?: (err: ErrnoError) => void): number {
    const n = this.queued;
    if (n === 0) return 0;
    this.queued = 0;
    const c = this.c;
    const size = c.layout.mmsghdrBytes;
    let sent = 0;
    let at = 0;
    while (at < n) {
      const r = c.sendmmsg(this.fd, at === 0 ? this.tx.hdrs : this.tx.hdrs.subarray(at * size), n - at, 0);
      if (r > 0) {
        sent += r;
        at += r;
        continue;
      }
      const e = r < 0 ? c.errno() : Errno.EIO;
      if (e === Errno.EINTR) continue;
      onError?.(new ErrnoError('sendmmsg', e, { batchIndex: at }));
      at++;
    }
    return sent;
  }
}

/** SO_RCVTIMEO: how long a blocking receive on `fd` waits (0: for ever). */
export function setRecvTimeout(fd: number, ms: number): void {
  const c = libc();
  const tv = Buffer.alloc(16); // struct timeval: long tv_sec, long tv_usec
  writeU64(tv, 0, Math.floor(ms / 1000));
  writeU64(tv, 8, (ms % 1000) * 1000);
  if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) < 0) throw new ErrnoError('setsockopt', c.errno(), { fallback: 'KERNEL_FAILED', context: 'SO_RCVTIMEO' });
}

/**
 * Wakes every thread blocked receiving on `fd`, now and later (shutdown(SHUT_RD): Linux
 * wakes the waiters of an unconnected UDP socket too, and reports ENOTCONN, ignored here).
 * For stopping a reader before its fd is closed; the socket receives nothing afterwards.
 */
export function wakeUdpReaders(fd: number): void {
  libc().shutdown(fd, SHUT_RD);
}
