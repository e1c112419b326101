import { ArpOp, ArpView, ArpViewMut, ETH_HLEN, EthernetView, EthernetViewMut, EtherType, Ipv4View, ParseError, ARP_LEN, VNET_HDR_LEN, moveVnetHdr } from '../packet/index.js';
import { DropReason, TrafficCounters } from '../util/counters.js';
import type { Dataplane, IngressPort } from './dataplane.js';
import { Port, PortKind, TxQueue, type FrameSink } from './port.js';
import type { FrameTap } from './tap.js';

const BROADCAST_HI = 0xffff;
const BROADCAST_LO = 0xffffffff;

/**
 * A pod whose eth0 is a TAP device: Ethernet frames in and out unchanged. With `offload` (the device
 * was opened with offloads) frames come and go with a virtio-net header (see `Port.offload`), and
 * `rxCapacity` is the bytes of a receive slot from a frame's start.
 */
export class TapPort extends Port implements IngressPort {
  readonly framing = 'ethernet';
  readonly tx: TxQueue;
  rxTap: FrameTap | undefined;
  constructor(
    name: string,
    private readonly dp: Dataplane,
    sink: FrameSink,
    identity?: { macHi: number; macLo: number; ip: number },
    opts: { offload?: boolean; rxCapacity?: number } = {},
  ) {
    super(name, PortKind.Tap);
    this.tx = new TxQueue(sink, dp);
    if (identity) {
      this.macHi = identity.macHi;
      this.macLo = identity.macLo;
      this.ip = identity.ip;
      this.restricted = true;
    }
    if (opts.offload === true) {
      this.offload = true;
      this.rxCapacity = opts.rxCapacity ?? 0;
    }
  }
  receive(buf: Buffer, off: number, len: number): void {
    this.dp.switch.input(this, buf, off, len);
  }
  output(buf: Buffer, off: number, len: number): void {
    this.tx.push(buf, off, len);
  }
  override outputOffloaded(buf: Buffer, off: number, len: number): void {
    this.tx.push(buf, off, len, 1);
  }
}

/**
 * A pod whose eth0 is a TUN device (L3 only). The port stands in for the pod on the switch: it has a MAC,
 * answers ARP for the pod's IP, prepends an Ethernet header to the pod's packets (into the receive ring's
 * headroom, no copy) and strips it from frames addressed to the pod.
 *
 * With `offload` (the device was opened with offloads) packets come and go with a virtio-net header,
 * as on an offload TAP, and the port is an offload port like one: the header moves with the frame's
 * start (10 bytes copied, csum_start and hdr_len shifted by the 14 bytes of Ethernet), so the rest of
 * the data plane sees what an offload TAP gives it. `rxCapacity` is then the bytes of a receive slot
 * from the packet's start.
 */
export class TunPort extends Port implements IngressPort {
  readonly framing = 'ip';
  readonly tx: TxQueue;
  rxTap: FrameTap | undefined;
  private readonly eth = new EthernetView();
  private readonly ethw = new EthernetViewMut();
  private readonly ipv = new Ipv4View();
  private readonly arp = new ArpView();
  private readonly arpw = new ArpViewMut();

  constructor(
    name: string,
    private readonly dp: Dataplane,
    sink: FrameSink,
    identity: { macHi: number; macLo: number; ip: number },
    /** Gateway MAC and the pod subnet: packets to other subnets are framed to the gateway. */
    private readonly gw: { macHi: number; macLo: number; network: number; mask: number; broadcast: number },
    opts: { offload?: boolean; rxCapacity?: number } = {},
  ) {
    super(name, PortKind.Tun);
    this.tx = new TxQueue(sink, dp);
    this.macHi = identity.macHi;
    this.macLo = identity.macLo;
    this.ip = identity.ip;
    this.restricted = true;
    if (opts.offload === true) {
      this.offload = true;
      // The frame the switch sees starts 14 bytes before the packet.
      this.rxCapacity = (opts.rxCapacity ?? 0) + ETH_HLEN;
    }
  }

  /** An IP packet from the pod at `off` (the ring leaves headroom before it; its virtio-net header with offloads). */
  receive(buf: Buffer, off: number, len: number): void {
    if (off < (this.offload ? ETH_HLEN + VNET_HDR_LEN : ETH_HLEN)) {
      this.traffic.rx(len);
      return this.drop(DropReason.MalformedEthernet);
    }
    if (this.ipv.reset(buf, off, len) !== ParseError.Ok) {
      this.traffic.rx(len);
      return this.drop(DropReason.MalformedIpv4);
    }
    // Before the Ethernet header overwrites it: the virtio-net header goes before the frame.
    if (this.offload) moveVnetHdr(buf, off - VNET_HDR_LEN, off - ETH_HLEN - VNET_HDR_LEN, ETH_HLEN);
    const dst = this.ipv.dst;
    const e = this.ethw;
    e.reset(buf, off - ETH_HLEN, len + ETH_HLEN);
    if (dst === 0xffffffff || dst === this.gw.broadcast) {
      e.setDst(BROADCAST_HI, BROADCAST_LO);
    } else if (((dst & this.gw.mask) >>> 0) === this.gw.network) {
      const slot = this.dp.neighbors.lookup(dst);
      if (slot >= 0) e.setDst(this.dp.neighbors.hi(slot), this.dp.neighbors.lo(slot));
      else e.setDst(this.gw.macHi, this.gw.macLo);
    } else {
      e.setDst(this.gw.macHi, this.gw.macLo);
    }
    e.setSrc(this.macHi, this.macLo);
    e.setEtherType(EtherType.IPv4);
    this.dp.switch.input(this, buf, off - ETH_HLEN, len + ETH_HLEN);
  }

  output(buf: Buffer, off: number, len: number): void {
    const eth = this.eth;
    if (eth.reset(buf, off, len) !== ParseError.Ok) return;
    if (!(eth.isBroadcast || (eth.dstHi === this.macHi && eth.dstLo === this.macLo))) return; // flood copy, not ours
    const type = eth.etherType;
    if (type === EtherType.IPv4) {
      this.tx.push(buf, eth.payloadOffset, eth.payloadLength);
      return;
    }
    if (type !== EtherType.ARP) return;
    const arp = this.arp;
    if (arp.reset(buf, eth.payloadOffset, eth.payloadLength) !== ParseError.Ok) return;
    if (arp.operation !== ArpOp.Request || arp.targetIp !== this.ip) return;
    this.replyArp(buf, off, arp);
  }

  /** A frame of an offload port, its virtio-net header before it: the packet goes with the header moved to it. */
  override outputOffloaded(buf: Buffer, off: number, len: number): void {
    const eth = this.eth;
    if (eth.reset(buf, off, len) !== ParseError.Ok || eth.etherType !== EtherType.IPv4) return;
    if (!(eth.dstHi === this.macHi && eth.dstLo === this.macLo)) return;
    const ip = eth.payloadOffset;
    moveVnetHdr(buf, off - VNET_HDR_LEN, ip - VNET_HDR_LEN, -ETH_HLEN);
    this.tx.push(buf, ip, eth.payloadLength, 1);
  }

  private replyArp(req: Buffer, reqOff: number, arp: ArpView): void {
    const slot = this.dp.allocFrame();
    if (slot < 0) return;
    const out = this.dp.pool.buffer;
    const e = this.ethw;
    e.reset(out, slot, ETH_HLEN + ARP_LEN);
    e.setDst(this.eth.srcHi, this.eth.srcLo);
    e.setSrc(this.macHi, this.macLo);
    e.setEtherType(EtherType.ARP);
    // Copy the request's ARP body, then turn it into a reply.
    req.copy(out, slot + ETH_HLEN, reqOff + ETH_HLEN, reqOff + ETH_HLEN + ARP_LEN);
    const w = this.arpw;
    w.reset(out, slot + ETH_HLEN, ARP_LEN);
    w.setOperation(ArpOp.Reply);
    w.setTargetMac(arp.senderMacHi, arp.senderMacLo);
    w.setTargetIp(arp.senderIp);
    w.setSenderMac(this.macHi, this.macLo);
    w.setSenderIp(this.ip);
    this.dp.inject(this, out, slot, ETH_HLEN + ARP_LEN);
  }
}

/**
 * The node's own side: a TUN device in the node's namespace carrying IP packets between the host kernel
 * and the router. Not a switch port.
 *
 * With `offload` (the device was opened with offloads, as pods' are) packets come and go with a
 * virtio-net header before them, counted from the IP header: the host's TCP hands over super-frames
 * and partial checksums, which the router routes whole where it can (`Router.fromHost`), and takes
 * them (`sendOffloaded`). `rxCapacity` is then the bytes of a receive slot from a packet's start.
 */
export class HostPort implements IngressPort {
  readonly framing = 'ip';
  readonly tx: TxQueue;
  rxTap: FrameTap | undefined;
  readonly traffic = new TrafficCounters();
  readonly offload: boolean;
  readonly rxCapacity: number;
  onPacket: (buf: Buffer, off: number, len: number) => void = () => {};
  constructor(
    readonly name: string,
    dp: Dataplane,
    sink: FrameSink,
    opts: { offload?: boolean; rxCapacity?: number } = {},
  ) {
    this.tx = new TxQueue(sink, dp);
    this.offload = opts.offload === true;
    this.rxCapacity = this.offload ? (opts.rxCapacity ?? 0) : 0;
  }
  receive(buf: Buffer, off: number, len: number): void {
    this.traffic.rx(len);
    this.onPacket(buf, off, len);
  }
  send(buf: Buffer, off: number, len: number): void {
    this.traffic.tx(len);
    this.tx.push(buf, off, len);
  }
  /** An IP packet with its virtio-net header (counted from the IP header) in the 10 bytes before it. Offload only. */
  sendOffloaded(buf: Buffer, off: number, len: number): void {
    this.traffic.tx(len);
    this.tx.push(buf, off, len, 1);
  }
}
