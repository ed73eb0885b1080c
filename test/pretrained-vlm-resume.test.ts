// trainer.evaluate() and trainer.resume() with a vision-language
// PretrainedModel: evaluation returns the summary the built-in model's does
// (multiple-choice accuracy per question kind, counterfactual consistency on
// the clips' KIM copies, caption keyword recall and F1) and emits it as an
// 'eval' event; a run resumed from an SFT or an RL checkpoint (LoRA adapters,
// AdamW state, the contrastive projections, the RL reference) continues with
// the losses and gradient norms of the uninterrupted run, bit for bit, and
// ends with the same parameters.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { writeTinyVlm } from './vlm-fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vp-vlmres-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

const dataDir = join(work, 'data');
vp.synthDataset(dataDir, { count: 4, seed: 3, frames: 8, fps: 4 });
const modelDir = join(work, 'smol');
writeTinyVlm(modelDir, { kind: 'smolvlm', seed: 71 });

test('evaluate on a VLM: the built-in model\'s summary fields, counterfactuals on the KIM copies, an eval event', async (t) => {
  const ds = vp.openDataset(dataDir);
  const m = await vp.loadPretrained(modelDir);
  const events: vp.MetricEvent[] = [];
  const tr = new vp.Trainer(m, { seed: 1, onStep: (e) => events.push(e) });
  const r = await tr.evaluate(ds, { maxTokens: 4 });
  // The built-in model's summary on the same data has the same fields.
  const ref = await vp.VideoLM.create({ imageSize: 16, patchSize: 8, frames: 8, width: 32, layers: 1, heads: 2, kvHeads: 1, mlpRatio: 2, maxSeq: 256, tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 1 });
  const builtIn = await new vp.Trainer(ref, { seed: 1 }).evaluate(ds, { maxTokens: 4 });
  t.deepEqual(Object.keys(r.summary).sort(), Object.keys(builtIn.summary).sort());
  ref.dispose();
  const nq = ds.annotations.reduce((a, x) => a + (x.questions?.length ?? 0), 0);
  t.is(r.summary.questions, nq);
  t.is(r.summary.captions, 4);
  t.is(r.summary.accuracy, r.questions.filter((q) => q.predicted === q.answer).length / nq);
  for (const q of r.questions) {
    t.is(q.predicted, q.scores.indexOf(Math.max(...q.scores)));
    t.true(q.scores.every((s) => Number.isFinite(s) && s < 0));
  }
  // Counterfactual questions were scored on the KIM copy: other frames, other scores.
  const cf = r.questions.filter((q) => q.counterfactual);
  t.true(cf.length > 0);
  t.is(r.summary.counterfactualQuestions, cf.length);
  for (const q of cf) t.notDeepEqual(q.counterfactual!.scores, q.scores);
  t.true(r.captions.every((c, i) => typeof c.generated === 'string' && c.reference === ds.annotations[i].caption));
  const ev = events.find((e) => e.type === 'eval') as vp.EvalEvent;
  t.truthy(ev);
  t.is(ev.step, 0);
  for (const [k, v] of Object.entries(r.summary)) t.true(Object.is((ev as unknown as Record<string, number>)[k], v), k);
  m.dispose();
});

test('resume a VLM run (LoRA, contrastive term, RL with a reference) from SFT and RL checkpoints: the same losses, gradient norms and parameters', async (t) => {
  const ds = vp.openDataset(dataDir);
  const run = join(work, 'run');
  const sft: vp.SftOptions = { steps: 3, batchSize: 2, questions: 'one', lr: 1e-2 };
  const rl: vp.RlOptions = { steps: 2, promptsPerStep: 2, groupSize: 2, maxTokens: 3, beta: 0.05, lr: 1e-2, reward: (x) => (x.response.length % 3) / 2 };
  const fresh = async () => {
    const m = await vp.loadPretrained(modelDir);
    m.addLora({ rank: 2 });
    return m;
  };
  type Step = vp.SftStepEvent | vp.RlStepEvent;
  const trainRun = async (m: vp.PretrainedModel, from?: string, runDir?: string) => {
    const log: Step[] = [];
    const tr = new vp.Trainer(m, { seed: 5, runDir, checkpointEvery: runDir ? 1 : 0, onStep: (e) => e.type === 'step' && log.push(e) });
    if (from) await tr.resume(from);
    await tr.sft(ds, sft);
    await tr.rl(ds, rl);
    tr.dispose();
    return log;
  };
  const a = await fresh();
  const full = await trainRun(a, undefined, run);
  t.deepEqual(full.map((e) => `${e.stage}${e.step}`), ['sft1', 'sft2', 'sft3', 'rl1', 'rl2']);
  t.true(full.filter((e): e is vp.SftStepEvent => e.stage === 'sft').every((e) => e.contrastSamples > 0), 'the contrastive term was on');
  t.true(full.filter((e): e is vp.RlStepEvent => e.stage === 'rl').some((e) => e.loss !== 0), 'RL updated');
  const final = a.parameters();
  const same = (m: vp.PretrainedModel) => {
    const p = m.parameters();
    return Object.keys(final).every((k) => Buffer.from(p[k].buffer, p[k].byteOffset, p[k].byteLength).equals(Buffer.from(final[k].buffer, final[k].byteOffset, final[k].byteLength)));
  };
  for (const [from, expect] of [['sft-000002', ['sft3', 'rl1', 'rl2']], ['rl-000001', ['rl2']]] as const) {
    const b = await fresh();
    const log = await trainRun(b, join(run, 'checkpoints', from));
    t.deepEqual(log.map((e) => `${e.stage}${e.step}`), [...expect], from);
    for (const e of log) {
      const r = full.find((x) => x.stage === e.stage && x.step === e.step)!;
      t.is(e.loss, r.loss, `${from}: ${e.stage} step ${e.step} loss`);
      t.is(e.gradNorm, r.gradNorm, `${from}: ${e.stage} step ${e.step} grad norm`);
      if (e.stage === 'sft') t.is((e as vp.SftStepEvent).nce, (r as vp.SftStepEvent).nce);
    }
    t.true(same(b), `${from}: the same parameters at the end`);
    t.is(b.step, a.step);
    b.dispose();
  }
  a.dispose();
});
