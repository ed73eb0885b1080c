// SGEMM: ours (vp.matmul through the whole stack) vs PyTorch CPU (a @ b) on the
// same square float32 inputs in the same run; GFLOP/s of each and the ratio.
import * as vp from '../lib/index.js';
import { PeerInputs, randomFloats, runPeer, timeIt, type BenchContext } from './harness.js';

export async function run(ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [256, 1024] : [256, 512, 1024, 2048];
  for (const n of sizes) {
    const a = randomFloats(n * n, n);
    const b = randomFloats(n * n, n + 1);
    const ta = vp.tensor(a, [n, n]);
    const tb = vp.tensor(b, [n, n]);
    const reps = n >= 2048 ? 5 : 10;
    const ours = await timeIt(() => vp.matmul(ta, tb), { warmup: 2, reps });
    const inputs = new PeerInputs().add('a', a, [n, n]).add('b', b, [n, n]);
    const peer = runPeer('torch_gemm.py', { inputs: inputs.specs, reps }, ctx.threads);
    inputs.dispose();
    const flops = 2 * n ** 3;
    const oursG = flops / (ours.medianMs * 1e6);
    const peerG = peer.ok ? flops / (peer.medianMs! * 1e6) : null;
    ctx.report({
      bench: 'gemm', case: `${n}x${n}x${n}`, shape: { m: n, n, k: n },
      oursMs: ours.medianMs, peerMs: peer.ok ? peer.medianMs! : null,
      ratio: peer.ok ? peer.medianMs! / ours.medianMs : null,
      peer: 'torch', peerMissing: peer.missing,
      extra: { oursGflops: oursG, peerGflops: peerG },
    });
  }
}
