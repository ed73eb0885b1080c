// LoRA on pretrained models: PEFT's names, shapes and scaling, a frozen base,
// merge == unmerged forward, gradients against finite differences of the
// float64 reference (which reads the adapter folder itself), training that
// lowers the loss and changes only adapter tensors (bytewise), and the PEFT
// file layout in both directions.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { seededRandom } from '../lib/random.js';
import { relError } from './helpers.js';
import { FIXTURES, gradientCheck, haveNumpy, runReference, writeTinyModel } from './pretrained-fixtures.js';

const NUMPY = haveNumpy();

function fixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-lora-${name}-`));
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

/** Random values for every adapter tensor (a fresh B is zero, which would hide A's role). */
function randomizeAdapters(m: vp.PretrainedModel, seed: number): void {
  const r = seededRandom(seed);
  const vals: Record<string, Float32Array> = {};
  for (const [n, v] of Object.entries(m.parameters())) if (/lora_[AB]/.test(n)) vals[n] = Float32Array.from(v, () => (r() - 0.5) * 0.4);
  m.setParameters(vals);
}

const ids = [1, 9, 44, 200, 17, 3, 281, 90, 12, 64, 7, 150];

test('addLora: PEFT shapes and scaling, default targets q/k/v/o, base frozen, a fresh adapter changes nothing', async (t) => {
  const m = await vp.loadPretrained(fixture('llama-tied-bf16-sharded-llama3'));
  const before = (await m.logits(ids)).data as Float32Array;
  const r = m.addLora({ rank: 4, alpha: 8 });
  t.is(r.targets.length, 2 * 4);
  t.true(r.targets.every((p) => /^model\.layers\.\d\.self_attn\.[qkvo]_proj$/.test(p)));
  const d = 32, q = 4 * 12, kv = 2 * 12;
  t.is(r.trainableParams, 2 * 4 * ((d + q) + (d + kv) + (d + kv) + (q + d)));
  t.is(m.numTrainable, r.trainableParams);
  const p = m.parameters();
  t.deepEqual([p['model.layers.0.self_attn.q_proj.lora_A.weight'].length, p['model.layers.0.self_attn.q_proj.lora_B.weight'].length], [4 * d, q * 4]);
  t.true(m.trainableParameters().every((n) => /lora_[AB]\.weight$/.test(n)));
  const a = p['model.layers.0.self_attn.q_proj.lora_A.weight'];
  t.true(a.every((x) => Math.abs(x) <= 1 / Math.sqrt(d)) && a.some((x) => x !== 0), 'A ~ U(-1/sqrt(in), 1/sqrt(in))');
  t.deepEqual(Array.from((await m.logits(ids)).data), Array.from(before));
  t.deepEqual(m.lora, { rank: 4, alpha: 8, dropout: 0, useRslora: false, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], layers: null });
});

test('merged LoRA gives the same logits as the unmerged adapters (all seven targets, rsLoRA scaling)', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-untied-bf16-sharded'));
  m.addLora({ rank: 3, alpha: 5, targets: 'all-linear', useRslora: true });
  randomizeAdapters(m, 3);
  const unmerged = (await m.logits(ids)).data as Float32Array;
  const base = m.parameters()['model.layers.1.mlp.down_proj.weight'];
  m.mergeLora();
  t.is(m.lora, null);
  t.false(m.trainableParameters().some((n) => n.includes('lora')));
  const merged = (await m.logits(ids)).data as Float32Array;
  const err = relError(merged, unmerged);
  t.true(err <= 1e-6, `merged vs unmerged: ${err}`);
  t.notDeepEqual(Array.from(m.parameters()['model.layers.1.mlp.down_proj.weight']), Array.from(base));
});

test('LoRA gradients (adapters only) match finite differences of the reference, which reads the PEFT folder itself', async (t) => {
  if (!NUMPY) return t.fail('/usr/bin/python3 with numpy is needed for the reference');
  const dir = fixture('llama-untied-f32');
  const m = await vp.loadPretrained(dir);
  m.addLora({ rank: 2, alpha: 6, targets: ['q_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'] });
  randomizeAdapters(m, 5);
  const adapter = mkdtempSync(join(tmpdir(), 'vp-lora-adapter-'));
  await m.saveAdapter(adapter);
  const ref = runReference({ dir, adapter, sequences: [ids], mode: 'logits' });
  if (!ref.ok) return t.fail(ref.why);
  const err = relError((await m.logits(ids)).data as Float32Array, (ref.out.logits as number[][])[0]);
  t.true(err <= 1e-5, `logits with the adapter vs the reference: ${err}`);
  t.true(Object.keys(m.gradients()).every((n) => n.includes('lora_')));
  await gradientCheck(t, m, dir, adapter);
});

test('LoRA training lowers the loss and changes only the adapter tensors (bytewise); AdamW state only for adapters', async (t) => {
  const m = await vp.loadPretrained(fixture('llama-tied-bf16-sharded-llama3'));
  m.addLora({ rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'up_proj'] });
  const before = m.parameters();
  const text = Int32Array.from([...ids, ...ids.slice(0, 7).reverse()]);
  const batch = { text, sequences: [[{ text: [0, 12] as [number, number] }], [{ text: [12, 7] as [number, number] }]] };
  const first = await m.trainStep(batch, { lr: 1e-2, weightDecay: 0 });
  let last = first;
  for (let i = 0; i < 24; i++) last = await m.trainStep(batch, { lr: 1e-2, weightDecay: 0 });
  t.log(`loss ${first.loss.toFixed(4)} -> ${last.loss.toFixed(4)} in 25 steps`);
  t.true(last.loss < first.loss * 0.8, `${first.loss} -> ${last.loss}`);
  t.is(m.step, 25);
  t.is(m.optimizerStateSize, 2 * m.numTrainable);
  const after = m.parameters();
  let changed = 0;
  for (const [n, v] of Object.entries(after)) {
    const same = Buffer.from(v.buffer, v.byteOffset, v.byteLength).equals(Buffer.from(before[n].buffer, before[n].byteOffset, before[n].byteLength));
    if (n.includes('lora_')) changed += same ? 0 : 1;
    else t.true(same, `base tensor ${n} changed`);
  }
  t.is(changed, 2 * 2 * 3, 'every A and B changed');
  // Saving the adapter alone, and the base (merged) model, in their layouts.
  const adir = mkdtempSync(join(tmpdir(), 'vp-lora-save-'));
  await m.saveAdapter(adir);
  const cfg = JSON.parse(readFileSync(join(adir, 'adapter_config.json'), 'utf8'));
  t.like(cfg, { peft_type: 'LORA', r: 4, lora_alpha: 8, task_type: 'CAUSAL_LM', lora_dropout: 0, bias: 'none', use_rslora: false, use_dora: false, fan_in_fan_out: false });
  t.deepEqual(cfg.target_modules, ['q_proj', 'v_proj', 'up_proj']);
  const st = vp.readSafetensors(join(adir, 'adapter_model.safetensors'));
  t.is(Object.keys(st.tensors).length, 12);
  t.deepEqual(st.tensors['base_model.model.model.layers.1.mlp.up_proj.lora_A.weight'].shape, [4, 32]);
  t.deepEqual(st.tensors['base_model.model.model.layers.1.mlp.up_proj.lora_B.weight'].shape, [48, 4]);
  t.is(st.tensors['base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight'].dtype, 'F32');
});

test('an adapter folder reloads onto the base model (loadPretrained { adapter }) with the same logits; save() writes the merged model', async (t) => {
  const dir = fixture('llama-untied-f32');
  const m = await vp.loadPretrained(dir);
  m.addLora({ rank: 2, alpha: 2, targets: ['k_proj', 'down_proj'], layers: [1] });
  randomizeAdapters(m, 8);
  const want = (await m.logits(ids)).data as Float32Array;
  const adir = mkdtempSync(join(tmpdir(), 'vp-lora-re-'));
  await m.saveAdapter(adir);
  const cfg = JSON.parse(readFileSync(join(adir, 'adapter_config.json'), 'utf8'));
  t.deepEqual(cfg.layers_to_transform, [1]);
  const again = await vp.loadPretrained(dir, { adapter: adir });
  t.deepEqual(Array.from((await again.logits(ids)).data), Array.from(want));
  t.is(again.trainableParameters().length, 4);
  const merged = mkdtempSync(join(tmpdir(), 'vp-lora-merged-'));
  await m.save(merged);
  t.false(existsSync(join(merged, 'adapter_config.json')));
  const reloaded = await vp.loadPretrained(merged);
  const err = relError((await reloaded.logits(ids)).data as Float32Array, want);
  t.true(err <= 1e-6, `merged save vs adapters: ${err}`);
  t.truthy(m.lora, 'the model in memory keeps its adapters');
});

test('LoRA dropout is applied only in training passes', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-tied-f16'));
  m.addLora({ rank: 2, dropout: 0.5 });
  randomizeAdapters(m, 9);
  const batch = { text: Int32Array.from(ids), sequences: [[{ text: [0, ids.length] as [number, number] }]] };
  const evalLoss = (await m.forward(batch, { forBackward: false })).loss;
  const again = (await m.forward(batch, { forBackward: false })).loss;
  const train = (await m.forward(batch)).loss;
  t.is(evalLoss, again);
  t.not(train, evalLoss);
});

test('LoRA misuse and unsupported adapter configs are clear errors', async (t) => {
  const dir = fixture('llama-untied-f32');
  const m = await vp.loadPretrained(dir);
  t.throws(() => m.mergeLora(), { message: /no LoRA adapters/ });
  await t.throwsAsync(() => m.saveAdapter(mkdtempSync(join(tmpdir(), 'x-'))), { message: /no LoRA adapters/ });
  t.throws(() => m.addLora({ rank: 0 }), { instanceOf: RangeError, message: /opts\.rank/ });
  t.throws(() => m.addLora({ rank: 2, targets: ['qkv_proj' as never] }), { instanceOf: RangeError, message: /opts\.targets\[0\]/ });
  t.throws(() => m.addLora({ rank: 2, dropout: 1 }), { instanceOf: RangeError, message: /opts\.dropout/ });
  m.addLora({ rank: 2 });
  t.throws(() => m.addLora({ rank: 2 }), { message: /already has LoRA/ });
  const adir = mkdtempSync(join(tmpdir(), 'vp-lora-bad-'));
  await m.saveAdapter(adir);
  const cfgPath = join(adir, 'adapter_config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, use_dora: true }));
  await t.throwsAsync(() => vp.loadPretrained(dir, { adapter: adir }), { instanceOf: vp.CheckpointError, message: /use_dora = true is not supported/ });
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, r: 3 }));
  await t.throwsAsync(() => vp.loadPretrained(dir, { adapter: adir }), { instanceOf: vp.CheckpointError, message: /lora_A\.weight': shape \[2, 32\], expected \[3, 32\]/ });
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, target_modules: ['q_proj'] }));
  await t.throwsAsync(() => vp.loadPretrained(dir, { adapter: adir }), { instanceOf: vp.CheckpointError, message: /k_proj\.lora_A\.weight' does not belong/ });
});
