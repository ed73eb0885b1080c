// vp.loadPretrained on tiny random Hugging Face folders (both architectures,
// tied and untied heads, a sharded index, F32/BF16/F16 storage, llama3 RoPE
// scaling, head_dim ≠ hidden/heads, biases): logits against an independent
// float64 reference of transformers' formulas (test/pretrained_reference.py),
// gradients against float64 finite differences of the same reference, packed
// batches, and KV-cache generation against recomputed logits.
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { seededRandom } from '../lib/random.js';
import { relError } from './helpers.js';
import { FIXTURES, haveNumpy, runReference, writeTinyModel, type ReferenceSpec } from './pretrained-fixtures.js';

const NUMPY = haveNumpy();

function fixture(name: keyof typeof FIXTURES | string): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-pt-${name}-`));
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

function randomIds(n: number, seed: number, vocab = 288): number[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

for (const name of Object.keys(FIXTURES)) {
  test(`${name}: logits match the float64 reference to <= 1e-5`, async (t) => {
    if (!NUMPY) return t.fail('/usr/bin/python3 with numpy is needed for the reference (apt-get install python3-numpy)');
    const dir = fixture(name);
    const m = await vp.loadPretrained(dir);
    t.is(m.architecture, FIXTURES[name].arch);
    t.deepEqual(m.config.architectures, [FIXTURES[name].arch]);
    const seqs = [randomIds(19, 3), randomIds(1, 4), randomIds(33, 5)];
    const ref = runReference({ dir, sequences: seqs, mode: 'logits' });
    if (!ref.ok) return t.fail(ref.why);
    for (const [i, ids] of seqs.entries()) {
      const lg = await m.logits(Int32Array.from(ids));
      t.deepEqual(lg.shape, [ids.length, 288]);
      t.is(lg.dtype, 'float32');
      t.is(lg.device, 'cpu');
      const err = relError(lg.data as Float32Array, (ref.out.logits as number[][])[i]);
      t.true(err <= 1e-5, `sequence ${i} (${ids.length} tokens): relative error ${err}`);
    }
  });
}

test('a packed batch gives each sequence the log-probs it has alone (segments, positions restart per sequence)', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-untied-bf16-sharded'));
  const a = randomIds(11, 7), b = randomIds(6, 8);
  const text = Int32Array.from([...a, ...b]);
  const batch = { text, sequences: [[{ text: [0, 4] as [number, number] }, { text: [4, 7] as [number, number] }], [{ text: [11, 6] as [number, number] }]] };
  const targets = new Int32Array(text.length).fill(-1);
  for (let i = 0; i + 1 < a.length; i++) targets[i] = a[i + 1];
  for (let i = 0; i + 1 < b.length; i++) targets[11 + i] = b[i + 1];
  const r = await m.forward({ ...batch, targets }, { logprobs: true, forBackward: false });
  t.is(r.count, a.length - 1 + b.length - 1);
  t.deepEqual(Array.from(r.layout.cuSeqlens), [0, 11, 17]);
  t.deepEqual(Array.from(r.layout.positions.subarray(9, 13)), [9, 10, 0, 1]);
  for (const [off, ids] of [[0, a], [11, b]] as const) {
    const lg = (await m.logits(ids)).data as Float32Array;
    const V = 288;
    for (let i = 0; i + 1 < ids.length; i++) {
      const row = lg.subarray(i * V, (i + 1) * V);
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0));
      const want = row[ids[i + 1]] - lse;
      t.true(Math.abs(r.tokenLogprobs[off + i] - want) < 2e-5 * Math.max(1, Math.abs(want)), `token ${off + i}: ${r.tokenLogprobs[off + i]} vs ${want}`);
    }
  }
  let sum = 0;
  for (let i = 0; i < text.length; i++) if (targets[i] >= 0) sum -= r.tokenLogprobs[i];
  t.true(Math.abs(r.loss - sum / r.count) < 1e-5);
});

/**
 * Gradient check: J = g·mean(-log p) + Σ w·log p + Σ c·tap; our backward() against central
 * finite differences of the float64 reference along one random direction per trained tensor.
 */
export async function gradientCheck(t: import('ava').ExecutionContext, m: vp.PretrainedModel, dir: string, adapter?: string): Promise<void> {
  const r = seededRandom(99);
  const a = randomIds(10, 21), b = randomIds(8, 22);
  const text = Int32Array.from([...a, ...b]);
  const targets = new Int32Array(text.length).fill(-1);
  for (let i = 2; i + 1 < a.length; i++) targets[i] = a[i + 1];
  for (let i = 0; i + 1 < b.length; i++) targets[10 + i] = b[i + 1];
  const weights = Float32Array.from(targets, (x) => (x >= 0 ? r() - 0.5 : 0));
  const d = m.spec.hidden;
  const tapRows = Int32Array.of(3, 13);
  const coef = Float32Array.from({ length: 2 * d }, () => r() - 0.5);
  const gradLoss = 0.7;
  const batch = { text, targets, sequences: [[{ text: [0, 4] as [number, number] }, { text: [4, 6] as [number, number] }], [{ text: [10, 8] as [number, number] }]] };
  const fw = await m.forward(batch, { logprobs: true, tapRows, tapLayer: 1 });
  await m.backward({ gradLoss, dLogprobs: weights, dTap: coef });
  const grads = m.gradients();
  let ours = gradLoss * fw.loss;
  for (let i = 0; i < text.length; i++) ours += weights[i] * fw.tokenLogprobs[i];
  for (let i = 0; i < coef.length; i++) ours += coef[i] * fw.tap[i];
  // One unit direction per trained tensor.
  const names = Object.keys(grads);
  const layout: [string, number, number][] = [];
  let total = 0;
  for (const n of names) {
    layout.push([n, total, grads[n].length]);
    total += grads[n].length;
  }
  const dirs = new Float64Array(names.length * total);
  const predicted: number[] = [];
  names.forEach((n, k) => {
    const [, off, len] = layout[k];
    let norm = 0;
    const u = new Float64Array(len);
    for (let i = 0; i < len; i++) {
      u[i] = r() - 0.5;
      norm += u[i] * u[i];
    }
    let dot = 0;
    for (let i = 0; i < len; i++) {
      u[i] /= Math.sqrt(norm);
      dot += u[i] * grads[n][i];
    }
    dirs.set(u, k * total + off);
    predicted.push(dot);
  });
  const file = join(mkdtempSync(join(tmpdir(), 'vp-pt-dirs-')), 'dirs.bin');
  writeFileSync(file, new Uint8Array(dirs.buffer));
  const seqTargets = [Array.from(targets.subarray(0, 10)), Array.from(targets.subarray(10))];
  const seqWeights = [Array.from(weights.subarray(0, 10)), Array.from(weights.subarray(10))];
  const spec: ReferenceSpec = {
    dir, adapter, mode: 'objective', sequences: [a, b], targets: seqTargets, weights: seqWeights, gradLoss,
    tap: { layer: 1, rows: [[0, 3], [1, 3]], coef: Array.from(coef) },
    directions: { file, count: names.length, layout, h: 1e-6 },
  };
  const ref = runReference(spec);
  if (!ref.ok) return void t.fail(ref.why);
  const J = ref.out.objective as number;
  t.true(Math.abs(ours - J) <= 1e-5 * Math.max(1, Math.abs(J)), `objective ${ours} vs reference ${J}`);
  const fd = ref.out.fd as number[];
  const scale = Math.sqrt(fd.reduce((s, x) => s + x * x, 0) / fd.length);
  let worst = 0, at = '';
  names.forEach((n, k) => {
    const e = Math.abs(predicted[k] - fd[k]) / Math.max(Math.abs(fd[k]), 0.01 * scale);
    if (e > worst) [worst, at] = [e, `${n}: backward ${predicted[k]} vs finite difference ${fd[k]}`];
  });
  t.log(`${names.length} tensors, worst relative error ${worst.toExponential(2)} (${at})`);
  t.true(worst <= 1e-3, at);
}

for (const name of ['llama-untied-f32', 'llama-tied-bf16-sharded-llama3', 'qwen2-tied-f16']) {
  test(`${name}: full fine-tuning gradients (LM loss, per-token log-prob weights, tapped hidden states) match finite differences`, async (t) => {
    if (!NUMPY) return t.fail('/usr/bin/python3 with numpy is needed for the reference');
    const dir = fixture(name);
    const m = await vp.loadPretrained(dir);
    await gradientCheck(t, m, dir);
  });
}

test('generation with the KV cache continues exactly as recomputed greedy logits do, alone or in a batch', async (t) => {
  const m = await vp.loadPretrained(fixture('llama-tied-bf16-sharded-llama3'));
  const prompts = [randomIds(5, 31), randomIds(9, 32), randomIds(1, 33)];
  const alone: Int32Array[] = [];
  for (const p of prompts) {
    const out = (await m.generate(null, Int32Array.from(p), { maxTokens: 7, eosId: -1 })) as Int32Array;
    t.is(out.length, 7);
    // Reference: argmax of the full (cache-free) logits, token by token.
    const seq = [...p];
    for (let i = 0; i < 7; i++) {
      const lg = (await m.logits(seq)).data as Float32Array;
      const row = lg.subarray((seq.length - 1) * 288, seq.length * 288);
      let best = 0;
      for (let j = 1; j < 288; j++) if (row[j] > row[best]) best = j;
      t.is(out[i], best, `prompt of ${p.length}, token ${i}`);
      seq.push(best);
    }
    alone.push(out);
  }
  const text = Int32Array.from(prompts.flat());
  let off = 0;
  const sequences = prompts.map((p) => [{ text: [(off += p.length) - p.length, p.length] as [number, number] }]);
  const batched = await m.generateBatch({ text, sequences }, { maxTokens: 7, eosId: -1 });
  t.deepEqual(batched.map((x) => Array.from(x)), alone.map((x) => Array.from(x)));
});

test('sampling is reproducible per seed, the same alone and batched, and stops at an end-of-sequence id', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-tied-f16'));
  const p = Int32Array.from(randomIds(4, 41));
  const a = (await m.generate(null, p, { maxTokens: 12, temperature: 1, topP: 0.9, seed: 5, eosId: -1 })) as Int32Array;
  const b = (await m.generate(null, p, { maxTokens: 12, temperature: 1, topP: 0.9, seed: 5, eosId: -1 })) as Int32Array;
  const c = (await m.generate(null, p, { maxTokens: 12, temperature: 1, topP: 0.9, seed: 6, eosId: -1 })) as Int32Array;
  t.deepEqual(Array.from(a), Array.from(b));
  t.notDeepEqual(Array.from(a), Array.from(c));
  const stop = a[3];
  const cut = (await m.generate(null, p, { maxTokens: 12, temperature: 1, topP: 0.9, seed: 5, eosId: stop })) as Int32Array;
  t.deepEqual(Array.from(cut), Array.from(a.subarray(0, a.indexOf(stop) + 1)));
  const twice = await m.generateBatch({ text: Int32Array.from([...p, ...p]), sequences: [[{ text: [0, 4] }], [{ text: [4, 4] }]] }, { maxTokens: 12, temperature: 1, topP: 0.9, seed: 5, eosId: -1 });
  t.deepEqual(Array.from(twice[0]), Array.from(a));
});

test('vision inputs and video segments are refused by a text-only model with a clear error', async (t) => {
  const m = await vp.loadPretrained(fixture('llama-untied-f32'));
  await t.throwsAsync(() => m.logits([1, 2, 3], { video: vp.zeros([2, 8, 8, 3]) }), { instanceOf: TypeError, message: /opts\.video.*text-only/ });
  await t.throwsAsync(() => m.logits([1, 2, 3], { pixelValues: vp.zeros([1, 3, 8, 8]) }), { instanceOf: TypeError, message: /pixelValues.*text-only/ });
  await t.throwsAsync(() => m.generate(new Uint8Array(10), [1, 2]), { instanceOf: TypeError, message: /video.*text-only/ });
  await t.throwsAsync(() => m.forward({ text: Int32Array.of(1, 2), sequences: [[{ video: 0 } as never, { text: [0, 2] }]] }), { message: /text-only/ });
  await t.throwsAsync(() => m.logits([1, 288]), { instanceOf: RangeError, message: /ids\[1\].*\[0, 288\)/ });
  await t.throwsAsync(() => m.logits([]), { instanceOf: RangeError });
  await t.throwsAsync(() => vp.loadPretrained(fixture('llama-untied-f32'), { device: 'cuda' }), { message: /cuda/ });
});
