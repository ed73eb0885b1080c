// `videoperceiver demo --jobs N` (lib/demo-jobs.ts): the seeds split over child
// processes sharing one --out give the same numbers as one process with the
// same thread count, each run records its threads, and Ctrl-C stops every child
// with a checkpoint that the same command resumes.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { splitSeeds, threadsPerJob } from '../lib/demo-jobs.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'lib', 'cli.ts');
const env = (threads?: number) => {
  const e: NodeJS.ProcessEnv = { ...process.env };
  delete e.VP_NUM_THREADS;
  if (threads !== undefined) e.VP_NUM_THREADS = String(threads);
  return e;
};
const demo = (args: string[], e: NodeJS.ProcessEnv) =>
  spawnSync(process.execPath, ['--import=tsx', CLI, 'demo', '--quick', '--test-clips', '8', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000, env: e });

test('splitSeeds deals the seeds round-robin, never an empty group; threadsPerJob shares the cores or keeps VP_NUM_THREADS', (t) => {
  t.deepEqual(splitSeeds([0, 1, 2, 3, 4], 2), [[0, 2, 4], [1, 3]]);
  t.deepEqual(splitSeeds([5, 6], 4), [[5], [6]]);
  t.deepEqual(splitSeeds([3], 1), [[3]]);
  t.is(threadsPerJob(2, { VP_NUM_THREADS: '3' }), 3);
  t.true(threadsPerJob(1, {}) >= 1);
  t.is(threadsPerJob(10_000, {}), 1);
});

test('demo --jobs 2 gives the numbers of one process with the same thread count, and records the threads of every run', (t) => {
  const work = mkdtempSync(join(tmpdir(), 'vp-demo-jobs-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const threads = threadsPerJob(2, {});
  const jobs = demo(['--sft-steps', '6', '--arms', 'a', '--seeds', '0,1,2', '--jobs', '2', '--out', join(work, 'jobs')], env());
  t.is(jobs.status, 0, jobs.stderr.slice(-3000));
  t.regex(jobs.stderr, /demo --jobs 2: seeds 0,2 \| 1, one process each/);
  t.regex(jobs.stderr, /^\[seeds 0,2\]\s+seed 2 \(a\) plain SFT: event MC accuracy/m);
  t.regex(jobs.stderr, /^\[seeds 1\]\s+seed 1 \(a\) plain SFT: event MC accuracy/m);
  t.regex(jobs.stdout, /held-out results \(8 clips; seeds 0, 1, 2; arms a; mean ± std over seeds\)/);
  const one = demo(['--sft-steps', '6', '--arms', 'a', '--seeds', '0,1,2', '--out', join(work, 'one')], env(threads));
  t.is(one.status, 0, one.stderr.slice(-3000));
  const runs = (dir: string) => JSON.parse(readFileSync(join(work, dir, 'results.json'), 'utf8')).runs as { seed: number; perClip: unknown; metrics: unknown; threads: number }[];
  const a = runs('jobs'), b = runs('one');
  t.deepEqual(a.map((r) => r.seed), [0, 1, 2]);
  t.deepEqual(a.map((r) => r.threads), [threads, threads, threads]);
  t.deepEqual(a.map((r) => [r.metrics, r.perClip]), b.map((r) => [r.metrics, r.perClip]));
});

test('Ctrl-C during demo --jobs stops every child with a checkpoint (exit 130); the same command resumes them', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-jobs-int-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const args = ['--import=tsx', CLI, 'demo', '--quick', '--test-clips', '8', '--sft-steps', '150', '--arms', 'a', '--seeds', '0,1', '--jobs', '2', '--out', out];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let sent = false;
  const code = await new Promise<number | null>((done) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      err += s;
      // Both children are training: interrupt the parent only.
      if (!sent && /\[seeds 0\] seed 0 \(a\) sft/.test(err) && /\[seeds 1\] seed 1 \(a\) sft/.test(err)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.on('close', (c) => {
      clearTimeout(timer);
      done(c);
    });
  });
  t.true(sent, err.slice(-2000));
  t.is(code, 130, err.slice(-2000));
  t.regex(err, /demo --jobs: SIGINT: stopping every process/);
  t.regex(err, /run the same command again \(same --out\) to resume/);
  for (const s of [0, 1]) t.true(existsSync(join(out, 'runs', `seed-${s}`, 'a', 'train', 'checkpoints', 'latest.json')), `seed ${s} left no checkpoint`);
  t.false(existsSync(join(out, 'results.json')));
  const again = spawnSync(process.execPath, args, { cwd: ROOT, env: env(), encoding: 'utf8', timeout: 300_000 });
  t.is(again.status, 0, again.stderr.slice(-3000));
  t.regex(again.stderr, /\[seeds 0\]\s+seed 0 \(a\): resuming sft from its checkpoint/);
  t.regex(again.stderr, /\[seeds 1\]\s+seed 1 \(a\): resuming sft from its checkpoint/);
  t.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).runs.map((r: { seed: number }) => r.seed), [0, 1]);
});
