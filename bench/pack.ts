// Frame-substitution token packing against a memcpy-class copy, in the same run.
//
//   npm run bench -- pack            (through the shared runner)
//   node --import=tsx bench/pack.ts  (alone; --quick for a smaller batch)
//
// The batch is what stage 1 packs: 64 videos × 16 frames × 64 tokens × 256 dims;
// per video, sequence A = the original video and sequence B = its KIM variant
// (1–3 key frames carry their nearest neighbours' tokens), so the packed tokens
// are twice the video tokens (131072 rows, 128 MiB). Forward: vp.packTokens;
// backward: vp.packTokensBackward (scatter-add: a duplicated frame receives the
// sum of its copies' gradients).
//
// The peer is Float32Array.prototype.set copying a buffer that moves as many
// bytes as the op must (read + written): forward, the packed size (read 128 MiB,
// write 128 MiB); backward, half of (128 MiB of gradients read + 64 MiB
// written). So ratio = copy time / our time = our bandwidth / the copy's.
// Ours and the copy are timed alternately (median of 15), so drifts of a shared
// machine hit both. Outputs go into reused buffers, as in a training loop; the
// "fresh output" cases allocate them on every call, for ours and for the copy
// (Float32Array.prototype.slice) alike — first-touch page faults dominate there.
import { pathToFileURL } from 'node:url';
import * as vp from '../lib/index.js';
import { makeContext, machineInfo, randomFloats, type BenchContext } from './harness.js';

/** Median times (ms) of `a` and `b`, called alternately `reps` times each after two warm-up rounds. */
function timePair(a: () => void, b: () => void, reps: number): [number, number] {
  for (let i = 0; i < 2; i++) {
    a();
    b();
  }
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < reps; i++) {
    let t0 = performance.now();
    a();
    ta.push(performance.now() - t0);
    t0 = performance.now();
    b();
    tb.push(performance.now() - t0);
  }
  const med = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];
  return [med(ta), med(tb)];
}

export async function run(ctx: BenchContext): Promise<void> {
  const V = ctx.quick ? 16 : 64;
  const F = 16;
  const P = 64;
  const D = 256;
  const reps = ctx.quick ? 7 : 15;

  const video = vp.tensor(randomFloats(V * F * P * D, 1), [V, F, P, D]);
  let seed = 7;
  const next = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  const sequences: vp.PackSegment[][] = [];
  for (let v = 0; v < V; v++) {
    const key = new Set<number>();
    const nKey = 1 + Math.floor(next() * 3);
    while (key.size < nKey) key.add(Math.floor(next() * F));
    sequences.push([{ video: v }], [{ video: v, frames: vp.planSubstitution(F, [...key]) }]);
  }
  const packed = vp.packTokens({ video, sequences });
  const N = packed.tokens.shape[0];
  const dTokens = vp.tensor(randomFloats(N * D, 2), [N, D]);
  const grads = vp.packTokensBackward(dTokens, packed);

  const fwdBytes = 2 * N * D * 4; // read + written
  const bwdBytes = N * D * 4 + V * F * P * D * 4;
  const fwdSrc = dTokens.data as Float32Array;
  const fwdDst = new Float32Array(N * D);
  const bwdSrc = fwdSrc.subarray(0, bwdBytes / 8);
  const bwdDst = fwdDst.subarray(0, bwdBytes / 8);
  const shape = { videos: V, frames: F, tokensPerFrame: P, dims: D, packedRows: N };

  const threadCounts = ctx.threads > 1 && !ctx.quick ? [ctx.threads, 1] : [ctx.threads];
  for (const threads of threadCounts) {
    vp.setNumThreads(threads);
    const cases: [string, () => void, () => void, number][] = [
      ['forward', () => void vp.packTokens({ video, sequences }, { out: packed.tokens }), () => fwdDst.set(fwdSrc), fwdBytes],
      ['backward', () => void vp.packTokensBackward(dTokens, packed, { dVideo: grads.dVideo, dText: grads.dText }), () => bwdDst.set(bwdSrc), bwdBytes],
      ['forward, fresh output', () => void vp.packTokens({ video, sequences }), () => void fwdSrc.slice(), fwdBytes],
      ['backward, fresh output', () => void vp.packTokensBackward(dTokens, packed), () => void bwdSrc.slice(), bwdBytes],
    ];
    for (const [name, ours, peer, bytes] of cases) {
      const [oursMs, peerMs] = timePair(ours, peer, reps);
      ctx.report({
        bench: 'pack', case: `${name}, ${threads} thread${threads > 1 ? 's' : ''}`, shape: { ...shape, threads },
        oursMs, peerMs, ratio: peerMs / oursMs,
        peer: name.includes('fresh') ? 'Float32Array.slice' : 'Float32Array.set',
        bytes,
        extra: { oursGBs: bytes / (oursMs * 1e6), peerGBs: bytes / (peerMs * 1e6), MiBmoved: bytes / 2 ** 20 },
      });
    }
  }
  vp.setNumThreads(ctx.threads);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ctx = makeContext({ quick: process.argv.includes('--quick'), json: process.argv.includes('--json') });
  if (!process.argv.includes('--json')) console.log(`machine: ${JSON.stringify(machineInfo())}`);
  await run(ctx);
}
