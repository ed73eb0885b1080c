// VideoLM mixed precision (setComputeDtype('bfloat16')): every GEMM of the model on
// bfloat16-rounded operands with float32 accumulation, float32 master weights. The
// GEMM itself is checked against float64 in native/tests/test_gemm_f32_via_bf16.cpp;
// here, at the model level: the loss and gradients stay within bf16's rounding of
// the float32 ones (and are not bitwise equal: the mode really ran), training lowers
// the loss, parameters stay float32, clone() keeps the mode, switching back gives
// the float32 numbers bit for bit, and bad arguments are clear errors.
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { relError, rng } from './helpers.js';

const CFG: vp.VideoLMCreateOptions = {
  imageSize: 8, patchSize: 4, frames: 2, width: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 128, vocab: 48, maxSeq: 64, tied: false, mlpRatio: 2,
};

function batchOf(n: number, len: number, seed: number): vp.VideoLMBatch {
  const r = rng(seed);
  const text = new Int32Array(n * len);
  const sequences: vp.VideoLMSegment[][] = [];
  for (let i = 0; i < n; i++) {
    text[i * len] = 1;
    for (let j = 1; j < len; j++) text[i * len + j] = 6 + Math.floor(r() * 40);
    sequences.push([{ video: i }, { text: [i * len, len] }]);
  }
  const videos = new Uint8Array(n * 2 * 8 * 8 * 3);
  for (let i = 0; i < videos.length; i++) videos[i] = Math.floor(r() * 256);
  return { videos, text, sequences };
}

async function lossAndGrads(m: vp.VideoLM, batch: vp.VideoLMBatch): Promise<{ loss: number; grads: Float32Array }> {
  const f = await m.forward(batch);
  await m.backward();
  return { loss: f.loss, grads: m.getBuffer('grads') };
}

test('bfloat16 compute: loss and gradients within bf16 rounding of float32, not equal to them; float32 again is bitwise the same', async (t) => {
  const a = await vp.VideoLM.create({ ...CFG, seed: 5 });
  const b = await vp.VideoLM.create({ ...CFG, seed: 5 });
  t.is(b.computeDtype, 'float32');
  await b.setComputeDtype('bfloat16');
  t.is(b.computeDtype, 'bfloat16');
  const batch = batchOf(4, 9, 3);
  const ref = await lossAndGrads(a, batch);
  const mixed = await lossAndGrads(b, batch);
  t.log(`loss float32 ${ref.loss} bf16 ${mixed.loss}; gradient rel. error ${relError(mixed.grads, ref.grads).toExponential(2)}`);
  t.true(Math.abs(mixed.loss - ref.loss) / Math.abs(ref.loss) < 1e-2, 'loss');
  t.true(relError(mixed.grads, ref.grads) < 3e-2, 'gradients');
  t.not(mixed.loss, ref.loss, 'the bf16 products ran');
  t.true(b.getBuffer('params') instanceof Float32Array);
  await b.setComputeDtype('float32');
  const back = await lossAndGrads(b, batch);
  t.is(back.loss, ref.loss);
  t.deepEqual(back.grads, ref.grads);
  a.dispose();
  b.dispose();
});

test('bfloat16 compute trains: the loss of a fixed batch falls; clone() keeps the mode', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 1 });
  await m.setComputeDtype('bfloat16');
  const batch = batchOf(8, 6, 7);
  let first = 0, last = 0;
  for (let s = 0; s < 60; s++) {
    const r = await m.trainStep(batch, { lr: 1e-2, weightDecay: 0, warmupSteps: 5, totalSteps: 60, minLr: 1e-3 });
    if (s === 0) first = r.loss;
    last = r.loss;
  }
  t.log(`loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
  t.true(last < 0.5 * first);
  const c = await m.clone();
  t.is(c.computeDtype, 'bfloat16');
  const x = await m.forward(batch, { forBackward: false });
  const y = await c.forward(batch, { forBackward: false });
  t.is(x.loss, y.loss);
  c.dispose();
  m.dispose();
});

test('create/load take computeDtype; bad values are clear errors', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 4, computeDtype: 'bfloat16' });
  t.is(m.computeDtype, 'bfloat16');
  const dir = mkdtempSync(join(tmpdir(), 'vp-bf16-'));
  await m.save(dir);
  const batch = batchOf(2, 5, 9);
  const x = await m.forward(batch, { forBackward: false });
  const f32 = await vp.VideoLM.load(dir);
  t.is(f32.computeDtype, 'float32');
  const bf = await vp.VideoLM.load(dir, { computeDtype: 'bfloat16' });
  t.is(bf.computeDtype, 'bfloat16');
  t.is((await bf.forward(batch, { forBackward: false })).loss, x.loss);
  t.not((await f32.forward(batch, { forBackward: false })).loss, x.loss);
  await t.throwsAsync(() => vp.VideoLM.create({ ...CFG, computeDtype: 'half' as never }), { instanceOf: RangeError, message: /opts\.computeDtype/ });
  await t.throwsAsync(() => vp.VideoLM.load(dir, { computeDtype: 1 as never }), { instanceOf: RangeError, message: /opts\.computeDtype/ });
  for (const x of [m, f32, bf]) x.dispose();
});

test('setComputeDtype validates its argument', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 2 });
  t.throws(() => m.setComputeDtype('float16' as never), { instanceOf: RangeError, message: /dtype/ });
  t.throws(() => m.setComputeDtype(undefined as never), { instanceOf: RangeError, message: /dtype/ });
  m.dispose();
  t.throws(() => m.setComputeDtype('bfloat16'), { message: /disposed/ });
});
