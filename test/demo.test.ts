// `videoperceiver demo --quick` end to end (what `npm start` runs, at the
// test's size): it trains the three models, prints the three-row table, writes
// results.json and a report.html that renders in headless Chromium.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, screenshotPage } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');

test('demo --quick trains (a), (b), (c), prints the table and writes a report that renders', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-'));
  try {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'demo', '--quick', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    const secs = (Date.now() - t0) / 1000;
    t.is(r.status, 0, r.stderr.slice(-2000));
    t.log(`demo --quick: ${secs.toFixed(1)} s`);
    t.true(secs < 120, `under 2 minutes (${secs.toFixed(1)} s)`);
    const rows = r.stdout.split('\n').filter((l) => /^\((a|b|c)\)/.test(l));
    t.is(rows.length, 3, r.stdout);
    for (const row of rows) t.regex(row, /\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{3}$/);
    // A smoke run says so: its numbers are noise.
    t.regex(r.stdout, /smoke run .*its numbers and differences are noise, not results/);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    t.is(res.runs.length, 3);
    for (const run of res.runs) for (const v of Object.values(run.metrics)) t.true((v as number) >= 0 && (v as number) <= 1);
    // The generated dataset is cached (stamped with its options) for the next run.
    t.true(existsSync(join(out, 'data', `train-${res.plan.trainClips}`, 'dataset.json')));
    const page = join(out, 'report.html');
    t.true(existsSync(page));
    const html = readFileSync(page, 'utf8');
    t.true((html.match(/<svg /g) ?? []).length >= 3);
    t.regex(html, /Smoke run \(--quick\)/);
    if (!CHROMIUM) return t.pass('chromium not installed: rendering not checked (CI installs it)');
    const shot = screenshotPage(page, out);
    t.true(shot.ok, shot.stderr);
    t.deepEqual(shot.consoleErrors, []);
    t.true(shot.dark > 5000, `rendered content (${shot.dark} non-white pixels)`);
    t.true(shot.chartBlue > 200, `charts drawn (${shot.chartBlue} chart-blue pixels)`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
