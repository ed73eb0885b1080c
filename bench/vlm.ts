// A Hugging Face SmolVLMForConditionalGeneration shaped like
// SmolVLM2-256M-Video-Instruct (random weights, stored in bf16 as the real
// checkpoint is) through vp.loadPretrained: one SFT step as vp.Trainer takes it
// (forward, backward, AdamW with clipping: PretrainedModel.trainStep) on one
// chat whose user turn holds an 8-frame video, through the family's processor
// and prompt layout (vp.vlmTrainBatch: frames resized to 512², per-frame
// timestamps, 64 image tokens a frame), LM loss on the answer tokens only.
// 'full': what the API trains in full fine-tuning (the text model, its
// embeddings and head, and the connector; the vision tower stays frozen, the
// default after loading); 'lora': rank-8 adapters on q/k/v/o of the text model
// (vision and connector frozen); 'full, tower trained': full fine-tuning with
// setVisionTrainable(true), the SigLIP tower trained too (its backward pass and
// AdamW over its 86M parameters), on a 2-frame clip to keep the bench's time in
// bounds (a tower step costs about three times its forward pass); 'full bf16
// compute': 'full' with loadPretrained's computeDtype 'bfloat16' (every linear
// of the tower, connector and text model through bf16 copies of its float32
// weights) against the peer's 'full' under torch.autocast('cpu', bfloat16).
// Ours against the same step written in PyTorch
// eager (bench/peers/torch_pretrained_vlm.py), reading the same folder and the
// same pixel values and token ids, in the same run; each side in its own
// process, so that its peak resident memory (VmHWM, reset once the weights are
// loaded and the batch built) is that case's alone.
//
// The shape (the real config.json of HuggingFaceTB/SmolVLM2-256M-Video-Instruct
// was not at hand; these are the dimensions its model card and configs quoted
// in public code give, with transformers' defaults for the fields they omit):
// text Llama hidden 576, 30 layers, 9 heads of 64, 3 KV heads, intermediate
// 1536, vocab 49280, rope_theta 100000, RMSNorm eps 1e-5, untied lm_head;
// vision SigLIP hidden 768, 12 layers, 12 heads, intermediate 3072, patch 16,
// image 512, gelu_pytorch_tanh, LayerNorm eps 1e-6; scale_factor 4 (1024
// patches → 64 visual tokens a frame), image token 49190. About 256M
// parameters: text 163M, vision 86M, connector 7M. The tokenizer is a
// byte-level BPE without merges carrying the real special tokens at their
// real ids (so the prompt's text is about twice as many tokens as the real
// tokenizer makes of it); the chat template is SmolVLM's (message parts).
//
// Work per step (the fracOfFmaPeak estimate): the vision tower forward (2 flops
// per weight per patch plus bidirectional attention, 4·S²·D per image and layer;
// three times that when the tower trains: the input and weight gradients), the connector (forward, and its
// weight gradient in 'full'), and 6 flops per text parameter per token in
// 'full', 4 in 'lora' (the embedding lookup not counted, the head counted).
// Cost of the bench: a warm-up step and three timed ones (one with --quick)
// per side and case, about 20-60 s each on 2 quiet cores; the tower-trained
// case (about as long a step on its 2 frames) times one step after its warm-up
// in both modes, so that the whole bench stays near 10 minutes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { runPeer, type BenchContext } from './harness.js';
import { llamaShapes, resetPeak, runChild, statusMB, timeSteps, trainColumns, writeRandomBf16 } from './pretrained.js';

const TEXT = {
  architectures: ['VLlama3ForCausalLM'], model_type: 'llama', vocab_size: 49280, hidden_size: 576, intermediate_size: 1536,
  num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, head_dim: 64, hidden_act: 'silu', max_position_embeddings: 8192,
  rms_norm_eps: 1e-5, rope_theta: 100000, rope_scaling: null, rope_interleaved: false, is_llama_config: true, neftune_noise_alpha: 0.0,
  pad_token_id: 2, pixel_shuffle_factor: 4, qk_layer_norms: false, use_resampler: false, torch_dtype: 'bfloat16',
};
const VISION = {
  model_type: 'smolvlm_vision', hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_channels: 3,
  image_size: 512, patch_size: 16, hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6, attention_dropout: 0.0,
  max_image_size: { longest_edge: 512 }, size: { longest_edge: 2048 }, use_base_siglip: false, tie_word_embeddings: false,
};
const CONFIG = {
  architectures: ['SmolVLMForConditionalGeneration'], model_type: 'smolvlm', image_token_id: 49190, scale_factor: 4, pad_token_id: 128002,
  tie_word_embeddings: false, torch_dtype: 'bfloat16', transformers_version: '4.50.0', use_cache: true,
  text_config: TEXT, vision_config: VISION, vocab_size: 49280,
};
const PREPROCESSOR = {
  do_convert_rgb: true, do_image_splitting: true, do_normalize: true, do_pad: true, do_rescale: true, do_resize: true,
  image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], image_processor_type: 'SmolVLMImageProcessor', max_image_size: { longest_edge: 512 },
  processor_class: 'SmolVLMProcessor', resample: 1, rescale_factor: 1 / 255, size: { longest_edge: 2048 },
  video_sampling: { fps: 1, max_frames: 64, video_size: { longest_edge: 512 } },
};
/** SmolVLM's chat template (transformers' processing_smolvlm.py DEFAULT_CHAT_TEMPLATE): content is a list of parts. */
const TEMPLATE = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
/** The real tokenizer's special tokens and their ids (added_tokens of SmolVLM2). */
const SPECIAL: [string, number][] = [
  ['<|endoftext|>', 0], ['<|im_start|>', 1], ['<|im_end|>', 2], ['<global-img>', 49152], ['<fake_token_around_image>', 49189], ['<image>', 49190], ['<end_of_utterance>', 49279],
];
const FRAMES = 8, FRAME_H = 360, FRAME_W = 640;
const PROMPT = '<video>What happens in this video?';
const RESPONSE = ' A person walks into the kitchen, picks up a red cup from the table, fills it with water and leaves.';

/** GPT-2's byte → printable character map (bytes_to_unicode). */
function byteChars(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let n = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + n++));
}

/** A byte-level BPE without merges (every byte its own token, ids 3..258) with SmolVLM2's special tokens at their ids. */
function tokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  SPECIAL.filter(([, id]) => id < 3).forEach(([t, id]) => (vocab[t] = id));
  byteChars().forEach((c, b) => (vocab[c] = 3 + b));
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: SPECIAL.map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

/** The vision tower's and the connector's tensors (SmolVLM naming). */
function visionShapes(): [string, number[]][] {
  const D = VISION.hidden_size, F = VISION.intermediate_size, p = VISION.patch_size, side = VISION.image_size / p;
  const P = 'model.vision_model.';
  const out: [string, number[]][] = [
    [`${P}embeddings.patch_embedding.weight`, [D, 3, p, p]], [`${P}embeddings.patch_embedding.bias`, [D]],
    [`${P}embeddings.position_embedding.weight`, [side * side, D]], [`${P}post_layernorm.weight`, [D]], [`${P}post_layernorm.bias`, [D]],
    ['model.connector.modality_projection.proj.weight', [TEXT.hidden_size, D * CONFIG.scale_factor ** 2]],
  ];
  for (let l = 0; l < VISION.num_hidden_layers; l++) {
    const q = `${P}encoder.layers.${l}.`;
    for (const ln of ['layer_norm1', 'layer_norm2']) out.push([`${q}${ln}.weight`, [D]], [`${q}${ln}.bias`, [D]]);
    for (const pr of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) out.push([`${q}self_attn.${pr}.weight`, [D, D]], [`${q}self_attn.${pr}.bias`, [D]]);
    out.push([`${q}mlp.fc1.weight`, [F, D]], [`${q}mlp.fc1.bias`, [F]], [`${q}mlp.fc2.weight`, [D, F]], [`${q}mlp.fc2.bias`, [D]]);
  }
  return out;
}

/** Writes the SmolVLM2-256M-shaped folder; returns its parameter count. */
export function writeSmolVlm2(dir: string): number {
  const shapes = [...visionShapes(), ...llamaShapes(TEXT, 'model.text_model.'), ['lm_head.weight', [TEXT.vocab_size, TEXT.hidden_size]] as [string, number[]]];
  const n = writeRandomBf16(dir, shapes, 21, (name) => name.endsWith('.bias'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG, null, 2));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(PREPROCESSOR, null, 2));
  writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template: TEMPLATE }, null, 2));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson()));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    bos_token: '<|im_start|>', eos_token: '<end_of_utterance>', pad_token: '<|im_end|>', unk_token: '<|endoftext|>',
    additional_special_tokens: ['<fake_token_around_image>', '<image>', '<end_of_utterance>'], add_bos_token: false, add_eos_token: false,
    clean_up_tokenization_spaces: false, model_max_length: 8192, processor_class: 'SmolVLMProcessor', tokenizer_class: 'GPT2Tokenizer',
  }, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: [49279], pad_token_id: 2 }, null, 2));
  return n;
}

/** `frames` frames of 360 × 640 RGB: a moving gradient with noise (deterministic). */
function makeVideo(frames: number): { data: Uint8Array; shape: number[] } {
  const data = new Uint8Array(frames * FRAME_H * FRAME_W * 3);
  let s = 12345;
  for (let f = 0, i = 0; f < frames; f++)
    for (let y = 0; y < FRAME_H; y++)
      for (let x = 0; x < FRAME_W; x++)
        for (let c = 0; c < 3; c++, i++) {
          s = (s * 1103515245 + 12345) >>> 0;
          data[i] = ((x + 8 * f) * (c + 1) + y + (s >>> 27)) & 255;
        }
  return { data, shape: [frames, FRAME_H, FRAME_W, 3] };
}

interface CaseSpec {
  dir: string;
  case: 'full' | 'lora';
  /** Train the vision tower too (setVisionTrainable(true); 'full' only). */
  vision: boolean;
  /** 'bfloat16': bf16 products of the float32 weights (ours: computeDtype; the peer: CPU autocast). */
  computeDtype: 'float32' | 'bfloat16';
  /** Frames of the clip (sampled at 1 fps: all of them). */
  frames: number;
  rank: number;
  alpha: number;
  reps: number;
  lr: number;
  /** Where the child writes the batch (pixels.bin, ids.bin, targets.bin) for the peer. */
  inputsDir: string;
}

interface ChildResult {
  medianMs: number;
  minMs: number;
  reps: number;
  cpuMs: number;
  loss0: number;
  weightsMB: number;
  peakMB: number;
  trainable: number;
  params: number;
  T: number;
  answerTokens: number;
  imageTokens: number;
  pixelShape: number[];
  processMs: number;
}

/** One case in this (child) process: load, process the video, then the steps. */
async function child(spec: CaseSpec): Promise<void> {
  const m = await vp.loadPretrained(spec.dir, { computeDtype: spec.computeDtype });
  if (spec.case === 'lora') m.addLora({ rank: spec.rank, alpha: spec.alpha });
  if (spec.vision) m.setVisionTrainable(true);
  const video = makeVideo(spec.frames);
  const t0 = performance.now();
  const batch = vp.vlmTrainBatch(m, [{ video, prompt: PROMPT, response: RESPONSE, fps: 1 }]);
  const processMs = performance.now() - t0;
  const px = batch.pixelValues!;
  const targets = batch.targets!;
  writeFileSync(join(spec.inputsDir, 'pixels.bin'), new Uint8Array((px.data as Float32Array).buffer));
  writeFileSync(join(spec.inputsDir, 'ids.bin'), new Uint8Array(batch.text.buffer));
  writeFileSync(join(spec.inputsDir, 'targets.bin'), new Uint8Array(targets.buffer));
  (globalThis as { gc?: () => void }).gc?.(); // the file's raw bytes, converted, are garbage now
  const weightsMB = statusMB('VmRSS');
  const resetOk = resetPeak();
  let loss0 = NaN;
  const step = async () => {
    const r = await m.trainStep(batch, { lr: spec.lr });
    if (Number.isNaN(loss0)) loss0 = r.loss;
  };
  await step(); // warm-up (and the first loss, compared with the peer's)
  const t = await timeSteps(step, spec.reps);
  const out: ChildResult = {
    ...t, loss0, weightsMB, peakMB: resetOk ? statusMB('VmHWM') : NaN, trainable: m.numTrainable, params: m.numParams,
    T: batch.text.length, answerTokens: targets.filter((x) => x >= 0).length, imageTokens: batch.text.filter((x) => x === CONFIG.image_token_id).length,
    pixelShape: [...px.shape], processMs,
  };
  console.log(JSON.stringify(out));
}

/** The step's multiply-add work ×2 (see the file comment). */
function stepFlops(c: 'full' | 'lora', T: number, frames: number, visionTrained: boolean): number {
  const D = VISION.hidden_size, F = VISION.intermediate_size, Lv = VISION.num_hidden_layers, p = VISION.patch_size;
  const S = (VISION.image_size / p) ** 2;
  const vision = (visionTrained ? 3 : 1) * (frames * S * (2 * Lv * (4 * D * D + 2 * D * F) + 2 * D * 3 * p * p) + 4 * frames * Lv * S * S * D);
  const tokens = (frames * S) / CONFIG.scale_factor ** 2;
  const conn = 2 * tokens * D * CONFIG.scale_factor ** 2 * TEXT.hidden_size * (c === 'full' ? 2 : 1);
  const d = TEXT.hidden_size, hd = TEXT.head_dim, q = TEXT.num_attention_heads * hd, kv = TEXT.num_key_value_heads * hd;
  const text = TEXT.num_hidden_layers * (2 * d * q + 2 * d * kv + 3 * d * TEXT.intermediate_size) + TEXT.vocab_size * d;
  return vision + conn + (c === 'full' ? 6 : 4) * text * T;
}

export async function run(ctx: BenchContext): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-smolvlm2-'));
  const inputsDir = mkdtempSync(join(tmpdir(), 'vp-bench-smolvlm2-in-'));
  try {
    const params = writeSmolVlm2(dir);
    const reps = ctx.quick ? 1 : 3;
    const cases = [
      { c: 'full', vision: false, frames: FRAMES, name: 'full' },
      { c: 'lora', vision: false, frames: FRAMES, name: 'lora' },
      { c: 'full', vision: true, frames: 2, name: 'full, tower trained, 2 frames', reps: 1 },
      { c: 'full', vision: false, frames: FRAMES, name: 'full bf16 compute', bf16: true },
    ] as const;
    for (const x of cases) {
      const { c, vision, frames, name } = x;
      const spec: CaseSpec = {
        dir, case: c, vision, frames, computeDtype: 'bf16' in x ? 'bfloat16' : 'float32', rank: 8, alpha: 16, reps: 'reps' in x ? x.reps : reps, lr: 1e-5, inputsDir,
      };
      const ours = runChild<ChildResult>(fileURLToPath(import.meta.url), '--vlm-child', spec, ctx.threads, name);
      const inputs = {
        pixels: { path: join(inputsDir, 'pixels.bin'), dtype: 'float32', shape: ours.pixelShape },
        ids: { path: join(inputsDir, 'ids.bin'), dtype: 'int32', shape: [ours.T] },
        targets: { path: join(inputsDir, 'targets.bin'), dtype: 'int32', shape: [ours.T] },
      };
      const peer = runPeer('torch_pretrained_vlm.py', { ...spec, inputs }, ctx.threads);
      const tokens = ours.T;
      ctx.report({
        bench: 'vlm', case: `smolvlm2-256m ${name}`,
        shape: { frames: ours.pixelShape[0], image: ours.pixelShape[2], T: ours.T, imageTokens: ours.imageTokens, answerTokens: ours.answerTokens, params, trainable: ours.trainable, peerTrainable: peer.ok ? (peer.trainable as number) : null, rank: c === 'lora' ? 8 : null, visionTrained: vision },
        oursMs: ours.medianMs, peerMs: peer.ok ? peer.medianMs! : null, ratio: peer.ok ? peer.medianMs! / ours.medianMs : null,
        peer: spec.computeDtype === 'bfloat16' ? 'torch autocast bf16' : 'torch', peerMissing: peer.missing,
        flops: stepFlops(c, tokens, ours.pixelShape[0], vision),
        extra: { ...trainColumns(tokens, ours, peer), oursProcessMs: Math.round(ours.processMs) },
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(inputsDir, { recursive: true, force: true });
  }
}

const childAt = process.argv.indexOf('--vlm-child');
if (childAt >= 0) await child(JSON.parse(process.argv[childAt + 1]) as CaseSpec);
