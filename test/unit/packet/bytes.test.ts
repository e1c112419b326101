import { expect } from 'chai';
import { readI32, readU16, readU32, writeEthernetHeader, writeU16, writeU32 } from '../../../src/packet/index.js';

describe('packet/bytes', () => {
  it('reads and writes big-endian fields by index, honouring a subarray byteOffset', () => {
    const whole = Buffer.alloc(16, 0xa5);
    const b = whole.subarray(3, 11);
    writeU16(b, 0, 0x1234);
    writeU32(b, 2, 0xfedcba98);
    expect(whole.subarray(3, 9).toString('hex')).to.equal('1234fedcba98');
    expect(readU16(b, 0)).to.equal(0x1234);
    expect(readU32(b, 2)).to.equal(0xfedcba98);
    expect(readI32(b, 2)).to.equal(0xfedcba98 | 0);
    expect(readU32(b, 2)).to.equal(b.readUInt32BE(2));
  });

  it('writes only the low bits of wider values, signed or unsigned', () => {
    const b = Buffer.alloc(6);
    writeU16(b, 0, 0x12345);
    writeU32(b, 2, -2);
    expect(b.toString('hex')).to.equal('2345fffffffe');
  });

  it('header builders still refuse a region outside the buffer', () => {
    expect(() => writeEthernetHeader(Buffer.alloc(13), 0, 1, 2, 3, 4, 0x800)).to.throw(RangeError);
    expect(() => writeEthernetHeader(Buffer.alloc(20), 7, 1, 2, 3, 4, 0x800)).to.throw(RangeError);
  });
});
