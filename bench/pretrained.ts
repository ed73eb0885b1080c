// A Hugging Face LlamaForCausalLM shaped like SmolLM2-135M (hidden 576, 30
// layers, 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied head;
// random weights stored in bf16 as the real checkpoint is) through
// vp.loadPretrained: one forward+backward (LM loss on B sequences of T tokens)
// with every parameter trained ('full'), with rank-8 LoRA on q/k/v/o
// ('lora'), and with that LoRA over a frozen base held in bfloat16
// ('lora bf16': loadPretrained's dtype 'bfloat16', the bf16 GEMM; the peer keeps
// the frozen weights in torch.bfloat16 and casts the activations to them), and
// 'full bf16 compute' (loadPretrained's computeDtype 'bfloat16': float32 weights
// trained, their products through bf16 copies remade each step; the peer runs
// 'full' under torch.autocast('cpu', bfloat16)), tokens per second and peak
// memory, ours vs PyTorch eager reading the same folder
// (bench/peers/torch_pretrained.py), in the same run.
//
// Each side runs in its own process so that its peak resident memory (VmHWM,
// reset after the weights are loaded) is that case's alone; the table reports
// the memory with the weights loaded and the peak over the steps.
// The random-folder writer, the child runner and the memory probes are shared
// with bench/vlm.ts (the SmolVLM2-256M-shaped video LLM).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { fromFloat32 } from '../lib/pretrained/checkpoint.js';
import { runPeer, timeIt, type BenchContext, type PeerResult } from './harness.js';

const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 49152, hidden_size: 576, intermediate_size: 1536,
  num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, hidden_act: 'silu', max_position_embeddings: 8192,
  rms_norm_eps: 1e-5, rope_theta: 100000, rope_scaling: null, tie_word_embeddings: true, attention_bias: false, mlp_bias: false,
  torch_dtype: 'bfloat16', bos_token_id: 1, eos_token_id: 2,
};

/** The tensors of a Llama text model in Hugging Face naming under `prefix` ('model.'), head excluded. */
export function llamaShapes(c: { hidden_size: number; intermediate_size: number; num_attention_heads: number; num_key_value_heads: number; num_hidden_layers: number; vocab_size: number; head_dim?: number }, prefix = 'model.'): [string, number[]][] {
  const d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim ?? d / c.num_attention_heads;
  const q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const shapes: [string, number[]][] = [[`${prefix}embed_tokens.weight`, [c.vocab_size, d]], [`${prefix}norm.weight`, [d]]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `${prefix}layers.${l}.`;
    shapes.push([`${p}input_layernorm.weight`, [d]], [`${p}post_attention_layernorm.weight`, [d]],
      [`${p}self_attn.q_proj.weight`, [q, d]], [`${p}self_attn.k_proj.weight`, [kv, d]], [`${p}self_attn.v_proj.weight`, [kv, d]],
      [`${p}self_attn.o_proj.weight`, [d, q]], [`${p}mlp.gate_proj.weight`, [f, d]], [`${p}mlp.up_proj.weight`, [f, d]], [`${p}mlp.down_proj.weight`, [d, f]]);
  }
  return shapes;
}

/**
 * Writes random weights of real shapes as one bf16 model.safetensors (the real
 * checkpoints' dtype), tensors sorted by name as transformers writes them:
 * N(0, 0.02) for every tensor of two or more dimensions, 1 for a vector
 * (norm gains) unless `zero(name)` says it is a bias (0). Returns the parameter count.
 */
export function writeRandomBf16(dir: string, shapes: [string, number[]][], seed: number, zero: (name: string) => boolean = () => false): number {
  const tensors: Record<string, vp.StTensor> = {};
  let count = 0;
  [...shapes].sort(([a], [b]) => (a < b ? -1 : 1)).forEach(([name, shape], i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    count += n;
    const x = shape.length === 1 ? new Float32Array(n).fill(zero(name) ? 0 : 1) : (vp.randn(shape, { seed, stream: i, std: 0.02 }).data as Float32Array);
    tensors[name] = { dtype: 'BF16', shape, data: fromFloat32(x, 'BF16') as Uint16Array };
  });
  vp.writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return count;
}

/** Writes the SmolLM2-135M-shaped folder: N(0, 0.02) matrices, unit norm gains, bf16. */
function writeModel(dir: string): void {
  writeRandomBf16(dir, llamaShapes(SMOLLM2_135M), 20);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(SMOLLM2_135M, null, 2));
}

interface CaseSpec {
  dir: string;
  case: 'full' | 'lora';
  /** 'bfloat16': the frozen base held in bfloat16. */
  dtype: 'float32' | 'bfloat16';
  /** 'bfloat16': bf16 products of float32 weights (ours: computeDtype; the peer: CPU autocast). */
  computeDtype: 'float32' | 'bfloat16';
  B: number;
  T: number;
  ids: number[];
  rank: number;
  alpha: number;
  reps: number;
}

/** A /proc/self/status field (VmRSS, VmHWM) in MB. */
export function statusMB(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Restarts the process's peak resident memory (VmHWM) from its current size; false where /proc cannot. */
export function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs a bench file's child mode (`flag` + the JSON spec) in a fresh Node process, so that its
 * peak resident memory is that case's alone; returns the child's last stdout line, parsed.
 */
export function runChild<T>(file: string, flag: string, spec: unknown, threads: number, what: string): T {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import=tsx', file, flag, JSON.stringify(spec)], {
    encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, VP_NUM_THREADS: String(threads) },
  });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`${file} child (${what}) failed: ${(r.stderr ?? '').slice(-1000)}`);
  return JSON.parse(line) as T;
}

/** `reps` timed calls of a step: the median wall time, and the process's CPU time (every thread) per call. */
export async function timeSteps(step: () => Promise<void>, reps: number): Promise<Awaited<ReturnType<typeof timeIt>> & { cpuMs: number }> {
  const c0 = process.cpuUsage();
  const t = await timeIt(step, { warmup: 0, reps, minMs: 0 });
  const c = process.cpuUsage(c0);
  return { ...t, cpuMs: (c.user + c.system) / 1000 / t.reps };
}

/** The columns of a training-step row: tokens/s, peak memory and over the weights, the first loss, both sides. */
export function trainColumns(tokens: number, ours: { medianMs: number; peakMB: number; weightsMB: number; loss0: number; cpuMs?: number }, peer: PeerResult): Record<string, number | null> {
  // CPU seconds of all threads per step (spin-waiting included): a cross-check of the wall-time
  // ratio that a shared machine's load disturbs less.
  const cpu: Record<string, number | null> = ours.cpuMs !== undefined
    ? { oursCpuS: +(ours.cpuMs / 1000).toFixed(1), peerCpuS: peer.ok && typeof peer.cpuMs === 'number' ? +(peer.cpuMs / 1000).toFixed(1) : null, cpuRatio: peer.ok && typeof peer.cpuMs === 'number' ? +(peer.cpuMs / ours.cpuMs).toFixed(2) : null }
    : {};
  return {
    ...cpu,
    oursTokPerS: Math.round(tokens / (ours.medianMs / 1000)),
    peerTokPerS: peer.ok ? Math.round(tokens / (peer.medianMs! / 1000)) : null,
    oursPeakMB: Math.round(ours.peakMB), peerPeakMB: peer.ok ? Math.round(peer.peakMB as number) : null,
    oursOverWeightsMB: Math.round(ours.peakMB - ours.weightsMB),
    peerOverWeightsMB: peer.ok ? Math.round((peer.peakMB as number) - (peer.weightsMB as number)) : null,
    oursLoss0: Number(ours.loss0.toFixed(5)), peerLoss0: peer.ok ? Number((peer.loss0 as number).toFixed(5)) : null,
  };
}

/** One case in this (child) process: load, the same measurements as the peer's. */
async function child(spec: CaseSpec): Promise<void> {
  const m = await vp.loadPretrained(spec.dir, { dtype: spec.dtype, computeDtype: spec.computeDtype });
  if (spec.case === 'lora') m.addLora({ rank: spec.rank, alpha: spec.alpha });
  const text = Int32Array.from(spec.ids);
  const batch = { text, sequences: Array.from({ length: spec.B }, (_, b) => [{ text: [b * spec.T, spec.T] as [number, number] }]) };
  (globalThis as { gc?: () => void }).gc?.(); // the file's raw bytes, converted, are garbage now
  const weightsMB = statusMB('VmRSS');
  const resetOk = resetPeak();
  let loss0 = NaN;
  const step = async () => {
    // A training step's optimizer update makes the bf16 copies anew: so does each timed step.
    if (spec.computeDtype === 'bfloat16') m.setComputeDtype('bfloat16');
    const r = await m.forward(batch);
    if (Number.isNaN(loss0)) loss0 = r.loss;
    await m.backward();
  };
  await step();
  const { cpuMs, ...t } = await timeSteps(step, spec.reps);
  console.log(JSON.stringify({ ...t, cpuMs, loss0, weightsMB, peakMB: resetOk ? statusMB('VmHWM') : NaN, trainable: m.numTrainable, paramMB: m.parameterBytes / 2 ** 20 }));
}

export async function run(ctx: BenchContext): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-smollm2-'));
  try {
    writeModel(dir);
    const B = ctx.quick ? 1 : 4, T = 128, reps = ctx.quick ? 1 : 3;
    const ids: number[] = [];
    for (let i = 0; i < B * T; i++) ids.push((i * 7919 + 13) % SMOLLM2_135M.vocab_size);
    for (const name of ['full', 'lora', 'lora bf16', 'full bf16 compute'] as const) {
      const c = name.startsWith('full') ? 'full' : 'lora';
      const spec: CaseSpec = {
        dir, case: c, dtype: name === 'lora bf16' ? 'bfloat16' : 'float32', computeDtype: name === 'full bf16 compute' ? 'bfloat16' : 'float32',
        B, T, ids, rank: 8, alpha: 16, reps,
      };
      const ours = runChild<{ medianMs: number; loss0: number; weightsMB: number; peakMB: number; trainable: number; paramMB: number }>(
        fileURLToPath(import.meta.url), '--pretrained-child', spec, ctx.threads, name);
      const peer = runPeer('torch_pretrained.py', { ...spec }, ctx.threads);
      const tokens = B * T;
      ctx.report({
        bench: 'pretrained', case: `smollm2-135m ${name}`, shape: { B, T, tokens, params: 134515008, trainable: ours.trainable, rank: c === 'lora' ? 8 : null },
        oursMs: ours.medianMs, peerMs: peer.ok ? peer.medianMs! : null, ratio: peer.ok ? peer.medianMs! / ours.medianMs : null,
        peer: spec.computeDtype === 'bfloat16' ? 'torch autocast bf16' : 'torch', peerMissing: peer.missing,
        // 6 flops per parameter per token for full fine-tuning (forward 2, backward 4);
        // LoRA skips the weight gradients of the frozen matrices: about 4.
        flops: (c === 'lora' ? 4 : 6) * 134515008 * tokens,
        extra: { oursParamMB: Math.round(ours.paramMB), ...trainColumns(tokens, ours, peer) },
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const childAt = process.argv.indexOf('--pretrained-child');
if (childAt >= 0) await child(JSON.parse(process.argv[childAt + 1]) as CaseSpec);
