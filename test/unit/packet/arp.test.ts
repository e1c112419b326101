import { expect } from 'chai';
import {
  ARP_LEN,
  arpBufferLen,
  ArpOp,
  ArpView,
  ArpViewMut,
  emitArp,
  ETH_HLEN,
  EthernetView,
  PacketError,
  parseArp,
  ParseError,
  writeArp,
} from '../../../src/packet/index.js';
import { ARP_REPLY, ARP_REQUEST } from './golden.js';
import { junk, placements } from './util.js';

const REQUEST_BODY = ARP_REQUEST.subarray(ETH_HLEN);
const REPLY_BODY = ARP_REPLY.subarray(ETH_HLEN);

describe('packet/arp', () => {
  it('reads a real request at every placement', () => {
    const eth = new EthernetView();
    const v = new ArpView();
    for (const p of placements(ARP_REQUEST)) {
      expect(eth.reset(p.buf, p.off, ARP_REQUEST.length), p.name).to.equal(ParseError.Ok);
      expect(v.reset(p.buf, eth.payloadOffset, eth.payloadLength)).to.equal(ParseError.Ok);
      expect(v.operation).to.equal(ArpOp.Request);
      expect(v.senderMacHi).to.equal(0x5254);
      expect(v.senderMacLo).to.equal(0x00cc0001);
      expect(v.senderIp).to.equal(0x0a010001);
      expect(v.targetMacHi).to.equal(0);
      expect(v.targetMacLo).to.equal(0);
      expect(v.targetIp).to.equal(0x0a010002);
    }
  });

  it('accepts Ethernet minimum-size padding after the 28 bytes', () => {
    const padded = Buffer.concat([REQUEST_BODY, Buffer.alloc(18)]);
    expect(ArpView.parse(padded).targetIp).to.equal(0x0a010002);
  });

  it('rejects truncated and non-Ethernet/IPv4 packets', () => {
    const v = new ArpView();
    expect(v.reset(REQUEST_BODY, 0, 27)).to.equal(ParseError.Truncated);
    expect(v.reset(REQUEST_BODY.subarray(0, 27), 0, 28)).to.equal(ParseError.Truncated);
    const cases: Array<[number, string]> = [
      [0, '0006'], // htype IEEE 802
      [2, '86dd'], // ptype IPv6
      [4, '08'], // hlen
      [5, '10'], // plen
    ];
    for (const [at, bytes] of cases) {
      const b = Buffer.from(REQUEST_BODY);
      b.write(bytes, at, 'hex');
      expect(v.reset(b, 0, b.length), `byte ${at}`).to.equal(ParseError.Unsupported);
    }
    expect(() => ArpView.parse(REQUEST_BODY.subarray(0, 20))).to.throw(PacketError, /ARP: Truncated/);
  });

  it('keeps unknown operations', () => {
    const b = Buffer.from(REQUEST_BODY);
    b.writeUInt16BE(9, 6);
    expect(ArpView.parse(b).operation).to.equal(9);
  });

  it('turns the real request into the kernel\'s reply in place', () => {
    for (const p of placements(REQUEST_BODY)) {
      const w = new ArpViewMut();
      expect(w.reset(p.buf, p.off, ARP_LEN)).to.equal(ParseError.Ok);
      const senderHi = w.senderMacHi;
      const senderLo = w.senderMacLo;
      const senderIp = w.senderIp;
      const targetIp = w.targetIp;
      w.setOperation(ArpOp.Reply);
      w.setTargetMac(senderHi, senderLo);
      w.setTargetIp(senderIp);
      w.setSenderMac(0x5254, 0x00dd0002);
      w.setSenderIp(targetIp);
      expect(p.buf.subarray(p.off, p.off + ARP_LEN).equals(REPLY_BODY), p.name).to.equal(true);
    }
  });

  it('emits the golden reply from a Repr and from numbers, into junk', () => {
    const repr = parseArp(ArpView.parse(REPLY_BODY));
    expect(repr).to.deep.equal({
      operation: ArpOp.Reply,
      senderMac: '52:54:00:dd:00:02',
      senderIp: '10.1.0.2',
      targetMac: '52:54:00:cc:00:01',
      targetIp: '10.1.0.1',
    });
    const b = junk(ARP_LEN + 2);
    expect(emitArp(repr, b, 1)).to.equal(ARP_LEN);
    expect(arpBufferLen(repr)).to.equal(ARP_LEN);
    expect(b.subarray(1, 1 + ARP_LEN).equals(REPLY_BODY)).to.equal(true);
    expect(b[0]).to.equal(0xa5);
    expect(b[ARP_LEN + 1]).to.equal(0xa5);
    const c = junk(ARP_LEN);
    writeArp(c, 0, ArpOp.Request, 0x5254, 0x00cc0001, 0x0a010001, 0, 0, 0x0a010002);
    expect(c.equals(REQUEST_BODY)).to.equal(true);
    expect(() => emitArp({ ...repr, senderIp: '10.1.0' }, b, 0)).to.throw(PacketError, /10\.1\.0/);
  });
});
