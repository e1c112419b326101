import { expect } from 'chai';
import { copyBytes } from '../../../src/io/copy.js';

describe('io/copy: copyBytes (addon memmove)', () => {
  it('copies a range between buffers, honouring subarray offsets, and within one buffer', () => {
    const src = Buffer.from('0011223344556677', 'hex').subarray(1);
    const dst = Buffer.alloc(8, 0xa5);
    copyBytes(dst, 2, src, 1, 4);
    expect(dst.toString('hex')).to.equal('a5a5' + '22334455' + 'a5a5');
    const b = Buffer.from('0102030405', 'hex');
    copyBytes(b, 1, b, 0, 4); // overlapping: memmove semantics
    expect(b.toString('hex')).to.equal('0101020304');
  });

  it('throws RangeError for a range outside either buffer, and copies nothing', () => {
    const a = Buffer.alloc(4);
    expect(() => copyBytes(a, 2, Buffer.alloc(8), 0, 3)).to.throw(RangeError);
    expect(() => copyBytes(Buffer.alloc(8), 0, a, 2, 3)).to.throw(RangeError);
    expect(a.toString('hex')).to.equal('00000000');
  });
});
