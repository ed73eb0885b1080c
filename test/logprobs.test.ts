// vp.tokenLogprobs / vp.linearTokenLogprobs and their backwards against
// float64 references (whose gradients are checked by finite differences);
// validation; the workspace bound; CUDA (bf16) when a GPU is present.
import test from 'ava';
import * as vp from '../lib/index.js';
import { randomFloats, relError, rng } from './helpers.js';

function randomTargets(n: number, v: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * v));
}

/** Scaled logits in float64: hidden · weightᵀ / T. */
function refLogits(h: Float32Array, w: Float32Array, n: number, d: number, v: number, temp: number): Float64Array {
  const z = new Float64Array(n * v);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < v; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += h[i * d + k] * w[j * d + k];
      z[i * v + j] = s / temp;
    }
  return z;
}

function refLse(z: Float64Array, n: number, v: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = 0; j < v; j++) m = Math.max(m, z[i * v + j]);
    let s = 0;
    for (let j = 0; j < v; j++) s += Math.exp(z[i * v + j] - m);
    out[i] = m + Math.log(s);
  }
  return out;
}

function refLogprobs(z: Float64Array, t: Int32Array, n: number, v: number): Float64Array {
  const l = refLse(z, n, v);
  return Float64Array.from({ length: n }, (_, i) => z[i * v + t[i]] - l[i]);
}

/** ∂(Σ dl_i · logp_i)/∂z for the scaled logits z. */
function refDz(z: Float64Array, t: Int32Array, dl: Float32Array, n: number, v: number): Float64Array {
  const l = refLse(z, n, v);
  const out = new Float64Array(n * v);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < v; j++) out[i * v + j] = dl[i] * ((j === t[i] ? 1 : 0) - Math.exp(z[i * v + j] - l[i]));
  return out;
}

test('tokenLogprobs and its backward match float64 (with temperature); the reference gradient matches finite differences', (t) => {
  let seed = 1;
  for (const [n, v] of [[1, 1], [4, 3], [17, 300], [33, 2500]]) {
    for (const temp of [1, 0.7]) {
      const logits = randomFloats(n * v, seed++, -5, 5);
      const tg = randomTargets(n, v, seed++);
      const dl = randomFloats(n, seed++);
      const z = Float64Array.from(logits, (x) => x / temp);
      const lp = vp.tokenLogprobs(vp.tensor(logits, [n, v]), tg, { temperature: temp });
      t.true(lp instanceof Float32Array);
      t.true(relError(lp, refLogprobs(z, tg, n, v)) <= 1e-5, `forward ${n}x${v} T=${temp}`);
      const dz = refDz(z, tg, dl, n, v).map((x) => x / temp);
      const dLogits = vp.tokenLogprobsBackward(dl, vp.tensor(logits, [n, v]), tg, { temperature: temp });
      t.deepEqual(dLogits.shape, [n, v]);
      t.true(relError(dLogits.data, dz) <= 1e-5, `backward ${n}x${v} T=${temp}`);
    }
  }
  // finite differences of the float64 reference on a small case
  const n = 3, v = 5;
  const logits = Float64Array.from(randomFloats(n * v, 99, -2, 2));
  const tg = randomTargets(n, v, 98);
  const dl = randomFloats(n, 97);
  const f = (z: Float64Array) => refLogprobs(z, tg, n, v).reduce((s, x, i) => s + dl[i] * x, 0);
  const dz = refDz(logits, tg, dl, n, v);
  for (let k = 0; k < n * v; k++) {
    const p = logits.slice(), m = logits.slice();
    p[k] += 1e-6;
    m[k] -= 1e-6;
    t.true(Math.abs((f(p) - f(m)) / 2e-6 - dz[k]) < 1e-7);
  }
});

test('linearTokenLogprobs and its backward match float64 on odd shapes', (t) => {
  let seed = 10;
  for (const [n, d, v] of [[1, 1, 1], [5, 3, 7], [29, 40, 301], [130, 70, 1100], [7, 300, 50], [4, 0, 6]]) {
    for (const temp of [1, 1.3]) {
      const h = randomFloats(n * d, seed++);
      const w = randomFloats(v * d, seed++);
      const tg = randomTargets(n, v, seed++);
      const dl = randomFloats(n, seed++);
      const z = refLogits(h, w, n, d, v, temp);
      const lp = vp.linearTokenLogprobs(vp.tensor(h, [n, d]), vp.tensor(w, [v, d]), tg, { temperature: temp });
      t.true(relError(lp, refLogprobs(z, tg, n, v)) <= 1e-5, `forward ${n}x${d}x${v}`);
      const dz = refDz(z, tg, dl, n, v);
      const dh = new Float64Array(n * d), dw = new Float64Array(v * d);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < v; j++) {
          const g = dz[i * v + j] / temp;
          for (let k = 0; k < d; k++) {
            dh[i * d + k] += g * w[j * d + k];
            dw[j * d + k] += g * h[i * d + k];
          }
        }
      const { dHidden, dWeight, logprobs } = vp.linearTokenLogprobsBackward(dl, vp.tensor(h, [n, d]), vp.tensor(w, [v, d]), tg, { temperature: temp });
      // the same pass returns the forward's log-probs
      t.true(relError(logprobs, refLogprobs(z, tg, n, v)) <= 1e-5, `backward's logprobs ${n}x${d}x${v}`);
      t.true(relError(logprobs, lp) <= 1e-6, `backward's logprobs vs forward ${n}x${d}x${v}`);
      t.deepEqual(dHidden.shape, [n, d]);
      t.deepEqual(dWeight.shape, [v, d]);
      t.true(relError(dHidden.data, dh) <= 1e-5, `dHidden ${n}x${d}x${v}`);
      t.true(relError(dWeight.data, dw) <= 1e-5, `dWeight ${n}x${d}x${v}`);
    }
  }
});

test('linearTokenLogprobsBackward: the float64 chain rule matches finite differences through the projection', (t) => {
  const n = 3, d = 4, v = 6, temp = 0.8;
  const h = randomFloats(n * d, 5), w = randomFloats(v * d, 6);
  const tg = randomTargets(n, v, 7);
  const dl = randomFloats(n, 8);
  const loss = (hh: Float64Array, ww: Float64Array) => {
    const z = new Float64Array(n * v);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < v; j++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += hh[i * d + k] * ww[j * d + k];
        z[i * v + j] = s / temp;
      }
    return refLogprobs(z, tg, n, v).reduce((s, x, i) => s + dl[i] * x, 0);
  };
  const { dHidden, dWeight } = vp.linearTokenLogprobsBackward(dl, vp.tensor(h, [n, d]), vp.tensor(w, [v, d]), tg, { temperature: temp });
  const H = Float64Array.from(h), W = Float64Array.from(w);
  const fdH = new Float64Array(n * d), fdW = new Float64Array(v * d);
  for (let k = 0; k < n * d; k++) {
    const p = H.slice(), m = H.slice();
    p[k] += 1e-6;
    m[k] -= 1e-6;
    fdH[k] = (loss(p, W) - loss(m, W)) / 2e-6;
  }
  for (let k = 0; k < v * d; k++) {
    const p = W.slice(), m = W.slice();
    p[k] += 1e-6;
    m[k] -= 1e-6;
    fdW[k] = (loss(H, p) - loss(H, m)) / 2e-6;
  }
  t.true(relError(dHidden.data, fdH) <= 1e-5);
  t.true(relError(dWeight.data, fdW) <= 1e-5);
});

test('-Infinity logits get probability 0; a row with no finite logit is a RangeError', (t) => {
  const logits = vp.tensor(new Float32Array([0.5, -Infinity, 1, 0, 1, 2]), [2, 3]);
  const lp = vp.tokenLogprobs(logits, new Int32Array([2, 0]));
  t.true(Math.abs(lp[0] - (1 - Math.log(Math.exp(0.5) + Math.exp(1)))) < 1e-6);
  const bad = vp.tensor(new Float32Array([0.5, 1, 1, -Infinity, -Infinity, -Infinity]), [2, 3]);
  t.throws(() => vp.tokenLogprobs(bad, new Int32Array([2, 0])), { instanceOf: RangeError, message: /row 1/ });
  const nan = vp.tensor(new Float32Array([NaN, 1, 1, 0, 0, 0]), [2, 3]);
  t.throws(() => vp.tokenLogprobs(nan, new Int32Array([2, 0])), { instanceOf: RangeError, message: /row 0/ });
  const h = vp.tensor(new Float32Array([1, NaN, 0, 0]), [2, 2]);
  const w = vp.tensor(new Float32Array([1, 0, 0, 1]), [2, 2]);
  t.throws(() => vp.linearTokenLogprobs(h, w, new Int32Array([0, 1])), { instanceOf: RangeError, message: /linearTokenLogprobs: .*row 0/ });
});

test('log-prob ops reject bad inputs with TypeError/RangeError naming the argument', (t) => {
  const logits = vp.tensor(randomFloats(12, 1), [3, 4]);
  const h = vp.tensor(randomFloats(6, 2), [3, 2]);
  const w = vp.tensor(randomFloats(8, 3), [4, 2]);
  const tg = new Int32Array([0, 3, 1]);
  t.throws(() => vp.tokenLogprobs(logits, new Int32Array([0, 4, 1])), { instanceOf: RangeError, message: /tokenLogprobs: targets\[1\] must be in \[0, 4\)/ });
  t.throws(() => vp.tokenLogprobs(logits, new Int32Array([0, -1, 1])), { instanceOf: RangeError, message: /targets\[1\]/ });
  t.throws(() => vp.tokenLogprobs(logits, new Int32Array([0, 1])), { instanceOf: RangeError, message: /targets\.length must be 3/ });
  t.throws(() => vp.tokenLogprobs(logits, [0, 1, 2] as unknown as Int32Array), { instanceOf: TypeError, message: /targets must be an Int32Array/ });
  t.throws(() => vp.tokenLogprobs(vp.tensor(randomFloats(12, 1), [12]), tg), { instanceOf: RangeError, message: /logits\.shape must be 2-D/ });
  t.throws(() => vp.tokenLogprobs(vp.tensor(new Int32Array(12), [3, 4]), tg), { instanceOf: TypeError, message: /logits\.dtype/ });
  t.throws(() => vp.tokenLogprobs(logits, tg, { temperature: 0 }), { instanceOf: RangeError, message: /opts\.temperature/ });
  t.throws(() => vp.tokenLogprobs(logits, tg, { temperature: NaN }), { instanceOf: RangeError, message: /opts\.temperature/ });
  t.throws(() => vp.tokenLogprobsBackward(new Float32Array([1, NaN, 0]), logits, tg), { instanceOf: RangeError, message: /dLogprobs\[1\] must be finite/ });
  t.throws(() => vp.tokenLogprobsBackward(new Float32Array(2), logits, tg), { instanceOf: RangeError, message: /dLogprobs\.length must be 3/ });
  t.throws(() => vp.linearTokenLogprobs(h, vp.tensor(randomFloats(8, 3), [2, 4]), tg), { instanceOf: RangeError, message: /weight\.shape must be \[V, 2\]/ });
  t.throws(() => vp.linearTokenLogprobs(h, w, new Int32Array([0, 4, 0])), { instanceOf: RangeError, message: /targets\[1\] must be in \[0, 4\)/ });
  t.throws(() => vp.linearTokenLogprobs(h, w, new Int32Array([0, 1, 2, 3])), { instanceOf: RangeError, message: /targets\.length must be 3/ });
  t.throws(() => vp.linearTokenLogprobs(h, 'w' as unknown as vp.Tensor, tg), { instanceOf: TypeError, message: /weight must be a Tensor/ });
  t.throws(() => vp.linearTokenLogprobs(h, vp.tensor(new Float32Array(0), [0, 2]), new Int32Array([0, 0, 0])), { instanceOf: RangeError, message: /V >= 1/ });
  t.throws(() => vp.linearTokenLogprobsBackward(new Float32Array([0, Infinity, 0]), h, w, tg), { instanceOf: RangeError, message: /dLogprobs\[1\]/ });
  const fake = new vp.Tensor([4, 2], 'float32', 'cuda', undefined, undefined);
  t.throws(() => vp.linearTokenLogprobs(h, fake, tg), { instanceOf: TypeError, message: /weight must be on cpu like hidden/ });
});

test('the linear kernels need far less than the N×V logits: < 256 MB at N=8192, d=512, V=32768', (t) => {
  for (const threads of [1, 2, 16]) {
    const fwd = vp.linearLogprobsWorkspaceBytes(8192, 512, 32768, { threads, backward: false });
    const bwd = vp.linearLogprobsWorkspaceBytes(8192, 512, 32768, { threads, backward: true });
    t.true(fwd < 256 * 2 ** 20, `forward, ${threads} threads: ${fwd} bytes`);
    t.true(bwd < 256 * 2 ** 20, `backward, ${threads} threads: ${bwd} bytes`);
  }
});

const cuda = vp.backendInfo().cuda;
(cuda ? test : test.skip)('CUDA log-probs (float32 and bfloat16) agree with the CPU', (t) => {
  const n = 300, d = 64, v = 3000;
  const h = randomFloats(n * d, 1), w = randomFloats(v * d, 2, -0.5, 0.5);
  const tg = randomTargets(n, v, 3);
  const dl = randomFloats(n, 4);
  const H = vp.tensor(h, [n, d]), W = vp.tensor(w, [v, d]);
  const ref = vp.linearTokenLogprobs(H, W, tg);
  const refB = vp.linearTokenLogprobsBackward(dl, H, W, tg);
  for (const [dtype, tol] of [['float32', 1e-5], ['bfloat16', 1e-2]] as const) {
    const hc = H.to('cuda', dtype), wc = W.to('cuda', dtype);
    // compare against the CPU result on the same (rounded) inputs
    const hr = hc.to('cpu', 'float32'), wr = wc.to('cpu', 'float32');
    const want = dtype === 'float32' ? ref : vp.linearTokenLogprobs(hr, wr, tg);
    const wantB = dtype === 'float32' ? refB : vp.linearTokenLogprobsBackward(dl, hr, wr, tg);
    t.true(relError(vp.linearTokenLogprobs(hc, wc, tg), want) <= tol, `${dtype} forward`);
    const g = vp.linearTokenLogprobsBackward(dl, hc, wc, tg);
    t.true(relError(g.dHidden.to('cpu', 'float32').data, wantB.dHidden.data) <= tol, `${dtype} dHidden`);
    t.true(relError(g.dWeight.to('cpu', 'float32').data, wantB.dWeight.data) <= tol, `${dtype} dWeight`);
    t.true(relError(g.logprobs, want) <= tol, `${dtype} backward's logprobs`);
    const logits = vp.matmul(hr, wr, { transB: true });
    const lc = logits.to('cuda', dtype);
    t.true(relError(vp.tokenLogprobs(lc, tg), vp.tokenLogprobs(lc.to('cpu', 'float32'), tg)) <= tol, `${dtype} tokenLogprobs`);
    for (const x of [hc, wc, lc, g.dHidden, g.dWeight]) x.dispose();
  }
});

import fc from 'fast-check';

test('fuzz: log-prob ops with arbitrary shapes, targets and options', (t) => {
  const clean = (e: unknown) => e instanceof TypeError || e instanceof RangeError;
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 4 }),
      fc.array(fc.integer({ min: -2, max: 8 }), { maxLength: 6 }),
      fc.oneof(fc.double(), fc.constant(undefined), fc.string()),
      (n, d, v, dw, tg, temp) => {
        const h = vp.tensor(randomFloats(n * d, 1), [n, d]);
        const w = vp.tensor(randomFloats(v * dw, 2), [v, dw]);
        const targets = Int32Array.from(tg);
        const opts = { temperature: temp as number };
        try {
          const lp = vp.linearTokenLogprobs(h, w, targets, opts);
          if (lp.length !== n || !lp.every((x) => Number.isFinite(x) && x <= 1e-6)) return false;
          const g = vp.linearTokenLogprobsBackward(new Float32Array(n).fill(1), h, w, targets, opts);
          if (g.dHidden.shape[0] !== n || g.dWeight.shape[0] !== v) return false;
        } catch (e) {
          if (!clean(e)) return false;
        }
        try {
          const logits = vp.tensor(randomFloats(n * v, 3), [n, v]);
          const lp = vp.tokenLogprobs(logits, targets, opts);
          return lp.length === n;
        } catch (e) {
          return clean(e);
        }
      },
    ),
    { numRuns: 1500 },
  );
  t.pass();
});
