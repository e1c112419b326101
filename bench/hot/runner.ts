/**
 * Runs one scenario: set-up, a verification batch (every output frame checked), the restore step timed
 * on its own, warm-up and timed runs (every packet must reach the device boundary, no drop counter may
 * move), a second verification batch. Any failure throws: a scenario never reports a silent zero.
 */
import { median, runTimed, type RunOptions, type RunSample } from './measure.js';
import type { Scenario } from './workload.js';

export type ScenarioStatus = 'ok' | 'failed' | 'not_available';

export interface ScenarioResult {
  name: string;
  family: string;
  frame: string;
  description: string;
  status: ScenarioStatus;
  /** not_available: why; failed: the error. */
  reason?: string;
  frameBytes?: number;
  batchSize?: number;
  restoreBytesPerFrame?: number;
  /** The timed runs, restore cost not subtracted. */
  runs?: RunSample[];
  /** The restore-only loop (median over its runs); 0 when nothing is restored. */
  restore?: { nsPerPacket: number; heapBytesPerPacket: number };
  /** Medians over the runs, restore cost subtracted from the time. */
  median?: {
    mpps: number;
    nsPerPacket: number;
    rawNsPerPacket: number;
    restoreNsPerPacket: number;
    heapBytesPerPacket: number;
  };
  /** Slowest and fastest run (Mpps, restore subtracted). */
  spread?: { minMpps: number; maxMpps: number };
  /** GCs during all timed runs together. */
  gcs?: number;
  /** Packets counted at the device boundary over the whole scenario (warm-up and verification too). */
  delivered?: number;
  /** The scenario's own figures (`Workload.notes`), e.g. a scrape's cost as a share of each second. */
  notes?: Record<string, number>;
}

function base(s: Scenario): ScenarioResult {
  return { name: s.name, family: s.family, frame: s.frame, description: s.description, status: 'ok' };
}

export async function runScenario(s: Scenario, opts: RunOptions): Promise<ScenarioResult> {
  const result = base(s);
  const why = await s.unavailable();
  if (why !== undefined) return { ...result, status: 'not_available', reason: why };
  try {
    const w = await s.setup();
    w.verify();

    // Every timed packet must come out: a path that starts dropping must not look fast.
    let expected = w.delivered();
    const checkDelivered = (packets: number): void => {
      expected += packets;
      const got = w.delivered();
      if (got !== expected) {
        throw new Error(`${expected - got} of ${packets} packets did not reach the device boundary; counters: ${JSON.stringify(w.drops())}`);
      }
    };

    let restoreNs = 0;
    let restoreHeap = 0;
    if (w.restoreBytes > 0) {
      const r = runTimed((b) => w.restoreOnly(b), w.batchSize, {
        warmupSeconds: Math.min(opts.warmupSeconds, 0.5),
        runs: opts.runs,
        runSeconds: Math.min(opts.runSeconds, 0.5),
      });
      restoreNs = median(r.map((x) => x.nsPerPacket));
      restoreHeap = median(r.map((x) => x.heapBytesPerPacket));
    }

    const runs = runTimed((b) => w.run(b), w.batchSize, opts, checkDelivered);
    const drops = w.drops();
    if (Object.keys(drops).length > 0) throw new Error(`counters moved during the runs: ${JSON.stringify(drops)}`);
    w.verify();
    const notes = w.notes !== undefined ? await w.notes() : undefined;

    const net = runs.map((r) => Math.max(r.nsPerPacket - restoreNs, 1e-3));
    const mppsRuns = net.map((ns) => 1e3 / ns);
    const nsMedian = median(net);
    return {
      ...result,
      frameBytes: w.frameBytes,
      batchSize: w.batchSize,
      restoreBytesPerFrame: w.restoreBytes,
      runs,
      restore: { nsPerPacket: restoreNs, heapBytesPerPacket: restoreHeap },
      median: {
        mpps: median(mppsRuns),
        nsPerPacket: nsMedian,
        rawNsPerPacket: median(runs.map((r) => r.nsPerPacket)),
        restoreNsPerPacket: restoreNs,
        heapBytesPerPacket: median(runs.map((r) => r.heapBytesPerPacket)),
      },
      spread: { minMpps: Math.min(...mppsRuns), maxMpps: Math.max(...mppsRuns) },
      gcs: runs.reduce((n, r) => n + r.gcs, 0),
      delivered: w.delivered(),
      ...(notes !== undefined ? { notes } : {}),
    };
  } catch (err) {
    const e = err as Error;
    return { ...result, status: 'failed', reason: e.stack ?? String(e) };
  }
}
