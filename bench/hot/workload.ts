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

/**
 * A receive ring of one port fed through the real `Dataplane`. `capture(on)` switches the sink's or
 * transport's inspection on (collecting into the array it returns) or off; `check(k, out)` verifies the
 * k-th output against frame k of the ring.
 */
export class RingWorkload implements Workload {
  readonly batchSize: number;
  readonly restoreBytes: number;

  constructor(
    private readonly dp: Dataplane,
    private readonly port: IngressPort,
    private readonly ring: FrameRing,
    readonly frameBytes: number,
    private readonly counter: () => number,
    private readonly dropsFn: () => Record<string, number>,
    private readonly capture: (on: boolean) => Captured[],
    private readonly check: (k: number, out: Captured) => void,
  ) {
    this.batchSize = ring.slots;
    this.restoreBytes = ring.restoreBytes;
  }

  run(batches: number): void {
    const dp = this.dp;
    const port = this.port;
    const ring = this.ring;
    const n = this.batchSize;
    if (this.restoreBytes > 0) {
      for (let b = 0; b < batches; b++) {
        ring.restore(n);
        dp.receiveRing(port, ring, n);
      }
    } else {
      for (let b = 0; b < batches; b++) dp.receiveRing(port, ring, n);
    }
  }

  restoreOnly(batches: number): void {
    const ring = this.ring;
    const n = this.batchSize;
    for (let b = 0; b < batches; b++) ring.restore(n);
  }

  delivered(): number {
    return this.counter();
  }

  drops(): Record<string, number> {
    return this.dropsFn();
  }

  verify(): void {
    this.ring.restoreAll();
    const out = this.capture(true);
    const before = this.counter();
    try {
      this.dp.receiveRing(this.port, this.ring, this.batchSize);
    } finally {
      this.capture(false);
    }
    const got = this.counter() - before;
    if (got !== this.batchSize || out.length !== this.batchSize) {
      throw new Error(`verification batch: ${this.batchSize} frames in, ${got} counted and ${out.length} seen at the device boundary; drops ${JSON.stringify(this.drops())}`);
    }
    for (let k = 0; k < out.length; k++) {
      try {
        this.check(k, out[k]!);
      } catch (err) {
        throw new Error(`verification: output frame ${k}: ${(err as Error).message}`);
      }
    }
    this.ring.restoreAll();
  }
}

/**
 * A per-packet workload for a module the data path does not call yet (so `Dataplane.receiveRing` would
 * not reach it): each batch is `prepare()` (restore or generate the batch's frames; timed on its own and
 * subtracted) followed by `process()` (the code under test).
 */
export class PacketWorkload implements Workload {
  constructor(
    readonly frameBytes: number,
    readonly batchSize: number,
    readonly restoreBytes: number,
    private readonly prepare: () => void,
    private readonly process: () => void,
    private readonly counter: () => number,
    private readonly dropsFn: () => Record<string, number>,
    private readonly verifyFn: () => void,
  ) {}

  run(batches: number): void {
    const prepare = this.prepare;
    const process = this.process;
    for (let b = 0; b < batches; b++) {
      prepare();
      process();
    }
  }

  restoreOnly(batches: number): void {
    const prepare = this.prepare;
    for (let b = 0; b < batches; b++) prepare();
  }

  delivered(): number {
    return this.counter();
  }

  drops(): Record<string, number> {
    return this.dropsFn();
  }

  verify(): void {
    this.verifyFn();
  }
}
