// Randomized (seeded, deterministic): RFC 1624 incremental updates must equal full recomputation,
// including the cases where the result is 0x0000 and, for UDP, 0xffff.
import { expect } from 'chai';
import {
  checksum,
  Ipv4ViewMut,
  ParseError,
  pseudoHeaderSum,
  sum16,
  TcpViewMut,
  UdpViewMut,
  updateChecksum16,
  updateChecksum32,
  updateUdpChecksum16,
  updateUdpChecksum32,
} from '../../../src/packet/index.js';
import { Prng } from './util.js';

const ROUNDS = 20000;

/** A random IPv4 header (IHL 5..15, random options and other fields) with a correct checksum. */
function randomIpv4Header(rng: Prng): Buffer {
  const ihl = 5 + rng.below(11);
  const h = rng.bytes(ihl * 4);
  h[0] = 0x40 | ihl;
  h.writeUInt16BE(ihl * 4, 2); // a header-only packet, so Ipv4View accepts it
  h.writeUInt16BE(0, 10);
  h.writeUInt16BE(checksum(h, 0, ihl * 4), 10);
  return h;
}

function fullIpv4(h: Buffer): number {
  const c = Buffer.from(h);
  c.writeUInt16BE(0, 10);
  return checksum(c, 0, (c[0] & 0x0f) * 4);
}

describe('packet/checksum: RFC 1624 incremental == full recomputation (randomized)', function () {
  this.timeout(20000);
  it('IPv4 header: random 16-bit word changes', () => {
    const rng = new Prng(0x1624);
    let zeros = 0;
    for (let n = 0; n < ROUNDS; n++) {
      const h = randomIpv4Header(rng);
      const hlen = h.length;
      // Any word but the checksum; word 0 keeps its version nibble.
      let w = 2 * rng.below(hlen / 2);
      if (w === 10) w = 12;
      const old = h.readUInt16BE(w);
      let neu = rng.u16();
      if (w === 0) neu = (h[0] << 8) | (neu & 0xff);
      if (n % 8 === 0) {
        // Force the corner case: choose the new word so that the new checksum is 0x0000
        // (the other words plus the new one sum to 0xffff).
        const c = Buffer.from(h);
        c.writeUInt16BE(0, 10);
        c.writeUInt16BE(0, w);
        const others = sum16(c, 0, hlen);
        const forced = ~others & 0xffff;
        if (w !== 0 || forced >> 8 === h[0]) neu = forced;
      }
      const before = h.readUInt16BE(10);
      h.writeUInt16BE(neu, w);
      const full = fullIpv4(h);
      const inc = updateChecksum16(before, old, neu);
      expect(inc, `round ${n}: word ${w} ${old.toString(16)} -> ${neu.toString(16)}`).to.equal(full);
      if (full === 0) zeros++;
      h.writeUInt16BE(inc, 10);
      expect(sum16(h, 0, hlen)).to.equal(0xffff);
    }
    expect(zeros, 'forced 0x0000 results').to.be.greaterThan(ROUNDS / 10);
  });

  it('IPv4 header: address (32-bit) changes, as NAT does', () => {
    const rng = new Prng(0xa7);
    for (let n = 0; n < ROUNDS; n++) {
      const h = randomIpv4Header(rng);
      const at = rng.below(2) === 0 ? 12 : 16;
      const old = h.readUInt32BE(at);
      const neu = rng.u32();
      const before = h.readUInt16BE(10);
      h.writeUInt32BE(neu, at);
      expect(updateChecksum32(before, old, neu), `round ${n}`).to.equal(fullIpv4(h));
    }
  });

  it('IPv4 decrementTtl keeps the header checksum equal to a full recomputation', () => {
    const rng = new Prng(0x77);
    const v = new Ipv4ViewMut();
    for (let n = 0; n < 200; n++) {
      const h = randomIpv4Header(rng);
      expect(v.reset(h, 0, h.length)).to.equal(ParseError.Ok);
      let ttl = v.ttl;
      while (ttl > 0) {
        expect(v.decrementTtl()).to.equal(ttl - 1);
        ttl--;
        expect(v.ttl).to.equal(ttl);
        expect(v.checksum, `round ${n} ttl ${ttl}`).to.equal(fullIpv4(h));
        expect(v.verifyChecksum()).to.equal(true);
      }
      expect(v.decrementTtl()).to.equal(0);
      expect(v.verifyChecksum()).to.equal(true);
    }
  });

  it('UDP: port and address changes, with 0 -> 0xffff on both sides', () => {
    const rng = new Prng(0x768);
    const v = new UdpViewMut();
    let computedZero = 0;
    let startedAtFfff = 0;
    for (let n = 0; n < ROUNDS; n++) {
      const payload = 2 + rng.below(60);
      const d = rng.bytes(8 + payload);
      d.writeUInt16BE(d.length, 4);
      let src = rng.u32();
      let dst = rng.u32();
      expect(v.reset(d, 0, d.length)).to.equal(ParseError.Ok);
      if (n % 8 === 0) {
        // Make the datagram's computed checksum 0 (sent as 0xffff) by fixing its first payload word.
        d.writeUInt16BE(0, 6);
        d.writeUInt16BE(0, 8);
        const s = sum16(d, 0, d.length, pseudoHeaderSum(src, dst, 17, d.length));
        d.writeUInt16BE(~s & 0xffff, 8);
      }
      v.fillChecksum(src, dst);
      if (v.checksum === 0xffff) startedAtFfff++;
      const before = v.checksum;
      let inc: number;
      switch (n % 16 === 1 ? 0 : rng.below(3)) {
        case 0: {
          const old = v.srcPort;
          let neu = rng.u16();
          if (n % 16 === 1) {
            // Force a full recomputation of 0 (sent as 0xffff): the new port completes the sum to 0xffff.
            const c = Buffer.from(d);
            c.writeUInt16BE(0, 0);
            c.writeUInt16BE(0, 6);
            neu = ~sum16(c, 0, c.length, pseudoHeaderSum(src, dst, 17, c.length)) & 0xffff;
          }
          v.setSrcPort(neu);
          inc = updateUdpChecksum16(before, old, neu);
          break;
        }
        case 1: {
          const neu = rng.u32();
          inc = updateUdpChecksum32(before, src, neu);
          src = neu;
          break;
        }
        default: {
          const neu = rng.u32();
          inc = updateUdpChecksum32(before, dst, neu);
          dst = neu;
          break;
        }
      }
      const copy = Buffer.from(d);
      const w = new UdpViewMut();
      w.reset(copy, 0, copy.length);
      w.fillChecksum(src, dst);
      if (w.checksum === 0xffff) computedZero++;
      expect(inc, `round ${n}`).to.equal(w.checksum);
      v.setChecksum(inc);
      expect(v.verifyChecksum(src, dst)).to.equal(true);
    }
    expect(startedAtFfff, 'datagrams whose checksum started as 0xffff').to.be.greaterThan(ROUNDS / 10);
    expect(computedZero, 'changes whose result was 0 (sent as 0xffff)').to.be.greaterThan(ROUNDS / 20);
  });

  it('UDP: a checksum of 0 (none) stays 0', () => {
    const rng = new Prng(5);
    for (let n = 0; n < 1000; n++) {
      expect(updateUdpChecksum16(0, rng.u16(), rng.u16())).to.equal(0);
      expect(updateUdpChecksum32(0, rng.u32(), rng.u32())).to.equal(0);
    }
  });

  it('TCP: sequence, port and address changes', () => {
    const rng = new Prng(0x793);
    const v = new TcpViewMut();
    for (let n = 0; n < ROUNDS; n++) {
      const seg = rng.bytes(20 + rng.below(100));
      seg[12] = 5 << 4;
      const src = rng.u32();
      let dst = rng.u32();
      expect(v.reset(seg, 0, seg.length)).to.equal(ParseError.Ok);
      v.fillChecksum(src, dst);
      const before = v.checksum;
      let inc: number;
      switch (rng.below(3)) {
        case 0: {
          const old = v.seq;
          const neu = rng.u32();
          v.setSeq(neu);
          inc = updateChecksum32(before, old, neu);
          break;
        }
        case 1: {
          const old = v.dstPort;
          const neu = rng.u16();
          v.setDstPort(neu);
          inc = updateChecksum16(before, old, neu);
          break;
        }
        default: {
          const neu = rng.u32();
          inc = updateChecksum32(before, dst, neu);
          dst = neu;
          break;
        }
      }
      v.fillChecksum(src, dst);
      expect(inc, `round ${n}`).to.equal(v.checksum);
    }
  });
});
