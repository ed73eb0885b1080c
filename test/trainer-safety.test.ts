// What keeps a run's work safe: checkpoints are never rewritten (a resume of a
// two-stage run interrupted during RL leaves the SFT checkpoints byte for byte
// as they were, and metrics.jsonl has one event per checkpoint); a run folder
// with later checkpoints is not trained into again; retention keeps the newest,
// the best and the last; training_args.json holds the resolved options and a
// resume that changes one is refused unless overridden; a clip deleted mid-run
// or a diverging loss stops training with the last good state saved and named;
// SIGTERM checkpoints like Ctrl-C; a batch that cannot fit in memory is refused
// before anything is allocated.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { CheckpointStore } from '../lib/train/checkpoints.js';
import { fileHashes, runAndSignal } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');
const MODEL = { imageSize: 16, patchSize: 8, frames: 4, width: 32, layers: 2, heads: 2, kvHeads: 1, mlpRatio: 2, maxSeq: 128, tied: true };
const SFT: vp.SftOptions = { steps: 4, batchSize: 2, lr: 2e-3 };
const RL: vp.RlOptions = { steps: 3, promptsPerStep: 2, groupSize: 2, maxTokens: 4, lr: 1e-3 };

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'vp-safety-'));
}

let shared: string | undefined;
function dataDir(): string {
  if (!shared) {
    shared = join(tmp(), 'data');
    vp.synthDataset(shared, { count: 12, seed: 3, frames: 4, size: 16, fps: 4 });
  }
  return shared;
}

async function model(ds: vp.Dataset, seed = 1): Promise<vp.VideoLM> {
  return vp.VideoLM.create({ ...MODEL, tokenizer: vp.tokenizerForDataset(ds.annotations), seed });
}

const hashes = (dir: string) => fileHashes(dir);

function events(run: string): vp.MetricEvent[] {
  return readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

test('resuming a two-stage run interrupted in RL rewrites no checkpoint and logs each checkpoint once', async (t) => {
  const run = tmp();
  const ds = vp.openDataset(dataDir());
  const a = await model(ds);
  const stop = new AbortController();
  const ta = new vp.Trainer(a, { seed: 2, runDir: run, checkpointEvery: 2, onStep: (e) => e.type === 'step' && e.stage === 'rl' && e.step === 1 && stop.abort() });
  t.is((await ta.sft(ds, SFT)).status, 'done');
  t.is((await ta.rl(ds, { ...RL, signal: stop.signal })).status, 'aborted');
  ta.dispose();
  a.dispose();
  const before = hashes(join(run, 'checkpoints'));
  t.true([...before.keys()].some((k) => k.startsWith('sft-000004/')));
  t.true([...before.keys()].some((k) => k.startsWith('rl-000001/')));

  const b = await model(ds, 9);
  const tb = new vp.Trainer(b, { seed: 2, runDir: run, checkpointEvery: 2 });
  await tb.resume(run);
  const s = await tb.sft(ds, SFT);
  t.is(s.steps, 4);
  t.is(s.checkpoint, undefined); // nothing trained, nothing written
  t.is((await tb.rl(ds, RL)).status, 'done');
  const after = hashes(join(run, 'checkpoints'));
  for (const [file, h] of before) if (file !== 'latest.json') t.is(after.get(file), h, `${file} changed`);
  const ckpts = events(run).filter((e) => e.type === 'checkpoint').map((e) => `${e.stage}-${e.step}`);
  t.deepEqual(ckpts, [...new Set(ckpts)]);
  t.deepEqual(ckpts, ['sft-2', 'sft-4', 'rl-1', 'rl-2', 'rl-3']);
  // Training into the same folder again without resuming would rewrite its checkpoints: refused before any step.
  const c = await model(ds);
  await t.throwsAsync(new vp.Trainer(c, { seed: 2, runDir: run }).sft(ds, SFT), { instanceOf: vp.CheckpointError, message: /already holds sft-000002, sft-000004, rl-000001.*never rewritten/ });
  t.deepEqual(hashes(join(run, 'checkpoints')), after);
  for (const m of [b, c]) m.dispose();
  tb.dispose();
});

test('training_args.json holds the resolved options; a resume that changes one is refused unless overridden', async (t) => {
  const run = tmp();
  const ds = vp.openDataset(dataDir());
  const a = await model(ds);
  const stop = new AbortController();
  const ta = new vp.Trainer(a, { seed: 2, runDir: run, onStep: (e) => e.type === 'step' && e.step === 2 && stop.abort() });
  await ta.sft(ds, { ...SFT, signal: stop.signal });
  const args = JSON.parse(readFileSync(join(run, 'training_args.json'), 'utf8'));
  t.like(args, { format: 'videoperceiver.TrainingArgs', seed: 2, contrastDim: 64, sft: { steps: 4, batchSize: 2, gradAccum: 1, lr: 2e-3, minLr: 2e-4, lambda: 0.5, kim: true, questions: true } });
  t.deepEqual(JSON.parse(readFileSync(join(run, 'checkpoints', 'sft-000002', 'training_args.json'), 'utf8')), args);

  const b = await model(ds);
  const tb = new vp.Trainer(b, { seed: 2, runDir: run });
  await tb.resume(run);
  const e = await t.throwsAsync(tb.sft(ds, { ...SFT, lr: 0.01, batchSize: 3 }), { instanceOf: RangeError });
  t.regex(e!.message, /trained with other hyper-parameters \(batchSize 2 → 3, lr 0\.002 → 0\.01, minLr 0\.0002 → 0\.001;.*override: true.*--override/);
  t.is((await tb.sft(ds, SFT)).status, 'done'); // the same options go on
  const c = await model(ds);
  const tc = new vp.Trainer(c, { seed: 2, runDir: join(run, 'other') });
  await tc.resume(join(run, 'checkpoints', 'sft-000002'), { override: true });
  t.is((await tc.sft(ds, { ...SFT, lr: 0.01 })).status, 'done');
  const saved = JSON.parse(readFileSync(join(run, 'other', 'training_args.json'), 'utf8'));
  t.is(saved.sft.lr, 0.01);
  t.deepEqual(saved.overrides, [{ stage: 'sft', step: 2, key: 'lr', from: 0.002, to: 0.01 }, { stage: 'sft', step: 2, key: 'minLr', from: 0.0002, to: 0.001 }]);
  for (const m of [a, b, c]) m.dispose();
});

test('retention keeps the newest N, and always the best and the last', async (t) => {
  const run = tmp();
  const store = new CheckpointStore(run, 2);
  const write = (stage: 'sft' | 'rl', step: number, value: number) =>
    store.write({ format: 'videoperceiver.Trainer', version: 1, stage, step, finished: false, seed: 0, totalSteps: 9, metric: { name: stage === 'sft' ? 'loss' : 'reward', value } },
      { format: 'videoperceiver.TrainingArgs', seed: 0, contrastDim: 1 }, async (dir) => {
        mkdirSync(dir);
        writeFileSync(join(dir, 'x'), 'x');
      });
  for (const [step, loss] of [[1, 3], [2, 1], [3, 2], [4, 2.5], [5, 2.2]] as const) await write('sft', step, loss);
  t.deepEqual(store.list(), ['sft-000002', 'sft-000004', 'sft-000005']); // best (lowest loss) + 2 newest
  for (const [step, reward] of [[1, 0.1], [2, 0.9], [3, 0.2], [4, 0.3]] as const) await write('rl', step, reward);
  t.deepEqual(store.list(), ['sft-000002', 'rl-000002', 'rl-000003', 'rl-000004']);
  t.is(JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8')).checkpoint, 'rl-000004');
  await t.throwsAsync(write('rl', 4, 1), { message: /rl-000004: already exists; a checkpoint is never rewritten/ });

  // Through the trainer: 6 SFT steps, a checkpoint each, at most 2 kept plus the best.
  const ds = vp.openDataset(dataDir());
  const m = await model(ds);
  const run2 = tmp();
  await new vp.Trainer(m, { seed: 1, runDir: run2, checkpointEvery: 1, saveTotalLimit: 2 }).sft(ds, { ...SFT, steps: 6 });
  const left = readdirSync(join(run2, 'checkpoints')).filter((n) => n.startsWith('sft-'));
  t.true(left.length >= 2 && left.length <= 3, left.join(', '));
  t.true(left.includes('sft-000006') && left.includes('sft-000005'));
  m.dispose();
});

test('a clip deleted mid-run: training stops with the last good state saved and named', async (t) => {
  const dir = join(tmp(), 'data');
  vp.synthDataset(dir, { count: 12, seed: 4, frames: 4, size: 16, fps: 4 });
  const ds = vp.openDataset(dir);
  const run = tmp();
  const m = await model(ds);
  const tr = new vp.Trainer(m, {
    seed: 1, runDir: run,
    onStep: (e) => {
      if (e.type === 'step' && e.step === 2) for (const f of readdirSync(join(dir, 'clips'))) rmSync(join(dir, 'clips', f));
    },
  });
  const e = await t.throwsAsync(tr.sft(ds, { ...SFT, steps: 6 }));
  t.regex(e!.message, /clip file not found: .*\.npy/);
  t.regex(e!.message, /Trainer\.sft stopped at step 3; the last good checkpoint is .*sft-000002/);
  const state = JSON.parse(readFileSync(join(run, 'checkpoints', 'sft-000002', 'trainer.json'), 'utf8'));
  t.like(state, { stage: 'sft', step: 2, finished: false });
  t.like(events(run).at(-1), { type: 'checkpoint', step: 2, reason: 'error' });
  const back = await vp.VideoLM.load(join(run, 'checkpoints', 'sft-000002'));
  t.is(back.step, 2);
  back.dispose();
  m.dispose();
});

test('divergence: "loss diverged at step N" with the last good checkpoint, in SFT and in RL', async (t) => {
  const ds = vp.openDataset(dataDir());
  // A learning rate of 1e30 makes the weights enormous after one step: the next forward overflows.
  const run = tmp();
  const m = await model(ds);
  const e = await t.throwsAsync(new vp.Trainer(m, { seed: 1, runDir: run }).sft(ds, { ...SFT, lr: 1e30, warmupSteps: 0 }), { instanceOf: vp.DivergenceError });
  t.regex(e!.message, /^Trainer\.sft: loss diverged at step 2 of SFT \(.+\); last good checkpoint: .*sft-000001$/);
  t.is((e as vp.DivergenceError).step, 2);
  t.notRegex(e!.message, /infoNce|sample_tokens|row \d/);
  const run2 = tmp();
  const m2 = await model(ds);
  const tr = new vp.Trainer(m2, { seed: 1, runDir: run2 });
  await tr.sft(ds, { ...SFT, steps: 1 });
  // A reward that varies between responses, so the advantages (and the update) are not zero.
  const e2 = await t.throwsAsync(tr.rl(ds, { ...RL, lr: 1e30, reward: (x) => x.response.length }), { instanceOf: vp.DivergenceError });
  t.regex(e2!.message, /^Trainer\.rl: loss diverged at step 2 of RL \(.*\); last good checkpoint: .*rl-000001$/);
  t.notRegex(e2!.message, /sample_tokens|logits\[/);
  for (const x of [m, m2]) x.dispose();
});

test('a batch that cannot fit in memory is refused before anything is allocated (API and CLI)', async (t) => {
  const ds = vp.openDataset(dataDir());
  const m = await model(ds);
  const tr = new vp.Trainer(m);
  await t.throwsAsync(tr.sft(ds, { batchSize: 1e9 }), { instanceOf: RangeError, message: /Trainer\.sft: opts\.batchSize must be small enough for one step to fit in memory .* got 1000000000/ });
  await t.throwsAsync(tr.rl(ds, { promptsPerStep: 1e9 }), { instanceOf: RangeError, message: /opts\.promptsPerStep must be small enough/ });
  await t.throwsAsync(tr.sft(ds, { steps: 1e12 }), { instanceOf: RangeError, message: /opts\.steps/ });
  await t.throwsAsync(tr.sft(ds, { batchsize: 2 } as vp.SftOptions), { instanceOf: TypeError, message: /opts\.batchsize is not an option; did you mean batchSize\?/ });
  m.dispose();
  const r = await runCli(['train', '--data', dataDir(), '--out', join(tmp(), 'run'), '--batch-size', '1000000000', '--steps', '1']);
  t.is(r.code, 2, r.err);
  t.regex(r.err, /train: --batch-size must be small enough for one step to fit in memory/);
});

function runCli(args: string[]): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), ...args], { cwd: ROOT });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code, signal) => res({ code, signal, out, err }));
  });
}

test('SIGTERM during training writes a checkpoint like Ctrl-C, then the process exits as terminated; a changed option is refused on --resume', async (t) => {
  const run = join(tmp(), 'run');
  const config = join(tmp(), 'tiny.json');
  writeFileSync(config, JSON.stringify({ model: MODEL }));
  const args = ['train', '--data', dataDir(), '--out', run, '--stage', 'sft', '--steps', '400', '--batch-size', '2', '--json', '--config', config];
  const { code, signal, err } = await runAndSignal([join(ROOT, 'lib', 'cli.ts'), ...args], ROOT, (e) => e.type === 'step', 'SIGTERM');
  t.true(code === 143 || signal === 'SIGTERM', `exit ${code} ${signal}: ${err.slice(-400)}`);
  t.regex(err, /SIGTERM: finishing the step and writing a checkpoint/);
  const latest = JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8'));
  t.is(latest.stage, 'sft');
  t.true(latest.step >= 1 && latest.step < 400);
  const r = await runCli(['train', '--data', dataDir(), '--out', run, '--stage', 'sft', '--steps', '400', '--batch-size', '3', '--resume', '--config', config]);
  t.is(r.code, 1);
  t.regex(r.err, /batchSize 2 → 3/);
});
