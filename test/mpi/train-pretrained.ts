// One rank (or the one process) of test/distributed.test.ts (its Hugging Face cases):
//   node --import=tsx test/mpi/train-pretrained.ts <mode> <model dir> <data dir> <out> [steps] [batchSize]
// modes:
//   'text': a Hugging Face text model (a) fully fine-tuned, one gradient of a
//           fixed global batch of `batchSize` clips, each rank forwarding its
//           piece and the ranks' gradients summed by model.allReduceGradients();
//           (b) with LoRA: `steps` SFT steps then 2 RL steps through vp.Trainer;
//           On rank 1 a frozen base weight is changed first: the stage start
//           must give it rank 0's.
//   'vlm':  a vision-language model with LoRA: `steps` SFT steps (KIM variants
//           and the contrastive term) then one RL step with a KL reference;
//   'cuda': LoRA on an emulated CUDA device (test/cuda-emulation.ts), the frozen
//           base held in bfloat16 and changed on rank 1: `steps` SFT steps, one RL step;
//   'mismatch': rank 1's LoRA rank differs; the SFT call's error is recorded.
// Each rank writes <out>.<rank>.json (its launch, the metric events, a SHA-256
// and a weighted sum of its parameters, the adapters' and the base's) and, in
// 'text' mode, <out>.<rank>.grad: the summed gradient as raw float32.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as vp from '../../lib/index.js';
import { allReduceSum } from '../../lib/distributed.js';
import { emulateCuda } from '../cuda-emulation.js';

const [mode, modelDir, dataDir, out, stepsArg = '10', batchArg = '4'] = process.argv.slice(2);
const steps = Number(stepsArg);
const batchSize = Number(batchArg);
const info = vp.distributedInfo();
const ds = vp.openDataset(dataDir);

/** Parameters in name order: their SHA-256 (identical across ranks) and a weighted sum (against one process). */
function digest(m: vp.PretrainedModel): { sha256: string; checksum: number; adapterChecksum: number } {
  const p = m.parameters();
  const h = createHash('sha256');
  let checksum = 0;
  let adapterChecksum = 0;
  for (const name of Object.keys(p).sort()) {
    const v = p[name];
    h.update(name).update(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * ((i % 7) + 1);
    checksum += s;
    if (name.includes('lora_')) adapterChecksum += s;
  }
  return { sha256: h.digest('hex'), checksum, adapterChecksum };
}

const events: vp.MetricEvent[] = [];
const onStep = (e: vp.MetricEvent) => {
  events.push(e);
};
const result: Record<string, unknown> = { info };

if (mode === 'text') {
  // (a) Full fine-tuning: the gradient of one global batch, summed over the ranks.
  const full = await vp.loadPretrained(modelDir);
  const tr0 = new vp.Trainer(full, { seed: 3 });
  const all = Array.from({ length: batchSize }, (_, i) => tr0.clip(ds, i));
  const piece = all.slice(Math.floor((info.rank * batchSize) / info.worldSize), Math.floor(((info.rank + 1) * batchSize) / info.worldSize));
  const b = tr0.sftBatch(piece, { questions: false });
  const fw = await full.forward(b.batch);
  const [total, lossSum] = await allReduceSum(Float64Array.of(fw.count, fw.loss * fw.count));
  await full.backward({ gradLoss: fw.count / total });
  await full.allReduceGradients();
  const g = full.gradients();
  const names = Object.keys(g).sort();
  const flat = new Float32Array(names.reduce((a, n) => a + g[n].length, 0));
  let o = 0;
  for (const n of names) {
    flat.set(g[n], o);
    o += g[n].length;
  }
  writeFileSync(`${out}.${info.rank}.grad`, flat);
  result.gradLoss = lossSum / total;
  result.trainable = full.numTrainable;
  full.dispose();
  // (b) LoRA through the Trainer: SFT, then RL.
  const m = await vp.loadPretrained(modelDir);
  m.addLora({ rank: 4, alpha: 8, targets: 'all-linear' });
  // Rank 1's frozen base starts apart: the stage start must give it rank 0's (else its losses differ).
  if (info.rank === 1) m.setParameters({ 'model.layers.0.mlp.up_proj.weight': new Float32Array(48 * 32).fill(0.5) });
  const tr = new vp.Trainer(m, { seed: 3, onStep });
  result.sft = await tr.sft(ds, { steps, batchSize, lr: 1e-2, questions: false });
  result.afterSft = digest(m);
  result.rl = await tr.rl(ds, { steps: 2, promptsPerStep: 2, groupSize: 4, maxTokens: 6, lr: 1e-2, reward: (x) => (x.response.length % 3) / 2 });
  result.params = digest(m);
  result.trainableLora = m.numTrainable;
} else if (mode === 'vlm') {
  const m = await vp.loadPretrained(modelDir);
  m.addLora({ rank: 2 });
  const tr = new vp.Trainer(m, { seed: 5, onStep });
  result.sft = await tr.sft(ds, { steps, batchSize, questions: 'one', lr: 1e-2 });
  result.rl = await tr.rl(ds, { steps: 1, promptsPerStep: 2, groupSize: 2, maxTokens: 3, beta: 0.05, lr: 1e-2, reward: (x) => (x.response.length % 3) / 2 });
  result.params = digest(m);
} else if (mode === 'cuda') {
  // The CUDA branches (parameters, gradients and AdamW state as device tensors; the frozen base
  // held in bfloat16) on the host emulation of the addon's CUDA entry points.
  emulateCuda();
  const m = await vp.loadPretrained(modelDir, { device: 'cuda', dtype: 'bfloat16' });
  m.addLora({ rank: 4, alpha: 8, targets: 'all-linear' });
  if (info.rank === 1) m.setParameters({ 'model.layers.0.mlp.up_proj.weight': new Float32Array(48 * 32).fill(0.5) });
  const tr = new vp.Trainer(m, { seed: 3, onStep });
  result.sft = await tr.sft(ds, { steps, batchSize, lr: 1e-2, questions: false });
  result.rl = await tr.rl(ds, { steps: 1, promptsPerStep: 2, groupSize: 4, maxTokens: 6, lr: 1e-2, reward: (x) => (x.response.length % 3) / 2 });
  result.params = digest(m);
} else if (mode === 'mismatch') {
  // Rank 1's adapters have another rank: refused on every rank at the stage start (no hang).
  const m = await vp.loadPretrained(modelDir);
  m.addLora({ rank: info.rank === 1 ? 2 : 4 });
  const tr = new vp.Trainer(m, { seed: 3, onStep });
  try {
    await tr.sft(ds, { steps, batchSize });
    result.error = null;
  } catch (e) {
    result.error = (e as Error).message;
  }
} else throw new Error(`unknown mode ${mode}`);

writeFileSync(`${out}.${info.rank}.json`, JSON.stringify({ ...result, events }));
