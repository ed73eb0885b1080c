// Train, evaluate and save a VideoLM the VideoPerceiver way (docs/training.md).
// Run from a checkout: node --import=tsx examples/train.ts   (or import 'videoperceiver' in your project)
import * as vp from '../lib/index.js';

// 1. Data: a folder with annotations.jsonl + clips (here: generated, deterministic).
vp.synthDataset('example-data/train', { count: 200, seed: 1, objects: 1, objectScale: 1.6, frames: 8, fps: 4, overwrite: true });
vp.synthDataset('example-data/test', { count: 50, seed: 2, objects: 1, objectScale: 1.6, frames: 8, fps: 4, overwrite: true });
const train = vp.openDataset('example-data/train');
const test = vp.openDataset('example-data/test');

// 2. A model with a tokenizer built from the training text.
const tokenizer = vp.tokenizerForDataset(train.annotations);
const model = await vp.VideoLM.create({ preset: 'tiny', tokenizer, seed: 1 }); // 8 frames of 32x32, 8x8 patches

// 3. Stage 1 (SFT with KIM + contrastive), then stage 2 (comparative GRPO).
const trainer = new vp.Trainer(model, {
  runDir: 'example-run', // metrics.jsonl + checkpoints; Ctrl-C saves one
  onStep: (e) => e.type === 'step' && e.step % 25 === 0 && console.log(e.stage, e.step, e.loss.toFixed(3)),
});
await trainer.sft(train, { steps: 100, batchSize: 8, lr: 2e-3 });
await trainer.rl(train, { steps: 10, groupSize: 4 });

// 4. Evaluate on held-out clips and save.
const { summary } = await trainer.evaluate(test);
console.log(summary); // accuracy_event, accuracy_motion, keywordRecall, ...
await model.save('example-model');
console.log(await model.generate(test.load(0).frames, vp.CAPTION_PROMPT));
