// Evaluation helpers used by the trainer and the CLI:
//  - multiple-choice accuracy by option likelihood: each option, followed by
//    <eos>, is scored as the response to the question's prompt (sum of token
//    log-probs); the most likely option is the model's answer;
//  - event-keyword recall of generated captions (greedy decoding).
import type { PromptItem, TrainClip } from './batch.js';
import { modelIO, type TrainableModel } from './model-io.js';
import { keywordRecall } from './rewards.js';
import { annotatedKeywords, answerIndex, CAPTION_PROMPT, questionPrompt } from './tasks.js';

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
  /** Called as clips are done (progress bars). */
  onProgress?: (done: number, total: number) => void;
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
}

export interface CaptionResult {
  id: string;
  reference: string;
  generated: string;
  keywords: string[];
  /** Keyword recall (NaN for a clip without event keywords). */
  recall: number;
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
  const pending: { item: PromptItem; response: Int32Array; q: number; o: number }[] = [];
  const results: QuestionResult[] = [];
  const flush = async () => {
    if (!pending.length) return;
    const { batch, at, lengths } = io.scoringBatch(pending.map((p) => p.item), pending.map((p) => p.response));
    const lp = await model.sequenceLogprobs(batch);
    pending.forEach((p, i) => {
      let s = 0;
      for (let j = 0; j < lengths[i]; j++) s += lp[at[i] + j];
      results[p.q].scores[p.o] = opts.optionScore === 'sum' ? s : s / lengths[i];
    });
    pending.length = 0;
  };
  let done = 0;
  for (const clip of clips) {
    for (const q of clip.annotation.questions ?? []) {
      const answer = answerIndex(q);
      if (answer < 0) continue;
      const qi = results.length;
      results.push({
        id: clip.annotation.id, kind: (q as { kind?: string }).kind ?? 'question', question: q.question, options: [...q.options],
        answer, predicted: -1, scores: new Array<number>(q.options.length).fill(-Infinity),
      });
      const promptIds = io.prompt(questionPrompt(q));
      q.options.forEach((opt, oi) => {
        pending.push({ item: { frames: clip.frames, promptIds }, response: io.response(opt, true), q: qi, o: oi });
      });
      if (pending.length >= batchSize) await flush();
    }
    opts.onProgress?.(++done, clips.length);
  }
  await flush();
  for (const r of results) r.predicted = r.scores.reduce((best, s, i) => (s > r.scores[best] ? i : best), 0);
  return results;
}

/** Greedy captions of the clips and their event-keyword recall. */
export async function evaluateCaptions(model: TrainableModel, clips: readonly TrainClip[], opts: EvaluateOptions = {}): Promise<CaptionResult[]> {
  const io = modelIO(model, 'evaluateCaptions');
  const batchSize = opts.batchSize ?? 32;
  const maxTokens = opts.maxTokens ?? 32;
  const prompt = io.prompt(CAPTION_PROMPT);
  const out: CaptionResult[] = [];
  for (let i = 0; i < clips.length; i += batchSize) {
    const chunk = clips.slice(i, i + batchSize);
    const gens = await io.generate(io.generationBatch(chunk.map((c) => ({ frames: c.frames, promptIds: prompt }))), { maxTokens, temperature: 0 });
    chunk.forEach((c, j) => {
      const generated = io.decode(gens[j]);
      const keywords = annotatedKeywords(c.annotation);
      out.push({ id: c.annotation.id, reference: c.annotation.caption, generated, keywords, recall: keywords.length ? keywordRecall(generated, keywords) : NaN });
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
  const scored = captions.filter((c) => !Number.isNaN(c.recall));
  if (opts.captions !== false) summary.keywordRecall = scored.length ? scored.reduce((a, c) => a + c.recall, 0) / scored.length : NaN;
  summary.captions = captions.length;
  return { summary, questions, captions };
}
