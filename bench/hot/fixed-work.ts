/**
 * One scenario of bench:hot run for a fixed number of batches and nothing else, for
 * `bench/instructions.ts` to count the instructions of under callgrind. `--dist DIR` loads the
 * scenarios (and the data plane) of another build, e.g. a git worktree of an older commit, so two
 * builds are counted with the same driver.
 *
 *   node --predictable dist/bench/hot/fixed-work.js --scenario NAME --batches N [--dist DIR]
 *
 * Prints one JSON line: { scenario, batches, batchSize, delivered }.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { scenario: { type: 'string' }, batches: { type: 'string' }, dist: { type: 'string' } } });
  const name = values.scenario;
  const batches = Number(values.batches);
  if (name === undefined || !Number.isInteger(batches) || batches <= 0) throw new Error('usage: fixed-work.js --scenario NAME --batches N [--dist DIR]');
  const dist = values.dist !== undefined ? resolve(values.dist) : resolve(HERE, '..', '..');
  const jit = join(dist, 'src', 'util', 'jit.js');
  // As the daemon and bench:hot of that build run (older builds have no jit.js: V8's defaults).
  if (existsSync(jit)) ((await import(pathToFileURL(jit).href)) as { tuneJitForDataPlane(): void }).tuneJitForDataPlane();
  const reg = (await import(pathToFileURL(join(dist, 'bench', 'hot', 'registry.js')).href)) as typeof import('./registry.js');
  const [s] = reg.select([name]);
  if (s === undefined) throw new Error(`no scenario ${name} in ${dist}`);
  const w = await s.setup();
  w.run(batches);
  process.stdout.write(JSON.stringify({ scenario: name, batches, batchSize: w.batchSize, delivered: w.delivered() }) + '\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`fixed-work: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
