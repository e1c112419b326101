import { expect } from 'chai';
import { TrafficCounters } from '../../../src/util/counters.js';

describe('dataplane: TrafficCounters', () => {
  it('counts frames and bytes each way, exactly past 2^32', () => {
    const t = new TrafficCounters();
    for (let i = 0; i < 3; i++) t.rx(1500);
    t.tx(64);
    expect([t.rxFrames, t.rxBytes, t.txFrames, t.txBytes]).to.deep.equal([3, 4500, 1, 64]);
    for (let i = 0; i < 3; i++) t.rx(2 ** 31);
    expect(t.rxBytes).to.equal(4500 + 3 * 2 ** 31);
    expect(t.rxFrames).to.equal(6);
  });
});
