// Still images of vision-language PretrainedModels (lib/pretrained/images.ts):
// logits(ids, { images }) against an independent float64 processing written
// here (transformers' Idefics3 / SmolVLM image processor steps: longest-edge
// resize, square or resize_for_vision_encoder + tiles + global image; LLaVA's
// shortest-edge resize and center crop; rescale and normalize), the prompt
// strings of the processors, logits equal to passing the same pixelValues,
// torch's antialiased interpolate as a second reference when /usr/bin/python3
// has it, and errors.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { IMAGE_ID, writeTinyVlm } from './vlm-fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vp-vlmimg-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

function images(n: number, H: number, W: number, seed: number) {
  const data = new Uint8Array(n * H * W * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    data[i] = (s >> 8) % 256;
  }
  return { data, shape: [n, H, W, 3] };
}

// ---- the float64 reference: antialiased bicubic (a = −0.5), per axis, each pass rounded to uint8

function kernel(x: number): number {
  const a = Math.abs(x);
  if (a < 1) return 1.5 * a ** 3 - 2.5 * a ** 2 + 1;
  if (a < 2) return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2;
  return 0;
}

/** Resamples one axis of an image held as rows of `inner` values ([outer][n][inner]) to m. */
function resampleAxis(x: Float64Array, outer: number, n: number, inner: number, m: number): Float64Array {
  if (n === m) return x;
  const y = new Float64Array(outer * m * inner);
  const scale = n / m, fs = Math.max(scale, 1);
  for (let i = 0; i < m; i++) {
    const c = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(c - 2 * fs + 0.5)), hi = Math.min(n, Math.trunc(c + 2 * fs + 0.5));
    const w: number[] = [];
    for (let j = lo; j < hi; j++) w.push(kernel((j - c + 0.5) / fs));
    const sum = w.reduce((a, b) => a + b, 0);
    for (let o = 0; o < outer; o++)
      for (let k = 0; k < inner; k++) {
        let acc = 0;
        for (let j = lo; j < hi; j++) acc += (w[j - lo] / sum) * x[(o * n + j) * inner + k];
        y[(o * m + i) * inner + k] = Math.min(255, Math.max(0, Math.round(acc)));
      }
  }
  return y;
}

/** An HWC image resized to oh × ow: width first, then height. */
function resize(img: Float64Array, H: number, W: number, oh: number, ow: number): Float64Array {
  return resampleAxis(resampleAxis(img, H, W, 3, ow), 1, H, ow * 3, oh);
}

function crop(img: Float64Array, W: number, top: number, left: number, h: number, w: number): Float64Array {
  const out = new Float64Array(h * w * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w * 3; x++) out[y * w * 3 + x] = img[((top + y) * W + left) * 3 + x];
  return out;
}

/** CHW pixel values of HWC uint8 levels: (v / 255 − mean) / std. */
function normalize(img: Float64Array, S: number, mean: number[], std: number[]): number[] {
  const out: number[] = [];
  for (let c = 0; c < 3; c++) for (let i = 0; i < S * S; i++) out.push((img[i * 3 + c] / 255 - mean[c]) / std[c]);
  return out;
}

/**
 * Pixel values against the reference: every value within one uint8 level (a resampled value
 * that falls on a rounding tie, x.5, can round either way with another summation order), and
 * at most 1% of them off at all.
 */
function closeToLevels(t: { true: (v: boolean, m?: string) => void; log: (...m: string[]) => void }, ours: Float32Array, ref: number[], std: number): void {
  let off = 0, worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ours[i] - ref[i]);
    worst = Math.max(worst, d);
    if (d > 1e-5) off++;
  }
  t.log(`pixel values vs float64: ${off} of ${ref.length} off, by at most ${(worst * 255 * std).toFixed(3)} levels`);
  t.true(ours.length === ref.length && worst <= 1 / 255 / std + 1e-5 && off <= 0.01 * ref.length, `${off} off, worst ${worst}`);
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

async function smolFolder(name: string, pp: Record<string, unknown>): Promise<vp.PretrainedModel> {
  const dir = join(work, name);
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 61 });
  const file = join(dir, 'preprocessor_config.json');
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...pp }));
  return vp.loadPretrained(dir);
}

const HALF = [0.5, 0.5, 0.5];
const single = (k: number) => `<fake_token_around_image><global-img>${'<image>'.repeat(k)}<fake_token_around_image>`;

test('SmolVLM without splitting: longest edge, then the square; pixel values against float64; logits({ images }) = logits(expanded ids, { pixelValues })', async (t) => {
  const m = await smolFolder('smol-single', { size: { longest_edge: 24 }, max_image_size: { longest_edge: 16 }, do_image_splitting: false });
  const im = images(2, 20, 30, 5);
  const p = m.processImages(im);
  t.deepEqual(p.pixelValues.shape, [2, 3, 16, 16]);
  t.deepEqual(p.tiles, [1, 1]);
  t.deepEqual(p.prompts, [single(4), single(4)]);
  // 20 × 30 → longest edge 24: 24 wide, int(24 / 1.5) = 16 high (even) → 16 × 16.
  const ref: number[] = [];
  for (let i = 0; i < 2; i++) {
    const src = Float64Array.from(im.data.subarray(i * 1800, (i + 1) * 1800));
    ref.push(...normalize(resize(resize(src, 20, 30, 16, 24), 16, 24, 16, 16), 16, HALF, HALF));
  }
  closeToLevels(t, p.pixelValues.data as Float32Array, ref, 0.5);
  const hello = m.tokenizer.encode('hello', { addSpecialTokens: false });
  const ids = Int32Array.from([...hello, IMAGE_ID, 7, IMAGE_ID, ...hello]);
  const a = await m.logits(ids, { images: im });
  const expanded = Int32Array.from([...hello, ...m.tokenizer.encode(p.prompts[0], { addSpecialTokens: false }), 7, ...m.tokenizer.encode(p.prompts[1], { addSpecialTokens: false }), ...hello]);
  const b = await m.logits(expanded, { pixelValues: p.pixelValues });
  t.deepEqual(a.shape, [expanded.length, 288]);
  t.is(maxDiff(a.data as Float32Array, b.data as Float32Array), 0);
  // ids that already hold the expanded prompts are taken as they are.
  t.is(maxDiff((await m.logits(expanded, { images: im })).data as Float32Array, b.data as Float32Array), 0);
  // Errors name the argument.
  await t.throwsAsync(m.logits(Int32Array.from([IMAGE_ID, 5]), { images: im }), { instanceOf: RangeError, message: /ids.*one image token.*per image \(2\)/ });
  await t.throwsAsync(m.logits(ids, { images: { data: new Uint8Array(7), shape: [1, 2, 2, 3] } }), { instanceOf: RangeError, message: /opts\.images\.data\.length/ });
  await t.throwsAsync(m.logits(ids, { images: { data: new Uint8Array(12), shape: [1, 2, 2, 1] } }), { instanceOf: RangeError, message: /opts\.images\.shape/ });
  await t.throwsAsync(m.logits(ids, { images: new Float32Array(3) }), { instanceOf: TypeError, message: /opts\.images/ });
  await t.throwsAsync(m.logits(ids, { images: im, pixelValues: p.pixelValues }), { instanceOf: TypeError, message: /opts\.pixelValues/ });
  m.dispose();
});

test('SmolVLM image splitting: resize_for_vision_encoder, row-major tiles and the global image, the processor\'s prompt with <row_r_col_c>', async (t) => {
  const m = await smolFolder('smol-split', { size: { longest_edge: 48 }, max_image_size: { longest_edge: 16 }, do_image_splitting: true });
  const im = images(1, 40, 24, 9);
  const p = m.processImages(im);
  // 40 × 24 → longest edge 48: 48 high, int(48 · 0.6) = 28 wide; to multiples of 16: 48 × 32 → 3 × 2 tiles + global.
  t.deepEqual(p.grid, [[3, 2]]);
  t.deepEqual(p.tiles, [7]);
  t.deepEqual(p.pixelValues.shape, [7, 3, 16, 16]);
  const k = '<image>'.repeat(4);
  let prompt = '';
  for (let r = 1; r <= 3; r++) {
    for (let c = 1; c <= 2; c++) prompt += `<fake_token_around_image><row_${r}_col_${c}>${k}`;
    prompt += '\n';
  }
  t.is(p.prompts[0], `${prompt}\n${single(4)}`);
  const big = resize(resize(Float64Array.from(im.data), 40, 24, 48, 28), 48, 28, 48, 32);
  const ref: number[] = [];
  for (let r = 0; r < 3; r++) for (let c = 0; c < 2; c++) ref.push(...normalize(crop(big, 32, 16 * r, 16 * c, 16, 16), 16, HALF, HALF));
  ref.push(...normalize(resize(big, 48, 32, 16, 16), 16, HALF, HALF));
  closeToLevels(t, p.pixelValues.data as Float32Array, ref, 0.5);
  const a = await m.logits(Int32Array.from([5, IMAGE_ID, 6]), { images: im });
  const expanded = Int32Array.from([5, ...m.tokenizer.encode(p.prompts[0], { addSpecialTokens: false }), 6]);
  t.is(expanded.filter((x) => x === IMAGE_ID).length, 7 * 4);
  t.is(maxDiff(a.data as Float32Array, (await m.logits(expanded, { pixelValues: p.pixelValues })).data as Float32Array), 0);
  // Every image is first resized to size.longest_edge: with 48, an 8 × 8 image is split 3 × 3; with 16 it is one tile.
  t.deepEqual(m.processImages(images(1, 8, 8, 3)).grid, [[3, 3]]);
  const one = await smolFolder('smol-split-one', { size: { longest_edge: 16 }, max_image_size: { longest_edge: 16 }, do_image_splitting: true });
  const small = one.processImages(images(1, 8, 8, 3));
  t.deepEqual([small.grid, small.tiles, small.prompts], [[[0, 0]], [1], [single(4)]]);
  one.dispose();

  // torch's antialiased bicubic interpolate (uint8 rounding per pass), when at hand, as a second reference.
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    t.log('no torch for /usr/bin/python3: the torch reference was skipped');
  } else {
    const file = join(work, 'split.json');
    writeFileSync(file, JSON.stringify({ src: Array.from(im.data), ours: Array.from(p.pixelValues.data as Float32Array) }));
    const py = `
import json, sys, torch
d = json.load(open(sys.argv[1]))
F = torch.nn.functional
x = torch.tensor(d['src'], dtype=torch.float64).reshape(40, 24, 3).permute(2, 0, 1)[None]
def rs(x, oh, ow):
    if ow != x.shape[3]: x = F.interpolate(x, size=(x.shape[2], ow), mode='bicubic', antialias=True, align_corners=False).round().clamp(0, 255)
    if oh != x.shape[2]: x = F.interpolate(x, size=(oh, ow), mode='bicubic', antialias=True, align_corners=False).round().clamp(0, 255)
    return x
big = rs(rs(x, 48, 28), 48, 32)
tiles = [big[:, :, 16*r:16*r+16, 16*c:16*c+16] for r in range(3) for c in range(2)] + [rs(big, 16, 16)]
ref = (torch.cat(tiles) / 255 - 0.5) / 0.5
print(float((ref - torch.tensor(d['ours'], dtype=torch.float64).reshape(7, 3, 16, 16)).abs().max()))
`;
    const r = spawnSync('/usr/bin/python3', ['-c', py, file], { encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    const worst = Number(r.stdout.trim());
    t.log(`largest pixel-value difference to torch: ${worst} (one uint8 level is ${(2 / 255).toFixed(5)})`);
    t.true(worst <= 2 / 255 + 1e-6, `${worst}`);
  }
  m.dispose();
});

test('LLaVA images: shortest edge and center crop against float64; logits({ images }) = logits(expanded ids, { pixelValues }); options not honoured are named', async (t) => {
  const dir = join(work, 'llava');
  writeTinyVlm(dir, { kind: 'llava-siglip', seed: 62, layout: 'new' });
  const m = await vp.loadPretrained(dir);
  const im = images(2, 24, 18, 4);
  const p = m.processImages(im);
  t.deepEqual(p.pixelValues.shape, [2, 3, 16, 16]);
  // 16 patches; vision_feature_select_strategy "default" drops the first (as transformers does for SigLIP too).
  t.deepEqual(p.prompts, ['<image>'.repeat(15), '<image>'.repeat(15)]);
  // 24 × 18 → shortest edge 16: 16 wide, int(24 · 16 / 18) = 21 high; center crop 16 × 16 from row 2.
  const mean = [0.48145466, 0.4578275, 0.40821073], std = [0.26862954, 0.26130258, 0.27577711];
  const ref: number[] = [];
  for (let i = 0; i < 2; i++) ref.push(...normalize(crop(resize(Float64Array.from(im.data.subarray(i * 1296, (i + 1) * 1296)), 24, 18, 21, 16), 16, 2, 0, 16, 16), 16, mean, std));
  closeToLevels(t, p.pixelValues.data as Float32Array, ref, Math.min(...std));
  const a = await m.logits(Int32Array.from([3, IMAGE_ID, IMAGE_ID, 4]), { images: im });
  const b = await m.logits(Int32Array.from([3, ...new Array(30).fill(IMAGE_ID), 4]), { pixelValues: p.pixelValues });
  t.is(maxDiff(a.data as Float32Array, b.data as Float32Array), 0);
  m.dispose();
  const pp = JSON.parse(readFileSync(join(dir, 'preprocessor_config.json'), 'utf8'));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ ...pp, crop_size: { height: 8, width: 8 } }));
  const m2 = await vp.loadPretrained(dir);
  t.throws(() => m2.processImages(im), { message: /crop_size/ });
  m2.dispose();
  const smol = await smolFolder('smol-noresize', { do_resize: false, do_image_splitting: true });
  t.throws(() => smol.processImages(images(1, 16, 16, 1)), { message: /do_resize/ });
  smol.dispose();
  // One image may come as [H, W, 3].
  const one = await smolFolder('smol-one', {});
  t.deepEqual(one.processImages({ data: new Uint8Array(16 * 16 * 3), shape: [16, 16, 3] }).pixelValues.shape, [1, 3, 16, 16]);
  t.throws(() => one.processImages({ data: new Uint8Array(8), shape: [2, 2, 2] }), { instanceOf: RangeError, message: /opts\.images\.shape/ });
  one.dispose();
});
