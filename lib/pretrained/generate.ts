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
// one random stream per sequence (its index in the batch, or the caller's
// `streams`), so a sequence draws the same tokens alone or in any batch that
// gives it the same stream. A sequence stops after an end-of-sequence id (kept
// in its output) or maxTokens tokens. The decode loop is a generator that
// yields each step's sampled tokens (generateSteps): generateTokens runs it to
// the end, PretrainedModel.generateStream one step per token it hands out.
//
// On CUDA (a model loaded with device 'cuda') the cache is a device buffer per
// layer, rows written by scatter-add into zeros, and each step's attention is
// one decode-attention kernel over every active sequence's cache rows
// (vp::cuda::decode_attention); only each step's logits [active, V] come back
// to the host for sampling.
// Cost per generated token: 2·P multiply-adds (P = the decoder's matrices) plus
// O(layers · H · D · context) for attention; cache memory
// 2 · layers · Hkv · D · Σ(prompt + maxTokens) floats.
import { native } from '../native.js';
import { attention } from '../ops/attention.js';
import { rmsNorm, sampleTokens, swiglu } from '../ops/layers.js';
import { emptyLike, tensor, type Tensor } from '../tensor.js';
import { embeddingW } from './bf16.js';
import type { Decoder } from './decoder.js';
import { addInto, embed, gatherRows, rmsNormD, scatterAddRows, swigluD, view, zerosOn } from './device.js';

export type GenOptions = {
  maxTokens: number; temperature: number; topP: number; seed: number; eos: ReadonlySet<number>;
  /** The sampler stream of each sequence (default: its index in the batch). */
  streams?: Int32Array;
};

/** The tokens one decode step sampled: sequence index and token id, in batch order. */
export type StepTokens = { sequence: number; token: number }[];

/**
 * One sampling step: the next token of every active sequence from its logits
 * [active, V] (host), appended to its output; returns the sequences that go on
 * and their new tokens.
 */
function sampleStep(logits: Tensor, vocab: number, banned: readonly number[], o: GenOptions, step: number, active: number[], out: number[][]): { next: number[]; nextToks: number[]; sampled: StepTokens } {
  if (banned.length) {
    const lg = f32(logits);
    for (let r = 0; r < logits.shape[0]; r++) for (const id of banned) lg[r * vocab + id] = -1e30; // sampleTokens takes finite logits only
  }
  const toks = sampleTokens(logits, {
    temperature: o.temperature, topP: o.topP, seed: o.seed, step, streams: o.streams ? active.map((b) => o.streams![b]) : active,
  });
  const next: number[] = [];
  const nextToks: number[] = [];
  const sampled: StepTokens = [];
  active.forEach((b, i) => {
    out[b].push(toks[i]);
    sampled.push({ sequence: b, token: toks[i] });
    if (!o.eos.has(toks[i]) && step + 1 < o.maxTokens) {
      next.push(b);
      nextToks.push(toks[i]);
    }
  });
  return { next, nextToks, sampled };
}

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
  /**
   * Called with (sequence index, token id) as each token is sampled, before the
   * whole batch is done (as VideoLM's; see generateStream). An exception it
   * throws stops the calls and rejects the call once generation has finished.
   */
  onToken?: (sequence: number, token: number) => void;
  /**
   * The random stream of each sequence (default: its index in the batch), as VideoLM.generateBatch's:
   * a sequence given stream k samples the tokens it would as sequence k of a larger batch
   * (a data-parallel rank's piece of a rollout samples what one process would).
   */
  streams?: Int32Array;
}

const f32 = (t: Tensor) => t.data as Float32Array;

/**
 * Continues each prompt (non-empty token ids); returns the new tokens of each.
 * `onStep` sees each step's sampled tokens as they are drawn.
 */
export function generateTokens(
  dec: Decoder,
  prompts: readonly Int32Array[],
  o: GenOptions,
  prefill?: { inputEmbeds: Tensor; replaced: Uint8Array },
  /** Ids never sampled (a vision-language model's image token: its rows are visual features only). */
  banned: readonly number[] = [],
  onStep?: (sampled: StepTokens) => void,
): Int32Array[] {
  const it = generateSteps(dec, prompts, o, prefill, banned);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    onStep?.(r.value);
  }
}

/**
 * generateTokens one decode step at a time: yields each step's sampled tokens
 * and returns the new tokens of every sequence. Returning it early (return())
 * frees its cache.
 */
export function* generateSteps(
  dec: Decoder,
  prompts: readonly Int32Array[],
  o: GenOptions,
  prefill?: { inputEmbeds: Tensor; replaced: Uint8Array },
  banned: readonly number[] = [],
): Generator<StepTokens, Int32Array[], undefined> {
  const s = dec.spec;
  const B = prompts.length;
  const out: number[][] = prompts.map(() => []);
  if (B === 0 || o.maxTokens === 0) return out.map((x) => Int32Array.from(x));
  if (dec.embed.value.device === 'cuda') return yield* generateCuda(dec, prompts, o, out, prefill, banned);
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
    const { next, nextToks, sampled } = sampleStep(dec.logits(h), s.vocab, banned, o, step, active, out);
    yield sampled;
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

/** generateTokens on CUDA: the same steps with the cache and every layer on the device (see the file comment). */
function* generateCuda(
  dec: Decoder, prompts: readonly Int32Array[], o: GenOptions, out: number[][],
  prefill: { inputEmbeds: Tensor; replaced: Uint8Array } | undefined, banned: readonly number[],
): Generator<StepTokens, Int32Array[], undefined> {
  const s = dec.spec;
  const B = prompts.length;
  const kvd = s.kvHeads * s.headDim;
  const base = new Int32Array(B + 1);
  prompts.forEach((p, b) => (base[b + 1] = base[b] + p.length + o.maxTokens));
  const rowsCache = base[B];
  const cacheK = Array.from({ length: s.layers }, () => zerosOn([rowsCache, kvd], 'cuda'));
  const cacheV = Array.from({ length: s.layers }, () => zerosOn([rowsCache, kvd], 'cuda'));
  // Freed however the steps end: finished, failed, or returned early by a stream's consumer.
  try {
    const cu = new Int32Array(B + 1);
    prompts.forEach((p, b) => (cu[b + 1] = cu[b] + p.length));
    const ids = new Int32Array(cu[B]);
    const positions = new Int32Array(cu[B]);
    const cacheRow = new Int32Array(cu[B]);
    prompts.forEach((p, b) => {
      ids.set(p, cu[b]);
      for (let i = 0; i < p.length; i++) {
        positions[cu[b] + i] = i;
        cacheRow[cu[b] + i] = base[b] + i;
      }
    });
    const { hN } = dec.forward(ids, positions, cu, {
      ...(prefill ?? {}),
      onKV: (l, k, v) => {
        scatterAddRows(cacheK[l], view(k, [cu[B], kvd]), cacheRow);
        scatterAddRows(cacheV[l], view(v, [cu[B], kvd]), cacheRow);
      },
    });
    const lens = prompts.map((p) => p.length);
    let active = Array.from({ length: B }, (_, b) => b);
    let h = gatherRows(hN, Int32Array.from({ length: B }, (_, b) => cu[b + 1] - 1));
    const attScale = 1 / Math.sqrt(s.headDim);
    const hd = s.heads * s.headDim;
    for (let step = 0; step < o.maxTokens && active.length > 0; step++) {
      const { next, nextToks, sampled } = sampleStep(dec.logits(h).to('cpu'), s.vocab, banned, o, step, active, out);
      yield sampled;
      active = next;
      const A = active.length;
      if (A === 0) break;
      const pos = Int32Array.from(active, (b) => lens[b]);
      const rowNew = Int32Array.from(active, (b) => base[b] + lens[b]);
      const rowBase = Int32Array.from(active, (b) => base[b]);
      const nkeys = Int32Array.from(active, (b) => lens[b] + 1);
      let x = embed(dec.embed.value, Int32Array.from(nextToks));
      for (let l = 0; l < s.layers; l++) {
        const L = dec.layers[l];
        const { y: n1 } = rmsNormD(x, L.ln1.value, s.rmsNormEps);
        const q = dec.rope(view(dec.linFwd(n1, L.q), [A, s.heads, s.headDim]), pos, false);
        const k = dec.rope(view(dec.linFwd(n1, L.k), [A, s.kvHeads, s.headDim]), pos, false);
        const v = dec.linFwd(n1, L.v);
        scatterAddRows(cacheK[l], view(k, [A, kvd]), rowNew);
        scatterAddRows(cacheV[l], v, rowNew);
        const att = emptyLike([A, hd], 'float32', 'cuda');
        native().devDecodeAttention({
          q: q.handle, kcache: cacheK[l].handle, vcache: cacheV[l].handle, cacheRows: rowsCache, base: rowBase, nkeys,
          heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim, scale: attScale, out: att.handle,
        });
        const x2 = dec.linFwd(att, L.o);
        addInto(x2, x);
        const { y: n2 } = rmsNormD(x2, L.ln2.value, s.rmsNormEps);
        const x3 = dec.linFwd(swigluD(dec.linFwd(n2, L.gate), dec.linFwd(n2, L.up)), L.down);
        addInto(x3, x2);
        x = x3;
      }
      for (const b of active) lens[b]++;
      h = rmsNormD(x, dec.norm.value, s.rmsNormEps).y;
    }
    return out.map((x) => Int32Array.from(x));
  } finally {
    for (const c of [...cacheK, ...cacheV]) c.dispose();
  }
}
