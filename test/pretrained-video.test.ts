// Video input of vision-language PretrainedModels (lib/pretrained/video.ts):
// SmolVLM's frame sampling, resize, normalization and per-frame prompt with
// timestamps; LLaVA's shortest-edge resize, center crop and <image> expansion;
// logits(ids, { video }) equal to logits(expanded ids, { pixelValues }); the
// antialiased resize against torch's (when /usr/bin/python3 has torch); errors.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { numberWords, resizeU8, smolvlmFrameIndices } from '../lib/pretrained/video.js';
import { relError } from './helpers.js';
import { IMAGE_ID, writeTinyVlm } from './vlm-fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vp-vlmvid-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

function video(F: number, H: number, W: number, fill?: (f: number, y: number, x: number, c: number) => number) {
  const data = new Uint8Array(F * H * W * 3);
  let s = 3;
  for (let f = 0; f < F; f++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < 3; c++) {
          s = (s * 1103515245 + 12345) & 0x7fffffff;
          data[((f * H + y) * W + x) * 3 + c] = fill ? fill(f, y, x, c) : s % 256;
        }
  return { data, shape: [F, H, W, 3] };
}

test('SmolVLM: constant frames normalize exactly, the prompt has per-frame timestamps, logits({ video }) = logits(expanded ids, { pixelValues })', async (t) => {
  const dir = join(work, 'smol');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 31 });
  const m = await vp.loadPretrained(dir);
  const flat = m.processVideo(video(3, 20, 30, (f, _y, _x, c) => 10 * f + 50 * c), { fps: 1 });
  t.deepEqual(flat.pixelValues.shape, [3, 3, 16, 16]);
  const px = flat.pixelValues.data as Float32Array;
  for (let f = 0; f < 3; f++)
    for (let c = 0; c < 3; c++) t.true(Math.abs(px[(f * 3 + c) * 256 + 17] - ((10 * f + 50 * c) / 255 - 0.5) / 0.5) < 1e-6);
  const tokens = `<fake_token_around_image><global-img>${'<image>'.repeat(4)}<fake_token_around_image>`;
  t.is(flat.prompt, `You are provided the following series of three frames from a 0:00:03 [H:MM:SS] video.\n\nFrame from 00:00:${tokens}\nFrame from 00:01:${tokens}\nFrame from 00:02:${tokens}\n\n`);
  const v = video(3, 20, 30);
  const p = m.processVideo(v, { fps: 1 });
  const before = m.tokenizer.encode('hello', { addSpecialTokens: false });
  const ids = Int32Array.from([...before, IMAGE_ID, ...before]);
  const a = await m.logits(ids, { video: v, fps: 1 });
  const expanded = Int32Array.from([...before, ...m.tokenizer.encode(p.prompt, { addSpecialTokens: false }), ...before]);
  t.is(expanded.filter((x) => x === IMAGE_ID).length, 12);
  const b = await m.logits(expanded, { pixelValues: p.pixelValues });
  t.deepEqual(a.shape, b.shape);
  t.true(relError(a.data as Float32Array, b.data as Float32Array) === 0);
  await t.throwsAsync(m.logits(Int32Array.from([IMAGE_ID, IMAGE_ID]), { video: v }), { instanceOf: RangeError, message: /ids.*one image token/ });
  await t.throwsAsync(m.logits(ids, { video: { data: new Uint8Array(5), shape: [1, 1, 1, 3] } }), { instanceOf: RangeError, message: /opts\.video\.data\.length/ });
  await t.throwsAsync(m.logits(ids, { video: new Float32Array(3) }), { instanceOf: TypeError, message: /opts\.video/ });
  await t.throwsAsync(m.logits(ids, { images: [v] }), { instanceOf: TypeError, message: /opts\.images/ });
  m.dispose();
});

test('LLaVA: shortest edge resize and center crop, one <image> per frame expanded to its visual tokens', async (t) => {
  const dir = join(work, 'llava');
  writeTinyVlm(dir, { kind: 'llava-clip', seed: 32 });
  const m = await vp.loadPretrained(dir);
  // A frame whose middle columns are bright: the crop keeps the middle.
  const v = video(2, 16, 48, (_f, _y, x) => (x >= 16 && x < 32 ? 255 : 0));
  const p = m.processVideo(v);
  t.deepEqual(p.pixelValues.shape, [2, 3, 16, 16]);
  const px = p.pixelValues.data as Float32Array;
  t.true(Math.abs(px[8 * 16 + 8] - (1 - 0.48145466) / 0.26862954) < 1e-5);
  t.is(p.prompt, '<image>'.repeat(2 * 16));
  const ids = Int32Array.from([5, IMAGE_ID, 7, 8]);
  const a = await m.logits(ids, { video: v });
  const b = await m.logits(Int32Array.from([5, ...new Array(32).fill(IMAGE_ID), 7, 8]), { pixelValues: p.pixelValues });
  t.true(relError(a.data as Float32Array, b.data as Float32Array) === 0);
  m.dispose();
  // Options the processor has that are not honoured are named.
  const pp = JSON.parse(readFileSync(join(dir, 'preprocessor_config.json'), 'utf8'));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ ...pp, image_grid_pinpoints: [[32, 32]] }));
  const m2 = await vp.loadPretrained(dir);
  t.throws(() => m2.processVideo(v), { message: /image_grid_pinpoints/ });
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ ...pp, resample: 0 }));
  const m3 = await vp.loadPretrained(dir);
  t.throws(() => m3.processVideo(v), { message: /resample/ });
});

test('frame sampling follows SmolVLMVideoProcessor.sample_frames; numbers in words follow num2words', (t) => {
  // 10 s at 30 fps, 1 frame per second, at most 64: 10 frames, 1 s skipped at both ends is not applied (10 - 2 <= 64).
  t.deepEqual(smolvlmFrameIndices(300, 30, 1, 64), [0, 33, 66, 99, 132, 166, 199, 232, 265, 299]);
  // 100 s at 10 fps, at most 8 frames: the ends are skipped (100 - 2 > 8).
  t.deepEqual(smolvlmFrameIndices(1000, 10, 1, 8), [10, 150, 290, 430, 570, 710, 850, 990]);
  t.is(numberWords(8), 'eight');
  t.is(numberWords(21), 'twenty-one');
  t.is(numberWords(105), 'one hundred and five');
});

test('the antialiased resize matches torch (bicubic and bilinear, antialias, rounded per pass) when torch is at hand', (t) => {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    t.log('no torch for /usr/bin/python3: skipped');
    t.pass();
    return;
  }
  const H = 37, W = 53;
  const src = video(1, H, W).data;
  const cases = [[16, 24, 'bicubic'], [64, 80, 'bicubic'], [20, 20, 'bilinear'], [37, 26, 'bicubic']] as const;
  const out = cases.map(([oh, ow, k]) => Array.from(resizeU8(src, H, W, 3, oh, ow, k)));
  const file = join(work, 'resize.json');
  writeFileSync(file, JSON.stringify({ src: Array.from(src), cases, out }));
  const py = `
import json, sys, torch, numpy as np
d = json.load(open(sys.argv[1]))
src = torch.tensor(d['src'], dtype=torch.float64).reshape(${H}, ${W}, 3).permute(2, 0, 1)[None]
worst = 0
for (oh, ow, k), ours in zip(d['cases'], d['out']):
    x = src
    if ow != ${W}: x = torch.nn.functional.interpolate(x, size=(${H}, ow), mode=k, antialias=True, align_corners=False).round().clamp(0, 255)
    if oh != ${H}: x = torch.nn.functional.interpolate(x, size=(oh, ow), mode=k, antialias=True, align_corners=False).round().clamp(0, 255)
    worst = max(worst, float(np.abs(np.array(ours).reshape(oh, ow, 3).transpose(2, 0, 1) - x[0].numpy()).max()))
print(worst)
`;
  const r = spawnSync('/usr/bin/python3', ['-c', py, file], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.true(Number(r.stdout.trim()) <= 1, `largest difference ${r.stdout}`);
});

test('generate(video, prompt) continues from the video tokens (greedy = argmax of logits), through the API and the CLI', async (t) => {
  const dir = join(work, 'smolgen');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 33 });
  const m = await vp.loadPretrained(dir);
  const v = video(2, 12, 12);
  const out = (await m.generate(v, Int32Array.from([IMAGE_ID, 5]), { maxTokens: 1, eosId: -1 })) as Int32Array;
  const p = m.processVideo(v);
  const ids = Int32Array.from([...m.tokenizer.encode(p.prompt, { addSpecialTokens: false }), 5]);
  const lg = (await m.logits(ids, { pixelValues: p.pixelValues })).data as Float32Array;
  const row = lg.subarray((ids.length - 1) * 288, ids.length * 288);
  t.is(out[0], row.indexOf(Math.max(...row)));
  const text = await m.generate(v, [{ role: 'user', content: '<video>hello' }], { maxTokens: 3 });
  t.is(typeof text, 'string');
  m.dispose();
  const npy = join(work, 'clip.npy');
  vp.writeNpy(npy, { dtype: 'uint8', shape: v.shape, data: v.data });
  const r = spawnSync(process.execPath, ['--import=tsx', join(import.meta.dirname, '..', 'lib', 'cli.ts'), 'generate', '--model', dir, '--video', npy, '--prompt', 'hello', '--max-tokens', '2', '--json'], { encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.is(j.prompt, 'hello');
  t.is(typeof j.text, 'string');
});

test('vp.Trainer trains a vision-language model: LoRA SFT with KIM and the contrastive term (vision tower frozen) and one comparative RL step with KIM at the frame level', async (t) => {
  const dir = join(work, 'smoltrain');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 34 });
  const data = join(work, 'synth');
  vp.synthDataset(data, { count: 4, seed: 3, frames: 8, fps: 4 });
  const ds = vp.openDataset(data);
  const m = await vp.loadPretrained(dir);
  m.addLora({ rank: 2 });
  const before = m.parameters();
  const events: { stage: string; loss: number; rewardDegraded?: number }[] = [];
  const trainer = new vp.Trainer(m, { seed: 1, onStep: (e) => e.type === 'step' && events.push(e as never) });
  const sft = await trainer.sft(ds, { steps: 2, batchSize: 2, questions: false, lr: 1e-2 });
  t.is(sft.steps, 2);
  // The method's defaults: KIM sequences and the contrastive term (lib/train/vlm-sft.ts; test/pretrained-vlm-contrast.test.ts).
  t.true(events.slice(0, 2).some((e) => (e as unknown as vp.SftStepEvent).contrastSamples > 0 && (e as unknown as vp.SftStepEvent).kimSequences > 0));
  const rl = await trainer.rl(ds, { steps: 1, promptsPerStep: 2, groupSize: 2, maxTokens: 3, tasks: 'caption' });
  t.is(rl.steps, 1);
  t.deepEqual(events.map((e) => e.stage), ['sft', 'sft', 'rl']);
  t.true(events.every((e) => Number.isFinite(e.loss)));
  // The KIM variants were generated from (their responses have rewards): the comparative signal was there.
  t.true(Number.isFinite(events[2].rewardDegraded), `rewardDegraded ${events[2].rewardDegraded}`);
  const after = m.parameters();
  for (const [name, v] of Object.entries(before)) if (!name.includes('lora_')) t.true(v.every((x, i) => x === after[name][i]), `${name} frozen`);
  t.true(Object.keys(before).some((n) => n.includes('lora_B') && before[n].some((x, i) => x !== after[n][i])));
  // The clip is fitted to the processor's frames and square size, and a KIM frame map comes from its events.
  const clip = trainer.clip(ds, 0);
  t.is(clip.frames.length, 8 * 16 * 16 * 3);
  m.dispose();
});

test('CLI: train --model (a SmolVLM folder) --lora-rank --stage both writes the model with the input tensor names', async (t) => {
  const dir = join(work, 'smolcli');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 35 });
  const data = join(work, 'synthcli');
  vp.synthDataset(data, { count: 3, seed: 4, frames: 8, fps: 4 });
  const out = join(work, 'runcli');
  const r = spawnSync(process.execPath, ['--import=tsx', join(import.meta.dirname, '..', 'lib', 'cli.ts'), 'train', '--model', dir, '--data', data, '--lora-rank', '2', '--stage', 'both', '--steps', '1', '--rl-steps', '1', '--out', out, '--json'], { encoding: 'utf8', timeout: 300_000 });
  t.is(r.status, 0, r.stderr.slice(-2000));
  const { readSafetensors } = await import('../lib/model/safetensors.js');
  t.deepEqual(readSafetensors(join(out, 'model', 'model.safetensors')).order, readSafetensors(join(dir, 'model.safetensors')).order);
  const again = await vp.loadPretrained(join(out, 'model'));
  t.is(again.architecture, 'SmolVLMForConditionalGeneration');
  again.dispose();
});
