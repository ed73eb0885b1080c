// LayerNorm (with bias) and GELU (exact erf, tanh approximation, quick) as CPU
// ops on tensors, forward and backward: the layers of the ViT-style vision
// towers (lib/pretrained/vision.ts) over native/ops/norm_act. Arguments are
// checked here (TypeError / RangeError naming the argument); the kernels are
// O(elements), memory bound. CPU float32 only.
import { describe, rangeError, typeError } from '../errors.js';
import { native } from '../native.js';
import { emptyLike, Tensor } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, checkTensor, float32Vector } from '../validate.js';

/** Which GELU: 'erf' (exact, transformers "gelu"), 'tanh' ("gelu_pytorch_tanh" / "gelu_new"), 'quick' (CLIP's x·sigmoid(1.702x)). */
export type GeluApproximate = 'erf' | 'tanh' | 'quick';
const KINDS: readonly GeluApproximate[] = ['erf', 'tanh', 'quick'];

const f32 = (t: Tensor) => t.data as Float32Array;

function cpuF32(fn: string, arg: string, x: unknown, ndim?: number): Tensor {
  const t = checkTensor(fn, arg, x, { ndim, dtypes: ['float32'] });
  if (t.device !== 'cpu') throw typeError(fn, arg, 'a CPU tensor (LayerNorm and GELU have CPU kernels only)', describe(t));
  return t;
}

function rowsDim(fn: string, x: Tensor): [number, number] {
  if (x.shape.length < 1) throw rangeError(fn, 'x.shape', 'at least 1-D', '[]');
  const dim = x.shape[x.shape.length - 1];
  if (dim === 0) throw rangeError(fn, 'x.shape', 'a last dimension > 0', `[${x.shape.join(', ')}]`);
  return [x.size / dim, dim];
}

function vectorOf(fn: string, arg: string, v: unknown, dim: number): Tensor {
  const t = cpuF32(fn, arg, v, 1);
  if (t.shape[0] !== dim) throw rangeError(fn, `${arg}.shape`, `[${dim}]`, `[${t.shape.join(', ')}]`);
  return t;
}

function sameShape(fn: string, arg: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw rangeError(fn, `${arg}.shape`, `[${shape.join(', ')}]`, `[${t.shape.join(', ')}]`);
}

function kindOf(fn: string, v: unknown): number {
  const k = v ?? 'erf';
  const i = KINDS.indexOf(k as GeluApproximate);
  if (i < 0) throw typeError(fn, 'opts.approximate', "'erf', 'tanh' or 'quick'", describe(v));
  return i;
}

/**
 * LayerNorm over the last dimension (torch.nn.LayerNorm): `y = (x − mean)·rstd·gamma + beta`,
 * `rstd = 1/sqrt(var + eps)` (biased variance). `beta` may be omitted. Returns the row statistics for the backward pass.
 */
export function layerNorm(x: Tensor, gamma: Tensor, beta?: Tensor | null, opts?: { eps?: number }): { y: Tensor; mean: Float32Array; rstd: Float32Array } {
  const fn = 'layerNorm';
  cpuF32(fn, 'x', x);
  const [rows, dim] = rowsDim(fn, x);
  vectorOf(fn, 'gamma', gamma, dim);
  if (beta !== undefined && beta !== null) vectorOf(fn, 'beta', beta, dim);
  const o = checkOptions(fn, opts);
  const eps = checkNumber(fn, 'opts.eps', o.eps, 1e-5, { min: 0 });
  const y = emptyLike(x.shape, 'float32', 'cpu');
  const mean = new Float32Array(rows);
  const rstd = new Float32Array(rows);
  if (rows > 0) native().layernormForward({ x: f32(x), gamma: f32(gamma), beta: beta ? f32(beta) : null, rows, dim, eps, y: f32(y), mean, rstd });
  return { y, mean, rstd };
}

/**
 * Backward of {@link layerNorm}: `dx`, `dGamma`, `dBeta` (added into
 * `opts.dGamma` / `opts.dBeta` when given). `mean`/`rstd` from the forward pass, or both omitted (recomputed).
 */
export function layerNormBackward(
  dy: Tensor, x: Tensor, gamma: Tensor, mean?: Float32Array | null, rstd?: Float32Array | null,
  opts?: { eps?: number; dGamma?: Tensor; dBeta?: Tensor },
): { dx: Tensor; dGamma: Tensor; dBeta: Tensor } {
  const fn = 'layerNormBackward';
  cpuF32(fn, 'dy', dy);
  cpuF32(fn, 'x', x);
  const [rows, dim] = rowsDim(fn, x);
  sameShape(fn, 'dy', dy, x.shape);
  vectorOf(fn, 'gamma', gamma, dim);
  const o = checkOptions(fn, opts);
  const eps = checkNumber(fn, 'opts.eps', o.eps, 1e-5, { min: 0 });
  const hasM = mean !== undefined && mean !== null, hasR = rstd !== undefined && rstd !== null;
  if (hasM !== hasR) throw typeError(fn, hasM ? 'rstd' : 'mean', 'given together with the other row statistic (or both omitted)', 'missing');
  const m = hasM ? float32Vector(fn, 'mean', mean, rows) : null;
  const r = hasR ? float32Vector(fn, 'rstd', rstd, rows) : null;
  if (o.dGamma !== undefined) vectorOf(fn, 'opts.dGamma', o.dGamma, dim);
  if (o.dBeta !== undefined) vectorOf(fn, 'opts.dBeta', o.dBeta, dim);
  const accG = o.dGamma !== undefined, accB = o.dBeta !== undefined;
  const dGamma = accG ? (o.dGamma as Tensor) : emptyLike([dim], 'float32', 'cpu');
  const dBeta = accB ? (o.dBeta as Tensor) : emptyLike([dim], 'float32', 'cpu');
  const dx = emptyLike(x.shape, 'float32', 'cpu');
  // The kernel's accumulate flag covers both: a fresh output starts at zero.
  if (accG !== accB) (accG ? f32(dBeta) : f32(dGamma)).fill(0);
  native().layernormBackward({
    dy: f32(dy), x: f32(x), gamma: f32(gamma), mean: m, rstd: r, rows, dim, eps, dx: f32(dx),
    dGamma: f32(dGamma), dBeta: f32(dBeta), accumulate: accG || accB,
  });
  return { dx, dGamma, dBeta };
}

/** GELU, element-wise: `opts.approximate` 'erf' (default), 'tanh' or 'quick'. */
export function gelu(x: Tensor, opts?: { approximate?: GeluApproximate }): Tensor {
  const fn = 'gelu';
  cpuF32(fn, 'x', x);
  const o = checkOptions(fn, opts);
  const kind = kindOf(fn, o.approximate);
  const y = emptyLike(x.shape, 'float32', 'cpu');
  if (x.size > 0) native().geluForward({ x: f32(x), n: x.size, kind, y: f32(y) });
  return y;
}

/** Backward of {@link gelu}: `dx = dy · gelu'(x)`. */
export function geluBackward(dy: Tensor, x: Tensor, opts?: { approximate?: GeluApproximate; inPlace?: boolean }): Tensor {
  const fn = 'geluBackward';
  cpuF32(fn, 'dy', dy);
  cpuF32(fn, 'x', x);
  sameShape(fn, 'dy', dy, x.shape);
  const o = checkOptions(fn, opts);
  const kind = kindOf(fn, o.approximate);
  const inPlace = checkBoolean(fn, 'opts.inPlace', o.inPlace, false);
  const dx = inPlace ? dy : emptyLike(x.shape, 'float32', 'cpu');
  if (x.size > 0) native().geluBackward({ dy: f32(dy), x: f32(x), n: x.size, kind, dx: f32(dx) });
  return dx;
}
