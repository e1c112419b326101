/**
 * NAT on top of conntrack, the Linux nf_nat way: the translation is decided once, when the connection
 * is created, by choosing its REPLY tuple (the inverse of the translated ORIGINAL tuple); every later
 * packet is rewritten from the entry and its direction alone. A packet in direction `d` arrives
 * carrying tuple[d] and leaves carrying the inverse of tuple[1 - d]: ORIGINAL packets get the
 * translated addresses, REPLY packets get the original ones back.
 *
 * The router calls `translate` for every IPv4 packet it forwards. `Verdict.New` means "no
 * connection yet": the router decides (service lookup, masquerade, ...) and calls one of the
 * `create*` methods with the same packet, which builds the entry and translates the packet.
 *
 * Checksums are updated incrementally (RFC 1624): the IPv4 header, TCP and UDP (pseudo-header and
 * ports; a UDP checksum of 0 stays 0) and the ICMP echo identifier. ICMP errors (destination
 * unreachable incl. frag-needed, source quench, time exceeded, parameter problem) are matched through
 * their quoted header and translated inside and out: the quoted addresses and ports, the quoted IPv4
 * header checksum, the quoted TCP/UDP/ICMP checksum when it lies within the quote, the ICMP checksum
 * and the outer header.
 *
 * Not handled: fragments after the first carry no ports and are never translated (`NotTracked`;
 * there is no reassembly, unlike Linux's nf_defrag), and IP options are left as they are.
 */
import { DropCounters, DropReason } from '../util/counters.js';
import { updateChecksum16, updateChecksum32, updateUdpChecksum32 } from '../packet/checksum.js';
import { readU16, writeU16 } from '../packet/bytes.js';
import {
  ICMP_CHECKSUM_OFFSET,
  ICMP_ERROR_QUOTE_OFFSET,
  TCP_CHECKSUM_OFFSET,
  UDP_CHECKSUM_OFFSET,
  icmpChecksum,
  icmpEchoIdent,
  icmpType,
  ipv4Checksum,
  ipv4Dst32,
  ipv4HeaderLen,
  ipv4IsLaterFragment,
  ipv4Protocol,
  ipv4Src32,
  ipv4TotalLen,
  ipv4Version,
  l4ChecksumOffset,
  l4DstPort,
  l4Ports32,
  l4SrcPort,
  setIcmpChecksum,
  setIcmpEchoIdent,
  setIpv4Checksum,
  setIpv4Dst,
  setIpv4Src,
  setL4Ports,
  tcpFlags,
} from '../packet/fields.js';
import { ParseError } from '../packet/errors.js';
import { IcmpType } from '../packet/icmp.js';
import { IpProtocol, Ipv4View } from '../packet/ipv4.js';
import { XorShift32 } from '../util/random.js';
import { Conntrack, CtStatus, CtUpdate, REC_PORTS, REC_PROTO, REC_STATUS, REC_TUPLE_WORDS, tupleBase } from './conntrack.js';

/** What the router does with a packet after `translate` / `create*`. */
export const Verdict = {
  /** Part of a known connection; translated in place if the connection is NATed. Forward it. */
  Ok: 0,
  /** No connection for this packet: decide and call a `create*` method (nothing was counted). */
  New: 1,
  /** Not something conntrack follows (other protocols, fragments after the first, stray ICMP errors): forward unchanged. */
  NotTracked: 2,
  /** Dropped and counted in `drops` with a reason. */
  Drop: 3,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

export interface NatOptions {
  /** Where drops are counted (e.g. the router's); default a new one, `nat.drops`. */
  drops?: DropCounters;
  /** Most candidates one port allocation looks at in its first round (default 128, as nf_nat). */
  maxAttempts?: number;
  /**
   * Source ports tried when a connection created without SNAT would clash with an existing REPLY
   * tuple (e.g. one client port to two services with the same endpoint). Linux resolves this the same
   * way, by remapping only the source port. Default 1024-65535.
   */
  clashPortMin?: number;
  clashPortMax?: number;
  /** PRNG seed for port allocation (default random). */
  seed?: number;
}

export class NatStats {
  /** Packets whose addresses/ports were rewritten (ICMP errors included). */
  translated = 0;
  /** Connections created by the `create*` methods. */
  created = 0;
  /** ICMP errors matched to a connection. */
  icmpErrors = 0;
  /** Connections whose client port was remapped to avoid a REPLY tuple clash. */
  clashResolved = 0;
  /** Port allocations that found no free port (also a `NatPortsExhausted` drop). */
  portsExhausted = 0;
}

const NAT_BITS = CtStatus.SrcNat | CtStatus.DstNat;

const MODE_TRACK = 0;
const MODE_DNAT = 1;
const MODE_SNAT = 2;

// Outcomes of `parse`.
const P_OK = 0;
const P_UNTRACKED = 1;
const P_ICMP_ERROR = 2;
const P_BAD_IP = 3;
const P_BAD_L4 = 4;

const ICMP_SOURCE_QUENCH = 4;
const ICMP_PARAMETER_PROBLEM = 12;
const ECHO_REQUEST_KEY = IcmpType.EchoRequest << 8;
const ECHO_REPLY_KEY = IcmpType.EchoReply << 8;

/**
 * Per-packet NAT over one `Conntrack`. Every method is allocation-free; addresses are IPv4 numbers.
 * Methods take the IPv4 packet at `buf[ipOff .. ipOff + ipLen)`.
 */
export class Nat {
  readonly drops: DropCounters;
  readonly stats = new NatStats();
  /**
   * After `Ok` (and for ICMP errors, `Ok` from their connection): the ref (`entryId * 2 + dir`) the
   * packet matched, e.g. for `ct.setMark(nat.ref >> 1, ...)` right after a `create*`. -1 otherwise.
   */
  ref = -1;

  private readonly ip = new Ipv4View();
  private readonly maxAttempts: number;
  private readonly clashMin: number;
  private readonly clashMax: number;
  private readonly rng: XorShift32;
  // The tuple of the last parsed packet (int32 addresses; see the getters).
  private pProto = 0;
  private pSrc = 0;
  private pDst = 0;
  private pSport = 0;
  private pDport = 0;
  private pFlags = 0;
  private l4 = 0;
  private l4len = 0;
  // The packet `translate` last answered `New` for, which `create*` may take as parsed and looked up.
  private newBuf: Buffer | undefined = undefined;
  private newOff = -1;

  constructor(
    readonly ct: Conntrack,
    opts: NatOptions = {},
  ) {
    this.drops = opts.drops ?? new DropCounters();
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 128);
    this.clashMin = opts.clashPortMin ?? 1024;
    this.clashMax = opts.clashPortMax ?? 65535;
    checkRange(this.clashMin, this.clashMax);
    this.rng = new XorShift32(opts.seed ?? 0);
  }

  // The last parsed packet's tuple, valid after any call that got past the IPv4 header (in
  // particular after `Verdict.New`): what the router looks services up by. For ICMP echo `sport` is
  // the identifier and `dport` is `type << 8`.
  get proto(): number {
    return this.pProto;
  }
  get src(): number {
    return this.pSrc >>> 0;
  }
  get dst(): number {
    return this.pDst >>> 0;
  }
  get sport(): number {
    return this.pSport;
  }
  get dport(): number {
    return this.pDport;
  }
  /** Why the last `Drop` this NAT answered was dropped (for the flow log). */
  lastDrop: DropReason = DropReason.ConntrackInvalid;

  private drop(reason: DropReason): void {
    this.lastDrop = reason;
    this.drops.add(reason);
  }

  /** TCP flags of the last parsed packet (0 for other protocols). */
  get tcpFlags(): number {
    return this.pFlags;
  }

  /**
   * The per-packet entry point: finds the packet's connection, advances its state and rewrites the
   * packet in place. `Ok`: forward (translated if NATed). `New`: no connection (or a TCP connection
   * being reopened after TIME_WAIT/CLOSE) — decide and call a `create*` method. `NotTracked`: forward
   * unchanged. `Drop`: counted; discard.
   */
  translate(buf: Buffer, ipOff: number, ipLen: number, now: number): Verdict {
    this.ref = -1;
    this.newBuf = undefined;
    const r = this.parse(buf, ipOff, ipLen, true);
    if (r !== P_OK) return this.notATuple(r, buf, ipOff, now, MODE_TRACK);
    return this.find(buf, ipOff, now);
  }

  /**
   * `translate` for a packet whose IPv4 header the caller has validated already (an ok
   * `Ipv4View.reset(buf, ipOff, ipLen)`), as the router and the switch have: the header is not
   * checked again.
   */
  translateValidated(buf: Buffer, ipOff: number, ipLen: number, now: number): Verdict {
    this.ref = -1;
    this.newBuf = undefined;
    const r = this.parse(buf, ipOff, ipLen, false);
    if (r !== P_OK) return this.notATuple(r, buf, ipOff, now, MODE_TRACK);
    return this.find(buf, ipOff, now);
  }

  /**
   * Whether `translate` would find a connection for this packet (header validated by the caller),
   * without touching the packet or the connection: lets the switch pass an offloaded super-frame
   * between two pods whole when conntrack has nothing to do with it. A packet that is not a plain
   * tuple (an ICMP error, a malformed one) answers true, so that `translate` gets to see it.
   */
  tracks(buf: Buffer, ipOff: number, ipLen: number, now: number): boolean {
    this.newBuf = undefined;
    const r = this.parse(buf, ipOff, ipLen, false);
    if (r !== P_OK) return r !== P_UNTRACKED;
    const ct = this.ct;
    return ct.size !== 0 && ct.lookup(this.pProto, this.pSrc, this.pDst, this.pSport, this.pDport, now) >= 0;
  }

  /**
   * Batch prefetch, first step for one packet (see `Conntrack.prefetch`): hands the conntrack tuple
   * of the IPv4 packet at `buf[ipOff, ipOff + ipLen)` to `ct.prefetch`. Nothing is validated and
   * nothing counted: a malformed packet prefetches something useless at worst. Finish the batch with
   * `ct.prefetchTouch()`.
   */
  prefetch(buf: Buffer, ipOff: number, ipLen: number): void {
    if (ipLen < 28 || ipOff < 0 || ipOff + ipLen > buf.length) return;
    if (ipv4IsLaterFragment(buf, ipOff)) return; // no ports after the first fragment
    const hlen = ipv4HeaderLen(buf, ipOff);
    if (ipLen < hlen + 8) return;
    const proto = ipv4Protocol(buf, ipOff);
    const l4 = ipOff + hlen;
    if (proto === IpProtocol.TCP || proto === IpProtocol.UDP) {
      this.ct.prefetch(proto, ipv4Src32(buf, ipOff), ipv4Dst32(buf, ipOff), l4SrcPort(buf, l4), l4DstPort(buf, l4));
    } else if (proto === IpProtocol.ICMP) {
      const t = icmpType(buf, l4);
      if (t === IcmpType.EchoRequest || t === IcmpType.EchoReply) {
        this.ct.prefetch(proto, ipv4Src32(buf, ipOff), ipv4Dst32(buf, ipOff), icmpEchoIdent(buf, l4), t << 8);
      }
    }
  }

  /** A connection without NAT (so its tuples are known and cannot be taken by NATed ones). */
  createTracked(buf: Buffer, ipOff: number, ipLen: number, now: number): Verdict {
    return this.establish(buf, ipOff, ipLen, now, MODE_TRACK, 0, 0, 0, 0, 0);
  }

  /** DNAT to `toIp:toPort` (ClusterIP, NodePort with policy Local). For ICMP echo `toPort` is unused. */
  createDnat(buf: Buffer, ipOff: number, ipLen: number, now: number, toIp: number, toPort: number): Verdict {
    return this.establish(buf, ipOff, ipLen, now, MODE_DNAT, toIp, toPort, 0, 0, 0);
  }

  /**
   * SNAT to `toIp` with a source port (ICMP: identifier) from `portMin..portMax` (masquerade). The
   * original port is kept when it is in the range and free; otherwise nf_nat's search runs.
   */
  createSnat(buf: Buffer, ipOff: number, ipLen: number, now: number, toIp: number, portMin: number, portMax: number): Verdict {
    return this.establish(buf, ipOff, ipLen, now, MODE_SNAT, 0, 0, toIp, portMin, portMax);
  }

  /** DNAT and SNAT at once (hairpin: SNAT to the gateway; NodePort/LoadBalancer policy Cluster: to the node). */
  createDnatSnat(
    buf: Buffer,
    ipOff: number,
    ipLen: number,
    now: number,
    dnatIp: number,
    dnatPort: number,
    snatIp: number,
    portMin: number,
    portMax: number,
  ): Verdict {
    return this.establish(buf, ipOff, ipLen, now, MODE_DNAT | MODE_SNAT, dnatIp, dnatPort, snatIp, portMin, portMax);
  }

  // ---- internals -----------------------------------------------------------------------------

  /** The parsed packet's connection: `apply`, or `New` (remembering the packet for `create*`). */
  private find(buf: Buffer, ipOff: number, now: number): Verdict {
    const ct = this.ct;
    // An empty table has nothing to find: skip the hash and the (cache-missing) index probe.
    const ref = ct.size === 0 ? -1 : ct.lookup(this.pProto, this.pSrc, this.pDst, this.pSport, this.pDport, now);
    const v = ref < 0 ? Verdict.New : this.apply(buf, ipOff, ref, now);
    if (v === Verdict.New) {
      this.newBuf = buf;
      this.newOff = ipOff;
    }
    return v;
  }

  private establish(
    buf: Buffer,
    ipOff: number,
    ipLen: number,
    now: number,
    mode: number,
    dIp: number,
    dPort: number,
    sIp: number,
    pMin: number,
    pMax: number,
  ): Verdict {
    // Right after `translate` said `New` for this very packet, its tuple is parsed and known to be
    // absent from the table (the caller only looked things up in between): skip both.
    const known = this.newBuf === buf && this.newOff === ipOff;
    this.ref = -1;
    this.newBuf = undefined;
    const ct = this.ct;
    if (!known) {
      const r = this.parse(buf, ipOff, ipLen, true);
      if (r !== P_OK) return this.notATuple(r, buf, ipOff, now, mode);
      const existing = ct.lookup(this.pProto, this.pSrc, this.pDst, this.pSport, this.pDport, now);
      if (existing >= 0) {
        // Already known (the caller skipped `translate`): treat it as a packet of that connection,
        // unless it reopens a closed one, which goes on to a fresh entry below.
        const v = this.apply(buf, ipOff, existing, now);
        if (v !== Verdict.New) return v;
      }
    }
    const proto = this.pProto;
    const icmp = proto === IpProtocol.ICMP;
    const canStart = proto === IpProtocol.TCP ? ct.tcpCanStart(this.pFlags) : icmp ? this.pDport === ECHO_REQUEST_KEY : true;
    if (!canStart) {
      if (mode === MODE_TRACK) return Verdict.NotTracked;
      this.drop(DropReason.ConntrackInvalid);
      return Verdict.Drop;
    }
    // REPLY tuple: (rSrc:rSport -> rDst:key) for TCP/UDP, (rSrc -> rDst, id = key, echo reply) for ICMP.
    // `key` is the client-side port (identifier) that SNAT allocates.
    const rSrc = (mode & MODE_DNAT) !== 0 ? dIp | 0 : this.pDst;
    const rDst = (mode & MODE_SNAT) !== 0 ? sIp | 0 : this.pSrc;
    const rSport = icmp ? 0 : (mode & MODE_DNAT) !== 0 ? dPort & 0xffff : this.pDport;
    let key = this.pSport;
    if ((mode & MODE_SNAT) !== 0) {
      key = this.allocate(proto, rSrc, rDst, rSport, pMin, pMax, key, now);
    } else if (this.taken(proto, rSrc, rDst, rSport, key, now)) {
      key = this.allocate(proto, rSrc, rDst, rSport, this.clashMin, this.clashMax, -1, now);
      if (key >= 0) this.stats.clashResolved++;
    }
    if (key < 0) {
      this.stats.portsExhausted++;
      this.drop(DropReason.NatPortsExhausted);
      return Verdict.Drop;
    }
    const id = icmp
      ? ct.create(proto, this.pSrc, this.pDst, this.pSport, this.pDport, rSrc, rDst, key, ECHO_REPLY_KEY, now)
      : ct.create(proto, this.pSrc, this.pDst, this.pSport, this.pDport, rSrc, rDst, rSport, key, now);
    if (id < 0) {
      this.drop(DropReason.ConntrackFull);
      return Verdict.Drop;
    }
    this.stats.created++;
    return this.apply(buf, ipOff, id << 1, now);
  }

  /** Verdict for a packet `parse` did not turn into a tuple. */
  private notATuple(r: number, buf: Buffer, ipOff: number, now: number, mode: number): Verdict {
    if (r === P_ICMP_ERROR) return this.icmpError(buf, ipOff, now);
    if (r === P_UNTRACKED) {
      if (mode === MODE_TRACK) return Verdict.NotTracked;
      this.drop(DropReason.NatUntrackable);
      return Verdict.Drop;
    }
    this.drop(r === P_BAD_IP ? DropReason.MalformedIpv4 : DropReason.MalformedL4);
    return Verdict.Drop;
  }

  /** Feeds the packet to its connection and rewrites it. */
  private apply(buf: Buffer, ipOff: number, ref: number, now: number): Verdict {
    const u = this.ct.update(ref, this.pFlags, now);
    if (u === CtUpdate.Invalid) {
      this.drop(DropReason.ConntrackInvalid);
      return Verdict.Drop;
    }
    if (u === CtUpdate.Restart) {
      this.ct.delete(ref >> 1);
      return Verdict.New;
    }
    this.ref = ref;
    if ((this.ct.rec[((ref >> 1) << 4) + REC_STATUS]! & NAT_BITS) !== 0) this.rewrite(buf, ipOff, ref);
    return Verdict.Ok;
  }

  /**
   * Fills the tuple fields from the packet. The L4 header is read at fixed offsets rather than through
   * a view so that a first fragment (whose UDP length field exceeds what is present) is handled too.
   */
  private parse(buf: Buffer, ipOff: number, ipLen: number, check: boolean): number {
    if (check && this.ip.reset(buf, ipOff, ipLen) !== ParseError.Ok) return P_BAD_IP;
    const proto = ipv4Protocol(buf, ipOff);
    this.pProto = proto;
    this.pSrc = ipv4Src32(buf, ipOff);
    this.pDst = ipv4Dst32(buf, ipOff);
    this.pSport = 0;
    this.pDport = 0;
    this.pFlags = 0;
    if (ipv4IsLaterFragment(buf, ipOff)) return P_UNTRACKED; // not the first fragment
    const hlen = ipv4HeaderLen(buf, ipOff);
    const l4 = ipOff + hlen;
    const l4len = ipv4TotalLen(buf, ipOff) - hlen;
    this.l4 = l4;
    this.l4len = l4len;
    if (proto === IpProtocol.TCP || proto === IpProtocol.UDP) {
      if (l4len < (proto === IpProtocol.TCP ? 20 : 8)) return P_BAD_L4;
      this.pSport = l4SrcPort(buf, l4);
      this.pDport = l4DstPort(buf, l4);
      if (proto === IpProtocol.TCP) this.pFlags = tcpFlags(buf, l4);
      return P_OK;
    }
    if (proto === IpProtocol.ICMP) {
      if (l4len < 8) return P_BAD_L4;
      const t = icmpType(buf, l4);
      if (t === IcmpType.EchoRequest || t === IcmpType.EchoReply) {
        this.pSport = icmpEchoIdent(buf, l4);
        this.pDport = t << 8;
        return P_OK;
      }
      if (t === IcmpType.DestUnreachable || t === IcmpType.TimeExceeded || t === ICMP_SOURCE_QUENCH || t === ICMP_PARAMETER_PROBLEM) {
        return P_ICMP_ERROR;
      }
    }
    return P_UNTRACKED;
  }

  /** Rewrites a TCP/UDP/ICMP-echo packet of direction `ref & 1` to the inverse of the other tuple. */
  private rewrite(buf: Buffer, ipOff: number, ref: number): void {
    const rec = this.ct.rec;
    const mine = tupleBase(ref);
    const other = mine ^ REC_TUPLE_WORDS;
    const proto = rec[mine + REC_PROTO]!;
    const oldSrc = rec[mine]!;
    const oldDst = rec[mine + 1]!;
    const newSrc = rec[other + 1]!;
    const newDst = rec[other]!;
    const l4 = this.l4;
    let ipc = ipv4Checksum(buf, ipOff);
    if (proto === IpProtocol.TCP || proto === IpProtocol.UDP) {
      const udp = proto === IpProtocol.UDP;
      const co = l4 + l4ChecksumOffset(proto);
      let c = readU16(buf, co);
      if (oldSrc !== newSrc) {
        ipc = updateChecksum32(ipc, oldSrc, newSrc);
        c = udp ? updateUdpChecksum32(c, oldSrc, newSrc) : updateChecksum32(c, oldSrc, newSrc);
        setIpv4Src(buf, ipOff, newSrc);
      }
      if (oldDst !== newDst) {
        ipc = updateChecksum32(ipc, oldDst, newDst);
        c = udp ? updateUdpChecksum32(c, oldDst, newDst) : updateChecksum32(c, oldDst, newDst);
        setIpv4Dst(buf, ipOff, newDst);
      }
      const oldPorts = rec[mine + REC_PORTS]!;
      const op = rec[other + REC_PORTS]!;
      const newPorts = ((op & 0xffff) << 16) | (op >>> 16); // (other.dport, other.sport)
      if (oldPorts !== newPorts) {
        c = udp ? updateUdpChecksum32(c, oldPorts, newPorts) : updateChecksum32(c, oldPorts, newPorts);
        setL4Ports(buf, l4, newPorts);
      }
      writeU16(buf, co, c);
    } else {
      if (oldSrc !== newSrc) {
        ipc = updateChecksum32(ipc, oldSrc, newSrc);
        setIpv4Src(buf, ipOff, newSrc);
      }
      if (oldDst !== newDst) {
        ipc = updateChecksum32(ipc, oldDst, newDst);
        setIpv4Dst(buf, ipOff, newDst);
      }
      if (proto === IpProtocol.ICMP) {
        const oldId = rec[mine + REC_PORTS]! >>> 16;
        const newId = rec[other + REC_PORTS]! >>> 16;
        if (oldId !== newId) {
          setIcmpChecksum(buf, l4, updateChecksum16(icmpChecksum(buf, l4), oldId, newId));
          setIcmpEchoIdent(buf, l4, newId);
        }
      }
    }
    setIpv4Checksum(buf, ipOff, ipc);
    this.stats.translated++;
  }

  /**
   * An ICMP error: the quoted packet went in one direction of a connection, so the error travels in
   * the other. The quoted tuple is inverted and looked up (giving the error's direction `d`); the
   * quote, which carries the inverse of tuple[d], is rewritten to tuple[1 - d] (what its sender
   * sent), and the outer addresses get the normal direction-`d` translation where they are the
   * translated ones (an error from a router on the path keeps that router's address).
   * Errors that match no connection are `NotTracked`; they are never counted as new connections.
   */
  private icmpError(buf: Buffer, ipOff: number, now: number): Verdict {
    const l4 = this.l4;
    const end = l4 + this.l4len;
    const e = l4 + ICMP_ERROR_QUOTE_OFFSET;
    if (end - e < 20 || ipv4Version(buf, e) !== 4) return Verdict.NotTracked;
    const ehl = ipv4HeaderLen(buf, e);
    if (ehl < 20 || e + ehl + 8 > end) return Verdict.NotTracked;
    if (ipv4IsLaterFragment(buf, e)) return Verdict.NotTracked;
    const eProto = ipv4Protocol(buf, e);
    const eSrc = ipv4Src32(buf, e);
    const eDst = ipv4Dst32(buf, e);
    const el4 = e + ehl;
    const ct = this.ct;
    const ports = eProto === IpProtocol.TCP || eProto === IpProtocol.UDP;
    let ref: number;
    if (ports) {
      ref = ct.lookup(eProto, eDst, eSrc, l4DstPort(buf, el4), l4SrcPort(buf, el4), now);
    } else if (eProto === IpProtocol.ICMP) {
      const t = icmpType(buf, el4);
      const id = icmpEchoIdent(buf, el4);
      if (t === IcmpType.EchoRequest) ref = ct.lookup(eProto, eDst, eSrc, id, ECHO_REPLY_KEY, now);
      else if (t === IcmpType.EchoReply) ref = ct.lookup(eProto, eDst, eSrc, id, ECHO_REQUEST_KEY, now);
      else return Verdict.NotTracked;
    } else {
      return Verdict.NotTracked;
    }
    if (ref < 0) return Verdict.NotTracked;
    this.ref = ref;
    this.stats.icmpErrors++;
    const rec = ct.rec;
    if ((rec[((ref >> 1) << 4) + REC_STATUS]! & NAT_BITS) === 0) return Verdict.Ok;
    const mine = tupleBase(ref);
    const other = mine ^ REC_TUPLE_WORDS;

    // The quote: addresses, ports/identifier, its IPv4 checksum and L4 checksum; every changed
    // 16-bit word is also folded into the ICMP checksum (all quoted fields sit at even offsets).
    const nSrc = rec[other]!;
    const nDst = rec[other + 1]!;
    let icmpc = icmpChecksum(buf, l4);
    const eipcOld = ipv4Checksum(buf, e);
    let eipc = eipcOld;
    const udp = eProto === IpProtocol.UDP;
    // The quoted L4 checksum, when the quote reaches it (TCP's lies past the first 8 bytes).
    const lco = eProto === IpProtocol.TCP ? (el4 + TCP_CHECKSUM_OFFSET + 2 <= end ? el4 + TCP_CHECKSUM_OFFSET : -1) : udp ? el4 + UDP_CHECKSUM_OFFSET : el4 + ICMP_CHECKSUM_OFFSET;
    const lcOld = lco >= 0 ? readU16(buf, lco) : 0;
    let lc = lcOld;
    if (eSrc !== nSrc) {
      eipc = updateChecksum32(eipc, eSrc, nSrc);
      icmpc = updateChecksum32(icmpc, eSrc, nSrc);
      if (ports && lco >= 0) lc = udp ? updateUdpChecksum32(lc, eSrc, nSrc) : updateChecksum32(lc, eSrc, nSrc);
      setIpv4Src(buf, e, nSrc);
    }
    if (eDst !== nDst) {
      eipc = updateChecksum32(eipc, eDst, nDst);
      icmpc = updateChecksum32(icmpc, eDst, nDst);
      if (ports && lco >= 0) lc = udp ? updateUdpChecksum32(lc, eDst, nDst) : updateChecksum32(lc, eDst, nDst);
      setIpv4Dst(buf, e, nDst);
    }
    if (ports) {
      const oldP = l4Ports32(buf, el4);
      const newP = rec[other + REC_PORTS]!;
      if (oldP !== newP) {
        icmpc = updateChecksum32(icmpc, oldP, newP);
        if (lco >= 0) lc = udp ? updateUdpChecksum32(lc, oldP, newP) : updateChecksum32(lc, oldP, newP);
        setL4Ports(buf, el4, newP);
      }
    } else {
      const oldId = icmpEchoIdent(buf, el4);
      const newId = rec[other + REC_PORTS]! >>> 16;
      if (oldId !== newId) {
        icmpc = updateChecksum16(icmpc, oldId, newId);
        lc = updateChecksum16(lc, oldId, newId);
        setIcmpEchoIdent(buf, el4, newId);
      }
    }
    if (lco >= 0 && lc !== lcOld) {
      icmpc = updateChecksum16(icmpc, lcOld, lc);
      writeU16(buf, lco, lc);
    }
    if (eipc !== eipcOld) {
      icmpc = updateChecksum16(icmpc, eipcOld, eipc);
      setIpv4Checksum(buf, e, eipc);
    }
    setIcmpChecksum(buf, l4, icmpc);

    // The outer header (ICMP has no pseudo-header, so only the IPv4 checksum changes).
    const oSrc = ipv4Src32(buf, ipOff);
    const oDst = ipv4Dst32(buf, ipOff);
    const toSrc = rec[other + 1]!;
    const toDst = rec[other]!;
    let ipc = ipv4Checksum(buf, ipOff);
    if (oSrc === rec[mine]! && oSrc !== toSrc) {
      ipc = updateChecksum32(ipc, oSrc, toSrc);
      setIpv4Src(buf, ipOff, toSrc);
    }
    if (oDst === rec[mine + 1]! && oDst !== toDst) {
      ipc = updateChecksum32(ipc, oDst, toDst);
      setIpv4Dst(buf, ipOff, toDst);
    }
    setIpv4Checksum(buf, ipOff, ipc);
    this.stats.translated++;
    return Verdict.Ok;
  }

  /** Whether a REPLY tuple with client port (ICMP: identifier) `key` is in use. */
  private taken(proto: number, rSrc: number, rDst: number, rSport: number, key: number, now: number): boolean {
    return proto === IpProtocol.ICMP
      ? this.ct.lookup(proto, rSrc, rDst, key, ECHO_REPLY_KEY, now) >= 0
      : this.ct.lookup(proto, rSrc, rDst, rSport, key, now) >= 0;
  }

  /**
   * nf_nat's search: keep `preferred` if it is in range and free; otherwise start at a random offset
   * and test up to `maxAttempts` consecutive candidates (each a REPLY-tuple lookup, so a collision is
   * impossible by construction), then halve the attempts from a new random offset until fewer than
   * 16 remain. A range no larger than `maxAttempts` is therefore searched exhaustively. -1 = none.
   */
  private allocate(
    proto: number,
    rSrc: number,
    rDst: number,
    rSport: number,
    min: number,
    max: number,
    preferred: number,
    now: number,
  ): number {
    if (!(min >= 0 && max <= 0xffff && min <= max)) return -1;
    const size = max - min + 1;
    if (preferred >= min && preferred <= max && !this.taken(proto, rSrc, rDst, rSport, preferred, now)) return preferred;
    let attempts = size < this.maxAttempts ? size : this.maxAttempts;
    let off = this.rng.below(size);
    for (;;) {
      for (let i = 0; i < attempts; i++) {
        const p = min + off;
        if (++off === size) off = 0;
        if (!this.taken(proto, rSrc, rDst, rSport, p, now)) return p;
      }
      if (attempts >= size || attempts < 16) return -1;
      attempts >>= 1;
      off = this.rng.below(size);
    }
  }
}

function checkRange(min: number, max: number): void {
  if (!Number.isInteger(min) || !Number.isInteger(max) || min < 0 || max > 0xffff || min > max) {
    throw new RangeError(`port range ${min}-${max} must satisfy 0 <= min <= max <= 65535`);
  }
}
