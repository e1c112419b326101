/**
 * The flow log (`podnet flows`): one record per connection event, in a bounded ring in the daemon.
 *
 * Where the events come from, none of them per packet:
 * - new / dropped: the router's `ConnectionObserver` (`router.hooks.observer`), called once per
 *   first packet of a connection after the hooks decided (accepted with its conntrack entry, or
 *   refused with the hook's reason, or NAT's when it could not create the entry);
 * - established / closed: `Conntrack.events`, called only when a packet changes an entry's status
 *   (assured; TCP into TIME_WAIT or CLOSE) and when an entry leaves the table (expired, deleted,
 *   evicted);
 * - dropped before conntrack: the switch's `dropObserver`, called on its drop path only (a pod
 *   sending with a forged source MAC or IP), so the normal path pays nothing. Repeats of one drop
 *   (same port, reason, protocol and addresses) within a second add to the newest record's count.
 *
 * Connections conntrack does not track (pod to pod without NAT or a policy asking for tracking) have
 * no entry and are not logged: their packets each look new to the router, and logging them would be
 * per packet.
 *
 * A record is typed-array fields written in place: recording allocates nothing. Names (pods,
 * services) are resolved when the records are read, from the cluster's pods and services then.
 */
import { coarseClock } from '../util/clock.js';
import type { ConnectionObserver, PacketContext } from '../dataplane/hooks.js';
import type { Port } from '../dataplane/port.js';
import { dropReasonName, type DropReason } from '../util/counters.js';
import { TcpState, type CtRemoval, type Conntrack, type ConntrackEvents } from '../nat/conntrack.js';
import {
  ETH_HLEN,
  EtherType,
  IpProtocol,
  ethType,
  icmpEchoIdent,
  icmpType,
  ipv4Dst32,
  ipv4HeaderLen,
  ipv4Protocol,
  ipv4Src32,
  ipv4ToString,
  l4DstPort,
  l4SrcPort,
} from '../packet/index.js';

export const FlowEvent = { New: 0, Established: 1, Closed: 2, Dropped: 3 } as const;
export type FlowEvent = (typeof FlowEvent)[keyof typeof FlowEvent];
const EVENT_NAMES = ['new', 'established', 'closed', 'dropped'] as const;
const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };
const CLOSE_NAMES = ['expired', 'deleted', 'evicted', 'fin/rst'] as const;
const CLOSE_FIN = 3;
const INGRESS_NAMES = ['pod', 'host', 'overlay', 'uplink', 'bridge'] as const;

export interface FlowTuple {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

export interface FlowRecord {
  seq: number;
  time: string;
  event: (typeof EVENT_NAMES)[number];
  proto: string;
  original: FlowTuple;
  /** The REPLY tuple conntrack expects (absent for a connection dropped before it had an entry). */
  reply?: FlowTuple;
  /** The NAT decision read off the two tuples: the endpoint (DNAT) and the masquerade address:port (SNAT). */
  nat?: { endpoint?: string; masquerade?: string };
  verdict: 'accepted' | 'dropped';
  reason?: string;
  /** Which hook refused it, or 'switch' for a drop before conntrack. */
  by?: string;
  /** Where the first packet came from: pod, host, overlay, uplink, bridge (new and dropped events). */
  from?: string;
  /** The switch port a drop before conntrack happened on. */
  port?: string;
  /** Why it closed: fin/rst (TCP), expired, deleted (e.g. its pod went), evicted (table full). */
  closedBy?: string;
  /** Repeats folded into this record (drops before conntrack). */
  count: number;
  srcPod?: string;
  dstPod?: string;
  /** The pod behind the endpoint when DNAT'd. */
  endpointPod?: string;
  service?: string;
}

/** Names for addresses, at read time. */
export interface FlowNames {
  pod(ip: string): string | undefined;
  service(ip: string, port: number, proto: string): string | undefined;
}

const NONE = -1;

/**
 * A record's words (16 int32, 64 bytes: recording one writes a single cache line or two). META
 * packs the event (bits 0-7), the protocol (8-15), whether a reply tuple is there (16) and whether
 * `by` / `port` hold a string for it (17, 18: the string arrays are written only then).
 */
const W_TIME = 0;
const W_META = 1;
const W_REASON = 2;
const W_INGRESS = 3;
const W_EXTRA = 4;
const W_COUNT = 5;
const W_TUPLE = 8; // original src, dst, sport, dport; reply src, dst, sport, dport
const WORDS = 16;
const META_REPLY = 1 << 16;
const META_BY = 1 << 17;
const META_PORT = 1 << 18;

/** Records a flow log keeps unless configured otherwise (config `flows.capacity`). */
export const DEFAULT_FLOW_CAPACITY = 4096;

export class FlowLog implements ConnectionObserver, ConntrackEvents {
  readonly capacity: number;
  private readonly mask: number;
  /** The records, `WORDS` each; the time is `coarseClock.ms` (int32, 10 ms resolution: no boxed double). */
  private readonly rec: Int32Array;
  private readonly by: Array<string | undefined>;
  private readonly port: Array<string | undefined>;
  /** Records written so far; record `s` lives at `s & mask` while `s >= next - capacity`. */
  next = 0;

  constructor(
    private readonly ct: Conntrack,
    capacity = DEFAULT_FLOW_CAPACITY,
  ) {
    let n = 1;
    while (n < capacity) n <<= 1;
    this.capacity = n;
    this.mask = n - 1;
    this.rec = new Int32Array(n * WORDS);
    this.by = new Array<string | undefined>(n).fill(undefined);
    this.port = new Array<string | undefined>(n).fill(undefined);
  }

  /** Starts the next record; returns its first word. */
  private begin(event: FlowEvent, proto: number): number {
    const b = (this.next++ & this.mask) * WORDS;
    const r = this.rec;
    r[b + W_TIME] = coarseClock.ms;
    r[b + W_META] = event | (proto << 8);
    r[b + W_REASON] = NONE;
    r[b + W_INGRESS] = NONE;
    r[b + W_EXTRA] = NONE;
    r[b + W_COUNT] = 1;
    return b;
  }

  private original(b: number, src: number, dst: number, sport: number, dport: number): void {
    const r = this.rec;
    r[b + W_TUPLE] = src;
    r[b + W_TUPLE + 1] = dst;
    r[b + W_TUPLE + 2] = sport;
    r[b + W_TUPLE + 3] = dport;
  }

  /** Both tuples from conntrack entry `id`. */
  private fromEntry(b: number, id: number): void {
    const ct = this.ct;
    const o = id << 1;
    const d = o | 1;
    const r = this.rec;
    const t = b + W_TUPLE;
    r[t] = ct.src(o);
    r[t + 1] = ct.dst(o);
    r[t + 2] = ct.sport(o);
    r[t + 3] = ct.dport(o);
    r[t + 4] = ct.src(d);
    r[t + 5] = ct.dst(d);
    r[t + 6] = ct.sport(d);
    r[t + 7] = ct.dport(d);
    r[b + W_META]! |= META_REPLY;
  }

  /** Sets the record's `by` (and `port`) strings. */
  private strings(b: number, by: string, port: string | undefined): void {
    const i = b / WORDS;
    this.by[i] = by;
    let flags = META_BY;
    if (port !== undefined) {
      this.port[i] = port;
      flags |= META_PORT;
    }
    this.rec[b + W_META]! |= flags;
  }

  // ---- ConnectionObserver (the router, once per new connection) ----

  accepted(ctx: PacketContext): void {
    if (ctx.ctRef < 0) return; // untracked: no connection to log (see the file comment)
    const b = this.begin(FlowEvent.New, ctx.proto);
    this.fromEntry(b, ctx.ctRef >> 1);
    this.rec[b + W_INGRESS] = ctx.ingress;
  }

  refused(ctx: PacketContext, reason: DropReason): void {
    const b = this.begin(FlowEvent.Dropped, ctx.proto);
    this.original(b, ctx.src, ctx.dst, ctx.sport, ctx.dport);
    this.rec[b + W_REASON] = reason;
    this.rec[b + W_INGRESS] = ctx.ingress;
    if (ctx.refusedBy !== '') this.strings(b, ctx.refusedBy, undefined);
  }

  // ---- ConntrackEvents (on a status change, on removal) ----

  established(id: number): void {
    this.fromEntry(this.begin(FlowEvent.Established, this.ct.proto(id)), id);
  }

  closed(id: number): void {
    const b = this.begin(FlowEvent.Closed, this.ct.proto(id));
    this.fromEntry(b, id);
    this.rec[b + W_EXTRA] = CLOSE_FIN;
  }

  removed(id: number, why: CtRemoval): void {
    const proto = this.ct.proto(id);
    if (proto === 6) {
      const s = this.ct.tcpState(id);
      if (s === TcpState.TimeWait || s === TcpState.Close) return; // its close was logged already
    }
    const b = this.begin(FlowEvent.Closed, proto);
    this.fromEntry(b, id);
    this.rec[b + W_EXTRA] = why;
  }

  // ---- the switch's drop path (frames refused from a pod port) ----

  /** A frame the switch dropped from `port` (Ethernet at `off`). */
  switchDrop(port: Port, reason: DropReason, buf: Buffer, off: number, len: number): void {
    let proto = 0;
    let src = 0;
    let dst = 0;
    let sport = 0;
    let dport = 0;
    if (len >= ETH_HLEN + 20 && ethType(buf, off) === EtherType.IPv4) {
      const ip = off + ETH_HLEN;
      proto = ipv4Protocol(buf, ip);
      src = ipv4Src32(buf, ip);
      dst = ipv4Dst32(buf, ip);
      const l4 = ip + ipv4HeaderLen(buf, ip);
      if ((proto === IpProtocol.TCP || proto === IpProtocol.UDP) && len >= l4 - off + 4) {
        sport = l4SrcPort(buf, l4);
        dport = l4DstPort(buf, l4);
      } else if (proto === IpProtocol.ICMP && len >= l4 - off + 8) {
        sport = icmpEchoIdent(buf, l4); // as conntrack keys ICMP echo
        dport = icmpType(buf, l4) << 8;
      }
    }
    // The same drop again within a second: counted on the newest record.
    const r = this.rec;
    if (this.next > 0) {
      const j = ((this.next - 1) & this.mask) * WORDS;
      if (
        (r[j + W_META]! & 0xffff) === (FlowEvent.Dropped | (proto << 8)) &&
        (r[j + W_META]! & META_PORT) !== 0 &&
        this.port[j / WORDS] === port.name &&
        r[j + W_REASON] === reason &&
        r[j + W_TUPLE] === src &&
        r[j + W_TUPLE + 1] === dst &&
        ((coarseClock.ms - r[j + W_TIME]!) | 0) < 1000
      ) {
        r[j + W_COUNT]!++;
        return;
      }
    }
    const b = this.begin(FlowEvent.Dropped, proto);
    this.original(b, src, dst, sport, dport);
    r[b + W_REASON] = reason;
    r[b + W_INGRESS] = 0;
    this.strings(b, 'switch', port.name);
  }

  // ---- reading (control plane) ----

  /** The oldest sequence number still in the ring. */
  get first(): number {
    return Math.max(0, this.next - this.capacity);
  }

  /** Records from sequence number `from` (clamped to what the ring holds), at most `limit`, oldest first. */
  read(from: number, limit: number, names?: FlowNames): FlowRecord[] {
    const out: FlowRecord[] = [];
    coarseClock.refresh();
    const nowMs = coarseClock.ms;
    const nowEpoch = Date.now();
    for (let s = Math.max(from, this.first); s < this.next && out.length < limit; s++) {
      const i = s & this.mask;
      const r = this.rec;
      const w = i * WORDS;
      const b = w + W_TUPLE;
      const meta = r[w + W_META]!;
      const protoNum = (meta >>> 8) & 0xff;
      const proto = PROTO_NAMES[protoNum] ?? String(protoNum);
      const original = { src: ipv4ToString(r[b]! >>> 0), dst: ipv4ToString(r[b + 1]! >>> 0), sport: r[b + 2]!, dport: r[b + 3]! };
      const ev = meta & 0xff;
      const rec: FlowRecord = {
        seq: s,
        time: new Date(nowEpoch - ((nowMs - r[w + W_TIME]!) | 0)).toISOString(),
        event: EVENT_NAMES[ev]!,
        proto,
        original,
        verdict: ev === FlowEvent.Dropped ? 'dropped' : 'accepted',
        count: r[w + W_COUNT]!,
      };
      if ((meta & META_REPLY) !== 0) {
        const reply = { src: ipv4ToString(r[b + 4]! >>> 0), dst: ipv4ToString(r[b + 5]! >>> 0), sport: r[b + 6]!, dport: r[b + 7]! };
        rec.reply = reply;
        const nat: { endpoint?: string; masquerade?: string } = {};
        const icmp = protoNum === 1;
        // DNAT: the reply comes from somewhere else than the original destination.
        if (reply.src !== original.dst || (!icmp && reply.sport !== original.dport)) nat.endpoint = icmp ? reply.src : `${reply.src}:${reply.sport}`;
        // SNAT: the reply goes to somewhere else than the original source.
        if (reply.dst !== original.src || reply.dport !== original.sport) nat.masquerade = icmp ? `${reply.dst} id ${reply.dport}` : `${reply.dst}:${reply.dport}`;
        if (nat.endpoint !== undefined || nat.masquerade !== undefined) rec.nat = nat;
      }
      const reason = r[w + W_REASON]!;
      const ingress = r[w + W_INGRESS]!;
      const extra = r[w + W_EXTRA]!;
      if (reason !== NONE) rec.reason = dropReasonName(reason as DropReason);
      if ((meta & META_BY) !== 0) rec.by = this.by[i];
      if ((meta & META_PORT) !== 0) rec.port = this.port[i];
      if (ingress !== NONE && (ev === FlowEvent.New || ev === FlowEvent.Dropped)) rec.from = INGRESS_NAMES[ingress] ?? String(ingress);
      if (ev === FlowEvent.Closed && extra !== NONE) rec.closedBy = CLOSE_NAMES[extra];
      if (names !== undefined) {
        const sp = names.pod(original.src);
        const dp = names.pod(original.dst);
        if (sp !== undefined) rec.srcPod = sp;
        if (dp !== undefined) rec.dstPod = dp;
        const svc = names.service(original.dst, original.dport, proto);
        if (svc !== undefined) rec.service = svc;
        if (rec.nat?.endpoint !== undefined && rec.reply !== undefined) {
          const ep = names.pod(rec.reply.src);
          if (ep !== undefined) rec.endpointPod = ep;
        }
      }
      out.push(rec);
    }
    return out;
  }
}

/** Whether a record concerns pod `pod` (either end, the endpoint, or the port it was dropped on). */
export function flowInvolves(r: FlowRecord, pod: string): boolean {
  return r.srcPod === pod || r.dstPod === pod || r.endpointPod === pod || r.port === pod;
}

/** One line per record for the table form. */
export function formatFlow(r: FlowRecord): string {
  const t = (x: FlowTuple) => (r.proto === 'icmp' ? `${x.src} > ${x.dst} id ${x.sport}` : `${x.src}:${x.sport} > ${x.dst}:${x.dport}`);
  const who = (ip: string, pod?: string) => (pod !== undefined ? `${ip}(${pod})` : ip);
  const parts = [r.time.slice(11, 23), r.event.padEnd(11), r.proto.padEnd(4), t({ ...r.original, src: who(r.original.src, r.srcPod), dst: who(r.original.dst, r.dstPod) })];
  if (r.service !== undefined) parts.push(`svc=${r.service}`);
  if (r.nat?.endpoint !== undefined) parts.push(`dnat=${r.nat.endpoint}${r.endpointPod !== undefined ? `(${r.endpointPod})` : ''}`);
  if (r.nat?.masquerade !== undefined) parts.push(`snat=${r.nat.masquerade}`);
  if (r.closedBy !== undefined) parts.push(`closed=${r.closedBy}`);
  parts.push(r.verdict);
  if (r.reason !== undefined) parts.push(`reason=${r.reason}${r.by !== undefined ? ` by=${r.by}` : ''}${r.port !== undefined ? ` port=${r.port}` : ''}`);
  if (r.count > 1) parts.push(`x${r.count}`);
  return parts.join(' ');
}
