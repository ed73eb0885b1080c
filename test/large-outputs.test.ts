// Ops whose outputs of 4 MB or more skip the zero fill (lib/tensor.ts overwrittenLike:
// malloc'd bytes advised onto huge pages): every element of such an output must
// still be written. Each case first frees NaN-filled buffers of the output's size,
// so the allocator is likely to hand their bytes back, then checks the whole output
// against a float64 reference on fresh random inputs.
import test from 'ava';
import * as vp from '../lib/index.js';
import { native } from '../lib/native.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { randomFloats } from './helpers.js';
import { bf16Tensor, matmulViaBf16, matmulW, roundBf16 } from '../lib/pretrained/bf16.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

// Free NaN-filled buffers of `bytes` (collected at once) for the next allocation to reuse.
function poisonHeap(bytes: number): void {
  for (let i = 0; i < 2; i++) {
    new Float32Array(Buffer.allocUnsafeSlow(bytes).buffer).fill(NaN);
    gc();
  }
}

function maxRelErr(got: Float32Array, want: Float64Array): number {
  let num = 0, den = 0, nonFinite = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) nonFinite++;
    num = Math.max(num, Math.abs(got[i] - want[i]));
    den = Math.max(den, Math.abs(want[i]));
  }
  return nonFinite ? Infinity : num / den;
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));

test('swiglu forward and backward with outputs over 4 MB', (t) => {
  const rows = 1030, f = 1100; // 4.5 MB a tensor
  const g = randomFloats(rows * f, 1, -4, 4), u = randomFloats(rows * f, 2), dh = randomFloats(rows * f, 3);
  poisonHeap(rows * f * 4);
  const h = vp.swiglu(vp.tensor(g, [rows, f]), vp.tensor(u, [rows, f]));
  poisonHeap(rows * f * 4);
  const { dGate, dUp } = vp.swigluBackward(vp.tensor(dh, [rows, f]), vp.tensor(g, [rows, f]), vp.tensor(u, [rows, f]));
  const hr = new Float64Array(rows * f), dgr = new Float64Array(rows * f), dur = new Float64Array(rows * f);
  for (let i = 0; i < rows * f; i++) {
    const s = sig(g[i]);
    hr[i] = g[i] * s * u[i];
    dur[i] = dh[i] * g[i] * s;
    dgr[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
  }
  t.true(maxRelErr(h.data as Float32Array, hr) < 1e-5);
  t.true(maxRelErr(dGate.data as Float32Array, dgr) < 1e-5);
  t.true(maxRelErr(dUp.data as Float32Array, dur) < 1e-5);
});

test('crossEntropyBackward with an output over 4 MB, ignored rows included', (t) => {
  const n = 130, v = 8200; // 4.3 MB
  const x = randomFloats(n * v, 4, -5, 5);
  const tg = new Int32Array(n);
  for (let i = 0; i < n; i++) tg[i] = i % 5 === 4 ? -1 : (i * 977) % v;
  const logits = vp.tensor(x, [n, v]);
  const { lse, count } = vp.crossEntropy(logits, tg);
  poisonHeap(n * v * 4);
  const d = vp.crossEntropyBackward(logits, tg, lse).data as Float32Array;
  const ref = new Float64Array(n * v);
  for (let r = 0; r < n; r++) {
    if (tg[r] < 0) continue;
    let m = -Infinity;
    for (let j = 0; j < v; j++) m = Math.max(m, x[r * v + j]);
    let s = 0;
    for (let j = 0; j < v; j++) s += Math.exp(x[r * v + j] - m);
    for (let j = 0; j < v; j++) ref[r * v + j] = Math.exp(x[r * v + j] - m) / s / count;
    ref[r * v + tg[r]] -= 1 / count;
  }
  t.true(maxRelErr(d, ref) < 1e-5);
  for (let j = 0; j < v; j++) t.is(d[4 * v + j], 0); // row 4 is ignored: zero, not garbage
});

test('embedding forward and backward with outputs over 4 MB', (t) => {
  const vocab = 2100, dim = 520, n = 2090; // table grad 4.4 MB, output 4.3 MB
  const table = randomFloats(vocab * dim, 5), dout = randomFloats(n * dim, 6);
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = (i * 7919) % 1500; // rows 1500.. never hit: their grad is 0
  poisonHeap(n * dim * 4);
  const out = vp.embedding(vp.tensor(table, [vocab, dim]), ids).data as Float32Array;
  poisonHeap(vocab * dim * 4);
  const dt = vp.embeddingBackward(vp.tensor(dout, [n, dim]), ids, vocab).data as Float32Array;
  const outRef = new Float64Array(n * dim), dtRef = new Float64Array(vocab * dim);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < dim; j++) {
      outRef[i * dim + j] = table[ids[i] * dim + j];
      dtRef[ids[i] * dim + j] += dout[i * dim + j];
    }
  t.is(maxRelErr(out, outRef), 0);
  t.true(maxRelErr(dt, dtRef) < 1e-6);
});

test('adviseHugePages: a boolean, never a throw, for any typed array', (t) => {
  t.is(typeof native().adviseHugePages(new Float32Array(16)), 'boolean');
  t.false(native().adviseHugePages(new Float32Array(16))); // under 4 MB: nothing to advise
  t.is(typeof native().adviseHugePages(new Float32Array(3 << 20)), 'boolean');
  t.throws(() => (native().adviseHugePages as (x: unknown) => boolean)([1, 2]), { instanceOf: TypeError });
});

test('matmul and the bf16 products of pretrained models with outputs over 4 MB: every element written, K = 0 included', (t) => {
  const m = 1100, n = 1000, k = 3;
  const a = randomFloats(m * k, 21), b = randomFloats(k * n, 22);
  poisonHeap(m * n * 4);
  const c = vp.matmul(vp.tensor(a, [m, k]), vp.tensor(b, [k, n])).data as Float32Array;
  const ref = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) ref[i * n + j] += a[i * k + p] * b[p * n + j];
  t.true(maxRelErr(c, ref) < 1e-5);
  poisonHeap(m * n * 4);
  const z = vp.matmul(vp.tensor(new Float32Array(0), [m, 0]), vp.tensor(new Float32Array(0), [0, n])).data as Float32Array;
  t.true(z.every((x) => x === 0), 'K = 0: zeros, not garbage');
  // The pretrained models' bf16 products (lib/pretrained/bf16.ts) skip the fill too.
  const w = bf16Tensor(roundBf16(b), [k, n]);
  poisonHeap(m * n * 4);
  const y = matmulW(vp.tensor(a, [m, k]), w).data as Float32Array;
  t.true(y.every(Number.isFinite));
  poisonHeap(m * n * 4);
  const g = matmulViaBf16(vp.tensor(a, [k, m]), vp.tensor(b, [k, n]), { transA: true }).data as Float32Array;
  t.true(g.every(Number.isFinite));
});
