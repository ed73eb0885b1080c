// Helpers of `videoperceiver train` that keep a run's data safe and its errors in
// the user's words:
//   * resumedVideoLM: on --resume, the run's own model (config, tokenizer and
//     weights) from its checkpoint, never a tokenizer rebuilt from --data (a
//     dataset changed since the run started would pair the weights with other
//     words); --preset / the config file's "model" section must agree with it;
//   * unseenWordsNote: words of --data outside a model's vocabulary, said on
//     stderr (they are read as <unk>, as for any text outside the vocabulary);
//   * flagError: a Trainer option error ("Trainer.sft: opts.batchSize must be
//     ...") restated with the flag or config key the value came from;
//   * missingFolders / removeEmptyFolders: the folders --out will create, removed
//     again when the command fails before writing anything into them.
// Cost: a vocabulary set difference per dataset; a stat per missing folder level.
import { existsSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UsageError, type ParsedArgs } from './cli-args.js';
import type { Annotation } from './data/dataset.js';
import type { Tokenizer } from './model/tokenizer.js';
import { VIDEOLM_PRESETS, VideoLM, type VideoLMComputeDtype, type VideoLMDevice, type VideoLMPreset } from './model/videolm.js';
import { tokenizerForDataset } from './train/tasks.js';

/** Words the dataset's texts use that `tokenizer` lacks (sorted), as tokenizerForDataset would collect them. */
export function unseenWords(tokenizer: Tokenizer, annotations: Iterable<Annotation>): string[] {
  const known = new Set(tokenizer.vocab);
  return tokenizerForDataset(annotations).vocab.filter((w) => !known.has(w)).sort();
}

/** A stderr line about words of `dataArg` outside the model's vocabulary, or '' when there are none. */
export function unseenWordsNote(what: string, tokenizer: Tokenizer, annotations: Iterable<Annotation>, dataArg: string): string {
  const words = unseenWords(tokenizer, annotations);
  if (words.length === 0) return '';
  const shown = words.slice(0, 8).map((w) => JSON.stringify(w)).join(', ') + (words.length > 8 ? ', …' : '');
  return `videoperceiver: ${words.length} word${words.length > 1 ? 's' : ''} of --data ${dataArg} ${words.length > 1 ? 'are' : 'is'} not in ${what} (${shown}); ` +
    'read as <unk>, as any text outside the vocabulary is\n';
}

/**
 * The model of the run being resumed, loaded from its checkpoint `ck` (config, tokenizer.json,
 * weights): a --preset or a config file's "model" value that differs from it is refused.
 */
export async function resumedVideoLM(a: ParsedArgs, ck: string, model: Record<string, unknown> | undefined, opts: { device: VideoLMDevice; computeDtype?: VideoLMComputeDtype }): Promise<VideoLM> {
  const cfgPath = join(ck, 'config.json');
  let format: unknown;
  try {
    format = (JSON.parse(readFileSync(cfgPath, 'utf8')) as { format?: unknown }).format;
  } catch {
    format = undefined; // VideoLM.load names what is wrong with it
  }
  if (format !== undefined && format !== 'videoperceiver.VideoLM')
    throw new UsageError(`train --resume: ${cfgPath} is not a VideoLM (a Hugging Face model's checkpoint): give the --model DIR the run started from`);
  const { computeDtype: cfgCompute, ...shape } = model ?? {};
  const computeDtype = opts.computeDtype ?? (cfgCompute as VideoLMComputeDtype | undefined);
  const m = await VideoLM.load(ck, { device: opts.device, ...(computeDtype ? { computeDtype } : {}) });
  const preset = a.str('preset') as VideoLMPreset | undefined;
  const { vocab: _v, ...fromPreset } = preset ? VIDEOLM_PRESETS[preset] : {};
  const asked: Record<string, unknown> = { ...fromPreset, ...shape };
  const saved = m.config as unknown as Record<string, unknown>;
  const same = (x: unknown, y: unknown) => x === y || (typeof x === 'number' && typeof y === 'number' && Math.fround(x) === Math.fround(y));
  const diff = Object.keys(asked).filter((k) => k !== 'preset' && !same(asked[k], saved[k]));
  if (diff.length > 0) {
    m.dispose();
    const list = (keys: string[], o: Record<string, unknown>) => keys.map((k) => `${k} ${JSON.stringify(o[k])}`).join(', ');
    const byConfig = diff.filter((k) => k in shape), byPreset = diff.filter((k) => !(k in shape));
    const asks = [byPreset.length ? `--preset ${preset} asks for ${list(byPreset, asked)}` : '', byConfig.length ? `--config "model" asks for ${list(byConfig, asked)}` : ''].filter(Boolean).join('; ');
    throw new UsageError(`train --resume: ${asks}, but the run's model has ${list(diff, saved)} (${cfgPath}); a resumed run keeps its model: ` +
      `leave ${[byPreset.length ? '--preset' : '', byConfig.length ? 'the config file\'s "model" values' : ''].filter(Boolean).join(' and ')} out, or train into a new --out`);
  }
  return m;
}

/** Trainer options that come from flags: { Trainer.sft: { batchSize: 'batch-size', ... } }. */
const FLAGS: Record<string, Record<string, string>> = {
  'Trainer.sft': { steps: 'steps', epochs: 'epochs', batchSize: 'batch-size', lr: 'lr', lambda: 'lambda', kim: 'no-kim', contrastive: 'no-contrastive' },
  'Trainer.rl': { steps: 'rl-steps', lr: 'rl-lr', groupSize: 'group-size', comparative: 'comparative' },
  Trainer: { seed: 'seed', checkpointEvery: 'checkpoint-every', saveTotalLimit: 'save-total-limit' },
  'Trainer.resume': { seed: 'seed' },
};
const SECTION: Record<string, string> = { 'Trainer.sft': 'sft', 'Trainer.rl': 'rl' };

/**
 * A Trainer error about one option ("Trainer.sft: opts.batchSize must be ...") restated as a
 * UsageError naming the flag given (`train: --batch-size must be ...`) or the config file's key;
 * any other error is returned as it is.
 */
export function flagError(e: unknown, a: ParsedArgs, config: { path?: string; sft?: Record<string, unknown>; rl?: Record<string, unknown> }): unknown {
  if (!(e instanceof RangeError || e instanceof TypeError)) return e;
  const m = /^(Trainer(?:\.sft|\.rl|\.resume)?): (?:opts|options)\.(\w+) (must [\s\S]*)$/.exec(e.message);
  if (!m) return e;
  const [, fn, key, rest] = m;
  const flag = FLAGS[fn]?.[key];
  if (flag && a.has(flag)) return new UsageError(`train: --${flag} ${rest}`);
  const section = SECTION[fn];
  const fromConfig = section ? (config as Record<string, Record<string, unknown> | undefined>)[section] : undefined;
  if (config.path && fromConfig && key in fromConfig) return new UsageError(`train: --config ${config.path}: "${section}.${key}" ${rest}`);
  return e;
}

/** The folders that do not exist yet on the way to `path`, outermost first (what creating it would add). */
export function missingFolders(path: string): string[] {
  const out: string[] = [];
  let p = resolve(path);
  while (!existsSync(p)) {
    out.unshift(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  return out;
}

/** Removes the folders `created` (innermost first) that are still empty; stops at the first that is not. */
export function removeEmptyFolders(created: readonly string[]): void {
  for (const dir of [...created].reverse()) {
    try {
      if (!statSync(dir).isDirectory()) return;
      rmdirSync(dir); // refuses a folder that holds anything
    } catch {
      return;
    }
  }
}
