import { expect } from 'chai';
import { copyBytes } from '../../../src/io/copy.js';
import { loadAddon } from '../../../src/io/addon.js';
import { sum16, useNativeSum16 } from '../../../src/packet/checksum.js';
import { layoutTcpSegments, moveSums, useNativeSegmentOps } from '../../../src/packet/segment.js';

describe('io/copy: copyBytes (addon memmove)', () => {
  it('copies a range between buffers, honouring subarray offsets, and within one buffer', () => {
    const src = Buffer.from('0011223344556677', 'hex').subarray(1);
    const dst = Buffer.alloc(8, 0xa5);
    copyBytes(dst, 2, src, 1, 4);
    expect(dst.toString('hex')).to.equal('a5a5' + '22334455' + 'a5a5');
    const b = Buffer.from('0102030405', 'hex');
    copyBytes(b, 1, b, 0, 4); // overlapping: memmove semantics
    expect(b.toString('hex')).to.equal('0101020304');
  });

  it('throws RangeError for a range outside either buffer, and copies nothing', () => {
    const a = Buffer.alloc(4);
    expect(() => copyBytes(a, 2, Buffer.alloc(8), 0, 3)).to.throw(RangeError);
    expect(() => copyBytes(Buffer.alloc(8), 0, a, 2, 3)).to.throw(RangeError);
    expect(a.toString('hex')).to.equal('00000000');
  });
});

describe('io/addon: native sum16', () => {
  it('gives exactly what the JavaScript sum16 gives, for every length, offset and initial sum', () => {
    const native = loadAddon().sum16;
    const buf = Buffer.alloc(4096);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 197 + 11) & 0xff;
    useNativeSum16(undefined); // the JavaScript loop alone, for reference
    try {
      for (let len = 0; len <= 300; len++) {
        for (const off of [0, 1, 2, 3, 1001]) {
          for (const initial of [0, 1, 0x1234, 0xffff]) {
            expect(native(buf, off, len, initial), `off ${off} len ${len} initial ${initial}`).to.equal(sum16(buf, off, len, initial));
          }
        }
      }
      expect(native(buf, 0, 4096, 0)).to.equal(sum16(buf, 0, 4096, 0));
      expect(native(Buffer.alloc(64, 0xff), 0, 64, 0xffff)).to.equal(0xffff);
      // Long regions (the 64-byte vector steps, then the tail), all-ones words (every carry), odd ends.
      const big = Buffer.alloc(70004);
      for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
      const ones = Buffer.alloc(70004, 0xff);
      for (const len of [127, 128, 129, 191, 1448, 9000, 65535, 65536, 69999]) {
        for (const off of [0, 1, 3]) {
          expect(native(big, off, len, 0x4321), `big off ${off} len ${len}`).to.equal(sum16(big, off, len, 0x4321));
          expect(native(ones, off, len, 0), `ones off ${off} len ${len}`).to.equal(sum16(ones, off, len, 0));
        }
      }
    } finally {
      useNativeSum16(native);
    }
  });

  it('refuses a region outside the buffer', () => {
    expect(() => loadAddon().sum16(Buffer.alloc(10), 8, 4, 0)).to.throw(RangeError);
  });
});

describe('io/addon: native segment moves (moveSums, replicate)', () => {
  /** The same moves through the wire layer's JavaScript versions and through the addon's. */
  function both(fill: (b: Buffer) => void, run: () => void): { js: Buffer; native: Buffer } {
    const out: Buffer[] = [];
    for (const ops of [undefined, { moveSums: loadAddon().moveSums, replicate: loadAddon().replicate }]) {
      useNativeSegmentOps(ops);
      try {
        fill(shared);
        run();
        out.push(Buffer.from(shared));
      } finally {
        useNativeSegmentOps({ moveSums: loadAddon().moveSums, replicate: loadAddon().replicate });
      }
    }
    return { js: out[0]!, native: out[1]! };
  }
  const shared = Buffer.alloc(70_000);
  const pattern = (b: Buffer): void => {
    for (let i = 0; i < b.length; i++) b[i] = (i * 131 + 7) & 0xff;
  };

  it('lays a super-frame out in place exactly as the JavaScript does: the same bytes and payload sums', () => {
    for (const [hdr, payload, mss, gap] of [
      [54, 64_000, 1448, 50],
      [66, 3000, 1448, 0],
      [54, 1448, 1448, 50],
      [54, 1449, 1448, 50],
      [54, 777, 100, 7],
    ] as const) {
      const n = Math.ceil(payload / mss);
      const stride = hdr + mss + gap;
      const sumsJs = new Uint32Array(n);
      const sumsNative = new Uint32Array(n);
      let which = 0;
      const r = both(pattern, () => layoutTcpSegments(shared, 100, hdr, payload, mss, stride, n, which++ === 0 ? sumsJs : sumsNative));
      expect(r.native.equals(r.js), `hdr ${hdr} payload ${payload} mss ${mss}`).to.equal(true);
      expect(Array.from(sumsNative)).to.deep.equal(Array.from(sumsJs));
      // And what it should be: segment i = the headers, then payload bytes [i*mss, ...) of the original.
      const orig = Buffer.alloc(shared.length);
      pattern(orig);
      for (let i = 0; i < n; i++) {
        const size = i === n - 1 ? payload - i * mss : mss;
        const seg = 100 + i * stride;
        expect(r.native.subarray(seg, seg + hdr).equals(orig.subarray(100, 100 + hdr))).to.equal(true);
        const p = orig.subarray(100 + hdr + i * mss, 100 + hdr + i * mss + size);
        expect(r.native.subarray(seg + hdr, seg + hdr + size).equals(p)).to.equal(true);
        expect(sumsNative[i]).to.equal(sum16(p, 0, size));
      }
    }
  });

  it('sums strided regions without moving them, and moves backward in order (joining segments)', () => {
    const sums = new Uint32Array(10);
    const r = both(pattern, () => moveSums(shared, 500, 1500, 500, 1500, 1458, 700, 10, sums));
    const orig = Buffer.alloc(shared.length);
    pattern(orig);
    expect(r.native.equals(orig)).to.equal(true);
    for (let i = 0; i < 10; i++) expect(sums[i]).to.equal(sum16(orig, 500 + i * 1500, i === 9 ? 700 : 1458));
    // Backward: region i from 1000 + i*1500 to 900 + i*1400 (overlapping its own source).
    const back = both(pattern, () => moveSums(shared, 1000, 1500, 900, 1400, 1400, 300, 8, sums));
    expect(back.native.equals(back.js)).to.equal(true);
    for (let i = 0; i < 8; i++) {
      const size = i === 7 ? 300 : 1400;
      expect(back.native.subarray(900 + i * 1400, 900 + i * 1400 + size).equals(orig.subarray(1000 + i * 1500, 1000 + i * 1500 + size))).to.equal(true);
    }
  });

  it('with sums null moves the regions as with sums, and sums nothing', () => {
    const sums = new Uint32Array(10).fill(7);
    const withSums = both(pattern, () => moveSums(shared, 1000, 1400, 1000, 1500, 1400, 300, 10, new Uint32Array(10)));
    const moved = both(pattern, () => moveSums(shared, 1000, 1400, 1000, 1500, 1400, 300, 10, null));
    expect(moved.native.equals(withSums.native)).to.equal(true);
    expect(moved.js.equals(withSums.native)).to.equal(true);
    expect([...sums]).to.deep.equal(new Array(10).fill(7));
  });

  it('refuses regions outside the buffer, a short sums array and overlapping copies, touching nothing', () => {
    const { moveSums: ms, replicate: rep } = loadAddon();
    const b = Buffer.alloc(1000, 0x5a);
    expect(() => ms(b, 0, 100, 0, 200, 100, 100, 6, new Uint32Array(6))).to.throw(RangeError); // 5*200+100 > 1000
    expect(() => ms(b, 0, 100, 0, 100, 100, 50, 4, new Uint32Array(3))).to.throw(RangeError);
    expect(() => rep(b, 0, 100, 50, 100, 3)).to.throw(RangeError); // overlaps the source
    expect(() => rep(b, 0, 100, 900, 100, 2)).to.throw(RangeError); // past the end
    expect(() => rep(b, 0, 100, 200, 50, 3)).to.throw(RangeError); // copies overlap each other
    expect(b.every((x) => x === 0x5a)).to.equal(true);
  });
});
