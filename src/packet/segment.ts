/**
 * TCP segmentation on the wire: the headers of one segment of a TSO/GSO super-frame, written the way
 * the kernel's tcp_gso_segment does. The data plane lays the segments out (in place, or into fresh
 * frames); this writes what each one's headers must say. And the bulk steps of both directions
 * (`SegmentOps`): moving the payloads, and finding the segments of a received run that continue
 * its first.
 */
import { ipv4HeaderSum, pseudoHeaderSum, sum16 } from './checksum.js';
import { ipv4Dst32, ipv4Src32, setIpv4Checksum, setIpv4Ident, setIpv4TotalLen, setTcpChecksum, setTcpFlags, setTcpSeq } from './fields.js';
import { IpProtocol } from './ipv4.js';
import { TcpFlags } from './tcp.js';

/**
 * The bulk steps of an in-place segment layout and join, over strided regions of one buffer. The
 * wire layer's own versions are plain JavaScript (`copyWithin` and `sum16` per region, a loop over
 * a run's headers); the process that has the addon installs its versions (`useNativeSegmentOps`),
 * which do all regions in one call.
 */
export interface SegmentOps {
  /**
   * Region i at `src + i*srcStride`, `size` bytes (the last `last`), moved to `dst + i*dstStride`
   * (in an order that overwrites no region before it moved) and its sum16 stored in `sums[i]`
   * (`sums` null: moved, not summed).
   */
  moveSums(buf: Buffer, src: number, srcStride: number, dst: number, dstStride: number, size: number, last: number, n: number, sums: Uint32Array | null): void;
  /** `buf[from, from + len)` copied to `dst + i*stride` for `i < count` (the copies apart from the source). */
  replicate(buf: Buffer, from: number, len: number, dst: number, stride: number, count: number): void;
  /**
   * The headers of the `n` segments of a super-frame laid out in place (segment i's IPv4 header at
   * `ip0 + i*stride`, `ihl` bytes, TCP `doff` bytes, `mss` payload bytes, the last segment's `last`),
   * each still a copy of segment 0's: `writeTcpSegmentHeaders` for every i, with payload sum
   * `sums[i]` (`sums` null: `PARTIAL_CHECKSUM`).
   */
  segmentHeaders(buf: Buffer, ip0: number, stride: number, n: number, ihl: number, doff: number, mss: number, last: number, ident: number, seq: number, tflags: number, sums: Uint32Array | null): void;
  /**
   * Of a receive run's datagrams (datagram i at `off + i*stride`, `stride` bytes, the last `last`),
   * how many from datagram 1 on, one after another, continue datagram 0's TCP segment: the same
   * first `hdrLen` bytes (encapsulation up to `ipAt`, an option-less IPv4 header, TCP header and
   * options) but for the IPv4 total length (the datagram's own length from `ipAt`), ID and header
   * checksum (verified), the TCP sequence number (datagram 0's + i*mss), window and checksum
   * (verified when `verify`), with 1..mss payload bytes. Reads only.
   */
  continuations(buf: Buffer, off: number, stride: number, n: number, last: number, ipAt: number, hdrLen: number, mss: number, verify: number): number;
}

/**
 * What a continuation must have byte for byte as its run's first datagram, as [from, to) from the
 * IPv4 header (-1: from the datagram's start; 0: to the end of the TCP header): all but the total
 * length and ID (2-6), header checksum (10-12), sequence number (24-28), window and TCP checksum (34-38).
 */
const SAME_RANGES: readonly (readonly [number, number])[] = [
  [-1, 2],
  [6, 10],
  [12, 24],
  [28, 34],
  [38, 0],
];

function jsContinuations(buf: Buffer, off: number, stride: number, n: number, last: number, ipAt: number, hdrLen: number, mss: number, verify: number): number {
  if (n < 2) return 0;
  if (off + (n - 1) * stride + last > buf.length || off + stride > buf.length || hdrLen > stride || ipAt + 40 > hdrLen) {
    throw new RangeError('continuations: a datagram outside the buffer, or headers longer than one');
  }
  const tip = off + ipAt;
  if (buf[tip] !== 0x45) return 0;
  const seq0 = buf.readUInt32BE(tip + 24);
  let count = 0;
  for (let i = 1; i < n; i++) {
    const len = i === n - 1 ? last : stride;
    if (len <= hdrLen || len - hdrLen > mss || len - ipAt > 0xffff) break;
    const d = off + i * stride;
    const ip = d + ipAt;
    let same = true;
    for (const [a, b] of SAME_RANGES) {
      const from = a < 0 ? -ipAt : a;
      const to = b === 0 ? hdrLen - ipAt : b;
      if (buf.compare(buf, tip + from, tip + to, ip + from, ip + to) !== 0) same = false;
    }
    if (!same || buf.readUInt16BE(ip + 2) !== len - ipAt || ipv4HeaderSum(buf, ip, 20) !== 0xffff) break;
    if (buf.readUInt32BE(ip + 24) !== ((seq0 + i * mss) >>> 0)) break;
    if (verify !== 0 && sum16(buf, ip + 20, len - ipAt - 20, pseudoHeaderSum(ipv4Src32(buf, ip), ipv4Dst32(buf, ip), IpProtocol.TCP, len - ipAt - 20)) !== 0xffff) break;
    count++;
  }
  return count;
}

const jsSegmentOps: SegmentOps = {
  moveSums(buf, src, srcStride, dst, dstStride, size, last, n, sums) {
    const one = (i: number): void => {
      const len = i === n - 1 ? last : size;
      const to = dst + i * dstStride;
      const from = src + i * srcStride;
      if (to !== from) buf.copyWithin(to, from, from + len);
      if (sums !== null) sums[i] = sum16(buf, to, len);
    };
    if (dst + (n - 1) * dstStride > src + (n - 1) * srcStride) for (let i = n - 1; i >= 0; i--) one(i); // forward: last first
    else for (let i = 0; i < n; i++) one(i);
  },
  replicate(buf, from, len, dst, stride, count) {
    for (let i = 0; i < count; i++) buf.copyWithin(dst + i * stride, from, from + len);
  },
  segmentHeaders(buf, ip0, stride, n, ihl, doff, mss, last, ident, seq, tflags, sums) {
    for (let i = 0; i < n; i++) {
      writeTcpSegmentHeaders(buf, ip0 + i * stride, ihl, doff, i === n - 1 ? last : mss, ident, seq, tflags, i, n, mss, sums === null ? PARTIAL_CHECKSUM : sums[i]!);
    }
  },
  continuations: jsContinuations,
};

let segmentOps: SegmentOps = jsSegmentOps;

/** Installs native segment moves (the addon's); undefined: back to JavaScript alone. */
export function useNativeSegmentOps(ops: SegmentOps | undefined): void {
  segmentOps = ops ?? jsSegmentOps;
}

/** See `SegmentOps.segmentHeaders`: through the installed implementation. */
export function writeSegmentHeaders(buf: Buffer, ip0: number, stride: number, n: number, ihl: number, doff: number, mss: number, last: number, ident: number, seq: number, tflags: number, sums: Uint32Array | null): void {
  segmentOps.segmentHeaders(buf, ip0, stride, n, ihl, doff, mss, last, ident, seq, tflags, sums);
}

/** See `SegmentOps.continuations`: through the installed implementation. */
export function continuations(buf: Buffer, off: number, stride: number, n: number, last: number, ipAt: number, hdrLen: number, mss: number, verify: boolean): number {
  return segmentOps.continuations(buf, off, stride, n, last, ipAt, hdrLen, mss, verify ? 1 : 0);
}

/** See `SegmentOps.moveSums`: through the installed implementation. */
export function moveSums(buf: Buffer, src: number, srcStride: number, dst: number, dstStride: number, size: number, last: number, n: number, sums: Uint32Array | null): void {
  segmentOps.moveSums(buf, src, srcStride, dst, dstStride, size, last, n, sums);
}

/**
 * Lays a TCP super-frame out in place as `n` segments `stride` bytes apart from `start`: the
 * headers every segment repeats are `buf[start, start + hdrLen)` (Ethernet or VXLAN + Ethernet, IP,
 * TCP) and its `payload` bytes follow them. Each segment gets a copy of the headers and its `mss`
 * bytes of the payload (the last one what is left); `sums[i]` is the sum16 of segment i's payload,
 * for `writeTcpSegmentHeaders` (`sums` null: the payloads are not summed, for segments whose TCP
 * checksums stay partial, `PARTIAL_CHECKSUM`). Two calls into the installed `SegmentOps`, whatever `n` is. The
 * caller has checked that everything fits (`(n - 1) * stride + hdrLen + last` bytes from `start`).
 */
export function layoutTcpSegments(buf: Buffer, start: number, hdrLen: number, payload: number, mss: number, stride: number, n: number, sums: Uint32Array | null): void {
  const p = start + hdrLen;
  segmentOps.moveSums(buf, p, mss, p, stride, mss, payload - (n - 1) * mss, n, sums);
  if (n > 1) segmentOps.replicate(buf, start, hdrLen, start + stride, stride, n - 1);
}

/** `writeTcpSegmentHeaders`' payloadSum for a segment whose TCP checksum stays partial. */
export const PARTIAL_CHECKSUM = -2;

/**
 * Segment `i` of `n` of a TCP super-frame, laid out at `ip` as IPv4 header (`ihl`) + TCP header
 * (`doff`) + `size` payload bytes: its length, IP ID, sequence number, flags and both checksums,
 * as Linux's tcp_gso_segment writes them (FIN and PSH on the last segment only, CWR on the first).
 * `payloadSum` is the sum16 of the payload when the caller has it (`layoutTcpSegments`), -1 to sum
 * it here, or `PARTIAL_CHECKSUM` to leave the TCP checksum partial (the pseudo-header sum, as a
 * TSO sender's CHECKSUM_PARTIAL segment has it) for a receiver that finishes it (VXLAN RCO).
 */
export function writeTcpSegmentHeaders(buf: Buffer, ip: number, ihl: number, doff: number, size: number, ident: number, seq: number, tflags: number, i: number, n: number, mss: number, payloadSum = -1): void {
  const tcp = ip + ihl;
  const tcpLen = doff + size;
  setIpv4TotalLen(buf, ip, ihl + tcpLen);
  setIpv4Ident(buf, ip, ident + i);
  setIpv4Checksum(buf, ip, 0);
  setIpv4Checksum(buf, ip, ~ipv4HeaderSum(buf, ip, ihl));
  setTcpSeq(buf, tcp, seq + i * mss);
  let f = tflags;
  if (i > 0) f &= ~TcpFlags.CWR;
  if (i < n - 1) f &= ~(TcpFlags.FIN | TcpFlags.PSH);
  setTcpFlags(buf, tcp, f);
  setTcpChecksum(buf, tcp, 0);
  const pseudo = pseudoHeaderSum(ipv4Src32(buf, ip), ipv4Dst32(buf, ip), IpProtocol.TCP, tcpLen);
  if (payloadSum === PARTIAL_CHECKSUM) {
    setTcpChecksum(buf, tcp, pseudo);
    return;
  }
  if (payloadSum < 0) {
    setTcpChecksum(buf, tcp, ~sum16(buf, tcp, tcpLen, pseudo));
    return;
  }
  // The header is a whole number of 32-bit words, so the payload's sum adds on as it is.
  const s = sum16(buf, tcp, doff, pseudo) + payloadSum;
  setTcpChecksum(buf, tcp, ~((s & 0xffff) + (s >>> 16)));
}

