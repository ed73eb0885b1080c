// bfloat16 weights for pretrained models (loadPretrained(dir, { dtype: 'bfloat16' })):
// a frozen weight matrix is held as bfloat16 bits (a CPU 'bfloat16' tensor over a
// Uint16Array, half the bytes of float32) and its products run through
// vp::gemm_f32_bf16 (native/ops/matmul/gemm_f32_bf16.cpp): the float32 activation
// rounded to bfloat16 (nearest even), float32 accumulation, a float32 result —
// AVX512-BF16 where CPUID has it, else widened to float32 and the SGEMM (the same
// values; only the order of float32 sums differs). A trained weight is a float32
// master (widened exactly from bfloat16 when training starts).
//
// The helpers take either dtype: a float32 weight goes through exactly the call it
// went through before (vp.linear, vp.matmul, vp.embedding), so float32 models are
// unchanged bit for bit.
// On CUDA (loadPretrained's device 'cuda') a parameter's value is a device tensor
// of the same dtype; the helpers below that read or write values copy through the
// host, and toBf16 / toF32 convert on the device (lib/pretrained/device.ts runs
// the products there).
// Cost: a bf16 product is 2·M·N·K flops plus M·K roundings; an embedding lookup
// widens the selected rows (T·d); rounding or widening a parameter is O(size).
import { embedding, linear } from '../ops/layers.js';
import { matmul } from '../ops/matmul.js';
import { native } from '../native.js';
import { overwrittenLike, Tensor, tensor } from '../tensor.js';
import { fromFloat32, toFloat32 } from './checkpoint.js';
import type { Param } from './decoder.js';

const f32 = (t: Tensor) => t.data as Float32Array;

/** A CPU bfloat16 tensor over `bits` (no copy). */
export function bf16Tensor(bits: Uint16Array, shape: readonly number[]): Tensor {
  return new Tensor([...shape], 'bfloat16', 'cpu', bits);
}

export function isBf16(t: Tensor): boolean {
  return t.dtype === 'bfloat16';
}

/** float32 values rounded to bfloat16 bits (nearest even, NaN kept; vp::round_to_bf16). */
export function roundBf16(x: Float32Array): Uint16Array {
  return fromFloat32(x, 'BF16') as Uint16Array;
}

/** bfloat16 bits widened to float32 (exact). */
export function widenBf16(bits: Uint16Array): Float32Array {
  return toFloat32({ dtype: 'BF16', shape: [bits.length], data: bits });
}

/** out[m, n] = bf16(a)[m, k] · (transB ? Wᵀ : W) (+ bias), W bfloat16 ([n, k] with transB, else [k, n]). */
function mixed(a: Tensor, w: Tensor, transB: boolean, bias?: Tensor): Tensor {
  if (a.dtype !== 'float32' || a.device !== 'cpu' || a.shape.length !== 2) throw new TypeError(`bf16 matmul: a must be a 2-D CPU float32 tensor, got ${a.dtype} [${a.shape.join(', ')}]`);
  const [m, k] = a.shape;
  const [r, c] = w.shape;
  const n = transB ? r : c;
  if ((transB ? c : r) !== k) throw new RangeError(`bf16 matmul: weight [${w.shape.join(', ')}] does not match an input of width ${k}`);
  if (bias && bias.size !== n) throw new RangeError(`bf16 matmul: bias of ${bias.size} values, expected ${n}`);
  const out = overwrittenLike([m, n]); // every element is written (K = 0: zeros, plus the bias)
  native().matmulF32Bf16({ a: f32(a), b: w.data as Uint16Array, bias: bias ? f32(bias) : null, out: f32(out), m, n, k, transB });
  return out;
}

/**
 * op(a) · op(b) of two 2-D CPU float32 tensors with both operands rounded to bfloat16 and
 * float32 accumulation (vp::gemm_f32_via_bf16): a weight gradient under bf16 compute.
 */
export function matmulViaBf16(a: Tensor, b: Tensor, opts: { transA?: boolean; transB?: boolean } = {}): Tensor {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  for (const [name, t] of [['a', a], ['b', b]] as const)
    if (t.dtype !== 'float32' || t.device !== 'cpu' || t.shape.length !== 2) throw new TypeError(`bf16 matmul: ${name} must be a 2-D CPU float32 tensor, got ${t.dtype} [${t.shape.join(', ')}]`);
  const [m, k] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [kb, n] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (kb !== k) throw new RangeError(`bf16 matmul: b [${b.shape.join(', ')}] does not match a's K = ${k}`);
  const out = overwrittenLike([m, n]);
  native().matmulViaBf16({ a: f32(a), b: f32(b), out: f32(out), m, n, k, transA, transB });
  return out;
}

/** y = x·Wᵀ (+ b): vp.linear for a float32 W, the bf16 GEMM for a bfloat16 one. */
export function linearW(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  return isBf16(w) ? mixed(x, w, true, b) : linear(x, w, b);
}

/** a·Wᵀ with transB (the LM head), else a·W (dx of a linear): vp.matmul for a float32 W. */
export function matmulW(a: Tensor, w: Tensor, opts: { transB?: boolean } = {}): Tensor {
  const transB = opts.transB ?? false;
  return isBf16(w) ? mixed(a, w, transB) : matmul(a, w, opts.transB === undefined ? undefined : { transB });
}

/** Rows `ids` of an embedding table [V, d] as float32 (vp.embedding for a float32 table). */
export function embeddingW(table: Tensor, ids: Int32Array): Tensor {
  if (!isBf16(table)) return embedding(table, ids);
  const [V, d] = table.shape;
  const src = table.data as Uint16Array;
  const out = new Uint32Array(ids.length * d);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (!(id >= 0 && id < V)) throw new RangeError(`embedding: ids[${t}] must be in [0, ${V}), got ${id}`);
    const o = t * d, s = id * d;
    for (let j = 0; j < d; j++) out[o + j] = src[s + j] << 16;
  }
  return tensor(new Float32Array(out.buffer), [ids.length, d]);
}

/** A parameter's value on the host, same dtype (the tensor itself on the CPU; a download from CUDA). */
export function hostValue(p: Param): Tensor {
  return p.value.device === 'cuda' ? p.value.to('cpu') : p.value;
}

/** A parameter's values as float32 (its own array when a float32 CPU tensor, else a widened or downloaded copy). */
export function paramF32(p: Param): Float32Array {
  const v = hostValue(p);
  return isBf16(v) ? widenBf16(v.data as Uint16Array) : f32(v);
}

/** Overwrites a parameter's values (rounded to bfloat16 when it is held in bfloat16). */
export function setParamF32(p: Param, v: Float32Array): void {
  if (p.value.device === 'cuda') {
    const host = isBf16(p.value) ? bf16Tensor(roundBf16(v), p.shape) : tensor(Float32Array.from(v), [...p.shape]);
    const old = p.value;
    p.value = host.to('cuda');
    old.dispose();
    return;
  }
  if (isBf16(p.value)) (p.value.data as Uint16Array).set(roundBf16(v));
  else f32(p.value).set(v);
}

/** Holds a parameter in bfloat16 (rounded to nearest even; exact for values that came from bfloat16). */
export function toBf16(p: Param): void {
  if (isBf16(p.value)) return;
  if (p.value.device === 'cuda') {
    const old = p.value;
    p.value = old.to('cuda', 'bfloat16');
    old.dispose();
  } else p.value = bf16Tensor(roundBf16(f32(p.value)), p.shape);
}

/** Gives a parameter a float32 master (widened exactly from bfloat16). */
export function toF32(p: Param): void {
  if (!isBf16(p.value)) return;
  if (p.value.device === 'cuda') {
    const old = p.value;
    p.value = old.to('cuda', 'float32');
    old.dispose();
  } else p.value = tensor(widenBf16(p.value.data as Uint16Array), [...p.shape]);
}

/** A copy of a parameter's value tensor in the same dtype (on the same device). */
export function copyValue(p: Param): Tensor {
  if (p.value.device === 'cuda') return p.value.to('cuda');
  return isBf16(p.value) ? bf16Tensor((p.value.data as Uint16Array).slice(), p.shape) : tensor(f32(p.value).slice(), [...p.shape]);
}

/**
 * bfloat16 compute (PretrainedModel.computeDtype): the bfloat16 copies of float32 CPU weight
 * matrices that the products multiply by, shared by the decoder, the vision tower and the
 * connector. A copy is made on first use and kept until the weight changes: replaced (a new
 * tensor: checked on every use) or written in place (changed(): after an optimizer step, a
 * load, setParameters, copyStateFrom, mergeLora). Cost: one rounding of a weight per change;
 * 2 bytes a weight held.
 */
export class Bf16Compute {
  #on = false;
  #copies = new Map<Param, { source: Tensor; copy: Tensor }>();

  get on(): boolean {
    return this.#on;
  }

  set on(v: boolean) {
    this.#on = v;
    this.#copies.clear();
  }

  /** The weights were written in place: the copies are stale. */
  changed(): void {
    this.#copies.clear();
  }

  /** Bytes held by the copies. */
  get bytes(): number {
    let n = 0;
    for (const c of this.#copies.values()) n += c.copy.size * 2;
    return n;
  }

  /** The matrix a product multiplies by: the weight itself, or (bf16 compute, a float32 CPU matrix) its bfloat16 copy. */
  weight(p: Param): Tensor {
    const v = p.value;
    if (!this.#on || v.device !== 'cpu' || v.dtype !== 'float32' || v.shape.length !== 2) return v;
    const kept = this.#copies.get(p);
    if (kept && kept.source === v) return kept.copy;
    const copy = bf16Tensor(roundBf16(v.data as Float32Array), v.shape);
    this.#copies.set(p, { source: v, copy });
    return copy;
  }

  /** dyᵀ·x, a weight's gradient: under bf16 compute (CPU) with both operands rounded to bfloat16. */
  weightGrad(dy: Tensor, x: Tensor): Tensor {
    return this.#on && dy.device === 'cpu' ? matmulViaBf16(dy, x, { transA: true }) : matmul(dy, x, { transA: true });
  }
}
