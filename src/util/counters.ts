/**
 * Every frame the data plane does not deliver is dropped with one of these reasons and counted, per port
 * and per node. Numeric values index Float64Array counters (no allocation per drop).
 */
export const DropReason = {
  MalformedEthernet: 0,
  MalformedArp: 1,
  MalformedIpv4: 2,
  BadIpChecksum: 3,
  MalformedL4: 4,
  SpoofedSourceMac: 5,
  SpoofedSourceIp: 6,
  SpoofedArp: 7,
  MulticastSource: 8,
  UnsupportedEtherType: 9,
  SameSegment: 10,
  NotForRouter: 11,
  TtlExceeded: 12,
  NoRoute: 13,
  HostUnreachable: 14,
  FragmentationNeeded: 15,
  TxFailed: 16,
  PortDown: 17,
  MacTableFull: 18,
  VxlanMalformed: 19,
  VxlanUnknownSender: 20,
  VxlanBadVni: 21,
  Oversize: 22,
  IcmpRateLimited: 23,
  LocalDeliveryUnsupported: 24,
  /** Conntrack table full of assured entries: a new connection was refused (src/nat). */
  ConntrackFull: 25,
  /** TCP packet invalid for its connection's state, or one that cannot open a NATed connection (src/nat). */
  ConntrackInvalid: 26,
  /** No free source port/identifier for SNAT (or for resolving a DNAT tuple clash) (src/nat). */
  NatPortsExhausted: 27,
  /** A packet NAT cannot translate: non-first fragment or a protocol without ports (src/nat). */
  NatUntrackable: 28,
  /** A new connection to a service port that has no endpoints (answered with ICMP port unreachable). */
  ServiceNoEndpoints: 29,
  /** A service VIP on a port no service has (ICMP port unreachable). */
  ServiceNoPort: 30,
  /** Taken off the uplink but matching no service, node port or tracked connection. */
  UplinkNotForUs: 31,
  /** An offloaded frame (virtio-net header) whose offload podnet does not finish: not IPv4/TCP GSO or checksum. */
  OffloadUnsupported: 32,
  /** A new connection to a pod that NetworkPolicy does not allow in (src/policy). */
  PolicyDeniedIngress: 33,
  /** A new connection from a pod that NetworkPolicy does not allow out (src/policy). */
  PolicyDeniedEgress: 34,
  // The uplink (src/uplink): frames the capture hands over and packets given to its raw socket.
  /** A captured frame larger than the receive buffer. */
  UplinkTruncated: 35,
  /** A captured frame shorter than an Ethernet header. */
  UplinkRunt: 36,
  /** A captured frame with our own source MAC (libpcap also sees outgoing frames). */
  UplinkOwnFrame: 37,
  /** A captured frame neither IPv4 nor ARP (VLAN-tagged frames included). */
  UplinkNotIpv4: 38,
  /** The data plane threw on a captured packet (a bug: logged once). */
  UplinkHandlerError: 39,
  /** An ARP frame on the uplink that is not a request. */
  ArpNotRequest: 40,
  /** An ARP request for an IP this node no longer announces. */
  ArpNotAnnounced: 41,
  /** Another station announces one of our IPs (sender IP = target IP): an address conflict. */
  ArpConflict: 42,
  /** Injecting an ARP frame on the uplink failed. */
  ArpSendFailed: 43,
  /** Given to the uplink's raw socket: not a complete IPv4 packet. */
  UplinkSendMalformed: 44,
  /** Given to the uplink after it closed. */
  UplinkSendClosed: 45,
  /** The raw socket refused the packet (EAGAIN, EMSGSIZE, ENETUNREACH, EPERM: logged once per error). */
  UplinkSendFailed: 46,
  /** A VXLAN datagram whose remote checksum offload (RCO) does not point at its inner TCP or UDP checksum. */
  VxlanBadRco: 47,
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

const NAMES: string[] = [];
for (const [k, v] of Object.entries(DropReason)) NAMES[v] = k.replace(/[A-Z]/g, (c, i) => (i ? '_' : '') + c.toLowerCase());
export const DROP_REASON_COUNT = NAMES.length;

export function dropReasonName(r: number): string {
  return NAMES[r] ?? `reason_${r}`;
}

export class DropCounters {
  readonly counts = new Float64Array(DROP_REASON_COUNT);
  total = 0;
  add(reason: DropReason): void {
    this.counts[reason]! += 1;
    this.total++;
  }
  toJSON(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < this.counts.length; i++) if (this.counts[i]! > 0) out[dropReasonName(i)] = this.counts[i]!;
    return out;
  }
}

/**
 * Frames and bytes a port received and sent, in a Float64Array: exact up to 2^53, and an increment
 * is a store into the array whatever the compiler did with the caller. Plain number fields would
 * turn into doubles past 2^31 (half an hour of 1 Mpps for the frame counts, seconds for the bytes),
 * which V8 boxes wherever the code touching them is not optimised.
 */
export class TrafficCounters {
  private readonly c = new Float64Array(4);

  rx(len: number): void {
    const c = this.c;
    c[0]! += 1;
    c[1]! += len;
  }
  tx(len: number): void {
    const c = this.c;
    c[2]! += 1;
    c[3]! += len;
  }
  get rxFrames(): number {
    return this.c[0]!;
  }
  get rxBytes(): number {
    return this.c[1]!;
  }
  get txFrames(): number {
    return this.c[2]!;
  }
  get txBytes(): number {
    return this.c[3]!;
  }
  toJSON(): { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number } {
    return { rxFrames: this.rxFrames, rxBytes: this.rxBytes, txFrames: this.txFrames, txBytes: this.txBytes };
  }
}
