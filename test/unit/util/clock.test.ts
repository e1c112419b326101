import { expect } from 'chai';
import { CoarseClock } from '../../../src/util/clock.js';
import { Dataplane } from '../../../src/dataplane/dataplane.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('util/clock: CoarseClock', () => {
  it('counts whole milliseconds and seconds from its start, refreshed by its timer', async () => {
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
