// What the trainer asks of a clip, as text: the caption task and the
// multiple-choice questions, each a (prompt, response) pair; the clip's frames
// fitted to the model's frame count and size; a tokenizer trained on a
// dataset's text. One place, so that training, evaluation and the CLI use the
// same prompts (a model is only as good as the match between the two).
import type { Annotation, QuestionAnnotation, VideoSample } from '../data/dataset.js';
import { Tokenizer, type TrainOptions } from '../model/tokenizer.js';

/** The caption task's prompt (the response is the caption). */
export const CAPTION_PROMPT = 'describe the clip :';

/**
 * A question's prompt, in the cloze form: the question alone; the response is the right
 * option's text. Options are not listed, so a model cannot answer by copying from the prompt:
 * multiple choice is decided by which option the model finds most likely as the answer
 * (evaluateMultipleChoice), and RL rewards an answer that matches the right option's text.
 */
export function questionPrompt(q: Pick<QuestionAnnotation, 'question'>): string {
  return `${q.question} answer :`;
}

/** The index of a question's right option. */
export function answerIndex(q: QuestionAnnotation): number {
  return typeof q.answer === 'number' ? q.answer : q.options.indexOf(q.answer);
}

/** One thing to say about a clip: the prompt and the expected response. */
export interface ClipTask {
  kind: 'caption' | 'question';
  prompt: string;
  response: string;
  /** For questions: the question (its options and answer), and its kind when the data says ('event', 'motion'). */
  question?: QuestionAnnotation & { kind?: string };
}

/** The caption task's prompt of a clip: its own (a conversation's user turn), else CAPTION_PROMPT. */
export function captionPrompt(a: Pick<Annotation, 'prompt'>): string {
  return a.prompt ?? CAPTION_PROMPT;
}

/** The tasks of a clip: its caption (the response to captionPrompt), then each question (when `questions`). */
export function clipTasks(a: Annotation, questions = true): ClipTask[] {
  const out: ClipTask[] = [{ kind: 'caption', prompt: captionPrompt(a), response: a.caption }];
  if (questions) {
    for (const q of a.questions ?? []) {
      const i = answerIndex(q);
      if (i >= 0) out.push({ kind: 'question', prompt: questionPrompt(q), response: q.options[i], question: q });
    }
  }
  return out;
}

/** The event keywords of a clip's annotation (lower case, unique): its events', else its `keywords`. */
export function annotatedKeywords(a: Annotation): string[] {
  const words = a.events?.length ? a.events.map((e) => e.keyword) : (a.keywords ?? []);
  return [...new Set(words.map((k) => k.trim().toLowerCase()).filter(Boolean))];
}

/**
 * A word-level tokenizer trained on every text the tasks of a dataset use:
 * captions, questions, options and the fixed prompts (so nothing the trainer
 * writes is <unk>).
 */
export function tokenizerForDataset(annotations: Iterable<Annotation>, opts: TrainOptions = {}): Tokenizer {
  const corpus: string[] = [CAPTION_PROMPT, questionPrompt({ question: '' })];
  for (const a of annotations) {
    corpus.push(a.caption);
    if (a.prompt) corpus.push(a.prompt);
    for (const q of a.questions ?? []) corpus.push(questionPrompt(q), ...q.options);
    for (const e of a.events ?? []) corpus.push(e.keyword);
  }
  return Tokenizer.train(corpus, { vocabSize: 8192, ...opts });
}

/** A clip fitted to a model: [frames, size, size, 3] uint8 and each frame's time. */
export interface FittedClip {
  frames: Uint8Array;
  frameTimes: number[];
}

/**
 * Fits a clip to the model's frame count and square frame size: frames are
 * sampled uniformly in time (the middle of each of `frames` equal slices) and
 * resized bilinearly (area-averaged when shrinking by an integer factor).
 * Frame times follow the sampled frames, so annotated event spans still locate
 * the key frames.
 */
export function fitClip(sample: Pick<VideoSample, 'frames' | 'shape' | 'frameTimes' | 'id'>, frames: number, size: number): FittedClip {
  const [F, H, W, C] = sample.shape;
  if (C !== 3) throw new RangeError(`fitClip: sample ${sample.id}: frames must be RGB [F, H, W, 3], got [${sample.shape.join(', ')}]`);
  if (F < 1) throw new RangeError(`fitClip: sample ${sample.id}: the clip has no frames`);
  const idx = Array.from({ length: frames }, (_, i) => (F === frames ? i : Math.min(F - 1, Math.floor(((i + 0.5) * F) / frames))));
  const times = idx.map((f) => sample.frameTimes[f] ?? f);
  if (H === size && W === size) {
    if (F === frames) return { frames: sample.frames, frameTimes: times };
    const out = new Uint8Array(frames * size * size * 3);
    const per = size * size * 3;
    idx.forEach((f, i) => out.set(sample.frames.subarray(f * per, (f + 1) * per), i * per));
    return { frames: out, frameTimes: times };
  }
  const out = new Uint8Array(frames * size * size * 3);
  const src = sample.frames;
  const intY = H % size === 0 ? H / size : 0;
  const intX = W % size === 0 ? W / size : 0;
  for (let i = 0; i < frames; i++) {
    const base = idx[i] * H * W * 3;
    const ob = i * size * size * 3;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        for (let c = 0; c < 3; c++) {
          let v: number;
          if (intY && intX) {
            // Integer shrink: the mean of the intY x intX block.
            let s = 0;
            for (let dy = 0; dy < intY; dy++)
              for (let dx = 0; dx < intX; dx++) s += src[base + ((y * intY + dy) * W + x * intX + dx) * 3 + c];
            v = s / (intY * intX);
          } else {
            const fy = Math.max(0, Math.min(H - 1, ((y + 0.5) * H) / size - 0.5));
            const fx = Math.max(0, Math.min(W - 1, ((x + 0.5) * W) / size - 0.5));
            const y0 = Math.floor(fy), x0 = Math.floor(fx);
            const y1 = Math.min(H - 1, y0 + 1), x1 = Math.min(W - 1, x0 + 1);
            const wy = fy - y0, wx = fx - x0;
            const at = (yy: number, xx: number) => src[base + (yy * W + xx) * 3 + c];
            v = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1));
          }
          out[ob + (y * size + x) * 3 + c] = Math.round(v);
        }
      }
    }
  }
  return { frames: out, frameTimes: times };
}
