/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): the functions with the most self time, and
 * their inclusive time (self + callees).
 *
 *   node --cpu-prof --cpu-prof-dir=bench/results/prof --expose-gc dist/bench/hot.js --scenario l2_forward/64B
 *   node dist/bench/prof-top.js bench/results/prof/CPU.*.cpuprofile [--top 25] [--all] [--under run]
 *
 * Each scenario runs in its own child process, so each writes its own profile; the parent's (mostly
 * idle) is the smallest file. Percentages are of the samples outside (idle) and (program), i.e. of the
 * time JavaScript, GC and native code ran. Set-up and warm-up are included (small next to the timed
 * runs, except for the 1M-connection NAT set-up). Locations are of the compiled JavaScript in dist/.
 * `--under NAME` counts only samples with function NAME on the stack: `--under run` is the timed loop of
 * a workload (`Workload.run`), without set-up, verification and the restore-only measurement.
 * `--all` keeps functions from Node's own modules (node:internal/...), which are hidden otherwise
 * except when they are hot (>= 1%).
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

interface Row {
  key: string;
  self: number;
  total: number;
}

function where(cf: CallFrame): string {
  let file = cf.url;
  if (file.startsWith('file://')) file = relative(process.cwd(), fileURLToPath(file));
  const name = cf.functionName || '(anonymous)';
  return file === '' ? name : `${name}  ${file}:${cf.lineNumber + 1}`;
}

function summarise(path: string, top: number, all: boolean, under: string | undefined): string {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const rows = new Map<string, Row>();
  let busy = 0;
  let idle = 0;
  const inside = (id: number): boolean => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      if (byId.get(cur)!.callFrame.functionName === under) return true;
    }
    return false;
  };
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const name = node.callFrame.functionName;
    if (name === '(idle)' || name === '(program)') {
      idle += us;
      continue;
    }
    if (under !== undefined && !inside(id)) continue;
    busy += us;
    const key = where(node.callFrame);
    const row = rows.get(key) ?? { key, self: 0, total: 0 };
    row.self += us;
    rows.set(key, row);
    // Inclusive time: every distinct function on the stack of this sample gets it once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = where(byId.get(cur)!.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      const r = rows.get(k) ?? { key: k, self: 0, total: 0 };
      r.total += us;
      rows.set(k, r);
    }
  }
  const pct = (us: number) => `${((100 * us) / Math.max(busy, 1)).toFixed(1).padStart(5)}%`;
  const list = [...rows.values()]
    .filter((r) => r.self > 0 && (all || !r.key.includes('node:') || r.self / busy >= 0.01))
    .sort((a, b) => b.self - a.self)
    .slice(0, top);
  const out = [
    `${path}: ${(busy / 1000).toFixed(0)} ms ${under === undefined ? 'busy' : `under ${under}()`}, ${(idle / 1000).toFixed(0)} ms idle/program`,
    '   self   total  function  location',
    ...list.map((r) => `${pct(r.self)}  ${pct(r.total)}  ${r.key}`),
  ];
  return out.join('\n');
}

const { values, positionals } = parseArgs({
  options: { top: { type: 'string', default: '25' }, all: { type: 'boolean', default: false }, under: { type: 'string' } },
  allowPositionals: true,
});
if (positionals.length === 0) {
  process.stderr.write('usage: node dist/bench/prof-top.js FILE.cpuprofile... [--top N] [--all] [--under FUNCTION]\n');
  process.exitCode = 2;
} else {
  for (const f of positionals) process.stdout.write(summarise(f, Number(values.top), values.all!, values.under) + '\n\n');
}
