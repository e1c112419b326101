/**
 * Instructions per packet of bench:hot scenarios, counted by valgrind's callgrind: a number that does
 * not depend on how busy or steady the machine is (this project's VMs give the same scenario 4 and
 * 10 Mpps in two processes a minute apart; the count repeats to 0.1%). Each scenario runs twice for a
 * fixed number of batches (`hot/fixed-work.ts`, under `node --predictable`, which makes V8's
 * optimisation decisions the same every run); the difference of the two totals over the difference
 * of the packets is the steady-state cost of one packet, without set-up and warm-up.
 *
 *   node dist/bench/instructions.js --scenario route_vxlan_encap/64B [--scenario ...] [--base DIR]
 *
 * `--base DIR`: also count another build's dist (e.g. a worktree of an older commit, built with
 * `npx tsc`) and print the ratio. Needs valgrind. Instructions are not time (cache misses and
 * system calls are not in them); the timed bench:hot and the end-to-end bench stay the measure of
 * speed. This is the measure of "did this change make the path do more work".
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const DRIVER = join(HERE, 'hot', 'fixed-work.js');
const SHORT = 2000;
const LONG = 6000;

/** Total instructions of one fixed run, and its batch size. */
function count(dist: string, scenario: string, batches: number): { instructions: number; batchSize: number } {
  const r = spawnSync(
    'valgrind',
    ['--tool=callgrind', '--callgrind-out-file=/dev/null', process.execPath, '--predictable', '--expose-gc', DRIVER, '--dist', dist, '--scenario', scenario, '--batches', String(batches)],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  if (r.error !== undefined) throw new Error(`valgrind: ${r.error.message} (install it: apt-get install valgrind)`);
  const m = /Collected : (\d+)/.exec(r.stderr);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || m === null || !line.startsWith('{')) throw new Error(`${scenario} in ${dist}: ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
  const out = JSON.parse(line) as { batchSize: number; delivered: number };
  return { instructions: Number(m[1]), batchSize: out.batchSize };
}

function perPacket(dist: string, scenario: string): number {
  const a = count(dist, scenario, SHORT);
  const b = count(dist, scenario, LONG);
  return (b.instructions - a.instructions) / ((LONG - SHORT) * b.batchSize);
}

function main(): number {
  const { values } = parseArgs({ options: { scenario: { type: 'string', multiple: true }, base: { type: 'string' }, help: { type: 'boolean' } } });
  const scenarios = values.scenario ?? [];
  if (values.help === true || scenarios.length === 0) {
    process.stdout.write('usage: node dist/bench/instructions.js --scenario NAME [--scenario NAME ...] [--base DIST_DIR]\n');
    return values.help === true ? 0 : 2;
  }
  const mine = resolve(HERE, '..');
  for (const s of scenarios) {
    const now = perPacket(mine, s);
    if (values.base === undefined) {
      process.stdout.write(`${s}: ${now.toFixed(0)} instructions/packet\n`);
    } else {
      const base = perPacket(resolve(values.base), s);
      process.stdout.write(`${s}: ${now.toFixed(0)} instructions/packet, base ${base.toFixed(0)}: ${(now / base).toFixed(2)}x the base's work\n`);
    }
  }
  return 0;
}

try {
  process.exitCode = main();
} catch (err) {
  process.stderr.write(`bench:instructions: ${(err as Error).message}\n`);
  process.exitCode = 1;
}
