// vp.Trainer with a VideoLM in mixed precision (computeDtype 'bfloat16'): the mode is
// recorded with each stage's hyper-parameters in training_args.json, a run resumed
// from an SFT checkpoint continues SFT and RL (whose frozen reference is reloaded in
// the same mode) bit for bit, and resuming it with a float32 model is refused unless
// overridden.
import test from 'ava';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';

const MODEL = { imageSize: 16, patchSize: 8, frames: 8, width: 48, layers: 2, heads: 4, kvHeads: 2, mlpRatio: 2, maxSeq: 256, tied: true };

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'vp-trainer-bf16-'));
}

const data = join(tmp(), 'data');
vp.synthDataset(data, { count: 16, seed: 6, frames: 8, size: 16, fps: 4 });

async function model(seed: number, computeDtype: vp.VideoLMComputeDtype): Promise<vp.VideoLM> {
  const ds = vp.openDataset(data);
  return vp.VideoLM.create({ ...MODEL, tokenizer: vp.tokenizerForDataset(ds.annotations), seed, computeDtype });
}

test('a bf16-compute run resumes bit for bit (SFT, then RL with a reference); a float32 model is refused', async (t) => {
  const ds = vp.openDataset(data);
  const run = tmp();
  const sftOpts: vp.SftOptions = { steps: 4, batchSize: 4, lr: 2e-3 };
  const rlOpts: vp.RlOptions = { steps: 3, promptsPerStep: 2, groupSize: 3, maxTokens: 4, lr: 1e-3, beta: 0.05 };
  const log: vp.MetricEvent[] = [];
  const a = await model(1, 'bfloat16');
  const ta = new vp.Trainer(a, { seed: 3, runDir: run, checkpointEvery: 2, onStep: (e) => log.push(e) });
  await ta.sft(ds, sftOpts);
  await ta.rl(ds, rlOpts);
  const args = JSON.parse(readFileSync(join(run, 'training_args.json'), 'utf8'));
  t.is(args.sft.computeDtype, 'bfloat16');
  t.is(args.rl.computeDtype, 'bfloat16');
  const steps = log.filter((e): e is vp.SftStepEvent | vp.RlStepEvent => e.type === 'step');

  const b = await model(9, 'bfloat16');
  const log2: vp.MetricEvent[] = [];
  const tb = new vp.Trainer(b, { seed: 3, onStep: (e) => log2.push(e) });
  await tb.resume(join(run, 'checkpoints', 'sft-000002'));
  await tb.sft(ds, sftOpts);
  await tb.rl(ds, rlOpts);
  const steps2 = log2.filter((e): e is vp.SftStepEvent | vp.RlStepEvent => e.type === 'step');
  t.deepEqual(steps2.map((e) => `${e.stage}${e.step}`), ['sft3', 'sft4', 'rl1', 'rl2', 'rl3']);
  for (const e of steps2) {
    const ref = steps.find((x) => x.stage === e.stage && x.step === e.step)!;
    t.is(e.loss, ref.loss, `${e.stage} step ${e.step} loss`);
    t.is(e.gradNorm, ref.gradNorm, `${e.stage} step ${e.step} grad norm`);
  }
  t.deepEqual(b.getBuffer('params'), a.getBuffer('params'));

  // From an RL checkpoint: the frozen reference is reloaded from it, in the model's compute dtype.
  const e = await model(10, 'bfloat16');
  const log3: vp.MetricEvent[] = [];
  const te = new vp.Trainer(e, { seed: 3, onStep: (ev) => log3.push(ev) });
  await te.resume(join(run, 'checkpoints', 'rl-000002'));
  await te.sft(ds, sftOpts);
  await te.rl(ds, rlOpts);
  const steps3 = log3.filter((x): x is vp.RlStepEvent => x.type === 'step');
  t.deepEqual(steps3.map((x) => `${x.stage}${x.step}`), ['rl3']);
  const ref3 = steps.find((x) => x.stage === 'rl' && x.step === 3) as vp.RlStepEvent;
  t.is(steps3[0].loss, ref3.loss);
  t.is(steps3[0].kl, ref3.kl);
  t.deepEqual(e.getBuffer('params'), a.getBuffer('params'));
  e.dispose();
  te.dispose();

  // The same checkpoint resumed with a float32 model: refused at the first stage, unless overridden.
  const c = await model(9, 'float32');
  const tc = new vp.Trainer(c, { seed: 3 });
  await tc.resume(join(run, 'checkpoints', 'sft-000002'));
  await t.throwsAsync(() => tc.sft(ds, sftOpts), { instanceOf: RangeError, message: /computeDtype "bfloat16" → unset/ });
  const d = await model(9, 'float32');
  const td = new vp.Trainer(d, { seed: 3 });
  await td.resume(join(run, 'checkpoints', 'sft-000002'), { override: true });
  t.is((await td.sft(ds, sftOpts)).steps, 4);
  for (const x of [a, b, c, d]) x.dispose();
  for (const x of [ta, tb, tc, td]) x.dispose();
});
