import { expect } from 'chai';
import {
  emitIpv4,
  ETH_HLEN,
  EthernetView,
  IpProtocol,
  IPV4_MIN_HLEN,
  ipv4BufferLen,
  Ipv4View,
  Ipv4ViewMut,
  PacketError,
  parseIpv4,
  parseIpv4Repr,
  ParseError,
  writeIpv4Header,
} from '../../../src/packet/index.js';
import { ICMP_ECHO_REQUEST, ICMP_PORT_UNREACHABLE, TCP_RST, TCP_SYN } from './golden.js';
import { hex, junk, placements } from './util.js';

const ECHO_IP = ICMP_ECHO_REQUEST.subarray(ETH_HLEN);

describe('packet/ipv4', () => {
  it('reads a real header at every placement', () => {
    const eth = new EthernetView();
    const v = new Ipv4View();
    for (const p of placements(ICMP_ECHO_REQUEST)) {
      expect(eth.reset(p.buf, p.off, ICMP_ECHO_REQUEST.length)).to.equal(ParseError.Ok);
      expect(v.reset(p.buf, eth.payloadOffset, eth.payloadLength), p.name).to.equal(ParseError.Ok);
      expect(v.version).to.equal(4);
      expect(v.headerLength).to.equal(20);
      expect(v.tos).to.equal(0);
      expect(v.totalLength).to.equal(44);
      expect(v.ident).to.equal(0x4e28);
      expect(v.dontFragment).to.equal(true);
      expect(v.moreFragments).to.equal(false);
      expect(v.fragmentOffset).to.equal(0);
      expect(v.ttl).to.equal(64);
      expect(v.protocol).to.equal(IpProtocol.ICMP);
      expect(v.checksum).to.equal(0xd8a6);
      expect(v.src).to.equal(0x0a000001);
      expect(v.dst).to.equal(0x0a000002);
      expect(v.payloadOffset).to.equal(p.off + 14 + 20);
      expect(v.payloadLength).to.equal(24);
      expect(v.verifyChecksum()).to.equal(true);
    }
  });

  it('ignores trailing Ethernet padding: the packet ends at totalLength', () => {
    // A 54-byte frame padded to the 60-byte Ethernet minimum.
    const frame = Buffer.concat([TCP_RST, Buffer.alloc(6)]);
    const eth = EthernetView.parse(frame);
    const v = new Ipv4View();
    expect(v.reset(frame, eth.payloadOffset, eth.payloadLength)).to.equal(ParseError.Ok);
    expect(v.len).to.equal(46);
    expect(v.totalLength).to.equal(40);
    expect(v.payloadLength).to.equal(20);
    expect(v.verifyChecksum()).to.equal(true);
  });

  it('reads high-bit addresses as unsigned', () => {
    const b = Buffer.from(ECHO_IP);
    b.write('c0a80101fffffffe', 12, 'hex');
    const v = Ipv4View.parse(b);
    expect(v.src).to.equal(0xc0a80101);
    expect(v.dst).to.equal(0xfffffffe);
  });

  it('reads fragment fields in bytes', () => {
    const b = Buffer.from(ECHO_IP);
    b.writeUInt16BE(0x2000 | 185, 6); // MF, offset 185 * 8
    const v = Ipv4View.parse(b);
    expect(v.moreFragments).to.equal(true);
    expect(v.dontFragment).to.equal(false);
    expect(v.fragmentOffset).to.equal(1480);
  });

  describe('rejections', () => {
    const v = new Ipv4View();
    it('truncated: fewer than 20 bytes, or a region outside the buffer', () => {
      expect(v.reset(ECHO_IP, 0, 19)).to.equal(ParseError.Truncated);
      expect(v.reset(ECHO_IP.subarray(0, 19), 0, 20)).to.equal(ParseError.Truncated);
      expect(v.reset(ECHO_IP, 30, 20)).to.equal(ParseError.Truncated);
      expect(v.reset(ECHO_IP, -2, 20)).to.equal(ParseError.Truncated);
    });
    it('bad version', () => {
      const b = Buffer.from(ECHO_IP);
      b[0] = 0x65;
      expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadVersion);
      b[0] = 0x05;
      expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadVersion);
    });
    it('bad IHL: below 5, or beyond len', () => {
      const b = Buffer.from(ECHO_IP);
      b[0] = 0x44;
      expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadHeaderLength);
      b[0] = 0x40;
      expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadHeaderLength);
      b[0] = 0x4f; // 60 bytes of header in a 44-byte packet
      expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadHeaderLength);
      b[0] = 0x46;
      expect(v.reset(b, 0, 23)).to.equal(ParseError.BadHeaderLength);
    });
    it('bad total length: beyond the buffer, or shorter than the header', () => {
      const b = Buffer.from(ECHO_IP);
      b.writeUInt16BE(45, 2);
      expect(v.reset(b, 0, 44)).to.equal(ParseError.BadTotalLength);
      b.writeUInt16BE(44, 2);
      expect(v.reset(b, 0, 43)).to.equal(ParseError.BadTotalLength);
      b.writeUInt16BE(19, 2);
      expect(v.reset(b, 0, 44)).to.equal(ParseError.BadTotalLength);
      b.writeUInt16BE(20, 2);
      expect(v.reset(b, 0, 44)).to.equal(ParseError.Ok);
      expect(v.payloadLength).to.equal(0);
    });
    it('parse throws PacketError with the code', () => {
      const b = Buffer.from(ECHO_IP);
      b[0] = 0x44;
      expect(() => Ipv4View.parse(b)).to.throw(PacketError, 'IPv4: BadHeaderLength (offset 0, length 44)');
    });
    it('a wrong checksum parses but does not verify', () => {
      const b = Buffer.from(ECHO_IP);
      b[8] ^= 0x01;
      const w = Ipv4View.parse(b);
      expect(w.verifyChecksum()).to.equal(false);
    });
  });

  it('covers options: IHL 6', () => {
    // The echo request's header with a 4-byte option (router alert) and IHL 6.
    const b = Buffer.concat([ECHO_IP.subarray(0, 20), hex('94040000'), ECHO_IP.subarray(20)]);
    b[0] = 0x46;
    b.writeUInt16BE(48, 2);
    const w = Ipv4ViewMut.parse(b);
    expect(w.headerLength).to.equal(24);
    expect(w.payloadOffset).to.equal(24);
    expect(w.payloadLength).to.equal(24);
    expect(w.verifyChecksum()).to.equal(false);
    w.fillChecksum();
    expect(w.verifyChecksum()).to.equal(true);
    b[21] = 0x05; // change an option byte: the checksum covers it
    expect(w.verifyChecksum()).to.equal(false);
  });

  it('setters rebuild the real header on junk memory', () => {
    for (const p of placements(junk(IPV4_MIN_HLEN))) {
      p.buf[p.off] = 0x45; // version/IHL are written by writeIpv4Header / emitIpv4, not by a setter
      p.buf.writeUInt16BE(IPV4_MIN_HLEN, p.off + 2);
      const w = new Ipv4ViewMut();
      expect(w.reset(p.buf, p.off, IPV4_MIN_HLEN), p.name).to.equal(ParseError.Ok);
      w.setTos(0);
      w.setTotalLength(44);
      w.setIdent(0x4e28);
      w.setFlagsAndFragment(true, false, 0);
      w.setTtl(64);
      w.setProtocol(IpProtocol.ICMP);
      w.setSrc(0x0a000001);
      w.setDst(0x0a000002);
      w.fillChecksum();
      expect(p.buf.subarray(p.off, p.off + 20).equals(ECHO_IP.subarray(0, 20)), p.name).to.equal(true);
      w.setChecksum(0x1234);
      expect(w.checksum).to.equal(0x1234);
      w.setFlagsAndFragment(false, true, 1480);
      expect(w.moreFragments).to.equal(true);
      expect(w.dontFragment).to.equal(false);
      expect(w.fragmentOffset).to.equal(1480);
      w.setSrc(-1);
      expect(w.src).to.equal(0xffffffff);
      w.setTtl(256 + 7);
      expect(w.ttl).to.equal(7);
    }
  });

  describe('decrementTtl', () => {
    it('keeps a real header valid and equal to a full recomputation', () => {
      const b = Buffer.from(ECHO_IP);
      const w = Ipv4ViewMut.parse(b);
      expect(w.decrementTtl()).to.equal(63);
      expect(w.ttl).to.equal(63);
      expect(w.verifyChecksum()).to.equal(true);
      const c = Buffer.from(b);
      Ipv4ViewMut.parse(c).fillChecksum();
      expect(c.equals(b)).to.equal(true);
      expect(w.checksum).to.equal(0xd9a6); // the TTL byte is the high byte of its word
    });
    it('counts down to 0 and then stops', () => {
      const b = Buffer.from(TCP_SYN.subarray(ETH_HLEN));
      const w = Ipv4ViewMut.parse(b);
      w.setTtl(2);
      w.fillChecksum();
      expect(w.decrementTtl()).to.equal(1);
      expect(w.decrementTtl()).to.equal(0);
      expect(w.verifyChecksum()).to.equal(true);
      const before = Buffer.from(b);
      expect(w.decrementTtl()).to.equal(0);
      expect(b.equals(before)).to.equal(true);
    });
    it('works at every placement', () => {
      for (const p of placements(ECHO_IP)) {
        const w = new Ipv4ViewMut();
        expect(w.reset(p.buf, p.off, ECHO_IP.length)).to.equal(ParseError.Ok);
        expect(w.decrementTtl()).to.equal(63);
        expect(w.verifyChecksum(), p.name).to.equal(true);
      }
    });
    it('leaves a wrong checksum wrong', () => {
      const b = Buffer.from(ECHO_IP);
      b.writeUInt16BE(0x1111, 10);
      const w = Ipv4ViewMut.parse(b);
      w.decrementTtl();
      expect(w.verifyChecksum()).to.equal(false);
    });
  });

  it('emits real headers from a Repr into junk', () => {
    const golden: Array<[Buffer, Parameters<typeof emitIpv4>[0]]> = [
      [
        ECHO_IP,
        { src: '10.0.0.1', dst: '10.0.0.2', protocol: IpProtocol.ICMP, ttl: 64, payloadLength: 24, ident: 0x4e28, dontFragment: true },
      ],
      [
        ICMP_PORT_UNREACHABLE.subarray(ETH_HLEN),
        { src: '10.0.0.2', dst: '10.0.0.1', protocol: IpProtocol.ICMP, ttl: 64, payloadLength: 65, ident: 0xaf60, tos: 0xc0 },
      ],
      [
        TCP_RST.subarray(ETH_HLEN),
        { src: '10.0.0.2', dst: '10.0.0.1', protocol: IpProtocol.TCP, ttl: 64, payloadLength: 20, dontFragment: true },
      ],
    ];
    for (const [ip, repr] of golden) {
      const b = junk(IPV4_MIN_HLEN + 10);
      expect(emitIpv4(repr, b, 5)).to.equal(IPV4_MIN_HLEN);
      expect(ipv4BufferLen(repr)).to.equal(IPV4_MIN_HLEN);
      expect(b.subarray(5, 25).toString('hex')).to.equal(ip.subarray(0, 20).toString('hex'));
      expect(b[4]).to.equal(0xa5);
      expect(b[25]).to.equal(0xa5);
    }
  });

  it('writeIpv4Header writes the same bytes from numbers', () => {
    const b = junk(20);
    expect(writeIpv4Header(b, 0, 0x0a000001, 0x0a000002, IpProtocol.ICMP, 64, 24, 0x4e28, true)).to.equal(20);
    expect(b.equals(ECHO_IP.subarray(0, 20))).to.equal(true);
    const c = junk(20);
    writeIpv4Header(c, 0, 0x0a000002, 0x0a000001, IpProtocol.ICMP, 64, 65, 0xaf60, false, 0xc0);
    expect(c.equals(ICMP_PORT_UNREACHABLE.subarray(14, 34))).to.equal(true);
  });

  it('parses the Repr (parseIpv4Repr, and parseIpv4 given a view)', () => {
    const expected = {
      src: '10.0.0.1',
      dst: '10.0.0.2',
      protocol: 1,
      ttl: 64,
      payloadLength: 24,
      ident: 0x4e28,
      dontFragment: true,
      tos: 0,
    };
    expect(parseIpv4Repr(Ipv4View.parse(ECHO_IP))).to.deep.equal(expected);
    expect(parseIpv4(Ipv4View.parse(ECHO_IP))).to.deep.equal(expected);
    expect(parseIpv4('10.0.0.1')).to.equal(0x0a000001);
    const b = junk(20);
    emitIpv4(expected, b, 0);
    expect(b.equals(ECHO_IP.subarray(0, 20))).to.equal(true);
  });

  it('emit rejects bad Reprs', () => {
    const repr = { src: '10.0.0.1', dst: '10.0.0.2', protocol: 6, ttl: 64, payloadLength: 0 };
    const b = junk(20);
    expect(() => emitIpv4({ ...repr, payloadLength: 65516 }, b, 0)).to.throw(PacketError, /payloadLength/);
    expect(() => emitIpv4({ ...repr, payloadLength: -1 }, b, 0)).to.throw(PacketError);
    expect(() => emitIpv4({ ...repr, dst: '10.0.0.256' }, b, 0)).to.throw(PacketError, /10\.0\.0\.256/);
    expect(emitIpv4({ ...repr, payloadLength: 65515 }, b, 0)).to.equal(20);
    expect(b.readUInt16BE(2)).to.equal(65535);
  });
});
