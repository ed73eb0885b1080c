// The tokenizer of a Hugging Face folder: tokenizer.json run by
// @huggingface/tokenizers (the Hugging Face tokenizer pipeline in JavaScript:
// normalizer, pre-tokenizer, BPE/WordPiece/Unigram with byte fallback, post-
// processor, decoder), plus what transformers takes from tokenizer_config.json
// and special_tokens_map.json: the special tokens (bos/eos/pad/unk), and for
// the Llama/Gemma tokenizer classes the add_bos_token / add_eos_token flags,
// which transformers applies by rebuilding the post-processor (so they win
// over tokenizer.json's TemplateProcessing). Every other class adds exactly
// what tokenizer.json's post-processor adds. Cost: linear in the text (the
// library's BPE caches merges per word).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { describe, rangeError, typeError } from '../errors.js';
import { CheckpointError } from '../model/safetensors.js';
import { checkBoolean, checkOptions } from '../validate.js';
import { readJsonObject } from './config.js';

export interface PretrainedEncodeOptions {
  /** Add BOS/EOS as Hugging Face does for this tokenizer (default true). Use false for chat-template output. */
  addSpecialTokens?: boolean;
}

export interface PretrainedDecodeOptions {
  /** Leave special tokens (BOS, EOS, chat markers) out of the text (default false). */
  skipSpecialTokens?: boolean;
}

/** The special-token names tokenizer_config.json may set (a string or an AddedToken object). */
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'] as const;
type SpecialKey = (typeof SPECIAL_KEYS)[number];

/** Tokenizer classes for which transformers rebuilds the post-processor from add_bos_token / add_eos_token. */
const FLAG_CLASSES = new Set(['LlamaTokenizer', 'LlamaTokenizerFast', 'CodeLlamaTokenizer', 'CodeLlamaTokenizerFast', 'GemmaTokenizer', 'GemmaTokenizerFast']);

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) with the API of docs/pretrained.md. */
export class PretrainedTokenizer {
  readonly #tok: HfTokenizer;
  readonly #addBos: boolean | undefined;
  readonly #addEos: boolean | undefined;
  /** tokenizer_config.json (with special_tokens_map.json filled in), as read. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Special token strings by role (bos_token, eos_token, ...), where the folder names them. */
  readonly specialTokens: Readonly<Partial<Record<SpecialKey, string>>>;
  /** Ids of every token marked special (added tokens with special: true, and the named roles). */
  readonly specialIds: ReadonlySet<number>;
  /** Number of ids the tokenizer knows (vocabulary plus added tokens; highest id + 1). */
  readonly vocabSize: number;

  private constructor(tokenizerJson: Record<string, unknown>, config: Record<string, unknown>, where: string) {
    const lib = { ...config };
    // transformers >= 4.45 no longer cleans up spaces unless the config asks for it.
    lib.clean_up_tokenization_spaces = config.clean_up_tokenization_spaces ?? false;
    for (const k of SPECIAL_KEYS) if (lib[k] !== undefined) lib[k] = tokenContent(lib[k]);
    try {
      this.#tok = new HfTokenizer(tokenizerJson, lib);
    } catch (e) {
      throw new CheckpointError(`${where}: @huggingface/tokenizers cannot load it (${(e as Error).message})`);
    }
    this.config = Object.freeze({ ...config });
    const sp: Partial<Record<SpecialKey, string>> = {};
    for (const k of SPECIAL_KEYS) {
      const c = tokenContent(config[k]);
      if (c !== undefined) sp[k] = c;
    }
    this.specialTokens = Object.freeze(sp);
    const cls = typeof config.tokenizer_class === 'string' ? config.tokenizer_class : '';
    if (FLAG_CLASSES.has(cls)) {
      this.#addBos = config.add_bos_token === undefined ? true : config.add_bos_token === true;
      this.#addEos = config.add_eos_token === true;
    }
    const ids = new Set<number>();
    for (const [id, t] of this.#tok.get_added_tokens_decoder()) if (t.special) ids.add(id);
    for (const v of Object.values(sp)) {
      const id = this.#tok.token_to_id(v);
      if (id !== undefined) ids.add(id);
    }
    this.specialIds = ids;
    let max = -1;
    for (const id of this.#tok.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    if (this.#addBos && this.bosId === undefined) throw new CheckpointError(`${where}: add_bos_token is true but bos_token ${JSON.stringify(sp.bos_token)} is not in the vocabulary`);
    if (this.#addEos && this.eosId === undefined) throw new CheckpointError(`${where}: add_eos_token is true but eos_token ${JSON.stringify(sp.eos_token)} is not in the vocabulary`);
  }

  /** Loads `dir`/tokenizer.json with tokenizer_config.json and special_tokens_map.json when present. */
  static load(dir: string): PretrainedTokenizer {
    const path = join(dir, 'tokenizer.json');
    if (!existsSync(path)) throw new CheckpointError(`${path}: not found (a Hugging Face folder needs tokenizer.json; this package does not read slow-tokenizer files such as tokenizer.model or vocab.json alone)`);
    const tj = readJsonObject(path);
    const cfgPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(cfgPath) ? readJsonObject(cfgPath) : {};
    const mapPath = join(dir, 'special_tokens_map.json');
    if (existsSync(mapPath)) {
      const map = readJsonObject(mapPath);
      for (const k of [...SPECIAL_KEYS, 'additional_special_tokens'])
        if (config[k] === undefined && map[k] !== undefined) config[k] = map[k];
    }
    return new PretrainedTokenizer(tj, config, path);
  }

  /** Builds one from parsed tokenizer.json and tokenizer_config.json objects. */
  static fromJson(tokenizerJson: Record<string, unknown>, config: Record<string, unknown> = {}): PretrainedTokenizer {
    return new PretrainedTokenizer(tokenizerJson, config, 'tokenizer.json');
  }

  get bosId(): number | undefined {
    return this.specialTokens.bos_token === undefined ? undefined : this.#tok.token_to_id(this.specialTokens.bos_token);
  }

  get eosId(): number | undefined {
    return this.specialTokens.eos_token === undefined ? undefined : this.#tok.token_to_id(this.specialTokens.eos_token);
  }

  get padId(): number | undefined {
    return this.specialTokens.pad_token === undefined ? undefined : this.#tok.token_to_id(this.specialTokens.pad_token);
  }

  /** The id of a token string (vocabulary or added token), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#tok.token_to_id(token);
  }

  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.#tok.id_to_token(id);
  }

  /** Token ids of `text`, with BOS/EOS as Hugging Face adds them unless `addSpecialTokens` is false. */
  encode(text: string, opts: PretrainedEncodeOptions = {}): Int32Array {
    const fn = 'tokenizer.encode';
    if (typeof text !== 'string') throw typeError(fn, 'text', 'a string', describe(text));
    const add = checkBoolean(fn, 'opts.addSpecialTokens', checkOptions(fn, opts).addSpecialTokens, true);
    if (this.#addBos === undefined) return Int32Array.from(this.#tok.encode(text, { add_special_tokens: add }).ids);
    const ids = this.#tok.encode(text, { add_special_tokens: false }).ids;
    if (add && this.#addBos) ids.unshift(this.bosId!);
    if (add && this.#addEos) ids.push(this.eosId!);
    return Int32Array.from(ids);
  }

  /** The text of token ids (special tokens kept unless `skipSpecialTokens`). */
  decode(ids: ArrayLike<number>, opts: PretrainedDecodeOptions = {}): string {
    const fn = 'tokenizer.decode';
    if (ids === null || typeof ids !== 'object' || typeof (ids as { length?: unknown }).length !== 'number')
      throw typeError(fn, 'ids', 'an Int32Array or an array of token ids', describe(ids));
    const skip = checkBoolean(fn, 'opts.skipSpecialTokens', checkOptions(fn, opts).skipSpecialTokens, false);
    const list = Array.from(ids);
    list.forEach((x, i) => {
      if (!Number.isSafeInteger(x) || x < 0) throw rangeError(fn, `ids[${i}]`, 'a non-negative integer token id', describe(x));
    });
    const kept = skip ? list.filter((x) => !this.specialIds.has(x)) : list;
    if (kept.length === 0) return '';
    return this.#tok.decode(kept, { skip_special_tokens: skip });
  }
}
