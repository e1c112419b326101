/**
 * Timing and allocation measurement for one workload.
 *
 * Heap bytes allocated: V8 exposes no "total bytes ever allocated" counter, so a run is bracketed by the
 * used size of the young generation (`v8.getHeapSpaceStatistics()`: new space + new large-object space)
 * and watched by a `v8.GCProfiler`, which records every space's used size before and after each GC
 * during the run. Every byte allocated in the young generation during the run is either still there at
 * the end or was removed (freed or promoted) by one of those GCs, so
 *
 *     allocated = (young_end - young_start) + sum over GCs of (young_before_gc - young_after_gc)
 *
 * A forced full GC (`--expose-gc`) empties the young generation before each run, and the bytes the
 * bracket itself allocates (the statistics arrays) are calibrated with an empty body (minimum of several)
 * and subtracted. Checked against a loop allocating `{ x, y }` objects: 40.00 bytes per object, the
 * object's size on 64-bit V8.
 *
 * Why the young generation only: every short-lived JavaScript allocation (objects, closures, arrays,
 * boxed doubles, strings) is made there; what V8 allocates directly in old space is mostly its own
 * compiler output (bytecode, feedback, code), which would add JIT noise of ~100 KB per run and say
 * nothing about the data path. The old-space growth is still reported per run (`oldBytes`, code space
 * excluded; sweeping after the forced GC can make it slightly negative). Off-heap memory (Buffer backing
 * stores) is not counted; the data path allocates none per packet either. The number of GCs during the
 * timed runs is reported too: 0 B/packet should come with 0 scavenges.
 */
import v8 from 'node:v8';
import { median } from '../stats.js';

export { median };

export const gcExposed = typeof globalThis.gc === 'function';

function forceGc(): void {
  if (globalThis.gc !== undefined) globalThis.gc();
}

export interface Bracket {
  seconds: number;
  /** Bytes allocated in the young generation during the body, bracket overhead subtracted. */
  heapBytes: number;
  /** Growth of the old generation (old, map and large-object spaces; code excluded) during the body. */
  oldBytes: number;
  /** GCs (scavenges and mark-compacts) that ran during the body. */
  gcs: number;
}

const YOUNG = new Set(['new_space', 'new_large_object_space']);
const CODE = new Set(['code_space', 'code_large_object_space']);

interface SpaceLike {
  name: string;
  used: number;
}

function split(spaces: SpaceLike[]): { young: number; old: number } {
  let young = 0;
  let old = 0;
  for (const s of spaces) {
    if (YOUNG.has(s.name)) young += s.used;
    else if (!CODE.has(s.name)) old += s.used;
  }
  return { young, old };
}

function now(): { young: number; old: number } {
  return split(v8.getHeapSpaceStatistics().map((s) => ({ name: s.space_name, used: s.space_used_size })));
}

let bracketOverhead: number | undefined;

function rawBracket(body: () => void): Bracket {
  forceGc();
  const prof = new v8.GCProfiler();
  prof.start();
  const h0 = now();
  const t0 = performance.now();
  body();
  const t1 = performance.now();
  const h1 = now();
  const stats = prof.stop();
  let young = h1.young - h0.young;
  let old = h1.old - h0.old;
  for (const s of stats.statistics) {
    const before = split(s.beforeGC.heapSpaceStatistics.map((x) => ({ name: x.spaceName, used: x.spaceUsedSize })));
    const after = split(s.afterGC.heapSpaceStatistics.map((x) => ({ name: x.spaceName, used: x.spaceUsedSize })));
    young += before.young - after.young;
    old += before.old - after.old;
  }
  return { seconds: (t1 - t0) / 1000, heapBytes: young, oldBytes: old, gcs: stats.statistics.length };
}

const empty = (): void => {};

/** Runs `body` once, timed, with the bytes it allocated on the V8 heap and the GCs it caused. */
export function bracket(body: () => void): Bracket {
  if (bracketOverhead === undefined) {
    let min = Infinity;
    for (let i = 0; i < 10; i++) min = Math.min(min, rawBracket(empty).heapBytes);
    bracketOverhead = min;
  }
  const b = rawBracket(body);
  b.heapBytes -= bracketOverhead;
  return b;
}

export interface RunOptions {
  /** Seconds of untimed running first, so V8 optimises the path (and the batch count is calibrated). */
  warmupSeconds: number;
  runs: number;
  /** Target length of one timed run. */
  runSeconds: number;
}

export interface RunSample {
  packets: number;
  seconds: number;
  nsPerPacket: number;
  heapBytes: number;
  heapBytesPerPacket: number;
  oldBytes: number;
  gcs: number;
}

/**
 * Warms `work` up for `warmupSeconds` (in slices of `slice` batches), sizes the timed runs from the
 * warm-up rate, then does `runs` timed runs of a fixed number of batches each. `afterRun` is called
 * after each run with the packets it processed (the caller checks they all arrived).
 */
export function runTimed(
  work: (batches: number) => void,
  batchSize: number,
  opts: RunOptions,
  afterRun: (packets: number) => void = () => {},
): RunSample[] {
  let slice = 16;
  let done = 0;
  const warmStart = performance.now();
  let rateStart = warmStart;
  let rateBatches = 0;
  for (;;) {
    work(slice);
    done += slice;
    rateBatches += slice;
    afterRun(slice * batchSize);
    const now = performance.now();
    if (now - warmStart >= opts.warmupSeconds * 1000 && done >= 64) break;
    // Measure the rate over the second half of the warm-up only (after the first optimisations).
    if (now - warmStart < (opts.warmupSeconds * 1000) / 2) {
      rateStart = now;
      rateBatches = 0;
    }
    if (now - warmStart < 50) slice = Math.min(slice * 2, 4096);
  }
  const elapsed = Math.max(performance.now() - rateStart, 1e-3);
  const batchesPerSecond = (rateBatches / elapsed) * 1000;
  const batches = Math.max(16, Math.round(batchesPerSecond * opts.runSeconds));

  const samples: RunSample[] = [];
  for (let r = 0; r < opts.runs; r++) {
    const b = bracket(() => work(batches));
    const packets = batches * batchSize;
    afterRun(packets);
    samples.push({
      packets,
      seconds: b.seconds,
      nsPerPacket: (b.seconds * 1e9) / packets,
      heapBytes: b.heapBytes,
      heapBytesPerPacket: b.heapBytes / packets,
      oldBytes: b.oldBytes,
      gcs: b.gcs,
    });
  }
  return samples;
}
