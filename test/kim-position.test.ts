// The frame-position embedding of KIM copies: a frame substituted through a
// segment's frame map gets the position of the slot it fills, exactly as if
// the frame had been replaced at the pixel level (logits and every gradient
// equal), unless the segment keeps the source frame's position
// (`sourceFramePosition`, the ablation), which equals a model whose slot
// position is the source's. Also: the trainer's option and its errors.
import test from 'ava';
import * as vp from '../lib/index.js';
import { relError, rng } from './helpers.js';

const F = 4, S = 8, P = 4; // 4 frames of 8x8, patches of 4x4: 4 tokens a frame
const CFG: vp.VideoLMCreateOptions = {
  imageSize: S, patchSize: 4, frames: F, width: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, vocab: 40, maxSeq: 64, tied: true, mlpRatio: 2,
};
const FRAME = S * S * 3;

function video(seed: number): Uint8Array {
  const r = rng(seed);
  const v = new Uint8Array(F * FRAME);
  for (let i = 0; i < v.length; i++) v[i] = Math.floor(r() * 256);
  return v;
}

/** The video with frame `to` replaced, pixel for pixel, by frame `from`. */
function pixelCopy(v: Uint8Array, from: number, to: number): Uint8Array {
  const out = v.slice();
  out.set(v.subarray(from * FRAME, (from + 1) * FRAME), to * FRAME);
  return out;
}

const TEXT = Int32Array.from([1, 7, 9, 12, 20, 33, 5, 2]);
const MAP = Int32Array.from([0, 1, 1, 3]); // frame 2 (a key frame) carries frame 1's tokens

function batch(videos: Uint8Array, seg: vp.VideoLMSegment): vp.VideoLMBatch {
  return { videos, text: TEXT, sequences: [[seg, { text: [0, TEXT.length] }]] };
}

async function logitsAndGrads(m: vp.VideoLM, b: vp.VideoLMBatch): Promise<{ logits: Float32Array; grads: Float32Array }> {
  const { logits } = await m.logits(b);
  await m.forward(b);
  await m.backward();
  return { logits, grads: m.getBuffer('grads') };
}

test('a KIM frame takes the slot position: logits and every gradient equal a pixel-level substitution', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 3 });
  const v = video(1);
  const kim = await logitsAndGrads(m, batch(v, { video: 0, frames: MAP }));
  const pixels = await logitsAndGrads(m, batch(pixelCopy(v, 1, 2), { video: 0 }));
  t.true(relError(kim.logits, pixels.logits) < 1e-5, `logits ${relError(kim.logits, pixels.logits)}`);
  t.true(relError(kim.grads, pixels.grads) < 1e-5, `grads ${relError(kim.grads, pixels.grads)}`);
  // The frame-position rows received gradient at the slots (row 2 included), not only at the sources.
  const fp = m.paramInfo.find((p) => p.name === 'vision.frame_pos')!;
  const row2 = kim.grads.subarray(fp.offset + 2 * CFG.width!, fp.offset + 3 * CFG.width!);
  t.true(row2.some((g) => g !== 0));
  m.dispose();
});

test('sourceFramePosition keeps the source frame position (the ablation): equal to a model whose slot position is the source', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 4 });
  const v = video(2);
  const slot = (await m.logits(batch(v, { video: 0, frames: MAP }))).logits;
  const source = (await m.logits(batch(v, { video: 0, frames: MAP, sourceFramePosition: true }))).logits;
  t.true(relError(source, slot) > 1e-3, 'the two modes differ');
  // A copy of the model with frame_pos[2] := frame_pos[1] sees the pixel copy as the source mode sees the map.
  const m2 = await m.clone();
  const params = m2.getBuffer('params');
  const fp = m2.paramInfo.find((p) => p.name === 'vision.frame_pos')!;
  const d = CFG.width!;
  params.copyWithin(fp.offset + 2 * d, fp.offset + 1 * d, fp.offset + 2 * d);
  m2.setBuffer('params', params);
  const ref = (await m2.logits(batch(pixelCopy(v, 1, 2), { video: 0 }))).logits;
  t.true(relError(source, ref) < 1e-5, `${relError(source, ref)}`);
  // An identity map is the plain video in both modes.
  const plain = (await m.logits(batch(v, { video: 0 }))).logits;
  const id = Int32Array.from([0, 1, 2, 3]);
  t.true(relError((await m.logits(batch(v, { video: 0, frames: id }))).logits, plain) < 1e-6);
  t.true(relError((await m.logits(batch(v, { video: 0, frames: id, sourceFramePosition: true }))).logits, plain) < 1e-6);
  m.dispose();
  m2.dispose();
});

test('frame maps: a map longer than frames needs sourceFramePosition; a non-boolean flag is refused by name', async (t) => {
  const m = await vp.VideoLM.create({ ...CFG, seed: 5 });
  const v = video(3);
  const long = Int32Array.from([0, 1, 2, 3, 3]);
  await t.throwsAsync(async () => m.logits(batch(v, { video: 0, frames: long })), { instanceOf: RangeError, message: /frames\.length/ });
  const ok = await m.logits(batch(v, { video: 0, frames: long, sourceFramePosition: true }));
  t.is(ok.logits.length, (long.length * P + TEXT.length) * CFG.vocab!);
  await t.throwsAsync(async () => m.logits(batch(v, { video: 0, frames: MAP, sourceFramePosition: 1 as unknown as boolean })), {
    instanceOf: TypeError, message: /sourceFramePosition/,
  });
  m.dispose();
});

test('Trainer: KIM sequences take slot positions by default; kimFramePosition "source" marks them; a bad value names the option', async (t) => {
  const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'vp-kimpos-'));
  vp.synthDataset(dir, { count: 4, frames: F, size: 16, seed: 7, eventRate: 1 });
  const data = vp.openDataset(dir);
  const tok = vp.tokenizerForDataset(data.annotations);
  const m = await vp.VideoLM.create({ ...CFG, imageSize: 16, patchSize: 8, vocab: undefined, tokenizer: tok, seed: 1 });
  const tr = new vp.Trainer(m, { seed: 1 });
  const clips = [0, 1, 2, 3].map((i) => tr.clip(data, i));
  const kimSegments = (b: vp.TrainerSftBatch) => b.batch.sequences.flat().filter((g) => 'video' in g && g.frames !== undefined) as { sourceFramePosition?: boolean }[];
  const slot = kimSegments(tr.sftBatch(clips, { questions: false }));
  t.true(slot.length > 0);
  t.true(slot.every((g) => g.sourceFramePosition !== true));
  const source = kimSegments(tr.sftBatch(clips, { questions: false, kimFramePosition: 'source' }));
  t.is(source.length, slot.length);
  t.true(source.every((g) => g.sourceFramePosition === true));
  await t.throwsAsync(() => tr.sft(data, { steps: 1, kimFramePosition: 'pixel' as 'slot' }), { instanceOf: TypeError, message: /opts\.kimFramePosition/ });
  await t.throwsAsync(() => tr.rl(data, { steps: 1, kimFramePosition: 'pixel' as 'slot' }), { instanceOf: TypeError, message: /opts\.kimFramePosition/ });
  tr.dispose();
  m.dispose();
});
