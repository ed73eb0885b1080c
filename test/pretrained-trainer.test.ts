// vp.Trainer and the CLI with a Hugging Face text model (the text side of the
// method: prompt + response without video): SFT with LoRA lowers the loss and
// leaves the base untouched, KIM/contrastive are refused for a text-only
// model, RL runs rollouts, rewards and GRPO updates through the model's own
// tokenizer, chat template and end-of-sequence ids, checkpoints resume to the
// same parameters and optimizer state, the evaluators run, and
// `videoperceiver train --model HF_DIR --lora-rank R` writes the model and the
// adapter in their layouts.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { FIXTURES, writeTinyModel } from './pretrained-fixtures.js';

const ROOT = join(import.meta.dirname, '..');

function tmp(tag: string): string {
  return mkdtempSync(join(tmpdir(), `vp-ptr-${tag}-`));
}

let data: string | undefined;
function dataset(): vp.Dataset {
  if (!data) {
    data = join(tmp('data'), 'data');
    vp.synthDataset(data, { count: 8, seed: 3, frames: 4, size: 16, fps: 4 });
  }
  return vp.openDataset(data);
}

function hfModel(name = 'qwen2-tied-f16'): string {
  const dir = tmp(name);
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

test('SFT of a Hugging Face model with LoRA: text-only batches through the chat template, loss down, base unchanged', async (t) => {
  const m = await vp.loadPretrained(hfModel());
  m.addLora({ rank: 4, alpha: 8, targets: 'all-linear' });
  const before = m.parameters();
  const events: vp.SftStepEvent[] = [];
  const tr = new vp.Trainer(m, { seed: 1, onStep: (e) => e.type === 'step' && e.stage === 'sft' && events.push(e) });
  const ds = dataset();
  // The batch: one sequence per task, <|im_start|>user ... <|im_end|> <|im_start|>assistant response <|im_end|>.
  const b = tr.sftBatch([tr.clip(ds, 0)], { questions: false });
  t.is(b.kimSequences, 0);
  t.deepEqual(b.groups, []);
  t.is(b.batch.videos, undefined);
  const text = Array.from(b.batch.text);
  t.is(text[0], 265); // <|im_start|>
  t.is(text[text.length - 1], 266); // the response ends with <|im_end|>, the tokenizer's eos_token
  const targets = Array.from(b.batch.targets!);
  const firstTarget = targets.findIndex((x) => x >= 0);
  t.is(m.tokenizer.decode(text.slice(firstTarget + 1, -1)), ds.annotations[0].caption);
  const r = await tr.sft(ds, { steps: 30, batchSize: 4, lr: 1e-2, questions: false });
  t.is(r.status, 'done');
  const first = mean(events.slice(0, 3).map((e) => e.lm)), last = mean(events.slice(-3).map((e) => e.lm));
  t.log(`lm ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  t.true(last < 0.7 * first, `${first} -> ${last}`);
  t.true(events.every((e) => e.contrastSamples === 0 && e.kimSequences === 0 && e.nce === 0));
  for (const [n, v] of Object.entries(m.parameters())) if (!n.includes('lora_')) t.true(same(v, before[n]), `${n} changed`);
  await t.throwsAsync(() => tr.sft(ds, { steps: 1, kim: true }), { instanceOf: RangeError, message: /opts\.kim must be false for a text-only model/ });
  await t.throwsAsync(() => tr.sft(ds, { steps: 1, kim: false, contrastive: true }), { instanceOf: RangeError, message: /opts\.contrastive/ });
  const ev = await tr.evaluate(ds, { maxTokens: 4 });
  t.true(ev.summary.questions > 0 && ev.summary.accuracy >= 0 && ev.summary.accuracy <= 1);
  t.is(ev.captions.length, ds.length);
});

test('RL on a Hugging Face model: rollouts from text prompts, rewards, GRPO updates of the adapters only', async (t) => {
  const m = await vp.loadPretrained(hfModel('llama-untied-f32'));
  m.addLora({ rank: 2 });
  const before = m.parameters();
  const seen: string[] = [];
  const events: vp.RlStepEvent[] = [];
  const tr = new vp.Trainer(m, { seed: 2, onStep: (e) => e.type === 'step' && e.stage === 'rl' && events.push(e) });
  const r = await tr.rl(dataset(), {
    steps: 3, promptsPerStep: 2, groupSize: 3, maxTokens: 5, beta: 0.05, lr: 1e-2,
    reward: (x) => {
      seen.push(x.response);
      t.false(x.degraded, 'a text-only model has no degraded (KIM) rollouts');
      return x.response.length / 10;
    },
  });
  t.is(r.status, 'done');
  t.is(events.length, 3);
  t.is(seen.length, 3 * 2 * 3);
  t.true(events.every((e) => Number.isFinite(e.loss) && Number.isFinite(e.kl) && e.responseLength > 0));
  let changed = 0;
  for (const [n, v] of Object.entries(m.parameters())) {
    if (n.includes('lora_')) changed += same(v, before[n]) ? 0 : 1;
    else t.true(same(v, before[n]), `${n} changed`);
  }
  t.true(changed > 0);
});

test('checkpoints of a Hugging Face model resume to the same adapters, optimizer state and trajectory', async (t) => {
  const dir = hfModel('llama-tied-bf16-sharded-llama3');
  const run = tmp('run');
  const ds = dataset();
  const a = await vp.loadPretrained(dir);
  a.addLora({ rank: 2 });
  const ta = new vp.Trainer(a, { seed: 4, runDir: run, checkpointEvery: 2, handleSigint: false });
  await ta.sft(ds, { steps: 4, batchSize: 2, lr: 1e-2 });
  const ck = join(run, 'checkpoints', 'sft-000004');
  t.true(existsSync(join(ck, 'adapter', 'adapter_config.json')));
  t.true(existsSync(join(ck, 'optimizer.safetensors')));
  t.true(existsSync(join(ck, 'model.safetensors.index.json')), 'the base in its sharded Hugging Face layout');
  // Resume from step 2 into a fresh model: steps 3-4 reproduce the first run exactly.
  const b = await vp.loadPretrained(dir);
  b.addLora({ rank: 2, seed: 99 });
  const tb = new vp.Trainer(b, { seed: 4, handleSigint: false });
  const resumed = await tb.resume(join(run, 'checkpoints', 'sft-000002'));
  t.is(resumed.step, 2);
  t.is(b.step, 2);
  await tb.sft(ds, { steps: 4, batchSize: 2, lr: 1e-2 });
  const pa = a.parameters(), pb = b.parameters();
  for (const n of Object.keys(pa)) t.true(same(pa[n], pb[n]), `${n} differs after resuming`);
  t.is(b.optimizerStateSize, a.optimizerStateSize);
});

test('CLI: train --model HF_DIR --lora-rank writes the merged model and the PEFT adapter; generate takes a text prompt', (t) => {
  const dir = hfModel();
  const out = tmp('cli');
  dataset();
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), ...args], { cwd: ROOT, encoding: 'utf8' });
  const r = cli('train', '--data', data!, '--out', out, '--model', dir, '--lora-rank', '4', '--lora-targets', 'q_proj,v_proj', '--stage', 'both', '--steps', '2', '--rl-steps', '1', '--batch-size', '2', '--json');
  t.is(r.status, 0, r.stderr);
  t.true(existsSync(join(out, 'model', 'model.safetensors')));
  t.true(existsSync(join(out, 'model', 'tokenizer.json')));
  const cfg = JSON.parse(readFileSync(join(out, 'adapter', 'adapter_config.json'), 'utf8'));
  t.is(cfg.r, 4);
  t.deepEqual(cfg.target_modules, ['q_proj', 'v_proj']);
  const g = cli('generate', '--model', join(out, 'model'), '--prompt', 'hello world', '--max-tokens', '3', '--json');
  t.is(g.status, 0, g.stderr);
  t.is(typeof JSON.parse(g.stdout).text, 'string');
  const bad = cli('train', '--data', data!, '--out', tmp('cli-bad'), '--lora-rank', '4');
  t.is(bad.status, 2, 'a usage error');
  t.regex(bad.stderr, /--lora-rank needs --model DIR/);
});
