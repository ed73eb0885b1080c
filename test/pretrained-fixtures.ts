// Tiny Hugging Face folders for the pretrained-model tests: random weights in
// the exact transformers naming and layout (single file or sharded index,
// F32 / BF16 / F16 storage, tied or untied head), two tiny tokenizer.json
// files (a SentencePiece-style BPE with byte fallback, as Llama 2 ships, and a
// byte-level BPE, as SmolLM2 and Qwen2 ship) and chat templates from each of
// the three places transformers reads them. Plus the bridge to the float64
// reference (test/pretrained_reference.py).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import type { PretrainedModel } from '../lib/index.js';
import { writeSafetensors, type StTensor } from '../lib/model/safetensors.js';
import { convertHost } from '../lib/tensor.js';
import { seededRandom } from '../lib/random.js';

export const PY = '/usr/bin/python3';
export const REFERENCE = join(import.meta.dirname, 'pretrained_reference.py');

export interface TinyOptions {
  arch: 'LlamaForCausalLM' | 'Qwen2ForCausalLM';
  tied: boolean;
  dtype: 'F32' | 'BF16' | 'F16';
  /** Number of shards (0: a single model.safetensors). */
  shards?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  intermediate?: number;
  layers?: number;
  vocab?: number;
  ropeTheta?: number;
  ropeScaling?: Record<string, unknown> | null;
  rmsNormEps?: number;
  attentionBias?: boolean;
  mlpBias?: boolean;
  tokenizer?: 'sentencepiece' | 'bytelevel' | 'none';
  /** Where the chat template goes. */
  template?: 'tokenizer_config' | 'jinja' | 'json' | 'none';
  seed?: number;
  extra?: Record<string, unknown>;
}

function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** The tensors of a tiny model in transformers' naming, as float32 (rounded to the storage dtype). */
export function tinyTensors(o: TinyOptions): Record<string, { shape: number[]; data: Float32Array }> {
  const d = o.hidden ?? 32, h = o.heads ?? 4, kv = o.kvHeads ?? 2, hd = o.headDim ?? d / h, f = o.intermediate ?? 48, v = o.vocab ?? 288;
  const r = seededRandom(o.seed ?? 1);
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  const put = (name: string, shape: number[], std: number, mean = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = mean + std * gauss(r);
    if (o.dtype !== 'F32') data = convertHost(convertHost(data, 'float32', o.dtype === 'BF16' ? 'bfloat16' : 'float16'), o.dtype === 'BF16' ? 'bfloat16' : 'float16', 'float32') as Float32Array;
    out[name] = { shape, data };
  };
  const qkvBias = o.arch === 'Qwen2ForCausalLM' || o.attentionBias === true;
  put('model.embed_tokens.weight', [v, d], 0.5);
  for (let l = 0; l < (o.layers ?? 2); l++) {
    const p = `model.layers.${l}.`;
    put(`${p}input_layernorm.weight`, [d], 0.1, 1);
    put(`${p}self_attn.q_proj.weight`, [h * hd, d], 0.25);
    if (qkvBias) put(`${p}self_attn.q_proj.bias`, [h * hd], 0.2);
    put(`${p}self_attn.k_proj.weight`, [kv * hd, d], 0.25);
    if (qkvBias) put(`${p}self_attn.k_proj.bias`, [kv * hd], 0.2);
    put(`${p}self_attn.v_proj.weight`, [kv * hd, d], 0.25);
    if (qkvBias) put(`${p}self_attn.v_proj.bias`, [kv * hd], 0.2);
    put(`${p}self_attn.o_proj.weight`, [d, h * hd], 0.2);
    if (o.attentionBias) put(`${p}self_attn.o_proj.bias`, [d], 0.2);
    put(`${p}post_attention_layernorm.weight`, [d], 0.1, 1);
    put(`${p}mlp.gate_proj.weight`, [f, d], 0.25);
    if (o.mlpBias) put(`${p}mlp.gate_proj.bias`, [f], 0.2);
    put(`${p}mlp.up_proj.weight`, [f, d], 0.25);
    if (o.mlpBias) put(`${p}mlp.up_proj.bias`, [f], 0.2);
    put(`${p}mlp.down_proj.weight`, [d, f], 0.2);
    if (o.mlpBias) put(`${p}mlp.down_proj.bias`, [d], 0.2);
  }
  put('model.norm.weight', [d], 0.1, 1);
  if (!o.tied) put('lm_head.weight', [v, d], 0.3);
  return out;
}

export function tinyConfig(o: TinyOptions): Record<string, unknown> {
  const d = o.hidden ?? 32, h = o.heads ?? 4;
  const cfg: Record<string, unknown> = {
    architectures: [o.arch],
    model_type: o.arch === 'LlamaForCausalLM' ? 'llama' : 'qwen2',
    vocab_size: o.vocab ?? 288,
    hidden_size: d,
    intermediate_size: o.intermediate ?? 48,
    num_hidden_layers: o.layers ?? 2,
    num_attention_heads: h,
    num_key_value_heads: o.kvHeads ?? 2,
    hidden_act: 'silu',
    max_position_embeddings: 256,
    rms_norm_eps: o.rmsNormEps ?? 1e-5,
    rope_theta: o.ropeTheta ?? 10000,
    rope_scaling: o.ropeScaling ?? null,
    tie_word_embeddings: o.tied,
    torch_dtype: o.dtype === 'F32' ? 'float32' : o.dtype === 'BF16' ? 'bfloat16' : 'float16',
    bos_token_id: 1,
    eos_token_id: 2,
    initializer_range: 0.02,
    use_cache: true,
    transformers_version: '4.46.0',
  };
  if (o.headDim !== undefined) cfg.head_dim = o.headDim;
  if (o.arch === 'LlamaForCausalLM') {
    cfg.attention_bias = o.attentionBias ?? false;
    cfg.mlp_bias = o.mlpBias ?? false;
    cfg.attention_dropout = 0.0;
    cfg.pretraining_tp = 1;
  } else {
    cfg.use_sliding_window = false;
    cfg.sliding_window = 4096;
    cfg.max_window_layers = 21;
    cfg.attention_dropout = 0.0;
  }
  return { ...cfg, ...o.extra };
}

const STORED: Record<TinyOptions['dtype'], 'float32' | 'bfloat16' | 'float16'> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

function stored(t: { shape: number[]; data: Float32Array }, dtype: TinyOptions['dtype']): StTensor {
  if (dtype === 'F32') return { dtype, shape: t.shape, data: t.data };
  return { dtype, shape: t.shape, data: convertHost(t.data, 'float32', STORED[dtype]) as Uint16Array };
}

// ---- tokenizers ----------------------------------------------------------------

/** GPT-2's byte → printable character map (bytes_to_unicode). */
export function byteChars(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = keep.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++);
  return out;
}

const added = (id: number, content: string, special = true) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });

/**
 * A Llama-2-style tokenizer: SentencePiece BPE with byte fallback.
 * ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then
 * 259 ▁ 260 h 261 e 262 l 263 o 264 w 265 r 266 d 267 ▁h 268 el 269 ▁hel 270 lo 271 ▁w 272 or 273 ▁wor 274 ld,
 * added 275 <|im_start|>, 276 <|im_end|>.
 */
export function sentencepieceTokenizer(): Record<string, unknown> {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd', '▁h', 'el', '▁hel', 'lo', '▁w', 'or', '▁wor', 'ld'].forEach((t, i) => (vocab[t] = 259 + i));
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>'), added(275, '<|im_start|>'), added(276, '<|im_end|>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
      vocab, merges: ['▁ h', 'e l', '▁h el', 'l o', '▁ w', 'o r', '▁w or', 'l d'],
    },
  };
}

/**
 * A byte-level BPE (GPT-2 / SmolLM2 / Qwen2 style): id of byte b's character = b,
 * merges 256 Ġw 257 or 258 Ġwor 259 ld 260 he 261 ll 262 hell 263 hello,
 * added 264 <|endoftext|>, 265 <|im_start|>, 266 <|im_end|>.
 */
export function bytelevelTokenizer(): Record<string, unknown> {
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  chars.forEach((c, b) => (vocab[c] = b));
  ['Ġw', 'or', 'Ġwor', 'ld', 'he', 'll', 'hell', 'hello'].forEach((t, i) => (vocab[t] = 256 + i));
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(264, '<|endoftext|>'), added(265, '<|im_start|>'), added(266, '<|im_end|>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false,
      vocab, merges: ['Ġ w', 'o r', 'Ġw or', 'l d', 'h e', 'l l', 'he ll', 'hell o'],
    },
  };
}

export const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
/** A template that uses the special-token variables (bos_token, eos_token). */
export const BOS_TEMPLATE = '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}';

/** Writes a tiny Hugging Face folder; returns the float32 values of its tensors. */
export function writeTinyModel(dir: string, o: TinyOptions): Record<string, { shape: number[]; data: Float32Array }> {
  mkdirSync(dir, { recursive: true });
  const tensors = tinyTensors(o);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(tinyConfig(o), null, 2));
  const names = Object.keys(tensors);
  if (!o.shards) {
    const all: Record<string, StTensor> = {};
    // transformers writes tensors sorted by name; do the same.
    for (const n of [...names].sort()) all[n] = stored(tensors[n], o.dtype);
    writeSafetensors(join(dir, 'model.safetensors'), all, { format: 'pt' });
  } else {
    const weightMap: Record<string, string> = {};
    let total = 0;
    const per = Math.ceil(names.length / o.shards);
    for (let s = 0; s < o.shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(o.shards).padStart(5, '0')}.safetensors`;
      const part: Record<string, StTensor> = {};
      for (const n of names.slice(s * per, (s + 1) * per).sort()) {
        part[n] = stored(tensors[n], o.dtype);
        weightMap[n] = file;
        total += part[n].data.byteLength;
      }
      writeSafetensors(join(dir, file), part, { format: 'pt' });
    }
    const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2));
  }
  const tk = o.tokenizer ?? 'sentencepiece';
  const tmpl = o.template ?? 'tokenizer_config';
  if (tk !== 'none') {
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tk === 'sentencepiece' ? sentencepieceTokenizer() : bytelevelTokenizer()));
    const tc: Record<string, unknown> = tk === 'sentencepiece'
      ? { add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: null, tokenizer_class: 'LlamaTokenizer', clean_up_tokenization_spaces: false, model_max_length: 256 }
      : { bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>', tokenizer_class: 'GPT2Tokenizer', add_prefix_space: false, clean_up_tokenization_spaces: false, model_max_length: 256 };
    if (tmpl === 'tokenizer_config') tc.chat_template = CHATML;
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tc, null, 2));
    if (tmpl === 'jinja') writeFileSync(join(dir, 'chat_template.jinja'), tk === 'sentencepiece' ? BOS_TEMPLATE : CHATML);
    if (tmpl === 'json') writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template: tk === 'sentencepiece' ? BOS_TEMPLATE : CHATML }));
  }
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2, transformers_version: '4.46.0' }, null, 2));
  return tensors;
}

/** The fixtures the tests use: both architectures, tied and untied, single file and sharded, F32 / BF16 / F16. */
export const FIXTURES: Record<string, TinyOptions> = {
  'llama-untied-f32': { arch: 'LlamaForCausalLM', tied: false, dtype: 'F32', seed: 11 },
  'llama-tied-bf16-sharded-llama3': {
    arch: 'LlamaForCausalLM', tied: true, dtype: 'BF16', shards: 3, headDim: 12, attentionBias: true, mlpBias: true, rmsNormEps: 1e-6, ropeTheta: 500000,
    ropeScaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 16 }, template: 'json', seed: 12,
  },
  'qwen2-untied-bf16-sharded': { arch: 'Qwen2ForCausalLM', tied: false, dtype: 'BF16', shards: 2, kvHeads: 1, ropeTheta: 1000000, rmsNormEps: 1e-6, tokenizer: 'bytelevel', template: 'jinja', seed: 13 },
  'qwen2-tied-f16': { arch: 'Qwen2ForCausalLM', tied: true, dtype: 'F16', heads: 2, kvHeads: 2, headDim: 16, tokenizer: 'bytelevel', seed: 14 },
};

export interface ReferenceSpec {
  dir: string;
  adapter?: string;
  sequences: number[][];
  mode: 'logits' | 'objective';
  targets?: number[][];
  /** Weight of each token's log-prob in the objective (the dLogprobs path). */
  weights?: number[][];
  gradLoss?: number;
  tap?: { layer: number; rows: [number, number][]; coef: number[] };
  /** Finite differences: directions in a float64 file, laid out by tensor. */
  directions?: { file: string; count: number; layout: [string, number, number][]; h: number };
}

/** Runs the float64 reference; returns its JSON, or a reason it could not run. */
export function runReference(spec: ReferenceSpec): { ok: true; out: Record<string, unknown> } | { ok: false; why: string } {
  const r = spawnSync(PY, [REFERENCE], { input: JSON.stringify(spec), encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error) return { ok: false, why: `${PY} could not run (${r.error.message})` };
  if (r.status !== 0) return { ok: false, why: `reference failed (exit ${r.status}): ${r.stderr.slice(-2000)}` };
  return { ok: true, out: JSON.parse(r.stdout) };
}

/** True when /usr/bin/python3 with numpy is available (CI installs python3-numpy). */
export function haveNumpy(): boolean {
  const r = spawnSync(PY, ['-c', 'import numpy'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

/** `n` token ids in [0, vocab) from `seed`. */
export function randomIds(n: number, seed: number, vocab = 288): number[] {
  const r = seededRandom(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

/**
 * Gradient check: J = g·mean(-log p) + Σ w·log p + Σ c·tap; our backward() against central
 * finite differences of the float64 reference along one random direction per trained tensor.
 */
export async function gradientCheck(t: ExecutionContext, m: PretrainedModel, dir: string, adapter?: string): Promise<void> {
  const r = seededRandom(99);
  const a = randomIds(10, 21), b = randomIds(8, 22);
  const text = Int32Array.from([...a, ...b]);
  const targets = new Int32Array(text.length).fill(-1);
  for (let i = 2; i + 1 < a.length; i++) targets[i] = a[i + 1];
  for (let i = 0; i + 1 < b.length; i++) targets[10 + i] = b[i + 1];
  const weights = Float32Array.from(targets, (x) => (x >= 0 ? r() - 0.5 : 0));
  const d = m.spec.hidden;
  const tapRows = Int32Array.of(3, 13);
  const coef = Float32Array.from({ length: 2 * d }, () => r() - 0.5);
  const gradLoss = 0.7;
  const batch = { text, targets, sequences: [[{ text: [0, 4] as [number, number] }, { text: [4, 6] as [number, number] }], [{ text: [10, 8] as [number, number] }]] };
  const fw = await m.forward(batch, { logprobs: true, tapRows, tapLayer: 1 });
  await m.backward({ gradLoss, dLogprobs: weights, dTap: coef });
  const grads = m.gradients();
  let ours = gradLoss * fw.loss;
  for (let i = 0; i < text.length; i++) ours += weights[i] * fw.tokenLogprobs[i];
  for (let i = 0; i < coef.length; i++) ours += coef[i] * fw.tap[i];
  // One unit direction per trained tensor.
  const names = Object.keys(grads);
  const layout: [string, number, number][] = [];
  let total = 0;
  for (const n of names) {
    layout.push([n, total, grads[n].length]);
    total += grads[n].length;
  }
  const dirs = new Float64Array(names.length * total);
  const predicted: number[] = [];
  names.forEach((n, k) => {
    const [, off, len] = layout[k];
    let norm = 0;
    const u = new Float64Array(len);
    for (let i = 0; i < len; i++) {
      u[i] = r() - 0.5;
      norm += u[i] * u[i];
    }
    let dot = 0;
    for (let i = 0; i < len; i++) {
      u[i] /= Math.sqrt(norm);
      dot += u[i] * grads[n][i];
    }
    dirs.set(u, k * total + off);
    predicted.push(dot);
  });
  const file = join(mkdtempSync(join(tmpdir(), 'vp-pt-dirs-')), 'dirs.bin');
  writeFileSync(file, new Uint8Array(dirs.buffer));
  const seqTargets = [Array.from(targets.subarray(0, 10)), Array.from(targets.subarray(10))];
  const seqWeights = [Array.from(weights.subarray(0, 10)), Array.from(weights.subarray(10))];
  const spec: ReferenceSpec = {
    dir, adapter, mode: 'objective', sequences: [a, b], targets: seqTargets, weights: seqWeights, gradLoss,
    tap: { layer: 1, rows: [[0, 3], [1, 3]], coef: Array.from(coef) },
    directions: { file, count: names.length, layout, h: 1e-6 },
  };
  const ref = runReference(spec);
  if (!ref.ok) return void t.fail(ref.why);
  const J = ref.out.objective as number;
  t.true(Math.abs(ours - J) <= 1e-5 * Math.max(1, Math.abs(J)), `objective ${ours} vs reference ${J}`);
  const fd = ref.out.fd as number[];
  const scale = Math.sqrt(fd.reduce((s, x) => s + x * x, 0) / fd.length);
  let worst = 0, at = '';
  names.forEach((n, k) => {
    const e = Math.abs(predicted[k] - fd[k]) / Math.max(Math.abs(fd[k]), 0.01 * scale);
    if (e > worst) [worst, at] = [e, `${n}: backward ${predicted[k]} vs finite difference ${fd[k]}`];
  });
  t.log(`${names.length} tensors, worst relative error ${worst.toExponential(2)} (${at})`);
  t.true(worst <= 1e-3, at);
}

