// The cases of test/pretrained-cuda.test.ts (a real GPU) and
// test/pretrained-cuda-emulated.test.ts (the addon's CUDA entry points emulated on
// the host, test/cuda-emulation.ts): a model of each tiny family loaded with
// device 'cuda' against the same model on the CPU — logits (float32 weights, and
// bfloat16 against the CPU's bfloat16 path), a LoRA training step with dropout (loss, tap,
// log-probs, gradients, the AdamW step), a full fine-tuning step of a
// vision-language model with its tower trained, greedy generation with the
// device KV cache, save() read back on the CPU, and the Trainer (SFT with a
// checkpoint resumed on CUDA, an RL step).
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { randomFloats, relError } from './helpers.js';
import { FIXTURES, randomIds, writeTinyModel, type TinyOptions } from './pretrained-fixtures.js';
import { IMAGE_ID, VISION, writeTinyVlm, type TinyVlmOptions } from './vlm-fixtures.js';

const f32 = (x: vp.Tensor) => x.data as Float32Array;

/**
 * Each gradient within `tol` of the CPU's, relative to its own norm plus 1e-6 of the largest
 * gradient norm (a gradient that is zero in exact arithmetic, like a key projection's bias
 * under softmax, is rounding noise on both devices).
 */
function checkGradients(t: ExecutionContext, gg: Record<string, Float32Array>, gc: Record<string, Float32Array>, tol: number): void {
  t.deepEqual(Object.keys(gg).sort(), Object.keys(gc).sort());
  const norm = (x: Float32Array) => Math.sqrt(x.reduce((a, v) => a + v * v, 0));
  const scale = Math.max(...Object.values(gc).map(norm));
  for (const k of Object.keys(gc)) {
    const diff = norm(Float32Array.from(gg[k], (v, i) => v - gc[k][i]));
    t.true(diff <= tol * norm(gc[k]) + 1e-6 * scale, `gradient of ${k}: |cuda - cpu| ${diff.toExponential(2)}, |cpu| ${norm(gc[k]).toExponential(2)}`);
  }
}

/**
 * Registers the cases; `skip(t)` returns true (after logging why) when they cannot run.
 * `tol` scales the tolerances (1 on a GPU; the emulation runs the CPU kernels).
 */
export function registerCudaCases(label: string, skip: (t: ExecutionContext) => boolean): void {
  const work = mkdtempSync(join(tmpdir(), 'vp-pretrained-cuda-'));
  test.after.always(() => rmSync(work, { recursive: true, force: true }));
  let count = 0;
  const textFolder = (o: TinyOptions): string => {
    const dir = join(work, `t${count++}`);
    writeTinyModel(dir, o);
    return dir;
  };
  const vlmFolder = (o: TinyVlmOptions): string => {
    const dir = join(work, `v${count++}`);
    writeTinyVlm(dir, o);
    return dir;
  };
  const noGpu = skip;

  const TEXT: [string, TinyOptions][] = [
    ['Llama, tied, F32', { arch: 'LlamaForCausalLM', tied: true, dtype: 'F32', tokenizer: 'none', template: 'none', seed: 3 }],
    ['Qwen2, untied, BF16, llama3 rope scaling', {
      arch: 'Qwen2ForCausalLM', tied: false, dtype: 'BF16', tokenizer: 'none', template: 'none', seed: 4,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
    }],
  ];

  for (const [name, o] of TEXT) {
    test(`${label}${name}: CUDA logits match the CPU (float32, and bfloat16 against the CPU's bfloat16 path)`, async (t) => {
      if (noGpu(t)) return;
      const dir = textFolder(o);
      const ids = randomIds(23, 7);
      const cpu = await vp.loadPretrained(dir);
      const gpu = await vp.loadPretrained(dir, { device: 'cuda', dtype: 'float32' });
      t.is(gpu.device, 'cuda');
      const lc = await cpu.logits(ids), lg = await gpu.logits(ids);
      t.is(lg.device, 'cpu');
      t.deepEqual([...lg.shape], [...lc.shape]);
      t.true(relError(f32(lg), f32(lc)) < 1e-4, `float32: rel error ${relError(f32(lg), f32(lc))}`);
      const cpu16 = await vp.loadPretrained(dir, { dtype: 'bfloat16' });
      const gpu16 = await vp.loadPretrained(dir, { device: 'cuda', dtype: 'bfloat16' });
      t.is(gpu16.parameterBytes, cpu16.parameterBytes);
      const e16 = relError(f32(await gpu16.logits(ids)), f32(await cpu16.logits(ids)));
      t.true(e16 < 2e-3, `bfloat16: rel error ${e16}`);
      if (o.dtype === 'BF16') {
        // The CUDA default ('auto') keeps the stored BF16 matrices that are frozen in bfloat16.
        const auto = await vp.loadPretrained(dir, { device: 'cuda' });
        t.is(auto.dtype, 'auto');
        auto.addLora({ rank: 2 });
        t.true(auto.parameterBytes < gpu.parameterBytes);
        auto.dispose();
      }
      for (const m of [cpu, gpu, cpu16, gpu16]) m.dispose();
    });

    test(`${label}${name}: one LoRA step on CUDA matches the CPU (loss, gradients, adapters), greedy generation and save()`, async (t) => {
      if (noGpu(t)) return;
      const dir = textFolder(o);
      const cpu = await vp.loadPretrained(dir);
      const gpu = await vp.loadPretrained(dir, { device: 'cuda', dtype: 'float32' });
      const lora = { rank: 4, alpha: 8, targets: 'all-linear' as const, seed: 11, dropout: 0.1 };
      cpu.addLora(lora);
      gpu.addLora(lora);
      // Greedy generation first (B = 0: the base model), before the step moves the two apart.
      const prompt = Int32Array.from(randomIds(6, 12));
      const genC = await cpu.generate(null, prompt, { maxTokens: 5, eosId: -1 });
      const genG = await gpu.generate(null, prompt, { maxTokens: 5, eosId: -1 });
      t.deepEqual(Array.from(genG as Int32Array), Array.from(genC as Int32Array));
      const text = Int32Array.from(randomIds(30, 9));
      const batch = { text, sequences: [[{ text: [0, 17] as [number, number] }], [{ text: [17, 13] as [number, number] }]] };
      const tapRows = new Int32Array([1, 5, 20]);
      const fc = await cpu.forward(batch, { tapRows, logprobs: true });
      const fg = await gpu.forward(batch, { tapRows, logprobs: true });
      t.true(Math.abs(fg.loss - fc.loss) <= 1e-5 * Math.abs(fc.loss), `loss cpu ${fc.loss} cuda ${fg.loss}`);
      t.true(relError(fg.tap, fc.tap) < 1e-5);
      t.true(relError(fg.tokenLogprobs, fc.tokenLogprobs) < 1e-5);
      const dTap = new Float32Array(fc.tap.length).map((_, i) => 0.01 * Math.sin(i));
      await cpu.backward({ dTap });
      await gpu.backward({ dTap });
      const gc = cpu.gradients(), gg = gpu.gradients();
      checkGradients(t, gg, gc, 1e-4);
      // The device AdamW step against vp.adamwStep on the host from the CUDA model's own
      // gradients and parameters (a first Adam step is sign-like, so the CPU model's step could
      // differ by ±lr wherever a gradient is within rounding of zero).
      const before = gpu.parameters();
      const norm = Math.sqrt(Object.values(gg).reduce((a, g) => a + g.reduce((b, x) => b + x * x, 0), 0));
      const sc = await cpu.stepOptimizer({ lr: 1e-2 }), sg = await gpu.stepOptimizer({ lr: 1e-2 });
      t.true(Math.abs(sg.gradNorm - sc.gradNorm) <= 1e-4 * sc.gradNorm);
      t.true(Math.abs(sg.gradNorm - norm) <= 1e-5 * norm);
      const clip = norm > 1 ? 1 / (norm + 1e-6) : 1;
      const after = gpu.parameters();
      for (const k of gpu.trainableParameters()) {
        const p = vp.tensor(before[k].slice(), [before[k].length]);
        const z = () => vp.tensor(new Float32Array(before[k].length), [before[k].length]);
        vp.adamwStep(p, vp.tensor(gg[k].slice(), [gg[k].length]), z(), z(), { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, gradScale: clip });
        t.true(relError(after[k], f32(p)) < 1e-5, `${k} after the step: rel error ${relError(after[k], f32(p))}`);
      }
      // save() from CUDA (adapters merged on the host, written in the stored dtype) writes the
      // bytes that a CPU model with the same parameters writes.
      const twin = await vp.loadPretrained(dir);
      twin.addLora(lora);
      twin.setParameters(gpu.parameters());
      const out = join(work, `saved${count++}`), outCpu = join(work, `saved${count++}`);
      await gpu.save(out);
      await twin.save(outCpu);
      t.true(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(outCpu, 'model.safetensors'))), 'save() from CUDA and from the CPU');
      const back = await vp.loadPretrained(out);
      t.true(f32(await back.logits(text)).every(Number.isFinite), 'the saved folder reads back on the CPU');
      twin.dispose();
      for (const m of [cpu, gpu, back]) m.dispose();
    });
  }

  const VLM: [string, TinyVlmOptions, number][] = [
    ['SmolVLM (SigLIP, pixel shuffle)', { kind: 'smolvlm', seed: 3 }, 4],
    ['LLaVA + CLIP (class token, pre-LayerNorm, quick GELU, feature layers [-1, 0])', { kind: 'llava-clip', layout: 'new', seed: 6, strategy: 'full', featureLayer: [-1, 0] }, 17],
  ];

  for (const [name, o, perImage] of VLM) {
    test(`${label}${name}: CUDA logits and a full fine-tuning step with the tower trained match the CPU`, async (t) => {
      if (noGpu(t)) return;
      const dir = vlmFolder(o);
      const { channels: C, image } = VISION;
      const px = vp.tensor(randomFloats(2 * C * image * image, 21, -1, 1), [2, C, image, image]);
      const ids: number[] = [5, 9];
      for (let i = 0; i < 2; i++) {
        ids.push(10 + i);
        for (let k = 0; k < perImage; k++) ids.push(IMAGE_ID);
      }
      ids.push(40, 41, 42);
      const cpu = await vp.loadPretrained(dir);
      const gpu = await vp.loadPretrained(dir, { device: 'cuda', dtype: 'float32' });
      const lc = await cpu.logits(ids, { pixelValues: px }), lg = await gpu.logits(ids, { pixelValues: px });
      t.true(relError(f32(lg), f32(lc)) < 1e-4, `logits: rel error ${relError(f32(lg), f32(lc))}`);
      // Greedy generation from the prompt with its images (the visual rows prefilled on the device).
      const prompt = { text: Int32Array.from(ids), pixelValues: px, sequences: [[{ text: [0, ids.length] as [number, number] }]] };
      const [gc0] = await cpu.generateBatch(prompt, { maxTokens: 4, eosId: -1 });
      const [gg0] = await gpu.generateBatch(prompt, { maxTokens: 4, eosId: -1 });
      t.deepEqual(Array.from(gg0), Array.from(gc0));
      cpu.setVisionTrainable(true);
      gpu.setVisionTrainable(true);
      const batch = { text: Int32Array.from(ids), pixelValues: px, sequences: [[{ text: [0, ids.length] as [number, number] }]] };
      const fc = await cpu.forward(batch), fg = await gpu.forward(batch);
      t.true(Math.abs(fg.loss - fc.loss) <= 1e-5 * Math.abs(fc.loss));
      await cpu.backward();
      await gpu.backward();
      const gc = cpu.gradients(), gg = gpu.gradients();
      checkGradients(t, gg, gc, 1e-3);
      // The step runs on the device: every trained tensor moves, and stays finite.
      const before = gpu.parameters();
      const st = await gpu.stepOptimizer({ lr: 1e-3 });
      t.true(Number.isFinite(st.gradNorm) && st.step === 1);
      const after = gpu.parameters();
      for (const k of gpu.trainableParameters()) {
        t.true(after[k].every(Number.isFinite), `${k} finite`);
        if (gg[k].some((v) => v !== 0)) t.notDeepEqual(Array.from(after[k]), Array.from(before[k]), `${k} moved`);
      }
      cpu.dispose();
      gpu.dispose();
    });
  }

  test(`${label}the Trainer on a CUDA model: LoRA SFT follows the CPU's losses, a CUDA checkpoint resumes on CUDA, an RL step runs`, async (t) => {
    if (noGpu(t)) return;
    const dir = textFolder(FIXTURES['llama-tied-bf16-sharded-llama3']);
    const data = join(work, `data${count++}`);
    vp.synthDataset(data, { count: 6, seed: 3, frames: 4, size: 16, fps: 4 });
    const ds = vp.openDataset(data);
    const losses = async (device: 'cpu' | 'cuda', runDir?: string) => {
      const m = await vp.loadPretrained(dir, { device });
      m.addLora({ rank: 2 });
      const seen: number[] = [];
      const tr = new vp.Trainer(m, { seed: 4, handleSigint: false, ...(runDir ? { runDir, checkpointEvery: 2 } : {}), onStep: (e) => e.type === 'step' && e.stage === 'sft' && seen.push(e.lm) });
      await tr.sft(ds, { steps: 4, batchSize: 2, lr: 1e-2 });
      return { m, seen };
    };
    const run = join(work, `run${count++}`);
    const c = await losses('cpu'), g = await losses('cuda', run);
    t.is(g.m.device, 'cuda');
    t.is(g.seen.length, 4);
    g.seen.forEach((l, i) => t.true(Math.abs(l - c.seen[i]) <= 1e-3 * Math.abs(c.seen[i]), `step ${i + 1}: cpu ${c.seen[i]} cuda ${l}`));
    // Resume the CUDA run from its step-2 checkpoint into a fresh CUDA model: steps 3-4 again.
    const b = await vp.loadPretrained(dir, { device: 'cuda' });
    b.addLora({ rank: 2, seed: 99 });
    const tb = new vp.Trainer(b, { seed: 4, handleSigint: false });
    const resumed = await tb.resume(join(run, 'checkpoints', 'sft-000002'));
    t.is(resumed.step, 2);
    await tb.sft(ds, { steps: 4, batchSize: 2, lr: 1e-2 });
    const pa = g.m.parameters(), pb = b.parameters();
    for (const n of g.m.trainableParameters()) t.true(relError(pb[n], pa[n]) < 1e-5, `${n} after resuming: rel error ${relError(pb[n], pa[n])}`);
    // One RL step on the device (rollouts with the device KV cache, GRPO update of the adapters).
    const before = g.m.parameters();
    const tr = new vp.Trainer(g.m, { seed: 2, handleSigint: false });
    const r = await tr.rl(ds, { steps: 1, promptsPerStep: 2, groupSize: 2, maxTokens: 4, lr: 1e-2, reward: (x) => x.response.length / 10 });
    t.is(r.status, 'done');
    const after = g.m.parameters();
    t.true(g.m.trainableParameters().some((n) => !after[n].every((v, i) => v === before[n][i])), 'the adapters moved');
    for (const m of [c.m, g.m, b]) m.dispose();
  });
}
