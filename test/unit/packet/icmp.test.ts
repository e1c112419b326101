import { expect } from 'chai';
import {
  emitIcmp,
  emitIcmpError,
  emitIpv4,
  ETH_HLEN,
  ICMP_ERROR_MAX_QUOTE,
  ICMP_HLEN,
  icmpBufferLen,
  icmpErrorLen,
  IcmpType,
  IcmpUnreachCode,
  IcmpView,
  IcmpViewMut,
  IpProtocol,
  Ipv4View,
  PacketError,
  parseIcmp,
  ParseError,
  UdpView,
  updateChecksum16,
} from '../../../src/packet/index.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PORT_UNREACHABLE, UDP_DNS_QUERY } from './golden.js';
import { junk, placements } from './util.js';

const ECHO = ICMP_ECHO_REQUEST.subarray(34);
const REPLY = ICMP_ECHO_REPLY.subarray(34);
const UNREACH = ICMP_PORT_UNREACHABLE.subarray(34);
const DNS_IP = UDP_DNS_QUERY.subarray(ETH_HLEN);

describe('packet/icmp', () => {
  it('reads a real echo request at every placement', () => {
    const ip = new Ipv4View();
    const v = new IcmpView();
    for (const p of placements(ICMP_ECHO_REQUEST)) {
      expect(ip.reset(p.buf, p.off + ETH_HLEN, ICMP_ECHO_REQUEST.length - ETH_HLEN)).to.equal(ParseError.Ok);
      expect(v.reset(p.buf, ip.payloadOffset, ip.payloadLength), p.name).to.equal(ParseError.Ok);
      expect(v.type).to.equal(IcmpType.EchoRequest);
      expect(v.code).to.equal(0);
      expect(v.checksum).to.equal(0xebbe);
      expect(v.ident).to.equal(0xf725);
      expect(v.seq).to.equal(1);
      expect(v.restOfHeader).to.equal(0xf7250001);
      expect(v.payloadOffset).to.equal(p.off + 42);
      expect(v.payloadLength).to.equal(16);
      expect(p.buf.toString('latin1', v.payloadOffset, v.payloadOffset + v.payloadLength)).to.equal('podnet echo test');
      expect(v.verifyChecksum()).to.equal(true);
    }
  });

  it('rejects fewer than 8 bytes', () => {
    const v = new IcmpView();
    expect(v.reset(ECHO, 0, 7)).to.equal(ParseError.Truncated);
    expect(v.reset(ECHO, 20, 8)).to.equal(ParseError.Truncated);
    expect(v.reset(ECHO, 0, 8)).to.equal(ParseError.Ok);
    expect(v.payloadLength).to.equal(0);
    expect(() => IcmpView.parse(ECHO.subarray(0, 4))).to.throw(PacketError, /ICMP: Truncated/);
  });

  it('a corrupted message does not verify', () => {
    const b = Buffer.from(ECHO);
    b[b.length - 1] ^= 0x20;
    expect(IcmpView.parse(b).verifyChecksum()).to.equal(false);
  });

  it('turns the real request into the kernel\'s reply in place (full and incremental checksum)', () => {
    for (const p of placements(ECHO)) {
      const w = new IcmpViewMut();
      expect(w.reset(p.buf, p.off, ECHO.length)).to.equal(ParseError.Ok);
      w.setType(IcmpType.EchoReply);
      w.fillChecksum();
      expect(p.buf.subarray(p.off, p.off + ECHO.length).equals(REPLY), p.name).to.equal(true);
    }
    const b = Buffer.from(ECHO);
    const w = IcmpViewMut.parse(b);
    w.setType(IcmpType.EchoReply);
    w.setChecksum(updateChecksum16(w.checksum, IcmpType.EchoRequest << 8, IcmpType.EchoReply << 8));
    expect(b.equals(REPLY)).to.equal(true);
  });

  it('emits the real echo request into junk, payload already in place', () => {
    const b = junk(ECHO.length + 4);
    ECHO.copy(b, 2 + ICMP_HLEN, ICMP_HLEN);
    const repr = { type: IcmpType.EchoRequest, code: 0, ident: 0xf725, seq: 1, payloadLength: 16 };
    expect(emitIcmp(repr, b, 2)).to.equal(ICMP_HLEN);
    expect(icmpBufferLen(repr)).to.equal(ICMP_HLEN);
    expect(b.subarray(2, 2 + ECHO.length).equals(ECHO)).to.equal(true);
    expect(b[1]).to.equal(0xa5);
    expect(parseIcmp(IcmpView.parse(REPLY))).to.deep.equal({ ...repr, type: IcmpType.EchoReply });
  });

  it('reads the kernel\'s port unreachable and the packet it quotes', () => {
    const v = IcmpView.parse(UNREACH);
    expect(v.type).to.equal(IcmpType.DestUnreachable);
    expect(v.code).to.equal(IcmpUnreachCode.Port);
    expect(v.checksum).to.equal(0x1136);
    expect(v.restOfHeader).to.equal(0);
    expect(v.verifyChecksum()).to.equal(true);
    expect(v.payloadLength).to.equal(57);
    const inner = new Ipv4View();
    expect(inner.reset(UNREACH, v.payloadOffset, v.payloadLength)).to.equal(ParseError.Ok);
    expect(inner.protocol).to.equal(IpProtocol.UDP);
    const udp = new UdpView();
    expect(udp.reset(UNREACH, inner.payloadOffset, inner.payloadLength)).to.equal(ParseError.Ok);
    expect(udp.dstPort).to.equal(53);
  });

  it('emitIcmpError reproduces the kernel\'s port unreachable byte for byte', () => {
    for (const p of placements(junk(ICMP_PORT_UNREACHABLE.length))) {
      const ipOff = p.off + ETH_HLEN;
      const icmpOff = ipOff + 20;
      const n = emitIcmpError(IcmpType.DestUnreachable, IcmpUnreachCode.Port, 0, DNS_IP, p.buf, icmpOff);
      expect(n).to.equal(ICMP_HLEN + 57);
      expect(icmpErrorLen(DNS_IP.length)).to.equal(n);
      emitIpv4({ src: '10.0.0.2', dst: '10.0.0.1', protocol: IpProtocol.ICMP, ttl: 64, payloadLength: n, ident: 0xaf60, tos: 0xc0 }, p.buf, ipOff);
      expect(p.buf.subarray(ipOff, icmpOff + n).equals(ICMP_PORT_UNREACHABLE.subarray(ETH_HLEN)), p.name).to.equal(true);
    }
  });

  it('quotes at most 548 bytes (576-byte datagrams, RFC 1812)', () => {
    const original = Buffer.alloc(1500, 0x42);
    DNS_IP.copy(original, 0, 0, 20);
    const b = junk(1600);
    const n = emitIcmpError(IcmpType.TimeExceeded, 0, 0, original, b, 0);
    expect(n).to.equal(ICMP_HLEN + ICMP_ERROR_MAX_QUOTE);
    expect(icmpErrorLen(1500)).to.equal(556);
    expect(b[n]).to.equal(0xa5);
    const v = IcmpView.parse(b, 0, n);
    expect(v.verifyChecksum()).to.equal(true);
    expect(v.type).to.equal(IcmpType.TimeExceeded);
    expect(v.restOfHeader).to.equal(0);
  });

  it('writes the next-hop MTU of frag-needed into bytes 6-7', () => {
    const b = junk(100);
    const n = emitIcmpError(IcmpType.DestUnreachable, IcmpUnreachCode.FragNeeded, 1450, DNS_IP, b, 0);
    expect(b.subarray(0, 8).toString('hex').slice(0, 4)).to.equal('0304');
    expect(b.subarray(4, 8).toString('hex')).to.equal('000005aa');
    const v = IcmpView.parse(b, 0, n);
    expect(v.nextHopMtu).to.equal(1450);
    expect(v.verifyChecksum()).to.equal(true);
  });

  it('may quote a packet that overlaps the output (in-place error)', () => {
    const expected = junk(100);
    const n = emitIcmpError(3, 3, 0, DNS_IP, expected, 0);
    // The offending packet sits exactly where the ICMP message is written.
    const b = junk(100);
    DNS_IP.copy(b, 0);
    expect(emitIcmpError(3, 3, 0, b.subarray(0, DNS_IP.length), b, 0)).to.equal(n);
    expect(b.subarray(0, n).equals(expected.subarray(0, n))).to.equal(true);
  });

  it('setters', () => {
    const b = junk(12);
    const w = new IcmpViewMut();
    expect(w.reset(b, 0, 12)).to.equal(ParseError.Ok);
    w.setType(IcmpType.DestUnreachable);
    w.setCode(IcmpUnreachCode.FragNeeded);
    w.setRestOfHeader(1400);
    expect(w.ident).to.equal(0);
    expect(w.nextHopMtu).to.equal(1400);
    w.setIdent(0xbeef);
    w.setSeq(0x10000 + 5);
    expect(w.ident).to.equal(0xbeef);
    expect(w.seq).to.equal(5);
    w.setNextHopMtu(9000);
    expect(w.nextHopMtu).to.equal(9000);
    w.fillChecksum();
    expect(w.verifyChecksum()).to.equal(true);
    w.setChecksum(0);
    expect(w.checksum).to.equal(0);
  });
});
