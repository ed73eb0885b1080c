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

/**
 * Starts `demo --jobs 2` on seeds 0 and 1 with `steps` SFT steps; resolves once both children
 * train (their progress lines came through), with the parent and its stderr so far (`err()`).
 */
async function jobsTraining(out: string, steps: number) {
  const args = ['--import=tsx', CLI, 'demo', '--quick', '--test-clips', '8', '--sft-steps', String(steps), '--arms', 'a', '--seeds', '0,1', '--jobs', '2', '--out', out];
  const parent = spawn(process.execPath, args, { cwd: ROOT, env: env(), stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  parent.stderr.setEncoding('utf8');
  parent.stderr.on('data', (s: string) => (err += s));
  const closed = new Promise<number | null>((done) => parent.on('close', done));
  const t0 = Date.now();
  while (!(/\[seeds 0\] seed 0 \(a\) sft/.test(err) && /\[seeds 1\] seed 1 \(a\) sft/.test(err)) && parent.exitCode === null && Date.now() - t0 < 240_000)
    await new Promise((r) => setTimeout(r, 100));
  return { args, parent, closed, err: () => err, training: /\[seeds 1\] seed 1 \(a\) sft/.test(err) && /\[seeds 0\] seed 0 \(a\) sft/.test(err) };
}

test('Ctrl-C during demo --jobs stops every child with a checkpoint (exit 130); the same command resumes them', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-jobs-int-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const run = await jobsTraining(out, 150);
  t.true(run.training, run.err().slice(-2000));
  run.parent.kill('SIGINT'); // the parent only: it passes the signal on
  const code = await run.closed;
  const err = run.err();
  t.is(code, 130, err.slice(-2000));
  t.regex(err, /demo --jobs: SIGINT: stopping every process/);
  t.regex(err, /run the same command again \(same --out\) to resume/);
  for (const s of [0, 1]) t.true(existsSync(join(out, 'runs', `seed-${s}`, 'a', 'train', 'checkpoints', 'latest.json')), `seed ${s} left no checkpoint`);
  t.false(existsSync(join(out, 'results.json')));
  const again = spawnSync(process.execPath, run.args, { cwd: ROOT, env: env(), encoding: 'utf8', timeout: 300_000 });
  t.is(again.status, 0, again.stderr.slice(-3000));
  t.regex(again.stderr, /\[seeds 0\]\s+seed 0 \(a\): resuming sft from its checkpoint/);
  t.regex(again.stderr, /\[seeds 1\]\s+seed 1 \(a\): resuming sft from its checkpoint/);
  t.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).runs.map((r: { seed: number }) => r.seed), [0, 1]);
});

test('demo --jobs: when the parent is killed outright (SIGKILL), each child stops itself with a checkpoint', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'vp-demo-jobs-kill-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const run = await jobsTraining(out, 2000);
  t.true(run.training, run.err().slice(-2000));
  const pids = [...run.err().matchAll(/started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  t.is(pids.length, 2, run.err().slice(-2000));
  run.parent.kill('SIGKILL');
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const t0 = Date.now();
  while (pids.some(alive) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 200));
  for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
  t.false(pids.some(alive), 'a child outlived its parent by a minute');
  for (const s of [0, 1]) t.true(existsSync(join(out, 'runs', `seed-${s}`, 'a', 'train', 'checkpoints', 'latest.json')), `seed ${s} left no checkpoint`);
});
