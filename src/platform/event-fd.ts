// An eventfd, to wake a thread that blocks in poll(): the sleeve's worker thread sits in poll()
// on its TAP and UDP socket and cannot see a postMessage until poll returns, so a control
// message (a heartbeat to send, a peer's address) waited up to poll's timeout, 50 ms. The
// thread polls this fd too, and the sender writes to it after each message.
//
// fds are process-wide: the main thread creates it and the worker wraps the number with
// `EventFd.fromFd`; only the creator closes it, once the worker has stopped.
import { O_CLOEXEC, O_NONBLOCK, Errno, closeFd, failed, libc } from './ffi/libc.js';

// <sys/eventfd.h>: EFD_NONBLOCK and EFD_CLOEXEC are O_NONBLOCK and O_CLOEXEC.
const EFD_NONBLOCK = O_NONBLOCK;
const EFD_CLOEXEC = O_CLOEXEC;

export class EventFd {
  private closed = false;
  private owned = true;
  /** The counter's 8 bytes: 1 to add, anything to read it back (and reset it). */
  private readonly one = Buffer.alloc(8);
  private readonly sink = Buffer.alloc(8);

  private constructor(readonly fd: number) {
    this.one.writeBigUInt64LE(1n);
  }

  static create(): EventFd {
    const fd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) failed('eventfd');
    return new EventFd(fd);
  }

  /** Wraps an fd created by another thread (not closed by this wrapper). */
  static fromFd(fd: number): EventFd {
    const e = new EventFd(fd);
    e.owned = false;
    return e;
  }

  /** Makes the fd readable until drained. Never blocks: a full counter is already readable. */
  wake(): void {
    if (this.closed) return;
    const c = libc();
    if (c.write(this.fd, this.one, 8) < 0) {
      const errno = c.errno();
      if (errno !== Errno.EAGAIN && errno !== Errno.EINTR) failed('write', { context: 'eventfd' });
    }
  }

  /** Resets the counter (after poll said the fd is readable); false when nothing was pending. */
  drain(): boolean {
    return libc().read(this.fd, this.sink, 8) === 8;
  }

  /** Closes the fd if this thread created it; either way, wakes nobody from now on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) closeFd(this.fd);
  }
}
