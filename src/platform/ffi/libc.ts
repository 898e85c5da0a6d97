// Raw libc syscalls through koffi, for the userspace data path (the sleeve): the TAP ioctls
// and the batched UDP calls (sendmmsg/recvmmsg) that Node does not expose.
//
// Invariants:
// - Nothing loads at import. `libc()` loads koffi and binds libc on first use, once per
//   thread: each worker_thread has its own module instances, so the cache below is per thread
//   and a worker never touches a koffi instance owned by another isolate.
// - errno is read with `koffi.errno()` straight after the failing call on the same thread
//   (koffi saves it per call; any other koffi call in between would overwrite it).
// - Buffers passed as `void *` go to C without copying. Structures the kernel reads through
//   pointers (iovec, mmsghdr, sockaddr_in, pollfd, cmsghdr) are laid out by hand in Node Buffers; their
//   offsets come from koffi's C layout rules (`layout()`), so only the byte order and the
//   pointer width are assumed: 64-bit little-endian Linux (x86_64, arm64), checked on load.
// - Addresses of Buffers are taken once per ArrayBuffer and cached: an ArrayBuffer's backing
//   store never moves once materialised, and the caller keeps the Buffer alive during a call.
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import { WeaveError, type ErrorCode } from '../../core/errors.js';

type Koffi = typeof import('koffi');

// Linux values shared by x86_64 and arm64 (asm-generic); the layout check in load() refuses
// anything else.
export const O_RDWR = 0x2;
export const O_NONBLOCK = 0x800;
export const O_CLOEXEC = 0x80000;
export const F_GETFL = 3;
export const F_SETFL = 4;

export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0x80000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_REUSEPORT = 15;
export const SO_NO_CHECK = 11;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const IPPROTO_IP = 0;
export const IP_MTU_DISCOVER = 10;
export const IP_MTU = 14;
export const IP_PMTUDISC_DONT = 0;
export const IP_PMTUDISC_DO = 2;
export const SOL_UDP = 17;
/** Per send (cmsg) or socket: the kernel cuts the payload into datagrams of this size (UDP GSO, Linux 4.18). */
export const UDP_SEGMENT = 103;
/** Socket option: the kernel may hand over several same-sized datagrams in one receive (UDP GRO, Linux 5.0). */
export const UDP_GRO = 104;
export const MSG_CTRUNC = 0x8;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

export const SOCKADDR_IN_BYTES = 16;
/** struct cmsghdr on 64-bit Linux: size_t len, int level, int type; data 8-byte aligned after it. */
export const CMSG_HEADER_BYTES = 16;
export const cmsgSpace = (dataBytes: number): number => CMSG_HEADER_BYTES + ((dataBytes + 7) & ~7);

/** The errno numbers the data path branches on (Linux). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMSGSIZE: 90,
  ENOPROTOOPT: 92,
  EADDRINUSE: 98,
  ENETUNREACH: 101,
  ENOBUFS: 105,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
} as const;

export type ErrnoName = keyof typeof Errno | (string & {});

// Aliases share a number (EWOULDBLOCK = EAGAIN); the table must give the canonical name.
const preferredNames: Record<number, string> = { 11: 'EAGAIN', 35: 'EDEADLK', 95: 'EOPNOTSUPP' };
let errnoTable: Map<number, [string, string]> | undefined;

function errnoInfo(errno: number): [string, string] {
  if (!errnoTable) {
    errnoTable = new Map();
    for (const [neg, [name, message]] of getSystemErrorMap()) errnoTable.set(-neg, [preferredNames[-neg] ?? name, message]);
  }
  return errnoTable.get(errno) ?? [`E${errno}`, `errno ${errno}`];
}

export function errnoName(errno: number): string {
  return errnoInfo(errno)[0];
}

// Only errnos whose meaning does not depend on the call map to a specific code; the rest
// take the caller's fallback (IO_FAILED for traffic, KERNEL_FAILED for setup).
const codeByErrno: Record<number, ErrorCode> = {
  [Errno.ENOENT]: 'NOT_FOUND',
  [Errno.ENODEV]: 'NOT_FOUND',
  [Errno.EEXIST]: 'ALREADY_EXISTS',
  [Errno.EBUSY]: 'ALREADY_EXISTS',
  [Errno.EADDRINUSE]: 'ALREADY_EXISTS',
  [Errno.ETIMEDOUT]: 'TIMEOUT',
  [Errno.EAGAIN]: 'UNAVAILABLE',
  [Errno.ENOBUFS]: 'UNAVAILABLE',
  [Errno.ENETUNREACH]: 'UNAVAILABLE',
  [Errno.EHOSTUNREACH]: 'UNAVAILABLE',
  [Errno.ECONNREFUSED]: 'UNAVAILABLE',
};

/** A failed syscall. Branch on `errnoName` ('EMSGSIZE', 'EAGAIN', …), never on the message. */
export class ErrnoError extends WeaveError {
  readonly errno: number;
  readonly errnoName: string;
  readonly syscall: string;
  /** For a batch send: index of the packet the kernel refused (those before it were sent). */
  readonly batchIndex: number | undefined;

  constructor(syscall: string, errno: number, opts: { fallback?: ErrorCode; context?: string; batchIndex?: number } = {}) {
    const [name, message] = errnoInfo(errno);
    const where = opts.context ? `${syscall} ${opts.context}` : syscall;
    super(codeByErrno[errno] ?? opts.fallback ?? 'IO_FAILED', `${where}: ${name} (${message})`);
    this.name = 'ErrnoError';
    this.errno = errno;
    this.errnoName = name;
    this.syscall = syscall;
    this.batchIndex = opts.batchIndex;
  }
}

export function isErrno(e: unknown, name: ErrnoName): e is ErrnoError {
  return e instanceof ErrnoError && e.errnoName === name;
}

/** Byte offsets of the C structures the kernel reads through pointers. */
export interface Layout {
  iovecBytes: number;
  iovBase: number;
  iovLen: number;
  mmsghdrBytes: number;
  msgName: number;
  msgNamelen: number;
  msgIov: number;
  msgIovlen: number;
  msgControl: number;
  msgControllen: number;
  msgFlags: number;
  msgLen: number;
  pollfdBytes: number;
  pollFd: number;
  pollEvents: number;
  pollRevents: number;
}

/** The bound libc functions of one thread. Pointers are Buffers (or null); sizes are numbers. */
export interface Libc {
  readonly layout: Layout;
  /** errno of the last failed call on this thread; read it before making another call. */
  errno(): number;
  /** Address of the first byte of `buf`, for pointers stored inside hand-built structures. */
  addressOf(buf: Uint8Array): number;
  open(path: string, flags: number): number;
  close(fd: number): number;
  read(fd: number, buf: Uint8Array, count: number): number;
  write(fd: number, buf: Uint8Array, count: number): number;
  readv(fd: number, iov: Uint8Array, iovcnt: number): number;
  writev(fd: number, iov: Uint8Array, iovcnt: number): number;
  /** ioctl whose argument is a pointer (TUNSETIFF, TUNSETVNETHDRSZ). */
  ioctlPtr(fd: number, request: number, arg: Uint8Array): number;
  /** ioctl whose argument is a value (TUNSETOFFLOAD). */
  ioctlInt(fd: number, request: number, arg: number): number;
  fcntl(fd: number, cmd: number, arg?: number): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, addrlen: number): number;
  connect(fd: number, addr: Uint8Array, addrlen: number): number;
  getsockname(fd: number, addr: Uint8Array, addrlen: Uint8Array): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint8Array): number;
  sendto(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, addrlen: number): number;
  recvfrom(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, addrlen: Uint8Array | null): number;
  sendmmsg(fd: number, msgvec: Uint8Array, vlen: number, flags: number): number;
  recvmmsg(fd: number, msgvec: Uint8Array, vlen: number, flags: number, timeout: null): number;
  poll(fds: Uint8Array, nfds: number, timeoutMs: number): number;
  shutdown(fd: number, how: number): number;
  eventfd(initval: number, flags: number): number;
}

let loaded: Libc | undefined;

/** This thread's libc bindings, loaded on first use. */
export function libc(): Libc {
  return (loaded ??= load());
}

function load(): Libc {
  if (process.platform !== 'linux') throw new WeaveError('INTERNAL', `libc bindings need Linux, not ${process.platform}`);
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    throw new WeaveError('INTERNAL', `cannot load koffi: ${(e as Error).message}`, { cause: e });
  }
  if (koffi.sizeof('void *') !== 8 || endianness() !== 'LE') {
    throw new WeaveError('INTERNAL', 'the userspace data path needs a 64-bit little-endian machine');
  }
  let lib: ReturnType<Koffi['load']>;
  try {
    lib = koffi.load('libc.so.6');
  } catch {
    lib = koffi.load(null); // non-glibc: node itself links the C library
  }

  // Anonymous structs: named koffi types are registered globally and would clash on reload.
  const msghdr = koffi.struct({
    msg_name: 'void *',
    msg_namelen: 'uint32_t',
    msg_iov: 'void *',
    msg_iovlen: 'size_t',
    msg_control: 'void *',
    msg_controllen: 'size_t',
    msg_flags: 'int',
  });
  const mmsghdr = koffi.struct({ msg_hdr: msghdr, msg_len: 'uint32_t' });
  const iovec = koffi.struct({ iov_base: 'void *', iov_len: 'size_t' });
  const pollfd = koffi.struct({ fd: 'int', events: 'short', revents: 'short' });
  const layout: Layout = {
    iovecBytes: iovec.size,
    iovBase: koffi.offsetof(iovec, 'iov_base'),
    iovLen: koffi.offsetof(iovec, 'iov_len'),
    mmsghdrBytes: mmsghdr.size,
    msgName: koffi.offsetof(msghdr, 'msg_name'),
    msgNamelen: koffi.offsetof(msghdr, 'msg_namelen'),
    msgIov: koffi.offsetof(msghdr, 'msg_iov'),
    msgIovlen: koffi.offsetof(msghdr, 'msg_iovlen'),
    msgControl: koffi.offsetof(msghdr, 'msg_control'),
    msgControllen: koffi.offsetof(msghdr, 'msg_controllen'),
    msgFlags: koffi.offsetof(msghdr, 'msg_flags'),
    msgLen: koffi.offsetof(mmsghdr, 'msg_len'),
    pollfdBytes: pollfd.size,
    pollFd: koffi.offsetof(pollfd, 'fd'),
    pollEvents: koffi.offsetof(pollfd, 'events'),
    pollRevents: koffi.offsetof(pollfd, 'revents'),
  };

  const open = lib.func('int open(const char *path, int flags, ...)');
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, ...)');
  const fcntl = lib.func('int fcntl(int fd, int cmd, ...)');
  const addresses = new WeakMap<ArrayBufferLike, number>();
  // The data path asks for the same few buffers over and over: remember the last one, and the
  // last buffer object (reading .buffer and .byteOffset is a runtime call each in V8; a GRO
  // train's pieces are all one object).
  let lastBuffer: ArrayBufferLike | undefined;
  let lastBase = 0;
  let lastView: Uint8Array | undefined;
  let lastViewAddress = 0;

  return {
    layout,
    errno: () => koffi.errno(),
    addressOf(buf: Uint8Array): number {
      // A view seen last time was materialised then: its address is final.
      if (buf === lastView) return lastViewAddress;
      const ab = buf.buffer; // materialises an on-heap typed array, so its address is final
      let base: number | undefined = lastBase;
      if (ab !== lastBuffer) {
        base = addresses.get(ab);
        if (base === undefined) {
          if (ab.byteLength === 0) return 0; // koffi reports 0 for empty storage; nothing is read through it
          base = Number(koffi.address(new Uint8Array(ab)));
          addresses.set(ab, base);
        }
        lastBuffer = ab;
        lastBase = base;
      }
      lastView = buf;
      lastViewAddress = base + buf.byteOffset;
      return lastViewAddress;
    },
    open: (path, flags) => open(path, flags) as number,
    close: lib.func('int close(int fd)'),
    read: lib.func('intptr_t read(int fd, void *buf, size_t count)'),
    write: lib.func('intptr_t write(int fd, const void *buf, size_t count)'),
    readv: lib.func('intptr_t readv(int fd, const void *iov, int iovcnt)'),
    writev: lib.func('intptr_t writev(int fd, const void *iov, int iovcnt)'),
    ioctlPtr: (fd, request, arg) => ioctl(fd, request, 'void *', arg) as number,
    ioctlInt: (fd, request, arg) => ioctl(fd, request, 'unsigned long', arg) as number,
    fcntl: (fd, cmd, arg) => (arg === undefined ? fcntl(fd, cmd) : fcntl(fd, cmd, 'int', arg)) as number,
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
    connect: lib.func('int connect(int fd, const void *addr, uint32_t addrlen)'),
    getsockname: lib.func('int getsockname(int fd, void *addr, void *addrlen)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
    sendto: lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
    recvfrom: lib.func('intptr_t recvfrom(int fd, void *buf, size_t len, int flags, void *addr, void *addrlen)'),
    sendmmsg: lib.func('int sendmmsg(int fd, void *msgvec, unsigned int vlen, int flags)'),
    recvmmsg: lib.func('int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)'),
    poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
    shutdown: lib.func('int shutdown(int fd, int how)'),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  };
}

/** Refuses a length past the end of `buf`: the kernel would read or write beyond it. */
export function checkLen(buf: Uint8Array, len: number): void {
  if (!(len >= 0 && len <= buf.byteLength)) throw new WeaveError('INVALID_ARGUMENT', `length ${len} outside a ${buf.byteLength}-byte buffer`);
}

/** Stores a 64-bit pointer or size (a safe integer) little-endian at `off`. */
export function writeU64(buf: Buffer, off: number, value: number): void {
  buf.writeUInt32LE(value % 0x100000000, off);
  buf.writeUInt32LE(Math.floor(value / 0x100000000), off + 4);
}

/** Throws the ErrnoError of the last failed call on this thread. */
export function failed(syscall: string, opts: { fallback?: ErrorCode; context?: string; batchIndex?: number } = {}): never {
  throw new ErrnoError(syscall, libc().errno(), opts);
}

/**
 * Waits for `events` on one fd; returns the revents (0 on timeout). `timeoutMs` < 0 waits
 * forever. EINTR counts as a timeout so callers get back to their control loop.
 */
export function pollOne(pollfd: Buffer, fd: number, events: number, timeoutMs: number): number {
  const c = libc();
  const l = c.layout;
  pollfd.writeInt32LE(fd, l.pollFd);
  pollfd.writeInt16LE(events, l.pollEvents);
  pollfd.writeInt16LE(0, l.pollRevents);
  const r = c.poll(pollfd, 1, timeoutMs);
  if (r < 0) {
    if (c.errno() === Errno.EINTR) return 0;
    failed('poll');
  }
  return r === 0 ? 0 : pollfd.readUInt16LE(l.pollRevents);
}

/** A Buffer the size of one pollfd, for `pollOne`. */
export function allocPollfd(): Buffer {
  return Buffer.alloc(libc().layout.pollfdBytes);
}

/** Closes an fd, ignoring EINTR (Linux releases the fd even then). */
export function closeFd(fd: number): void {
  const c = libc();
  if (c.close(fd) < 0 && c.errno() !== Errno.EINTR) failed('close', { context: `fd ${fd}` });
}
