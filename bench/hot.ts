/**
 * `npm run bench:hot`: the data path on its own. Synthetic, valid frames pushed through the real
 * switch, router (with conntrack/NAT) and VXLAN modules, wired as the daemon wires them, with counting
 * sinks at the device boundary: no devices, no syscalls.
 *
 *   node --expose-gc dist/bench/hot.js [--quick] [--scenario NAME]... [--json-only] [--in-process] [--list]
 *
 * Each scenario runs in its own child process by default, so V8's type feedback and optimised code
 * come from that scenario's traffic alone (results do not depend on the order scenarios run in);
 * `--in-process` runs them all in this process instead. Run under `node --cpu-prof` to get one
 * .cpuprofile per scenario (children inherit the flags); `node dist/bench/prof-top.js FILE` summarises
 * one. Results: a table on stdout and JSON in bench/results/hot.json. The exit status is 1 if a
 * scenario that is available failed (threw, lost packets, moved a drop counter or produced a wrong
 * frame); scenarios that are not available yet are listed and do not fail the run.
 */
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machineInfo } from './hot/machine.js';
import { gcExposed, type RunOptions } from './hot/measure.js';
import { registry, select } from './hot/registry.js';
import { runScenario, type ScenarioResult } from './hot/runner.js';
import { tuneJitForDataPlane } from '../src/util/jit.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository root: this file runs from dist/bench/. */
const ROOT = resolve(HERE, '..', '..');
const RESULTS = join(ROOT, 'bench', 'results', 'hot.json');

const METHOD = [
  'Per scenario: a verification batch checks every output frame byte for byte (addresses, TTL, checksums, zero-copy offsets);',
  'warm-up, then timed runs of a fixed number of 64-frame batches through Dataplane.receiveRing (tick, receive per frame, flush), as a device callback does.',
  'Frames the path rewrites in place are restored from a pristine copy before each batch (copyWithin of the header bytes);',
  'that restore loop is timed on its own and its median ns/packet subtracted ("restore" column).',
  'Every timed packet must reach the counting sink or transport and no drop counter may move, or the scenario fails.',
  'Heap bytes: used_heap_size before/after each run plus the bytes every GC during the run freed (v8.GCProfiler), after a forced GC, bracket overhead subtracted.',
].join(' ');

interface Options {
  quick: boolean;
  jsonOnly: boolean;
  inProcess: boolean;
  list: boolean;
  scenarios: string[];
  child: string | undefined;
  run: RunOptions;
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      scenario: { type: 'string', multiple: true, default: [] },
      'json-only': { type: 'boolean', default: false },
      'in-process': { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      runs: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      child: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      [
        'usage: node --expose-gc dist/bench/hot.js [options]',
        '  --quick            short runs (CI smoke test): 0.2 s warm-up, 3 runs of 0.1 s',
        '  --scenario NAME    a scenario or family (repeatable); default all (--list shows them)',
        '  --json-only        print only the JSON document on stdout (the file path goes to stderr)',
        '  --in-process       run every scenario in this process instead of one child each',
        '  --runs N / --seconds S / --warmup S   timed runs, seconds per run, warm-up seconds (default 5, 1, 1)',
        '  --list             list the scenarios and whether they are available',
        '',
      ].join('\n'),
    );
    process.exit(0);
  }
  const num = (v: string | undefined, name: string, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!(n > 0)) throw new Error(`--${name} wants a positive number, not ${JSON.stringify(v)}`);
    return n;
  };
  const quick = values.quick!;
  return {
    quick,
    jsonOnly: values['json-only']!,
    inProcess: values['in-process']!,
    list: values.list!,
    scenarios: values.scenario!,
    child: values.child,
    run: {
      warmupSeconds: num(values.warmup, 'warmup', quick ? 0.2 : 1),
      runs: Math.round(num(values.runs, 'runs', quick ? 3 : 5)),
      runSeconds: num(values.seconds, 'seconds', quick ? 0.1 : 1),
    },
  };
}

/** Runs one scenario in a child process (same node flags) and returns its result. */
function runInChild(name: string, opts: Options): Promise<ScenarioResult> {
  const s = registry.find((x) => x.name === name)!;
  const args = ['--child', name, '--runs', String(opts.run.runs), '--seconds', String(opts.run.runSeconds), '--warmup', String(opts.run.warmupSeconds)];
  return new Promise((resolvePromise) => {
    let result: ScenarioResult | undefined;
    const child = fork(fileURLToPath(import.meta.url), args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    // Pass the child's stderr through, and keep its end for the report if it dies without a result.
    let tail = '';
    child.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      tail = (tail + d.toString()).slice(-2000);
    });
    child.on('message', (m) => {
      result = m as ScenarioResult;
    });
    child.on('error', (err) => {
      result ??= { name, family: s.family, frame: s.frame, description: s.description, status: 'failed', reason: `child process: ${err.message}` };
    });
    child.on('exit', (code, signal) => {
      if (result === undefined) {
        const how = signal !== null ? `signal ${signal}` : `exit status ${code}`;
        const why = tail.trim() === '' ? '' : `: ${tail.trim()}`;
        result = { name, family: s.family, frame: s.frame, description: s.description, status: 'failed', reason: `child process ended (${how}) without a result${why}` };
      }
      resolvePromise(result);
    });
  });
}

async function childMain(opts: Options): Promise<void> {
  const s = registry.find((x) => x.name === opts.child);
  const result: ScenarioResult =
    s === undefined
      ? { name: opts.child!, family: '', frame: '', description: '', status: 'failed', reason: 'no such scenario' }
      : await runScenario(s, opts.run);
  await new Promise<void>((done) => process.send!(result, () => done()));
  process.disconnect();
}

// ---- output -----------------------------------------------------------------------------------

function fixed(n: number | undefined, digits: number): string {
  return n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);
}

function table(results: ScenarioResult[]): string {
  const header = ['scenario', 'frame', 'Mpps', 'ns/pkt', 'raw ns', 'restore', 'B/pkt', 'GCs', 'runs min-max Mpps'];
  const rows: string[][] = [];
  for (const r of results) {
    if (r.status !== 'ok') continue;
    const m = r.median!;
    rows.push([
      r.name,
      r.frame,
      fixed(m.mpps, 2),
      fixed(m.nsPerPacket, 1),
      fixed(m.rawNsPerPacket, 1),
      fixed(m.restoreNsPerPacket, 1),
      fixed(m.heapBytesPerPacket, 2),
      String(r.gcs),
      `${fixed(r.spread!.minMpps, 2)}-${fixed(r.spread!.maxMpps, 2)}`,
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  const failed = results.filter((r) => r.status === 'failed');
  if (failed.length > 0) {
    out.push('', 'FAILED:');
    for (const r of failed) out.push(`  ${r.name}: ${r.reason}`);
  }
  const noted = results.filter((r) => r.status === 'ok' && r.notes !== undefined);
  if (noted.length > 0) {
    out.push('');
    for (const r of noted) out.push(`  ${r.name}: ${Object.entries(r.notes!).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toPrecision(3)}`).join(', ')}`);
  }
  const na = results.filter((r) => r.status === 'not_available');
  if (na.length > 0) {
    out.push('', 'not available yet:');
    const w = Math.max(...na.map((r) => r.name.length));
    for (const r of na) out.push(`  ${r.name.padEnd(w)}  ${r.description} — ${r.reason}`);
  }
  return out.join('\n');
}

async function main(): Promise<number> {
  tuneJitForDataPlane(); // compiled as the daemon compiles it (src/util/jit.ts)
  let opts: Options;
  let scenarios;
  try {
    opts = parse(process.argv.slice(2));
    if (opts.child !== undefined) {
      await childMain(opts);
      return 0;
    }
    scenarios = select(opts.scenarios);
  } catch (err) {
    process.stderr.write(`bench:hot: ${(err as Error).message}\n`);
    return 2;
  }
  if (opts.list) {
    for (const s of scenarios) {
      const why = await s.unavailable();
      process.stdout.write(`${s.name.padEnd(32)} ${s.frame.padEnd(14)} ${why === undefined ? 'available' : `not available yet: ${why}`}\n`);
    }
    return 0;
  }
  if (!gcExposed) process.stderr.write('bench:hot: warning: run with --expose-gc for a forced GC before each timed run\n');
  const machine = machineInfo();
  const say = (s: string) => {
    if (!opts.jsonOnly) process.stdout.write(s);
  };
  const busy = machine.loadAverage[0]! > machine.cores / 2;
  say(
    `podnet hot path: ${machine.cpuModel}, ${machine.cores} logical CPUs, node ${machine.node}, load ${machine.loadAverage.join(' ')}\n` +
      (busy ? 'warning: the machine is busy (load average above half its CPUs): expect noisy numbers\n' : '') +
      (opts.quick ? 'quick: a smoke test; V8 may not have finished optimising, so the numbers are not measurements\n' : '') +
      `${opts.run.runs} timed runs of ~${opts.run.runSeconds} s after ${opts.run.warmupSeconds} s of warm-up, batches of 64 frames; ` +
      `${opts.inProcess ? 'all scenarios in one process' : 'one process per scenario'}\n\n`,
  );

  const results: ScenarioResult[] = [];
  for (const s of scenarios) {
    const why = await s.unavailable();
    let r: ScenarioResult;
    if (why !== undefined) {
      r = { name: s.name, family: s.family, frame: s.frame, description: s.description, status: 'not_available', reason: why };
    } else {
      say(`  ${s.name} ...`);
      r = opts.inProcess ? await runScenario(s, opts.run) : await runInChild(s.name, opts);
      say(r.status === 'ok' ? ` ${fixed(r.median!.mpps, 2)} Mpps\n` : ` ${r.status.toUpperCase()}\n`);
    }
    results.push(r);
  }

  const doc = {
    benchmark: 'podnet bench:hot',
    date: new Date().toISOString(),
    machine,
    options: { quick: opts.quick, inProcess: opts.inProcess, batchSize: 64, ...opts.run },
    method: METHOD,
    scenarios: results,
  };
  const json = JSON.stringify(doc, null, 2);
  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, json + '\n');
  if (opts.jsonOnly) {
    process.stdout.write(json + '\n');
    process.stderr.write(`JSON: ${RESULTS}\n`);
  } else {
    say(`\n${table(results)}\n\nMpps and ns/pkt: median over the runs, restore cost subtracted; raw ns: before subtracting.\n`);
    say(`B/pkt: V8 heap bytes allocated per packet in the timed runs; GCs: collections during them.\n`);
    say(`JSON: ${relative(process.cwd(), RESULTS) || RESULTS}\n`);
  }
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}

process.exitCode = await main();
