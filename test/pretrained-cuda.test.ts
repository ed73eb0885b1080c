// Pretrained models on CUDA (loadPretrained(dir, { device: 'cuda' })): without a
// usable GPU, loading on CUDA is a clear Error naming opts.device and the reason
// (this runs everywhere); with one, a CUDA model of each tiny family matches the
// same model on the CPU — logits (float32 weights, and bfloat16 against the CPU's
// bfloat16 path), a LoRA training step (loss, gradients, adapters after AdamW),
// a full fine-tuning step of a vision-language model with its tower trained,
// greedy generation, and save() read back on the CPU (test/pretrained-cuda-cases.ts;
// test/pretrained-cuda-emulated.test.ts runs the same cases without a GPU).
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { registerCudaCases } from './pretrained-cuda-cases.js';
import { writeTinyModel, type TinyOptions } from './pretrained-fixtures.js';

const cuda = vp.backendInfo().cuda;
const work = mkdtempSync(join(tmpdir(), 'vp-pretrained-cuda-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

let count = 0;
function textFolder(o: TinyOptions): string {
  const dir = join(work, `t${count++}`);
  writeTinyModel(dir, o);
  return dir;
}

test('device cuda without a usable GPU is a clear Error naming opts.device; an unknown device a TypeError', async (t) => {
  const dir = textFolder({ arch: 'LlamaForCausalLM', tied: true, dtype: 'F32', tokenizer: 'none', template: 'none' });
  await t.throwsAsync(() => vp.loadPretrained(dir, { device: 'gpu' as 'cuda' }), { instanceOf: TypeError, message: /loadPretrained: opts\.device/ });
  if (cuda) {
    t.log(`a GPU is present (${cuda.device}): the unavailable path is not exercised`);
    return;
  }
  const e = await t.throwsAsync(() => vp.loadPretrained(dir, { device: 'cuda' }), { instanceOf: Error });
  t.regex(e!.message, /loadPretrained: opts\.device 'cuda': no usable GPU/);
  t.true(e!.message.includes(vp.backendInfo().cudaReason));
});

// The model-level cases on the GPU; skipped cleanly (logged) without one.
registerCudaCases('', (t) => {
  if (cuda) return false;
  t.log(`skipped: no usable GPU (${vp.backendInfo().cudaReason})`);
  t.pass();
  return true;
});
