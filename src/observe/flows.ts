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
import { ipv4ToString } from '../packet/index.js';

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

export class FlowLog implements ConnectionObserver, ConntrackEvents {
  readonly capacity: number;
  private readonly mask: number;
  /** `coarseClock.ms` when recorded (int32, 10 ms resolution: no boxed double per record). */
  private readonly time: Int32Array;
  private readonly ev: Uint8Array;
  private readonly proto: Uint8Array;
  /** Per record 8 words: original src, dst, sport, dport; reply src, dst, sport, dport. */
  private readonly tup: Int32Array;
  private readonly hasReply: Uint8Array;
  private readonly reason: Int16Array;
  private readonly ingress: Int8Array;
  private readonly extra: Int8Array;
  private readonly count: Uint32Array;
  private readonly by: Array<string | undefined>;
  private readonly port: Array<string | undefined>;
  /** Records written so far; record `s` lives at `s & mask` while `s >= next - capacity`. */
  next = 0;

  constructor(
    private readonly ct: Conntrack,
    capacity = 4096,
  ) {
    let n = 1;
    while (n < capacity) n <<= 1;
    this.capacity = n;
    this.mask = n - 1;
    this.time = new Int32Array(n);
    this.ev = new Uint8Array(n);
    this.proto = new Uint8Array(n);
    this.tup = new Int32Array(n * 8);
    this.hasReply = new Uint8Array(n);
    this.reason = new Int16Array(n);
    this.ingress = new Int8Array(n);
    this.extra = new Int8Array(n);
    this.count = new Uint32Array(n);
    this.by = new Array<string | undefined>(n).fill(undefined);
    this.port = new Array<string | undefined>(n).fill(undefined);
  }

  private begin(event: FlowEvent, proto: number): number {
    const i = this.next++ & this.mask;
    this.time[i] = coarseClock.ms;
    this.ev[i] = event;
    this.proto[i] = proto;
    this.hasReply[i] = 0;
    this.reason[i] = NONE;
    this.ingress[i] = NONE;
    this.extra[i] = NONE;
    this.count[i] = 1;
    this.by[i] = undefined;
    this.port[i] = undefined;
    return i;
  }

  private original(i: number, src: number, dst: number, sport: number, dport: number): void {
    const t = this.tup;
    const b = i << 3;
    t[b] = src;
    t[b + 1] = dst;
    t[b + 2] = sport;
    t[b + 3] = dport;
  }

  /** Both tuples from conntrack entry `id`. */
  private fromEntry(i: number, id: number): void {
    const ct = this.ct;
    const o = id << 1;
    const r = o | 1;
    const t = this.tup;
    const b = i << 3;
    t[b] = ct.src(o);
    t[b + 1] = ct.dst(o);
    t[b + 2] = ct.sport(o);
    t[b + 3] = ct.dport(o);
    t[b + 4] = ct.src(r);
    t[b + 5] = ct.dst(r);
    t[b + 6] = ct.sport(r);
    t[b + 7] = ct.dport(r);
    this.hasReply[i] = 1;
  }

  // ---- ConnectionObserver (the router, once per new connection) ----

  accepted(ctx: PacketContext): void {
    if (ctx.ctRef < 0) return; // untracked: no connection to log (see the file comment)
    const i = this.begin(FlowEvent.New, ctx.proto);
    this.fromEntry(i, ctx.ctRef >> 1);
    this.ingress[i] = ctx.ingress;
  }

  refused(ctx: PacketContext, reason: DropReason): void {
    const i = this.begin(FlowEvent.Dropped, ctx.proto);
    this.original(i, ctx.src, ctx.dst, ctx.sport, ctx.dport);
    this.reason[i] = reason;
    this.ingress[i] = ctx.ingress;
    if (ctx.refusedBy !== '') this.by[i] = ctx.refusedBy;
  }

  // ---- ConntrackEvents (on a status change, on removal) ----

  established(id: number): void {
    const i = this.begin(FlowEvent.Established, this.ct.proto(id));
    this.fromEntry(i, id);
  }

  closed(id: number): void {
    const i = this.begin(FlowEvent.Closed, this.ct.proto(id));
    this.fromEntry(i, id);
    this.extra[i] = CLOSE_FIN;
  }

  removed(id: number, why: CtRemoval): void {
    const proto = this.ct.proto(id);
    if (proto === 6) {
      const s = this.ct.tcpState(id);
      if (s === TcpState.TimeWait || s === TcpState.Close) return; // its close was logged already
    }
    const i = this.begin(FlowEvent.Closed, proto);
    this.fromEntry(i, id);
    this.extra[i] = why;
  }

  // ---- the switch's drop path (frames refused from a pod port) ----

  /** A frame the switch dropped from `port` (Ethernet at `off`). */
  switchDrop(port: Port, reason: DropReason, buf: Buffer, off: number, len: number): void {
    let proto = 0;
    let src = 0;
    let dst = 0;
    let sport = 0;
    let dport = 0;
    if (len >= 34 && buf[off + 12] === 0x08 && buf[off + 13] === 0x00) {
      const ip = off + 14;
      proto = buf[ip + 9]!;
      src = buf.readInt32BE(ip + 12);
      dst = buf.readInt32BE(ip + 16);
      const ihl = (buf[ip]! & 0x0f) << 2;
      if ((proto === 6 || proto === 17) && len >= 14 + ihl + 4) {
        sport = buf.readUInt16BE(ip + ihl);
        dport = buf.readUInt16BE(ip + ihl + 2);
      } else if (proto === 1 && len >= 14 + ihl + 8) {
        sport = buf.readUInt16BE(ip + ihl + 4); // identifier, as conntrack keys ICMP echo
        dport = buf[ip + ihl]! << 8;
      }
    }
    // The same drop again within a second: counted on the newest record.
    if (this.next > 0) {
      const j = (this.next - 1) & this.mask;
      const b = j << 3;
      if (
        this.ev[j] === FlowEvent.Dropped &&
        this.port[j] === port.name &&
        this.reason[j] === reason &&
        this.proto[j] === proto &&
        this.tup[b] === src &&
        this.tup[b + 1] === dst &&
        ((coarseClock.ms - this.time[j]!) | 0) < 1000
      ) {
        this.count[j]!++;
        return;
      }
    }
    const i = this.begin(FlowEvent.Dropped, proto);
    this.original(i, src, dst, sport, dport);
    this.reason[i] = reason;
    this.by[i] = 'switch';
    this.port[i] = port.name;
    this.ingress[i] = 0;
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
      const b = i << 3;
      const t = this.tup;
      const protoNum = this.proto[i]!;
      const proto = PROTO_NAMES[protoNum] ?? String(protoNum);
      const original = { src: ipv4ToString(t[b]! >>> 0), dst: ipv4ToString(t[b + 1]! >>> 0), sport: t[b + 2]!, dport: t[b + 3]! };
      const ev = this.ev[i]!;
      const rec: FlowRecord = {
        seq: s,
        time: new Date(nowEpoch - ((nowMs - this.time[i]!) | 0)).toISOString(),
        event: EVENT_NAMES[ev]!,
        proto,
        original,
        verdict: ev === FlowEvent.Dropped ? 'dropped' : 'accepted',
        count: this.count[i]!,
      };
      if (this.hasReply[i] === 1) {
        const reply = { src: ipv4ToString(t[b + 4]! >>> 0), dst: ipv4ToString(t[b + 5]! >>> 0), sport: t[b + 6]!, dport: t[b + 7]! };
        rec.reply = reply;
        const nat: { endpoint?: string; masquerade?: string } = {};
        const icmp = protoNum === 1;
        // DNAT: the reply comes from somewhere else than the original destination.
        if (reply.src !== original.dst || (!icmp && reply.sport !== original.dport)) nat.endpoint = icmp ? reply.src : `${reply.src}:${reply.sport}`;
        // SNAT: the reply goes to somewhere else than the original source.
        if (reply.dst !== original.src || reply.dport !== original.sport) nat.masquerade = icmp ? `${reply.dst} id ${reply.dport}` : `${reply.dst}:${reply.dport}`;
        if (nat.endpoint !== undefined || nat.masquerade !== undefined) rec.nat = nat;
      }
      if (this.reason[i] !== NONE) rec.reason = dropReasonName(this.reason[i]!);
      if (this.by[i] !== undefined) rec.by = this.by[i];
      if (this.port[i] !== undefined) rec.port = this.port[i];
      if (this.ingress[i] !== NONE && (ev === FlowEvent.New || ev === FlowEvent.Dropped)) rec.from = INGRESS_NAMES[this.ingress[i]!] ?? String(this.ingress[i]);
      if (ev === FlowEvent.Closed && this.extra[i] !== NONE) rec.closedBy = CLOSE_NAMES[this.extra[i]!];
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
