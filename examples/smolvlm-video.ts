// Fine-tune SmolVLM2 on videos with LoRA and the VideoPerceiver method (docs/pretrained.md). Bring the model folder yourself:
//   huggingface-cli download HuggingFaceTB/SmolVLM2-256M-Video-Instruct --local-dir SmolVLM2-256M-Video-Instruct
// Run from a checkout: node --import=tsx examples/smolvlm-video.ts DATA.json [MODEL_DIR]
import * as vp from '../lib/index.js';

const [data = 'data.json', dir = 'SmolVLM2-256M-Video-Instruct'] = process.argv.slice(2);
const model = await vp.loadPretrained(dir); // SigLIP tower + pixel shuffle + SmolLM2, CPU float32
model.addLora({ rank: 8, alpha: 16 }); // adapters on the text model; the vision tower stays frozen

// ShareGPT / LLaVA records { video, conversations: [{ from: 'human', value }, { from: 'gpt', value }] }:
// the last human turn is the prompt, the gpt answer the target. Every video is checked here.
const train = vp.openConversations(data);

const trainer = new vp.Trainer(model, {
  runDir: 'smolvlm-run', // metrics.jsonl + checkpoints; Ctrl-C saves one
  onStep: (e) => e.type === 'step' && console.log(`${e.stage} step ${e.step}: loss ${e.loss.toFixed(4)}`),
});
// Stage 1, SFT with KIM + contrastive: the key frames are those the transient detector finds in each clip;
// the KIM copy has them replaced by their neighbours before the vision tower, and InfoNCE at the middle layer
// pulls the answer's event keywords towards the key frames' visual tokens, the KIM copy's as hard negatives.
await trainer.sft(train, { steps: 20, batchSize: 2, lr: 1e-4, kim: true, contrastive: true, locator: 'transient' });
// Stage 2, comparative GRPO: answers from each clip and from its KIM copy; the reward is the answer's keyword F1.
await trainer.rl(train, { steps: 5, promptsPerStep: 2, groupSize: 4, maxTokens: 48, lr: 1e-5 });

const clip = vp.decodeVideo(train.videoPath(0), { fps: 1, maxFrames: 8 }); // as the processor samples: 1 frame/s
const prompt = `<video>${train.annotations[0].prompt}`;
console.log(await model.generate(clip, [{ role: 'user', content: prompt }], { maxTokens: 48, fps: 1 }));
await model.saveAdapter('smolvlm-lora'); // PEFT layout
await model.save('smolvlm-tuned'); // the Hugging Face layout, same tensor names and dtypes, adapters merged
trainer.dispose();
model.dispose();
