import { expect } from 'chai';
import {
  checksum,
  ipv4HeaderSum,
  pseudoHeaderSum,
  sum16,
  updateChecksum16,
  updateChecksum32,
  updateUdpChecksum16,
  updateUdpChecksum32,
} from '../../../src/packet/index.js';
import { ICMP_ECHO_REQUEST, TCP_SYN } from './golden.js';
import { hex, placements, Prng } from './util.js';

/** Straightforward reference: 16-bit words, end-around carry after every addition. */
function refSum(bytes: Buffer, initial = 0): number {
  let s = initial;
  for (let i = 0; i < bytes.length; i += 2) {
    s += (bytes[i] << 8) | (i + 1 < bytes.length ? bytes[i + 1] : 0);
    if (s > 0xffff) s = (s & 0xffff) + 1;
  }
  return s;
}

describe('packet/checksum', () => {
  it('RFC 1071 section 3 example: sum ddf2, checksum 220d', () => {
    const b = hex('0001 f203 f4f5 f6f7');
    expect(sum16(b, 0, b.length)).to.equal(0xddf2);
    expect(checksum(b, 0, b.length)).to.equal(0x220d);
    // Appending the checksum makes the region sum to 0xffff.
    const withCsum = Buffer.concat([b, hex('220d')]);
    expect(sum16(withCsum, 0, withCsum.length)).to.equal(0xffff);
  });

  it('pads an odd trailing byte with a zero low byte', () => {
    expect(sum16(hex('01'), 0, 1)).to.equal(0x0100);
    expect(sum16(hex('0001 f2'), 0, 3)).to.equal(0xf201);
    expect(sum16(hex('0001 f2 99'), 0, 3)).to.equal(0xf201);
    expect(sum16(hex('0001 f203 f4'), 0, 5)).to.equal(refSum(hex('0001 f203 f4')));
  });

  it('distinguishes zero data (0) from a non-zero sum congruent to zero (0xffff)', () => {
    expect(sum16(Buffer.alloc(10), 0, 10)).to.equal(0);
    expect(sum16(Buffer.alloc(0), 0, 0)).to.equal(0);
    expect(sum16(hex('ffff'), 0, 2)).to.equal(0xffff);
    expect(sum16(hex('fffe 0001'), 0, 4)).to.equal(0xffff);
    expect(checksum(Buffer.alloc(4), 0, 4)).to.equal(0xffff);
  });

  it('adds `initial`', () => {
    expect(sum16(hex('0001'), 0, 2, 0x1234)).to.equal(0x1235);
    expect(sum16(hex('ffff'), 0, 2, 0x0001)).to.equal(0x0001);
    expect(sum16(Buffer.alloc(0), 0, 0, 0xabcd)).to.equal(0xabcd);
  });

  it('folds sums beyond 32 bits (1 MiB of 0xff)', () => {
    const b = Buffer.alloc(1 << 20, 0xff);
    expect(sum16(b, 0, b.length)).to.equal(0xffff);
    const c = Buffer.alloc((1 << 20) + 1, 0xff);
    expect(sum16(c, 0, c.length)).to.equal(refSum(c));
  });

  it('matches the reference on random regions, offsets and lengths (all placements)', () => {
    const rng = new Prng(0x1071);
    for (let n = 0; n < 300; n++) {
      const len = rng.below(200);
      const bytes = rng.bytes(len);
      const initial = rng.u16();
      for (const p of placements(bytes)) {
        expect(sum16(p.buf, p.off, len, initial), `${p.name} len ${len}`).to.equal(refSum(bytes, initial));
      }
    }
  });

  it('verifies real kernel checksums', () => {
    // IPv4 header of the echo request; ICMP message after it.
    expect(sum16(ICMP_ECHO_REQUEST, 14, 20)).to.equal(0xffff);
    expect(sum16(ICMP_ECHO_REQUEST, 34, 24)).to.equal(0xffff);
    const h = Buffer.from(ICMP_ECHO_REQUEST.subarray(14, 34));
    h.writeUInt16BE(0, 10);
    expect(checksum(h, 0, 20)).to.equal(0xd8a6);
  });

  it('pseudoHeaderSum equals the sum of an explicit pseudo-header', () => {
    const rng = new Prng(7);
    for (let n = 0; n < 200; n++) {
      const src = rng.u32();
      const dst = rng.u32();
      const proto = rng.below(256);
      const len = rng.u16();
      const ph = Buffer.alloc(12);
      ph.writeUInt32BE(src, 0);
      ph.writeUInt32BE(dst, 4);
      ph[9] = proto;
      ph.writeUInt16BE(len, 10);
      expect(pseudoHeaderSum(src, dst, proto, len)).to.equal(refSum(ph));
    }
    // And a real TCP segment: pseudo-header + segment sums to 0xffff.
    const seg = TCP_SYN.subarray(34);
    expect(sum16(seg, 0, seg.length, pseudoHeaderSum(0x0a000001, 0x0a000002, 6, seg.length))).to.equal(0xffff);
  });

  it('throws RangeError for a region outside the buffer', () => {
    const b = Buffer.alloc(8);
    expect(() => sum16(b, 4, 5)).to.throw(RangeError);
    expect(() => sum16(b, -1, 2)).to.throw(RangeError);
    expect(() => checksum(b, 0, -2)).to.throw(RangeError);
    expect(() => sum16(b.subarray(2), 0, 7)).to.throw(RangeError);
  });

  describe('RFC 1624 incremental update', () => {
    it('section 4 example: eqn. 3 gives 0x0000 where eqn. 2 gave 0xffff', () => {
      // Other header words sum to 0xcd7a; m = 0x5555 -> m' = 0x3285.
      const fold = (x: number): number => (x & 0xffff) + (x >>> 16);
      expect(fold(0xcd7a + 0x5555)).to.equal(0x22d0);
      expect(~fold(0xcd7a + 0x5555) & 0xffff).to.equal(0xdd2f);
      expect(updateChecksum16(0xdd2f, 0x5555, 0x3285)).to.equal(0x0000);
      // Full recomputation agrees.
      expect(~fold(0xcd7a + 0x3285) & 0xffff).to.equal(0x0000);
      // Eqn. 2 (RFC 1141), HC' = HC - ~m - m' in ones'-complement arithmetic, gives 0xffff instead.
      const sub = (a: number, b: number): number => fold(a + (~b & 0xffff));
      expect(sub(sub(0xdd2f, ~0x5555 & 0xffff), 0x3285)).to.equal(0xffff);
    });

    it('starts from a 0x0000 checksum', () => {
      // Reverse of the example: from HC = 0x0000 (m = 0x3285) back to m = 0x5555.
      expect(updateChecksum16(0x0000, 0x3285, 0x5555)).to.equal(0xdd2f);
    });

    it('is the identity when nothing changes, and an update followed by its undo restores', () => {
      const rng = new Prng(99);
      for (let n = 0; n < 1000; n++) {
        const c = rng.u16();
        const a = rng.u16();
        const b = rng.u16();
        if (c !== 0xffff) expect(updateChecksum16(c, a, a)).to.equal(c);
        const there = updateChecksum16(c, a, b);
        if (c !== 0xffff) expect(updateChecksum16(there, b, a)).to.equal(c);
      }
    });

    it('updateChecksum32 equals two 16-bit updates', () => {
      const rng = new Prng(32);
      for (let n = 0; n < 1000; n++) {
        const c = rng.u16();
        const o = rng.u32();
        const v = rng.u32();
        const twice = updateChecksum16(updateChecksum16(c, o >>> 16, v >>> 16), o & 0xffff, v & 0xffff);
        expect(updateChecksum32(c, o, v)).to.equal(twice);
      }
    });

    it('echo request -> reply: type 8 -> 0 turns ebbe into the kernel\'s f3be', () => {
      expect(updateChecksum16(0xebbe, 0x0800, 0x0000)).to.equal(0xf3be);
    });

    it('UDP flavour keeps 0 ("none") and sends a computed 0 as 0xffff', () => {
      expect(updateUdpChecksum16(0, 0x1234, 0x4321)).to.equal(0);
      expect(updateUdpChecksum32(0, 0x0a000001, 0x0a000002)).to.equal(0);
      // 0xdd2f with 0x5555 -> 0x3285 gives 0x0000 (see above): UDP sends it as 0xffff.
      expect(updateChecksum16(0xdd2f, 0x5555, 0x3285)).to.equal(0);
      expect(updateUdpChecksum16(0xdd2f, 0x5555, 0x3285)).to.equal(0xffff);
      expect(updateUdpChecksum32(0xdd2f, 0x5555, 0x3285)).to.equal(0xffff);
    });
  });

  it('ipv4HeaderSum equals sum16 over IPv4 headers of every length, with or without options', () => {
    const rng = new Prng(11);
    for (let hlen = 20; hlen <= 60; hlen += 4) {
      for (let t = 0; t < 200; t++) {
        const b = Buffer.alloc(hlen + 9);
        for (let i = 0; i < b.length; i++) b[i] = t % 7 === 0 ? 0xff : rng.u32() & 0xff;
        for (const { buf, off } of placements(b.subarray(0, hlen))) {
          expect(ipv4HeaderSum(buf, off, hlen)).to.equal(sum16(buf, off, hlen));
        }
      }
    }
  });
});
