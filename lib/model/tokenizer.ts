// The VideoLM tokenizer: word-level, trained from a corpus, saved as tokenizer.json.
//
// Decision (docs/model.md): word-level with lowercasing and punctuation split,
// not byte-level BPE. The model is small and trained from scratch on caption
// corpora, and stage 1's contrastive query is "the caption tokens that spell
// the keyword": with whole-word tokens an event keyword ("jump", "open door")
// is exactly a run of token ids, with no sub-word alignment to do. The cost is
// an <unk> for words unseen in training, acceptable for a captioner whose
// vocabulary comes from its own training captions.
//
// Rules (deterministic, locale-independent):
//  * Special tokens, matched literally in the text before anything else, have
//    fixed ids: <pad>=0, <bos>=1, <eos>=2, <unk>=3, <image>=4, <video>=5.
//  * Pre-tokenization: runs of letters/marks/digits; an apostrophe followed by
//    letters ("'s", "'t") as its own token; every other non-space character alone.
//  * Each piece is NFKC-normalized and lowercased (String#toLowerCase).
//  * Training keeps the most frequent pieces (ties: code-unit order) that occur
//    at least minFrequency times, up to vocabSize entries including specials.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './safetensors.js';

export const SPECIAL_TOKENS = ['<pad>', '<bos>', '<eos>', '<unk>', '<image>', '<video>'] as const;
export type SpecialToken = (typeof SPECIAL_TOKENS)[number];
export const PAD_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;
export const UNK_ID = 3;
export const IMAGE_ID = 4;
export const VIDEO_ID = 5;

const SPECIAL_RE = /<pad>|<bos>|<eos>|<unk>|<image>|<video>/g;
const PIECE_RE = /[\p{L}\p{M}\p{N}]+|['\u2019][\p{L}\p{M}]+|[^\s\p{L}\p{M}\p{N}]/gu;
const NO_SPACE_BEFORE = /^(?:[.,!?;:%)\]}]|['\u2019][\p{L}\p{M}]+)$/u;
const NO_SPACE_AFTER = /^[(\[{]$/;

export interface TrainOptions {
  /** Maximum vocabulary size, special tokens included (default 8192). */
  vocabSize?: number;
  /** Pieces seen fewer times are left out (default 1). */
  minFrequency?: number;
}

export interface EncodeOptions {
  /** Prepend <bos> (default false). */
  addBos?: boolean;
  /** Append <eos> (default false). */
  addEos?: boolean;
}

interface Piece {
  text: string;
  start: number;
  end: number;
  special: boolean;
}

function normalizePiece(s: string): string {
  return s.normalize('NFKC').toLowerCase();
}

/** Splits text into pieces with their [start, end) offsets in the original string. */
function pieces(text: string): Piece[] {
  const out: Piece[] = [];
  const plain = (from: number, to: number) => {
    const seg = text.slice(from, to);
    for (const m of seg.matchAll(PIECE_RE)) {
      const start = from + (m.index ?? 0);
      out.push({ text: normalizePiece(m[0]), start, end: start + m[0].length, special: false });
    }
  };
  let last = 0;
  for (const m of text.matchAll(SPECIAL_RE)) {
    const at = m.index ?? 0;
    plain(last, at);
    out.push({ text: m[0], start: at, end: at + m[0].length, special: true });
    last = at + m[0].length;
  }
  plain(last, text.length);
  return out;
}

export class Tokenizer {
  readonly #vocab: string[];
  readonly #ids: Map<string, number>;

  private constructor(vocab: string[]) {
    this.#vocab = vocab;
    this.#ids = new Map(vocab.map((w, i) => [w, i]));
  }

  /** Trains a vocabulary from a corpus of texts (deterministic for a given corpus and options). */
  static train(corpus: Iterable<string>, opts: TrainOptions = {}): Tokenizer {
    const vocabSize = opts.vocabSize ?? 8192;
    const minFrequency = opts.minFrequency ?? 1;
    if (!Number.isSafeInteger(vocabSize) || vocabSize < SPECIAL_TOKENS.length)
      throw new RangeError(`Tokenizer.train: opts.vocabSize must be an integer >= ${SPECIAL_TOKENS.length}, got ${vocabSize}`);
    if (!Number.isSafeInteger(minFrequency) || minFrequency < 1)
      throw new RangeError(`Tokenizer.train: opts.minFrequency must be an integer >= 1, got ${minFrequency}`);
    const counts = new Map<string, number>();
    let i = 0;
    for (const text of corpus) {
      if (typeof text !== 'string') throw new TypeError(`Tokenizer.train: corpus[${i}] must be a string, got ${typeof text}`);
      for (const p of pieces(text)) if (!p.special) counts.set(p.text, (counts.get(p.text) ?? 0) + 1);
      i++;
    }
    const words = [...counts.entries()]
      .filter(([, c]) => c >= minFrequency)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, vocabSize - SPECIAL_TOKENS.length)
      .map(([w]) => w);
    return new Tokenizer([...SPECIAL_TOKENS, ...words]);
  }

  /** Number of ids, special tokens included. */
  get vocabSize(): number {
    return this.#vocab.length;
  }

  /** The vocabulary in id order (a copy). */
  get vocab(): string[] {
    return [...this.#vocab];
  }

  /** The id of a token (a special token or a normalized piece), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#ids.get(token);
  }

  /** Token ids of `text`; words outside the vocabulary become <unk>. */
  encode(text: string, opts: EncodeOptions = {}): Int32Array {
    return this.encodeWithOffsets(text, opts).ids;
  }

  /**
   * Token ids with each token's [start, end) character offsets in `text`
   * (<bos>/<eos> added by the options get [0, 0] and [len, len]); lets a caller
   * find the tokens that spell a keyword.
   */
  encodeWithOffsets(text: string, opts: EncodeOptions = {}): { ids: Int32Array; offsets: Int32Array } {
    if (typeof text !== 'string') throw new TypeError(`Tokenizer.encode: text must be a string, got ${typeof text}`);
    const ps = pieces(text);
    const n = ps.length + (opts.addBos ? 1 : 0) + (opts.addEos ? 1 : 0);
    const ids = new Int32Array(n);
    const offsets = new Int32Array(2 * n);
    let k = 0;
    if (opts.addBos) ids[k++] = BOS_ID;
    for (const p of ps) {
      ids[k] = this.#ids.get(p.text) ?? UNK_ID;
      offsets[2 * k] = p.start;
      offsets[2 * k + 1] = p.end;
      k++;
    }
    if (opts.addEos) {
      ids[k] = EOS_ID;
      offsets[2 * k] = offsets[2 * k + 1] = text.length;
    }
    return { ids, offsets };
  }

  /** Text of token ids: words joined by spaces, none before closing punctuation or after opening brackets. */
  decode(ids: ArrayLike<number>, opts: { skipSpecial?: boolean } = {}): string {
    const skip = opts.skipSpecial ?? true;
    let out = '';
    let prev = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.#vocab.length)
        throw new RangeError(`Tokenizer.decode: ids[${i}] must be an integer in [0, ${this.#vocab.length}), got ${id}`);
      if (skip && id < SPECIAL_TOKENS.length) continue;
      const w = this.#vocab[id];
      if (out.length > 0 && !NO_SPACE_BEFORE.test(w) && !NO_SPACE_AFTER.test(prev)) out += ' ';
      out += w;
      prev = w;
    }
    return out;
  }

  /** The tokenizer.json object. */
  toJSON(): { type: 'word-level'; version: 1; lowercase: true; normalization: 'NFKC'; specialTokens: string[]; vocab: string[] } {
    return { type: 'word-level', version: 1, lowercase: true, normalization: 'NFKC', specialTokens: [...SPECIAL_TOKENS], vocab: [...this.#vocab] };
  }

  /** Writes tokenizer.json atomically. */
  save(path: string): void {
    writeFileAtomic(path, [Buffer.from(JSON.stringify(this.toJSON(), null, 1) + '\n', 'utf8')]);
  }

  /** Rebuilds a tokenizer from its JSON object, checking it. */
  static fromJSON(obj: unknown, source = 'tokenizer.json'): Tokenizer {
    const bad = (what: string): never => {
      throw new Error(`${source}: ${what}`);
    };
    if (obj === null || typeof obj !== 'object') bad('must be a JSON object');
    const o = obj as Record<string, unknown>;
    if (o.type !== 'word-level') bad(`type must be "word-level", got ${JSON.stringify(o.type)}`);
    if (o.version !== 1) bad(`version must be 1, got ${JSON.stringify(o.version)}`);
    if (!Array.isArray(o.vocab) || o.vocab.some((w) => typeof w !== 'string' || w.length === 0)) bad('vocab must be an array of non-empty strings');
    const vocab = o.vocab as string[];
    SPECIAL_TOKENS.forEach((s, i) => {
      if (vocab[i] !== s) bad(`vocab[${i}] must be the special token ${s}, got ${JSON.stringify(vocab[i])}`);
    });
    const seen = new Set<string>();
    vocab.forEach((w, i) => {
      if (seen.has(w)) bad(`vocab[${i}] ${JSON.stringify(w)} is a duplicate`);
      seen.add(w);
    });
    return new Tokenizer([...vocab]);
  }

  /** Reads tokenizer.json. */
  static load(path: string): Tokenizer {
    let obj: unknown;
    try {
      obj = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new Error(`${path}: cannot read tokenizer (${(e as Error).message})`);
    }
    return Tokenizer.fromJSON(obj, path);
  }
}
