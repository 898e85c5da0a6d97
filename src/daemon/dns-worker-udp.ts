// The DNS server's UDP listener of the daemon: the socket is read by a worker thread
// (dns-worker.ts) that answers simple queries for names in the domain from a copy of the name
// table, and passes everything else to the server on this thread.
//
// Why: answering a name in the domain costs the server under 1 µs; through node:dgram each
// query also costs a 'message' callback, a `send`, and, when queries come one at a time, a
// wake-up of the event loop, which together made weaveDNS up to three times slower than
// dnsmasq. The worker sleeps in recvmmsg, so a query wakes it directly, and answers a burst
// with one sendmmsg: on par with dnsmasq (docs/performance.md, weaveDNS). It costs a thread
// and about 10 MB of resident memory (a V8 isolate; its 8 MB of slots stay mostly untouched).
//
// Invariants:
// - Behaviour is the server's: the worker runs the server's own code for the queries it
//   answers (fast-reply.ts `answerLocalInto`) on the same names (kept in step with
//   `onNamesChanged`, synchronously, see dns-worker.ts); every other datagram goes to the
//   server's `onQuery` exactly as node:dgram would have delivered it, and its reply is sent
//   from this thread straight on the socket.
// - The socket is this listener's: bound here, read by the worker, closed here after the
//   worker has exited. If the worker dies, node:dgram takes the same socket over on this
//   thread (no query after that is lost or answered differently; only the speed changes).
// - IPv6 listen addresses, or a platform without the FFI, get node:dgram from the start.
import { Worker } from 'node:worker_threads';
import { createSocket } from 'node:dgram';
import { WeaveError, errorMessage } from '../core/errors.js';
import { formatIPv4, type IPv4 } from '../core/ip.js';
import type { Logger } from '../core/logger.js';
import { NodeUdpListener, adoptDgram, type DnsUdpBinding, type DnsUdpListenOptions, type DnsUdpListener, type UdpPeer } from '../dns/udp-listener.js';
import { ErrnoError } from '../platform/ffi/libc.js';
import { wakeUdpReaders } from '../platform/udp-batch.js';
import { UdpSocket } from '../platform/udp-socket.js';
import { CTL_ANSWERED, CTL_DROPPED, CTL_GEN, CTL_PASSED, CTL_STOP, CTL_TAKEN, CTL_WORDS, MAX_QUEUED_QUERIES, type DnsWorkerCommand, type DnsWorkerData, type DnsWorkerEvent } from './dns-worker-protocol.js';

/** What the listener needs from the nameserver. */
export interface DnsNameSource {
  lookup(hostname: string): IPv4[];
  liveNames(): Map<string, IPv4[]>;
  onNamesChanged(listener: (names: ReadonlySet<string>) => void): () => void;
}

export interface WorkerUdpListenerDeps {
  names: DnsNameSource;
  logger: Logger;
}

export interface WorkerUdpListenerOptions {
  /** Datagrams the worker takes per wake-up (default 64). */
  batch?: number;
  /** Queries waiting for this thread at most; past that the worker drops them (default 1024). */
  maxQueued?: number;
}

/** Who answers the current binding's UDP queries, and how many each took. */
export interface DnsUdpThreadStats {
  thread: 'worker' | 'main' | 'none';
  /** Answered on the worker. */
  answered: number;
  /** Passed by the worker to the main thread. */
  passed: number;
  /** Dropped by the worker because the main thread had that many waiting already. */
  dropped: number;
}

const STOP_GRACE_MS = 3000;

export class WorkerUdpListener implements DnsUdpListener {
  private readonly names: DnsNameSource;
  private readonly log: Logger;
  private readonly batch: number;
  private readonly maxQueued: number;
  private current: WorkerBinding | undefined;

  constructor(deps: WorkerUdpListenerDeps, opts: WorkerUdpListenerOptions = {}) {
    this.names = deps.names;
    this.log = deps.logger;
    this.batch = opts.batch ?? 64;
    this.maxQueued = opts.maxQueued ?? MAX_QUEUED_QUERIES;
  }

  async listen(opts: DnsUdpListenOptions, onQuery: (msg: Buffer, from: UdpPeer) => void): Promise<DnsUdpBinding> {
    if (opts.host.includes(':')) return new NodeUdpListener(this.log).listen(opts, onQuery);
    let sock: UdpSocket;
    try {
      sock = UdpSocket.bind(opts.host, opts.port);
    } catch (e) {
      if (e instanceof ErrnoError) throw e; // EADDRINUSE and the like: as node:dgram would fail
      this.log.warn({ err: errorMessage(e) }, 'DNS UDP worker unavailable; answering on the main thread');
      return new NodeUdpListener(this.log).listen(opts, onQuery);
    }
    const b = new WorkerBinding(sock, this.names, this.log, onQuery);
    try {
      await b.start(opts, this.batch, this.maxQueued);
    } catch (e) {
      await b.close();
      throw e;
    }
    this.current = b;
    return b;
  }

  /** The current binding's thread and counts (tests, diagnostics). */
  stats(): DnsUdpThreadStats {
    return this.current?.stats() ?? { thread: 'none', answered: 0, passed: 0, dropped: 0 };
  }

  /** Fault injection for tests: the current worker dies at its next wake-up. */
  injectWorkerFault(): void {
    this.current?.command({ t: 'fail' });
  }
}

class WorkerBinding implements DnsUdpBinding {
  readonly port: number;
  private readonly control = new SharedArrayBuffer(CTL_WORDS * 4);
  private readonly ctl = new Int32Array(this.control);
  private worker: Worker | undefined;
  private exited: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;
  /** The worker is gone and this thread answers (node:dgram on the same fd, once bound). */
  private onMain = false;
  private dgram: DnsUdpBinding | undefined;
  private dgramReady: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly sock: UdpSocket,
    private readonly names: DnsNameSource,
    private readonly log: Logger,
    private readonly onQuery: (msg: Buffer, from: UdpPeer) => void,
  ) {
    this.port = sock.localAddress().port;
  }

  async start(opts: DnsUdpListenOptions, slots: number, maxQueued: number): Promise<void> {
    // Subscribed before the snapshot is taken, both on this thread: no change falls between.
    this.unsubscribe = this.names.onNamesChanged((changed) => {
      const set: [string, IPv4[]][] = [];
      for (const n of changed) set.push([n, this.names.lookup(n)]);
      this.command({ t: 'names', set });
    });
    const data: DnsWorkerData = {
      fd: this.sock.fd,
      domain: opts.zone.domain,
      ttl: opts.zone.ttl,
      names: [...this.names.liveNames()],
      control: this.control,
      slots,
      maxQueued,
    };
    let w: Worker;
    try {
      w = new Worker(new URL('./dns-worker.js', import.meta.url), { workerData: data });
    } catch (e) {
      this.takeOver(`DNS UDP worker cannot start: ${errorMessage(e)}`);
      await this.dgramReady;
      return;
    }
    this.worker = w;
    let settle: ((err?: unknown) => void) | undefined;
    const started = new Promise<void>((resolve, reject) => {
      settle = (err) => (err === undefined ? resolve() : reject(err));
    });
    this.exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    w.on('message', (ev: DnsWorkerEvent) => {
      switch (ev.t) {
        case 'ready':
          settle?.();
          break;
        case 'query':
          Atomics.add(this.ctl, CTL_TAKEN, 1);
          this.onQuery(Buffer.from(ev.msg.buffer, ev.msg.byteOffset, ev.msg.byteLength), { address: formatIPv4(ev.ip), port: ev.port });
          break;
        case 'log':
          this.log[ev.level]({}, ev.msg);
          break;
      }
    });
    w.on('error', (e) => {
      settle?.(e);
      this.takeOver(`DNS UDP worker failed: ${errorMessage(e)}`);
    });
    w.on('exit', (code) => {
      settle?.(new WeaveError('INTERNAL', `DNS UDP worker exited with ${code}`));
      this.takeOver(`DNS UDP worker exited with ${code}`);
    });
    try {
      await started;
    } catch {
      // It could not start (logged by takeOver): the same socket is served on this thread.
      await this.dgramReady;
    }
    settle = undefined;
  }

  /** Posts a command and tells the worker there is mail. */
  command(cmd: DnsWorkerCommand): void {
    const w = this.worker;
    if (!w || this.closing) return;
    w.postMessage(cmd);
    Atomics.add(this.ctl, CTL_GEN, 1);
  }

  /** The worker is gone: node:dgram reads the same socket on this thread from now on. */
  private takeOver(why: string): void {
    if (this.closing || this.onMain) return;
    this.onMain = true;
    this.worker = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.log.error({}, `${why}; answering DNS over UDP on the main thread`);
    const udp = createSocket({ type: 'udp4', lookup: (host, _o, cb) => cb(null, host, 4) });
    this.dgramReady = new Promise<void>((resolve) => {
      udp.once('error', (e) => {
        this.log.error({ err: errorMessage(e) }, 'the DNS UDP socket cannot be read on the main thread; UDP queries go unanswered');
        resolve();
      });
      udp.bind({ fd: this.sock.fd }, () => {
        udp.removeAllListeners('error');
        this.dgram = adoptDgram(udp, this.log, this.onQuery);
        resolve();
      });
    });
  }

  send(reply: Buffer, to: UdpPeer): void {
    if (this.closing) return;
    if (this.dgram) {
      this.dgram.send(reply, to);
      return;
    }
    try {
      this.sock.sendTo(reply, reply.length, to.address, to.port);
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, 'DNS UDP socket error');
    }
  }

  stats(): DnsUdpThreadStats {
    return {
      thread: this.closing ? 'none' : this.onMain ? 'main' : 'worker',
      answered: Atomics.load(this.ctl, CTL_ANSWERED),
      passed: Atomics.load(this.ctl, CTL_PASSED),
      dropped: Atomics.load(this.ctl, CTL_DROPPED),
    };
  }

  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const w = this.worker;
    this.worker = undefined;
    if (w) {
      Atomics.store(this.ctl, CTL_STOP, 1);
      try {
        wakeUdpReaders(this.sock.fd);
      } catch {
        // the receive timeout wakes it all the same
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exited, new Promise<void>((r) => (timer = setTimeout(r, STOP_GRACE_MS)))]);
      clearTimeout(timer);
      await w.terminate();
    }
    await this.dgramReady;
    // node:dgram, once it adopted the fd, closes it; otherwise the socket is closed here.
    if (this.dgram) await this.dgram.close();
    else this.sock.close();
  }
}
