// Evaluation helpers used by the trainer and the CLI:
//  - multiple-choice accuracy by option likelihood: each option, followed by
//    <eos>, is scored as the response to the question's prompt (mean or sum of
//    token log-probs); the most likely option is the model's answer;
//  - counterfactual consistency: an event question whose clip has annotated
//    event spans is asked again on the clip's KIM copy (its event frames
//    substituted, slot positions); consistent = right on the original and the
//    "nothing happened" option on the copy (what the method claims to teach);
//  - event-keyword recall and F1 of generated captions (greedy decoding); F1's
//    precision counts the events a caption names out of the clips' event
//    vocabulary, so a caption that lists every event word does not score.
// Cost: one scoring forward per option (batched), one more per counterfactual
// option, and greedy generation of maxTokens per clip.
import type { QuestionAnnotation } from '../data/dataset.js';
import type { PromptItem, TrainClip } from './batch.js';
import { modelIO, type TrainableModel } from './model-io.js';
import { locateKeyFrames } from '../kim/keyframes.js';
import { planSubstitution } from '../kim/substitution.js';
import { keywordF1, keywordRecall } from './rewards.js';
import { annotatedKeywords, answerIndex, captionPrompt, questionPrompt } from './tasks.js';

export interface EvaluateOptions {
  /** Multiple-choice questions (default true). */
  questions?: boolean;
  /** Generated captions and their keyword recall (default true). */
  captions?: boolean;
  /** Longest generated caption (default 32 tokens). */
  maxTokens?: number;
  /** Sequences per forward pass or generation batch (default 32). */
  batchSize?: number;
  /**
   * How an option's token log-probs make its score: 'mean' per token (default; the answer
   * options differ in length, and a sum favours the shortest), or 'sum'.
   */
  optionScore?: 'mean' | 'sum';
  /**
   * Ask event questions again on the clip's KIM copy (default true): needs annotated event spans
   * and an option equal to `nothingOption`. Adds QuestionResult.counterfactual and the summary's
   * counterfactualConsistency.
   */
  counterfactual?: boolean;
  /** Score only questions of these kinds (default: every question). */
  questionKinds?: readonly string[];
  /** The option that is right once the event is removed (default 'nothing happened'). */
  nothingOption?: string;
  /** The event vocabulary for caption F1's precision (default: the clips' annotated keywords). */
  vocabulary?: readonly string[];
  /** Called as clips are done (progress bars). */
  onProgress?: (done: number, total: number) => void;
}

/** An event question asked on the KIM copy of its clip. */
export interface CounterfactualResult {
  /** The index of the option that is right without the event ('nothing happened'). */
  expected: number;
  predicted: number;
  scores: number[];
  /** The frames substituted (the annotated event's frames). */
  keyFrames: number[];
}

export interface QuestionResult {
  id: string;
  kind: string;
  question: string;
  options: string[];
  answer: number;
  predicted: number;
  /** Each option's score: the mean (or, with optionScore 'sum', the sum) of its tokens' log-probs. */
  scores: number[];
  /** The same question on the clip's KIM copy (event questions of clips with annotated spans). */
  counterfactual?: CounterfactualResult;
}

export interface CaptionResult {
  id: string;
  reference: string;
  generated: string;
  keywords: string[];
  /** Keyword recall (NaN for a clip without event keywords). */
  recall: number;
  /** Keyword F1 against the event vocabulary (1 for a clip without events whose caption names none). */
  f1: number;
}

export interface EvaluationResult {
  /** Flat numbers: accuracy (all questions), accuracy_<kind> per question kind, keywordRecall, questions, captions. */
  summary: Record<string, number>;
  questions: QuestionResult[];
  captions: CaptionResult[];
}

/** Multiple-choice accuracy by option likelihood over every question of the clips. */
export async function evaluateMultipleChoice(model: TrainableModel, clips: readonly TrainClip[], opts: EvaluateOptions = {}): Promise<QuestionResult[]> {
  const io = modelIO(model, 'evaluateMultipleChoice');
  const batchSize = opts.batchSize ?? 32;
  const pending: { item: PromptItem; response: Int32Array; q: number; o: number; cf: boolean }[] = [];
  const results: QuestionResult[] = [];
  const nothing = (opts.nothingOption ?? 'nothing happened').trim().toLowerCase();
  const flush = async () => {
    if (!pending.length) return;
    const { batch, at, lengths } = io.scoringBatch(pending.map((p) => p.item), pending.map((p) => p.response));
    const lp = await model.sequenceLogprobs(batch);
    pending.forEach((p, i) => {
      let s = 0;
      for (let j = 0; j < lengths[i]; j++) s += lp[at[i] + j];
      (p.cf ? results[p.q].counterfactual! : results[p.q]).scores[p.o] = opts.optionScore === 'sum' ? s : s / lengths[i];
    });
    pending.length = 0;
  };
  let done = 0;
  for (const clip of clips) {
    for (const q of clip.annotation.questions ?? []) {
      const answer = answerIndex(q);
      if (answer < 0) continue;
      if (opts.questionKinds && !opts.questionKinds.includes((q as { kind?: string }).kind ?? 'question')) continue;
      const qi = results.length;
      results.push({
        id: clip.annotation.id, kind: (q as { kind?: string }).kind ?? 'question', question: q.question, options: [...q.options],
        answer, predicted: -1, scores: new Array<number>(q.options.length).fill(-Infinity),
      });
      const promptIds = io.prompt(questionPrompt(q));
      q.options.forEach((opt, oi) => {
        pending.push({ item: { frames: clip.frames, promptIds }, response: io.response(opt, true), q: qi, o: oi, cf: false });
      });
      const cf = opts.counterfactual === false ? undefined : counterfactualMap(clip, q as QuestionAnnotation & { kind?: string }, nothing);
      if (cf) {
        results[qi].counterfactual = { expected: cf.expected, predicted: -1, scores: new Array<number>(q.options.length).fill(-Infinity), keyFrames: cf.keyFrames };
        q.options.forEach((opt, oi) => {
          pending.push({ item: { frames: clip.frames, frameMap: cf.frameMap, promptIds }, response: io.response(opt, true), q: qi, o: oi, cf: true });
        });
      }
      if (pending.length >= batchSize) await flush();
    }
    opts.onProgress?.(++done, clips.length);
  }
  await flush();
  const argmax = (xs: number[]) => xs.reduce((best, s, i) => (s > xs[best] ? i : best), 0);
  for (const r of results) {
    r.predicted = argmax(r.scores);
    if (r.counterfactual) r.counterfactual.predicted = argmax(r.counterfactual.scores);
  }
  return results;
}

/**
 * The KIM copy of an event question's clip: its annotated event frames (from the spans and the
 * clip's frame times) substituted by the nearest other frames. Undefined when the question is not
 * an event question, has no "nothing happened" option (or that is its answer), or the clip has no
 * annotated span, or every frame is an event frame.
 */
function counterfactualMap(clip: TrainClip, q: QuestionAnnotation & { kind?: string }, nothing: string): { frameMap: Int32Array; expected: number; keyFrames: number[] } | undefined {
  if (q.kind !== 'event') return undefined;
  const expected = q.options.findIndex((o) => o.trim().toLowerCase() === nothing);
  if (expected < 0 || answerIndex(q) === expected) return undefined;
  const spans = (clip.annotation.events ?? []).filter((e) => typeof e.start === 'number' && typeof e.end === 'number') as { start: number; end: number }[];
  if (!spans.length || clip.frameTimes.length === 0) return undefined;
  const keyFrames = locateKeyFrames(clip.frameTimes, spans);
  if (!keyFrames.length || keyFrames.length >= clip.frameTimes.length) return undefined;
  return { frameMap: planSubstitution(clip.frameTimes.length, keyFrames), expected, keyFrames };
}

/** Greedy captions of the clips and their event-keyword recall. */
export async function evaluateCaptions(model: TrainableModel, clips: readonly TrainClip[], opts: EvaluateOptions = {}): Promise<CaptionResult[]> {
  const io = modelIO(model, 'evaluateCaptions');
  const batchSize = opts.batchSize ?? 32;
  const maxTokens = opts.maxTokens ?? 32;
  const vocabulary = opts.vocabulary ?? [...new Set(clips.flatMap((c) => annotatedKeywords(c.annotation)))].sort();
  const out: CaptionResult[] = [];
  for (let i = 0; i < clips.length; i += batchSize) {
    const chunk = clips.slice(i, i + batchSize);
    const gens = await io.generate(io.generationBatch(chunk.map((c) => ({ frames: c.frames, promptIds: io.prompt(captionPrompt(c.annotation)) }))), { maxTokens, temperature: 0 });
    chunk.forEach((c, j) => {
      const generated = io.decode(gens[j]);
      const keywords = annotatedKeywords(c.annotation);
      out.push({
        id: c.annotation.id, reference: c.annotation.caption, generated, keywords,
        recall: keywords.length ? keywordRecall(generated, keywords) : NaN, f1: keywordF1(generated, keywords, vocabulary),
      });
    });
    opts.onProgress?.(Math.min(i + batchSize, clips.length), clips.length);
  }
  return out;
}

/** Both evaluations, with a flat summary. */
export async function evaluate(model: TrainableModel, clips: readonly TrainClip[], opts: EvaluateOptions = {}): Promise<EvaluationResult> {
  const questions = opts.questions === false ? [] : await evaluateMultipleChoice(model, clips, opts);
  const captions = opts.captions === false ? [] : await evaluateCaptions(model, clips, opts);
  return summarizeEvaluation(questions, captions, opts);
}

/** The flat summary of evaluation records (also of records gathered from data-parallel ranks). */
export function summarizeEvaluation(questions: QuestionResult[], captions: CaptionResult[], opts: EvaluateOptions = {}): EvaluationResult {
  const summary: Record<string, number> = {};
  if (questions.length) {
    summary.accuracy = questions.filter((q) => q.predicted === q.answer).length / questions.length;
    const kinds = [...new Set(questions.map((q) => q.kind))].sort();
    for (const k of kinds) {
      const qs = questions.filter((q) => q.kind === k);
      summary[`accuracy_${k}`] = qs.filter((q) => q.predicted === q.answer).length / qs.length;
    }
  }
  summary.questions = questions.length;
  const cf = questions.filter((q) => q.counterfactual);
  if (cf.length) {
    // Right on the original and "nothing happened" on the KIM copy; and the second half alone.
    summary.counterfactualConsistency = cf.filter((q) => q.predicted === q.answer && q.counterfactual!.predicted === q.counterfactual!.expected).length / cf.length;
    summary.counterfactualNothing = cf.filter((q) => q.counterfactual!.predicted === q.counterfactual!.expected).length / cf.length;
    summary.counterfactualQuestions = cf.length;
  }
  const scored = captions.filter((c) => !Number.isNaN(c.recall));
  if (opts.captions !== false) {
    summary.keywordRecall = scored.length ? scored.reduce((a, c) => a + c.recall, 0) / scored.length : NaN;
    summary.keywordF1 = captions.length ? captions.reduce((a, c) => a + (c.f1 ?? NaN), 0) / captions.length : NaN;
  }
  summary.captions = captions.length;
  return { summary, questions, captions };
}
