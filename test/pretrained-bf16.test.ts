// loadPretrained(dir, { dtype: 'bfloat16' }): frozen weight matrices held in
// bfloat16 and multiplied by the bf16 GEMM (lib/pretrained/bf16.ts). Logits
// against the float64 reference of the stored weights (error set by bf16
// rounding, and at most twice PyTorch's own bf16 error on the same model); the
// bf16 linear's forward and input gradient against float64 of the bf16-rounded
// operands; resident bytes of the parameters; a LoRA SFT step on a bf16 base
// (loss down, only adapters change, bytewise); full fine-tuning with float32
// masters; mergeLora re-rounding; save() writing untouched bf16 tensors back
// byte for byte; the widened path (VP_ISA=avx2) against AVX512-BF16.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { linearW, matmulW, bf16Tensor, roundBf16, widenBf16 } from '../lib/pretrained/bf16.js';
import { readSafetensors } from '../lib/model/safetensors.js';
import { seededRandom } from '../lib/random.js';
import { relError } from './helpers.js';
import { FIXTURES, haveNumpy, PY, randomIds, runReference, writeTinyModel } from './pretrained-fixtures.js';
import { againstFloat32, BF16_VLM_CASES } from './vlm-fixtures.js';

const NUMPY = haveNumpy();
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TORCH = (() => {
  const r = spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
})();

function fixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-bf16-${name}-`));
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

function torchBf16Logits(dir: string, sequences: number[][]): number[][] {
  const r = spawnSync(PY, [join(root, 'test', 'pretrained_bf16_torch.py')], { input: JSON.stringify({ dir, sequences }), encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`pretrained_bf16_torch.py failed: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout).logits;
}

/** Elements of the matrices (2-D tensors) and of everything else, from the parameter names. */
function split(p: Record<string, Float32Array>): { matrix: number; vector: number } {
  let matrix = 0, vector = 0;
  for (const [n, v] of Object.entries(p)) {
    if (/norm\d?\.weight$|layrnorm\.weight$|\.bias$|class_embedding$/.test(n)) vector += v.length;
    else matrix += v.length;
  }
  return { matrix, vector };
}

// The bound: rounding an operand to bf16 changes it by at most 2^-9 relative, so each
// product is off by at most 2^-9 per rounded operand; a logit sits at the end of a
// chain of 2 layers × 7 products plus the head (15), and the errors at most add up:
// 15·2^-9 ≈ 2.9e-2 when only activations are rounded (bf16-stored weights, which the
// float64 reference reads exactly), twice that when the stored f32/f16 weights are
// rounded too. Measured errors sit 4-5x below; the sharper check is against PyTorch's
// own bf16 forward on the same folder (test/pretrained_bf16_torch.py): at most 2x its error.
const bound = (name: string) => (FIXTURES[name].dtype === 'BF16' ? 1 : 2) * 15 * 2 ** -9;

for (const name of Object.keys(FIXTURES)) {
  test(`${name}: bfloat16 logits match the float64 reference within bf16 rounding, and within 2x PyTorch's bf16 error`, async (t) => {
    if (!NUMPY) return t.fail('/usr/bin/python3 with numpy is needed for the reference (apt-get install python3-numpy)');
    const dir = fixture(name);
    const m = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
    t.is(m.dtype, 'bfloat16');
    const seqs = [randomIds(19, 3), randomIds(33, 5)];
    const ref = runReference({ dir, sequences: seqs, mode: 'logits' });
    if (!ref.ok) return t.fail(ref.why);
    const theirs = TORCH ? torchBf16Logits(dir, seqs) : null;
    for (const [i, ids] of seqs.entries()) {
      const want = (ref.out.logits as number[][])[i];
      const err = relError((await m.logits(ids)).data as Float32Array, want);
      t.true(err <= bound(name), `sequence ${i}: relative error ${err}`);
      t.true(err > 1e-6, `sequence ${i}: error ${err} is float32-sized: the bf16 path did not run`);
      if (theirs) {
        const te = relError(theirs[i], want);
        t.log(`sequence ${i} (${ids.length} tokens): ours ${err.toExponential(2)}, PyTorch bf16 ${te.toExponential(2)}`);
        t.true(err <= 2 * te, `sequence ${i}: ours ${err} vs PyTorch bf16 ${te}`);
      } else t.log('PyTorch not found under /usr/bin/python3: the 2x-PyTorch comparison was skipped');
    }
  });
}

test('the bf16 linear: y = x·Wᵀ + b and dx = dy·W match float64 of the bf16-rounded operands', (t) => {
  const r = seededRandom(5);
  for (const [n, inD, outD] of [[1, 1, 1], [7, 33, 5], [37, 96, 130], [64, 1100, 40]]) {
    const rand = (k: number) => Float32Array.from({ length: k }, () => r() * 2 - 1);
    const x = rand(n * inD), dy = rand(n * outD), b = rand(outD);
    const w16 = roundBf16(rand(outD * inD));
    const w = widenBf16(w16), xr = widenBf16(roundBf16(x)), dyr = widenBf16(roundBf16(dy));
    const W = bf16Tensor(w16, [outD, inD]);
    const y = linearW(vp.tensor(x, [n, inD]), W, vp.tensor(b, [outD])).data as Float32Array;
    const dx = matmulW(vp.tensor(dy, [n, outD]), W).data as Float32Array;
    const yRef = new Float64Array(n * outD), dxRef = new Float64Array(n * inD);
    for (let i = 0; i < n; i++)
      for (let o = 0; o < outD; o++) {
        let s = b[o];
        for (let k = 0; k < inD; k++) s += xr[i * inD + k] * w[o * inD + k];
        yRef[i * outD + o] = s;
        for (let k = 0; k < inD; k++) dxRef[i * inD + k] += dyr[i * outD + o] * w[o * inD + k];
      }
    t.true(relError(y, yRef) <= 1e-5, `y [${n}, ${inD}] → ${outD}: ${relError(y, yRef)}`);
    t.true(relError(dx, dxRef) <= 1e-5, `dx [${n}, ${inD}] → ${outD}: ${relError(dx, dxRef)}`);
  }
  t.throws(() => linearW(vp.tensor(new Float32Array(6), [2, 3]), bf16Tensor(new Uint16Array(8), [2, 4])), { instanceOf: RangeError });
});

test('bfloat16 halves the resident bytes of the weight matrices; vectors stay float32', async (t) => {
  for (const name of ['llama-untied-f32', 'qwen2-untied-bf16-sharded']) {
    const dir = fixture(name);
    const f = await vp.loadPretrained(dir);
    const h = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
    const { matrix, vector } = split(f.parameters());
    t.is(f.parameterBytes, 4 * (matrix + vector), name);
    t.is(h.parameterBytes, 2 * matrix + 4 * vector, name);
    t.is(h.numParams, f.numParams);
    // A float32-stored checkpoint is rounded to nearest even; a bf16 one keeps its values.
    const pf = f.parameters(), ph = h.parameters();
    for (const n of Object.keys(pf)) {
      const want = /norm\.weight$|\.bias$/.test(n) ? pf[n] : widenBf16(roundBf16(pf[n]));
      t.deepEqual(ph[n], want, `${name}: ${n}`);
    }
  }
});

test('LoRA SFT on a bfloat16 base: the loss falls, only adapter tensors change (bytewise), the base stays bf16', async (t) => {
  const dir = fixture('llama-tied-bf16-sharded-llama3');
  const m = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
  m.addLora({ rank: 4, alpha: 8, targets: 'all-linear' });
  const bytes = m.parameterBytes;
  const before = m.parameters();
  const ids = Int32Array.from(randomIds(24, 9));
  const batch = { text: ids, sequences: [[{ text: [0, 24] as [number, number] }]] };
  const first = await m.trainStep(batch, { lr: 1e-2 });
  let last = first;
  for (let i = 0; i < 5; i++) last = await m.trainStep(batch, { lr: 1e-2 });
  const after = (await m.forward(batch, { forBackward: false })).loss;
  t.true(after < first.loss, `loss ${first.loss} → ${after}`);
  t.is(m.parameterBytes, bytes, 'no float32 copies of the frozen base appear');
  const now = m.parameters();
  for (const n of Object.keys(before)) {
    const same = Buffer.from(before[n].buffer, before[n].byteOffset, before[n].byteLength).equals(Buffer.from(now[n].buffer, now[n].byteOffset, now[n].byteLength));
    if (/lora_[AB]/.test(n)) { if (/lora_A/.test(n)) t.false(same, `${n} trained`); } else t.true(same, `${n} unchanged`);
  }
  t.log(`loss ${first.loss.toFixed(4)} → ${after.toFixed(4)} after ${last.step} steps`);
  // mergeLora re-rounds the merged weights to bfloat16.
  const lo = m.lora!;
  const p = m.parameters();
  const name = 'model.layers.0.mlp.down_proj';
  const W = p[`${name}.weight`], A = p[`${name}.lora_A.weight`], B = p[`${name}.lora_B.weight`];
  const [outD, r] = [B.length / lo.rank, lo.rank], inD = A.length / r;
  const want = new Float32Array(W.length);
  for (let o = 0; o < outD; o++)
    for (let i = 0; i < inD; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += B[o * r + k] * A[k * inD + i];
      want[o * inD + i] = W[o * inD + i] + Math.fround((lo.alpha / lo.rank) * Math.fround(s));
    }
  m.mergeLora();
  const merged = m.parameters()[`${name}.weight`];
  t.true(merged.every((x) => widenBf16(roundBf16(Float32Array.of(x)))[0] === x), 'merged weights are bf16 values');
  t.true(relError(merged, want) <= 4e-3, `merged vs W + s·B·A: ${relError(merged, want)}`);
  t.is(m.parameterBytes, bytes - 4 * Object.keys(before).filter((n) => /lora_/.test(n)).reduce((s, n) => s + before[n].length, 0));
});

test('full fine-tuning with dtype bfloat16 trains float32 masters (widened from bf16) and lowers the loss', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-untied-bf16-sharded'), { dtype: 'bfloat16' });
  const f32Bytes = 4 * m.numParams;
  t.true(m.parameterBytes < f32Bytes);
  const ids = Int32Array.from(randomIds(20, 4));
  const batch = { text: ids, sequences: [[{ text: [0, 20] as [number, number] }]] };
  const a = await m.trainStep(batch, { lr: 3e-3 });
  t.is(m.parameterBytes, f32Bytes, 'every trained matrix is a float32 master');
  for (let i = 0; i < 3; i++) await m.trainStep(batch, { lr: 3e-3 });
  const after = (await m.forward(batch, { forBackward: false })).loss;
  t.true(after < a.loss, `loss ${a.loss} → ${after}`);
  // Freezing again (LoRA) rounds the base back to bf16.
  m.addLora({ rank: 2 });
  t.true(m.parameterBytes < f32Bytes);
});

test('save() writes untouched bf16 tensors back byte for byte; float32-stored ones as their rounded values', async (t) => {
  for (const name of ['qwen2-untied-bf16-sharded', 'llama-untied-f32']) {
    const dir = fixture(name);
    const m = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
    const out = mkdtempSync(join(tmpdir(), 'vp-bf16-save-'));
    await m.save(out);
    const files = FIXTURES[name].shards ? Object.values(JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')).weight_map as Record<string, string>) : ['model.safetensors'];
    for (const f of new Set(files)) {
      const a = readSafetensors(join(dir, f)), b = readSafetensors(join(out, f));
      t.deepEqual(b.order, a.order);
      for (const n of a.order) {
        t.is(b.tensors[n].dtype, a.tensors[n].dtype, n);
        const va = a.tensors[n].data, vb = b.tensors[n].data;
        if (a.tensors[n].dtype === 'BF16' || a.tensors[n].shape.length < 2) t.deepEqual(vb, va, `${name}: ${n} bytes`);
        else t.deepEqual(vb, widenBf16(roundBf16(va as Float32Array)), `${name}: ${n} rounded`);
      }
    }
    if (name.includes('bf16')) t.deepEqual(readFileSync(join(out, files[0])), readFileSync(join(dir, files[0])), 'the whole shard file is identical');
  }
});

test('without AVX512-BF16 (VP_ISA=avx2) the widened path gives the same logits', async (t) => {
  if (vp.backendInfo().cpu.bestIsa !== 'avx512') return t.pass('this CPU has no AVX-512: only the widened path exists and the tests above ran it');
  const dir = fixture('llama-untied-f32');
  const ids = randomIds(17, 8);
  const script = `import * as vp from './lib/index.ts';
const m = await vp.loadPretrained(${JSON.stringify(dir)}, { dtype: 'bfloat16' });
console.log(JSON.stringify({ isa: vp.backendInfo().cpu.isa, lg: Array.from((await m.logits(${JSON.stringify(ids)})).data) }));`;
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, VP_ISA: 'avx2' }, maxBuffer: 1 << 26 });
  t.is(r.status, 0, r.stderr);
  const child = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.is(child.isa, 'avx2');
  const here = (await (await vp.loadPretrained(dir, { dtype: 'bfloat16' })).logits(ids)).data as Float32Array;
  t.true(relError(child.lg, here) <= 1e-5, `widened vs AVX512-BF16: ${relError(child.lg, here)}`);
});

test('opts.dtype: an unknown value is a TypeError naming it; float32 stays the default', async (t) => {
  const dir = fixture('qwen2-tied-f16');
  await t.throwsAsync(vp.loadPretrained(dir, { dtype: 'float16' as never }), { instanceOf: TypeError, message: /opts\.dtype/ });
  const m = await vp.loadPretrained(dir);
  t.is(m.dtype, 'float32');
  t.is(m.parameterBytes, 4 * m.numParams);
});

// Vision-language models: the frozen vision tower (and, under LoRA, the connector and
// the text model) in bfloat16. The bound follows the one above: about 30 rounded
// products chain from the pixels to a logit (patch embedding, 2 tower layers, the
// connector, 2 text layers, the head), each operand off by at most 2^-9, both the
// activation and the float32-stored weight rounded: 2·30·2^-9 ≈ 0.12.
for (const [name, o, perImage] of BF16_VLM_CASES) {
  test(`${name}: bfloat16 tower and text model give the float32 logits within bf16 rounding; LoRA trains with the tower in bf16`, async (t) => {
    const { f, m: h, err, batch } = await againstFloat32('vp-bf16-vlm-', o, perImage, { dtype: 'bfloat16' });
    t.log(`relative error against float32: ${err.toExponential(2)}`);
    t.true(err <= 2 * 30 * 2 ** -9 && err > 1e-6, `relative error ${err}`);
    const { matrix, vector } = split(f.parameters());
    t.is(h.parameterBytes, 2 * matrix + 4 * vector);
    // LoRA SFT over the bf16 base and tower: the loss falls, nothing but adapters widen.
    h.addLora({ rank: 2 });
    const bytes = h.parameterBytes;
    const first = await h.trainStep(batch, { lr: 1e-2, weightDecay: 0 });
    for (let s = 0; s < 3; s++) await h.trainStep(batch, { lr: 1e-2, weightDecay: 0 });
    const after = (await h.forward(batch, { forBackward: false })).loss;
    t.true(after < first.loss, `loss ${first.loss} → ${after}`);
    t.is(h.parameterBytes, bytes);
  });
}
