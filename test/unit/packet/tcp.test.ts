import { expect } from 'chai';
import {
  emitTcp,
  ETH_HLEN,
  Ipv4View,
  PacketError,
  parseTcp,
  ParseError,
  TCP_MIN_HLEN,
  tcpBufferLen,
  TcpFlags,
  TcpView,
  TcpViewMut,
} from '../../../src/packet/index.js';
import { TCP_RST, TCP_SYN } from './golden.js';
import { hex, junk, placements } from './util.js';

const A = 0x0a000001;
const B = 0x0a000002;
const SYN = TCP_SYN.subarray(34);
const RST = TCP_RST.subarray(34);
const SYN_OPTIONS = hex('020405b4 0402 080a e5a5c545 00000000 01 03030a');

describe('packet/tcp', () => {
  it('reads a real SYN with options at every placement', () => {
    const ip = new Ipv4View();
    const v = new TcpView();
    for (const p of placements(TCP_SYN)) {
      expect(ip.reset(p.buf, p.off + ETH_HLEN, TCP_SYN.length - ETH_HLEN)).to.equal(ParseError.Ok);
      expect(v.reset(p.buf, ip.payloadOffset, ip.payloadLength), p.name).to.equal(ParseError.Ok);
      expect(v.srcPort).to.equal(40001);
      expect(v.dstPort).to.equal(8080);
      expect(v.seq).to.equal(2035861758);
      expect(v.ack).to.equal(0);
      expect(v.dataOffset).to.equal(40);
      expect(v.flags).to.equal(TcpFlags.SYN);
      expect(v.window).to.equal(64240);
      expect(v.checksum).to.equal(0x8ff5);
      expect(v.urgent).to.equal(0);
      expect(v.optionsOffset).to.equal(p.off + 54);
      expect(v.optionsLength).to.equal(20);
      expect(p.buf.subarray(v.optionsOffset, v.optionsOffset + v.optionsLength).equals(SYN_OPTIONS)).to.equal(true);
      expect(v.payloadOffset).to.equal(p.off + 74);
      expect(v.payloadLength).to.equal(0);
      expect(v.verifyChecksum(ip.src, ip.dst)).to.equal(true);
      expect(v.verifyChecksum(ip.dst, ip.dst)).to.equal(false);
    }
  });

  it('reads the kernel\'s RST+ACK', () => {
    const v = TcpView.parse(RST);
    expect(v.flags).to.equal(TcpFlags.RST | TcpFlags.ACK);
    expect(v.seq).to.equal(0);
    expect(v.ack).to.equal(2035861759);
    expect(v.dataOffset).to.equal(TCP_MIN_HLEN);
    expect(v.optionsLength).to.equal(0);
    expect(v.verifyChecksum(B, A)).to.equal(true);
  });

  it('counts payload from the data offset to len', () => {
    const seg = Buffer.concat([RST, Buffer.from('hello')]);
    const w = TcpViewMut.parse(seg);
    expect(w.payloadOffset).to.equal(20);
    expect(w.payloadLength).to.equal(5);
    expect(w.verifyChecksum(B, A)).to.equal(false);
    w.fillChecksum(B, A);
    expect(w.verifyChecksum(B, A)).to.equal(true);
  });

  it('rejects truncated headers and bad data offsets', () => {
    const v = new TcpView();
    expect(v.reset(SYN, 0, 19)).to.equal(ParseError.Truncated);
    expect(v.reset(SYN, 30, 20)).to.equal(ParseError.Truncated);
    // Data offset 40 in a 39-byte segment: too big.
    expect(v.reset(SYN, 0, 39)).to.equal(ParseError.BadHeaderLength);
    const b = Buffer.from(SYN);
    b[12] = 0xf0; // 60 bytes of header in a 40-byte segment
    expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadHeaderLength);
    b[12] = 0x40; // below the 20-byte minimum
    expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadHeaderLength);
    b[12] = 0x00;
    expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadHeaderLength);
    expect(() => TcpView.parse(SYN.subarray(0, 39))).to.throw(PacketError, /TCP: BadHeaderLength/);
  });

  it('emits the real SYN (with options) and RST into junk', () => {
    const syn = {
      srcPort: 40001,
      dstPort: 8080,
      seq: 2035861758,
      ack: 0,
      flags: TcpFlags.SYN,
      window: 64240,
      options: SYN_OPTIONS,
      payloadLength: 0,
    };
    for (const p of placements(junk(SYN.length + 1))) {
      expect(emitTcp(syn, p.buf, p.off, A, B)).to.equal(40);
      expect(p.buf.subarray(p.off, p.off + 40).equals(SYN), p.name).to.equal(true);
      expect(p.buf[p.off + 40]).to.equal(0xa5);
    }
    expect(tcpBufferLen(syn)).to.equal(40);
    const rst = { srcPort: 8080, dstPort: 40001, seq: 0, ack: 2035861759, flags: TcpFlags.RST | TcpFlags.ACK, window: 0, payloadLength: 0 };
    const b = junk(20);
    expect(emitTcp(rst, b, 0, B, A)).to.equal(20);
    expect(b.equals(RST)).to.equal(true);
    expect(parseTcp(TcpView.parse(RST))).to.deep.equal({ ...rst, urgent: 0 });
    const parsed = parseTcp(TcpView.parse(SYN));
    expect(parsed.options?.equals(SYN_OPTIONS)).to.equal(true);
    expect(parsed.options?.buffer).to.not.equal(SYN.buffer); // a copy, not a view
  });

  it('pads options to a multiple of 4 with zeros and refuses more than 40 bytes', () => {
    const repr = { srcPort: 1, dstPort: 2, seq: 3, ack: 4, flags: TcpFlags.ACK, window: 5, options: hex('010101'), payloadLength: 3 };
    const b = junk(30);
    b.write('abc', 24);
    expect(tcpBufferLen(repr)).to.equal(24);
    expect(emitTcp(repr, b, 0, A, B)).to.equal(24);
    expect(b.subarray(20, 24).toString('hex')).to.equal('01010100');
    const v = TcpView.parse(b, 0, 27);
    expect(v.dataOffset).to.equal(24);
    expect(v.payloadLength).to.equal(3);
    expect(v.verifyChecksum(A, B)).to.equal(true);
    expect(b[27]).to.equal(0xa5);
    expect(() => emitTcp({ ...repr, options: Buffer.alloc(41) }, junk(80), 0, A, B)).to.throw(PacketError, /options/);
    expect(emitTcp({ ...repr, options: Buffer.alloc(40), payloadLength: 0 }, junk(60), 0, A, B)).to.equal(60);
  });

  it('setters; 32-bit fields stay unsigned', () => {
    const b = Buffer.from(SYN);
    b[12] |= 0x01; // a reserved/NS bit that setDataOffset must keep
    const w = TcpViewMut.parse(b);
    w.setSeq(0xfffffffe);
    w.setAck(-1);
    expect(w.seq).to.equal(4294967294);
    expect(w.ack).to.equal(4294967295);
    w.setSrcPort(1);
    w.setDstPort(2);
    w.setFlags(TcpFlags.SYN | TcpFlags.ACK);
    w.setWindow(0x1ffff);
    w.setUrgent(7);
    w.setDataOffset(24);
    expect([w.srcPort, w.dstPort, w.flags, w.window, w.urgent, w.dataOffset]).to.deep.equal([1, 2, 18, 0xffff, 7, 24]);
    expect(b[12] & 0x0f).to.equal(0x01);
    w.fillChecksum(A, B);
    expect(w.verifyChecksum(A, B)).to.equal(true);
    w.setChecksum(0xabcd);
    expect(w.checksum).to.equal(0xabcd);
  });
});
