// Pretrained folders on disk: save() writes the Hugging Face layout back (same
// files, names, order, shapes, dtypes; untouched tensors byte-identical; the
// folder reloads to the same logits), and corrupt, truncated or mismatched
// checkpoints and configs are clear errors naming the file, the tensor or the
// config field — never a crash.
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { FIXTURES, randomIds, tinyConfig, writeTinyModel, type TinyOptions } from './pretrained-fixtures.js';

function fixture(name: string, over: Partial<TinyOptions> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-ptf-${name}-`));
  writeTinyModel(dir, { ...FIXTURES[name], ...over });
  return dir;
}

const bytes = (t: vp.StTensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
const ids = randomIds(14, 77);

/** Every weight file of two folders: same files, same tensors in the same order, same dtypes and shapes; returns the names whose bytes differ. */
function compareFolders(t: import('ava').ExecutionContext, a: string, b: string): string[] {
  const weights = (d: string) => readdirSync(d).filter((f) => f.endsWith('.safetensors')).sort();
  t.deepEqual(weights(b), weights(a));
  const differ: string[] = [];
  for (const f of weights(a)) {
    const x = vp.readSafetensors(join(a, f));
    const y = vp.readSafetensors(join(b, f));
    t.deepEqual(y.order, x.order, `${f}: tensor order`);
    t.deepEqual(y.metadata, x.metadata);
    for (const n of x.order) {
      t.is(y.tensors[n].dtype, x.tensors[n].dtype, `${n}: dtype`);
      t.deepEqual(y.tensors[n].shape, x.tensors[n].shape, `${n}: shape`);
      if (!bytes(y.tensors[n]).equals(bytes(x.tensors[n]))) differ.push(n);
    }
  }
  return differ;
}

for (const name of Object.keys(FIXTURES)) {
  test(`${name}: save() of an untouched model rewrites the folder byte for byte`, async (t) => {
    const dir = fixture(name);
    const m = await vp.loadPretrained(dir);
    const out = mkdtempSync(join(tmpdir(), 'vp-ptf-out-'));
    await m.save(out);
    t.deepEqual(compareFolders(t, dir, out), []);
    for (const f of readdirSync(dir)) t.true(readFileSync(join(out, f)).equals(readFileSync(join(dir, f))), `${f} is byte-identical`);
    t.deepEqual(readdirSync(out).sort(), readdirSync(dir).sort());
  });
}

test('after training, save() keeps names, order, dtypes and shapes, changes only the trained tensors, and reloads to the same logits', async (t) => {
  const dir = fixture('llama-tied-bf16-sharded-llama3');
  const m = await vp.loadPretrained(dir);
  m.addLora({ rank: 2, targets: ['q_proj'], layers: [0] });
  const text = Int32Array.from(ids);
  for (let i = 0; i < 3; i++) await m.trainStep({ text, sequences: [[{ text: [0, text.length] }]] }, { lr: 0.05, weightDecay: 0 });
  const out = mkdtempSync(join(tmpdir(), 'vp-ptf-lora-'));
  await m.save(out);
  t.deepEqual(compareFolders(t, dir, out), ['model.layers.0.self_attn.q_proj.weight']);
  const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
  t.deepEqual(index, JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')));
  // Full fine-tuning of an F32 checkpoint: the reloaded folder computes exactly what the model does.
  const f32dir = fixture('llama-untied-f32');
  const full = await vp.loadPretrained(f32dir);
  for (let i = 0; i < 2; i++) await full.trainStep({ text, sequences: [[{ text: [0, text.length] }]] }, { lr: 1e-3 });
  const saved = mkdtempSync(join(tmpdir(), 'vp-ptf-full-'));
  await full.save(saved);
  const differ = compareFolders(t, f32dir, saved);
  t.true(differ.length > 0);
  const again = await vp.loadPretrained(saved);
  t.deepEqual(Array.from((await again.logits(ids)).data), Array.from((await full.logits(ids)).data));
  t.deepEqual(again.config, full.config);
});

test('save() refuses to rewrite the folder the model came from', async (t) => {
  const dir = fixture('qwen2-tied-f16');
  const m = await vp.loadPretrained(dir);
  await t.throwsAsync(() => m.save(dir), { message: /never rewritten/ });
});

// ---- corrupt, truncated and mismatched checkpoints --------------------------------

/** Rewrites model.safetensors with a change to its tensors. */
function editSingle(dir: string, edit: (t: Record<string, vp.StTensor>) => void): void {
  const p = join(dir, 'model.safetensors');
  const st = vp.readSafetensors(p);
  edit(st.tensors);
  vp.writeSafetensors(p, st.tensors, st.metadata);
}

const cases: [string, (dir: string) => void, RegExp][] = [
  ['a tensor of the wrong shape', (d) => editSingle(d, (t) => (t['model.layers.1.self_attn.k_proj.weight'] = { dtype: 'F32', shape: [24, 32], data: new Float32Array(24 * 32) })),
    /'model\.layers\.1\.self_attn\.k_proj\.weight': shape \[24, 32\] does not match config\.json, which implies \[16, 32\]/],
  ['a missing tensor', (d) => editSingle(d, (t) => delete t['model.layers.1.mlp.up_proj.weight']), /tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is missing/],
  ['an unexpected tensor', (d) => editSingle(d, (t) => (t['model.layers.0.self_attn.q_norm.weight'] = { dtype: 'F32', shape: [8], data: new Float32Array(8) })),
    /'model\.layers\.0\.self_attn\.q_norm\.weight' is not part of a LlamaForCausalLM/],
  ['an integer weight', (d) => editSingle(d, (t) => (t['model.norm.weight'] = { dtype: 'I32', shape: [32], data: new Int32Array(32) })), /'model\.norm\.weight': dtype I32 is not a floating-point weight dtype/],
  ['an unknown dtype', (d) => {
    const p = join(d, 'model.safetensors');
    const buf = readFileSync(p);
    const n = Number(buf.readBigUInt64LE(0));
    const header = buf.subarray(8, 8 + n).toString('utf8').replace('"dtype":"F32"', '"dtype":"F8_E4M3"');
    writeFileSync(p, Buffer.concat([buf.subarray(0, 8), Buffer.from(header), buf.subarray(8 + n)]));
  }, /unsupported dtype "F8_E4M3"/],
  ['a header larger than the file', (d) => {
    const p = join(d, 'model.safetensors');
    const buf = readFileSync(p);
    buf.writeBigUInt64LE(BigInt(buf.length), 0);
    writeFileSync(p, buf);
  }, /header length \d+ runs past the end of the \d+-byte file/],
  ['a truncated file', (d) => truncateSync(join(d, 'model.safetensors'), 5000), /extend past the end of the data|truncated/],
  ['a header that is not JSON', (d) => {
    const p = join(d, 'model.safetensors');
    const buf = readFileSync(p);
    buf.write('{{{{', 8, 'utf8');
    writeFileSync(p, buf);
  }, /header is not valid JSON/],
  ['an 8-byte file', (d) => writeFileSync(join(d, 'model.safetensors'), Buffer.alloc(7)), /too short for a safetensors file/],
  ['no weights at all', (d) => {
    rmSync(join(d, 'model.safetensors'));
    writeFileSync(join(d, 'pytorch_model.bin'), 'x');
  }, /no model\.safetensors or model\.safetensors\.index\.json \(found pytorch_model\.bin: only safetensors/],
  ['a tokenizer larger than vocab_size', (d) => {
    const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...c, vocab_size: 200 }));
  }, /shape \[288, 32\] does not match config\.json, which implies \[200, 32\]|tokenizer has 277 ids/],
];

for (const [what, damage, message] of cases) {
  test(`a checkpoint with ${what} is a CheckpointError naming it`, async (t) => {
    const dir = fixture('llama-untied-f32');
    damage(dir);
    const e = await t.throwsAsync(() => vp.loadPretrained(dir), { instanceOf: vp.CheckpointError, message });
    t.log(e?.message);
  });
}

test('a sharded checkpoint whose index and shards disagree is a clear error', async (t) => {
  const make = () => fixture('qwen2-untied-bf16-sharded');
  const idxOf = (d: string) => JSON.parse(readFileSync(join(d, 'model.safetensors.index.json'), 'utf8'));
  let d = make();
  rmSync(join(d, 'model-00002-of-00002.safetensors'));
  await t.throwsAsync(() => vp.loadPretrained(d), { instanceOf: vp.CheckpointError, message: /shard model-00002-of-00002\.safetensors is listed in weight_map but .* does not exist/ });
  d = make();
  let idx = idxOf(d);
  idx.weight_map['model.norm.weight'] = idx.weight_map['model.norm.weight'] === 'model-00001-of-00002.safetensors' ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors';
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
  await t.throwsAsync(() => vp.loadPretrained(d), { instanceOf: vp.CheckpointError, message: /'model\.norm\.weight' is not where model\.safetensors\.index\.json says/ });
  d = make();
  idx = idxOf(d);
  idx.weight_map['model.layers.0.mlp.up_proj.weight'] = '../elsewhere.safetensors';
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
  await t.throwsAsync(() => vp.loadPretrained(d), { instanceOf: vp.CheckpointError, message: /weight_map\["model\.layers\.0\.mlp\.up_proj\.weight"\] must name a \.safetensors file in the folder/ });
  d = make();
  writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": ');
  await t.throwsAsync(() => vp.loadPretrained(d), { instanceOf: vp.CheckpointError, message: /index\.json: not valid JSON/ });
});

test('a tied checkpoint that also stores a different lm_head.weight is refused; an identical copy is carried through', async (t) => {
  const dir = fixture('qwen2-tied-f16', { shards: 0 });
  const p = join(dir, 'model.safetensors');
  const st = vp.readSafetensors(p);
  const e = st.tensors['model.embed_tokens.weight'];
  vp.writeSafetensors(p, { ...st.tensors, 'lm_head.weight': { ...e, data: e.data.slice() } }, st.metadata);
  const m = await vp.loadPretrained(dir);
  const out = mkdtempSync(join(tmpdir(), 'vp-ptf-tied-'));
  await m.save(out);
  t.true(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(p)));
  const other = e.data.slice() as Uint16Array;
  other[5] ^= 1;
  vp.writeSafetensors(p, { ...st.tensors, 'lm_head.weight': { ...e, data: other } }, st.metadata);
  await t.throwsAsync(() => vp.loadPretrained(dir), { instanceOf: vp.CheckpointError, message: /tie_word_embeddings is true but lm_head\.weight differs/ });
});

const configCases: [string, Record<string, unknown>, RegExp][] = [
  ['an unknown architecture', { architectures: ['MistralForCausalLM'] }, /architectures = \["MistralForCausalLM"\] is not supported/],
  ['a non-SiLU activation', { hidden_act: 'gelu' }, /hidden_act = "gelu" is not supported/],
  ['YaRN rotary scaling', { rope_scaling: { rope_type: 'yarn', factor: 4 } }, /rope_scaling\.rope_type = "yarn" is not supported/],
  ['dynamic rotary scaling (old spelling)', { rope_scaling: { type: 'dynamic', factor: 2 } }, /rope_scaling\.type = "dynamic" is not supported/],
  ['llama3 scaling without its factors', { rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling\.low_freq_factor = undefined is not supported: must be a positive number/],
  ['kv heads that do not divide the heads', { num_key_value_heads: 3 }, /num_key_value_heads = 3 is not supported: must divide num_attention_heads = 4/],
  ['an odd head dimension', { head_dim: 7 }, /head_dim = 7 is not supported/],
  ['a missing size', { hidden_size: undefined }, /hidden_size = undefined is not supported: required/],
  ['quantized weights', { quantization_config: { quant_method: 'bitsandbytes' } }, /quantization_config = .* is not supported/],
  ['a vision-language config of a text architecture', { vision_config: {}, text_config: {} }, /architectures = .* is not supported: expected one of .*SmolVLMForConditionalGeneration/],
];

for (const [what, patch, message] of configCases) {
  test(`config.json with ${what} is an UnsupportedConfigError naming the field and value`, async (t) => {
    const dir = fixture('llama-untied-f32');
    const cfg = { ...tinyConfig(FIXTURES['llama-untied-f32']), ...patch };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    await t.throwsAsync(() => vp.loadPretrained(dir), { instanceOf: vp.UnsupportedConfigError, message });
  });
}

test('Qwen2 sliding-window attention is refused; missing or malformed config.json is a CheckpointError', async (t) => {
  const q = fixture('qwen2-tied-f16');
  writeFileSync(join(q, 'config.json'), JSON.stringify({ ...tinyConfig(FIXTURES['qwen2-tied-f16']), use_sliding_window: true }));
  await t.throwsAsync(() => vp.loadPretrained(q), { instanceOf: vp.UnsupportedConfigError, message: /use_sliding_window = true/ });
  const d = fixture('llama-untied-f32');
  writeFileSync(join(d, 'config.json'), '{ nope');
  await t.throwsAsync(() => vp.loadPretrained(d), { instanceOf: vp.CheckpointError, message: /config\.json: not valid JSON/ });
  rmSync(join(d, 'config.json'));
  await t.throwsAsync(() => vp.loadPretrained(d), { instanceOf: vp.CheckpointError, message: /config\.json: not found/ });
  t.false(existsSync(join(d, 'config.json')));
  await t.throwsAsync(() => vp.loadPretrained(''), { instanceOf: TypeError });
  await t.throwsAsync(() => vp.loadPretrained(d, { dtype: 'float16' as never }), { instanceOf: TypeError, message: /opts\.dtype/ });
});
