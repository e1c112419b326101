import { expect } from 'chai';
import { median, percentile } from '../../../bench/stats.js';

describe('benchmark statistics', () => {
  it('median: the middle value, the mean of the middle two, NaN for none; the input is left as it was', () => {
    const xs = [5, 1, 3];
    expect(median(xs)).to.equal(3);
    expect(xs).to.deep.equal([5, 1, 3]);
    expect(median([4, 1, 3, 2])).to.equal(2.5);
    expect(median([10, 2])).to.equal(6); // numeric order, not string order
    expect(median([7])).to.equal(7);
    expect(median([])).to.be.NaN;
  });

  it('percentile: nearest rank over sorted values', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 99)).to.equal(99);
    expect(percentile(xs, 50)).to.equal(50);
    expect(percentile(xs, 100)).to.equal(100);
    expect(percentile(xs, 0)).to.equal(1);
    expect(percentile([0.2, 0.3, 0.9], 99)).to.equal(0.9);
    expect(percentile([], 99)).to.be.NaN;
  });
});
