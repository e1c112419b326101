/** The results table (stdout) and the JSON document. */
import type { SideKind } from './clusters.js';
import { formatValue, type MetricDef, type ScenarioResult, type SideSummary } from './scenarios.js';

export interface Row {
  scenario: string;
  metric: string;
  label: string;
  unit: string;
  podnet: number | null;
  kernel: number | null;
  /** podnet / kernel of the medians, when both exist and the ratio means something. */
  ratio: number | null;
  higherIsBetter: boolean;
  /** What the cells say when there is no number. */
  podnetNote?: string;
  kernelNote?: string;
}

function cell(m: MetricDef, kind: SideKind, s: SideSummary): { value: number | null; note?: string } {
  if (!m.sides.includes(kind)) return { value: null, note: 'n/a' };
  if (s.unavailable) return { value: null, note: s.unavailable };
  if (s.error) return { value: null, note: 'FAILED' };
  const v = s.medians[m.key];
  if (v === undefined) return { value: null, note: 'not run' };
  return { value: v };
}

export function rows(results: readonly ScenarioResult[]): Row[] {
  const out: Row[] = [];
  for (const r of results) {
    for (const m of r.metrics) {
      const p = cell(m, 'podnet', r.sides.podnet);
      const k = cell(m, 'kernel', r.sides.kernel);
      const ratio = m.ratio !== false && p.value !== null && k.value !== null && k.value > 0 ? p.value / k.value : null;
      out.push({
        scenario: r.id,
        metric: m.key,
        label: `${m.label} (${m.unit})`,
        unit: m.unit,
        podnet: p.value,
        kernel: k.value,
        ratio,
        higherIsBetter: m.higherIsBetter,
        podnetNote: p.note,
        kernelNote: k.note,
      });
    }
  }
  return out;
}

export function table(results: readonly ScenarioResult[]): string {
  const lines: string[][] = [['scenario', 'podnet', 'kernel', 'ratio (podnet/kernel)']];
  for (const r of results) {
    for (const m of r.metrics) {
      const p = cell(m, 'podnet', r.sides.podnet);
      const k = cell(m, 'kernel', r.sides.kernel);
      const fmt = (c: { value: number | null; note?: string }) => (c.value === null ? c.note! : formatValue(m, c.value).replace(` ${m.unit}`, ''));
      const ratio = m.ratio !== false && p.value !== null && k.value !== null && k.value > 0 ? `${(p.value / k.value).toFixed(2)}x ${m.higherIsBetter ? '(higher better)' : '(lower better)'}` : '-';
      lines.push([`${m.label} (${m.unit})`, fmt(p), fmt(k), ratio]);
    }
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const render = (l: string[]) => l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ');
  return [render(lines[0]!), widths.map((w) => '-'.repeat(w)).join('-|-'), ...lines.slice(1).map(render)].join('\n');
}
