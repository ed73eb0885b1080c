// vp.matmul on CPU bfloat16 tensors (float32 accumulation, a bfloat16 result):
// against a float64 reference of the same bf16-rounded inputs, every transpose,
// odd shapes and a K past one block; outputs are fresh and checked for NaN by
// relError; mixed and unsupported dtypes are refused with the argument named.
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
