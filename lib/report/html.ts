// The demo's report.html: training curves, the results table and its chart,
// and sample clips as image strips with each model's generated caption. One
// self-contained file (inline SVG, PNG data URIs, no scripts, no network).
import { writeFileAtomic } from '../fs.js';
import { encodePng, frameStrip } from '../data/png.js';
import { barChart, lineChart } from './charts.js';

export interface ReportRun {
  /** e.g. "(a) plain SFT". */
  name: string;
  /** Metric rows over training: { step, loss, ... }. */
  curve: Record<string, number>[];
}

export interface ReportRow {
  model: string;
  /** Metric name → mean (and optional std across seeds). */
  metrics: Record<string, { mean: number; std?: number }>;
}

export interface ReportSample {
  id: string;
  frames: Uint8Array;
  shape: readonly number[];
  reference: string;
  /** Model name → generated caption. */
  generated: Record<string, string>;
}

export interface ReportInput {
  title: string;
  subtitle?: string;
  runs: ReportRun[];
  /** Curve keys to chart (default: every numeric key but "step"). */
  curveKeys?: string[];
  table: ReportRow[];
  samples: ReportSample[];
  /** Extra sections after the results table: a title and trusted HTML (tables, charts). */
  sections?: { title: string; html: string }[];
  notes?: string[];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderReport(r: ReportInput): string {
  const keys = r.curveKeys ?? [...new Set(r.runs.flatMap((run) => run.curve.flatMap((p) => Object.keys(p))))].filter((k) => k !== 'step');
  const curves = keys.map((k) =>
    lineChart(k, r.runs.map((run) => ({ name: run.name, points: run.curve.filter((p) => k in p).map((p, i) => [p.step ?? i, p[k]] as [number, number]) })), { xLabel: 'step' }));
  const metricNames = [...new Set(r.table.flatMap((row) => Object.keys(row.metrics)))];
  const tableHtml = [
    '<table><thead><tr><th>model</th>', ...metricNames.map((m) => `<th>${esc(m)}</th>`), '</tr></thead><tbody>',
    ...r.table.map((row) => `<tr><td>${esc(row.model)}</td>${metricNames.map((m) => {
      const v = row.metrics[m];
      return `<td>${v ? `${v.mean.toFixed(3)}${v.std !== undefined ? ` ± ${v.std.toFixed(3)}` : ''}` : 'n/a'}</td>`;
    }).join('')}</tr>`),
    '</tbody></table>',
  ].join('');
  const bars = barChart('held-out metrics', metricNames, r.table.map((row) => ({
    name: row.model, values: metricNames.map((m) => row.metrics[m]?.mean ?? NaN), errors: metricNames.map((m) => row.metrics[m]?.std ?? 0),
  })), { max: 1, width: 720 });
  const samples = r.samples.map((s) => {
    const strip = frameStrip(s.frames, s.shape, 2);
    const png = Buffer.from(encodePng(strip.rgb, strip.width, strip.height)).toString('base64');
    const gens = Object.entries(s.generated).map(([m, c]) => `<li><b>${esc(m)}</b>: ${esc(c)}</li>`).join('');
    return `<figure><img alt="frames of ${esc(s.id)}" src="data:image/png;base64,${png}" width="${strip.width}" height="${strip.height}"><figcaption><div><b>${esc(s.id)}</b> — reference: ${esc(s.reference)}</div><ul>${gens}</ul></figcaption></figure>`;
  }).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}
figure{margin:12px 0}figure img{image-rendering:pixelated;display:block}figcaption ul{margin:4px 0}
.notes{color:#555}
</style></head><body>
<h1>${esc(r.title)}</h1>${r.subtitle ? `<p>${esc(r.subtitle)}</p>` : ''}
<h2>Results on held-out clips</h2>${tableHtml}<div class="charts">${bars}</div>
${(r.sections ?? []).map((s) => `<h2>${esc(s.title)}</h2>${s.html}`).join('\n')}
<h2>Training curves</h2><div class="charts">${curves.join('\n')}</div>
<h2>Sample clips</h2>${samples}
${r.notes?.length ? `<h2>Notes</h2><ul class="notes">${r.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}

/** Writes the report atomically. */
export function writeReport(path: string, r: ReportInput): void {
  writeFileAtomic(path, renderReport(r));
}
