import {
  ETH_HLEN,
  EtherType,
  IpProtocol,
  ParseError,
  readI32,
  readU16,
  VXLAN_FLAG_I,
  VXLAN_HLEN,
  VxlanView,
  writeU16,
  writeU32,
} from '../packet/index.js';
import { U32Map } from '../util/u32map.js';
import { DropCounters, DropReason } from './counters.js';
import { OverlayResult, type Overlay, type Router } from './router.js';

/** Carries VXLAN payloads (VXLAN header + inner frame) between nodes over UDP. */
export interface UdpTransport {
  /**
   * Sends `buf[off, off+len)` to `dstIp:dstPort` (numbers), from `srcPort` where the transport can choose
   * it per packet; false when the packet was dropped. The bytes may be reused as soon as it returns.
   */
  send(buf: Buffer, off: number, len: number, dstIp: number, dstPort: number, srcPort: number): boolean;
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
}

/** Int32 words of a peer's encapsulation header (22 bytes: 5 words and a 16-bit one). */
const HDR_WORDS = 6;

/**
 * UDP source port for a packet's outer header, from a hash of its inner flow (RFC 7348 section 5:
 * ECMP entropy, as Linux does): addresses and protocol, and the ports of a TCP/UDP first fragment when
 * they are inside the packet. In Linux's default range for it, the ephemeral ports 32768-60999.
 * Everything is read as int32, so nothing here is ever a heap number.
 */
function flowPort(buf: Buffer, ipOff: number, ipLen: number): number {
  const proto = buf[ipOff + 9]!;
  let h = Math.imul(readI32(buf, ipOff + 12) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(readI32(buf, ipOff + 16), 0xc2b2ae35) ^ proto;
  const ihl = (buf[ipOff]! & 0x0f) << 2;
  if ((proto === IpProtocol.TCP || proto === IpProtocol.UDP) && (readU16(buf, ipOff + 6) & 0x1fff) === 0 && ihl + 4 <= ipLen) {
    h ^= Math.imul(readI32(buf, ipOff + ihl), 0x27d4eb2f);
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return 32768 + ((h >>> 0) % (61000 - 32768));
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
  private readonly vx = new VxlanView();

  constructor(
    readonly cfg: VxlanConfig,
    private readonly transport: UdpTransport,
    private readonly router: Router,
  ) {}

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

  send(buf: Buffer, ipOff: number, ipLen: number, dst: number): OverlayResult {
    const slot = this.bySubnet.get(dst & this.cfg.subnetMask);
    if (slot < 0) return OverlayResult.NoRoute;
    if (ipLen > this.cfg.innerMtu) return OverlayResult.TooBig;
    const vxOff = ipOff - ETH_HLEN - VXLAN_HLEN;
    if (vxOff < 0) {
      this.drops.add(DropReason.Oversize);
      return OverlayResult.Dropped;
    }
    const w = this.encapWords;
    const b = slot * HDR_WORDS;
    writeU32(buf, vxOff, w[b]!);
    writeU32(buf, vxOff + 4, w[b + 1]!);
    writeU32(buf, vxOff + 8, w[b + 2]!);
    writeU32(buf, vxOff + 12, w[b + 3]!);
    writeU32(buf, vxOff + 16, w[b + 4]!);
    writeU16(buf, vxOff + 20, w[b + 5]!);
    this.encapsulated++;
    const len = ipLen + ETH_HLEN + VXLAN_HLEN;
    if (!this.transport.send(buf, vxOff, len, this.underlay[slot]!, this.cfg.port, flowPort(buf, ipOff, ipLen))) {
      this.drops.add(DropReason.TxFailed);
      return OverlayResult.Dropped;
    }
    return OverlayResult.Sent;
  }

  /**
   * A UDP payload received on the VXLAN port from `srcIp` (unsigned, or int32 with the same bits):
   * checks it and hands the inner IPv4 packet to the router, which validates it. The inner packet is
   * routed in place, so the buffer must stay valid for the batch.
   */
  receive(buf: Buffer, off: number, len: number, srcIp: number): void {
    const vx = this.vx;
    if (vx.reset(buf, off, len) !== ParseError.Ok) return this.drops.add(DropReason.VxlanMalformed);
    if (vx.vni !== this.cfg.vni) return this.drops.add(DropReason.VxlanBadVni);
    if (this.byUnderlay.get(srcIp) < 0) return this.drops.add(DropReason.VxlanUnknownSender);
    const e = off + VXLAN_HLEN;
    const elen = len - VXLAN_HLEN;
    if (elen < ETH_HLEN) return this.drops.add(DropReason.VxlanMalformed);
    if (readU16(buf, e + 12) !== EtherType.IPv4) return this.drops.add(DropReason.UnsupportedEtherType);
    // The inner destination MAC: ours or broadcast (int32 reads: no heap numbers).
    const dHi = readU16(buf, e);
    const dLo = readI32(buf, e + 2);
    if (!(dHi === 0xffff && dLo === -1) && (dHi !== this.cfg.localVtepMacHi || dLo !== (this.cfg.localVtepMacLo | 0))) {
      return this.drops.add(DropReason.NotForRouter);
    }
    this.decapsulated++;
    this.router.fromOverlay(buf, e + ETH_HLEN, elen - ETH_HLEN);
  }
}
