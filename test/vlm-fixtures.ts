// Tiny Hugging Face vision-language folders for the tests: random weights in
// transformers' exact naming (SmolVLM / Idefics3: model.vision_model.*,
// model.connector.modality_projection.proj.weight, model.text_model.*,
// lm_head.weight; LLaVA before 4.52: vision_tower.vision_model.*,
// multi_modal_projector.*, language_model.model.*, language_model.lm_head.weight,
// and since: model.vision_tower.*, model.multi_modal_projector.*,
// model.language_model.*, lm_head.weight), config.json with vision_config and
// text_config, a byte-level tokenizer with the image tokens added, a chat
// template, and preprocessor_config.json.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type StTensor } from '../lib/model/safetensors.js';
import * as vp from '../lib/index.js';
import { seededRandom } from '../lib/random.js';
import { randomFloats, relError } from './helpers.js';
import { bytelevelTokenizer, CHATML, tinyConfig, tinyTensors } from './pretrained-fixtures.js';

export type VlmKind = 'smolvlm' | 'idefics3' | 'llava-clip' | 'llava-siglip';

export interface TinyVlmOptions {
  kind: VlmKind;
  /** LLaVA tensor layout: 'old' (before transformers 4.52) or 'new'. */
  layout?: 'old' | 'new';
  seed?: number;
  /** LLaVA: vision_feature_layer and strategy. */
  featureLayer?: number | number[];
  strategy?: 'default' | 'full';
  projectorAct?: string;
  tied?: boolean;
}

export const VOCAB = 288;
export const IMAGE_ID = 280;
export const FAKE_ID = 281;
export const GLOBAL_ID = 282;

/** Vision sizes of the tiny towers. */
export const VISION = { hidden: 16, heads: 2, intermediate: 24, layers: 2, patch: 4, image: 16, channels: 3 };

function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

export type Tensors = Record<string, { shape: number[]; data: Float32Array }>;

/** The tiny model's tensors (float32) under their checkpoint names, and its config.json. */
export function tinyVlm(o: TinyVlmOptions): { tensors: Tensors; config: Record<string, unknown>; names: { vision: string; text: string; head: string; connector: string } } {
  const r = seededRandom(o.seed ?? 5);
  const out: Tensors = {};
  const put = (name: string, shape: number[], std: number, mean = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = mean + std * gauss(r);
    out[name] = { shape, data };
  };
  const llava = o.kind.startsWith('llava');
  const layout = o.layout ?? 'old';
  const names = !llava
    ? { vision: 'model.vision_model.', text: 'model.text_model.', head: 'lm_head.weight', connector: 'model.connector.' }
    : layout === 'old'
      ? { vision: 'vision_tower.vision_model.', text: 'language_model.model.', head: 'language_model.lm_head.weight', connector: 'multi_modal_projector.' }
      : { vision: 'model.vision_tower.vision_model.', text: 'model.language_model.', head: 'lm_head.weight', connector: 'model.multi_modal_projector.' };
  const { hidden: D, intermediate: F, layers, patch: p, image, channels: C } = VISION;
  const clip = o.kind === 'llava-clip';
  const P = names.vision;
  const perSide = image / p;
  if (clip) put(`${P}embeddings.class_embedding`, [D], 0.5);
  put(`${P}embeddings.patch_embedding.weight`, [D, C, p, p], 0.2);
  if (!clip) put(`${P}embeddings.patch_embedding.bias`, [D], 0.2);
  put(`${P}embeddings.position_embedding.weight`, [perSide * perSide + (clip ? 1 : 0), D], 0.5);
  if (clip) {
    put(`${P}pre_layrnorm.weight`, [D], 0.1, 1);
    put(`${P}pre_layrnorm.bias`, [D], 0.1);
  }
  for (let l = 0; l < layers; l++) {
    const q = `${P}encoder.layers.${l}.`;
    put(`${q}layer_norm1.weight`, [D], 0.1, 1);
    put(`${q}layer_norm1.bias`, [D], 0.1);
    for (const pr of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) {
      put(`${q}self_attn.${pr}.weight`, [D, D], 0.3);
      put(`${q}self_attn.${pr}.bias`, [D], 0.1);
    }
    put(`${q}layer_norm2.weight`, [D], 0.1, 1);
    put(`${q}layer_norm2.bias`, [D], 0.1);
    put(`${q}mlp.fc1.weight`, [F, D], 0.3);
    put(`${q}mlp.fc1.bias`, [F], 0.1);
    put(`${q}mlp.fc2.weight`, [D, F], 0.3);
    put(`${q}mlp.fc2.bias`, [D], 0.1);
  }
  put(`${P}post_layernorm.weight`, [D], 0.1, 1);
  put(`${P}post_layernorm.bias`, [D], 0.1);
  const textOpts = { arch: 'LlamaForCausalLM' as const, tied: o.tied ?? false, dtype: 'F32' as const, seed: (o.seed ?? 5) + 100, vocab: VOCAB };
  const textHidden = 32;
  const featureLayer = o.featureLayer ?? -2;
  const nFeat = Array.isArray(featureLayer) ? featureLayer.length : 1;
  if (!llava) put(`${names.connector}modality_projection.proj.weight`, [textHidden, D * 4], 0.3);
  else {
    put(`${names.connector}linear_1.weight`, [textHidden, D * nFeat], 0.3);
    put(`${names.connector}linear_1.bias`, [textHidden], 0.1);
    put(`${names.connector}linear_2.weight`, [textHidden, textHidden], 0.2);
    put(`${names.connector}linear_2.bias`, [textHidden], 0.1);
  }
  if (o.kind === 'llava-siglip') {
    // SiglipVisionModel's pooling head: stored, unused by LLaVA.
    put(`${P}head.probe`, [1, 1, D], 0.2);
    put(`${P}head.attention.in_proj_weight`, [3 * D, D], 0.2);
    put(`${P}head.attention.in_proj_bias`, [3 * D], 0.1);
    put(`${P}head.attention.out_proj.weight`, [D, D], 0.2);
    put(`${P}head.attention.out_proj.bias`, [D], 0.1);
    put(`${P}head.layernorm.weight`, [D], 0.1, 1);
    put(`${P}head.layernorm.bias`, [D], 0.1);
    put(`${P}head.mlp.fc1.weight`, [F, D], 0.2);
    put(`${P}head.mlp.fc1.bias`, [F], 0.1);
    put(`${P}head.mlp.fc2.weight`, [D, F], 0.2);
    put(`${P}head.mlp.fc2.bias`, [D], 0.1);
  }
  for (const [name, t] of Object.entries(tinyTensors(textOpts))) {
    const to = name === 'lm_head.weight' ? names.head : names.text + name.slice('model.'.length);
    out[to] = t;
  }
  const text = tinyConfig(textOpts);
  delete text.architectures;
  delete text.torch_dtype;
  const visionCommon = {
    hidden_size: D, intermediate_size: F, num_hidden_layers: layers, num_attention_heads: VISION.heads, num_channels: C,
    image_size: image, patch_size: p, attention_dropout: 0.0,
  };
  let config: Record<string, unknown>;
  if (!llava) {
    const smol = o.kind === 'smolvlm';
    config = {
      architectures: [smol ? 'SmolVLMForConditionalGeneration' : 'Idefics3ForConditionalGeneration'],
      model_type: smol ? 'smolvlm' : 'idefics3', image_token_id: IMAGE_ID, scale_factor: 2, tie_word_embeddings: o.tied ?? false,
      vision_config: { ...visionCommon, model_type: smol ? 'smolvlm_vision' : 'idefics3_vision', hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6 },
      text_config: text, torch_dtype: 'float32', transformers_version: '4.53.0', use_cache: true,
    };
  } else {
    config = {
      architectures: ['LlavaForConditionalGeneration'], model_type: 'llava', image_token_index: IMAGE_ID,
      projector_hidden_act: o.projectorAct ?? 'gelu', vision_feature_select_strategy: o.strategy ?? 'default', vision_feature_layer: featureLayer,
      image_seq_length: perSide * perSide, multimodal_projector_bias: true, tie_word_embeddings: o.tied ?? false,
      vision_config: clip
        ? { ...visionCommon, model_type: 'clip_vision_model', hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, projection_dim: 8 }
        : { ...visionCommon, model_type: 'siglip_vision_model', hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6 },
      text_config: text, torch_dtype: 'float32', transformers_version: layout === 'old' ? '4.46.0' : '4.53.0',
    };
  }
  return { tensors: out, config, names };
}

/** The byte-level tokenizer with the image tokens added. */
export function vlmTokenizer(): Record<string, unknown> {
  const t = bytelevelTokenizer();
  const add = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  (t.added_tokens as unknown[]).push(add(IMAGE_ID, '<image>'), add(FAKE_ID, '<fake_token_around_image>'), add(GLOBAL_ID, '<global-img>'));
  return t;
}

/** Writes the tiny folder; returns its tensors and config. */
export function writeTinyVlm(dir: string, o: TinyVlmOptions): ReturnType<typeof tinyVlm> {
  mkdirSync(dir, { recursive: true });
  const m = tinyVlm(o);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(m.config, null, 2));
  const all: Record<string, StTensor> = {};
  for (const n of Object.keys(m.tensors).sort()) all[n] = { dtype: 'F32', shape: m.tensors[n].shape, data: m.tensors[n].data };
  writeSafetensors(join(dir, 'model.safetensors'), all, { format: 'pt' });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(vlmTokenizer()));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>', tokenizer_class: 'GPT2Tokenizer',
    add_prefix_space: false, clean_up_tokenization_spaces: false, model_max_length: 256, chat_template: CHATML,
  }, null, 2));
  const llava = o.kind.startsWith('llava');
  const pp = llava
    ? { do_resize: true, size: { shortest_edge: VISION.image }, crop_size: { height: VISION.image, width: VISION.image }, do_center_crop: true, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], resample: 3, image_processor_type: 'CLIPImageProcessor', processor_class: 'LlavaProcessor' }
    : { do_resize: true, size: { longest_edge: VISION.image }, max_image_size: { longest_edge: VISION.image }, do_image_splitting: false, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], resample: 1, image_processor_type: o.kind === 'smolvlm' ? 'SmolVLMImageProcessor' : 'Idefics3ImageProcessor', processor_class: o.kind === 'smolvlm' ? 'SmolVLMProcessor' : 'Idefics3Processor' };
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(pp, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: 266, transformers_version: '4.53.0' }, null, 2));
  return m;
}

/**
 * Two random images (pixel values [2, C, H, W]) and a text of `perImage` image tokens after each
 * of two markers, with a training batch whose targets are the next text tokens.
 */
export function twoImageInput(perImage: number): {
  px: vp.Tensor; ids: number[];
  batch: { text: Int32Array; targets: Int32Array; pixelValues: vp.Tensor; sequences: { text: [number, number] }[][] };
} {
  const { channels: C, image } = VISION;
  const px = vp.tensor(randomFloats(2 * C * image * image, 40, -1, 1), [2, C, image, image]);
  const ids: number[] = [5];
  for (let i = 0; i < 2; i++) ids.push(17 + i, ...new Array(perImage).fill(IMAGE_ID));
  ids.push(9, 33, 71);
  const text = Int32Array.from(ids);
  const targets = Int32Array.from(ids, (x, i) => (i + 1 < ids.length && ids[i + 1] !== IMAGE_ID && x !== IMAGE_ID ? ids[i + 1] : -1));
  return { px, ids, batch: { text, targets, pixelValues: px, sequences: [[{ text: [0, ids.length] }]] } };
}

/** The tiny video LLMs the reduced-precision tests run (name, folder options, image tokens per image). */
export const BF16_VLM_CASES: [string, TinyVlmOptions, number][] = [
  ['SmolVLM', { kind: 'smolvlm', seed: 3 }, 4],
  ['LLaVA + CLIP', { kind: 'llava-clip', layout: 'old', seed: 5 }, 16],
];

/**
 * A tiny video LLM written to a fresh folder (`prefix` names it), loaded in float32 and with
 * `opts`: the second model, its two-image input, and the relative error of its logits against
 * the float32 model's.
 */
export async function againstFloat32(prefix: string, o: TinyVlmOptions, perImage: number, opts: vp.LoadPretrainedOptions): Promise<{
  dir: string; f: vp.PretrainedModel; m: vp.PretrainedModel; err: number; want: Float32Array;
} & ReturnType<typeof twoImageInput>> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeTinyVlm(dir, o);
  const f = await vp.loadPretrained(dir);
  const m = await vp.loadPretrained(dir, opts);
  const input = twoImageInput(perImage);
  const want = (await f.logits(input.ids, { pixelValues: input.px })).data as Float32Array;
  const err = relError((await m.logits(input.ids, { pixelValues: input.px })).data as Float32Array, want);
  return { dir, f, m, err, want, ...input };
}
