import {
  ETH_HLEN,
  EthernetView,
  EtherType,
  IpProtocol,
  Ipv4View,
  ParseError,
  VXLAN_HLEN,
  VxlanView,
  writeEthernetHeader,
  writeVxlanHeader,
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
  private readonly vx = new VxlanView();
  private readonly eth = new EthernetView();
  private readonly ipv = new Ipv4View();

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
  }

  listPeers(): VxlanPeer[] {
    return this.peers.filter((p): p is VxlanPeer => p !== undefined);
  }

  send(buf: Buffer, ipOff: number, ipLen: number, dst: number): OverlayResult {
    const slot = this.bySubnet.get((dst & this.cfg.subnetMask) >>> 0);
    if (slot < 0) return OverlayResult.NoRoute;
    if (ipLen > this.cfg.innerMtu) return OverlayResult.TooBig;
    const peer = this.peers[slot]!;
    const frameOff = ipOff - ETH_HLEN;
    const vxOff = frameOff - VXLAN_HLEN;
    if (vxOff < 0) {
      this.drops.add(DropReason.Oversize);
      return OverlayResult.Dropped;
    }
    writeEthernetHeader(buf, frameOff, peer.vtepMacHi, peer.vtepMacLo, this.cfg.localVtepMacHi, this.cfg.localVtepMacLo, EtherType.IPv4);
    writeVxlanHeader(buf, vxOff, this.cfg.vni);
    this.encapsulated++;
    if (!this.transport.send(buf, vxOff, ipLen + ETH_HLEN + VXLAN_HLEN, peer.underlayIp, this.cfg.port, this.flowPort(buf, ipOff))) {
      this.drops.add(DropReason.TxFailed);
      return OverlayResult.Dropped;
    }
    return OverlayResult.Sent;
  }

  /** UDP source port for the outer header, from the inner flow (RFC 7348 section 5). */
  flowPort(buf: Buffer, ipOff: number): number {
    const src = buf.readUInt32BE(ipOff + 12);
    const dst = buf.readUInt32BE(ipOff + 16);
    const proto = buf[ipOff + 9]!;
    let h = Math.imul(src ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(dst, 0xc2b2ae35) ^ proto;
    const ihl = (buf[ipOff]! & 0x0f) << 2;
    if ((proto === IpProtocol.TCP || proto === IpProtocol.UDP) && (buf.readUInt16BE(ipOff + 6) & 0x1fff) === 0) {
      h ^= Math.imul(buf.readUInt32BE(ipOff + ihl), 0x27d4eb2f);
    }
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    // Linux's default VXLAN source port range is the ephemeral range; stay within 32768-61000.
    return 32768 + ((h >>> 0) % (61000 - 32768));
  }

  /**
   * A UDP payload received on the VXLAN port from `srcIp`: checks it and hands the inner IPv4 packet
   * to the router. The inner packet is routed in place, so the buffer must stay valid for the batch.
   */
  receive(buf: Buffer, off: number, len: number, srcIp: number): void {
    const vx = this.vx;
    if (vx.reset(buf, off, len) !== ParseError.Ok) return this.drops.add(DropReason.VxlanMalformed);
    if (vx.vni !== this.cfg.vni) return this.drops.add(DropReason.VxlanBadVni);
    if (this.byUnderlay.get(srcIp) < 0) return this.drops.add(DropReason.VxlanUnknownSender);
    const eth = this.eth;
    if (eth.reset(buf, vx.payloadOffset, vx.payloadLength) !== ParseError.Ok) return this.drops.add(DropReason.VxlanMalformed);
    if (eth.etherType !== EtherType.IPv4) return this.drops.add(DropReason.UnsupportedEtherType);
    if (!eth.isBroadcast && (eth.dstHi !== this.cfg.localVtepMacHi || eth.dstLo !== this.cfg.localVtepMacLo)) {
      return this.drops.add(DropReason.NotForRouter);
    }
    if (this.ipv.reset(buf, eth.payloadOffset, eth.payloadLength) !== ParseError.Ok) return this.drops.add(DropReason.MalformedIpv4);
    this.decapsulated++;
    this.router.fromOverlay(buf, eth.payloadOffset, eth.payloadLength);
  }
}
