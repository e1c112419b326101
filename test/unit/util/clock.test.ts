import { expect } from 'chai';
import { createSocket } from 'node:dgram';
import { CoarseClock, coarseClock } from '../../../src/util/clock.js';
import { Dataplane } from '../../../src/dataplane/dataplane.js';
import { UdpSocket } from '../../../src/io/udpsocket.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('util/clock: CoarseClock', () => {
  it('the process clock has no timer once the addon is loaded: it stands still while nothing arrives and is current in every native batch', async () => {
    coarseClock.start();
    // The addon's readers keep it: a UDP socket on loopback (no root, no namespace needed).
    const sock = UdpSocket.bind('127.0.0.1', 0, { bufferBytes: 0 });
    expect(coarseClock.driver).to.equal('poller');
    const tx = createSocket('udp4');
    try {
      // Elapsed times are compared with performance.now (also CLOCK_MONOTONIC), not with the
      // sleeps' lengths: a Node timer may fire a little early against the monotonic clock. The
      // 2 ms allow for the clock's whole milliseconds and the moment between its stamp and ours.
      const before = coarseClock.ms;
      const t0 = performance.now();
      await sleep(60);
      expect(coarseClock.ms).to.equal(before); // nothing woke the process to move it
      const seen = new Promise<{ ms: number; at: number }>((resolve) => sock.start(() => resolve({ ms: coarseClock.ms, at: performance.now() })));
      tx.send(Buffer.from('tick'), sock.port, '127.0.0.1');
      const inBatch = await seen;
      expect(inBatch.ms - before).to.be.at.least(Math.floor(inBatch.at - t0) - 2); // the batch saw the time it arrived at
      expect(coarseClock.seconds).to.equal(Math.floor(coarseClock.ms / 1000));
      await sleep(20);
      const t1 = performance.now();
      coarseClock.refresh(); // for work that does not start in a native batch
      expect(coarseClock.ms - inBatch.ms).to.be.at.least(Math.floor(t1 - inBatch.at) - 2);
    } finally {
      tx.close();
      sock.close();
    }
  });

  it('a timer clock handed to the addon stops its timer and goes on from where it was', async () => {
    const c = new CoarseClock();
    c.start();
    await sleep(30);
    const before = c.ms;
    let bound: { words: Int32Array; elapsed: number } | undefined;
    let refreshed = 0;
    c.useNative({ bindClock: (words, elapsed) => void (bound = { words, elapsed }), refreshClock: () => void refreshed++ });
    expect(c.driver).to.equal('poller');
    expect(bound!.elapsed).to.be.at.least(before); // the native origin is the clock's own start
    const frozen = c.ms;
    await sleep(30);
    expect(c.ms).to.equal(frozen); // its timer is gone: only the (fake) addon moves it now
    c.refresh();
    expect(refreshed).to.equal(1);
  });

  it('Dataplane.receiveOne refreshes its clock first (its sources, libpcap and dgram, do not keep one)', () => {
    let refreshed = 0;
    const clock = { seconds: 1, ms: 1_000, refresh: () => void (refreshed++, (clock.seconds = 2), (clock.ms = 2_000)) };
    const dp = new Dataplane({ clock });
    const port = { receive: () => undefined, rxTap: undefined } as unknown as Parameters<Dataplane['receiveOne']>[0];
    dp.receiveOne(port, Buffer.alloc(64), 0, 64);
    expect(refreshed).to.equal(1);
    expect(dp.now).to.equal(2);
    expect(dp.nowMs).to.equal(2_000);
  });

  it('a timer clock counts whole milliseconds and seconds from its start, refreshed by its timer', async () => {
    const c = new CoarseClock();
    c.start();
    try {
      expect(c.ms).to.be.within(0, 5);
      expect(c.seconds).to.equal(0);
      await sleep(60);
      expect(Number.isInteger(c.ms)).to.equal(true);
      expect(c.ms).to.be.above(0);
      expect(c.seconds).to.equal(Math.floor(c.ms / 1000));
    } finally {
      c.stop();
    }
  });

  it('does not go back when stopped and started again', async () => {
    const c = new CoarseClock();
    c.start();
    await sleep(30);
    c.stop();
    const before = c.ms;
    c.start();
    try {
      expect(c.ms).to.be.at.least(before);
    } finally {
      c.stop();
    }
  });

  it('is what Dataplane.tick reads (an injected one in tests)', () => {
    const clock = { seconds: 7, ms: 7_250 };
    const dp = new Dataplane({ clock });
    dp.tick();
    expect(dp.now).to.equal(7);
    expect(dp.nowMs).to.equal(7_250);
    expect(dp.switch.now).to.equal(7);
    clock.seconds = 9;
    expect(dp.now).to.equal(7); // read once per batch, not on every access
    dp.tick();
    expect(dp.now).to.equal(9);
  });
});
