// vp.attention / vp.attentionBackward: fused scaled-dot-product attention
// (docs/attention.md). FlashAttention's varlen layout: q [totalQ, H, D], k and v
// [totalK, Hkv, D] with H % Hkv == 0 (grouped-query attention) and D <= 256
// (the core's limit, read through limits().maxHeadDim); sequences delimited by
// cumulative lengths. Never materializes a T×T matrix.
import type { AttentionLayoutArgs } from '../addon-types.js';
import { rangeError, typeError } from '../errors.js';
import { emptyLike, type Tensor } from '../tensor.js';
import { limits, native } from '../native.js';
import { checkBoolean, checkCuSeqlens, checkNumber, checkOptions, checkSameDevice, checkSameDType, checkTensor } from '../validate.js';

export interface AttentionOptions {
  /**
   * Cumulative query lengths, `Int32Array(B+1)` (or a 1-D CPU int32 tensor) starting at 0 and
   * ending at totalQ. Without it: one sequence of all Q rows against one of all K rows.
   */
  cuSeqlensQ?: Int32Array | Tensor;
  /** Cumulative key lengths, same count as `cuSeqlensQ`. Omitted: K uses `cuSeqlensQ` (then totalK must equal totalQ). */
  cuSeqlensK?: Int32Array | Tensor;
  /** Causal mask aligned to the bottom-right corner: row i of a sequence sees keys j <= i + (Tk − Tq). Default false. */
  causal?: boolean;
  /** Score scale; default `1/sqrt(D)`. */
  scale?: number;
}

export interface AttentionResult {
  /** `[totalQ, H, D]`, dtype and device of `q`. */
  out: Tensor;
  /** `[H, totalQ]` float32: natural log of the sum of exponentials of the scaled scores; −Infinity for a row that sees no key. */
  lse: Tensor;
}

export interface AttentionGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

interface Checked {
  totalQ: number;
  totalK: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  cuQ: Int32Array | null;
  cuK: Int32Array | null;
  causal: boolean;
  scale: number | undefined;
  device: 'cpu' | 'cuda';
  dtype: Tensor['dtype'];
}

function checkInputs(fn: string, q: unknown, k: unknown, v: unknown, opts: unknown): Checked {
  const qt = checkTensor(fn, 'q', q, { ndim: 3 });
  const kt = checkTensor(fn, 'k', k, { ndim: 3 });
  const vt = checkTensor(fn, 'v', v, { ndim: 3 });
  const device = checkSameDevice(fn, { q: qt, k: kt, v: vt });
  const dtype = checkSameDType(fn, { q: qt, k: kt, v: vt });
  const [totalQ, heads, headDim] = qt.shape;
  const [totalK, kvHeads, kd] = kt.shape;
  if (heads < 1) throw rangeError(fn, 'q.shape', '[totalQ, H >= 1, D]', `[${qt.shape.join(', ')}]`);
  const { maxHeadDim } = limits();
  if (headDim < 1 || headDim > maxHeadDim)
    throw rangeError(fn, 'q.shape', `[totalQ, H, D] with 1 <= D <= ${maxHeadDim}`, `[${qt.shape.join(', ')}]`);
  if (kvHeads < 1) throw rangeError(fn, 'k.shape', '[totalK, Hkv >= 1, D]', `[${kt.shape.join(', ')}]`);
  if (kd !== headDim) throw rangeError(fn, 'k.shape', `[totalK, Hkv, D=${headDim}] (D of q)`, `[${kt.shape.join(', ')}]`);
  if (heads % kvHeads !== 0)
    throw rangeError(fn, 'k.shape', `[totalK, Hkv, D] with Hkv dividing H=${heads}`, `[${kt.shape.join(', ')}]`);
  if (vt.shape.some((d, i) => d !== kt.shape[i]))
    throw rangeError(fn, 'v.shape', `[${kt.shape.join(', ')}] like k`, `[${vt.shape.join(', ')}]`);
  const o = checkOptions(fn, opts);
  const causal = checkBoolean(fn, 'opts.causal', o.causal, false);
  const scale = o.scale === undefined ? undefined : checkNumber(fn, 'opts.scale', o.scale, 0);
  let cuQ: Int32Array | null = null;
  let cuK: Int32Array | null = null;
  if (o.cuSeqlensQ !== undefined) {
    cuQ = checkCuSeqlens(fn, 'opts.cuSeqlensQ', o.cuSeqlensQ, totalQ);
    if (cuQ.length < 2) throw rangeError(fn, 'opts.cuSeqlensQ.length', '>= 2 (B+1 offsets, B >= 1)', `${cuQ.length}`);
    if (o.cuSeqlensK !== undefined) {
      cuK = checkCuSeqlens(fn, 'opts.cuSeqlensK', o.cuSeqlensK, totalK);
      if (cuK.length !== cuQ.length)
        throw rangeError(fn, 'opts.cuSeqlensK.length', `${cuQ.length} like opts.cuSeqlensQ`, `${cuK.length}`);
    } else if (totalK !== totalQ) {
      throw rangeError(fn, 'k.shape', `[totalQ=${totalQ}, Hkv, D] (without opts.cuSeqlensK, K uses opts.cuSeqlensQ)`, `[${kt.shape.join(', ')}]`);
    }
  } else if (o.cuSeqlensK !== undefined) {
    throw typeError(fn, 'opts.cuSeqlensK', 'given together with opts.cuSeqlensQ', 'opts.cuSeqlensK alone');
  }
  return { totalQ, totalK, heads, kvHeads, headDim, cuQ, cuK, causal, scale, device, dtype };
}

/** The shapes, sequence layout, mask and dtype that both directions pass to the addon. */
function layoutArgs(q: Tensor, k: Tensor, c: Checked): AttentionLayoutArgs {
  return { qShape: [...q.shape], kShape: [...k.shape], cuSeqlensQ: c.cuQ, cuSeqlensK: c.cuK, causal: c.causal, scale: c.scale, dtype: c.dtype };
}

function checkLike(fn: string, arg: string, x: unknown, like: Tensor, likeName: string): Tensor {
  const t = checkTensor(fn, arg, x, { ndim: like.shape.length });
  if (t.device !== like.device) throw typeError(fn, arg, `on ${like.device} like ${likeName}`, `a tensor on ${t.device}`);
  if (t.dtype !== like.dtype) throw typeError(fn, `${arg}.dtype`, `${like.dtype} like ${likeName}`, t.dtype);
  if (t.shape.some((d, i) => d !== like.shape[i]))
    throw rangeError(fn, `${arg}.shape`, `[${like.shape.join(', ')}] like ${likeName}`, `[${t.shape.join(', ')}]`);
  return t;
}

function checkLse(fn: string, x: unknown, c: Checked): Tensor {
  const t = checkTensor(fn, 'lse', x, { ndim: 2, dtypes: ['float32'] });
  if (t.device !== c.device) throw typeError(fn, 'lse', `on ${c.device} like q`, `a tensor on ${t.device}`);
  if (t.shape[0] !== c.heads || t.shape[1] !== c.totalQ)
    throw rangeError(fn, 'lse.shape', `[H=${c.heads}, totalQ=${c.totalQ}]`, `[${t.shape.join(', ')}]`);
  return t;
}

/**
 * Fused attention forward: `out = softmax(scale · q·kᵀ + mask) · v` per sequence and head, and
 * `lse`, the log-sum-exp of each row's scaled scores (what the backward needs).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): AttentionResult {
  const fn = 'attention';
  const c = checkInputs(fn, q, k, v, opts);
  const out = emptyLike(q.shape, c.dtype, c.device);
  const lse = emptyLike([c.heads, c.totalQ], 'float32', c.device);
  native().attention({ q: q.nativeArg, k: k.nativeArg, v: v.nativeArg, out: out.nativeArg, lse: lse.nativeArg, ...layoutArgs(q, k, c) });
  return { out, lse };
}

/**
 * Fused attention backward: the gradients of a loss with respect to q, k and v, given its
 * gradient `dout` with respect to `out`, the forward's inputs, and its `out` and `lse`.
 * For grouped-query attention, dk and dv sum over the query heads of each group.
 */
export function attentionBackward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, opts?: AttentionOptions): AttentionGrads {
  const fn = 'attentionBackward';
  const c = checkInputs(fn, q, k, v, opts);
  checkLike(fn, 'dout', dout, q, 'q');
  checkLike(fn, 'out', out, q, 'q');
  checkLse(fn, lse, c);
  const dq = emptyLike(q.shape, c.dtype, c.device);
  const dk = emptyLike(k.shape, c.dtype, c.device);
  const dv = emptyLike(k.shape, c.dtype, c.device);
  native().attentionBackward({
    dout: dout.nativeArg, q: q.nativeArg, k: k.nativeArg, v: v.nativeArg, out: out.nativeArg, lse: lse.nativeArg,
    dq: dq.nativeArg, dk: dk.nativeArg, dv: dv.nativeArg, ...layoutArgs(q, k, c),
  });
  return { dq, dk, dv };
}
