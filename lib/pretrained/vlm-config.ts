// config.json of a Hugging Face vision-language model → the shapes of its
// three parts: the vision tower, the connector and the text decoder.
//
// Families (transformers' configuration_idefics3.py, configuration_smolvlm.py,
// configuration_llava.py, with their vision configs configuration_siglip.py /
// configuration_clip.py and defaults): SmolVLM / Idefics3 — a SigLIP-style
// tower whose position ids follow the image's patch grid (NaViT buckets),
// pixel shuffle by `scale_factor` and one linear `modality_projection`; LLaVA
// — a CLIP or SigLIP tower whose hidden state `vision_feature_layer` (an index
// into hidden_states, or a list of them, concatenated) is taken with or
// without its first token (`vision_feature_select_strategy` 'default' / 'full')
// into `multi_modal_projector` (linear_1, act, linear_2). The text side is
// parsed by config.ts (Llama / Qwen2). Tensor names follow transformers: the
// SmolVLM/Idefics3 layout, and LLaVA's two (before 4.52: vision_tower.*,
// language_model.model.*, language_model.lm_head; since: model.vision_tower.*,
// model.language_model.*, lm_head), told apart by the tensors the files hold.
// Every field that changes the math is checked; anything not implemented is an
// UnsupportedConfigError naming the field. Cost: O(size of the JSON).
import type { GeluApproximate } from '../ops/norm-act.js';
import { limits } from '../native.js';
import { parseConfig, UnsupportedConfigError, VLM_ARCHITECTURES, type DecoderSpec, type VlmArchitecture } from './config.js';

export { VLM_ARCHITECTURES, type VlmArchitecture };

/** The vision tower's shape. */
export interface VisionSpec {
  /** 'siglip': patch conv with bias + positions; 'clip': class token, conv without bias, pre-LayerNorm; 'navit': SigLIP with grid-bucketed positions (Idefics3 / SmolVLM). */
  kind: 'siglip' | 'clip' | 'navit';
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  headDim: number;
  patch: number;
  imageSize: number;
  channels: number;
  eps: number;
  act: GeluApproximate;
  /** vision_use_head of a SigLIP tower (its pooling head's weights are kept but unused, as LLaVA does). */
  useHead: boolean;
}

/** Where each part's tensors live in the checkpoint. */
export interface VlmNames {
  /** Prefix of the vision transformer ('model.vision_model.', 'vision_tower.vision_model.', ...). */
  vision: string;
  /** Prefix of the text model's tensors (embed_tokens, layers, norm). */
  text: string;
  /** The LM head's tensor name. */
  head: string;
  /** Prefix of the connector / projector. */
  connector: string;
}

export interface VlmSpec {
  architecture: VlmArchitecture;
  family: 'idefics3' | 'llava';
  text: DecoderSpec;
  vision: VisionSpec;
  imageTokenId: number;
  /** Idefics3 / SmolVLM pixel shuffle factor. */
  scaleFactor: number;
  /** LLaVA's projector. */
  projector: { act: GeluApproximate | 'silu' | 'relu'; bias: boolean; featureLayers: number[]; featureLayerIsList: boolean; strategy: 'default' | 'full' };
  names: VlmNames;
  /** Visual tokens per image (after the connector), for a full-size image. */
  tokensPerImage: number;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

const ACTS: Record<string, GeluApproximate> = { gelu: 'erf', gelu_pytorch_tanh: 'tanh', gelu_new: 'tanh', quick_gelu: 'quick' };

/** True when config.json describes a vision-language model (it has vision_config or text_config). */
export function isVlmConfig(raw: Json): boolean {
  return raw.vision_config !== undefined || raw.text_config !== undefined;
}

/**
 * Parses a vision-language config.json. `hasTensor(name)` tells which of
 * LLaVA's two layouts the files use (the names of the stored tensors).
 */
export function parseVlmConfig(raw: Json, file: string, hasTensor: (name: string) => boolean): VlmSpec {
  const value = (path: string): unknown => path.split('.').reduce<unknown>((o, k) => (isObject(o) ? o[k] : undefined), raw);
  const bad = (field: string, detail: string): never => {
    throw new UnsupportedConfigError(file, field, value(field), detail);
  };
  const archs = raw.architectures;
  const byType: Record<string, VlmArchitecture> = { smolvlm: 'SmolVLMForConditionalGeneration', idefics3: 'Idefics3ForConditionalGeneration', llava: 'LlavaForConditionalGeneration' };
  let architecture: VlmArchitecture;
  if (Array.isArray(archs) && archs.length === 1 && VLM_ARCHITECTURES.includes(archs[0] as VlmArchitecture)) architecture = archs[0] as VlmArchitecture;
  else if (archs === undefined && typeof raw.model_type === 'string' && byType[raw.model_type]) architecture = byType[raw.model_type];
  else bad('architectures', `expected one of ${JSON.stringify(VLM_ARCHITECTURES)} for a vision-language config (or a text-only LlamaForCausalLM / Qwen2ForCausalLM)`);
  const family = architecture! === 'LlavaForConditionalGeneration' ? 'llava' : 'idefics3';
  const wantType = { SmolVLMForConditionalGeneration: 'smolvlm', Idefics3ForConditionalGeneration: 'idefics3', LlavaForConditionalGeneration: 'llava' }[architecture!];
  if (raw.model_type !== undefined && raw.model_type !== wantType) bad('model_type', `${architecture!} needs model_type "${wantType}"`);
  if (raw.quantization_config !== undefined && raw.quantization_config !== null) bad('quantization_config', 'quantized checkpoints are not implemented');

  // ---- text
  const tc = raw.text_config;
  if (!isObject(tc)) bad('text_config', 'required: an object (the language model\'s config)');
  const textRaw: Json = { ...(tc as Json) };
  textRaw.model_type ??= 'llama';
  delete textRaw.architectures;
  const tieOwn = (tc as Json).tie_word_embeddings;
  textRaw.tie_word_embeddings = typeof tieOwn === 'boolean' ? tieOwn : typeof raw.tie_word_embeddings === 'boolean' ? raw.tie_word_embeddings : false;
  if (textRaw.model_type !== 'llama' && textRaw.model_type !== 'qwen2') bad('text_config.model_type', 'the text model must be "llama" or "qwen2"');
  const text = parseConfig(textRaw, `${file} (text_config)`);

  // ---- vision
  const vc = raw.vision_config;
  if (!isObject(vc)) bad('vision_config', 'required: an object (the vision tower\'s config)');
  const v = vc as Json;
  const vtype = v.model_type;
  let kind: VisionSpec['kind'];
  let d: { hidden: number; intermediate: number; layers: number; heads: number; image: number; patch: number; act: string; eps: number };
  if (family === 'idefics3') {
    if (vtype !== undefined && vtype !== 'idefics3_vision' && vtype !== 'smolvlm_vision') bad('vision_config.model_type', 'must be "idefics3_vision" or "smolvlm_vision"');
    kind = 'navit';
    d = { hidden: 1152, intermediate: 3072, layers: 12, heads: 16, image: 224, patch: 32, act: 'gelu_pytorch_tanh', eps: 1e-6 };
  } else if (vtype === 'clip_vision_model' || vtype === undefined) {
    kind = 'clip';
    d = { hidden: 768, intermediate: 3072, layers: 12, heads: 12, image: 224, patch: 32, act: 'quick_gelu', eps: 1e-5 };
  } else if (vtype === 'siglip_vision_model') {
    kind = 'siglip';
    d = { hidden: 768, intermediate: 3072, layers: 12, heads: 12, image: 224, patch: 16, act: 'gelu_pytorch_tanh', eps: 1e-6 };
  } else bad('vision_config.model_type', 'LLaVA towers implemented: "clip_vision_model", "siglip_vision_model"');
  const vint = (k: string, dflt: number): number => {
    const x = v[k] ?? dflt;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1) bad(`vision_config.${k}`, 'must be a positive integer');
    return x as number;
  };
  const hidden = vint('hidden_size', d!.hidden);
  const heads = vint('num_attention_heads', d!.heads);
  if (hidden % heads !== 0) bad('vision_config.num_attention_heads', `must divide hidden_size = ${hidden}`);
  const headDim = hidden / heads;
  const { maxHeadDim } = limits();
  if (headDim > maxHeadDim) bad('vision_config.num_attention_heads', `the head dimension (${headDim}) must be at most ${maxHeadDim}`);
  const actName = v.hidden_act ?? d!.act;
  if (typeof actName !== 'string' || !ACTS[actName]) bad('vision_config.hidden_act', `implemented: ${Object.keys(ACTS).join(', ')}`);
  const eps = v.layer_norm_eps ?? d!.eps;
  if (typeof eps !== 'number' || !(eps > 0)) bad('vision_config.layer_norm_eps', 'must be a positive number');
  if ((v.attention_dropout ?? 0) !== 0) bad('vision_config.attention_dropout', 'only 0 is implemented');
  const channels = vint('num_channels', 3);
  const patch = vint('patch_size', d!.patch);
  const imageSize = vint('image_size', d!.image);
  if (imageSize % patch !== 0) bad('vision_config.image_size', `must be a multiple of patch_size = ${patch}`);
  const vision: VisionSpec = {
    kind: kind!, hidden, intermediate: vint('intermediate_size', d!.intermediate), layers: vint('num_hidden_layers', d!.layers), heads, headDim,
    patch, imageSize, channels, eps: eps as number, act: ACTS[actName as string], useHead: kind! === 'siglip' && v.vision_use_head !== false,
  };
  const perSide = imageSize / patch;

  // ---- connector, image token, names
  let imageTokenId: number;
  let scaleFactor = 1;
  let projector: VlmSpec['projector'] = { act: 'erf', bias: true, featureLayers: [], featureLayerIsList: false, strategy: 'full' };
  let names: VlmNames;
  let tokensPerImage: number;
  const tokenField = (keys: string[], dflt: number): number => {
    const k = keys.find((x) => raw[x] !== undefined && raw[x] !== null);
    const x = k ? raw[k] : dflt;
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) bad(k ?? keys[0], 'must be a non-negative integer token id');
    if ((x as number) >= text.vocab) bad(k ?? keys[0], `must be below text_config.vocab_size = ${text.vocab}`);
    return x as number;
  };
  if (family === 'idefics3') {
    imageTokenId = tokenField(['image_token_id'], 128257);
    const sf = raw.scale_factor ?? 2;
    if (typeof sf !== 'number' || !Number.isSafeInteger(sf) || sf < 1) bad('scale_factor', 'must be a positive integer');
    scaleFactor = sf as number;
    if (perSide % scaleFactor !== 0) bad('scale_factor', `must divide the patches per side (image_size / patch_size = ${perSide})`);
    names = { vision: 'model.vision_model.', text: 'model.text_model.', head: 'lm_head.weight', connector: 'model.connector.' };
    tokensPerImage = (perSide / scaleFactor) ** 2;
  } else {
    imageTokenId = tokenField(['image_token_index', 'image_token_id'], 32000);
    const pa = raw.projector_hidden_act ?? 'gelu';
    const pAct = pa === 'silu' || pa === 'relu' ? pa : ACTS[pa as string];
    if (!pAct) bad('projector_hidden_act', `implemented: ${[...Object.keys(ACTS), 'silu', 'relu'].join(', ')}`);
    const strategy = raw.vision_feature_select_strategy ?? 'default';
    if (strategy !== 'default' && strategy !== 'full') bad('vision_feature_select_strategy', 'must be "default" (drop the first token) or "full"');
    const fl = raw.vision_feature_layer ?? -2;
    const list = Array.isArray(fl);
    const layersList = (list ? fl : [fl]) as unknown[];
    if (layersList.length === 0) bad('vision_feature_layer', 'must be an integer or a non-empty list of them');
    const L = vision.layers;
    const featureLayers = layersList.map((x) => {
      if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < -(L + 1) || x > L) bad('vision_feature_layer', `each must index hidden_states (${L + 1} of them: -${L + 1} … ${L})`);
      return (x as number) < 0 ? L + 1 + (x as number) : (x as number);
    });
    const bias = raw.multimodal_projector_bias ?? true;
    if (typeof bias !== 'boolean') bad('multimodal_projector_bias', 'must be true or false');
    projector = { act: pAct as VlmSpec['projector']['act'], bias: bias as boolean, featureLayers, featureLayerIsList: list, strategy: strategy as 'default' | 'full' };
    const newLayout = hasTensor('model.multi_modal_projector.linear_1.weight') || hasTensor('model.language_model.embed_tokens.weight');
    names = newLayout
      ? { vision: 'model.vision_tower.vision_model.', text: 'model.language_model.', head: 'lm_head.weight', connector: 'model.multi_modal_projector.' }
      : { vision: 'vision_tower.vision_model.', text: 'language_model.model.', head: 'language_model.lm_head.weight', connector: 'multi_modal_projector.' };
    const seq = perSide * perSide + (kind! === 'clip' ? 1 : 0);
    tokensPerImage = strategy === 'default' ? seq - 1 : seq;
  }
  return { architecture: architecture!, family, text, vision, imageTokenId, scaleFactor, projector, names, tokensPerImage };
}

/** Every tensor the spec needs, HF-named, with its shape (text part included). */
export function expectedVlmTensors(spec: VlmSpec, textTensors: { name: string; shape: number[] }[]): { name: string; shape: number[] }[] {
  const v = spec.vision;
  const { hidden: D, intermediate: F, patch: p, channels: C } = v;
  const P = spec.names.vision;
  const out: { name: string; shape: number[] }[] = [];
  const perSide = v.imageSize / p;
  const positions = perSide * perSide + (v.kind === 'clip' ? 1 : 0);
  if (v.kind === 'clip') out.push({ name: `${P}embeddings.class_embedding`, shape: [D] });
  out.push({ name: `${P}embeddings.patch_embedding.weight`, shape: [D, C, p, p] });
  if (v.kind !== 'clip') out.push({ name: `${P}embeddings.patch_embedding.bias`, shape: [D] });
  out.push({ name: `${P}embeddings.position_embedding.weight`, shape: [positions, D] });
  if (v.kind === 'clip') out.push({ name: `${P}pre_layrnorm.weight`, shape: [D] }, { name: `${P}pre_layrnorm.bias`, shape: [D] });
  for (let l = 0; l < v.layers; l++) {
    const q = `${P}encoder.layers.${l}.`;
    for (const ln of ['layer_norm1', 'layer_norm2']) out.push({ name: `${q}${ln}.weight`, shape: [D] }, { name: `${q}${ln}.bias`, shape: [D] });
    for (const pr of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) out.push({ name: `${q}self_attn.${pr}.weight`, shape: [D, D] }, { name: `${q}self_attn.${pr}.bias`, shape: [D] });
    out.push({ name: `${q}mlp.fc1.weight`, shape: [F, D] }, { name: `${q}mlp.fc1.bias`, shape: [F] });
    out.push({ name: `${q}mlp.fc2.weight`, shape: [D, F] }, { name: `${q}mlp.fc2.bias`, shape: [D] });
  }
  out.push({ name: `${P}post_layernorm.weight`, shape: [D] }, { name: `${P}post_layernorm.bias`, shape: [D] });
  const T = spec.text.hidden;
  const Cn = spec.names.connector;
  if (spec.family === 'idefics3') out.push({ name: `${Cn}modality_projection.proj.weight`, shape: [T, D * spec.scaleFactor ** 2] });
  else {
    const inD = D * spec.projector.featureLayers.length;
    out.push({ name: `${Cn}linear_1.weight`, shape: [T, inD] });
    if (spec.projector.bias) out.push({ name: `${Cn}linear_1.bias`, shape: [T] });
    out.push({ name: `${Cn}linear_2.weight`, shape: [T, T] });
    if (spec.projector.bias) out.push({ name: `${Cn}linear_2.bias`, shape: [T] });
  }
  for (const t of textTensors) out.push({ name: textName(spec.names, t.name), shape: t.shape });
  return out;
}

/** The checkpoint name of a text-model tensor named as in a CausalLM folder ('model.…', 'lm_head.weight'). */
export function textName(names: VlmNames, causalName: string): string {
  if (causalName === 'lm_head.weight') return names.head;
  return names.text + causalName.slice('model.'.length);
}
