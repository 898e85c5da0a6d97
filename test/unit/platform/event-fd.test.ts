// The eventfd that wakes the sleeve's worker thread out of poll() when a command is posted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { EventFd } from '../../../src/platform/event-fd.js';
import { POLLIN, allocPollfd, pollOne } from '../../../src/platform/ffi/libc.js';

test('an eventfd is readable from wake() until drained, and wake() never blocks', () => {
  const e = EventFd.create();
  try {
    const pfd = allocPollfd();
    assert.equal(pollOne(pfd, e.fd, POLLIN, 0), 0);
    assert.equal(e.drain(), false, 'nothing pending: the non-blocking read says so');
    for (let i = 0; i < 1000; i++) e.wake();
    assert.ok(pollOne(pfd, e.fd, POLLIN, 0) & POLLIN);
    assert.equal(e.drain(), true);
    assert.equal(pollOne(pfd, e.fd, POLLIN, 0), 0, 'one read resets a counter woken many times');
  } finally {
    e.close();
  }
  e.wake(); // closed: a no-op, not a write to an fd number that may be reused
});

test('a thread blocked in poll() on the eventfd wakes when another thread calls wake()', async () => {
  const e = EventFd.create();
  // The worker polls for up to 20 s, then says how long it waited and whether the fd woke it.
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.libc).then(({ POLLIN, allocPollfd, pollOne }) => import(workerData.eventFd).then(({ EventFd }) => {
      const w = EventFd.fromFd(workerData.fd);
      const pfd = allocPollfd();
      parentPort.postMessage('polling');
      const t0 = Date.now();
      const r = pollOne(pfd, workerData.fd, POLLIN, 20000);
      parentPort.postMessage({ waitedMs: Date.now() - t0, readable: (r & POLLIN) !== 0, drained: w.drain() });
      w.close();
    }));`;
  const worker = new Worker(code, {
    eval: true,
    workerData: {
      fd: e.fd,
      libc: new URL('../../../src/platform/ffi/libc.js', import.meta.url).href,
      eventFd: new URL('../../../src/platform/event-fd.js', import.meta.url).href,
    },
  });
  try {
    const result = new Promise<{ waitedMs: number; readable: boolean; drained: boolean }>((resolve, reject) => {
      worker.on('message', (m) => {
        if (m === 'polling') setTimeout(() => e.wake(), 100);
        else resolve(m as { waitedMs: number; readable: boolean; drained: boolean });
      });
      worker.on('error', reject);
      worker.on('exit', (code) => reject(new Error(`worker exited (${code}) without a result`)));
    });
    const r = await result;
    assert.equal(r.readable, true);
    assert.equal(r.drained, true);
    assert.ok(r.waitedMs < 5000, `woken after ${r.waitedMs} ms, not at poll's 20 s timeout`);
  } finally {
    await worker.terminate();
    e.close();
  }
});
