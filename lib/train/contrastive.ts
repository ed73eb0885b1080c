// The contrastive alignment term of stage 1 (docs/method.md, stage 1, step 5):
// queries are the keyword's caption tokens, keys the original video's
// key-frame tokens, hard negatives the same positions in the KIM video, all
// mean-pooled from the hidden states at layer ℓ and mapped by two small
// learned projections (one for queries, one for keys and negatives). The loss
// is vp.infoNceWithGrad over [positives; negatives]; its gradients flow back
// through the projections and the pooling into the model's tapped rows.
//
// The projections are tiny ([dim, width]), so they live here in JavaScript
// with their own AdamW; the trainer checkpoints them with the model.
import { allFinite, DivergenceError } from './checkpoints.js';
import { infoNceWithGrad } from '../ops/infonce.js';
import { adamwStep, clipGradNorm, type AdamWOptions } from '../ops/layers.js';
import { seededRandom } from '../random.js';
import { Tensor } from '../tensor.js';
import type { ContrastGroup } from './batch.js';
import type { DataParallel } from './data-parallel.js';

export interface ContrastiveResult {
  loss: number;
  /** Gradient of `weight · loss` with respect to each tapped row, [tapRows.length · width]. */
  dTap: Float32Array;
  /** Fraction of queries whose best-scoring key is their own positive. */
  accuracy: number;
  /** Mean cosine similarity of query and positive minus query and hard negative. */
  margin: number;
}


/** What #prepare hands to #finish: this batch's pooled states, spans and projections. */
interface Prepared {
  n: number;
  /** Tapped rows. */
  rows: number;
  hasNeg: boolean;
  pooledQ: Float32Array;
  pooledK: Float32Array;
  spans: { q: [number, number]; p: [number, number]; g: [number, number] }[];
  /** Projected queries [n, dim] and keys [positives; negatives] of this batch. */
  q: Float32Array;
  keys: Float32Array;
}

/** The two projections, their gradients and AdamW state. */
export class ContrastiveHead {
  readonly width: number;
  readonly dim: number;
  /** [2 · dim · width]: the query projection, then the key projection (row-major [dim, width]). */
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  step = 0;

  constructor(width: number, dim: number, seed: number) {
    this.width = width;
    this.dim = dim;
    const n = 2 * dim * width;
    this.params = new Float32Array(n);
    this.grads = new Float32Array(n);
    this.m = new Float32Array(n);
    this.v = new Float32Array(n);
    // Uniform with the variance of N(0, 1/width): the projection keeps the scale of its input.
    const r = seededRandom((seed ^ 0x5bd1e995) >>> 0);
    const a = Math.sqrt(3 / width);
    for (let i = 0; i < n; i++) this.params[i] = (2 * r() - 1) * a;
  }

  /**
   * The rows to tap for a batch's groups, in order: every group's query rows,
   * positive rows and negative rows. `forwardBackward` reads the tapped states
   * in this order.
   */
  static tapRows(groups: readonly ContrastGroup[]): Int32Array {
    const rows: number[] = [];
    for (const g of groups) rows.push(...g.query, ...g.positive, ...g.negative);
    return Int32Array.from(rows);
  }

  /**
   * InfoNCE of the groups from the tapped hidden states `tap` [rows, width]
   * (rows in `tapRows` order). Accumulates the projections' gradients (scaled
   * by `weight`) and returns the gradient of `weight · loss` for each tapped row.
   */
  forwardBackward(groups: readonly ContrastGroup[], tap: Float32Array, temperature: number, weight: number): ContrastiveResult {
    const p = this.#prepare(groups, tap, groups.every((g) => g.negative.length > 0));
    return this.#finish(p, p.q, p.keys, 0, groups.length, temperature, weight);
  }

  /**
   * forwardBackward over the groups of every rank of a data-parallel launch
   * (this rank holds `groups`; `hasNeg`: every rank's groups have negatives).
   * Each rank projects its own pooled states; the projected queries and keys
   * of all ranks are gathered in rank order (as distributed CLIP gathers its
   * in-batch negatives), so every rank scores exactly the matrices one process
   * would, and keeps the gradients of its own rows. The projections'
   * gradients are this rank's part: sum them over the ranks before update().
   */
  async forwardBackwardShared(groups: readonly ContrastGroup[], tap: Float32Array, temperature: number, weight: number, hasNeg: boolean, dp: DataParallel): Promise<ContrastiveResult> {
    const p = this.#prepare(groups, tap, hasNeg);
    const k = this.dim;
    const n = groups.length;
    // This rank's rows: queries, positive keys, then negative keys; one gather for all three.
    const parts = hasNeg ? 3 : 2;
    const local = new Float32Array(parts * n * k);
    local.set(p.q, 0);
    local.set(p.keys, n * k);
    const g = await dp.gatherRows(local, k);
    const total = g.counts.reduce((a, c) => a + c / parts, 0);
    const q = new Float32Array(total * k);
    const keys = new Float32Array((parts - 1) * total * k);
    let at = 0;
    let groupAt = 0;
    for (const c of g.counts) {
      const m = c / parts;
      q.set(g.all.subarray(at * k, (at + m) * k), groupAt * k);
      keys.set(g.all.subarray((at + m) * k, (at + 2 * m) * k), groupAt * k);
      if (hasNeg) keys.set(g.all.subarray((at + 2 * m) * k, (at + 3 * m) * k), (total + groupAt) * k);
      at += c;
      groupAt += m;
    }
    return this.#finish(p, q, keys, g.offset / parts, total, temperature, weight);
  }

  /** Pooled states of the groups (queries; positives then, with hasNeg, negatives) and their projections. */
  #prepare(groups: readonly ContrastGroup[], tap: Float32Array, hasNeg: boolean): Prepared {
    const d = this.width;
    const k = this.dim;
    const n = groups.length;
    const pooledQ = new Float32Array(n * d);
    const pooledK = new Float32Array((hasNeg ? 2 : 1) * n * d);
    const spans: Prepared['spans'] = [];
    let r = 0;
    const pool = (out: Float32Array, at: number, from: number, count: number) => {
      for (let i = 0; i < count; i++) for (let c = 0; c < d; c++) out[at * d + c] += tap[(from + i) * d + c] / count;
    };
    groups.forEach((g, i) => {
      const q: [number, number] = [r, g.query.length];
      pool(pooledQ, i, r, g.query.length);
      r += g.query.length;
      const p: [number, number] = [r, g.positive.length];
      pool(pooledK, i, r, g.positive.length);
      r += g.positive.length;
      const ng: [number, number] = [r, g.negative.length];
      if (hasNeg) pool(pooledK, n + i, r, g.negative.length);
      r += g.negative.length;
      spans.push({ q, p, g: ng });
    });
    if (r * d !== tap.length) throw new RangeError(`ContrastiveHead.forwardBackward: tap must hold ${r} rows of ${d}, got ${tap.length / d}`);
    const project = (w: Float32Array, x: Float32Array, rows: number) => {
      const y = new Float32Array(rows * k);
      for (let i = 0; i < rows; i++)
        for (let o = 0; o < k; o++) {
          let s = 0;
          for (let c = 0; c < d; c++) s += w[o * d + c] * x[i * d + c];
          y[i * k + o] = s;
        }
      return y;
    };
    const q = project(this.params.subarray(0, k * d), pooledQ, n);
    const keys = project(this.params.subarray(k * d), pooledK, pooledK.length / d);
    if (!allFinite(q) || !allFinite(keys)) throw new DivergenceError('ContrastiveHead.forwardBackward', 'sft', 0, 'the projected keyword or key-frame states are not finite');
    return { n, rows: r, hasNeg, pooledQ, pooledK, spans, q, keys };
  }

  /**
   * InfoNCE of all queries `q` [total, dim] against all keys [positives; negatives]
   * (query i's positive is key i), then the backward of this batch's rows: its
   * groups are queries offset..offset+n of the total.
   */
  #finish(p: Prepared, q: Float32Array, keys: Float32Array, offset: number, total: number, temperature: number, weight: number): ContrastiveResult {
    const d = this.width;
    const k = this.dim;
    const n = p.n;
    const nk = keys.length / k;
    const positive = Int32Array.from({ length: total }, (_, i) => i);
    const res = infoNceWithGrad(new Tensor([total, k], 'float32', 'cpu', q), new Tensor([nk, k], 'float32', 'cpu', keys), { positive, temperature });
    const dq = res.dQueries.data as Float32Array;
    const dk = res.dKeys.data as Float32Array;
    // Metrics: retrieval accuracy and the positive-vs-negative cosine margin.
    const norms = (x: Float32Array, rows: number) => Float64Array.from({ length: rows }, (_, i) => Math.hypot(...x.subarray(i * k, (i + 1) * k)) || 1);
    const qn = norms(q, total);
    const kn = norms(keys, nk);
    const cos = (i: number, j: number) => {
      let s = 0;
      for (let o = 0; o < k; o++) s += q[i * k + o] * keys[j * k + o];
      return s / (qn[i] * kn[j]);
    };
    let hits = 0;
    let margin = 0;
    for (let i = 0; i < total; i++) {
      let best = 0;
      let bestCos = cos(i, 0);
      for (let j = 1; j < nk; j++) {
        const c = cos(i, j);
        if (c > bestCos) [best, bestCos] = [j, c];
      }
      if (best === i) hits++;
      if (p.hasNeg) margin += (cos(i, i) - cos(i, total + i)) / total;
    }
    // This batch's rows of the gradients: its queries, its positive and negative keys.
    const dqMine = dq.subarray(offset * k, (offset + n) * k);
    const dkMine = new Float32Array(p.keys.length);
    dkMine.set(dk.subarray(offset * k, (offset + n) * k), 0);
    if (p.hasNeg) dkMine.set(dk.subarray((total + offset) * k, (total + offset + n) * k), n * k);
    // Back through the projections: dW += weight · dYᵀ X, dX = weight · dY W.
    const back = (w: Float32Array, gw: Float32Array, dy: Float32Array, x: Float32Array, rows: number) => {
      const dx = new Float32Array(rows * d);
      for (let i = 0; i < rows; i++)
        for (let o = 0; o < k; o++) {
          const g = weight * dy[i * k + o];
          if (g === 0) continue;
          for (let c = 0; c < d; c++) {
            gw[o * d + c] += g * x[i * d + c];
            dx[i * d + c] += g * w[o * d + c];
          }
        }
      return dx;
    };
    const dPooledQ = back(this.params.subarray(0, k * d), this.grads.subarray(0, k * d), dqMine, p.pooledQ, n);
    const dPooledK = back(this.params.subarray(k * d), this.grads.subarray(k * d), dkMine, p.pooledK, p.pooledK.length / d);
    // Back through the mean pooling.
    const dTap = new Float32Array(p.rows * d);
    const spread = (src: Float32Array, at: number, [from, count]: [number, number]) => {
      for (let i = 0; i < count; i++) for (let c = 0; c < d; c++) dTap[(from + i) * d + c] = src[at * d + c] / count;
    };
    p.spans.forEach((s, i) => {
      spread(dPooledQ, i, s.q);
      spread(dPooledK, i, s.p);
      if (p.hasNeg) spread(dPooledK, n + i, s.g);
    });
    return { loss: res.loss, dTap, accuracy: hits / Math.max(total, 1), margin };
  }

  zeroGrad(): void {
    this.grads.fill(0);
  }

  /**
   * Clips the projections' gradients to `maxGradNorm` (global norm, <= 0: off), then one AdamW step
   * (vp.clipGradNorm and vp.adamwStep). Returns the norm before clipping.
   */
  update(o: Omit<AdamWOptions, 'step' | 'gradScale'> & { maxGradNorm: number }): number {
    const t = (data: Float32Array) => new Tensor([data.length], 'float32', 'cpu', data);
    const grads = t(this.grads);
    const norm = clipGradNorm([grads], o.maxGradNorm);
    this.step++;
    adamwStep(t(this.params), grads, t(this.m), t(this.v), { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step: this.step });
    return norm;
  }
}
