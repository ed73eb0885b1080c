// Event-action keywords from a caption (docs/method.md, stage 1 step 1).
//
// Part-of-speech tags come from compromise (a maintained English NLP library);
// on top of them this module picks the action verbs, lemmatizes them, attaches
// their particles and directions ("drifts left" → "drift left", "picks up" →
// "pick up"), and drops auxiliaries and light verbs unless they are the action.
// docs/kim.md lists the rules with examples.
import nlp from 'compromise';

/** A keyword and where its words are in the caption (UTF-16 offsets, end exclusive). */
export interface KeywordSpan {
  /** Lemmatized phrase: the verb's infinitive plus its particle/direction, e.g. `drift left`. */
  keyword: string;
  /** The verb alone, lemmatized (for a deverbal noun such as `takes a sip`, the noun: `sip`). */
  verb: string;
  start: number;
  end: number;
}

interface Term {
  text: string;
  normal: string;
  post: string;
  tags: Set<string>;
  start: number;
  end: number;
}

interface CompromiseModel {
  one: { lexicon: Record<string, string | undefined> };
  two: { switches: Record<string, string | undefined> };
}
type ToInfinitive = (word: string, model: CompromiseModel, tense?: string) => string;

const model = nlp.model() as unknown as CompromiseModel;
const toInfinitive = (nlp.methods() as unknown as { two: { transform: { verb: { toInfinitive: ToInfinitive } } } }).two.transform.verb
  .toInfinitive;

/** Verbs that hand the action to a following verb (`begins to spin`, `keeps rolling`). */
const CATENATIVE = new Set(['begin', 'start', 'keep', 'continue', 'seem', 'appear', 'try', 'tend', 'happen', 'manage', 'proceed', 'go', 'get', 'stop', 'finish', 'quit', 'resume', 'cease']);
/** Light verbs: dropped unless a particle/direction makes them the action (`gets up`, `takes off`). */
const LIGHT = new Set(['be', 'have', 'do', 'seem', 'get', 'go', 'make', 'take', 'keep', 'continue', 'give', 'happen', 'tend', 'try', 'stay', 'remain']);
/** Light verbs whose object can carry the action (`takes a sip` → `sip`, `does a backflip` → `backflip`). */
const OBJECT_LIGHT = new Set(['take', 'make', 'do', 'have', 'give']);
/** Verbs whose `-ing` complement is not the action (`stops running` is a stop). */
const CATENATIVE_KEEPS_SELF = new Set(['stop', 'finish', 'quit', 'cease', 'resume']);
/** Words that complete a motion verb when used adverbially (not followed by their own object). */
const DIRECTIONS = new Set([
  'left', 'right', 'up', 'down', 'away', 'back', 'forward', 'forwards', 'backward', 'backwards', 'sideways',
  'upward', 'upwards', 'downward', 'downwards', 'around', 'round', 'aside', 'off', 'out', 'over', 'across', 'along',
  'apart', 'together', 'in', 'inside', 'outside', 'ahead', 'behind', 'through', 'past', 'about', 'on', 'clockwise',
  'counterclockwise', 'anticlockwise', 'upside', 'open', 'shut',
]);
/** Tags after which a direction word is a preposition (`falls off the bike`): its object follows. */
const OBJECT_TAGS = ['Determiner', 'Noun', 'Pronoun', 'Adjective', 'Value', 'Possessive'];

const has = (t: Term | undefined, tag: string): boolean => t !== undefined && t.tags.has(tag);

function verbCapable(word: string): boolean {
  const sw = model.two.switches[word];
  const lx = model.one.lexicon[word];
  return (sw !== undefined && sw.includes('Verb')) || lx === 'Infinitive' || lx === 'PresentTense';
}

function unknownWord(word: string): boolean {
  return model.one.lexicon[word] === undefined && model.two.switches[word] === undefined;
}

function nounCapable(word: string): boolean {
  const sw = model.two.switches[word];
  const lx = model.one.lexicon[word];
  return (sw !== undefined && sw.includes('Noun')) || lx === 'Singular' || lx === 'Noun' || lx === 'Uncountable';
}

/** The infinitive of a verb form, using its tag for the tense. */
function lemma(t: Term): string {
  const w = t.normal;
  let tense: string | undefined;
  if (t.tags.has('Gerund')) tense = 'Gerund';
  else if (t.tags.has('Participle')) tense = 'Participle';
  else if (t.tags.has('PastTense')) tense = 'PastTense';
  else if (t.tags.has('Infinitive')) return w;
  else if (t.tags.has('PresentTense')) tense = 'PresentTense';
  else if (/ing$/.test(w)) tense = 'Gerund';
  else if (/ed$/.test(w)) tense = 'PastTense';
  else if (/s$/.test(w)) tense = 'PresentTense';
  if (!tense) return w;
  const inf = toInfinitive(w, model, tense);
  return typeof inf === 'string' && inf.length > 0 ? inf : w;
}

/** Singular of a noun (`sips` → `sip`), through compromise. */
function nounLemma(w: string): string {
  const s = nlp(w).nouns().toSingular().text().toLowerCase();
  return s.length > 0 ? s : w;
}

function terms(caption: string): Term[] {
  type JsonTerm = { text: string; normal: string; post?: string; tags: string[]; offset: { start: number; length: number } };
  const sentences = nlp(caption).json({ offset: true }) as { terms: JsonTerm[] }[];
  return sentences.flatMap((s) =>
    s.terms.map((t) => ({
      text: t.text,
      normal: (t.normal || t.text).toLowerCase(),
      post: t.post ?? '',
      tags: new Set(t.tags),
      start: t.offset.start,
      end: t.offset.start + t.offset.length,
    })),
  );
}

const clauseBreak = (t: Term): boolean => /[,;:.!?]/.test(t.post);

/**
 * Repairs two systematic tagging errors of short, noun-heavy captions:
 * - `the dog wags its tail`: a plural noun right after a subject noun phrase is
 *   the verb (`wags`), when its stem can be a verb; a following base-form
 *   "verb" that can be a noun is then its object (`changes colour`).
 * - `drifts left`: `left`/`right` after a verb (and adverbs) is a direction,
 *   not the past tense of `leave`.
 */
function repairTags(ts: Term[]): void {
  const setVerb = (t: Term) => {
    t.tags = new Set(['Verb', 'PresentTense']);
  };
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i];
    // Plural-noun-as-verb.
    if (has(t, 'Plural') && !has(t, 'Verb') && i >= 2 && has(ts[i - 1], 'Singular') && !clauseBreak(ts[i - 1])) {
      let k = i - 2;
      let adjectives = 0;
      while (k >= 0 && has(ts[k], 'Adjective') && adjectives < 3 && !clauseBreak(ts[k])) {
        k--;
        adjectives++;
      }
      const det = ts[k];
      if (det && (has(det, 'Determiner') || has(det, 'Possessive')) && !clauseBreak(det)) {
        const stem = toInfinitive(t.normal, model, 'PresentTense') || t.normal;
        const next = ts[i + 1];
        const nextIsVerb = next !== undefined && has(next, 'Verb') && !has(next, 'Particle') && !clauseBreak(t);
        let clauseHasVerb = false;
        for (let j = i + 2; j < ts.length; j++) {
          if (has(ts[j], 'Verb') && !has(ts[j], 'Auxiliary')) clauseHasVerb = true;
          if (clauseBreak(ts[j])) break;
        }
        // A stem that is first of all a verb (`changes colour`) wins over a following verb;
        // one that is first a noun (`the car wheels spin`) only when no verb follows.
        const ok = model.one.lexicon[stem] === 'Infinitive' || ((verbCapable(stem) || unknownWord(stem)) && !nextIsVerb);
        if (ok && !clauseHasVerb && (!nextIsVerb || nounCapable(next!.normal))) {
          setVerb(t);
          if (nextIsVerb) next!.tags = new Set(['Noun', 'Singular']);
        }
      }
    }
    // left/right after a verb.
    if ((t.normal === 'left' || t.normal === 'right') && has(t, 'Verb')) {
      let k = i - 1;
      while (k >= 0 && has(ts[k], 'Adverb') && !clauseBreak(ts[k])) k--;
      if (k >= 0 && has(ts[k], 'Verb') && !clauseBreak(ts[k])) t.tags = new Set(['Adverb']);
    }
  }
}

/**
 * The event-action keywords of a caption with their character spans, in order
 * of appearance, one entry per occurrence.
 */
export function extractEventKeywordSpans(caption: string): KeywordSpan[] {
  if (typeof caption !== 'string') throw new TypeError(`extractEventKeywords: caption must be a string, got ${caption === null ? 'null' : typeof caption}`);
  const ts = terms(caption);
  repairTags(ts);
  const out: KeywordSpan[] = [];
  const promoted = new Set<number>(); // -ing words promoted to verbs by a catenative (`keeps rolling`)
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i];
    const isVerb = has(t, 'Verb') || promoted.has(i);
    if (!isVerb || has(t, 'Auxiliary') || has(t, 'Particle') || has(t, 'Modal') || has(t, 'Copula')) continue;
    // Negated (`did not move`): not an event.
    let negated = false;
    for (let k = i - 1; k >= 0 && k >= i - 4; k--) {
      if (has(ts[k], 'Negative')) negated = true;
      if (negated || !(has(ts[k], 'Auxiliary') || has(ts[k], 'Adverb') || has(ts[k], 'Modal') || has(ts[k], 'Copula'))) break;
    }
    if (negated) continue;
    const lem = promoted.has(i) ? toInfinitive(t.normal, model, 'Gerund') || t.normal : lemma(t);
    if (lem === 'be') continue;
    const next = ts[i + 1];
    const next2 = ts[i + 2];
    // Catenatives hand the action to the next verb (unless the catenative is the action itself).
    if (CATENATIVE.has(lem) && !clauseBreak(t) && next) {
      if (next.normal === 'to' && next2 && has(next2, 'Verb') && !CATENATIVE_KEEPS_SELF.has(lem)) continue;
      const ing = /ing$/.test(next.normal) && (has(next, 'Gerund') || has(next, 'Adjective') || has(next, 'Verb'));
      if (ing) {
        if (CATENATIVE_KEEPS_SELF.has(lem)) {
          // `stops running`: the stop is the event; the -ing word is not a keyword.
          next.tags.delete('Verb');
          next.tags.delete('Gerund');
        } else {
          if (!has(next, 'Verb')) promoted.add(i + 1);
          continue;
        }
      }
    }
    // Particles and directions: `picks up`, `drifts (slowly) left`; not `falls off [the bike]`.
    const parts: string[] = [];
    let end = t.end;
    let j = i + 1;
    if (!clauseBreak(t)) {
      while (j < ts.length) {
        const u = ts[j];
        if (has(u, 'Particle')) {
          parts.push(u.normal);
          end = u.end;
          j++;
          if (clauseBreak(u)) break;
          continue;
        }
        if (DIRECTIONS.has(u.normal)) {
          const v = ts[j + 1];
          const prepositional = v !== undefined && !clauseBreak(u) && OBJECT_TAGS.some((g) => has(v, g));
          if (prepositional) break;
          parts.push(u.normal);
          end = u.end;
          j++;
          if (clauseBreak(u)) break;
          continue;
        }
        // One or two adverbs may sit between a verb and its direction (`drifts slowly left`).
        if (parts.length === 0 && has(u, 'Adverb') && j < i + 3 && !clauseBreak(u)) {
          const v = ts[j + 1];
          if (v && (DIRECTIONS.has(v.normal) || (has(v, 'Adverb') && ts[j + 2] && DIRECTIONS.has(ts[j + 2].normal)))) {
            j++;
            continue;
          }
        }
        break;
      }
    }
    if (LIGHT.has(lem) && parts.length === 0) {
      // `takes a sip` → sip; `does a backflip` → backflip; otherwise the light verb is dropped.
      if (OBJECT_LIGHT.has(lem) && !clauseBreak(t)) {
        let k = i + 1;
        if (ts[k] && has(ts[k], 'Determiner') && /^(a|an|another)$/.test(ts[k].normal)) {
          k++;
          while (ts[k] && has(ts[k], 'Adjective') && !clauseBreak(ts[k])) k++;
          const n = ts[k];
          if (n && has(n, 'Noun') && !has(n, 'Pronoun')) {
            const word = nounLemma(n.normal);
            if (verbCapable(word) || (lem === 'do' && (unknownWord(word) || nounCapable(word))))
              out.push({ keyword: word, verb: word, start: n.start, end: n.end });
          }
        }
      }
      continue;
    }
    out.push({ keyword: [lem, ...parts].join(' '), verb: lem, start: t.start, end });
  }
  return out;
}

/**
 * Event-action keywords of a caption: action verbs and their short phrases,
 * lemmatized (`"the red square drifts left; the blue circle briefly jumps"` →
 * `['drift left', 'jump']`), auxiliaries and light verbs dropped, each keyword once.
 */
export function extractEventKeywords(caption: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const s of extractEventKeywordSpans(caption)) {
    if (!seen.has(s.keyword)) {
      seen.add(s.keyword);
      out.push(s.keyword);
    }
  }
  return out;
}

function normalizeKeyword(k: string): string {
  return k.toLowerCase().replace(/\s+/g, ' ').trim();
}

/**
 * Where a given keyword (e.g. an annotation's `events[].keyword`) is spelled in
 * the caption: an extracted keyword or verb with the same lemma, else the
 * keyword's words as they stand (case-insensitive, whole words), else the first
 * word whose lemma is the keyword's head word. `null` when the caption does not
 * mention it.
 */
export function findKeywordSpan(caption: string, keyword: string): { start: number; end: number } | null {
  const want = normalizeKeyword(keyword);
  if (want.length === 0) return null;
  const spans = extractEventKeywordSpans(caption);
  const exact = spans.find((s) => s.keyword === want) ?? spans.find((s) => s.verb === want);
  if (exact) return { start: exact.start, end: exact.end };
  const escaped = want.split(' ').map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('\\s+');
  const m = new RegExp(`(^|[^\\p{L}\\p{N}])(${escaped})(?![\\p{L}\\p{N}])`, 'iu').exec(caption);
  if (m) {
    const start = m.index + m[1].length;
    return { start, end: start + m[2].length };
  }
  const head = want.split(' ')[0];
  const byHead = spans.find((s) => s.verb === head);
  if (byHead) return { start: byHead.start, end: byHead.end };
  for (const t of terms(caption)) {
    if (lemma(t) === head || t.normal === head) return { start: t.start, end: t.end };
  }
  return null;
}
