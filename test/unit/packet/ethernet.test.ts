import { expect } from 'chai';
import {
  emitEthernet,
  ETH_HLEN,
  ethernetBufferLen,
  EthernetView,
  EthernetViewMut,
  EtherType,
  PacketError,
  parseEthernet,
  ParseError,
  writeEthernetHeader,
} from '../../../src/packet/index.js';
import { ARP_REQUEST, ICMP_ECHO_REQUEST } from './golden.js';
import { junk, placements } from './util.js';

describe('packet/ethernet', () => {
  it('reads a real frame at every placement', () => {
    const v = new EthernetView();
    for (const p of placements(ICMP_ECHO_REQUEST)) {
      expect(v.reset(p.buf, p.off, ICMP_ECHO_REQUEST.length), p.name).to.equal(ParseError.Ok);
      expect(v.dstHi).to.equal(0x5254);
      expect(v.dstLo).to.equal(0x00bb0002);
      expect(v.srcHi).to.equal(0x5254);
      expect(v.srcLo).to.equal(0x00aa0001);
      expect(v.etherType).to.equal(EtherType.IPv4);
      expect(v.isBroadcast).to.equal(false);
      expect(v.isMulticast).to.equal(false);
      expect(v.payloadOffset).to.equal(p.off + 14);
      expect(v.payloadLength).to.equal(44);
      expect(v.buf).to.equal(p.buf);
      expect(v.off).to.equal(p.off);
      expect(v.len).to.equal(58);
    }
  });

  it('recognises broadcast (which is also multicast)', () => {
    const v = EthernetView.parse(ARP_REQUEST);
    expect(v.isBroadcast).to.equal(true);
    expect(v.isMulticast).to.equal(true);
    expect(v.dstLo).to.equal(0xffffffff);
    expect(v.etherType).to.equal(EtherType.ARP);
    const m = Buffer.from(ARP_REQUEST);
    m.write('01005e0000fb', 0, 'hex');
    expect(EthernetView.parse(m).isMulticast).to.equal(true);
    expect(EthernetView.parse(m).isBroadcast).to.equal(false);
  });

  it('keeps unknown EtherTypes', () => {
    const f = Buffer.from(ICMP_ECHO_REQUEST);
    f.writeUInt16BE(0x88cc, 12);
    expect(EthernetView.parse(f).etherType).to.equal(0x88cc);
  });

  it('rejects truncated frames and regions outside the buffer', () => {
    const v = new EthernetView();
    expect(v.reset(ICMP_ECHO_REQUEST, 0, 13)).to.equal(ParseError.Truncated);
    expect(v.reset(ICMP_ECHO_REQUEST, 0, 14)).to.equal(ParseError.Ok);
    expect(v.payloadLength).to.equal(0);
    expect(v.reset(ICMP_ECHO_REQUEST, 50, 14)).to.equal(ParseError.Truncated);
    expect(v.reset(ICMP_ECHO_REQUEST, -1, 20)).to.equal(ParseError.Truncated);
    expect(v.reset(ICMP_ECHO_REQUEST.subarray(0, 10), 0, 14)).to.equal(ParseError.Truncated);
    expect(() => EthernetView.parse(ICMP_ECHO_REQUEST.subarray(0, 13))).to.throw(PacketError, /Ethernet: Truncated/);
    try {
      EthernetView.parse(Buffer.alloc(3));
    } catch (e) {
      expect((e as PacketError).code).to.equal('Truncated');
    }
  });

  it('parse on the Mut class gives a Mut view', () => {
    const v = EthernetViewMut.parse(Buffer.from(ICMP_ECHO_REQUEST));
    expect(v).to.be.instanceOf(EthernetViewMut);
    v.setEtherType(EtherType.ARP);
    expect(v.etherType).to.equal(EtherType.ARP);
  });

  it('setters on junk memory produce the real header, touching nothing else', () => {
    for (const p of placements(junk(ETH_HLEN + 4))) {
      const v = new EthernetViewMut();
      expect(v.reset(p.buf, p.off, ETH_HLEN)).to.equal(ParseError.Ok);
      v.setDst(0x5254, 0x00bb0002);
      v.setSrc(0x5254, 0x00aa0001);
      v.setEtherType(EtherType.IPv4);
      expect(p.buf.subarray(p.off, p.off + ETH_HLEN).equals(ICMP_ECHO_REQUEST.subarray(0, ETH_HLEN)), p.name).to.equal(true);
      expect(p.buf[p.off + ETH_HLEN]).to.equal(0xa5);
      if (p.off > 0) expect(p.buf[p.off - 1]).to.equal(0xa5);
    }
  });

  it('emits the golden header from a Repr and from numbers', () => {
    const repr = { dst: '52:54:00:bb:00:02', src: '52:54:00:aa:00:01', etherType: EtherType.IPv4 };
    const b = junk(20);
    expect(emitEthernet(repr, b, 3)).to.equal(ETH_HLEN);
    expect(ethernetBufferLen(repr)).to.equal(ETH_HLEN);
    expect(b.subarray(3, 17).equals(ICMP_ECHO_REQUEST.subarray(0, 14))).to.equal(true);
    expect(b[2]).to.equal(0xa5);
    expect(b[17]).to.equal(0xa5);
    const c = junk(14);
    expect(writeEthernetHeader(c, 0, 0x5254, 0x00bb0002, 0x5254, 0x00aa0001, 0x0800)).to.equal(14);
    expect(c.equals(ICMP_ECHO_REQUEST.subarray(0, 14))).to.equal(true);
  });

  it('round-trips the Repr', () => {
    const repr = parseEthernet(EthernetView.parse(ARP_REQUEST));
    expect(repr).to.deep.equal({ dst: 'ff:ff:ff:ff:ff:ff', src: '52:54:00:cc:00:01', etherType: 0x0806 });
    const b = junk(14);
    emitEthernet(repr, b, 0);
    expect(b.equals(ARP_REQUEST.subarray(0, 14))).to.equal(true);
    expect(() => emitEthernet({ ...repr, dst: 'nope' }, b, 0)).to.throw(PacketError, /nope/);
  });
});
