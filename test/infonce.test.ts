// vp.infoNce / infoNceBackward / infoNceWithGrad through the whole stack:
// against a float64 reference (1e-5), finite differences, every validation
// error, a fuzz test of bad inputs, and CUDA (bf16 within 1e-2) where present.
import test from 'ava';
import fc from 'fast-check';
import * as vp from '../lib/index.js';
import { randomFloats, relError, rng } from './helpers.js';

interface Ref {
  loss: number;
  lse: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dlt: number;
}

/** The definitions of docs/infonce.md in float64 (log1p and P_pos − 1 = −Σ_{j≠pos} P_j keep tiny losses exact). */
function reference(q: Float32Array, k: Float32Array, pos: Int32Array, n: number, m: number, d: number, tau: number, normalize: boolean, g = 1): Ref {
  const unit = (x: Float32Array, rows: number) => {
    const xh = new Float64Array(rows * d);
    const r = new Float64Array(rows).fill(1);
    for (let i = 0; i < rows; i++) {
      let ss = 0;
      for (let c = 0; c < d; c++) ss += x[i * d + c] * x[i * d + c];
      if (normalize) r[i] = 1 / Math.sqrt(ss);
      for (let c = 0; c < d; c++) xh[i * d + c] = x[i * d + c] * r[i];
    }
    return { xh, r };
  };
  const Q = unit(q, n);
  const K = unit(k, m);
  const lse = new Float64Array(n);
  const dqh = new Float64Array(n * d);
  const dkh = new Float64Array(m * d);
  const s = new Float64Array(m);
  let loss = 0;
  let dlt = 0;
  for (let i = 0; i < n; i++) {
    let mx = -Infinity;
    for (let j = 0; j < m; j++) {
      let acc = 0;
      for (let c = 0; c < d; c++) acc += Q.xh[i * d + c] * K.xh[j * d + c];
      s[j] = acc / tau;
      mx = Math.max(mx, s[j]);
    }
    const p = pos[i];
    let sum = 0;
    let others = 0;
    for (let j = 0; j < m; j++) {
      const e = Math.exp(s[j] - mx);
      sum += e;
      if (j !== p) others += e;
    }
    const logZ = s[p] === mx ? Math.log1p(others) : Math.log(sum);
    lse[i] = mx + logZ;
    loss += (mx - s[p] + logZ) / n;
    for (let j = 0; j < m; j++) {
      const pj = Math.exp(s[j] - mx) / sum;
      const ds = (g / n) * (j === p ? -others / sum : pj);
      if (j !== p) dlt -= (g / n) * pj * (s[j] - s[p]);
      for (let c = 0; c < d; c++) {
        dqh[i * d + c] += (ds * K.xh[j * d + c]) / tau;
        dkh[j * d + c] += (ds * Q.xh[i * d + c]) / tau;
      }
    }
  }
  const back = (xh: Float64Array, r: Float64Array, dxh: Float64Array, rows: number) => {
    const dx = new Float64Array(rows * d);
    for (let i = 0; i < rows; i++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += xh[i * d + c] * dxh[i * d + c];
      for (let c = 0; c < d; c++) dx[i * d + c] = normalize ? r[i] * (dxh[i * d + c] - xh[i * d + c] * dot) : dxh[i * d + c];
    }
    return dx;
  };
  return { loss, lse, dq: back(Q.xh, Q.r, dqh, n), dk: back(K.xh, K.r, dkh, m), dlt };
}

/** Positives drawn from a few keys, so that many queries share one. */
function positives(n: number, m: number, seed: number): Int32Array {
  const r = rng(seed);
  const distinct = Math.max(1, Math.min(m, Math.floor(n / 3) + 1));
  const step = Math.floor(m / distinct);
  return Int32Array.from({ length: n }, () => Math.floor(r() * distinct) * step);
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

test('infoNce, infoNceBackward and infoNceWithGrad match a float64 reference (1e-5)', (t) => {
  const r = rng(5);
  const cases: Array<[number, number, number]> = [[1, 2, 8], [5, 1, 8], [40, 3, 512], [2, 300, 16], [1000, 1500, 8]];
  while (cases.length < 14) {
    const n = 1 + Math.floor(r() * 300);
    const m = 1 + Math.floor(r() * 300);
    const d = 8 + Math.floor(r() * 505);
    if (n !== m && n * m * d <= 1.5e7) cases.push([n, m, d]);
  }
  const taus = [0.01, 0.07, 0.3, 1];
  cases.forEach(([n, m, d], c) => {
    const tau = taus[c % 4];
    const normalize = c % 3 !== 2;
    const gradLoss = c % 5 === 4 ? -0.5 : 1;
    const q = randomFloats(n * d, 100 + c);
    const k = randomFloats(m * d, 200 + c);
    const positive = positives(n, m, 300 + c);
    const ref = reference(q, k, positive, n, m, d, tau, normalize, gradLoss);
    const qt = vp.tensor(q, [n, d]);
    const kt = vp.tensor(k, [m, d]);
    const opts = { positive, temperature: tau, normalize, gradLoss };
    const msg = `N=${n} M=${m} D=${d} tau=${tau} normalize=${normalize}`;
    const fused = vp.infoNceWithGrad(qt, kt, opts);
    const fwd = vp.infoNce(qt, kt, opts);
    const bwd = vp.infoNceBackward(qt, kt, fwd.lse, opts);
    t.deepEqual(fused.dQueries.shape, [n, d]);
    t.deepEqual(fused.dKeys.shape, [m, d]);
    t.deepEqual(fused.lse.shape, [n]);
    for (const [name, loss] of [['fused', fused.loss], ['separate', fwd.loss]] as const) t.true(rel(loss, ref.loss) <= 1e-5, `${name} loss ${msg}`);
    t.true(relError(fused.lse.data, ref.lse) <= 1e-5, `lse ${msg}`);
    t.true(relError(fwd.lse.data, ref.lse) <= 1e-5, `lse ${msg}`);
    for (const [name, g] of [['fused', fused], ['separate', bwd]] as const) {
      t.true(relError(g.dQueries.data, ref.dq) <= 1e-5, `${name} dQueries ${msg}: ${relError(g.dQueries.data, ref.dq)}`);
      t.true(relError(g.dKeys.data, ref.dk) <= 1e-5, `${name} dKeys ${msg}: ${relError(g.dKeys.data, ref.dk)}`);
      t.true(Math.abs(g.dLogTemperature - ref.dlt) <= 1e-5 * Math.abs(ref.dlt) + 1e-12, `${name} dLogTemperature ${msg}`);
    }
  });
});

test('infoNceBackward takes lse as a tensor or a Float32Array, and positive as a 1-D int32 tensor', (t) => {
  const q = vp.tensor(randomFloats(6 * 4, 1), [6, 4]);
  const k = vp.tensor(randomFloats(9 * 4, 2), [9, 4]);
  const positive = new Int32Array([0, 1, 2, 3, 4, 4]);
  const f = vp.infoNce(q, k, { positive: vp.tensor(positive, [6]) });
  const a = vp.infoNceBackward(q, k, f.lse, { positive });
  const b = vp.infoNceBackward(q, k, f.lse.data as Float32Array, { positive });
  t.deepEqual(Array.from(a.dQueries.data), Array.from(b.dQueries.data));
  t.is(a.dLogTemperature, b.dLogTemperature);
});

test('gradients agree with central finite differences (queries, keys, log τ)', (t) => {
  for (const normalize of [true, false]) {
    const n = 5;
    const m = 8;
    const d = 6;
    const q = randomFloats(n * d, normalize ? 11 : 12);
    const k = randomFloats(m * d, normalize ? 13 : 14);
    const positive = positives(n, m, 15);
    const tau = 0.2;
    const g = vp.infoNceWithGrad(vp.tensor(q, [n, d]), vp.tensor(k, [m, d]), { positive, temperature: tau, normalize });
    const loss = (qq: Float32Array, kk: Float32Array, tt = tau) => vp.infoNce(vp.tensor(qq, [n, d]), vp.tensor(kk, [m, d]), { positive, temperature: tt, normalize }).loss;
    const h = 1e-2;
    for (const [x, grad] of [[q, g.dQueries.data], [k, g.dKeys.data]] as const) {
      for (let i = 0; i < x.length; i += 3) {
        const x0 = x[i];
        x[i] = x0 + h;
        const lp = loss(q, k);
        x[i] = x0 - h;
        const lm = loss(q, k);
        x[i] = x0;
        const fd = (lp - lm) / (2 * h);
        t.true(Math.abs(fd - grad[i]) <= 2e-3 + 2e-2 * Math.abs(fd), `normalize=${normalize} index ${i}: fd ${fd} vs ${grad[i]}`);
      }
    }
    const ht = 1e-3;
    const fdT = (loss(q, k, tau * Math.exp(ht)) - loss(q, k, tau * Math.exp(-ht))) / (2 * ht);
    t.true(Math.abs(fdT - g.dLogTemperature) <= 1e-3 * (1 + Math.abs(fdT)), `dLogTemperature ${g.dLogTemperature} vs fd ${fdT}`);
  }
});

test('bad inputs throw TypeError/RangeError naming the argument, never NaN', (t) => {
  const q = vp.tensor(randomFloats(4 * 3, 1), [4, 3]);
  const k = vp.tensor(randomFloats(5 * 3, 2), [5, 3]);
  const positive = new Int32Array([0, 1, 2, 3]);
  const ok = { positive };
  t.throws(() => vp.infoNce(q, k, { positive: new Int32Array([0, 1, 5, 0]) }), { instanceOf: RangeError, message: /infoNce: opts\.positive\[2\] must be a key index in \[0, 5\), got 5/ });
  t.throws(() => vp.infoNce(q, k, { positive: new Int32Array([-1, 1, 2, 0]) }), { instanceOf: RangeError, message: /opts\.positive\[0\]/ });
  t.throws(() => vp.infoNce(q, k, { positive: new Int32Array(3) }), { instanceOf: RangeError, message: /opts\.positive\.length must be 4, got 3/ });
  t.throws(() => vp.infoNce(q, k, { positive: [0, 1, 2, 3] as unknown as Int32Array }), { instanceOf: TypeError, message: /opts\.positive must be an Int32Array/ });
  t.throws(() => vp.infoNce(q, k, undefined as unknown as vp.InfoNceOptions), { instanceOf: TypeError, message: /infoNce: opts must be an object with opts\.positive/ });
  for (const temperature of [0, -1, Infinity, NaN, 1e-50]) {
    t.throws(() => vp.infoNce(q, k, { positive, temperature }), { instanceOf: RangeError, message: /opts\.temperature/ }, `temperature ${temperature}`);
  }
  t.throws(() => vp.infoNce(q, k, { positive, temperature: '0.1' as unknown as number }), { instanceOf: TypeError, message: /opts\.temperature must be a number/ });
  t.throws(() => vp.infoNce(q, k, { positive, normalize: 1 as unknown as boolean }), { instanceOf: TypeError, message: /opts\.normalize must be a boolean/ });
  t.throws(() => vp.infoNceWithGrad(q, k, { positive, gradLoss: NaN }), { instanceOf: RangeError, message: /opts\.gradLoss must be a finite number/ });
  // shapes and dtypes
  t.throws(() => vp.infoNce(q, vp.tensor(randomFloats(10, 3), [5, 2]), ok), { instanceOf: RangeError, message: /keys\.shape must be \[M, 3\]/ });
  t.throws(() => vp.infoNce(vp.tensor(randomFloats(12, 3), [12]), k, ok), { instanceOf: RangeError, message: /queries\.shape must be 2-D/ });
  t.throws(() => vp.infoNce(vp.tensor(new Int32Array(12), [4, 3]), k, ok), { instanceOf: TypeError, message: /queries\.dtype must be float32/ });
  t.throws(() => vp.infoNce(q, vp.tensor(new Float32Array(0), [0, 3]), ok), { instanceOf: RangeError, message: /keys\.shape must be \[M, D\] with M >= 1/ });
  t.throws(() => vp.infoNce(vp.tensor(new Float32Array(0), [0, 3]), k, { positive: new Int32Array(0) }), { instanceOf: RangeError, message: /queries\.shape/ });
  t.throws(() => vp.infoNce(q as unknown as vp.Tensor, [1] as unknown as vp.Tensor, ok), { instanceOf: TypeError, message: /keys must be a Tensor/ });
  const fake = new vp.Tensor([5, 3], 'float32', 'cuda', undefined, undefined);
  t.throws(() => vp.infoNce(q, fake, ok), { instanceOf: TypeError, message: /keys must be on cpu like queries/ });
  // zero-norm rows with normalize (fine without), non-finite rows
  const qz = vp.tensor(new Float32Array([1, 2, 3, 0, 0, 0, 1, 1, 1, 2, 2, 2]), [4, 3]);
  t.throws(() => vp.infoNce(qz, k, ok), { instanceOf: RangeError, message: /infoNce: queries row 1 has zero norm/ });
  t.true(Number.isFinite(vp.infoNce(qz, k, { positive, normalize: false }).loss));
  const kz = vp.tensor(new Float32Array(15).fill(1).fill(0, 6, 9), [5, 3]);
  t.throws(() => vp.infoNceWithGrad(q, kz, ok), { instanceOf: RangeError, message: /infoNceWithGrad: keys row 2 has zero norm/ });
  const qn = vp.tensor(new Float32Array([1, 2, 3, 4, Infinity, 0, 1, 1, 1, 2, 2, 2]), [4, 3]);
  t.throws(() => vp.infoNce(qn, k, { positive, normalize: false }), { instanceOf: RangeError, message: /queries row 1 holds a non-finite value/ });
  // the backward's lse
  const lse = vp.infoNce(q, k, ok).lse;
  t.throws(() => vp.infoNceBackward(q, k, new Float32Array(3), ok), { instanceOf: RangeError, message: /infoNceBackward: lse\.length must be 4/ });
  t.throws(() => vp.infoNceBackward(q, k, vp.tensor(new Float32Array(5), [5]), ok), { instanceOf: RangeError, message: /lse\.shape must be \[4\]/ });
  t.throws(() => vp.infoNceBackward(q, k, vp.tensor(new Int32Array(4), [4]), ok), { instanceOf: TypeError, message: /lse\.dtype must be float32/ });
  t.throws(() => vp.infoNceBackward(q, k, new Float32Array([1, NaN, 1, 1]), ok), { instanceOf: RangeError, message: /lse\[1\] must be finite/ });
  t.throws(() => vp.infoNceBackward(q, k, [1, 2, 3, 4] as unknown as Float32Array, ok), { instanceOf: TypeError, message: /lse must be a Tensor/ });
  t.notThrows(() => vp.infoNceBackward(q, k, lse, ok));
});

test('fuzz: arbitrary shapes, positives and options give a result or a TypeError/RangeError', (t) => {
  // Numbers of any size go to the temperature (1e-40 makes float32 scores overflow: an error);
  // gradLoss stays moderate, since a huge upstream gradient legitimately overflows.
  const anyValue = fc.oneof(fc.constant(undefined), fc.constant(null), fc.integer({ min: -100, max: 100 }), fc.string(), fc.boolean(), fc.object());
  const anyNumber = fc.oneof(fc.double(), fc.constantFrom(1e-40, 1e30, Number.MIN_VALUE, -0));
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 }),
      fc.array(fc.integer({ min: -3, max: 8 }), { maxLength: 6 }),
      fc.oneof(fc.double({ min: -1, max: 2 }), anyNumber, anyValue), fc.oneof(fc.boolean(), anyValue), fc.oneof(fc.double({ min: -2, max: 2 }), anyValue),
      fc.boolean(), fc.integer({ min: 0, max: 2 }),
      (n, m, d, dk, pos, temperature, normalize, gradLoss, zeros, which) => {
        const q = vp.tensor(zeros ? new Float32Array(n * d) : randomFloats(n * d, n + d), [n, d]);
        const k = vp.tensor(randomFloats(m * dk, m + dk), [m, dk]);
        const opts = { positive: Int32Array.from(pos), temperature: temperature as number, normalize: normalize as boolean, gradLoss: gradLoss as number };
        try {
          const r = which === 0 ? vp.infoNce(q, k, opts) : which === 1 ? vp.infoNceWithGrad(q, k, opts) : vp.infoNceBackward(q, k, new Float32Array(n), opts);
          const values = [...('loss' in r ? [r.loss] : []), ...('dQueries' in r ? Array.from(r.dQueries.data) : [])];
          return values.every(Number.isFinite);
        } catch (e) {
          return e instanceof TypeError || e instanceof RangeError;
        }
      },
    ),
    { numRuns: 1500 },
  );
  t.pass();
});

const cuda = vp.backendInfo().cuda;
const cudaTest = cuda ? test : test.skip;

cudaTest('CUDA: float32, bfloat16 and float16 match the float64 reference', (t) => {
  for (const [n, m, d] of [[37, 100, 64], [300, 257, 128], [129, 64, 512]]) {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      const tau = 0.05;
      const q = vp.tensor(randomFloats(n * d, n), [n, d]).to('cuda', dtype);
      const k = vp.tensor(randomFloats(m * d, m), [m, d]).to('cuda', dtype);
      const qr = q.to('cpu', 'float32').data as Float32Array;
      const kr = k.to('cpu', 'float32').data as Float32Array;
      const positive = positives(n, m, 7);
      const ref = reference(qr, kr, positive, n, m, d, tau, true);
      const r = vp.infoNceWithGrad(q, k, { positive, temperature: tau });
      const tol = dtype === 'float32' ? 1e-4 : 1e-2;
      t.true(rel(r.loss, ref.loss) <= tol, `${dtype} loss`);
      t.is(r.dQueries.dtype, dtype);
      t.is(r.dQueries.device, 'cuda');
      t.true(relError(r.dQueries.to('cpu', 'float32').data, ref.dq) <= tol, `${dtype} dQueries`);
      t.true(relError(r.dKeys.to('cpu', 'float32').data, ref.dk) <= tol, `${dtype} dKeys`);
      const b = vp.infoNceBackward(q, k, r.lse, { positive, temperature: tau });
      t.true(relError(b.dKeys.to('cpu', 'float32').data, ref.dk) <= tol, `${dtype} dKeys (separate)`);
      for (const x of [q, k, r.lse, r.dQueries, r.dKeys, b.dQueries, b.dKeys]) x.dispose();
    }
  }
});
