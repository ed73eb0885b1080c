// vp.Trainer: stage 1 lowers the LM and contrastive losses, the plain-SFT
// switches give a batch without KIM sequences and a pure LM loss, stage 2
// raises the reward of a task with a known solution, resume continues the same
// trajectory exactly, Ctrl-C leaves a loadable checkpoint, metrics reach the
// callback, the stream and metrics.jsonl, and the evaluators agree with the
// model's own log-probs.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { runAndSignal } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'vp-trainer-'));
}

// A tiny world: 16x16 frames, 8 frames per clip, a model that trains in seconds.
const MODEL = { imageSize: 16, patchSize: 8, frames: 8, width: 48, layers: 2, heads: 4, kvHeads: 2, mlpRatio: 2, maxSeq: 256, tied: true };

let shared: string | undefined;
function dataset(): vp.Dataset {
  if (!shared) {
    shared = join(tmp(), 'data');
    vp.synthDataset(shared, { count: 24, seed: 5, frames: 8, size: 16, fps: 4 });
  }
  return vp.openDataset(shared);
}

async function model(seed = 1): Promise<vp.VideoLM> {
  const ds = dataset();
  return vp.VideoLM.create({ ...MODEL, tokenizer: vp.tokenizerForDataset(ds.annotations), seed });
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('stage 1 lowers the LM loss and the contrastive term', async (t) => {
  const m = await model();
  const events: vp.SftStepEvent[] = [];
  const tr = new vp.Trainer(m, { seed: 3, onStep: (e) => e.type === 'step' && e.stage === 'sft' && events.push(e) });
  const r = await tr.sft(dataset(), { steps: 40, batchSize: 6, lr: 3e-3 });
  t.is(r.status, 'done');
  t.is(r.steps, 40);
  t.is(events.length, 40);
  const first = events.slice(0, 4), last = events.slice(-4);
  t.true(mean(last.map((e) => e.lm)) < 0.6 * mean(first.map((e) => e.lm)), `lm ${mean(first.map((e) => e.lm))} -> ${mean(last.map((e) => e.lm))}`);
  t.true(events.every((e) => e.contrastSamples > 0 && e.kimSequences > 0), 'every step has contrastive samples and KIM sequences');
  t.true(mean(last.map((e) => e.nce)) < mean(first.map((e) => e.nce)) - 0.1, `nce ${mean(first.map((e) => e.nce))} -> ${mean(last.map((e) => e.nce))}`);
  for (const e of events) t.true(Math.abs(e.loss - (e.lm + 0.5 * e.nce)) < 1e-9);
  t.true(events.every((e) => e.tokensPerSec > 0 && Number.isFinite(e.gradNorm)));
  // Warmup then cosine: the schedule's shape.
  t.true(events[0].lr < events[2].lr && events[39].lr < events[20].lr);
  m.dispose();
});

test('kim: false, contrastive: false is plain SFT: no B sequences, pure LM loss', async (t) => {
  const m = await model();
  const tr = new vp.Trainer(m, { seed: 3 });
  const ds = dataset();
  const clips = [0, 1, 2, 3].map((i) => tr.clip(ds, i));
  const plain = tr.sftBatch(clips, { kim: false, contrastive: false });
  t.is(plain.kimSequences, 0);
  t.is(plain.groups.length, 0);
  // One sequence A per task (the caption and each question), all starting with the video.
  const tasks = clips.reduce((a, c) => a + vp.clipTasks(c.annotation).length, 0);
  t.is(plain.batch.sequences.length, tasks);
  t.true(plain.batch.sequences.every((s) => 'video' in s[0] && !('frames' in s[0] && s[0].frames)));
  const full = tr.sftBatch(clips);
  t.true(full.kimSequences > 0);
  t.is(full.batch.sequences.length, tasks + full.kimSequences);
  t.true(full.batch.sequences.some((s) => s.length === 1 && 'frames' in s[0] && s[0].frames instanceof Int32Array));
  // The KIM frame map moves the key frames' tokens: the negative rows are the positive rows shifted into B.
  for (const g of full.groups) {
    t.is(g.negative.length, g.positive.length);
    t.true(g.query.length > 0 && g.positive.length > 0);
  }
  const events: vp.SftStepEvent[] = [];
  const tr2 = new vp.Trainer(m, { seed: 3, onStep: (e) => e.type === 'step' && e.stage === 'sft' && events.push(e) });
  await tr2.sft(ds, { steps: 3, batchSize: 4, kim: false, contrastive: false });
  for (const e of events) {
    t.is(e.nce, 0);
    t.is(e.kimSequences, 0);
    t.is(e.contrastSamples, 0);
    t.is(e.loss, e.lm);
  }
  m.dispose();
});

test('stage 2 raises the mean reward of a task with a known solution (say "red")', async (t) => {
  const m = await model(2);
  const red = m.tokenizer!.tokenToId('red');
  t.truthy(red);
  const events: vp.RlStepEvent[] = [];
  const tr = new vp.Trainer(m, { seed: 9, onStep: (e) => e.type === 'step' && e.stage === 'rl' && events.push(e) });
  const reward: vp.RewardFunction = (x) => (x.response.split(' ').includes('red') ? 1 : 0);
  const r = await tr.rl(dataset(), { steps: 36, promptsPerStep: 4, groupSize: 6, lr: 1e-2, maxTokens: 6, reward, tasks: 'caption' });
  t.is(r.status, 'done');
  const first = mean(events.slice(0, 6).map((e) => e.reward));
  const last = mean(events.slice(-6).map((e) => e.reward));
  t.true(last > first + 0.25, `reward ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  t.true(events.some((e) => Number.isFinite(e.rewardDegraded)), 'KIM rollouts were scored');
  t.true(events.every((e) => e.responseLength >= 1 && e.responseLength <= 6));
  m.dispose();
});

test('resume from a checkpoint reproduces the next steps exactly (SFT and RL)', async (t) => {
  const run = tmp();
  const ds = dataset();
  const sftOpts: vp.SftOptions = { steps: 6, batchSize: 4, lr: 2e-3 };
  const rlOpts: vp.RlOptions = { steps: 4, promptsPerStep: 2, groupSize: 3, maxTokens: 5, lr: 1e-3, beta: 0.02 };
  const log: vp.MetricEvent[] = [];
  const a = await model();
  const ta = new vp.Trainer(a, { seed: 4, runDir: run, checkpointEvery: 3, onStep: (e) => log.push(e) });
  await ta.sft(ds, sftOpts);
  await ta.rl(ds, { ...rlOpts });
  const steps = log.filter((e): e is vp.SftStepEvent | vp.RlStepEvent => e.type === 'step');
  t.deepEqual(log.filter((e) => e.type === 'checkpoint').map((e) => (e as vp.CheckpointEvent).path.split('/').pop()), ['sft-000003', 'sft-000006', 'rl-000003', 'rl-000004']);

  // A fresh trainer resumed from SFT step 3 continues SFT, then RL, identically.
  const b = await model(77); // different init: everything must come from the checkpoint
  const log2: vp.MetricEvent[] = [];
  const tb = new vp.Trainer(b, { seed: 4, onStep: (e) => log2.push(e) });
  const info = await tb.resume(join(run, 'checkpoints', 'sft-000003'));
  t.deepEqual([info.stage, info.step, info.finished], ['sft', 3, false]);
  await tb.sft(ds, sftOpts);
  await tb.rl(ds, { ...rlOpts });
  const steps2 = log2.filter((e): e is vp.SftStepEvent | vp.RlStepEvent => e.type === 'step');
  t.deepEqual(steps2.map((e) => `${e.stage}${e.step}`), ['sft4', 'sft5', 'sft6', 'rl1', 'rl2', 'rl3', 'rl4']);
  for (const e of steps2) {
    const ref = steps.find((x) => x.stage === e.stage && x.step === e.step)!;
    t.is(e.loss, ref.loss, `${e.stage} step ${e.step} loss`);
    t.is(e.gradNorm, ref.gradNorm, `${e.stage} step ${e.step} grad norm`);
  }
  t.deepEqual(b.getBuffer('params'), a.getBuffer('params'));

  // From an RL checkpoint, sft() then rl() (what `videoperceiver train --resume` does): SFT is
  // skipped, RL continues at its next step.
  const e = await model(78);
  const log3: vp.MetricEvent[] = [];
  const te = new vp.Trainer(e, { seed: 4, onStep: (ev) => log3.push(ev) });
  await te.resume(join(run, 'checkpoints', 'rl-000003'));
  t.is((await te.sft(ds, sftOpts)).steps, 6);
  await te.rl(ds, { ...rlOpts });
  const steps3 = log3.filter((x): x is vp.RlStepEvent => x.type === 'step');
  t.deepEqual(steps3.map((x) => `${x.stage}${x.step}`), ['rl4']);
  t.is(steps3[0].loss, steps.find((x) => x.stage === 'rl' && x.step === 4)!.loss);
  t.deepEqual(e.getBuffer('params'), a.getBuffer('params'));
  e.dispose();
  te.dispose();

  // Resuming the run folder picks its latest checkpoint (RL finished): nothing left to do.
  const c = await model();
  const tc = new vp.Trainer(c, { seed: 4 });
  const latest = await tc.resume(run);
  t.deepEqual([latest.stage, latest.step, latest.finished], ['rl', 4, true]);
  t.is((await tc.rl(ds, rlOpts)).steps, 4);
  t.deepEqual(c.getBuffer('params'), a.getBuffer('params'));
  // metrics.jsonl holds every event in order.
  const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(lines.filter((l) => l.type === 'step').length, 10);
  // A mismatched seed or a corrupt checkpoint is refused with a clear error.
  const d = await model();
  await t.throwsAsync(new vp.Trainer(d, { seed: 5 }).resume(run), { message: /options\.seed.*4/ });
  writeFileSync(join(run, 'checkpoints', 'sft-000003', 'trainer.json'), '{"format":"nope"}');
  await t.throwsAsync(new vp.Trainer(d, { seed: 4 }).resume(join(run, 'checkpoints', 'sft-000003')), { message: /not a videoperceiver\.Trainer state/ });
  await t.throwsAsync(new vp.Trainer(d, { seed: 4 }).resume(join(run, 'nowhere')), { message: /neither a trainer checkpoint/ });
  for (const x of [a, b, c, d]) x.dispose();
  ta.dispose();
  tb.dispose();
});

test('the metric stream yields the same events as onStep and ends with the stage', async (t) => {
  const m = await model();
  const seen: vp.MetricEvent[] = [];
  const tr = new vp.Trainer(m, { onStep: (e) => seen.push(e) });
  const streamed: vp.MetricEvent[] = [];
  const reader = (async () => {
    for await (const e of tr.metrics()) streamed.push(e);
  })();
  await tr.sft(dataset(), { steps: 3, batchSize: 3 });
  await reader;
  t.is(streamed.length, 3);
  t.deepEqual(streamed, seen);
  m.dispose();
});

test('Ctrl-C during training writes a loadable checkpoint, then the process exits as interrupted', async (t) => {
  const run = tmp();
  const script = join(run, 'train.mts');
  writeFileSync(script, `
import * as vp from ${JSON.stringify(join(ROOT, 'lib', 'index.ts'))};
const ds = vp.openDataset(${JSON.stringify(dataset().dir)});
const model = await vp.VideoLM.create({ ...${JSON.stringify(MODEL)}, tokenizer: vp.tokenizerForDataset(ds.annotations) });
const tr = new vp.Trainer(model, { runDir: ${JSON.stringify(run)}, onStep: (e) => console.log(JSON.stringify(e)) });
await tr.sft(ds, { steps: 100000, batchSize: 2 });
`);
  const { code, signal, err } = await runAndSignal([script], ROOT, (e) => e.type === 'step', 'SIGINT');
  t.true(signal === 'SIGINT' || code === 130, `exit ${code} ${signal}: ${err.slice(-400)}`);
  t.regex(err, /writing a checkpoint/);
  const latest = JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8'));
  t.is(latest.stage, 'sft');
  t.true(latest.step >= 1);
  const dir = join(run, 'checkpoints', latest.checkpoint);
  const loaded = await vp.VideoLM.load(dir);
  t.is(loaded.step, latest.step);
  t.true(existsSync(join(dir, 'trainer.json')));
  loaded.dispose();
});

test('evaluators: option scores are the mean (or summed) log-probs of option + <eos>; captions are scored by keyword recall', async (t) => {
  const m = await model();
  const tr = new vp.Trainer(m);
  const ds = dataset();
  const clips = [0, 1, 2].map((i) => tr.clip(ds, i));
  const qs = await vp.evaluateMultipleChoice(m, clips, { batchSize: 5 });
  t.is(qs.length, clips.reduce((a, c) => a + (c.annotation.questions?.length ?? 0), 0));
  // Recompute one option's score directly.
  const q = qs[0];
  const tok = m.tokenizer!;
  const prompt = tok.encode(vp.questionPrompt({ question: q.question }));
  const opt = tok.encode(q.options[1]);
  const text = Int32Array.from([1, ...prompt, ...opt, 2]);
  const lp = await m.sequenceLogprobs({ videos: clips[0].frames, text, sequences: [[{ video: 0 }, { text: [0, text.length] }]] });
  let s = 0;
  for (let j = prompt.length; j < text.length - 1; j++) s += lp[j];
  const mean = s / (opt.length + 1);
  t.true(Math.abs(mean - q.scores[1]) < 1e-4 * Math.max(1, Math.abs(mean)), `${mean} vs ${q.scores[1]}`);
  const summed = await vp.evaluateMultipleChoice(m, clips.slice(0, 1), { optionScore: 'sum' });
  t.true(Math.abs(s - summed[0].scores[1]) < 1e-4 * Math.max(1, Math.abs(s)), `${s} vs ${summed[0].scores[1]}`);
  t.is(q.predicted, q.scores.indexOf(Math.max(...q.scores)));
  const ev = await tr.evaluate(ds, { maxTokens: 4 });
  t.is(ev.summary.questions, 48);
  t.is(ev.summary.captions, 24);
  t.true(ev.summary.accuracy >= 0 && ev.summary.accuracy <= 1);
  t.true('accuracy_event' in ev.summary && 'accuracy_motion' in ev.summary);
  t.true(ev.captions.every((c) => typeof c.generated === 'string'));
  m.dispose();
});

test('bad input: clear errors naming the argument', async (t) => {
  const plain = await vp.VideoLM.create({ ...MODEL, vocab: 64 });
  t.throws(() => new vp.Trainer(plain), { message: /model\.tokenizer/ });
  const m = await model();
  t.throws(() => new vp.Trainer(m, { checkpointEvery: 2 }), { message: /checkpointEvery/ });
  t.throws(() => new vp.Trainer(m, { seed: -1 }), { message: /options\.seed/ });
  const tr = new vp.Trainer(m);
  await t.throwsAsync(tr.sft([] as vp.VideoSample[]), { message: /dataset/ });
  await t.throwsAsync(tr.sft(dataset(), { batchSize: 0 }), { message: /opts\.batchSize/ });
  await t.throwsAsync(tr.sft(dataset(), { tapLayer: 9 }), { message: /opts\.tapLayer/ });
  await t.throwsAsync(tr.rl(dataset(), { groupSize: 1 }), { message: /opts\.groupSize/ });
  await t.throwsAsync(tr.rl(dataset(), { comparative: 'best' as never }), { message: /opts\.comparative/ });
  await t.throwsAsync(tr.sft({ length: 3 } as never), { message: /dataset/ });
  plain.dispose();
  m.dispose();
});
