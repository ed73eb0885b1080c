// LoRA adapters on the decoder's linear layers, in PEFT's conventions:
//
//   y = x·Wᵀ (+b) + s · (dropout(x)·Aᵀ)·Bᵀ,   A [r, in], B [out, r],
//   s = lora_alpha / r   (lora_alpha / √r with use_rslora)
//
// A starts as PEFT's kaiming_uniform(a = √5) draw, U(−1/√in, 1/√in) (seeded
// here), and B at zero, so a fresh adapter leaves the model unchanged. Adding
// adapters freezes every base parameter: only the A and B matrices are
// trained and carry optimizer state. The adapter is saved and loaded in
// PEFT's layout — adapter_config.json and adapter_model.safetensors with
// names base_model.model.<module>.lora_A.weight / lora_B.weight — and can be
// merged into the base weights (W += s·B·A, what merge_and_unload does).
// Cost: adding or merging is O(r · in · out) per target; the adapters add
// 2·r·(in + out) multiply-adds per token per target to each pass.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, rangeError, typeError } from '../errors.js';
import { writeFileAtomic } from '../fs.js';
import { matmul } from '../ops/matmul.js';
import { randu } from '../ops/layers.js';
import { CheckpointError, readSafetensors, writeSafetensors, type StTensor } from '../model/safetensors.js';
import { tensor } from '../tensor.js';
import { checkBoolean, checkKnownKeys, checkNumber, checkOptions } from '../validate.js';
import { hostValue, paramF32, setParamF32 } from './bf16.js';
import { toFloat32 } from './checkpoint.js';
import { readJsonObject } from './config.js';
import { LINEAR_KINDS, type Decoder, type Linear, type LinearKind, type Param } from './decoder.js';

export interface LoraOptions {
  /** r: the adapters' rank. */
  rank: number;
  /** lora_alpha (default rank, so s = 1). */
  alpha?: number;
  /** Which linear layers get an adapter (default q/k/v/o_proj); 'all-linear' for all seven. */
  targets?: readonly LinearKind[] | 'all-linear';
  /** Dropout on the adapters' input during training (default 0). */
  dropout?: number;
  /** s = alpha / √r instead of alpha / r (PEFT's use_rslora; default false). */
  useRslora?: boolean;
  /** Only these decoder layers (PEFT's layers_to_transform; default all). */
  layers?: readonly number[];
  /** Seed of A's initialization (default 0). */
  seed?: number;
}

/** The adapter settings of a model (what adapter_config.json records). */
export interface LoraState {
  rank: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  targets: LinearKind[];
  layers: number[] | null;
}

export const DEFAULT_TARGETS: readonly LinearKind[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
const PEFT_PREFIX = 'base_model.model.';

function layerOf(path: string): number {
  return Number(/(?:^|\.)layers\.(\d+)\./.exec(path)![1]);
}

/** Every option addLora takes (any other is refused with the nearest name). */
const LORA_KEYS = ['rank', 'alpha', 'targets', 'dropout', 'useRslora', 'layers', 'seed'];

/** Checks LoRA options (fn names the caller in errors). */
export function checkLoraOptions(fn: string, opts: unknown, layers: number): LoraState & { seed: number } {
  const o = checkOptions(fn, opts);
  checkKnownKeys(fn, 'opts', o, LORA_KEYS);
  const rank = checkNumber(fn, 'opts.rank', o.rank, NaN, { integer: true, min: 1, max: 65536 });
  if (Number.isNaN(rank)) throw typeError(fn, 'opts.rank', 'a positive integer', 'undefined');
  const alpha = checkNumber(fn, 'opts.alpha', o.alpha, rank, { gt: 0 });
  const dropout = checkNumber(fn, 'opts.dropout', o.dropout, 0, { min: 0 });
  if (dropout >= 1) throw rangeError(fn, 'opts.dropout', 'in [0, 1)', `${dropout}`);
  const useRslora = checkBoolean(fn, 'opts.useRslora', o.useRslora, false);
  let targets: LinearKind[];
  if (o.targets === undefined) targets = [...DEFAULT_TARGETS];
  else if (o.targets === 'all-linear') targets = [...LINEAR_KINDS];
  else {
    if (!Array.isArray(o.targets) || o.targets.length === 0) throw typeError(fn, 'opts.targets', `a non-empty array of ${LINEAR_KINDS.join(' | ')}, or 'all-linear'`, describe(o.targets));
    o.targets.forEach((t, i) => {
      if (!LINEAR_KINDS.includes(t as LinearKind)) throw rangeError(fn, `opts.targets[${i}]`, `one of ${LINEAR_KINDS.join(', ')}`, describe(t));
    });
    targets = [...new Set(o.targets as LinearKind[])];
  }
  let ls: number[] | null = null;
  if (o.layers !== undefined) {
    if (!Array.isArray(o.layers) || o.layers.length === 0) throw typeError(fn, 'opts.layers', 'a non-empty array of layer indices', describe(o.layers));
    ls = o.layers.map((l, i) => checkNumber(fn, `opts.layers[${i}]`, l, 0, { integer: true, min: 0, max: layers - 1 }));
  }
  const seed = checkNumber(fn, 'opts.seed', o.seed, 0, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER });
  return { rank, alpha, dropout, useRslora, targets, layers: ls, seed };
}

function adapterParam(name: string, shape: number[], data: Float32Array): Param {
  return { name, shape, value: tensor(data, shape), trainable: true, decay: true, storedDtype: 'F32', touched: false };
}

/** Attaches adapters (see the file comment); freezes every base parameter. Returns the linears that got one. */
export function attachLora(dec: Decoder, st: LoraState, seed: number, base: Iterable<Param>): Linear[] {
  const scale = st.useRslora ? st.alpha / Math.sqrt(st.rank) : st.alpha / st.rank;
  const out: Linear[] = [];
  let stream = 0;
  for (const L of dec.linears()) {
    stream++;
    if (!st.targets.includes(L.kind) || (st.layers && !st.layers.includes(layerOf(L.path)))) continue;
    const [outD, inD] = L.weight.shape;
    const bound = 1 / Math.sqrt(inD);
    const a = randu([st.rank, inD], { seed, stream, low: -bound, high: bound });
    L.lora = {
      a: adapterParam(`${L.path}.lora_A.weight`, [st.rank, inD], a.data as Float32Array),
      b: adapterParam(`${L.path}.lora_B.weight`, [outD, st.rank], new Float32Array(outD * st.rank)),
      rank: st.rank, alpha: st.alpha, scale, dropout: st.dropout,
    };
    out.push(L);
  }
  for (const p of base) p.trainable = false;
  return out;
}

/** Attaches adapters read by readAdapter (by module path); freezes every base parameter. */
export function attachLoaded(dec: Decoder, st: LoraState, tensors: Map<string, { a: Float32Array; b: Float32Array }>, base: Iterable<Param>): void {
  const scale = st.useRslora ? st.alpha / Math.sqrt(st.rank) : st.alpha / st.rank;
  for (const L of dec.linears()) {
    const t = tensors.get(L.path);
    if (!t) continue;
    const [outD, inD] = L.weight.shape;
    L.lora = {
      a: adapterParam(`${L.path}.lora_A.weight`, [st.rank, inD], t.a),
      b: adapterParam(`${L.path}.lora_B.weight`, [outD, st.rank], t.b),
      rank: st.rank, alpha: st.alpha, scale, dropout: st.dropout,
    };
  }
  for (const p of base) p.trainable = false;
}

/** W + s·B·A of a linear with an adapter (a new array; W itself unchanged). */
export function mergedWeight(L: Linear): Float32Array {
  const lo = L.lora!;
  const ba = matmul(hostValue(lo.b), hostValue(lo.a)).data as Float32Array;
  const w = paramF32(L.weight);
  const out = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = w[i] + lo.scale * ba[i];
  return out;
}

/** Folds every adapter into its base weight and removes the adapters (a bfloat16 base weight is re-rounded). */
export function mergeInto(dec: Decoder): number {
  let n = 0;
  for (const L of dec.linears()) {
    if (!L.lora) continue;
    setParamF32(L.weight, mergedWeight(L));
    L.weight.touched = true;
    L.lora = undefined;
    n++;
  }
  return n;
}

/** The adapters as PEFT names them in adapter_model.safetensors. */
export function adapterTensors(dec: Decoder): Record<string, StTensor> {
  const out: Record<string, StTensor> = {};
  for (const L of dec.linears()) {
    if (!L.lora) continue;
    for (const p of [L.lora.a, L.lora.b]) out[PEFT_PREFIX + p.name] = { dtype: 'F32', shape: [...p.shape], data: paramF32(p) };
  }
  return out;
}

/**
 * target_modules and layers_to_transform that select exactly the linears with
 * adapters: kinds (and layers) when they form a product set, else full module paths.
 */
export function adapterTargets(dec: Decoder): { targets: string[]; layers: number[] | null } {
  const withLora = [...dec.linears()].filter((L) => L.lora);
  const kinds = [...new Set(withLora.map((L) => L.kind))];
  const layers = [...new Set(withLora.map((L) => layerOf(L.path)))].sort((a, b) => a - b);
  if (kinds.length * layers.length === withLora.length)
    return { targets: kinds, layers: layers.length === dec.spec.layers ? null : layers };
  return { targets: withLora.map((L) => L.path), layers: null };
}

/** Writes adapter_config.json and adapter_model.safetensors (PEFT layout) to `dir`. */
export function writeAdapter(dir: string, dec: Decoder, st: Pick<LoraState, 'rank' | 'alpha' | 'dropout' | 'useRslora'>, baseModel: string): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, ADAPTER_WEIGHTS), adapterTensors(dec), { format: 'pt' });
  const { targets, layers } = adapterTargets(dec);
  const cfg = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: layers,
    lora_alpha: st.alpha,
    lora_dropout: st.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: st.rank,
    rank_pattern: {},
    revision: null,
    target_modules: targets,
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: st.useRslora,
  };
  writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(cfg, null, 2) + '\n');
}

/**
 * Reads a PEFT LoRA adapter folder: its settings (checked; options this
 * package does not implement are errors naming the field) and its tensors by
 * module path.
 */
export function readAdapter(dir: string, dec: Decoder): { state: LoraState; tensors: Map<string, { a: Float32Array; b: Float32Array }> } {
  const cfgPath = join(dir, ADAPTER_CONFIG);
  if (!existsSync(cfgPath)) throw new CheckpointError(`${cfgPath}: not found (not a PEFT adapter folder?)`);
  const c = readJsonObject(cfgPath);
  const bad = (field: string, why: string): never => {
    throw new CheckpointError(`${cfgPath}: ${field} = ${JSON.stringify(c[field])} is not supported: ${why}`);
  };
  if (c.peft_type !== 'LORA') bad('peft_type', 'only "LORA" adapters are read');
  if (c.task_type !== undefined && c.task_type !== null && c.task_type !== 'CAUSAL_LM') bad('task_type', 'expected "CAUSAL_LM"');
  for (const k of ['use_dora', 'fan_in_fan_out']) if (c[k] !== undefined && c[k] !== false) bad(k, 'only false is implemented');
  if (c.bias !== undefined && c.bias !== 'none') bad('bias', 'only "none" is implemented');
  for (const k of ['modules_to_save', 'layer_replication'])
    if (c[k] !== undefined && c[k] !== null && !(Array.isArray(c[k]) && (c[k] as unknown[]).length === 0)) bad(k, 'only null is implemented');
  for (const k of ['rank_pattern', 'alpha_pattern'])
    if (c[k] !== undefined && c[k] !== null && Object.keys(c[k] as object).length > 0) bad(k, 'per-module ranks and alphas are not implemented');
  if (c.layers_pattern !== undefined && c.layers_pattern !== null && c.layers_pattern !== 'layers') bad('layers_pattern', 'only "layers" (or null) is implemented');
  const rank = c.r;
  if (typeof rank !== 'number' || !Number.isSafeInteger(rank) || rank < 1) bad('r', 'must be a positive integer');
  const alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !(alpha > 0)) bad('lora_alpha', 'must be a positive number');
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) bad('lora_dropout', 'must be in [0, 1)');
  const useRslora = c.use_rslora === true;
  // target_modules: a list of names (a module matches when its path ends with .name) or a regex (full match).
  const tm = c.target_modules;
  let match: (path: string) => boolean;
  if (tm === 'all-linear') match = () => true;
  else if (typeof tm === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${tm})$`);
    } catch (e) {
      return bad('target_modules', `not a regular expression this package can compile (${(e as Error).message})`);
    }
    match = (p) => re.test(p);
  } else if (Array.isArray(tm) && tm.every((x) => typeof x === 'string')) match = (p) => (tm as string[]).some((k) => p === k || p.endsWith(`.${k}`));
  else return bad('target_modules', 'must be a list of module names, a regular expression or "all-linear"');
  let layers: number[] | null = null;
  const lt = c.layers_to_transform;
  if (typeof lt === 'number') layers = [lt];
  else if (Array.isArray(lt)) layers = lt as number[];
  else if (lt !== undefined && lt !== null) bad('layers_to_transform', 'must be a layer index, a list of them, or null');
  const chosen = [...dec.linears()].filter((L) => match(L.path) && (!layers || layers.includes(layerOf(L.path))));
  if (chosen.length === 0) bad('target_modules', `matches no linear layer of this model (${LINEAR_KINDS.join(', ')})`);
  const path = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(path)) throw new CheckpointError(`${path}: not found (only safetensors adapters are read)`);
  const st = readSafetensors(path);
  const tensors = new Map<string, { a: Float32Array; b: Float32Array }>();
  const used = new Set<string>();
  for (const L of chosen) {
    const [outD, inD] = L.weight.shape;
    const get = (suffix: string, shape: number[]) => {
      // PEFT writes names without the adapter name; older versions kept ".default".
      const names = [`${PEFT_PREFIX}${L.path}.${suffix}.weight`, `${PEFT_PREFIX}${L.path}.${suffix}.default.weight`];
      const name = names.find((n) => st.tensors[n] !== undefined);
      if (!name) throw new CheckpointError(`${path}: tensor '${names[0]}' is missing (adapter_config.json targets ${L.path})`);
      const t = st.tensors[name];
      if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) throw new CheckpointError(`${path}: tensor '${name}': dtype ${t.dtype} is not a floating-point dtype`);
      if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1])
        throw new CheckpointError(`${path}: tensor '${name}': shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] (r = ${rank})`);
      used.add(name);
      return Float32Array.from(toFloat32(t));
    };
    tensors.set(L.path, { a: get('lora_A', [rank as number, inD]), b: get('lora_B', [outD, rank as number]) });
  }
  for (const name of st.order) if (!used.has(name)) throw new CheckpointError(`${path}: tensor '${name}' does not belong to any adapter adapter_config.json describes`);
  const kinds = [...new Set(chosen.map((L) => L.kind))];
  return { state: { rank: rank as number, alpha: alpha as number, dropout: dropout as number, useRslora, targets: kinds, layers }, tensors };
}
