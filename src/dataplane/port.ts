import { DropCounters, TrafficCounters, type DropReason } from '../util/counters.js';
import { TapDir, type FrameTap } from './tap.js';

/**
 * Where a port's frames go when flushed: a TUN/TAP device (batched writes) or a test sink. `hdrs[i]`
 * is 1 when frame i is passed on as an offload device read it, its virtio-net header in the 10 bytes
 * before it (only an offload device looks at it).
 */
export interface FrameSink {
  writeBatch(bufs: Buffer[], offs: Uint32Array, lens: Uint32Array, count: number, hdrs?: Uint8Array): number;
  /**
   * A device whose kernel side answers within the write (a pod's TAP or TUN, the host's TUN): read
   * what it holds now, through its reader (see `TunTap.readNow`). Called by the data plane once per
   * batch that wrote to it, after the batch (`Dataplane.readBack`).
   */
  readNow?(): boolean;
}

/** Marks queues with pending frames so the batch owner flushes each exactly once. */
export interface FlushScheduler {
  markDirty(q: TxQueue): void;
  /** `q` wrote to a sink that can be read back (`FrameSink.readNow`). */
  wrote(q: TxQueue): void;
}

/**
 * A port's transmit queue: frames are queued by reference (buffer, offset, length) during a batch and
 * written in one native call at its end. Frames that do not fit are written early (never lost silently).
 */
export class TxQueue {
  readonly bufs: Buffer[];
  readonly offs: Uint32Array;
  readonly lens: Uint32Array;
  /** Per frame: 1 = its virtio-net header is in the buffer before it (see `FrameSink`). */
  readonly hdrs: Uint8Array;
  count = 0;
  failed = 0;
  /** A capture of what this queue sends (see tap.ts): shown every frame at the flush, as it is written. */
  tap: FrameTap | undefined;

  constructor(
    private readonly sink: FrameSink,
    private readonly scheduler: FlushScheduler,
    readonly capacity = 256,
  ) {
    this.bufs = new Array<Buffer>(capacity);
    this.offs = new Uint32Array(capacity);
    this.lens = new Uint32Array(capacity);
    this.hdrs = new Uint8Array(capacity);
  }

  /** Queues a frame; `hdr` 1: its virtio-net header is in the 10 bytes before it. */
  push(buf: Buffer, off: number, len: number, hdr = 0): void {
    if (this.count === this.capacity) this.flush();
    const i = this.count++;
    this.bufs[i] = buf;
    this.offs[i] = off;
    this.lens[i] = len;
    this.hdrs[i] = hdr;
    if (i === 0) this.scheduler.markDirty(this);
  }

  /** Set while the data plane has this queue's sink to read back after the batch (`Dataplane.wrote`). */
  readBackPending = false;

  /** Reads the sink back now (`FrameSink.readNow`). */
  readBack(): void {
    this.sink.readNow?.();
  }

  /** Writes what is queued; returns how many frames the sink refused. */
  flush(): number {
    const n = this.count;
    if (n === 0) return 0;
    const tap = this.tap;
    if (tap !== undefined) for (let i = 0; i < n; i++) tap.frame(this.bufs[i]!, this.offs[i]!, this.lens[i]!, TapDir.Out);
    const written = this.sink.writeBatch(this.bufs, this.offs, this.lens, n, this.hdrs);
    this.count = 0;
    if (this.sink.readNow !== undefined) this.scheduler.wrote(this);
    const lost = n - written;
    this.failed += lost;
    return lost;
  }
}

export const PortKind = { Tap: 'tap', Tun: 'tun', Router: 'router', Host: 'host' } as const;
export type PortKind = (typeof PortKind)[keyof typeof PortKind];

export interface PortStats {
  name: string;
  kind: PortKind;
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  drops: Record<string, number>;
}

/**
 * A switch port. A port with a MAC (`macHi >= 0`) has a static forwarding entry for it; a restricted
 * (pod) port is also held to it: the switch accepts from it only frames whose source MAC is
 * (macHi, macLo) and whose IPv4/ARP source address is `ip`.
 */
export abstract class Port {
  index = -1;
  readonly traffic = new TrafficCounters();
  readonly drops = new DropCounters();
  macHi = -1;
  macLo = 0;
  ip = 0;

  constructor(
    readonly name: string,
    readonly kind: PortKind,
  ) {}

  restricted = false;
  /**
   * An offload port (a TAP with virtio-net headers): frames it receives have their header in the
   * 10 bytes before them and may be super-frames or carry a partial checksum, with `rxCapacity`
   * bytes usable from a frame's start; it can send such frames on as they are (`outputOffloaded`).
   */
  offload = false;
  rxCapacity = 0;

  drop(reason: DropReason): void {
    this.drops.add(reason);
  }

  /** The switch hands this port a frame to send out (or, for internal ports, to process). */
  abstract output(buf: Buffer, off: number, len: number): void;

  /**
   * A TCP super-frame of an offload port (its virtio-net header before it: GSO_TCPV4, `mss` the
   * segment size), with `capacity` bytes usable from `off`, offered whole. True when the port took
   * it; false (the default) when it needs plain frames, which the switch then makes.
   */
  outputSuper(_buf: Buffer, _off: number, _len: number, _mss: number, _capacity: number): boolean {
    return false;
  }

  /** An offload port sends a frame of another offload port on, header and all. Others never get one. */
  outputOffloaded(buf: Buffer, off: number, len: number): void {
    this.output(buf, off, len);
  }

  stats(): PortStats {
    return {
      name: this.name,
      kind: this.kind,
      ...this.traffic.toJSON(),
      drops: this.drops.toJSON(),
    };
  }
}
