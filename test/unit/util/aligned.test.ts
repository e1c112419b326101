import { expect } from 'chai';
import { ALIGNED_MIN_BYTES, pageAlignedBuffer } from '../../../src/util/aligned.js';

describe('util/aligned: pageAlignedBuffer', () => {
  it('gives zero-filled buffers of at least the size asked, small and large', () => {
    for (const n of [64, 4096, ALIGNED_MIN_BYTES, ALIGNED_MIN_BYTES * 3 + 100]) {
      const b = pageAlignedBuffer(n);
      expect(b.byteLength).to.be.at.least(n);
      const v = new Int32Array(b, 0, n >> 2);
      expect(v.every((x) => x === 0)).to.equal(true);
      v[v.length - 1] = 7; // writable to the end
      expect(new Float64Array(b, 0, n >> 3).length).to.equal(n >> 3);
    }
  });
});
