// Float64 references of the vision-language formulas, written here
// independently of lib/ (for test/norm-act.test.ts and test/pretrained-vlm.test.ts):
// erf, the GELU family, LayerNorm, a ViT encoder (SigLIP / CLIP / Idefics3),
// pixel shuffle, the LLaVA projector and the Llama decoder. Plain loops over
// Float64Arrays; slow (O(n³) matmuls) and meant for tiny shapes only.

/** erf(x) by its Maclaurin series (|x| < 5, error ~1e-13) and ±1 beyond. */
export function erf(x: number): number {
  if (Math.abs(x) >= 5) return Math.sign(x);
  let term = x, sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

export type Act = 'gelu' | 'gelu_pytorch_tanh' | 'gelu_new' | 'quick_gelu' | 'silu';

export function act(x: number, a: string): number {
  switch (a) {
    case 'gelu': return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_pytorch_tanh':
    case 'gelu_new': return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'quick_gelu': return x / (1 + Math.exp(-1.702 * x));
    case 'silu': return x / (1 + Math.exp(-x));
    default: throw new Error(`reference: activation ${a}`);
  }
}

/** y[n, out] = x[n, in]·W[out, in]ᵀ + b. */
export function lin(x: Float64Array, n: number, W: ArrayLike<number>, outDim: number, inDim: number, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(n * outDim);
  for (let r = 0; r < n; r++)
    for (let o = 0; o < outDim; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i] * W[o * inDim + i];
      y[r * outDim + o] = s;
    }
  return y;
}

export function layerNormRef(x: Float64Array, n: number, d: number, g: ArrayLike<number>, b: ArrayLike<number> | null, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let m = 0;
    for (let j = 0; j < d; j++) m += x[r * d + j];
    m /= d;
    let v = 0;
    for (let j = 0; j < d; j++) v += (x[r * d + j] - m) ** 2;
    const rs = 1 / Math.sqrt(v / d + eps);
    for (let j = 0; j < d; j++) y[r * d + j] = (x[r * d + j] - m) * rs * g[j] + (b ? b[j] : 0);
  }
  return y;
}

export function rmsNormRef(x: Float64Array, n: number, d: number, g: ArrayLike<number>, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j] ** 2;
    const rs = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) y[r * d + j] = x[r * d + j] * rs * g[j];
  }
  return y;
}

/** Multi-head softmax attention of q [n, H·D], k, v [m, Hkv·D]; causal or not. */
export function attn(q: Float64Array, k: Float64Array, v: Float64Array, n: number, H: number, Hkv: number, D: number, causal: boolean): Float64Array {
  const out = new Float64Array(n * H * D);
  const g = H / Hkv;
  for (let h = 0; h < H; h++) {
    const kh = Math.floor(h / g);
    for (let i = 0; i < n; i++) {
      const last = causal ? i : n - 1;
      const s = new Float64Array(last + 1);
      let mx = -Infinity;
      for (let j = 0; j <= last; j++) {
        let dot = 0;
        for (let e = 0; e < D; e++) dot += q[(i * H + h) * D + e] * k[(j * Hkv + kh) * D + e];
        s[j] = dot / Math.sqrt(D);
        mx = Math.max(mx, s[j]);
      }
      let z = 0;
      for (let j = 0; j <= last; j++) z += (s[j] = Math.exp(s[j] - mx));
      for (let j = 0; j <= last; j++)
        for (let e = 0; e < D; e++) out[(i * H + h) * D + e] += (s[j] / z) * v[(j * Hkv + kh) * D + e];
    }
  }
  return out;
}

export const add = (a: Float64Array, b: Float64Array): Float64Array => a.map((x, i) => x + b[i]);
