// SGEMM: ours (vp.matmul through the whole stack) vs the strongest CPU SGEMM a
// user could pick instead, on the same square float32 inputs in the same run:
//  - PyTorch CPU (a @ b, on the BLAS that bench/run.ts checked at start);
//  - oneDNN (Debian's libdnnl-dev): dnnl_sgemm and the matmul primitive, timed by
//    build-native/vp_peer_dnnl (native/bench/peer_dnnl.cpp) next to our vp::sgemm
//    in the same process on the same buffers (the fairest ratio: `vsDnnlNative`).
// The row's peer is the fastest of them; its ratio is that peer's time over ours.
// A last row multiplies bfloat16 matrices (float32 accumulation) against oneDNN's
// bf16 matmul and against our own float32 SGEMM (vsOurSgemm).
// GFLOP/s of each; the harness adds the fraction of the FMA peak.
import * as vp from '../lib/index.js';
import { PeerInputs, randomFloats, runNative, runPeer, timeIt, type BenchContext } from './harness.js';

export async function run(ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [256, 1024] : [256, 512, 1024, 2048];
  const bf16Size = ctx.quick ? 1024 : 2048;
  // oneDNN threads: OpenMP, one per pool thread (as PyTorch's peers get), sleeping when
  // idle (PASSIVE): spinning OpenMP threads would steal the cores from our pool's calls.
  const dnnl = runNative('vp_peer_dnnl', ['--sizes', sizes.join(','), '--bf16-sizes', String(bf16Size), ...(ctx.quick ? ['--quick'] : [])],
    { OMP_NUM_THREADS: String(ctx.threads), OMP_WAIT_POLICY: 'PASSIVE' });
  const dnnlMissing = dnnl.ok ? undefined : `${dnnl.missing} (oneDNN peer: apt-get install libdnnl-dev, then npm run build:native)`;
  for (const n of sizes) {
    const a = randomFloats(n * n, n);
    const b = randomFloats(n * n, n + 1);
    const ta = vp.tensor(a, [n, n]);
    const tb = vp.tensor(b, [n, n]);
    const reps = n >= 2048 ? 5 : 10;
    const ours = await timeIt(() => vp.matmul(ta, tb), { warmup: 2, reps });
    const inputs = new PeerInputs().add('a', a, [n, n]).add('b', b, [n, n]);
    const torch = runPeer('torch_gemm.py', { inputs: inputs.specs, reps }, ctx.threads);
    inputs.dispose();
    const d = dnnl.ok ? dnnl.lines.find((l) => l.n === n) : undefined;
    const flops = 2 * n ** 3;
    const g = (ms: number | null | undefined) => (ms ? flops / (ms * 1e6) : null);
    const peers: [string, number][] = [];
    if (torch.ok) peers.push(['torch', torch.medianMs!]);
    if (d) peers.push(['onednn sgemm', d.sgemmMs as number], ['onednn matmul', d.matmulMs as number]);
    const best = peers.sort((x, y) => x[1] - y[1])[0];
    const dnnlBest = d ? Math.min(d.sgemmMs as number, d.matmulMs as number) : null;
    ctx.report({
      bench: 'gemm', case: `${n}x${n}x${n}`, shape: { m: n, n, k: n },
      oursMs: ours.medianMs, peerMs: best ? best[1] : null,
      ratio: best ? best[1] / ours.medianMs : null,
      peer: best ? best[0] : 'torch / onednn',
      peerMissing: best ? undefined : [torch.missing, dnnlMissing].filter(Boolean).join('; '),
      flops,
      extra: {
        oursGflops: g(ours.medianMs),
        torchGflops: torch.ok ? g(torch.medianMs) : null,
        dnnlSgemmGflops: d ? g(d.sgemmMs as number) : null,
        dnnlMatmulGflops: d ? g(d.matmulMs as number) : null,
        // Same process, same buffers: oneDNN's best over our vp::sgemm (> 1: we are faster).
        vsDnnlNative: d && dnnlBest ? dnnlBest / (d.oursMs as number) : null,
        dnnl: d ? String(d.dnnl) : (dnnlMissing ?? null),
      },
    });
  }

  // bfloat16 inputs and result, float32 accumulation (vp/gemm_bf16.h): ours through the whole
  // stack against oneDNN's bf16 matmul; `vsOurSgemm` is our float32 SGEMM's time over our
  // bf16 GEMM's on the same values in the same process (the bf16 path's speed-up).
  {
    const n = bf16Size;
    const ta = vp.tensor(randomFloats(n * n, 5), [n, n]).to('cpu', 'bfloat16');
    const tb = vp.tensor(randomFloats(n * n, 6), [n, n]).to('cpu', 'bfloat16');
    const ours = await timeIt(() => vp.matmul(ta, tb), { warmup: 1, reps: 5 });
    const d = dnnl.ok ? dnnl.lines.find((l) => l.bench === 'gemm_bf16' && l.n === n) : undefined;
    const flops = 2 * n ** 3;
    ctx.report({
      bench: 'gemm', case: `bf16 ${n}x${n}x${n}`, shape: { m: n, n, k: n, dtype: 'bfloat16' },
      oursMs: ours.medianMs, peerMs: d ? (d.dnnlBf16Ms as number) : null,
      ratio: d ? (d.dnnlBf16Ms as number) / ours.medianMs : null,
      peer: 'onednn bf16 matmul', peerMissing: d ? undefined : dnnlMissing ?? 'vp_peer_dnnl printed no bf16 line',
      flops,
      extra: {
        oursGflops: flops / (ours.medianMs * 1e6),
        path: d ? String(d.path) : null,
        vsOurSgemm: d ? (d.oursSgemmMs as number) / (d.oursBf16Ms as number) : null,
        sgemmGflops: d ? flops / ((d.oursSgemmMs as number) * 1e6) : null,
        relErrVsSgemm: d ? (d.relErrVsSgemm as number) : null,
      },
    });
  }
}
