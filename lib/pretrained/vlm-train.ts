// Training batches for a vision-language PretrainedModel from videos and
// conversations, with KIM applied at the frame level: a sample's `frameMap`
// (frame i shows source frame frameMap[i], vp.planSubstitution's output)
// rebuilds the clip before it is processed, so the copy goes through the
// vision tower in the substituted slot, carrying that slot's place in the
// prompt (its timestamp and position). Each sample is one sequence: the chat
// template's user turn (the video's prompt text where "<video>" is, else
// first, then the prompt) and the assistant's response as the only targets.
// Cost: the processor's (lib/pretrained/video.ts) plus tokenization.
import { rangeError, typeError, describe } from '../errors.js';
import { tensor, type Tensor } from '../tensor.js';
import { checkVideo } from './video.js';
import type { PretrainedBatch, PretrainedModel } from './model.js';

export interface VlmSample {
  /** uint8 RGB frames { data, shape: [F, H, W, 3] } (vp.readNpy, vp.decodeVideo). */
  video: unknown;
  prompt: string;
  response: string;
  /** KIM: frame i of the variant shows source frame frameMap[i] (length F). */
  frameMap?: ArrayLike<number>;
  /** Frame rate of the video (default: decodeVideo's, else 1). */
  fps?: number;
}

/** The clip with frame i replaced by frame map[i] (the KIM variant at the frame level). */
export function substituteFrames(video: unknown, map: ArrayLike<number>, fn = 'substituteFrames', arg = 'video'): { data: Uint8Array; shape: number[]; sourceFps?: number } {
  const v = checkVideo(fn, arg, video);
  if (map.length !== v.F) throw rangeError(fn, 'frameMap.length', `${v.F} (one source frame per frame)`, `${map.length}`);
  const size = v.H * v.W * 3;
  const out = new Uint8Array(v.data.length);
  for (let i = 0; i < v.F; i++) {
    const s = map[i];
    if (!Number.isInteger(s) || s < 0 || s >= v.F) throw rangeError(fn, `frameMap[${i}]`, `a frame index in [0, ${v.F})`, `${s}`);
    out.set(v.data.subarray(s * size, (s + 1) * size), i * size);
  }
  return { data: out, shape: [v.F, v.H, v.W, 3], ...(v.fps ? { sourceFps: v.fps } : {}) };
}

/** A packed batch of samples (one sequence each) with their frames as pixelValues. */
export function vlmTrainBatch(model: PretrainedModel, samples: readonly VlmSample[]): PretrainedBatch {
  const fn = 'vlmTrainBatch';
  if (!model.vlm) throw typeError(fn, 'model', 'a vision-language PretrainedModel', model.architecture);
  if (!Array.isArray(samples) || samples.length === 0) throw typeError(fn, 'samples', 'a non-empty array of { video, prompt, response }', describe(samples));
  const tok = model.tokenizer;
  const text: number[] = [];
  const targets: number[] = [];
  const sequences: { text: [number, number] }[][] = [];
  const pixels: Float32Array[] = [];
  let shape: number[] | null = null;
  const end = tok.eosId ?? model.eosIds[0];
  samples.forEach((s, i) => {
    if (typeof s?.prompt !== 'string' || typeof s.response !== 'string') throw typeError(fn, `samples[${i}]`, '{ video, prompt: string, response: string }', describe(s));
    const clip = s.frameMap ? substituteFrames(s.video, s.frameMap, fn, `samples[${i}].video`) : s.video;
    const v = model.processVideo(clip, s.fps === undefined ? {} : { fps: s.fps });
    if (shape && (shape[2] !== v.pixelValues.shape[2] || shape[3] !== v.pixelValues.shape[3])) throw rangeError(fn, `samples[${i}].video`, 'frames processed to the same size as the others', `${v.pixelValues.shape}`);
    shape = [...v.pixelValues.shape];
    pixels.push(v.pixelValues.data as Float32Array);
    const user = s.prompt.includes('<video>') ? s.prompt.replace('<video>', v.prompt) : v.prompt + s.prompt;
    const promptText = model.chatTemplate !== undefined ? model.applyChatTemplate([{ role: 'user', content: user }], { addGenerationPrompt: true }) : user;
    const p = tok.encode(promptText, { addSpecialTokens: model.chatTemplate === undefined });
    const r = tok.encode(s.response, { addSpecialTokens: false });
    const ids = [...p, ...r, ...(end !== undefined ? [end] : [])];
    const start = text.length;
    ids.forEach((id, t) => {
      text.push(id);
      targets.push(t >= p.length - 1 && t + 1 < ids.length ? ids[t + 1] : -1);
    });
    sequences.push([{ text: [start, ids.length] }]);
  });
  return { text: Int32Array.from(text), targets: Int32Array.from(targets), sequences, pixelValues: concatPixels(pixels, shape!) };
}

/** Processed frames of several clips, [n, C, H, W] each of the same C, H, W (`shape`), as one tensor. */
export function concatPixels(pixels: readonly Float32Array[], shape: readonly number[]): Tensor {
  const n = pixels.reduce((a, p) => a + p.length, 0);
  const all = new Float32Array(n);
  let o = 0;
  for (const p of pixels) {
    all.set(p, o);
    o += p.length;
  }
  const [, C, H, W] = shape;
  return tensor(all, [n / (C * H * W), C, H, W]);
}
