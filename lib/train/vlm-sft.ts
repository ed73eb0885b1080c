// Stage 1's packed batch for a vision-language PretrainedModel (SmolVLM,
// Idefics3, LLaVA), with the contrastive tap of the method (docs/method.md,
// stage 1, steps 1-5) as the built-in model's batch has it (lib/train/batch.ts):
//
//   per clip, one sequence per task: the chat prompt with the clip's frames
//   expanded in place (the processor's prompt, lib/pretrained/video.ts), then
//   the response (the only targets). With `contrastive`, the caption
//   sequence A gives one contrastive group: the query is the caption tokens
//   that spell the clip's keywords, the positive key the visual-token rows of
//   its key frames in A; with `kim` too, a sequence B (the same prompt over the
//   KIM variant of the clip, substituted at the frame level before the vision
//   tower, no targets) is packed after the clip's tasks and its rows at the
//   same places are the hard negatives. Keywords, key frames and the
//   substitution come from clipKimPlan (annotated events, else the caption's
//   keywords and the transient locator), as for the built-in model.
//
// The caption's token offsets are read off the tokenizer's decoder (the text of
// each prefix of the response's ids), so any Hugging Face tokenizer works.
// Cost: the processor's per clip and variant, plus O(n²) decoding of each
// caption's n tokens (captions are short), linear in the batch otherwise.
import { rangeError } from '../errors.js';
import type { PretrainedBatch, PretrainedModel } from '../pretrained/model.js';
import { concatPixels, substituteFrames } from '../pretrained/vlm-train.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { VideoLMConfig } from '../model/videolm.js';
import { KimPlans, type ContrastGroup, type SftBatchPlanOptions, type TrainClip, type TrainerSftBatch } from './batch.js';
import { annotatedKeywords, clipTasks } from './tasks.js';

/** A prompt expanded for a clip: ids, pixel values, and which source frame each processed frame is. */
export interface ExpandedPrompt {
  ids: number[];
  px: Float32Array;
  shape: readonly number[];
  /** Source frame index of each processed frame (the processor may sample). */
  indices: readonly number[];
  /** Visual tokens per processed frame. */
  tokensPerFrame: number;
}

/** Packs text sequences (each prompt + response, targets on the response) into a PretrainedBatch. */
export class TextBatchBuilder {
  readonly #text: number[] = [];
  readonly #targets: number[] = [];
  readonly sequences: { text: [number, number] }[][] = [];

  /** Adds one sequence `prompt response`, targets on the response; returns where the prompt starts in `text`. */
  add(prompt: ArrayLike<number>, response: ArrayLike<number>): number {
    const start = this.#text.length;
    const ids = [...Array.from(prompt), ...Array.from(response)];
    const first = prompt.length - 1; // the last prompt token predicts the first response token
    ids.forEach((id, t) => {
      this.#text.push(id);
      this.#targets.push(t >= first && t + 1 < ids.length ? ids[t + 1] : -1);
    });
    this.sequences.push([{ text: [start, ids.length] }]);
    return start;
  }

  build(): PretrainedBatch {
    return { text: Int32Array.from(this.#text), targets: Int32Array.from(this.#targets), sequences: this.sequences };
  }
}

/**
 * Token offsets of `ids` (a tokenization of `text`, possibly with a leading
 * space the text lacks) in `text`: token t spans [len(decode(ids[..t])), len(decode(ids[..t+1]))),
 * shifted by how much longer the full decoding is than `text`.
 */
export function decodedOffsets(decode: (ids: ArrayLike<number>) => string, ids: Int32Array, text: string): Int32Array {
  const n = ids.length;
  const ends = new Int32Array(n + 1);
  for (let t = 1; t <= n; t++) ends[t] = decode(ids.subarray(0, t)).length;
  const shift = ends[n] - text.length;
  const out = new Int32Array(2 * n);
  for (let t = 0; t < n; t++) {
    out[2 * t] = Math.max(0, ends[t] - shift);
    out[2 * t + 1] = Math.max(0, ends[t + 1] - shift);
  }
  return out;
}

/** What vlmSftBatch needs from the model's batch conventions (lib/train/model-io.ts). */
export interface VlmSftHooks {
  model: PretrainedModel;
  /** Fitted clips' frame count and square side. */
  frames: number;
  size: number;
  /** A task prompt's ids with one image token where the video goes. */
  prompt(text: string): Int32Array;
  /** A response's ids (with the end id when `eos`). */
  response(text: string, eos: boolean): Int32Array;
  /** The prompt with its image token expanded for the clip (its KIM variant with a frame map). */
  expand(promptIds: Int32Array, frames: Uint8Array, frameMap?: Int32Array): ExpandedPrompt;
}

/**
 * The KIM plans of a vision-language model's clips (keywords in its tokenizer's
 * caption tokens, key frames, substitution), one cache per plan options.
 */
export function vlmKimPlans(h: VlmSftHooks, o: Pick<SftBatchPlanOptions, 'substitution' | 'locator' | 'keyInfo'>): KimPlans {
  // clipKimPlan reads the clip's frame count and size from a VideoLM config; one "token" per frame here.
  const cfg = { frames: h.frames, imageSize: h.size, patchSize: h.size } as VideoLMConfig;
  const tok = h.model.tokenizer;
  const encodeWithOffsets = (caption: string) => {
    const ids = h.response(caption, false);
    return { ids, offsets: decodedOffsets((x) => tok.decode(x), ids, caption) };
  };
  return new KimPlans(cfg, { encodeWithOffsets } as unknown as Tokenizer, o);
}

/** Rows of the visual tokens of each processed frame in a sequence starting at `start`. */
function frameRows(e: ExpandedPrompt, imageId: number, start: number): number[][] {
  const pos: number[] = [];
  e.ids.forEach((id, t) => id === imageId && pos.push(start + t));
  const k = e.tokensPerFrame;
  return e.indices.map((_, j) => pos.slice(j * k, (j + 1) * k));
}

/** Stage 1's batch of clips for a vision-language model (see the file comment). */
export function vlmSftBatch(h: VlmSftHooks, clips: readonly TrainClip[], o: SftBatchPlanOptions, plans?: KimPlans): TrainerSftBatch {
  const useKim = o.contrastive && o.kim;
  if (useKim && o.kimFramePosition === 'source')
    throw rangeError('Trainer.sft', 'opts.kimFramePosition', "'slot' for a vision-language model (its frames are substituted before the vision tower, so a copy always fills its slot)", "'source'");
  const imageId = h.model.vlm!.imageTokenId;
  const b = new TextBatchBuilder();
  const px: Float32Array[] = [];
  let shape: readonly number[] | null = null;
  const groups: ContrastGroup[] = [];
  const skipped: { id: string; reason: string }[] = [];
  let kimSequences = 0;
  const push = (e: ExpandedPrompt, response: ArrayLike<number>): number => {
    px.push(e.px);
    shape = e.shape;
    return b.add(e.ids, response);
  };
  for (const clip of clips) {
    const a = clip.annotation;
    let tasks = clipTasks(a, o.questions !== false);
    if (o.questions === 'one' && tasks.length > 2) {
      const k = ((o.round ?? 0) + (clip.index ?? 0)) % (tasks.length - 1);
      tasks = [tasks[0], tasks[1 + k]];
    }
    let captionA: { e: ExpandedPrompt; start: number; promptIds: Int32Array } | undefined;
    for (const t of tasks) {
      const promptIds = h.prompt(t.prompt);
      const e = h.expand(promptIds, clip.frames);
      const start = push(e, h.response(t.response, true));
      if (t.kind === 'caption') captionA = { e, start, promptIds };
    }
    if (!o.contrastive || !captionA) continue;
    const { plan, skipped: why } = (plans ?? vlmKimPlans(h, o)).get(clip);
    if (!plan) {
      skipped.push({ id: a.id, reason: why! });
      continue;
    }
    const { e, start } = captionA;
    const rowsA = frameRows(e, imageId, start);
    const keyed = e.indices.map((src, j) => (plan.keyFrames.includes(src) ? j : -1)).filter((j) => j >= 0);
    if (plan.keyFrames.length === 0 || keyed.length === 0 || plan.keywordTokens.length === 0) {
      const reason = plan.keyFrames.length === 0 ? 'no key frames' : keyed.length === 0 ? 'no key frame among the frames the processor kept'
        : `no keyword in the caption (${annotatedKeywords(a).join(', ') || 'none'})`;
      skipped.push({ id: a.id, reason });
      continue;
    }
    const positive = keyed.flatMap((j) => rowsA[j]);
    const query = plan.keywordTokens.map((t) => start + e.ids.length + t);
    let negative: number[] = [];
    if (useKim) {
      const eb = h.expand(captionA.promptIds, clip.frames, plan.substitution);
      const rowsB = frameRows(eb, imageId, push(eb, []));
      negative = keyed.flatMap((j) => rowsB[j]);
      kimSequences++;
    }
    groups.push({ query, positive, negative });
  }
  const built = b.build();
  const batch = shape ? { ...built, pixelValues: concatPixels(px, shape) } : built;
  let targets = 0;
  for (const x of batch.targets!) if (x >= 0) targets++;
  return { batch, groups, kimSequences, skipped, rows: batch.text.length, targets };
}
