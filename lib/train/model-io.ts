// What the trainer and the evaluators need to turn tasks into a model's
// batches and tokens back into text, for the two kinds of model they accept:
//
//  - vp.VideoLM: packed sequences [video][<bos> prompt response <eos>] with
//    its word-level tokenizer (lib/train/batch.ts);
//  - vp.PretrainedModel (a Hugging Face text model): the text side only,
//    sequences [prompt response <eos>] where the prompt is the task's text
//    through the folder's chat template (as a user turn, with the generation
//    prompt) when it has one, else the text with the tokenizer's own special
//    tokens; the response ends with the tokenizer's end-of-sequence token.
//    No video, so no KIM variants and no contrastive term.
//  - a vision-language PretrainedModel (SmolVLM, Idefics3, LLaVA): the same
//    chat sequences with the clip in the user turn. A prompt is tokenized with
//    one image token where the video goes; each batch expands it into the
//    processor's prompt for the clip (lib/pretrained/video.ts) and carries the
//    processed frames as pixelValues. KIM variants are built at the frame
//    level (frameMap → the clip with its key frames replaced, before the vision
//    tower); stage 1's batch and its contrastive groups: lib/train/vlm-sft.ts.
//
// Cost: tokenization and copying, linear in the batch's tokens.
import { PretrainedModel, type PretrainedBatch } from '../pretrained/model.js';
import { concatPixels, substituteFrames } from '../pretrained/vlm-train.js';
import { TextBatchBuilder, vlmKimPlans, vlmSftBatch, type ExpandedPrompt, type VlmSftHooks } from './vlm-sft.js';
import { locateKeyFrames } from '../kim/keyframes.js';
import { planSubstitution, type SubstitutionPolicy } from '../kim/substitution.js';
import { detectTransientFrames } from '../kim/transient.js';
import { EOS_ID, type Tokenizer } from '../model/tokenizer.js';
import { VideoLM, type VideoLMBatch } from '../model/videolm.js';
import { generationBatch, KimPlans, planSftBatch, scoringBatch, type PromptItem, type SftBatchPlanOptions, type TrainClip, type TrainerSftBatch } from './batch.js';
import { clipTasks } from './tasks.js';

/** A model the trainer accepts. */
export type TrainableModel = VideoLM | PretrainedModel;

export interface ModelIO {
  /** No vision input: sequences are text alone. */
  readonly textOnly: boolean;
  /** The frame count and square size clips are fitted to (default: the VideoLM's config). */
  readonly clipShape?: { frames: number; size: number };
  /** A clip's KIM frame map (key frames from its events, else the transient locator), or undefined without key frames. */
  kimFrameMap?(clip: TrainClip, substitution: SubstitutionPolicy, locator: 'transient' | 'none'): Int32Array | undefined;
  /** A cache of the clips' KIM plans for one training call (a vision-language PretrainedModel's). */
  kimPlans?(o: Pick<SftBatchPlanOptions, 'substitution' | 'locator' | 'keyInfo'>): KimPlans;
  /** Hidden width (the contrastive tap's) and decoder layers. */
  readonly width: number;
  readonly layers: number;
  /** A task prompt's token ids, as the batch builders take them. */
  prompt(text: string): Int32Array;
  /** A response's token ids (with the end-of-sequence id when `eos`). */
  response(text: string, eos: boolean): Int32Array;
  /** Generated ids as text (special tokens left out). */
  decode(ids: ArrayLike<number>): string;
  /** Stage 1's packed batch of clips. */
  sftBatch(clips: readonly TrainClip[], o: SftBatchPlanOptions, kimPlans?: KimPlans): TrainerSftBatch;
  /** One sequence per item to generate from. */
  generationBatch(items: readonly PromptItem[]): VideoLMBatch;
  /** Continues each sequence of a generation batch until its end-of-sequence id or maxTokens. */
  generate(batch: VideoLMBatch, o: { maxTokens: number; temperature: number; topP?: number; seed?: number; streams?: Int32Array }): Promise<Int32Array[]>;
  /** Sequences prompt + response; `at[i]` indexes item i's first response log-prob in the batch's text. */
  scoringBatch(items: readonly PromptItem[], responses: readonly ArrayLike<number>[]): { batch: VideoLMBatch; at: number[]; lengths: number[] };
}

function videoIO(model: VideoLM, fn: string): ModelIO {
  const tok = model.tokenizer as Tokenizer;
  if (!tok) throw new TypeError(`${fn}: the model has no tokenizer`);
  const cfg = model.config;
  return {
    textOnly: false,
    width: cfg.width,
    layers: cfg.layers,
    prompt: (text) => tok.encode(text),
    response: (text, eos) => {
      const ids = tok.encode(text);
      if (!eos) return ids;
      const out = new Int32Array(ids.length + 1);
      out.set(ids);
      out[ids.length] = EOS_ID;
      return out;
    },
    decode: (ids) => tok.decode(Array.from(ids).filter((x) => x < tok.vocabSize), { skipSpecial: true }),
    sftBatch: (clips, o, kimPlans) => planSftBatch(clips, cfg, tok, o, kimPlans),
    generationBatch: (items) => generationBatch(items, cfg),
    generate: (batch, o) => model.generateBatch(batch, { ...o, eosId: EOS_ID }),
    scoringBatch: (items, responses) => scoringBatch(items, responses, cfg),
  };
}

function textIO(model: PretrainedModel, fn: string): ModelIO {
  if (!model.hasTokenizer) throw new TypeError(`${fn}: the model has no tokenizer (its folder has no tokenizer.json)`);
  const tok = model.tokenizer;
  const template = model.chatTemplate !== undefined;
  const endId = tok.eosId ?? model.eosIds[0];
  if (endId === undefined) throw new TypeError(`${fn}: the model's tokenizer has no eos_token and its config no eos_token_id (needed to end responses)`);
  const stop = [...new Set([endId, ...model.eosIds])];
  return {
    textOnly: true,
    width: model.spec.hidden,
    layers: model.spec.layers,
    prompt: (text) => (template
      ? tok.encode(model.applyChatTemplate([{ role: 'user', content: text }], { addGenerationPrompt: true }), { addSpecialTokens: false })
      : tok.encode(text)),
    response: (text, eos) => {
      const ids = tok.encode(template ? text : ` ${text}`, { addSpecialTokens: false });
      if (!eos) return ids;
      const out = new Int32Array(ids.length + 1);
      out.set(ids);
      out[ids.length] = endId;
      return out;
    },
    decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }).trim(),
    sftBatch(clips, o) {
      const b = new TextBatchBuilder();
      for (const clip of clips) {
        let tasks = clipTasks(clip.annotation, o.questions !== false);
        if (o.questions === 'one' && tasks.length > 2) {
          const k = ((o.round ?? 0) + (clip.index ?? 0)) % (tasks.length - 1);
          tasks = [tasks[0], tasks[1 + k]];
        }
        for (const t of tasks) b.add(this.prompt(t.prompt), this.response(t.response, true));
      }
      const batch = b.build();
      let targets = 0;
      for (const x of batch.targets!) if (x >= 0) targets++;
      return { batch, groups: [], kimSequences: 0, skipped: [], rows: batch.text.length, targets };
    },
    generationBatch(items) {
      const b = new TextBatchBuilder();
      for (const it of items) b.add(it.promptIds, []);
      return b.build();
    },
    generate: (batch, o) => model.generateBatch(batch, { ...o, eosId: stop }),
    scoringBatch(items, responses) {
      const b = new TextBatchBuilder();
      const at: number[] = [];
      items.forEach((it, i) => at.push(b.add(it.promptIds, responses[i]) + it.promptIds.length - 1));
      return { batch: b.build(), at, lengths: responses.map((r) => r.length) };
    },
  };
}

function vlmIO(model: PretrainedModel, fn: string): ModelIO {
  const text = textIO(model, fn);
  const vlm = model.vlm!;
  const tok = model.tokenizer;
  const pp = (model.preprocessor ?? {}) as { video_sampling?: { max_frames?: number }; max_image_size?: { longest_edge?: number } };
  const frames = Math.min(pp.video_sampling?.max_frames ?? 8, 8);
  const size = vlm.family === 'idefics3' ? pp.max_image_size?.longest_edge ?? vlm.vision.imageSize : vlm.vision.imageSize;
  const MARK = '\u0000video\u0000';
  const template = model.chatTemplate !== undefined;
  /** The task prompt as a user turn whose video goes at one image token. */
  const prompt = (t: string): Int32Array => {
    const rendered = template ? model.applyChatTemplate([{ role: 'user', content: MARK + t }], { addGenerationPrompt: true }) : MARK + t;
    const [pre, post] = rendered.split(MARK);
    return Int32Array.from([...tok.encode(pre, { addSpecialTokens: !template }), vlm.imageTokenId, ...tok.encode(post, { addSpecialTokens: false })]);
  };
  /** The prompt with its image token expanded for the clip (or its KIM variant), and the clip's pixel values. */
  const expand = (promptIds: Int32Array, clipFrames: Uint8Array, frameMap?: Int32Array): ExpandedPrompt => {
    const video = { data: clipFrames, shape: [clipFrames.length / (size * size * 3), size, size, 3] };
    const v = model.processVideo(frameMap ? substituteFrames(video, frameMap, fn, 'clip') : video);
    const at = promptIds.indexOf(vlm.imageTokenId);
    const mid = tok.encode(v.prompt, { addSpecialTokens: false });
    return {
      ids: [...promptIds.subarray(0, at), ...mid, ...promptIds.subarray(at + 1)], px: v.pixelValues.data as Float32Array, shape: v.pixelValues.shape,
      indices: v.indices, tokensPerFrame: v.tokensPerFrame,
    };
  };
  const hooks: VlmSftHooks = { model, frames, size, prompt, response: text.response, expand };
  const withPixels = (b: PretrainedBatch, px: Float32Array[], shape: readonly number[] | null): PretrainedBatch => {
    return shape ? { ...b, pixelValues: concatPixels(px, shape) } : b;
  };
  return {
    ...text,
    textOnly: false,
    clipShape: { frames, size },
    prompt,
    kimFrameMap(clip, substitution, locator) {
      const F = clip.frames.length / (size * size * 3);
      const events = clip.annotation.events ?? [];
      let key = events.length ? locateKeyFrames(clip.frameTimes, events) : [];
      if (!key.length && locator === 'transient') key = detectTransientFrames({ data: clip.frames, shape: [F, size, size, 3] });
      if (!key.length || key.length >= F) return undefined;
      return planSubstitution(F, key, substitution);
    },
    kimPlans: (o) => vlmKimPlans(hooks, o),
    sftBatch: (clips, o, kimPlans) => vlmSftBatch(hooks, clips, o, kimPlans),
    generationBatch(items) {
      const b = new TextBatchBuilder();
      const px: Float32Array[] = [];
      let shape: readonly number[] | null = null;
      for (const it of items) {
        const e = expand(it.promptIds, it.frames, it.frameMap);
        b.add(e.ids, []);
        px.push(e.px);
        shape = e.shape;
      }
      return withPixels(b.build(), px, shape);
    },
    scoringBatch(items, responses) {
      const b = new TextBatchBuilder();
      const px: Float32Array[] = [];
      let shape: readonly number[] | null = null;
      const at: number[] = [];
      items.forEach((it, i) => {
        const e = expand(it.promptIds, it.frames, it.frameMap);
        at.push(b.add(e.ids, responses[i]) + e.ids.length - 1);
        px.push(e.px);
        shape = e.shape;
      });
      return { batch: withPixels(b.build(), px, shape), at, lengths: responses.map((r) => r.length) };
    },
  };
}

/** The batch and token conventions of a model the trainer accepts. */
export function modelIO(model: TrainableModel, fn = 'Trainer'): ModelIO {
  if (model instanceof PretrainedModel) return model.vlm ? vlmIO(model, fn) : textIO(model, fn);
  return videoIO(model, fn);
}

/** True for a model the trainer accepts. */
export function isTrainableModel(m: unknown): m is TrainableModel {
  return m instanceof VideoLM || m instanceof PretrainedModel;
}
