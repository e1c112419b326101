import { expect } from 'chai';
import { copyBytes } from '../../../src/io/copy.js';
import { loadAddon } from '../../../src/io/addon.js';
import { sum16, useNativeSum16 } from '../../../src/packet/checksum.js';

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

describe('io/addon: native sum16', () => {
  it('gives exactly what the JavaScript sum16 gives, for every length, offset and initial sum', () => {
    const native = loadAddon().sum16;
    const buf = Buffer.alloc(4096);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 197 + 11) & 0xff;
    useNativeSum16(undefined); // the JavaScript loop alone, for reference
    try {
      for (let len = 0; len <= 300; len++) {
        for (const off of [0, 1, 2, 3, 1001]) {
          for (const initial of [0, 1, 0x1234, 0xffff]) {
            expect(native(buf, off, len, initial), `off ${off} len ${len} initial ${initial}`).to.equal(sum16(buf, off, len, initial));
          }
        }
      }
      expect(native(buf, 0, 4096, 0)).to.equal(sum16(buf, 0, 4096, 0));
      expect(native(Buffer.alloc(64, 0xff), 0, 64, 0xffff)).to.equal(0xffff);
    } finally {
      useNativeSum16(native);
    }
  });

  it('refuses a region outside the buffer', () => {
    expect(() => loadAddon().sum16(Buffer.alloc(10), 8, 4, 0)).to.throw(RangeError);
  });
});
