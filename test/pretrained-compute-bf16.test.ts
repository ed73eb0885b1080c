// loadPretrained(dir, { computeDtype: 'bfloat16' }): mixed precision for a Hugging Face
// model on the CPU — the float32 weight matrices of the linear layers and the LM head
// multiply through bfloat16 copies of themselves, training updates float32 masters.
// Logits against the float64 reference (within bf16 rounding, and bit for bit those of
// dtype 'bfloat16' where the stored weights are already bf16 values); full fine-tuning
// lowers the loss, keeps float32 masters and never multiplies by a stale copy (after
// each step the logits equal those of a fresh model given the new weights); the mode
// travels with checkpoints and the Trainer's hyper-parameters (a float32 resume is
// refused unless overridden; the run resumes bit for bit), also through the CLI's
// --compute-dtype; in vision-language models the tower's and connector's linears are covered
// too; bad values name the argument.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { matmulViaBf16, roundBf16, widenBf16 } from '../lib/pretrained/bf16.js';
import { randomFloats, relError } from './helpers.js';
import { FIXTURES, haveNumpy, randomIds, runReference, writeTinyModel } from './pretrained-fixtures.js';
import { againstFloat32, BF16_VLM_CASES, VISION } from './vlm-fixtures.js';

const NUMPY = haveNumpy();
const ROOT = join(import.meta.dirname, '..');

function fixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-cbf16-${name}-`));
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const batchOf = (n: number, seed: number) => ({ text: Int32Array.from(randomIds(n, seed)), sequences: [[{ text: [0, n] as [number, number] }]] });

// As in pretrained-bf16.test.ts: 15 products in a chain, 2^-9 per rounded operand (the
// activation and, for float32/float16-stored weights, the weight).
const bound = (name: string) => (FIXTURES[name].dtype === 'BF16' ? 1 : 2) * 15 * 2 ** -9;

for (const name of ['llama-untied-f32', 'qwen2-untied-bf16-sharded']) {
  test(`${name}: bf16-compute logits match the float64 reference within bf16 rounding`, async (t) => {
    if (!NUMPY) return t.fail('/usr/bin/python3 with numpy is needed for the reference (apt-get install python3-numpy)');
    const dir = fixture(name);
    const m = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
    t.is(m.computeDtype, 'bfloat16');
    t.is(m.dtype, 'float32');
    const seqs = [randomIds(19, 3), randomIds(33, 5)];
    const ref = runReference({ dir, sequences: seqs, mode: 'logits' });
    if (!ref.ok) return t.fail(ref.why);
    const f32 = await vp.loadPretrained(dir);
    for (const [i, ids] of seqs.entries()) {
      const want = (ref.out.logits as number[][])[i];
      const err = relError((await m.logits(ids)).data as Float32Array, want);
      t.true(err <= bound(name), `sequence ${i}: relative error ${err}`);
      t.true(err > 1e-6, `sequence ${i}: error ${err} is float32-sized: the bf16 products did not run`);
      t.true(relError((await f32.logits(ids)).data as Float32Array, want) <= 1e-5, 'float32 compute is unchanged');
    }
    t.true(m.computeCopyBytes > 0, 'the copies are held');
    t.is(f32.computeCopyBytes, 0);
  });
}

test('a weight gradient under bf16 compute: op(a)·op(b) of bf16-rounded operands, every transpose, against float64', (t) => {
  let seed = 30;
  for (const [m, n, k] of [[1, 1, 1], [5, 7, 3], [40, 33, 129], [96, 70, 300]])
    for (const ta of [false, true])
      for (const tb of [false, true]) {
        const a = randomFloats(m * k, seed++), b = randomFloats(k * n, seed++);
        const ar = widenBf16(roundBf16(a)), br = widenBf16(roundBf16(b));
        const got = matmulViaBf16(vp.tensor(a, ta ? [k, m] : [m, k]), vp.tensor(b, tb ? [n, k] : [k, n]), { transA: ta, transB: tb });
        t.deepEqual(got.shape, [m, n]);
        const ref = new Float64Array(m * n);
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++) {
            let acc = 0;
            for (let p = 0; p < k; p++) acc += ar[ta ? p * m + i : i * k + p] * br[tb ? j * k + p : p * n + j];
            ref[i * n + j] = acc;
          }
        t.true(relError(got.data as Float32Array, ref) <= 1e-5, `${m}x${n}x${k} ta=${ta} tb=${tb}`);
      }
  t.throws(() => matmulViaBf16(vp.tensor(new Float32Array(6), [2, 3]), vp.tensor(new Float32Array(8), [2, 4])), { instanceOf: RangeError });
});

test('bf16 compute on bf16-stored weights gives the logits of dtype bfloat16 bit for bit (the same rounded products)', async (t) => {
  const dir = fixture('qwen2-untied-bf16-sharded');
  const a = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  const b = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
  const ids = randomIds(27, 8);
  t.true(same((await a.logits(ids)).data as Float32Array, (await b.logits(ids)).data as Float32Array));
  // Switching compute back to float32 gives float32 logits again.
  a.setComputeDtype('float32');
  t.is(a.computeCopyBytes, 0);
  const f = await vp.loadPretrained(dir);
  t.true(same((await a.logits(ids)).data as Float32Array, (await f.logits(ids)).data as Float32Array));
});

test('full fine-tuning under bf16 compute: loss down, float32 masters, and after each step no stale bf16 copy is used', async (t) => {
  const dir = fixture('llama-untied-f32');
  const m = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  const batch = batchOf(24, 9);
  const first = await m.trainStep(batch, { lr: 3e-3 });
  for (let i = 0; i < 4; i++) await m.trainStep(batch, { lr: 3e-3 });
  const after = (await m.forward(batch, { forBackward: false })).loss;
  t.true(after < first.loss, `loss ${first.loss} → ${after}`);
  t.is(m.parameterBytes, 4 * m.numParams, 'the weights are float32 masters');
  // A fresh bf16-compute model given the trained weights computes the same logits: the trained
  // model's copies were remade after its last step.
  const fresh = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  fresh.setParameters(m.parameters());
  const ids = randomIds(17, 2);
  t.true(same((await m.logits(ids)).data as Float32Array, (await fresh.logits(ids)).data as Float32Array));
  // The same after setParameters (weights written in place) and after copyStateFrom.
  const other = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  await other.logits(ids); // its copies of the original weights are made now
  other.setParameters(m.parameters());
  t.true(same((await other.logits(ids)).data as Float32Array, (await fresh.logits(ids)).data as Float32Array));
  const third = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  await third.logits(ids);
  await third.copyStateFrom(m);
  t.true(same((await third.logits(ids)).data as Float32Array, (await fresh.logits(ids)).data as Float32Array));
  // The frozen copy (RL's reference) computes as the model does.
  const ref = await m.clone();
  t.is(ref.computeDtype, 'bfloat16');
  t.true(same((await ref.logits(ids)).data as Float32Array, (await m.logits(ids)).data as Float32Array));
});

test('LoRA under bf16 compute: only adapters change; mergeLora leaves no stale copy', async (t) => {
  const dir = fixture('llama-untied-f32');
  const m = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  m.addLora({ rank: 2, targets: 'all-linear' });
  const before = m.parameters();
  const batch = batchOf(20, 4);
  for (let i = 0; i < 3; i++) await m.trainStep(batch, { lr: 1e-2 });
  const now = m.parameters();
  for (const n of Object.keys(before)) if (!/lora_/.test(n)) t.true(same(before[n], now[n]), `${n} unchanged`);
  m.mergeLora();
  const fresh = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  fresh.setParameters(m.parameters());
  const ids = randomIds(15, 6);
  t.true(same((await m.logits(ids)).data as Float32Array, (await fresh.logits(ids)).data as Float32Array));
});

test('the compute dtype travels with checkpoints and the Trainer: bit-exact resume, a float32 resume refused unless overridden', async (t) => {
  const dir = fixture('llama-untied-f32');
  const data = join(mkdtempSync(join(tmpdir(), 'vp-cbf16-data-')), 'data');
  vp.synthDataset(data, { count: 8, seed: 3, frames: 4, size: 16, fps: 4 });
  const ds = vp.openDataset(data);
  const run = mkdtempSync(join(tmpdir(), 'vp-cbf16-run-'));
  const opts: vp.SftOptions = { steps: 4, batchSize: 2, lr: 3e-3 };
  const a = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  const losses: number[] = [];
  const ta = new vp.Trainer(a, { seed: 4, runDir: run, checkpointEvery: 2, handleSigint: false, onStep: (e) => e.type === 'step' && losses.push(e.loss) });
  await ta.sft(ds, opts);
  t.is(JSON.parse(readFileSync(join(run, 'training_args.json'), 'utf8')).sft.computeDtype, 'bfloat16');
  const ck = join(run, 'checkpoints', 'sft-000002');
  const loaded = await vp.PretrainedModel.loadCheckpoint(ck);
  t.is(loaded.computeDtype, 'bfloat16');
  t.is((await vp.PretrainedModel.loadCheckpoint(ck, { computeDtype: 'float32' })).computeDtype, 'float32');

  const b = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
  const resumed: number[] = [];
  const tb = new vp.Trainer(b, { seed: 4, handleSigint: false, onStep: (e) => e.type === 'step' && resumed.push(e.loss) });
  await tb.resume(ck);
  await tb.sft(ds, opts);
  t.deepEqual(resumed, losses.slice(2));
  const pa = a.parameters(), pb = b.parameters();
  for (const n of Object.keys(pa)) t.true(same(pa[n], pb[n]), `${n} differs after resuming`);

  const c = await vp.loadPretrained(dir);
  const tc = new vp.Trainer(c, { seed: 4, handleSigint: false });
  await tc.resume(ck);
  await t.throwsAsync(() => tc.sft(ds, opts), { instanceOf: RangeError, message: /computeDtype "bfloat16" → unset/ });
  const d = await vp.loadPretrained(dir);
  const td = new vp.Trainer(d, { seed: 4, handleSigint: false });
  await td.resume(ck, { override: true });
  t.is((await td.sft(ds, opts)).steps, 4);
});

test('bad compute dtypes are refused, naming the argument', async (t) => {
  const dir = fixture('qwen2-tied-f16');
  await t.throwsAsync(() => vp.loadPretrained(dir, { computeDtype: 'float16' as 'bfloat16' }), { instanceOf: TypeError, message: /loadPretrained: opts\.computeDtype must be 'float32' or 'bfloat16', got "float16"/ });
  const m = await vp.loadPretrained(dir);
  t.throws(() => m.setComputeDtype('bf16' as 'bfloat16'), { instanceOf: TypeError, message: /setComputeDtype: dtype must be 'float32' or 'bfloat16'/ });
  t.is(m.computeDtype, 'float32');
  await t.throwsAsync(() => vp.PretrainedModel.loadCheckpoint(dir, { computeDtype: 1 as unknown as 'bfloat16' }), { instanceOf: TypeError, message: /opts\.computeDtype/ });
});

test('CLI: train --compute-dtype bfloat16 records it; --resume goes on in it; a float32 resume is refused unless --override', (t) => {
  const dir = fixture('qwen2-tied-f16');
  const data = join(mkdtempSync(join(tmpdir(), 'vp-cbf16-cli-data-')), 'data');
  vp.synthDataset(data, { count: 8, seed: 3, frames: 4, size: 16, fps: 4 });
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), ...args], { cwd: ROOT, encoding: 'utf8' });
  const train = (out: string, ...more: string[]) =>
    cli('train', '--data', data, '--out', out, '--model', dir, '--stage', 'sft', '--batch-size', '2', '--steps', '2', '--checkpoint-every', '1', '--json', ...more);
  const out = mkdtempSync(join(tmpdir(), 'vp-cbf16-cli-'));
  const r = train(out, '--compute-dtype', 'bfloat16');
  t.is(r.status, 0, r.stderr);
  t.is(JSON.parse(readFileSync(join(out, 'training_args.json'), 'utf8')).sft.computeDtype, 'bfloat16');
  // Two copies of the run as if it had stopped after its first checkpoint.
  const stopped = () => {
    const d = mkdtempSync(join(tmpdir(), 'vp-cbf16-cli-stopped-'));
    cpSync(join(out, 'checkpoints', 'sft-000001'), join(d, 'checkpoints', 'sft-000001'), { recursive: true });
    writeFileSync(join(d, 'checkpoints', 'latest.json'), JSON.stringify({ checkpoint: 'sft-000001' }));
    cpSync(join(out, 'training_args.json'), join(d, 'training_args.json'));
    return d;
  };
  const a = stopped();
  const refused = train(a, '--resume', '--compute-dtype', 'float32');
  t.not(refused.status, 0);
  t.regex(refused.stderr, /computeDtype "bfloat16" → unset.*--override/);
  const resumed = train(a, '--resume');
  t.is(resumed.status, 0, resumed.stderr);
  t.regex(resumed.stderr, /sft step 1.*bf16 compute/);
  const overridden = train(stopped(), '--resume', '--compute-dtype', 'float32', '--override');
  t.is(overridden.status, 0, overridden.stderr);
  const bad = train(mkdtempSync(join(tmpdir(), 'vp-cbf16-cli-bad-')), '--compute-dtype', 'float16');
  t.not(bad.status, 0);
  t.regex(bad.stderr, /--compute-dtype/);
});

// Vision-language models: the tower's and the connector's linear layers multiply through bf16
// copies too (the patch convolution and the position table stay float32). The bound is the
// dtype-bfloat16 VLM test's: about 30 rounded products chain from the pixels to a logit.
for (const [name, o, perImage] of BF16_VLM_CASES) {
  test(`${name}: bf16 compute covers the tower and the connector; with the tower trained, no stale copy after a step`, async (t) => {
    const { dir, f, m: c, err, px, ids, batch } = await againstFloat32('vp-cbf16-vlm-', o, perImage, { computeDtype: 'bfloat16' });
    t.true(err <= 2 * 30 * 2 ** -9 && err > 1e-6, `relative error ${err}`);
    // Every linear weight matrix that ran (text, head, tower, connector) has its copy, and nothing
    // else. LLaVA's tower runs up to its feature layer (hidden state l: layers 0..l-1).
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const fl = cfg.vision_feature_layer as number | undefined;
    const towerLayers = fl === undefined ? VISION.layers : fl < 0 ? VISION.layers + 1 + fl : fl;
    const p = f.parameters();
    const linear = /(\.(q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1|fc2|proj|linear_1|linear_2)|lm_head)\.weight$/;
    let want16 = 0;
    for (const [n, v] of Object.entries(p)) {
      const layer = /vision_model\.encoder\.layers\.(\d+)\./.exec(n);
      if (layer && Number(layer[1]) >= towerLayers) continue;
      if (linear.test(n) || (c.spec.tied && /embed_tokens\.weight$/.test(n))) want16 += 2 * v.length;
    }
    t.is(c.computeCopyBytes, want16);
    // The tower trains too: after the steps, a fresh model given the weights computes the same logits.
    c.setVisionTrainable(true);
    const first = await c.trainStep(batch, { lr: 1e-2, weightDecay: 0 });
    for (let s = 0; s < 3; s++) await c.trainStep(batch, { lr: 1e-2, weightDecay: 0 });
    const after = (await c.forward(batch, { forBackward: false })).loss;
    t.true(after < first.loss, `loss ${first.loss} → ${after}`);
    const fresh = await vp.loadPretrained(dir, { computeDtype: 'bfloat16' });
    fresh.setParameters(c.parameters());
    t.true(same((await c.logits(ids, { pixelValues: px })).data as Float32Array, (await fresh.logits(ids, { pixelValues: px })).data as Float32Array));
  });
}
