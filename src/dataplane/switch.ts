import { ArpView, ETH_HLEN, EthernetView, EtherType, Ipv4View, ParseError, ethDstHi, ethDstIsGroup, ethDstLo32, ethSrcHi, ethSrcLo32, ipv4Src32 } from '../packet/index.js';
import { DropReason } from '../util/counters.js';
import { MacTable } from './mactable.js';
import { OffloadResolver, offloadPending, superFrameMss } from './offload.js';
import { PortKind, type Port } from './port.js';

/**
 * The node's L2 switch. Learns source MACs with aging, forwards known unicast to one port, floods
 * broadcast, multicast and unknown unicast to every port but the ingress one, and enforces anti-spoofing
 * on restricted (pod) ports. Per-port rx/tx counters; every drop is counted on the ingress port.
 *
 * Re-entrancy: ports never call back into `input` synchronously (generated frames are injected through
 * the data plane's queue), so the reusable views below are safe.
 */
export class Switch {
  readonly ports: Array<Port | undefined> = [];
  readonly macs: MacTable;
  now = 0;
  macTableFull = 0;
  /**
   * Like Linux's br_netfilter: IPv4 between two pod ports is shown to connection tracking, so a service
   * endpoint answering a client on the same node (directly, over L2) is un-NATed. Returns false to drop.
   */
  bridgeHook: ((buf: Buffer, ipOff: number, ipLen: number) => boolean) | undefined;
  /**
   * With a bridge hook: whether it would act on this IPv4 packet at all (conntrack knows its
   * connection). An offloaded super-frame it would not act on passes between two offload ports
   * whole; without a probe, every offloaded frame the hook may see is split first.
   */
  bridgeProbe: ((buf: Buffer, ipOff: number, ipLen: number) => boolean) | undefined;
  private readonly eth = new EthernetView();
  private readonly ipv = new Ipv4View();
  private readonly arp = new ArpView();
  private readonly resolver = new OffloadResolver();

  constructor(opts: { macCapacity?: number; agingSeconds?: number } = {}) {
    this.macs = new MacTable(opts.macCapacity ?? 4096, opts.agingSeconds ?? 300);
  }

  attach(port: Port): void {
    let i = this.ports.indexOf(undefined);
    if (i < 0) i = this.ports.length;
    this.ports[i] = port;
    port.index = i;
    if (port.macHi >= 0) this.macs.learn(port.macHi, port.macLo, i, Infinity);
  }

  detach(port: Port): void {
    if (port.index < 0 || this.ports[port.index] !== port) return;
    this.macs.flushPort(port.index);
    this.ports[port.index] = undefined;
    port.index = -1;
  }

  /**
   * A frame received on `port`. MAC low halves and addresses are read as int32 (`readI32`) and
   * compared with the port's as int32: small integers whatever their value, so nothing is boxed.
   */
  input(port: Port, buf: Buffer, off: number, len: number): void {
    port.traffic.rx(len);
    const eth = this.eth;
    if (eth.reset(buf, off, len) !== ParseError.Ok) return port.drop(DropReason.MalformedEthernet);
    const srcHi = ethSrcHi(buf, off);
    const srcLo = ethSrcLo32(buf, off);
    if ((srcHi & 0x0100) !== 0) return port.drop(DropReason.MulticastSource);
    const type = eth.etherType;
    if (port.restricted) {
      if (srcHi !== port.macHi || srcLo !== (port.macLo | 0)) return port.drop(DropReason.SpoofedSourceMac);
      if (type === EtherType.IPv4) {
        if (this.ipv.reset(buf, off + ETH_HLEN, len - ETH_HLEN) !== ParseError.Ok) return port.drop(DropReason.MalformedIpv4);
        if (ipv4Src32(buf, off + ETH_HLEN) !== (port.ip | 0)) return port.drop(DropReason.SpoofedSourceIp);
      } else if (type === EtherType.ARP) {
        const arp = this.arp;
        if (arp.reset(buf, off + ETH_HLEN, len - ETH_HLEN) !== ParseError.Ok) return port.drop(DropReason.MalformedArp);
        if (arp.senderMacHi !== port.macHi || arp.senderMacLo !== port.macLo || (arp.senderIp !== port.ip && arp.senderIp !== 0)) {
          return port.drop(DropReason.SpoofedArp);
        }
      } else {
        return port.drop(DropReason.UnsupportedEtherType);
      }
    } else if (!this.macs.learn(srcHi, srcLo, port.index, this.now)) {
      this.macTableFull++;
    }
    if (port.offload && offloadPending(buf, off)) return this.offloaded(port, buf, off, len);
    this.forward(port, buf, off, len, type);
  }

  /**
   * A frame with offload work left in it (a TCP super-frame, a partial checksum) from an offload
   * port. Another offload port takes it as it is, when nothing has to look inside (no bridge hook,
   * or one whose probe says it has nothing to do with the packet); anywhere else it goes as the
   * plain frames the resolver makes of it (in its own receive slot).
   */
  private offloaded(port: Port, buf: Buffer, off: number, len: number): void {
    if (!ethDstIsGroup(buf, off)) {
      const out = this.macs.lookup(ethDstHi(buf, off), ethDstLo32(buf, off), this.now);
      const dst = out >= 0 && out !== port.index ? this.ports[out] : undefined;
      if (dst !== undefined && dst.kind === PortKind.Router) {
        // The router takes a TCP super-frame whole when it can send it on whole (VXLAN with GSO).
        const mss = superFrameMss(buf, off);
        if (mss !== 0 && dst.outputSuper(buf, off, len, mss, port.rxCapacity)) {
          dst.traffic.tx(len);
          return;
        }
      } else if (dst !== undefined && dst.offload) {
        const probe = this.bridgeProbe;
        if (this.bridgeHook === undefined || (probe !== undefined && !probe(buf, off + ETH_HLEN, len - ETH_HLEN))) {
          dst.traffic.tx(len);
          dst.outputOffloaded(buf, off, len);
          return;
        }
      }
    }
    const r = this.resolver;
    const n = r.resolve(buf, off, len, port.rxCapacity);
    if (n === 0) return port.drop(r.dropReason);
    for (let i = 0; i < n; i++) this.forward(port, buf, r.segOff[i]!, r.segLen[i]!, EtherType.IPv4);
  }

  /** Forwards a checked frame: flood, or to the port its destination MAC was learned on. */
  private forward(port: Port, buf: Buffer, off: number, len: number, type: number): void {
    if (ethDstIsGroup(buf, off)) return this.flood(port, buf, off, len); // multicast/broadcast
    const out = this.macs.lookup(ethDstHi(buf, off), ethDstLo32(buf, off), this.now);
    if (out < 0) return this.flood(port, buf, off, len);
    if (out === port.index) return port.drop(DropReason.SameSegment);
    const dst = this.ports[out];
    if (dst === undefined) return port.drop(DropReason.PortDown);
    if (this.bridgeHook !== undefined && port.restricted && dst.restricted && type === EtherType.IPv4) {
      if (!this.bridgeHook(buf, off + ETH_HLEN, len - ETH_HLEN)) return;
    }
    dst.traffic.tx(len);
    dst.output(buf, off, len);
  }

  private flood(from: Port, buf: Buffer, off: number, len: number): void {
    const ports = this.ports;
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i];
      if (p === undefined || p === from) continue;
      p.traffic.tx(len);
      p.output(buf, off, len);
    }
  }
}
