// Resuming runs of pretrained models loaded with dtype 'bfloat16' (and full
// fine-tuning of bf16/f16-stored folders): the dtype is recorded in the run's
// training_args.json; trainer.resume() refuses a model loaded in another dtype
// unless { override: true } (and records the change); a resumed bf16 LoRA run
// (SFT, then RL with its frozen reference) continues with the losses, gradient
// norms and KL of the uninterrupted run bit for bit and ends with the same
// parameters; full fine-tuning (float32 masters over a bf16 base, a bf16-stored
// folder in float32, a VLM whose vision tower trains) resumes exactly; and the
// CLI's --dtype flag: validated, refused for the built-in VideoLM, read back from
// the run on --resume (a conflicting --dtype refused before anything runs).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { FIXTURES, writeTinyModel } from './pretrained-fixtures.js';
import { writeTinyVlm } from './vlm-fixtures.js';

const ROOT = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'vp-bf16res-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

const textData = join(work, 'text-data');
vp.synthDataset(textData, { count: 8, seed: 3, frames: 4, size: 16, fps: 4 });
const videoData = join(work, 'video-data');
vp.synthDataset(videoData, { count: 4, seed: 3, frames: 8, fps: 4 });

function hf(name: string): string {
  const dir = join(work, name);
  if (!existsSync(dir)) writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
function sameParameters(a: vp.PretrainedModel, b: vp.PretrainedModel): string[] {
  const pa = a.parameters(), pb = b.parameters();
  return Object.keys(pa).filter((k) => !pb[k] || !bytes(pa[k]).equals(bytes(pb[k])));
}

type Step = vp.SftStepEvent | vp.RlStepEvent;
interface Plan { sft: vp.SftOptions; rl?: vp.RlOptions }

/** Resumes from each checkpoint into a fresh model and checks every later step and the final parameters against the uninterrupted run. */
async function checkResumes(t: import('ava').ExecutionContext, make: () => Promise<vp.PretrainedModel>, plan: Plan, from: string[], data = textData): Promise<void> {
  const run = mkdtempSync(join(work, 'run-'));
  const a = await make();
  const full = await runOn(a, plan, data, { runDir: run });
  for (const ck of from) {
    const b = await make();
    const log = await runOn(b, plan, data, { from: join(run, 'checkpoints', ck) });
    t.true(log.length > 0, ck);
    for (const e of log) {
      const r = full.find((x) => x.stage === e.stage && x.step === e.step)!;
      t.is(e.loss, r.loss, `${ck}: ${e.stage} step ${e.step} loss`);
      t.is(e.gradNorm, r.gradNorm, `${ck}: ${e.stage} step ${e.step} grad norm`);
      if (e.stage === 'rl') t.is((e as vp.RlStepEvent).kl, (r as vp.RlStepEvent).kl, `${ck}: rl step ${e.step} KL to the reference`);
      if (e.stage === 'sft') t.is((e as vp.SftStepEvent).nce, (r as vp.SftStepEvent).nce, `${ck}: sft step ${e.step} nce`);
    }
    t.deepEqual(sameParameters(a, b), [], `${ck}: parameters that differ at the end`);
    t.is(b.step, a.step);
    t.is(b.dtype, a.dtype);
    t.is(b.parameterBytes, a.parameterBytes, `${ck}: the same tensors held in bfloat16`);
    b.dispose();
  }
  a.dispose();
}

async function runOn(m: vp.PretrainedModel, plan: Plan, data: string, o: { runDir?: string; from?: string }): Promise<Step[]> {
  const log: Step[] = [];
  const tr = new vp.Trainer(m, { seed: 5, runDir: o.runDir, checkpointEvery: o.runDir ? 1 : 0, handleSigint: false, onStep: (e) => e.type === 'step' && log.push(e) });
  if (o.from) await tr.resume(o.from);
  const ds = vp.openDataset(data);
  await tr.sft(ds, plan.sft);
  if (plan.rl) await tr.rl(ds, plan.rl);
  tr.dispose();
  return log;
}

const LORA_PLAN: Plan = {
  sft: { steps: 3, batchSize: 2, lr: 1e-2 },
  rl: { steps: 2, promptsPerStep: 2, groupSize: 2, maxTokens: 3, beta: 0.05, lr: 1e-2, reward: (x) => (x.response.length % 3) / 2 },
};

test('a bf16 LoRA run (SFT, then RL with its reference) resumed from SFT and RL checkpoints: the same losses, gradient norms, KL and parameters', async (t) => {
  const make = async () => {
    const m = await vp.loadPretrained(hf('llama-untied-f32'), { dtype: 'bfloat16' });
    m.addLora({ rank: 2 });
    return m;
  };
  await checkResumes(t, make, LORA_PLAN, ['sft-000002', 'rl-000001']);
});

test('the dtype is recorded in training_args.json; resuming into a model of another dtype is refused unless override, which records it', async (t) => {
  const dir = hf('llama-tied-bf16-sharded-llama3');
  const run = join(work, 'run-dtype');
  const plan: Plan = { sft: { steps: 2, batchSize: 2, lr: 1e-2 } };
  const a = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
  a.addLora({ rank: 2 });
  await runOn(a, plan, textData, { runDir: run });
  for (const f of [join(run, 'training_args.json'), join(run, 'checkpoints', 'sft-000001', 'training_args.json')])
    t.is(JSON.parse(readFileSync(f, 'utf8')).dtype, 'bfloat16', f);
  const meta = JSON.parse(readFileSync(join(run, 'checkpoints', 'sft-000001', 'optimizer.safetensors')).subarray(8, 8 + Number(readFileSync(join(run, 'checkpoints', 'sft-000001', 'optimizer.safetensors')).readBigUInt64LE(0))).toString()).__metadata__;
  t.is(meta.dtype, 'bfloat16');
  // A model loaded in float32 (the default) does not continue that run...
  const b = await vp.loadPretrained(dir);
  b.addLora({ rank: 2 });
  const before = b.parameters();
  const tr = new vp.Trainer(b, { seed: 5, handleSigint: false });
  await t.throwsAsync(() => tr.resume(join(run, 'checkpoints', 'sft-000001')), {
    instanceOf: RangeError, message: /Trainer\.resume: the run being resumed was trained with dtype 'bfloat16'.*loaded with dtype 'float32'.*\{ dtype: 'bfloat16' \}.*--override/s,
  });
  t.deepEqual(sameParameters(b, { parameters: () => before } as vp.PretrainedModel), [], 'nothing was restored');
  t.is(b.step, 0);
  // ...unless told to: it goes on in float32 and says so in training_args.json.
  const run2 = join(work, 'run-dtype-override');
  const tr2 = new vp.Trainer(b, { seed: 5, runDir: run2, handleSigint: false });
  await tr2.resume(join(run, 'checkpoints', 'sft-000001'), { override: true });
  t.is(b.step, 1);
  t.is((await tr2.sft(vp.openDataset(textData), plan.sft)).status, 'done');
  const args = JSON.parse(readFileSync(join(run2, 'training_args.json'), 'utf8'));
  t.is(args.dtype, 'float32');
  t.deepEqual(args.overrides, [{ stage: 'sft', step: 1, key: 'dtype', from: 'bfloat16', to: 'float32' }]);
  // PretrainedModel.loadCheckpoint reads the saved dtype back (or the one asked for).
  const c = await vp.PretrainedModel.loadCheckpoint(join(run, 'checkpoints', 'sft-000001'));
  t.is(c.dtype, 'bfloat16');
  t.is((await vp.PretrainedModel.loadCheckpoint(join(run, 'checkpoints', 'sft-000001'), { dtype: 'float32' })).dtype, 'float32');
  await t.throwsAsync(() => vp.PretrainedModel.loadCheckpoint(join(run, 'checkpoints', 'sft-000001'), { dtyp: 'float32' } as never), { instanceOf: TypeError, message: /opts\.dtyp is not an option/ });
  a.dispose();
  b.dispose();
  c.dispose();
});

test('full fine-tuning resumed exactly: float32 masters over a bf16 base, and a bf16-stored folder trained in float32', async (t) => {
  for (const dtype of ['bfloat16', 'float32'] as const) {
    const make = () => vp.loadPretrained(hf('qwen2-untied-bf16-sharded'), { dtype });
    await checkResumes(t, make, { sft: { steps: 3, batchSize: 2, lr: 1e-2 } }, ['sft-000001']);
  }
});

test('a bf16 VLM whose vision tower trains (setVisionTrainable(true)) resumes exactly, with the contrastive term', async (t) => {
  const dir = join(work, 'smol');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 71 });
  const make = async () => {
    const m = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
    m.setVisionTrainable(true);
    return m;
  };
  await checkResumes(t, make, { sft: { steps: 2, batchSize: 2, questions: 'one', lr: 1e-2 } }, ['sft-000001'], videoData);
});

const cli = (...args: string[]) => spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
const steps = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((e) => e.type === 'step');

test('CLI --dtype: validated, refused for a VideoLM, recorded by train, read back on --resume (which continues bit for bit), a conflicting one refused', async (t) => {
  const model = hf('llama-tied-bf16-sharded-llama3');
  const train = (out: string, ...more: string[]) =>
    cli('train', '--data', textData, '--out', out, '--model', model, '--lora-rank', '2', '--stage', 'sft', '--steps', '3', '--batch-size', '2', '--checkpoint-every', '1', '--json', ...more);
  const bad = cli('train', '--data', textData, '--out', join(work, 'cli-bad'), '--dtype', 'float16');
  t.is(bad.status, 2);
  t.regex(bad.stderr, /--dtype.*float32, bfloat16, auto/);
  const videolm = cli('train', '--data', textData, '--out', join(work, 'cli-videolm'), '--dtype', 'bfloat16', '--steps', '1');
  t.is(videolm.status, 2);
  t.regex(videolm.stderr, /--dtype applies to a Hugging Face model folder \(--model DIR\); the built-in VideoLM keeps float32 weights/);
  t.false(existsSync(join(work, 'cli-videolm', 'checkpoints')));
  const saved = join(work, 'videolm');
  const v = await vp.VideoLM.create({ imageSize: 8, patchSize: 4, frames: 2, width: 32, layers: 1, heads: 4, kvHeads: 2, ffn: 64, maxSeq: 32, tokenizer: vp.Tokenizer.train(['a red ball falls'], { vocabSize: 30 }), seed: 3 });
  await v.save(saved);
  v.dispose();
  const ev = cli('eval', '--model', saved, '--data', textData, '--dtype', 'bfloat16');
  t.is(ev.status, 2);
  t.regex(ev.stderr, /--dtype: applies to a Hugging Face model folder; .*videolm is a saved VideoLM, whose weights are float32/);

  const full = join(work, 'cli-full');
  const u = train(full, '--dtype', 'bfloat16');
  t.is(u.status, 0, u.stderr);
  t.is(JSON.parse(readFileSync(join(full, 'training_args.json'), 'utf8')).dtype, 'bfloat16');
  const uSteps = steps(u.stdout);
  t.is(uSteps.length, 3);

  // The run interrupted after step 1: its first checkpoint alone in a run folder.
  const part = join(work, 'cli-part');
  mkdirSync(join(part, 'checkpoints'), { recursive: true });
  cpSync(join(full, 'checkpoints', 'sft-000001'), join(part, 'checkpoints', 'sft-000001'), { recursive: true });
  writeFileSync(join(part, 'checkpoints', 'latest.json'), JSON.stringify({ checkpoint: 'sft-000001', stage: 'sft', step: 1, finished: false }) + '\n');
  const conflict = train(part, '--resume', '--dtype', 'float32');
  t.is(conflict.status, 2);
  t.regex(conflict.stderr, /train: --dtype float32: the run being resumed was trained with --dtype bfloat16 .*training_args\.json.*--override/);
  t.deepEqual(readdirSync(join(part, 'checkpoints')).sort(), ['latest.json', 'sft-000001'], 'nothing written');

  const r = train(part, '--resume');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /resumed .*sft-000001 \(sft step 1, dtype bfloat16\)/);
  const rSteps = steps(r.stdout);
  t.deepEqual(rSteps.map((e) => e.step), [2, 3]);
  for (const e of rSteps) {
    const x = uSteps.find((y) => y.step === e.step);
    t.is(e.loss, x.loss, `step ${e.step} loss`);
    t.is(e.gradNorm, x.gradNorm, `step ${e.step} grad norm`);
  }
  for (const sub of ['model', 'adapter']) {
    for (const f of readdirSync(join(full, sub))) t.true(readFileSync(join(part, sub, f)).equals(readFileSync(join(full, sub, f))), `${sub}/${f} differs`);
  }
  // eval and generate load a Hugging Face folder in bfloat16 too.
  const g = cli('generate', '--model', join(full, 'model'), '--dtype', 'bfloat16', '--prompt', 'hello', '--max-tokens', '2', '--json');
  t.is(g.status, 0, g.stderr);
  t.is(typeof JSON.parse(g.stdout).text, 'string');
});
