// Key-frame locators (docs/method.md, stage 1 step 2): from annotated time spans,
// and by similarity between frame features and a keyword's embedding.
// (The third, detectTransientFrames, is in transient.ts.)
import { describe, rangeError, typeError } from '../errors.js';
import { Tensor } from '../tensor.js';

export interface TimeSpan {
  start: number;
  end: number;
}

function finiteArray(fn: string, arg: string, v: unknown): ArrayLike<number> {
  const ok = Array.isArray(v) || v instanceof Float32Array || v instanceof Float64Array || v instanceof Int32Array;
  if (!ok) throw typeError(fn, arg, 'an array of numbers', describe(v));
  const a = v as ArrayLike<number>;
  for (let i = 0; i < a.length; i++) {
    if (typeof a[i] !== 'number' || !Number.isFinite(a[i])) throw rangeError(fn, `${arg}[${i}]`, 'a finite number', describe(a[i]));
  }
  return a;
}

/**
 * Key frames of annotated events: for each event `[start, end]` (inclusive, in
 * the units of `frameTimes`), the frames with `start ≤ t_f ≤ end`; when none
 * falls inside, the frame nearest the span's middle (ties: the earlier frame).
 * Returns the union over events, ascending, each frame once.
 */
export function locateKeyFrames(frameTimes: ArrayLike<number>, events: readonly TimeSpan[]): number[] {
  const fn = 'locateKeyFrames';
  const t = finiteArray(fn, 'frameTimes', frameTimes);
  if (!Array.isArray(events)) throw typeError(fn, 'events', 'an array of { start, end }', describe(events));
  const key = new Set<number>();
  for (let e = 0; e < events.length; e++) {
    const ev = events[e] as unknown;
    if (ev === null || typeof ev !== 'object') throw typeError(fn, `events[${e}]`, 'an object { start, end }', describe(ev));
    const { start, end } = ev as TimeSpan;
    if (typeof start !== 'number' || !Number.isFinite(start)) throw rangeError(fn, `events[${e}].start`, 'a finite number', describe(start));
    if (typeof end !== 'number' || !Number.isFinite(end)) throw rangeError(fn, `events[${e}].end`, 'a finite number', describe(end));
    if (end < start) throw rangeError(fn, `events[${e}].end`, `>= start (${start})`, describe(end));
    let any = false;
    for (let f = 0; f < t.length; f++) {
      if (t[f] >= start && t[f] <= end) {
        key.add(f);
        any = true;
      }
    }
    if (!any && t.length > 0) {
      const mid = (start + end) / 2;
      let best = 0;
      for (let f = 1; f < t.length; f++) if (Math.abs(t[f] - mid) < Math.abs(t[best] - mid)) best = f;
      key.add(best);
    }
  }
  return [...key].sort((a, b) => a - b);
}

export interface SimilarityOptions {
  /** How many frames (default 1; at most the number of frames). */
  k?: number;
}

function vectorData(fn: string, arg: string, v: unknown): Float32Array | Float64Array | number[] {
  if (v instanceof Tensor) {
    if (v.device !== 'cpu' || v.dtype !== 'float32') throw typeError(fn, arg, 'a CPU float32 tensor', describe(v));
    return v.data as Float32Array;
  }
  if (v instanceof Float32Array || v instanceof Float64Array) return v;
  if (Array.isArray(v)) return finiteArray(fn, arg, v) as number[];
  throw typeError(fn, arg, 'a Float32Array, number[] or CPU float32 tensor', describe(v));
}

/**
 * The `k` frames whose features are most similar (cosine) to the keyword's
 * embedding: `frameFeatures` is `[F, D]` (a CPU float32 tensor, or a
 * Float32Array of F·D values), `keywordEmbedding` has D values. Ties go to the
 * earlier frame; a zero vector has similarity 0. Returns frame indices, ascending.
 */
export function locateKeyFramesBySimilarity(frameFeatures: Tensor | Float32Array, keywordEmbedding: Tensor | Float32Array | number[], opts: SimilarityOptions = {}): number[] {
  const fn = 'locateKeyFramesBySimilarity';
  const q = vectorData(fn, 'keywordEmbedding', keywordEmbedding);
  const D = q.length;
  if (D === 0) throw rangeError(fn, 'keywordEmbedding.length', '>= 1', '0');
  if (frameFeatures instanceof Tensor && frameFeatures.shape.length !== 2)
    throw rangeError(fn, 'frameFeatures.shape', '[F, D] (2-D)', `[${frameFeatures.shape.join(', ')}]`);
  if (frameFeatures instanceof Tensor && frameFeatures.shape[1] !== D)
    throw rangeError(fn, 'frameFeatures.shape[1]', `the embedding's length ${D}`, `${frameFeatures.shape[1]}`);
  const x = vectorData(fn, 'frameFeatures', frameFeatures);
  if (x.length % D !== 0) throw rangeError(fn, 'frameFeatures.length', `a multiple of the embedding's length ${D}`, `${x.length}`);
  const F = x.length / D;
  if (opts === null || typeof opts !== 'object') throw typeError(fn, 'opts', 'an object', describe(opts));
  const k = opts.k ?? 1;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0) throw rangeError(fn, 'opts.k', 'a non-negative integer', describe(k));
  let qn = 0;
  for (let i = 0; i < D; i++) qn += q[i] * q[i];
  qn = Math.sqrt(qn);
  const sims: number[] = [];
  for (let f = 0; f < F; f++) {
    let dot = 0;
    let n = 0;
    for (let i = 0; i < D; i++) {
      const v = x[f * D + i];
      if (!Number.isFinite(v)) throw rangeError(fn, `frameFeatures[${f * D + i}]`, 'a finite number', describe(v));
      dot += v * q[i];
      n += v * v;
    }
    sims.push(n > 0 && qn > 0 ? dot / (Math.sqrt(n) * qn) : 0);
  }
  const order = sims.map((s, f) => [s, f] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  return order.slice(0, Math.min(k, F)).map(([, f]) => f).sort((a, b) => a - b);
}
