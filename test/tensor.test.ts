import test from 'ava';
import * as vp from '../lib/index.js';

test('tensor wraps typed arrays without copying and infers the dtype', (t) => {
  const f = new Float32Array([1, 2, 3, 4, 5, 6]);
  const a = vp.tensor(f, [2, 3]);
  t.deepEqual(a.shape, [2, 3]);
  t.is(a.dtype, 'float32');
  t.is(a.device, 'cpu');
  t.is(a.data, f);
  const i = vp.tensor(new Int32Array([1, 2]), [2]);
  t.is(i.dtype, 'int32');
  const n = vp.tensor([1.5, 2.5], [1, 2]);
  t.true(n.data instanceof Float32Array);
  t.deepEqual(Array.from(n.data), [1.5, 2.5]);
});

test('tensor accepts empty and scalar shapes', (t) => {
  t.is(vp.tensor(new Float32Array(0), [0, 5]).size, 0);
  t.is(vp.tensor([7], []).size, 1);
});

test('tensor rejects bad data and shapes with errors naming the argument', (t) => {
  t.throws(() => vp.tensor(new Float32Array(5), [2, 3]), { instanceOf: RangeError, message: /tensor: data must be 6 elements/ });
  t.throws(() => vp.tensor(new Float64Array(2) as unknown as Float32Array, [2]), { instanceOf: TypeError, message: /tensor: data/ });
  t.throws(() => vp.tensor('abc' as unknown as number[], [3]), { instanceOf: TypeError, message: /tensor: data/ });
  t.throws(() => vp.tensor([1, 'x' as unknown as number], [2]), { instanceOf: TypeError, message: /data\[1\]/ });
  t.throws(() => vp.tensor([1, 2], [-2]), { instanceOf: RangeError, message: /shape\[0\]/ });
  t.throws(() => vp.tensor([1, 2], [NaN]), { instanceOf: RangeError, message: /shape\[0\]/ });
  t.throws(() => vp.tensor([1, 2], [Infinity]), { instanceOf: RangeError, message: /shape\[0\]/ });
  t.throws(() => vp.tensor([1, 2], [1.5]), { instanceOf: RangeError, message: /shape\[0\]/ });
  t.throws(() => vp.tensor([1, 2], 2 as unknown as number[]), { instanceOf: TypeError, message: /shape/ });
  t.throws(() => vp.tensor([1, 2], ['2' as unknown as number]), { instanceOf: TypeError, message: /shape\[0\]/ });
  t.throws(() => vp.tensor([1], [1, 1, 1, 1, 1, 1, 1, 1, 1]), { instanceOf: RangeError, message: /at most 8/ });
});

test('to(cpu) copies, dispose() frees and later use fails clearly', (t) => {
  const a = vp.tensor([1, 2, 3], [3]);
  const b = a.to('cpu');
  t.not(b.data, a.data);
  t.deepEqual(Array.from(b.data), [1, 2, 3]);
  b.dispose();
  t.true(b.disposed);
  t.throws(() => b.data, { message: /disposed/ });
  t.throws(() => vp.matmul(b as vp.Tensor, a), { instanceOf: TypeError, message: /disposed/ });
  t.throws(() => a.to('gpu' as 'cuda'), { instanceOf: TypeError, message: /device/ });
});

test('to(cpu, bfloat16/float16) round-trips within the precision', (t) => {
  const a = vp.tensor([1, -2.5, 3.140625, 65504, 1e-3], [5]);
  for (const dt of ['bfloat16', 'float16'] as const) {
    const h = a.to('cpu', dt);
    t.is(h.dtype, dt);
    const back = h.to('cpu', 'float32');
    const tol = dt === 'bfloat16' ? 1 / 128 : 1 / 1024;
    for (let i = 0; i < 5; i++) t.true(Math.abs(back.data[i] - a.data[i]) <= tol * Math.abs(a.data[i]), `${dt}[${i}]`);
  }
});

test('backendInfo reports the ISA path, threads and why CUDA is or is not used', (t) => {
  const info = vp.backendInfo();
  t.true(['avx512', 'avx2', 'generic'].includes(info.cpu.isa));
  t.true(info.cpu.threads >= 1);
  if (info.cuda === null) t.true(info.cudaReason.length > 0);
  else t.true(info.cuda.memoryBytes > 0);
  t.true(info.binary.path.endsWith('.node'));
});

test('to(cuda) without a GPU fails with a clear error, not a crash', (t) => {
  const info = vp.backendInfo();
  if (info.cuda !== null) return t.pass();
  t.throws(() => vp.tensor([1, 2], [2]).to('cuda'), { message: /CUDA/ });
});
