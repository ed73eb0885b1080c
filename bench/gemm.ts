// SGEMM: ours (vp.matmul through the whole stack) vs the strongest CPU SGEMM a
// user could pick instead, on the same square float32 inputs in the same run:
//  - PyTorch CPU (a @ b, on the BLAS that bench/run.ts checked at start);
//  - oneDNN (Debian's libdnnl-dev): dnnl_sgemm and the matmul primitive, timed by
//    build-native/vp_peer_dnnl (native/bench/peer_dnnl.cpp) next to our vp::sgemm
//    in the same process on the same buffers (the fairest ratio: `vsDnnlNative`).
// The row's peer is the fastest of them; its ratio is that peer's time over ours.
// GFLOP/s of each; the harness adds the fraction of the FMA peak.
import * as vp from '../lib/index.js';
import { PeerInputs, randomFloats, runNative, runPeer, timeIt, type BenchContext } from './harness.js';

export async function run(ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [256, 1024] : [256, 512, 1024, 2048];
  // oneDNN threads: OpenMP, one per pool thread (as PyTorch's peers get).
  const dnnl = runNative('vp_peer_dnnl', ['--sizes', sizes.join(','), ...(ctx.quick ? ['--quick'] : [])],
    { OMP_NUM_THREADS: String(ctx.threads) });
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
}
