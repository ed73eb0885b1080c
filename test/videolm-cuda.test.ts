// vp.VideoLM on CUDA: without a usable GPU, create/load with device 'cuda'
// throw an Error that names opts.device and the reason; with one, a CUDA model
// matches the CPU model (same seed and batch) in loss, gradients, the AdamW
// step, logits and generation, and checkpoints move between the devices.
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { relError, rng } from './helpers.js';

const CFG: vp.VideoLMCreateOptions = {
  imageSize: 8, patchSize: 4, frames: 2, width: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, vocab: 40, maxSeq: 64, tied: false, mlpRatio: 2,
};

function batch(seed: number): vp.VideoLMBatch {
  const r = rng(seed);
  const videos = new Uint8Array(2 * 2 * 8 * 8 * 3);
  for (let i = 0; i < videos.length; i++) videos[i] = Math.floor(r() * 256);
  const text = new Int32Array(12);
  for (let i = 0; i < text.length; i++) text[i] = 1 + Math.floor(r() * 39);
  return { videos, text, sequences: [[{ video: 0 }, { text: [0, 7] }], [{ video: 1, frames: new Int32Array([1, 1]) }, { text: [7, 5] }]] };
}

const cuda = vp.backendInfo().cuda;

test('device defaults to cpu; an unknown device is a TypeError naming opts.device', async (t) => {
  const m = await vp.VideoLM.create(CFG);
  t.is(m.device, 'cpu');
  m.dispose();
  await t.throwsAsync(() => vp.VideoLM.create({ ...CFG, device: 'gpu' as 'cuda' }), { instanceOf: TypeError, message: /VideoLM\.create: opts\.device/ });
});

test('device cuda without a usable GPU throws a clear Error (create and load)', async (t) => {
  if (cuda) {
    t.log(`a GPU is present (${cuda.device}): the unavailable path is not exercised`);
    t.pass();
    return;
  }
  const reason = vp.backendInfo().cudaReason;
  t.true(reason.length > 0);
  const e = await t.throwsAsync(() => vp.VideoLM.create({ ...CFG, device: 'cuda' }), { instanceOf: Error });
  t.regex(e!.message, /VideoLM\.create: opts\.device is 'cuda' but CUDA is unavailable/);
  t.true(e!.message.includes(reason));
  const dir = mkdtempSync(join(tmpdir(), 'vp-vlm-cuda-'));
  const m = await vp.VideoLM.create(CFG);
  await m.save(dir);
  m.dispose();
  await t.throwsAsync(() => vp.VideoLM.load(dir, { device: 'cuda' }), { message: /VideoLM\.load: opts\.device is 'cuda' but CUDA is unavailable/ });
});

test('a CUDA model matches the CPU model: loss, gradients, AdamW step, logits, generation, checkpoints', async (t) => {
  if (!cuda) {
    t.log(`skipped: no usable GPU (${vp.backendInfo().cudaReason})`);
    t.pass();
    return;
  }
  const cpu = await vp.VideoLM.create({ ...CFG, seed: 5 });
  const gpu = await vp.VideoLM.create({ ...CFG, seed: 5, device: 'cuda' });
  t.is(gpu.device, 'cuda');
  t.deepEqual(gpu.getBuffer('params'), cpu.getBuffer('params'));
  const b = batch(3);
  const tapRows = new Int32Array([0, 3, 9, 20]);
  const fc = await cpu.forward(b, { tapRows, tapLayer: 1, logprobs: true });
  const fg = await gpu.forward(b, { tapRows, tapLayer: 1, logprobs: true });
  t.true(Math.abs(fg.loss - fc.loss) <= 1e-5 * fc.loss, `loss cpu ${fc.loss} cuda ${fg.loss}`);
  t.true(relError(fg.tap, fc.tap) < 1e-5);
  t.true(relError(fg.tokenLogprobs, fc.tokenLogprobs) < 1e-5);
  const dTap = new Float32Array(tapRows.length * 32).map((_, i) => Math.sin(i));
  await cpu.backward({ dTap });
  await gpu.backward({ dTap });
  const gc = cpu.getBuffer('grads');
  const gg = gpu.getBuffer('grads');
  for (const p of cpu.paramInfo) {
    const err = relError(gg.subarray(p.offset, p.offset + p.numel), gc.subarray(p.offset, p.offset + p.numel));
    t.true(err < 1e-4, `gradient of ${p.name}: rel error ${err}`);
  }
  // The step from identical gradients (a first Adam step is sign-like: tiny gradients that
  // differ in rounding could otherwise move a parameter by ±lr).
  gpu.setBuffer('grads', gc);
  const sc = await cpu.stepOptimizer({ lr: 1e-3 });
  const sg = await gpu.stepOptimizer({ lr: 1e-3 });
  t.true(Math.abs(sg.gradNorm - sc.gradNorm) <= 1e-6 * sc.gradNorm);
  t.true(relError(gpu.getBuffer('params'), cpu.getBuffer('params')) < 1e-5);
  const lc = await cpu.logits(b);
  const lg = await gpu.logits(b);
  t.true(relError(lg.logits, lc.logits) < 1e-4);
  const prompts = { ...b, sequences: b.sequences.map((s) => s.slice(0, 1).concat([{ text: [0, 3] as [number, number] }])) };
  t.deepEqual(await gpu.generateBatch(prompts, { maxTokens: 5, seed: 1 }), await cpu.generateBatch(prompts, { maxTokens: 5, seed: 1 }));
  // A checkpoint saved from the GPU loads on the CPU with the same logits (and back).
  const dir = mkdtempSync(join(tmpdir(), 'vp-vlm-cuda-'));
  await gpu.save(dir);
  const back = await vp.VideoLM.load(dir);
  t.is(back.device, 'cpu');
  t.true(relError((await back.logits(b)).logits, lg.logits) < 1e-4);
  const again = await vp.VideoLM.load(dir, { device: 'cuda' });
  t.is(again.device, 'cuda');
  t.deepEqual((await again.logits(b)).logits, lg.logits);
  t.deepEqual(again.getBuffer('m'), gpu.getBuffer('m'));
  for (const m of [cpu, gpu, back, again]) m.dispose();
});
