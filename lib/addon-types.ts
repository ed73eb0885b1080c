// The TypeScript ↔ native seam: every function, constant and class that the
// Node-API addon exports (videoperceiver.node, sources in native/addon/ and
// native/**/*_binding.cpp), typed in one place so that tsc checks every call
// site in lib/. Type declarations only: no code, no cost at run time.
//
// Conventions of the addon (kept by every binding):
// - a tensor argument is its storage: a host typed array (CPU) or an opaque
//   CudaBuffer handle (CUDA), with its shape and dtype passed beside it;
// - a binding whose values would be more than six positional arguments takes
//   one object of named arguments instead (`scripts/native-arity.mjs --max 6`
//   checks the C++ side); an options object that mirrors a core struct may
//   follow it as a second argument;
// - outputs are allocated by the caller (TypeScript) and written in place;
// - lib/ validates every argument first; the bindings re-check only what
//   memory safety depends on.
import type { AdvantageScale, ComparativeMode, GrpoLossType } from './ops/grpo.js';
import type { ForwardResult, GenerateOptions, ParamInfo, StepOptions, StepResult, VideoLMConfig, VideoLMLayout, VideoLMSegment } from './model/videolm.js';

declare const cudaBufferBrand: unique symbol;

/** A CUDA device allocation owned by the addon (a Node-API External); opaque to TypeScript. */
export interface CudaBuffer {
  readonly [cudaBufferBrand]: 'CudaBuffer';
}

export type AddonDType = 'float32' | 'int32' | 'bfloat16' | 'float16';
export type AddonDevice = 'cpu' | 'cuda';
/** Host storage of a tensor: Uint16Array holds the bits of bfloat16/float16. */
export type HostArray = Float32Array | Int32Array | Uint16Array;
/** A tensor's storage as the addon takes it (see Tensor.nativeArg). */
export type NativeTensor = HostArray | CudaBuffer;
/** A per-row vector: a host typed array (uploaded for the call when the op runs on CUDA) or a device buffer. */
export type NativeVector<T extends Float32Array | Int32Array> = T | CudaBuffer;
/** A shape: non-negative integers, at most limits.maxDims of them. */
export type Shape = readonly number[];

/** The core's limits (native/addon/limits.cpp), read by the TypeScript validation. */
export interface AddonLimits {
  /** Dimensions of a tensor (vp::kMaxDims). */
  readonly maxDims: number;
  /** The attention head dimension D (vp::kAttentionMaxHeadDim); also bounds a VideoLM's width/heads. */
  readonly maxHeadDim: number;
  /** Bounds of a VideoLM config (vp::VideoLMLimits). */
  readonly videoLM: {
    readonly maxImageSize: number;
    readonly maxFrames: number;
    readonly minWidth: number;
    readonly maxWidth: number;
    readonly maxLayers: number;
    readonly maxFfn: number;
    readonly maxMlpRatio: number;
    readonly minVocab: number;
    readonly maxVocab: number;
    readonly maxSeq: number;
  };
}

export type AddonIsa = 'avx512' | 'avx2' | 'generic';

/** backendInfo(): the raw report that lib/backend.ts shapes for users. */
export interface AddonBackendInfo {
  cpu: { isa: AddonIsa; bestIsa: AddonIsa; isaReason: string; threads: number };
  cuda: AddonCudaInfo;
}

interface AddonCudaCommon {
  compiled: boolean;
  reason: string;
  /** cudaRuntimeGetVersion (e.g. 13000), 0 without CUDA. */
  runtimeVersion: number;
}

export type AddonCudaInfo =
  | (AddonCudaCommon & { available: false })
  | (AddonCudaCommon & { available: true; device: string; computeCapability: string; memoryBytes: number; deviceCount: number });

// ---- arguments of the bindings that take one object -----------------------------------------

export interface MatmulArgs {
  a: NativeTensor;
  aShape: Shape;
  b: NativeTensor;
  bShape: Shape;
  out: NativeTensor;
  transA: boolean;
  transB: boolean;
  dtype: AddonDType;
}

/** vp::gemm_f32_bf16: out[m, n] = bf16(a)[m, k] · op(b) (+ bias), b bfloat16 bits ([n, k] with transB, else [k, n]). */
export interface MatmulF32Bf16Args {
  a: Float32Array;
  b: Uint16Array;
  bias: Float32Array | null;
  out: Float32Array;
  m: number;
  n: number;
  k: number;
  transB: boolean;
}

/** The sequence layout and mask of attention (both directions). */
export interface AttentionLayoutArgs {
  qShape: Shape;
  kShape: Shape;
  /** B+1 cumulative query lengths, or null: one sequence. */
  cuSeqlensQ: Int32Array | null;
  cuSeqlensK: Int32Array | null;
  causal: boolean;
  /** Undefined: 1/sqrt(D). */
  scale: number | undefined;
  dtype: AddonDType;
}

export interface AttentionArgs extends AttentionLayoutArgs {
  q: NativeTensor;
  k: NativeTensor;
  v: NativeTensor;
  out: NativeTensor;
  lse: NativeTensor;
}

export interface AttentionBackwardArgs extends AttentionArgs {
  dout: NativeTensor;
  dq: NativeTensor;
  dk: NativeTensor;
  dv: NativeTensor;
}

export interface InfoNceArgs {
  /** 0: forward (writes lse), 1: backward (reads lse, writes the gradients), 2: both in one pass. */
  mode: 0 | 1 | 2;
  queries: NativeTensor;
  queriesShape: Shape;
  keys: NativeTensor;
  keysShape: Shape;
  dtype: AddonDType;
  positive: Int32Array;
  temperature: number;
  normalize: boolean;
  gradLoss: number;
  lse: NativeTensor;
  /** Written in modes 1 and 2. */
  dQueries: NativeTensor | undefined;
  dKeys: NativeTensor | undefined;
}

export interface PackTokensArgs {
  /** null: no video source (its shape then holds no rows). */
  video: NativeTensor | null;
  videoShape: Shape;
  text: NativeTensor | null;
  textShape: Shape;
  source: Int32Array;
  out: NativeTensor;
  outShape: Shape;
  dtype: AddonDType;
}

export interface PackTokensBackwardArgs {
  dTokens: NativeTensor;
  dTokensShape: Shape;
  source: Int32Array;
  dVideo: NativeTensor;
  videoShape: Shape;
  dText: NativeTensor;
  textShape: Shape;
  dtype: AddonDType;
}

export interface PackPlan {
  source: Int32Array;
  positions: Int32Array;
  segment: Int32Array;
  cuSeqlens: Int32Array;
}

export interface TokenLogprobsBackwardArgs {
  dLogprobs: NativeVector<Float32Array>;
  logits: NativeTensor;
  shape: Shape;
  dtype: AddonDType;
  targets: NativeVector<Int32Array>;
  dLogits: NativeTensor;
  temperature: number;
}

export interface LinearLogprobsArgs {
  hidden: NativeTensor;
  hiddenShape: Shape;
  weight: NativeTensor;
  weightShape: Shape;
  dtype: AddonDType;
  targets: NativeVector<Int32Array>;
}

export interface LinearTokenLogprobsArgs extends LinearLogprobsArgs {
  /** Written (and downloaded into a host array when the matrices are on CUDA). */
  out: NativeVector<Float32Array>;
  temperature: number;
}

export interface LinearTokenLogprobsBackwardArgs extends LinearLogprobsArgs {
  dLogprobs: NativeVector<Float32Array>;
  dHidden: NativeTensor;
  dWeight: NativeTensor;
  temperature: number;
  /** Receives the log-probs of the same pass (float32 [N], host memory). */
  logprobs?: Float32Array;
}

export interface ComparativeRewardsArgs {
  complete: NativeVector<Float32Array>;
  /** Element counts (what a CudaBuffer does not carry). */
  nComplete: number;
  degraded: NativeVector<Float32Array>;
  nDegraded: number;
  groupSize: number;
  mode: ComparativeMode;
  bonus: number;
  ratio: number;
  minReward: number;
  out: NativeVector<Float32Array>;
}

/** The per-sequence inputs of the GRPO losses, with their lengths (what a CudaBuffer does not carry). */
export interface GrpoSequenceArgs {
  oldLogprobs: NativeVector<Float32Array>;
  refLogprobs: NativeVector<Float32Array> | null;
  advantages: NativeVector<Float32Array>;
  cuSeqlens: NativeVector<Int32Array>;
  numAdvantages: number;
  numCuSeqlens: number;
}

export interface GrpoLossArgs extends GrpoSequenceArgs {
  logprobs: NativeVector<Float32Array>;
  /** Tokens: the length of logprobs, oldLogprobs, refLogprobs and dLogprobs. */
  tokens: number;
  dLogprobs: NativeVector<Float32Array>;
}

export interface LinearGrpoLossArgs extends GrpoSequenceArgs, LinearLogprobsArgs {
  dHidden: NativeTensor;
  dWeight: NativeTensor;
  /** Receives the current policy's token log-probs (null: not wanted). */
  logprobsOut: NativeVector<Float32Array> | null;
}

/** vp::GrpoOptions (the second argument of grpoLoss and linearGrpoLoss). */
export interface AddonGrpoOptions {
  epsLow: number;
  epsHigh: number;
  beta: number;
  lossType: GrpoLossType;
  maxCompletionLength: number | undefined;
  /** linearGrpoLoss only (1 for grpoLoss). */
  temperature: number;
}

export interface GrpoStats {
  loss: number;
  clipFraction: number;
  kl: number;
}

export interface RmsnormForwardArgs {
  x: Float32Array;
  gain: Float32Array;
  rows: number;
  dim: number;
  eps: number;
  y: Float32Array;
  rstd: Float32Array;
}

export interface LayernormForwardArgs {
  x: Float32Array;
  gamma: Float32Array;
  /** null: no bias. */
  beta: Float32Array | null;
  rows: number;
  dim: number;
  eps: number;
  y: Float32Array;
  mean: Float32Array;
  rstd: Float32Array;
}

export interface LayernormBackwardArgs {
  dy: Float32Array;
  x: Float32Array;
  gamma: Float32Array;
  /** Both null: recomputed. */
  mean: Float32Array | null;
  rstd: Float32Array | null;
  rows: number;
  dim: number;
  eps: number;
  dx: Float32Array;
  dGamma: Float32Array | null;
  dBeta: Float32Array | null;
  accumulate: boolean;
}

/** kind: 0 erf, 1 tanh approximation, 2 quick (x·sigmoid(1.702x)). */
export interface GeluForwardArgs {
  x: Float32Array;
  n: number;
  kind: number;
  y: Float32Array;
}

export interface GeluBackwardArgs {
  dy: Float32Array;
  x: Float32Array;
  n: number;
  kind: number;
  dx: Float32Array;
}

export interface RmsnormBackwardArgs {
  dy: Float32Array;
  x: Float32Array;
  gain: Float32Array;
  /** null: recomputed. */
  rstd: Float32Array | null;
  rows: number;
  dim: number;
  eps: number;
  dx: Float32Array;
  dGain: Float32Array;
  accumulate: boolean;
}

export interface SwigluBackwardArgs {
  dh: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  rows: number;
  ffn: number;
  dGate: Float32Array;
  dUp: Float32Array;
}

export interface RopeApplyArgs {
  x: Float32Array;
  positions: Int32Array;
  tokens: number;
  heads: number;
  headDim: number;
  theta: number;
  inverse: boolean;
  out: Float32Array;
}

interface LinearShapeArgs {
  x: Float32Array;
  weight: Float32Array;
  n: number;
  inFeatures: number;
  outFeatures: number;
}

export interface LinearForwardArgs extends LinearShapeArgs {
  bias: Float32Array | null;
  y: Float32Array;
}

export interface LinearBackwardArgs extends LinearShapeArgs {
  dy: Float32Array;
  dx: Float32Array | null;
  dWeight: Float32Array | null;
  dBias: Float32Array | null;
  accumulate: boolean;
}

export interface CrossEntropyBackwardArgs {
  logits: Float32Array;
  targets: Int32Array;
  lse: Float32Array | null;
  n: number;
  vocab: number;
  gradLoss: number;
  dLogits: Float32Array;
}

export interface AdamwStepArgs {
  param: Float32Array;
  grad: Float32Array;
  m: Float32Array;
  v: Float32Array;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
  gradScale: number;
}

export interface SampleTokensArgs {
  logits: Float32Array;
  rows: number;
  vocab: number;
  temperature: number;
  topP: number;
  seed: bigint;
  step: bigint;
  /** One stream per row, or null: the row index. */
  streams: BigUint64Array | null;
  out: Int32Array;
}

// ---- the model ------------------------------------------------------------------------------

/** A validated batch as the native model copies it (lib/model/videolm.ts builds it). */
export interface NativeVideoLMBatch {
  videos: Uint8Array | Float32Array | undefined;
  numVideos: number;
  text: Int32Array;
  targets: Int32Array | undefined;
  sequences: VideoLMSegment[][];
}

export interface NativeForwardOptions {
  /** -1: no tap. */
  tapLayer: number;
  tapRows: Int32Array | undefined;
  logprobs: boolean;
  forBackward: boolean;
}

export type VideoLMBufferName = 'params' | 'grads' | 'm' | 'v';

/** VideoLMNative (native/model/videolm_binding.cpp): one native model; heavy calls run on the libuv pool. */
export interface VideoLMNative {
  config(): Required<VideoLMConfig>;
  device(): AddonDevice;
  computeDtype(): 'float32' | 'bfloat16';
  setComputeDtype(dtype: 'float32' | 'bfloat16'): void;
  paramInfo(): ParamInfo[];
  /** A copy of a flat buffer (numParams floats). */
  getBuffer(which: VideoLMBufferName): Float32Array;
  setBuffer(which: VideoLMBufferName, data: Float32Array): void;
  getStep(): number;
  setStep(step: number): void;
  forward(batch: NativeVideoLMBatch, opts: NativeForwardOptions): Promise<ForwardResult>;
  backward(gradLoss: number, dTap: Float32Array | null, dLogprobs: Float32Array | null, accumulate: boolean): Promise<void>;
  step(opts: Required<StepOptions>): Promise<StepResult>;
  /** forward + backward over each micro-batch, then one AdamW step. */
  trainStep(batches: NativeVideoLMBatch[], opts: Required<StepOptions>): Promise<StepResult & { loss: number; count: number }>;
  generate(batch: NativeVideoLMBatch, opts: Omit<Required<GenerateOptions>, 'onToken' | 'streams'> & { onToken?: (sequence: number, token: number) => void; streams?: Int32Array }): Promise<Int32Array[]>;
  logits(batch: NativeVideoLMBatch): Promise<{ logits: Float32Array; layout: VideoLMLayout }>;
  /** Sums the flat buffer over the ranks of a distributed launch, in place on the model's device (native/ops/distributed). */
  distAllreduce(which: VideoLMBufferName): Promise<void>;
  /** Rank `root`'s flat buffer to every rank, in place. */
  distBroadcast(which: VideoLMBufferName, root: number): Promise<void>;
  dispose(): void;
}

export interface VideoLMNativeConstructor {
  new (config: VideoLMConfig, seed: number, device: AddonDevice): VideoLMNative;
}

// ---- native/ops/distributed ------------------------------------------------------------------

/** Whether a library can be loaded (dlopen + its entry points); nothing is initialized. */
export interface DistProbe {
  found: boolean;
  /** The name or path looked for. */
  library: string;
  version: string;
  /** Why it cannot be used (empty when found). */
  reason: string;
}

export interface DistInitArgs {
  /** 'mpi': MPI tells rank and size; 'env': torchrun-style variables (NCCL only). */
  launcher: 'mpi' | 'env';
  backend: 'auto' | 'mpi' | 'nccl';
  rank: number;
  size: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
  /** Seconds a collective may wait before the watchdog aborts every rank (<= 0: never). */
  timeout: number;
}

export interface DistInitInfo {
  initialized: boolean;
  rank: number;
  size: number;
  localRank: number;
  backend: 'mpi' | 'nccl' | 'none';
  /** Why NCCL is not used (empty when it is, or was not asked for). */
  ncclReason: string;
  mpiVersion: string;
  ncclVersion: number;
}

// ---- the module -----------------------------------------------------------------------------

/** What `require('videoperceiver.node')` returns. */
export interface Addon {
  /** Bumped when the seam changes incompatibly. */
  readonly abiVersion: number;
  readonly limits: AddonLimits;

  // host memory (native/addon/host_memory.cpp)
  /** madvise(MADV_HUGEPAGE) over the array's 2 MB-aligned interior; true when advised. */
  adviseHugePages(a: Float32Array | Int32Array | Uint16Array): boolean;

  // backend (native/addon/backend.cpp)
  backendInfo(): AddonBackendInfo;
  setNumThreads(n: number): void;
  /** Forces an ISA path; false when the CPU lacks it (the best one stays). */
  setIsa(isa: AddonIsa): boolean;

  // CUDA buffers (native/addon/device_buffer.cpp)
  cudaAlloc(bytes: number): CudaBuffer;
  cudaUpload(data: HostArray): CudaBuffer;
  /** Copies the whole buffer into `into` (same byte length). */
  cudaDownload(buffer: CudaBuffer, into: HostArray): void;
  cudaFree(buffer: CudaBuffer): void;
  cudaClone(buffer: CudaBuffer): CudaBuffer;
  cudaConvert(src: CudaBuffer, shape: Shape, srcDtype: AddonDType, dst: CudaBuffer, dstDtype: AddonDType): void;

  // native/ops/matmul
  matmul(args: MatmulArgs): void;
  matmulF32Bf16(args: MatmulF32Bf16Args): void;
  /** vp::gemm_f32_via_bf16: out[m, n] = bf16(op(a)) · bf16(op(b)), float32 accumulation (a [k, m] with transA, b [n, k] with transB). */
  matmulViaBf16(args: { a: Float32Array; b: Float32Array; out: Float32Array; m: number; n: number; k: number; transA: boolean; transB: boolean }): void;
  /** vp::round_to_bf16: dst = bfloat16(src) (nearest even, NaN kept), same lengths, on the thread pool. */
  roundBf16(src: Float32Array, dst: Uint16Array): void;

  // native/ops/attention
  attention(args: AttentionArgs): void;
  attentionBackward(args: AttentionBackwardArgs): void;

  // native/ops/infonce
  infoNce(args: InfoNceArgs): { loss: number; dLogTemperature: number };

  // native/ops/pack: table is [S·6] (sequence, kind, a, b, frame-map offset, 0); dims [V, F, P, T]
  packPlan(table: Int32Array, numSequences: number, frameMap: Int32Array, dims: Shape): PackPlan;
  packTokens(args: PackTokensArgs): void;
  packTokensBackward(args: PackTokensBackwardArgs): void;

  // native/ops/grpo: token log-probs
  tokenLogprobs(
    logits: NativeTensor, shape: Shape, dtype: AddonDType, targets: NativeVector<Int32Array>, out: NativeVector<Float32Array>,
    temperature: number,
  ): void;
  tokenLogprobsBackward(args: TokenLogprobsBackwardArgs): void;
  linearTokenLogprobs(args: LinearTokenLogprobsArgs): void;
  linearTokenLogprobsBackward(args: LinearTokenLogprobsBackwardArgs): void;
  linearLogprobsWorkspaceBytes(n: number, d: number, v: number, threads: number, backward: boolean): number;

  // native/ops/grpo: rewards, advantages, the GRPO losses
  groupAdvantages(
    rewards: NativeVector<Float32Array>, n: number, groupSize: number, scale: AdvantageScale, eps: number,
    out: NativeVector<Float32Array>,
  ): void;
  comparativeRewards(args: ComparativeRewardsArgs): void;
  grpoLoss(args: GrpoLossArgs, opts: AddonGrpoOptions): GrpoStats;
  linearGrpoLoss(args: LinearGrpoLossArgs, opts: AddonGrpoOptions): GrpoStats;

  // native/ops/pretrained: the pretrained models' CUDA building blocks (lib/pretrained/device.ts);
  // device tensors as CudaBuffer handles, indices as host Int32Arrays.
  devAxpy(args: { y: CudaBuffer; x: CudaBuffer; alpha: number; n: number }): void;
  devScale(args: { x: CudaBuffer; alpha: number; n: number }): void;
  devMul(args: { y: CudaBuffer; x: CudaBuffer; n: number }): void;
  devAddBias(args: { y: CudaBuffer; b: CudaBuffer; rows: number; cols: number }): void;
  devGatherRows(args: { src: CudaBuffer; srcRows: number; rows: Int32Array; d: number; out: CudaBuffer }): void;
  devScatterAddRows(args: { src: CudaBuffer; rows: Int32Array; d: number; dst: CudaBuffer; dstRows: number }): void;
  devEmbedding(args: { table: CudaBuffer; bf16: boolean; vocab: number; d: number; ids: Int32Array; out: CudaBuffer }): void;
  devEmbeddingBackward(args: { dOut: CudaBuffer; ids: Int32Array; vocab: number; d: number; dTable: CudaBuffer; accumulate: boolean }): void;
  devRope(args: {
    x: CudaBuffer; positions: Int32Array; heads: number; headDim: number; theta: number; inverse: boolean; out: CudaBuffer;
    cos: Float32Array | null; sin: Float32Array | null; tablePositions: number;
  }): void;
  devRmsnormForward(args: { x: CudaBuffer; gain: CudaBuffer; rows: number; dim: number; eps: number; y: CudaBuffer; rstd: CudaBuffer }): void;
  devRmsnormBackward(args: {
    dy: CudaBuffer; x: CudaBuffer; gain: CudaBuffer; rstd: CudaBuffer; rows: number; dim: number; eps: number; dx: CudaBuffer; dGain: CudaBuffer; accumulate: boolean;
  }): void;
  devSwigluForward(args: { gate: CudaBuffer; up: CudaBuffer; rows: number; ffn: number; h: CudaBuffer }): void;
  devSwigluBackward(args: { dh: CudaBuffer; gate: CudaBuffer; up: CudaBuffer; rows: number; ffn: number; dGate: CudaBuffer; dUp: CudaBuffer }): void;
  devLayernormForward(args: {
    x: CudaBuffer; gamma: CudaBuffer; beta: CudaBuffer | null; rows: number; dim: number; eps: number; y: CudaBuffer; mean: CudaBuffer; rstd: CudaBuffer;
  }): void;
  devLayernormBackward(args: {
    dy: CudaBuffer; x: CudaBuffer; gamma: CudaBuffer; mean: CudaBuffer; rstd: CudaBuffer; rows: number; dim: number; eps: number;
    dx: CudaBuffer; dGamma: CudaBuffer | null; dBeta: CudaBuffer | null; accumulate: boolean;
  }): void;
  devGeluForward(args: { x: CudaBuffer; n: number; kind: number; y: CudaBuffer }): void;
  devGeluBackward(args: { dy: CudaBuffer; x: CudaBuffer; n: number; kind: number; dx: CudaBuffer }): void;
  devMatmulF32Bf16(args: { a: CudaBuffer; b: CudaBuffer; bias: CudaBuffer | null; out: CudaBuffer; m: number; n: number; k: number; transB: boolean }): void;
  devAdamw(args: {
    param: CudaBuffer; grad: CudaBuffer; m: CudaBuffer; v: CudaBuffer; n: number;
    lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number;
  }): void;
  devSumSquares(args: { x: CudaBuffer; n: number }): number;
  devDecodeAttention(args: {
    q: CudaBuffer; kcache: CudaBuffer; vcache: CudaBuffer; cacheRows: number; base: Int32Array; nkeys: Int32Array;
    heads: number; kvHeads: number; headDim: number; scale: number; out: CudaBuffer;
  }): void;

  // native/ops/layers: CPU float32 layers, optimizer, RNG, sampling
  rmsnormForward(args: RmsnormForwardArgs): void;
  rmsnormBackward(args: RmsnormBackwardArgs): void;
  layernormForward(args: LayernormForwardArgs): void;
  layernormBackward(args: LayernormBackwardArgs): void;
  geluForward(args: GeluForwardArgs): void;
  geluBackward(args: GeluBackwardArgs): void;
  swigluForward(gate: Float32Array, up: Float32Array, rows: number, ffn: number, h: Float32Array): void;
  swigluBackward(args: SwigluBackwardArgs): void;
  ropeApply(args: RopeApplyArgs): void;
  embeddingForward(table: Float32Array, vocab: number, dim: number, ids: Int32Array, out: Float32Array): void;
  embeddingBackward(dOut: Float32Array, ids: Int32Array, vocab: number, dim: number, dTable: Float32Array, accumulate: boolean): void;
  linearForward(args: LinearForwardArgs): void;
  linearBackward(args: LinearBackwardArgs): void;
  /** Returns [loss, counted rows]. */
  crossEntropyForward(logits: Float32Array, targets: Int32Array, n: number, vocab: number, lse: Float32Array): [number, number];
  crossEntropyBackward(args: CrossEntropyBackwardArgs): void;
  adamwStep(args: AdamwStepArgs): void;
  /** y += alpha·x in place, each sum in double rounded once (the JavaScript loop's bits), on the pool. */
  axpyF32(args: { y: Float32Array; x: Float32Array; alpha: number }): void;
  /** Returns the global norm before clipping. */
  clipGradNorm(grads: Float32Array[], maxNorm: number): number;
  lrAt(baseLr: number, minLr: number, warmupSteps: number, totalSteps: number, step: number): number;
  rngFill(kind: 'normal' | 'uniform', seed: bigint, stream: bigint, a: number, b: number, out: Float32Array): void;
  sampleTokens(args: SampleTokensArgs): void;

  // native/ops/distributed: collectives of a distributed launch (MPI and NCCL found with dlopen)
  distProbe(): { mpi: DistProbe; nccl: DistProbe };
  distInit(args: DistInitArgs): DistInitInfo;
  distInfo(): DistInitInfo;
  /** In-place sum over the ranks. */
  distAllreduce(x: Float32Array | Float64Array | Int32Array): Promise<void>;
  /** Rank `root`'s bytes of `x` to every rank, in place. */
  distBroadcast(x: ArrayBufferView, root: number): Promise<void>;
  distBarrier(): Promise<void>;
  /** Ends every rank of the job with `code`; does not return. */
  distAbort(code: number, message: string): never;
  distFinalize(): void;
  distSetTimeout(seconds: number): void;

  // native/model
  VideoLMNative: VideoLMNativeConstructor;
}
