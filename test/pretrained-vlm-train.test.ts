// Training a vision-language PretrainedModel through the public API: LoRA SFT
// steps on batches built by vp.vlmTrainBatch (the original clip and its KIM
// variant, substituted at the frame level before the vision tower), the vision
// tower and the base weights untouched; one GRPO-style RL step (responses
// generated from the video, group advantages, the policy gradient through
// dLogprobs); and ShareGPT / LLaVA conversation files with errors naming file and line.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { writeTinyVlm } from './vlm-fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vp-vlmtrain-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

function clip(F: number, H: number, W: number, seed: number) {
  const data = new Uint8Array(F * H * W * 3);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    data[i] = s % 256;
  }
  return { data, shape: [F, H, W, 3] };
}

test('LoRA SFT on the original and KIM-variant clips lowers the loss and leaves the vision tower and base weights alone', async (t) => {
  const dir = join(work, 'smol');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 41 });
  const m = await vp.loadPretrained(dir);
  m.addLora({ rank: 4, alpha: 8 });
  const video = clip(4, 16, 16, 3);
  const key = vp.locateKeyFrames([0, 1, 2, 3], [{ start: 1.5, end: 2.5 }]);
  const frameMap = vp.planSubstitution(4, key, 'nearest');
  t.deepEqual(Array.from(frameMap), [0, 1, 1, 3]);
  const batch = vp.vlmTrainBatch(m, [
    { video, prompt: '<video>hello', response: 'hello world', fps: 1 },
    { video, prompt: '<video>hello', response: 'hello', frameMap, fps: 1 },
  ]);
  t.is(batch.pixelValues!.shape[0], 8);
  // The KIM variant's frame 2 is frame 1's pixels, in slot 2.
  const px = batch.pixelValues!.data as Float32Array;
  const per = 3 * 16 * 16;
  t.deepEqual(Array.from(px.subarray(6 * per, 7 * per)), Array.from(px.subarray(5 * per, 6 * per)));
  const before = m.parameters();
  const losses: number[] = [];
  for (let s = 0; s < 3; s++) losses.push((await m.trainStep(batch, { lr: 1e-2, weightDecay: 0 })).loss);
  t.true(losses[2] < losses[0], `losses ${losses.join(', ')}`);
  const after = m.parameters();
  for (const [name, v] of Object.entries(before)) {
    const changed = v.some((x, i) => x !== after[name][i]);
    if (name.includes('lora_B')) t.true(changed, `${name} trained`);
    else if (!name.includes('lora_')) t.false(changed, `${name} is frozen`);
  }
  t.throws(() => vp.substituteFrames(video, [0, 1, 9, 3]), { instanceOf: RangeError, message: /frameMap\[2\]/ });
  t.throws(() => vp.vlmTrainBatch(m, [{ video, prompt: 'x', response: 'y', frameMap: [0, 1] }]), { instanceOf: RangeError, message: /frameMap\.length/ });
  m.dispose();
});

test('one RL step: responses generated from the video, group advantages, the policy gradient through dLogprobs', async (t) => {
  const dir = join(work, 'llava');
  writeTinyVlm(dir, { kind: 'llava-siglip', seed: 42, layout: 'new' });
  const m = await vp.loadPretrained(dir);
  m.addLora({ rank: 2 });
  const video = clip(2, 20, 24, 7);
  const G = 4;
  const responses: string[] = [];
  for (let g = 0; g < G; g++) responses.push((await m.generate(video, 'hello', { maxTokens: 4, temperature: 1, seed: g })) as string);
  const reward = responses.map((r) => (r.includes('o') ? 1 : 0) + r.length / 100);
  const adv = vp.groupAdvantages(Float32Array.from(reward), G);
  const batch = vp.vlmTrainBatch(m, responses.map((r) => ({ video, prompt: 'hello', response: r })));
  const f = await m.forward(batch, { logprobs: true });
  t.true(Number.isFinite(f.loss));
  // d/dlogp of −Σ_i A_i · mean_t log p_i,t (GRPO at ratio 1, no KL).
  const d = new Float32Array(batch.text.length);
  batch.sequences.forEach(([seg], i) => {
    const [start, len] = seg.text;
    let n = 0;
    for (let k = start; k < start + len; k++) if (batch.targets![k] >= 0) n++;
    for (let k = start; k < start + len; k++) if (batch.targets![k] >= 0) d[k] = -adv[i] / n / G;
  });
  await m.backward({ gradLoss: 0, dLogprobs: d });
  const st = await m.stepOptimizer({ lr: 1e-2 });
  t.is(st.step, 1);
  t.true(Number.isFinite(st.gradNorm) && (adv.every((a) => a === 0) ? st.gradNorm === 0 : st.gradNorm > 0), `grad norm ${st.gradNorm}`);
  m.dispose();
});

test('ShareGPT / LLaVA conversation files: both record shapes, JSON and JSON Lines; errors name file and line', (t) => {
  const a = join(work, 'data.json');
  writeFileSync(a, JSON.stringify([
    { id: 'c1', video: 'clips/a.mp4', conversations: [{ from: 'human', value: '<video>\nWhat happens?' }, { from: 'gpt', value: 'A ball falls.' }] },
    { videos: ['b.mp4'], messages: [{ role: 'user', content: '<video>Describe.' }, { role: 'assistant', content: 'Rain.' }] },
  ], null, 2));
  const r = vp.readConversations(a);
  t.is(r.length, 2);
  t.is(r[0].video, join(work, 'clips', 'a.mp4'));
  t.deepEqual(r[0].turns, [{ role: 'user', content: '<video>\nWhat happens?' }, { role: 'assistant', content: 'A ball falls.' }]);
  t.is(r[1].id, '1');
  t.is(r[1].line, 16); // JSON.stringify(.., 2): record 0 takes lines 2-15
  const bad = join(work, 'bad.json');
  writeFileSync(bad, '[\n  {"video": "a.mp4", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},\n  {"video": "b.mp4",\n   "conversations": [{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}]}\n]');
  t.throws(() => vp.readConversations(bad), { instanceOf: vp.DataFormatError, message: new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: record 1: turn 0.*robot`) });
  const jl = join(work, 'data.jsonl');
  writeFileSync(jl, '{"video": "a.mp4", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}\n\n{"video": 3, "conversations": []}\n');
  t.throws(() => vp.readConversations(jl), { instanceOf: vp.DataFormatError, message: /data\.jsonl:3: record 1: "video"/ });
  writeFileSync(jl, '{"video": "a.mp4"\n');
  t.throws(() => vp.readConversations(jl), { instanceOf: vp.DataFormatError, message: /data\.jsonl:1: not valid JSON/ });
  t.throws(() => vp.readConversations(join(work, 'missing.json')), { instanceOf: vp.DataFormatError, message: /missing\.json.*cannot read/ });
});
