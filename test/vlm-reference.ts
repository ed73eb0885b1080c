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

type W = Record<string, { shape: number[]; data: Float32Array }>;

export interface VisionRefSpec {
  prefix: string;
  kind: 'siglip' | 'clip' | 'navit';
  hidden: number;
  heads: number;
  intermediate: number;
  layers: number;
  patch: number;
  channels: number;
  eps: number;
  act: string;
}

/**
 * hidden_states of a ViT tower (SigLIP / CLIP / Idefics3) for ONE image
 * [C, H, W] at full size: index 0 the embeddings (after CLIP's pre-LN), i the
 * output of layer i; plus the post-LayerNormed last state.
 */
export function visionRef(w: W, s: VisionRefSpec, img: Float64Array, H: number, Wd: number): { hidden: Float64Array[]; post: Float64Array; S: number } {
  const g = (n: string) => w[s.prefix + n].data;
  const { hidden: D, patch: p, channels: C } = s;
  const hp = H / p, wp = Wd / p;
  const cls = s.kind === 'clip' ? 1 : 0;
  const S = hp * wp + cls;
  let x = new Float64Array(S * D);
  const cw = g('embeddings.patch_embedding.weight');
  const cb = s.kind === 'clip' ? null : g('embeddings.patch_embedding.bias');
  // Convolution, stride = kernel = p, written as the direct sum.
  for (let py = 0; py < hp; py++)
    for (let px = 0; px < wp; px++)
      for (let o = 0; o < D; o++) {
        let acc = cb ? cb[o] : 0;
        for (let c = 0; c < C; c++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++) acc += cw[((o * C + c) * p + ky) * p + kx] * img[(c * H + py * p + ky) * Wd + px * p + kx];
        x[(cls + py * wp + px) * D + o] = acc;
      }
  if (cls) for (let o = 0; o < D; o++) x[o] = g('embeddings.class_embedding')[o];
  const pos = g('embeddings.position_embedding.weight');
  for (let t = 0; t < S; t++) for (let o = 0; o < D; o++) x[t * D + o] += pos[t * D + o];
  if (s.kind === 'clip') x = layerNormRef(x, S, D, g('pre_layrnorm.weight'), g('pre_layrnorm.bias'), s.eps);
  const hidden = [x];
  const hd = D / s.heads;
  for (let l = 0; l < s.layers; l++) {
    const q = `encoder.layers.${l}.`;
    const a = layerNormRef(x, S, D, g(`${q}layer_norm1.weight`), g(`${q}layer_norm1.bias`), s.eps);
    const Q = lin(a, S, g(`${q}self_attn.q_proj.weight`), D, D, g(`${q}self_attn.q_proj.bias`));
    const K = lin(a, S, g(`${q}self_attn.k_proj.weight`), D, D, g(`${q}self_attn.k_proj.bias`));
    const V = lin(a, S, g(`${q}self_attn.v_proj.weight`), D, D, g(`${q}self_attn.v_proj.bias`));
    const at = attn(Q, K, V, S, s.heads, s.heads, hd, false);
    const x2 = add(x, lin(at, S, g(`${q}self_attn.out_proj.weight`), D, D, g(`${q}self_attn.out_proj.bias`)));
    const b = layerNormRef(x2, S, D, g(`${q}layer_norm2.weight`), g(`${q}layer_norm2.bias`), s.eps);
    const f1 = lin(b, S, g(`${q}mlp.fc1.weight`), s.intermediate, D, g(`${q}mlp.fc1.bias`)).map((v) => act(v, s.act));
    x = add(x2, lin(f1, S, g(`${q}mlp.fc2.weight`), D, s.intermediate, g(`${q}mlp.fc2.bias`)));
    hidden.push(x);
  }
  const post = layerNormRef(x, S, D, g('post_layernorm.weight'), g('post_layernorm.bias'), s.eps);
  return { hidden, post, S };
}

/** A strided permute of a 4-D row-major array: out[idx permuted] = in[idx]. */
function permute4(x: Float64Array, shape: number[], perm: number[]): { data: Float64Array; shape: number[] } {
  const outShape = perm.map((i) => shape[i]);
  const out = new Float64Array(x.length);
  const st = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1];
  let k = 0;
  for (let a = 0; a < outShape[0]; a++)
    for (let b = 0; b < outShape[1]; b++)
      for (let c = 0; c < outShape[2]; c++)
        for (let d = 0; d < outShape[3]; d++) {
          const idx = [a, b, c, d];
          let src = 0;
          perm.forEach((pi, j) => (src += idx[j] * st[pi]));
          out[k++] = x[src];
        }
  return { data: out, shape: outShape };
}

/** transformers' pixel_shuffle for one image [S, D] as its view / permute / reshape sequence. */
export function pixelShuffleRef(x: Float64Array, S: number, D: number, s: number): Float64Array {
  const side = Math.round(Math.sqrt(S));
  // view(1, h, w/s, D·s) → permute(0, 2, 1, 3) → reshape(1, w/s, h/s, D·s²) → permute(0, 2, 1, 3)
  const a = permute4(x, [1, side, side / s, D * s], [0, 2, 1, 3]);
  const b = permute4(a.data, [1, side / s, side / s, D * s * s], [0, 2, 1, 3]);
  return b.data;
}

export interface TextRefSpec {
  prefix: string;
  head: string;
  hidden: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  layers: number;
  vocab: number;
  eps: number;
  theta: number;
  tied: boolean;
}

/** Logits [T, vocab] of the Llama decoder on input rows x [T, d] (positions 0..T-1). */
export function llamaRef(w: W, s: TextRefSpec, x0: Float64Array, T: number): Float64Array {
  const g = (n: string) => w[n].data;
  const P = s.prefix;
  const { hidden: d, heads: H, kvHeads: Hk } = s;
  const hd = d / H;
  const rope = (v: Float64Array, nh: number) => {
    const o = v.slice();
    for (let t = 0; t < T; t++)
      for (let h = 0; h < nh; h++)
        for (let i = 0; i < hd / 2; i++) {
          const ang = t / s.theta ** ((2 * i) / hd);
          const b = (t * nh + h) * hd;
          const a1 = v[b + i], a2 = v[b + i + hd / 2];
          o[b + i] = a1 * Math.cos(ang) - a2 * Math.sin(ang);
          o[b + i + hd / 2] = a2 * Math.cos(ang) + a1 * Math.sin(ang);
        }
    return o;
  };
  let x = x0;
  for (let l = 0; l < s.layers; l++) {
    const q = `${P}layers.${l}.`;
    const a = rmsNormRef(x, T, d, g(`${q}input_layernorm.weight`), s.eps);
    const Q = rope(lin(a, T, g(`${q}self_attn.q_proj.weight`), H * hd, d), H);
    const K = rope(lin(a, T, g(`${q}self_attn.k_proj.weight`), Hk * hd, d), Hk);
    const V = lin(a, T, g(`${q}self_attn.v_proj.weight`), Hk * hd, d);
    const x2 = add(x, lin(attn(Q, K, V, T, H, Hk, hd, true), T, g(`${q}self_attn.o_proj.weight`), d, H * hd));
    const b = rmsNormRef(x2, T, d, g(`${q}post_attention_layernorm.weight`), s.eps);
    const gt = lin(b, T, g(`${q}mlp.gate_proj.weight`), s.intermediate, d);
    const up = lin(b, T, g(`${q}mlp.up_proj.weight`), s.intermediate, d);
    x = add(x2, lin(gt.map((v, i) => act(v, 'silu') * up[i]), T, g(`${q}mlp.down_proj.weight`), d, s.intermediate));
  }
  const hN = rmsNormRef(x, T, d, g(`${P}norm.weight`), s.eps);
  return lin(hN, T, s.tied ? g(`${P}embed_tokens.weight`) : g(s.head), s.vocab, d);
}
