// config.json of a Hugging Face causal language model → the decoder's shape.
//
// Reads the fields that `transformers`' LlamaConfig / Qwen2Config define and
// that change the computation (sizes, GQA, head_dim, RMSNorm epsilon, rotary
// base and scaling, biases, tied head), checks every one, and refuses anything
// whose math this package does not implement (another architecture, a
// non-SiLU activation, sliding-window attention, YaRN/dynamic RoPE, quantized
// weights) with an UnsupportedConfigError that names the field and its value.
// Fields that do not change the math (ids, max lengths, dtype, versions) are
// kept in `raw` and never rejected. Cost: O(size of the JSON).
//
// Rotary scaling: `rope_scaling` (transformers 4.x) or `rope_parameters`
// (transformers 5) with rope_type / type 'default', 'linear' or 'llama3'
// (the frequency remapping of modeling_rope_utils._compute_llama3_parameters).
import { readFileSync } from 'node:fs';
import { CheckpointError } from '../model/safetensors.js';
import { limits } from '../native.js';

/** A config.json value this package cannot run. */
export class UnsupportedConfigError extends Error {
  override name = 'UnsupportedConfigError';
  constructor(readonly file: string, readonly field: string, readonly value: unknown, detail: string) {
    super(`${file}: ${field} = ${JSON.stringify(value)} is not supported: ${detail}`);
  }
}

export type Architecture = 'LlamaForCausalLM' | 'Qwen2ForCausalLM';
export const ARCHITECTURES: readonly Architecture[] = ['LlamaForCausalLM', 'Qwen2ForCausalLM'];
/** The vision-language classes (their configs are parsed by vlm-config.ts; listed here for the error of an unsupported one). */
export type VlmArchitecture = 'SmolVLMForConditionalGeneration' | 'Idefics3ForConditionalGeneration' | 'LlavaForConditionalGeneration';
export const VLM_ARCHITECTURES: readonly VlmArchitecture[] = ['SmolVLMForConditionalGeneration', 'Idefics3ForConditionalGeneration', 'LlavaForConditionalGeneration'];

export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

/** The decoder's shape, resolved from config.json. */
export interface DecoderSpec {
  architecture: Architecture;
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tied: boolean;
  /** Biases on q/k/v (Qwen2 always; Llama with attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama with attention_bias). */
  oBias: boolean;
  /** Biases on gate/up/down (Llama with mlp_bias). */
  mlpBias: boolean;
  maxPositions: number;
}

type Json = Record<string, unknown>;

/** A JSON file that must hold an object; a CheckpointError naming the file otherwise. */
export function readJsonObject(path: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new CheckpointError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(v)) throw new CheckpointError(`${path}: must hold a JSON object`);
  return v;
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Parses and checks a config.json object (`file` names it in errors). */
export function parseConfig(raw: unknown, file = 'config.json'): DecoderSpec {
  if (!isObject(raw)) throw new UnsupportedConfigError(file, '(root)', raw, 'config.json must hold a JSON object');
  const bad = (field: string, detail: string): never => {
    throw new UnsupportedConfigError(file, field, field.split('.').reduce<unknown>((o, k) => (isObject(o) ? o[k] : undefined), raw), detail);
  };
  const archs = raw.architectures;
  let architecture: Architecture;
  if (Array.isArray(archs) && archs.length === 1 && ARCHITECTURES.includes(archs[0] as Architecture)) architecture = archs[0] as Architecture;
  else if (archs === undefined && raw.model_type === 'llama') architecture = 'LlamaForCausalLM';
  else if (archs === undefined && raw.model_type === 'qwen2') architecture = 'Qwen2ForCausalLM';
  else
    bad('architectures', `the supported architectures are ${ARCHITECTURES.join(', ')} (text) and ${VLM_ARCHITECTURES.join(', ')} (vision-language, with a vision_config)`);
  const expectType = architecture! === 'LlamaForCausalLM' ? 'llama' : 'qwen2';
  if (raw.model_type !== undefined && raw.model_type !== expectType) bad('model_type', `${architecture!} needs model_type "${expectType}"`);

  const int = (k: string, dflt?: number, min = 1): number => {
    const v = raw[k] ?? dflt;
    if (v === undefined) bad(k, 'required (a positive integer)');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) bad(k, `must be an integer >= ${min}`);
    return v as number;
  };
  const num = (k: string, dflt: number, check: (x: number) => boolean, what: string): number => {
    const v = raw[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) bad(k, `must be ${what}`);
    return v as number;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    const v = raw[k] ?? dflt;
    if (typeof v !== 'boolean') bad(k, 'must be true or false');
    return v as boolean;
  };

  const vocab = int('vocab_size');
  const hidden = int('hidden_size');
  const intermediate = int('intermediate_size');
  const layers = int('num_hidden_layers');
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) bad('num_key_value_heads', `must divide num_attention_heads = ${heads}`);
  const headDim = raw.head_dim === null || raw.head_dim === undefined ? hidden / heads : int('head_dim');
  if (!Number.isInteger(headDim)) bad('num_attention_heads', `must divide hidden_size = ${hidden} when head_dim is not given`);
  const { maxHeadDim } = limits();
  if (headDim % 2 !== 0 || headDim > maxHeadDim) bad(raw.head_dim == null ? 'num_attention_heads' : 'head_dim', `the head dimension (${headDim}) must be even and at most ${maxHeadDim}`);
  const rmsNormEps = num('rms_norm_eps', 1e-6, (x) => x > 0, 'a positive number');
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') bad('hidden_act', 'only "silu" (SwiGLU MLP) is implemented');
  const attnDropout = raw.attention_dropout ?? 0;
  if (attnDropout !== 0) bad('attention_dropout', 'only 0 is implemented');
  if (raw.quantization_config !== undefined && raw.quantization_config !== null) bad('quantization_config', 'quantized checkpoints are not implemented; bring float32, float16 or bfloat16 weights');
  const tied = bool('tie_word_embeddings', false);
  if (raw.partial_rotary_factor !== undefined && raw.partial_rotary_factor !== 1) bad('partial_rotary_factor', 'only 1 (rotary on the whole head) is implemented');
  let qkvBias = false, oBias = false, mlpBias = false;
  if (architecture! === 'Qwen2ForCausalLM') {
    qkvBias = true;
    if (bool('use_sliding_window', false)) bad('use_sliding_window', 'sliding-window attention is not implemented');
    const lt = raw.layer_types;
    if (lt !== undefined && lt !== null) {
      if (!Array.isArray(lt) || lt.some((x) => x !== 'full_attention')) bad('layer_types', 'only "full_attention" layers are implemented');
    }
  } else {
    qkvBias = oBias = bool('attention_bias', false);
    mlpBias = bool('mlp_bias', false);
  }
  const maxPositions = int('max_position_embeddings', 2048);

  // Rotary embedding: transformers 5 keeps theta and scaling in rope_parameters.
  const params = raw.rope_parameters;
  let scalingField = 'rope_scaling';
  let scaling: unknown = raw.rope_scaling;
  let ropeTheta = num('rope_theta', 10000, (x) => x > 1, 'a number > 1');
  if (isObject(params)) {
    scalingField = 'rope_parameters';
    scaling = params;
    if (params.rope_theta !== undefined) {
      if (typeof params.rope_theta !== 'number' || !(params.rope_theta > 1)) bad('rope_parameters.rope_theta', 'must be a number > 1');
      ropeTheta = params.rope_theta as number;
    }
  } else if (params !== undefined && params !== null) bad('rope_parameters', 'must be an object');
  let ropeScaling: RopeScaling = { type: 'default' };
  if (scaling !== undefined && scaling !== null) {
    if (!isObject(scaling)) bad(scalingField, 'must be an object or null');
    const s = scaling as Json;
    const typeKey = s.rope_type !== undefined ? 'rope_type' : 'type';
    const type = s[typeKey] ?? 'default';
    const f = (k: string, dflt?: number): number => {
      const v = s[k] ?? dflt;
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) bad(`${scalingField}.${k}`, 'must be a positive number');
      return v as number;
    };
    if (type === 'default') ropeScaling = { type: 'default' };
    else if (type === 'linear') ropeScaling = { type: 'linear', factor: f('factor') };
    else if (type === 'llama3') {
      const r = {
        type: 'llama3' as const, factor: f('factor'), lowFreqFactor: f('low_freq_factor'), highFreqFactor: f('high_freq_factor'),
        originalMaxPositions: f('original_max_position_embeddings'),
      };
      if (!(r.highFreqFactor > r.lowFreqFactor)) bad(`${scalingField}.high_freq_factor`, `must exceed low_freq_factor = ${r.lowFreqFactor}`);
      if (s.attention_factor !== undefined && s.attention_factor !== 1) bad(`${scalingField}.attention_factor`, 'only 1 is implemented for llama3 scaling');
      ropeScaling = r;
    } else bad(`${scalingField}.${typeKey}`, 'supported rotary scalings: none, "default", "linear", "llama3"');
  }
  return {
    architecture: architecture!, vocab, hidden, intermediate, layers, heads, kvHeads, headDim, rmsNormEps, ropeTheta, ropeScaling,
    tied, qkvBias, oBias, mlpBias, maxPositions,
  };
}

/**
 * The rotary inverse frequencies `inv_freq[i]` (i < headDim/2), in float64,
 * as transformers' rope initializers compute them (then scaled by the config).
 */
export function ropeInvFreq(spec: Pick<DecoderSpec, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = spec.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / spec.ropeTheta ** ((2 * i) / spec.headDim);
  const s = spec.ropeScaling;
  if (s.type === 'linear') for (let i = 0; i < half; i++) inv[i] /= s.factor;
  else if (s.type === 'llama3') {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] /= s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}

/** Checkpoint tensor names and shapes the spec needs (HF naming), in transformers' module order. */
export function expectedTensors(spec: DecoderSpec): { name: string; shape: number[] }[] {
  const { hidden: d, intermediate: f, heads: h, kvHeads: kv, headDim: hd, vocab: v } = spec;
  const out: { name: string; shape: number[] }[] = [{ name: 'model.embed_tokens.weight', shape: [v, d] }];
  for (let l = 0; l < spec.layers; l++) {
    const p = `model.layers.${l}.`;
    out.push({ name: `${p}input_layernorm.weight`, shape: [d] });
    out.push({ name: `${p}self_attn.q_proj.weight`, shape: [h * hd, d] });
    if (spec.qkvBias) out.push({ name: `${p}self_attn.q_proj.bias`, shape: [h * hd] });
    out.push({ name: `${p}self_attn.k_proj.weight`, shape: [kv * hd, d] });
    if (spec.qkvBias) out.push({ name: `${p}self_attn.k_proj.bias`, shape: [kv * hd] });
    out.push({ name: `${p}self_attn.v_proj.weight`, shape: [kv * hd, d] });
    if (spec.qkvBias) out.push({ name: `${p}self_attn.v_proj.bias`, shape: [kv * hd] });
    out.push({ name: `${p}self_attn.o_proj.weight`, shape: [d, h * hd] });
    if (spec.oBias) out.push({ name: `${p}self_attn.o_proj.bias`, shape: [d] });
    out.push({ name: `${p}post_attention_layernorm.weight`, shape: [d] });
    out.push({ name: `${p}mlp.gate_proj.weight`, shape: [f, d] });
    if (spec.mlpBias) out.push({ name: `${p}mlp.gate_proj.bias`, shape: [f] });
    out.push({ name: `${p}mlp.up_proj.weight`, shape: [f, d] });
    if (spec.mlpBias) out.push({ name: `${p}mlp.up_proj.bias`, shape: [f] });
    out.push({ name: `${p}mlp.down_proj.weight`, shape: [d, f] });
    if (spec.mlpBias) out.push({ name: `${p}mlp.down_proj.bias`, shape: [d] });
  }
  out.push({ name: 'model.norm.weight', shape: [d] });
  if (!spec.tied) out.push({ name: 'lm_head.weight', shape: [v, d] });
  return out;
}
