// Fused attention: ours (vp.attention / vp.attentionBackward through the whole
// stack) vs PyTorch CPU (matmul → softmax → matmul, autograd for the backward)
// on the same float32 inputs in the same run. T ∈ {256, 1024, 2048}, H = 8,
// D = 64, causal and not, forward and forward+backward.
//
// Ours and the peer alternate over two rounds (one with --quick), each side
// keeping its best round, so a burst of unrelated load cannot skew one side.
// FLOPs as FlashAttention counts them: 4·T²·H·D forward, 2.5× that for the
// backward (so 3.5× for forward+backward), half of each when causal. Each case
// prints GFLOP/s of both, the ratio, and ours as a fraction of our SGEMM's
// GFLOP/s on the same machine. A last line measures memory: one T = 8192
// sequence (H = 8, D = 64) forward+backward in a child process, peak RSS beyond
// its inputs and outputs, against PyTorch's composite making the same call once
// in its own process (its time, and its peak beyond inputs and outputs: the T×T
// scores); that peer is reported missing when the machine lacks the memory.
//
//   npm run bench -- attention [--quick]          (through bench/run.ts)
//   node --import=tsx bench/attention.ts [--quick] (standalone)
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { loadOrt, onnxModel, ortSession } from './peers/onnx.js';
import { makeContext, PeerInputs, randomFloats, runPeer, runPeerWithin, timeIt, type BenchContext, type PeerResult, type Timing } from './harness.js';

const H = 8;
const D = 64;

function flops(T: number, causal: boolean): number {
  return 4 * T * T * H * D * (causal ? 0.5 : 1);
}

export async function run(ctx: BenchContext): Promise<void> {
  const lengths = ctx.quick ? [256, 1024] : [256, 1024, 2048];
  await ctx.sgemmGflops();  // the fracOfSgemm column
  for (const T of lengths) {
    for (const causal of [false, true]) {
      const q = randomFloats(T * H * D, T + 1);
      const k = randomFloats(T * H * D, T + 2);
      const v = randomFloats(T * H * D, T + 3);
      const dout = randomFloats(T * H * D, T + 4);
      const tq = vp.tensor(q, [T, H, D]);
      const tk = vp.tensor(k, [T, H, D]);
      const tv = vp.tensor(v, [T, H, D]);
      const tdo = vp.tensor(dout, [T, H, D]);
      const opts = { causal };
      const reps = T >= 2048 ? 3 : 5;
      // Ours and the peer alternate for `rounds` rounds and each keeps its best round (lowest
      // median): a burst of other load on a shared machine then hits neither side alone.
      const rounds = ctx.quick ? 1 : 2;
      const inputs = new PeerInputs().add('q', q, [T, H, D]).add('k', k, [T, H, D]).add('v', v, [T, H, D]).add('dout', dout, [T, H, D]);
      let fwd: Timing | undefined;
      let fwdbwd: Timing | undefined;
      let peer: PeerResult | undefined;
      for (let round = 0; round < rounds; round++) {
        const tf = await timeIt(() => vp.attention(tq, tk, tv, opts), { warmup: 1, reps, minMs: 300 });
        const tfb = await timeIt(() => {
          const { out, lse } = vp.attention(tq, tk, tv, opts);
          vp.attentionBackward(tdo, tq, tk, tv, out, lse, opts);
        }, { warmup: 1, reps, minMs: 300 });
        if (!fwd || tf.medianMs < fwd.medianMs) fwd = tf;
        if (!fwdbwd || tfb.medianMs < fwdbwd.medianMs) fwdbwd = tfb;
        const pr = runPeer('torch_attention.py', { inputs: inputs.specs, causal, reps }, ctx.threads);
        if (!peer || !peer.ok) peer = pr;
        else if (pr.ok) {
          peer = {
            ...peer,
            fwdMs: Math.min(peer.fwdMs as number, pr.fwdMs as number),
            fwdMinMs: Math.min(peer.fwdMinMs as number, pr.fwdMinMs as number),
            fwdbwdMs: Math.min(peer.fwdbwdMs as number, pr.fwdbwdMs as number),
            fwdbwdMinMs: Math.min(peer.fwdbwdMinMs as number, pr.fwdbwdMinMs as number),
          };
        }
      }
      inputs.dispose();
      if (!fwd || !fwdbwd || !peer) continue;
      // The forward's strongest peer: onnxruntime's CPU attention kernels (forward only).
      const ort = await ortAttention(T, causal, q, k, v, reps, ctx.threads);
      const f = flops(T, causal);
      for (const [dir, ours, oursMin, torchMs, torchMin, mult] of [
        ['fwd', fwd.medianMs, fwd.minMs, peer.ok ? (peer.fwdMs as number) : null, peer.ok ? (peer.fwdMinMs as number) : null, 1],
        ['fwd+bwd', fwdbwd.medianMs, fwdbwd.minMs, peer.ok ? (peer.fwdbwdMs as number) : null, peer.ok ? (peer.fwdbwdMinMs as number) : null, 3.5],
      ] as const) {
        const oursG = (mult * f) / (ours * 1e6);
        const peers: [string, number, number][] = [];
        if (torchMs !== null && torchMin !== null) peers.push(['torch', torchMs, torchMin]);
        if (dir === 'fwd') for (const o of ort.timings) peers.push([o.name, o.t.medianMs, o.t.minMs]);
        const best = peers.sort((x, y) => x[1] - y[1])[0];
        ctx.report({
          bench: 'attention',
          case: `T=${T} H=${H} D=${D}${causal ? ' causal' : ''} ${dir}`,
          shape: { T, H, Hkv: H, D, causal, direction: dir },
          oursMs: ours,
          peerMs: best ? best[1] : null,
          ratio: best ? best[1] / ours : null,
          peer: best ? best[0] : 'torch',
          peerMissing: best ? undefined : peer.missing,
          flops: mult * f,
          extra: {
            oursGflops: oursG,
            peerGflops: best ? (mult * f) / (best[1] * 1e6) : null,
            torchMs: torchMs,
            ortMs: dir === 'fwd' && ort.timings.length ? Math.min(...ort.timings.map((o) => o.t.medianMs)) : null,
            ort: dir === 'fwd' ? (ort.missing ?? ort.timings.map((o) => o.name).join(', ')) : 'forward only: no peer for fwd+bwd',
            ortMaxAbsDiff: dir === 'fwd' ? ort.maxAbsDiff : null,
            // best-of-samples ratio: less sensitive to other load on a shared machine
            ratioOfMins: best ? best[2] / oursMin : null,
          },
        });
      }
    }
  }
  // Memory: a child process, so its peak RSS is this case's alone.
  const child = spawnSync(process.execPath, ['--import=tsx', fileURLToPath(import.meta.url), '--memory-child'], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const last = (child.stdout ?? '').trim().split('\n').pop() ?? '';
  let mem: { T: number; ms: number; extraMB: number; ioMB: number; peakMB: number; baseMB: number; outputsMB: number } | undefined;
  try {
    mem = JSON.parse(last);
  } catch {
    console.log(`attention memory: the child process failed (exit ${child.status}): ${(child.stderr ?? '').slice(-300)}`);
  }
  if (mem) {
    // The peer: the same call through PyTorch's composite (same inputs), once, in its own
    // process: its time and its peak memory beyond inputs and outputs (the T×T scores).
    const n = mem.T * H * D;
    const files = new PeerInputs();
    for (const [name, seed] of [['q', 1], ['k', 2], ['v', 3], ['dout', 4]] as const) files.add(name, randomFloats(n, seed), [mem.T, H, D]);
    const scoresMB = (H * mem.T * mem.T * 4) / 2 ** 20;
    const peer = runPeerWithin('torch_attention.py', { inputs: files.specs, causal: false, memory: true }, ctx.threads, 4 * scoresMB + 1024);
    files.dispose();
    const peerMs = peer.ok ? (peer.ms as number) : null;
    ctx.report({
      bench: 'attention',
      case: `memory T=${mem.T} H=${H} D=${D} fwd+bwd`,
      shape: { T: mem.T, H, Hkv: H, D, causal: false, direction: 'fwd+bwd' },
      oursMs: mem.ms,
      peerMs,
      ratio: peerMs === null ? null : peerMs / mem.ms,
      peer: 'torch (one call)',
      peerMissing: peer.missing,
      flops: 3.5 * flops(mem.T, false),
      extra: {
        extraMB: mem.extraMB, peerExtraMB: peer.ok ? (peer.extraMB as number) : null, limitMB: 64,
        peakRssMB: mem.peakMB, rssBeforeMB: mem.baseMB, outputsMB: mem.outputsMB, ioMB: mem.ioMB,
      },
    });
  }
}

/**
 * onnxruntime-node's CPU attention on the same q, k, v ([1, T, H·D], its layout of our
 * [T, H, D]): com.microsoft MultiHeadAttention (`unidirectional` = causal) and the
 * ONNX opset-23 Attention (`is_causal`), each a one-node model timed like ours; the
 * output of each is checked against ours (max |difference|), so a peer that computed
 * something else would show.
 */
async function ortAttention(T: number, causal: boolean, q: Float32Array, k: Float32Array, v: Float32Array, reps: number, threads: number):
    Promise<{ timings: { name: string; t: Timing }[]; missing?: string; maxAbsDiff: number | null }> {
  const { ort, missing } = loadOrt();
  if (!ort) return { timings: [], missing, maxAbsDiff: null };
  const shape = [1, T, H * D];
  const io = { ins: ['q', 'k', 'v'].map((name) => ({ name, shape })), outs: [{ name: 'o', shape }] };
  const feeds = { q: new ort.Tensor('float32', q, shape), k: new ort.Tensor('float32', k, shape), v: new ort.Tensor('float32', v, shape) };
  const ref = vp.attention(vp.tensor(q, [T, H, D]), vp.tensor(k, [T, H, D]), vp.tensor(v, [T, H, D]), { causal }).out.data as Float32Array;
  const timings: { name: string; t: Timing }[] = [];
  const errors: string[] = [];
  let maxAbsDiff = 0;
  for (const [name, node, opset] of [
    ['ort MultiHeadAttention', { op: 'MultiHeadAttention', domain: 'com.microsoft', inputs: ['q', 'k', 'v'], outputs: ['o'], attrs: { num_heads: H, unidirectional: causal ? 1 : 0 } }, 21],
    ['ort Attention-23', { op: 'Attention', inputs: ['q', 'k', 'v'], outputs: ['o'], attrs: { q_num_heads: H, kv_num_heads: H, is_causal: causal ? 1 : 0 } }, 23],
  ] as const) {
    try {
      const session = await ortSession(ort, onnxModel([node], io.ins, io.outs, opset), threads);
      const out = (await session.run(feeds)).o.data;
      for (let i = 0; i < out.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(out[i] - ref[i]));
      timings.push({ name, t: await timeIt(() => session.run(feeds), { warmup: 1, reps, minMs: 300 }) });
      await session.release?.();
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message.split('\n')[0].slice(0, 160)}`);
    }
  }
  return { timings, missing: timings.length ? undefined : errors.join('; '), maxAbsDiff: timings.length ? maxAbsDiff : null };
}

/** Linux: a /proc/self/status field in bytes, or undefined. */
function statusBytes(key: string): number | undefined {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The memory case, in its own process: the peak RSS while the forward and backward run,
 * beyond what was resident before (the inputs) and the outputs they return (fresh, lazily
 * zeroed allocations that the kernels fill).
 */
function memoryChild(): void {
  const T = 8192;
  const n = T * H * D;
  const mk = (seed: number) => vp.tensor(randomFloats(n, seed), [T, H, D]);
  const q = mk(1), k = mk(2), v = mk(3), dout = mk(4);
  // warm the addon and the thread pool on a small case
  const s = vp.tensor(randomFloats(64 * H * D, 5), [64, H, D]);
  const w = vp.attention(s, s, s);
  vp.attentionBackward(s, s, s, s, w.out, w.lse);
  let resetOk = true;
  try {
    writeFileSync('/proc/self/clear_refs', '5'); // reset the peak-RSS mark (VmHWM)
  } catch {
    resetOk = false;
  }
  const base = statusBytes('VmRSS') ?? process.memoryUsage().rss;
  const t0 = performance.now();
  const { out, lse } = vp.attention(q, k, v);
  const g = vp.attentionBackward(dout, q, k, v, out, lse);
  const ms = performance.now() - t0;
  const peak = (resetOk ? statusBytes('VmHWM') : undefined) ?? process.resourceUsage().maxRSS * 1024;
  const outBytes = (out.size + lse.size + g.dq.size + g.dk.size + g.dv.size) * 4;
  const MB = 2 ** 20;
  console.log(JSON.stringify({
    T, ms, extraMB: (peak - base - outBytes) / MB, peakMB: peak / MB, baseMB: base / MB, outputsMB: outBytes / MB,
    ioMB: (4 * n * 4 + outBytes) / MB,
  }));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes('--memory-child')) memoryChild();
  else await run(makeContext({ quick: process.argv.includes('--quick'), json: process.argv.includes('--json') }));
}
