// Batched text generation with a KV cache for the Llama/Qwen2 decoder.
//
// Prefill: one packed forward pass over every prompt (varlen, causal) that
// stores each layer's rotated keys and values in a cache laid out per
// sequence (capacity prompt + maxTokens rows, so nothing is ever moved).
// Decode: one new token per unfinished sequence per step — its q/k/v through
// the batched linear layers of the active rows, its key and value appended to
// the cache, attention of its single query over its cache (vp.attention on a
// view of the cache), then the MLP and the LM head over the active rows only.
// Sampling is vp.sampleTokens: greedy (temperature 0), temperature and top-p,
// one random stream per sequence, so a sequence draws the same tokens alone
// or in a batch. A sequence stops after an end-of-sequence id (kept in its
// output) or maxTokens tokens.
//
// Cost per generated token: 2·P multiply-adds (P = the decoder's matrices) plus
// O(layers · H · D · context) for attention; cache memory
// 2 · layers · Hkv · D · Σ(prompt + maxTokens) floats.
import { attention } from '../ops/attention.js';
import { rmsNorm, sampleTokens, swiglu } from '../ops/layers.js';
import { tensor, type Tensor } from '../tensor.js';
import { embeddingW } from './bf16.js';
import type { Decoder } from './decoder.js';

export interface TextGenerateOptions {
  /** New tokens per sequence at most (default 32). */
  maxTokens?: number;
  /** 0: greedy (default). */
  temperature?: number;
  /** Nucleus sampling mass (default 1: off). */
  topP?: number;
  seed?: number;
  /** Stop after any of these ids (default: the model's end-of-sequence ids); [] or -1 never stops early. */
  eosId?: number | readonly number[];
}

const f32 = (t: Tensor) => t.data as Float32Array;

/** Continues each prompt (non-empty token ids); returns the new tokens of each. */
export function generateTokens(
  dec: Decoder,
  prompts: readonly Int32Array[],
  o: { maxTokens: number; temperature: number; topP: number; seed: number; eos: ReadonlySet<number> },
  prefill?: { inputEmbeds: Tensor; replaced: Uint8Array },
  /** Ids never sampled (a vision-language model's image token: its rows are visual features only). */
  banned: readonly number[] = [],
): Int32Array[] {
  const s = dec.spec;
  const B = prompts.length;
  const out: number[][] = prompts.map(() => []);
  if (B === 0 || o.maxTokens === 0) return out.map((x) => Int32Array.from(x));
  const kvd = s.kvHeads * s.headDim;
  const base = new Int32Array(B + 1);
  prompts.forEach((p, b) => (base[b + 1] = base[b] + p.length + o.maxTokens));
  const cacheK = Array.from({ length: s.layers }, () => new Float32Array(base[B] * kvd));
  const cacheV = Array.from({ length: s.layers }, () => new Float32Array(base[B] * kvd));
  // Prefill: all prompts in one packed pass.
  const cu = new Int32Array(B + 1);
  prompts.forEach((p, b) => (cu[b + 1] = cu[b] + p.length));
  const ids = new Int32Array(cu[B]);
  const positions = new Int32Array(cu[B]);
  prompts.forEach((p, b) => {
    ids.set(p, cu[b]);
    for (let i = 0; i < p.length; i++) positions[cu[b] + i] = i;
  });
  const { hN } = dec.forward(ids, positions, cu, {
    ...(prefill ?? {}),
    onKV: (l, k, v) => {
      for (let b = 0; b < B; b++) {
        const n = cu[b + 1] - cu[b];
        cacheK[l].set(f32(k).subarray(cu[b] * kvd, (cu[b] + n) * kvd), base[b] * kvd);
        cacheV[l].set(f32(v).subarray(cu[b] * kvd, (cu[b] + n) * kvd), base[b] * kvd);
      }
    },
  });
  const d = s.hidden;
  const last = new Float32Array(B * d);
  for (let b = 0; b < B; b++) last.set(f32(hN).subarray((cu[b + 1] - 1) * d, cu[b + 1] * d), b * d);
  const lens = prompts.map((p) => p.length);
  let active = Array.from({ length: B }, (_, b) => b);
  let h = tensor(last, [B, d]);
  const attScale = 1 / Math.sqrt(s.headDim);
  for (let step = 0; step < o.maxTokens && active.length > 0; step++) {
    const logits = dec.logits(h);
    if (banned.length) {
      const lg = f32(logits);
      for (let r = 0; r < logits.shape[0]; r++) for (const id of banned) lg[r * s.vocab + id] = -1e30; // sampleTokens takes finite logits only
    }
    const toks = sampleTokens(logits, {
      temperature: o.temperature, topP: o.topP, seed: o.seed, step, streams: active,
    });
    const next: number[] = [];
    const nextToks: number[] = [];
    active.forEach((b, i) => {
      out[b].push(toks[i]);
      if (!o.eos.has(toks[i]) && step + 1 < o.maxTokens) {
        next.push(b);
        nextToks.push(toks[i]);
      }
    });
    active = next;
    const A = active.length;
    if (A === 0) break;
    // One decoder step over the active rows.
    const pos = Int32Array.from(active, (b) => lens[b]);
    let x = embeddingW(dec.embed.value, Int32Array.from(nextToks));
    for (let l = 0; l < s.layers; l++) {
      const L = dec.layers[l];
      const { y: n1 } = rmsNorm(x, L.ln1.value, { eps: s.rmsNormEps });
      const q = dec.rope(tensor(f32(dec.linFwd(n1, L.q)), [A, s.heads, s.headDim]), pos, false);
      const k = dec.rope(tensor(f32(dec.linFwd(n1, L.k)), [A, s.kvHeads, s.headDim]), pos, false);
      const v = f32(dec.linFwd(n1, L.v));
      const att = new Float32Array(A * s.heads * s.headDim);
      const qd = f32(q);
      const hd = s.heads * s.headDim;
      active.forEach((b, i) => {
        const row = base[b] + lens[b];
        cacheK[l].set(f32(k).subarray(i * kvd, (i + 1) * kvd), row * kvd);
        cacheV[l].set(v.subarray(i * kvd, (i + 1) * kvd), row * kvd);
        const n = lens[b] + 1;
        const kv = (c: Float32Array) => tensor(c.subarray(base[b] * kvd, (base[b] + n) * kvd), [n, s.kvHeads, s.headDim]);
        const r = attention(tensor(qd.subarray(i * hd, (i + 1) * hd), [1, s.heads, s.headDim]), kv(cacheK[l]), kv(cacheV[l]), { scale: attScale });
        att.set(f32(r.out), i * hd);
      });
      const x2 = dec.linFwd(tensor(att, [A, hd]), L.o);
      const x2d = f32(x2), xd = f32(x);
      for (let j = 0; j < x2d.length; j++) x2d[j] += xd[j];
      const { y: n2 } = rmsNorm(x2, L.ln2.value, { eps: s.rmsNormEps });
      const x3 = dec.linFwd(swiglu(dec.linFwd(n2, L.gate), dec.linFwd(n2, L.up)), L.down);
      const x3d = f32(x3);
      for (let j = 0; j < x3d.length; j++) x3d[j] += x2d[j];
      x = x3;
    }
    for (const b of active) lens[b]++;
    h = rmsNorm(x, dec.norm.value, { eps: s.rmsNormEps }).y;
  }
  return out.map((x) => Int32Array.from(x));
}
