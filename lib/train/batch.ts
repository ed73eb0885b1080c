// Packed VideoLM batches for the trainer and the evaluators (docs/method.md, docs/kim.md):
// a builder that appends videos and sequences and knows the packed row of
// every token, the SFT batch of stage 1 (sequences A = video + prompt +
// response, B = the KIM video, and the contrastive row groups), and the
// prompt/response batches that generation, scoring and the RL step use.
import { buildSftBatch, type SftSample, type SftSamplePlan } from '../kim/sft-batch.js';
import { AllKeyFramesError, type SubstitutionPolicy } from '../kim/substitution.js';
import type { TransientOptions } from '../kim/transient.js';
import type { VideoLMBatch, VideoLMConfig, VideoLMSegment } from '../model/videolm.js';
import { planPacking, type PackPlan } from '../ops/pack.js';
import { BOS_ID, EOS_ID, type Tokenizer } from '../model/tokenizer.js';
import type { Annotation } from '../data/dataset.js';
import { annotatedKeywords, captionPrompt, clipTasks, type FittedClip } from './tasks.js';

/** Where a text segment's tokens went: its first index in `text`, its length, and its segment index in the sequence. */
export interface TextPlacement {
  textStart: number;
  length: number;
  segment: number;
}

/** A built batch and its packing plan (packTokens' own plan: the one implementation of the packed-row layout). */
export interface BuiltBatch {
  batch: VideoLMBatch;
  plan: PackPlan;
  /** First packed row of segment `segment` of sequence `sequence` (read off the plan). */
  rowOf(sequence: number, segment: number): number;
}

/** Appends videos and sequences (the model packs them in this order); build() reads the rows off the packing plan. */
export class PackedBatchBuilder {
  readonly #perVideo: number;
  readonly #tokensPerFrame: number;
  readonly #frames: number;
  readonly #videos: Uint8Array[] = [];
  readonly #text: number[] = [];
  readonly #targets: number[] = [];
  readonly sequences: VideoLMSegment[][] = [];

  constructor(cfg: Pick<VideoLMConfig, 'frames' | 'imageSize' | 'patchSize'>) {
    this.#frames = cfg.frames;
    this.#perVideo = cfg.frames * cfg.imageSize * cfg.imageSize * 3;
    this.#tokensPerFrame = (cfg.imageSize / cfg.patchSize) ** 2;
  }

  get tokensPerFrame(): number {
    return this.#tokensPerFrame;
  }

  /** Adds a clip's frames ([frames, size, size, 3] uint8); returns its video index. */
  addVideo(frames: Uint8Array): number {
    if (frames.length !== this.#perVideo) throw new RangeError(`PackedBatchBuilder.addVideo: frames must hold ${this.#perVideo} bytes, got ${frames.length}`);
    this.#videos.push(frames);
    return this.#videos.length - 1;
  }

  /**
   * Adds one sequence: an optional video (with a frame map for a KIM variant)
   * then text segments, each with its targets (-1: none). Returns the
   * sequence's index and where each text segment's tokens went.
   */
  addSequence(video: { video: number; frames?: Int32Array; sourceFramePosition?: boolean } | null, texts: { ids: ArrayLike<number>; targets: ArrayLike<number> }[]): { sequence: number; texts: TextPlacement[] } {
    const seq: VideoLMSegment[] = [];
    if (video) {
      seq.push(video.frames
        ? { video: video.video, frames: video.frames, ...(video.sourceFramePosition ? { sourceFramePosition: true } : {}) }
        : { video: video.video });
    }
    const placed: TextPlacement[] = [];
    for (const t of texts) {
      const textStart = this.#text.length;
      for (let i = 0; i < t.ids.length; i++) {
        this.#text.push(t.ids[i]);
        this.#targets.push(t.targets[i]);
      }
      placed.push({ textStart, length: t.ids.length, segment: seq.length });
      seq.push({ text: [textStart, t.ids.length] });
    }
    this.sequences.push(seq);
    return { sequence: this.sequences.length - 1, texts: placed };
  }

  build(): BuiltBatch {
    const videos = new Uint8Array(this.#videos.length * this.#perVideo);
    this.#videos.forEach((v, i) => videos.set(v, i * this.#perVideo));
    const batch: VideoLMBatch = { videos, text: Int32Array.from(this.#text), targets: Int32Array.from(this.#targets), sequences: this.sequences };
    const plan = planPacking(this.sequences, {
      videos: this.#videos.length, frames: this.#frames, tokensPerFrame: this.#tokensPerFrame, textRows: this.#text.length,
    }, 'PackedBatchBuilder.build');
    // First row of every segment: the rows of a sequence run through its segments in order.
    const starts = this.sequences.map((seq, s) => {
      const out = new Array<number>(seq.length).fill(-1);
      for (let r = plan.cuSeqlens[s]; r < plan.cuSeqlens[s + 1]; r++) if (out[plan.segment[r]] < 0) out[plan.segment[r]] = r;
      // An empty segment starts where the next non-empty one does (or at the sequence's end).
      for (let j = seq.length - 1; j >= 0; j--) if (out[j] < 0) out[j] = j + 1 < seq.length ? out[j + 1] : plan.cuSeqlens[s + 1];
      return out;
    });
    return { batch, plan, rowOf: (sequence, segment) => starts[sequence][segment] };
  }
}

/**
 * `<bos> prompt response [<eos>]` with targets on the response tokens (and the
 * <eos>): position t predicts token t + 1 from the last prompt token on.
 */
export function promptResponseText(promptIds: ArrayLike<number>, responseIds: ArrayLike<number>, addEos: boolean): { ids: Int32Array; targets: Int32Array; responseStart: number } {
  const n = 1 + promptIds.length + responseIds.length + (addEos ? 1 : 0);
  const ids = new Int32Array(n);
  ids[0] = BOS_ID;
  ids.set(Array.from(promptIds), 1);
  ids.set(Array.from(responseIds), 1 + promptIds.length);
  if (addEos) ids[n - 1] = EOS_ID;
  const responseStart = 1 + promptIds.length;
  const targets = new Int32Array(n).fill(-1);
  for (let t = responseStart - 1; t < n - 1; t++) targets[t] = ids[t + 1];
  return { ids, targets, responseStart };
}

/** A prompt to generate from: `<bos> prompt`, no targets. */
export function promptText(promptIds: ArrayLike<number>): { ids: Int32Array; targets: Int32Array } {
  const ids = new Int32Array(1 + promptIds.length);
  ids[0] = BOS_ID;
  ids.set(Array.from(promptIds), 1);
  return { ids, targets: new Int32Array(ids.length).fill(-1) };
}

/** A clip of the training set, fitted to the model, with its annotation. */
export interface TrainClip extends FittedClip {
  annotation: Annotation;
  /** Position of the clip in its dataset (used to rotate questions). */
  index?: number;
}

export interface SftBatchPlanOptions {
  /** Build KIM variants (default true). */
  kim: boolean;
  /** Contrastive alignment (default true); B sequences are packed only when both kim and contrastive are on. */
  contrastive: boolean;
  /** Also train on each clip's multiple-choice questions: all of them, one per clip (rotating with `round`), or none. */
  questions: boolean | 'one';
  /** With questions 'one': clip i trains on question (round + i) mod count. */
  round?: number;
  substitution: SubstitutionPolicy;
  locator: 'transient' | 'none';
  transient?: TransientOptions;
  /**
   * The frame-position embedding of a KIM copy: 'slot' (default; the position of the frame it
   * replaces, as a pixel-level substitution) or 'source' (the frame it was copied from; ablation).
   */
  kimFramePosition?: KimFramePosition;
  /**
   * Where keywords and key frames come from: 'annotated' (default: the annotation's events when
   * present, else the caption and the locator) or 'extracted' (always the caption's keywords and
   * the locator's key frames; annotations unused).
   */
  keyInfo?: KeyInfoSource;
}

/** See SftBatchPlanOptions.keyInfo. */
export type KeyInfoSource = 'annotated' | 'extracted';

/** Which frame-position embedding a substituted frame carries (see SftBatchPlanOptions.kimFramePosition). */
export type KimFramePosition = 'slot' | 'source';

/** The rows the contrastive loss pools, for one sample (empty arrays: the sample has no term). */
export interface ContrastGroup {
  /** Caption rows that spell the keywords (the query). */
  query: number[];
  /** Key-frame rows of the original video in sequence A (the positive key). */
  positive: number[];
  /** The same positions in the KIM sequence B (the hard negative; empty without KIM). */
  negative: number[];
}

export interface TrainerSftBatch {
  batch: VideoLMBatch;
  /** One group per sample that has keywords in its caption and key frames. */
  groups: ContrastGroup[];
  /** Sequences of kind B (KIM videos) packed. */
  kimSequences: number;
  /** Samples whose KIM variant could not be built (every frame a key frame, or no key frame), and why. */
  skipped: { id: string; reason: string }[];
  rows: number;
  targets: number;
}

/**
 * A clip's keywords, key frames and KIM substitution (docs/method.md, stage 1,
 * steps 1-3, through buildSftBatch): annotated events first, else the
 * transient locator on the fitted frames. `caption` is the caption's encoding
 * with offsets (keywordTokens index into it). Throws when the clip cannot be
 * substituted (every frame a key frame).
 */
export function clipKimPlan(clip: TrainClip, cfg: VideoLMConfig, caption: { ids: Int32Array; offsets: Int32Array },
  o: Pick<SftBatchPlanOptions, 'substitution' | 'locator' | 'transient' | 'keyInfo'>): SftSamplePlan {
  const a = clip.annotation;
  const F = cfg.frames;
  const events = o.keyInfo === 'extracted' ? undefined : a.events;
  const sample: SftSample = {
    caption: a.caption,
    numFrames: F,
    frameTimes: clip.frameTimes,
    events,
    ...(o.locator === 'transient' && !events?.length ? { frames: { data: clip.frames, shape: [F, cfg.imageSize, cfg.imageSize, 3] } } : {}),
  };
  const offsets = Array.from({ length: caption.ids.length }, (_, t) => [caption.offsets[2 * t], caption.offsets[2 * t + 1]] as const);
  return buildSftBatch([sample], {
    tokensPerFrame: (cfg.imageSize / cfg.patchSize) ** 2,
    kim: true,
    substitution: o.substitution,
    locator: o.locator,
    transient: o.transient,
    tokenizer: { encode: () => ({ ids: caption.ids, offsets }) },
  }).samples[0];
}

/**
 * Each clip's KIM plan (keywords, key frames, substitution), computed once per
 * training call (sft() or rl()) and read by every step that sees the clip.
 * Keyed by the clip's dataset index; a clip without one is planned each time.
 */
export class KimPlans {
  readonly #plans = new Map<number, { plan?: SftSamplePlan; skipped?: string }>();
  constructor(readonly cfg: VideoLMConfig, readonly tokenizer: Tokenizer,
    readonly options: Pick<SftBatchPlanOptions, 'substitution' | 'locator' | 'transient' | 'keyInfo'>) {}

  /**
   * The clip's plan, or why it has no KIM variant (every frame a key frame).
   * `caption` is the caption's encoding with offsets when the caller has it.
   */
  get(clip: TrainClip, caption?: { ids: Int32Array; offsets: Int32Array }): { plan?: SftSamplePlan; skipped?: string } {
    const hit = clip.index === undefined ? undefined : this.#plans.get(clip.index);
    if (hit) return hit;
    let r: { plan?: SftSamplePlan; skipped?: string };
    try {
      r = { plan: clipKimPlan(clip, this.cfg, caption ?? this.tokenizer.encodeWithOffsets(clip.annotation.caption), this.options) };
    } catch (e) {
      if (!(e instanceof AllKeyFramesError)) throw e;
      r = { skipped: e.message };
    }
    if (clip.index !== undefined) this.#plans.set(clip.index, r);
    return r;
  }
}

/**
 * Stage 1's packed batch: per clip, the caption sequence A (video, prompt,
 * caption), one sequence per question (video, prompt, answer) when asked, and
 * the KIM sequence B (the video with its key frames substituted) when KIM and
 * the contrastive term are on. Keywords, key frames and the substitution come
 * from buildSftBatch (docs/method.md, stage 1, steps 1-3).
 */
export function planSftBatch(clips: readonly TrainClip[], cfg: VideoLMConfig, tokenizer: Tokenizer, o: SftBatchPlanOptions,
  kimPlans: KimPlans = new KimPlans(cfg, tokenizer, o)): TrainerSftBatch {
  const b = new PackedBatchBuilder(cfg);
  const P = b.tokensPerFrame;
  const skipped: { id: string; reason: string }[] = [];
  // Per contrastive sample: its sequences (A: video + caption, B: the KIM video or -1) and what to pool.
  const pending: { seqA: number; seqB: number; captionAt: number; keywordTokens: number[]; keyFrames: number[] }[] = [];
  for (const clip of clips) {
    const a = clip.annotation;
    const v = b.addVideo(clip.frames);
    const cap = tokenizer.encodeWithOffsets(a.caption);
    const text = promptResponseText(tokenizer.encode(captionPrompt(a)), cap.ids, true);
    const { sequence: seqA } = b.addSequence({ video: v }, [text]);
    let extra = clipTasks(a, o.questions !== false).slice(1);
    if (o.questions === 'one' && extra.length > 1) {
      const k = ((o.round ?? 0) + (clip.index ?? 0)) % extra.length;
      extra = [extra[k]];
    }
    for (const task of extra) {
      b.addSequence({ video: v }, [promptResponseText(tokenizer.encode(task.prompt), tokenizer.encode(task.response), true)]);
    }
    if (!o.contrastive) continue;
    const { plan, skipped: why } = kimPlans.get(clip, cap);
    if (!plan) {
      skipped.push({ id: a.id, reason: why! });
      continue;
    }
    if (plan.keyFrames.length === 0 || plan.keywordTokens.length === 0) {
      skipped.push({ id: a.id, reason: plan.keyFrames.length === 0 ? 'no key frames' : `no keyword in the caption (${annotatedKeywords(a).join(', ') || 'none'})` });
      continue;
    }
    const seqB = o.kim ? b.addSequence({ video: v, frames: plan.substitution, sourceFramePosition: o.kimFramePosition === 'source' }, []).sequence : -1;
    pending.push({ seqA, seqB, captionAt: text.responseStart, keywordTokens: plan.keywordTokens, keyFrames: plan.keyFrames });
  }
  const built = b.build();
  // The pooled rows, read off the packing plan: segment 0 of A and B is the video (P rows a frame), segment 1 of A the text.
  const groups: ContrastGroup[] = pending.map((g) => {
    const video = built.rowOf(g.seqA, 0);
    const caption = built.rowOf(g.seqA, 1) + g.captionAt;
    const positive: number[] = [];
    for (const f of g.keyFrames) for (let t = 0; t < P; t++) positive.push(video + f * P + t);
    const negative = g.seqB < 0 ? [] : positive.map((r) => built.rowOf(g.seqB, 0) + (r - video));
    return { query: g.keywordTokens.map((t) => caption + t), positive, negative };
  });
  let targets = 0;
  for (const t of built.batch.targets!) if (t >= 0) targets++;
  const kimSequences = pending.filter((g) => g.seqB >= 0).length;
  return { batch: built.batch, groups, kimSequences, skipped, rows: built.plan.source.length, targets };
}

/** A clip task in a generation or scoring batch: which video, with which frame map (KIM), and the prompt. */
export interface PromptItem {
  frames: Uint8Array;
  /** Source frame per frame (the KIM variant); absent: the original video. */
  frameMap?: Int32Array;
  /** With a frameMap: substituted frames keep their source frame's position embedding (ablation; default: the slot's). */
  sourceFramePosition?: boolean;
  promptIds: Int32Array;
}

/** Sequences `[video][<bos> prompt]`, one per item (videos deduplicated by identity). */
export function generationBatch(items: readonly PromptItem[], cfg: VideoLMConfig): VideoLMBatch {
  const b = new PackedBatchBuilder(cfg);
  const seen = new Map<Uint8Array, number>();
  for (const it of items) {
    let v = seen.get(it.frames);
    if (v === undefined) seen.set(it.frames, (v = b.addVideo(it.frames)));
    b.addSequence({ video: v, frames: it.frameMap, sourceFramePosition: it.sourceFramePosition }, [promptText(it.promptIds)]);
  }
  return b.build().batch;
}

/**
 * Sequences `[video][<bos> prompt response]` with targets on the responses;
 * `responses[i]` is item i's response (with its <eos> when it has one).
 * Returns, per item, the index in `text` of the log-prob of its first response
 * token (tokenLogprobs[at + j] is the log-prob of response token j).
 */
export function scoringBatch(items: readonly PromptItem[], responses: readonly ArrayLike<number>[], cfg: VideoLMConfig): { batch: VideoLMBatch; at: number[]; lengths: number[] } {
  const b = new PackedBatchBuilder(cfg);
  const seen = new Map<Uint8Array, number>();
  const at: number[] = [];
  const lengths: number[] = [];
  items.forEach((it, i) => {
    let v = seen.get(it.frames);
    if (v === undefined) seen.set(it.frames, (v = b.addVideo(it.frames)));
    const t = promptResponseText(it.promptIds, responses[i], false);
    const { texts } = b.addSequence({ video: v, frames: it.frameMap, sourceFramePosition: it.sourceFramePosition }, [t]);
    at.push(texts[0].textStart + t.responseStart - 1);
    lengths.push(responses[i].length);
  });
  return { batch: b.build().batch, at, lengths };
}

