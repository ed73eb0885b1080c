// Task rewards of the RL stage (docs/method.md, stage 2, step 2) and the caption
// metrics of evaluation: F1 (the default caption reward: a caption that lists
// every event word scores low on precision) and recall of the ground-truth
// event keywords in a response, and exact match for multiple-choice prompts. Matching is on lemmas
// (compromise: verbs to their infinitive, nouns to their singular), so "the
// circle jumped" matches the keyword "jump" and "changed colours" matches
// "change colour".
import nlp from 'compromise';
import { extractEventKeywords } from '../kim/keywords.js';

const cache = new Map<string, string[]>();

/** Lower-case lemma tokens of a text (verbs → infinitive, nouns → singular). */
export function lemmas(text: string): string[] {
  const hit = cache.get(text);
  if (hit) return hit;
  const doc = nlp(text);
  doc.verbs().toInfinitive();
  doc.nouns().toSingular();
  const out = doc.text('normal').toLowerCase().split(/[^a-z0-9']+/).filter(Boolean);
  if (cache.size > 10000) cache.clear();
  cache.set(text, out);
  return out;
}

/**
 * Fraction of `keywords` found in `response`: a keyword counts when each of its
 * lemmas occurs in the response's lemmas. With no keywords the recall is 1
 * (nothing to recall); a caption of an event-free clip is judged by the
 * multiple-choice reward instead.
 */
export function keywordRecall(response: string, keywords: readonly string[]): number {
  if (typeof response !== 'string') throw new TypeError(`keywordRecall: response must be a string, got ${typeof response}`);
  if (!keywords.length) return 1;
  const have = new Set(lemmas(response));
  let hits = 0;
  for (const k of keywords) if (lemmas(k).every((w) => have.has(w))) hits++;
  return hits / keywords.length;
}

/**
 * F1 of the event keywords in `response` against `keywords`: recall as
 * keywordRecall; precision the fraction of the events the response names that
 * are ground-truth keywords. The events a response names are the entries of
 * `vocabulary` (the event keywords of the whole dataset, when given) whose
 * lemmas all occur in it, else its own event phrases (vp.extractEventKeywords).
 * So a caption that lists every event word cannot score above the right one,
 * while words outside the event vocabulary (a motion, a colour) cost nothing.
 * A response that recalls keywords but names no event of its own has precision
 * 1; with no ground-truth keywords the score is 1 when the response names no
 * event, else 0.
 */
export function keywordF1(response: string, keywords: readonly string[], vocabulary?: readonly string[]): number {
  if (typeof response !== 'string') throw new TypeError(`keywordF1: response must be a string, got ${typeof response}`);
  const have = new Set(lemmas(response));
  const named = vocabulary
    ? vocabulary.map((k) => lemmas(k)).filter((l) => l.length > 0 && l.every((w) => have.has(w)))
    : extractEventKeywords(response).map((k) => lemmas(k));
  if (!keywords.length) return named.length ? 0 : 1;
  const recall = keywordRecall(response, keywords);
  if (recall === 0) return 0;
  const truth = keywords.map((k) => lemmas(k));
  const within = (a: string[], b: string[]) => a.every((w) => b.includes(w));
  const matched = named.filter((p) => truth.some((k) => within(p, k) || within(k, p))).length;
  const precision = named.length ? matched / named.length : 1;
  return (2 * precision * recall) / (precision + recall);
}

function norm(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9 ]+/g, ' ').replace(/\s+/g, ' ').trim();
}

/**
 * 1 when `response` picks the right option of a multiple-choice question, else 0.
 * Accepted: the option's text (normalized: case, punctuation and spacing
 * ignored), its letter ("B", "(b)", "B."), or its 1-based number.
 */
export function multipleChoiceMatch(response: string, options: readonly string[], answer: number | string): number {
  const idx = typeof answer === 'number' ? answer : options.indexOf(answer);
  if (!Number.isInteger(idx) || idx < 0 || idx >= options.length)
    throw new RangeError(`multipleChoiceMatch: answer must be an option index in [0, ${options.length}) or an option's text, got ${JSON.stringify(answer)}`);
  const r = norm(response);
  if (r === norm(options[idx])) return 1;
  // A letter alone ("b", "(b)") or a letter with its mark ("B.", "b)", "B:") before any text.
  const m = /^\(?([a-z])\)?$/.exec(response.trim().toLowerCase()) ?? /^\(?([a-z])[.):]\s/.exec(response.trim().toLowerCase() + ' ');
  if (m) return m[1] === String.fromCharCode(97 + idx) ? 1 : 0;
  return r === String(idx + 1) ? 1 : 0;
}

export interface TaskRewardInput {
  response: string;
  /** The ground-truth event keywords of the clip. */
  keywords: readonly string[];
  /** Present for multiple-choice prompts. */
  question?: { options: readonly string[]; answer: number | string };
  /** The event keywords of the whole dataset: what a caption's precision is counted over (keywordF1). */
  vocabulary?: readonly string[];
}

/**
 * The default task reward: for a multiple-choice prompt, exact match with the right
 * option (1 or 0); for a caption prompt, the F1 of the clip's event keywords
 * (keywordF1: recall alone would reward a caption that lists every event word).
 */
export function defaultTaskReward(x: TaskRewardInput): number {
  if (x.question) return multipleChoiceMatch(x.response, x.question.options, x.question.answer);
  return keywordF1(x.response, x.keywords, x.vocabulary);
}

/** Mean keyword recall of generated captions (the evaluation metric). */
export function captionKeywordRecall(items: readonly { caption: string; keywords: readonly string[] }[]): number {
  const scored = items.filter((i) => i.keywords.length > 0);
  if (!scored.length) return NaN;
  return scored.reduce((a, i) => a + keywordRecall(i.caption, i.keywords), 0) / scored.length;
}
