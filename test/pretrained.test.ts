// vp.loadPretrained on tiny random Hugging Face folders (both architectures,
// tied and untied heads, a sharded index, F32/BF16/F16 storage, llama3 RoPE
// scaling, head_dim ≠ hidden/heads, biases): logits against an independent
// float64 reference of transformers' formulas (test/pretrained_reference.py),
// gradients against float64 finite differences of the same reference, packed
// batches, and KV-cache generation against recomputed logits.
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { seededRandom } from '../lib/random.js';
import { relError } from './helpers.js';
import { FIXTURES, gradientCheck, haveNumpy, randomIds, runReference, writeTinyModel } from './pretrained-fixtures.js';

const NUMPY = haveNumpy();

function fixture(name: keyof typeof FIXTURES | string): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-pt-${name}-`));
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
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
