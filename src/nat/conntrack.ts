/**
 * Connection tracking, modelled on Linux netfilter conntrack (nf_conntrack_core.c,
 * nf_conntrack_proto_tcp.c): one entry per connection holding an ORIGINAL and a REPLY tuple, both
 * indexed by one hash table, so a lookup returns the entry and the packet's direction in one step.
 *
 * Data layout (struct of arrays, no object per flow):
 * - `rec`: one 64-byte record (16 int32 words) per entry, so the whole entry — both tuples, the
 *   expiry, the status — shares one cache line (its memory is page-aligned for that: records over
 *   malloc'd memory would straddle two lines each). Word offsets within a record:
 *     0..3   ORIGINAL tuple: src, dst, ports (`sport << 16 | dport`), proto
 *     4..7   REPLY tuple, same layout
 *     8, 9   hash of the ORIGINAL / REPLY tuple (its index slot is found without rehashing)
 *     10..11 expiry time in seconds (float64, read through a Float64Array over the same memory)
 *     12     status: TCP state (low 4 bits) | `CtStatus` bits
 *     13     mark: free for the caller (e.g. a service or endpoint id for `deleteWhere`)
 *     14, 15 packets seen in the ORIGINAL / REPLY direction (uint32, wraps)
 * - `index`: an open-addressing hash index (linear probing, backward-shift deletion, no tombstones)
 *   of (tuple hash, ref) pairs, power-of-two sized to at least twice the tuple count (2 per entry),
 *   so probes stay within one or two cache lines. The stored hash rejects other tuples without
 *   touching their records: a lookup costs one miss in the index plus one in `rec`, even at a
 *   million entries. The hash is seeded, so probe sequences cannot be steered from outside.
 * - A tuple is named by its "ref" = `entryId * 2 + dir`; that is what `lookup` returns.
 *
 * Addresses and ports are stored as int32 (an address >= 128.0.0.0 is negative): int32 values stay
 * small integers in V8 (no heap numbers), which keeps every per-packet call allocation-free. The
 * public API takes and returns unsigned addresses, as the wire layer does.
 *
 * ICMP echo follows Linux: the identifier sits in the source-port slot of both tuples and the
 * destination-port slot holds `type << 8` (request 8 in the ORIGINAL tuple, reply 0 in the REPLY
 * tuple), so `ping A -> B` and `ping B -> A` with the same identifier are two connections. (Linux keeps
 * the code byte too; requests with a non-zero code are not worth distinguishing, so it is 0 here.)
 *
 * Time is passed in, in seconds (any number; the data plane passes whole seconds, `Dataplane.now`,
 * so a timeout ends within a second of its nominal length); nothing here reads a clock. Expiry needs
 * no timer: an expired entry is absent for `lookup` (which reclaims it), and `gc(now, budget)` walks
 * a bounded slice of the table per call.
 *
 * Simplifications against Linux (documented, deliberate):
 * - No TCP window tracking (sequence/ack numbers are not checked, no retransmission counting, no
 *   `be_liberal`): the state machine is driven by flags and direction only, so an out-of-window RST
 *   also closes. Unassured connections are capped at `tcpUnacknowledged` (300 s) as Linux does.
 * - Two refinements over Linux's direction-blind close states: a FIN retransmitted by a side that has
 *   already sent one does not advance the state, and an ACK in FIN_WAIT from the side that sent the
 *   FIN (acking the peer's data in a half-close) does not move to CLOSE_WAIT.
 * - An RST before any reply goes to CLOSE (10 s) instead of being deleted at once.
 * - "Ignored" packets (Linux's sIG, e.g. a SYN on an established tuple) pass without state change and
 *   without resync; `create` inserts confirmed entries (there is no unconfirmed list).
 * - UDP is assured as soon as a reply is seen (Linux >= 5.x waits 2 s for "stream" status); ICMP
 *   echo is assured the same way (Linux never assures ICMP).
 */
import { ipv4ToString } from '../packet/addr.js';
import { IpProtocol } from '../packet/ipv4.js';
import { pageAlignedBuffer } from '../util/aligned.js';
import { protoName, type CtCensus, type CtEntryInfo, type CtTupleInfo } from './format.js';
import { CtStatus, TCP_IGNORE, TCP_RESTART, TcpState, tcpOpens, tcpStateName, tcpStep } from './tcpstate.js';

export { CtStatus, TcpState, tcpStateName } from './tcpstate.js';

/** Why an entry left the table (`ConntrackEvents.removed`). */
export const CtRemoval = { Expired: 0, Deleted: 1, Evicted: 2 } as const;
export type CtRemoval = (typeof CtRemoval)[keyof typeof CtRemoval];

/**
 * Told of an entry's life (the flow log), off the per-packet path: only when a packet changes an
 * entry's status, and when an entry leaves the table (read it with the accessors during the call).
 */
export interface ConntrackEvents {
  /** The entry became assured: TCP established with a reply seen, UDP/ICMP the first reply. */
  established(id: number): void;
  /** A TCP entry entered TIME_WAIT or CLOSE (FINs both ways, or a RST). */
  closed(id: number): void;
  removed(id: number, why: CtRemoval): void;
}
export { formatCtEntry, protoName, type CtCensus, type CtEntryInfo, type CtTupleInfo } from './format.js';

/** Direction of a packet relative to the connection (the low bit of a ref). */
export const CtDir = { Original: 0, Reply: 1 } as const;
export type CtDir = (typeof CtDir)[keyof typeof CtDir];

/** What `update` made of a packet. */
export const CtUpdate = {
  /** Accepted; state and timeout updated. */
  Ok: 0,
  /** Accepted without a state change or timeout refresh (Linux's "ignore", e.g. a SYN on an established tuple). */
  Ignored: 1,
  /** Not valid in this state (or invalid TCP flags): nothing changed, counted in `stats.invalid`. */
  Invalid: 2,
  /** An ORIGINAL-direction SYN on a TIME_WAIT/CLOSE entry: the caller deletes the entry and starts a new connection. */
  Restart: 3,
} as const;
export type CtUpdate = (typeof CtUpdate)[keyof typeof CtUpdate];

/** Timeouts in seconds; Linux's defaults (nf_conntrack_*_timeout_*). */
export interface ConntrackTimeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpCloseWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  tcpSynSent2: number;
  /** Ceiling for any TCP state while the connection is not assured. */
  tcpUnacknowledged: number;
  udpUnreplied: number;
  /** UDP once a reply has been seen. */
  udpStream: number;
  icmp: number;
  /** Any other protocol (only reachable through `create` with such a protocol). */
  generic: number;
}

export const DEFAULT_TIMEOUTS: Readonly<ConntrackTimeouts> = Object.freeze({
  tcpSynSent: 120,
  tcpSynRecv: 60,
  tcpEstablished: 432000,
  tcpFinWait: 120,
  tcpCloseWait: 60,
  tcpLastAck: 30,
  tcpTimeWait: 120,
  tcpClose: 10,
  tcpSynSent2: 120,
  tcpUnacknowledged: 300,
  udpUnreplied: 30,
  udpStream: 120,
  icmp: 30,
  generic: 600,
});

export interface ConntrackOptions {
  /** Most entries the table holds (default 131072, kube-proxy's floor for nf_conntrack_max). */
  max?: number;
  /** Index slots, rounded up to a power of two (default and minimum: >= 4 * max, load <= 0.5). */
  indexSlots?: number;
  timeouts?: Partial<ConntrackTimeouts>;
  /** Entries a full table examines for one it may evict (default 64; Linux looks at 8 per bucket walk). */
  evictScan?: number;
  /** Pick up TCP connections from a mid-stream ACK (Linux's nf_conntrack_tcp_loose, default true). */
  tcpLoose?: boolean;
  /** Hash seed (default random): tests pass one for reproducible layouts. */
  seed?: number;
  /**
   * Memory for the entry records (at least `max * 64` bytes, page-aligned for the cache-line layout),
   * e.g. a shared file mapping that outlives the process (`shared.ts`). Without it, fresh zeroed
   * memory. Memory that already holds records is taken over with `restore`, before any other call.
   */
  memory?: ArrayBuffer;
  /** Where the records start in `memory` (bytes, a multiple of 64; default 0). */
  memoryOffset?: number;
}

/** What `restore` made of the records it found. */
export interface ConntrackRestore {
  /** Live entries taken over. */
  restored: number;
  /** Entries whose timeout had run out meanwhile (freed). */
  expired: number;
  /** Records that did not hold together (torn by a crash mid-write, or foreign bytes): freed, never trusted. */
  discarded: number;
}

/** Counters since creation. */
export class ConntrackStats {
  created = 0;
  /** Removed by `delete`/`deleteWhere`. */
  deleted = 0;
  /** Reclaimed after their timeout (by `lookup`, `gc` or a full table's scan). */
  expired = 0;
  /** Unassured entries dropped to make room (Linux's early_drop). */
  evicted = 0;
  /** `create` refused: the table was full of assured entries. */
  dropFull = 0;
  /** Packets `update` found invalid (flags or state). */
  invalid = 0;
  /** TIME_WAIT/CLOSE entries ended by a new SYN (`CtUpdate.Restart`). */
  restarted = 0;
}

/** Most tuples one batch prefetch takes (see `Conntrack.prefetch`). */
export const PREFETCH_MAX = 256;

/** Int32 words per entry record. */
export const REC_WORDS = 16;
/** Word offsets inside a record (see the module comment). */
export const REC_TUPLE_WORDS = 4;
export const REC_SRC = 0;
export const REC_DST = 1;
export const REC_PORTS = 2;
export const REC_PROTO = 3;
const REC_HASH = 8;
/** Float64 index within the record (words 10-11). */
const REC_EXPIRES_F64 = 5;
export const REC_STATUS = 12;
const REC_MARK = 13;
const REC_PKTS = 14;

/** Word offset in `rec` of the tuple named by `ref` (entry * 2 + dir). */
export function tupleBase(ref: number): number {
  return ((ref >> 1) << 4) | ((ref & 1) << 2);
}

// ---- hashing --------------------------------------------------------------------------------

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** Murmur3-style hash of a tuple (int32 words), seeded. */
function hashTuple(seed: number, src: number, dst: number, ports: number, proto: number): number {
  let h = mix(seed ^ proto, src);
  h = mix(h, dst);
  h = mix(h, ports);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function ports(sport: number, dport: number): number {
  return ((sport & 0xffff) << 16) | (dport & 0xffff);
}

/**
 * The connection table. All per-packet methods (`lookup`, `update`, `create`, `delete`, `gc`)
 * allocate nothing. Entry ids are 0..max-1; refs are `id * 2 + dir`.
 */
export class Conntrack {
  readonly max: number;
  /** Slots of the hash index (a power of two). */
  readonly indexSlots: number;
  readonly stats = new ConntrackStats();
  /** The flow log's callbacks (see `ConntrackEvents`); undefined: one field check on a status change. */
  events: ConntrackEvents | undefined;
  readonly timeouts: Readonly<ConntrackTimeouts>;
  readonly tcpLoose: boolean;
  readonly evictScan: number;
  /** The entry records (layout in the module comment). Read-only outside this module. */
  readonly rec: Int32Array;

  private readonly f64: Float64Array;
  /** Pairs (hash, ref); ref -1 = empty slot. */
  private readonly index: Int32Array;
  private readonly mask: number;
  private readonly seed: number;
  private readonly freeIds: Int32Array;
  private freeTop: number;
  private count = 0;
  private dnatLive = 0;
  /** One past the highest id ever handed out: scans stop here. */
  private highWater = 0;
  private gcCursor = 0;
  private evictCursor = 0;
  private readonly tcpTimeout: Float64Array;
  private readonly tcpUnack: number;
  private readonly udpUnreplied: number;
  private readonly udpStream: number;
  private readonly icmpTimeout: number;
  private readonly genericTimeout: number;
  // Batch prefetch (see `prefetch`): hashes of the batch's tuples, and a sink for the loads.
  private readonly pfHash = new Int32Array(PREFETCH_MAX);
  private pfCount = 0;
  private pfSink = 0;

  constructor(opts: ConntrackOptions = {}) {
    const max = opts.max ?? 131072;
    if (!Number.isInteger(max) || max < 1 || max > 1 << 24) throw new RangeError(`conntrack max ${max} out of range 1..${1 << 24}`);
    this.max = max;
    let slots = 16;
    const want = Math.max(opts.indexSlots ?? 0, max * 4);
    while (slots < want) slots *= 2;
    this.indexSlots = slots;
    this.mask = slots - 1;
    this.index = new Int32Array(slots * 2);
    for (let i = 1; i < this.index.length; i += 2) this.index[i] = -1;
    // Page-aligned, so that each 64-byte record is one cache line (see util/aligned.ts).
    const at = opts.memory !== undefined ? (opts.memoryOffset ?? 0) : 0;
    if (opts.memory !== undefined && (at % 64 !== 0 || opts.memory.byteLength < at + max * REC_WORDS * 4)) {
      throw new RangeError(`conntrack memory of ${opts.memory.byteLength} bytes from offset ${at} does not hold ${max} entries of 64 bytes`);
    }
    const mem = opts.memory ?? pageAlignedBuffer(max * REC_WORDS * 4);
    this.rec = new Int32Array(mem, at, max * REC_WORDS);
    this.f64 = new Float64Array(mem, at, max * (REC_WORDS >> 1));
    this.freeIds = new Int32Array(max);
    for (let i = 0; i < max; i++) this.freeIds[i] = max - 1 - i; // pop order 0, 1, 2, ...
    this.freeTop = max;
    this.seed = (opts.seed ?? Math.floor(Math.random() * 0x100000000)) | 0;
    this.tcpLoose = opts.tcpLoose ?? true;
    this.evictScan = Math.max(1, opts.evictScan ?? 64);
    const t: ConntrackTimeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    for (const [k, v] of Object.entries(t)) {
      if (typeof v !== 'number' || !(v > 0)) throw new RangeError(`conntrack timeout ${k} must be a positive number of seconds`);
    }
    this.timeouts = Object.freeze(t);
    const s = new Float64Array(10);
    s[TcpState.None] = t.tcpSynSent;
    s[TcpState.SynSent] = t.tcpSynSent;
    s[TcpState.SynRecv] = t.tcpSynRecv;
    s[TcpState.Established] = t.tcpEstablished;
    s[TcpState.FinWait] = t.tcpFinWait;
    s[TcpState.CloseWait] = t.tcpCloseWait;
    s[TcpState.LastAck] = t.tcpLastAck;
    s[TcpState.TimeWait] = t.tcpTimeWait;
    s[TcpState.Close] = t.tcpClose;
    s[TcpState.SynSent2] = t.tcpSynSent2;
    this.tcpTimeout = s;
    this.tcpUnack = t.tcpUnacknowledged;
    this.udpUnreplied = t.udpUnreplied;
    this.udpStream = t.udpStream;
    this.icmpTimeout = t.icmp;
    this.genericTimeout = t.generic;
  }

  /** The hash seed (kept with records that outlive the process: their stored hashes depend on it). */
  get hashSeed(): number {
    return this.seed;
  }

  /**
   * Takes over the records already in `memory` (a table a previous process left): every record marked
   * in use is checked — both tuples of one protocol, a known TCP state, stored hashes that match its
   * tuples under this seed, no tuple seen twice — and linked into a fresh index; `shift` seconds are
   * added to its expiry (the previous process's clock started at another moment). Records that fail
   * a check are freed and counted, never trusted: a crash in the middle of `create` leaves a record
   * whose hashes are not written yet. Call once, right after construction. Allocates nothing per entry.
   */
  restore(shift: number, now: number): ConntrackRestore {
    const out: ConntrackRestore = { restored: 0, expired: 0, discarded: 0 };
    const rec = this.rec;
    const f64 = this.f64;
    const seed = this.seed;
    let high = 0;
    for (let e = 0; e < this.max; e++) {
      const b = e << 4;
      const st = rec[b + REC_STATUS]!;
      if ((st & CtStatus.InUse) === 0) {
        if (st !== 0) rec[b + REC_STATUS] = 0;
        continue;
      }
      const proto = rec[b + REC_PROTO]!;
      const expires = f64[(e << 3) + REC_EXPIRES_F64]! + shift;
      const sound =
        proto >= 0 &&
        proto <= 255 &&
        rec[b + REC_TUPLE_WORDS + REC_PROTO] === proto &&
        (st & CtStatus.StateMask) <= TcpState.SynSent2 &&
        (st & ~0x83ff) === 0 &&
        Number.isFinite(expires) &&
        rec[b + REC_HASH] === hashTuple(seed, rec[b]!, rec[b + 1]!, rec[b + 2]!, proto) &&
        rec[b + REC_HASH + 1] === hashTuple(seed, rec[b + 4]!, rec[b + 5]!, rec[b + 6]!, proto) &&
        this.findRef(rec[b]!, rec[b + 1]!, rec[b + 2]!, proto) < 0 &&
        this.findRef(rec[b + 4]!, rec[b + 5]!, rec[b + 6]!, proto) < 0 &&
        (rec[b] !== rec[b + 4] || rec[b + 1] !== rec[b + 5] || rec[b + 2] !== rec[b + 6]);
      if (!sound || expires <= now) {
        rec[b + REC_STATUS] = 0;
        if (sound) out.expired++;
        else out.discarded++;
        continue;
      }
      f64[(e << 3) + REC_EXPIRES_F64] = expires;
      this.link(e << 1, b);
      this.link((e << 1) | 1, b + REC_TUPLE_WORDS);
      if ((st & CtStatus.DstNat) !== 0) this.dnatLive++;
      this.count++;
      high = e + 1;
      out.restored++;
    }
    // Free ids again in pop order lowest first (the stack's top is its end).
    let top = 0;
    for (let e = this.max - 1; e >= 0; e--) if ((rec[(e << 4) + REC_STATUS]! & CtStatus.InUse) === 0) this.freeIds[top++] = e;
    this.freeTop = top;
    this.highWater = high;
    this.gcCursor = 0;
    this.evictCursor = 0;
    return out;
  }

  /** The ref of a tuple given as stored (int32 words), ignoring expiry; -1 if absent. */
  private findRef(src: number, dst: number, p: number, proto: number): number {
    const rec = this.rec;
    const index = this.index;
    const mask = this.mask;
    const h = hashTuple(this.seed, src, dst, p, proto);
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const n = index[(i << 1) + 1]!;
      if (n < 0) return -1;
      if (index[i << 1] !== h) continue;
      const b = ((n >> 1) << 4) | ((n & 1) << 2);
      if (rec[b] === src && rec[b + 1] === dst && rec[b + 2] === p && rec[b + 3] === proto) return n;
    }
  }

  /** Live entries (expired ones count until reclaimed). */
  get size(): number {
    return this.count;
  }

  /**
   * Live entries with destination NAT (services, node ports). While there are none, no packet
   * between two pods of the node can belong to a NATed connection, so the switch's bridge hook
   * need not look (replies of a DNATed connection are the only thing it un-NATs).
   */
  get dnatCount(): number {
    return this.dnatLive;
  }

  /**
   * The ref (`entryId * 2 + dir`) of the tuple, or -1. An expired entry is reclaimed and reported
   * absent. Addresses are IPv4 numbers (unsigned or int32); for ICMP echo pass the identifier as
   * `sport` and `type << 8` as `dport`.
   */
  lookup(proto: number, src: number, dst: number, sport: number, dport: number, now: number): number {
    const n = this.findRef(src | 0, dst | 0, ports(sport, dport), proto);
    if (n < 0) return -1;
    const e = n >> 1;
    if (this.f64[(e << 3) + REC_EXPIRES_F64]! <= now) {
      this.unlinkAndFree(e, CtRemoval.Expired);
      this.stats.expired++;
      return -1;
    }
    return n;
  }

  /**
   * Batch prefetch, step one: a tuple a packet of the coming batch will be looked up by (its hash
   * is kept; at most `PREFETCH_MAX` per batch, more are ignored). Step two, `prefetchTouch`, runs once
   * every tuple of the batch is in.
   *
   * Why: with a large table every lookup is two dependent cache misses (index slot, then record;
   * ~190 ns together at a million entries), one packet after the other. Touching the index slots of
   * the whole batch in one tight loop, then the records in another, keeps many misses in flight at
   * once, and the lookups proper find the lines in cache. Worth it only when the table does not fit
   * in the caches.
   */
  prefetch(proto: number, src: number, dst: number, sport: number, dport: number): void {
    const n = this.pfCount;
    if (n === PREFETCH_MAX) return;
    this.pfHash[n] = hashTuple(this.seed, src | 0, dst | 0, ports(sport, dport), proto);
    this.pfCount = n + 1;
  }

  /** Batch prefetch, step two: touches the index slots of the tuples `prefetch` took, then their records. */
  prefetchTouch(): void {
    const n = this.pfCount;
    this.pfCount = 0;
    const index = this.index;
    const rec = this.rec;
    const mask = this.mask;
    const hashes = this.pfHash;
    let sink = this.pfSink;
    // Independent loads only: the CPU has as many of them in flight as it can.
    for (let k = 0; k < n; k++) sink ^= index[(hashes[k]! & mask) << 1]!;
    for (let k = 0; k < n; k++) {
      const h = hashes[k]!;
      for (let i = h & mask; ; i = (i + 1) & mask) {
        const ref = index[(i << 1) + 1]!;
        if (ref < 0) break;
        if (index[i << 1] === h) {
          sink ^= rec[tupleBase(ref)]!;
          break;
        }
      }
    }
    this.pfSink = sink; // keeps the loads from being optimised away
  }

  /**
   * Inserts a connection with the given ORIGINAL and REPLY tuples; returns its id, or -1 when the
   * table is full and no entry could be evicted (counted in `stats.dropFull`). The caller makes sure
   * neither tuple is in the table (nat.ts does). NAT is expressed by the REPLY tuple not being the
   * inverse of the ORIGINAL one; the SrcNat/DstNat bits are derived here. The entry starts in state
   * NONE with the protocol's initial timeout; feed the first packet to `update(id * 2, flags, now)`.
   */
  create(
    proto: number,
    oSrc: number,
    oDst: number,
    oSport: number,
    oDport: number,
    rSrc: number,
    rDst: number,
    rSport: number,
    rDport: number,
    now: number,
  ): number {
    if (this.count >= this.max && !this.earlyDrop(now)) {
      this.stats.dropFull++;
      return -1;
    }
    const e = this.freeIds[--this.freeTop]!;
    if (e >= this.highWater) this.highWater = e + 1;
    const rec = this.rec;
    const b = e << 4;
    oSrc |= 0;
    oDst |= 0;
    rSrc |= 0;
    rDst |= 0;
    rec[b] = oSrc;
    rec[b + 1] = oDst;
    rec[b + 2] = ports(oSport, oDport);
    rec[b + 3] = proto;
    rec[b + 4] = rSrc;
    rec[b + 5] = rDst;
    rec[b + 6] = ports(rSport, rDport);
    rec[b + 7] = proto;
    let status: number = CtStatus.InUse;
    if (proto === IpProtocol.ICMP) {
      // The identifier is the only "port"; changing it is source NAT, as in Linux.
      if (rDst !== oSrc || (rSport & 0xffff) !== (oSport & 0xffff)) status |= CtStatus.SrcNat;
      if (rSrc !== oDst) status |= CtStatus.DstNat;
    } else {
      if (rDst !== oSrc || (rDport & 0xffff) !== (oSport & 0xffff)) status |= CtStatus.SrcNat;
      if (rSrc !== oDst || (rSport & 0xffff) !== (oDport & 0xffff)) status |= CtStatus.DstNat;
    }
    rec[b + REC_STATUS] = status;
    if ((status & CtStatus.DstNat) !== 0) this.dnatLive++;
    rec[b + REC_MARK] = 0;
    rec[b + REC_PKTS] = 0;
    rec[b + REC_PKTS + 1] = 0;
    this.f64[(e << 3) + REC_EXPIRES_F64] = now + this.initialTimeout(proto);
    this.link(e << 1, b);
    this.link((e << 1) | 1, b + REC_TUPLE_WORDS);
    this.count++;
    this.stats.created++;
    return e;
  }

  /**
   * Feeds one accepted packet of the connection: `ref` is what `lookup` returned (its low bit is the
   * direction), `tcpFlags` the TCP flags byte (ignored for other protocols). Drives the TCP state
   * machine, marks SeenReply/Assured, counts the packet and refreshes the timeout.
   */
  update(ref: number, tcpFlags: number, now: number): CtUpdate {
    const e = ref >> 1;
    const d = ref & 1;
    const b = e << 4;
    const rec = this.rec;
    let st = rec[b + REC_STATUS]!;
    const was = st;
    const proto = rec[b + REC_PROTO]!;
    let timeout: number;
    if (proto === IpProtocol.TCP) {
      const next = tcpStep(st, d, tcpFlags);
      if (next < 0) {
        if (next === TCP_IGNORE) {
          rec[b + REC_PKTS + d]++;
          return CtUpdate.Ignored;
        }
        if (next === TCP_RESTART) {
          this.stats.restarted++;
          return CtUpdate.Restart;
        }
        this.stats.invalid++;
        return CtUpdate.Invalid;
      }
      st = next;
      timeout = this.tcpTimeout[st & CtStatus.StateMask]!;
      if ((st & CtStatus.Assured) === 0 && timeout > this.tcpUnack) timeout = this.tcpUnack;
    } else {
      if (d === 1) st |= CtStatus.SeenReply | CtStatus.Assured;
      if (proto === IpProtocol.UDP) timeout = (st & CtStatus.Assured) !== 0 ? this.udpStream : this.udpUnreplied;
      else if (proto === IpProtocol.ICMP) timeout = this.icmpTimeout;
      else timeout = this.genericTimeout;
    }
    rec[b + REC_STATUS] = st;
    rec[b + REC_PKTS + d]++;
    this.f64[(e << 3) + REC_EXPIRES_F64] = now + timeout;
    if (st !== was && this.events !== undefined) this.transition(e, was, st);
    return CtUpdate.Ok;
  }

  /** Whether a TCP segment with these flags may open a connection (a SYN; a bare ACK if `tcpLoose`). */
  tcpCanStart(tcpFlags: number): boolean {
    return tcpOpens(tcpFlags, this.tcpLoose);
  }

  /** Removes an entry (counted in `stats.deleted`); false if the id is not live. */
  delete(id: number): boolean {
    if (!this.isLive(id)) return false;
    this.unlinkAndFree(id);
    this.stats.deleted++;
    return true;
  }

  /**
   * Incremental expiry: examines the next `budget` entry slots (wrapping around) and reclaims the
   * expired ones. Returns how many it reclaimed. Call it once per batch with a small budget.
   */
  gc(now: number, budget: number): number {
    const hw = this.highWater;
    if (hw === 0) return 0;
    const rec = this.rec;
    const f64 = this.f64;
    let cur = this.gcCursor;
    if (cur >= hw) cur = 0;
    let n = 0;
    if (budget > hw) budget = hw;
    for (let i = 0; i < budget; i++) {
      if ((rec[(cur << 4) + REC_STATUS]! & CtStatus.InUse) !== 0 && f64[(cur << 3) + REC_EXPIRES_F64]! <= now) {
        this.unlinkAndFree(cur, CtRemoval.Expired);
        n++;
      }
      if (++cur >= hw) cur = 0;
    }
    this.gcCursor = cur;
    this.stats.expired += n;
    return n;
  }

  /** Deletes every live entry for which `pred(id)` is true (read it with the accessors); returns the count. */
  deleteWhere(pred: (id: number, ct: Conntrack) => boolean): number {
    let n = 0;
    for (let e = 0; e < this.highWater; e++) {
      if ((this.rec[(e << 4) + REC_STATUS]! & CtStatus.InUse) !== 0 && pred(e, this)) {
        this.unlinkAndFree(e);
        n++;
      }
    }
    this.stats.deleted += n;
    return n;
  }

  /** Calls `fn(id)` for every live entry (expired ones not yet reclaimed included). */
  forEach(fn: (id: number, ct: Conntrack) => void): void {
    for (let e = 0; e < this.highWater; e++) {
      if ((this.rec[(e << 4) + REC_STATUS]! & CtStatus.InUse) !== 0) fn(e, this);
    }
  }

  /** Snapshot of the unexpired entries for the CLI/API (allocates). */
  list(now: number, limit = Infinity): CtEntryInfo[] {
    const out: CtEntryInfo[] = [];
    for (let e = 0; e < this.highWater && out.length < limit; e++) {
      if (!this.isLive(e) || this.expiresAt(e) <= now) continue;
      const st = this.status(e);
      const proto = this.proto(e);
      out.push({
        id: e,
        proto,
        protoName: protoName(proto),
        state: proto === IpProtocol.TCP ? tcpStateName(st & CtStatus.StateMask) : '',
        timeout: this.expiresAt(e) - now,
        assured: (st & CtStatus.Assured) !== 0,
        seenReply: (st & CtStatus.SeenReply) !== 0,
        snat: (st & CtStatus.SrcNat) !== 0,
        dnat: (st & CtStatus.DstNat) !== 0,
        mark: this.mark(e),
        original: this.tupleInfo(e << 1),
        reply: this.tupleInfo((e << 1) | 1),
        packetsOriginal: this.packets(e << 1),
        packetsReply: this.packets((e << 1) | 1),
      });
    }
    return out;
  }

  /**
   * Unexpired entries by protocol and state (TCP: its state; others: ASSURED, REPLIED or UNREPLIED)
   * and the source-NATed ones by protocol: for metrics at scrape time (walks the table; allocates).
   */
  census(now: number): CtCensus {
    const counts = new Map<string, { protocol: string; state: string; count: number }>();
    const snat: Record<string, number> = {};
    for (let e = 0; e < this.highWater; e++) {
      if (!this.isLive(e) || this.expiresAt(e) <= now) continue;
      const st = this.status(e);
      const proto = this.proto(e);
      const protocol = protoName(proto);
      const state =
        proto === IpProtocol.TCP
          ? tcpStateName(st & CtStatus.StateMask)
          : (st & CtStatus.Assured) !== 0
            ? 'ASSURED'
            : (st & CtStatus.SeenReply) !== 0
              ? 'REPLIED'
              : 'UNREPLIED';
      const key = `${protocol}/${state}`;
      const c = counts.get(key);
      if (c !== undefined) c.count++;
      else counts.set(key, { protocol, state, count: 1 });
      if ((st & CtStatus.SrcNat) !== 0) snat[protocol] = (snat[protocol] ?? 0) + 1;
    }
    return { states: [...counts.values()], snat };
  }

  // ---- accessors (by entry id, or by ref = id * 2 + dir for tuple fields) --------------------

  isLive(id: number): boolean {
    return id >= 0 && id < this.max && (this.rec[(id << 4) + REC_STATUS]! & CtStatus.InUse) !== 0;
  }
  proto(id: number): number {
    return this.rec[(id << 4) + REC_PROTO]!;
  }
  /** The status word: TCP state in the low 4 bits, `CtStatus` bits above. */
  status(id: number): number {
    return this.rec[(id << 4) + REC_STATUS]!;
  }
  tcpState(id: number): TcpState {
    return (this.rec[(id << 4) + REC_STATUS]! & CtStatus.StateMask) as TcpState;
  }
  isAssured(id: number): boolean {
    return (this.rec[(id << 4) + REC_STATUS]! & CtStatus.Assured) !== 0;
  }
  /** Absolute expiry time (seconds, the clock the caller passes in). */
  expiresAt(id: number): number {
    return this.f64[(id << 3) + REC_EXPIRES_F64]!;
  }
  mark(id: number): number {
    return this.rec[(id << 4) + REC_MARK]! >>> 0;
  }
  setMark(id: number, mark: number): void {
    this.rec[(id << 4) + REC_MARK] = mark | 0;
  }
  src(ref: number): number {
    return this.rec[tupleBase(ref) + REC_SRC]! >>> 0;
  }
  dst(ref: number): number {
    return this.rec[tupleBase(ref) + REC_DST]! >>> 0;
  }
  /** Source port (ICMP: the echo identifier). */
  sport(ref: number): number {
    return this.rec[tupleBase(ref) + REC_PORTS]! >>> 16;
  }
  /** Destination port (ICMP: `type << 8`). */
  dport(ref: number): number {
    return this.rec[tupleBase(ref) + REC_PORTS]! & 0xffff;
  }
  /** Packets seen in the direction of `ref`. */
  packets(ref: number): number {
    return this.rec[((ref >> 1) << 4) + REC_PKTS + (ref & 1)]! >>> 0;
  }

  // ---- internals -----------------------------------------------------------------------------

  private tupleInfo(ref: number): CtTupleInfo {
    return { src: ipv4ToString(this.src(ref)), dst: ipv4ToString(this.dst(ref)), sport: this.sport(ref), dport: this.dport(ref) };
  }

  private initialTimeout(proto: number): number {
    if (proto === IpProtocol.TCP) return this.tcpTimeout[TcpState.SynSent]!;
    if (proto === IpProtocol.UDP) return this.udpUnreplied;
    if (proto === IpProtocol.ICMP) return this.icmpTimeout;
    return this.genericTimeout;
  }

  /** Hashes the tuple at `rec[b]`, stores the hash in the record and inserts (hash, ref) in the index. */
  private link(ref: number, b: number): void {
    const rec = this.rec;
    const h = hashTuple(this.seed, rec[b]!, rec[b + 1]!, rec[b + 2]!, rec[b + 3]!);
    rec[((ref >> 1) << 4) + REC_HASH + (ref & 1)] = h;
    const index = this.index;
    const mask = this.mask;
    let i = h & mask;
    while (index[(i << 1) + 1]! >= 0) i = (i + 1) & mask;
    index[i << 1] = h;
    index[(i << 1) + 1] = ref;
  }

  /** Removes `ref` from the index, shifting later members of its cluster back (no tombstones). */
  private unlink(ref: number): void {
    const index = this.index;
    const mask = this.mask;
    const h = this.rec[((ref >> 1) << 4) + REC_HASH + (ref & 1)]!;
    let hole = h & mask;
    while (index[(hole << 1) + 1] !== ref) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const n = index[(j << 1) + 1]!;
      if (n < 0) break;
      const home = index[j << 1]! & mask;
      // The member at j may fill the hole if the hole lies on its probe path, [home, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        index[hole << 1] = index[j << 1]!;
        index[(hole << 1) + 1] = n;
        hole = j;
      }
    }
    index[(hole << 1) + 1] = -1;
  }

  /** A status change the events callback is told of: assured (established), TCP closing. */
  private transition(e: number, was: number, st: number): void {
    const ev = this.events!;
    if ((st & CtStatus.Assured) !== 0 && (was & CtStatus.Assured) === 0) ev.established(e);
    if (this.rec[(e << 4) + REC_PROTO] === IpProtocol.TCP) {
      const a = was & CtStatus.StateMask;
      const z = st & CtStatus.StateMask;
      if ((z === TcpState.TimeWait || z === TcpState.Close) && a !== TcpState.TimeWait && a !== TcpState.Close) ev.closed(e);
    }
  }

  private unlinkAndFree(e: number, why: CtRemoval = CtRemoval.Deleted): void {
    if (this.events !== undefined) this.events.removed(e, why);
    this.unlink(e << 1);
    this.unlink((e << 1) | 1);
    if ((this.rec[(e << 4) + REC_STATUS]! & CtStatus.DstNat) !== 0) this.dnatLive--;
    this.rec[(e << 4) + REC_STATUS] = 0;
    this.freeIds[this.freeTop++] = e;
    this.count--;
  }

  /**
   * Makes room in a full table (Linux's early_drop): walks at most `evictScan` entries from a
   * rotating cursor and frees the first that is expired (reclaimed) or unassured (evicted); assured
   * entries are never evicted. The cursor stays just past the freed slot, which the new entry takes,
   * so under a flood the oldest unassured entries go first. Returns whether a slot was freed.
   */
  private earlyDrop(now: number): boolean {
    const hw = this.highWater;
    const rec = this.rec;
    const f64 = this.f64;
    let cur = this.evictCursor;
    for (let i = 0; i < this.evictScan; i++) {
      if (cur >= hw) cur = 0;
      const e = cur++;
      const st = rec[(e << 4) + REC_STATUS]!;
      if ((st & CtStatus.InUse) === 0) continue;
      const expired = f64[(e << 3) + REC_EXPIRES_F64]! <= now;
      if (expired || (st & CtStatus.Assured) === 0) {
        this.evictCursor = cur;
        this.unlinkAndFree(e, expired ? CtRemoval.Expired : CtRemoval.Evicted);
        if (expired) this.stats.expired++;
        else this.stats.evicted++;
        return true;
      }
    }
    this.evictCursor = cur;
    return false;
  }
}
