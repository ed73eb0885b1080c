// Token log-probabilities: vp.tokenLogprobs, vp.linearTokenLogprobs and their
// backward passes (docs/grpo.md).
//
//   tokenLogprobs(logits [N, V], targets)           → Float32Array [N]
//   linearTokenLogprobs(hidden [N, d], weight [V, d], targets)
//                                                    → Float32Array [N]
//
// logprob[i] = log_softmax(logits[i] / temperature)[targets[i]], with
// logits = hidden · weightᵀ for the linear form, which never allocates N×V.
import type { LinearLogprobsArgs } from '../addon-types.js';
import { describe, rangeError } from '../errors.js';
import { native } from '../native.js';
import { emptyLike, overwrittenLike, Tensor } from '../tensor.js';
import { checkNumber, checkOptions, checkSameDevice, checkSameDType, checkTensor, float32Vector, int32Vector } from '../validate.js';

export interface LogprobsOptions {
  /** Divide the logits by this before the log-softmax (TRL's sampling temperature; default 1). */
  temperature?: number;
}

/** A per-row int32 vector (see int32Vector in lib/validate.ts): one entry per row. */
export function int32Rows(fn: string, arg: string, v: unknown, length: number): Int32Array {
  return int32Vector(fn, arg, v, length, 'one per row');
}

/** A per-row float32 vector on the host (see float32Vector in lib/validate.ts). */
export function float32Rows(fn: string, arg: string, v: unknown, length?: number, lengthWhat = 'one per row'): Float32Array {
  return float32Vector(fn, arg, v, length, lengthWhat);
}

/** Throws a RangeError naming the first non-finite element. */
export function checkFinite(fn: string, arg: string, x: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw rangeError(fn, `${arg}[${i}]`, 'finite', describe(x[i]));
  }
}

/** Every target in [0, v). */
export function checkTargets(fn: string, targets: Int32Array, v: number): void {
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i];
    if (t < 0 || t >= v) throw rangeError(fn, `targets[${i}]`, `in [0, ${v}) (the vocabulary size)`, `${t}`);
  }
}

function temperatureOf(fn: string, opts: unknown): number {
  const o = checkOptions(fn, opts);
  return checkNumber(fn, 'opts.temperature', o.temperature, 1, { gt: 0 });
}

function checkLogits(fn: string, logits: unknown): Tensor {
  const t = checkTensor(fn, 'logits', logits, { ndim: 2 });
  if (t.shape[1] < 1 && t.shape[0] > 0) throw rangeError(fn, 'logits.shape', '[N, V] with V >= 1', `[${t.shape.join(', ')}]`);
  return t;
}

/** hidden [N, d] and weight [V, d]: same device and dtype, V >= 1. */
export function checkLinearArgs(fn: string, hidden: unknown, weight: unknown): [Tensor, Tensor] {
  const h = checkTensor(fn, 'hidden', hidden, { ndim: 2 });
  const w = checkTensor(fn, 'weight', weight, { ndim: 2 });
  checkSameDevice(fn, { hidden: h, weight: w });
  checkSameDType(fn, { hidden: h, weight: w });
  if (w.shape[1] !== h.shape[1]) throw rangeError(fn, 'weight.shape', `[V, ${h.shape[1]}] to match hidden [N, d=${h.shape[1]}]`, `[${w.shape.join(', ')}]`);
  if (w.shape[0] < 1) throw rangeError(fn, 'weight.shape', '[V, d] with V >= 1', `[${w.shape.join(', ')}]`);
  return [h, w];
}

/** What every linear log-prob binding takes: the projection's operands and the targets. */
export function linearArgs(hidden: Tensor, weight: Tensor, targets: Int32Array): LinearLogprobsArgs {
  return { hidden: hidden.nativeArg, hiddenShape: [...hidden.shape], weight: weight.nativeArg, weightShape: [...weight.shape], dtype: hidden.dtype, targets };
}

/** log_softmax(logits[i] / T)[targets[i]] for every row, in one online pass per row. */
export function tokenLogprobs(logits: Tensor, targets: Int32Array | Tensor, opts?: LogprobsOptions): Float32Array {
  const fn = 'tokenLogprobs';
  const l = checkLogits(fn, logits);
  const [n, v] = l.shape;
  const t = int32Rows(fn, 'targets', targets, n);
  const temperature = temperatureOf(fn, opts);
  checkTargets(fn, t, v);
  const out = new Float32Array(n);
  native().tokenLogprobs(l.nativeArg, [...l.shape], l.dtype, t, out, temperature);
  return out;
}

/** dLogits[i, v] = dLogprobs[i] / T · (1[v = targets[i]] − softmax(logits[i] / T)[v]); same device and dtype as logits. */
export function tokenLogprobsBackward(dLogprobs: Float32Array | Tensor, logits: Tensor, targets: Int32Array | Tensor, opts?: LogprobsOptions): Tensor {
  const fn = 'tokenLogprobsBackward';
  const l = checkLogits(fn, logits);
  const [n, v] = l.shape;
  const dl = float32Rows(fn, 'dLogprobs', dLogprobs, n);
  const t = int32Rows(fn, 'targets', targets, n);
  const temperature = temperatureOf(fn, opts);
  checkTargets(fn, t, v);
  checkFinite(fn, 'dLogprobs', dl);
  const out = emptyLike(l.shape, l.dtype, l.device);
  native().tokenLogprobsBackward({ dLogprobs: dl, logits: l.nativeArg, shape: [...l.shape], dtype: l.dtype, targets: t, dLogits: out.nativeArg, temperature });
  return out;
}

/**
 * Token log-probs through the output projection (logits = hidden · weightᵀ),
 * computed in tiles: no N×V buffer is ever allocated.
 */
export function linearTokenLogprobs(hidden: Tensor, weight: Tensor, targets: Int32Array | Tensor, opts?: LogprobsOptions): Float32Array {
  const fn = 'linearTokenLogprobs';
  const [h, w] = checkLinearArgs(fn, hidden, weight);
  const n = h.shape[0];
  const t = int32Rows(fn, 'targets', targets, n);
  const temperature = temperatureOf(fn, opts);
  checkTargets(fn, t, w.shape[0]);
  const out = new Float32Array(n);
  native().linearTokenLogprobs({ ...linearArgs(h, w, t), out, temperature });
  return out;
}

/**
 * Gradients of Σ dLogprobs[i]·logprob[i] for hidden and weight, without an
 * N×V buffer (recomputes the logits: three projections in all), and the
 * log-probs themselves from the same pass (equal to what
 * {@link linearTokenLogprobs} returns): when dLogprobs is known before the
 * forward values are (an SFT loss: −1/count per target row), this one call is
 * the whole forward and backward step.
 */
export function linearTokenLogprobsBackward(
  dLogprobs: Float32Array | Tensor,
  hidden: Tensor,
  weight: Tensor,
  targets: Int32Array | Tensor,
  opts?: LogprobsOptions,
): { dHidden: Tensor; dWeight: Tensor; logprobs: Float32Array } {
  const fn = 'linearTokenLogprobsBackward';
  const [h, w] = checkLinearArgs(fn, hidden, weight);
  const n = h.shape[0];
  const dl = float32Rows(fn, 'dLogprobs', dLogprobs, n);
  const t = int32Rows(fn, 'targets', targets, n);
  const temperature = temperatureOf(fn, opts);
  checkTargets(fn, t, w.shape[0]);
  checkFinite(fn, 'dLogprobs', dl);
  // The kernel writes every element of both gradients (CPU outputs need no zero fill).
  const cpuF32 = h.device === 'cpu' && h.dtype === 'float32';
  const dHidden = cpuF32 ? overwrittenLike(h.shape) : emptyLike(h.shape, h.dtype, h.device);
  const dWeight = cpuF32 ? overwrittenLike(w.shape) : emptyLike(w.shape, w.dtype, w.device);
  const logprobs = new Float32Array(n);
  native().linearTokenLogprobsBackward({ ...linearArgs(h, w, t), dLogprobs: dl, dHidden: dHidden.nativeArg, dWeight: dWeight.nativeArg, temperature, logprobs });
  return { dHidden, dWeight, logprobs };
}

/**
 * Bytes of scratch memory the CPU linear log-prob kernels allocate for a
 * problem of this size (beyond inputs and outputs; freed before they return).
 */
export function linearLogprobsWorkspaceBytes(n: number, d: number, v: number, opts: { threads?: number; backward?: boolean } = {}): number {
  const fn = 'linearLogprobsWorkspaceBytes';
  for (const [name, x] of [['n', n], ['d', d], ['v', v]] as const) checkNumber(fn, name, x, 0, { min: 0, integer: true });
  const threads = checkNumber(fn, 'opts.threads', opts.threads, native().backendInfo().cpu.threads, { min: 1, integer: true });
  return native().linearLogprobsWorkspaceBytes(n, d, v, threads, opts.backward ?? true);
}
