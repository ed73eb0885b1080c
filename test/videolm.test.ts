// vp.VideoLM from TypeScript: create/presets, training steps (loss goes down,
// overfitting 16 samples), the contrastive tap gradient against finite
// differences, save → load → identical logits, corrupt checkpoints, the
// independent Python reader, generation (seeded, KV cache = full
// recomputation), log-probs, the frozen copy, and validation errors.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { CheckpointError } from '../lib/model/safetensors.js';
import { relError, rng } from './helpers.js';

const PY = '/usr/bin/python3';
const READER = join(import.meta.dirname, '..', 'bench', 'peers', 'read_safetensors.py');

const CFG: vp.VideoLMCreateOptions = {
  imageSize: 8, patchSize: 4, frames: 2, width: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, vocab: 40, maxSeq: 64, tied: true, mlpRatio: 2,
};

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'vp-vlm-'));
}

function videos(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const v = new Uint8Array(n * 2 * 8 * 8 * 3);
  for (let i = 0; i < v.length; i++) v[i] = Math.floor(r() * 256);
  return v;
}

// n samples: [video i, caption of `len` tokens].
function captions(n: number, len: number, seed: number): vp.VideoLMBatch {
  const r = rng(seed);
  const text = new Int32Array(n * len);
  const sequences: vp.VideoLMSegment[][] = [];
  for (let i = 0; i < n; i++) {
    text[i * len] = 1;
    for (let j = 1; j < len; j++) text[i * len + j] = 6 + Math.floor(r() * 34);
    sequences.push([{ video: i }, { text: [i * len, len] }]);
  }
  return { videos: videos(n, seed + 1), text, sequences };
}

test('create from a preset and from a config; named parameters; seeded init', async (t) => {
  const tiny = await vp.VideoLM.create({ preset: 'tiny' });
  t.is(tiny.config.width, 128);
  t.is(tiny.config.ffn, 352);
  t.true(tiny.numParams > 500_000);
  t.is(tiny.paramInfo[0].name, 'vision.patch_embed.weight');
  tiny.dispose();
  const a = await vp.VideoLM.create({ ...CFG, seed: 3 });
  const b = await vp.VideoLM.create({ ...CFG, seed: 3 });
  const c = await vp.VideoLM.create({ ...CFG, seed: 4 });
  t.deepEqual(a.getBuffer('params'), b.getBuffer('params'));
  t.notDeepEqual(a.getBuffer('params'), c.getBuffer('params'));
  const p = a.parameters();
  t.deepEqual(Object.keys(p).slice(0, 5), ['vision.patch_embed.weight', 'vision.patch_embed.bias', 'vision.frame_pos', 'vision.patch_pos', 'tok_embed']);
  t.is(p['tok_embed'].length, 40 * 32);
  for (const m of [a, b, c]) m.dispose();
});

test('overfitting 16 samples drives the loss near zero (trainStep off the main thread)', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 1 });
  const batch = captions(16, 6, 7);
  let first = 0;
  let last = 0;
  for (let s = 0; s < 300; s++) {
    const r = await m.trainStep(batch, { lr: 1e-2, weightDecay: 0, warmupSteps: 10, totalSteps: 300, minLr: 1e-3 });
    if (s === 0) first = r.loss;
    last = r.loss;
    if (last < 0.01) break;
  }
  t.log(`loss ${first.toFixed(3)} → ${last.toFixed(4)}, ${m.step} steps`);
  t.true(first > 3);
  t.true(last < 0.05);
  m.dispose();
});

test('forward/backward/stepOptimizer equal trainStep; accumulation over micro-batches', async (t) => {
  const a = await vp.VideoLM.create({ ...CFG, seed: 2 });
  const b = await vp.VideoLM.create({ ...CFG, seed: 2 });
  const batch = captions(4, 5, 3);
  const r1 = await a.trainStep(batch, { lr: 1e-3 });
  const f = await b.forward(batch);
  await b.backward();
  const s = await b.stepOptimizer({ lr: 1e-3 });
  t.is(f.loss, r1.loss);
  t.is(s.gradNorm, r1.gradNorm);
  t.deepEqual(a.getBuffer('params'), b.getBuffer('params'));
  // Two micro-batches: gradients of (L1 + L2) / 2.
  const half1 = captions(2, 5, 10);
  const half2 = captions(2, 5, 11);
  await a.trainStep([half1, half2], { lr: 0 });
  const g = a.getBuffer('grads');
  await b.forward(half1);
  await b.backward({ gradLoss: 0.5 });
  await b.forward(half2);
  await b.backward({ gradLoss: 0.5, accumulate: true });
  t.true(relError(b.getBuffer('grads'), g) < 1e-6);
  a.dispose();
  b.dispose();
});

test('the contrastive tap: hidden states of given rows, and their gradient reaches the layers below', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 5 });
  const batch = captions(2, 5, 4);
  const rows = new Int32Array([0, 3, 9, 20]);
  const f = await m.forward(batch, { tapRows: rows, tapLayer: 1 });
  t.is(f.tap.length, 4 * 32);
  t.deepEqual([...f.layout.cuSeqlens], [0, 13, 26]);
  t.deepEqual([...f.layout.segmentStart], [0, 8, 13, 21]);
  // Objective: <w, tap> only; check the directional derivative along the gradient of layers.0.wq.
  const w = Float32Array.from({ length: f.tap.length }, (_, i) => Math.sin(i));
  await m.backward({ gradLoss: 0, dTap: w });
  const grads = m.getBuffer('grads');
  const info = m.paramInfo.find((p) => p.name === 'layers.0.wq')!;
  const after = m.paramInfo.find((p) => p.name === 'layers.1.wq')!;
  const g = grads.subarray(info.offset, info.offset + info.numel);
  t.true(g.some((x) => x !== 0));
  t.true(grads.subarray(after.offset, after.offset + after.numel).every((x) => x === 0), 'layers above the tap get no gradient');
  const base = m.getBuffer('params');
  let gn = 0;
  for (const x of g) gn += x * x;
  gn = Math.sqrt(gn);
  const objective = async (eps: number) => {
    const p = Float32Array.from(base);
    for (let i = 0; i < g.length; i++) p[info.offset + i] += (eps * g[i]) / gn;
    m.setBuffer('params', p);
    const r = await m.forward(batch, { tapRows: rows, tapLayer: 1, forBackward: false });
    let s = 0;
    for (let i = 0; i < w.length; i++) s += w[i] * r.tap[i];
    return s;
  };
  const h = 1e-2;
  const fd = (await objective(h) - (await objective(-h))) / (2 * h);
  t.true(Math.abs(fd - gn) / gn < 2e-3, `fd ${fd} vs analytic ${gn}`);
  m.dispose();
});

test('save → load gives identical logits, optimizer state and tokenizer; the Python reader agrees', async (t) => {
  const tok = vp.Tokenizer.train(['a red ball falls', 'a blue cube spins', 'the ball bounces'], { vocabSize: 40 });
  const m = await vp.VideoLM.create({ ...CFG, vocab: undefined, tokenizer: tok, seed: 9 });
  t.is(m.config.vocab, tok.vocabSize);
  const batch = captions(2, 5, 1);
  batch.text = batch.text.map((x) => x % tok.vocabSize);
  await m.trainStep(batch, { lr: 1e-2 });
  const dir = join(tmp(), 'ckpt');
  await m.save(dir);
  const l = await vp.VideoLM.load(dir);
  t.deepEqual(l.config, m.config);
  t.is(l.step, 1);
  t.deepEqual(l.getBuffer('m'), m.getBuffer('m'));
  t.deepEqual(l.getBuffer('v'), m.getBuffer('v'));
  t.deepEqual(l.tokenizer?.vocab, tok.vocab);
  const a = await m.logits(batch);
  const b = await l.logits(batch);
  t.deepEqual(b.logits, a.logits);
  // The independent reader (json + numpy).
  const probe = spawnSync(PY, ['-c', 'import numpy'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    t.log(`python check skipped: ${PY} with numpy is not available`);
  } else {
    const r = spawnSync(PY, [READER, join(dir, 'model.safetensors')], { encoding: 'utf8', maxBuffer: 1 << 28 });
    t.is(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { tensors: Record<string, { dtype: string; shape: number[]; values: number[] }> };
    const params = m.parameters();
    t.deepEqual(Object.keys(out.tensors), Object.keys(params));
    for (const p of m.paramInfo) {
      t.deepEqual(out.tensors[p.name].shape, p.shape);
      t.deepEqual(Float32Array.from(out.tensors[p.name].values), params[p.name], p.name);
    }
  }
  m.dispose();
  l.dispose();
});

test('corrupt, truncated and mismatched checkpoints are rejected with clear errors', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 1 });
  const dir = join(tmp(), 'c');
  await m.save(dir);
  const st = join(dir, 'model.safetensors');
  const good = readFileSync(st);
  truncateSync(st, statSync(st).size - 10);
  let e = await t.throwsAsync(vp.VideoLM.load(dir), { instanceOf: CheckpointError });
  t.regex(e!.message, /model\.safetensors/);
  writeFileSync(st, good.subarray(0, 4));
  e = await t.throwsAsync(vp.VideoLM.load(dir), { instanceOf: CheckpointError });
  t.regex(e!.message, /too short/);
  const bad = Buffer.from(good);
  bad.writeBigUInt64LE(BigInt(good.length * 2), 0);
  writeFileSync(st, bad);
  e = await t.throwsAsync(vp.VideoLM.load(dir), { instanceOf: CheckpointError });
  t.regex(e!.message, /truncated/);
  writeFileSync(st, good);
  // A config that does not match the tensors.
  const cfgPath = join(dir, 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, width: 64, heads: 4 }));
  e = await t.throwsAsync(vp.VideoLM.load(dir), { instanceOf: CheckpointError });
  t.regex(e!.message, /shape/);
  writeFileSync(cfgPath, '{ not json');
  e = await t.throwsAsync(vp.VideoLM.load(dir), { instanceOf: CheckpointError });
  t.regex(e!.message, /not valid JSON/);
  await t.throwsAsync(vp.VideoLM.load(join(dir, 'nope')), { instanceOf: CheckpointError, message: /no such folder/ });
  await t.throwsAsync(vp.VideoLM.load(cfgPath), { instanceOf: CheckpointError, message: /VideoLM\.load: dir: .*config\.json: is a file, expected a saved model folder/ });
  m.dispose();
});

test('a checkpoint whose weights or optimizer state hold NaN or Infinity is refused when loaded', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 1 });
  const dir = join(tmp(), 'nan');
  await m.save(dir);
  m.dispose();
  for (const [file, name, value] of [['model.safetensors', 'tok_embed', NaN], ['optimizer.safetensors', 'v.tok_embed', Infinity]] as const) {
    const path = join(dir, file);
    const good = readFileSync(path);
    const st = vp.readSafetensors(path);
    const key = Object.keys(st.tensors).find((k) => k.startsWith(name)) ?? Object.keys(st.tensors)[0];
    (st.tensors[key].data as Float32Array)[3] = value;
    vp.writeSafetensors(path, st.tensors, st.metadata);
    const e = await t.throwsAsync(vp.VideoLM.load(dir), { instanceOf: CheckpointError });
    t.regex(e!.message, new RegExp(`${file.replace('.', '\\.')}: tensor "${key.replace('.', '\\.')}" holds ${value} at element 3: the weights are not finite`));
    writeFileSync(path, good);
  }
  (await vp.VideoLM.load(dir)).dispose();
});

test('generation: deterministic for a seed, a batch of prompts, greedy equals the argmax of a full recomputation', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 4 });
  await m.trainStep(captions(4, 6, 2), { lr: 1e-2 });
  const v = videos(2, 9);
  const prompts: vp.VideoLMBatch = {
    videos: v,
    text: new Int32Array([1, 7, 8, 1, 9]),
    sequences: [[{ video: 0 }, { text: [0, 3] }], [{ video: 1 }, { text: [3, 2] }], [{ video: 0 }, { text: [0, 3] }]],
  };
  const o = { maxTokens: 8, temperature: 1.2, topP: 0.9, seed: 7, eosId: -1 };
  const a = await m.generateBatch(prompts, o);
  const b = await m.generateBatch(prompts, o);
  t.deepEqual(a, b);
  t.is(a.length, 3);
  t.is(a[0].length, 8);
  const c = await m.generateBatch(prompts, { ...o, seed: 8 });
  t.notDeepEqual(a, c);
  // A misspelt option is refused with the nearest name, never ignored.
  await t.throwsAsync(async () => m.generateBatch(prompts, { maxToken: 3 } as never), { instanceOf: TypeError, message: /VideoLM\.generateBatch: opts\.maxToken is not an option; did you mean maxTokens\?/ });
  const g = await m.generateBatch(prompts, { maxTokens: 6, eosId: -1 });
  // Full recomputation over prompt + generated tokens.
  const text: number[] = [];
  const seqs: vp.VideoLMSegment[][] = [];
  [[1, 7, 8], [1, 9], [1, 7, 8]].forEach((p, i) => {
    const start = text.length;
    text.push(...p, ...g[i]);
    seqs.push([{ video: i === 1 ? 1 : 0 }, { text: [start, p.length + g[i].length] }]);
  });
  const full = await m.logits({ videos: v, text: Int32Array.from(text), sequences: seqs });
  const V = m.config.vocab;
  for (let s = 0; s < 3; s++) {
    const end = full.layout.cuSeqlens[s + 1];
    for (let k = 0; k < g[s].length; k++) {
      const row = full.logits.subarray((end - g[s].length - 1 + k) * V, (end - g[s].length + k) * V);
      let best = 0;
      for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
      t.is(g[s][k], best, `sequence ${s} token ${k}`);
    }
  }
  // Log-probs of given responses under the model: sum of log-softmax at each target.
  const lp = await m.sequenceLogprobs({ videos: v, text: Int32Array.from(text), sequences: seqs });
  const end0 = full.layout.cuSeqlens[1];
  let ref = 0;
  let got = 0;
  for (let k = 0; k < g[0].length; k++) {
    const r = end0 - g[0].length - 1 + k;
    const row = full.logits.subarray(r * V, (r + 1) * V);
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((acc, x) => acc + Math.exp(x - mx), 0));
    ref += row[g[0][k]] - lse;
    got += lp[2 + k];
  }
  t.true(Math.abs(got - ref) < 1e-4 * Math.max(1, Math.abs(ref)), `${got} vs ${ref}`);
  // String prompts through the tokenizer.
  const tok = vp.Tokenizer.train(['a red ball falls down'], { vocabSize: 40 });
  m.tokenizer = tok;
  const text1 = await m.generate(v.subarray(0, v.length / 2), 'a red ball', { maxTokens: 4, seed: 1, temperature: 0.8 });
  t.is(typeof text1, 'string');
  t.is(await m.generate(v.subarray(0, v.length / 2), 'a red ball', { maxTokens: 4, seed: 1, temperature: 0.8 }), text1);
  m.dispose();
});

test('clone is a frozen copy', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 4 });
  const ref = await m.clone();
  t.true(ref.frozen);
  const batch = captions(2, 5, 1);
  const before = await ref.forward(batch, { forBackward: false });
  await m.trainStep(batch, { lr: 1e-2 });
  const after = await ref.forward(batch, { forBackward: false });
  t.is(after.loss, before.loss);
  t.throws(() => ref.backward(), { message: /frozen/ });
  t.throws(() => ref.trainStep(batch), { message: /frozen/ });
  m.dispose();
  ref.dispose();
});

test('validation errors name the argument', async (t) => {
  await t.throwsAsync(vp.VideoLM.create({ preset: 'huge' as never }), { instanceOf: RangeError, message: /opts\.preset/ });
  await t.throwsAsync(vp.VideoLM.create({ ...CFG, kvHeads: 3 }), { instanceOf: RangeError, message: /config\.kvHeads/ });
  await t.throwsAsync(vp.VideoLM.create({ ...CFG, imageSize: 10 }), { instanceOf: RangeError, message: /config\.imageSize/ });
  await t.throwsAsync(vp.VideoLM.create({ ...CFG, width: 1.5 }), { instanceOf: RangeError, message: /config\.width/ });
  // Parameters that cannot fit are refused before anything is allocated.
  await t.throwsAsync(vp.VideoLM.create({ ...CFG, width: 16384, heads: 128, kvHeads: 128, layers: 256, vocab: 1 << 20 }), { instanceOf: RangeError, message: /VideoLM\.create: config must be a model whose parameters fit in memory \(this one needs at least .* TiB/ });
  await t.throwsAsync(vp.VideoLM.create({ ...CFG, widht: 8 } as vp.VideoLMCreateOptions), { instanceOf: TypeError, message: /opts\.widht is not an option; did you mean width\?/ });
  const m = await vp.VideoLM.create({ ...CFG, seed: 1 });
  const b = captions(2, 5, 1);
  t.throws(() => m.forward({ ...b, text: new Int32Array([99]) }), { instanceOf: RangeError, message: /batch\.text\[0\]/ });
  t.throws(() => m.forward({ ...b, videos: new Uint8Array(5) }), { instanceOf: RangeError, message: /batch\.videos\.length/ });
  t.throws(() => m.forward({ ...b, sequences: [[{ video: 2 }]] }), { instanceOf: RangeError, message: /sequences\[0\]\[0\]\.video/ });
  t.throws(() => m.forward({ ...b, sequences: [[{ video: 0, frames: new Int32Array([0, 2]) }]] }), { instanceOf: RangeError, message: /frames\[1\]/ });
  t.throws(() => m.forward({ ...b, sequences: [[{ text: [8, 5] }]] }), { instanceOf: RangeError, message: /text/ });
  t.throws(() => m.forward({ ...b, sequences: [] }), { instanceOf: TypeError, message: /batch\.sequences/ });
  t.throws(() => m.forward({ ...b, targets: new Int32Array(3) }), { instanceOf: RangeError, message: /batch\.targets/ });
  t.throws(() => m.forward(b, { tapRows: new Int32Array([0]), tapLayer: 5 }), { instanceOf: RangeError, message: /opts\.tapLayer/ });
  await t.throwsAsync(m.forward(b, { tapRows: new Int32Array([1000]) }), { instanceOf: RangeError, message: /tapRows\[0\]/ });
  const long = { videos: b.videos, text: new Int32Array(70), sequences: [[{ text: [0, 70] as [number, number] }]] };
  t.throws(() => m.forward(long), { instanceOf: RangeError, message: /maxSeq/ });
  t.throws(() => m.generateBatch(b, { topP: 0 }), { instanceOf: RangeError, message: /opts\.topP/ });
  t.throws(() => m.stepOptimizer({ lr: -1 }), { instanceOf: RangeError, message: /opts\.lr/ });
  await m.forward(b, { tapRows: new Int32Array([0, 1]) });
  await t.throwsAsync(m.backward({ dTap: new Float32Array(3) }), { instanceOf: RangeError, message: /opts\.dTap/ });
  await t.throwsAsync(m.generate(null, 'hello'), { instanceOf: TypeError, message: /tokenizer/ });
  m.dispose();
  t.throws(() => m.forward(b), { message: /disposed/ });
});

test('generateStream yields the tokens as they are sampled and joins to what generate returns; onToken; using / await using dispose', async (t) => {
  const words = ['a', 'red', 'square', 'jumps', 'left', 'describe', 'the', 'clip', ':'];
  const tokenizer = vp.Tokenizer.train([words.join(' ')], { vocabSize: 64 });
  const m = await vp.VideoLM.create({ ...CFG, tokenizer, seed: 4 });
  const video = videos(1, 5);
  const opts = { maxTokens: 12, temperature: 1, seed: 9, eosId: -1 };
  const whole = (await m.generate(video, 'describe the clip :', opts)) as string;
  const pieces: string[] = [];
  const seenWhileRunning: number[] = [];
  for await (const p of m.generateStream(video, 'describe the clip :', opts)) pieces.push(p);
  t.is(pieces.join(''), whole);
  t.true(pieces.length > 1);
  // Token ids in, token ids out; onToken sees each token, in order, before the call resolves.
  const ids = tokenizer.encode('describe the clip :', { addBos: true });
  const streamed: number[] = [];
  for await (const tok of m.generateStream(video, ids, opts)) streamed.push(tok);
  const direct = (await m.generate(video, ids, opts)) as Int32Array;
  t.deepEqual(streamed, Array.from(direct));
  const out = await m.generateBatch({ videos: video, text: ids, sequences: [[{ video: 0 }, { text: [0, ids.length] }]] }, { ...opts, onToken: (s, tok) => seenWhileRunning.push(s, tok) });
  t.deepEqual(seenWhileRunning.filter((_, i) => i % 2 === 1), Array.from(out[0]));
  const boom = m.generateBatch({ videos: video, text: ids, sequences: [[{ video: 0 }, { text: [0, ids.length] }]] }, { ...opts, onToken: () => { throw new Error('stop'); } });
  await t.throwsAsync(boom, { message: 'stop' });
  t.throws(() => m.generateBatch({ videos: video, text: ids, sequences: [[{ text: [0, 1] }]] }, { onToken: 3 as never }), { instanceOf: TypeError, message: /opts\.onToken/ });
  // Explicit resource management: disposed at the end of the scope.
  {
    using x = vp.tensor([1, 2, 3], [3]);
    t.false(x.disposed);
    await m[Symbol.asyncDispose]();
  }
  t.throws(() => m.step, { message: /disposed/ });
  const x = vp.tensor([1], [1]);
  x[Symbol.dispose]();
  t.true(x.disposed);
});
