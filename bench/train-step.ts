// One VideoLM training step (forward, backward, clipping, AdamW) for the `tiny`
// and `small` presets: tokens per second, ours (the native model through
// vp.VideoLM.trainStep, off the main thread) vs the same architecture written in
// PyTorch CPU (bench/peers/torch_train_step.py) on the same batch, starting from
// the same parameters, in the same run. The peer's first-step loss is reported
// next to ours as a check that both compute the same model.
//
// Batch: B sequences of [video (frames × patches tokens), caption of T tokens];
// the LM loss is next-token prediction inside the caption.
//
// The `small bf16` case runs the small preset with setComputeDtype('bfloat16')
// (mixed precision: bf16 GEMM operands, float32 master weights) against the peer
// under torch.autocast('cpu', bfloat16); `vsFloat32` is our float32 small step's
// time over this one (both from this run).
import * as vp from '../lib/index.js';
import { seededRandom } from '../lib/random.js';
import { PeerInputs, runPeer, timeIt, type BenchContext } from './harness.js';

export async function run(ctx: BenchContext): Promise<void> {
  const cases: { preset: vp.VideoLMPreset; B: number; T: number; bf16?: boolean }[] = ctx.quick
    ? [{ preset: 'tiny', B: 2, T: 32 }, { preset: 'small', B: 1, T: 32 }, { preset: 'small', B: 1, T: 32, bf16: true }]
    : [{ preset: 'tiny', B: 8, T: 32 }, { preset: 'small', B: 1, T: 64 }, { preset: 'small', B: 1, T: 64, bf16: true }];
  let smallF32Ms: number | null = null;
  for (const c of cases) {
    const model = await vp.VideoLM.create({ preset: c.preset, seed: 1 });
    if (c.bf16) await model.setComputeDtype('bfloat16');
    const cfg = model.config;
    const r = seededRandom(7);
    const per = cfg.frames * cfg.imageSize * cfg.imageSize * 3;
    const videos = new Uint8Array(c.B * per);
    for (let i = 0; i < videos.length; i++) videos[i] = Math.floor(r() * 256);
    const text = new Int32Array(c.B * c.T);
    for (let i = 0; i < text.length; i++) text[i] = 6 + Math.floor(r() * (cfg.vocab - 6));
    const sequences: vp.VideoLMSegment[][] = [];
    for (let b = 0; b < c.B; b++) sequences.push([{ video: b }, { text: [b * c.T, c.T] }]);
    const batch: vp.VideoLMBatch = { videos, text, sequences };
    const P = (cfg.imageSize / cfg.patchSize) ** 2;
    const tokens = c.B * (cfg.frames * P + c.T);
    const opts = { lr: 1e-4, weightDecay: 0.1, maxGradNorm: 1.0, beta1: 0.9, beta2: 0.95, eps: 1e-8 };

    const inputs = new PeerInputs();
    const params = model.parameters();
    for (const p of model.paramInfo) inputs.add(`p.${p.name}`, params[p.name], p.shape);
    inputs.add('videos', Float32Array.from(videos), [c.B, cfg.frames, cfg.imageSize, cfg.imageSize, 3]);
    inputs.add('text', text, [c.B, c.T]);

    // First step from the shared initial parameters: the loss to compare with the peer's.
    const first = await model.trainStep(batch, opts);
    const reps = c.preset === 'small' ? 3 : 5;
    const ours = await timeIt(() => model.trainStep(batch, opts), { warmup: 0, reps, minMs: 0 });
    const peer = runPeer('torch_train_step.py', {
      inputs: inputs.specs, config: cfg, B: c.B, T: c.T, opt: opts, reps, autocast: c.bf16 ?? false,
      params: model.paramInfo.map((p) => ({ name: p.name, decay: p.decay })),
    }, ctx.threads);
    inputs.dispose();
    model.dispose();
    if (c.preset === 'small' && !c.bf16) smallF32Ms = ours.medianMs;
    ctx.report({
      bench: 'train-step', case: c.bf16 ? `${c.preset} bf16` : c.preset, shape: { B: c.B, T: c.T, tokens, params: model.numParams, width: cfg.width, layers: cfg.layers },
      oursMs: ours.medianMs, peerMs: peer.ok ? peer.medianMs! : null,
      ratio: peer.ok ? peer.medianMs! / ours.medianMs : null,
      peer: c.bf16 ? 'torch autocast bf16' : 'torch', peerMissing: peer.missing,
      // The usual estimate of a training step's work: 6 flops per parameter per token
      // (forward 2, backward 4), attention's T² terms left out.
      flops: 6 * model.numParams * tokens,
      extra: {
        oursTokPerS: Math.round(tokens / (ours.medianMs / 1000)),
        peerTokPerS: peer.ok ? Math.round(tokens / (peer.medianMs! / 1000)) : null,
        oursLoss0: Number(first.loss.toFixed(5)),
        peerLoss0: peer.ok ? Number((peer.loss0 as number).toFixed(5)) : null,
        ...(c.bf16 ? { computeDtype: 'bfloat16', vsFloat32: smallF32Ms === null ? null : smallF32Ms / ours.medianMs } : {}),
      },
    });
  }
}
