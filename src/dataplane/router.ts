import {
  ArpOp,
  ArpView,
  ArpViewMut,
  ARP_LEN,
  ETH_HLEN,
  EthernetView,
  EthernetViewMut,
  EtherType,
  ICMP_HLEN,
  IcmpType,
  IcmpUnreachCode,
  IcmpView,
  IcmpViewMut,
  IpProtocol,
  IPV4_MIN_HLEN,
  Ipv4View,
  Ipv4ViewMut,
  ParseError,
  VXLAN_HLEN,
  completePartialChecksum,
  decrementIpv4Ttl,
  pseudoHeaderSum,
  writeEthernetHeader,
  ethDstHi,
  ethDstLo32,
  ethType,
  icmpType,
  ipv4DontFragment,
  ipv4Dst32,
  ipv4FlagsFrag,
  ipv4HeaderLen,
  ipv4Src32,
  ipv4Ttl,
  moveVnetHdr,
  setTcpChecksum,
  tcpHeaderLen,
  vnetPending,
  writeIpv4Header,
} from '../packet/index.js';
import { DropCounters, DropReason } from '../util/counters.js';
import { copyBytes } from '../io/copy.js';
import { OffloadResolver, SEGMENT_HEADROOM, TcpSplitter, VNET_HDR_LEN, superFrameMss } from './offload.js';
import type { BatchPrefetcher, Dataplane, Framing, RxRingLike } from './dataplane.js';
import { Port, PortKind } from './port.js';
import type { HostPort } from './ports.js';
import { Verdict, type Nat } from '../nat/nat.js';
import { HookPoint, HookVerdict, Hooks, Ingress, MARK_UPLINK, PacketContext } from './hooks.js';
import { TapDir, type FrameTap } from './tap.js';

export { Ingress, MARK_UPLINK } from './hooks.js';

/** Result codes an overlay returns for a packet it was handed. */
export const OverlayResult = { Sent: 0, NoRoute: 1, TooBig: 2, Dropped: 3 } as const;
export type OverlayResult = (typeof OverlayResult)[keyof typeof OverlayResult];

/**
 * The tunnel to other nodes (VXLAN). `send` takes an IPv4 packet at `ipOff` with at least 64 bytes of
 * writable headroom before it, and its destination address (unsigned, or the int32 with the same
 * bits, as the router passes it). `innerMtu` is the largest inner packet the path carries.
 */
export interface Overlay {
  send(buf: Buffer, ipOff: number, ipLen: number, dst: number): OverlayResult;
  readonly innerMtu: number;
  /** Whether `sendSegmented` can send TCP super-frames whole (UDP GSO). */
  readonly segmentedSend: boolean;
  /**
   * Sends a TCP super-frame as datagrams of `mss` inner payload bytes, built in place within the
   * `room` bytes from `ipOff` (see VxlanOverlay.sendSegmented). TooBig: split it and `send` each.
   */
  sendSegmented(buf: Buffer, ipOff: number, ipLen: number, dst: number, mss: number, room: number): OverlayResult;
}

/** Raw IP sends out of the node's uplink (NodePort replies, masqueraded egress). */
export interface UplinkSender {
  send(buf: Buffer, ipOff: number, ipLen: number): boolean;
}

export interface RouterConfig {
  gatewayIp: number;
  gatewayMacHi: number;
  gatewayMacLo: number;
  /** The host port's address (subnet .0); the router answers ARP for it and routes it to the host. */
  hostIp: number;
  subnetNetwork: number;
  subnetMask: number;
  podCidrNetwork: number;
  podCidrMask: number;
  /** ICMP errors per second the router may send (token bucket). */
  icmpRatePerSec?: number;
  serviceNetwork?: number;
  serviceMask?: number;
  /**
   * Largest IPv4 packet the node's pods and its tunnel carry (the pod MTU, default 1450): a TCP
   * super-frame from a socket or a capture is cut to fit it.
   */
  mtu?: number;
}

/**
 * Bytes the router keeps free in front of an IP packet it puts in a scratch frame (ICMP errors,
 * fragments, captured packets): an Ethernet header, or the overlay's VXLAN + inner Ethernet headers.
 */
const FRAME_HEADROOM = SEGMENT_HEADROOM;

/** Byte budget for an ICMP error: the whole error fits in 576 bytes (RFC 1812 4.3.2.3). */
const ICMP_ERROR_MAX = 576;
const DEFAULT_TTL = 64;

/**
 * A routed TCP super-frame handed on whole: its partial checksum becomes the pseudo-header sum of the
 * addresses it has now (after NAT), as the device behind which it is finished expects.
 */
function setPartialTcpChecksum(buf: Buffer, ipOff: number, ipLen: number, dst: number): void {
  const ihl = ipv4HeaderLen(buf, ipOff);
  setTcpChecksum(buf, ipOff + ihl, pseudoHeaderSum(ipv4Src32(buf, ipOff), dst, IpProtocol.TCP, ipLen - ihl));
}

/**
 * Conntrack size from which a batch's lookups are prefetched (`Router.prefetchBatch`): below it the
 * table's touched lines stay in cache and the prefetch pass would only add work.
 */
export const PREFETCH_MIN_ENTRIES = 8192;

/**
 * The node's gateway and L3 router. It is an internal port of the switch with the gateway MAC: it answers
 * ARP for the gateway and host addresses, answers ICMP echo to the gateway, decrements TTL and routes
 * between local pods (neighbour table), the host (HostPort) and other nodes (Overlay). It sends ICMP
 * errors (time exceeded, unreachable, fragmentation needed) like a kernel router does.
 */
export class Router implements BatchPrefetcher {
  readonly port: RouterPort;
  readonly drops = new DropCounters();
  overlay: Overlay | undefined;
  host: HostPort | undefined;
  /** Connection tracking and NAT for services, node ports and masquerade (undefined: no NAT at all). */
  nat: Nat | undefined;
  /** Hooks on new connections (services, policy, masquerade, the flow log): see hooks.ts. */
  readonly hooks = new Hooks();
  /** The packet context the hooks see (one, reused). */
  readonly ctx = new PacketContext();
  uplink: UplinkSender | undefined;
  /** A capture of the gateway's switch port (`podnet capture gateway`), undefined when none runs (see tap.ts). */
  tap: FrameTap | undefined;
  // Addresses, networks and masks the per-packet code compares with, as int32 (the same bits as the
  // configured unsigned numbers): compared with int32 reads of the packet, and passed on, they are
  // always small integers (an unsigned one >= 2^31 would be boxed by every call not inlined).
  private readonly gw32: number;
  private readonly host32: number;
  private readonly subnetNet32: number;
  private readonly subnetMask32: number;
  private readonly podNet32: number;
  private readonly podMask32: number;
  private readonly bcast32: number;
  private readonly gwMacLo32: number;
  private readonly mtu: number;
  /** Cuts super-frames from the overlay and the uplink into segments (see `TcpSplitter`). */
  readonly splitter = new TcpSplitter();
  /** Splits a pod's super-frame in place where it cannot go on whole (see `sendSuper`). */
  private readonly resolver = new OffloadResolver();
  /** Pods' TCP super-frames routed whole (and sent as one GSO run, or split once after routing). */
  superFramesRouted = 0;
  /** Unfinished (CHECKSUM_PARTIAL) TCP/UDP checksums completed on packets from the overlay or uplink. */
  checksumsCompleted = 0;
  forwarded = 0;
  fragmented = 0;
  icmpSent = 0;
  /** Flood copies of frames not addressed to the router (seen, not dropped). */
  ignored = 0;

  private readonly eth = new EthernetView();
  private readonly ethw = new EthernetViewMut();
  private readonly ipv = new Ipv4View();
  private readonly ipw = new Ipv4ViewMut();
  private readonly arp = new ArpView();
  private readonly arpw = new ArpViewMut();
  private readonly icmp = new IcmpView();
  private readonly icmpw = new IcmpViewMut();
  private tokens: number;
  /** `dp.nowMs` of the last refill. */
  private tokensAt = 0;
  private readonly icmpRate: number;

  constructor(
    private readonly dp: Dataplane,
    readonly cfg: RouterConfig,
  ) {
    this.port = new RouterPort(this);
    this.gw32 = cfg.gatewayIp | 0;
    this.host32 = cfg.hostIp | 0;
    this.subnetNet32 = cfg.subnetNetwork | 0;
    this.subnetMask32 = cfg.subnetMask | 0;
    this.podNet32 = cfg.podCidrNetwork | 0;
    this.podMask32 = cfg.podCidrMask | 0;
    this.bcast32 = cfg.subnetNetwork | ~cfg.subnetMask;
    this.gwMacLo32 = cfg.gatewayMacLo | 0;
    this.icmpRate = cfg.icmpRatePerSec ?? 1000;
    this.mtu = cfg.mtu ?? 1450;
    this.tokens = this.icmpRate;
    dp.prefetcher = this;
  }

  /**
   * The data plane's prefetch pass over a received batch (see `Conntrack.prefetch`): the conntrack
   * tuple of each IPv4 packet, then the records, so the lookups that follow find them in cache.
   * Only for a large table (`PREFETCH_MIN_ENTRIES`).
   */
  prefetchBatch(framing: Framing, ring: RxRingLike, count: number): void {
    const nat = this.nat;
    if (nat === undefined || nat.ct.size < PREFETCH_MIN_ENTRIES || count < 2) return;
    const buf = ring.buffer;
    const lens = ring.lengths;
    const step = ring.slotSize;
    const eth = framing === 'ip' ? -1 : framing === 'vxlan' ? VXLAN_HLEN : 0; // Ethernet header offset
    let off = ring.headroom;
    for (let i = 0; i < count; i++, off += step) {
      const len = lens[i]!;
      if (eth < 0) nat.prefetch(buf, off, len);
      else if (len >= eth + ETH_HLEN && ethType(buf, off + eth) === EtherType.IPv4) {
        nat.prefetch(buf, off + eth + ETH_HLEN, len - eth - ETH_HLEN);
      }
    }
    nat.ct.prefetchTouch();
  }

  attachHost(host: HostPort): void {
    this.host = host;
    host.onPacket = (buf, off, len) => this.fromHost(buf, off, len);
  }

  /** A frame the switch delivered to the router port (addressed to the gateway MAC, or flooded). */
  fromSwitch(buf: Buffer, off: number, len: number): void {
    if (this.tap !== undefined) this.tap.frame(buf, off, len, TapDir.In);
    const eth = this.eth;
    if (eth.reset(buf, off, len) !== ParseError.Ok) return this.drops.add(DropReason.MalformedEthernet);
    const type = eth.etherType;
    if (type === EtherType.ARP) return this.handleArp(buf, off, eth);
    if (ethDstHi(buf, off) !== this.cfg.gatewayMacHi || ethDstLo32(buf, off) !== this.gwMacLo32) {
      this.ignored++;
      return;
    }
    if (type !== EtherType.IPv4) return this.drops.add(DropReason.UnsupportedEtherType);
    this.routeIp(buf, eth.payloadOffset, eth.payloadLength, Ingress.Switch);
  }

  /**
   * A pod's TCP super-frame addressed to the gateway (an Ethernet frame with its virtio-net header
   * before it, `mss` its segment size, `capacity` bytes usable from `off`). Taken (true) when the
   * overlay can send super-frames whole: routed and NATed once, then sent as one UDP GSO run, or
   * split after routing where it goes elsewhere. False: the switch splits it first, as for any port.
   */
  fromSwitchSuper(buf: Buffer, off: number, len: number, mss: number, capacity: number): boolean {
    const ov = this.overlay;
    if (len < ETH_HLEN || ethType(buf, off) !== EtherType.IPv4) return false;
    if ((ov === undefined || !ov.segmentedSend) && !(this.host !== undefined && this.host.offload)) return false;
    if (this.tap !== undefined) this.tap.frame(buf, off, len, TapDir.In);
    this.superFramesRouted++;
    this.routeIp(buf, off + ETH_HLEN, len - ETH_HLEN, Ingress.Switch, mss, capacity - ETH_HLEN);
    return true;
  }

  /**
   * An IP packet from the host kernel (host port). With offloads its virtio-net header is in the 10
   * bytes before it; a packet with work left in it goes through `fromHostOffloaded`.
   */
  fromHost(buf: Buffer, off: number, len: number): void {
    const host = this.host;
    if (host !== undefined && host.offload && vnetPending(buf, off - VNET_HDR_LEN)) return this.fromHostOffloaded(buf, off, len, host.rxCapacity);
    this.routeIp(buf, off, len, Ingress.Host);
  }

  /**
   * A packet of the host's with offload work left in it (a TCP super-frame, a partial checksum), its
   * header counted from the IP header, `room` bytes usable from `ipOff`. It is laid out as a pod's
   * frame is (an Ethernet header before it, the virtio-net header before that, counted from the
   * Ethernet header), so the super-frame path and the resolver take it as they take a pod's: a
   * super-frame is routed whole; a partial checksum is completed, then the packet routed.
   */
  private fromHostOffloaded(buf: Buffer, ipOff: number, ipLen: number, room: number): void {
    if (ipOff < ETH_HLEN + VNET_HDR_LEN) return this.drops.add(DropReason.MalformedIpv4);
    moveVnetHdr(buf, ipOff - VNET_HDR_LEN, ipOff - ETH_HLEN - VNET_HDR_LEN, ETH_HLEN);
    const off = ipOff - ETH_HLEN;
    writeEthernetHeader(buf, off, this.cfg.gatewayMacHi, this.cfg.gatewayMacLo, this.cfg.gatewayMacHi, this.cfg.gatewayMacLo, EtherType.IPv4);
    const mss = superFrameMss(buf, off);
    if (mss !== 0) {
      this.superFramesRouted++;
      return this.routeIp(buf, ipOff, ipLen, Ingress.Host, mss, room);
    }
    const rs = this.resolver;
    if (rs.resolve(buf, off, ipLen + ETH_HLEN, room + ETH_HLEN) === 0) return this.drops.add(rs.dropReason);
    this.routeIp(buf, ipOff, ipLen, Ingress.Host);
  }

  /**
   * An IP packet taken off the node's uplink, as the capture hands it over (no headroom before it):
   * copied into a scratch frame with headroom (the addon's memmove: Buffer.copy would allocate a view
   * per call), unless it is a super-frame, which the router cuts into scratch frames of their own.
   */
  fromUplink(buf: Buffer, off: number, len: number): void {
    const pool = this.dp.pool;
    if (len > pool.capacity - FRAME_HEADROOM) return this.routeIp(buf, off, len, Ingress.Uplink);
    const slot = this.dp.allocFrame();
    if (slot < 0) return this.drops.add(DropReason.TxFailed);
    copyBytes(pool.buffer, slot + FRAME_HEADROOM, buf, off, len);
    this.routeIp(pool.buffer, slot + FRAME_HEADROOM, len, Ingress.Uplink);
  }

  /**
   * A super-frame joined from another node's TCP segments (`TcpCoalescer`): IPv4 at `ipOff` with
   * its virtio-net header before its Ethernet header, `room` bytes usable from `ipOff`.
   */
  fromOverlaySuper(buf: Buffer, ipOff: number, ipLen: number, mss: number, room: number): void {
    this.superFramesRouted++;
    this.routeIp(buf, ipOff, ipLen, Ingress.Overlay, mss, room);
  }

  /** An inner IP packet decapsulated from another node. */
  fromOverlay(buf: Buffer, off: number, len: number): void {
    this.routeIp(buf, off, len, Ingress.Overlay);
  }

  private handleArp(buf: Buffer, off: number, eth: EthernetView): void {
    const arp = this.arp;
    if (arp.reset(buf, eth.payloadOffset, eth.payloadLength) !== ParseError.Ok) return this.drops.add(DropReason.MalformedArp);
    const target = arp.targetIp;
    if (arp.operation !== ArpOp.Request || (target !== this.cfg.gatewayIp && target !== this.cfg.hostIp)) {
      this.ignored++;
      return;
    }
    const slot = this.dp.allocFrame();
    if (slot < 0) return this.drops.add(DropReason.TxFailed);
    const out = this.dp.pool.buffer;
    const e = this.ethw;
    e.reset(out, slot, ETH_HLEN + ARP_LEN);
    e.setDst(eth.srcHi, eth.srcLo);
    e.setSrc(this.cfg.gatewayMacHi, this.cfg.gatewayMacLo);
    e.setEtherType(EtherType.ARP);
    buf.copy(out, slot + ETH_HLEN, eth.payloadOffset, eth.payloadOffset + ARP_LEN);
    const w = this.arpw;
    w.reset(out, slot + ETH_HLEN, ARP_LEN);
    w.setOperation(ArpOp.Reply);
    w.setTargetMac(arp.senderMacHi, arp.senderMacLo);
    w.setTargetIp(arp.senderIp);
    w.setSenderMac(this.cfg.gatewayMacHi, this.cfg.gatewayMacLo);
    w.setSenderIp(target);
    if (this.tap !== undefined) this.tap.frame(out, slot, ETH_HLEN + ARP_LEN, TapDir.Out);
    this.dp.inject(this.port, out, slot, ETH_HLEN + ARP_LEN);
  }

  /**
   * Routes an IPv4 packet at `ipOff` (the caller guarantees headroom before it). With `gso` > 0 it
   * is a pod's TCP super-frame of that segment size, its virtio-net header 10 bytes before its
   * Ethernet header, with `room` bytes usable from `ipOff` (see `fromSwitchSuper`).
   */
  routeIp(buf: Buffer, ipOff: number, ipLen: number, ingress: Ingress, gso = 0, room = 0): void {
    // The header is validated here, once: NAT and everything after it trust it.
    const ip = this.ipv;
    if (ip.reset(buf, ipOff, ipLen) !== ParseError.Ok) return this.drops.add(DropReason.MalformedIpv4);
    if (!ip.verifyChecksum()) return this.drops.add(DropReason.BadIpChecksum);
    ipLen = ip.totalLength; // ignore Ethernet padding
    if (ingress >= Ingress.Overlay && gso === 0) {
      // From a socket or a capture, with no word on offloads: a packet a sender on this kernel left
      // for the device (see `completePartialChecksum`), or a whole GSO super-frame.
      if (ipLen > this.mtu) return this.splitFromWire(buf, ipOff, ipLen, ip.headerLength, ingress);
      if (completePartialChecksum(buf, ipOff, ipLen, ip.headerLength, ip.protocol)) this.checksumsCompleted++;
    }
    let viaUplink = false;
    const nat = this.nat;
    if (nat !== undefined) {
      let v = nat.translateValidated(buf, ipOff, ipLen, this.dp.now);
      if (v === Verdict.New) v = this.newConnection(nat, buf, ipOff, ipLen, ingress);
      if (v === Verdict.Drop) return;
      if (v === Verdict.Ok && nat.ref >= 0 && (nat.ct.mark(nat.ref >> 1) & MARK_UPLINK) !== 0) viaUplink = true;
    } else if (ingress === Ingress.Uplink) {
      return this.drops.add(DropReason.UplinkNotForUs);
    }
    const dst = ipv4Dst32(buf, ipOff); // after NAT

    if (dst === this.gw32) return this.localDeliver(buf, ipOff, ipLen);
    if (ipv4Ttl(buf, ipOff) <= 1) {
      this.icmpError(buf, ipOff, ipLen, IcmpType.TimeExceeded, 0, 0);
      return this.drops.add(DropReason.TtlExceeded);
    }
    decrementIpv4Ttl(buf, ipOff);
    this.forwarded++;
    if (gso !== 0) return this.sendSuper(buf, ipOff, ipLen, dst, ingress, gso, room, viaUplink);
    if (viaUplink && this.uplink !== undefined && (dst & this.podMask32) !== this.podNet32) {
      if (!this.uplink.send(buf, ipOff, ipLen)) this.drops.add(DropReason.TxFailed);
      return;
    }
    this.send(buf, ipOff, ipLen, dst, ingress);
  }

  /** A TCP super-frame from the overlay or the uplink: routed as segments that fit the pod MTU. */
  private splitFromWire(buf: Buffer, ipOff: number, ipLen: number, ihl: number, ingress: Ingress): void {
    const doff = ipLen >= ihl + 13 ? tcpHeaderLen(buf, ipOff + ihl) : 0;
    const sp = this.splitter;
    const mss = this.mtu - ihl - doff;
    if (mss > 0 && !this.dp.reserveFrames(Math.ceil((ipLen - ihl - doff) / mss))) return this.drops.add(DropReason.Oversize);
    const n = sp.split(buf, ipOff, ipLen, mss, this.dp.pool);
    if (n === 0) return this.drops.add(sp.dropReason);
    const out = this.dp.pool.buffer;
    for (let i = 0; i < n; i++) this.routeIp(out, sp.segOff[i]!, sp.segLen[i]!, ingress);
  }

  /**
   * The first packet of a connection conntrack does not know: filled into the packet context, run
   * through the hooks (services, policy, masquerade: see hooks.ts) and confirmed as what they
   * decided. Every later packet of the connection is rewritten by `nat.translate`, without hooks.
   */
  private newConnection(nat: Nat, buf: Buffer, ipOff: number, ipLen: number, ingress: Ingress): Verdict {
    // Between pods, with no hook that decides about such traffic (no policy): nothing to decide, so
    // untracked without running the hooks, as the kernel passes traffic no rule matches.
    if (this.hooks.podHooks === 0 && ingress !== Ingress.Uplink && (ipv4Dst32(buf, ipOff) & this.podMask32) === this.podNet32) return Verdict.NotTracked;
    const ctx = this.fillContext(nat, buf, ipOff, ipLen, ingress);
    const hv = this.hooks.run(ctx);
    if (hv !== HookVerdict.Continue) return this.refuse(buf, ctx, hv);
    return this.confirm(nat, buf, ctx);
  }

  /**
   * IPv4 between two pod ports of the switch (its bridge hook, as br_netfilter): shown to conntrack,
   * so that replies of DNATed connections are un-NATed, and new connections run the FORWARD hooks
   * (policy). False: drop (counted).
   */
  bridgeIp(buf: Buffer, ipOff: number, ipLen: number): boolean {
    const nat = this.nat;
    if (nat === undefined) return true;
    const v = nat.translateValidated(buf, ipOff, ipLen, this.dp.now);
    if (v !== Verdict.New) return v !== Verdict.Drop;
    if (this.hooks.count(HookPoint.Forward) === 0) return true;
    const ctx = this.fillContext(nat, buf, ipOff, ipLen, Ingress.Bridge);
    const hv = this.hooks.runPoint(HookPoint.Forward, ctx);
    if (hv !== HookVerdict.Continue) return this.refuse(buf, ctx, hv) !== Verdict.Drop;
    return this.confirm(nat, buf, ctx) !== Verdict.Drop;
  }

  /** The packet context for the new connection `nat` just answered `New` for. */
  private fillContext(nat: Nat, buf: Buffer, ipOff: number, ipLen: number, ingress: Ingress): PacketContext {
    const ctx = this.ctx;
    ctx.ipOff = ipOff;
    ctx.ipLen = ipLen;
    ctx.ingress = ingress;
    ctx.now = this.dp.now;
    ctx.proto = nat.proto;
    ctx.src = ipv4Src32(buf, ipOff);
    ctx.dst = ipv4Dst32(buf, ipOff);
    ctx.sport = nat.sport;
    ctx.dport = nat.dport;
    ctx.tcpFlags = nat.tcpFlags;
    ctx.resetDecisions();
    return ctx;
  }

  /** A hook refused the connection: counted, the source told when it was a Reject. */
  private refuse(buf: Buffer, ctx: PacketContext, hv: HookVerdict): Verdict {
    if (hv === HookVerdict.Reject) this.icmpError(buf, ctx.ipOff, ctx.ipLen, IcmpType.DestUnreachable, ctx.rejectCode, 0);
    this.drops.add(ctx.dropReason);
    const obs = this.hooks.observer;
    if (obs !== undefined) obs.refused(ctx, ctx.dropReason);
    return Verdict.Drop;
  }

  /**
   * Applies the hooks' decisions as one conntrack entry (nf_conntrack_confirm): DNAT and/or SNAT, a
   * plain tracked entry when a hook asked for one, or nothing (untracked).
   */
  private confirm(nat: Nat, buf: Buffer, ctx: PacketContext): Verdict {
    // The common case (traffic between pods, no policy): nothing decided, untracked, nothing to tell.
    if (ctx.dnatIp === 0 && ctx.snatIp === 0 && !ctx.track) return Verdict.NotTracked;
    const { ipOff, ipLen, now } = ctx;
    let v: Verdict;
    if (ctx.dnatIp !== 0) {
      v =
        ctx.snatIp !== 0
          ? nat.createDnatSnat(buf, ipOff, ipLen, now, ctx.dnatIp, ctx.dnatPort, ctx.snatIp, ctx.snatPortMin, ctx.snatPortMax)
          : nat.createDnat(buf, ipOff, ipLen, now, ctx.dnatIp, ctx.dnatPort);
    } else if (ctx.snatIp !== 0) {
      v = nat.createSnat(buf, ipOff, ipLen, now, ctx.snatIp, ctx.snatPortMin, ctx.snatPortMax);
    } else if (ctx.track) {
      v = nat.createTracked(buf, ipOff, ipLen, now);
    } else {
      v = Verdict.NotTracked;
    }
    if (v === Verdict.Ok && nat.ref >= 0) {
      ctx.ctRef = nat.ref;
      if (ctx.mark !== 0) nat.ct.setMark(nat.ref >> 1, ctx.mark);
    }
    const obs = this.hooks.observer;
    if (obs !== undefined) {
      if (v === Verdict.Drop) obs.refused(ctx, nat.lastDrop);
      else obs.accepted(ctx);
    }
    return v;
  }

  /**
   * Sends a packet whose TTL has been handled: to a local pod, to the host, or to the overlay. `dst`
   * is its destination as an int32. Errors are reported to the source with ICMP.
   */
  private send(buf: Buffer, ipOff: number, ipLen: number, dst: number, ingress: Ingress): void {
    if ((dst & this.subnetMask32) === this.subnetNet32) {
      if (dst === this.host32) return this.toHost(buf, ipOff, ipLen, ingress);
      const nb = this.dp.neighbors;
      const slot = nb.lookup(dst);
      if (slot < 0) {
        this.icmpError(buf, ipOff, ipLen, IcmpType.DestUnreachable, IcmpUnreachCode.Host, 0);
        return this.drops.add(DropReason.HostUnreachable);
      }
      if (ipOff < ETH_HLEN) return this.drops.add(DropReason.MalformedIpv4);
      const hi = nb.hi(slot);
      const lo = nb.lo(slot);
      const off = ipOff - ETH_HLEN;
      const len = ipLen + ETH_HLEN;
      writeEthernetHeader(buf, off, hi, lo, this.cfg.gatewayMacHi, this.cfg.gatewayMacLo, EtherType.IPv4);
      // Straight to the pod's port: the switch would only parse the frame again to find it. The
      // frame comes from the router, so there is nothing to check; it is counted as if it had gone
      // through the switch (in on the router port, out on the pod's).
      const port = this.neighbourPort(slot, hi, lo);
      if (this.tap !== undefined) this.tap.frame(buf, off, len, TapDir.Out);
      if (port === undefined) {
        this.dp.inject(this.port, buf, off, len); // not on a port (yet): let the switch flood it
        return;
      }
      this.port.traffic.rx(len);
      port.traffic.tx(len);
      port.output(buf, off, len);
      return;
    }
    if ((dst & this.podMask32) === this.podNet32) {
      if (ingress === Ingress.Overlay) return this.drops.add(DropReason.NoRoute); // no transit between nodes
      const ov = this.overlay;
      const r = ov === undefined ? OverlayResult.NoRoute : ov.send(buf, ipOff, ipLen, dst);
      if (r === OverlayResult.Sent) return;
      if (r === OverlayResult.TooBig) {
        if (!ipv4DontFragment(buf, ipOff)) return this.fragment(buf, ipOff, ipLen, dst, ov!);
        this.icmpError(buf, ipOff, ipLen, IcmpType.DestUnreachable, IcmpUnreachCode.FragNeeded, ov!.innerMtu);
        return this.drops.add(DropReason.FragmentationNeeded);
      }
      if (r === OverlayResult.NoRoute) {
        this.icmpError(buf, ipOff, ipLen, IcmpType.DestUnreachable, IcmpUnreachCode.Net, 0);
        return this.drops.add(DropReason.NoRoute);
      }
      return; // Dropped: the overlay counted it
    }
    this.toHost(buf, ipOff, ipLen, ingress);
  }

  /**
   * A routed (TTL and NAT done) TCP super-frame: to another node as one GSO run when it fits its
   * slot; anywhere else, or when it does not fit, split in place once (the resolver rewrites every
   * segment's headers from the routed ones) and each segment sent on as a routed packet.
   */
  private sendSuper(buf: Buffer, ipOff: number, ipLen: number, dst: number, ingress: Ingress, mss: number, room: number, viaUplink: boolean): void {
    if (!viaUplink && (dst & this.subnetMask32) === this.subnetNet32 && dst !== this.host32 && ipOff >= ETH_HLEN + VNET_HDR_LEN) {
      // A local pod with an offload TAP takes the super-frame whole: its kernel needs no segments.
      const nb = this.dp.neighbors;
      const slot = nb.lookup(dst);
      const hi = slot >= 0 ? nb.hi(slot) : 0;
      const lo = slot >= 0 ? nb.lo(slot) : 0;
      const port = slot >= 0 ? this.neighbourPort(slot, hi, lo) : undefined;
      if (port !== undefined && port.offload) {
        const off = ipOff - ETH_HLEN;
        writeEthernetHeader(buf, off, hi, lo, this.cfg.gatewayMacHi, this.cfg.gatewayMacLo, EtherType.IPv4);
        setPartialTcpChecksum(buf, ipOff, ipLen, dst);
        if (this.tap !== undefined) this.tap.frame(buf, off, ipLen + ETH_HLEN, TapDir.Out);
        this.port.traffic.rx(ipLen + ETH_HLEN);
        port.traffic.tx(ipLen + ETH_HLEN);
        port.outputOffloaded(buf, off, ipLen + ETH_HLEN);
        return;
      }
    }
    const ov = this.overlay;
    if (!viaUplink && ingress !== Ingress.Overlay && ov !== undefined && (dst & this.podMask32) === this.podNet32 && (dst & this.subnetMask32) !== this.subnetNet32) {
      const r = ov.sendSegmented(buf, ipOff, ipLen, dst, mss, room);
      if (r === OverlayResult.Sent || r === OverlayResult.Dropped) return;
      if (r === OverlayResult.NoRoute) {
        this.icmpError(buf, ipOff, ipLen, IcmpType.DestUnreachable, IcmpUnreachCode.Net, 0);
        return this.drops.add(DropReason.NoRoute);
      }
    }
    const host = this.host;
    if (host !== undefined && host.offload && !viaUplink && ingress !== Ingress.Host && this.routesToHost(dst)) {
      // The host's kernel takes it whole too (its TCP, or its forwarding, which segments it if it must).
      setPartialTcpChecksum(buf, ipOff, ipLen, dst);
      moveVnetHdr(buf, ipOff - ETH_HLEN - VNET_HDR_LEN, ipOff - VNET_HDR_LEN, -ETH_HLEN);
      host.sendOffloaded(buf, ipOff, ipLen);
      return;
    }
    const rs = this.resolver;
    const n = rs.resolve(buf, ipOff - ETH_HLEN, ipLen + ETH_HLEN, room + ETH_HLEN);
    if (n === 0) return this.drops.add(rs.dropReason);
    const up = viaUplink && this.uplink !== undefined && (dst & this.podMask32) !== this.podNet32 ? this.uplink : undefined;
    for (let i = 0; i < n; i++) {
      const so = rs.segOff[i]! + ETH_HLEN;
      const sl = rs.segLen[i]! - ETH_HLEN;
      if (up !== undefined) {
        if (!up.send(buf, so, sl)) this.drops.add(DropReason.TxFailed);
      } else this.send(buf, so, sl, dst, ingress);
    }
  }

  /**
   * The switch port of a neighbour (pod) with MAC (hi, lo): the index cached with the neighbour when
   * it still names a port with that MAC, otherwise looked up in the switch's MAC table (and cached).
   */
  private neighbourPort(slot: number, hi: number, lo: number): Port | undefined {
    const nb = this.dp.neighbors;
    const sw = this.dp.switch;
    const i = nb.portIndex(slot);
    let port = i >= 0 ? sw.ports[i] : undefined;
    if (port !== undefined && port.macHi === hi && port.macLo === lo) return port;
    const j = sw.macs.lookup(hi, lo, this.dp.now);
    port = j >= 0 ? sw.ports[j] : undefined;
    if (port === undefined || port === this.port) return undefined;
    nb.setPortIndex(slot, j);
    return port;
  }

  /**
   * Splits a packet without DF into fragments that fit the overlay (RFC 791): every fragment but the
   * last carries a multiple of 8 payload bytes and MF; offsets add to the original's own offset.
   */
  private fragment(buf: Buffer, ipOff: number, ipLen: number, dst: number, ov: Overlay): void {
    const hlen = ipv4HeaderLen(buf, ipOff);
    const flagsFrag = ipv4FlagsFrag(buf, ipOff);
    const baseOffset = (flagsFrag & 0x1fff) << 3;
    const origMf = (flagsFrag & 0x2000) !== 0;
    const chunk = (ov.innerMtu - hlen) & ~7;
    const payloadLen = ipLen - hlen;
    if (chunk <= 0 || hlen + chunk > this.dp.pool.capacity - FRAME_HEADROOM) return this.drops.add(DropReason.Oversize);
    const out = this.dp.pool.buffer;
    for (let done = 0; done < payloadLen; done += chunk) {
      const n = Math.min(chunk, payloadLen - done);
      const slot = this.dp.allocFrame();
      if (slot < 0) return this.drops.add(DropReason.TxFailed);
      const o = slot + FRAME_HEADROOM;
      buf.copy(out, o, ipOff, ipOff + hlen);
      buf.copy(out, o + hlen, ipOff + hlen + done, ipOff + hlen + done + n);
      const last = done + n >= payloadLen;
      const w = this.ipw;
      w.reset(out, o, hlen + n);
      w.setTotalLength(hlen + n);
      w.setFlagsAndFragment(false, !last || origMf, baseOffset + done);
      w.fillChecksum();
      ov.send(out, o, hlen + n, dst);
    }
    this.fragmented++;
  }

  /** Whether `send` hands a packet to `dst` (int32, after NAT) to the host: the host's address, or outside the pod CIDR. */
  private routesToHost(dst: number): boolean {
    if ((dst & this.subnetMask32) === this.subnetNet32) return dst === this.host32;
    return (dst & this.podMask32) !== this.podNet32;
  }

  private toHost(buf: Buffer, ipOff: number, ipLen: number, ingress: Ingress): void {
    if (this.host === undefined || ingress === Ingress.Host) {
      this.icmpError(buf, ipOff, ipLen, IcmpType.DestUnreachable, IcmpUnreachCode.Net, 0);
      return this.drops.add(DropReason.NoRoute);
    }
    this.host.send(buf, ipOff, ipLen);
  }

  /** Packets addressed to the gateway itself: ICMP echo is answered, the rest refused. */
  private localDeliver(buf: Buffer, ipOff: number, ipLen: number): void {
    const ip = this.ipv;
    const hlen = ip.headerLength;
    if (ip.protocol === IpProtocol.ICMP && ip.fragmentOffset === 0 && !ip.moreFragments) {
      const icmp = this.icmp;
      if (icmp.reset(buf, ipOff + hlen, ipLen - hlen) !== ParseError.Ok) return this.drops.add(DropReason.MalformedL4);
      if (icmp.type !== IcmpType.EchoRequest) return this.drops.add(DropReason.LocalDeliveryUnsupported);
      if (!icmp.verifyChecksum()) return this.drops.add(DropReason.MalformedL4);
      // Turn the request into the reply in place: it was addressed to us alone.
      const src = ip.src;
      const w = this.ipw;
      w.reset(buf, ipOff, ipLen);
      w.setSrc(this.cfg.gatewayIp);
      w.setDst(src);
      w.setTtl(DEFAULT_TTL);
      w.fillChecksum();
      const iw = this.icmpw;
      iw.reset(buf, ipOff + hlen, ipLen - hlen);
      iw.setType(IcmpType.EchoReply);
      iw.fillChecksum();
      this.icmpSent++;
      this.send(buf, ipOff, ipLen, src | 0, Ingress.Switch);
      return;
    }
    if (ip.protocol === IpProtocol.UDP || ip.protocol === IpProtocol.TCP) {
      this.icmpError(buf, ipOff, ipLen, IcmpType.DestUnreachable, IcmpUnreachCode.Port, 0);
    }
    this.drops.add(DropReason.LocalDeliveryUnsupported);
  }

  private takeToken(): boolean {
    const nowMs = this.dp.nowMs;
    const elapsed = (nowMs - this.tokensAt) | 0;
    if (elapsed !== 0) {
      // A negative difference can only come from a clock that was replaced: start full.
      this.tokens = elapsed > 0 ? Math.min(this.icmpRate, this.tokens + (elapsed * this.icmpRate) / 1000) : this.icmpRate;
      this.tokensAt = nowMs;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /**
   * Sends an ICMP error about the packet at `ipOff` back to its source, from the gateway address.
   * Never about ICMP errors, fragments after the first, or broadcast/multicast/unspecified sources.
   */
  icmpError(buf: Buffer, ipOff: number, ipLen: number, type: number, code: number, mtu: number): void {
    const ip = this.ipv;
    if (ip.reset(buf, ipOff, ipLen) !== ParseError.Ok) return;
    if (ip.fragmentOffset !== 0) return;
    const src = ip.src;
    if (src === 0 || src === 0xffffffff || src >>> 28 === 0xe || (src | 0) === this.bcast32) return;
    const hlen = ip.headerLength;
    if (ip.protocol === IpProtocol.ICMP) {
      if (ipLen < hlen + 1) return;
      const t = icmpType(buf, ipOff + hlen);
      if (t !== IcmpType.EchoRequest && t !== IcmpType.EchoReply) return;
    }
    if (!this.takeToken()) return this.drops.add(DropReason.IcmpRateLimited);
    const slot = this.dp.allocFrame();
    if (slot < 0) return this.drops.add(DropReason.TxFailed);
    const out = this.dp.pool.buffer;
    const quote = Math.min(ipLen, ICMP_ERROR_MAX - IPV4_MIN_HLEN - ICMP_HLEN);
    const total = IPV4_MIN_HLEN + ICMP_HLEN + quote;
    const o = slot + FRAME_HEADROOM;
    buf.copy(out, o + IPV4_MIN_HLEN + ICMP_HLEN, ipOff, ipOff + quote);
    writeIpv4Header(out, o, this.cfg.gatewayIp, src, IpProtocol.ICMP, DEFAULT_TTL, ICMP_HLEN + quote);
    const iw = this.icmpw;
    iw.reset(out, o + IPV4_MIN_HLEN, ICMP_HLEN + quote);
    iw.setType(type);
    iw.setCode(code);
    iw.setIdent(0);
    iw.setNextHopMtu(type === IcmpType.DestUnreachable && code === IcmpUnreachCode.FragNeeded ? mtu : 0);
    iw.fillChecksum();
    this.icmpSent++;
    this.send(out, o, total, src | 0, Ingress.Switch);
  }
}

/** The router's face on the switch. */
export class RouterPort extends Port {
  constructor(private readonly router: Router) {
    super('gateway', PortKind.Router);
    this.macHi = router.cfg.gatewayMacHi;
    this.macLo = router.cfg.gatewayMacLo;
  }
  output(buf: Buffer, off: number, len: number): void {
    this.router.fromSwitch(buf, off, len);
  }
  override outputSuper(buf: Buffer, off: number, len: number, mss: number, capacity: number): boolean {
    return this.router.fromSwitchSuper(buf, off, len, mss, capacity);
  }
}
