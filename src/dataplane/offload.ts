/**
 * Frames from an offload TAP (IFF_VNET_HDR with checksum offload and TSO, see `io/tuntap.ts`) come
 * after a 10-byte virtio-net header, and the pod's kernel leaves work in them for "the device":
 * a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum field holds the pseudo-header sum,
 * the rest is to be added from `csum_start`) and TCP segmentation (GSO_TCPV4: one IPv4/TCP
 * super-frame of up to 64 KB to be cut into `gso_size` segments). Another offload TAP takes such a
 * frame as it is (its kernel finishes the job, or needs not: local delivery takes super-frames);
 * everything else — the router, NAT, VXLAN, a TUN or plain TAP pod — needs plain frames, which
 * `OffloadResolver` makes, in the receive ring's own slot: no copy to elsewhere, no allocation.
 *
 * The header's 16-bit fields are little-endian (what the TUN driver uses on a little-endian host,
 * unless told otherwise with TUNSETVNETBE).
 */
import {
  ETH_HLEN,
  EtherType,
  IpProtocol,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_HDR_LEN,
  ethType,
  ipv4HeaderLen,
  ipv4Ident,
  ipv4IsFragment,
  ipv4Protocol,
  ipv4TotalLen,
  sum16,
  tcpFlags,
  tcpHeaderLen,
  tcpSeq32,
  vnetCsumOffset,
  vnetCsumStart,
  vnetFlags,
  vnetGsoSize,
  vnetGsoType,
  vnetPending,
  layoutTcpSegments,
  writeTcpSegmentHeaders,
  writeU16,
} from '../packet/index.js';
import { copyBytes } from '../io/copy.js';
import { DropReason } from '../util/counters.js';

/** Bytes of the virtio-net header before each frame of an offload port (src/packet/vnet.ts). */
export { VNET_HDR_LEN };

/**
 * Bytes left free in front of each segment a super-frame is split into, for the headers the data
 * plane may put there (inner Ethernet + VXLAN: 22; the router asks for 64 in front of a packet).
 */
export const SEGMENT_HEADROOM = 64;
/** Most segments one super-frame may be split into (64 KB at an MSS of 256). */
export const MAX_SEGMENTS = 256;

/** The segment size of a TCP super-frame at `off` (from an offload port), or 0 when it is not one. */
export function superFrameMss(buf: Buffer, off: number): number {
  const h = off - VNET_HDR_LEN;
  return vnetGsoType(buf, h) === VNET_GSO_TCPV4 ? vnetGsoSize(buf, h) : 0;
}

/** Whether the frame at `off` (from an offload port) carries work to finish: a partial checksum or GSO. */
export function offloadPending(buf: Buffer, off: number): boolean {
  return vnetPending(buf, off - VNET_HDR_LEN);
}

/** What a splitter leaves: the plain frames of its last call, why it refused one, and its statistics. */
abstract class Segments {
  /** Offsets and lengths of the last call's plain frames. */
  readonly segOff = new Int32Array(MAX_SEGMENTS);
  readonly segLen = new Int32Array(MAX_SEGMENTS);
  /** The payload sums of an in-place layout (`layoutTcpSegments`). */
  protected readonly segSums = new Uint32Array(MAX_SEGMENTS);
  /** Why the last call returned 0. */
  dropReason: DropReason = DropReason.MalformedL4;
  /** Super-frames split and segments made (not drops: statistics). */
  superFrames = 0;
  segments = 0;

  /** Records segment `i` of `n`; after the last, counts the super-frame and returns `n`. */
  protected emit(i: number, n: number, off: number, len: number): number {
    this.segOff[i] = off;
    this.segLen[i] = len;
    if (i === n - 1) {
      this.superFrames++;
      this.segments += n;
    }
    return n;
  }

  protected bad(reason: DropReason): 0 {
    this.dropReason = reason;
    return 0;
  }
}

/**
 * Turns an offloaded frame into plain frames. Not re-entrant: the segments of one call are read
 * from `segOff`/`segLen` before the next call.
 */
export class OffloadResolver extends Segments {
  /**
   * The Ethernet frame at `buf[off, off + len)`, its virtio-net header in the 10 bytes before it,
   * with `capacity` bytes usable from `off` (its receive slot): completes a partial checksum, and
   * splits a TCP super-frame into segments of `gso_size` payload bytes, each one header + payload
   * with `SEGMENT_HEADROOM` bytes free before it, laid out from `off` on (the first segment where
   * the frame was). Returns how many plain frames there are (`segOff`, `segLen`); 0 = drop it, for
   * `dropReason`.
   */
  resolve(buf: Buffer, off: number, len: number, capacity: number): number {
    const h = off - VNET_HDR_LEN;
    const flags = vnetFlags(buf, h);
    const gso = vnetGsoType(buf, h);
    if (gso === VNET_GSO_NONE) {
      if ((flags & VNET_F_NEEDS_CSUM) !== 0 && !this.completeChecksum(buf, off, len, vnetCsumStart(buf, h), vnetCsumOffset(buf, h))) return 0;
      this.segOff[0] = off;
      this.segLen[0] = len;
      return 1;
    }
    if (gso !== VNET_GSO_TCPV4) {
      this.dropReason = DropReason.OffloadUnsupported;
      return 0;
    }
    return this.splitTcp(buf, off, len, capacity, vnetGsoSize(buf, h));
  }

  /** Adds the rest of a partial checksum: the field holds the pseudo-header sum, the data follows `start`. */
  private completeChecksum(buf: Buffer, off: number, len: number, start: number, field: number): boolean {
    // The L4 data ends where the IPv4 packet does (not at any Ethernet padding).
    if (len < ETH_HLEN + 20 || ethType(buf, off) !== EtherType.IPv4) {
      this.dropReason = DropReason.OffloadUnsupported;
      return false;
    }
    const end = ETH_HLEN + ipv4TotalLen(buf, off + ETH_HLEN);
    if (end > len || start < ETH_HLEN + 20 || start + field + 2 > end) {
      this.dropReason = DropReason.MalformedL4;
      return false;
    }
    let c = ~sum16(buf, off + start, end - start) & 0xffff;
    if (c === 0 && ipv4Protocol(buf, off + ETH_HLEN) === IpProtocol.UDP) c = 0xffff; // 0 means "no checksum" in UDP
    writeU16(buf, off + start + field, c);
    return true;
  }

  private splitTcp(buf: Buffer, off: number, len: number, capacity: number, mss: number): number {
    const ip = off + ETH_HLEN;
    if (len < ETH_HLEN + 40 || ethType(buf, off) !== EtherType.IPv4 || ipv4Protocol(buf, ip) !== IpProtocol.TCP) {
      return this.bad(DropReason.OffloadUnsupported);
    }
    const ihl = ipv4HeaderLen(buf, ip);
    const total = ipv4TotalLen(buf, ip);
    const tcp = ip + ihl;
    const doff = tcpHeaderLen(buf, tcp);
    const hdr = ETH_HLEN + ihl + doff; // bytes of headers every segment repeats
    const end = ETH_HLEN + total;
    if (ihl < 20 || doff < 20 || end > len || hdr > end || mss === 0) return this.bad(DropReason.MalformedL4);
    const payload = end - hdr;
    const n = payload <= mss ? 1 : Math.ceil(payload / mss);
    const stride = hdr + mss + SEGMENT_HEADROOM;
    if (n > MAX_SEGMENTS || (n - 1) * stride + hdr + (payload - (n - 1) * mss) > capacity) {
      return this.bad(DropReason.Oversize);
    }
    // Every segment gets its payload and a copy of the headers (still intact at `off`).
    const sums = this.segSums;
    layoutTcpSegments(buf, off, hdr, payload, mss, stride, n, sums);
    const ident = ipv4Ident(buf, ip);
    const seq = tcpSeq32(buf, tcp);
    const tflags = tcpFlags(buf, tcp);
    for (let i = 0; i < n; i++) {
      const s = off + i * stride;
      const size = i === n - 1 ? payload - i * mss : mss;
      writeTcpSegmentHeaders(buf, s + ETH_HLEN, ihl, doff, size, ident, seq, tflags, i, n, mss, sums[i]!);
      this.emit(i, n, s, hdr + size);
    }
    return n;
  }
}

/** Where `TcpSplitter` takes fresh frames from: the data plane's scratch pool. */
export interface ScratchFrames {
  readonly buffer: Buffer;
  /** Offset of a fresh frame with headroom before it, or -1 when none is left. */
  alloc(): number;
  /** Bytes usable from a frame's offset. */
  readonly capacity: number;
}

/** Bytes a scratch frame keeps free before a segment's IP header: Ethernet, or VXLAN + inner Ethernet. */
const SCRATCH_HEADROOM = SEGMENT_HEADROOM;

/**
 * Cuts an IPv4/TCP super-frame that arrived without its offload metadata into segments of at most
 * `mss` payload bytes, each copied into a fresh scratch frame with its own headers and a full
 * checksum. Such frames are GSO packets that crossed a veth into a socket or a capture (VXLAN from
 * a kernel peer, a client's TSO segment on the uplink): larger than any MTU on the way, with the
 * segment size they were meant for lost, so they are cut to fit the path they go on. Not
 * re-entrant, like `OffloadResolver`.
 */
export class TcpSplitter extends Segments {
  /**
   * The IPv4 packet at `buf[ipOff, ipOff + ipLen)` (header validated, `ipLen` its total length),
   * into `pool`: returns how many segments (IP offsets and lengths in `segOff`/`segLen`, in
   * `pool.buffer`), 0 = drop it, for `dropReason`.
   */
  split(buf: Buffer, ipOff: number, ipLen: number, mss: number, pool: ScratchFrames): number {
    if (ipv4Protocol(buf, ipOff) !== IpProtocol.TCP || ipv4IsFragment(buf, ipOff)) {
      this.dropReason = DropReason.Oversize; // only TCP is ever segmented by the kernel's GSO here
      return 0;
    }
    const ihl = ipv4HeaderLen(buf, ipOff);
    const tcp = ipOff + ihl;
    if (ipLen < ihl + 20) return this.bad(DropReason.MalformedL4);
    const doff = tcpHeaderLen(buf, tcp);
    const hdr = ihl + doff;
    if (doff < 20 || hdr > ipLen) return this.bad(DropReason.MalformedL4);
    const payload = ipLen - hdr;
    const n = payload <= mss ? 1 : Math.ceil(payload / mss);
    if (mss <= 0 || n > MAX_SEGMENTS || SCRATCH_HEADROOM + hdr + mss > pool.capacity) return this.bad(DropReason.Oversize);
    const out = pool.buffer;
    const ident = ipv4Ident(buf, ipOff);
    const seq = tcpSeq32(buf, tcp);
    const tflags = tcpFlags(buf, tcp);
    for (let i = 0; i < n; i++) {
      const slot = pool.alloc();
      if (slot < 0) return this.bad(DropReason.TxFailed);
      const o = slot + SCRATCH_HEADROOM;
      const size = i === n - 1 ? payload - i * mss : mss;
      copyBytes(out, o, buf, ipOff, hdr);
      copyBytes(out, o + hdr, buf, ipOff + hdr + i * mss, size);
      writeTcpSegmentHeaders(out, o, ihl, doff, size, ident, seq, tflags, i, n, mss);
      this.emit(i, n, o, hdr + size);
    }
    return n;
  }
}
