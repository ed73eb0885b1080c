// vp.comparativeRewards / groupAdvantages / grpoLoss / linearGrpoLoss against
// TRL's formulas re-implemented plainly in float64 here; validation; CUDA
// when a GPU is present.
import test from 'ava';
import * as vp from '../lib/index.js';
import { randomFloats, relError, rng } from './helpers.js';

// ---- plain float64 references -------------------------------------------------------

function nanMean(x: number[]): number {
  const v = x.filter((a) => !Number.isNaN(a));
  return v.length ? v.reduce((s, a) => s + a, 0) / v.length : NaN;
}

function nanStd(x: number[]): number {
  const v = x.filter((a) => !Number.isNaN(a));
  if (v.length < 2) return NaN;
  const m = nanMean(v);
  return Math.sqrt(v.reduce((s, a) => s + (a - m) ** 2, 0) / (v.length - 1));
}

/** TRL: A = r − mean_g; / (std_g + eps) ('group') or / (std_batch + eps) ('batch'); NaN → 0. */
function refAdvantages(r: Float32Array, g: number, scale: vp.AdvantageScale, eps: number): Float64Array {
  const all = Array.from(r);
  const batchStd = nanStd(all);
  const out = new Float64Array(r.length);
  for (let g0 = 0; g0 < r.length; g0 += g) {
    const grp = all.slice(g0, g0 + g);
    const mean = nanMean(grp), std = nanStd(grp);
    for (let i = 0; i < g; i++) {
      let a = grp[i] - mean;
      if (scale === 'group') a /= std + eps;
      if (scale === 'batch') a /= batchStd + eps;
      out[g0 + i] = Number.isNaN(a) ? 0 : a;
    }
  }
  return out;
}

interface GrpoRef {
  loss: number;
  /** Σ |w_t · ℓ_t|: the size of the terms the loss sums (its error is relative to this). */
  scale: number;
  grad: Float64Array;
  clip: number;
  kl: number;
}

function refGrpo(
  lp: ArrayLike<number>, old: Float32Array, ref: Float32Array | undefined, advTok: ArrayLike<number>, cu: Int32Array,
  o: { epsLow: number; epsHigh: number; beta: number; lossType: vp.GrpoLossType; maxCompletionLength?: number },
): GrpoRef {
  const T = lp.length, B = cu.length - 1;
  const per = new Float64Array(T), dper = new Float64Array(T), grad = new Float64Array(T);
  let clipped = 0, kl = 0, loss = 0, scale = 0;
  for (let t = 0; t < T; t++) {
    const a = advTok[t];
    const rho = Math.exp(lp[t] - old[t]);
    const c = Math.min(Math.max(rho, 1 - o.epsLow), 1 + o.epsHigh);
    let l = -Math.min(rho * a, c * a);
    const isClip = (rho < 1 - o.epsLow && a < 0) || (rho > 1 + o.epsHigh && a > 0);
    let g = isClip ? 0 : -a * rho;
    clipped += isClip ? 1 : 0;
    if (ref) {
      const diff = ref[t] - lp[t];
      const k3 = Math.exp(diff) - diff - 1;
      kl += k3;
      l += o.beta * k3;
      g += o.beta * (1 - Math.exp(diff));
    }
    per[t] = l;
    dper[t] = g;
  }
  for (let b = 0; b < B; b++) {
    const len = cu[b + 1] - cu[b];
    for (let t = cu[b]; t < cu[b + 1]; t++) {
      const w = o.lossType === 'grpo' ? 1 / (B * Math.max(len, 1))
        : o.lossType === 'dr_grpo' ? 1 / (B * (o.maxCompletionLength as number))
        : 1 / Math.max(T, 1);
      loss += w * per[t];
      scale += Math.abs(w * per[t]);
      grad[t] = w * dper[t];
    }
  }
  return { loss, scale, grad, clip: T ? clipped / T : 0, kl: T && ref ? kl / T : 0 };
}

function randomCu(b: number, maxLen: number, seed: number, allowEmpty = true): Int32Array {
  const r = rng(seed);
  const cu = [0];
  for (let i = 0; i < b; i++) cu.push(cu[cu.length - 1] + Math.max(allowEmpty ? 0 : 1, Math.floor(r() * (maxLen + 1))));
  return Int32Array.from(cu);
}

function jitter(x: ArrayLike<number>, seed: number, amp: number): Float32Array {
  const n = randomFloats(x.length, seed, -amp, amp);
  return Float32Array.from({ length: x.length }, (_, i) => x[i] + n[i]);
}

// ---- advantages and rewards -------------------------------------------------------------

test('groupAdvantages follows TRL: NaN rewards, groups of one, batch and none scaling', (t) => {
  const a = vp.groupAdvantages(new Float32Array([1, 2, 3, 4]), 2);
  const s = Math.SQRT1_2;
  t.true(Math.abs(a[0] + 0.5 / (s + 1e-4)) < 1e-6 && Math.abs(a[1] - 0.5 / (s + 1e-4)) < 1e-6);
  t.deepEqual(Array.from(vp.groupAdvantages(new Float32Array([1, 5, -2]), 1)), [0, 0, 0]);
  t.deepEqual(Array.from(vp.groupAdvantages(new Float32Array([1, 5, -2]), 1, { scale: 'none' })), [0, 0, 0]);
  const withNaN = vp.groupAdvantages(new Float32Array([NaN, 1, 3, NaN]), 4);
  t.is(withNaN[0], 0);
  t.is(withNaN[3], 0);
  t.true(Math.abs(withNaN[2] - 1 / (Math.SQRT2 + 1e-4)) < 1e-6);
  let seed = 3;
  for (const g of [1, 2, 3, 8]) {
    for (const scale of ['group', 'batch', 'none'] as const) {
      for (const eps of [1e-4, 0, 0.25]) {
        const r = randomFloats(g * 1001, seed++, -2, 4);
        const nan = rng(seed++);
        for (let i = 0; i < r.length; i++) if (nan() < 0.08) r[i] = NaN;
        const out = vp.groupAdvantages(r, g, { scale, eps });
        t.true(relError(out, refAdvantages(r, g, scale, eps)) <= 1e-5, `g=${g} ${scale} eps=${eps}`);
      }
    }
  }
});

test('comparativeRewards: pairwise counts strictly lower degraded rewards; threshold is inclusive', (t) => {
  const out = vp.comparativeRewards(new Float32Array([0.5, 1.0, 0.2]), new Float32Array([0.5, 0.2]), 3);
  t.deepEqual(Array.from(out).map((x) => +x.toFixed(6)), [0.75, 1.5, 0.2]);
  const c = new Float32Array([0.25, 0.75, 0.0, 1.0]);
  const d = new Float32Array([1, 1]);
  const th = vp.comparativeRewards(c, d, 4, { mode: 'threshold', ratio: 0.5 });
  t.deepEqual(Array.from(th).map((x) => +x.toFixed(6)), [0.55, 1.05, 0, 1.3]); // 0.5 >= 0.5 · 1: inclusive
  const none = vp.comparativeRewards(c, d, 4, { mode: 'threshold', ratio: 0.5000001 });
  t.deepEqual(Array.from(none), Array.from(c));
  // defaults: bonus 0.3 in threshold mode, ratio 0.8, reward must exceed 0.1
  const def = vp.comparativeRewards(new Float32Array([0.1, 0.9]), new Float32Array([0.5]), 2, { mode: 'threshold' });
  t.deepEqual(Array.from(def).map((x) => +x.toFixed(6)), [0.1, 1.2]);
  // random groups against a plain reference
  let seed = 50;
  for (const mode of ['pairwise', 'threshold'] as const) {
    for (const [g, m] of [[1, 1], [4, 4], [3, 7]]) {
      const groups = 500;
      const tc = randomFloats(groups * g, seed++, 0, 1).map((x) => Math.round(x * 5) / 5);
      const td = randomFloats(groups * m, seed++, 0, 1).map((x) => Math.round(x * 5) / 5);
      const want = new Float64Array(tc.length);
      for (let gi = 0; gi < groups; gi++) {
        const cs = Array.from(tc.subarray(gi * g, gi * g + g)), ds = Array.from(td.subarray(gi * m, gi * m + m));
        const mc = nanMean(cs), md = nanMean(ds);
        for (let i = 0; i < g; i++) {
          const x = cs[i];
          want[gi * g + i] = mode === 'pairwise' ? x + 0.5 * ds.filter((y) => y < x).length / m : x + (mc >= 0.8 * md && x > Math.fround(0.1) ? 0.3 : 0);
        }
      }
      t.true(relError(vp.comparativeRewards(tc, td, g, { mode }), want) <= 1e-6, `${mode} g=${g} m=${m}`);
    }
  }
});

test('rewards and advantages reject bad inputs', (t) => {
  t.throws(() => vp.groupAdvantages(new Float32Array(10), 3), { instanceOf: RangeError, message: /groupAdvantages: groupSize must be a divisor of the number of rewards \(10\), got 3/ });
  t.throws(() => vp.groupAdvantages(new Float32Array(10), 0), { instanceOf: RangeError, message: /groupSize must be an integer >= 1/ });
  t.throws(() => vp.groupAdvantages(new Float32Array(10), 2.5), { instanceOf: RangeError, message: /groupSize/ });
  t.throws(() => vp.groupAdvantages([1, 2] as unknown as Float32Array, 2), { instanceOf: TypeError, message: /rewards must be a Float32Array/ });
  t.throws(() => vp.groupAdvantages(new Float32Array([1, Infinity]), 2), { instanceOf: RangeError, message: /rewards\[1\] must be finite or NaN/ });
  t.throws(() => vp.groupAdvantages(new Float32Array(2), 2, { scale: 'std' as vp.AdvantageScale }), { instanceOf: TypeError, message: /opts\.scale/ });
  t.throws(() => vp.groupAdvantages(new Float32Array(2), 2, { eps: -1 }), { instanceOf: RangeError, message: /opts\.eps/ });
  t.throws(() => vp.comparativeRewards(new Float32Array(4), new Float32Array(3), 2), { instanceOf: RangeError, message: /taskDegraded\.length must be a positive multiple of the number of groups \(2\)/ });
  t.throws(() => vp.comparativeRewards(new Float32Array(4), new Float32Array(0), 2), { instanceOf: RangeError, message: /taskDegraded\.length/ });
  t.throws(() => vp.comparativeRewards(new Float32Array(5), new Float32Array(2), 2), { instanceOf: RangeError, message: /groupSize/ });
  t.throws(() => vp.comparativeRewards(new Float32Array(2), new Float32Array(2), 2, { mode: 'x' as vp.ComparativeMode }), { instanceOf: TypeError, message: /opts\.mode/ });
  t.throws(() => vp.comparativeRewards(new Float32Array(2), new Float32Array([-Infinity]), 2), { instanceOf: RangeError, message: /taskDegraded\[0\]/ });
});

// ---- the clipped loss -----------------------------------------------------------------

test('grpoLoss matches the float64 reference for every loss type; the gradient matches finite differences', (t) => {
  let seed = 100;
  for (const lossType of ['grpo', 'bnpo', 'dapo', 'dr_grpo'] as const) {
    for (const withRef of [false, true]) {
      for (const perSeq of [false, true]) {
        const B = 17;
        const cu = randomCu(B, 30, seed++);
        const T = cu[B];
        const lp = randomFloats(T, seed++, -5, -0.1);
        const old = jitter(lp, seed++, 0.4);
        const ref = withRef ? jitter(lp, seed++, 0.5) : undefined;
        const advSeq = randomFloats(B, seed++, -2, 2);
        const advTok = perSeq ? Float32Array.from({ length: T }, (_, i) => advSeq[cu.findIndex((c, b) => b < B && i >= c && i < cu[b + 1])]) : randomFloats(T, seed++, -2, 2);
        const o = { epsLow: 0.2, epsHigh: 0.28, beta: withRef ? 0.04 : 0, lossType, maxCompletionLength: 32 };
        const want = refGrpo(lp, old, ref, advTok, cu, o);
        const got = vp.grpoLoss({ logprobs: lp, oldLogprobs: old, refLogprobs: ref, advantages: perSeq ? advSeq : advTok, cuSeqlens: cu }, o);
        const label = `${lossType} ref=${withRef} perSeq=${perSeq}`;
        t.true(Math.abs(got.loss - want.loss) <= 1e-5 * want.scale, label);
        t.true(relError(got.dLogprobs as Float32Array, want.grad) <= 1e-5, label);
        t.is(got.clipFraction, want.clip, label);
        t.true(want.clip > 0, 'the data exercises clipping');
        t.true(withRef ? Math.abs(got.kl - want.kl) <= 1e-5 * want.kl : got.kl === 0, label);
        // central differences of the reference loss
        const lpd = Float64Array.from(lp);
        const fd = new Float64Array(T);
        for (let k = 0; k < T; k++) {
          const p = lpd.slice(), m = lpd.slice();
          p[k] += 1e-6;
          m[k] -= 1e-6;
          fd[k] = (refGrpo(p, old, ref, advTok, cu, o).loss - refGrpo(m, old, ref, advTok, cu, o).loss) / 2e-6;
        }
        t.true(relError(fd, want.grad) <= 1e-6, `fd ${label}`);
      }
    }
  }
});

test('grpoLoss rejects bad inputs with clear messages', (t) => {
  const lp = new Float32Array([-1, -2, -3]);
  const base = { logprobs: lp, oldLogprobs: lp, advantages: new Float32Array([1, -1, 0]), cuSeqlens: new Int32Array([0, 2, 3]) };
  t.throws(() => vp.grpoLoss(base, { lossType: 'dr_grpo' }), { instanceOf: TypeError, message: /opts\.maxCompletionLength must be an integer >= 1 with lossType 'dr_grpo'/ });
  t.throws(() => vp.grpoLoss(base, { lossType: 'dr_grpo', maxCompletionLength: 1 }), { instanceOf: RangeError, message: /maxCompletionLength \(1\)/ });
  t.throws(() => vp.grpoLoss(base, { lossType: 'ppo' as vp.GrpoLossType }), { instanceOf: TypeError, message: /opts\.lossType/ });
  t.throws(() => vp.grpoLoss(base, { beta: 0.1 }), { instanceOf: TypeError, message: /refLogprobs/ });
  t.throws(() => vp.grpoLoss(base, { epsLow: -0.1 }), { instanceOf: RangeError, message: /opts\.epsLow/ });
  t.throws(() => vp.grpoLoss({ ...base, oldLogprobs: new Float32Array(2) }), { instanceOf: RangeError, message: /oldLogprobs\.length must be 3/ });
  t.throws(() => vp.grpoLoss({ ...base, advantages: new Float32Array(4) }), { instanceOf: RangeError, message: /advantages\.length must be 3 \(one per token\) or 2 \(one per sequence\)/ });
  t.throws(() => vp.grpoLoss({ ...base, cuSeqlens: new Int32Array([0, 2, 4]) }), { instanceOf: RangeError, message: /cuSeqlens\[2\] must be the total row count 3/ });
  t.throws(() => vp.grpoLoss({ ...base, cuSeqlens: new Int32Array([0, 3, 2]) }), { instanceOf: RangeError, message: /cuSeqlens\[2\]/ });
  t.throws(() => vp.grpoLoss({ ...base, oldLogprobs: new Float32Array([-1, NaN, -3]) }), { instanceOf: RangeError, message: /oldLogprobs\[1\] must be finite/ });
  t.throws(() => vp.grpoLoss({ ...base, logprobs: new Float32Array([-1, -Infinity, -3]) }), { instanceOf: RangeError, message: /logprobs\[1\] must be finite/ });
  t.throws(() => vp.grpoLoss({ ...base, advantages: [1, 2, 3] as unknown as Float32Array }), { instanceOf: TypeError, message: /advantages must be a Float32Array/ });
  t.throws(() => vp.grpoLoss(null as unknown as vp.GrpoLossInputs), { instanceOf: TypeError, message: /grpoLoss: inputs/ });
});

// ---- the fused linear loss ----------------------------------------------------------------

test('linearGrpoLoss matches the float64 composition for every loss type', (t) => {
  let seed = 300;
  for (const lossType of ['grpo', 'bnpo', 'dapo', 'dr_grpo'] as const) {
    const B = 6, d = 24, v = 400;
    const cu = randomCu(B, 20, seed++, false);
    const T = cu[B];
    const h = randomFloats(T * d, seed++), w = randomFloats(v * d, seed++);
    const r = rng(seed++);
    const tg = Int32Array.from({ length: T }, () => Math.floor(r() * v));
    const temp = lossType === 'grpo' ? 0.9 : 1;
    const z = new Float64Array(T * v), lse = new Float64Array(T), lp = new Float64Array(T);
    for (let i = 0; i < T; i++) {
      let m = -Infinity;
      for (let j = 0; j < v; j++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += h[i * d + k] * w[j * d + k];
        z[i * v + j] = s / temp;
        m = Math.max(m, z[i * v + j]);
      }
      let s = 0;
      for (let j = 0; j < v; j++) s += Math.exp(z[i * v + j] - m);
      lse[i] = m + Math.log(s);
      lp[i] = z[i * v + tg[i]] - lse[i];
    }
    const old = jitter(lp, seed++, 0.3), ref = jitter(lp, seed++, 0.3);
    const adv = randomFloats(T, seed++, -1.5, 1.5);
    const o = { epsLow: 0.2, epsHigh: 0.25, beta: 0.05, lossType, maxCompletionLength: 20, temperature: temp };
    const want = refGrpo(lp, old, ref, adv, cu, o);
    const dh = new Float64Array(T * d), dw = new Float64Array(v * d);
    for (let i = 0; i < T; i++)
      for (let j = 0; j < v; j++) {
        const gz = want.grad[i] * ((j === tg[i] ? 1 : 0) - Math.exp(z[i * v + j] - lse[i])) / temp;
        for (let k = 0; k < d; k++) {
          dh[i * d + k] += gz * w[j * d + k];
          dw[j * d + k] += gz * h[i * d + k];
        }
      }
    const got = vp.linearGrpoLoss({ hidden: vp.tensor(h, [T, d]), weight: vp.tensor(w, [v, d]), targets: tg, oldLogprobs: old, refLogprobs: ref, advantages: adv, cuSeqlens: cu }, o);
    t.true(Math.abs(got.loss - want.loss) <= 1e-5 * want.scale, lossType);
    t.true(relError(got.logprobs, lp) <= 1e-5, lossType);
    t.true(relError(got.dHidden.data, dh) <= 1e-5, `dHidden ${lossType}`);
    t.true(relError(got.dWeight.data, dw) <= 1e-5, `dWeight ${lossType}`);
    t.is(got.clipFraction, want.clip);
    t.true(Math.abs(got.kl - want.kl) <= 1e-5 * want.kl);
  }
});

test('linearGrpoLoss rejects bad inputs', (t) => {
  const h = vp.tensor(randomFloats(6, 1), [3, 2]);
  const w = vp.tensor(randomFloats(8, 2), [4, 2]);
  const base = { hidden: h, weight: w, targets: new Int32Array([0, 1, 3]), oldLogprobs: new Float32Array(3), advantages: new Float32Array(3), cuSeqlens: new Int32Array([0, 3]) };
  t.notThrows(() => vp.linearGrpoLoss(base));
  t.throws(() => vp.linearGrpoLoss({ ...base, targets: new Int32Array([0, 4, 1]) }), { instanceOf: RangeError, message: /linearGrpoLoss: targets\[1\] must be in \[0, 4\)/ });
  t.throws(() => vp.linearGrpoLoss({ ...base, targets: new Int32Array([0, 1]) }), { instanceOf: RangeError, message: /targets\.length must be 3/ });
  t.throws(() => vp.linearGrpoLoss({ ...base, oldLogprobs: new Float32Array(4) }), { instanceOf: RangeError, message: /oldLogprobs\.length must be 3/ });
  t.throws(() => vp.linearGrpoLoss({ ...base, cuSeqlens: new Int32Array([0, 2]) }), { instanceOf: RangeError, message: /cuSeqlens/ });
  t.throws(() => vp.linearGrpoLoss(base, { lossType: 'dr_grpo' }), { instanceOf: TypeError, message: /maxCompletionLength/ });
  t.throws(() => vp.linearGrpoLoss(base, { temperature: -1 }), { instanceOf: RangeError, message: /opts\.temperature/ });
  t.throws(() => vp.linearGrpoLoss({ ...base, weight: vp.tensor(randomFloats(6, 2), [2, 3]) }), { instanceOf: RangeError, message: /weight\.shape/ });
  t.throws(() => vp.linearGrpoLoss({ ...base, advantages: new Float32Array([0, NaN, 0]) }), { instanceOf: RangeError, message: /advantages\[1\]/ });
});

const cuda = vp.backendInfo().cuda;
(cuda ? test : test.skip)('CUDA GRPO pieces agree with the CPU', (t) => {
  const T = 500, d = 64, v = 2000;
  const cu = randomCu(20, 40, 1, false);
  const n = cu[cu.length - 1];
  t.true(n <= T);
  const h = vp.tensor(randomFloats(n * d, 2), [n, d]), w = vp.tensor(randomFloats(v * d, 3, -0.5, 0.5), [v, d]);
  const r = rng(4);
  const tg = Int32Array.from({ length: n }, () => Math.floor(r() * v));
  const lp = vp.linearTokenLogprobs(h, w, tg);
  const old = jitter(lp, 5, 0.3), adv = randomFloats(n, 6, -1, 1);
  const inputs = { hidden: h, weight: w, targets: tg, oldLogprobs: old, advantages: adv, cuSeqlens: cu };
  const want = vp.linearGrpoLoss(inputs);
  for (const [dtype, tol] of [['float32', 1e-5], ['bfloat16', 1e-2]] as const) {
    const hc = h.to('cuda', dtype), wc = w.to('cuda', dtype);
    const ref = dtype === 'float32' ? want : vp.linearGrpoLoss({ ...inputs, hidden: hc.to('cpu', 'float32'), weight: wc.to('cpu', 'float32') });
    const got = vp.linearGrpoLoss({ ...inputs, hidden: hc, weight: wc });
    t.true(Math.abs(got.loss - ref.loss) <= tol * Math.abs(ref.loss) + 1e-7, `${dtype} loss`);
    t.true(relError(got.dHidden.to('cpu', 'float32').data, ref.dHidden.data) <= tol, `${dtype} dHidden`);
    t.true(relError(got.dWeight.to('cpu', 'float32').data, ref.dWeight.data) <= tol, `${dtype} dWeight`);
    for (const x of [hc, wc, got.dHidden, got.dWeight]) x.dispose();
  }
  const rewards = randomFloats(4096, 7);
  const rc = vp.tensor(rewards, [4096]).to('cuda');
  const ac = vp.groupAdvantages(rc, 8) as vp.Tensor;
  t.true(relError(ac.to('cpu').data, vp.groupAdvantages(rewards, 8)) <= 1e-5);
  const lpc = vp.tensor(Float32Array.from(lp), [n]).to('cuda');
  const gl = vp.grpoLoss({ logprobs: lpc, oldLogprobs: old, advantages: adv, cuSeqlens: cu });
  const gw = vp.grpoLoss({ logprobs: Float32Array.from(lp), oldLogprobs: old, advantages: adv, cuSeqlens: cu });
  t.true(Math.abs(gl.loss - gw.loss) <= 1e-5 * Math.abs(gw.loss));
  t.true(relError((gl.dLogprobs as vp.Tensor).to('cpu').data, gw.dLogprobs as Float32Array) <= 1e-5);
  for (const x of [rc, ac, lpc, gl.dLogprobs as vp.Tensor]) x.dispose();
});

// ---- fuzz: any arguments either work or throw a clean TypeError/RangeError ------------------

import fc from 'fast-check';

const anyValue = fc.oneof(
  fc.constant(undefined), fc.constant(null), fc.integer(), fc.double(), fc.string(), fc.boolean(),
  fc.array(fc.integer(), { maxLength: 4 }), fc.object(),
);
const clean = (e: unknown) => e instanceof TypeError || e instanceof RangeError;
const floats = (xs: number[]) => Float32Array.from(xs);
const ints = (xs: number[]) => Int32Array.from(xs);
const value = fc.oneof(fc.double({ min: -5, max: 5, noNaN: true }), fc.constantFrom(NaN, Infinity, -Infinity, 0));

test('fuzz: groupAdvantages / comparativeRewards with arbitrary lengths, group sizes and options', (t) => {
  fc.assert(
    fc.property(
      fc.array(value, { maxLength: 24 }), fc.array(value, { maxLength: 24 }),
      fc.oneof(fc.integer({ min: -2, max: 8 }), anyValue), fc.oneof(fc.constantFrom('group', 'batch', 'none'), anyValue), fc.oneof(fc.double(), anyValue),
      (r, d, g, scale, eps) => {
        try {
          const a = vp.groupAdvantages(floats(r), g as number, { scale: scale as vp.AdvantageScale, eps: eps as number });
          return a.length === r.length && Array.from(a).every(Number.isFinite);
        } catch (e) {
          if (!clean(e)) return false;
        }
        try {
          const c = vp.comparativeRewards(floats(r), floats(d), g as number, { mode: scale === 'batch' ? 'threshold' : 'pairwise' });
          return c.length === r.length;
        } catch (e) {
          return clean(e);
        }
      },
    ),
    { numRuns: 1500 },
  );
  t.pass();
});

test('fuzz: grpoLoss / linearGrpoLoss with arbitrary per-token vectors, cuSeqlens and options', (t) => {
  const h = vp.tensor(randomFloats(5 * 3, 1), [5, 3]);
  const w = vp.tensor(randomFloats(4 * 3, 2), [4, 3]);
  fc.assert(
    fc.property(
      fc.array(fc.double({ min: -4, max: -0.01, noNaN: true }), { minLength: 0, maxLength: 6 }),
      fc.array(fc.integer({ min: -1, max: 7 }), { maxLength: 5 }),
      fc.array(value, { maxLength: 6 }),
      fc.array(fc.integer({ min: -1, max: 4 }), { minLength: 5, maxLength: 6 }),
      fc.record({
        epsLow: fc.oneof(fc.double(), anyValue), epsHigh: fc.oneof(fc.double({ min: 0, max: 1 }), anyValue),
        beta: fc.oneof(fc.constantFrom(0, 0.1), anyValue), lossType: fc.oneof(fc.constantFrom('grpo', 'bnpo', 'dapo', 'dr_grpo'), anyValue),
        maxCompletionLength: fc.oneof(fc.integer({ min: 0, max: 8 }), anyValue),
      }, { requiredKeys: [] }),
      (lp, cu, adv, tg, opts) => {
        const o = opts as vp.LinearGrpoLossOptions;
        try {
          const r = vp.grpoLoss({ logprobs: floats(lp), oldLogprobs: floats(lp), refLogprobs: floats(lp), advantages: floats(adv), cuSeqlens: ints(cu) }, o);
          if (!Number.isFinite(r.loss) || (r.dLogprobs as Float32Array).length !== lp.length) return false;
        } catch (e) {
          if (!clean(e)) return false;
        }
        try {
          const r = vp.linearGrpoLoss({ hidden: h, weight: w, targets: ints(tg), oldLogprobs: floats(lp.length ? lp : [-1, -1, -1, -1, -1]), advantages: floats(adv), cuSeqlens: ints(cu) }, o);
          return Number.isFinite(r.loss) && r.dHidden.shape[0] === 5;
        } catch (e) {
          return clean(e);
        }
      },
    ),
    { numRuns: 1500 },
  );
  t.pass();
});
