// The layer/optimizer/RNG ops from TypeScript: values against float64
// references written here, backward passes against finite differences, and
// every validation error.
import test from 'ava';
import * as vp from '../lib/index.js';
import { randomFloats, relError } from './helpers.js';

const T = (data: Float32Array, shape: number[]) => vp.tensor(data, shape);

// Σ w·f(x) differentiated by central differences in double.
function fd(f: (x: Float64Array) => Float64Array, x: Float32Array, w: Float32Array, h = 1e-6): Float64Array {
  const xd = Float64Array.from(x);
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const keep = xd[i];
    xd[i] = keep + h;
    const p = f(xd);
    xd[i] = keep - h;
    const m = f(xd);
    xd[i] = keep;
    let s = 0;
    for (let j = 0; j < p.length; j++) s += w[j] * (p[j] - m[j]);
    g[i] = s / (2 * h);
  }
  return g;
}

function rmsRef(x: Float64Array, g: ArrayLike<number>, rows: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j] ** 2;
    const rs = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) y[r * d + j] = x[r * d + j] * rs * g[j];
  }
  return y;
}

test('rmsNorm and its backward', (t) => {
  const rows = 4, d = 9;
  const x = randomFloats(rows * d, 1), g = randomFloats(d, 2, 0.5, 1.5), dy = randomFloats(rows * d, 3);
  const { y, rstd } = vp.rmsNorm(T(x, [2, 2, d]), T(g, [d]));
  t.deepEqual(y.shape, [2, 2, d]);
  t.true(relError(y.data as Float32Array, rmsRef(Float64Array.from(x), g, rows, d, 1e-5)) < 1e-6);
  const { dx, dGain } = vp.rmsNormBackward(T(dy, [2, 2, d]), T(x, [2, 2, d]), T(g, [d]), rstd);
  t.true(relError(dx.data as Float32Array, fd((xx) => rmsRef(xx, g, rows, d, 1e-5), x, dy)) < 1e-4);
  t.true(relError(dGain.data as Float32Array, fd((gg) => rmsRef(Float64Array.from(x), gg, rows, d, 1e-5), g, dy)) < 1e-4);
  const acc = vp.tensor(Float32Array.from(dGain.data as Float32Array), [d]);
  vp.rmsNormBackward(T(dy, [2, 2, d]), T(x, [2, 2, d]), T(g, [d]), undefined, { dGain: acc });
  t.true(relError(acc.data as Float32Array, Array.from(dGain.data as Float32Array, (v) => 2 * v)) < 1e-6);
  t.throws(() => vp.rmsNorm(T(x, [rows, d]), T(g.subarray(1), [d - 1])), { instanceOf: RangeError, message: /rmsNorm: gain.shape must be \[9\], got \[8\]/ });
  t.throws(() => vp.rmsNorm(T(x, [rows, d]), T(g, [d]), { eps: -1 }), { instanceOf: RangeError, message: /opts.eps must be >= 0/ });
  t.throws(() => vp.rmsNorm('x' as unknown as vp.Tensor, T(g, [d])), { instanceOf: TypeError, message: /rmsNorm: x must be a Tensor/ });
  t.throws(() => vp.rmsNormBackward(T(dy, [rows, d]), T(x, [rows, d]), T(g, [d]), new Float32Array(3)), { instanceOf: RangeError, message: /rstd.length must be 4, got 3/ });
  t.throws(() => vp.rmsNormBackward(T(dy.subarray(0, d), [1, d]), T(x, [rows, d]), T(g, [d])), { instanceOf: RangeError, message: /dy.shape must be \[4, 9\]/ });
});

test('swiglu and its backward', (t) => {
  const n = 24;
  const gate = randomFloats(n, 4, -4, 4), up = randomFloats(n, 5), dh = randomFloats(n, 6);
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const h = vp.swiglu(T(gate, [4, 6]), T(up, [4, 6]));
  t.true(relError(h.data as Float32Array, Array.from(gate, (gv, i) => silu(gv) * up[i])) < 2e-6);
  const { dGate, dUp } = vp.swigluBackward(T(dh, [4, 6]), T(gate, [4, 6]), T(up, [4, 6]));
  t.true(relError(dGate.data as Float32Array, fd((gg) => Float64Array.from(gg, (gv, i) => silu(gv) * up[i]), gate, dh)) < 1e-4);
  t.true(relError(dUp.data as Float32Array, Array.from(gate, (gv, i) => silu(gv) * dh[i])) < 1e-5);
  t.throws(() => vp.swiglu(T(gate, [4, 6]), T(up, [6, 4])), { instanceOf: RangeError, message: /swiglu: up.shape must be \[4, 6\], got \[6, 4\]/ });
  t.throws(() => vp.swiglu(T(gate, [4, 6]), vp.tensor(new Int32Array(24), [4, 6])), { instanceOf: TypeError, message: /up.dtype must be float32/ });
});

test('rope: rotation at packed positions, inverse = backward', (t) => {
  const tok = 5, h = 2, d = 8;
  const x = randomFloats(tok * h * d, 7);
  const pos = new Int32Array([0, 1, 2, 0, 1]);
  const y = vp.rope(T(x, [tok, h, d]), pos);
  // position 0 is the identity; tokens 0 and 3 share position 0
  t.deepEqual(Array.from((y.data as Float32Array).subarray(0, h * d)), Array.from(x.subarray(0, h * d)));
  const ref = new Float64Array(x.length);
  for (let a = 0; a < tok; a++) for (let hh = 0; hh < h; hh++) for (let i = 0; i < d / 2; i++) {
    const ang = pos[a] * 10000 ** (-2 * i / d), c = Math.cos(ang), s = Math.sin(ang), o = (a * h + hh) * d;
    ref[o + i] = x[o + i] * c - x[o + i + d / 2] * s;
    ref[o + i + d / 2] = x[o + i + d / 2] * c + x[o + i] * s;
  }
  t.true(relError(y.data as Float32Array, ref) < 1e-6);
  const back = vp.rope(y, vp.tensor(pos, [tok]), { inverse: true });
  t.true(relError(back.data as Float32Array, x) < 1e-6);
  t.throws(() => vp.rope(T(x, [tok, h, d]), new Int32Array(4)), { instanceOf: RangeError, message: /positions.length must be 5, got 4/ });
  t.throws(() => vp.rope(T(x, [tok, h, d]), new Int32Array([0, 1, -2, 0, 0])), { instanceOf: RangeError, message: /positions\[2\] must be >= 0, got -2/ });
  t.throws(() => vp.rope(T(x.subarray(0, 70), [5, 2, 7]), pos), { instanceOf: RangeError, message: /x.shape\[2\] must be an even head dimension/ });
  t.throws(() => vp.rope(T(x, [tok, h * d]), pos), { instanceOf: RangeError, message: /x.shape must be 3-D/ });
  t.throws(() => vp.rope(T(x, [tok, h, d]), pos, { theta: 1 }), { instanceOf: RangeError, message: /opts.theta must be > 1/ });
});

test('embedding lookup and scatter-add backward', (t) => {
  const v = 6, d = 3;
  const table = randomFloats(v * d, 8);
  const ids = new Int32Array([5, 0, 5, 2]);
  const out = vp.embedding(T(table, [v, d]), ids);
  t.deepEqual(Array.from(out.data as Float32Array).slice(0, 3), Array.from(table.subarray(15, 18)));
  const dOut = randomFloats(4 * d, 9);
  const dt = vp.embeddingBackward(T(dOut, [4, d]), ids, v).data as Float32Array;
  for (let j = 0; j < d; j++) {
    t.is(dt[5 * d + j], Math.fround(dOut[j] + dOut[2 * d + j]));
    t.is(dt[1 * d + j], 0);
  }
  t.throws(() => vp.embedding(T(table, [v, d]), new Int32Array([6])), { instanceOf: RangeError, message: /embedding: ids\[0\] must be in \[0, 6\), got 6/ });
  t.throws(() => vp.embedding(T(table, [v, d]), [1, 2] as unknown as Int32Array), { instanceOf: TypeError, message: /ids must be an Int32Array/ });
  t.throws(() => vp.embeddingBackward(T(dOut, [4, d]), ids, 5), { instanceOf: RangeError, message: /ids\[0\] must be in \[0, 5\)/ });
  t.throws(() => vp.embeddingBackward(T(dOut, [4, d]), ids.subarray(1), 6), { instanceOf: RangeError, message: /ids.length must be 4, got 3/ });
});

test('linear and its backward', (t) => {
  const n = 5, i = 4, o = 3;
  const x = randomFloats(n * i, 10), w = randomFloats(o * i, 11), b = randomFloats(o, 12), dy = randomFloats(n * o, 13);
  const ref = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) => {
    const y = new Float64Array(n * o);
    for (let r = 0; r < n; r++) for (let c = 0; c < o; c++) {
      let s = bb[c];
      for (let k = 0; k < i; k++) s += xx[r * i + k] * ww[c * i + k];
      y[r * o + c] = s;
    }
    return y;
  };
  const y = vp.linear(T(x, [n, i]), T(w, [o, i]), T(b, [o]));
  t.true(relError(y.data as Float32Array, ref(x, w, b)) < 1e-6);
  const g = vp.linearBackward(T(dy, [n, o]), T(x, [n, i]), T(w, [o, i]), { bias: true });
  t.true(relError(g.dx.data as Float32Array, fd((xx) => ref(xx, w, b), x, dy)) < 1e-5);
  t.true(relError(g.dWeight.data as Float32Array, fd((ww) => ref(x, ww, b), w, dy)) < 1e-5);
  t.true(relError(g.dBias!.data as Float32Array, fd((bb) => ref(x, w, bb), b, dy)) < 1e-5);
  t.is(vp.linearBackward(T(dy, [n, o]), T(x, [n, i]), T(w, [o, i])).dBias, undefined);
  t.throws(() => vp.linear(T(x, [n, i]), T(w, [i, o])), { instanceOf: RangeError, message: /linear: weight.shape must be \[out, 4\] to match x, got \[4, 3\]/ });
  t.throws(() => vp.linear(T(x, [n, i]), T(w, [o, i]), T(b.subarray(1), [2])), { instanceOf: RangeError, message: /bias.shape must be \[3\]/ });
  t.throws(() => vp.linearBackward(T(dy, [o, n]), T(x, [n, i]), T(w, [o, i])), { instanceOf: RangeError, message: /dy.shape must be \[5, 3\]/ });
});

test('crossEntropy with ignored rows, and its backward', (t) => {
  const n = 4, v = 7;
  const logits = randomFloats(n * v, 14, -5, 5);
  const targets = new Int32Array([3, -1, 0, 6]);
  const ref = (l: ArrayLike<number>) => {
    let s = 0, c = 0;
    for (let r = 0; r < n; r++) {
      if (targets[r] < 0) continue;
      let m = -Infinity;
      for (let j = 0; j < v; j++) m = Math.max(m, l[r * v + j]);
      let z = 0;
      for (let j = 0; j < v; j++) z += Math.exp(l[r * v + j] - m);
      s += m + Math.log(z) - l[r * v + targets[r]];
      c++;
    }
    return new Float64Array([s / c]);
  };
  const { loss, lse, count } = vp.crossEntropy(T(logits, [n, v]), targets);
  t.is(count, 3);
  t.true(Math.abs(loss - ref(logits)[0]) < 1e-5 * Math.abs(ref(logits)[0]));
  const d = vp.crossEntropyBackward(T(logits, [n, v]), targets, lse, { gradLoss: 2 });
  t.true(relError(d.data as Float32Array, fd(ref, logits, new Float32Array([2]))) < 1e-4);
  t.true((d.data as Float32Array).subarray(v, 2 * v).every((x) => x === 0));
  t.throws(() => vp.crossEntropy(T(logits, [n, v]), new Int32Array([0, 7, 0, 0])), { instanceOf: RangeError, message: /targets\[1\] must be in \[0, 7\) or -1 \(ignored\), got 7/ });
  t.throws(() => vp.crossEntropy(T(logits, [n, v]), new Int32Array([0, -2, 0, 0])), { instanceOf: RangeError, message: /targets\[1\]/ });
  t.throws(() => vp.crossEntropyBackward(T(logits, [n, v]), targets, new Float32Array(2)), { instanceOf: RangeError, message: /lse.length must be 4, got 2/ });
});

test('crossEntropyBackward into opts.out: a separate tensor and in place give the fresh result; overlaps and wrong outputs refused', (t) => {
  const n = 5, v = 33;
  const logits = randomFloats(n * v, 15, -4, 4);
  const targets = new Int32Array([3, -1, 0, 32, 7]);
  for (const withLse of [true, false]) {
    const lse = withLse ? vp.crossEntropy(T(logits, [n, v]), targets).lse : undefined;
    const fresh = vp.crossEntropyBackward(T(logits, [n, v]), targets, lse, { gradLoss: 0.5 }).data as Float32Array;
    const out = T(new Float32Array(n * v).fill(NaN), [n, v]);
    const r = vp.crossEntropyBackward(T(logits, [n, v]), targets, lse, { gradLoss: 0.5, out });
    t.is(r, out);
    t.deepEqual(out.data, fresh);
    const inPlace = T(logits.slice(), [n, v]);
    t.is(vp.crossEntropyBackward(inPlace, targets, lse, { gradLoss: 0.5, out: inPlace }), inPlace);
    t.deepEqual(inPlace.data, fresh);
  }
  const buf = new Float32Array(n * v + v);
  buf.set(logits);
  const lg = T(buf.subarray(0, n * v), [n, v]);
  const shifted = T(buf.subarray(v), [n, v]);
  t.throws(() => vp.crossEntropyBackward(lg, targets, undefined, { out: shifted }), { instanceOf: RangeError, message: /opts\.out must be memory separate from logits/ });
  t.throws(() => vp.crossEntropyBackward(lg, targets, undefined, { out: T(new Float32Array(n * v), [v, n]) }), { instanceOf: RangeError, message: /opts\.out\.shape must be \[5, 33\]/ });
  t.throws(() => vp.crossEntropyBackward(lg, targets, undefined, { out: new Float32Array(n * v) as never }), { instanceOf: TypeError, message: /opts\.out/ });
});

test('adamwStep, clipGradNorm and lrAt', (t) => {
  const n = 1000;
  const p = randomFloats(n, 15), g = randomFloats(n, 16);
  const param = vp.tensor(Float32Array.from(p), [n]), grad = vp.tensor(g, [n]);
  const m = vp.zeros([n]), v = vp.zeros([n]);
  vp.adamwStep(param, grad, m, v, { lr: 0.01, weightDecay: 0.1, step: 1 });
  // first step: m̂ = g, v̂ = g², so the update is lr·g/(|g|+eps) after decay
  const want = Array.from(p, (pv, i) => pv * (1 - 0.01 * 0.1) - (0.01 * g[i]) / (Math.abs(g[i]) + 1e-8));
  t.true(relError(param.data as Float32Array, want) < 1e-6);
  t.throws(() => vp.adamwStep(param, grad, m, vp.zeros([3]), { lr: 0.1, step: 1 }), { instanceOf: RangeError, message: /adamwStep: v.size must be 1000 like param, got 3/ });
  t.throws(() => vp.adamwStep(param, grad, m, v, { lr: 0.1, step: 0 }), { instanceOf: RangeError, message: /opts.step must be >= 1/ });
  t.throws(() => vp.adamwStep(param, grad, m, v, { step: 1 } as vp.AdamWOptions), { instanceOf: TypeError, message: /opts.lr must be a number/ });
  t.throws(() => vp.adamwStep(param, grad, m, v, { lr: 0.1, step: 1, beta2: 1 }), { instanceOf: RangeError, message: /opts.beta2 must be < 1/ });

  const a = vp.tensor(new Float32Array([3, 0]), [2]), b = vp.tensor(new Float32Array([4]), [1]);
  t.is(vp.clipGradNorm([a, b], 1), 5);
  t.deepEqual(Array.from(a.data as Float32Array).map((x) => +x.toFixed(5)), [0.6, 0]);
  t.true(Math.abs(vp.clipGradNorm([a, b], 0) - 1) < 1e-5);
  t.throws(() => vp.clipGradNorm([a, 5 as unknown as vp.Tensor], 1), { instanceOf: TypeError, message: /grads\[1\] must be a Tensor/ });

  const s = { baseLr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
  t.true(Math.abs(vp.lrAt(s, 0) - 1e-4) < 1e-12);
  t.true(Math.abs(vp.lrAt(s, 60) - (1e-4 + 0.45e-3)) < 1e-12);
  t.true(Math.abs(vp.lrAt(s, 1000) - 1e-4) < 1e-12);
  t.throws(() => vp.lrAt({ baseLr: 1e-3, totalSteps: 0 }, 0), { instanceOf: RangeError, message: /schedule.totalSteps must be >= 1/ });
  t.throws(() => vp.lrAt(s, -1), { instanceOf: RangeError, message: /lrAt: step must be >= 0/ });
});

test('randn / randu are seeded, stream-separated and thread-count independent', (t) => {
  const a = vp.randn([1001], { seed: 42, stream: 3, std: 0.02 });
  const threads = vp.backendInfo().cpu.threads;
  vp.setNumThreads(1);
  const b = vp.randn([1001], { seed: 42n, stream: 3n, std: 0.02 });
  vp.setNumThreads(threads);
  t.deepEqual(Array.from(a.data as Float32Array), Array.from(b.data as Float32Array));
  const c = vp.randn([1001], { seed: 42, stream: 4, std: 0.02 });
  t.notDeepEqual(Array.from(a.data as Float32Array).slice(0, 4), Array.from(c.data as Float32Array).slice(0, 4));
  const big = vp.randn([100000], { seed: 1 }).data as Float32Array;
  const mean = big.reduce((s, x) => s + x, 0) / big.length;
  t.true(Math.abs(mean) < 0.02);
  const u = vp.randu([5000], { seed: 2, low: -1, high: 1 }).data as Float32Array;
  t.true(u.every((x) => x >= -1 && x < 1));
  t.throws(() => vp.randn([3], { seed: -1 }), { instanceOf: RangeError, message: /randn: opts.seed must be a non-negative safe integer/ });
  t.throws(() => vp.randn([3], { seed: 2n ** 64n }), { instanceOf: RangeError, message: /opts.seed must be in \[0, 2\^64\)/ });
  t.throws(() => vp.randn([3], { seed: 1, std: -1 }), { instanceOf: RangeError, message: /opts.std must be >= 0/ });
  t.throws(() => vp.randu([3], { seed: 1, low: 1, high: 0 }), { instanceOf: RangeError, message: /opts.high must be >= opts.low/ });
  t.throws(() => vp.randn('3' as unknown as number[], { seed: 1 }), { instanceOf: TypeError, message: /randn: shape must be/ });
});

test('sampleTokens: greedy, seeded sampling, streams, validation', (t) => {
  const logits = vp.tensor(new Float32Array([0, 3, 1, 3, /**/ 2, 0, 0, 0]), [2, 4]);
  t.deepEqual(Array.from(vp.sampleTokens(logits, { temperature: 0 })), [1, 0]);
  const l = randomFloats(8 * 50, 31, -2, 2);
  const lt = vp.tensor(l, [8, 50]);
  const a = vp.sampleTokens(lt, { seed: 1, step: 3, topP: 0.9, temperature: 0.7 });
  t.deepEqual(a, vp.sampleTokens(lt, { seed: 1n, step: 3n, topP: 0.9, temperature: 0.7 }));
  t.true(a.every((x) => x >= 0 && x < 50));
  // a row alone with its stream gives what it gave inside the batch
  const row5 = vp.tensor(l.slice(5 * 50, 6 * 50), [1, 50]);
  t.is(vp.sampleTokens(row5, { seed: 1, step: 3, topP: 0.9, temperature: 0.7, streams: [5] })[0], a[5]);
  t.throws(() => vp.sampleTokens(lt, { temperature: 1 }), { instanceOf: TypeError, message: /sampleTokens: opts.seed must be a number or bigint, got undefined/ });
  t.throws(() => vp.sampleTokens(lt, { seed: 1, topP: 0 }), { instanceOf: RangeError, message: /opts.topP must be > 0/ });
  t.throws(() => vp.sampleTokens(lt, { seed: 1, temperature: -1 }), { instanceOf: RangeError, message: /opts.temperature must be >= 0/ });
  t.throws(() => vp.sampleTokens(lt, { seed: 1, streams: [1, 2] }), { instanceOf: RangeError, message: /opts.streams.length must be 8 \(one per row\), got 2/ });
  t.throws(() => vp.sampleTokens(vp.tensor(new Float32Array([0, NaN]), [1, 2]), { temperature: 0 }), { instanceOf: RangeError, message: /logits\[0, 1\] must be finite, got NaN/ });
});
