// The Llama / Qwen2 decoder (transformers' modeling_llama.py and
// modeling_qwen2.py), forward and backward, composed of the package's fused
// ops: vp.embedding, vp.rmsNorm, vp.linear / vp.matmul (the core SGEMM),
// vp.rope, vp.attention (causal, varlen, grouped-query, never T×T),
// vp.swiglu, vp.tokenLogprobs and their backward passes — on the device of the
// parameters (lib/pretrained/device.ts dispatches each primitive: the CPU calls
// above, or their CUDA kernels when the model was loaded with device 'cuda').
//
//   h₀ = embed[ids]
//   per layer:  a = RMSNorm(h)·γ₁;  q,k,v = a·W{q,k,v}ᵀ (+b);  q,k = RoPE(q,k)
//               h = h + Attn(q,k,v)·Woᵀ;  m = RMSNorm(h)·γ₂
//               h = h + (SiLU(m·Wgᵀ) ⊙ m·Wuᵀ)·Wdᵀ
//   logits = RMSNorm(h)·γ·Wheadᵀ   (Whead = embed when tied)
//
// LoRA (PEFT's formula): a targeted linear adds s·(drop(x)·Aᵀ)·Bᵀ, A [r, in],
// B [out, r], s = alpha / r. Every parameter is a float32 tensor (or, frozen
// under loadPretrained's dtype 'bfloat16', a bfloat16 matrix multiplied through
// lib/pretrained/bf16.ts); gradients
// are kept only for the trainable ones (adapters alone under LoRA). Packed
// batches: several sequences in one row set, delimited by cuSeqlens, with
// positions restarting at 0 in each (they never attend to each other).
//
// Cost per token: ≈ 2·P multiply-adds forward (P = the matrices' size) and
// twice that backward, plus attention O(T·H·D) per key; activations kept for
// backward ≈ (6·d + 2·kv + 3·ffn) floats per token per layer. The LM head
// runs over target rows only, in row chunks (its logits are kept for the
// backward pass when they fit `headCacheBytes`, else recomputed).
import { attention, attentionBackward } from '../ops/attention.js';
import { tokenLogprobs, tokenLogprobsBackward } from '../ops/logprobs.js';
import { matmul } from '../ops/matmul.js';
import { seededRandom } from '../random.js';
import type { StDType } from '../model/safetensors.js';
import { recycleOutput, Tensor, tensor } from '../tensor.js';
import { Bf16Compute } from './bf16.js';
import { ropeInvFreq, type DecoderSpec } from './config.js';
import {
  addInto, colSum, embed, embedGrad, gatherRows, hostF32, linear, matmulWeight, mulMask, onDevice, rmsNormBackwardD, rmsNormD,
  ropeTableCuda, ropeTheta, scaleInPlace, scatterAddRows, swigluBackwardD, swigluD, view, zerosOn, type Stats,
} from './device.js';

/** One parameter: an HF-named float32 tensor, its gradient and AdamW state when trained. */
export interface Param {
  name: string;
  shape: number[];
  value: Tensor;
  grad?: Tensor;
  m?: Tensor;
  v?: Tensor;
  trainable: boolean;
  /** AdamW weight decay applies (matrices other than the embedding). */
  decay: boolean;
  /** The checkpoint's dtype (what save() writes back); F32 for adapters. */
  storedDtype: StDType;
  /** Changed since loading (an optimizer step or a merge). */
  touched: boolean;
}

/** A LoRA adapter on one linear layer. */
export interface Lora {
  a: Param;
  b: Param;
  rank: number;
  alpha: number;
  scale: number;
  dropout: number;
}

export interface Linear {
  /** Module path, e.g. model.layers.0.self_attn.q_proj. */
  path: string;
  /** Short name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. */
  kind: LinearKind;
  weight: Param;
  bias?: Param;
  lora?: Lora;
}

export type LinearKind = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';
export const LINEAR_KINDS: readonly LinearKind[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

export interface Layer {
  ln1: Param;
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  ln2: Param;
  gate: Linear;
  up: Linear;
  down: Linear;
}

interface LoraSave {
  /** The adapter's input after dropout (null: no dropout, the linear's input itself). */
  xd: Tensor | null;
  /** Dropout mask already scaled by 1/(1-p) (null: none). */
  mask: Float32Array | null;
  /** xd · Aᵀ [T, r]. */
  u: Tensor;
}

interface LayerSave {
  x: Tensor;
  n1: Tensor;
  rstd1: Stats;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** The v projection's output that `v` views. */
  vLin: Tensor;
  att: Tensor;
  lse: Tensor;
  x2: Tensor;
  n2: Tensor;
  rstd2: Stats;
  g: Tensor;
  u: Tensor;
  h: Tensor;
  lora: Map<Linear, LoraSave>;
}

/** What a training forward pass keeps for its backward pass. */
export interface Saved {
  ids: Int32Array;
  positions: Int32Array;
  cu: Int32Array;
  layers: LayerSave[];
  /** Input of the final norm, its rstd, and the normed hidden states. */
  xL: Tensor;
  rstdL: Stats;
  hN: Tensor;
  tapLayer: number;
  tapRows: Int32Array | null;
  /** Rows whose input was not the token embedding (no embedding gradient). */
  replaced: Uint8Array | null;
}

export interface ForwardPassOptions {
  /** Keep what backward() needs. */
  train?: boolean;
  /** Return the hidden states after this many layers at these rows. */
  tapLayer?: number;
  tapRows?: Int32Array;
  /** Called with each layer's rotated keys and values [T, Hkv, D] (the KV cache). */
  onKV?: (layer: number, k: Tensor, v: Tensor) => void;
  /** Seed of the LoRA dropout masks of this pass. */
  dropoutSeed?: number;
  /** Input rows [T, d] replacing the embedding at the rows where `replaced` is 1 (visual tokens). */
  inputEmbeds?: Tensor;
  replaced?: Uint8Array;
}

const f32 = (t: Tensor) => t.data as Float32Array;

/** Adds a fresh gradient tensor into a parameter's gradient (takes ownership when there is none yet). */
export function addGrad(p: Param, g: Tensor, scale = 1): void {
  if (!p.grad) {
    scaleInPlace(g, scale);
    p.grad = g;
  } else {
    addInto(p.grad, g, scale);
    recycleOutput(g);
  }
}

/** The decoder: parameters, forward, backward, logits. */
export class Decoder {
  readonly spec: DecoderSpec;
  readonly embed: Param;
  readonly layers: Layer[];
  readonly norm: Param;
  /** lm_head.weight, or the embedding itself when tied. */
  readonly head: Param;
  /** Logits of the target rows kept between forward and backward up to this many bytes (else recomputed). */
  headCacheBytes = 256 * 2 ** 20;
  readonly #invFreq: Float64Array | null;
  #ropeCache = { cos: new Float32Array(0), sin: new Float32Array(0), positions: 0 };
  /** bfloat16 compute's weight copies (lib/pretrained/bf16.ts), shared with a vision-language model's tower and connector. */
  readonly compute = new Bf16Compute();

  /**
   * `names`: where the text model's tensors live (a vision-language checkpoint
   * nests it, e.g. 'model.text_model.' and 'lm_head.weight'); default a CausalLM's.
   */
  constructor(spec: DecoderSpec, params: Map<string, Param>, names: { prefix: string; head: string } = { prefix: 'model.', head: 'lm_head.weight' }) {
    this.spec = spec;
    const get = (name: string): Param => {
      const p = params.get(name);
      if (!p) throw new Error(`Decoder: parameter '${name}' is missing`);
      return p;
    };
    const lin = (path: string, kind: LinearKind, bias: boolean): Linear => ({
      path, kind, weight: get(`${path}.weight`), ...(bias ? { bias: get(`${path}.bias`) } : {}),
    });
    this.embed = get(`${names.prefix}embed_tokens.weight`);
    this.layers = [];
    for (let l = 0; l < spec.layers; l++) {
      const p = `${names.prefix}layers.${l}.`;
      this.layers.push({
        ln1: get(`${p}input_layernorm.weight`),
        q: lin(`${p}self_attn.q_proj`, 'q_proj', spec.qkvBias),
        k: lin(`${p}self_attn.k_proj`, 'k_proj', spec.qkvBias),
        v: lin(`${p}self_attn.v_proj`, 'v_proj', spec.qkvBias),
        o: lin(`${p}self_attn.o_proj`, 'o_proj', spec.oBias),
        ln2: get(`${p}post_attention_layernorm.weight`),
        gate: lin(`${p}mlp.gate_proj`, 'gate_proj', spec.mlpBias),
        up: lin(`${p}mlp.up_proj`, 'up_proj', spec.mlpBias),
        down: lin(`${p}mlp.down_proj`, 'down_proj', spec.mlpBias),
      });
    }
    this.norm = get(`${names.prefix}norm.weight`);
    this.head = spec.tied ? this.embed : get(names.head);
    this.#invFreq = spec.ropeScaling.type === 'default' ? null : ropeInvFreq(spec);
  }

  /** Every linear layer, in module order. */
  *linears(): Generator<Linear> {
    for (const L of this.layers) yield* [L.q, L.k, L.v, L.o, L.gate, L.up, L.down];
  }

  // ------------------------------------------------------------------ pieces

  /** RoPE of x [T, heads, D] (also used by generation). */
  rope(x: Tensor, positions: Int32Array, inverse: boolean): Tensor {
    if (!this.#invFreq) return ropeTheta(x, positions, this.spec.ropeTheta, inverse);
    const [T, H, D] = x.shape;
    const half = D / 2;
    let maxPos = 0;
    for (let t = 0; t < T; t++) if (positions[t] > maxPos) maxPos = positions[t];
    const c = this.#ropeCache;
    if (maxPos >= c.positions) {
      const P = Math.max(maxPos + 1, 2 * c.positions, 64);
      c.cos = new Float32Array(P * half);
      c.sin = new Float32Array(P * half);
      for (let p = 0; p < P; p++)
        for (let i = 0; i < half; i++) {
          const a = p * this.#invFreq[i];
          c.cos[p * half + i] = Math.cos(a);
          c.sin[p * half + i] = Math.sin(a);
        }
      c.positions = P;
    }
    if (x.device === 'cuda') return ropeTableCuda(x, positions, c.cos, c.sin, c.positions, inverse);
    const src = f32(x);
    const out = new Float32Array(src.length);
    const sgn = inverse ? -1 : 1;
    for (let t = 0; t < T; t++) {
      const cb = positions[t] * half;
      for (let h = 0; h < H; h++) {
        const o = (t * H + h) * D;
        for (let i = 0; i < half; i++) {
          const cs = c.cos[cb + i], sn = sgn * c.sin[cb + i];
          const a = src[o + i], b = src[o + half + i];
          out[o + i] = a * cs - b * sn;
          out[o + half + i] = b * cs + a * sn;
        }
      }
    }
    return tensor(out, [T, H, D]);
  }

  /** A linear layer with its adapter (saves: what backward needs, when training). */
  linFwd(x: Tensor, L: Linear, saves: Map<Linear, LoraSave> | null = null, rnd: (() => number) | null = null): Tensor {
    const y = linear(x, this.compute.weight(L.weight), L.bias?.value);
    const lo = L.lora;
    if (!lo) return y;
    let xd: Tensor | null = null;
    let mask: Float32Array | null = null;
    if (lo.dropout > 0 && saves && rnd) {
      const keep = 1 / (1 - lo.dropout);
      mask = new Float32Array(x.size);
      if (x.device === 'cuda') {
        for (let i = 0; i < mask.length; i++) mask[i] = rnd() >= lo.dropout ? keep : 0;
        xd = x.to('cuda');
        mulMask(xd, mask);
      } else {
        const xs = f32(x);
        const out = new Float32Array(xs.length);
        for (let i = 0; i < xs.length; i++) {
          mask[i] = rnd() >= lo.dropout ? keep : 0;
          out[i] = xs[i] * mask[i];
        }
        xd = tensor(out, [...x.shape]);
      }
    }
    const u = matmul(xd ?? x, lo.a.value, { transB: true });
    const yb = matmul(u, lo.b.value, { transB: true });
    addInto(y, yb, lo.scale);
    if (saves) saves.set(L, { xd, mask, u });
    return y;
  }

  /** dx of a linear (null when not needed), accumulating its trainable parameters' gradients. */
  #linBwd(dy: Tensor, x: Tensor, L: Linear, save: LoraSave | undefined, needDx: boolean): Tensor | null {
    const dx = needDx ? matmulWeight(dy, this.compute.weight(L.weight)) : null;
    if (L.weight.trainable) addGrad(L.weight, this.compute.weightGrad(dy, x));
    if (L.bias?.trainable) addGrad(L.bias, colSum(dy));
    const lo = L.lora;
    if (lo && save) {
      const s = lo.scale;
      if (lo.b.trainable) addGrad(lo.b, matmul(dy, save.u, { transA: true }), s);
      if (lo.a.trainable || dx) {
        const du = matmul(dy, lo.b.value);
        scaleInPlace(du, s);
        if (lo.a.trainable) addGrad(lo.a, matmul(du, save.xd ?? x, { transA: true }));
        if (dx) {
          const dxd = matmul(du, lo.a.value);
          if (save.mask) mulMask(dxd, save.mask);
          addInto(dx, dxd);
        }
      }
    }
    return dx;
  }

  // ------------------------------------------------------------------ forward

  /**
   * Runs the decoder over packed rows: `ids`, their `positions` within their
   * sequence, and `cu` (cumulative sequence lengths). Returns the final normed
   * hidden states [T, d], and what backward() needs when `opts.train`.
   */
  forward(ids: Int32Array, positions: Int32Array, cu: Int32Array, opts: ForwardPassOptions = {}): { hN: Tensor; saved: Saved | null; tap: Float32Array } {
    const s = this.spec;
    const T = ids.length;
    const d = s.hidden;
    const train = opts.train ?? false;
    const tapLayer = opts.tapRows ? opts.tapLayer ?? Math.floor(s.layers / 2) : -1;
    const tapRows = opts.tapRows ?? null;
    const tap = new Float32Array((tapRows?.length ?? 0) * d);
    const takeTap = (x: Tensor) => {
      if (!tapRows) return;
      if (x.device === 'cuda') {
        tap.set(hostF32(gatherRows(x, tapRows)));
        return;
      }
      const xs = f32(x);
      tapRows.forEach((r, i) => tap.set(xs.subarray(r * d, (r + 1) * d), i * d));
    };
    const rnd = train && opts.dropoutSeed !== undefined ? seededRandom(opts.dropoutSeed) : null;
    const attOpts = { cuSeqlensQ: cu, causal: true };
    let x = embed(this.embed.value, ids);
    if (opts.inputEmbeds && opts.replaced && x.device === 'cuda') {
      // Rows of the embedding where not replaced, of inputEmbeds where replaced (copied by adding to zeros).
      const rep = opts.replaced;
      const keep = Int32Array.from({ length: T }, (_, t) => t).filter((t) => !rep[t]);
      const put = Int32Array.from({ length: T }, (_, t) => t).filter((t) => rep[t]);
      const x0 = zerosOn([T, d], 'cuda');
      scatterAddRows(x0, gatherRows(x, keep), keep);
      scatterAddRows(x0, gatherRows(opts.inputEmbeds, put), put);
      x = x0;
    } else if (opts.inputEmbeds && opts.replaced) {
      const xs = f32(x), src = f32(opts.inputEmbeds);
      for (let t = 0; t < T; t++) if (opts.replaced[t]) xs.set(src.subarray(t * d, (t + 1) * d), t * d);
    }
    const saves: LayerSave[] = [];
    for (let l = 0; l < s.layers; l++) {
      if (l === tapLayer) takeTap(x);
      const L = this.layers[l];
      const loraSaves = train ? new Map<Linear, LoraSave>() : null;
      const { y: n1, rstd: rstd1 } = rmsNormD(x, L.ln1.value, s.rmsNormEps);
      const qLin = this.linFwd(n1, L.q, loraSaves, rnd);
      const q = this.rope(view(qLin, [T, s.heads, s.headDim]), positions, false);
      const kLin = this.linFwd(n1, L.k, loraSaves, rnd);
      const k = this.rope(view(kLin, [T, s.kvHeads, s.headDim]), positions, false);
      recycleOutput(qLin, kLin); // rotated into q and k
      const vLin = this.linFwd(n1, L.v, loraSaves, rnd);
      const v = view(vLin, [T, s.kvHeads, s.headDim]);
      opts.onKV?.(l, k, v);
      const { out: att, lse } = attention(q, k, v, attOpts);
      const x2 = this.linFwd(view(att, [T, s.heads * s.headDim]), L.o, loraSaves, rnd);
      addInto(x2, x);
      const { y: n2, rstd: rstd2 } = rmsNormD(x2, L.ln2.value, s.rmsNormEps);
      const g = this.linFwd(n2, L.gate, loraSaves, rnd);
      const u = this.linFwd(n2, L.up, loraSaves, rnd);
      const h = swigluD(g, u);
      const x3 = this.linFwd(h, L.down, loraSaves, rnd);
      addInto(x3, x2);
      if (train) saves.push({ x, n1, rstd1, q, k, v, vLin, att, lse, x2, n2, rstd2, g, u, h, lora: loraSaves! });
      else {
        // Inference: this layer's outputs are dead once x3 is formed (the KV cache's k and v
        // belong to onKV's receiver; the LoRA products, when there are any, to their saves).
        recycleOutput(x, n1, att, lse, x2, n2, g, u, h);
        if (!opts.onKV) recycleOutput(q, k, vLin);
      }
      x = x3;
    }
    if (tapLayer === s.layers) takeTap(x);
    const { y: hN, rstd: rstdL } = rmsNormD(x, this.norm.value, s.rmsNormEps);
    const saved: Saved | null = train ? { ids, positions, cu, layers: saves, xL: x, rstdL, hN, tapLayer, tapRows, replaced: opts.replaced ?? null } : null;
    return { hN, saved, tap };
  }

  /** Logits [rows, V] of hidden states [rows, d]. */
  logits(h: Tensor): Tensor {
    return matmulWeight(h, this.compute.weight(this.head), { transB: true });
  }

  /** Rows per chunk of the LM head so that one chunk's logits stay near 64 MiB. */
  #headChunk(): number {
    return Math.max(1, Math.floor((64 * 2 ** 20) / (4 * this.spec.vocab)));
  }

  /**
   * log p(target) of every selected row of hN [T, d] (`rows`, `targets`), chunked
   * over rows; keeps the chunks' logits for headBackward when they fit.
   */
  headLogprobs(hN: Tensor, rows: Int32Array, targets: Int32Array, keep: boolean): { logprobs: Float32Array; state: HeadState } {
    const d = this.spec.hidden;
    const n = rows.length;
    let sel: Float32Array | Tensor;
    if (hN.device === 'cuda') sel = gatherRows(hN, rows);
    else {
      const hs = f32(hN);
      sel = new Float32Array(n * d);
      for (let i = 0; i < n; i++) sel.set(hs.subarray(rows[i] * d, (rows[i] + 1) * d), i * d);
    }
    const logprobs = new Float32Array(n);
    const chunk = this.#headChunk();
    const cache = keep && n * this.spec.vocab * 4 <= this.headCacheBytes;
    const kept: Tensor[] = [];
    for (let i0 = 0; i0 < n; i0 += chunk) {
      const i1 = Math.min(n, i0 + chunk);
      const hc = selRows(sel, i0, i1, n, d);
      const lg = this.logits(hc);
      logprobs.set(tokenLogprobs(lg, targets.subarray(i0, i1)), i0);
      if (cache) kept.push(lg);
      else recycleOutput(lg);
    }
    return { logprobs, state: { sel, rows, targets, kept: cache ? kept : null } };
  }

  /** dHidden [T, d] of Σ dLogprobs·logprob through the head; accumulates the head's gradient when trainable. */
  headBackward(state: HeadState, dLogprobs: Float32Array, T: number): Tensor {
    const d = this.spec.hidden;
    const { sel, rows, targets } = state;
    const n = rows.length;
    const onCuda = sel instanceof Tensor;
    const dHt = zerosOn([T, d], onCuda ? 'cuda' : 'cpu');
    const dH = onCuda ? null : f32(dHt);
    const chunk = this.#headChunk();
    const W = this.compute.weight(this.head);
    for (let c = 0, i0 = 0; i0 < n; c++, i0 += chunk) {
      const i1 = Math.min(n, i0 + chunk);
      const hc = selRows(sel, i0, i1, n, d);
      const lg = state.kept ? state.kept[c] : this.logits(hc);
      const dl = tokenLogprobsBackward(dLogprobs.subarray(i0, i1), lg, targets.subarray(i0, i1));
      const dhcT = matmulWeight(dl, W);
      if (dH) {
        const dhc = f32(dhcT);
        for (let i = i0; i < i1; i++) {
          const o = rows[i] * d, p = (i - i0) * d;
          for (let j = 0; j < d; j++) dH[o + j] += dhc[p + j];
        }
      } else scatterAddRows(dHt, dhcT, rows.subarray(i0, i1));
      if (this.head.trainable) addGrad(this.head, this.compute.weightGrad(dl, hc));
      recycleOutput(lg, dl, dhcT);
    }
    state.kept = null;
    return dHt;
  }

  // ------------------------------------------------------------------ backward

  /**
   * Backward of forward(): given dL/dhN [T, d] (and dL/dtap), accumulates the
   * gradients of every trainable parameter. With `needInputGrad`, returns dL/dx₀
   * [T, d] (the gradient of the input rows, for the visual tokens' encoder).
   */
  backward(saved: Saved, dHN: Tensor, dTap?: Float32Array, needInputGrad = false): Tensor | null {
    const s = this.spec;
    const T = saved.ids.length;
    const d = s.hidden;
    const attOpts = { cuSeqlensQ: saved.cu, causal: true };
    const { dx: dxL, dGain: dNorm } = rmsNormBackwardD(dHN, saved.xL, this.norm.value, saved.rstdL, s.rmsNormEps);
    if (this.norm.trainable) addGrad(this.norm, dNorm);
    let dx = dxL;
    const addTap = (l: number) => {
      if (!dTap || !saved.tapRows || saved.tapLayer !== l) return;
      if (dx.device === 'cuda') {
        scatterAddRows(dx, onDevice(dTap, [saved.tapRows.length, d], 'cuda'), saved.tapRows);
        return;
      }
      const g = f32(dx);
      saved.tapRows.forEach((r, i) => {
        const o = r * d, p = i * d;
        for (let j = 0; j < d; j++) g[o + j] += dTap[p + j];
      });
    };
    addTap(s.layers);
    const needEmbedGrad = this.embed.trainable;
    for (let l = s.layers - 1; l >= 0; l--) {
      const L = this.layers[l];
      const S = saved.layers[l];
      // MLP
      // Each intermediate goes back to the output pool once used (recycleOutput), and so does
      // what the layer's forward saved once its backward is done: the next layer's backward
      // and the next forward take the same sizes again.
      const dh = this.#linBwd(dx, S.h, L.down, S.lora.get(L.down), true)!;
      const { dGate, dUp } = swigluBackwardD(dh, S.g, S.u);
      const dn2 = this.#linBwd(dGate, S.n2, L.gate, S.lora.get(L.gate), true)!;
      const dn2Up = this.#linBwd(dUp, S.n2, L.up, S.lora.get(L.up), true)!;
      addInto(dn2, dn2Up);
      recycleOutput(dh, dGate, dUp, dn2Up);
      const r2 = rmsNormBackwardD(dn2, S.x2, L.ln2.value, S.rstd2, s.rmsNormEps);
      if (L.ln2.trainable) addGrad(L.ln2, r2.dGain);
      const dx2 = r2.dx;
      addInto(dx2, dx);
      recycleOutput(dn2, dx);
      // Attention
      const attFlat = view(S.att, [T, s.heads * s.headDim]);
      const dAtt = this.#linBwd(dx2, attFlat, L.o, S.lora.get(L.o), true)!;
      const g = attentionBackward(view(dAtt, [T, s.heads, s.headDim]), S.q, S.k, S.v, S.att, S.lse, attOpts);
      const dq = this.rope(g.dq, saved.positions, true);
      const dk = this.rope(g.dk, saved.positions, true);
      recycleOutput(dAtt, g.dq, g.dk);
      const needDx = l > 0 || needEmbedGrad || L.ln1.trainable || needInputGrad;
      const flat = (t: Tensor, h: number) => view(t, [T, h * s.headDim]);
      const dn1 = this.#linBwd(flat(dq, s.heads), S.n1, L.q, S.lora.get(L.q), needDx);
      const dk1 = this.#linBwd(flat(dk, s.kvHeads), S.n1, L.k, S.lora.get(L.k), needDx);
      const dv1 = this.#linBwd(flat(g.dv, s.kvHeads), S.n1, L.v, S.lora.get(L.v), needDx);
      recycleOutput(dq, dk, g.dv);
      if (dn1 && dk1 && dv1) {
        addInto(dn1, dk1);
        addInto(dn1, dv1);
        const r1 = rmsNormBackwardD(dn1, S.x, L.ln1.value, S.rstd1, s.rmsNormEps);
        if (L.ln1.trainable) addGrad(L.ln1, r1.dGain);
        addInto(r1.dx, dx2);
        recycleOutput(dn1, dk1, dv1, dx2);
        dx = r1.dx;
      } else dx = dx2; // layer 0 with nothing trainable below it: dx is not used
      // S.x is the layer below's output (or the embedding rows): read by nothing after this.
      recycleOutput(S.x, S.n1, S.q, S.k, S.vLin, S.att, S.lse, S.x2, S.n2, S.g, S.u, S.h);
      addTap(l);
    }
    if (needEmbedGrad && dx.device === 'cuda') {
      this.embed.grad ??= zerosOn([s.vocab, d], 'cuda');
      const rep = saved.replaced;
      if (rep) {
        const keep = Int32Array.from({ length: T }, (_, t) => t).filter((t) => !rep[t]);
        embedGrad(gatherRows(dx, keep), Int32Array.from(keep, (t) => saved.ids[t]), s.vocab, this.embed.grad);
      } else embedGrad(dx, saved.ids, s.vocab, this.embed.grad);
    } else if (needEmbedGrad) {
      if (!this.embed.grad) this.embed.grad = tensor(new Float32Array(s.vocab * d), [s.vocab, d]);
      let dEmb = dx;
      if (saved.replaced) {
        const g = f32(dx).slice();
        for (let t = 0; t < T; t++) if (saved.replaced[t]) g.fill(0, t * d, (t + 1) * d);
        dEmb = tensor(g, [T, d]);
      }
      embedGrad(dEmb, saved.ids, s.vocab, this.embed.grad);
    }
    return needInputGrad ? dx : null;
  }
}

/** What headLogprobs keeps for headBackward. */
export interface HeadState {
  /** The selected rows of hN [n, d]: host values, or a device tensor on CUDA. */
  sel: Float32Array | Tensor;
  rows: Int32Array;
  targets: Int32Array;
  kept: Tensor[] | null;
}

/** Rows [i0, i1) of the selected hidden states as a [i1 - i0, d] tensor (a view on the CPU). */
function selRows(sel: Float32Array | Tensor, i0: number, i1: number, n: number, d: number): Tensor {
  if (!(sel instanceof Tensor)) return tensor(sel.subarray(i0 * d, i1 * d), [i1 - i0, d]);
  if (i0 === 0 && i1 === n) return sel;
  return gatherRows(sel, Int32Array.from({ length: i1 - i0 }, (_, i) => i0 + i));
}
