import { coarseClock } from '../util/clock.js';
import { FramePool } from './pool.js';
import type { FlushScheduler, Port, TxQueue } from './port.js';
import { Switch } from './switch.js';
import { Neighbors } from './neighbors.js';
import { TapDir, type FrameTap } from './tap.js';

/** A receive ring as the device layer fills it: frame i at `i*slotSize + headroom`, `lengths[i]` bytes. */
export interface RxRingLike {
  readonly buffer: Buffer;
  readonly lengths: Int32Array;
  readonly slotSize: number;
  readonly headroom: number;
}

/**
 * What the frames of a receive ring start with: an Ethernet header (TAP), the IP header (TUN, the
 * host port), or a VXLAN header and the inner Ethernet header (the VXLAN socket).
 */
export type Framing = 'ethernet' | 'ip' | 'vxlan';

/**
 * Where the frames of a batch enter the data plane: a device's port, the VXLAN socket, the uplink
 * capture (or a benchmark). `receive` gets frame `i` of the batch at `buf[off, off + len)`; a source
 * that needs more per frame than the bytes (the sender of a datagram, a GRO segment size) reads it
 * from its own ring at index `i`.
 */
export interface IngressPort {
  receive(buf: Buffer, off: number, len: number, i: number): void;
  /** What its frames start with, so a batch prefetch can find their IP header; absent: nothing is prefetched. */
  readonly framing?: Framing;
  /** A capture of what this source receives (see tap.ts): shown every frame of a batch before it is processed. */
  readonly rxTap?: FrameTap | undefined;
}

/**
 * Runs over a received batch before it is processed, to start the cache misses its lookups will
 * take all at once (the router's conntrack prefetch).
 */
export interface BatchPrefetcher {
  prefetchBatch(framing: Framing, ring: RxRingLike, count: number): void;
}

/** Where the data plane reads time: whole seconds and int32 milliseconds (see `util/clock.ts`). */
export interface ClockSource {
  readonly seconds: number;
  readonly ms: number;
  /** Brings it up to date now (`receiveOne` calls it: its sources are not the native readers that keep the clock). */
  refresh?(): void;
}

/**
 * Owns one batch at a time: frames received from a device are processed to completion, frames the data
 * plane generates (ARP replies, ICMP, routed packets) are injected through a queue rather than by
 * re-entering the switch, and at the end of the batch every port with queued frames is flushed once.
 */
export class Dataplane implements FlushScheduler {
  readonly pool = new FramePool();
  readonly switch: Switch;
  readonly neighbors = new Neighbors();
  /**
   * Whole seconds, refreshed once per batch (`tick`) from the coarse clock: a small integer, so
   * passing it down per packet (conntrack, MAC table, service affinity) never allocates.
   */
  now = 0;
  /** Whole milliseconds (int32, wraps after 24.8 days: compare by `(a - b) | 0`), refreshed with `now`. */
  nowMs = 0;
  private readonly clock: ClockSource;

  private readonly dirty: TxQueue[] = [];
  private dirtyCount = 0;
  /** Queues whose devices this batch wrote to, to read back once it is done (see `readBack`). */
  private readonly readBacks: TxQueue[] = [];
  private readBackCount = 0;
  private readingBack = false;
  private readonly injPort: Array<Port | undefined>;
  private readonly injBuf: Array<Buffer | undefined>;
  private readonly injOff: Uint32Array;
  private readonly injLen: Uint32Array;
  private injHead = 0;
  private injTail = 0;
  injectOverflow = 0;
  /** Queues outside the ports (e.g. the VXLAN socket's) flushed with every batch, before buffers are reused. */
  private readonly flushables: Array<{ flush(): number }> = [];
  /** Runs once per batch after the flush (e.g. a bounded slice of conntrack garbage collection). */
  afterBatch: (() => void) | undefined;
  /** Runs over each received batch before it is processed (the router sets itself here). */
  prefetcher: BatchPrefetcher | undefined;

  constructor(opts: { macCapacity?: number; agingSeconds?: number; injectCapacity?: number; clock?: ClockSource } = {}) {
    this.switch = new Switch(opts);
    if (opts.clock === undefined) coarseClock.start();
    this.clock = opts.clock ?? coarseClock;
    const cap = opts.injectCapacity ?? 256;
    this.injPort = new Array<Port | undefined>(cap);
    this.injBuf = new Array<Buffer | undefined>(cap);
    this.injOff = new Uint32Array(cap);
    this.injLen = new Uint32Array(cap);
    this.tick();
  }

  /** Reads the clock (two integer loads; no system call, no allocation). Once per batch. */
  tick(): void {
    const c = this.clock;
    this.now = c.seconds;
    this.nowMs = c.ms;
    this.switch.now = this.now;
  }

  wrote(q: TxQueue): void {
    // Batches run inside a read-back are not read back in turn: one level, bounded work.
    if (this.readingBack || q.readBackPending) return;
    q.readBackPending = true;
    if (this.readBackCount === this.readBacks.length) this.readBacks.push(q);
    else this.readBacks[this.readBackCount] = q;
    this.readBackCount++;
  }

  /**
   * After a batch: reads back every device it wrote to that can answer within the write (a pod's TAP
   * or TUN: the pod's kernel handles a written frame in the write itself, so its ICMP echo reply or
   * TCP acknowledgement is often queued already). What they hold is one more batch each, run now
   * instead of after a turn of the event loop: a request and its answer cross the daemon in one wake-up
   * instead of two. A device with nothing queued costs one read that finds nothing.
   */
  private readBack(): void {
    this.readingBack = true;
    try {
      for (let i = 0; i < this.readBackCount; i++) this.readBacks[i]!.readBack();
    } finally {
      this.readingBack = false;
      for (let i = 0; i < this.readBackCount; i++) this.readBacks[i]!.readBackPending = false;
      this.readBackCount = 0;
    }
  }

  markDirty(q: TxQueue): void {
    if (this.dirtyCount === this.dirty.length) this.dirty.push(q);
    else this.dirty[this.dirtyCount] = q;
    this.dirtyCount++;
  }

  addFlushable(f: { flush(): number }): void {
    this.flushables.push(f);
  }

  removeFlushable(f: { flush(): number }): void {
    const i = this.flushables.indexOf(f);
    if (i >= 0) this.flushables.splice(i, 1);
  }

  /** Queues a generated frame to enter the switch from `port` once the current frame is done. */
  inject(port: Port, buf: Buffer, off: number, len: number): boolean {
    const cap = this.injOff.length;
    if (this.injTail - this.injHead >= cap) {
      this.injectOverflow++;
      return false;
    }
    const i = this.injTail++ % cap;
    this.injPort[i] = port;
    this.injBuf[i] = buf;
    this.injOff[i] = off;
    this.injLen[i] = len;
    return true;
  }

  /** Runs the injected frames (which may inject more) until none is left. */
  drainInjected(): void {
    const cap = this.injOff.length;
    while (this.injHead < this.injTail) {
      const i = this.injHead++ % cap;
      const port = this.injPort[i]!;
      const buf = this.injBuf[i]!;
      this.injPort[i] = undefined;
      this.injBuf[i] = undefined;
      this.switch.input(port, buf, this.injOff[i]!, this.injLen[i]!);
    }
    this.injHead = this.injTail = 0;
  }

  /**
   * Makes sure `n` scratch frames can be allocated: when fewer are left in this batch, everything
   * queued so far is written now (a flush in the middle of the batch) and the pool starts over.
   * False when `n` is more than the pool has at all.
   */
  reserveFrames(n: number): boolean {
    const p = this.pool;
    if (p.slots - p.inUse >= n) return true;
    if (n > p.slots) return false;
    this.flush();
    return true;
  }

  /** Allocates a scratch frame; -1 when the pool is exhausted for this batch. */
  allocFrame(): number {
    return this.pool.alloc();
  }

  /** Processes one received frame to completion, inside a batch (used by the batch loops and by tests). */
  receive(port: IngressPort, buf: Buffer, off: number, len: number, i = 0): void {
    port.receive(buf, off, len, i);
    if (this.injTail !== this.injHead) this.drainInjected();
  }

  /**
   * The batch loop, for every source with a receive ring (TAP/TUN devices, the VXLAN socket): the
   * clock once, the prefetch pass, every frame to completion, then one flush of every queue.
   */
  receiveRing(port: IngressPort, ring: RxRingLike, count: number): void {
    this.tick();
    if (this.prefetcher !== undefined && port.framing !== undefined) this.prefetcher.prefetchBatch(port.framing, ring, count);
    const buf = ring.buffer;
    const lens = ring.lengths;
    let off = ring.headroom;
    const step = ring.slotSize;
    const tap = port.rxTap;
    if (tap !== undefined) for (let i = 0, o = off; i < count; i++, o += step) tap.frame(buf, o, lens[i]!, TapDir.In);
    for (let i = 0; i < count; i++, off += step) this.receive(port, buf, off, lens[i]!, i);
    this.flush();
    if (this.readBackCount > 0 && !this.readingBack) this.readBack();
  }

  /**
   * A batch of one frame, for sources that hand over one at a time (Node's dgram, the libpcap
   * capture): the clock refreshed first (these sources do not keep it, see util/clock.ts), then the
   * same completion and flush as `receiveRing`. `arg` goes to the port as `i`.
   */
  receiveOne(port: IngressPort, buf: Buffer, off: number, len: number, arg = 0): void {
    const c = this.clock;
    if (c.refresh !== undefined) c.refresh();
    this.tick();
    const tap = port.rxTap;
    if (tap !== undefined) tap.frame(buf, off, len, TapDir.In);
    this.receive(port, buf, off, len, arg);
    this.flush();
    if (this.readBackCount > 0 && !this.readingBack) this.readBack();
  }

  /** Writes every queued frame and recycles the scratch pool. */
  flush(): void {
    for (let i = 0; i < this.dirtyCount; i++) {
      this.dirty[i]!.flush();
    }
    this.dirtyCount = 0;
    for (let i = 0; i < this.flushables.length; i++) this.flushables[i]!.flush();
    this.pool.reset();
    if (this.afterBatch !== undefined) this.afterBatch();
  }
}
