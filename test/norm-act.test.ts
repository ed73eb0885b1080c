// vp.layerNorm / vp.gelu (lib/ops/norm-act.ts) from TypeScript: values against
// float64 references (test/vlm-reference.ts), backward passes against finite
// differences, outputs of the native kernels checked for NaN, and validation errors.
import test from 'ava';
import * as vp from '../lib/index.js';
import { randomFloats, relError } from './helpers.js';
import { act, layerNormRef } from './vlm-reference.js';

const T = (data: Float32Array, shape: number[]) => vp.tensor(data, shape);

test('layerNorm and its backward match float64 and finite differences', (t) => {
  const rows = 5, d = 11, eps = 1e-5;
  const x = randomFloats(rows * d, 1, -2, 3), g = randomFloats(d, 2, 0.5, 1.5), b = randomFloats(d, 3);
  const { y, mean, rstd } = vp.layerNorm(T(x, [rows, d]), T(g, [d]), T(b, [d]), { eps });
  t.true(relError(y.data as Float32Array, layerNormRef(Float64Array.from(x), rows, d, g, b, eps)) < 1e-6);
  const dy = randomFloats(rows * d, 4);
  const { dx, dGamma, dBeta } = vp.layerNormBackward(T(dy, [rows, d]), T(x, [rows, d]), T(g, [d]), mean, rstd, { eps });
  const h = 1e-6;
  const loss = (xx: Float64Array, gg: ArrayLike<number>, bb: ArrayLike<number>) =>
    layerNormRef(xx, rows, d, gg, bb, eps).reduce((s, v, i) => s + v * dy[i], 0);
  const fdx = Float64Array.from(x, (_, i) => {
    const p = Float64Array.from(x), m = Float64Array.from(x);
    p[i] += h;
    m[i] -= h;
    return (loss(p, g, b) - loss(m, g, b)) / (2 * h);
  });
  t.true(relError(dx.data as Float32Array, fdx) < 1e-4);
  const fdg = Float64Array.from(g, (_, j) => {
    const p = Float64Array.from(g), m = Float64Array.from(g);
    p[j] += h;
    m[j] -= h;
    return (loss(Float64Array.from(x), p, b) - loss(Float64Array.from(x), m, b)) / (2 * h);
  });
  t.true(relError(dGamma.data as Float32Array, fdg) < 1e-4);
  const colSum = Float64Array.from({ length: d }, (_, j) => dy.reduce((s, v, i) => (i % d === j ? s + v : s), 0));
  t.true(relError(dBeta.data as Float32Array, colSum) < 1e-6);
  // Accumulation into given gradients, and no-bias forward.
  const acc = vp.layerNormBackward(T(dy, [rows, d]), T(x, [rows, d]), T(g, [d]), null, null, { eps, dGamma: T((dGamma.data as Float32Array).slice(), [d]) });
  t.true(relError(acc.dGamma.data as Float32Array, Float64Array.from(dGamma.data as Float32Array, (v) => 2 * v)) < 1e-6);
  t.true(relError(acc.dBeta.data as Float32Array, colSum) < 1e-6);
  const nb = vp.layerNorm(T(x, [rows, d]), T(g, [d]), null, { eps });
  t.true(relError(nb.y.data as Float32Array, layerNormRef(Float64Array.from(x), rows, d, g, null, eps)) < 1e-6);
});

test('gelu (erf, tanh, quick) and its backward match float64', (t) => {
  const n = 1000;
  const x = randomFloats(n, 7, -5, 5), dy = randomFloats(n, 8);
  for (const [approximate, name] of [['erf', 'gelu'], ['tanh', 'gelu_pytorch_tanh'], ['quick', 'quick_gelu']] as const) {
    const y = vp.gelu(T(x, [n]), { approximate });
    t.true(relError(y.data as Float32Array, Float64Array.from(x, (v) => act(v, name))) < 1e-6, approximate);
    const dx = vp.geluBackward(T(dy, [n]), T(x, [n]), { approximate });
    const ref = Float64Array.from(x, (v, i) => (dy[i] * (act(v + 1e-6, name) - act(v - 1e-6, name))) / 2e-6);
    t.true(relError(dx.data as Float32Array, ref) < 1e-5, approximate);
  }
});

test('layerNorm and gelu name the bad argument', (t) => {
  const x = T(new Float32Array(6), [2, 3]);
  t.throws(() => vp.layerNorm(x, T(new Float32Array(2), [2])), { instanceOf: RangeError, message: /gamma/ });
  t.throws(() => vp.layerNorm(x, T(new Float32Array(3), [3]), T(new Float32Array(4), [4])), { instanceOf: RangeError, message: /beta/ });
  t.throws(() => vp.layerNorm(x, T(new Float32Array(3), [3]), null, { eps: -1 }), { instanceOf: RangeError, message: /opts\.eps/ });
  t.throws(() => vp.layerNorm('x' as never, T(new Float32Array(3), [3])), { instanceOf: TypeError, message: /\bx\b/ });
  t.throws(() => vp.layerNormBackward(x, x, T(new Float32Array(3), [3]), new Float32Array(2), null), { instanceOf: TypeError, message: /rstd/ });
  t.throws(() => vp.layerNormBackward(T(new Float32Array(3), [3]), x, T(new Float32Array(3), [3])), { instanceOf: RangeError, message: /dy/ });
  t.throws(() => vp.gelu(x, { approximate: 'fast' as never }), { instanceOf: TypeError, message: /opts\.approximate/ });
  t.throws(() => vp.geluBackward(T(new Float32Array(3), [3]), x), { instanceOf: RangeError, message: /dy/ });
});
