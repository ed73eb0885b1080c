// `videoperceiver demo --quick` end to end (what `npm start` runs, at the
// test's size): it trains the five arms, prints the five-row table and the
// paired comparisons, writes results.json (per-clip scores, comparisons,
// extraction quality) and a report.html that renders in headless Chromium; a
// second run with the same --out resumes instead of training again; an arm
// stopped by Ctrl-C goes on from its checkpoint and ends as an uninterrupted run.
// --arms / --key-info: bad values are refused before anything is written; a
// subset runs only its arms and never reads back results of another key-info.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoArms, runDemo } from '../lib/demo.js';
import { CHROMIUM, screenshotPage } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');

test('demo --quick trains (a), (b), (b0), (c), (c0), prints the table and comparisons, writes a report that renders, and resumes', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-'));
  try {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'demo', '--quick', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    const secs = (Date.now() - t0) / 1000;
    t.is(r.status, 0, r.stderr.slice(-2000));
    t.log(`demo --quick: ${secs.toFixed(1)} s`);
    t.true(secs < 120, `under 2 minutes (${secs.toFixed(1)} s)`);
    const rows = r.stdout.split('\n').filter((l) => /^\((a|b|b0|c|c0)\) /.test(l));
    t.is(rows.length, 5, r.stdout);
    for (const row of rows) t.regex(row, /(\d\.\d{3}|n\/a)\s+(\d\.\d{3}|n\/a)\s+\d\.\d{3}\s+\d\.\d{3}$/);
    t.regex(r.stdout, /counterfactual consistency/);
    t.regex(r.stdout, /colour MC accuracy \(control\)/);
    t.regex(r.stdout, /\(c\) − \(a\)\s+[+-]\d+\.\d\s+\[[+-]\d+\.\d, [+-]\d+\.\d\]\s+p = \d\.\d{3}/);
    t.regex(r.stdout, /keywords precision \d\.\d{3} recall \d\.\d{3}; key frames precision \d\.\d{3} recall \d\.\d{3}/);
    // A smoke run says so: its numbers are noise.
    t.regex(r.stdout, /smoke run .*its numbers and differences are noise, not results/);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    t.is(res.runs.length, 5);
    for (const run of res.runs) {
      for (const v of Object.values(run.metrics)) t.true(v === null || ((v as number) >= 0 && (v as number) <= 1));
      t.is(run.perClip.event.length, res.plan.testClips);
    }
    t.is(res.comparisons.length, 4 * 5);
    t.deepEqual(res.primary, { metric: 'event MC accuracy', comparison: '(c) − (a)' });
    for (const k of ['keywordPrecision', 'keywordRecall', 'keyFramePrecision', 'keyFrameRecall']) t.true(res.extraction[k] >= 0 && res.extraction[k] <= 1, k);
    // Run again: every (seed, arm) is read back, nothing is trained.
    const again = spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'demo', '--quick', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    t.is(again.status, 0, again.stderr.slice(-2000));
    t.notRegex(again.stderr, /\bsft\b.*\d+\/\d+/);
    t.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).runs.map((x: { metrics: unknown }) => x.metrics), res.runs.map((x: { metrics: unknown }) => x.metrics));
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

test('demo: Ctrl-C in an arm stops with its checkpoint (status 130); the same command resumes that arm and ends as an uninterrupted run', async (t) => {
  const args = ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'demo', '--quick', '--sft-steps', '60'];
  const ref = mkdtempSync(join(tmpdir(), 'vp-demo-ref-'));
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-int-'));
  try {
    const whole = spawnSync(process.execPath, [...args, '--out', ref], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    t.is(whole.status, 0, `status ${whole.status} signal ${whole.signal}\nstdout: ${whole.stdout.slice(-1500)}\nstderr: ${whole.stderr.slice(-3000)}`);
    // Interrupt arm (b0) (the second to train) once it has logged a step.
    const child = spawn(process.execPath, [...args, '--out', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const metrics = join(out, 'runs', 'seed-0', 'b0', 'train', 'metrics.jsonl');
    const poll = setInterval(() => {
      if (existsSync(metrics) && readFileSync(metrics, 'utf8').includes('"step"')) {
        clearInterval(poll);
        child.kill('SIGINT');
      }
    }, 10);
    let signal: NodeJS.Signals | null = null;
    const status = await new Promise<number | null>((res) => child.on('close', (code, sig) => ((signal = sig), res(code))));
    clearInterval(poll);
    t.is(status, 130, `signal ${signal}\nstdout: ${stdout.slice(-1500)}\nstderr: ${stderr.slice(-3000)}`);
    t.regex(stderr, /demo: seed 0 \(b0\) stopped at sft step \d+ \(checkpoint .*\); run the same command again \(same --out .*\) to resume from there/);
    t.true(existsSync(join(out, 'runs', 'seed-0', 'b0', 'train', 'checkpoints', 'latest.json')));
    t.false(existsSync(join(out, 'runs', 'seed-0', 'b0', 'result.json')), 'an interrupted arm is not recorded as done');
    const again = spawnSync(process.execPath, [...args, '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    t.is(again.status, 0, `status ${again.status} signal ${again.signal}\nstdout: ${again.stdout.slice(-1500)}\nstderr: ${again.stderr.slice(-3000)}`);
    const step = Number(/seed 0 \(b0\): resuming sft from its checkpoint at step (\d+)/.exec(again.stderr)?.[1]);
    t.true(step >= 1 && step < 60, again.stderr.slice(-2000));
    const runs = (dir: string) => (JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')).runs as { arm: string; metrics: unknown }[]).map((r) => [r.arm, r.metrics]);
    t.deepEqual(runs(out), runs(ref));
  } finally {
    rmSync(ref, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
});

test('demo --arms and --key-info: bad values stop with status 2 naming the flag, before anything is written', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-bad-'));
  try {
    for (const [args, re] of [
      [['--arms', 'a,bb'], /demo: --arms: unknown arm "bb"; did you mean b0?\??.*\(the arms: a, b, b0, c, c0\)/],
      [['--arms', 'a,c'], /demo: --arms: \(c\) continue \(b\)'s model, so they need b among the arms/],
      [['--arms', 'c0,c'], /\(c\) and \(c0\) continue \(b\)'s model/],
      [['--arms', 'a,a'], /demo: --arms: an arm is named twice/],
      [['--arms', ''], /demo: --arms needs a value/],
      [['--key-info', 'annotate'], /demo: --key-info must be one of extracted, annotated, got "annotate"; did you mean annotated\?/],
    ] as const) {
      const r = spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'demo', '--quick', '--out', join(out, 'x'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      t.regex(r.stderr, re, args.join(' '));
    }
    t.false(existsSync(join(out, 'x')));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('demo --quick --arms a,b --key-info annotated runs only (a) and (b), records both options, and never reads back results of another key-info', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-arms-'));
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'demo', '--quick', '--sft-steps', '8', '--test-clips', '8', '--out', out, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  try {
    const r = cli('--arms', 'b,a', '--key-info', 'annotated');
    t.is(r.status, 0, r.stderr.slice(-2000));
    const rows = r.stdout.split('\n').filter((l) => /^\((a|b|b0|c|c0)\) /.test(l));
    t.deepEqual(rows.map((l) => /^\((\w+)\)/.exec(l)![1]), ['a', 'b'], r.stdout);
    t.regex(rows[1], /^\(b\) SFT \+ KIM \+ contrastive, annotated key info /);
    t.regex(r.stdout, /arms a, b; method arms on annotated key info/);
    t.regex(r.stdout, /\(b\) − \(a\)\s+[+-]\d+\.\d\s+\[/);
    t.notRegex(r.stdout, /\(c\) − \(a\)/);
    t.false(existsSync(join(out, 'runs', 'seed-0', 'b0')));
    t.false(existsSync(join(out, 'runs', 'seed-0', 'c')));
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    t.deepEqual(res.arms, ['a', 'b']);
    t.is(res.keyInfo, 'annotated');
    t.deepEqual(res.runs.map((x: { arm: string }) => x.arm), ['a', 'b']);
    t.deepEqual([...new Set(res.comparisons.map((c: { comparison: string }) => c.comparison))], ['(b) − (a)']);
    t.is(res.comparisons.length, 4);
    const stamp = (arm: string) => JSON.parse(readFileSync(join(out, 'runs', 'seed-0', arm, 'result.json'), 'utf8')).stamp as string;
    t.like(JSON.parse(stamp('b')), { keyInfo: 'annotated', arms: ['a', 'b'] });
    // The same command reads both back; the extracted key info trains again (another stamp).
    const again = cli('--arms', 'a,b', '--key-info', 'annotated');
    t.is(again.status, 0, again.stderr.slice(-2000));
    t.notRegex(again.stderr, /\bsft\b.*\d+\/\d+/);
    t.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).runs, res.runs);
    const other = cli('--arms', 'a,b');
    t.is(other.status, 0, other.stderr.slice(-2000));
    t.regex(other.stderr, /seed 0 \(b\) sft/);
    // A finished arm leaves its checkpoint; one of another stamp is not resumed but trained afresh.
    t.notRegex(other.stderr, /resuming/);
    t.is(readFileSync(join(out, 'runs', 'seed-0', 'b', 'train.stamp.json'), 'utf8'), stamp('b'));
    const res2 = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    t.is(res2.keyInfo, 'extracted');
    t.is(res2.runs[1].run, '(b) SFT + KIM + contrastive');
    t.like(JSON.parse(stamp('b')), { keyInfo: 'extracted', arms: ['a', 'b'] });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('demo --lambda --tap-layer trains the method arm with that contrastive term, names it in the table, and keeps it in the plan', (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-nce-'));
  try {
    const r = spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'demo', '--quick', '--sft-steps', '4', '--test-clips', '8', '--out', out, '--arms', 'b', '--lambda', '0.1', '--tap-layer', '3'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
    t.is(r.status, 0, r.stderr.slice(-2000));
    t.regex(r.stdout, /^\(b\) SFT \+ KIM \+ contrastive, λ 0\.1, tap layer 3 /m);
    t.regex(r.stdout, /contrastive term λ 0\.1, tap layer 3/);
    const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    t.like(res.plan.sft, { lambda: 0.1, tapLayer: 3 });
    const args = JSON.parse(readFileSync(join(out, 'runs', 'seed-0', 'b', 'train', 'training_args.json'), 'utf8'));
    t.like(args.sft, { lambda: 0.1, tapLayer: 3 });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('runDemo: opts.contrastive is checked before anything is written', async (t) => {
  const out = join(mkdtempSync(join(tmpdir(), 'vp-demo-api-')), 'x');
  try {
    await t.throwsAsync(runDemo({ quick: true, out, contrastive: { lambda: -0.5 } }), { instanceOf: RangeError, message: /runDemo: opts\.contrastive\.lambda must be a finite number ≥ 0, got -0\.5/ });
    await t.throwsAsync(runDemo({ quick: true, out, contrastive: { lambda: NaN } }), { instanceOf: RangeError, message: /opts\.contrastive\.lambda/ });
    await t.throwsAsync(runDemo({ quick: true, out, contrastive: { tapLayer: 5 } }), { instanceOf: RangeError, message: /runDemo: opts\.contrastive\.tapLayer must be an integer from 0 to 4/ });
    await t.throwsAsync(runDemo({ quick: true, out, contrastive: { tapLayer: 1.5 } }), { instanceOf: RangeError, message: /opts\.contrastive\.tapLayer/ });
    // @ts-expect-error: not an option of the contrastive term
    await t.throwsAsync(runDemo({ quick: true, out, contrastive: { temperature: 0.1 } }), { instanceOf: RangeError, message: /runDemo: opts\.contrastive: unknown option "temperature"/ });
    t.false(existsSync(out));
  } finally {
    rmSync(join(out, '..'), { recursive: true, force: true });
  }
});

test('runDemo: opts.arms and opts.keyInfo are checked before anything is written', async (t) => {
  t.deepEqual(demoArms(['c', 'b', 'a']), ['a', 'b', 'c']);
  t.throws(() => demoArms([]), { instanceOf: RangeError, message: /runDemo: opts\.arms must name at least one arm/ });
  t.throws(() => demoArms(['B']), { instanceOf: RangeError, message: /runDemo: opts\.arms: unknown arm "B"; did you mean b\?/ });
  t.throws(() => demoArms(['a', 'c0']), { instanceOf: RangeError, message: /\(c0\) continue \(b\)'s model, so they need b/ });
  const out = join(mkdtempSync(join(tmpdir(), 'vp-demo-api-')), 'x');
  try {
    await t.throwsAsync(runDemo({ quick: true, out, arms: ['b0', 'c'] }), { instanceOf: RangeError, message: /^runDemo: opts\.arms: \(c\) continue/ });
    // @ts-expect-error: not a key-info source
    await t.throwsAsync(runDemo({ quick: true, out, keyInfo: 'both' }), { instanceOf: RangeError, message: /runDemo: opts\.keyInfo must be 'extracted' or 'annotated', got "both"/ });
    t.false(existsSync(out));
  } finally {
    rmSync(join(out, '..'), { recursive: true, force: true });
  }
});
