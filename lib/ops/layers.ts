// The VideoLM building blocks (native/include/vp/layers.h, optim.h, rng.h) as
// CPU ops on tensors: RMSNorm, SwiGLU, rotary embedding, embedding, linear,
// cross-entropy, AdamW, gradient clipping, the LR schedule and seeded
// initialization. Each has its backward pass. The model runs the same kernels
// inside the core (on the CPU or, with their CUDA versions, on the GPU); these
// bindings serve tests, experiments and users who assemble their own layers,
// on CPU tensors (a CUDA tensor is refused with a TypeError). Cost: one pass of
// the kernel over its inputs and outputs (docs/model.md, "Measured").
import { describe, rangeError, typeError } from '../errors.js';
import { emptyLike, overwrittenLike, Tensor, numel } from '../tensor.js';
import { checkBoolean, checkNoAlias, checkNumber, checkOptions, checkOut, checkTensor, float32Vector, int32Vector } from '../validate.js';
import { native } from '../native.js';

const F32 = ['float32'] as const;

function cpuF32(fn: string, arg: string, x: unknown, ndim?: number): Tensor {
  const t = checkTensor(fn, arg, x, { ndim, dtypes: F32 });
  if (t.device !== 'cpu') throw typeError(fn, arg, 'a CPU tensor (these ops run on the CPU; the model runs their CUDA versions itself)', describe(t));
  return t;
}

function sameShape(fn: string, arg: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw rangeError(fn, `${arg}.shape`, `[${shape.join(', ')}]`, `[${t.shape.join(', ')}]`);
}

function lastDim(fn: string, arg: string, t: Tensor): [number, number] {
  if (t.shape.length < 1) throw rangeError(fn, `${arg}.shape`, 'at least 1-D', '[]');
  const d = t.shape[t.shape.length - 1];
  return [d === 0 ? 0 : t.size / d, d];
}

const f32 = (t: Tensor) => t.data as Float32Array;

/** The checks {@link rmsNorm} and its backward share: `x` and `gain [dim]` on the CPU in float32, `opts.eps`. */
function rmsNormArgs<O extends { eps?: number }>(fn: string, x: Tensor, gain: Tensor, opts: O | undefined) {
  cpuF32(fn, 'x', x);
  cpuF32(fn, 'gain', gain, 1);
  const o = checkOptions(fn, opts);
  const eps = checkNumber(fn, 'opts.eps', o.eps, 1e-5, { min: 0 });
  const [rows, dim] = lastDim(fn, 'x', x);
  if (dim === 0) throw rangeError(fn, 'x.shape', 'a last dimension > 0', `[${x.shape.join(', ')}]`);
  sameShape(fn, 'gain', gain, [dim]);
  return { o, eps, rows, dim };
}

/** RMSNorm over the last dimension: `y = x · rstd · gain`, `rstd = 1/sqrt(mean(x²) + eps)`. */
export function rmsNorm(x: Tensor, gain: Tensor, opts?: { eps?: number }): { y: Tensor; rstd: Float32Array } {
  const { eps, rows, dim } = rmsNormArgs('rmsNorm', x, gain, opts);
  const y = overwrittenLike(x.shape);
  const rstd = new Float32Array(rows);
  native().rmsnormForward({ x: f32(x), gain: f32(gain), rows, dim, eps, y: f32(y), rstd });
  return { y, rstd };
}

/**
 * Backward of {@link rmsNorm}: `dx`, and `dGain` (added into `opts.dGain` when
 * given, for gradient accumulation). `rstd` from the forward pass (or omitted: recomputed).
 */
export function rmsNormBackward(dy: Tensor, x: Tensor, gain: Tensor, rstd?: Float32Array | Tensor, opts?: { eps?: number; dGain?: Tensor }): { dx: Tensor; dGain: Tensor } {
  const fn = 'rmsNormBackward';
  cpuF32(fn, 'dy', dy);
  const { o, eps, rows, dim } = rmsNormArgs(fn, x, gain, opts);
  sameShape(fn, 'dy', dy, x.shape);
  const r = rstd === undefined ? null : float32Vector(fn, 'rstd', rstd, rows);
  const acc = o.dGain !== undefined;
  const dGain = acc ? cpuF32(fn, 'opts.dGain', o.dGain, 1) : emptyLike([dim], 'float32', 'cpu');
  sameShape(fn, 'opts.dGain', dGain, [dim]);
  const dx = overwrittenLike(x.shape);
  native().rmsnormBackward({ dy: f32(dy), x: f32(x), gain: f32(gain), rstd: r, rows, dim, eps, dx: f32(dx), dGain: f32(dGain), accumulate: acc });
  return { dx, dGain };
}

/** SwiGLU: `silu(gate) · up`, element-wise (`silu(g) = g·sigmoid(g)`). */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const fn = 'swiglu';
  cpuF32(fn, 'gate', gate);
  cpuF32(fn, 'up', up);
  sameShape(fn, 'up', up, gate.shape);
  const [rows, f] = lastDim(fn, 'gate', gate);
  const h = overwrittenLike(gate.shape);
  if (gate.size > 0) native().swigluForward(f32(gate), f32(up), rows, f, f32(h));
  return h;
}

/** Backward of {@link swiglu}. */
export function swigluBackward(dh: Tensor, gate: Tensor, up: Tensor): { dGate: Tensor; dUp: Tensor } {
  const fn = 'swigluBackward';
  cpuF32(fn, 'dh', dh);
  cpuF32(fn, 'gate', gate);
  cpuF32(fn, 'up', up);
  sameShape(fn, 'up', up, gate.shape);
  sameShape(fn, 'dh', dh, gate.shape);
  const [rows, f] = lastDim(fn, 'gate', gate);
  const dGate = overwrittenLike(gate.shape);
  const dUp = overwrittenLike(gate.shape);
  if (gate.size > 0) native().swigluBackward({ dh: f32(dh), gate: f32(gate), up: f32(up), rows, ffn: f, dGate: f32(dGate), dUp: f32(dUp) });
  return { dGate, dUp };
}

/**
 * Rotary position embedding of `x [T, H, D]` (D even) at per-token `positions`
 * (as packing produces): pairs `(i, i + D/2)` rotate by `pos · theta^(-2i/D)`.
 * `opts.inverse` rotates back, which is also the backward pass.
 */
export function rope(x: Tensor, positions: Int32Array | Tensor, opts?: { theta?: number; inverse?: boolean }): Tensor {
  const fn = 'rope';
  cpuF32(fn, 'x', x, 3);
  const [t, h, d] = x.shape;
  const pos = int32Vector(fn, 'positions', positions, t);
  const o = checkOptions(fn, opts);
  const theta = checkNumber(fn, 'opts.theta', o.theta, 10000, { gt: 1 });
  const inverse = checkBoolean(fn, 'opts.inverse', o.inverse, false);
  if (d % 2 !== 0 || d === 0) throw rangeError(fn, 'x.shape[2]', 'an even head dimension > 0', `${d}`);
  if (h === 0) throw rangeError(fn, 'x.shape[1]', 'at least 1 head', '0');
  for (let i = 0; i < t; i++) if (pos[i] < 0) throw rangeError(fn, `positions[${i}]`, '>= 0', `${pos[i]}`);
  const out = overwrittenLike(x.shape);
  native().ropeApply({ x: f32(x), positions: pos, tokens: t, heads: h, headDim: d, theta, inverse, out: f32(out) });
  return out;
}

/** Embedding lookup: rows of `table [V, D]` at `ids` → `[N, D]`. */
export function embedding(table: Tensor, ids: Int32Array | Tensor): Tensor {
  const fn = 'embedding';
  cpuF32(fn, 'table', table, 2);
  const idx = int32Vector(fn, 'ids', ids);
  const [v, d] = table.shape;
  for (let i = 0; i < idx.length; i++) if (idx[i] < 0 || idx[i] >= v) throw rangeError(fn, `ids[${i}]`, `in [0, ${v})`, `${idx[i]}`);
  if (d === 0) throw rangeError(fn, 'table.shape[1]', '> 0', '0');
  const out = overwrittenLike([idx.length, d]);
  native().embeddingForward(f32(table), v, d, idx, f32(out));
  return out;
}

/** Backward of {@link embedding}: the deterministic scatter-add of `dOut [N, D]` into `[vocab, D]` (into `opts.dTable` when given). */
export function embeddingBackward(dOut: Tensor, ids: Int32Array | Tensor, vocab: number, opts?: { dTable?: Tensor }): Tensor {
  const fn = 'embeddingBackward';
  cpuF32(fn, 'dOut', dOut, 2);
  const idx = int32Vector(fn, 'ids', ids, dOut.shape[0]);
  const v = checkNumber(fn, 'vocab', vocab, 0, { integer: true, min: 1 });
  const d = dOut.shape[1];
  if (d === 0) throw rangeError(fn, 'dOut.shape[1]', '> 0', '0');
  for (let i = 0; i < idx.length; i++) if (idx[i] < 0 || idx[i] >= v) throw rangeError(fn, `ids[${i}]`, `in [0, ${v})`, `${idx[i]}`);
  const o = checkOptions(fn, opts);
  const acc = o.dTable !== undefined;
  const dTable = acc ? cpuF32(fn, 'opts.dTable', o.dTable, 2) : overwrittenLike([v, d]);
  sameShape(fn, 'opts.dTable', dTable, [v, d]);
  native().embeddingBackward(f32(dOut), idx, v, d, f32(dTable), acc);
  return dTable;
}

/** The checks {@link linear} and its backward share: `x [N, in]` and `weight [out, in]` on the CPU in float32 → `[N, in, out]`. */
function linearArgs(fn: string, x: Tensor, weight: Tensor): [number, number, number] {
  cpuF32(fn, 'x', x, 2);
  cpuF32(fn, 'weight', weight, 2);
  const [n, inD] = x.shape;
  const outD = weight.shape[0];
  if (weight.shape[1] !== inD) throw rangeError(fn, 'weight.shape', `[out, ${inD}] to match x`, `[${weight.shape.join(', ')}]`);
  if (inD === 0 || outD === 0) throw rangeError(fn, 'weight.shape', 'non-zero dimensions', `[${weight.shape.join(', ')}]`);
  return [n, inD, outD];
}

/** `y = x · weightᵀ + bias`: `x [N, in]`, `weight [out, in]`, `bias [out]`. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  const fn = 'linear';
  const [n, inD, outD] = linearArgs(fn, x, weight);
  if (bias !== undefined) sameShape(fn, 'bias', cpuF32(fn, 'bias', bias, 1), [outD]);
  const y = overwrittenLike([n, outD]);
  native().linearForward({ x: f32(x), weight: f32(weight), bias: bias ? f32(bias) : null, n, inFeatures: inD, outFeatures: outD, y: f32(y) });
  return y;
}

/** Backward of {@link linear}: `dx = dy·W`, `dWeight = dyᵀ·x`, `dBias = Σ rows dy` (bias gradient only when `opts.bias`). */
export function linearBackward(dy: Tensor, x: Tensor, weight: Tensor, opts?: { bias?: boolean }): { dx: Tensor; dWeight: Tensor; dBias?: Tensor } {
  const fn = 'linearBackward';
  cpuF32(fn, 'dy', dy, 2);
  const [n, inD, outD] = linearArgs(fn, x, weight);
  sameShape(fn, 'dy', dy, [n, outD]);
  const withBias = checkBoolean(fn, 'opts.bias', checkOptions(fn, opts).bias, false);
  const dx = overwrittenLike([n, inD]);
  const dWeight = overwrittenLike([outD, inD]);
  const dBias = withBias ? emptyLike([outD], 'float32', 'cpu') : undefined;
  native().linearBackward({
    dy: f32(dy), x: f32(x), weight: f32(weight), n, inFeatures: inD, outFeatures: outD,
    dx: f32(dx), dWeight: f32(dWeight), dBias: dBias ? f32(dBias) : null, accumulate: false,
  });
  return dBias ? { dx, dWeight, dBias } : { dx, dWeight };
}

/**
 * Softmax cross-entropy over the vocabulary, mean over rows whose target is
 * not −1: `logits [N, V]`, `targets Int32Array [N]`. Returns the loss, each
 * row's log-sum-exp, and the number of counted rows.
 */
export function crossEntropy(logits: Tensor, targets: Int32Array | Tensor): { loss: number; lse: Float32Array; count: number } {
  const fn = 'crossEntropy';
  cpuF32(fn, 'logits', logits, 2);
  const [n, v] = logits.shape;
  const t = int32Vector(fn, 'targets', targets, n);
  if (v === 0) throw rangeError(fn, 'logits.shape[1]', '> 0', '0');
  for (let i = 0; i < n; i++) if (t[i] !== -1 && (t[i] < 0 || t[i] >= v)) throw rangeError(fn, `targets[${i}]`, `in [0, ${v}) or -1 (ignored)`, `${t[i]}`);
  const lse = new Float32Array(n);
  const [loss, count] = native().crossEntropyForward(f32(logits), t, n, v, lse);
  return { loss, lse, count };
}

/**
 * Backward of {@link crossEntropy}: `dLogits = gradLoss/count · (softmax − onehot)`, zero on ignored rows.
 * `opts.out` receives it instead of a fresh tensor: a float32 CPU tensor of the logits' shape,
 * either separate from `logits` or `logits` itself (in place: the logits are overwritten).
 */
export function crossEntropyBackward(logits: Tensor, targets: Int32Array | Tensor, lse?: Float32Array, opts?: { gradLoss?: number; out?: Tensor }): Tensor {
  const fn = 'crossEntropyBackward';
  cpuF32(fn, 'logits', logits, 2);
  const [n, v] = logits.shape;
  const t = int32Vector(fn, 'targets', targets, n);
  if (v === 0) throw rangeError(fn, 'logits.shape[1]', '> 0', '0');
  for (let i = 0; i < n; i++) if (t[i] !== -1 && (t[i] < 0 || t[i] >= v)) throw rangeError(fn, `targets[${i}]`, `in [0, ${v}) or -1 (ignored)`, `${t[i]}`);
  if (lse !== undefined) {
    if (!(lse instanceof Float32Array)) throw typeError(fn, 'lse', 'a Float32Array', describe(lse));
    if (lse.length !== n) throw rangeError(fn, 'lse.length', `${n}`, `${lse.length}`);
  }
  const o = checkOptions(fn, opts);
  const gradLoss = checkNumber(fn, 'opts.gradLoss', o.gradLoss, 1);
  let d: Tensor;
  if (o.out === undefined) d = overwrittenLike([n, v]);
  else {
    d = checkOut(fn, 'opts.out', o.out, [n, v], 'cpu', 'float32');
    // In place is exact (each row is read before it is written); a partial overlap is not.
    if (!(d.data.buffer === logits.data.buffer && d.data.byteOffset === logits.data.byteOffset)) checkNoAlias(fn, 'opts.out', d, { logits });
  }
  native().crossEntropyBackward({ logits: f32(logits), targets: t, lse: lse ?? null, n, vocab: v, gradLoss, dLogits: f32(d) });
  return d;
}

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** 1-based step number (bias correction). */
  step: number;
  /** Gradients are multiplied by this first (clipping, accumulation averaging). Default 1. */
  gradScale?: number;
}

/**
 * One AdamW update in place (decoupled weight decay, bias correction, PyTorch's
 * order of operations). `param`, `grad`, `m`, `v`: CPU float32 tensors of one size.
 */
export function adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, opts: AdamWOptions): void {
  const fn = 'adamwStep';
  for (const [k, t] of Object.entries({ param, grad, m, v })) cpuF32(fn, k, t);
  for (const [k, t] of Object.entries({ grad, m, v })) if (t.size !== param.size) throw rangeError(fn, `${k}.size`, `${param.size} like param`, `${t.size}`);
  const o = checkOptions(fn, opts);
  const lr = checkNumber(fn, 'opts.lr', o.lr, NaN, { min: 0 });
  if (Number.isNaN(lr)) throw typeError(fn, 'opts.lr', 'a number', 'undefined');
  const beta1 = checkNumber(fn, 'opts.beta1', o.beta1, 0.9, { min: 0 });
  const beta2 = checkNumber(fn, 'opts.beta2', o.beta2, 0.999, { min: 0 });
  if (beta1 >= 1) throw rangeError(fn, 'opts.beta1', '< 1', `${beta1}`);
  if (beta2 >= 1) throw rangeError(fn, 'opts.beta2', '< 1', `${beta2}`);
  const eps = checkNumber(fn, 'opts.eps', o.eps, 1e-8, { gt: 0 });
  const weightDecay = checkNumber(fn, 'opts.weightDecay', o.weightDecay, 0, { min: 0 });
  const step = checkNumber(fn, 'opts.step', o.step, NaN, { integer: true, min: 1 });
  if (Number.isNaN(step)) throw typeError(fn, 'opts.step', 'a number', 'undefined');
  const gradScale = checkNumber(fn, 'opts.gradScale', o.gradScale, 1);
  native().adamwStep({ param: f32(param), grad: f32(grad), m: f32(m), v: f32(v), lr, beta1, beta2, eps, weightDecay, step, gradScale });
}

/**
 * Scales the gradients in place so that their global L2 norm is at most
 * `maxNorm` (no clipping when `maxNorm <= 0`); returns the norm before clipping.
 */
export function clipGradNorm(grads: readonly Tensor[], maxNorm: number): number {
  const fn = 'clipGradNorm';
  if (!Array.isArray(grads)) throw typeError(fn, 'grads', 'an array of tensors', describe(grads));
  grads.forEach((g, i) => cpuF32(fn, `grads[${i}]`, g));
  const mx = checkNumber(fn, 'maxNorm', maxNorm, 0);
  return native().clipGradNorm(grads.map(f32), mx);
}

export interface LrScheduleOptions {
  baseLr: number;
  minLr?: number;
  warmupSteps?: number;
  totalSteps: number;
}

/** Linear warmup to `baseLr` over `warmupSteps`, then cosine decay to `minLr` at `totalSteps` (0-based `step`). */
export function lrAt(schedule: LrScheduleOptions, step: number): number {
  const fn = 'lrAt';
  const o = checkOptions(fn, schedule);
  const base = checkNumber(fn, 'schedule.baseLr', o.baseLr, NaN, { min: 0 });
  if (Number.isNaN(base)) throw typeError(fn, 'schedule.baseLr', 'a number', 'undefined');
  const min = checkNumber(fn, 'schedule.minLr', o.minLr, 0, { min: 0 });
  const warm = checkNumber(fn, 'schedule.warmupSteps', o.warmupSteps, 0, { integer: true, min: 0 });
  const total = checkNumber(fn, 'schedule.totalSteps', o.totalSteps, NaN, { integer: true, min: 1 });
  if (Number.isNaN(total)) throw typeError(fn, 'schedule.totalSteps', 'a number', 'undefined');
  const s = checkNumber(fn, 'step', step, 0, { integer: true, min: 0 });
  return native().lrAt(base, min, warm, total, s);
}

export interface InitOptions {
  /** Seed (a non-negative safe integer or a bigint < 2^64). */
  seed: number | bigint;
  /** Independent stream under one seed, e.g. the parameter's index (default 0). */
  stream?: number | bigint;
}

function u64(fn: string, arg: string, v: unknown, dflt?: bigint): bigint {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 2n ** 64n) throw rangeError(fn, arg, 'in [0, 2^64)', `${v}`);
    return v;
  }
  if (typeof v !== 'number') throw typeError(fn, arg, 'a number or bigint', describe(v));
  if (!Number.isSafeInteger(v) || v < 0) throw rangeError(fn, arg, 'a non-negative safe integer', describe(v));
  return BigInt(v);
}

/**
 * A tensor of normal samples `mean + std·N(0,1)` from the core's Philox4x32-10
 * generator: the same values for a (seed, stream) on every machine and thread count.
 */
export function randn(shape: number[], opts: InitOptions & { mean?: number; std?: number }): Tensor {
  return fill('randn', 'normal', shape, opts, 'mean', 0, 'std', 1);
}

/** Uniform samples in `[low, high)` from the same generator as {@link randn}. */
export function randu(shape: number[], opts: InitOptions & { low?: number; high?: number }): Tensor {
  return fill('randu', 'uniform', shape, opts, 'low', 0, 'high', 1);
}

function fill(fn: string, kind: 'normal' | 'uniform', shape: number[], opts: unknown, an: string, ad: number, bn: string, bd: number): Tensor {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw typeError(fn, 'shape', 'an array of non-negative integers', describe(shape));
  const o = checkOptions(fn, opts);
  const seed = u64(fn, 'opts.seed', o.seed);
  const stream = u64(fn, 'opts.stream', o.stream, 0n);
  const a = checkNumber(fn, `opts.${an}`, o[an], ad);
  const b = checkNumber(fn, `opts.${bn}`, o[bn], bd);
  if (kind === 'normal' && b < 0) throw rangeError(fn, 'opts.std', '>= 0', `${b}`);
  if (kind === 'uniform' && b < a) throw rangeError(fn, 'opts.high', `>= opts.low (${a})`, `${b}`);
  if (numel(shape) > 2 ** 31 - 1) throw rangeError(fn, 'shape', 'at most 2^31-1 elements', `${numel(shape)}`);
  const out = overwrittenLike(shape);
  native().rngFill(kind, seed, stream, a, b, f32(out));
  return out;
}

export interface SampleOptions {
  /** 0 = greedy (argmax, ties to the lowest id). Default 1. */
  temperature?: number;
  /** Nucleus: keep the most probable tokens whose mass reaches topP (default 1 = all). */
  topP?: number;
  /** Seed of the draw (required unless greedy). */
  seed?: number | bigint;
  /** Generation step: a different draw per step (default 0). */
  step?: number | bigint;
  /** One stream per row (e.g. the sequence's index), so a row samples the same alone or in a batch. Default: the row index. */
  streams?: BigUint64Array | number[];
}

/**
 * One next token per row of `logits [rows, V]`: greedy, temperature and top-p
 * sampling, reproducible for (seed, step, stream) on every thread count.
 */
export function sampleTokens(logits: Tensor, opts: SampleOptions = {}): Int32Array {
  const fn = 'sampleTokens';
  cpuF32(fn, 'logits', logits, 2);
  const [rows, v] = logits.shape;
  if (v === 0) throw rangeError(fn, 'logits.shape[1]', '> 0', '0');
  const o = checkOptions(fn, opts);
  const temperature = checkNumber(fn, 'opts.temperature', o.temperature, 1, { min: 0 });
  const topP = checkNumber(fn, 'opts.topP', o.topP, 1, { gt: 0, max: 1 });
  const seed = u64(fn, 'opts.seed', o.seed, temperature === 0 ? 0n : undefined);
  const step = u64(fn, 'opts.step', o.step, 0n);
  let streams: BigUint64Array | null = null;
  if (o.streams !== undefined) {
    if (o.streams instanceof BigUint64Array) streams = o.streams;
    else if (Array.isArray(o.streams)) streams = BigUint64Array.from(o.streams.map((s, i) => u64(fn, `opts.streams[${i}]`, s)));
    else throw typeError(fn, 'opts.streams', 'a BigUint64Array or an array of non-negative integers', describe(o.streams));
    if (streams.length !== rows) throw rangeError(fn, 'opts.streams.length', `${rows} (one per row)`, `${streams.length}`);
  }
  const data = f32(logits);
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) throw rangeError(fn, `logits[${Math.floor(i / v)}, ${i % v}]`, 'finite', `${data[i]}`);
  const out = new Int32Array(rows);
  native().sampleTokens({ logits: data, rows, vocab: v, temperature, topP, seed, step, streams, out });
  return out;
}
