// Vision-language PretrainedModels (SmolVLM, Idefics3, LLaVA with CLIP or
// SigLIP towers, both LLaVA tensor layouts) from tiny folders written in
// transformers' exact naming: logits(ids, { pixelValues }) against the float64
// reference of each family's formulas (test/vlm-reference.ts), save → reload
// with identical tensor names, LoRA on the text model, gradients through the
// vision side against finite differences, and the errors for bad input.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { readSafetensors } from '../lib/model/safetensors.js';
import { navitPositionIds, torchArangeF32 } from '../lib/pretrained/vision.js';
import { randomFloats, relError } from './helpers.js';
import { IMAGE_ID, VISION, VOCAB, writeTinyVlm, type TinyVlmOptions, type Tensors } from './vlm-fixtures.js';
import { act, lin, llamaRef, pixelShuffleRef, visionRef } from './vlm-reference.js';

const work = mkdtempSync(join(tmpdir(), 'vp-vlm-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

let count = 0;
function folder(o: TinyVlmOptions): { dir: string; m: ReturnType<typeof writeTinyVlm> } {
  const dir = join(work, `m${count++}`);
  return { dir, m: writeTinyVlm(dir, o) };
}

function pixels(n: number, seed: number): vp.Tensor {
  const { channels: C, image } = VISION;
  return vp.tensor(randomFloats(n * C * image * image, seed, -1, 1), [n, C, image, image]);
}

/** The float64 reference logits of ids with the images' features in place of the image tokens. */
function referenceLogits(o: TinyVlmOptions, m: ReturnType<typeof writeTinyVlm>, ids: number[], px: vp.Tensor): Float64Array {
  const w: Tensors = m.tensors;
  const cfg = m.config as Record<string, any>;
  const vc = cfg.vision_config, tc = cfg.text_config;
  const kind = o.kind === 'llava-clip' ? 'clip' : o.kind === 'llava-siglip' ? 'siglip' : 'navit';
  const spec = {
    prefix: m.names.vision, kind, hidden: vc.hidden_size, heads: vc.num_attention_heads, intermediate: vc.intermediate_size,
    layers: vc.num_hidden_layers, patch: vc.patch_size, channels: vc.num_channels, eps: vc.layer_norm_eps, act: vc.hidden_act,
  } as const;
  const [n, C, H, W] = px.shape;
  const d = tc.hidden_size;
  const feats: Float64Array[] = [];
  for (let i = 0; i < n; i++) {
    const img = Float64Array.from((px.data as Float32Array).subarray(i * C * H * W, (i + 1) * C * H * W));
    const r = visionRef(w, spec, img, H, W);
    const D = spec.hidden;
    if (!o.kind.startsWith('llava')) {
      const sh = pixelShuffleRef(r.post, r.S, D, cfg.scale_factor);
      const rows = r.S / cfg.scale_factor ** 2;
      feats.push(lin(sh, rows, w[`${m.names.connector}modality_projection.proj.weight`].data, d, D * cfg.scale_factor ** 2));
    } else {
      const layers = (Array.isArray(cfg.vision_feature_layer) ? cfg.vision_feature_layer : [cfg.vision_feature_layer]) as number[];
      const drop = cfg.vision_feature_select_strategy === 'default' ? 1 : 0;
      const rows = r.S - drop;
      const K = layers.length;
      const x = new Float64Array(rows * K * D);
      layers.forEach((l, c) => {
        const h = r.hidden[l < 0 ? r.hidden.length + l : l];
        for (let t = 0; t < rows; t++) for (let j = 0; j < D; j++) x[(t * K + c) * D + j] = h[(t + drop) * D + j];
      });
      const C_ = m.names.connector;
      const h1 = lin(x, rows, w[`${C_}linear_1.weight`].data, d, K * D, w[`${C_}linear_1.bias`].data).map((v) => act(v, cfg.projector_hidden_act));
      feats.push(lin(h1, rows, w[`${C_}linear_2.weight`].data, d, d, w[`${C_}linear_2.bias`].data));
    }
  }
  const all = feats.flatMap((f) => Array.from(f));
  const emb = w[`${m.names.text}embed_tokens.weight`].data;
  const T = ids.length;
  const x0 = new Float64Array(T * d);
  let k = 0;
  for (let t = 0; t < T; t++) {
    if (ids[t] === IMAGE_ID) for (let j = 0; j < d; j++) x0[t * d + j] = all[k++];
    else for (let j = 0; j < d; j++) x0[t * d + j] = emb[ids[t] * d + j];
  }
  if (k !== all.length) throw new Error(`reference: ${all.length / d} features for ${k / d} image tokens`);
  return llamaRef(w, {
    prefix: m.names.text, head: m.names.head, hidden: d, heads: tc.num_attention_heads, kvHeads: tc.num_key_value_heads, intermediate: tc.intermediate_size,
    layers: tc.num_hidden_layers, vocab: tc.vocab_size, eps: tc.rms_norm_eps, theta: tc.rope_theta, tied: cfg.tie_word_embeddings,
  }, x0, T);
}

/** ids: text, then per image `perImage` image tokens between text tokens. */
function idsWithImages(nImages: number, perImage: number, seed: number): number[] {
  const r = randomFloats(64, seed, 0, 260);
  const ids: number[] = [Math.floor(r[0])];
  for (let i = 0; i < nImages; i++) {
    ids.push(Math.floor(r[1 + i]));
    for (let k = 0; k < perImage; k++) ids.push(IMAGE_ID);
  }
  for (let i = 0; i < 3; i++) ids.push(Math.floor(r[20 + i]));
  return ids;
}

const CASES: [string, TinyVlmOptions, number][] = [
  ['SmolVLM', { kind: 'smolvlm', seed: 3 }, 4],
  ['Idefics3 (tied head)', { kind: 'idefics3', seed: 4, tied: true }, 4],
  ['LLaVA + CLIP, old layout, default strategy, layer -2', { kind: 'llava-clip', layout: 'old', seed: 5 }, 16],
  ['LLaVA + CLIP, new layout, full strategy, layers [-1, 0]', { kind: 'llava-clip', layout: 'new', seed: 6, strategy: 'full', featureLayer: [-1, 0] }, 17],
  ['LLaVA + SigLIP (pooling head stored), new layout, layer -1, gelu_pytorch_tanh projector', { kind: 'llava-siglip', layout: 'new', seed: 7, featureLayer: -1, projectorAct: 'gelu_pytorch_tanh' }, 15],
];

for (const [name, o, perImage] of CASES) {
  test(`${name}: logits(ids, { pixelValues }) match the float64 reference`, async (t) => {
    const { dir, m } = folder(o);
    const model = await vp.loadPretrained(dir);
    t.is(model.architecture, (m.config.architectures as string[])[0]);
    const px = pixels(2, 40 + (o.seed ?? 0));
    const ids = idsWithImages(2, perImage, o.seed ?? 0);
    const out = await model.logits(ids, { pixelValues: px });
    t.deepEqual(out.shape, [ids.length, VOCAB]);
    const ref = referenceLogits(o, m, ids, px);
    const err = relError(out.data as Float32Array, ref);
    t.true(err <= 1e-5, `relative error ${err}`);
    model.dispose();
  });
}

test('save → reload keeps every tensor name, dtype and value; LoRA trains the text model only', async (t) => {
  for (const o of [{ kind: 'smolvlm', seed: 8 }, { kind: 'llava-siglip', layout: 'old', seed: 9 }] as TinyVlmOptions[]) {
    const { dir } = folder(o);
    const model = await vp.loadPretrained(dir);
    const info = model.addLora({ rank: 2 });
    t.true(info.targets.length > 0 && info.targets.every((p) => !p.includes('vision')), info.targets.join(','));
    t.true(model.trainableParameters().every((n) => n.includes('lora_')));
    const out = join(work, `saved${count++}`);
    await model.save(out);
    const a = readSafetensors(join(dir, 'model.safetensors'));
    const b = readSafetensors(join(out, 'model.safetensors'));
    t.deepEqual(b.order, a.order);
    for (const n of a.order) t.is(b.tensors[n].dtype, a.tensors[n].dtype, n);
    const again = await vp.loadPretrained(out);
    t.is(again.architecture, model.architecture);
    const px = pixels(1, 77);
    const ids = idsWithImages(1, o.kind === 'smolvlm' ? 4 : 15, 3); // SigLIP has no class token; 'default' still drops the first
    // Fresh LoRA B is zero: the merged save computes what the base did.
    const base = await vp.loadPretrained(dir);
    t.true(relError((await again.logits(ids, { pixelValues: px })).data as Float32Array, (await base.logits(ids, { pixelValues: px })).data as Float32Array) < 1e-6);
    for (const x of [model, again, base]) x.dispose();
  }
});

test('the vision tower starts frozen; setVisionTrainable trains it too', async (t) => {
  const { dir } = folder({ kind: 'smolvlm', seed: 10 });
  const model = await vp.loadPretrained(dir);
  const tr = model.trainableParameters();
  t.true(tr.some((n) => n.startsWith('model.connector.')));
  t.false(tr.some((n) => n.startsWith('model.vision_model.')));
  model.setVisionTrainable(true);
  t.true(model.trainableParameters().some((n) => n.startsWith('model.vision_model.')));
  model.dispose();
});

test('bad visual input is a clear error naming the argument', async (t) => {
  const { dir } = folder({ kind: 'smolvlm', seed: 11 });
  const model = await vp.loadPretrained(dir);
  const ids = idsWithImages(1, 4, 1);
  await t.throwsAsync(model.logits(ids, { pixelValues: pixels(2, 1) }), { instanceOf: RangeError, message: /ids.*8 image tokens.*got 4|ids/ });
  await t.throwsAsync(model.logits(ids), { instanceOf: RangeError, message: /ids.*image token/ });
  await t.throwsAsync(model.logits(ids, { pixelValues: vp.tensor(new Float32Array(2 * 12 * 12), [1, 2, 12, 12]) }), { instanceOf: RangeError, message: /pixelValues\.shape\[1\]/ });
  await t.throwsAsync(model.logits(ids, { pixelValues: vp.tensor(new Float32Array(3 * 12 * 12), [1, 3, 12, 12]) }), { instanceOf: RangeError, message: /pixelValues\.shape/ });
  const nan = pixels(1, 2);
  (nan.data as Float32Array)[5] = NaN;
  await t.throwsAsync(model.logits(ids, { pixelValues: nan }), { instanceOf: RangeError, message: /pixelValues.*finite/ });
  await t.throwsAsync(model.logits(ids, { pixelValues: 'x' as never }), { instanceOf: TypeError, message: /opts\.pixelValues/ });
  model.dispose();
  const l = folder({ kind: 'llava-clip', seed: 12 });
  const lm = await vp.loadPretrained(l.dir);
  await t.throwsAsync(lm.logits(idsWithImages(1, 16, 1), { pixelValues: vp.tensor(new Float32Array(3 * 8 * 8), [1, 3, 8, 8]) }), { instanceOf: RangeError, message: /image_size/ });
  lm.dispose();
});

test('SmolVLM drops all-zero padding images, as get_image_features does', async (t) => {
  const { dir } = folder({ kind: 'smolvlm', seed: 13 });
  const model = await vp.loadPretrained(dir);
  const one = pixels(1, 5);
  const padded = vp.tensor(new Float32Array(2 * one.size), [2, ...one.shape.slice(1)]);
  (padded.data as Float32Array).set(one.data as Float32Array);
  const ids = idsWithImages(1, 4, 2);
  const a = await model.logits(ids, { pixelValues: one });
  const b = await model.logits(ids, { pixelValues: padded });
  t.deepEqual(Array.from(b.data as Float32Array), Array.from(a.data as Float32Array));
  model.dispose();
});

test('unsupported vision-language config fields are named', async (t) => {
  const { dir, m } = folder({ kind: 'llava-clip', seed: 14 });
  const { writeFileSync } = await import('node:fs');
  for (const [field, value, re] of [
    ['vision_feature_select_strategy', 'cls', /vision_feature_select_strategy/],
    ['projector_hidden_act', 'mish', /projector_hidden_act/],
    ['vision_feature_layer', 9, /vision_feature_layer/],
  ] as const) {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...m.config, [field]: value }));
    await t.throwsAsync(vp.loadPretrained(dir), { message: re });
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...m.config, vision_config: { ...(m.config.vision_config as object), model_type: 'dinov2' } }));
  await t.throwsAsync(vp.loadPretrained(dir), { message: /vision_config\.model_type/ });
});

test('NaViT position ids follow torch.arange / bucketize in float32', (t) => {
  // Full grids on the common tower sizes are the identity.
  for (const n of [2, 4, 8, 16, 24, 27, 32]) t.deepEqual(Array.from(navitPositionIds(n, n, n)), Array.from({ length: n * n }, (_, i) => i));
  // A half-size grid takes every other bucket.
  t.deepEqual(Array.from(navitPositionIds(2, 2, 4)), [0, 2, 8, 10]);
  // arange's values: the scalar path below 16 elements, 8-wide blocks above.
  const a = torchArangeF32(0, 1, 0.1);
  t.is(a.length, 10);
  t.is(a[3], Math.fround(0.1 * 3));
});

test('gradients through the connector and the vision tower match finite differences of the loss', async (t) => {
  for (const o of [{ kind: 'smolvlm', seed: 15 }, { kind: 'llava-clip', layout: 'new', seed: 16, featureLayer: [-2, -1] }] as TinyVlmOptions[]) {
    const { dir, m } = folder(o);
    const model = await vp.loadPretrained(dir);
    model.setVisionTrainable(true);
    const per = o.kind === 'smolvlm' ? 4 : 16;
    const ids = Int32Array.from(idsWithImages(2, per, 9));
    const batch = { text: ids, sequences: [[{ text: [0, ids.length] as [number, number] }]], pixelValues: pixels(2, 21) };
    await model.forward(batch);
    await model.backward();
    const grads = model.gradients();
    const P = m.names.vision;
    const names = [
      `${P}embeddings.patch_embedding.weight`, `${P}embeddings.position_embedding.weight`, `${P}encoder.layers.0.mlp.fc1.weight`,
      `${P}encoder.layers.0.self_attn.q_proj.weight`, `${P}encoder.layers.0.layer_norm1.weight`, `${P}encoder.layers.1.layer_norm2.bias`,
      ...(o.kind === 'smolvlm' ? [`${P}post_layernorm.weight`, 'model.connector.modality_projection.proj.weight'] : [`${P}pre_layrnorm.weight`, `${P}embeddings.class_embedding`, `${m.names.connector}linear_1.weight`]),
    ];
    const base = model.parameters();
    for (const name of names) {
      const g = grads[name];
      t.truthy(g, name);
      const u = randomFloats(g.length, name.length, -1, 1);
      const norm = Math.sqrt(u.reduce((s, x) => s + x * x, 0));
      for (let i = 0; i < u.length; i++) u[i] /= norm;
      const h = 1e-2;
      const lossAt = async (sgn: number) => {
        model.setParameters({ [name]: base[name].map((x, i) => x + sgn * h * u[i]) });
        return (await model.forward(batch, { forBackward: false })).loss;
      };
      const fd = ((await lossAt(1)) - (await lossAt(-1))) / (2 * h);
      model.setParameters({ [name]: base[name] });
      const an = g.reduce((s, x, i) => s + x * u[i], 0);
      t.true(Math.abs(an) > 1e-3, `${name}: a directional derivative this small tests nothing (${an})`);
      t.true(Math.abs(fd - an) <= 0.03 * Math.abs(an) + 2e-4, `${o.kind} ${name}: backward ${an}, finite difference ${fd}`);
    }
    // Frozen again, the tower keeps no activations and gets no gradient; the connector's is the same.
    model.setVisionTrainable(false);
    await model.forward(batch);
    await model.backward();
    const frozen = model.gradients();
    t.false(`${P}encoder.layers.0.mlp.fc1.weight` in frozen);
    const conn = names[names.length - 1];
    const scale = grads[conn].reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    t.true(scale > 0 && frozen[conn].every((x, i) => Math.abs(x - grads[conn][i]) <= 1e-6 * scale), `${o.kind} ${conn}: the frozen tower's connector gradient differs`);
    model.dispose();
  }
});
