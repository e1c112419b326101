import { expect } from 'chai';
import {
  emitUdp,
  ETH_HLEN,
  Ipv4View,
  PacketError,
  parseUdp,
  ParseError,
  pseudoHeaderSum,
  sum16,
  UDP_HLEN,
  udpBufferLen,
  UdpView,
  UdpViewMut,
  writeUdpHeader,
} from '../../../src/packet/index.js';
import { UDP_DNS_QUERY } from './golden.js';
import { junk, placements } from './util.js';

const SRC = 0x0a000001;
const DST = 0x0a000002;
const DNS = UDP_DNS_QUERY.subarray(34);

describe('packet/udp', () => {
  it('reads a real DNS query at every placement', () => {
    const ip = new Ipv4View();
    const v = new UdpView();
    for (const p of placements(UDP_DNS_QUERY)) {
      expect(ip.reset(p.buf, p.off + ETH_HLEN, UDP_DNS_QUERY.length - ETH_HLEN)).to.equal(ParseError.Ok);
      expect(v.reset(p.buf, ip.payloadOffset, ip.payloadLength), p.name).to.equal(ParseError.Ok);
      expect(v.srcPort).to.equal(40000);
      expect(v.dstPort).to.equal(53);
      expect(v.length).to.equal(37);
      expect(v.checksum).to.equal(0x6d8a);
      expect(v.payloadOffset).to.equal(p.off + 42);
      expect(v.payloadLength).to.equal(29);
      expect(p.buf.readUInt16BE(v.payloadOffset)).to.equal(0x1234); // DNS id
      expect(v.verifyChecksum(ip.src, ip.dst)).to.equal(true);
      expect(v.verifyChecksum(ip.src, ip.dst + 1)).to.equal(false);
    }
  });

  it('the datagram ends at its length field, not at len', () => {
    const b = Buffer.concat([DNS, Buffer.alloc(5)]);
    const v = UdpView.parse(b);
    expect(v.len).to.equal(42);
    expect(v.payloadLength).to.equal(29);
    expect(v.verifyChecksum(SRC, DST)).to.equal(true);
  });

  it('checksum 0 means none', () => {
    const b = Buffer.from(DNS);
    b.writeUInt16BE(0, 6);
    b[20] ^= 0xff;
    expect(UdpView.parse(b).verifyChecksum(SRC, DST)).to.equal(true);
  });

  it('rejects truncated headers and lying length fields', () => {
    const v = new UdpView();
    expect(v.reset(DNS, 0, 7)).to.equal(ParseError.Truncated);
    expect(v.reset(DNS, 32, 8)).to.equal(ParseError.Truncated);
    const b = Buffer.from(DNS);
    b.writeUInt16BE(38, 4); // claims one byte more than there is
    expect(v.reset(b, 0, 37)).to.equal(ParseError.BadLength);
    b.writeUInt16BE(7, 4);
    expect(v.reset(b, 0, 37)).to.equal(ParseError.BadLength);
    b.writeUInt16BE(0, 4);
    expect(v.reset(b, 0, 37)).to.equal(ParseError.BadLength);
    b.writeUInt16BE(8, 4);
    expect(v.reset(b, 0, 37)).to.equal(ParseError.Ok);
    expect(v.payloadLength).to.equal(0);
    b.writeUInt16BE(0xffff, 4);
    expect(() => UdpView.parse(b)).to.throw(PacketError, /UDP: BadLength/);
  });

  it('emits the real header into junk, payload already in place', () => {
    for (const p of placements(junk(DNS.length + 2))) {
      DNS.copy(p.buf, p.off + UDP_HLEN, UDP_HLEN);
      const repr = { srcPort: 40000, dstPort: 53, payloadLength: 29 };
      expect(emitUdp(repr, p.buf, p.off, SRC, DST)).to.equal(UDP_HLEN);
      expect(p.buf.subarray(p.off, p.off + DNS.length).equals(DNS), p.name).to.equal(true);
      expect(p.buf[p.off + DNS.length]).to.equal(0xa5);
      expect(udpBufferLen(repr)).to.equal(UDP_HLEN);
      expect(parseUdp(UdpView.parse(p.buf, p.off, DNS.length))).to.deep.equal(repr);
    }
  });

  it('without addresses the checksum is 0', () => {
    const b = junk(8);
    writeUdpHeader(b, 0, 1234, 8472, 0);
    expect(b.toString('hex')).to.equal('04d2211800080000');
    expect(() => emitUdp({ srcPort: 1, dstPort: 2, payloadLength: 65528 }, junk(8), 0)).to.throw(PacketError);
  });

  it('a computed checksum of 0 is sent as 0xffff, and verifies', () => {
    const b = Buffer.from(DNS);
    // Fix the first payload word so the datagram sums to 0xffff with a zero checksum field.
    b.writeUInt16BE(0, 6);
    b.writeUInt16BE(0, 8);
    b.writeUInt16BE(~sum16(b, 0, b.length, pseudoHeaderSum(SRC, DST, 17, b.length)) & 0xffff, 8);
    const w = UdpViewMut.parse(b);
    w.fillChecksum(SRC, DST);
    expect(w.checksum).to.equal(0xffff);
    expect(w.verifyChecksum(SRC, DST)).to.equal(true);
    const c = Buffer.from(b);
    writeUdpHeader(c, 0, w.srcPort, w.dstPort, w.payloadLength, SRC, DST);
    expect(c.readUInt16BE(6)).to.equal(0xffff);
  });

  it('setters', () => {
    const b = Buffer.from(DNS);
    const w = UdpViewMut.parse(b);
    w.setSrcPort(5353);
    w.setDstPort(0x10035);
    w.setLength(30);
    w.setChecksum(0);
    expect([w.srcPort, w.dstPort, w.length, w.checksum]).to.deep.equal([5353, 0x35, 30, 0]);
    w.fillChecksum(SRC, DST);
    expect(w.verifyChecksum(SRC, DST)).to.equal(true);
  });
});
