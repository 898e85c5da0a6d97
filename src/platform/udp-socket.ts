// An IPv4 UDP socket driven by raw syscalls, for the sleeve's worker threads: batched
// send/receive (sendmmsg/recvmmsg), segmentation offload both ways (UDP GSO: one send of many
// same-sized datagrams; UDP GRO: one receive of many), per-socket control of the DF bit and
// the kernel's path MTU, none of which node:dgram offers.
//
// Invariants:
// - The socket is blocking: `sendTo`/`sendBatch` wait for send-buffer space (backpressure
//   for the TAP reader) and `recvFrom` waits for a datagram; `recvBatch` alone never blocks
//   longer than its timeout (MSG_DONTWAIT first, poll only when nothing is queued).
// - Hot calls allocate nothing: mmsghdr, iovec, sockaddr_in and cmsg arrays are built once
//   (grown on demand) and rewritten in place; `out` objects are reused.
// - Segmentation offload: a send with `segmentSize` crosses the stack as one buffer and leaves
//   as datagrams of that size (cut by the NIC, or by the kernel just before it; between
//   namespaces on one machine never at all); a socket with GRO on may receive such a train,
//   or datagrams a NIC merged, as one `Datagram` with `segmentSize` set. Both need UDP
//   checksums (the kernel refuses UDP_SEGMENT on a `noChecksum` socket).
// - Addresses are IPv4 as unsigned 32-bit numbers (core/ip), dotted strings accepted too.
// - fds are process-wide: a worker wraps the owner's fd with `UdpSocket.fromFd`; only the
//   owner closes it, once the workers are done with it.
import { WeaveError } from '../core/errors.js';
import { parseIPv4, type IPv4 } from '../core/ip.js';
import {
  AF_INET,
  Errno,
  ErrnoError,
  IPPROTO_IP,
  IP_MTU,
  IP_MTU_DISCOVER,
  IP_PMTUDISC_DO,
  IP_PMTUDISC_DONT,
  CMSG_HEADER_BYTES,
  MSG_DONTWAIT,
  MSG_TRUNC,
  POLLIN,
  SOCKADDR_IN_BYTES,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOL_SOCKET,
  SOL_UDP,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_NO_CHECK,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  UDP_GRO,
  UDP_SEGMENT,
  allocPollfd,
  cmsgSpace,
  checkLen,
  closeFd,
  failed,
  libc,
  pollOne,
  writeU64,
  type Libc,
} from './ffi/libc.js';

export interface UdpSocketOptions {
  reuseAddr?: boolean;
  reusePort?: boolean;
  /** Receive/send buffer sizes in bytes; as root these may exceed net.core.[rw]mem_max. */
  rcvBuf?: number;
  sndBuf?: number;
  /**
   * Send UDP checksums of 0 (SO_NO_CHECK; IPv4 allows it). Worth it when the payload carries
   * its own integrity check and datagrams are fragmented, which the kernel cannot offload.
   */
  noChecksum?: boolean;
  /**
   * Ask for UDP GRO (best effort: see `groEnabled`): same-sized datagrams from one sender may
   * then arrive as one `Datagram` with `segmentSize` set, so give receives 64 KiB buffers.
   */
  gro?: boolean;
}

/** One received datagram: `len` bytes in the matching buffer, from `ip`:`port`. */
export interface Datagram {
  len: number;
  ip: IPv4;
  port: number;
  /** The datagram was longer than the buffer; `len` is what fitted. */
  truncated: boolean;
  /**
   * 0: one datagram. Otherwise (GRO) `len` bytes of back-to-back datagrams of this size, the
   * last one possibly shorter.
   */
  segmentSize: number;
}

/** One datagram to send: the first `len` bytes of `buf` to `ip`:`port`. */
export interface OutgoingDatagram {
  buf: Uint8Array;
  len: number;
  ip: IPv4 | string;
  port: number;
  /**
   * Send `len` bytes as datagrams of this many bytes each (the last may be shorter) in one go
   * (UDP GSO; see `supportsSegmentation`). At most 64 of them, each within the path MTU (else
   * EMSGSIZE; older kernels say EINVAL), and `len` within the 65507 bytes of one UDP payload.
   * 0 or absent: one datagram.
   */
  segmentSize?: number;
}

const INITIAL_BATCH = 64;
/** The kernel's UDP_MAX_SEGMENTS before 6.? raised it; the safe bound for one GSO send. */
export const UDP_MAX_SEGMENTS = 64;
// Control space per message: a UDP_SEGMENT cmsg (u16) when sending; room for a UDP_GRO cmsg
// (int) and anything else the kernel adds when receiving.
const SEND_CONTROL_BYTES = cmsgSpace(2);
const RECV_CONTROL_BYTES = 64;

function toIPv4(ip: IPv4 | string): IPv4 {
  if (typeof ip === 'string') return parseIPv4(ip);
  if (ip >>> 0 !== ip) throw new WeaveError('INVALID_ARGUMENT', `invalid IPv4 address ${ip}`);
  return ip;
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WeaveError('INVALID_ARGUMENT', `invalid UDP port ${port}`);
  return port;
}

function sockaddrIn(ip: IPv4, port: number, out: Buffer = Buffer.alloc(SOCKADDR_IN_BYTES), off = 0): Buffer {
  out.writeUInt16LE(AF_INET, off); // sin_family is host order, port and address network order
  out.writeUInt16BE(port, off + 2);
  out.writeUInt32BE(ip, off + 4);
  return out;
}

/**
 * Prebuilt mmsghdr[n], each with one iovec, one sockaddr_in and one control area of its own.
 * Receiving, every control area is always offered; sending, only messages with a segment size
 * point at theirs.
 */
class MsgVector {
  readonly capacity: number;
  readonly hdrs: Buffer;
  readonly iovs: Buffer;
  readonly names: Buffer;
  readonly control: Buffer;
  readonly controlBytes: number;
  private readonly controlBase: number;
  /** Sending: the segment size each slot's header is set up for (0: no control). */
  readonly segment: Uint32Array;

  constructor(c: Libc, capacity: number, kind: 'send' | 'recv') {
    const l = c.layout;
    this.capacity = capacity;
    this.hdrs = Buffer.alloc(capacity * l.mmsghdrBytes);
    this.iovs = Buffer.alloc(capacity * l.iovecBytes);
    this.names = Buffer.alloc(capacity * SOCKADDR_IN_BYTES);
    this.controlBytes = kind === 'send' ? SEND_CONTROL_BYTES : RECV_CONTROL_BYTES;
    this.control = Buffer.alloc(capacity * this.controlBytes);
    this.segment = new Uint32Array(capacity);
    const iovBase = c.addressOf(this.iovs);
    const nameBase = c.addressOf(this.names);
    this.controlBase = c.addressOf(this.control);
    for (let i = 0; i < capacity; i++) {
      const h = i * l.mmsghdrBytes;
      writeU64(this.hdrs, h + l.msgName, nameBase + i * SOCKADDR_IN_BYTES);
      this.hdrs.writeUInt32LE(SOCKADDR_IN_BYTES, h + l.msgNamelen);
      writeU64(this.hdrs, h + l.msgIov, iovBase + i * l.iovecBytes);
      writeU64(this.hdrs, h + l.msgIovlen, 1);
      this.names.writeUInt16LE(AF_INET, i * SOCKADDR_IN_BYTES);
      if (kind === 'recv') writeU64(this.hdrs, h + l.msgControl, this.controlBase + i * this.controlBytes);
      else {
        // One UDP_SEGMENT cmsg, its size filled in per send.
        const o = i * this.controlBytes;
        writeU64(this.control, o, CMSG_HEADER_BYTES + 2);
        this.control.writeInt32LE(SOL_UDP, o + 8);
        this.control.writeInt32LE(UDP_SEGMENT, o + 12);
      }
    }
  }

  /** Sending: slot `i` carries a UDP_SEGMENT of `size` (0: none). */
  setSegment(c: Libc, i: number, size: number): void {
    if (this.segment[i] === size) return;
    const l = c.layout;
    const h = i * l.mmsghdrBytes;
    if (size === 0) {
      writeU64(this.hdrs, h + l.msgControl, 0);
      writeU64(this.hdrs, h + l.msgControllen, 0);
    } else {
      this.control.writeUInt16LE(size, i * this.controlBytes + CMSG_HEADER_BYTES);
      writeU64(this.hdrs, h + l.msgControl, this.controlBase + i * this.controlBytes);
      writeU64(this.hdrs, h + l.msgControllen, this.controlBytes);
    }
    this.segment[i] = size;
  }

  /** Receiving: the UDP_GRO segment size the kernel reported for slot `i`, 0 if none. */
  groSegment(c: Libc, i: number): number {
    const l = c.layout;
    const h = i * l.mmsghdrBytes;
    // Control lengths stay far below 2^32: the low half of the size_t is the whole of it.
    const len = this.hdrs.readUInt32LE(h + l.msgControllen);
    const base = i * this.controlBytes;
    let o = 0;
    while (o + CMSG_HEADER_BYTES <= len) {
      const cl = this.control.readUInt32LE(base + o);
      if (cl < CMSG_HEADER_BYTES || o + cl > len) break;
      if (this.control.readInt32LE(base + o + 8) === SOL_UDP && this.control.readInt32LE(base + o + 12) === UDP_GRO && cl >= CMSG_HEADER_BYTES + 4) {
        return this.control.readInt32LE(base + o + CMSG_HEADER_BYTES);
      }
      o += (cl + 7) & ~7;
    }
    return 0;
  }

  setIov(c: Libc, i: number, buf: Uint8Array, len: number): void {
    const l = c.layout;
    writeU64(this.iovs, i * l.iovecBytes + l.iovBase, c.addressOf(buf));
    writeU64(this.iovs, i * l.iovecBytes + l.iovLen, len);
  }
}

export class UdpSocket {
  private fdNum: number;
  private readonly owned: boolean;
  private readonly c: Libc;
  private readonly pollfd = allocPollfd();
  private readonly intBuf = Buffer.alloc(4);
  private readonly lenBuf = Buffer.alloc(4);
  private readonly sendAddr = sockaddrIn(0, 0);
  private sendAddrIp: IPv4 | string = 0; // as given, so a repeated string is not parsed again
  private sendAddrPort = 0;
  private readonly recvAddr = Buffer.alloc(SOCKADDR_IN_BYTES);
  private dontFragment: boolean | undefined; // unknown until first set
  private checksums: boolean | undefined; // likewise
  private sendVec: MsgVector | undefined;
  private recvVec: MsgVector | undefined;
  // Buffers whose addresses sit in recvVec's iovecs, so unchanged slots are not rewritten.
  private readonly recvBufs: (Uint8Array | undefined)[] = [];

  /** Use `UdpSocket.bind` or `UdpSocket.fromFd`. */
  constructor(fd: number, owned: boolean) {
    this.fdNum = fd;
    this.owned = owned;
    this.c = libc();
  }

  static bind(ip: IPv4 | string, port: number, opts: UdpSocketOptions = {}): UdpSocket {
    const addr = toIPv4(ip);
    checkPort(port);
    const c = libc();
    const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) failed('socket', { fallback: 'KERNEL_FAILED' });
    const sock = new UdpSocket(fd, true);
    try {
      if (opts.reuseAddr) sock.setIntOpt(SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
      if (opts.reusePort) sock.setIntOpt(SOL_SOCKET, SO_REUSEPORT, 1, 'SO_REUSEPORT');
      if (opts.rcvBuf !== undefined) sock.setBufSize(SO_RCVBUFFORCE, SO_RCVBUF, opts.rcvBuf, 'SO_RCVBUF');
      if (opts.sndBuf !== undefined) sock.setBufSize(SO_SNDBUFFORCE, SO_SNDBUF, opts.sndBuf, 'SO_SNDBUF');
      if (opts.noChecksum) sock.setIntOpt(SOL_SOCKET, SO_NO_CHECK, 1, 'SO_NO_CHECK');
      if (opts.gro) sock.enableGro();
      if (c.bind(fd, sockaddrIn(addr, port), SOCKADDR_IN_BYTES) < 0) failed('bind', { fallback: 'KERNEL_FAILED', context: `${typeof ip === 'string' ? ip : addr}:${port}` });
      return sock;
    } catch (e) {
      c.close(fd);
      throw e;
    }
  }

  /**
   * Wraps an IPv4 UDP socket fd opened elsewhere in this process (e.g. by the main thread).
   * Not owned unless `owned`: `close()` then leaves the fd open for its owner.
   */
  static fromFd(fd: number, opts: { owned?: boolean } = {}): UdpSocket {
    const sock = new UdpSocket(fd, opts.owned ?? false);
    const sa = Buffer.alloc(SOCKADDR_IN_BYTES);
    sock.lenBuf.writeUInt32LE(SOCKADDR_IN_BYTES);
    if (sock.c.getsockname(fd, sa, sock.lenBuf) < 0) failed('getsockname', { context: `fd ${fd}` });
    if (sa.readUInt16LE(0) !== AF_INET) throw new WeaveError('INVALID_ARGUMENT', `fd ${fd} is not an IPv4 socket`);
    return sock;
  }

  /** The fd, for handing to a worker; -1 once closed. */
  get fd(): number {
    return this.fdNum;
  }

  /** The bound address (the port the kernel chose when bound to 0). */
  localAddress(): { ip: IPv4; port: number } {
    const sa = Buffer.alloc(SOCKADDR_IN_BYTES);
    this.lenBuf.writeUInt32LE(SOCKADDR_IN_BYTES);
    if (this.c.getsockname(this.fdNum, sa, this.lenBuf) < 0) failed('getsockname');
    return { ip: sa.readUInt32BE(4), port: sa.readUInt16BE(2) };
  }

  /**
   * Turns UDP GRO on; false when the kernel lacks it (before Linux 5.0). Receives then report
   * coalesced trains through `Datagram.segmentSize`.
   */
  enableGro(): boolean {
    this.intBuf.writeInt32LE(1);
    if (this.c.setsockopt(this.fdNum, SOL_UDP, UDP_GRO, this.intBuf, 4) === 0) return true;
    const e = this.c.errno();
    if (e === Errno.ENOPROTOOPT || e === Errno.EINVAL) return false;
    throw new ErrnoError('setsockopt', e, { fallback: 'KERNEL_FAILED', context: 'UDP_GRO' });
  }

  /** Whether GRO is on for this socket (also when another thread or the owner turned it on). */
  get groEnabled(): boolean {
    return this.getIntOpt(SOL_UDP, UDP_GRO) === 1;
  }

  /**
   * Whether sends may carry `segmentSize` (UDP GSO, Linux 4.18): the kernel knows the option
   * and this socket computes UDP checksums.
   */
  supportsSegmentation(): boolean {
    return this.getIntOpt(SOL_UDP, UDP_SEGMENT) !== undefined && this.getIntOpt(SOL_SOCKET, SO_NO_CHECK) !== 1;
  }

  /**
   * UDP checksums on (the default) or off (SO_NO_CHECK) for the sends that follow; cached as
   * setDontFragment. Segmented sends need them on.
   */
  setChecksums(on: boolean): void {
    if (this.checksums === on) return;
    this.setIntOpt(SOL_SOCKET, SO_NO_CHECK, on ? 0 : 1, 'SO_NO_CHECK');
    this.checksums = on;
  }

  /**
   * DF on (IP_PMTUDISC_DO: a datagram over the path MTU fails with EMSGSIZE) or off
   * (IP_PMTUDISC_DONT: the kernel fragments). Cached: repeating the current state is free.
   */
  setDontFragment(on: boolean): void {
    if (this.dontFragment === on) return;
    this.setIntOpt(IPPROTO_IP, IP_MTU_DISCOVER, on ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT, 'IP_MTU_DISCOVER');
    this.dontFragment = on;
  }

  /**
   * Sends the first `len` bytes of `buf`; returns the bytes sent. Throws ErrnoError: with DF
   * on, errnoName 'EMSGSIZE' means `len` exceeds the path MTU (see `pathMtu`).
   */
  sendTo(buf: Uint8Array, len: number, ip: IPv4 | string, port: number): number {
    checkLen(buf, len);
    if (ip !== this.sendAddrIp || port !== this.sendAddrPort) {
      sockaddrIn(toIPv4(ip), checkPort(port), this.sendAddr);
      this.sendAddrIp = ip;
      this.sendAddrPort = port;
    }
    const c = this.c;
    for (;;) {
      const n = c.sendto(this.fdNum, buf, len, 0, this.sendAddr, SOCKADDR_IN_BYTES);
      if (n >= 0) return n;
      const e = c.errno();
      if (e !== Errno.EINTR) throw new ErrnoError('sendto', e);
    }
  }

  /**
   * Sends `packets[0..count)` with as few sendmmsg calls as the kernel allows; returns how
   * many were sent (a segmented one counts once). A datagram the kernel refuses (EMSGSIZE,
   * ENOBUFS, EINVAL…) goes to `onError` and the rest are still
   * sent; without `onError` the refusal throws an ErrnoError whose `batchIndex` names it (the
   * ones before it were sent, the ones after it were not).
   */
  sendBatch(packets: readonly OutgoingDatagram[], count: number = packets.length, onError?: (index: number, err: ErrnoError) => void): number {
    if (!(count >= 0 && count <= packets.length)) throw new WeaveError('INVALID_ARGUMENT', `count ${count} outside a batch of ${packets.length}`);
    const c = this.c;
    const v = this.vecFor('send', count);
    for (let i = 0; i < count; i++) {
      const p = packets[i]!;
      checkLen(p.buf, p.len);
      v.setIov(c, i, p.buf, p.len);
      const seg = p.segmentSize ?? 0;
      if (!(seg >= 0 && seg <= 0xffff)) throw new WeaveError('INVALID_ARGUMENT', `segment size ${seg} out of range`);
      // A "train" of one datagram is just a datagram (the kernel would accept it either way).
      v.setSegment(c, i, seg >= p.len ? 0 : seg);
      const off = i * SOCKADDR_IN_BYTES;
      v.names.writeUInt16BE(checkPort(p.port), off + 2);
      v.names.writeUInt32BE(toIPv4(p.ip), off + 4);
    }
    const size = c.layout.mmsghdrBytes;
    let sent = 0;
    let at = 0;
    while (at < count) {
      const r = c.sendmmsg(this.fdNum, at === 0 ? v.hdrs : v.hdrs.subarray(at * size), count - at, 0);
      if (r > 0) {
        sent += r;
        at += r;
        continue;
      }
      const e = c.errno();
      if (r < 0 && e === Errno.EINTR) continue;
      const err = new ErrnoError('sendmmsg', r < 0 ? e : Errno.EIO, { batchIndex: at });
      if (!onError) throw err;
      onError(at, err);
      at++;
    }
    return sent;
  }

  /**
   * Receives up to `bufs.length` datagrams into `bufs`, waiting at most `timeoutMs` for the
   * first (0: do not wait; < 0: wait forever). Fills `out[i]` for `bufs[i]` (creating missing
   * entries) and returns the count, 0 on timeout or a signal.
   */
  recvBatch(bufs: readonly Uint8Array[], out: Datagram[], timeoutMs: number): number {
    const c = this.c;
    const n = bufs.length;
    if (n === 0) return 0;
    const v = this.vecFor('recv', n);
    const l = c.layout;
    for (let i = 0; i < n; i++) {
      const b = bufs[i]!;
      if (this.recvBufs[i] !== b) {
        v.setIov(c, i, b, b.byteLength);
        this.recvBufs[i] = b;
      }
      v.hdrs.writeUInt32LE(SOCKADDR_IN_BYTES, i * l.mmsghdrBytes + l.msgNamelen);
      writeU64(v.hdrs, i * l.mmsghdrBytes + l.msgControllen, v.controlBytes);
    }
    let r = c.recvmmsg(this.fdNum, v.hdrs, n, MSG_DONTWAIT, null);
    if (r < 0) {
      let e = c.errno();
      if (e === Errno.EAGAIN && timeoutMs !== 0 && pollOne(this.pollfd, this.fdNum, POLLIN, timeoutMs) !== 0) {
        r = c.recvmmsg(this.fdNum, v.hdrs, n, MSG_DONTWAIT, null);
        e = r < 0 ? c.errno() : 0;
      }
      if (r < 0) {
        if (e === Errno.EAGAIN || e === Errno.EINTR) return 0;
        throw new ErrnoError('recvmmsg', e);
      }
    }
    for (let i = 0; i < r; i++) {
      const h = i * l.mmsghdrBytes;
      const name = i * SOCKADDR_IN_BYTES;
      const d = (out[i] ??= { len: 0, ip: 0, port: 0, truncated: false, segmentSize: 0 });
      d.len = v.hdrs.readUInt32LE(h + l.msgLen);
      d.ip = v.names.readUInt32BE(name + 4);
      d.port = v.names.readUInt16BE(name + 2);
      d.truncated = (v.hdrs.readInt32LE(h + l.msgFlags) & MSG_TRUNC) !== 0;
      d.segmentSize = v.hdrs.readUInt32LE(h + l.msgControllen) === 0 ? 0 : v.groSegment(c, i);
    }
    return r;
  }

  /** Receives one datagram, blocking until it arrives; fills and returns `out`. */
  recvFrom(buf: Uint8Array, out: Datagram = { len: 0, ip: 0, port: 0, truncated: false, segmentSize: 0 }): Datagram {
    const c = this.c;
    for (;;) {
      this.lenBuf.writeUInt32LE(SOCKADDR_IN_BYTES);
      // MSG_TRUNC makes the kernel return the datagram's real length, so truncation shows.
      const n = c.recvfrom(this.fdNum, buf, buf.byteLength, MSG_TRUNC, this.recvAddr, this.lenBuf);
      if (n >= 0) {
        out.len = Math.min(n, buf.byteLength);
        out.truncated = n > buf.byteLength;
        out.ip = this.recvAddr.readUInt32BE(4);
        out.port = this.recvAddr.readUInt16BE(2);
        out.segmentSize = 0; // no control buffer: a GRO train arrives as bytes only (avoid GRO here)
        return out;
      }
      const e = c.errno();
      if (e !== Errno.EINTR) throw new ErrnoError('recvfrom', e);
    }
  }

  /** Closes the fd if this wrapper owns it; idempotent. */
  close(): void {
    const fd = this.fdNum;
    if (fd < 0) return;
    this.fdNum = -1;
    if (this.owned) closeFd(fd);
  }

  private vecFor(kind: 'send' | 'recv', n: number): MsgVector {
    const cur = kind === 'send' ? this.sendVec : this.recvVec;
    if (cur && cur.capacity >= n) return cur;
    let capacity = cur?.capacity ?? INITIAL_BATCH;
    while (capacity < n) capacity *= 2;
    const v = new MsgVector(this.c, capacity, kind);
    if (kind === 'send') this.sendVec = v;
    else {
      this.recvVec = v;
      this.recvBufs.length = 0;
    }
    return v;
  }

  /** An int socket option, undefined when the kernel does not know it. */
  private getIntOpt(level: number, name: number): number | undefined {
    this.lenBuf.writeUInt32LE(4);
    if (this.c.getsockopt(this.fdNum, level, name, this.intBuf, this.lenBuf) < 0) return undefined;
    return this.intBuf.readInt32LE();
  }

  private setIntOpt(level: number, name: number, value: number, what: string): void {
    this.intBuf.writeInt32LE(value);
    if (this.c.setsockopt(this.fdNum, level, name, this.intBuf, 4) < 0) failed('setsockopt', { fallback: 'KERNEL_FAILED', context: what });
  }

  // The FORCE variant ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN.
  private setBufSize(force: number, plain: number, bytes: number, what: string): void {
    this.intBuf.writeInt32LE(bytes);
    if (this.c.setsockopt(this.fdNum, SOL_SOCKET, force, this.intBuf, 4) === 0) return;
    if (this.c.errno() !== Errno.EPERM) failed('setsockopt', { fallback: 'KERNEL_FAILED', context: `${what}FORCE` });
    this.setIntOpt(SOL_SOCKET, plain, bytes, what);
  }
}

/**
 * The kernel's path MTU towards `remoteIp`: the route's MTU, or smaller once an ICMP
 * "fragmentation needed" has been cached. Uses a throwaway socket connected with DF on
 * (connecting a UDP socket sends nothing).
 */
export function pathMtu(remoteIp: IPv4 | string): number {
  const addr = toIPv4(remoteIp);
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) failed('socket', { fallback: 'KERNEL_FAILED' });
  try {
    const v = Buffer.alloc(4);
    v.writeInt32LE(IP_PMTUDISC_DO);
    if (c.setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, v, 4) < 0) failed('setsockopt', { fallback: 'KERNEL_FAILED', context: 'IP_MTU_DISCOVER' });
    // Any port: no datagram leaves; connect only looks up the route.
    if (c.connect(fd, sockaddrIn(addr, 6783), SOCKADDR_IN_BYTES) < 0) failed('connect', { context: String(remoteIp) });
    const len = Buffer.alloc(4);
    len.writeUInt32LE(4);
    if (c.getsockopt(fd, IPPROTO_IP, IP_MTU, v, len) < 0) failed('getsockopt', { fallback: 'KERNEL_FAILED', context: 'IP_MTU' });
    return v.readInt32LE();
  } finally {
    c.close(fd);
  }
}
