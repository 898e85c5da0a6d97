// The DNS server's UDP thread: reads the server's UDP socket with blocking recvmmsg, answers
// simple queries for names it holds (fast-reply.ts `answerLocalInto`, the code the main thread
// runs for them) from its copy of the name table, sends the answers of each batch with one
// sendmmsg, and hands every other datagram to the main thread (forwarding, PTR, odd or
// malformed queries), which answers it as if it had read it itself.
//
// Keeping the copy current: the main thread posts each change of the entry set (the names
// whose answers changed, with their new addresses) and then bumps a generation counter in
// shared memory. After every wake-up, before answering anything, this thread compares the
// counter with the last one it saw and, when it moved, reads its mail (receiveMessageOnPort
// works while the thread never returns to its event loop). A change made before a query was
// sent is therefore always seen by that query's answer.
//
// Stopping: the main thread sets the stop flag and shuts the socket down for reading, which
// wakes the blocked recvmmsg; the receive timeout (RECV_TIMEOUT_MS) bounds the wait anyway and
// lets the mail be read while no queries come.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../core/errors.js';
import type { IPv4 } from '../core/ip.js';
import { MAX_SIMPLE_REPLY, answerLocalInto, parseSimpleQuery, type LocalZone } from '../dns/fast-reply.js';
import { MAX_UDP_PAYLOAD, UdpBatchIo } from '../platform/udp-batch.js';
import { CTL_ANSWERED, CTL_DROPPED, CTL_GEN, CTL_PASSED, CTL_STOP, CTL_TAKEN, RECV_TIMEOUT_MS, type DnsWorkerCommand, type DnsWorkerData, type DnsWorkerEvent } from './dns-worker-protocol.js';

const NONE: readonly IPv4[] = [];

function run(data: DnsWorkerData): void {
  const port = parentPort;
  if (!port) throw new Error('dns-worker must run as a worker thread');
  const post = (ev: DnsWorkerEvent, transfer?: ArrayBuffer[]) => port.postMessage(ev, transfer);
  const control = new Int32Array(data.control);
  const names = new Map<string, readonly IPv4[]>(data.names);
  const zone: LocalZone = { domain: data.domain, ttl: data.ttl, random: Math.random, lookup: (h) => names.get(h) ?? NONE };
  const io = UdpBatchIo.fromFd(data.fd, { slots: data.slots, slotBytes: MAX_UDP_PAYLOAD, replyBytes: MAX_SIMPLE_REPLY, recvTimeoutMs: RECV_TIMEOUT_MS });
  // Not the counter's value now: commands posted while this thread was starting are in the
  // mail already, and the counter counted them.
  let seen = 0;

  const readMail = () => {
    const gen = Atomics.load(control, CTL_GEN);
    if (gen === seen) return;
    seen = gen;
    for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
      const cmd = m.message as DnsWorkerCommand;
      if (cmd.t === 'fail') throw new Error('fault injected');
      for (const [name, addrs] of cmd.set) {
        if (addrs.length === 0) names.delete(name);
        else names.set(name, addrs);
      }
    }
  };
  const onSendError = (e: Error) => post({ t: 'log', level: 'warn', msg: `DNS reply not sent: ${errorMessage(e)}` });

  const pass = (i: number) => {
    // The main thread forwards these upstream; reading at kernel speed, this thread would
    // otherwise queue a flood there without end, where a full socket buffer used to drop it.
    if (Atomics.load(control, CTL_PASSED) - Atomics.load(control, CTL_TAKEN) >= data.maxQueued) {
      Atomics.add(control, CTL_DROPPED, 1);
      return;
    }
    const len = io.lens[i]!;
    const copy = new Uint8Array(len);
    copy.set(io.bufs[i]!.subarray(0, len));
    Atomics.add(control, CTL_PASSED, 1); // counted before it can be answered
    post({ t: 'query', msg: copy, ip: io.ips[i]!, port: io.ports[i]! }, [copy.buffer]);
  };

  post({ t: 'ready' });
  for (;;) {
    const n = io.recv();
    if (Atomics.load(control, CTL_STOP) !== 0) return;
    let i = 0;
    try {
      readMail();
      let answered = 0;
      for (; i < n; i++) {
        let len = 0;
        if (io.truncated[i] === 0) {
          try {
            const msg = io.bufs[i]!;
            const q = parseSimpleQuery(msg, io.lens[i]!);
            if (q) len = answerLocalInto(io.replySlot(), msg, q, 'udp', zone);
          } catch {
            len = 0; // the main thread's server turns any fault into SERVFAIL
          }
        }
        if (len > 0) {
          io.queueReply(len, io.ips[i]!, io.ports[i]!);
          answered++;
        } else {
          pass(i);
        }
      }
      if (answered > 0) Atomics.add(control, CTL_ANSWERED, answered); // counted before they are sent
      io.flush(onSendError);
    } catch (e) {
      // Dying: the main thread takes the socket over; the queries of this batch not yet
      // answered go to it rather than being lost.
      try {
        io.flush(onSendError);
      } catch {
        // the socket itself failed; the main thread will say so
      }
      for (; i < n; i++) pass(i);
      throw e;
    }
  }
}

run(workerData as DnsWorkerData);
