// The primitives the pretrained decoder and vision towers are composed of, on
// the device of their tensors. A CPU tensor goes exactly through the calls the
// CPU path always made (vp.rmsNorm, vp.layerNorm, vp.gelu, vp.swiglu, vp.rope,
// the bf16 helpers of bf16.ts, plain loops over the typed arrays), so CPU
// results are unchanged bit for bit; a CUDA tensor goes to the dev* bindings
// (native/ops/pretrained/pretrained_binding.cpp: cuda/pretrained.cu,
// cuda/norm_act.cu, cuda/gemm_f32_bf16.cu, and the layer kernels of
// cuda/layers.cu and cuda/optim.cu) or to the ops that already run on CUDA
// (vp.matmul, vp.attention, vp.tokenLogprobs). Index arrays (rows, ids,
// positions) stay on the host and are checked by the core before use.
//
// Row statistics (rstd, mean) are Float32Arrays on the CPU and device tensors on
// CUDA (`Stats`). Intermediate CUDA tensors are freed by the garbage collector
// (or dispose()); views share their buffer and are never disposed.
// Cost: each primitive is O(elements) (matmuls 2·M·N·K) on its device; a CUDA
// call with indices copies them to the device (4 bytes each).
import { native } from '../native.js';
import { matmul } from '../ops/matmul.js';
import { gelu, geluBackward, layerNorm, layerNormBackward, type GeluApproximate } from '../ops/norm-act.js';
import { adamwStep, clipGradNorm, rmsNorm, rmsNormBackward, rope, swiglu, swigluBackward, embeddingBackward, type AdamWOptions } from '../ops/layers.js';
import { emptyLike, Tensor, tensor, zeros } from '../tensor.js';
import { embeddingW, isBf16, linearW, matmulW } from './bf16.js';

export type Stats = Float32Array | Tensor;

const f32 = (t: Tensor) => t.data as Float32Array;
const cuda = (t: Tensor) => t.device === 'cuda';
const KIND: Record<GeluApproximate, number> = { erf: 0, tanh: 1, quick: 2 };

/** The same memory under another shape (a CPU tensor over the same array; a CUDA tensor over the same buffer). */
export function view(t: Tensor, shape: number[]): Tensor {
  return cuda(t) ? new Tensor(shape, t.dtype, 'cuda', undefined, t.handle) : tensor(f32(t), shape);
}

/** A float32 zero tensor on `device`. */
export function zerosOn(shape: number[], device: 'cpu' | 'cuda'): Tensor {
  return device === 'cpu' ? tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape) : zeros(shape, 'float32', 'cuda');
}

/** A host float32 array on `device` (uploaded for CUDA). */
export function onDevice(data: Float32Array, shape: number[], device: 'cpu' | 'cuda'): Tensor {
  const t = tensor(data, shape);
  return device === 'cpu' ? t : t.to('cuda');
}

/** The values of a float32 tensor on the host (the array itself for a CPU tensor). */
export function hostF32(t: Tensor): Float32Array {
  return cuda(t) ? (t.to('cpu').data as Float32Array) : f32(t);
}

/** Below this many values a CPU addInto stays a JavaScript loop (a native call costs more). */
const NATIVE_AXPY_MIN = 1 << 15;

/** dst += scale · src (same size, same device); on the CPU the same bits either way. */
export function addInto(dst: Tensor, src: Tensor, scale = 1): void {
  if (!cuda(dst)) {
    const d = f32(dst), s = f32(src);
    if (d.length >= NATIVE_AXPY_MIN) native().axpyF32({ y: d, x: s, alpha: scale });
    else if (scale === 1) for (let i = 0; i < d.length; i++) d[i] += s[i];
    else for (let i = 0; i < d.length; i++) d[i] += scale * s[i];
    return;
  }
  native().devAxpy({ y: dst.handle, x: src.handle, alpha: scale, n: dst.size });
}

/** x *= s in place. */
export function scaleInPlace(x: Tensor, s: number): void {
  if (s === 1) return;
  if (!cuda(x)) {
    const d = f32(x);
    for (let i = 0; i < d.length; i++) d[i] *= s;
    return;
  }
  native().devScale({ x: x.handle, alpha: s, n: x.size });
}

/** y *= mask element-wise (a host mask, e.g. dropout's). */
export function mulMask(y: Tensor, mask: Float32Array): void {
  if (!cuda(y)) {
    const d = f32(y);
    for (let i = 0; i < d.length; i++) d[i] *= mask[i];
    return;
  }
  const m = tensor(mask, [mask.length]).to('cuda');
  native().devMul({ y: y.handle, x: m.handle, n: y.size });
  m.dispose();
}

/** Column sums of dy [n, m] → [m] (float64 accumulation on the CPU; a ones-vector product on CUDA). */
export function colSum(dy: Tensor): Tensor {
  const [n, m] = dy.shape;
  if (cuda(dy)) {
    const ones = onDevice(new Float32Array(n).fill(1), [1, n], 'cuda');
    const s = matmul(ones, dy);
    ones.dispose();
    return view(s, [m]);
  }
  const d = f32(dy);
  const out = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    const row = i * m;
    for (let j = 0; j < m; j++) out[j] += d[row + j];
  }
  return tensor(Float32Array.from(out), [m]);
}

/** A copy of rows `rows` of src [R, d] → [rows.length, d]. */
export function gatherRows(src: Tensor, rows: Int32Array): Tensor {
  const [R, d] = src.shape;
  if (!cuda(src)) {
    const s = f32(src);
    const out = new Float32Array(rows.length * d);
    rows.forEach((r, i) => out.set(s.subarray(r * d, (r + 1) * d), i * d));
    return tensor(out, [rows.length, d]);
  }
  const out = emptyLike([rows.length, d], 'float32', 'cuda');
  native().devGatherRows({ src: src.handle, srcRows: R, rows, d, out: out.handle });
  return out;
}

/** dst[rows[i], :] += src[i, :], i in order. */
export function scatterAddRows(dst: Tensor, src: Tensor, rows: Int32Array): void {
  const [R, d] = dst.shape;
  if (!cuda(dst)) {
    const s = f32(src), t = f32(dst);
    rows.forEach((r, i) => {
      const o = r * d, p = i * d;
      for (let j = 0; j < d; j++) t[o + j] += s[p + j];
    });
    return;
  }
  native().devScatterAddRows({ src: src.handle, rows, d, dst: dst.handle, dstRows: R });
}

/** Rows `ids` of an embedding table [V, d] (float32 or bfloat16) as float32. */
export function embed(table: Tensor, ids: Int32Array): Tensor {
  if (!cuda(table)) return embeddingW(table, ids);
  const [V, d] = table.shape;
  const out = emptyLike([ids.length, d], 'float32', 'cuda');
  native().devEmbedding({ table: table.handle, bf16: isBf16(table), vocab: V, d, ids, out: out.handle });
  return out;
}

/** dTable[ids[i]] += dOut[i] (into dTable, deterministic). */
export function embedGrad(dOut: Tensor, ids: Int32Array, vocab: number, dTable: Tensor): void {
  if (!cuda(dOut)) {
    embeddingBackward(dOut, ids, vocab, { dTable });
    return;
  }
  native().devEmbeddingBackward({ dOut: dOut.handle, ids, vocab, d: dTable.shape[1], dTable: dTable.handle, accumulate: true });
}

/** y = x·Wᵀ (+ b), W float32 or bfloat16 [out, in]. */
export function linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  if (!cuda(x)) return linearW(x, w, b);
  const [m, k] = x.shape;
  const n = w.shape[0];
  if (isBf16(w)) {
    const out = emptyLike([m, n], 'float32', 'cuda');
    native().devMatmulF32Bf16({ a: x.handle, b: w.handle, bias: b ? b.handle : null, out: out.handle, m, n, k, transB: true });
    return out;
  }
  const y = matmul(x, w, { transB: true });
  if (b) native().devAddBias({ y: y.handle, b: b.handle, rows: m, cols: n });
  return y;
}

/** a·Wᵀ with transB (the LM head), else a·W (dx of a linear), W float32 or bfloat16. */
export function matmulWeight(a: Tensor, w: Tensor, opts: { transB?: boolean } = {}): Tensor {
  if (!cuda(a)) return matmulW(a, w, opts);
  const transB = opts.transB ?? false;
  if (!isBf16(w)) return matmul(a, w, { transB });
  const [m, k] = a.shape;
  const n = transB ? w.shape[0] : w.shape[1];
  const out = emptyLike([m, n], 'float32', 'cuda');
  native().devMatmulF32Bf16({ a: a.handle, b: w.handle, bias: null, out: out.handle, m, n, k, transB });
  return out;
}

/** RMSNorm over the last dimension. */
export function rmsNormD(x: Tensor, gain: Tensor, eps: number): { y: Tensor; rstd: Stats } {
  if (!cuda(x)) return rmsNorm(x, gain, { eps });
  const dim = x.shape[x.shape.length - 1];
  const rows = x.size / dim;
  const y = emptyLike(x.shape, 'float32', 'cuda');
  const rstd = emptyLike([rows], 'float32', 'cuda');
  native().devRmsnormForward({ x: x.handle, gain: gain.handle, rows, dim, eps, y: y.handle, rstd: rstd.handle });
  return { y, rstd };
}

export function rmsNormBackwardD(dy: Tensor, x: Tensor, gain: Tensor, rstd: Stats, eps: number): { dx: Tensor; dGain: Tensor } {
  if (!cuda(x)) return rmsNormBackward(dy, x, gain, rstd as Float32Array, { eps });
  const dim = x.shape[x.shape.length - 1];
  const rows = x.size / dim;
  const dx = emptyLike(x.shape, 'float32', 'cuda');
  const dGain = emptyLike([dim], 'float32', 'cuda');
  native().devRmsnormBackward({
    dy: dy.handle, x: x.handle, gain: gain.handle, rstd: (rstd as Tensor).handle, rows, dim, eps, dx: dx.handle, dGain: dGain.handle, accumulate: false,
  });
  return { dx, dGain };
}

export function swigluD(gate: Tensor, up: Tensor): Tensor {
  if (!cuda(gate)) return swiglu(gate, up);
  const f = gate.shape[gate.shape.length - 1];
  const h = emptyLike(gate.shape, 'float32', 'cuda');
  native().devSwigluForward({ gate: gate.handle, up: up.handle, rows: gate.size / f, ffn: f, h: h.handle });
  return h;
}

export function swigluBackwardD(dh: Tensor, gate: Tensor, up: Tensor): { dGate: Tensor; dUp: Tensor } {
  if (!cuda(gate)) return swigluBackward(dh, gate, up);
  const f = gate.shape[gate.shape.length - 1];
  const dGate = emptyLike(gate.shape, 'float32', 'cuda');
  const dUp = emptyLike(gate.shape, 'float32', 'cuda');
  native().devSwigluBackward({ dh: dh.handle, gate: gate.handle, up: up.handle, rows: gate.size / f, ffn: f, dGate: dGate.handle, dUp: dUp.handle });
  return { dGate, dUp };
}

/** RoPE with angle pos·theta^(-2i/D) of x [T, H, D] (vp.rope on the CPU). */
export function ropeTheta(x: Tensor, positions: Int32Array, theta: number, inverse: boolean): Tensor {
  if (!cuda(x)) return rope(x, positions, { theta, inverse });
  const [, H, D] = x.shape;
  const out = emptyLike(x.shape, 'float32', 'cuda');
  native().devRope({ x: x.handle, positions, heads: H, headDim: D, theta, inverse, out: out.handle, cos: null, sin: null, tablePositions: 0 });
  return out;
}

/** RoPE of a CUDA x [T, H, D] from host cos / sin tables [P, D/2]. */
export function ropeTableCuda(x: Tensor, positions: Int32Array, cos: Float32Array, sin: Float32Array, P: number, inverse: boolean): Tensor {
  const [, H, D] = x.shape;
  const out = emptyLike(x.shape, 'float32', 'cuda');
  native().devRope({ x: x.handle, positions, heads: H, headDim: D, theta: 0, inverse, out: out.handle, cos, sin, tablePositions: P });
  return out;
}

/** LayerNorm over the last dimension (vp.layerNorm on the CPU). */
export function layerNormD(x: Tensor, gamma: Tensor, beta: Tensor | undefined, eps: number): { y: Tensor; mean: Stats; rstd: Stats } {
  if (!cuda(x)) return layerNorm(x, gamma, beta, { eps });
  const dim = x.shape[x.shape.length - 1];
  const rows = x.size / dim;
  const y = emptyLike(x.shape, 'float32', 'cuda');
  const mean = emptyLike([rows], 'float32', 'cuda');
  const rstd = emptyLike([rows], 'float32', 'cuda');
  native().devLayernormForward({ x: x.handle, gamma: gamma.handle, beta: beta ? beta.handle : null, rows, dim, eps, y: y.handle, mean: mean.handle, rstd: rstd.handle });
  return { y, mean, rstd };
}

export function layerNormBackwardD(dy: Tensor, x: Tensor, gamma: Tensor, mean: Stats, rstd: Stats, eps: number): { dx: Tensor; dGamma: Tensor; dBeta: Tensor } {
  if (!cuda(x)) return layerNormBackward(dy, x, gamma, mean as Float32Array, rstd as Float32Array, { eps });
  const dim = x.shape[x.shape.length - 1];
  const rows = x.size / dim;
  const dx = emptyLike(x.shape, 'float32', 'cuda');
  const dGamma = emptyLike([dim], 'float32', 'cuda');
  const dBeta = emptyLike([dim], 'float32', 'cuda');
  native().devLayernormBackward({
    dy: dy.handle, x: x.handle, gamma: gamma.handle, mean: (mean as Tensor).handle, rstd: (rstd as Tensor).handle, rows, dim, eps,
    dx: dx.handle, dGamma: dGamma.handle, dBeta: dBeta.handle, accumulate: false,
  });
  return { dx, dGamma, dBeta };
}

export function geluD(x: Tensor, approximate: GeluApproximate): Tensor {
  if (!cuda(x)) return gelu(x, { approximate });
  const y = emptyLike(x.shape, 'float32', 'cuda');
  native().devGeluForward({ x: x.handle, n: x.size, kind: KIND[approximate], y: y.handle });
  return y;
}

/** dy · gelu'(x), written into dy (inPlace) or a new tensor. */
export function geluBackwardD(dy: Tensor, x: Tensor, approximate: GeluApproximate, inPlace = false): Tensor {
  if (!cuda(x)) return geluBackward(dy, x, { approximate, inPlace });
  const dx = inPlace ? dy : emptyLike(x.shape, 'float32', 'cuda');
  native().devGeluBackward({ dy: dy.handle, x: x.handle, n: x.size, kind: KIND[approximate], dx: dx.handle });
  return dx;
}

/** The global L2 norm of the gradients (clipGradNorm with no clipping on the CPU; per-buffer sums of squares in double on CUDA). */
export function gradNorm(grads: readonly Tensor[]): number {
  if (grads.length === 0 || !cuda(grads[0])) return clipGradNorm(grads, 0);
  let s = 0;
  for (const g of grads) s += native().devSumSquares({ x: g.handle, n: g.size });
  return Math.sqrt(s);
}

/** One AdamW update in place (vp.adamwStep on the CPU; the same update on device). */
export function adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, o: Required<Omit<AdamWOptions, 'gradScale'>> & { gradScale: number }): void {
  if (!cuda(param)) {
    adamwStep(param, grad, m, v, o);
    return;
  }
  native().devAdamw({
    param: param.handle, grad: grad.handle, m: m.handle, v: v.handle, n: param.size,
    lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step: o.step, gradScale: o.gradScale,
  });
}
