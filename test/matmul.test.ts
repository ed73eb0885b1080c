import test from 'ava';
import * as vp from '../lib/index.js';
import { randomFloats, relError } from './helpers.js';

function refMatmul(a: Float32Array, b: Float32Array, m: number, n: number, k: number, ta: boolean, tb: boolean): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  return c;
}

test('matmul matches a float64 reference for every transpose on odd shapes', (t) => {
  let seed = 1;
  for (const [m, n, k] of [[1, 1, 1], [3, 5, 7], [17, 1, 33], [64, 65, 66], [129, 100, 257]]) {
    for (const ta of [false, true])
      for (const tb of [false, true]) {
        const a = randomFloats(m * k, seed++);
        const b = randomFloats(k * n, seed++);
        const out = vp.matmul(vp.tensor(a, ta ? [k, m] : [m, k]), vp.tensor(b, tb ? [n, k] : [k, n]), { transA: ta, transB: tb });
        t.deepEqual(out.shape, [m, n]);
        t.true(relError(out.data, refMatmul(a, b, m, n, k, ta, tb)) <= 1e-5, `${m}x${n}x${k} ta=${ta} tb=${tb}`);
      }
  }
});

test('matmul with K = 0 gives zeros and with M = 0 an empty result', (t) => {
  const z = vp.matmul(vp.tensor(new Float32Array(0), [2, 0]), vp.tensor(new Float32Array(0), [0, 3]));
  t.deepEqual(Array.from(z.data), [0, 0, 0, 0, 0, 0]);
  t.is(vp.matmul(vp.tensor(new Float32Array(0), [0, 4]), vp.tensor(new Float32Array(8), [4, 2])).size, 0);
});

test('matmul rejects invalid calls with TypeError/RangeError naming the argument', (t) => {
  const a = vp.tensor(new Float32Array(6), [2, 3]);
  const b = vp.tensor(new Float32Array(12), [3, 4]);
  t.throws(() => vp.matmul(a, vp.tensor(new Float32Array(8), [2, 4])), { instanceOf: RangeError, message: /matmul: b\.shape.*K=3/ });
  t.throws(() => vp.matmul(a, b, { transA: true }), { instanceOf: RangeError, message: /b\.shape/ });
  t.throws(() => vp.matmul(vp.tensor(new Float32Array(6), [6]), b), { instanceOf: RangeError, message: /a\.shape must be 2-D/ });
  t.throws(() => vp.matmul(a, vp.tensor(new Float32Array(24), [2, 3, 4])), { instanceOf: RangeError, message: /b\.shape must be 2-D/ });
  t.throws(() => vp.matmul(vp.tensor(new Int32Array(6), [2, 3]), b), { instanceOf: TypeError, message: /a\.dtype.*float32/ });
  t.throws(() => vp.matmul([1, 2] as unknown as vp.Tensor, b), { instanceOf: TypeError, message: /matmul: a must be a Tensor/ });
  t.throws(() => vp.matmul(a, null as unknown as vp.Tensor), { instanceOf: TypeError, message: /matmul: b must be a Tensor/ });
  t.throws(() => vp.matmul(a, b, { transA: 'yes' as unknown as boolean }), { instanceOf: TypeError, message: /opts\.transA/ });
  t.throws(() => vp.matmul(a, b, 5 as unknown as vp.MatmulOptions), { instanceOf: TypeError, message: /opts/ });
});

test('matmul refuses tensors on different devices', (t) => {
  // A fake CUDA tensor: validation must reject it before any native work.
  const a = vp.tensor(new Float32Array(6), [2, 3]);
  const fake = new vp.Tensor([3, 4], 'float32', 'cuda', undefined, undefined);
  t.throws(() => vp.matmul(a, fake), { instanceOf: TypeError, message: /matmul: b must be on cpu like a/ });
});

// CPU bfloat16 (float32 accumulation, a bfloat16 result): against float64 of the same
// bf16-rounded inputs; mixed and unsupported dtypes refused with the argument named.
test('bfloat16 matmul on the CPU matches a float64 reference of its rounded inputs', (t) => {
  let seed = 11;
  for (const [m, n, k] of [[1, 1, 1], [3, 5, 7], [17, 33, 65], [64, 65, 1100], [129, 100, 257]]) {
    for (const ta of [false, true])
      for (const tb of [false, true]) {
        const a = vp.tensor(randomFloats(m * k, seed++), ta ? [k, m] : [m, k]).to('cpu', 'bfloat16');
        const b = vp.tensor(randomFloats(k * n, seed++), tb ? [n, k] : [k, n]).to('cpu', 'bfloat16');
        const out = vp.matmul(a, b, { transA: ta, transB: tb });
        t.is(out.dtype, 'bfloat16');
        t.deepEqual(out.shape, [m, n]);
        const ref = refMatmul(a.to('cpu', 'float32').data as Float32Array, b.to('cpu', 'float32').data as Float32Array, m, n, k, ta, tb);
        // one bfloat16 rounding of the result (relative 2^-9) over float32 sums
        t.true(relError(out.to('cpu', 'float32').data as Float32Array, ref) <= 4e-3, `${m}x${n}x${k} ta=${ta} tb=${tb}`);
      }
  }
});

test('bfloat16 matmul refuses mixed dtypes and float16 on the CPU, naming the argument', (t) => {
  const a = vp.tensor(randomFloats(6, 1), [2, 3]);
  const b16 = vp.tensor(randomFloats(6, 2), [3, 2]).to('cpu', 'bfloat16');
  t.throws(() => vp.matmul(a, b16), { instanceOf: TypeError, message: /b\.dtype/ });
  const h = vp.tensor(randomFloats(6, 3), [3, 2]).to('cpu', 'float16');
  t.throws(() => vp.matmul(h, h), { instanceOf: TypeError, message: /a\.dtype/ });
});

test('matmul into opts.out: the same tensor back, the same bits as a fresh output, old values never read', (t) => {
  const m = 37, n = 70, k = 129;
  const a = vp.tensor(randomFloats(m * k, 41), [m, k]);
  const b = vp.tensor(randomFloats(k * n, 42), [k, n]);
  const fresh = vp.matmul(a, b);
  const out = vp.tensor(new Float32Array(m * n).fill(Number.NaN), [m, n]);
  for (let rep = 0; rep < 2; rep++) {  // a second call reuses the same out
    const r = vp.matmul(a, b, { out });
    t.is(r, out);
    t.deepEqual(Array.from(r.data), Array.from(fresh.data));
  }
  // K = 0 writes zeros over whatever out held.
  const z = vp.tensor(new Float32Array(6).fill(Number.NaN), [2, 3]);
  vp.matmul(vp.tensor(new Float32Array(0), [2, 0]), vp.tensor(new Float32Array(0), [0, 3]), { out: z });
  t.deepEqual(Array.from(z.data), [0, 0, 0, 0, 0, 0]);
  // bfloat16: the out is bfloat16 too.
  const a16 = a.to('cpu', 'bfloat16'), b16 = b.to('cpu', 'bfloat16');
  const out16 = vp.zeros([m, n]).to('cpu', 'bfloat16');
  vp.matmul(a16, b16, { out: out16 });
  t.deepEqual(Array.from(out16.data), Array.from(vp.matmul(a16, b16).data));
});

test('matmul opts.out: wrong shape, dtype, a disposed tensor or memory shared with an input is refused, naming opts.out', (t) => {
  const a = vp.tensor(randomFloats(6, 1), [2, 3]);
  const b = vp.tensor(randomFloats(12, 2), [3, 4]);
  t.throws(() => vp.matmul(a, b, { out: vp.zeros([4, 2]) }), { instanceOf: RangeError, message: /matmul: opts\.out\.shape.*\[2, 4\]/ });
  t.throws(() => vp.matmul(a, b, { out: vp.zeros([2, 4]).to('cpu', 'bfloat16') }), { instanceOf: TypeError, message: /matmul: opts\.out.*float32/ });
  t.throws(() => vp.matmul(a, b, { out: new Float32Array(8) as unknown as vp.Tensor }), { instanceOf: TypeError, message: /matmul: opts\.out.*Tensor/ });
  const gone = vp.zeros([2, 4]);
  gone.dispose();
  t.throws(() => vp.matmul(a, b, { out: gone }), { instanceOf: TypeError, message: /matmul: opts\.out/ });
  // Sharing memory with an input: the product would read values it has overwritten.
  const sq = vp.tensor(randomFloats(16, 3), [4, 4]);
  t.throws(() => vp.matmul(sq, sq, { out: sq }), { instanceOf: RangeError, message: /matmul: opts\.out.*separate from a/ });
  const backing = new Float32Array(40);
  const left = vp.tensor(backing.subarray(0, 16), [4, 4]);
  const overlapping = vp.tensor(backing.subarray(12, 28), [4, 4]);
  const apart = vp.tensor(backing.subarray(16, 32), [4, 4]);
  t.throws(() => vp.matmul(sq, left, { out: overlapping }), { instanceOf: RangeError, message: /separate from b/ });
  t.notThrows(() => vp.matmul(sq, left, { out: apart }));
});
