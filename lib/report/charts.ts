// Self-contained SVG charts for reports: line charts of training curves and
// grouped bar charts of metrics. No scripts, no external resources, so a
// report opens in any browser with no network.

export interface Series {
  name: string;
  points: [number, number][];
}

const PALETTE = ['#2b7bb9', '#d9822b', '#3a9a4a', '#b3404a', '#7a5bbf', '#8c6d31'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Left edge of each legend entry: a swatch, the name (about 6.2 px a character at 11 px), a gap. */
function legendX(names: readonly string[], start: number): number[] {
  const xs: number[] = [];
  let x = start;
  for (const n of names) {
    xs.push(x);
    x += 14 + n.length * 6.2 + 16;
  }
  return xs;
}

function legendItem(name: string, color: string, x: number, y: number): string {
  return `<rect x="${x}" y="${y}" width="10" height="10" fill="${color}"/><text x="${x + 14}" y="${y + 9}">${esc(name)}</text>`;
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fmt(v: number): string {
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : String(+v.toPrecision(3));
}

/** A line chart of several series sharing x and y axes. */
export function lineChart(title: string, series: Series[], opts: { width?: number; height?: number; xLabel?: string; yLabel?: string } = {}): string {
  const W = opts.width ?? 560, H = opts.height ?? 300;
  const L = 56, R = 12, T = 30, B = 42;
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11" role="img" aria-label="${esc(title)}">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`, `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`];
  if (!pts.length) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return parts.join('');
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`, `<text x="${L - 4}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(x0, x1, 6)) parts.push(`<text x="${sx(t)}" y="${H - B + 14}" text-anchor="middle">${fmt(t)}</text>`);
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/>`, `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`);
  if (opts.xLabel) parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">${esc(opts.xLabel)}</text>`);
  if (opts.yLabel) parts.push(`<text x="12" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 12 ${(T + H - B) / 2})">${esc(opts.yLabel)}</text>`);
  const legendAt = legendX(series.map((q) => q.name), L + 8);
  series.forEach((s, i) => {
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (!good.length) return;
    const d = good.map(([x, y], j) => `${j ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    const c = PALETTE[i % PALETTE.length];
    parts.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2"/>`);
    parts.push(legendItem(s.name, c, legendAt[i], T + 2));
  });
  parts.push('</svg>');
  return parts.join('');
}

/** A grouped bar chart: one group per metric, one bar per model; values in [0, max]. */
export function barChart(title: string, groups: string[], bars: { name: string; values: number[]; errors?: number[] }[], opts: { width?: number; height?: number; max?: number } = {}): string {
  const W = opts.width ?? 560, H = opts.height ?? 300;
  const L = 44, R = 12, T = 44, B = 40;
  const max = opts.max ?? Math.max(1e-9, ...bars.flatMap((b) => b.values.map((v, i) => v + (b.errors?.[i] ?? 0))).filter(Number.isFinite));
  const sy = (v: number) => H - B - (Math.max(0, v) / max) * (H - T - B);
  const gw = (W - L - R) / groups.length;
  const bw = (gw * 0.8) / bars.length;
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11" role="img" aria-label="${esc(title)}">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`, `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`];
  for (const t of niceTicks(0, max)) parts.push(`<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/><text x="${L - 4}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  groups.forEach((g, gi) => {
    parts.push(`<text x="${L + gw * gi + gw / 2}" y="${H - B + 14}" text-anchor="middle">${esc(g)}</text>`);
    bars.forEach((b, bi) => {
      const v = b.values[gi];
      if (!Number.isFinite(v)) return;
      const x = L + gw * gi + gw * 0.1 + bw * bi;
      parts.push(`<rect x="${x.toFixed(1)}" y="${sy(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(H - B - sy(v)).toFixed(1)}" fill="${PALETTE[bi % PALETTE.length]}"><title>${esc(b.name)}: ${fmt(v)}</title></rect>`);
      const e = b.errors?.[gi];
      if (e && Number.isFinite(e)) parts.push(`<line x1="${x + bw / 2 - 1}" x2="${x + bw / 2 - 1}" y1="${sy(v + e)}" y2="${sy(v - e)}" stroke="#222"/>`);
    });
  });
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`);
  const xs = legendX(bars.map((b) => b.name), L + 8);
  bars.forEach((b, i) => parts.push(legendItem(b.name, PALETTE[i % PALETTE.length], xs[i], 26)));
  parts.push('</svg>');
  return parts.join('');
}

/**
 * Paired differences: one row per comparison, a dot per seed (its difference), the mean as a
 * bar, the 95 % interval as a line, and zero marked. Values in the units of the metric.
 */
export function differencePlot(title: string, rows: { name: string; perSeed: number[]; mean: number; ci: [number, number] }[], opts: { width?: number } = {}): string {
  const W = opts.width ?? 720, rowH = 34, L = 230, R = 24, T = 40, B = 34;
  const H = T + B + rowH * rows.length;
  const all = rows.flatMap((r) => [...r.perSeed, r.ci[0], r.ci[1], r.mean]).filter(Number.isFinite);
  let lo = Math.min(0, ...all), hi = Math.max(0, ...all);
  const pad = (hi - lo) * 0.08 || 0.01;
  lo -= pad;
  hi += pad;
  const sx = (v: number) => L + ((v - lo) / (hi - lo)) * (W - L - R);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11" role="img" aria-label="${esc(title)}">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`, `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`];
  for (const t of niceTicks(lo, hi)) parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${T - 6}" y2="${H - B}" stroke="#eee"/><text x="${sx(t)}" y="${H - B + 14}" text-anchor="middle">${fmt(t)}</text>`);
  parts.push(`<line x1="${sx(0)}" x2="${sx(0)}" y1="${T - 6}" y2="${H - B}" stroke="#888" stroke-dasharray="4 3"/>`);
  rows.forEach((r, i) => {
    const y = T + rowH * i + rowH / 2;
    parts.push(`<text x="${L - 8}" y="${y + 4}" text-anchor="end">${esc(r.name)}</text>`);
    if (Number.isFinite(r.ci[0]) && Number.isFinite(r.ci[1])) parts.push(`<line x1="${sx(r.ci[0])}" x2="${sx(r.ci[1])}" y1="${y}" y2="${y}" stroke="#222" stroke-width="2"><title>95% CI [${fmt(r.ci[0])}, ${fmt(r.ci[1])}]</title></line>`);
    r.perSeed.forEach((d, k) => {
      if (Number.isFinite(d)) parts.push(`<circle cx="${sx(d).toFixed(1)}" cy="${(y - 8 + ((k * 5) % 16)).toFixed(1)}" r="3" fill="${PALETTE[i % PALETTE.length]}" fill-opacity="0.75"><title>seed ${k}: ${fmt(d)}</title></circle>`);
    });
    if (Number.isFinite(r.mean)) parts.push(`<line x1="${sx(r.mean)}" x2="${sx(r.mean)}" y1="${y - 11}" y2="${y + 11}" stroke="#b3404a" stroke-width="3"><title>mean ${fmt(r.mean)}</title></line>`);
  });
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">difference (dots: seeds; red: mean; black: 95% CI)</text>`);
  parts.push('</svg>');
  return parts.join('');
}
