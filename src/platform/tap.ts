// A TAP device driven by raw syscalls, for the sleeve's worker threads: frames in and out of
// the `weave` bridge without libuv. The device is non-persistent: it vanishes when the last
// fd closes. Link state, master and MTU are set elsewhere (with `ip`).
//
// With `vnetHdr`, every frame read or written starts with a 10-byte virtio_net_hdr; with
// offloads on, the kernel hands over TCP super-frames (up to 64 KiB, gso_type set) and frames
// with partial checksums, which the writing side passes through untouched. That is what lets
// one syscall carry up to 44 MTU-sized segments (perf-anchors: 6.5-7 Gbit/s vs 1.4 without).
//
// fds are process-wide: the main thread opens the device and a worker wraps the number with
// `TapDevice.fromFd`. Only the owner closes it, and only once the workers have stopped using
// it (the number could otherwise be reused by an unrelated open).
import { WeaveError } from '../core/errors.js';
import {
  Errno,
  ErrnoError,
  F_GETFL,
  F_SETFL,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  POLLIN,
  allocPollfd,
  checkLen,
  closeFd,
  failed,
  libc,
  pollOne,
  writeU64,
} from './ffi/libc.js';

// <linux/if_tun.h>
const TUNSETIFF = 0x400454ca;
const TUNGETIFF = 0x800454d2;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETVNETHDRSZ = 0x400454d8;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const TUN_F_TSO_ECN = 0x08;
const IFREQ_BYTES = 40;
const IFNAMSIZ = 16;

/** Size of struct virtio_net_hdr, which leads every frame when `vnetHdr` is on. */
export const VNET_HDR_BYTES = 10;
/** A read buffer this large holds any frame, super-frames included. */
export const TAP_READ_BUFFER_BYTES = VNET_HDR_BYTES + 65536 + 64;

// <linux/virtio_net.h>
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** struct virtio_net_hdr, in host byte order (the kernel's default for TAP on little-endian). */
export interface VnetHdr {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function decodeVnetHdr(buf: Uint8Array, out: VnetHdr = { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }): VnetHdr {
  if (buf.byteLength < VNET_HDR_BYTES) throw new WeaveError('DECODE_FAILED', `virtio_net_hdr needs ${VNET_HDR_BYTES} bytes, got ${buf.byteLength}`);
  out.flags = buf[0]!;
  out.gsoType = buf[1]!;
  out.hdrLen = buf[2]! | (buf[3]! << 8);
  out.gsoSize = buf[4]! | (buf[5]! << 8);
  out.csumStart = buf[6]! | (buf[7]! << 8);
  out.csumOffset = buf[8]! | (buf[9]! << 8);
  return out;
}

export interface TapOffload {
  /** Frames may carry partial checksums (required by the others). */
  csum: boolean;
  tso4?: boolean;
  tso6?: boolean;
  ecn?: boolean;
}

export interface TapOptions {
  /** Interface name (at most 15 bytes); '' lets the kernel pick tapN. */
  name: string;
  vnetHdr: boolean;
  /** Needs `vnetHdr`: without the header the kernel has no way to describe a super-frame. */
  offload?: TapOffload;
}

export interface TapFromFdOptions {
  /** Whether `close()` closes the fd; false (the default) for a worker borrowing the owner's fd. */
  owned?: boolean;
  /** The mode the caller expects; read back from the device either way, and a mismatch throws. */
  vnetHdr?: boolean;
}

function ifName(ifr: Buffer): string {
  const end = ifr.indexOf(0);
  return ifr.toString('utf8', 0, end >= 0 && end < IFNAMSIZ ? end : IFNAMSIZ);
}

export function openTap(opts: TapOptions): TapDevice {
  const nameBytes = Buffer.from(opts.name, 'utf8');
  if (nameBytes.length >= IFNAMSIZ || /[\s/:\0]/.test(opts.name)) {
    throw new WeaveError('INVALID_ARGUMENT', `invalid interface name "${opts.name}" (at most ${IFNAMSIZ - 1} bytes, no spaces, '/' or ':')`);
  }
  const off = opts.offload;
  if (off && !opts.vnetHdr) throw new WeaveError('INVALID_ARGUMENT', 'TAP offloads need vnetHdr');
  if (off && !off.csum && (off.tso4 || off.tso6 || off.ecn)) {
    throw new WeaveError('INVALID_ARGUMENT', 'TAP segmentation offload needs checksum offload'); // the kernel ignores it silently
  }

  const c = libc();
  // Non-blocking, so `readTimeout` costs one read when a frame is waiting and polls only when idle.
  const fd = c.open('/dev/net/tun', O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) failed('open', { fallback: 'KERNEL_FAILED', context: '/dev/net/tun' });
  try {
    const ifr = Buffer.alloc(IFREQ_BYTES);
    nameBytes.copy(ifr, 0);
    ifr.writeUInt16LE(IFF_TAP | IFF_NO_PI | (opts.vnetHdr ? IFF_VNET_HDR : 0), IFNAMSIZ);
    if (c.ioctlPtr(fd, TUNSETIFF, ifr) < 0) failed('ioctl', { fallback: 'KERNEL_FAILED', context: `TUNSETIFF ${opts.name}` });
    const name = ifName(ifr);
    if (opts.vnetHdr) {
      const size = Buffer.alloc(4);
      size.writeInt32LE(VNET_HDR_BYTES);
      if (c.ioctlPtr(fd, TUNSETVNETHDRSZ, size) < 0) failed('ioctl', { fallback: 'KERNEL_FAILED', context: `TUNSETVNETHDRSZ ${name}` });
    }
    if (off) {
      const flags = (off.csum ? TUN_F_CSUM : 0) | (off.tso4 ? TUN_F_TSO4 : 0) | (off.tso6 ? TUN_F_TSO6 : 0) | (off.ecn ? TUN_F_TSO_ECN : 0);
      if (c.ioctlInt(fd, TUNSETOFFLOAD, flags) < 0) failed('ioctl', { fallback: 'KERNEL_FAILED', context: `TUNSETOFFLOAD ${name}` });
    }
    return new TapDevice(fd, name, opts.vnetHdr, true);
  } catch (e) {
    c.close(fd);
    throw e;
  }
}

export class TapDevice {
  readonly name: string;
  readonly vnetHdr: boolean;
  /** Bytes of virtio_net_hdr leading each frame: 10 or 0. */
  readonly headerBytes: number;
  private fdNum: number;
  private readonly owned: boolean;
  private readonly pollfd = allocPollfd();
  private readonly iov: Buffer;
  private gatherWords = new Uint32Array(0);
  private gatherBytes = new Uint8Array(0);

  /** Use `openTap` or `TapDevice.fromFd`; `fd` must be non-blocking. */
  constructor(fd: number, name: string, vnetHdr: boolean, owned: boolean) {
    this.fdNum = fd;
    this.name = name;
    this.vnetHdr = vnetHdr;
    this.headerBytes = vnetHdr ? VNET_HDR_BYTES : 0;
    this.owned = owned;
    this.iov = Buffer.alloc(2 * libc().layout.iovecBytes);
  }

  /**
   * Wraps an fd opened elsewhere in this process (typically by the main thread, for a worker).
   * Name and vnet-header mode are read back from the device; the fd is made non-blocking,
   * which is a property of the open file and so applies to every user of it.
   */
  static fromFd(fd: number, opts: TapFromFdOptions = {}): TapDevice {
    const c = libc();
    const ifr = Buffer.alloc(IFREQ_BYTES);
    if (c.ioctlPtr(fd, TUNGETIFF, ifr) < 0) failed('ioctl', { fallback: 'KERNEL_FAILED', context: `TUNGETIFF fd ${fd}` });
    const name = ifName(ifr);
    const flags = ifr.readUInt16LE(IFNAMSIZ);
    if (!(flags & IFF_TAP)) throw new WeaveError('INVALID_ARGUMENT', `fd ${fd} is a TUN device, not TAP`);
    const vnetHdr = (flags & IFF_VNET_HDR) !== 0;
    if (opts.vnetHdr !== undefined && opts.vnetHdr !== vnetHdr) {
      throw new WeaveError('INVALID_ARGUMENT', `TAP ${name} has vnet headers ${vnetHdr ? 'on' : 'off'}, expected ${opts.vnetHdr ? 'on' : 'off'}`);
    }
    const fl = c.fcntl(fd, F_GETFL);
    if (fl < 0) failed('fcntl', { context: `F_GETFL fd ${fd}` });
    if (!(fl & O_NONBLOCK) && c.fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) failed('fcntl', { context: `F_SETFL fd ${fd}` });
    return new TapDevice(fd, name, vnetHdr, opts.owned ?? false);
  }

  /** The fd, for handing to a worker; -1 once closed. */
  get fd(): number {
    return this.fdNum;
  }

  /**
   * Reads one frame (with its virtio_net_hdr when on), blocking until one arrives, and
   * returns its length. A frame longer than `buf` is cut short and the count only says what
   * fitted, so size buffers with TAP_READ_BUFFER_BYTES when offloads are on.
   */
  read(buf: Uint8Array): number {
    for (;;) {
      const n = this.readTimeout(buf, -1);
      if (n > 0) return n;
    }
  }

  /**
   * Like `read`, but returns 0 when no frame arrives within `timeoutMs` (also on a signal),
   * so a worker's loop can look at its control messages between frames.
   */
  readTimeout(buf: Uint8Array, timeoutMs: number): number {
    const c = libc();
    let n = c.read(this.fdNum, buf, buf.byteLength);
    if (n >= 0) return n;
    let e = c.errno();
    if (e === Errno.EAGAIN) {
      if (pollOne(this.pollfd, this.fdNum, POLLIN, timeoutMs) === 0) return 0;
      n = c.read(this.fdNum, buf, buf.byteLength);
      if (n >= 0) return n;
      e = c.errno();
    }
    if (e === Errno.EAGAIN || e === Errno.EINTR) return 0;
    return this.fail('read', e);
  }

  /**
   * Writes one frame (leading virtio_net_hdr included when on). The kernel never blocks a
   * TAP write: a full queue drops. Throws ErrnoError (EIO while the link is down, EINVAL
   * for a malformed header).
   */
  write(buf: Uint8Array, len: number = buf.byteLength): number {
    checkLen(buf, len);
    const c = libc();
    for (;;) {
      const n = c.write(this.fdNum, buf, len);
      if (n >= 0) return n;
      const e = c.errno();
      if (e !== Errno.EINTR) return this.fail('write', e);
    }
  }

  /**
   * Writes one frame given as two pieces (say a virtio_net_hdr kept apart from the frame, or
   * a rebuilt Ethernet header and the payload) in one writev, without concatenating.
   */
  writeParts(head: Uint8Array, headLen: number, body: Uint8Array, bodyLen: number): number {
    checkLen(head, headLen);
    checkLen(body, bodyLen);
    const c = libc();
    const l = c.layout;
    const iov = this.iov;
    writeU64(iov, l.iovBase, c.addressOf(head));
    writeU64(iov, l.iovLen, headLen);
    writeU64(iov, l.iovecBytes + l.iovBase, c.addressOf(body));
    writeU64(iov, l.iovecBytes + l.iovLen, bodyLen);
    for (;;) {
      const n = c.writev(this.fdNum, iov, 2);
      if (n >= 0) return n;
      const e = c.errno();
      if (e !== Errno.EINTR) return this.fail('writev', e);
    }
  }

  /**
   * Writes one frame gathered from `count` pieces, `bufs[i][starts[i], ends[i])`, after
   * `head` (a virtio_net_hdr, say) when given, in one writev: a frame assembled from ranges
   * of other buffers without copying them together first. At most 1023 pieces (IOV_MAX).
   */
  writeGather(head: Uint8Array | undefined, bufs: readonly Uint8Array[], starts: readonly number[], ends: readonly number[], count: number): number {
    const c = libc();
    const l = c.layout;
    const n = count + (head ? 1 : 0);
    if (count < 0 || n > 1024) throw new WeaveError('INVALID_ARGUMENT', `writeGather of ${count} pieces`);
    if (this.gatherWords.length * 4 < n * l.iovecBytes) {
      this.gatherWords = new Uint32Array(Math.max(n, (this.gatherWords.length * 8) / l.iovecBytes) * (l.iovecBytes / 4));
      this.gatherBytes = new Uint8Array(this.gatherWords.buffer);
    }
    // iovec { void *base; size_t len } as 32-bit halves: addresses and lengths stay below 2^53.
    const w = this.gatherWords;
    const stride = l.iovecBytes >>> 2;
    const base = l.iovBase >>> 2;
    const len = l.iovLen >>> 2;
    let k = 0;
    if (head) {
      const a = c.addressOf(head);
      w[base] = a >>> 0;
      w[base + 1] = Math.floor(a / 0x100000000);
      w[len] = head.byteLength;
      w[len + 1] = 0;
      k = 1;
    }
    for (let i = 0; i < count; i++, k++) {
      const b = bufs[i] as Uint8Array;
      const s = starts[i] as number;
      const e = ends[i] as number;
      if (!(s >= 0 && s <= e && e <= b.byteLength)) throw new WeaveError('INVALID_ARGUMENT', `piece ${i}: [${s}, ${e}) outside a ${b.byteLength}-byte buffer`);
      const a = c.addressOf(b) + s;
      const o = k * stride;
      w[o + base] = a >>> 0;
      w[o + base + 1] = Math.floor(a / 0x100000000);
      w[o + len] = e - s;
      w[o + len + 1] = 0;
    }
    for (;;) {
      const r = c.writev(this.fdNum, this.gatherBytes, n);
      if (r >= 0) return r;
      const e = c.errno();
      if (e !== Errno.EINTR) return this.fail('writev', e);
    }
  }

  /** Closes the fd if this wrapper owns it (the device then disappears); idempotent. */
  close(): void {
    const fd = this.fdNum;
    if (fd < 0) return;
    this.fdNum = -1;
    if (this.owned) closeFd(fd);
  }

  private fail(syscall: string, errno: number): never {
    throw new ErrnoError(syscall, errno, { context: `tap ${this.name}` });
  }
}
