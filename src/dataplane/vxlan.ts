import {
  ETH_HLEN,
  EtherType,
  IpProtocol,
  ParseError,
  ethDstHi,
  ethDstLo32,
  ethType,
  ipv4Dst32,
  ipv4HeaderLen,
  ipv4Ident,
  ipv4IsFragment,
  ipv4IsLaterFragment,
  ipv4Protocol,
  ipv4Src32,
  l4Ports32,
  tcpFlags,
  tcpHeaderLen,
  tcpSeq32,
  layoutTcpSegments,
  writeSegmentHeaders,
  VXLAN_FLAG_I,
  VXLAN_RCO_UDP,
  setVxlanRco,
  vxlanRco,
  vxlanRcoStart,
  VXLAN_HLEN,
  VXLAN_RCO_MAX_START,
  IPV4_MIN_HLEN,
  VxlanView,
  writeU16,
  writeU32,
} from '../packet/index.js';
import { U32Map } from '../util/u32map.js';
import { DropCounters, DropReason } from '../util/counters.js';
import { MAX_SEGMENTS } from './offload.js';
import { TcpCoalescer } from './gro.js';
import { OverlayResult, type Overlay, type Router } from './router.js';
import type { IngressPort } from './dataplane.js';
import { TapDir, type DatagramTap } from './tap.js';

/** Carries VXLAN payloads (VXLAN header + inner frame) between nodes over UDP. */
export interface UdpTransport {
  /**
   * Sends `buf[off, off+len)` to `dstIp:dstPort` (numbers), from `srcPort` where the transport can choose
   * it per packet; false when the packet was dropped. The bytes may be reused as soon as it returns.
   */
  send(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, srcPort: number): boolean;
  /**
   * A run of datagrams of `segSize` bytes laid end to end in `buf[off, off+len)`, handed to the kernel
   * as one buffer (UDP GSO) from `srcPort`, one of `sourcePorts`. Absent or false: not available.
   */
  sendSegmented?(buf: Buffer, off: number, len: number, segSize: number, dstIp: number, dstPort: number, srcPort: number): boolean;
  /** With GSO: the source ports every datagram must leave from (a flow keeps its port either way). */
  readonly sourcePorts?: Uint16Array | undefined;
}

export interface VxlanConfig {
  vni: number;
  port: number;
  localVtepMacHi: number;
  localVtepMacLo: number;
  /** Largest inner IPv4 packet: underlay MTU - 50. */
  innerMtu: number;
  /** Prefix length of every node's subnet (all nodes share it), to find a node by destination. */
  subnetMask: number;
}

export interface VxlanPeer {
  subnetNetwork: number;
  underlayIp: number;
  vtepMacHi: number;
  vtepMacLo: number;
  /**
   * The peer takes remote checksum offload (VXLAN RCO): the segments of a super-frame go to it with
   * their TCP checksums partial (no payload sums here, no check of them there). Kernel nodes only
   * with `remcsumrx`; absent: false.
   */
  rco?: boolean;
}

/** Int32 words of a peer's encapsulation header (22 bytes: 5 words and a 16-bit one). */
const HDR_WORDS = 6;

/**
 * UDP source port for a packet's outer header, from a hash of its inner flow (RFC 7348 section 5:
 * ECMP entropy, as Linux does): addresses and protocol, and the ports of a TCP/UDP first fragment when
 * they are inside the packet. In Linux's default range for it, the ephemeral ports 32768-60999.
 * Everything is read as int32, so nothing here is ever a heap number.
 */
function flowHash(buf: Buffer, ipOff: number, ipLen: number): number {
  const proto = ipv4Protocol(buf, ipOff);
  let h = Math.imul(ipv4Src32(buf, ipOff) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(ipv4Dst32(buf, ipOff), 0xc2b2ae35) ^ proto;
  const ihl = ipv4HeaderLen(buf, ipOff);
  if ((proto === IpProtocol.TCP || proto === IpProtocol.UDP) && !ipv4IsLaterFragment(buf, ipOff) && ihl + 4 <= ipLen) {
    h ^= Math.imul(l4Ports32(buf, ipOff + ihl), 0x27d4eb2f);
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 1; // a non-negative small integer
}

/** Largest UDP payload one send may carry (IPv4: 65535 - 20 - 8), a GSO run included. */
const UDP_MAX_PAYLOAD = 65507;
/** Most datagrams one UDP GSO send may carry on every kernel that has it (UDP_MAX_SEGMENTS, 64; newer kernels take more). */
const UDP_GSO_MAX_SEGMENTS = 64;

/** How many datagrams of `stride` bytes (VXLAN header, inner frame) one UDP GSO send carries. */
function segmentsPerRun(stride: number): number {
  const n = Math.floor(UDP_MAX_PAYLOAD / stride);
  return n < UDP_GSO_MAX_SEGMENTS ? n : UDP_GSO_MAX_SEGMENTS;
}

/**
 * The most TCP segments a pod's TSO super-frame should hold so that, across hosts, it leaves as one
 * UDP GSO run and arrives as one UDP GRO run: with full-size segments (IPv4 packets of `podMtu`
 * bytes), the run of VXLAN datagrams must fit one UDP payload. A pod's kernel left at its default
 * (up to 64 KB, 46 segments at MTU 1450) sends super-frames that take two runs, the second of one
 * or two segments, and the receiving pod then takes two frames where one would do: every per-frame
 * cost (the TAP write, the pod's TCP input, one more skb through the underlay) paid twice.
 * The daemon sets it as the pod device's gso_max_segs.
 */
export function podGsoMaxSegments(podMtu: number): number {
  return segmentsPerRun(ENCAP_HLEN + podMtu);
}

/** What the overlay reads of the VXLAN socket's receive ring besides the bytes (see `io/udpsocket.ts`). */
export interface VxlanRing {
  /** Sender of slot i: an underlay address, host order. */
  readonly srcIps: Uint32Array;
  /** Slot i holds a UDP_GRO run of datagrams of this size (0: one datagram). */
  readonly segSizes: Uint16Array;
  /** Sender's port of slot i (for a capture; absent: not known). */
  readonly srcPorts?: Uint16Array;
  readonly slotSize: number;
  readonly headroom: number;
}

/** Bytes the overlay writes in front of an inner IP packet: the VXLAN header and the inner Ethernet header. */
export const ENCAP_HLEN = VXLAN_HLEN + ETH_HLEN;

/** What `accept` says of a datagram: dropped, taken, or taken with an RCO partial checksum in its inner TCP header (after an option-less IPv4 one). */
const enum Accepted {
  No = 0,
  Yes = 1,
  RcoTcp = 2,
}

/**
 * VXLAN overlay in the flannel L3 model: every other node owns one subnet of the pod CIDR and has a VTEP
 * MAC; a packet for that subnet is framed to the peer's VTEP MAC, prefixed with the VXLAN header (I flag,
 * VNI) in the headroom before it, and sent over UDP to the peer's underlay address, with a source port
 * from a hash of the inner flow (ECMP entropy, as Linux does). Received packets must carry our VNI and
 * come from a known node; everything else is dropped and counted.
 */
export class VxlanOverlay implements Overlay {
  readonly drops = new DropCounters();
  encapsulated = 0;
  decapsulated = 0;
  /** Super-frames sent as one UDP GSO run (their datagrams count in `encapsulated`). */
  segmentedRuns = 0;
  /** Datagrams sent and received with remote checksum offload (VXLAN RCO: the inner checksum partial). */
  rcoSent = 0;
  rcoReceived = 0;
  private readonly bySubnet = new U32Map(64);
  private readonly byUnderlay = new U32Map(64);
  private peers: Array<VxlanPeer | undefined> = [];
  /**
   * Per peer slot, the 22 bytes written in front of an inner IP packet (VXLAN header, then the inner
   * Ethernet header to the peer's VTEP MAC) as 5 int32 words and a 16-bit one: encapsulation is six
   * stores of precomputed words instead of field-by-field header writing.
   */
  private encapWords = new Int32Array(HDR_WORDS * 8);
  /**
   * Per peer slot, its underlay address for `transport.send`. Addresses are unsigned, and one >= 2^31
   * is not a small integer: read from a double field or a typed array and passed to a call V8 did not
   * inline, it would be boxed into a new heap number per packet. An array of generic elements holds
   * each address as one heap number made when the peer is set, and passing that on allocates nothing.
   * (The `undefined` it starts with keeps V8 from specialising it to unboxed doubles.)
   */
  private readonly underlay: Array<number | undefined> = [undefined];
  /** Per peer slot, datagrams sent (2 * slot) and accepted (2 * slot + 1) since the peer was set. */
  private peerCounts = new Float64Array(16);
  private readonly vx = new VxlanView();
  /** The payload sums of a super-frame laid out as datagrams (`sendSegmented`). */
  private readonly segSums = new Uint32Array(MAX_SEGMENTS);
  /** Joins the TCP segments of a received run into super-frames for the router. */
  readonly gro: TcpCoalescer;
  /** A capture of the underlay side (`podnet capture vxlan`), undefined when none runs (see tap.ts). */
  tap: DatagramTap | undefined;

  constructor(
    readonly cfg: VxlanConfig,
    private readonly transport: UdpTransport,
    private readonly router: Router,
  ) {
    this.gro = new TcpCoalescer({
      plain: (buf, ipOff, ipLen) => router.fromOverlay(buf, ipOff, ipLen),
      superFrame: (buf, ipOff, ipLen, mss, room) => router.fromOverlaySuper(buf, ipOff, ipLen, mss, room),
    });
  }

  get innerMtu(): number {
    return this.cfg.innerMtu;
  }

  setPeer(peer: VxlanPeer): void {
    this.removePeer(peer.subnetNetwork);
    let slot = this.peers.indexOf(undefined);
    if (slot < 0) slot = this.peers.length;
    this.peers[slot] = peer;
    this.underlay[slot] = peer.underlayIp >>> 0;
    if ((slot + 1) * HDR_WORDS > this.encapWords.length) {
      const w = new Int32Array(this.encapWords.length * 2);
      w.set(this.encapWords);
      this.encapWords = w;
    }
    if ((slot + 1) * 2 > this.peerCounts.length) {
      const c = new Float64Array(this.peerCounts.length * 2);
      c.set(this.peerCounts);
      this.peerCounts = c;
    }
    this.peerCounts[slot * 2] = 0;
    this.peerCounts[slot * 2 + 1] = 0;
    const w = this.encapWords;
    const b = slot * HDR_WORDS;
    const { vni, localVtepMacHi: srcHi, localVtepMacLo: srcLo } = this.cfg;
    const dstHi = peer.vtepMacHi;
    const dstLo = peer.vtepMacLo;
    w[b] = VXLAN_FLAG_I << 24; // flags, 24 reserved bits
    w[b + 1] = (vni & 0xffffff) << 8; // VNI, reserved byte
    w[b + 2] = ((dstHi & 0xffff) << 16) | (dstLo >>> 16); // inner Ethernet: destination MAC
    w[b + 3] = ((dstLo & 0xffff) << 16) | (srcHi & 0xffff); // ... then the source MAC
    w[b + 4] = srcLo | 0;
    w[b + 5] = EtherType.IPv4; // 16 bits
    this.bySubnet.set(peer.subnetNetwork, slot);
    this.byUnderlay.set(peer.underlayIp, slot);
  }

  removePeer(subnetNetwork: number): void {
    const slot = this.bySubnet.get(subnetNetwork);
    if (slot < 0) return;
    const p = this.peers[slot]!;
    this.bySubnet.delete(subnetNetwork);
    if (this.byUnderlay.get(p.underlayIp) === slot) this.byUnderlay.delete(p.underlayIp);
    this.peers[slot] = undefined;
    this.underlay[slot] = undefined;
  }

  listPeers(): VxlanPeer[] {
    return this.peers.filter((p): p is VxlanPeer => p !== undefined);
  }

  /** Every peer with the datagrams sent to it and accepted from it since it was set. */
  peerStats(): Array<{ peer: VxlanPeer; txDatagrams: number; rxDatagrams: number }> {
    const out: Array<{ peer: VxlanPeer; txDatagrams: number; rxDatagrams: number }> = [];
    for (let i = 0; i < this.peers.length; i++) {
      const peer = this.peers[i];
      if (peer !== undefined) out.push({ peer, txDatagrams: this.peerCounts[i * 2]!, rxDatagrams: this.peerCounts[i * 2 + 1]! });
    }
    return out;
  }

  send(buf: Buffer, ipOff: number, ipLen: number, dst: number): OverlayResult {
    const slot = this.bySubnet.get(dst & this.cfg.subnetMask);
    if (slot < 0) return OverlayResult.NoRoute;
    if (ipLen > this.cfg.innerMtu) return OverlayResult.TooBig;
    const vxOff = ipOff - ETH_HLEN - VXLAN_HLEN;
    if (vxOff < 0) {
      this.drops.add(DropReason.Oversize);
      return OverlayResult.Dropped;
    }
    this.writeEncap(buf, vxOff, slot);
    this.encapsulated++;
    this.peerCounts[slot * 2]! += 1;
    const len = ipLen + ETH_HLEN + VXLAN_HLEN;
    const sport = this.sourcePort(flowHash(buf, ipOff, ipLen));
    if (this.tap !== undefined) this.tap.datagram(buf, vxOff, len, TapDir.Out, this.underlay[slot]!, this.cfg.port, sport);
    if (!this.transport.send(buf, vxOff, len, this.underlay[slot]!, this.cfg.port, sport)) {
      this.drops.add(DropReason.TxFailed);
      return OverlayResult.Dropped;
    }
    return OverlayResult.Sent;
  }

  /** The VXLAN header and inner Ethernet header to peer `slot` at `off`: six stores of its precomputed words. */
  private writeEncap(buf: Buffer, off: number, slot: number): void {
    const w = this.encapWords;
    const b = slot * HDR_WORDS;
    writeU32(buf, off, w[b]!);
    writeU32(buf, off + 4, w[b + 1]!);
    writeU32(buf, off + 8, w[b + 2]!);
    writeU32(buf, off + 12, w[b + 3]!);
    writeU32(buf, off + 16, w[b + 4]!);
    writeU16(buf, off + 20, w[b + 5]!);
  }

  /**
   * Outer UDP source port for a flow hash: in Linux's default range for it (the ephemeral ports
   * 32768-60999), or, with GSO, one of the transport's GSO sockets' ports (ephemeral ports too).
   */
  private sourcePort(h: number): number {
    const ports = this.transport.sourcePorts;
    if (ports !== undefined) return ports[h % ports.length]!;
    return 32768 + (h % (61000 - 32768));
  }

  /** Whether `sendSegmented` can hand TCP super-frames to the kernel as UDP GSO runs. */
  get segmentedSend(): boolean {
    return this.transport.sendSegmented !== undefined && this.transport.sourcePorts !== undefined;
  }

  /**
   * Sends a TCP super-frame (IPv4 at `ipOff`, `ipLen` bytes, TTL and NAT done) to another node as
   * VXLAN datagrams of at most `mss` inner payload bytes each, built in place and handed to the
   * kernel as one UDP GSO run: the segments are laid end to end from `ipOff - ENCAP_HLEN` on, each
   * VXLAN header + inner Ethernet + IP + TCP header + payload, with its own lengths, sequence
   * number, flags and checksums (as Linux's tcp_gso_segment writes them), so every datagram is one
   * a kernel VXLAN peer takes as it is. `room` is the bytes usable from `ipOff` (the rest of its
   * receive slot). Returns NoRoute / TooBig (does not fit the slot: split it first) / Sent / Dropped.
   */
  sendSegmented(buf: Buffer, ipOff: number, ipLen: number, dst: number, mss: number, room: number): OverlayResult {
    const slot = this.bySubnet.get(dst & this.cfg.subnetMask);
    if (slot < 0) return OverlayResult.NoRoute;
    const ihl = ipv4HeaderLen(buf, ipOff);
    const tcp = ipOff + ihl;
    const doff = tcpHeaderLen(buf, tcp);
    const hdr = ihl + doff;
    const payload = ipLen - hdr;
    if (mss <= 0 || hdr + mss > this.cfg.innerMtu || payload <= 0) return OverlayResult.TooBig;
    const n = Math.ceil(payload / mss);
    const stride = ENCAP_HLEN + hdr + mss;
    const last = payload - (n - 1) * mss;
    const total = (n - 1) * stride + ENCAP_HLEN + hdr + last;
    const base = ipOff - ENCAP_HLEN;
    if (base < 0 || n > MAX_SEGMENTS || total - ENCAP_HLEN > room) return OverlayResult.TooBig;
    this.writeEncap(buf, base, slot); // headers of segment 0
    // To a peer that takes RCO, the segments say so (C bit; the checksum starts at the inner TCP
    // header) and keep their TCP checksums partial: no payload is summed on either side. The run
    // goes out of a UDP socket, so the outer UDP checksum covers every byte, as RCO requires.
    const rco = this.peers[slot]!.rco === true && ETH_HLEN + ihl <= VXLAN_RCO_MAX_START;
    if (rco) {
      setVxlanRco(buf, base, ETH_HLEN + ihl, false);
      this.rcoSent += n;
    }
    // Every segment gets its payload and a copy of segment 0's headers (still as they came), then
    // its own lengths, numbers and checksums (the payload sums come from the layout).
    const sums = rco ? null : this.segSums;
    layoutTcpSegments(buf, base, ENCAP_HLEN + hdr, payload, mss, stride, n, sums);
    const ident = ipv4Ident(buf, ipOff);
    const seq = tcpSeq32(buf, tcp);
    const tflags = tcpFlags(buf, tcp);
    writeSegmentHeaders(buf, ipOff, stride, n, ihl, doff, mss, last, ident, seq, tflags, sums);
    this.encapsulated += n;
    this.peerCounts[slot * 2]! += n;
    // One send takes at most one UDP payload's worth (65507 bytes) and 64 datagrams; the VXLAN and
    // inner headers of a 64 KB super-frame's segments make it larger, so it may take two runs (not
    // from a pod whose device keeps its super-frames to `podGsoMaxSegments`).
    const perRun = segmentsPerRun(stride);
    const port = this.sourcePort(flowHash(buf, ipOff, ipLen));
    const dstIp = this.underlay[slot]!;
    for (let first = 0; first < n; first += perRun) {
      const off = base + first * stride;
      const len = first + perRun >= n ? total - first * stride : perRun * stride;
      this.segmentedRuns++;
      const tap = this.tap;
      if (tap !== undefined) for (let o = 0; o < len; o += stride) tap.datagram(buf, off + o, len - o < stride ? len - o : stride, TapDir.Out, dstIp, this.cfg.port, port);
      if (!this.transport.sendSegmented!(buf, off, len, stride, dstIp, this.cfg.port, port)) {
        this.drops.add(DropReason.TxFailed);
        return OverlayResult.Dropped;
      }
    }
    return OverlayResult.Sent;
  }

  /**
   * A UDP payload received on the VXLAN port from `srcIp` (unsigned, or int32 with the same bits):
   * checks it and hands the inner IPv4 packet to the router, which validates it. The inner packet is
   * routed in place, so the buffer must stay valid for the batch.
   */
  receive(buf: Buffer, off: number, len: number, srcIp: number): void {
    if (this.accept(buf, off, len, srcIp) === Accepted.No) return;
    const e = off + VXLAN_HLEN;
    this.router.fromOverlay(buf, e + ETH_HLEN, len - VXLAN_HLEN - ETH_HLEN);
  }

  /**
   * The VXLAN socket as a source for `Dataplane.receiveRing`: slot i is one datagram, or a run the
   * kernel coalesced (decapsulated and joined per flow), from `ring.srcIps[i]`. Nothing allocated
   * per datagram (the sender goes on as an int32: an address >= 128.0.0.0 would be boxed unsigned).
   */
  ingress(ring: VxlanRing): IngressPort {
    return {
      framing: 'vxlan',
      receive: (buf: Buffer, off: number, len: number, i: number): void => {
        const seg = ring.segSizes[i]!;
        const tap = this.tap;
        if (tap !== undefined) this.tapRun(tap, buf, off, len, seg, ring.srcIps[i]!, ring.srcPorts !== undefined ? ring.srcPorts[i]! : 0);
        if (seg !== 0 && len > seg) this.receiveRun(buf, off, len, seg, ring.srcIps[i]! | 0, off - ring.headroom + ring.slotSize);
        else this.receive(buf, off, len, ring.srcIps[i]! | 0);
      },
    };
  }

  /** Shows a received slot (one datagram, or a GRO run of `seg`-byte datagrams) to a capture, datagram by datagram. */
  tapRun(tap: DatagramTap, buf: Buffer, off: number, len: number, seg: number, srcIp: number, srcPort: number): void {
    if (seg === 0 || len <= seg) return tap.datagram(buf, off, len, TapDir.In, srcIp, srcPort, this.cfg.port);
    for (let o = 0; o < len; o += seg) tap.datagram(buf, off + o, len - o < seg ? len - o : seg, TapDir.In, srcIp, srcPort, this.cfg.port);
  }

  /**
   * A run of VXLAN datagrams the kernel coalesced (UDP_GRO): `segSize` bytes each (the last may be
   * shorter) from `off`, in a receive slot that ends at `slotEnd`. Each is checked as `receive`
   * checks one; consecutive TCP segments of one flow are joined into super-frames (`TcpCoalescer`).
   */
  receiveRun(buf: Buffer, off: number, len: number, segSize: number, srcIp: number, slotEnd: number): void {
    const gro = this.gro;
    const n = Math.ceil(len / segSize);
    const last = len - (n - 1) * segSize;
    for (let i = 0; i < n; i++) {
      const o = off + i * segSize;
      const l = i === n - 1 ? last : segSize;
      const a = this.accept(buf, o, l, srcIp);
      if (a === Accepted.No) continue;
      const rco = a === Accepted.RcoTcp;
      gro.add(buf, o + VXLAN_HLEN, l - VXLAN_HLEN, slotEnd, rco);
      // The datagrams after it that continue its segment: their VXLAN and Ethernet headers are its
      // own (so `accept` would say the same of them), their TCP checksums checked unless RCO left
      // them partial.
      const k = gro.extendRun(buf, o, VXLAN_HLEN, segSize, n - i, last, !rco);
      if (k > 0) {
        this.acceptedAlike(srcIp, k, rco);
        i += k;
      }
    }
    gro.flush(buf);
  }

  /** Counts `k` datagrams from `srcIp` as `accept` counts each it takes (after it took one like them). */
  private acceptedAlike(srcIp: number, k: number, rco: boolean): void {
    const slot = this.byUnderlay.get(srcIp);
    if (slot < 0) return;
    this.decapsulated += k;
    this.peerCounts[slot * 2 + 1]! += k;
    if (rco) this.rcoReceived += k;
  }

  /**
   * Checks one VXLAN datagram: our VNI, a known sender, an IPv4 inner frame to our VTEP MAC, and
   * with the RCO bit, a checksum start and field that are the inner packet's TCP or UDP checksum
   * (anything else is dropped: podnet finishes no other). An RCO datagram's partial checksum is then
   * finished where it is passed on alone (its field holds the pseudo-header sum, which the router's
   * partial-checksum rule completes) or left partial in a joined super-frame (`Accepted.RcoTcp`).
   */
  private accept(buf: Buffer, off: number, len: number, srcIp: number): Accepted {
    const vx = this.vx;
    if (vx.reset(buf, off, len) !== ParseError.Ok) return this.drop(DropReason.VxlanMalformed);
    if (vx.vni !== this.cfg.vni) return this.drop(DropReason.VxlanBadVni);
    const slot = this.byUnderlay.get(srcIp);
    if (slot < 0) return this.drop(DropReason.VxlanUnknownSender);
    const e = off + VXLAN_HLEN;
    if (len - VXLAN_HLEN < ETH_HLEN) return this.drop(DropReason.VxlanMalformed);
    if (ethType(buf, e) !== EtherType.IPv4) return this.drop(DropReason.UnsupportedEtherType);
    // The inner destination MAC: ours or broadcast (int32 reads: no heap numbers).
    const dHi = ethDstHi(buf, e);
    const dLo = ethDstLo32(buf, e);
    if (!(dHi === 0xffff && dLo === -1) && (dHi !== this.cfg.localVtepMacHi || dLo !== (this.cfg.localVtepMacLo | 0))) {
      return this.drop(DropReason.NotForRouter);
    }
    const rco = vxlanRco(buf, off);
    let accepted = Accepted.Yes;
    if (rco >= 0) {
      // The start must be the inner L4 header (after an IPv4 header that is all here), the field
      // that protocol's checksum, and the packet no fragment.
      const ip = e + ETH_HLEN;
      const ipLen = len - VXLAN_HLEN - ETH_HLEN;
      if (ipLen < IPV4_MIN_HLEN) return this.drop(DropReason.VxlanBadRco);
      const ihl = ipv4HeaderLen(buf, ip);
      const proto = ipv4Protocol(buf, ip);
      const udp = (rco & VXLAN_RCO_UDP) !== 0;
      if (
        vxlanRcoStart(rco) !== ETH_HLEN + ihl ||
        ihl < IPV4_MIN_HLEN ||
        ihl + (udp ? 8 : 20) > ipLen ||
        proto !== (udp ? IpProtocol.UDP : IpProtocol.TCP) ||
        ipv4IsFragment(buf, ip)
      ) {
        return this.drop(DropReason.VxlanBadRco);
      }
      this.rcoReceived++;
      if (!udp && ihl === IPV4_MIN_HLEN) accepted = Accepted.RcoTcp;
    }
    this.decapsulated++;
    this.peerCounts[slot * 2 + 1]! += 1;
    return accepted;
  }

  private drop(reason: DropReason): Accepted.No {
    this.drops.add(reason);
    return Accepted.No;
  }
}
