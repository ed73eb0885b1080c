// vp.packTokens / vp.packTokensBackward: frame-substitution token packing (docs/kim.md).
//
// The sources are per-frame visual tokens `video [nVideos, F, P, Dm]` and text
// tokens `text [nText, Dm]`; a packed batch is a list of sequences, each a list
// of segments: a video (optionally with a frame map: output frame j carries the
// tokens of source frame frames[j], which is how a KIM variant is built) or a
// span of text rows. The plan (source row, position, segment of every packed
// row, and cuSeqlens) and the row gather run in the native core; the backward
// is the adjoint scatter-add (a duplicated frame receives the sum of its copies'
// gradients), race-free and deterministic on CPU and CUDA (no atomics).
import { describe, rangeError, typeError } from '../errors.js';
import { native } from '../native.js';
import { emptyLike, Tensor } from '../tensor.js';
import { checkNoAlias, checkOut, checkSameDType, checkSameDevice, checkTensor } from '../validate.js';

/** A video segment: every frame of `video`, or the frames `frames[j]` in that order. */
export interface PackVideoSegment {
  video: number;
  /** Source frame of each output frame (default: 0..F-1). */
  frames?: Int32Array | readonly number[];
}

/** A text segment: rows `[start, start + length)` of `text`. */
export interface PackTextSegment {
  text: readonly [number, number];
}

export type PackSegment = PackVideoSegment | PackTextSegment;

export interface PackInput {
  /** Per-frame visual tokens `[nVideos, F, P, Dm]` (may be omitted when no segment is a video). */
  video?: Tensor;
  /** Text tokens `[nText, Dm]` (may be omitted when no segment is text). */
  text?: Tensor;
  /** The sequences, each an array of segments. Sequences never attend to each other. */
  sequences: readonly (readonly PackSegment[])[];
}

export interface Packed {
  /** `[N, Dm]`, on the device and in the dtype of the inputs. */
  tokens: Tensor;
  /** `Int32Array(nSequences + 1)`: cumulative sequence lengths, starting at 0. */
  cuSeqlens: Int32Array;
  /** `Int32Array(N)`: position of each row within its sequence. */
  positions: Int32Array;
  /** `Int32Array(N)`: index of each row's segment within its sequence (empty segments count). */
  segment: Int32Array;
  /** `Int32Array(N)`: the row of `[video flattened to [nVideos·F·P, Dm]; text]` each row was copied from. */
  source: Int32Array;
  /** Shape of the video source (`[0, 0, 0, Dm]` when there was none); the backward returns `dVideo` in it. */
  videoShape: readonly number[];
  /** Shape of the text source (`[0, Dm]` when there was none). */
  textShape: readonly number[];
}

const FN = 'packTokens';

export interface PackOptions {
  /** Write the tokens into this tensor (`[N, Dm]`, the inputs' device and dtype) instead of a new one. */
  out?: Tensor;
}

export interface PackBackwardOptions {
  /** Write the gradients into these tensors (shapes `packed.videoShape` / `packed.textShape`) instead of new ones. */
  dVideo?: Tensor;
  dText?: Tensor;
}

function checkIndex(fn: string, arg: string, v: unknown, limit: number, what: string): number {
  if (typeof v !== 'number') throw typeError(fn, arg, `an integer ${what}`, describe(v));
  if (!Number.isInteger(v) || v < 0 || v >= limit) throw rangeError(fn, arg, `an integer in [0, ${limit}) (${what})`, describe(v));
  return v;
}

/** The sizes of packing's two sources. */
export interface PackDims {
  /** Videos, frames per video, tokens per frame (0, 0, 0 without video). */
  videos: number;
  frames: number;
  tokensPerFrame: number;
  /** Rows of the text source. */
  textRows: number;
}

/** Where every packed row comes from: the plan that packTokens, the SFT batch and the trainer's batches read. */
export interface PackPlan {
  /** [nSequences + 1] cumulative lengths starting at 0. */
  cuSeqlens: Int32Array;
  /** [N] position of each row within its sequence. */
  positions: Int32Array;
  /** [N] index of each row's segment within its sequence. */
  segment: Int32Array;
  /** [N] row of the concatenation [video flattened; text] each row is copied from. */
  source: Int32Array;
}

/**
 * The packing plan of `sequences` over sources of the given sizes, computed by
 * the native core (vp::pack_plan: one implementation of the packed-row
 * arithmetic). Every index is validated first; errors name the argument as
 * `fn: sequences[s][j]...`.
 */
export function planPacking(sequences: readonly (readonly PackSegment[])[], dims: PackDims, fn = 'planPacking'): PackPlan {
  const { videos: nVideos, frames: F, tokensPerFrame: P, textRows: nText } = dims;
  if (!Array.isArray(sequences)) throw typeError(fn, 'sequences', 'an array of sequences', describe(sequences));
  const table: number[] = [];
  const frameLists: (Int32Array | readonly number[])[] = [];
  let frameMapLength = 0;
  for (let s = 0; s < sequences.length; s++) {
    const seq = sequences[s];
    if (!Array.isArray(seq)) throw typeError(fn, `sequences[${s}]`, 'an array of segments', describe(seq));
    for (let j = 0; j < seq.length; j++) {
      const arg = `sequences[${s}][${j}]`;
      const seg = seq[j] as unknown;
      if (seg === null || typeof seg !== 'object') throw typeError(fn, arg, 'a segment { video, frames? } or { text: [start, length] }', describe(seg));
      const hasVideo = 'video' in seg && (seg as PackVideoSegment).video !== undefined;
      const hasText = 'text' in seg && (seg as PackTextSegment).text !== undefined;
      if (hasVideo === hasText)
        throw typeError(fn, arg, 'a segment with exactly one of video and text', hasVideo ? 'both' : 'neither');
      if (hasVideo) {
        if (nVideos === 0 && F === 0) throw typeError(fn, `${arg}.video`, 'a video index with input.video given', 'no input.video');
        const v = checkIndex(fn, `${arg}.video`, (seg as PackVideoSegment).video, nVideos, 'a video index');
        const frames = (seg as PackVideoSegment).frames;
        if (frames === undefined) {
          table.push(s, 0, v, F, -1, 0);
        } else {
          if (!(frames instanceof Int32Array) && !Array.isArray(frames))
            throw typeError(fn, `${arg}.frames`, 'an Int32Array or an array of frame indices', describe(frames));
          for (let k = 0; k < frames.length; k++) {
            const f = frames[k];
            if (typeof f !== 'number' || !Number.isInteger(f) || f < 0 || f >= F)
              throw rangeError(fn, `${arg}.frames[${k}]`, `a frame index in [0, ${F})`, describe(f));
          }
          table.push(s, 0, v, frames.length, frameMapLength, 0);
          frameLists.push(frames);
          frameMapLength += frames.length;
        }
      } else {
        const span = (seg as PackTextSegment).text as unknown;
        if (!Array.isArray(span) || span.length !== 2)
          throw typeError(fn, `${arg}.text`, 'a pair [start, length]', describe(span));
        const [start, length] = span as [unknown, unknown];
        if (typeof start !== 'number' || !Number.isInteger(start) || start < 0)
          throw rangeError(fn, `${arg}.text[0]`, 'a non-negative integer start', describe(start));
        if (typeof length !== 'number' || !Number.isInteger(length) || length < 0)
          throw rangeError(fn, `${arg}.text[1]`, 'a non-negative integer length', describe(length));
        if (start + length > nText)
          throw rangeError(fn, `${arg}.text`, `a span within the ${nText} text rows`, `[${start}, ${length}] (ends at ${start + length})`);
        table.push(s, 1, start, length, 0, 0);
      }
    }
  }
  const frameMap = new Int32Array(frameMapLength);
  let off = 0;
  for (const fl of frameLists) {
    frameMap.set(fl, off);
    off += fl.length;
  }
  return native().packPlan(Int32Array.from(table), sequences.length, frameMap, [nVideos, F, P, nText]) as PackPlan;
}

/**
 * Packs video and text tokens into one varlen batch. Every index is validated
 * first: a bad video or frame index, a text span past the end, or mismatched
 * widths throw a TypeError/RangeError naming the argument.
 */
export function packTokens(input: PackInput, opts?: PackOptions): Packed {
  if (input === null || typeof input !== 'object') throw typeError(FN, 'input', 'an object { video, text, sequences }', describe(input));
  const { video, text, sequences } = input;
  if (video === undefined && text === undefined) throw typeError(FN, 'input', 'at least one of video and text', 'neither');
  if (video !== undefined) checkTensor(FN, 'video', video, { ndim: 4 });
  if (text !== undefined) checkTensor(FN, 'text', text, { ndim: 2 });
  const present: Record<string, Tensor> = {};
  if (video) present.video = video;
  if (text) present.text = text;
  const device = checkSameDevice(FN, present);
  const dtype = checkSameDType(FN, present);
  const width = video ? video.shape[3] : text!.shape[1];
  if (video && text && text.shape[1] !== width)
    throw rangeError(FN, 'text.shape[1]', `the video's width Dm = ${width}`, `${text.shape[1]}`);
  const [nVideos, F, P] = video ? video.shape : [0, 0, 0];
  const nText = text ? text.shape[0] : 0;
  const plan = planPacking(sequences, { videos: nVideos, frames: F, tokensPerFrame: P, textRows: nText }, FN);
  const b = native();
  const n = plan.source.length;
  const videoShape = video ? [...video.shape] : [0, 0, 0, width];
  const textShape = text ? [...text.shape] : [0, width];
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) throw typeError(FN, 'opts', 'an object', describe(opts));
  const tokens = opts?.out !== undefined ? checkOut(FN, 'opts.out', opts.out, [n, width], device, dtype) : emptyLike([n, width], dtype, device);
  if (opts?.out !== undefined) checkNoAlias(FN, 'opts.out', tokens, present);
  b.packTokens({
    video: video ? video.nativeArg : null, videoShape, text: text ? text.nativeArg : null, textShape, source: plan.source,
    out: tokens.nativeArg, outShape: [n, width], dtype,
  });
  return { tokens, cuSeqlens: plan.cuSeqlens, positions: plan.positions, segment: plan.segment, source: plan.source, videoShape, textShape };
}

/**
 * The adjoint of packTokens: `dVideo` and `dText` are zero except where rows
 * were copied from, which receive the sum of the gradients of their copies.
 */
export function packTokensBackward(dTokens: Tensor, packed: Packed, opts?: PackBackwardOptions): { dVideo: Tensor; dText: Tensor } {
  const fn = 'packTokensBackward';
  checkTensor(fn, 'dTokens', dTokens, { ndim: 2 });
  if (packed === null || typeof packed !== 'object') throw typeError(fn, 'packed', 'the result of packTokens', describe(packed));
  const { source, videoShape, textShape } = packed;
  if (!(source instanceof Int32Array)) throw typeError(fn, 'packed.source', 'an Int32Array', describe(source));
  const shapeOk = (s: unknown, nd: number): s is number[] =>
    Array.isArray(s) && s.length === nd && s.every((d) => Number.isSafeInteger(d) && d >= 0);
  if (!shapeOk(videoShape, 4)) throw typeError(fn, 'packed.videoShape', 'a 4-D shape [nVideos, F, P, Dm]', describe(videoShape));
  if (!shapeOk(textShape, 2)) throw typeError(fn, 'packed.textShape', 'a 2-D shape [nText, Dm]', describe(textShape));
  const width = videoShape[3];
  if (textShape[1] !== width) throw rangeError(fn, 'packed.textShape[1]', `the video width ${width}`, `${textShape[1]}`);
  if (dTokens.shape[0] !== source.length || dTokens.shape[1] !== width)
    throw rangeError(fn, 'dTokens.shape', `[${source.length}, ${width}] (the packed tokens' shape)`, `[${dTokens.shape.join(', ')}]`);
  const nSource = videoShape[0] * videoShape[1] * videoShape[2] + textShape[0];
  for (let i = 0; i < source.length; i++) {
    if (source[i] < 0 || source[i] >= nSource)
      throw rangeError(fn, `packed.source[${i}]`, `a row in [0, ${nSource})`, `${source[i]}`);
  }
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) throw typeError(fn, 'opts', 'an object', describe(opts));
  const dVideo = opts?.dVideo !== undefined ? checkOut(fn, 'opts.dVideo', opts.dVideo, videoShape, dTokens.device, dTokens.dtype)
    : emptyLike(videoShape, dTokens.dtype, dTokens.device);
  const dText = opts?.dText !== undefined ? checkOut(fn, 'opts.dText', opts.dText, textShape, dTokens.device, dTokens.dtype)
    : emptyLike(textShape, dTokens.dtype, dTokens.device);
  if (opts?.dVideo !== undefined) checkNoAlias(fn, 'opts.dVideo', dVideo, { dTokens, ...(opts.dText ? { 'opts.dText': dText } : {}) });
  if (opts?.dText !== undefined) checkNoAlias(fn, 'opts.dText', dText, { dTokens });
  native().packTokensBackward({
    dTokens: dTokens.nativeArg, dTokensShape: [...dTokens.shape], source, dVideo: dVideo.nativeArg, videoShape,
    dText: dText.nativeArg, textShape, dtype: dTokens.dtype,
  });
  return { dVideo, dText };
}
