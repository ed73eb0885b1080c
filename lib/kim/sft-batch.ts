// vp.buildSftBatch: stage 1's packed batch (docs/method.md, stage 1 steps 1–4).
//
// For each sample: event keywords (the annotation's events[].keyword when
// present, else extracted from the caption), key frames (annotated time spans,
// else the transient or similarity locator), the KIM substitution, and the
// caption's tokens. The batch packs, per sample, sequence A = the original
// video's tokens followed by the caption's tokens, and sequence B = the KIM
// video's tokens; it lists the packed rows the contrastive loss needs: the
// key-frame token rows in A, the same rows in B (the hard negatives), and the
// caption rows that spell the keyword (the query).
import { describe, rangeError, typeError } from '../errors.js';
import { packTokens, planPacking, type Packed, type PackSegment } from '../ops/pack.js';
import { Tensor } from '../tensor.js';
import { extractEventKeywordSpans, findKeywordSpan } from './keywords.js';
import { locateKeyFrames, locateKeyFramesBySimilarity } from './keyframes.js';
import { AllKeyFramesError, planSubstitution, type SubstitutionPolicy } from './substitution.js';
import { detectTransientFrames, type FramesInput, type TransientOptions } from './transient.js';

export interface SftEvent {
  keyword?: string;
  start?: number;
  end?: number;
}

export interface SftSample {
  caption: string;
  /** `[F, H, W, C]` frames; used by the transient locator and to count frames. */
  frames?: FramesInput;
  /** Frame count when `frames` is not given. */
  numFrames?: number;
  /** Time of each frame, in the units of the events' spans. Default: `f / fps`, or the frame index. */
  frameTimes?: ArrayLike<number>;
  fps?: number;
  events?: readonly SftEvent[];
  /** Key frames decided elsewhere (used as they are). */
  keyFrames?: readonly number[];
  /** `[F, D]` frame features for the similarity locator. */
  frameFeatures?: Tensor | Float32Array;
}

/** What the batch needs from a tokenizer: ids, and each token's [start, end) in the text. */
export interface SftTokenizer {
  encode(text: string): { ids: ArrayLike<number>; offsets?: ArrayLike<readonly [number, number]> };
}

export interface SftBatchOptions {
  /** Visual tokens per frame, P (taken from videoTokens when that is given). */
  tokensPerFrame?: number;
  /** Tokenizer for the captions (default: wordTokenizer()). */
  tokenizer?: SftTokenizer;
  /** Build the KIM sequences B (default true; false gives the plain-SFT batch, sequences A only). */
  kim?: boolean;
  /** Substitution policy (default 'nearest'). */
  substitution?: SubstitutionPolicy;
  /** Locator for samples without annotated spans or given key frames (default 'transient'). */
  locator?: 'transient' | 'similarity' | 'none';
  /** Keyword embedding for the similarity locator. */
  embedKeyword?: (keyword: string) => Float32Array | number[];
  /** Frames the similarity locator picks (default 1). */
  topK?: number;
  transient?: TransientOptions;
  /** Per-frame visual tokens `[nSamples, F, P, Dm]`; with textTokens, the batch is also packed. */
  videoTokens?: Tensor;
  /** Caption token embeddings `[textIds.length, Dm]`, in the order of `textIds`. */
  textTokens?: Tensor;
}

export interface SftSamplePlan {
  /** Keywords of the sample: the annotation's, else the caption's. */
  keywords: string[];
  keywordSource: 'annotation' | 'caption' | 'none';
  keyFrames: number[];
  keyFrameSource: 'events' | 'given' | 'transient' | 'similarity' | 'none';
  /** Source frame of each frame in the KIM variant (identity when there are no key frames). */
  substitution: Int32Array;
  /** The caption's rows in `textIds` / `textTokens`. */
  textStart: number;
  textLength: number;
  /** Indices (within the caption's tokens) of the tokens that spell the keywords. */
  keywordTokens: number[];
  /** Index of sequence A and of sequence B (-1 without KIM) in `sequences`. */
  sequenceA: number;
  sequenceB: number;
}

export interface SftBatch {
  samples: SftSamplePlan[];
  /** The packing description: per sample, A (video + caption) then, with KIM, B. */
  sequences: PackSegment[][];
  /** Caption token ids of every sample, concatenated (the rows of `textTokens`). */
  textIds: Int32Array;
  numFrames: number;
  tokensPerFrame: number;
  /** Rows of the packed batch, and the cumulative sequence lengths (what packTokens will return). */
  totalRows: number;
  cuSeqlens: Int32Array;
  /**
   * Contrastive index lists, packed-row indices grouped by sample (CSR: sample i
   * owns [offsets[i], offsets[i+1])): key-frame token rows in A, the same rows in B
   * (empty without KIM), and the caption rows spelling the keywords.
   */
  keyRowsA: Int32Array;
  keyRowsB: Int32Array;
  keyRowOffsets: Int32Array;
  keywordRows: Int32Array;
  keywordRowOffsets: Int32Array;
  /** Caption rows in the packed batch (the LM targets), CSR by sample. */
  captionRows: Int32Array;
  captionRowOffsets: Int32Array;
  /** The packed tokens, when videoTokens and textTokens were given. */
  packed?: Packed;
}

/**
 * A small word-level tokenizer: words (letters/digits/apostrophes) and single
 * punctuation marks, lowercased, hashed (FNV-1a) into `vocabSize` ids, with
 * their character offsets. A stand-in for the model's own tokenizer.
 */
export function wordTokenizer(vocabSize = 32768): SftTokenizer {
  if (!Number.isInteger(vocabSize) || vocabSize < 1) throw rangeError('wordTokenizer', 'vocabSize', 'a positive integer', describe(vocabSize));
  return {
    encode(text: string) {
      const ids: number[] = [];
      const offsets: [number, number][] = [];
      for (const m of text.matchAll(/[\p{L}\p{N}']+|[^\s\p{L}\p{N}']/gu)) {
        let h = 0x811c9dc5;
        for (const ch of m[0].toLowerCase()) {
          h ^= ch.codePointAt(0)!;
          h = Math.imul(h, 0x01000193) >>> 0;
        }
        ids.push(h % vocabSize);
        offsets.push([m.index!, m.index! + m[0].length]);
      }
      return { ids, offsets };
    },
  };
}

function framesCount(fn: string, i: number, s: SftSample): number {
  if (s.frames !== undefined) {
    const shape = s.frames instanceof Tensor ? s.frames.shape : (s.frames as { shape?: readonly number[] }).shape;
    if (!Array.isArray(shape) || shape.length !== 4) throw rangeError(fn, `samples[${i}].frames.shape`, '[F, H, W, C]', describe(shape));
    return shape[0];
  }
  if (s.numFrames !== undefined) {
    if (!Number.isSafeInteger(s.numFrames) || s.numFrames < 1) throw rangeError(fn, `samples[${i}].numFrames`, 'a positive integer', describe(s.numFrames));
    return s.numFrames;
  }
  if (s.frameTimes !== undefined) return s.frameTimes.length;
  throw typeError(fn, `samples[${i}]`, 'a sample with frames, numFrames or frameTimes', 'none of them');
}

/** Token indices whose [start, end) overlaps one of the spans. */
function tokensInSpans(spans: { start: number; end: number }[], offsets: ArrayLike<readonly [number, number]>): number[] {
  const out: number[] = [];
  for (let t = 0; t < offsets.length; t++) {
    const [s, e] = offsets[t];
    if (spans.some((sp) => s < sp.end && e > sp.start)) out.push(t);
  }
  return out;
}

/**
 * Plans (and, given the token tensors, packs) a stage-1 SFT batch. Throws a
 * RangeError naming the sample when a video's frames are all key frames.
 */
export function buildSftBatch(samples: readonly SftSample[], opts: SftBatchOptions = {}): SftBatch {
  const fn = 'buildSftBatch';
  if (!Array.isArray(samples)) throw typeError(fn, 'samples', 'an array of samples', describe(samples));
  if (opts === null || typeof opts !== 'object') throw typeError(fn, 'opts', 'an object', describe(opts));
  const kim = opts.kim ?? true;
  const policy = opts.substitution ?? 'nearest';
  const locator = opts.locator ?? 'transient';
  if (!['transient', 'similarity', 'none'].includes(locator)) throw typeError(fn, 'opts.locator', "'transient' | 'similarity' | 'none'", describe(locator));
  const tokenizer = opts.tokenizer ?? wordTokenizer();
  let P = opts.tokensPerFrame;
  if (opts.videoTokens !== undefined) {
    if (!(opts.videoTokens instanceof Tensor) || opts.videoTokens.shape.length !== 4)
      throw typeError(fn, 'opts.videoTokens', 'a Tensor [nSamples, F, P, Dm]', describe(opts.videoTokens));
    if (P !== undefined && P !== opts.videoTokens.shape[2])
      throw rangeError(fn, 'opts.tokensPerFrame', `videoTokens' P = ${opts.videoTokens.shape[2]}`, `${P}`);
    P = opts.videoTokens.shape[2];
  }
  if (P === undefined || !Number.isSafeInteger(P) || P < 1) throw rangeError(fn, 'opts.tokensPerFrame', 'a positive integer (or opts.videoTokens)', describe(P));

  let F = -1;
  const plans: SftSamplePlan[] = [];
  const ids: number[] = [];
  const sequences: PackSegment[][] = [];
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    if (s === null || typeof s !== 'object') throw typeError(fn, `samples[${i}]`, 'a sample object', describe(s));
    if (typeof s.caption !== 'string') throw typeError(fn, `samples[${i}].caption`, 'a string', describe(s.caption));
    const nf = framesCount(fn, i, s);
    if (F >= 0 && nf !== F) throw rangeError(fn, `samples[${i}]`, `${F} frames like samples[0] (one video tensor holds the batch)`, `${nf} frames`);
    F = nf;

    // Keywords and their caption spans.
    const events = s.events ?? [];
    if (!Array.isArray(events)) throw typeError(fn, `samples[${i}].events`, 'an array', describe(events));
    const annotated = events.filter((e) => typeof e?.keyword === 'string' && e.keyword.trim().length > 0).map((e) => e.keyword!.trim().toLowerCase());
    let keywords: string[];
    let keywordSource: SftSamplePlan['keywordSource'];
    let spans: { start: number; end: number }[];
    if (annotated.length > 0) {
      keywords = [...new Set(annotated)];
      keywordSource = 'annotation';
      spans = keywords.map((k) => findKeywordSpan(s.caption, k)).filter((x): x is { start: number; end: number } => x !== null);
    } else {
      const found = extractEventKeywordSpans(s.caption);
      keywords = [...new Set(found.map((x) => x.keyword))];
      keywordSource = keywords.length > 0 ? 'caption' : 'none';
      spans = found;
    }

    // Key frames.
    let keyFrames: number[] = [];
    let keyFrameSource: SftSamplePlan['keyFrameSource'] = 'none';
    const timed = events.filter((e) => typeof e?.start === 'number' && typeof e?.end === 'number') as { start: number; end: number }[];
    if (s.keyFrames !== undefined) {
      if (!Array.isArray(s.keyFrames)) throw typeError(fn, `samples[${i}].keyFrames`, 'an array of frame indices', describe(s.keyFrames));
      keyFrames = [...new Set<number>(s.keyFrames)].sort((a, b) => a - b);
      keyFrameSource = 'given';
    } else if (timed.length > 0) {
      let times: ArrayLike<number>;
      if (s.frameTimes !== undefined) {
        if (s.frameTimes.length !== F) throw rangeError(fn, `samples[${i}].frameTimes.length`, `${F} (one time per frame)`, `${s.frameTimes.length}`);
        times = s.frameTimes;
      } else {
        const fps = s.fps;
        if (fps !== undefined && !(typeof fps === 'number' && fps > 0 && Number.isFinite(fps))) throw rangeError(fn, `samples[${i}].fps`, 'a positive number', describe(fps));
        times = Array.from({ length: F }, (_, f) => (fps ? f / fps : f));
      }
      keyFrames = locateKeyFrames(times, timed);
      keyFrameSource = 'events';
    } else if (locator === 'transient' && s.frames !== undefined) {
      keyFrames = detectTransientFrames(s.frames, opts.transient);
      keyFrameSource = 'transient';
    } else if (locator === 'similarity' && s.frameFeatures !== undefined && opts.embedKeyword && keywords.length > 0) {
      const set = new Set<number>();
      for (const k of keywords) for (const f of locateKeyFramesBySimilarity(s.frameFeatures, opts.embedKeyword(k), { k: opts.topK ?? 1 })) set.add(f);
      keyFrames = [...set].sort((a, b) => a - b);
      keyFrameSource = 'similarity';
    }
    if (keyFrames.length === 0) keyFrameSource = keyFrameSource === 'given' ? 'given' : 'none';

    let substitution: Int32Array;
    try {
      substitution = planSubstitution(F, keyFrames, policy);
    } catch (e) {
      if (e instanceof AllKeyFramesError) throw new AllKeyFramesError(`${fn}: samples[${i}]: ${e.message}`);
      if (e instanceof RangeError) throw new RangeError(`${fn}: samples[${i}]: ${(e as Error).message}`);
      throw e;
    }

    // Caption tokens.
    const enc = tokenizer.encode(s.caption);
    if (!enc || typeof enc.ids?.length !== 'number') throw typeError(fn, 'opts.tokenizer', 'a tokenizer whose encode() returns { ids, offsets? }', describe(enc));
    let offsets = enc.offsets;
    if (offsets === undefined) {
      // Without offsets: a token lies in a span when it is counted between the span's ends.
      const count = (n: number) => tokenizer.encode(s.caption.slice(0, n)).ids.length;
      const derived: [number, number][] = Array.from({ length: enc.ids.length }, () => [0, 0]);
      for (const sp of spans) {
        const a = count(sp.start);
        const b = count(sp.end);
        for (let t = a; t < Math.min(b, derived.length); t++) derived[t] = [sp.start, sp.end];
      }
      offsets = derived;
    } else if (offsets.length !== enc.ids.length) {
      throw rangeError(fn, 'opts.tokenizer', 'offsets for every token', `${offsets.length} offsets for ${enc.ids.length} ids`);
    }
    const textStart = ids.length;
    for (let t = 0; t < enc.ids.length; t++) {
      const id = enc.ids[t];
      if (!Number.isInteger(id) || id < 0 || id > 2 ** 31 - 1) throw rangeError(fn, 'opts.tokenizer', 'non-negative integer ids', describe(id));
      ids.push(id);
    }
    const keywordTokens = tokensInSpans(spans, offsets);

    const sequenceA = sequences.length;
    sequences.push([{ video: i }, { text: [textStart, enc.ids.length] }]);
    let sequenceB = -1;
    if (kim) {
      sequenceB = sequences.length;
      sequences.push([{ video: i, frames: substitution }]);
    }
    plans.push({ keywords, keywordSource, keyFrames, keyFrameSource, substitution, textStart, textLength: enc.ids.length, keywordTokens, sequenceA, sequenceB });
  }
  if (F < 0) F = 0;

  // Layout of the packed rows: packTokens' own plan.
  const cu = planPacking(sequences, { videos: samples.length, frames: F, tokensPerFrame: P, textRows: ids.length }, fn).cuSeqlens;
  const keyA: number[] = [];
  const keyB: number[] = [];
  const keyOff = [0];
  const kwRows: number[] = [];
  const kwOff = [0];
  const capRows: number[] = [];
  const capOff = [0];
  for (const p of plans) {
    const a = cu[p.sequenceA];
    for (const f of p.keyFrames) {
      for (let t = 0; t < P; t++) {
        keyA.push(a + f * P + t);
        if (p.sequenceB >= 0) keyB.push(cu[p.sequenceB] + f * P + t);
      }
    }
    keyOff.push(keyA.length);
    for (const t of p.keywordTokens) kwRows.push(a + F * P + t);
    kwOff.push(kwRows.length);
    for (let t = 0; t < p.textLength; t++) capRows.push(a + F * P + t);
    capOff.push(capRows.length);
  }
  const batch: SftBatch = {
    samples: plans,
    sequences,
    textIds: Int32Array.from(ids),
    numFrames: F,
    tokensPerFrame: P,
    totalRows: cu[sequences.length],
    cuSeqlens: cu,
    keyRowsA: Int32Array.from(keyA),
    keyRowsB: kim ? Int32Array.from(keyB) : new Int32Array(0),
    keyRowOffsets: Int32Array.from(keyOff),
    keywordRows: Int32Array.from(kwRows),
    keywordRowOffsets: Int32Array.from(kwOff),
    captionRows: Int32Array.from(capRows),
    captionRowOffsets: Int32Array.from(capOff),
  };

  if (opts.videoTokens !== undefined || opts.textTokens !== undefined) {
    const v = opts.videoTokens;
    const t = opts.textTokens;
    if (!(v instanceof Tensor)) throw typeError(fn, 'opts.videoTokens', 'a Tensor [nSamples, F, P, Dm] (with textTokens)', describe(v));
    if (!(t instanceof Tensor)) throw typeError(fn, 'opts.textTokens', 'a Tensor [textIds.length, Dm] (with videoTokens)', describe(t));
    if (v.shape[0] !== samples.length || v.shape[1] !== F)
      throw rangeError(fn, 'opts.videoTokens.shape', `[${samples.length}, ${F}, P, Dm]`, `[${v.shape.join(', ')}]`);
    if (t.shape.length !== 2 || t.shape[0] !== ids.length)
      throw rangeError(fn, 'opts.textTokens.shape', `[${ids.length}, Dm] (one row per caption token)`, `[${t.shape.join(', ')}]`);
    batch.packed = packTokens({ video: v, text: t, sequences });
  }
  return batch;
}
