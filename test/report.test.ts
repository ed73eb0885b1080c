// The report opens in a real browser with no network: headless Chromium
// renders it, the screenshot is not blank (the charts drew), and the page
// logged no console errors.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { CHROMIUM, screenshotPage } from './helpers.js';


function reportInput(): vp.ReportInput {
  const rng = vp.makeRng(2);
  const clips = [vp.synthClip(rng), vp.synthClip(rng)];
  const curve = (scale: number) => Array.from({ length: 30 }, (_, s) => ({ step: s, loss: scale * Math.exp(-s / 10) + 0.5, nce: 2 - s / 30 }));
  return {
    title: 'videoperceiver demo (test data)',
    subtitle: 'rendered by the report test',
    runs: [{ name: '(a) plain SFT', curve: curve(3) }, { name: '(b) SFT + KIM + NCE', curve: curve(2.5) }],
    table: [
      { model: '(a) plain SFT', metrics: { 'event accuracy': { mean: 0.4, std: 0.05 }, 'keyword recall': { mean: 0.3 }, 'motion accuracy': { mean: 0.8 } } },
      { model: '(b) SFT + KIM + NCE', metrics: { 'event accuracy': { mean: 0.55, std: 0.04 }, 'keyword recall': { mean: 0.45 }, 'motion accuracy': { mean: 0.79 } } },
    ],
    samples: clips.map((c, i) => ({ id: `clip-${i}`, frames: c.frames, shape: c.shape, reference: c.caption, generated: { '(a)': 'the red square drifts left', '(b)': c.caption } })),
    notes: ['<script>alert(1)</script> is escaped'],
  };
}

test('renderReport is self-contained: inline SVG charts, PNG data URIs, nothing fetched', (t) => {
  const html = vp.renderReport(reportInput());
  t.true((html.match(/<svg /g) ?? []).length >= 3, 'a bar chart and a curve per metric');
  t.is((html.match(/<img /g) ?? []).length, 2);
  t.false(/(src|href)="(https?:)?\/\//.test(html), 'no external resources');
  t.false(html.includes('<script>alert'), 'text is escaped');
  t.true(html.includes('0.550 ± 0.040'));
});

test('report.html renders in headless Chromium: non-blank screenshot, no console errors', (t) => {
  if (!CHROMIUM) return t.pass('chromium not installed: skipped (CI installs it)');
  const dir = mkdtempSync(join(tmpdir(), 'vp-report-'));
  try {
    const page = join(dir, 'report.html');
    vp.writeReport(page, reportInput());
    const shot = screenshotPage(page, dir);
    t.true(shot.ok, `screenshot written (${shot.stderr})`);
    t.deepEqual(shot.consoleErrors, [], 'no console errors');
    t.is(shot.width, 1200);
    // Non-blank: many non-white pixels, and the charts' colours are present.
    t.true(shot.dark > 5000, `rendered content (${shot.dark} non-white pixels)`);
    t.true(shot.chartBlue > 200, `chart bars and lines drawn (${shot.chartBlue} chart-blue pixels)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
