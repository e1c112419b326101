/**
 * How long one batch of a bench:hot scenario takes when the data plane has been idle, against back to
 * back: the part of a ping's latency that is the daemon's own work on cold caches (a ping every
 * 10 ms finds every daemon on its path asleep). Pure JavaScript through the real modules, no
 * devices or system calls, so the difference to a daemon's measured pass is the kernel's share.
 *
 *   node dist/bench/cold.js [--scenario NAME ...] [--samples N] [--gaps 0,1,10]
 *
 * For each idle gap in milliseconds (0: the next turn of the event loop), `--samples` batches each
 * after that gap; prints the median and p90 of one batch in microseconds, and the median's ratio to
 * the gap-0 median. Timings: read them as ratios taken in one run (the machine's noise moves them).
 */
import { parseArgs } from 'node:util';
import { tuneJitForDataPlane } from '../src/util/jit.js';
import { percentile } from './e2e/tools.js';
import { median } from './hot/measure.js';
import { select } from './hot/registry.js';

const DEFAULT_SCENARIOS = ['l2_forward/64B', 'route_vxlan_encap/64B', 'vxlan_decap_deliver/64B'];

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { scenario: { type: 'string', multiple: true }, samples: { type: 'string' }, gaps: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help === true) {
    process.stdout.write('usage: node dist/bench/cold.js [--scenario NAME ...] [--samples N] [--gaps 0,1,10]\n');
    return 0;
  }
  const samples = values.samples === undefined ? 300 : Number(values.samples);
  if (!Number.isInteger(samples) || samples < 10) throw new Error(`--samples must be a whole number >= 10, got ${JSON.stringify(values.samples)}`);
  const gaps = (values.gaps ?? '0,1,10').split(',').map((g) => Number(g));
  if (gaps.some((g) => !Number.isInteger(g) || g < 0 || g > 1000)) throw new Error(`--gaps must be whole milliseconds 0-1000, comma-separated, got ${JSON.stringify(values.gaps)}`);
  tuneJitForDataPlane();
  const wait = (ms: number) => new Promise<void>((r) => (ms === 0 ? setImmediate(r) : setTimeout(r, ms)));
  for (const s of select(values.scenario ?? DEFAULT_SCENARIOS)) {
    const w = await s.setup();
    w.verify();
    w.run(20_000); // optimised, as in a daemon that has carried traffic
    let warm = 0;
    for (const gap of gaps) {
      const t: number[] = [];
      for (let i = 0; i < samples; i++) {
        await wait(gap);
        const a = process.hrtime.bigint();
        w.run(1);
        t.push(Number(process.hrtime.bigint() - a) / 1000);
      }
      t.sort((x, y) => x - y);
      const mid = median(t);
      if (gap === gaps[0]) warm = mid;
      const ratio = warm > 0 ? ` (${(mid / warm).toFixed(1)}x the ${gaps[0]} ms median)` : '';
      process.stdout.write(`${s.name}: batch of ${w.batchSize} after ${gap} ms idle: median ${mid.toFixed(1)} us, p90 ${percentile(t, 90).toFixed(1)} us${ratio}\n`);
    }
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`cold: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
