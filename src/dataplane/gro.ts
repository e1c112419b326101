/**
 * Receive-side coalescing of TCP segments into super-frames (GRO), for the VXLAN datagrams the
 * kernel hands over in runs (UDP_GRO): the segments of one run lie one after another in a receive
 * slot, each its own VXLAN header + inner Ethernet + IPv4 + TCP + payload. Consecutive segments of
 * one flow are joined in place into one IPv4/TCP super-frame (the first segment's headers, then
 * every payload), which a pod's offload TAP takes whole with a virtio-net GSO header: one write
 * and one trip through the pod's stack for up to 64 KB, instead of one per segment.
 *
 * The rules are Linux GRO's (tcp_gro_receive): IPv4 without options or fragments, same addresses,
 * ports, TOS, TTL and DF; TCP with the same header length and options, the same ACK number, flags
 * ACK (PSH allowed, and then it ends the super-frame); each sequence number follows on from the
 * last, every segment but the last has the first one's size; every segment's checksums are right
 * (a segment whose checksum does not verify is passed on alone, for its receiver to judge), except
 * that a segment the sender left partial under VXLAN RCO joins unsummed (`add`'s `partial`).
 * Anything else is passed on as it is, in order: a segment that does not join ends the pending
 * super-frame first.
 *
 * Nothing is allocated: the pending super-frame is a handful of numbers, payloads move backward
 * within the slot with `copyWithin`, and the super-frame's virtio-net header is written into the
 * bytes before its Ethernet header (the VXLAN header, no longer needed).
 */
import {
  ETH_HLEN,
  IpProtocol,
  TCP_CHECKSUM_OFFSET,
  TcpFlags,
  VNET_HDR_LEN,
  ipv4DontFragment,
  ipv4Dst32,
  ipv4HeaderSum,
  ipv4IsBasic,
  ipv4IsFragment,
  ipv4Protocol,
  ipv4Src32,
  ipv4Tos,
  ipv4TotalLen,
  ipv4Ttl,
  l4Ports32,
  pseudoHeaderSum,
  readI32,
  setIpv4Checksum,
  setIpv4TotalLen,
  setTcpChecksum,
  setTcpFlags,
  sum16,
  tcpAck32,
  tcpFlags,
  tcpHeaderLen,
  tcpSeq32,
  writeVnetTcpGso,
} from '../packet/index.js';
import { continuations, moveSums } from '../packet/segment.js';
import { SEGMENT_HEADROOM } from './offload.js';

/** Where joined super-frames and passed-on segments go (the router). */
export interface GroSink {
  /** An inner IPv4 packet as it came (`ipOff`, `ipLen` from the datagram). */
  plain(buf: Buffer, ipOff: number, ipLen: number): void;
  /**
   * A super-frame: IPv4 at `ipOff` with its virtio-net header (GSO_TCPV4, `mss`, partial checksum)
   * in the 10 bytes before its Ethernet header, `room` bytes usable from `ipOff`.
   */
  superFrame(buf: Buffer, ipOff: number, ipLen: number, mss: number, room: number): void;
}

const IP_HLEN = 20; // only option-less headers join

export class TcpCoalescer {
  /** Super-frames made, and the segments that went into them. */
  superFrames = 0;
  segments = 0;

  // The pending super-frame (count 0: none). Addresses and words as int32.
  private count = 0;
  private eth = 0; // its Ethernet header
  private end = 0; // where the next payload goes
  private doff = 0;
  private mss = 0;
  private lastSize = 0;
  private nextSeq = 0;
  private src = 0;
  private dst = 0;
  private ports = 0;
  private ack = 0;
  private ipWord1 = 0; // TOS (and version/IHL) with the TTL, as a check that they match
  private ttl = 0;
  private df = false;
  private limit = 0; // where the slot ends: the super-frame must stay splittable within it

  constructor(private readonly sink: GroSink) {}

  /**
   * One decapsulated inner Ethernet frame at `e` (`elen` bytes, IPv4 checked by the caller to be
   * the EtherType), in a slot that ends at `slotEnd`. Joins the pending super-frame, starts one,
   * or is passed on (after the pending one). `partial`: the segment's TCP checksum is partial by the
   * sender's word (VXLAN RCO, checked by the overlay): it joins without a check of its payload,
   * which the outer UDP checksum covered (the kernel's trust too: a partial checksum is never
   * verified); passed on alone it still holds the pseudo-header sum, which the router's
   * partial-checksum rule finishes.
   */
  add(buf: Buffer, e: number, elen: number, slotEnd: number, partial = false): void {
    const ip = e + ETH_HLEN;
    const tcp = ip + IP_HLEN;
    // A candidate: option-less IPv4 with a right header checksum, not a fragment, TCP with payload,
    // flags ACK or ACK|PSH, TCP checksum right.
    if (
      elen < ETH_HLEN + IP_HLEN + 20 ||
      !ipv4IsBasic(buf, ip) ||
      ipv4Protocol(buf, ip) !== IpProtocol.TCP ||
      ipv4IsFragment(buf, ip)
    ) {
      return this.pass(buf, ip, elen - ETH_HLEN);
    }
    const total = ipv4TotalLen(buf, ip);
    const doff = tcpHeaderLen(buf, tcp);
    const flags = tcpFlags(buf, tcp);
    const size = total - IP_HLEN - doff;
    if (
      total > elen - ETH_HLEN ||
      doff < 20 ||
      size <= 0 ||
      (flags & ~TcpFlags.PSH) !== TcpFlags.ACK ||
      ipv4HeaderSum(buf, ip, IP_HLEN) !== 0xffff
    ) {
      return this.pass(buf, ip, elen - ETH_HLEN);
    }
    const src = ipv4Src32(buf, ip);
    const dst = ipv4Dst32(buf, ip);
    if (!partial && sum16(buf, tcp, total - IP_HLEN, pseudoHeaderSum(src, dst, IpProtocol.TCP, total - IP_HLEN)) !== 0xffff) {
      return this.pass(buf, ip, total);
    }
    const seq = tcpSeq32(buf, tcp);
    if (this.count > 0 && this.joins(buf, ip, tcp, doff, size, src, dst, seq, slotEnd)) {
      buf.copyWithin(this.end, tcp + doff, tcp + doff + size);
      this.end += size;
      this.nextSeq = (this.nextSeq + size) | 0;
      this.lastSize = size;
      this.count++;
      if ((flags & TcpFlags.PSH) !== 0) {
        const first = this.eth + ETH_HLEN + IP_HLEN;
        setTcpFlags(buf, first, tcpFlags(buf, first) | TcpFlags.PSH);
        this.flush(buf);
      } else if (size < this.mss) this.flush(buf);
      return;
    }
    this.flush(buf);
    if ((flags & TcpFlags.PSH) !== 0) return this.sink.plain(buf, ip, total);
    this.count = 1;
    this.eth = e;
    this.end = tcp + doff + size;
    this.doff = doff;
    this.mss = size;
    this.lastSize = size;
    this.nextSeq = (seq + size) | 0;
    this.src = src;
    this.dst = dst;
    this.ports = l4Ports32(buf, tcp);
    this.ack = tcpAck32(buf, tcp);
    this.ipWord1 = ipv4Tos(buf, ip);
    this.ttl = ipv4Ttl(buf, ip);
    this.df = ipv4DontFragment(buf, ip);
    this.limit = slotEnd;
  }

  private joins(buf: Buffer, ip: number, tcp: number, doff: number, size: number, src: number, dst: number, seq: number, slotEnd: number): boolean {
    if (
      src !== this.src ||
      dst !== this.dst ||
      seq !== this.nextSeq ||
      size > this.mss ||
      this.lastSize !== this.mss ||
      doff !== this.doff ||
      slotEnd !== this.limit ||
      l4Ports32(buf, tcp) !== this.ports ||
      tcpAck32(buf, tcp) !== this.ack ||
      ipv4Tos(buf, ip) !== this.ipWord1 ||
      ipv4Ttl(buf, ip) !== this.ttl ||
      ipv4DontFragment(buf, ip) !== this.df
    ) {
      return false;
    }
    // The options (timestamps) must be the same bytes.
    const first = this.eth + ETH_HLEN + IP_HLEN;
    for (let o = 20; o < doff; o += 4) if (readI32(buf, tcp + o) !== readI32(buf, first + o)) return false;
    // Within one IPv4 packet, and splittable within the slot should it go where super-frames don't.
    const payload = this.end - (first + doff) + size;
    if (IP_HLEN + doff + payload > 0xffff) return false;
    return this.count + 1 <= this.slotSegments();
  }

  /** How many segments the pending super-frame may have to stay splittable within its slot (should it go where super-frames don't). */
  private slotSegments(): number {
    return Math.floor((this.limit - this.eth) / (ETH_HLEN + IP_HLEN + this.doff + this.mss + SEGMENT_HEADROOM));
  }

  /**
   * After `add` started a super-frame with a run's datagram at `first` (its Ethernet header `encap`
   * bytes in; the run's datagrams `stride` bytes apart, `n` of them from `first` on, the last `last`
   * bytes long): joins the datagrams after it that continue its segment, found in one call
   * (`continuations`: the same headers but for each segment's own length, ID, sequence number,
   * window and checksums, which are checked), their payloads moved in one call. Those headers being
   * the first's, every rule `add` checked holds for them too. Returns how many it joined: 0 when the
   * pending super-frame is not that datagram alone, the datagram is not full-size, or the next does
   * not continue it (then `add` takes it as any other).
   */
  extendRun(buf: Buffer, first: number, encap: number, stride: number, n: number, last: number, verify: boolean): number {
    if (this.count !== 1 || this.eth !== first + encap || n < 2) return 0;
    const doff = this.doff;
    const mss = this.mss;
    const hdrLen = encap + ETH_HLEN + IP_HLEN + doff;
    if (stride !== hdrLen + mss) return 0;
    // As many as one IPv4 packet holds and the slot can split again (see `joins`).
    const bySize = Math.floor((0xffff - IP_HLEN - doff) / mss);
    const m = Math.min(n, bySize, this.slotSegments());
    if (m < 2) return 0;
    const k = continuations(buf, first, stride, m, m === n ? last : stride, encap + ETH_HLEN, hdrLen, mss, verify);
    if (k === 0) return 0;
    const lastSize = (k === n - 1 ? last : stride) - hdrLen;
    moveSums(buf, first + stride + hdrLen, stride, this.end, mss, mss, lastSize, k, null);
    const added = (k - 1) * mss + lastSize;
    this.end += added;
    this.nextSeq = (this.nextSeq + added) | 0;
    this.lastSize = lastSize;
    this.count += k;
    if (lastSize < mss) this.flush(buf);
    return k;
  }

  /** Passes the pending super-frame on (one segment goes as it is). Call at the end of every run. */
  flush(buf: Buffer): void {
    const n = this.count;
    if (n === 0) return;
    this.count = 0;
    const e = this.eth;
    const ip = e + ETH_HLEN;
    if (n === 1) return this.sink.plain(buf, ip, this.end - ip);
    const total = this.end - ip;
    const tcpLen = total - IP_HLEN;
    setIpv4TotalLen(buf, ip, total);
    setIpv4Checksum(buf, ip, 0);
    setIpv4Checksum(buf, ip, ~ipv4HeaderSum(buf, ip, IP_HLEN));
    // A partial checksum, as a TSO sender leaves it: the pseudo-header sum, the rest for the device.
    setTcpChecksum(buf, ip + IP_HLEN, pseudoHeaderSum(this.src, this.dst, IpProtocol.TCP, tcpLen));
    writeVnetTcpGso(buf, e - VNET_HDR_LEN, ETH_HLEN + IP_HLEN + this.doff, this.mss, ETH_HLEN + IP_HLEN, TCP_CHECKSUM_OFFSET);
    this.superFrames++;
    this.segments += n;
    this.sink.superFrame(buf, ip, total, this.mss, this.limit - ip);
  }

  /** A segment that does not join: after the pending super-frame, in order. */
  private pass(buf: Buffer, ip: number, len: number): void {
    this.flush(buf);
    this.sink.plain(buf, ip, len);
  }
}
