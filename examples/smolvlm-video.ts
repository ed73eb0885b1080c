// Fine-tune SmolVLM2 on videos with LoRA and KIM (docs/pretrained.md). Bring the model folder yourself:
//   huggingface-cli download HuggingFaceTB/SmolVLM2-256M-Video-Instruct --local-dir SmolVLM2-256M-Video-Instruct
// Run from a checkout: node --import=tsx examples/smolvlm-video.ts DATA.json [MODEL_DIR]
import * as vp from '../lib/index.js';

const [data = 'data.json', dir = 'SmolVLM2-256M-Video-Instruct'] = process.argv.slice(2);
const model = await vp.loadPretrained(dir); // SigLIP tower + pixel shuffle + SmolLM2, CPU float32
model.addLora({ rank: 8, alpha: 16 }); // adapters on the text model; the vision tower stays frozen

// ShareGPT / LLaVA records: { video, conversations: [{ from: 'human', value }, { from: 'gpt', value }] }.
const samples: vp.VlmSample[] = [];
for (const r of vp.readConversations(data)) {
  const clip = vp.decodeVideo(r.video, { fps: 1, maxFrames: 8 }); // as the processor samples: 1 frame/s
  const prompt = r.turns.find((t) => t.role === 'user')!.content;
  const response = r.turns.find((t) => t.role === 'assistant')!.content;
  samples.push({ video: clip, prompt, response, fps: 1 });
  // KIM: the frames around the middle second replaced by their neighbours, before the vision tower.
  const mid = Math.floor(clip.shape[0] / 2);
  samples.push({ video: clip, prompt, response, fps: 1, frameMap: vp.planSubstitution(clip.shape[0], [mid]) });
}

for (let step = 0; step < 20; step++) {
  const batch = vp.vlmTrainBatch(model, samples.slice((2 * step) % samples.length, ((2 * step) % samples.length) + 2));
  const r = await model.trainStep(batch, { lr: 1e-4 });
  console.log(`step ${r.step}: loss ${r.loss.toFixed(4)}`);
}

const first = vp.readConversations(data)[0];
console.log(await model.generate(vp.decodeVideo(first.video, { fps: 1, maxFrames: 8 }), [{ role: 'user', content: '<video>Describe this video.' }], { maxTokens: 48, fps: 1 }));
await model.saveAdapter('smolvlm-lora'); // PEFT layout
await model.save('smolvlm-tuned'); // the Hugging Face layout, same tensor names and dtypes, adapters merged
model.dispose();
