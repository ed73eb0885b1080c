// vp.loadPretrained / PretrainedModel (docs/pretrained.md): a Hugging Face folder —
// config.json, safetensors weights, tokenizer.json, chat template — as a
// model that computes logits, trains (fully or with LoRA), generates and
// saves back in the same layout.
//
// The model also speaks the training interface of vp.VideoLM (forward over a
// packed batch, backward with gradLoss / dTap / dLogprobs, stepOptimizer,
// generateBatch, sequenceLogprobs, clone, copyStateFrom), restricted to text:
// a batch's sequences hold text segments only. Everything runs in float32
// through the package's fused ops (lib/pretrained/decoder.ts), on the calling
// thread, on the CPU or — loaded with device 'cuda' — on the GPU, where the
// parameters, gradients and AdamW state live (lib/pretrained/device.ts; token
// ids, row indices and the per-token log-probs stay on the host). With dtype
// 'bfloat16' (and, on CUDA by default, for matrices stored as BF16) the frozen
// weight matrices are held in bfloat16 and multiplied with float32 accumulation
// (lib/pretrained/bf16.ts). Cost: see decoder.ts and generate.ts.
import { existsSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, rangeError, typeError } from '../errors.js';
import { lrAt } from '../ops/layers.js';
import { CheckpointError, readSafetensors, writeSafetensors, type StDType, type StTensor } from '../model/safetensors.js';
import type { BackwardOptions, ForwardOptions, ForwardResult, StepOptions, VideoLMBatch, VideoLMLayout } from '../model/videolm.js';
import { recycleOutput, Tensor, tensor, bytesPerElement } from '../tensor.js';
import { backendInfo } from '../backend.js';
import { distributedInfo, isDistributed } from '../distributed.js';
import { checkBoolean, checkKnownKeys, checkNumber, checkOptions, float32Vector, int32Vector } from '../validate.js';
import { ChatTemplate, type ChatMessage, type ChatTemplateOptions } from './chat-template.js';
import { fromFloat32, readWeights, storedTensorNames, toFloat32, type WeightLayout } from './checkpoint.js';
import { expectedTensors, parseConfig, readJsonObject, type Architecture, type DecoderSpec } from './config.js';
import { checkPixelValues, mergeVisual, type VisualInput } from './vlm-input.js';
import { VisionLanguageBridge, type ConnectorSaved } from './vision.js';
import { expectedVlmTensors, isVlmConfig, parseVlmConfig, textName, type VlmArchitecture, type VlmSpec } from './vlm-config.js';
import { bf16Tensor, copyValue, hostValue, isBf16, paramF32, setParamF32, toBf16, toF32 } from './bf16.js';
import { adamw, gatherRows, gradNorm, hostF32, zerosOn } from './device.js';
import { Decoder, type HeadState, type Param, type Saved } from './decoder.js';
import { allReduceParamGradients, broadcastParamState } from './data-parallel.js';
import { checkOnToken, checkStreams, GENERATE_BATCH_KEYS, guardOnToken, type OnToken } from '../model/generate-options.js';
import { generateSteps, generateTokens, type GenOptions, type StepTokens, type TextGenerateOptions } from './generate.js';
import { attachLoaded, attachLora, checkLoraOptions, mergedWeight, mergeInto, readAdapter, writeAdapter, type LoraOptions, type LoraState } from './lora.js';
import { snapshotOtherFiles, writeHfFolder, type SaveLayout } from './save.js';
import { processVideo, videoPromptText, type ProcessedVideo, type VideoOptions } from './video.js';
import { processImages, type ProcessedImages } from './images.js';
import { PretrainedTokenizer } from './tokenizer.js';

export interface LoadPretrainedOptions {
  /**
   * 'cpu' (default) or 'cuda': parameters, gradients and optimizer state on the GPU, every
   * layer on its CUDA kernels (docs/pretrained.md, "On a GPU"; not yet run on a GPU).
   */
  device?: 'cpu' | 'cuda';
  /**
   * 'float32' (the CPU default): every weight is a float32 tensor, whatever the stored dtype.
   * 'auto': on the CPU as 'float32'; on CUDA (its default) each frozen weight matrix stored
   * as BF16 stays bfloat16, the rest float32.
   * 'bfloat16': every weight matrix that is not being trained is held in bfloat16 (half the bytes)
   * and multiplied by the bf16 GEMM with float32 accumulation; trained weights are float32
   * masters (docs/pretrained.md, "bfloat16 weights").
   */
  dtype?: 'float32' | 'auto' | 'bfloat16';
  /**
   * 'bfloat16' (CPU): mixed precision. Every float32 weight matrix of a linear layer (the text
   * model's, its LM head, a vision tower's and connector's) multiplies through a bfloat16 copy of
   * itself (bf16 GEMM, float32
   * accumulation) in the forward pass and the input gradients, and their gradients are bf16
   * products too (both operands rounded), while training updates float32 masters (what
   * PyTorch's CPU autocast computes). The copies (2 bytes a weight) are remade after each
   * optimizer step. Default 'float32' (docs/pretrained.md, "bfloat16 compute").
   */
  computeDtype?: 'float32' | 'bfloat16';
  /** A PEFT LoRA adapter folder to attach after loading. */
  adapter?: string;
}

/** A text segment of a packed batch (video segments are for vision-language models). */
export type PretrainedSegment = { text: [number, number] };

/**
 * A packed batch of text sequences: the text side of vp.VideoLMBatch (the
 * training methods also take a VideoLMBatch, and refuse its video segments).
 */
export interface PretrainedBatch {
  text: Int32Array;
  /**
   * Vision-language models: the images [nImages, C, H, W] (float32, processed)
   * whose visual tokens fill the image-token rows of the packed batch, in row order.
   */
  pixelValues?: Tensor;
  /** Target per text token (-1: none). Default: the next token inside each text segment. */
  targets?: Int32Array;
  sequences: PretrainedSegment[][];
}






/** The training interface's options and results are VideoLM's (text only). */
export type PretrainedForwardOptions = ForwardOptions;
export type PretrainedForwardResult = ForwardResult;
export type PretrainedLayout = VideoLMLayout;
export type PretrainedBackwardOptions = BackwardOptions;
export type PretrainedStepOptions = StepOptions;

export interface LogitsOptions {
  /**
   * Vision-language models: uint8 RGB frames [F, H, W, 3] ({ data, shape } as
   * vp.readNpy returns, or vp.decodeVideo's result), processed as the family's
   * processor does (lib/pretrained/video.ts). `ids` hold either the expanded
   * image tokens already (processVideo().prompt tokenized) or one image token,
   * which is expanded in place. Refused by a text-only model.
   */
  video?: unknown;
  /** Frame rate of `video` (default: decodeVideo's, else 1). */
  fps?: number;
  /**
   * Vision-language models: uint8 RGB images [nImages, H, W, 3] ({ data, shape },
   * as vp.readNpy returns), processed as the family's image processor does
   * (lib/pretrained/images.ts). `ids` hold either every image's expanded prompt
   * already (processImages().prompts tokenized) or one image token per image,
   * each expanded in place.
   */
  images?: unknown;
  /** Processed images [nImages, C, H, W] float32 (transformers' pixel_values). */
  pixelValues?: unknown;
}

interface LastForward {
  saved: Saved | null;
  head: HeadState;
  T: number;
  /** Text index of each head row. */
  textOf: Int32Array;
  count: number;
  nText: number;
  tapCount: number;
  /** The visual side of the pass (vision-language models with pixel values). */
  visual: { saved: ConnectorSaved; rows: Int32Array } | null;
}

const OPTIMIZER_FILE = 'optimizer.safetensors';
/** The option keys each entry point takes (any other is refused with the nearest name: a typo would otherwise be ignored). */
const LOAD_KEYS = ['device', 'dtype', 'computeDtype', 'adapter'];
const LOGITS_KEYS = ['video', 'fps', 'images', 'pixelValues'];
const GENERATE_KEYS = [...GENERATE_BATCH_KEYS, 'fps'];
const STREAM_KEYS = GENERATE_KEYS.filter((k) => k !== 'onToken');

/** PretrainedModel.generate's options: generateBatch's, and the frame rate of a video. */
export type PretrainedGenerateOptions = TextGenerateOptions & { fps?: number };

function idList(v: unknown): number[] {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return [v];
  if (Array.isArray(v)) return v.filter((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0) as number[];
  return [];
}

/** A Hugging Face causal LM loaded from a folder (see the file comment). */
export class PretrainedModel {
  /** The folder's config.json, as parsed. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Its class name: 'LlamaForCausalLM', 'Qwen2ForCausalLM', or a vision-language one (SmolVLM, Idefics3, Llava). */
  readonly architecture: Architecture | VlmArchitecture;
  /** The resolved (text) decoder shape. */
  readonly spec: DecoderSpec;
  /** A vision-language model's parts (null for a text-only model). */
  readonly vlm: VlmSpec | null;
  /** The folder it was loaded from. */
  readonly dir: string;
  /** Where the parameters live and the layers run (loadPretrained's opts.device). */
  readonly device: 'cpu' | 'cuda';
  /**
   * 'bfloat16': weight matrices not being trained are held in bfloat16 (loadPretrained's opts.dtype);
   * 'auto' (CUDA only): those stored as BF16 are; else 'float32'.
   */
  readonly dtype: 'float32' | 'bfloat16' | 'auto';
  /** generation_config.json, when the folder has one. */
  readonly generationConfig: Readonly<Record<string, unknown>> | undefined;
  #tokenizer: PretrainedTokenizer | undefined;
  #template: ChatTemplate | undefined;
  #dec: Decoder | undefined;
  #base: Map<string, Param>;
  #layout: SaveLayout;
  #extras: Map<string, StTensor>;
  #lora: LoraState | null = null;
  #step = 0;
  #forwards = 0;
  #frozen = false;
  #last: LastForward | null = null;
  #bridge: VisionLanguageBridge | null = null;
  #visionTrainable = false;
  /** Data parallel: the rank (mixed into the LoRA dropout seed past rank 0) and the flat gradient buffer of the all-reduce. */
  #rank = 0;
  #flatGrads: Float32Array | undefined;
  /** The processor's settings (preprocessor_config.json), for video input. */
  readonly preprocessor: Readonly<Record<string, unknown>> | undefined;

  private constructor(init: {
    config: Record<string, unknown>; spec: DecoderSpec; dir: string; generationConfig?: Record<string, unknown>;
    tokenizer?: PretrainedTokenizer; template?: ChatTemplate; base: Map<string, Param>; layout: SaveLayout;
    extras: Map<string, StTensor>; vlm?: VlmSpec | null; preprocessor?: Record<string, unknown>; bf16?: boolean;
    device?: 'cpu' | 'cuda'; dtype?: 'float32' | 'bfloat16' | 'auto';
  }) {
    this.device = init.device ?? 'cpu';
    this.dtype = init.dtype ?? (init.bf16 ? 'bfloat16' : 'float32');
    this.config = Object.freeze(init.config);
    this.spec = init.spec;
    this.vlm = init.vlm ?? null;
    this.architecture = this.vlm ? this.vlm.architecture : init.spec.architecture;
    this.preprocessor = init.preprocessor ? Object.freeze(init.preprocessor) : undefined;
    this.dir = init.dir;
    this.generationConfig = init.generationConfig ? Object.freeze(init.generationConfig) : undefined;
    this.#tokenizer = init.tokenizer;
    this.#template = init.template;
    this.#base = init.base;
    this.#layout = init.layout;
    this.#extras = init.extras;
    const v = this.vlm;
    this.#dec = new Decoder(init.spec, init.base, v ? { prefix: v.names.text, head: v.names.head } : undefined);
    if (v) {
      this.#bridge = new VisionLanguageBridge(v, this.#dec.compute, (name) => {
        const p = init.base.get(name);
        if (!p) throw new Error(`PretrainedModel: parameter '${name}' is missing`);
        return p;
      });
    }
  }

  /** The token embedding's tensor name. */
  get #embedName(): string {
    return this.vlm ? textName(this.vlm.names, 'model.embed_tokens.weight') : 'model.embed_tokens.weight';
  }

  #isVisionParam(name: string): boolean {
    return this.vlm !== null && name.startsWith(this.vlm.names.vision);
  }

  /** Loads a folder (see loadPretrained). */
  static async load(dir: string, opts: LoadPretrainedOptions = {}): Promise<PretrainedModel> {
    const fn = 'loadPretrained';
    if (typeof dir !== 'string' || dir.length === 0) throw typeError(fn, 'dir', 'a folder path', describe(dir));
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, LOAD_KEYS);
    if (o.device !== undefined && o.device !== 'cpu' && o.device !== 'cuda') throw typeError(fn, 'opts.device', "'cpu' or 'cuda'", describe(o.device));
    if (o.dtype !== undefined && o.dtype !== 'float32' && o.dtype !== 'auto' && o.dtype !== 'bfloat16')
      throw typeError(fn, 'opts.dtype', "'float32', 'auto' (float32 weights, bf16/f16 widened; on CUDA frozen BF16 matrices kept) or 'bfloat16' (frozen matrices held in bfloat16)", describe(o.dtype));
    const device: 'cpu' | 'cuda' = o.device === 'cuda' ? 'cuda' : 'cpu';
    if (device === 'cuda' && !backendInfo().cuda)
      throw new Error(`${fn}: opts.device 'cuda': no usable GPU (${backendInfo().cudaReason ?? 'CUDA is unavailable'}); load on 'cpu'`);
    const bf16 = o.dtype === 'bfloat16';
    const dtype: 'float32' | 'bfloat16' | 'auto' = bf16 ? 'bfloat16' : device === 'cuda' && o.dtype !== 'float32' ? 'auto' : 'float32';
    if (o.adapter !== undefined && (typeof o.adapter !== 'string' || !o.adapter)) throw typeError(fn, 'opts.adapter', 'a PEFT adapter folder path', describe(o.adapter));
    const computeDtype = checkComputeDtype(fn, 'opts.computeDtype', o.computeDtype, device);
    const cfgPath = join(dir, 'config.json');
    if (!existsSync(cfgPath)) throw new CheckpointError(`${cfgPath}: not found (not a Hugging Face model folder?)`);
    const config = readJsonObject(cfgPath);
    let vlm: VlmSpec | null = null;
    let weightLayout: WeightLayout | undefined;
    let preprocessor: Record<string, unknown> | undefined;
    let spec: DecoderSpec;
    if (isVlmConfig(config)) {
      const stored = storedTensorNames(dir);
      vlm = parseVlmConfig(config, cfgPath, (name) => stored.has(name));
      spec = vlm.text;
      const v = vlm;
      weightLayout = {
        expected: expectedVlmTensors(v, expectedTensors(spec)), architecture: v.architecture,
        embedName: textName(v.names, 'model.embed_tokens.weight'), headName: v.names.head,
        extra: (name) => v.vision.useHead && name.startsWith(`${v.names.vision}head.`),
      };
      const ppPath = join(dir, 'preprocessor_config.json');
      if (existsSync(ppPath)) preprocessor = readJsonObject(ppPath);
    } else spec = parseConfig(config, cfgPath);
    const genPath = join(dir, 'generation_config.json');
    const generationConfig = existsSync(genPath) ? readJsonObject(genPath) : undefined;
    const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? PretrainedTokenizer.load(dir) : undefined;
    let template: ChatTemplate | undefined;
    if (tokenizer) {
      const specials: Record<string, unknown> = { ...tokenizer.specialTokens };
      if (tokenizer.config.additional_special_tokens !== undefined) specials.additional_special_tokens = tokenizer.config.additional_special_tokens;
      template = ChatTemplate.load(dir, tokenizer.config, specials);
    }
    const w = readWeights(dir, spec, weightLayout, bf16);
    if (tokenizer && tokenizer.vocabSize > spec.vocab)
      throw new CheckpointError(`${join(dir, 'tokenizer.json')}: the tokenizer has ${tokenizer.vocabSize} ids but config.json vocab_size is ${spec.vocab}`);
    const base = new Map<string, Param>();
    const embedName = weightLayout?.embedName ?? 'model.embed_tokens.weight';
    for (const [name, t] of w.tensors) {
      base.set(name, {
        name, shape: t.shape, value: t.data instanceof Uint16Array ? bf16Tensor(t.data, t.shape) : tensor(t.data, t.shape),
        // The vision tower starts frozen (setVisionTrainable(true) trains it too).
        trainable: !(vlm && name.startsWith(vlm.names.vision)),
        decay: t.shape.length === 2 && name !== embedName, storedDtype: t.dtype, touched: false,
      });
    }
    const model = new PretrainedModel({
      config, spec, dir: resolve(dir), generationConfig, tokenizer, template, base,
      layout: { sourceDir: resolve(dir), files: w.files, index: w.index, otherFiles: snapshotOtherFiles(dir) },
      extras: w.extras, vlm, preprocessor, bf16, device, dtype,
    });
    if (device === 'cuda') model.#placeOnDevice();
    if (o.adapter !== undefined) await model.loadAdapter(o.adapter as string);
    model.#alive(fn).compute.on = computeDtype === 'bfloat16';
    return model;
  }

  #alive(fn: string): Decoder {
    if (!this.#dec) throw new Error(`${fn}: the model was disposed`);
    return this.#dec;
  }

  #trainable(fn: string): void {
    if (this.#frozen) throw new Error(`${fn}: this is a frozen copy (no training)`);
  }

  // ------------------------------------------------------------------ text

  /** The folder's tokenizer (tokenizer.json). */
  get tokenizer(): PretrainedTokenizer {
    if (!this.#tokenizer) throw new Error(`PretrainedModel.tokenizer: ${this.dir} has no tokenizer.json`);
    return this.#tokenizer;
  }

  /** True when the folder has a tokenizer.json. */
  get hasTokenizer(): boolean {
    return this.#tokenizer !== undefined;
  }

  /** The folder's chat template source, if any. */
  get chatTemplate(): string | undefined {
    return this.#template?.source;
  }

  /** Renders messages with the folder's chat template (tokenize the result with addSpecialTokens: false). */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (!this.#template) throw new Error(`applyChatTemplate: ${this.dir} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json "chat_template")`);
    return this.#template.render(messages, opts);
  }

  /** The ids that end a generation: generation_config.json's eos_token_id, else config.json's, else the tokenizer's eos_token. */
  get eosIds(): number[] {
    const g = idList(this.generationConfig?.eos_token_id);
    if (g.length) return g;
    const c = idList(this.config.eos_token_id);
    if (c.length) return c;
    const t = this.#tokenizer?.eosId;
    return t === undefined ? [] : [t];
  }

  // ------------------------------------------------------------------ compute dtype

  /** 'bfloat16' when the weight matrices multiply through bfloat16 copies (loadPretrained's opts.computeDtype), else 'float32'. */
  get computeDtype(): 'float32' | 'bfloat16' {
    return this.#dec?.compute.on ? 'bfloat16' : 'float32';
  }

  /** Switches bf16 compute on ('bfloat16', CPU only) or off ('float32'); the weights themselves are unchanged. */
  setComputeDtype(dtype: 'float32' | 'bfloat16'): void {
    const fn = 'PretrainedModel.setComputeDtype';
    const dec = this.#alive(fn);
    dec.compute.on = checkComputeDtype(fn, 'dtype', dtype, this.device) === 'bfloat16';
    this.#last = null;
  }

  /** Bytes held by the bfloat16 copies of bf16 compute (0 under float32 compute, or before the first forward pass). */
  get computeCopyBytes(): number {
    return this.#dec?.compute.bytes ?? 0;
  }

  // ------------------------------------------------------------------ parameters

  /** Parameter counts: all, and those being trained. */
  get numParams(): number {
    let n = 0;
    for (const p of this.#allParams()) n += p.value.size;
    return n;
  }

  get numTrainable(): number {
    let n = 0;
    for (const p of this.#allParams()) if (p.trainable) n += p.value.size;
    return n;
  }

  /** Floats of AdamW state held (m and v of the trained parameters). */
  get optimizerStateSize(): number {
    let n = 0;
    for (const p of this.#allParams()) n += (p.m?.size ?? 0) + (p.v?.size ?? 0);
    return n;
  }

  *#allParams(): Generator<Param> {
    yield* this.#base.values();
    if (this.#dec) for (const L of this.#dec.linears()) if (L.lora) yield* [L.lora.a, L.lora.b];
  }

  /** Copies of the parameters by Hugging Face name (adapters as <module>.lora_A.weight / lora_B.weight). */
  parameters(): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    for (const p of this.#allParams()) out[p.name] = paramF32(p).slice();
    return out;
  }

  /** Bytes held by the parameters' values (not gradients or optimizer state): 2 per bfloat16 weight, 4 per float32 one. */
  get parameterBytes(): number {
    let n = 0;
    for (const p of this.#allParams()) n += p.value.size * bytesPerElement(p.value.dtype);
    return n;
  }

  /** Copies of the accumulated gradients of the trained parameters (zeros where backward() gave none). */
  gradients(): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    for (const p of this.#allParams()) if (p.trainable) out[p.name] = p.grad ? hostF32(p.grad).slice() : new Float32Array(p.value.size);
    return out;
  }

  /** Overwrites parameters by name (sizes checked); a changed base weight is saved re-rounded to its stored dtype. */
  setParameters(values: Record<string, Float32Array>): void {
    const fn = 'PretrainedModel.setParameters';
    this.#alive(fn);
    if (values === null || typeof values !== 'object') throw typeError(fn, 'values', 'an object of name → Float32Array', describe(values));
    const all = new Map([...this.#allParams()].map((p) => [p.name, p]));
    for (const [name, v] of Object.entries(values)) {
      const p = all.get(name);
      if (!p) throw rangeError(fn, `values['${name}']`, 'the name of a parameter of this model', 'an unknown name');
      float32Vector(fn, `values['${name}']`, v, p.value.size);
    }
    for (const [name, v] of Object.entries(values)) {
      const p = all.get(name)!;
      if (p.trainable) toF32(p);
      setParamF32(p, v);
      p.touched = true;
    }
    this.#dec!.compute.changed();
    this.#last = null;
  }

  /** Names of the parameters being trained. */
  trainableParameters(): string[] {
    return [...this.#allParams()].filter((p) => p.trainable).map((p) => p.name);
  }

  /** Optimizer steps taken. */
  get step(): number {
    return this.#step;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  /** The LoRA settings when adapters are attached. */
  get lora(): Readonly<LoraState> | null {
    return this.#lora ? { ...this.#lora } : null;
  }

  // ------------------------------------------------------------------ LoRA

  /**
   * Attaches LoRA adapters (PEFT's names and scaling alpha / r) to the target
   * linear layers and freezes the base model: only adapters train afterwards.
   */
  addLora(opts: LoraOptions): { targets: string[]; trainableParams: number } {
    const fn = 'addLora';
    const dec = this.#alive(fn);
    this.#trainable(fn);
    if (this.#lora) throw new Error(`${fn}: the model already has LoRA adapters (mergeLora() first to add new ones)`);
    const st = checkLoraOptions(fn, opts, this.spec.layers);
    const { seed, ...state } = st;
    const got = attachLora(dec, state, seed, this.#base.values());
    this.#lora = state;
    this.#placeOnDevice();
    this.#clearOptimizer();
    return { targets: got.map((L) => L.path), trainableParams: this.numTrainable };
  }

  /** Attaches a PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  async loadAdapter(dir: string): Promise<void> {
    const fn = 'loadAdapter';
    const dec = this.#alive(fn);
    if (typeof dir !== 'string' || !dir) throw typeError(fn, 'dir', 'a PEFT adapter folder path', describe(dir));
    if (this.#lora) throw new Error(`${fn}: the model already has LoRA adapters (mergeLora() first)`);
    const { state, tensors } = readAdapter(dir, dec);
    attachLoaded(dec, state, tensors, this.#base.values());
    this.#lora = state;
    this.#placeOnDevice();
    this.#clearOptimizer();
  }

  /** Folds the adapters into the base weights (W += s·B·A) and removes them; every parameter is trainable again. */
  mergeLora(): void {
    const fn = 'mergeLora';
    const dec = this.#alive(fn);
    this.#trainable(fn);
    if (!this.#lora) throw new Error(`${fn}: the model has no LoRA adapters (addLora() or loadAdapter() first)`);
    mergeInto(dec);
    dec.compute.changed();
    this.#lora = null;
    for (const p of this.#base.values()) p.trainable = this.#visionTrainable || !this.#isVisionParam(p.name);
    this.#clearOptimizer();
  }

  /**
   * Trains the vision tower too (true) or keeps it frozen (false, the default
   * after loading). No effect on the base weights while LoRA adapters are attached
   * (they alone train then); takes effect again after mergeLora().
   */
  setVisionTrainable(on: boolean): void {
    const fn = 'PretrainedModel.setVisionTrainable';
    this.#alive(fn);
    this.#trainable(fn);
    if (typeof on !== 'boolean') throw typeError(fn, 'on', 'true or false', describe(on));
    if (!this.vlm) throw new Error(`${fn}: ${this.architecture} has no vision tower`);
    this.#visionTrainable = on;
    if (!this.#lora) for (const p of this.#base.values()) if (this.#isVisionParam(p.name)) p.trainable = on;
    this.#clearOptimizer();
  }

  #clearOptimizer(): void {
    this.#flatGrads = undefined;
    for (const p of this.#allParams()) {
      p.grad = p.m = p.v = undefined;
      // dtype 'bfloat16': a matrix no longer trained goes back to bfloat16 (rounded to nearest even).
      if (this.#holdsBf16(p)) toBf16(p);
    }
    this.#last = null;
  }

  /** A frozen matrix held in bfloat16: every one under dtype 'bfloat16', those stored as BF16 under 'auto' (CUDA). */
  #holdsBf16(p: Param): boolean {
    if (p.trainable || p.shape.length < 2) return false;
    return this.dtype === 'bfloat16' || (this.dtype === 'auto' && p.storedDtype === 'BF16');
  }

  /** device 'cuda': every parameter (adapters included) not yet on the GPU goes there, in the dtype it is held in. */
  #placeOnDevice(): void {
    if (this.device !== 'cuda') return;
    for (const p of this.#allParams()) {
      if (p.value.device === 'cuda') continue;
      if (this.#holdsBf16(p)) toBf16(p);
      p.value = p.value.to('cuda');
    }
  }

  /** Trained parameters held in bfloat16 get their float32 masters (exact widening). */
  #ensureMasters(): void {
    for (const p of this.#allParams()) if (p.trainable && isBf16(p.value)) toF32(p);
  }

  // ------------------------------------------------------------------ inference

  #checkIds(fn: string, arg: string, ids: unknown): Int32Array {
    let out: Int32Array;
    if (ids instanceof Int32Array) out = ids;
    else if (Array.isArray(ids)) {
      ids.forEach((x, i) => {
        if (typeof x !== 'number' || !Number.isSafeInteger(x)) throw typeError(fn, `${arg}[${i}]`, 'an integer token id', describe(x));
      });
      out = Int32Array.from(ids as number[]);
    } else if (ids instanceof Tensor && ids.device === 'cpu' && ids.dtype === 'int32' && ids.shape.length === 1) out = ids.data as Int32Array;
    else throw typeError(fn, arg, 'an Int32Array, a number[] or a 1-D CPU int32 tensor of token ids', describe(ids));
    for (let i = 0; i < out.length; i++)
      if (out[i] < 0 || out[i] >= this.spec.vocab) throw rangeError(fn, `${arg}[${i}]`, `a token id in [0, ${this.spec.vocab})`, `${out[i]}`);
    return out;
  }

  #noVision(fn: string, opts: unknown): void {
    const o = checkOptions(fn, opts);
    for (const k of ['video', 'images', 'pixelValues'])
      if (o[k] !== undefined && o[k] !== null)
        throw typeError(fn, `opts.${k}`, `absent: ${this.architecture} is a text-only model (vision-language checkpoints add a vision tower)`, describe(o[k]));
  }

  /** Next-token logits of every position of one sequence: a CPU float32 tensor [T, vocab]. */
  async logits(ids: Int32Array | number[], opts: LogitsOptions = {}): Promise<Tensor> {
    const fn = 'PretrainedModel.logits';
    const dec = this.#alive(fn);
    checkKnownKeys(fn, 'opts', checkOptions(fn, opts), LOGITS_KEYS);
    if (!this.vlm) this.#noVision(fn, opts);
    const x = this.#checkIds(fn, 'ids', ids);
    if (x.length === 0) throw rangeError(fn, 'ids.length', '>= 1', '0');
    let ids2 = x;
    let o: Record<string, unknown> = checkOptions(fn, opts);
    if (this.vlm && o.video !== undefined && o.video !== null) {
      const v = this.processVideo(o.video, o.fps === undefined ? {} : { fps: o.fps as number });
      ids2 = this.#expandVideoIds(fn, x, v);
      const { video: _v, fps: _f, ...rest } = o;
      o = { ...rest, pixelValues: v.pixelValues };
    } else if (this.vlm && o.images !== undefined && o.images !== null) {
      if (o.pixelValues !== undefined && o.pixelValues !== null) throw typeError(fn, 'opts.pixelValues', 'absent when opts.images is given (one visual input per call)', 'both');
      const p = this.processImages(o.images);
      ids2 = this.#expandImageIds(fn, x, p);
      const { images: _i, ...rest } = o;
      o = { ...rest, pixelValues: p.pixelValues };
    }
    const positions = Int32Array.from(ids2, (_, i) => i);
    const visual = this.vlm ? this.#visualInput(fn, ids2, o) : null;
    const { hN } = dec.forward(ids2, positions, Int32Array.of(0, ids2.length), visual ? { inputEmbeds: visual.embeds, replaced: visual.replaced } : {});
    const lg = dec.logits(hN);
    return lg.device === 'cuda' ? lg.to('cpu') : lg;
  }

  /**
   * A video processed as the family's processor does: pixel values of the
   * sampled frames and the prompt text that stands for them (SmolVLM's
   * per-frame timestamps and image tokens, LLaVA's "<image>" per frame expanded
   * to its visual tokens), to put where the video goes in the chat.
   */
  processVideo(video: unknown, opts: VideoOptions = {}): ProcessedVideo & { prompt: string; tokensPerFrame: number } {
    const fn = 'PretrainedModel.processVideo';
    this.#alive(fn);
    if (!this.vlm) throw new Error(`${fn}: ${this.architecture} is a text-only model`);
    const o = checkOptions(fn, opts);
    const v = processVideo(fn, this.vlm, this.preprocessor as Record<string, unknown> | undefined, video, o.fps === undefined ? {} : { fps: o.fps as number });
    const side = v.pixelValues.shape[2];
    const k = this.#bridge!.tokensPer(side, side);
    let prompt = videoPromptText(this.vlm, v, k);
    if (this.vlm.family === 'llava') prompt = prompt.replaceAll('<image>', '<image>'.repeat(k));
    return { ...v, prompt, tokensPerFrame: k };
  }

  /**
   * Still images processed as the family's image processor does: pixel values
   * of every image's tiles (SmolVLM's split tiles and global image, LLaVA's one
   * crop) and the prompt text that stands for each image, its image tokens expanded.
   */
  processImages(images: unknown): ProcessedImages {
    const fn = 'PretrainedModel.processImages';
    this.#alive(fn);
    if (!this.vlm) throw new Error(`${fn}: ${this.architecture} is a text-only model`);
    return processImages(fn, this.vlm, this.preprocessor as Record<string, unknown> | undefined, images, (side) => this.#bridge!.tokensPer(side, side));
  }

  /** ids with the images' prompts: as given when their image tokens already match, else each image's one image token expanded. */
  #expandImageIds(fn: string, ids: Int32Array, p: ProcessedImages): Int32Array {
    const img = this.vlm!.imageTokenId;
    const at: number[] = [];
    ids.forEach((t, i) => t === img && at.push(i));
    const mids = p.prompts.map((s) => this.tokenizer.encode(s, { addSpecialTokens: false }));
    const need = mids.reduce((a, m) => a + m.filter((t) => t === img).length, 0);
    if (at.length === need) return ids;
    if (at.length !== p.prompts.length)
      throw rangeError(fn, 'ids', `one image token (id ${img}) per image (${p.prompts.length}), or the ${need} of their expanded prompts (processImages().prompts)`, `${at.length}`);
    const out: number[] = [];
    let from = 0;
    at.forEach((pos, i) => {
      out.push(...ids.subarray(from, pos), ...mids[i]);
      from = pos + 1;
    });
    out.push(...ids.subarray(from));
    return Int32Array.from(out);
  }

  /** ids with the video's image tokens: as given when they already match, else the one image token expanded. */
  #expandVideoIds(fn: string, ids: Int32Array, v: ProcessedVideo & { prompt: string; tokensPerFrame: number }): Int32Array {
    const img = this.vlm!.imageTokenId;
    const at: number[] = [];
    ids.forEach((t, i) => t === img && at.push(i));
    const need = v.indices.length * v.tokensPerFrame;
    if (at.length === need) return ids;
    if (at.length !== 1)
      throw rangeError(fn, 'ids', `one image token (id ${img}) where the video goes, or the ${need} of its expanded prompt (processVideo().prompt)`, `${at.length}`);
    const mid = this.tokenizer.encode(v.prompt, { addSpecialTokens: false });
    const out = new Int32Array(ids.length - 1 + mid.length);
    out.set(ids.subarray(0, at[0]));
    out.set(mid, at[0]);
    out.set(ids.subarray(at[0] + 1), at[0] + mid.length);
    return out;
  }

  /** The visual rows of `logits` options ({ pixelValues } or { images } / { video } through the processor). */
  #visualInput(fn: string, ids: Int32Array, opts: unknown): VisualInput | null {
    const o = checkOptions(fn, opts);
    const vlm = this.vlm!;
    const given = ['pixelValues', 'images', 'video'].filter((k) => o[k] !== undefined && o[k] !== null);
    if (given.length > 1) throw typeError(fn, `opts.${given[1]}`, `absent when opts.${given[0]} is given (one visual input per call)`, 'both');
    if (given.length === 0) {
      let n = 0;
      for (const t of ids) if (t === vlm.imageTokenId) n++;
      if (n > 0) throw rangeError(fn, 'ids', `no image token (id ${vlm.imageTokenId}) without pixelValues, images or video`, `${n} of them`);
      return null;
    }
    if (given[0] !== 'pixelValues') throw typeError(fn, `opts.${given[0]}`, 'opts.pixelValues here (images and videos are processed by logits())', describe(o[given[0]]));
    const px = checkPixelValues(fn, 'opts.pixelValues', o.pixelValues, vlm);
    const { features } = this.#bridge!.forward(px.data, px.n, px.H, px.W, false);
    return mergeVisual(fn, ids, vlm, features, this.spec.hidden);
  }

  // ------------------------------------------------------------------ packed batches (the trainer's interface)

  #layoutOf(fn: string, b: unknown): { text: Int32Array; targets: Int32Array; layout: PretrainedLayout; rowText: Int32Array } {
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw typeError(fn, 'batch', 'an object { text, targets?, sequences }', describe(b));
    const batch = b as Record<string, unknown>;
    if (batch.videos !== undefined && batch.videos !== null && !(ArrayBuffer.isView(batch.videos) && (batch.videos as Uint8Array).length === 0))
      throw typeError(fn, 'batch.videos', `absent: ${this.architecture} takes ${this.vlm ? 'processed frames as batch.pixelValues' : 'no video (a text-only model)'}`, describe(batch.videos));
    if (batch.pixelValues !== undefined && batch.pixelValues !== null && !this.vlm)
      throw typeError(fn, 'batch.pixelValues', `absent: ${this.architecture} is a text-only model`, describe(batch.pixelValues));
    if (!(batch.text instanceof Int32Array)) throw typeError(fn, 'batch.text', 'an Int32Array of token ids', describe(batch.text));
    const text = this.#checkIds(fn, 'batch.text', batch.text);
    let targets: Int32Array;
    if (batch.targets !== undefined) {
      targets = int32Vector(fn, 'batch.targets', batch.targets, text.length);
      for (let i = 0; i < targets.length; i++)
        if (targets[i] < -1 || targets[i] >= this.spec.vocab) throw rangeError(fn, `batch.targets[${i}]`, `-1 or in [0, ${this.spec.vocab})`, `${targets[i]}`);
    } else targets = new Int32Array(text.length).fill(-1);
    const seqs = batch.sequences;
    if (!Array.isArray(seqs) || seqs.length === 0) throw typeError(fn, 'batch.sequences', 'a non-empty array of sequences', describe(seqs));
    const cu = [0];
    const positions: number[] = [];
    const segmentStart: number[] = [];
    const rowText: number[] = [];
    const textRow = new Int32Array(text.length).fill(-1);
    seqs.forEach((s, i) => {
      if (!Array.isArray(s)) throw typeError(fn, `batch.sequences[${i}]`, 'an array of segments', describe(s));
      let pos = 0;
      s.forEach((g: unknown, j: number) => {
        const at = `batch.sequences[${i}][${j}]`;
        if (g === null || typeof g !== 'object') throw typeError(fn, at, '{ text: [start, length] }', describe(g));
        const seg = g as Record<string, unknown>;
        if ('video' in seg) throw typeError(fn, at, `a text segment: ${this.architecture} is a text-only model`, 'a video segment');
        const t = seg.text;
        if (!Array.isArray(t) || t.length !== 2 || !t.every((x) => Number.isSafeInteger(x) && x >= 0))
          throw typeError(fn, `${at}.text`, '[start, length] (non-negative integers)', describe(t));
        if (t[0] + t[1] > text.length) throw rangeError(fn, `${at}.text`, `a span inside the text of length ${text.length}`, `[${t[0]}, ${t[1]}]`);
        segmentStart.push(rowText.length);
        if (batch.targets === undefined) for (let k = 0; k + 1 < t[1]; k++) targets[t[0] + k] = text[t[0] + k + 1];
        for (let k = 0; k < t[1]; k++) {
          textRow[t[0] + k] = rowText.length;
          rowText.push(t[0] + k);
          positions.push(pos++);
        }
      });
      cu.push(rowText.length);
    });
    if (rowText.length === 0) throw rangeError(fn, 'batch.sequences', 'at least one token', '0');
    const layout: PretrainedLayout = {
      cuSeqlens: Int32Array.from(cu), positions: Int32Array.from(positions), segmentStart: Int32Array.from(segmentStart), textRow, rows: rowText.length,
    };
    return { text, targets, layout, rowText: Int32Array.from(rowText) };
  }

  /**
   * Forward pass over a packed text batch: the mean LM loss over the targets,
   * optionally the hidden states of `tapRows` after `tapLayer` layers and the
   * per-token log-probs. Keeps the activations for backward() unless forBackward is false.
   */
  async forward(batch: PretrainedBatch | VideoLMBatch, opts: PretrainedForwardOptions = {}): Promise<PretrainedForwardResult> {
    const fn = 'PretrainedModel.forward';
    const dec = this.#alive(fn);
    const o = checkOptions(fn, opts);
    const { text, targets, layout, rowText } = this.#layoutOf(fn, batch);
    const L = this.spec.layers;
    let tapRows: Int32Array | undefined;
    let tapLayer: number | undefined;
    if (o.tapRows !== undefined) {
      tapRows = int32Vector(fn, 'opts.tapRows', o.tapRows);
      for (let i = 0; i < tapRows.length; i++) if (tapRows[i] < 0 || tapRows[i] >= layout.rows) throw rangeError(fn, `opts.tapRows[${i}]`, `a row in [0, ${layout.rows})`, `${tapRows[i]}`);
      tapLayer = checkNumber(fn, 'opts.tapLayer', o.tapLayer, Math.floor(L / 2), { integer: true, min: 0, max: L });
    }
    const wantLp = checkBoolean(fn, 'opts.logprobs', o.logprobs, false);
    const forBackward = checkBoolean(fn, 'opts.forBackward', o.forBackward, true);
    if (forBackward) {
      this.#trainable(fn);
      this.#ensureMasters();
    }
    const ids = Int32Array.from(rowText, (t) => text[t]);
    let visual: LastForward['visual'] = null;
    let vis: VisualInput | null = null;
    const px = (batch as PretrainedBatch).pixelValues;
    if (this.vlm && px !== undefined && px !== null) {
      const p = checkPixelValues(fn, 'batch.pixelValues', px, this.vlm);
      const bridge = this.#bridge!;
      const grads = forBackward && (bridge.towerTrainable() || bridge.connectorParams().some((q) => q.trainable));
      const r = bridge.forward(p.data, p.n, p.H, p.W, grads);
      vis = mergeVisual(fn, ids, this.vlm, r.features, this.spec.hidden);
      if (r.saved) visual = { saved: r.saved, rows: vis.rows };
    } else if (this.vlm) this.#visualInput(fn, ids, {});
    const { hN, saved, tap } = dec.forward(ids, layout.positions, layout.cuSeqlens, {
      train: forBackward, tapLayer, tapRows, dropoutSeed: ((this.#step * 1_000_003 + this.#forwards++) ^ Math.imul(this.#rank, 0x9e3779b1)) >>> 0,
      ...(vis ? { inputEmbeds: vis.embeds, replaced: vis.replaced } : {}),
    });
    const sel: number[] = [];
    const selT: number[] = [];
    const textOf: number[] = [];
    rowText.forEach((t, r) => {
      if (targets[t] >= 0) {
        sel.push(r);
        selT.push(targets[t]);
        textOf.push(t);
      }
    });
    const { logprobs, state } = dec.headLogprobs(hN, Int32Array.from(sel), Int32Array.from(selT), forBackward);
    let sum = 0;
    for (let i = 0; i < logprobs.length; i++) sum += logprobs[i];
    const count = logprobs.length;
    const tokenLogprobs = new Float32Array(wantLp ? text.length : 0);
    if (wantLp) textOf.forEach((t, i) => (tokenLogprobs[t] = logprobs[i]));
    this.#last = forBackward
      ? { saved, head: state, T: layout.rows, textOf: Int32Array.from(textOf), count, nText: text.length, tapCount: tapRows?.length ?? 0, visual }
      : null;
    return { loss: count ? -sum / count : 0, count, tap, tokenLogprobs, layout };
  }

  /** Backward of the last forward() into the gradients of the trained parameters. */
  async backward(opts: PretrainedBackwardOptions = {}): Promise<void> {
    const fn = 'PretrainedModel.backward';
    const dec = this.#alive(fn);
    this.#trainable(fn);
    const o = checkOptions(fn, opts);
    const gradLoss = checkNumber(fn, 'opts.gradLoss', o.gradLoss, 1);
    const accumulate = checkBoolean(fn, 'opts.accumulate', o.accumulate, false);
    const last = this.#last;
    if (!last || !last.saved) throw new Error(`${fn}: call forward() (with forBackward) first`);
    const dTap = o.dTap === undefined ? undefined : float32Vector(fn, 'opts.dTap', o.dTap, last.tapCount * this.spec.hidden);
    const dLp = o.dLogprobs === undefined ? undefined : float32Vector(fn, 'opts.dLogprobs', o.dLogprobs, last.nText);
    // The last forward's saved activations go back to the output pool as backward uses them:
    // consumed now, so that a second call (or one after a throw) cannot read them.
    this.#last = null;
    if (!accumulate)
      for (const p of this.#allParams()) {
        recycleOutput(p.grad);
        p.grad = undefined;
      }
    const n = last.count;
    const d = new Float32Array(n);
    const lm = n > 0 ? -gradLoss / n : 0;
    for (let i = 0; i < n; i++) d[i] = lm + (dLp ? dLp[last.textOf[i]] : 0);
    const dHN = dec.headBackward(last.head, d, last.T);
    const dIn = dec.backward(last.saved, dHN, dTap, last.visual !== null);
    if (last.visual && dIn) {
      const h = this.spec.hidden;
      const rows = last.visual.rows;
      if (dIn.device === 'cuda') this.#bridge!.backward(last.visual.saved, gatherRows(dIn, rows));
      else {
        const g = dIn.data as Float32Array;
        const dF = new Float32Array(rows.length * h);
        rows.forEach((r, i) => dF.set(g.subarray(r * h, (r + 1) * h), i * h));
        this.#bridge!.backward(last.visual.saved, tensor(dF, [rows.length, h]));
      }
    }
  }

  /** One AdamW step (global-norm clipping, optional warmup + cosine schedule) on the accumulated gradients. */
  async stepOptimizer(opts: PretrainedStepOptions = {}): Promise<{ gradNorm: number; lr: number; step: number }> {
    const fn = 'PretrainedModel.stepOptimizer';
    this.#alive(fn);
    this.#trainable(fn);
    const o = checkOptions(fn, opts);
    const lr = checkNumber(fn, 'opts.lr', o.lr, 1e-3, { min: 0 });
    const minLr = checkNumber(fn, 'opts.minLr', o.minLr, 0, { min: 0 });
    const warmupSteps = checkNumber(fn, 'opts.warmupSteps', o.warmupSteps, 0, { integer: true, min: 0 });
    const totalSteps = checkNumber(fn, 'opts.totalSteps', o.totalSteps, 0, { integer: true, min: 0 });
    const beta1 = checkNumber(fn, 'opts.beta1', o.beta1, 0.9, { min: 0, max: 0.999999 });
    const beta2 = checkNumber(fn, 'opts.beta2', o.beta2, 0.95, { min: 0, max: 0.999999 });
    const eps = checkNumber(fn, 'opts.eps', o.eps, 1e-8, { gt: 0 });
    const weightDecay = checkNumber(fn, 'opts.weightDecay', o.weightDecay, 0.1, { min: 0 });
    const maxGradNorm = checkNumber(fn, 'opts.maxGradNorm', o.maxGradNorm, 1);
    const gradScale = checkNumber(fn, 'opts.gradScale', o.gradScale, 1, { gt: 0 });
    this.#ensureMasters();
    const params = [...this.#allParams()].filter((p) => p.trainable);
    for (const p of params) if (!p.grad) p.grad = zerosOn([...p.shape], this.device);
    const norm = gradNorm(params.map((p) => p.grad!)) * gradScale;
    const clip = maxGradNorm > 0 && norm > maxGradNorm ? maxGradNorm / (norm + 1e-6) : 1;
    const stepLr = totalSteps > 0 ? lrAt({ baseLr: lr, minLr, warmupSteps, totalSteps }, this.#step) : lr;
    for (const p of params) {
      p.m ??= zerosOn([...p.shape], this.device);
      p.v ??= zerosOn([...p.shape], this.device);
      adamw(p.value, p.grad!, p.m, p.v, {
        lr: stepLr, beta1, beta2, eps, weightDecay: p.decay ? weightDecay : 0, step: this.#step + 1, gradScale: gradScale * clip,
      });
      p.touched = true;
    }
    this.#dec?.compute.changed(); // in place: the bf16 compute copies are stale
    this.#step++;
    this.#forwards = 0; // dropout masks depend on (step, forward index within the step): resumable
    return { gradNorm: norm, lr: stepLr, step: this.#step };
  }

  /**
   * Data-parallel training (vp.distributedInfo()): sums the trained
   * parameters' gradients over the ranks in place, in one all-reduce of a flat
   * buffer (lib/pretrained/data-parallel.ts). A no-op outside a distributed launch.
   */
  async allReduceGradients(): Promise<void> {
    const fn = 'PretrainedModel.allReduceGradients';
    this.#alive(fn);
    this.#trainable(fn);
    if (!isDistributed()) return;
    this.#flatGrads = await allReduceParamGradients([...this.#allParams()].filter((p) => p.trainable), this.#flatGrads);
  }

  /**
   * Copies rank `root`'s trained parameters, AdamW state and step to every
   * rank (and its frozen weights where a rank's differ), so that all ranks
   * start a data-parallel stage from the same state; throws on every rank
   * when they hold different models. A no-op outside a distributed launch.
   */
  async broadcastState(root = 0): Promise<void> {
    const fn = 'PretrainedModel.broadcastState';
    this.#alive(fn);
    if (!isDistributed()) return;
    this.#ensureMasters();
    this.#step = await broadcastParamState(fn, [...this.#allParams()], this.#step, root);
    this.#rank = distributedInfo().rank;
    this.#dec!.compute.changed();
    this.#forwards = 0;
    this.#last = null;
  }

  /** forward + backward over each batch (gradients accumulated, losses averaged), then one AdamW step. */
  async trainStep(batches: PretrainedBatch | PretrainedBatch[], opts: PretrainedStepOptions = {}): Promise<{ loss: number; count: number; gradNorm: number; lr: number; step: number }> {
    const list = Array.isArray(batches) ? batches : [batches];
    if (list.length === 0) throw rangeError('PretrainedModel.trainStep', 'batches', 'at least one batch', '[]');
    let loss = 0, count = 0;
    for (let i = 0; i < list.length; i++) {
      const r = await this.forward(list[i]);
      loss += r.loss / list.length;
      count += r.count;
      await this.backward({ gradLoss: 1 / list.length, accumulate: i > 0 });
    }
    const st = await this.stepOptimizer(opts);
    return { loss, count, ...st };
  }

  /** Per-token log-probs of every text token's target ([text.length]; 0 where no target). */
  async sequenceLogprobs(batch: PretrainedBatch | VideoLMBatch): Promise<Float32Array> {
    return (await this.forward(batch, { logprobs: true, forBackward: false })).tokenLogprobs;
  }

  /** Generation options (sequences: the batch's count, for opts.streams), checked. */
  #genOpts(fn: string, opts: unknown, sequences: number): GenOptions & { onToken?: OnToken } {
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, GENERATE_BATCH_KEYS);
    let eos: number[];
    if (o.eosId === undefined) eos = this.eosIds;
    else if (typeof o.eosId === 'number') eos = o.eosId === -1 ? [] : [checkNumber(fn, 'opts.eosId', o.eosId, 0, { integer: true, min: 0, max: this.spec.vocab - 1 })];
    else if (Array.isArray(o.eosId)) eos = o.eosId.map((x, i) => checkNumber(fn, `opts.eosId[${i}]`, x, 0, { integer: true, min: 0, max: this.spec.vocab - 1 }));
    else throw typeError(fn, 'opts.eosId', 'a token id, a list of them, or -1', describe(o.eosId));
    const onToken = checkOnToken(fn, o.onToken);
    return {
      maxTokens: checkNumber(fn, 'opts.maxTokens', o.maxTokens, 32, { integer: true, min: 0, max: 1 << 20 }),
      temperature: checkNumber(fn, 'opts.temperature', o.temperature, 0, { min: 0 }),
      topP: checkNumber(fn, 'opts.topP', o.topP, 1, { gt: 0, max: 1 }),
      seed: checkNumber(fn, 'opts.seed', o.seed, 0, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }),
      eos: new Set(eos),
      ...(o.streams === undefined ? {} : { streams: checkStreams(fn, o.streams, sequences) }),
      ...(onToken ? { onToken } : {}),
    };
  }

  /** What generateBatch and generateStream run: the prompts of a batch, checked, with the options and the visual prefill. */
  #generation(fn: string, prompts: unknown, opts: unknown) {
    const dec = this.#alive(fn);
    const { text, layout, rowText } = this.#layoutOf(fn, prompts);
    const list: Int32Array[] = [];
    for (let b = 0; b + 1 < layout.cuSeqlens.length; b++) {
      const ids = Int32Array.from(rowText.subarray(layout.cuSeqlens[b], layout.cuSeqlens[b + 1]), (t) => text[t]);
      if (ids.length === 0) throw rangeError(fn, `prompts.sequences[${b}]`, 'at least one token', '0');
      list.push(ids);
    }
    const g = this.#genOpts(fn, opts, list.length);
    this.#last = null;
    let prefill: { inputEmbeds: Tensor; replaced: Uint8Array } | undefined;
    if (this.vlm) {
      // The prompts' image tokens, in packed order, take the visual tokens of batch.pixelValues.
      const all = Int32Array.from(rowText, (t) => text[t]);
      const px = (prompts as PretrainedBatch).pixelValues;
      const v = this.#visualInput(fn, all, px === undefined ? {} : { pixelValues: px });
      if (v) prefill = { inputEmbeds: v.embeds, replaced: v.replaced };
    }
    return { dec, list, g, prefill, banned: this.vlm ? [this.vlm.imageTokenId] : [] };
  }

  /**
   * Continues every sequence of a batch of prompts (KV cache). Returns the new
   * token ids per sequence; opts.onToken sees each as it is sampled.
   */
  async generateBatch(prompts: PretrainedBatch | VideoLMBatch, opts: TextGenerateOptions = {}): Promise<Int32Array[]> {
    const fn = 'PretrainedModel.generateBatch';
    const { dec, list, g, prefill, banned } = this.#generation(fn, prompts, opts);
    const onToken = g.onToken;
    if (!onToken) return generateTokens(dec, list, g, prefill, banned);
    const guard = guardOnToken(onToken);
    const out = generateTokens(dec, list, g, prefill, banned, (sampled: StepTokens) => {
      for (const { sequence, token } of sampled) guard.call(sequence, token);
    });
    guard.rethrow();
    return out;
  }

  /** The one-sequence batch of generate() and generateStream(), and whether it returns text (see generate). */
  #promptBatch(fn: string, video: unknown, prompt: unknown, o: Record<string, unknown>): { batch: PretrainedBatch; asText: boolean } {
    if (video !== null && video !== undefined && !this.vlm) throw typeError(fn, 'video', `null: ${this.architecture} is a text-only model`, describe(video));
    // A vision-language model: the video's prompt text goes where "<video>" (or a lone "<image>") is, else before the prompt.
    const v = video !== null && video !== undefined ? this.processVideo(video, o.fps === undefined ? {} : { fps: o.fps as number }) : null;
    const place = (s: string): string => {
      if (!v) return s;
      if (s.includes('<video>')) return s.replace('<video>', v.prompt);
      if (this.vlm!.family === 'llava' && s.split('<image>').length === 2) return s.replace('<image>', v.prompt);
      return v.prompt + s;
    };
    let ids: Int32Array;
    let asText = true;
    if (typeof prompt === 'string') ids = this.tokenizer.encode(place(prompt));
    else if (Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] === 'object') {
      const msgs = (prompt as unknown as ChatMessage[]).map((m, i) => (v && i === prompt.length - 1 && typeof m.content === 'string' && m.role === 'user' ? { ...m, content: place(m.content) } : m));
      ids = this.tokenizer.encode(this.applyChatTemplate(msgs, { addGenerationPrompt: true }), { addSpecialTokens: false });
    } else {
      ids = this.#checkIds(fn, 'prompt', prompt);
      if (v) ids = this.#expandVideoIds(fn, ids, v);
      asText = false;
    }
    if (ids.length === 0) throw rangeError(fn, 'prompt', 'at least one token', 'an empty prompt');
    return { batch: { text: ids, sequences: [[{ text: [0, ids.length] }]], ...(v ? { pixelValues: v.pixelValues } : {}) }, asText };
  }

  /**
   * Generates a continuation (as VideoLM.generate; `video` null for a text-only
   * model). A string prompt is tokenized with the tokenizer's special tokens; a
   * list of chat messages goes through the chat template with the generation
   * prompt. Strings and messages return the decoded text (special tokens
   * skipped); token ids return ids.
   */
  async generate(video: unknown, prompt: string | Int32Array | number[] | readonly ChatMessage[], opts: PretrainedGenerateOptions = {}): Promise<string | Int32Array> {
    const fn = 'PretrainedModel.generate';
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, GENERATE_KEYS);
    const { batch, asText } = this.#promptBatch(fn, video, prompt, o);
    const { fps: _fps, ...gen } = o;
    const [out] = await this.generateBatch(batch, gen);
    return asText ? this.tokenizer.decode(out, { skipSpecialTokens: true }) : out;
  }

  /**
   * generate() as an async iterator (as VideoLM's): yields each piece of text
   * (a string or chat-message prompt) or each token id (a token-id prompt) as
   * it is sampled; the pieces join to what generate() returns for the same
   * arguments. Each step runs when the loop asks for the next piece, so
   * leaving the loop early stops generation there. Text pieces hold back
   * trailing whitespace and incomplete UTF-8 (U+FFFD) until the next token
   * settles them. The model's weights are read at every step: change them
   * (training, setParameters) only after the stream ends; disposing the model
   * ends the stream with the disposed error.
   */
  generateStream(video: unknown, prompt: string | readonly ChatMessage[], opts?: Omit<PretrainedGenerateOptions, 'onToken'>): AsyncGenerator<string, void, undefined>;
  generateStream(video: unknown, prompt: Int32Array | number[], opts?: Omit<PretrainedGenerateOptions, 'onToken'>): AsyncGenerator<number, void, undefined>;
  async *generateStream(video: unknown, prompt: string | Int32Array | number[] | readonly ChatMessage[], opts: Omit<PretrainedGenerateOptions, 'onToken'> = {}): AsyncGenerator<string | number, void, undefined> {
    const fn = 'PretrainedModel.generateStream';
    const o = checkOptions(fn, opts);
    if (o.onToken !== undefined) throw typeError(fn, 'opts.onToken', 'unset (the stream delivers the tokens)', describe(o.onToken));
    checkKnownKeys(fn, 'opts', o, STREAM_KEYS);
    const { batch, asText } = this.#promptBatch(fn, video, prompt, o);
    const { fps: _fps, ...gen } = o;
    const { dec, list, g, prefill, banned } = this.#generation(fn, batch, gen);
    const steps = generateSteps(dec, list, g, prefill, banned);
    const ids: number[] = [];
    let sent = '';
    try {
      for (;;) {
        this.#alive(fn);
        const r = steps.next();
        if (r.done) break;
        for (const { token } of r.value) {
          ids.push(token);
          if (!asText) {
            yield token;
            continue;
          }
          const settled = this.tokenizer.decode(ids, { skipSpecialTokens: true }).replace(/[\s\uFFFD]+$/u, '');
          if (settled.length > sent.length && settled.startsWith(sent)) {
            const piece = settled.slice(sent.length);
            sent = settled;
            yield piece;
          }
        }
      }
    } finally {
      steps.return(undefined as never); // a loop left early: free the steps' cache
    }
    if (asText) {
      const text = this.tokenizer.decode(ids, { skipSpecialTokens: true });
      if (text.length > sent.length && text.startsWith(sent)) yield text.slice(sent.length);
    }
  }

  // ------------------------------------------------------------------ copies and files

  /** A frozen copy (the RL stage's reference model): same weights and adapters, no training. */
  async clone(): Promise<PretrainedModel> {
    const fn = 'PretrainedModel.clone';
    const dec = this.#alive(fn);
    const base = new Map<string, Param>();
    for (const [name, p] of this.#base) base.set(name, { ...p, value: copyValue(p), grad: undefined, m: undefined, v: undefined, trainable: false });
    const copy = new PretrainedModel({
      config: { ...this.config }, spec: this.spec, dir: this.dir, generationConfig: this.generationConfig ? { ...this.generationConfig } : undefined,
      tokenizer: this.#tokenizer, template: this.#template, base, layout: this.#layout, extras: this.#extras,
      vlm: this.vlm, preprocessor: this.preprocessor ? { ...this.preprocessor } : undefined, bf16: this.dtype === 'bfloat16',
      device: this.device, dtype: this.dtype,
    });
    const cd = copy.#dec!;
    const mine = [...dec.linears()];
    [...cd.linears()].forEach((L, i) => {
      const lo = mine[i].lora;
      if (!lo) return;
      const cp = (p: Param): Param => ({ ...p, value: copyValue(p), grad: undefined, m: undefined, v: undefined, trainable: false });
      L.lora = { ...lo, a: cp(lo.a), b: cp(lo.b) };
    });
    copy.#lora = this.#lora ? { ...this.#lora } : null;
    cd.compute.on = dec.compute.on;
    copy.#frozen = true;
    return copy;
  }

  /** Copies another model's parameters, adapters, AdamW state and step into this one (same architecture and shapes). */
  async copyStateFrom(other: PretrainedModel): Promise<void> {
    const fn = 'PretrainedModel.copyStateFrom';
    if (!(other instanceof PretrainedModel)) throw typeError(fn, 'other', 'a PretrainedModel', describe(other));
    this.#alive(fn);
    other.#alive(fn);
    if (other.device !== this.device) throw typeError(fn, 'other', `a model on ${this.device} like this one`, `a model on ${other.device}`);
    const mine = [...this.#allParams()];
    const theirs = new Map([...other.#allParams()].map((p) => [p.name, p]));
    if (mine.length !== theirs.size) throw rangeError(fn, 'other', `a model with ${mine.length} parameter tensors (same adapters)`, `${theirs.size}`);
    for (const p of mine) {
      const q = theirs.get(p.name);
      if (!q || q.value.size !== p.value.size) throw rangeError(fn, 'other', `a parameter '${p.name}' of ${p.value.size} values`, q ? `${q.value.size}` : 'none');
    }
    for (const p of mine) {
      const q = theirs.get(p.name)!;
      if (p.trainable && !isBf16(q.value)) toF32(p); // a trained master's values are copied whole
      setParamF32(p, paramF32(q));
      const dup = (t: Tensor) => (t.device === 'cuda' ? t.to('cuda') : tensor((t.data as Float32Array).slice(), [...p.shape]));
      p.m = q.m ? dup(q.m) : undefined;
      p.v = q.v ? dup(q.v) : undefined;
      p.touched = p.touched || q.touched;
    }
    this.#dec!.compute.changed();
    this.#step = other.#step;
    this.#forwards = 0;
    this.#last = null;
  }

  /**
   * Saves in the Hugging Face layout the model was loaded from (same files,
   * tensor names, order and stored dtypes; other files copied). Adapters that
   * are attached are merged into the written weights (the model in memory
   * keeps them); saveAdapter() writes them alone.
   */
  async save(dir: string): Promise<void> {
    const fn = 'PretrainedModel.save';
    const dec = this.#alive(fn);
    if (typeof dir !== 'string' || !dir) throw typeError(fn, 'dir', 'a folder path', describe(dir));
    const merged = new Map<string, Float32Array>();
    for (const L of dec.linears()) if (L.lora) merged.set(L.weight.name, mergedWeight(L));
    writeHfFolder(dir, this.#layout, (name) => this.#tensorToSave(name, merged));
  }

  /** What save() writes under a tensor name of the source layout (merged: weights with their adapters folded in). */
  #tensorToSave(name: string, merged: Map<string, Float32Array> | null): { f32: Float32Array; dtype: StDType; shape: number[] } | StTensor {
    const p = this.#base.get(name);
    const m = merged?.get(name);
    // An unmerged bfloat16 weight stored as BF16: its own bytes.
    if (p && !m && isBf16(p.value) && p.storedDtype === 'BF16') return { dtype: 'BF16', shape: [...p.shape], data: hostValue(p).data as Uint16Array };
    if (p) return { f32: m ?? paramF32(p), dtype: p.storedDtype, shape: p.shape };
    if (name === (this.vlm ? this.vlm.names.head : 'lm_head.weight') && this.spec.tied) {
      // A tied checkpoint that also stored the head: write the (possibly trained) embedding under it.
      const e = this.#base.get(this.#embedName)!;
      return { f32: paramF32(e), dtype: this.#extras.get(name)!.dtype, shape: e.shape };
    }
    return this.#extras.get(name)!;
  }

  /** Saves the LoRA adapters alone in PEFT's layout (adapter_config.json + adapter_model.safetensors). */
  async saveAdapter(dir: string): Promise<void> {
    const fn = 'PretrainedModel.saveAdapter';
    const dec = this.#alive(fn);
    if (typeof dir !== 'string' || !dir) throw typeError(fn, 'dir', 'a folder path', describe(dir));
    if (!this.#lora) throw new Error(`${fn}: the model has no LoRA adapters (addLora() first)`);
    let same = false;
    try {
      same = realpathSync(dir) === realpathSync(this.dir);
    } catch {
      same = false;
    }
    if (same) throw new Error(`${fn}: ${dir} is the base model's folder; save the adapter to its own folder`);
    const name = typeof this.config._name_or_path === 'string' && this.config._name_or_path ? this.config._name_or_path : this.dir;
    writeAdapter(dir, dec, this.#lora, name);
  }

  /**
   * A training checkpoint (what vp.Trainer writes): the base weights in the
   * Hugging Face layout (not merged), the adapters in `adapter/` (PEFT layout)
   * when attached, and optimizer.safetensors: AdamW m and v of the trained
   * parameters, the float32 value of every base weight the Hugging Face files
   * cannot give back as it is held (a trained weight whose stored dtype is
   * bf16/f16; a float32 master of a matrix loading would hold in bfloat16),
   * and in its metadata the step, the dtype and whether the vision tower trains.
   * PretrainedModel.loadCheckpoint reads it back as it was.
   */
  async saveCheckpoint(dir: string): Promise<void> {
    const fn = 'PretrainedModel.saveCheckpoint';
    const dec = this.#alive(fn);
    if (typeof dir !== 'string' || !dir) throw typeError(fn, 'dir', 'a folder path', describe(dir));
    writeHfFolder(dir, this.#layout, (name) => this.#tensorToSave(name, null));
    if (this.#lora) writeAdapter(join(dir, 'adapter'), dec, this.#lora, this.dir);
    const st: Record<string, StTensor> = {};
    for (const p of this.#allParams()) {
      if (!p.m || !p.v) continue;
      st[`m.${p.name}`] = { dtype: 'F32', shape: [...p.shape], data: hostF32(p.m) };
      st[`v.${p.name}`] = { dtype: 'F32', shape: [...p.shape], data: hostF32(p.v) };
    }
    for (const p of this.#base.values()) {
      if (isBf16(p.value)) continue;
      // A float32 master of a matrix that loading would hold in bfloat16, or values its stored dtype would round.
      const roundedAtLoad = p.shape.length >= 2 && (this.dtype === 'bfloat16' || (this.dtype === 'auto' && p.storedDtype === 'BF16'));
      const x = hostF32(p.value);
      if (roundedAtLoad || !reloadsExactly(x, p.storedDtype)) st[`w.${p.name}`] = { dtype: 'F32', shape: [...p.shape], data: x };
    }
    writeSafetensors(join(dir, OPTIMIZER_FILE), st, {
      step: String(this.#step), dtype: this.dtype, ...(this.#visionTrainable ? { vision_trainable: 'true' } : {}),
      ...(dec.compute.on ? { compute_dtype: 'bfloat16' } : {}),
    });
  }

  /**
   * Loads a folder written by saveCheckpoint (weights, adapters, float32
   * masters, optimizer state, step) on `opts.device`, in the dtype it was saved
   * from unless `opts.dtype` says otherwise.
   */
  static async loadCheckpoint(dir: string, opts: Pick<LoadPretrainedOptions, 'device' | 'dtype' | 'computeDtype'> = {}): Promise<PretrainedModel> {
    const fn = 'PretrainedModel.loadCheckpoint';
    if (typeof dir !== 'string' || !dir) throw typeError(fn, 'dir', 'a checkpoint folder path', describe(dir));
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, ['device', 'dtype', 'computeDtype']);
    const path = join(dir, OPTIMIZER_FILE);
    const st = existsSync(path) ? readSafetensors(path) : undefined;
    const saved = st?.metadata.dtype;
    if (saved !== undefined && saved !== 'float32' && saved !== 'bfloat16' && saved !== 'auto')
      throw new CheckpointError(`${path}: metadata dtype must be 'float32', 'bfloat16' or 'auto', got ${JSON.stringify(saved)}`);
    const adapter = join(dir, 'adapter');
    const dtype = (o.dtype as LoadPretrainedOptions['dtype']) ?? (saved as LoadPretrainedOptions['dtype']);
    const savedCompute = st?.metadata.compute_dtype;
    if (savedCompute !== undefined && savedCompute !== 'bfloat16')
      throw new CheckpointError(`${path}: metadata compute_dtype must be 'bfloat16' when present, got ${JSON.stringify(savedCompute)}`);
    const computeDtype = (o.computeDtype as LoadPretrainedOptions['computeDtype']) ?? (savedCompute as LoadPretrainedOptions['computeDtype']);
    const m = await PretrainedModel.load(dir, {
      ...(o.device ? { device: o.device as LoadPretrainedOptions['device'] } : {}), ...(dtype ? { dtype } : {}),
      ...(computeDtype ? { computeDtype } : {}),
      ...(existsSync(join(adapter, 'adapter_config.json')) ? { adapter } : {}),
    });
    if (!st) return m;
    if (st.metadata.vision_trainable === 'true') {
      if (!m.vlm) throw new CheckpointError(`${path}: metadata vision_trainable is set but ${m.architecture} has no vision tower`);
      m.setVisionTrainable(true);
    }
    const params = new Map([...m.#allParams()].map((p) => [p.name, p]));
    for (const name of st.order) {
      const t = st.tensors[name];
      const p = params.get(name.slice(2));
      const ok = p && (name.startsWith('w.') ? m.#base.get(p.name) === p : /^[mv]\./.test(name) && p.trainable);
      if (!ok) throw new CheckpointError(`${path}: tensor '${name}' is not the optimizer state (m., v.) of a trained parameter or the float32 value (w.) of a weight of this model`);
      if (t.dtype !== 'F32' || t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
        throw new CheckpointError(`${path}: tensor '${name}': ${t.dtype} [${t.shape.join(', ')}], expected F32 [${p.shape.join(', ')}]`);
    }
    for (const name of st.order) {
      const p = params.get(name.slice(2))!;
      const host = tensor(Float32Array.from(st.tensors[name].data as Float32Array), [...p.shape]);
      const v = m.device === 'cuda' ? host.to('cuda') : host;
      if (name[0] === 'w') {
        if (p.value.device === 'cuda') p.value.dispose();
        p.value = v;
      } else if (name[0] === 'm') p.m = v;
      else p.v = v;
    }
    const step = Number(st.metadata.step ?? '0');
    if (!Number.isSafeInteger(step) || step < 0) throw new CheckpointError(`${path}: metadata step must be a non-negative integer, got ${JSON.stringify(st.metadata.step)}`);
    m.#step = step;
    return m;
  }

  /** Frees the weights; the model cannot be used afterwards (a second call does nothing). */
  dispose(): void {
    if (this.device === 'cuda') for (const p of this.#allParams()) for (const t of [p.value, p.grad, p.m, p.v]) t?.dispose();
    this.#dec = undefined;
    this.#base = new Map();
    this.#last = null;
  }

  /** `using model = await vp.loadPretrained(dir)`: disposed at the end of the scope. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * `await using model = ...`: as Symbol.dispose. The model's calls run on the
   * calling thread, so none is left running; an open generateStream ends with
   * the disposed error at its next step.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/** True when float32 values stored as `dtype` read back bit for bit. */
function reloadsExactly(x: Float32Array, dtype: StDType): boolean {
  if (dtype === 'F32' || dtype === 'F64') return true;
  if (dtype !== 'BF16' && dtype !== 'F16') return false;
  const back = toFloat32({ dtype, shape: [x.length], data: fromFloat32(x, dtype) });
  const a = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const b = new Uint32Array(back.buffer, back.byteOffset, back.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Loads a Hugging Face folder (config.json, safetensors weights, tokenizer.json,
 * chat template) as a PretrainedModel. Nothing is downloaded.
 */
export function loadPretrained(dir: string, opts: LoadPretrainedOptions = {}): Promise<PretrainedModel> {
  return PretrainedModel.load(dir, opts);
}

/** opts.computeDtype: 'float32' (default) or 'bfloat16', the latter on the CPU only. */
function checkComputeDtype(fn: string, arg: string, v: unknown, device: 'cpu' | 'cuda'): 'float32' | 'bfloat16' {
  if (v === undefined || v === 'float32') return 'float32';
  if (v !== 'bfloat16') throw typeError(fn, arg, "'float32' or 'bfloat16'", describe(v));
  if (device === 'cuda')
    throw typeError(fn, arg, "'float32' on CUDA (bf16 compute is a CPU option; on CUDA load with dtype 'auto' or 'bfloat16' to multiply frozen matrices in bfloat16)", "'bfloat16'");
  return 'bfloat16';
}
