// Child of test/output-pool.test.ts: trains a small Llama folder (argv[2]) three
// steps in each of three ways (full float32, LoRA, full with bf16 compute), a tiny
// SmolVLM folder (argv[3]) with its vision tower trained and frozen, and a tiny
// LLaVA folder (argv[4]) with its tower frozen, and prints the
// losses, an FNV-1a hash of every parameter's bytes and the logits after, and the
// most bytes the output pool held after a backward pass, as one JSON line. The
// test runs it with the pool off (VP_OUTPUT_POOL=off) and on with poisoned
// recycling (VP_POOL_POISON=1) and compares.
import * as vp from '../lib/index.js';
import { pooledBytes } from '../lib/output-pool.js';
import { twoImageInput } from './vlm-fixtures.js';

const fnv = (bytes: Uint8Array, h: number) => {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 16777619) >>> 0;
  return h;
};
const hashModel = (m: vp.PretrainedModel, logits: vp.Tensor) => {
  let h = 2166136261;
  for (const [, t] of Object.entries(m.parameters()).sort(([a], [b]) => (a < b ? -1 : 1))) h = fnv(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), h);
  return fnv(new Uint8Array((logits.data as Float32Array).buffer), h);
};
let pooledAfterBackward = 0;
/** Three forward + backward + AdamW steps: the losses. */
async function train(m: vp.PretrainedModel, batch: Parameters<vp.PretrainedModel['forward']>[0], lr: number): Promise<number[]> {
  const losses: number[] = [];
  for (let s = 0; s < 3; s++) {
    const r = await m.forward(batch);
    await m.backward();
    pooledAfterBackward = Math.max(pooledAfterBackward, pooledBytes());
    await m.stepOptimizer({ lr });
    losses.push(r.loss);
  }
  return losses;
}

const out: Record<string, unknown> = {};
const T = 64;
const ids = Int32Array.from({ length: 2 * T }, (_, i) => (i * 37 + 5) % 288);
const batch = { text: ids, sequences: [[{ text: [0, T] as [number, number] }], [{ text: [T, T] as [number, number] }]] };
for (const mode of ['full', 'lora', 'bf16 compute'] as const) {
  const m = await vp.loadPretrained(process.argv[2], { computeDtype: mode === 'bf16 compute' ? 'bfloat16' : 'float32' });
  if (mode === 'lora') m.addLora({ rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'] });
  const losses = await train(m, batch, 1e-3);
  out[mode] = { losses, hash: hashModel(m, await m.logits(ids.subarray(0, T))) };
  m.dispose();
}
for (const [name, dir, towerTrained, perImage] of [['vlm', process.argv[3], true, 4], ['vlm frozen tower', process.argv[3], false, 4], ['llava frozen tower', process.argv[4], false, 15]] as const) {
  const m = await vp.loadPretrained(dir);
  if (towerTrained) m.setVisionTrainable(true);
  const { px, ids: vids, batch: vb } = twoImageInput(perImage);
  const losses = await train(m, vb, 1e-2);
  out[name] = { losses, hash: hashModel(m, await m.logits(vids, { pixelValues: px })) };
  m.dispose();
}
console.log(JSON.stringify({ ...out, pooledAfterBackward }));
