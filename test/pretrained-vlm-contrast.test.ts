// The contrastive tap of the method on a vision-language PretrainedModel
// (lib/train/vlm-sft.ts): stage 1's batch holds, per clip with key frames and
// keywords, the caption sequence A and the KIM sequence B (its key frames
// substituted before the vision tower, no targets); the groups point at the
// caption's keyword tokens and the key frames' visual tokens in A and B. The
// InfoNCE term's gradient through the decoder, the connector and the
// embeddings is checked against finite differences of the loss; the term
// changes the gradient; contrastive: false gives the same batch and loss as
// before there was a term (vp.vlmTrainBatch of the same clip).
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { ContrastiveHead } from '../lib/train/contrastive.js';
import { decodedOffsets } from '../lib/train/vlm-sft.js';
import { IMAGE_ID, writeTinyVlm } from './vlm-fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vp-vlmnce-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

function folder(name: string, kind: 'smolvlm' | 'llava-siglip', seed: number): string {
  const dir = join(work, name);
  writeTinyVlm(dir, { kind, seed, layout: 'new' });
  return dir;
}

function data(name: string, count: number): vp.Dataset {
  const dir = join(work, name);
  vp.synthDataset(dir, { count, seed: 3, frames: 8, fps: 4 });
  return vp.openDataset(dir);
}

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);

test('decodedOffsets: each token\'s characters in the text, with or without a leading space the text lacks', (t) => {
  const pieces = ['a', ' red', ' ball', ' falls'];
  const decode = (ids: ArrayLike<number>) => Array.from(ids, (i) => pieces[i]).join('');
  t.deepEqual(Array.from(decodedOffsets(decode, Int32Array.of(0, 1, 2, 3), 'a red ball falls')), [0, 1, 1, 5, 5, 10, 10, 16]);
  t.deepEqual(Array.from(decodedOffsets(decode, Int32Array.of(1, 2), 'red ball')), [0, 3, 3, 8]);
});

test('stage 1 batch of a VLM: A and KIM sequence B per clip, groups at the keyword tokens and the key frames\' visual tokens', async (t) => {
  const m = await vp.loadPretrained(folder('smol-batch', 'smolvlm', 51));
  const tr = new vp.Trainer(m, { seed: 1 });
  const ds = data('d4', 4);
  const clips = [0, 1, 2, 3].map((i) => tr.clip(ds, i));
  const plain = tr.sftBatch(clips, { questions: false, contrastive: false });
  t.is(plain.kimSequences, 0);
  t.deepEqual(plain.groups, []);
  t.is(plain.batch.sequences.length, 4);
  const full = tr.sftBatch(clips, { questions: false });
  t.is(full.batch.sequences.length, 4 + full.kimSequences);
  t.true(full.groups.length >= 2, `${full.groups.length} groups; skipped ${JSON.stringify(full.skipped)}`);
  t.is(full.kimSequences, full.groups.length);
  // The A sequences are the plain batch's, in order; each clip's B sequence follows its tasks and has no targets.
  const seq = (bt: vp.TrainerSftBatch, i: number) => {
    const [s0, n] = bt.batch.sequences[i][0].text;
    return { text: Array.from(bt.batch.text.subarray(s0, s0 + n)), targets: Array.from(bt.batch.targets!.subarray(s0, s0 + n)) };
  };
  const kinds = full.batch.sequences.map((_, i) => (seq(full, i).targets.some((x) => x >= 0) ? 'A' : 'B'));
  t.is(kinds.filter((x) => x === 'B').length, full.kimSequences);
  t.is(kinds[0], 'A');
  t.deepEqual(kinds.map((x, i) => i).filter((i) => kinds[i] === 'A').map((i) => seq(full, i)), [0, 1, 2, 3].map((i) => seq(plain, i)));
  const px = full.batch.pixelValues!.data as Float32Array;
  const per = 3 * 16 * 16;
  const k = 4; // visual tokens per frame: (16 / 4)² patches, pixel shuffle by 2
  for (const g of full.groups) {
    // Query: the caption's keyword tokens; keys: the image-token rows of whole frames, B's at the same offsets as A's.
    t.true(g.query.length > 0 && g.positive.length > 0 && g.positive.length % k === 0);
    t.is(g.negative.length, g.positive.length);
    t.true(g.positive.every((r) => full.batch.text[r] === IMAGE_ID) && g.negative.every((r) => full.batch.text[r] === IMAGE_ID));
    const seqOf = (r: number) => full.batch.sequences.findIndex(([s]) => r >= s.text[0] && r < s.text[0] + s.text[1]);
    const a = seqOf(g.positive[0]), b = seqOf(g.negative[0]);
    t.is(kinds[a], 'A');
    t.is(b, a + 1);
    g.positive.forEach((r, i) => t.is(g.negative[i] - full.batch.sequences[b][0].text[0], r - full.batch.sequences[a][0].text[0]));
    const word = m.tokenizer.decode(g.query.map((r) => full.batch.text[r])).trim().toLowerCase();
    const kws = vp.clipTasks(clips[kinds.slice(0, a).filter((x) => x === 'A').length].annotation)[0].response.toLowerCase();
    t.true(word.split(/\s+/).every((w) => kws.includes(w)), `query "${word}" is in the caption`);
    // The KIM variant's key frames show another frame's pixels: the negative frame's pixels differ from the positive's.
    const imgOf = (r: number) => {
      let n = 0;
      for (let i = 0; i < r; i++) if (full.batch.text[i] === IMAGE_ID) n++;
      return Math.floor(n / k);
    };
    const pa = px.subarray(imgOf(g.positive[0]) * per, (imgOf(g.positive[0]) + 1) * per);
    const pb = px.subarray(imgOf(g.negative[0]) * per, (imgOf(g.negative[0]) + 1) * per);
    t.true(pa.some((x, i) => x !== pb[i]));
  }
  await t.throwsAsync(tr.sft(ds, { steps: 1, kimFramePosition: 'source' }), { instanceOf: RangeError, message: /opts\.kimFramePosition/ });
  m.dispose();
});

test('the contrastive gradient of a VLM matches finite differences (connector and a decoder layer below the tap), and changes the gradient', async (t) => {
  const m = await vp.loadPretrained(folder('llava-fd', 'llava-siglip', 52));
  const tr = new vp.Trainer(m, { seed: 2, contrastDim: 8 });
  const ds = data('d3', 3);
  const b = tr.sftBatch([0, 1, 2].map((i) => tr.clip(ds, i)), { questions: false });
  t.true(b.groups.length >= 2, `${b.groups.length} groups`);
  const tapRows = ContrastiveHead.tapRows(b.groups);
  const tapLayer = 1;
  const tau = 0.5, lambda = 0.7;
  const nce = async () => {
    const f = await m.forward(b.batch, { tapRows, tapLayer, forBackward: false });
    return { lm: f.loss, nce: tr.head.forwardBackward(b.groups, f.tap, tau, lambda).loss };
  };
  // Analytic: the contrastive term alone (gradLoss 0), then LM + λ·NCE, then LM alone.
  const f0 = await m.forward(b.batch, { tapRows, tapLayer });
  const r0 = tr.head.forwardBackward(b.groups, f0.tap, tau, lambda);
  await m.backward({ gradLoss: 0, dTap: r0.dTap });
  const gNce = m.gradients();
  await m.forward(b.batch, { tapRows, tapLayer });
  await m.backward({ gradLoss: 1, dTap: r0.dTap });
  const gAll = m.gradients();
  await m.forward(b.batch);
  await m.backward({ gradLoss: 1 });
  const gLm = m.gradients();
  const names = ['model.multi_modal_projector.linear_1.weight', 'model.language_model.layers.0.mlp.up_proj.weight'];
  const params = m.parameters();
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff) * 2 - 1;
  for (const name of names) {
    t.truthy(gNce[name], name);
    const p0 = params[name];
    const u = Float32Array.from(p0, () => rnd());
    const norm = Math.hypot(...u);
    u.forEach((x, i) => (u[i] = x / norm));
    const eps = 2e-2;
    const at = async (s: number) => {
      m.setParameters({ [name]: Float32Array.from(p0, (x, i) => x + s * eps * u[i]) });
      return nce();
    };
    const [plus, minus] = [await at(1), await at(-1)];
    m.setParameters({ [name]: p0 });
    const fdNce = (lambda * (plus.nce - minus.nce)) / (2 * eps);
    const fdAll = (plus.lm - minus.lm) / (2 * eps) + fdNce;
    const anNce = dot(gNce[name], u), anAll = dot(gAll[name], u);
    t.log(`${name}: NCE ${anNce.toExponential(4)} vs fd ${fdNce.toExponential(4)}; LM+NCE ${anAll.toExponential(4)} vs fd ${fdAll.toExponential(4)}`);
    t.true(Math.abs(anNce) > 1e-4, `${name}: a contrastive gradient to check (${anNce})`);
    t.true(Math.abs(fdNce - anNce) <= 5e-3 * Math.abs(anNce), `${name}: NCE directional derivative ${anNce} vs finite differences ${fdNce}`);
    t.true(Math.abs(fdAll - anAll) <= 5e-3 * Math.abs(anAll), `${name}: LM + NCE directional derivative ${anAll} vs finite differences ${fdAll}`);
    // The term changes the gradient, by what it adds.
    const diff = gAll[name].reduce((s, x, i) => s + Math.abs(x - gLm[name][i]), 0);
    t.true(diff > 1e-3, `${name}: the contrastive term changes the gradient (${diff})`);
    gAll[name].forEach((x, i) => {
      if (Math.abs(x - (gLm[name][i] + gNce[name][i])) > 1e-5 + 1e-4 * Math.abs(x)) t.fail(`${name}[${i}]: ${x} != ${gLm[name][i]} + ${gNce[name][i]}`);
    });
  }
  // The vision tower is frozen: no gradient; the last layer (above the tap) gets none from the term.
  t.false(Object.keys(gNce).some((n) => n.includes('vision_tower')));
  t.true(gNce['model.language_model.layers.1.mlp.up_proj.weight'].every((x) => x === 0));
  m.dispose();
});

test('contrastive: false reproduces the plain SFT loss exactly; on, the step adds λ·NCE and trains the contrastive term', async (t) => {
  const dir = folder('smol-loss', 'smolvlm', 53);
  const ds = data('d1', 1);
  const run = async (opts: vp.SftOptions) => {
    const m = await vp.loadPretrained(dir);
    m.addLora({ rank: 2 });
    const ev: vp.SftStepEvent[] = [];
    const tr = new vp.Trainer(m, { seed: 1, onStep: (e) => e.type === 'step' && ev.push(e as vp.SftStepEvent) });
    await tr.sft(ds, { steps: 3, batchSize: 1, questions: false, lr: 1e-2, ...opts });
    return { m, tr, ev };
  };
  const off = await run({ contrastive: false });
  // The loss as it was before the term: the clip's caption batch (vp.vlmTrainBatch), on the untrained model.
  const ref = await vp.loadPretrained(dir);
  ref.addLora({ rank: 2 });
  const c = new vp.Trainer(ref).clip(ds, 0);
  const batch = vp.vlmTrainBatch(ref, [{ video: { data: c.frames, shape: [8, 16, 16, 3] }, prompt: vp.CAPTION_PROMPT, response: c.annotation.caption }]);
  t.deepEqual(Array.from(off.tr.sftBatch([c], { questions: false, contrastive: false }).batch.text), Array.from(batch.text));
  const plain = await ref.forward(batch, { forBackward: false });
  t.is(off.ev[0].loss, plain.loss);
  for (const e of off.ev) {
    t.is(e.nce, 0);
    t.is(e.loss, e.lm);
    t.is(e.kimSequences, 0);
    t.is(e.contrastSamples, 0);
  }
  const on = await run({ lambda: 0.5, temperature: 0.1 });
  t.true(on.ev.every((e) => e.contrastSamples === 1 && e.kimSequences === 1 && e.nce > 0), JSON.stringify(on.ev));
  for (const e of on.ev) t.true(Math.abs(e.loss - (e.lm + 0.5 * e.nce)) < 1e-9);
  // Step 1's LM loss is the plain one (the B sequence has no targets); the update differs.
  t.true(Math.abs(on.ev[0].lm - plain.loss) <= 1e-6 * plain.loss, `${on.ev[0].lm} vs ${plain.loss}`);
  t.not(on.ev[0].gradNorm, off.ev[0].gradNorm);
  t.not(on.ev[1].lm, off.ev[1].lm);
  // tapLayer is the option's: out of range is refused, like the built-in model's.
  await t.throwsAsync(on.tr.sft(ds, { steps: 4, tapLayer: 3 }), { instanceOf: RangeError, message: /opts\.tapLayer/ });
  for (const x of [off.m, on.m, ref]) x.dispose();
});
