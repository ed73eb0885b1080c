// vp.VideoLM — the built-in video-language model (docs/model.md).
//
// The model lives in the native core (native/include/vp/videolm.h): parameters,
// forward, backward, AdamW, generation. This class configures it, validates
// every argument, queues calls (the native model runs one call at a time, on a
// worker thread, so the JS main thread stays free), and saves/loads checkpoints
// with the safetensors module.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { backendInfo } from '../backend.js';
import { broadcast, isDistributed } from '../distributed.js';
import { describe, rangeError, typeError } from '../errors.js';
import type { NativeVideoLMBatch, VideoLMNative } from '../addon-types.js';
import { bytesText } from '../fs.js';
import { limits, loadAddon } from '../native.js';
import { inputDir, outputDir } from '../paths.js';
import { Tensor } from '../tensor.js';
import { checkBoolean, checkKnownKeys, checkNumber, checkOptions, float32Vector, int32Vector } from '../validate.js';
import { CheckpointError, readSafetensors, writeFileAtomic, writeSafetensors, type StTensor } from './safetensors.js';
import { checkOnToken, checkStreams, GENERATE_BATCH_KEYS, guardOnToken } from './generate-options.js';
import { EOS_ID, Tokenizer, UNK_ID } from './tokenizer.js';

/** The architecture (docs/model.md). */
export interface VideoLMConfig {
  /** Square frame size in pixels (a multiple of patchSize). */
  imageSize: number;
  patchSize: number;
  /** Frames per video. */
  frames: number;
  /** Model width d. */
  width: number;
  layers: number;
  heads: number;
  /** Key/value heads (grouped-query attention; divides heads). */
  kvHeads: number;
  /** SwiGLU hidden size = round_up(mlpRatio · width, 32) unless ffn is given. */
  mlpRatio: number;
  ffn?: number;
  vocab: number;
  /** Longest packed sequence (tokens), prompts plus generated tokens included. */
  maxSeq: number;
  /** LM head tied to the token embedding. */
  tied: boolean;
  ropeTheta?: number;
  normEps?: number;
}

export type VideoLMPreset = 'tiny' | 'small';

/** The presets (vocab is replaced by the tokenizer's size when one is given). */
export const VIDEOLM_PRESETS: Record<VideoLMPreset, VideoLMConfig> = {
  tiny: { imageSize: 32, patchSize: 8, frames: 8, width: 128, layers: 4, heads: 4, kvHeads: 2, mlpRatio: 2.75, vocab: 1024, maxSeq: 512, tied: true },
  small: { imageSize: 64, patchSize: 8, frames: 16, width: 512, layers: 8, heads: 8, kvHeads: 4, mlpRatio: 2.75, vocab: 4096, maxSeq: 2048, tied: true },
};

/** Where a model's parameters, activations and optimizer state live. */
export type VideoLMDevice = 'cpu' | 'cuda';

export type VideoLMCreateOptions = Partial<VideoLMConfig> & {
  preset?: VideoLMPreset;
  /**
   * 'cpu' (default) or 'cuda': forward, backward, the optimizer step and
   * generation then run on the GPU (float32; docs/model.md "CUDA"). 'cuda'
   * without a usable GPU throws an Error that gives the reason.
   */
  device?: VideoLMDevice;
  /** The precision of the model's matrix products (default 'float32'; see VideoLM.setComputeDtype). */
  computeDtype?: VideoLMComputeDtype;
  /** Seed of the parameter initialization (default 0). */
  seed?: number;
  /** Saved with the model; sets vocab when vocab is not given. */
  tokenizer?: Tokenizer;
};

/** A segment of a packed sequence (docs/kim.md). */
/**
 * One segment of a packed sequence: a video (all its frames, or `frames`: the source frame of each
 * output frame, a KIM variant's frame map) or a span of `batch.text`. A video frame's tokens get the
 * frame-position embedding of the slot they fill (output frame o gets position o, as a frame replaced
 * at the pixel level would), unless `sourceFramePosition` is true: then they keep the position of the
 * frame they were copied from (the earlier behaviour, for ablations). With slot positions a frame map
 * holds at most `frames` entries.
 */
export type VideoLMSegment = { video: number; frames?: Int32Array; sourceFramePosition?: boolean } | { text: [number, number] };

/** A packed batch: videos, text token ids, and sequences of segments over them. */
export interface VideoLMBatch {
  /** [nVideos, frames, imageSize, imageSize, 3]: uint8 (scaled to [-1, 1]) or float32 (as is). */
  videos?: Uint8Array | Float32Array | Tensor;
  text: Int32Array;
  /** Target per text token (-1: none). Default: the next token inside each text segment. */
  targets?: Int32Array;
  sequences: VideoLMSegment[][];
}

export interface VideoLMLayout {
  cuSeqlens: Int32Array;
  positions: Int32Array;
  /** First packed row of every segment, sequences flattened in order. */
  segmentStart: Int32Array;
  /** Packed row of each text token (-1 if no segment uses it). */
  textRow: Int32Array;
  rows: number;
}

export interface ForwardOptions {
  /** Tap the hidden state after this many decoder layers (0..layers; default layers/2 when tapRows are given). */
  tapLayer?: number;
  /** Packed rows whose hidden states to return (see layout.segmentStart). */
  tapRows?: Int32Array;
  /** Also return the log-prob of every text token's target. */
  logprobs?: boolean;
  /** Keep activations for backward() (default true). */
  forBackward?: boolean;
}

export interface ForwardResult {
  /** Mean cross-entropy over the counted targets (0 when none). */
  loss: number;
  count: number;
  /** [tapRows.length, width] */
  tap: Float32Array;
  /** [text.length]: log p(target); 0 where a token has no target. Empty unless requested. */
  tokenLogprobs: Float32Array;
  layout: VideoLMLayout;
}

export interface BackwardOptions {
  /** Weight of the LM loss (default 1). */
  gradLoss?: number;
  /** Gradient of an extra loss with respect to the tapped hidden states [tapRows.length · width]. */
  dTap?: Float32Array;
  /** Gradient with respect to tokenLogprobs [text.length] (e.g. GRPO). */
  dLogprobs?: Float32Array;
  /** Add to the gradients of earlier backward calls (gradient accumulation). */
  accumulate?: boolean;
}

export interface StepOptions {
  lr?: number;
  minLr?: number;
  /** With totalSteps > 0: warmup then cosine from lr to minLr. */
  warmupSteps?: number;
  totalSteps?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global-norm clipping (<= 0: off; default 1). */
  maxGradNorm?: number;
  /** Gradient multiplier, e.g. 1 / micro-batches when accumulating. */
  gradScale?: number;
}

export interface StepResult {
  gradNorm: number;
  lr: number;
  step: number;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0: greedy (default). */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Stop a sequence after this id (default: <eos>); -1: never. */
  eosId?: number;
  /**
   * Called with (sequence index, token id) as each token is sampled, before the
   * whole batch is done (streaming; see generateStream). An exception it throws
   * rejects the call once generation has finished.
   */
  onToken?: (sequence: number, token: number) => void;
  /**
   * The sampler stream of each sequence (default: its index in the batch): a
   * sequence samples the same tokens in any batch that gives it the same
   * stream (data-parallel ranks pass each sequence's index in the global batch).
   */
  streams?: Int32Array;
}

export interface ParamInfo {
  name: string;
  shape: number[];
  offset: number;
  numel: number;
  decay: boolean;
}

const CONFIG_KEYS = ['imageSize', 'patchSize', 'frames', 'width', 'layers', 'heads', 'kvHeads', 'mlpRatio', 'ffn', 'vocab', 'maxSeq', 'tied', 'ropeTheta', 'normEps'] as const;
/** Every key VideoLM.create accepts (any other is refused: a typo would otherwise be ignored). */
export const VIDEOLM_CREATE_KEYS = [...CONFIG_KEYS, 'preset', 'tokenizer', 'seed', 'device', 'computeDtype'] as const;

export type VideoLMComputeDtype = 'float32' | 'bfloat16';

/** Validates opts.computeDtype for a model on `device` (undefined: 'float32'). */
function checkComputeDtype(fn: string, dtype: unknown, device: VideoLMDevice, arg = 'opts.computeDtype'): VideoLMComputeDtype {
  if (dtype === undefined && arg === 'opts.computeDtype') return 'float32';
  if (dtype !== 'float32' && dtype !== 'bfloat16') throw rangeError(fn, arg, "'float32' or 'bfloat16'", describe(dtype));
  if (dtype === 'bfloat16' && device === 'cuda') throw new Error(`${fn}: ${arg} 'bfloat16' is a CPU mode; a CUDA model keeps float32 products`);
  return dtype;
}

/** Validates opts.device; 'cuda' must be usable on this machine. */
function checkDevice(fn: string, device: unknown): VideoLMDevice {
  if (device === undefined) return 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw typeError(fn, 'opts.device', "'cpu' or 'cuda'", describe(device));
  if (device === 'cuda') {
    const info = backendInfo();
    if (!info.cuda) throw new Error(`${fn}: opts.device is 'cuda' but CUDA is unavailable: ${info.cudaReason}`);
  }
  return device;
}

/** Validates a config against the core's bounds (limits().videoLM; heads and kvHeads divide width, so width bounds them too). */
function checkConfig(fn: string, c: Record<string, unknown>): VideoLMConfig {
  const int = (k: string, min: number, max: number) => checkNumber(fn, `config.${k}`, c[k], NaN, { integer: true, min, max });
  const L = limits().videoLM;
  const out: VideoLMConfig = {
    imageSize: int('imageSize', 1, L.maxImageSize),
    patchSize: int('patchSize', 1, L.maxImageSize),
    frames: int('frames', 1, L.maxFrames),
    width: int('width', L.minWidth, L.maxWidth),
    layers: int('layers', 1, L.maxLayers),
    heads: int('heads', 1, L.maxWidth),
    kvHeads: int('kvHeads', 1, L.maxWidth),
    mlpRatio: checkNumber(fn, 'config.mlpRatio', c.mlpRatio, 2.75, { gt: 0, max: L.maxMlpRatio }),
    vocab: int('vocab', L.minVocab, L.maxVocab),
    maxSeq: int('maxSeq', 1, L.maxSeq),
    tied: checkBoolean(fn, 'config.tied', c.tied, true),
  };
  if (c.ffn !== undefined && c.ffn !== 0) out.ffn = checkNumber(fn, 'config.ffn', c.ffn, 0, { integer: true, min: 1, max: L.maxFfn });
  if (c.ropeTheta !== undefined) out.ropeTheta = checkNumber(fn, 'config.ropeTheta', c.ropeTheta, 10000, { gt: 1 });
  if (c.normEps !== undefined) out.normEps = checkNumber(fn, 'config.normEps', c.normEps, 1e-5, { gt: 0 });
  for (const [k, v] of Object.entries(out)) {
    if (typeof v === 'number' && Number.isNaN(v)) throw typeError(fn, `config.${k}`, 'a number', 'undefined');
  }
  if (out.imageSize % out.patchSize !== 0) throw rangeError(fn, 'config.imageSize', `a multiple of patchSize=${out.patchSize}`, `${out.imageSize}`);
  if (out.width % out.heads !== 0) throw rangeError(fn, 'config.heads', `a divisor of width=${out.width}`, `${out.heads}`);
  const { maxHeadDim } = limits();
  if ((out.width / out.heads) % 2 !== 0 || out.width / out.heads > maxHeadDim)
    throw rangeError(fn, 'config.heads', `such that width/heads is even and <= ${maxHeadDim}`, `${out.heads} (head dim ${out.width / out.heads})`);
  if (out.heads % out.kvHeads !== 0) throw rangeError(fn, 'config.kvHeads', `a divisor of heads=${out.heads}`, `${out.kvHeads}`);
  return out;
}

/** The built-in video-language model. Create with `await VideoLM.create(...)`. */
export class VideoLM {
  #native: VideoLMNative | undefined;
  #config: VideoLMConfig;
  #device: VideoLMDevice;
  #params: ParamInfo[];
  #queue: Promise<unknown> = Promise.resolve();
  #frozen = false;
  #lastTap = 0;
  #lastText = -1;
  /** The tokenizer saved with the model (optional). */
  tokenizer: Tokenizer | undefined;

  private constructor(native: VideoLMNative, tokenizer: Tokenizer | undefined) {
    this.#native = native;
    this.#config = native.config();
    this.#device = native.device();
    this.#params = native.paramInfo();
    this.tokenizer = tokenizer;
  }

  /**
   * Creates a model with seeded parameters from a config, a preset (`{ preset: 'tiny' }`),
   * or a preset with overrides.
   */
  static async create(opts: VideoLMCreateOptions = { preset: 'tiny' }): Promise<VideoLM> {
    const fn = 'VideoLM.create';
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, VIDEOLM_CREATE_KEYS);
    let base: Record<string, unknown> = {};
    if (o.preset !== undefined) {
      if (o.preset !== 'tiny' && o.preset !== 'small') throw rangeError(fn, 'opts.preset', "'tiny' or 'small'", describe(o.preset));
      base = { ...VIDEOLM_PRESETS[o.preset as VideoLMPreset] };
    }
    const tok = o.tokenizer;
    if (tok !== undefined && !(tok instanceof Tokenizer)) throw typeError(fn, 'opts.tokenizer', 'a Tokenizer', describe(tok));
    const merged: Record<string, unknown> = { ...base };
    for (const k of CONFIG_KEYS) if (o[k] !== undefined) merged[k] = o[k];
    if (tok && o.vocab === undefined) merged.vocab = tok.vocabSize;
    const cfg = checkConfig(fn, merged);
    if (tok && tok.vocabSize > cfg.vocab) throw rangeError(fn, 'config.vocab', `>= the tokenizer's ${tok.vocabSize} ids`, `${cfg.vocab}`);
    const seed = checkNumber(fn, 'opts.seed', o.seed, 0, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER });
    const device = checkDevice(fn, o.device);
    const computeDtype = checkComputeDtype(fn, o.computeDtype, device);
    // The parameters alone (a lower bound of what the model allocates) must fit: refuse before allocating.
    const d = cfg.width, kvd = (d / cfg.heads) * cfg.kvHeads, ffn = cfg.ffn ?? Math.ceil(cfg.mlpRatio * d);
    const paramBytes = 4 * (cfg.vocab * d + cfg.layers * (2 * d * d + 2 * d * kvd + 3 * d * ffn));
    const limit = device === 'cuda' ? (backendInfo().cuda?.memoryBytes ?? os.totalmem()) : os.totalmem();
    if (paramBytes > limit)
      throw rangeError(fn, 'config', `a model whose parameters fit in memory (this one needs at least ${bytesText(paramBytes)}; this machine has ${bytesText(limit)})`, JSON.stringify(cfg));
    const { binding } = loadAddon();
    const native = new binding.VideoLMNative(cfg, seed, device);
    if (computeDtype !== 'float32') native.setComputeDtype(computeDtype);
    return new VideoLM(native, tok as Tokenizer | undefined);
  }

  /** 'cpu' or 'cuda': where the model computes (see VideoLMCreateOptions.device). */
  get device(): VideoLMDevice {
    return this.#device;
  }

  /** The resolved config (ffn filled in). */
  get config(): VideoLMConfig {
    return { ...this.#config };
  }

  /** Named parameter tensors: offsets into the flat buffer. */
  get paramInfo(): ParamInfo[] {
    return this.#params.map((p) => ({ ...p, shape: [...p.shape] }));
  }

  get numParams(): number {
    return this.#params.reduce((a, p) => a + p.numel, 0);
  }

  /** Optimizer steps taken. */
  get step(): number {
    return this.#alive('VideoLM.step').getStep();
  }

  /**
   * The precision of the model's matrix products: 'float32' (the default) or
   * 'bfloat16' — mixed precision on the CPU: both operands of every GEMM (patch
   * embedding, attention and MLP projections, LM head, and their input and weight
   * gradients) rounded to bfloat16 with float32 accumulation and result, as
   * PyTorch's CPU autocast does; parameters, gradients, attention, norms, losses
   * and AdamW stay float32 (float32 master weights). AVX512-BF16 CPUs (Zen 4,
   * Sapphire Rapids) run it on the bf16 GEMM; elsewhere the same values are
   * widened to float32 (no speed-up). See {@link setComputeDtype}.
   */
  get computeDtype(): 'float32' | 'bfloat16' {
    return this.#alive('VideoLM.computeDtype').computeDtype();
  }

  /**
   * Sets {@link computeDtype}, after the work already queued on the model. CUDA
   * models keep float32 products ('bfloat16' is an Error there: on a GPU the
   * reduced precisions are the tensors' dtypes). A clone() keeps the setting.
   */
  setComputeDtype(dtype: 'float32' | 'bfloat16'): Promise<void> {
    const fn = 'VideoLM.setComputeDtype';
    checkComputeDtype(fn, dtype, this.#device, 'dtype');
    const native = this.#alive(fn);
    return this.#run(async () => native.setComputeDtype(dtype));
  }

  /** True for a frozen copy (see clone()): backward and step are refused. */
  get frozen(): boolean {
    return this.#frozen;
  }

  #alive(fn: string): VideoLMNative {
    if (!this.#native) throw new Error(`${fn}: the model was disposed`);
    return this.#native;
  }

  #run<T>(f: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(f, f);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  /** A copy of a flat buffer: 'params', 'grads', or AdamW 'm' / 'v'. */
  getBuffer(which: 'params' | 'grads' | 'm' | 'v'): Float32Array {
    return this.#alive('VideoLM.getBuffer').getBuffer(which);
  }

  /** Overwrites a flat buffer (length numParams). */
  setBuffer(which: 'params' | 'grads' | 'm' | 'v', data: Float32Array): void {
    const fn = 'VideoLM.setBuffer';
    float32Vector(fn, 'data', data, this.numParams);
    this.#alive(fn).setBuffer(which, data);
  }

  /** Parameters by name (copies). */
  parameters(): Record<string, Float32Array> {
    const all = this.getBuffer('params');
    const out: Record<string, Float32Array> = {};
    for (const p of this.#params) out[p.name] = all.slice(p.offset, p.offset + p.numel);
    return out;
  }

  #batch(fn: string, b: unknown): NativeVideoLMBatch {
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw typeError(fn, 'batch', 'an object', describe(b));
    const batch = b as Record<string, unknown>;
    const c = this.#config;
    const per = c.frames * c.imageSize * c.imageSize * 3;
    let videos: Uint8Array | Float32Array | undefined;
    const v = batch.videos;
    if (v instanceof Tensor) {
      if (v.device !== 'cpu' || (v.dtype !== 'float32'))
        throw typeError(fn, 'batch.videos', 'a CPU float32 tensor, a Uint8Array or a Float32Array', describe(v));
      const want = [c.frames, c.imageSize, c.imageSize, 3];
      if (v.shape.length !== 5 || want.some((d, i) => v.shape[i + 1] !== d))
        throw rangeError(fn, 'batch.videos.shape', `[nVideos, ${want.join(', ')}]`, `[${v.shape.join(', ')}]`);
      videos = v.data as Float32Array;
    } else if (v instanceof Uint8Array || v instanceof Float32Array) videos = v;
    else if (v !== undefined) throw typeError(fn, 'batch.videos', 'a Uint8Array, a Float32Array or a CPU float32 tensor', describe(v));
    const len = videos?.length ?? 0;
    if (len % per !== 0)
      throw rangeError(fn, 'batch.videos.length', `a multiple of frames·imageSize²·3 = ${per}`, `${len}`);
    const numVideos = len / per;
    const text = int32Vector(fn, 'batch.text', batch.text);
    for (let i = 0; i < text.length; i++)
      if (text[i] < 0 || text[i] >= c.vocab) throw rangeError(fn, `batch.text[${i}]`, `a token id in [0, ${c.vocab})`, `${text[i]}`);
    let targets: Int32Array | undefined;
    if (batch.targets !== undefined) {
      targets = int32Vector(fn, 'batch.targets', batch.targets, text.length);
      for (let i = 0; i < targets.length; i++)
        if (targets[i] < -1 || targets[i] >= c.vocab) throw rangeError(fn, `batch.targets[${i}]`, `-1 or in [0, ${c.vocab})`, `${targets[i]}`);
    }
    const seqs = batch.sequences;
    if (!Array.isArray(seqs) || seqs.length === 0) throw typeError(fn, 'batch.sequences', 'a non-empty array of sequences', describe(seqs));
    let total = 0;
    seqs.forEach((s, i) => {
      if (!Array.isArray(s)) throw typeError(fn, `batch.sequences[${i}]`, 'an array of segments', describe(s));
      let n = 0;
      s.forEach((g: unknown, j: number) => {
        const at = `batch.sequences[${i}][${j}]`;
        if (g === null || typeof g !== 'object') throw typeError(fn, at, '{ video, frames? } or { text: [start, length] }', describe(g));
        const seg = g as Record<string, unknown>;
        if ('video' in seg) {
          if (seg.sourceFramePosition !== undefined && typeof seg.sourceFramePosition !== 'boolean')
            throw typeError(fn, `${at}.sourceFramePosition`, 'a boolean', describe(seg.sourceFramePosition));
          const vi = checkNumber(fn, `${at}.video`, seg.video, NaN, { integer: true, min: 0 });
          if (vi >= numVideos) throw rangeError(fn, `${at}.video`, `< the number of videos ${numVideos}`, `${vi}`);
          if (seg.frames !== undefined) {
            const fr = int32Vector(fn, `${at}.frames`, seg.frames);
            if (fr.length === 0) throw rangeError(fn, `${at}.frames.length`, '>= 1', '0');
            for (let k = 0; k < fr.length; k++)
              if (fr[k] < 0 || fr[k] >= c.frames) throw rangeError(fn, `${at}.frames[${k}]`, `a frame in [0, ${c.frames})`, `${fr[k]}`);
            if (fr.length > c.frames && seg.sourceFramePosition !== true)
              throw rangeError(fn, `${at}.frames.length`, `at most frames=${c.frames} (each output frame takes its slot's position; set sourceFramePosition for longer maps)`, `${fr.length}`);
            n += fr.length * (c.imageSize / c.patchSize) ** 2;
          } else n += c.frames * (c.imageSize / c.patchSize) ** 2;
        } else if ('text' in seg) {
          const t = seg.text;
          if (!Array.isArray(t) || t.length !== 2 || !t.every((x) => Number.isSafeInteger(x) && x >= 0))
            throw typeError(fn, `${at}.text`, '[start, length] (non-negative integers)', describe(t));
          if (t[0] + t[1] > text.length) throw rangeError(fn, `${at}.text`, `a span inside the text of length ${text.length}`, `[${t[0]}, ${t[1]}]`);
          n += t[1];
        } else throw typeError(fn, at, '{ video, frames? } or { text: [start, length] }', describe(g));
      });
      if (n > c.maxSeq) throw rangeError(fn, `batch.sequences[${i}]`, `at most maxSeq=${c.maxSeq} tokens`, `${n}`);
      total += n;
    });
    if (total === 0) throw rangeError(fn, 'batch.sequences', 'at least one token', '0');
    return { videos, numVideos, text, targets, sequences: seqs as VideoLMSegment[][] };
  }

  /**
   * Forward pass over a packed batch: the mean LM loss over text targets and,
   * optionally, the hidden states of `tapRows` after `tapLayer` layers and the
   * per-token log-probs. Keeps the activations for backward().
   */
  forward(batch: VideoLMBatch, opts: ForwardOptions = {}): Promise<ForwardResult> {
    const fn = 'VideoLM.forward';
    const o = checkOptions(fn, opts);
    const b = this.#batch(fn, batch);
    const L = this.#config.layers;
    let tapRows: Int32Array | undefined;
    let tapLayer = -1;
    if (o.tapRows !== undefined) {
      tapRows = int32Vector(fn, 'opts.tapRows', o.tapRows);
      tapLayer = checkNumber(fn, 'opts.tapLayer', o.tapLayer, Math.floor(L / 2), { integer: true, min: 0, max: L });
    } else if (o.tapLayer !== undefined) checkNumber(fn, 'opts.tapLayer', o.tapLayer, 0, { integer: true, min: 0, max: L });
    const logprobs = checkBoolean(fn, 'opts.logprobs', o.logprobs, false);
    const forBackward = checkBoolean(fn, 'opts.forBackward', o.forBackward, true);
    const native = this.#alive(fn);
    return this.#run(async () => {
      const r = await native.forward(b, { tapLayer, tapRows, logprobs, forBackward });
      this.#lastTap = tapRows?.length ?? 0;
      this.#lastText = forBackward ? b.text.length : -1;
      return r;
    });
  }

  /** Backward of the last forward() into the parameter gradients (see BackwardOptions). */
  backward(opts: BackwardOptions = {}): Promise<void> {
    const fn = 'VideoLM.backward';
    const o = checkOptions(fn, opts);
    if (this.#frozen) throw new Error(`${fn}: this is a frozen copy (no training)`);
    const gradLoss = checkNumber(fn, 'opts.gradLoss', o.gradLoss, 1);
    const accumulate = checkBoolean(fn, 'opts.accumulate', o.accumulate, false);
    const native = this.#alive(fn);
    return this.#run(async () => {
      if (this.#lastText < 0) throw new Error(`${fn}: call forward() (with forBackward) first`);
      const dTap = o.dTap === undefined ? null : float32Vector(fn, 'opts.dTap', o.dTap, this.#lastTap * this.#config.width);
      const dLp = o.dLogprobs === undefined ? null : float32Vector(fn, 'opts.dLogprobs', o.dLogprobs, this.#lastText);
      await native.backward(gradLoss, dTap, dLp, accumulate);
      this.#lastText = -1;
    });
  }

  #stepOpts(fn: string, opts: unknown): Required<StepOptions> {
    const o = checkOptions(fn, opts);
    const out: Required<StepOptions> = {
      lr: checkNumber(fn, 'opts.lr', o.lr, 1e-3, { min: 0 }),
      minLr: checkNumber(fn, 'opts.minLr', o.minLr, 0, { min: 0 }),
      warmupSteps: checkNumber(fn, 'opts.warmupSteps', o.warmupSteps, 0, { integer: true, min: 0 }),
      totalSteps: checkNumber(fn, 'opts.totalSteps', o.totalSteps, 0, { integer: true, min: 0 }),
      beta1: checkNumber(fn, 'opts.beta1', o.beta1, 0.9, { min: 0, max: 0.999999 }),
      beta2: checkNumber(fn, 'opts.beta2', o.beta2, 0.95, { min: 0, max: 0.999999 }),
      eps: checkNumber(fn, 'opts.eps', o.eps, 1e-8, { gt: 0 }),
      weightDecay: checkNumber(fn, 'opts.weightDecay', o.weightDecay, 0.1, { min: 0 }),
      maxGradNorm: checkNumber(fn, 'opts.maxGradNorm', o.maxGradNorm, 1),
      gradScale: checkNumber(fn, 'opts.gradScale', o.gradScale, 1, { gt: 0 }),
    };
    if (this.#frozen) throw new Error(`${fn}: this is a frozen copy (no training)`);
    return out;
  }

  /** One AdamW step (global-norm clipping, optional warmup + cosine schedule) on the accumulated gradients. */
  stepOptimizer(opts: StepOptions = {}): Promise<StepResult> {
    const fn = 'VideoLM.stepOptimizer';
    const s = this.#stepOpts(fn, opts);
    const native = this.#alive(fn);
    return this.#run(() => native.step(s));
  }

  /**
   * A whole training step off the main thread: forward + backward over each
   * micro-batch (gradients accumulated, losses averaged), then AdamW.
   */
  trainStep(batches: VideoLMBatch | VideoLMBatch[], opts: StepOptions = {}): Promise<StepResult & { loss: number; count: number }> {
    const fn = 'VideoLM.trainStep';
    const list = Array.isArray(batches) ? batches : [batches];
    if (list.length === 0) throw rangeError(fn, 'batches', 'at least one batch', '[]');
    const bs = list.map((b, i) => this.#batch(list.length > 1 ? `${fn} (batch ${i})` : fn, b));
    const s = this.#stepOpts(fn, opts);
    const native = this.#alive(fn);
    return this.#run(async () => {
      this.#lastText = -1;
      return native.trainStep(bs, s);
    });
  }

  /** Logits of every packed row, [rows · vocab] (row-major), with the layout. */
  logits(batch: VideoLMBatch): Promise<{ logits: Float32Array; layout: VideoLMLayout }> {
    const fn = 'VideoLM.logits';
    const b = this.#batch(fn, batch);
    const native = this.#alive(fn);
    return this.#run(async () => {
      this.#lastText = -1;
      return native.logits(b);
    });
  }

  /** Per-token log-probs of every text token's target under the model ([text.length]; 0 where no target). */
  async sequenceLogprobs(batch: VideoLMBatch): Promise<Float32Array> {
    const r = await this.forward(batch, { logprobs: true, forBackward: false });
    return r.tokenLogprobs;
  }

  /**
   * Continues every sequence of a batch of prompts (KV cache; one token per
   * sequence per step). Returns the new token ids per sequence.
   */
  generateBatch(prompts: VideoLMBatch, opts: GenerateOptions = {}): Promise<Int32Array[]> {
    const fn = 'VideoLM.generateBatch';
    const b = this.#batch(fn, prompts);
    const g = this.#genOpts(fn, opts);
    const onToken = checkOnToken(fn, (opts as GenerateOptions).onToken);
    const streams = (opts as GenerateOptions | undefined)?.streams;
    if (streams !== undefined) g.streams = checkStreams(fn, streams, (b.sequences as unknown[]).length);
    const native = this.#alive(fn);
    return this.#run(async () => {
      this.#lastText = -1;
      if (!onToken) return (await native.generate(b, g)) as Int32Array[];
      // The native side must never see a JS exception: keep the first one and throw it at the end.
      const guard = guardOnToken(onToken);
      let delivered!: () => void;
      const allDelivered = new Promise<void>((res) => (delivered = res));
      const out = (await native.generate(b, {
        ...g,
        onToken: (seq: number, tok: number) => {
          if (seq < 0) return delivered(); // the end mark, after every token
          guard.call(seq, tok);
        },
      })) as Int32Array[];
      await allDelivered; // every onToken call happens before the call resolves
      guard.rethrow();
      return out;
    });
  }

  #genOpts(fn: string, opts: unknown): Omit<Required<GenerateOptions>, 'onToken' | 'streams'> & { streams?: Int32Array } {
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, GENERATE_BATCH_KEYS);
    return {
      maxTokens: checkNumber(fn, 'opts.maxTokens', o.maxTokens, 32, { integer: true, min: 0, max: this.#config.maxSeq }),
      temperature: checkNumber(fn, 'opts.temperature', o.temperature, 0, { min: 0 }),
      topP: checkNumber(fn, 'opts.topP', o.topP, 1, { gt: 0, max: 1 }),
      seed: checkNumber(fn, 'opts.seed', o.seed, 0, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }),
      eosId: checkNumber(fn, 'opts.eosId', o.eosId, EOS_ID < this.#config.vocab ? EOS_ID : -1, { integer: true, min: -1, max: this.#config.vocab - 1 }),
    };
  }

  /** The one-sequence batch of generate() / generateStream(): the video's tokens, then the prompt's. */
  #promptBatch(fn: string, video: Uint8Array | Float32Array | Tensor | null, prompt: string | Int32Array): VideoLMBatch {
    let ids: Int32Array;
    if (typeof prompt === 'string') {
      if (!this.tokenizer) throw typeError(fn, 'prompt', 'token ids (this model has no tokenizer)', 'a string');
      ids = this.tokenizer.encode(prompt, { addBos: true });
    } else ids = int32Vector(fn, 'prompt', prompt);
    let videos: Uint8Array | Float32Array | undefined;
    if (video instanceof Tensor) {
      const c = this.#config;
      const want = [c.frames, c.imageSize, c.imageSize, 3];
      if (video.device !== 'cpu' || video.dtype !== 'float32' || video.shape.length !== 4 || want.some((d, i) => video.shape[i] !== d))
        throw rangeError(fn, 'video', `a CPU float32 tensor of shape [${want.join(', ')}]`, describe(video));
      videos = video.data as Float32Array;
    } else if (video !== null) videos = video;
    const seq: VideoLMSegment[] = [];
    if (videos) seq.push({ video: 0 });
    seq.push({ text: [0, ids.length] });
    return { videos, text: ids, sequences: [seq] };
  }

  /** Text of generated ids (ids beyond the tokenizer, in a model whose vocab is larger, decode as <unk>). */
  #text(ids: ArrayLike<number>): string {
    const n = this.tokenizer!.vocabSize;
    return this.tokenizer!.decode(Array.from(ids, (x) => (x < n ? x : UNK_ID)), { skipSpecial: true });
  }

  /**
   * Generates a continuation of `prompt` given one video ([frames, imageSize,
   * imageSize, 3] as a Uint8Array, Float32Array or CPU float32 tensor; null for
   * text only). A string prompt needs the model's tokenizer and returns a string;
   * token ids return ids.
   */
  async generate(video: Uint8Array | Float32Array | Tensor | null, prompt: string | Int32Array, opts: GenerateOptions = {}): Promise<string | Int32Array> {
    const fn = 'VideoLM.generate';
    const [out] = await this.generateBatch(this.#promptBatch(fn, video, prompt), opts);
    return typeof prompt === 'string' ? this.#text(out) : out;
  }

  /**
   * generate() as an async iterator: yields each piece of text (string prompt)
   * or each token id (token-id prompt) as soon as it is sampled; the pieces
   * join to exactly what generate() returns for the same arguments. Leaving the
   * loop early does not stop the model sooner: it finishes the call (up to
   * maxTokens or <eos>) in the background before its next call runs.
   */
  generateStream(video: Uint8Array | Float32Array | Tensor | null, prompt: string, opts?: Omit<GenerateOptions, 'onToken'>): AsyncGenerator<string, void, undefined>;
  generateStream(video: Uint8Array | Float32Array | Tensor | null, prompt: Int32Array, opts?: Omit<GenerateOptions, 'onToken'>): AsyncGenerator<number, void, undefined>;
  async *generateStream(video: Uint8Array | Float32Array | Tensor | null, prompt: string | Int32Array, opts: Omit<GenerateOptions, 'onToken'> = {}): AsyncGenerator<string | number, void, undefined> {
    const fn = 'VideoLM.generateStream';
    const batch = this.#promptBatch(fn, video, prompt);
    const o = checkOptions(fn, opts);
    if (o.onToken !== undefined) throw typeError(fn, 'opts.onToken', 'unset (the stream delivers the tokens)', describe(o.onToken));
    const queue: number[] = [];
    let wake: (() => void) | undefined;
    let end: { ids?: Int32Array; error?: unknown } | undefined;
    const call = this.generateBatch(batch, {
      ...(opts as GenerateOptions),
      onToken: (_seq, tok) => {
        queue.push(tok);
        wake?.();
      },
    });
    call.then((r) => (end = { ids: r[0] }), (error) => (end = { error })).finally(() => wake?.());
    const ids: number[] = [];
    let text = '';
    const piece = (tok: number): string | number => {
      ids.push(tok);
      if (typeof prompt !== 'string') return tok;
      const full = this.#text(ids);
      const p = full.slice(text.length);
      text = full;
      return p;
    };
    for (;;) {
      while (queue.length > 0) {
        const p = piece(queue.shift()!);
        if (p !== '') yield p;
      }
      if (end) break;
      await new Promise<void>((res) => (wake = res));
      wake = undefined;
    }
    if (end.error !== undefined) throw end.error;
    // Tokens whose callbacks had not run when the call finished.
    for (const tok of end.ids!.subarray(ids.length)) {
      const p = piece(tok);
      if (p !== '') yield p;
    }
  }

  /** A frozen copy of the parameters on the same device (the RL stage's reference model). */
  async clone(): Promise<VideoLM> {
    const fn = 'VideoLM.clone';
    const native = this.#alive(fn);
    await this.#queue;
    const { binding } = loadAddon();
    const copy = new VideoLM(new binding.VideoLMNative(this.#config, 0, this.#device), this.tokenizer);
    copy.#alive(fn).setBuffer('params', native.getBuffer('params'));
    copy.#alive(fn).setComputeDtype(native.computeDtype());
    copy.#frozen = true;
    return copy;
  }

  /**
   * Saves to a directory: model.safetensors, optimizer.safetensors (AdamW m, v
   * and the step), tokenizer.json (when present) and config.json (last), each
   * written atomically.
   */
  async save(dir: string): Promise<void> {
    const fn = 'VideoLM.save';
    if (typeof dir !== 'string' || dir.length === 0) throw typeError(fn, 'dir', 'a directory path', describe(dir));
    const native = this.#alive(fn);
    await this.#run(async () => {
      outputDir(`${fn}: dir`, dir);
      const put = (buf: Float32Array, prefix: string) => {
        const t: Record<string, StTensor> = {};
        for (const p of this.#params) t[prefix + p.name] = { dtype: 'F32', shape: [...p.shape], data: buf.subarray(p.offset, p.offset + p.numel) };
        return t;
      };
      writeSafetensors(join(dir, 'model.safetensors'), put(native.getBuffer('params'), ''), { format: 'videoperceiver.VideoLM' });
      const step = native.getStep();
      writeSafetensors(join(dir, 'optimizer.safetensors'), { ...put(native.getBuffer('m'), 'm.'), ...put(native.getBuffer('v'), 'v.') }, { step: String(step) });
      if (this.tokenizer) this.tokenizer.save(join(dir, 'tokenizer.json'));
      const cfg = { format: 'videoperceiver.VideoLM', version: 1, ...this.#config };
      writeFileAtomic(join(dir, 'config.json'), [Buffer.from(JSON.stringify(cfg, null, 2) + '\n')]);
    });
  }

  /**
   * Loads a directory written by save() (on either device) onto `opts.device`
   * (default 'cpu'); names, shapes, sizes and the config are checked (CheckpointError).
   * `opts.computeDtype` sets the precision of its products (a run-time mode, not
   * saved in the folder; default 'float32').
   */
  static async load(dir: string, opts: { device?: VideoLMDevice; computeDtype?: VideoLMComputeDtype } = {}): Promise<VideoLM> {
    const fn = 'VideoLM.load';
    if (typeof dir !== 'string' || dir.length === 0) throw typeError(fn, 'dir', 'a directory path', describe(dir));
    const o = checkOptions(fn, opts);
    const device = checkDevice(fn, o.device);
    const computeDtype = checkComputeDtype(fn, o.computeDtype, device);
    try {
      inputDir(`${fn}: dir`, dir, 'a saved model folder');
    } catch (e) {
      throw new CheckpointError((e as Error).message);
    }
    const cfgPath = join(dir, 'config.json');
    if (!existsSync(cfgPath)) throw new CheckpointError(`${cfgPath}: not found (not a VideoLM checkpoint directory?)`);
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(cfgPath, 'utf8'));
    } catch (e) {
      throw new CheckpointError(`${cfgPath}: not valid JSON (${(e as Error).message})`);
    }
    if (raw === null || typeof raw !== 'object' || (raw as Record<string, unknown>).format !== 'videoperceiver.VideoLM')
      throw new CheckpointError(`${cfgPath}: not a videoperceiver.VideoLM config`);
    let cfg: VideoLMConfig;
    try {
      cfg = checkConfig(fn, raw as Record<string, unknown>);
    } catch (e) {
      throw new CheckpointError(`${cfgPath}: ${(e as Error).message}`);
    }
    const tokPath = join(dir, 'tokenizer.json');
    const tokenizer = existsSync(tokPath) ? Tokenizer.load(tokPath) : undefined;
    const { binding } = loadAddon();
    const loadedNative = new binding.VideoLMNative(cfg, 0, device);
    if (computeDtype !== 'float32') loadedNative.setComputeDtype(computeDtype);
    const model = new VideoLM(loadedNative, tokenizer);
    const expect = (prefix: string) => {
      const e: Record<string, { dtype: 'F32'; shape: number[] }> = {};
      for (const p of model.#params) e[prefix + p.name] = { dtype: 'F32', shape: p.shape };
      return e;
    };
    // A NaN or infinite weight (a run that diverged) is refused here, not found steps later.
    const gather = (tensors: Record<string, StTensor>, prefix: string, file: string) => {
      const buf = new Float32Array(model.numParams);
      for (const p of model.#params) {
        const data = tensors[prefix + p.name].data as Float32Array;
        for (let i = 0; i < data.length; i++) {
          if (!Number.isFinite(data[i])) throw new CheckpointError(`${file}: tensor "${prefix + p.name}" holds ${data[i]} at element ${i}: the weights are not finite (the run that saved them diverged)`);
        }
        buf.set(data, p.offset);
      }
      return buf;
    };
    try {
      const modelPath = join(dir, 'model.safetensors');
      const st = readSafetensors(modelPath, { expect: expect('') });
      const target = model.#alive(fn);
      target.setBuffer('params', gather(st.tensors, '', modelPath));
      const optPath = join(dir, 'optimizer.safetensors');
      if (existsSync(optPath)) {
        const op = readSafetensors(optPath, { expect: { ...expect('m.'), ...expect('v.') } });
        const step = Number(op.metadata.step ?? '0');
        if (!Number.isSafeInteger(step) || step < 0) throw new CheckpointError(`${optPath}: metadata step must be a non-negative integer, got ${JSON.stringify(op.metadata.step)}`);
        target.setBuffer('m', gather(op.tensors, 'm.', optPath));
        target.setBuffer('v', gather(op.tensors, 'v.', optPath));
        target.setStep(step);
      }
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  /**
   * Copies another model's parameters, AdamW state and step into this one (the
   * configs must match): how a trainer resumes from a checkpoint into the model
   * it was given.
   */
  async copyStateFrom(other: VideoLM): Promise<void> {
    const fn = 'VideoLM.copyStateFrom';
    if (!(other instanceof VideoLM)) throw typeError(fn, 'other', 'a VideoLM', describe(other));
    const mine = JSON.stringify(this.#config);
    const theirs = JSON.stringify(other.#config);
    if (mine !== theirs) throw rangeError(fn, 'other.config', mine, theirs);
    const native = this.#alive(fn);
    const src = other.#alive(fn);
    await other.#queue;
    await this.#run(async () => {
      for (const which of ['params', 'm', 'v'] as const) native.setBuffer(which, src.getBuffer(which));
      native.setStep(src.getStep());
    });
  }

  /** `using model = await VideoLM.create(...)`: disposed at the end of the scope. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** `await using model = ...`: waits for a running call, then disposes. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#queue.catch(() => undefined);
    this.dispose();
  }

  /**
   * Data-parallel training (vp.distributedInfo()): sums the gradient buffer
   * over the ranks in place, on the model's device (MPI for CPU models, NCCL
   * for CUDA models when it is up). A no-op outside a distributed launch.
   */
  allReduceGradients(): Promise<void> {
    const native = this.#alive('VideoLM.allReduceGradients');
    if (!isDistributed()) return this.#run(async () => undefined);
    return this.#run(() => native.distAllreduce('grads') as Promise<void>);
  }

  /**
   * Copies rank `root`'s parameters, AdamW state and step to every rank, so
   * that all ranks start a data-parallel stage from the same state. A no-op
   * outside a distributed launch.
   */
  async broadcastState(root = 0): Promise<void> {
    const native = this.#alive('VideoLM.broadcastState');
    if (!isDistributed()) return;
    await this.#run(async () => {
      for (const which of ['params', 'm', 'v'] as const) await native.distBroadcast(which, root);
    });
    const step = await broadcast(Float64Array.of(this.step), root);
    native.setStep(step[0]);
  }

  /** Frees the native model (waits for a running call first). */
  dispose(): void {
    if (!this.#native) return;
    const n = this.#native;
    this.#native = undefined;
    this.#queue.then(() => n.dispose(), () => n.dispose());
  }
}
