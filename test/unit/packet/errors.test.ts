import { expect } from 'chai';
import { PacketError, ParseError, parseErrorName } from '../../../src/packet/index.js';

describe('packet/errors', () => {
  it('has stable numeric codes', () => {
    expect(ParseError).to.deep.equal({
      Ok: 0,
      Truncated: 1,
      BadVersion: 2,
      BadHeaderLength: 3,
      BadTotalLength: 4,
      BadLength: 5,
      BadFlags: 6,
      Unsupported: 7,
    });
  });

  it('names every code and unknown ones', () => {
    for (const [name, code] of Object.entries(ParseError)) expect(parseErrorName(code)).to.equal(name);
    expect(parseErrorName(42)).to.equal('Unknown(42)');
    expect(parseErrorName(-1)).to.equal('Unknown(-1)');
    expect(parseErrorName(1.5)).to.equal('Unknown(1.5)');
  });

  it('PacketError is an Error with a code', () => {
    const e = PacketError.fromParse('IPv4', ParseError.BadVersion, 14, 60);
    expect(e).to.be.instanceOf(Error);
    expect(e).to.be.instanceOf(PacketError);
    expect(e.name).to.equal('PacketError');
    expect(e.code).to.equal('BadVersion');
    expect(e.message).to.equal('IPv4: BadVersion (offset 14, length 60)');
  });
});
