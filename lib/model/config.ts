// VideoLM configuration, parameter layout, seeded initialization and the
// parameter checkpoint (model.safetensors), over the core's vp/model.h.
//
// The model keeps all parameters in ONE flat Float32Array at the offsets of
// `paramLayout(config)`; model.safetensors holds each named tensor (a view of
// that buffer, so saving copies nothing) and the config as metadata.
import { describe, rangeError, typeError } from '../errors.js';
import { native } from '../native.js';
import { checkOptions } from '../validate.js';
import { readSafetensors, writeSafetensors, CheckpointError, type StTensor } from './safetensors.js';

export interface VideoLMConfig {
  /** Frames are imageSize × imageSize × 3. */
  imageSize: number;
  patchSize: number;
  maxFrames: number;
  /** Model width. */
  dim: number;
  layers: number;
  heads: number;
  /** Key/value heads (grouped-query attention); divides `heads`. */
  kvHeads: number;
  /** SwiGLU hidden size. */
  mlpHidden: number;
  vocab: number;
  maxSeq: number;
  /** LM head shares the text embedding (default true). */
  tieEmbeddings: boolean;
  normEps: number;
  ropeTheta: number;
  initStd: number;
}

export type PresetName = 'tiny' | 'small';
export const PRESET_NAMES: readonly PresetName[] = ['tiny', 'small'];

const INT_FIELDS = ['imageSize', 'patchSize', 'maxFrames', 'dim', 'layers', 'heads', 'kvHeads', 'mlpHidden', 'vocab', 'maxSeq'] as const;
const FLOAT_FIELDS = ['normEps', 'ropeTheta', 'initStd'] as const;

/** A preset's configuration (the core defines them). */
export function preset(name: PresetName): VideoLMConfig {
  if (!PRESET_NAMES.includes(name)) throw rangeError('preset', 'name', PRESET_NAMES.map((n) => `'${n}'`).join(' | '), describe(name));
  return native().modelPreset(name) as VideoLMConfig;
}

/**
 * A complete, validated configuration from `{ preset?, ...overrides }` (preset
 * default 'tiny'). Throws TypeError/RangeError naming the field.
 */
export function resolveConfig(input: Partial<VideoLMConfig> & { preset?: PresetName } = {}): VideoLMConfig {
  const fn = 'resolveConfig';
  const o = checkOptions(fn, input);
  const known = new Set<string>(['preset', ...INT_FIELDS, ...FLOAT_FIELDS, 'tieEmbeddings']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw rangeError(fn, `config.${k}`, 'a known field', 'an unknown field');
  const base = preset((o.preset as PresetName | undefined) ?? 'tiny');
  const c: VideoLMConfig = { ...base };
  for (const k of INT_FIELDS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number') throw typeError(fn, `config.${k}`, 'a number', describe(v));
    if (!Number.isSafeInteger(v) || v < 1 || v > 2 ** 24) throw rangeError(fn, `config.${k}`, 'an integer in [1, 2^24]', describe(v));
    c[k] = v;
  }
  for (const k of FLOAT_FIELDS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number') throw typeError(fn, `config.${k}`, 'a number', describe(v));
    if (!Number.isFinite(v)) throw rangeError(fn, `config.${k}`, 'a finite number', describe(v));
    c[k] = v;
  }
  if (o.tieEmbeddings !== undefined) {
    if (typeof o.tieEmbeddings !== 'boolean') throw typeError(fn, 'config.tieEmbeddings', 'a boolean', describe(o.tieEmbeddings));
    c.tieEmbeddings = o.tieEmbeddings;
  }
  if (c.imageSize % c.patchSize !== 0) throw rangeError(fn, 'config.imageSize', `a multiple of patchSize (${c.patchSize})`, `${c.imageSize}`);
  if (c.dim % c.heads !== 0) throw rangeError(fn, 'config.dim', `a multiple of heads (${c.heads})`, `${c.dim}`);
  const hd = c.dim / c.heads;
  if (hd % 2 !== 0 || hd > 256) throw rangeError(fn, 'config.dim / config.heads', 'an even head size <= 256', `${hd}`);
  if (c.heads % c.kvHeads !== 0) throw rangeError(fn, 'config.heads', `a multiple of kvHeads (${c.kvHeads})`, `${c.heads}`);
  if (!(c.normEps > 0)) throw rangeError(fn, 'config.normEps', '> 0', `${c.normEps}`);
  if (!(c.ropeTheta > 1)) throw rangeError(fn, 'config.ropeTheta', '> 1', `${c.ropeTheta}`);
  if (!(c.initStd >= 0)) throw rangeError(fn, 'config.initStd', '>= 0', `${c.initStd}`);
  return c;
}

export interface ParamEntry {
  name: string;
  shape: number[];
  /** Offset in floats into the flat parameter buffer. */
  offset: number;
  numel: number;
  /** AdamW weight decay applies. */
  decay: boolean;
}

export interface ParamLayout {
  /** Floats in the flat buffer (tensors start at multiples of 16 floats). */
  total: number;
  params: ParamEntry[];
}

/** The parameter layout of a configuration (see native/include/vp/model.h for the names). */
export function paramLayout(config: VideoLMConfig): ParamLayout {
  return native().modelLayout(resolveConfig(config)) as ParamLayout;
}

/** A freshly initialized flat parameter buffer: identical for a seed on every machine and thread count. */
export function initParams(config: VideoLMConfig, seed: number | bigint): Float32Array {
  const fn = 'initParams';
  let s: bigint;
  if (typeof seed === 'bigint') s = seed;
  else if (typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0) s = BigInt(seed);
  else throw typeError(fn, 'seed', 'a non-negative safe integer or a bigint', describe(seed));
  if (s < 0n || s >= 2n ** 64n) throw rangeError(fn, 'seed', 'in [0, 2^64)', `${s}`);
  const c = resolveConfig(config);
  const layout = paramLayout(c);
  const out = new Float32Array(layout.total);
  native().initParams(c, s, out);
  return out;
}

/** Writes the flat parameters as model.safetensors (atomically), with the config in the metadata. */
export function saveParams(path: string, config: VideoLMConfig, params: Float32Array): void {
  const c = resolveConfig(config);
  const layout = paramLayout(c);
  if (!(params instanceof Float32Array)) throw typeError('saveParams', 'params', 'a Float32Array', describe(params));
  if (params.length !== layout.total) throw rangeError('saveParams', 'params.length', `${layout.total} for this config`, `${params.length}`);
  const tensors: Record<string, StTensor> = {};
  for (const p of layout.params) tensors[p.name] = { dtype: 'F32', shape: p.shape, data: params.subarray(p.offset, p.offset + p.numel) };
  writeSafetensors(path, tensors, { format: 'videoperceiver', config: JSON.stringify(c) });
}

/**
 * Reads model.safetensors into a flat buffer for `config`, checking that it has
 * exactly the layout's names, shapes and dtypes (CheckpointError otherwise).
 */
export function loadParams(path: string, config: VideoLMConfig): Float32Array {
  const c = resolveConfig(config);
  const layout = paramLayout(c);
  const expect: Record<string, { dtype: 'F32'; shape: number[] }> = {};
  for (const p of layout.params) expect[p.name] = { dtype: 'F32', shape: p.shape };
  const st = readSafetensors(path, { expect });
  const out = new Float32Array(layout.total);
  for (const p of layout.params) {
    const data = st.tensors[p.name].data as Float32Array;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new CheckpointError(`${path}: tensor '${p.name}' holds a non-finite value at index ${i}`);
    }
    out.set(data, p.offset);
  }
  return out;
}
