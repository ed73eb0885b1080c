// The pool of recycled CPU outputs (lib/output-pool.ts, recycleOutput in
// lib/tensor.ts): only an output's owner is taken back, never a view, a small or
// a user's tensor, nor the same buffer twice; a recycled buffer is handed to the
// next output of its byte length (zero-filled for emptyLike); the pool lets go
// when idle. And training a pretrained model (full, LoRA, bf16 compute; video
// LLMs with the tower trained and frozen), which recycles activations and gradients, gives
// the same bits with the pool on (every size pooled, recycled buffers poisoned
// with NaN) as with it off.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { pooledBytes, releasePool } from '../lib/output-pool.js';
import { emptyLike, overwrittenLike, recycleOutput, tensor } from '../lib/tensor.js';
import { writeTinyModel } from './pretrained-fixtures.js';
import { writeTinyVlm } from './vlm-fixtures.js';

test.serial('recycleOutput takes back only an output it owns, once, and the next output of that size reuses it', (t) => {
  releasePool();
  const a = overwrittenLike([64, 128]); // 32 KB
  (a.data as Float32Array).fill(3);
  const buf = a.data.buffer;
  const view = tensor(a.data as Float32Array, [128, 64]);
  recycleOutput(view, null, undefined);
  t.false(view.disposed, 'a view is not the owner');
  t.is(pooledBytes(), 0);
  recycleOutput(a);
  t.true(a.disposed);
  t.throws(() => a.data, { message: /disposed/ });
  t.is(pooledBytes(), 32768);
  recycleOutput(a); // twice: nothing more
  t.is(pooledBytes(), 32768);
  const b = overwrittenLike([128, 64]);
  t.is(b.data.buffer, buf, 'same byte length: the recycled buffer');
  t.is(pooledBytes(), 0);
  const other = overwrittenLike([128, 64]);
  t.not(other.data.buffer, buf, 'a buffer is handed out once');
  (b.data as Float32Array).fill(7);
  recycleOutput(b);
  const z = emptyLike([32, 256], 'float32', 'cpu');
  t.is(z.data.buffer, buf);
  t.true((z.data as Float32Array).every((x) => x === 0), 'emptyLike clears a recycled buffer');
  // Not taken: a small output (unless VP_POOL_MIN_BYTES pools every size), a user's tensor, an
  // int32 output, a disposed one.
  const small = overwrittenLike([16]);
  const mine = vp.tensor(new Float32Array(10000), [10000]);
  const ints = emptyLike([10000], 'int32', 'cpu');
  recycleOutput(mine, ints, a);
  if (!process.env.VP_POOL_MIN_BYTES) {
    recycleOutput(small);
    t.false(small.disposed);
  }
  t.false(mine.disposed);
  t.false(ints.disposed);
  t.is(pooledBytes(), 0);
});

test.serial('the pool lets its buffers go after a second or so without use', async (t) => {
  releasePool();
  recycleOutput(overwrittenLike([1024, 16]));
  t.is(pooledBytes(), 65536);
  await new Promise((r) => setTimeout(r, 2500)); // a sweep every half second lets it go between 1 and 1.5 s
  t.is(pooledBytes(), 0);
});

test.serial('a size not reused for a second is let go even while the process is busy (no timer runs)', (t) => {
  releasePool();
  recycleOutput(overwrittenLike([1024, 16])); // 64 KB, then never asked for again
  const t0 = performance.now();
  while (performance.now() - t0 < 1600) recycleOutput(overwrittenLike([1024, 8])); // 32 KB, reused on and on
  t.is(pooledBytes(), 32768, 'only the 32 KB buffer in use is kept');
});

test('training a pretrained model: the same losses, weights and logits with the pool on (poisoned) and off', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-pool-'));
  try {
    writeTinyModel(join(dir, 'llama'), { arch: 'LlamaForCausalLM', tied: true, dtype: 'BF16', hidden: 128, heads: 4, kvHeads: 2, intermediate: 256, layers: 2, tokenizer: 'none', template: 'none', seed: 5 });
    writeTinyVlm(join(dir, 'smolvlm'), { kind: 'smolvlm' });
    writeTinyVlm(join(dir, 'llava'), { kind: 'llava-siglip' });
    const run = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['--import=tsx', join(import.meta.dirname, 'output-pool-child.ts'), join(dir, 'llama'), join(dir, 'smolvlm'), join(dir, 'llava')], {
        encoding: 'utf8', env: { ...process.env, ...env }, timeout: 240_000,
      });
      t.is(r.status, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, { losses: number[]; hash: number }> & { pooledAfterBackward: number };
    };
    const off = run({ VP_OUTPUT_POOL: 'off' });
    const on = run({ VP_POOL_POISON: '1', VP_POOL_MIN_BYTES: '1' });
    t.is(off.pooledAfterBackward, 0);
    t.true(on.pooledAfterBackward > 1 << 20, `the pool held ${on.pooledAfterBackward} bytes after a backward pass`);
    for (const mode of ['full', 'lora', 'bf16 compute', 'vlm', 'vlm frozen tower', 'llava frozen tower']) {
      t.true(on[mode].losses.every(Number.isFinite), mode);
      t.deepEqual(on[mode].losses, off[mode].losses, mode);
      t.is(on[mode].hash, off[mode].hash, `${mode}: parameters and logits bit for bit`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
