import { expect } from 'chai';
import { copyBytes } from '../../../src/io/copy.js';
import { loadAddon } from '../../../src/io/addon.js';
import { pseudoHeaderSum, sum16, useNativeSum16 } from '../../../src/packet/checksum.js';
import { continuations, layoutTcpSegments, moveSums, useNativeSegmentOps, writeSegmentHeaders, writeTcpSegmentHeaders } from '../../../src/packet/segment.js';
import { TcpFlags } from '../../../src/packet/tcp.js';

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
    for (const ops of [undefined, { moveSums: loadAddon().moveSums, replicate: loadAddon().replicate, segmentHeaders: loadAddon().segmentHeaders, continuations: loadAddon().continuations }]) {
      useNativeSegmentOps(ops);
      try {
        fill(shared);
        run();
        out.push(Buffer.from(shared));
      } finally {
        useNativeSegmentOps({ moveSums: loadAddon().moveSums, replicate: loadAddon().replicate, segmentHeaders: loadAddon().segmentHeaders, continuations: loadAddon().continuations });
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

describe('io/addon: segmentHeaders (native = JavaScript)', () => {
  it('writes every segment of a laid-out super-frame as writeTcpSegmentHeaders does, summed or partial', () => {
    const ops = { moveSums: loadAddon().moveSums, replicate: loadAddon().replicate, segmentHeaders: loadAddon().segmentHeaders, continuations: loadAddon().continuations };
    for (const [ihl, doff, payload, mss, seq, flags] of [
      [20, 32, 60_000, 1398, 0xfffffff0 | 0, TcpFlags.ACK | TcpFlags.PSH | TcpFlags.CWR],
      [24, 20, 3000, 1448, 12345, TcpFlags.ACK | TcpFlags.FIN],
      [20, 20, 1448, 1448, 7, TcpFlags.ACK],
      [20, 40, 777, 100, -5, TcpFlags.ACK | TcpFlags.PSH],
    ] as const) {
      const n = Math.ceil(payload / mss);
      const last = payload - (n - 1) * mss;
      const stride = 22 + ihl + doff + mss;
      for (const summed of [true, false]) {
        const out: Buffer[] = [];
        for (const native of [false, true]) {
          const buf = Buffer.alloc(200 + n * stride);
          for (let i = 0; i < buf.length; i++) buf[i] = (i * 37 + 11) & 0xff;
          for (let i = 0; i < n; i++) {
            const ip = 100 + 22 + i * stride;
            buf[ip] = 0x40 | (ihl / 4);
            buf[ip + ihl + 12] = (doff / 4) << 4;
          }
          const sums = summed ? new Uint32Array(n).map((_, i) => sum16(buf, 100 + 22 + i * stride + ihl + doff, i === n - 1 ? last : mss)) : null;
          useNativeSegmentOps(native ? ops : undefined);
          try {
            writeSegmentHeaders(buf, 100 + 22, stride, n, ihl, doff, mss, last, 0xfffe, seq, flags, sums);
          } finally {
            useNativeSegmentOps(ops);
          }
          out.push(buf);
        }
        expect(out[1]!.equals(out[0]!), `ihl ${ihl} doff ${doff} payload ${payload} ${summed ? 'summed' : 'partial'}`).to.equal(true);
        if (summed) {
          // And the segments are right: IPv4 and TCP checksums verify, numbers follow on.
          for (let i = 0; i < n; i++) {
            const ip = 100 + 22 + i * stride;
            const tcpLen = doff + (i === n - 1 ? last : mss);
            expect(sum16(out[1]!, ip, ihl)).to.equal(0xffff);
            expect(sum16(out[1]!, ip + ihl, tcpLen, pseudoHeaderSum(out[1]!.readInt32BE(ip + 12), out[1]!.readInt32BE(ip + 16), 6, tcpLen))).to.equal(0xffff);
            expect(out[1]!.readUInt32BE(ip + ihl + 4)).to.equal((seq + i * mss) >>> 0);
            expect(out[1]!.readUInt16BE(ip + 4)).to.equal((0xfffe + i) & 0xffff);
          }
        }
      }
    }
    expect(() => loadAddon().segmentHeaders(Buffer.alloc(100), 0, 50, 3, 20, 20, 10, 10, 0, 0, 0x10, null)).to.throw(RangeError);
    expect(() => loadAddon().segmentHeaders(Buffer.alloc(1000), 0, 50, 3, 20, 20, 10, 10, 0, 0, 0x10, new Uint32Array(2))).to.throw(RangeError);
  });
});

describe('io/addon: continuations of a received run (native = JavaScript)', () => {
  const ENCAP = 22; // VXLAN 8 + Ethernet 14
  const DOFF = 32; // TCP header with 12 bytes of options (timestamps)
  const HDR = ENCAP + 20 + DOFF;
  const MSS = 1398;
  const STRIDE = HDR + MSS;
  const BASE = 64;

  /** A run of `n` datagrams as a sender's GSO run leaves: one super-frame's segments, the last `lastSize` payload bytes. */
  function run(n: number, lastSize: number): { buf: Buffer; last: number } {
    const buf = Buffer.alloc(BASE + n * STRIDE + 64);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 29 + 3) & 0xff; // payloads
    const tpl = Buffer.alloc(HDR);
    tpl.write('0800000000002a00' + '0a580af40002' + '0a580af40001' + '0800', 0, 'hex'); // VXLAN, Ethernet
    tpl.write('4500000012344000' + '40060000' + 'c0a80001' + 'c0a80002', ENCAP, 'hex'); // IPv4, DF, TTL 64
    tpl.write('d4311f90' + '00000000' + '01020304' + '8010' + '01f5' + '0000' + '0000', ENCAP + 20, 'hex'); // TCP, ACK
    tpl.write('0101080a0011223344556677', ENCAP + 40, 'hex'); // NOP NOP timestamps
    for (let i = 0; i < n; i++) {
      const d = BASE + i * STRIDE;
      tpl.copy(buf, d);
      const size = i === n - 1 ? lastSize : MSS;
      writeTcpSegmentHeaders(buf, d + ENCAP, 20, DOFF, size, 0x1234, 1000, TcpFlags.ACK, i, n, MSS);
    }
    return { buf, last: HDR + lastSize };
  }

  function count(buf: Buffer, n: number, last: number, verify: number): number {
    const native = loadAddon().continuations(buf, BASE, STRIDE, n, last, ENCAP, HDR, MSS, verify);
    useNativeSegmentOps(undefined);
    try {
      const js = continuations(buf, BASE, STRIDE, n, last, ENCAP, HDR, MSS, verify !== 0);
      expect(js, 'the JavaScript and native answers').to.equal(native);
    } finally {
      useNativeSegmentOps({ moveSums: loadAddon().moveSums, replicate: loadAddon().replicate, segmentHeaders: loadAddon().segmentHeaders, continuations: loadAddon().continuations });
    }
    return native;
  }

  /** Datagram 5 changed by `change`, its checksums written again when `resum` (the rest as sent). */
  function changed(change: (b: Buffer, d: number) => void, resum: boolean): number {
    const { buf, last } = run(10, 700);
    const d = BASE + 5 * STRIDE;
    change(buf, d);
    if (resum) {
      const ident = buf.readUInt16BE(d + ENCAP + 4) - 5;
      const seq = buf.readUInt32BE(d + ENCAP + 24) - 5 * MSS;
      writeTcpSegmentHeaders(buf, d + ENCAP, 20, DOFF, MSS, ident, seq, buf[d + ENCAP + 33]!, 5, 10, MSS);
    }
    return count(buf, 10, last, 1);
  }

  it('finds every datagram of a whole run, the shorter last one too, verified or not', () => {
    const { buf, last } = run(10, 700);
    expect(count(buf, 10, last, 1)).to.equal(9);
    expect(count(buf, 10, last, 0)).to.equal(9);
    expect(count(buf, 4, STRIDE, 1)).to.equal(3); // a prefix of it
    expect(count(buf, 1, STRIDE, 1)).to.equal(0);
  });

  it('stops before a datagram whose payload is corrupt, unless told not to verify (RCO)', () => {
    const { buf, last } = run(10, 700);
    buf[BASE + 5 * STRIDE + HDR + 100]! ^= 0x40;
    expect(count(buf, 10, last, 1)).to.equal(4);
    expect(count(buf, 10, last, 0)).to.equal(9);
  });

  it('lets each segment have its own ID and window, as GRO does; nothing else', () => {
    expect(changed((b, d) => b.writeUInt16BE(0x9999, d + ENCAP + 4), false), 'ID').to.equal(4); // its IP checksum no longer verifies
    expect(changed((b, d) => b.writeUInt16BE(0x9999, d + ENCAP + 4), true), 'ID, summed again').to.equal(9);
    expect(changed((b, d) => b.writeUInt16BE(0x7777, d + ENCAP + 34), true), 'window').to.equal(9);
    expect(changed((b, d) => b.writeUInt32BE(0x01020305, d + ENCAP + 28), true), 'ACK number').to.equal(4);
    expect(changed((b, d) => (b[d + ENCAP + 8] = 63), true), 'TTL').to.equal(4);
    expect(changed((b, d) => (b[d + ENCAP + 1] = 0x10), true), 'TOS').to.equal(4);
    expect(changed((b, d) => (b[d + ENCAP + 33] = 0x30), true), 'flags (URG)').to.equal(4);
    expect(changed((b, d) => (b[d + ENCAP + 45] ^= 1), true), 'an option byte').to.equal(4);
    expect(changed((b, d) => (b[d + 4] = 0x2b), true), 'the VNI').to.equal(4);
    expect(changed((b, d) => (b[d + 5] = 0x01), true), 'the inner MAC').to.equal(4);
    expect(changed((b, d) => b.writeUInt32BE(b.readUInt32BE(d + ENCAP + 24) + 1, d + ENCAP + 24), false), 'sequence').to.equal(4);
    expect(changed((b, d) => b.writeUInt16BE(b.readUInt16BE(d + ENCAP + 2) - 1, d + ENCAP + 2), false), 'total length').to.equal(4);
  });

  it('finds none after a first datagram with IPv4 options, and refuses datagrams outside the buffer', () => {
    const { buf, last } = run(3, 700);
    buf[BASE + ENCAP] = 0x46;
    expect(count(buf, 3, last, 1)).to.equal(0);
    expect(() => loadAddon().continuations(buf, BASE, STRIDE, 4, last, ENCAP, HDR, MSS, 1)).to.throw(RangeError);
    expect(() => loadAddon().continuations(buf, BASE, STRIDE, 3, last, ENCAP, 30, MSS, 1)).to.throw(RangeError);
  });
});
