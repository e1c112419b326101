import { expect } from 'chai';
import {
  emitVxlan,
  ETH_HLEN,
  EthernetView,
  EtherType,
  IcmpType,
  IcmpView,
  IpProtocol,
  IPV4_MIN_HLEN,
  Ipv4View,
  PacketError,
  parseVxlan,
  ParseError,
  UDP_HLEN,
  UdpView,
  VXLAN_FLAG_I,
  VXLAN_FLAG_RCO,
  VXLAN_HLEN,
  setVxlanRco,
  vxlanRco,
  vxlanRcoByte,
  vxlanRcoStart,
  VXLAN_OVERHEAD,
  VXLAN_PORT_LINUX,
  vxlanBufferLen,
  VxlanView,
  VxlanViewMut,
  writeEthernetHeader,
  writeIpv4Header,
  writeUdpHeader,
  writeVxlanHeader,
} from '../../../src/packet/index.js';
import { VXLAN_ECHO } from './golden.js';
import { hex, junk, placements } from './util.js';

const VX = VXLAN_ECHO.subarray(42); // VXLAN header + inner frame

describe('packet/vxlan', () => {
  it('decapsulates a real Linux VXLAN packet (port 8472, VNI 1) at every placement', () => {
    const eth = new EthernetView();
    const ip = new Ipv4View();
    const udp = new UdpView();
    const vx = new VxlanView();
    const ieth = new EthernetView();
    const iip = new Ipv4View();
    const icmp = new IcmpView();
    for (const p of placements(VXLAN_ECHO)) {
      expect(eth.reset(p.buf, p.off, VXLAN_ECHO.length), p.name).to.equal(ParseError.Ok);
      expect(eth.etherType).to.equal(EtherType.IPv4);
      expect(ip.reset(p.buf, eth.payloadOffset, eth.payloadLength)).to.equal(ParseError.Ok);
      expect(ip.verifyChecksum()).to.equal(true);
      expect(ip.protocol).to.equal(IpProtocol.UDP);
      expect(udp.reset(p.buf, ip.payloadOffset, ip.payloadLength)).to.equal(ParseError.Ok);
      expect(udp.dstPort).to.equal(VXLAN_PORT_LINUX);
      expect(udp.srcPort).to.equal(39563);
      expect(udp.verifyChecksum(ip.src, ip.dst)).to.equal(true);
      expect(vx.reset(p.buf, udp.payloadOffset, udp.payloadLength)).to.equal(ParseError.Ok);
      expect(vx.flags).to.equal(VXLAN_FLAG_I);
      expect(vx.vni).to.equal(1);
      expect(vx.payloadOffset).to.equal(p.off + 50);
      expect(vx.payloadLength).to.equal(58);
      expect(ieth.reset(p.buf, vx.payloadOffset, vx.payloadLength)).to.equal(ParseError.Ok);
      expect(ieth.dstLo).to.equal(0x00dd0002);
      expect(iip.reset(p.buf, ieth.payloadOffset, ieth.payloadLength)).to.equal(ParseError.Ok);
      expect(iip.verifyChecksum()).to.equal(true);
      expect(iip.src).to.equal(0x0a010001);
      expect(icmp.reset(p.buf, iip.payloadOffset, iip.payloadLength)).to.equal(ParseError.Ok);
      expect(icmp.type).to.equal(IcmpType.EchoRequest);
      expect(icmp.verifyChecksum()).to.equal(true);
      // The overhead constant: outer IPv4 + UDP + VXLAN + inner Ethernet.
      expect(iip.off - ip.off).to.equal(VXLAN_OVERHEAD);
    }
  });

  it('rejects truncated headers and a missing I flag; ignores reserved bits', () => {
    const v = new VxlanView();
    expect(v.reset(VX, 0, 7)).to.equal(ParseError.Truncated);
    expect(v.reset(VX.subarray(0, 7), 0, 8)).to.equal(ParseError.Truncated);
    const b = Buffer.from(VX);
    b[0] = 0x00;
    expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadFlags);
    b[0] = 0xf7; // every flag but I
    expect(v.reset(b, 0, b.length)).to.equal(ParseError.BadFlags);
    expect(() => VxlanView.parse(b)).to.throw(PacketError, /VXLAN: BadFlags/);
    b.write('ffffffff000001ff', 0, 'hex'); // reserved bits set, I set
    expect(v.reset(b, 0, b.length)).to.equal(ParseError.Ok);
    expect(v.vni).to.equal(1);
    expect(v.reset(b, 0, 8)).to.equal(ParseError.Ok);
    expect(v.payloadLength).to.equal(0);
  });

  it('writes headers with reserved bits zero', () => {
    const b = junk(10);
    expect(writeVxlanHeader(b, 1, 1)).to.equal(VXLAN_HLEN);
    expect(b.toString('hex')).to.equal('a50800000000000100a5');
    writeVxlanHeader(b, 1, 0xabcdef);
    expect(b.subarray(1, 9).toString('hex')).to.equal('08000000abcdef00');
    writeVxlanHeader(b, 1, 0x1abcdef); // masked to 24 bits
    expect(VxlanView.parse(b, 1, 8).vni).to.equal(0xabcdef);
    const c = junk(8);
    expect(emitVxlan({ vni: 1 }, c, 0)).to.equal(VXLAN_HLEN);
    expect(vxlanBufferLen({ vni: 1 })).to.equal(VXLAN_HLEN);
    expect(c.equals(VX.subarray(0, 8))).to.equal(true);
    expect(parseVxlan(VxlanView.parse(VX))).to.deep.equal({ vni: 1 });
  });

  it('setVni keeps the reserved byte; setFlags', () => {
    const b = hex('08000000 00000142');
    const w = VxlanViewMut.parse(b);
    w.setVni(0xfffffe);
    expect(b.toString('hex')).to.equal('08000000fffffe42');
    expect(w.vni).to.equal(0xfffffe);
    w.setFlags(0);
    expect(w.flags).to.equal(0);
  });

  it('encapsulates in the headroom before an inner frame, reproducing the Linux packet', () => {
    const inner = VXLAN_ECHO.subarray(50); // inner Ethernet frame
    for (const p of placements(junk(VXLAN_ECHO.length + 8))) {
      const innerOff = p.off + ETH_HLEN + IPV4_MIN_HLEN + UDP_HLEN + VXLAN_HLEN;
      inner.copy(p.buf, innerOff);
      const ipOff = innerOff + ETH_HLEN - VXLAN_OVERHEAD; // outer IP header, from the inner IP packet
      const udpOff = ipOff + IPV4_MIN_HLEN;
      const vxOff = udpOff + UDP_HLEN;
      const udpPayload = VXLAN_HLEN + inner.length;
      writeVxlanHeader(p.buf, vxOff, 1);
      writeUdpHeader(p.buf, udpOff, 39563, VXLAN_PORT_LINUX, udpPayload, 0x0a000001, 0x0a000002);
      writeIpv4Header(p.buf, ipOff, 0x0a000001, 0x0a000002, IpProtocol.UDP, 64, UDP_HLEN + udpPayload, 0x94c0);
      writeEthernetHeader(p.buf, ipOff - ETH_HLEN, 0x5254, 0x00bb0002, 0x5254, 0x00aa0001, EtherType.IPv4);
      expect(ipOff - ETH_HLEN).to.equal(p.off);
      expect(p.buf.subarray(p.off, p.off + VXLAN_ECHO.length).equals(VXLAN_ECHO), p.name).to.equal(true);
      expect(p.buf[p.off + VXLAN_ECHO.length]).to.equal(0xa5);
    }
  });

  it('reads and writes the RCO word as Linux lays it out: C bit 0x20 in the second byte, start/2 and the UDP bit after the VNI', () => {
    // Linux (include/net/vxlan.h): VXLAN_HF_RCO is bit 21 of the flags word, the low byte of the
    // VNI word holds start >> 1 (7 bits) and 0x80 for UDP's checksum field.
    const h = Buffer.from('0820000000000111', 'hex'); // I + C, VNI 1, start 34 (TCP)
    expect(h[1]).to.equal(VXLAN_FLAG_RCO);
    expect(vxlanRco(h, 0)).to.equal(0x11);
    expect(new VxlanView().reset(h, 0, 8)).to.equal(ParseError.Ok);
    expect(VxlanView.parse(h).vni).to.equal(1);
    expect(vxlanRcoByte(34, false)).to.equal(0x11);
    expect(vxlanRcoByte(34, true)).to.equal(0x91);
    expect(vxlanRcoByte(254, false)).to.equal(0x7f);
    expect(vxlanRcoStart(0x11)).to.equal(34);
    expect(vxlanRcoStart(0x91)).to.equal(34);
    const built = Buffer.alloc(8);
    writeVxlanHeader(built, 0, 1);
    setVxlanRco(built, 0, 34, false);
    expect(built.equals(h)).to.equal(true);
    const plain = Buffer.alloc(8);
    writeVxlanHeader(plain, 0, 1);
    expect(vxlanRco(plain, 0), 'no C bit: no RCO, whatever the reserved byte holds').to.equal(-1);
    plain[7] = 0x11;
    expect(vxlanRco(plain, 0)).to.equal(-1);
  });
});
