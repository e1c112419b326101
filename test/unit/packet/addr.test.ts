import { expect } from 'chai';
import {
  inSubnet,
  ipv4ToString,
  isBroadcastMac,
  isMulticastMacHi,
  macToString,
  PacketError,
  parseCidr,
  parseIpv4,
  parseMac,
  prefixToMask,
  readIpv4,
  readMacHi,
  readMacLo,
  writeIpv4,
  writeMac,
} from '../../../src/packet/index.js';
import { parseIpv4 as parseIpv4FromAddr } from '../../../src/packet/addr.js';
import { hex, junk, placements } from './util.js';

function expectPacketError(fn: () => unknown, code: string, mentions: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(PacketError);
    expect((e as PacketError).code).to.equal(code);
    expect((e as PacketError).message).to.contain(mentions);
    return;
  }
  expect.fail(`expected PacketError ${code} for ${mentions}`);
}

describe('packet/addr', () => {
  describe('IPv4', () => {
    it('parses dotted quads to unsigned numbers', () => {
      for (const parse of [parseIpv4, parseIpv4FromAddr]) {
        expect(parse('10.244.0.1')).to.equal(0x0af40001);
        expect(parse('0.0.0.0')).to.equal(0);
        expect(parse('255.255.255.255')).to.equal(0xffffffff);
        expect(parse('192.168.1.200')).to.equal(0xc0a801c8);
      }
    });

    it('rejects everything else, naming the input', () => {
      const bad = [
        '',
        '1.2.3',
        '1.2.3.4.5',
        '256.1.1.1',
        '1.2.3.256',
        '01.2.3.4',
        '1.2.3.00',
        ' 1.2.3.4',
        '1.2.3.4 ',
        '1.2.3.-4',
        '+1.2.3.4',
        '1.2.3.4/24',
        'a.b.c.d',
        '1..2.3',
        '0x1.2.3.4',
        '1.2.3.4.',
        '\uff11.2.3.4',
        '1e2.2.3.4',
      ];
      for (const s of bad) expectPacketError(() => parseIpv4(s), 'BadAddress', JSON.stringify(s));
      expectPacketError(() => parseIpv4(42 as unknown as string), 'BadAddress', '42');
    });

    it('formats and round-trips', () => {
      expect(ipv4ToString(0x0af40001)).to.equal('10.244.0.1');
      expect(ipv4ToString(0xffffffff)).to.equal('255.255.255.255');
      expect(ipv4ToString(-1)).to.equal('255.255.255.255');
      expect(ipv4ToString(0)).to.equal('0.0.0.0');
      for (const s of ['1.2.3.4', '172.16.254.1', '224.0.0.251']) expect(ipv4ToString(parseIpv4(s))).to.equal(s);
    });

    it('reads and writes through Buffers with a non-zero byteOffset', () => {
      for (const p of placements(hex('c0a80001'))) {
        expect(readIpv4(p.buf, p.off), p.name).to.equal(0xc0a80001);
        writeIpv4(p.buf, p.off, 0xfffffffe);
        expect(readIpv4(p.buf, p.off)).to.equal(0xfffffffe);
        writeIpv4(p.buf, p.off, -2); // signed form of the same bits
        expect(readIpv4(p.buf, p.off)).to.equal(0xfffffffe);
      }
    });

    it('parses CIDRs', () => {
      expect(parseCidr('10.244.1.7/24')).to.deep.equal({
        addr: 0x0af40107,
        prefix: 24,
        mask: 0xffffff00,
        network: 0x0af40100,
      });
      expect(parseCidr('0.0.0.0/0')).to.deep.equal({ addr: 0, prefix: 0, mask: 0, network: 0 });
      expect(parseCidr('192.168.7.9/32')).to.deep.equal({
        addr: 0xc0a80709,
        prefix: 32,
        mask: 0xffffffff,
        network: 0xc0a80709,
      });
      expect(parseCidr('200.1.2.3/1').network).to.equal(0x80000000);
      for (let p = 0; p <= 32; p++) expect(prefixToMask(p)).to.be.at.least(0);
      expect(prefixToMask(16)).to.equal(0xffff0000);
    });

    it('rejects bad CIDRs, naming the input', () => {
      for (const s of ['10.0.0.0', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/08', '10.0.0.0/', '10.0.0.0/24/1', '/24', '10.0.0/8', '10.0.0.0/ 8']) {
        expectPacketError(() => parseCidr(s), 'BadCidr', JSON.stringify(s));
      }
    });

    it('tests subnet membership with unsigned addresses', () => {
      const c = parseCidr('10.244.1.0/24');
      expect(inSubnet(parseIpv4('10.244.1.9'), c.network, c.mask)).to.equal(true);
      expect(inSubnet(parseIpv4('10.244.2.9'), c.network, c.mask)).to.equal(false);
      const h = parseCidr('192.168.128.5/17'); // host bits in the address: network is used
      expect(inSubnet(parseIpv4('192.168.255.255'), h.network, h.mask)).to.equal(true);
      expect(inSubnet(parseIpv4('192.168.127.255'), h.network, h.mask)).to.equal(false);
      expect(inSubnet(parseIpv4('192.168.200.1'), h.addr, h.mask)).to.equal(true);
      const all = parseCidr('0.0.0.0/0');
      expect(inSubnet(0xffffffff, all.network, all.mask)).to.equal(true);
      const one = parseCidr('255.255.255.255/32');
      expect(inSubnet(0xffffffff, one.network, one.mask)).to.equal(true);
      expect(inSubnet(0xfffffffe, one.network, one.mask)).to.equal(false);
    });
  });

  describe('MAC', () => {
    it('parses to (hi16, lo32) and formats back in lower case', () => {
      expect(parseMac('52:54:00:AA:00:01')).to.deep.equal({ hi: 0x5254, lo: 0x00aa0001 });
      expect(parseMac('ff:ff:ff:ff:ff:ff')).to.deep.equal({ hi: 0xffff, lo: 0xffffffff });
      expect(macToString(0x5254, 0x00aa0001)).to.equal('52:54:00:aa:00:01');
      expect(macToString(0xffff, 0xffffffff)).to.equal('ff:ff:ff:ff:ff:ff');
      expect(macToString(0, 0)).to.equal('00:00:00:00:00:00');
      expect(macToString(0x0a0b, 0x0c0d0e0f)).to.equal('0a:0b:0c:0d:0e:0f');
    });

    it('rejects other spellings, naming the input', () => {
      for (const s of ['52:54:00:aa:00', '52-54-00-aa-00-01', '5254.00aa.0001', '52:54:00:aa:00:1', '52:54:00:aa:00:01:02', 'gg:54:00:aa:00:01', '', '525400aa0001']) {
        expectPacketError(() => parseMac(s), 'BadMac', JSON.stringify(s));
      }
    });

    it('reads and writes through Buffers with a non-zero byteOffset', () => {
      for (const p of placements(hex('525400aa0001'))) {
        expect(readMacHi(p.buf, p.off), p.name).to.equal(0x5254);
        expect(readMacLo(p.buf, p.off)).to.equal(0x00aa0001);
        writeMac(p.buf, p.off, 0xffff, 0xfffffffe);
        expect(readMacHi(p.buf, p.off)).to.equal(0xffff);
        expect(readMacLo(p.buf, p.off)).to.equal(0xfffffffe);
      }
      const b = junk(8);
      writeMac(b, 1, 0x0242, 0xac110002);
      expect(b.toString('hex')).to.equal('a50242ac110002a5');
    });

    it('classifies multicast and broadcast', () => {
      expect(isMulticastMacHi(0x0100)).to.equal(true);
      expect(isMulticastMacHi(0x3333)).to.equal(true);
      expect(isMulticastMacHi(0xffff)).to.equal(true);
      expect(isMulticastMacHi(0x5254)).to.equal(false);
      expect(isMulticastMacHi(0x0200)).to.equal(false);
      expect(isBroadcastMac(0xffff, 0xffffffff)).to.equal(true);
      expect(isBroadcastMac(0xffff, -1)).to.equal(true);
      expect(isBroadcastMac(0xffff, 0xfffffffe)).to.equal(false);
      expect(isBroadcastMac(0x0100, 0x5e000001)).to.equal(false);
    });
  });
});
