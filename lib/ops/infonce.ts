// vp.infoNce / vp.infoNceBackward / vp.infoNceWithGrad: the fused InfoNCE
// contrastive loss (docs/infonce.md), validated here and computed by the native core
// (CPU: blocks of query rows on the core's SGEMM; CUDA: tiled tensor-core kernels).
//
//   s(i, j) = <q̂_i, k̂_j> / τ     loss = mean_i( lse_i − s(i, positive_i) )
import type { InfoNceArgs } from '../addon-types.js';
import { describe, rangeError, typeError } from '../errors.js';
import { native } from '../native.js';
import { emptyLike, Tensor, type DType, type Device } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, checkSameDevice, checkSameDType, checkTensor, int32Vector } from '../validate.js';

export interface InfoNceOptions {
  /** The index of each query's positive key: `Int32Array [N]` (or a 1-D CPU int32 tensor), each in `[0, M)`. */
  positive: Int32Array | Tensor;
  /** τ > 0 (default 0.07). */
  temperature?: number;
  /** L2-normalize query and key rows first (default true); a zero-norm row is then an error. */
  normalize?: boolean;
}

export interface InfoNceBackwardOptions extends InfoNceOptions {
  /** ∂L/∂loss, the upstream gradient (default 1). */
  gradLoss?: number;
}

export interface InfoNceResult {
  loss: number;
  /** `float32 [N]` on the inputs' device: log Σ_j exp s(i, j), what the backward needs. */
  lse: Tensor;
}

export interface InfoNceGradients {
  /** ∂loss/∂queries, `[N, D]`, the queries' dtype and device (times gradLoss). */
  dQueries: Tensor;
  /** ∂loss/∂keys, `[M, D]`. */
  dKeys: Tensor;
  /** ∂loss/∂log τ (times gradLoss), for a learnable log-temperature. */
  dLogTemperature: number;
}

interface Prepared {
  n: number;
  m: number;
  dtype: DType;
  device: Device;
  positive: Int32Array;
  temperature: number;
  normalize: boolean;
  gradLoss: number;
}

function prepare(fn: string, queries: unknown, keys: unknown, opts: unknown): Prepared {
  const q = checkTensor(fn, 'queries', queries, { ndim: 2 });
  const k = checkTensor(fn, 'keys', keys, { ndim: 2 });
  const device = checkSameDevice(fn, { queries: q, keys: k });
  const dtype = checkSameDType(fn, { queries: q, keys: k });
  const [n, d] = q.shape;
  const [m, dk] = k.shape;
  if (n < 1) throw rangeError(fn, 'queries.shape', '[N, D] with N >= 1', `[${q.shape.join(', ')}]`);
  if (d < 1) throw rangeError(fn, 'queries.shape', '[N, D] with D >= 1', `[${q.shape.join(', ')}]`);
  if (m < 1) throw rangeError(fn, 'keys.shape', '[M, D] with M >= 1', `[${k.shape.join(', ')}]`);
  if (dk !== d) throw rangeError(fn, 'keys.shape', `[M, ${d}] (the D of queries)`, `[${k.shape.join(', ')}]`);
  if (opts === undefined) throw typeError(fn, 'opts', 'an object with opts.positive', 'undefined');
  const o = checkOptions(fn, opts);
  const positive = int32Vector(fn, 'opts.positive', o.positive, n);
  for (let i = 0; i < n; i++) {
    if (positive[i] < 0 || positive[i] >= m)
      throw rangeError(fn, `opts.positive[${i}]`, `a key index in [0, ${m})`, `${positive[i]}`);
  }
  const temperature = checkNumber(fn, 'opts.temperature', o.temperature, 0.07, { gt: 0 });
  if (!(Math.fround(temperature) > 0) || !Number.isFinite(Math.fround(temperature)))
    throw rangeError(fn, 'opts.temperature', 'a positive number that float32 can hold', describe(temperature));
  const normalize = checkBoolean(fn, 'opts.normalize', o.normalize, true);
  const gradLoss = checkNumber(fn, 'opts.gradLoss', o.gradLoss, 1);
  return { n, m, dtype, device, positive, temperature, normalize, gradLoss };
}

const MODE = { forward: 0, backward: 1, withGrad: 2 } as const;

/** Runs the native op; on failure frees the outputs it was given (device memory at once). */
function call(mode: InfoNceArgs['mode'], q: Tensor, k: Tensor, p: Prepared, lse: Tensor, dq?: Tensor, dk?: Tensor): { loss: number; dLogTemperature: number } {
  try {
    return native().infoNce({
      mode, queries: q.nativeArg, queriesShape: [...q.shape], keys: k.nativeArg, keysShape: [...k.shape], dtype: p.dtype,
      positive: p.positive, temperature: p.temperature, normalize: p.normalize, gradLoss: p.gradLoss, lse: lse.nativeArg,
      dQueries: dq?.nativeArg, dKeys: dk?.nativeArg,
    });
  } catch (e) {
    if (mode !== MODE.backward) lse.dispose();
    dq?.dispose();
    dk?.dispose();
    throw e;
  }
}

/**
 * InfoNCE loss of `queries [N, D]` against `keys [M, D]` (keys beyond the
 * positives are extra negatives), with `opts.positive[i]` the positive key of
 * query i. Never allocates N × M.
 */
export function infoNce(queries: Tensor, keys: Tensor, opts: InfoNceOptions): InfoNceResult {
  const p = prepare('infoNce', queries, keys, opts);
  const lse = emptyLike([p.n], 'float32', p.device);
  const r = call(MODE.forward, queries, keys, p, lse);
  return { loss: r.loss, lse };
}

/** The lse argument of infoNceBackward: a float32 tensor [N] on the inputs' device, or a Float32Array. */
function checkLse(fn: string, lse: unknown, p: Prepared): { tensor: Tensor; temporary: boolean } {
  if (lse instanceof Float32Array) {
    if (lse.length !== p.n) throw rangeError(fn, 'lse.length', `${p.n}`, `${lse.length}`);
    const t = new Tensor([p.n], 'float32', 'cpu', lse);
    return p.device === 'cpu' ? { tensor: t, temporary: false } : { tensor: t.to('cuda'), temporary: true };
  }
  const t = checkTensor(fn, 'lse', lse, { dtypes: ['float32'] });
  if (t.shape.length !== 1 || t.shape[0] !== p.n) throw rangeError(fn, 'lse.shape', `[${p.n}]`, `[${t.shape.join(', ')}]`);
  if (t.device !== p.device) throw typeError(fn, 'lse', `on ${p.device} like queries`, `a tensor on ${t.device}`);
  return { tensor: t, temporary: false };
}

/**
 * Gradients of infoNce from its `lse`: recomputes the scores tile by tile.
 * `opts` must match the forward's (positive, temperature, normalize).
 */
export function infoNceBackward(queries: Tensor, keys: Tensor, lse: Tensor | Float32Array, opts: InfoNceBackwardOptions): InfoNceGradients {
  const fn = 'infoNceBackward';
  const p = prepare(fn, queries, keys, opts);
  const l = checkLse(fn, lse, p);
  const dQueries = emptyLike(queries.shape, p.dtype, p.device);
  const dKeys = emptyLike(keys.shape, p.dtype, p.device);
  try {
    const r = call(MODE.backward, queries, keys, p, l.tensor, dQueries, dKeys);
    return { dQueries, dKeys, dLogTemperature: r.dLogTemperature };
  } finally {
    if (l.temporary) l.tensor.dispose();
  }
}

/**
 * The loss and its gradients in one pass over blocks of query rows (three
 * matrix products where infoNce + infoNceBackward take four): what a training
 * step calls. The same numbers as the two separate calls.
 */
export function infoNceWithGrad(queries: Tensor, keys: Tensor, opts: InfoNceBackwardOptions): InfoNceResult & InfoNceGradients {
  const p = prepare('infoNceWithGrad', queries, keys, opts);
  const lse = emptyLike([p.n], 'float32', p.device);
  const dQueries = emptyLike(queries.shape, p.dtype, p.device);
  const dKeys = emptyLike(keys.shape, p.dtype, p.device);
  const r = call(MODE.withGrad, queries, keys, p, lse, dQueries, dKeys);
  return { loss: r.loss, lse, dQueries, dKeys, dLogTemperature: r.dLogTemperature };
}
