// The method's measurements: counterfactual consistency (an event question asked
// again on the clip's KIM copy), caption keyword F1, the question-kind filter,
// the synthetic colour question (the general-ability control), and keyInfo
// 'extracted' (keywords and key frames found without the annotations).
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { KimPlans } from '../lib/train/batch.js';
import { locateKeyFrames } from '../lib/kim/keyframes.js';

const SYN = { frames: 8, size: 16, fps: 4, objects: 1, objectScale: 1.6, colourQuestion: true, motionQuestion: false } as const;

function data(count: number, seed: number): vp.Dataset {
  const dir = mkdtempSync(join(tmpdir(), 'vp-meval-'));
  vp.synthDataset(dir, { ...SYN, count, seed });
  return vp.openDataset(dir);
}

async function model(ds: vp.Dataset): Promise<vp.VideoLM> {
  return vp.VideoLM.create({ imageSize: 16, patchSize: 8, frames: 8, width: 32, layers: 2, heads: 2, kvHeads: 1, ffn: 64, maxSeq: 128, tied: true, tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 2 });
}

test('synth colourQuestion: a colour question whose answer is the object colour; motionQuestion false drops the motion question', (t) => {
  const ds = data(12, 3);
  for (const a of ds.annotations) {
    const kinds = (a.questions ?? []).map((q) => (q as { kind?: string }).kind);
    t.deepEqual(kinds, ['event', 'colour']);
    const q = a.questions![1];
    t.is(q.options.length, 4);
    const colour = q.options[q.answer as number];
    t.true(a.caption.startsWith(`the ${colour} `), `${a.caption} / ${colour}`);
  }
  t.throws(() => vp.synthDataset(mkdtempSync(join(tmpdir(), 'vp-meval-')), { count: 1, colourQuestion: 'yes' as unknown as boolean }), { instanceOf: TypeError, message: /colourQuestion/ });
});

test('evaluate: counterfactual consistency from the KIM copy of each event clip, keyword F1, and the question-kind filter', async (t) => {
  const ds = data(16, 4);
  const m = await model(ds);
  const tr = new vp.Trainer(m, { seed: 0 });
  const ev = await tr.evaluate(ds, { maxTokens: 6 });
  const event = ev.questions.filter((q) => q.kind === 'event');
  const withEvent = ds.annotations.filter((a) => (a.events ?? []).length > 0).map((a) => a.id);
  // Exactly the event questions of clips with an event get a counterfactual, expecting "nothing happened".
  t.deepEqual(event.filter((q) => q.counterfactual).map((q) => q.id), withEvent);
  for (const q of event.filter((x) => x.counterfactual)) {
    const cf = q.counterfactual!;
    t.is(q.options[cf.expected], 'nothing happened');
    t.is(cf.scores.length, q.options.length);
    t.true(cf.scores.every(Number.isFinite));
    const clip = tr.clip(ds, ds.annotations.findIndex((a) => a.id === q.id));
    t.deepEqual(cf.keyFrames, locateKeyFrames(clip.frameTimes, clip.annotation.events as { start: number; end: number }[]));
  }
  const cfq = event.filter((q) => q.counterfactual);
  const consistent = cfq.filter((q) => q.predicted === q.answer && q.counterfactual!.predicted === q.counterfactual!.expected).length / cfq.length;
  t.is(ev.summary.counterfactualConsistency, consistent);
  t.is(ev.summary.counterfactualQuestions, cfq.length);
  t.true(ev.summary.keywordF1 >= 0 && ev.summary.keywordF1 <= 1);
  t.true(ev.captions.every((c) => c.f1 >= 0 && c.f1 <= 1));
  // The counterfactual scores differ from the original's: the KIM copy is a different video.
  t.true(cfq.some((q) => q.scores.some((s, i) => Math.abs(s - q.counterfactual!.scores[i]) > 1e-6)));
  const only = await tr.evaluate(ds, { captions: false, questionKinds: ['colour'], counterfactual: false });
  t.true(only.questions.length === ds.length && only.questions.every((q) => q.kind === 'colour' && !q.counterfactual));
  t.false('counterfactualConsistency' in only.summary);
  tr.dispose();
  m.dispose();
});

test("keyInfo 'extracted': keywords from the caption and key frames from the detector, not the annotations", async (t) => {
  const ds = data(24, 5);
  const m = await model(ds);
  const tr = new vp.Trainer(m, { seed: 0 });
  const tok = vp.tokenizerForDataset(ds.annotations);
  const annotated = new KimPlans(m.config, tok, { substitution: 'nearest', locator: 'transient', keyInfo: 'annotated' });
  const extracted = new KimPlans(m.config, tok, { substitution: 'nearest', locator: 'transient', keyInfo: 'extracted' });
  let events = 0;
  for (let i = 0; i < ds.length; i++) {
    const clip = tr.clip(ds, i);
    const a = annotated.get(clip).plan!;
    const x = extracted.get(clip).plan!;
    if (clip.annotation.events?.length) {
      events++;
      t.is(a.keywordSource, 'annotation');
      t.is(a.keyFrameSource, 'events');
    }
    t.not(x.keywordSource, 'annotation');
    t.true(x.keyFrameSource === 'transient' || x.keyFrameSource === 'none');
  }
  t.true(events > 0);
  await t.throwsAsync(() => tr.sft(ds, { steps: 1, keyInfo: 'labels' as 'annotated' }), { instanceOf: TypeError, message: /opts\.keyInfo/ });
  tr.dispose();
  m.dispose();
});
