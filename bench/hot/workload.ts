/**
 * The contract between the scenario registry and the runner, and the one workload shape every data
 * plane scenario so far has: a device receive ring pushed through `Dataplane.receiveRing` (tick, then
 * `receive` per frame, then `flush`), exactly as the daemon's device callback does.
 */
import type { Dataplane, IngressPort } from '../../src/dataplane/dataplane.js';
import type { FrameRing } from './frames.js';

/** A set-up scenario, ready to be timed. */
export interface Workload {
  /** Inner Ethernet frame size in bytes (what a TAP pod sends or receives). */
  readonly frameBytes: number;
  /** Frames per batch (one device read, one flush). */
  readonly batchSize: number;
  /** Bytes per frame put back before each batch (0 when the path writes nothing in the frame). */
  readonly restoreBytes: number;
  /** Processes `batches` batches, restoring the frames before each one. The timed loop. */
  run(batches: number): void;
  /** The same loop with only the restore step: its cost is subtracted from `run`'s. */
  restoreOnly(batches: number): void;
  /** Frames that have reached the device boundary (pod sink or UDP transport) so far. */
  delivered(): number;
  /** Drop (and other anomaly) counters of the node that are not zero. */
  drops(): Record<string, number>;
  /** Runs one batch with the sinks inspecting every output frame; throws on anything wrong. */
  verify(): void;
  /** Figures the scenario measures besides the rate, read after the timed runs (e.g. what a scrape costs). */
  notes?(): Promise<Record<string, number>>;
}

/** A registered scenario (see `registry.ts`). */
export interface Scenario {
  /** Unique name, `family/variant` (e.g. `l2_forward/64B`); `--scenario` takes either. */
  readonly name: string;
  readonly family: string;
  /** The frames, for the table (e.g. `64 B UDP`). */
  readonly frame: string;
  readonly description: string;
  /** `undefined` when the scenario can run, otherwise why not: listed as "not available yet". */
  unavailable(): Promise<string | undefined>;
  setup(): Promise<Workload>;
}

/** One output frame as a sink or transport saw it, in the order they were handed over. */
export interface Captured {
  buf: Buffer;
  off: number;
  len: number;
  dstIp?: number;
  dstPort?: number;
  srcPort?: number;
}

export interface RingWorkloadSpec {
  dp: Dataplane;
  /** The port the ring belongs to (a pod's TAP port, or the VXLAN socket's stand-in). */
  port: IngressPort;
  ring: FrameRing;
  frameBytes: number;
  /** Frames at the device boundary so far. */
  counter: () => number;
  drops: () => Record<string, number>;
  /** Switches the sink's/transport's inspection on (collecting into the returned array) or off. */
  capture: (on: boolean) => Captured[];
  /** Verifies the k-th output against frame k of the ring (as the last `prepare` left it). */
  check: (k: number, out: Captured) => void;
  /**
   * Gets the ring ready for the next batch (default: `ring.restore`). Scenarios whose frames differ from
   * batch to batch (new connections, random flows) also write the flow fields here. Timed separately.
   */
  prepare?: () => void;
}

/** A receive ring of one port fed through the real `Dataplane`. */
export class RingWorkload implements Workload {
  readonly batchSize: number;
  readonly restoreBytes: number;
  readonly frameBytes: number;
  private readonly dp: Dataplane;
  private readonly port: IngressPort;
  private readonly ring: FrameRing;
  private readonly prepare: (() => void) | undefined;

  constructor(private readonly spec: RingWorkloadSpec) {
    this.dp = spec.dp;
    this.port = spec.port;
    this.ring = spec.ring;
    this.frameBytes = spec.frameBytes;
    this.batchSize = spec.ring.slots;
    this.restoreBytes = spec.ring.restoreBytes;
    const ring = spec.ring;
    const n = this.batchSize;
    this.prepare = spec.prepare ?? (ring.restoreBytes > 0 ? () => ring.restore(n) : undefined);
  }

  run(batches: number): void {
    const dp = this.dp;
    const port = this.port;
    const ring = this.ring;
    const n = this.batchSize;
    const prepare = this.prepare;
    if (prepare !== undefined) {
      for (let b = 0; b < batches; b++) {
        prepare();
        dp.receiveRing(port, ring, n);
      }
    } else {
      for (let b = 0; b < batches; b++) dp.receiveRing(port, ring, n);
    }
  }

  restoreOnly(batches: number): void {
    const prepare = this.prepare;
    if (prepare === undefined) return;
    for (let b = 0; b < batches; b++) prepare();
  }

  delivered(): number {
    return this.spec.counter();
  }

  drops(): Record<string, number> {
    return this.spec.drops();
  }

  verify(): void {
    this.ring.restoreAll();
    this.prepare?.();
    const out = this.spec.capture(true);
    const before = this.spec.counter();
    try {
      this.dp.receiveRing(this.port, this.ring, this.batchSize);
    } finally {
      this.spec.capture(false);
    }
    const got = this.spec.counter() - before;
    if (got !== this.batchSize || out.length !== this.batchSize) {
      throw new Error(`verification batch: ${this.batchSize} frames in, ${got} counted and ${out.length} seen at the device boundary; drops ${JSON.stringify(this.drops())}`);
    }
    for (let k = 0; k < out.length; k++) {
      try {
        this.spec.check(k, out[k]!);
      } catch (err) {
        throw new Error(`verification: output frame ${k}: ${(err as Error).message}`);
      }
    }
    this.ring.restoreAll();
  }
}

