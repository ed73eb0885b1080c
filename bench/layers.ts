// VideoLM building blocks, forward + backward, ours (vp ops through the whole
// stack) vs PyTorch CPU autograd on the same inputs in the same run. Shapes are
// one layer of the planned `small` preset on a packed batch of 4096 tokens
// (d=512, 8 heads of 64, SwiGLU hidden 1408), the LM loss over 1024 target rows
// of an 8192-word vocabulary, and one AdamW step over 8M parameters; then the
// RMSNorm forward alone against onnxruntime-node's fused CPU kernels. Each row also
// gives the kernels' own bandwidth (vp_bench_layers, preallocated outputs, same shapes).
import * as vp from '../lib/index.js';
import { PeerInputs, randomFloats, runNative, runPeer, timeIt, type BenchContext } from './harness.js';
import { loadOrt, onnxModel, ortSession } from './peers/onnx.js';

export async function run(ctx: BenchContext): Promise<void> {
  const N = ctx.quick ? 1024 : 4096, D = 512, H = 8, HD = 64, F = 1408, V = 8192, NT = ctx.quick ? 256 : 1024;
  const P = ctx.quick ? 1 << 21 : 1 << 23;
  const cases: { name: string; label?: string; shape: Record<string, number>; bytes: number; inputs: PeerInputs; ours: () => unknown }[] = [];

  {
    const x = randomFloats(N * D, 1), g = randomFloats(D, 2, 0.5, 1.5), dy = randomFloats(N * D, 3);
    const tx = vp.tensor(x, [N, D]), tg = vp.tensor(g, [D]), tdy = vp.tensor(dy, [N, D]);
    cases.push({
      name: 'rmsnorm', shape: { N, D }, bytes: 4 * N * D * 5,
      inputs: new PeerInputs().add('x', x, [N, D]).add('g', g, [D]).add('dy', dy, [N, D]),
      ours: () => {
        const { rstd } = vp.rmsNorm(tx, tg);
        vp.rmsNormBackward(tdy, tx, tg, rstd);
      },
    });
  }
  {
    const a = randomFloats(N * F, 4, -3, 3), b = randomFloats(N * F, 5), dh = randomFloats(N * F, 6);
    const ta = vp.tensor(a, [N, F]), tb = vp.tensor(b, [N, F]), tdh = vp.tensor(dh, [N, F]);
    cases.push({
      name: 'swiglu', shape: { N, F }, bytes: 4 * N * F * 8,
      inputs: new PeerInputs().add('gate', a, [N, F]).add('up', b, [N, F]).add('dh', dh, [N, F]),
      ours: () => {
        vp.swiglu(ta, tb);
        vp.swigluBackward(tdh, ta, tb);
      },
    });
  }
  {
    const x = randomFloats(N * H * HD, 7);
    const pos = new Int32Array(N);
    for (let i = 0; i < N; i++) pos[i] = i % 512; // 8 packed sequences of 512
    const tx = vp.tensor(x, [N, H, HD]);
    cases.push({
      name: 'rope', shape: { N, H, HD }, bytes: 4 * N * H * HD * 4,
      inputs: new PeerInputs().add('x', x, [N, H, HD]).add('pos', pos, [N]),
      ours: () => {
        const y = vp.rope(tx, pos);
        vp.rope(y, pos, { inverse: true });
      },
    });
  }
  {
    const logits = randomFloats(NT * V, 8, -4, 4);
    const t = new Int32Array(NT);
    for (let i = 0; i < NT; i++) t[i] = i % 7 === 6 ? -1 : (i * 131) % V;
    const tl = vp.tensor(logits, [NT, V]);
    cases.push({
      name: 'cross_entropy', shape: { rows: NT, V }, bytes: 4 * NT * V * 3,
      inputs: new PeerInputs().add('logits', logits, [NT, V]).add('targets', t, [NT]),
      ours: () => {
        const { lse } = vp.crossEntropy(tl, t);
        vp.crossEntropyBackward(tl, t, lse);
      },
    });
    // The same with the gradient written into one reused tensor ({ out }), as a training
    // loop would: the fresh row above pays for faulting in a new 32 MB output each call.
    const dLogits = vp.zeros([NT, V]);
    cases.push({
      name: 'cross_entropy', label: 'cross_entropy fwd+bwd, out reused', shape: { rows: NT, V }, bytes: 4 * NT * V * 3,
      inputs: new PeerInputs().add('logits', logits, [NT, V]).add('targets', t, [NT]),
      ours: () => {
        const { lse } = vp.crossEntropy(tl, t);
        vp.crossEntropyBackward(tl, t, lse, { out: dLogits });
      },
    });
  }
  {
    const table = randomFloats(V * D, 9), dout = randomFloats(N * D, 10);
    const ids = new Int32Array(N);
    for (let i = 0; i < N; i++) ids[i] = (i * 2654435761) % V >>> 0;
    const tt = vp.tensor(table, [V, D]), td = vp.tensor(dout, [N, D]);
    cases.push({
      name: 'embedding', shape: { N, V, D }, bytes: 4 * (N * D * 3 + V * D),
      inputs: new PeerInputs().add('table', table, [V, D]).add('ids', ids, [N]).add('dout', dout, [N, D]),
      ours: () => {
        vp.embedding(tt, ids);
        vp.embeddingBackward(td, ids, V);
      },
    });
  }
  {
    const p = randomFloats(P, 11), g = randomFloats(P, 12);
    const tp = vp.tensor(p, [P]), tg = vp.tensor(g, [P]), m = vp.zeros([P]), v = vp.zeros([P]);
    let step = 0;
    cases.push({
      name: 'adamw', shape: { params: P }, bytes: 4 * P * 7,
      inputs: new PeerInputs().add('p', p, [P]).add('g', g, [P]),
      ours: () => vp.adamwStep(tp, tg, m, v, { lr: 1e-3, weightDecay: 0.1, step: ++step }),
    });
  }

  // The kernels alone: vp_bench_layers (native/bench/bench_layers.cpp) calls them on
  // preallocated buffers at the same shapes, so their fraction of the bandwidth is the
  // kernel's, without the fresh output tensors (page faults) of the whole-stack rows.
  const native = runNative('vp_bench_layers', ctx.quick ? ['--quick'] : [], { VP_NUM_THREADS: String(ctx.threads) });
  const kernel = (name: string): { ms: number; bytes: number } | null => {
    if (!native.ok) return null;
    const parts = native.lines.filter((l) => typeof l.case === 'string' && (l.case === name || (l.case as string).startsWith(`${name}_`)) && typeof l.gbps === 'number');
    if (!parts.length) return null;
    const ms = parts.reduce((s, l) => s + (l.ms as number), 0);
    const bytes = parts.reduce((s, l) => s + (l.gbps as number) * (l.ms as number) * 1e6, 0);
    return { ms, bytes };
  };
  const bw = ctx.ceilings().bandwidthGBs ?? await ctx.copyGBs();
  // Memory-bound kernels: the harness adds their bandwidth as a fraction of the machine's.
  for (const c of cases) {
    const ours = await timeIt(c.ours, { warmup: 2, reps: 7 });
    const peer = runPeer('torch_layers.py', { case: c.name, inputs: c.inputs.specs, reps: 7 }, ctx.threads);
    c.inputs.dispose();
    ctx.report({
      bench: 'layers', case: c.label ?? `${c.name} fwd+bwd`, shape: c.shape,
      oursMs: ours.medianMs, peerMs: peer.ok ? peer.medianMs! : null,
      ratio: peer.ok ? peer.medianMs! / ours.medianMs : null,
      peer: 'torch', peerMissing: peer.missing,
      bytes: c.bytes,
      extra: {
        oursGBps: c.bytes / (ours.medianMs * 1e6), peerGBps: peer.ok ? c.bytes / (peer.medianMs! * 1e6) : null,
        ...(() => {
          const k = kernel(c.name);
          return k
            ? { kernelMs: k.ms, kernelGBps: k.bytes / (k.ms * 1e6), kernelFracOfBandwidth: k.bytes / (k.ms * 1e6) / bw }
            : { kernelMs: null, kernelGBps: null, kernelFracOfBandwidth: null, kernel: native.ok ? 'no native case' : native.missing };
        })(),
      },
    });
  }

  // RMSNorm forward alone against onnxruntime's CPU kernels (it has no backward):
  // SimplifiedLayerNormalization (its fused RMSNorm) and ONNX opset-23 RMSNormalization,
  // each a one-node model on the same x and gain; the fastest is the row's peer.
  {
    const x = randomFloats(N * D, 1), g = randomFloats(D, 2, 0.5, 1.5);
    const tx = vp.tensor(x, [N, D]), tg = vp.tensor(g, [D]);
    const ours = await timeIt(() => vp.rmsNorm(tx, tg).y.dispose(), { warmup: 2, reps: 7 });
    const ref = vp.rmsNorm(tx, tg).y.data as Float32Array;
    const { ort, missing } = loadOrt();
    const timings: [string, number, number][] = [];
    const errors: string[] = [];
    if (ort) {
      const feeds = { x: new ort.Tensor('float32', x, [N, D]), g: new ort.Tensor('float32', g, [D]) };
      for (const [name, op, opset] of [['ort SimplifiedLayerNormalization', 'SimplifiedLayerNormalization', 21], ['ort RMSNormalization-23', 'RMSNormalization', 23]] as const) {
        try {
          const s = await ortSession(ort, onnxModel([{ op, inputs: ['x', 'g'], outputs: ['y'], attrs: { axis: -1, epsilon: { float: 1e-5 } } }],
            [{ name: 'x', shape: [N, D] }, { name: 'g', shape: [D] }], [{ name: 'y', shape: [N, D] }], opset), ctx.threads);
          const y = (await s.run(feeds)).y.data;
          let diff = 0;
          for (let i = 0; i < y.length; i++) diff = Math.max(diff, Math.abs(y[i] - ref[i]));
          timings.push([name, (await timeIt(() => s.run(feeds), { warmup: 2, reps: 7 })).medianMs, diff]);
          await s.release?.();
        } catch (e) {
          errors.push(`${name}: ${(e as Error).message.split('\n')[0].slice(0, 160)}`);
        }
      }
    }
    const best = timings.sort((a, b) => a[1] - b[1])[0];
    const bytes = 4 * N * D * 2;
    ctx.report({
      bench: 'layers', case: 'rmsnorm fwd', shape: { N, D },
      oursMs: ours.medianMs, peerMs: best ? best[1] : null, ratio: best ? best[1] / ours.medianMs : null,
      peer: best ? best[0] : 'onnxruntime', peerMissing: best ? undefined : (missing ?? errors.join('; ')),
      bytes,
      extra: { oursGBps: bytes / (ours.medianMs * 1e6), peerGBps: best ? bytes / (best[1] * 1e6) : null, peerMaxAbsDiff: best ? best[2] : null },
    });
  }
}
