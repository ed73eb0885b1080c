// Weights of a Hugging Face folder: model.safetensors, or a sharded
// model.safetensors.index.json ({"metadata", "weight_map": name → shard}) and
// its shards, read with lib/model/safetensors.ts (which checks each file's
// header, dtypes, offsets and size), then checked against the names and
// shapes the config implies (expectedTensors): a missing, misshapen, unknown
// or doubly-stored tensor is a CheckpointError naming the tensor and the file.
// Stored F32 / F16 / BF16 (and F64) weights become float32 (with `bf16Matrices`,
// tensors of 2 or more dimensions become bfloat16 bits instead: a stored BF16
// tensor's own bytes, others rounded to nearest even); the file layout
// (which tensor in which file, in which order, each file's metadata) is kept
// so that save() can write the folder back the same way. One shard is held
// in memory at a time besides the float32 weights. Cost: O(bytes on disk).
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, readSafetensors, type StDType, type StTensor } from '../model/safetensors.js';
import { convertHost } from '../tensor.js';
import { expectedTensors, readJsonObject, type DecoderSpec } from './config.js';

/** One weight file of the folder, as found. */
export interface WeightFile {
  file: string;
  metadata: Record<string, string>;
  /** Tensor names in data order. */
  order: string[];
}

/** The folder's weights as float32, with the layout they were stored in. */
export interface LoadedWeights {
  /** Model tensors (float32, or bfloat16 bits for matrices with `bf16Matrices`) with their stored dtype. */
  tensors: Map<string, { data: Float32Array | Uint16Array; shape: number[]; dtype: StDType }>;
  /** Tensors the model does not use but the files hold (rotary inv_freq buffers, a tied lm_head copy): written back as they were. */
  extras: Map<string, StTensor>;
  files: WeightFile[];
  /** The index file's JSON when the folder is sharded. */
  index?: { metadata: Record<string, unknown>; weightMap: Record<string, string>; raw: Buffer };
}

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';
const WEIGHT_DTYPES: readonly StDType[] = ['F32', 'F16', 'BF16', 'F64'];

/** float32 values of a stored F32 / F16 / BF16 / F64 tensor. */
export function toFloat32(t: StTensor): Float32Array {
  switch (t.dtype) {
    case 'F32':
      return t.data as Float32Array;
    case 'BF16': {
      const src = t.data as Uint16Array;
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'F16':
      return convertHost(t.data as Uint16Array, 'float16', 'float32') as Float32Array;
    case 'F64':
      return Float32Array.from(t.data as Float64Array);
    default:
      throw new Error(`toFloat32: ${t.dtype}`);
  }
}

/**
 * float32 values encoded in a stored dtype. Values that came from that dtype
 * come back bit-identical (bf16 and f16 widen exactly); others round to nearest even.
 */
export function fromFloat32(x: Float32Array, dtype: StDType): Float32Array | Uint16Array | Float64Array {
  switch (dtype) {
    case 'F32':
      return x;
    case 'BF16':
      return convertHost(x, 'float32', 'bfloat16') as Uint16Array;
    case 'F16':
      return convertHost(x, 'float32', 'float16') as Uint16Array;
    case 'F64':
      return Float64Array.from(x);
    default:
      throw new Error(`fromFloat32: ${dtype}`);
  }
}

function readIndex(dir: string): NonNullable<LoadedWeights['index']> {
  const path = join(dir, INDEX_FILE);
  const o = readJsonObject(path);
  const wm = o.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) throw new CheckpointError(`${path}: "weight_map" must be an object of tensor name → shard file`);
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== 'string' || !/^[^/\\]+\.safetensors$/.test(file) || file.startsWith('.'))
      throw new CheckpointError(`${path}: weight_map["${name}"] must name a .safetensors file in the folder, got ${JSON.stringify(file)}`);
  }
  const md = o.metadata ?? {};
  if (md === null || typeof md !== 'object' || Array.isArray(md)) throw new CheckpointError(`${path}: "metadata" must be an object`);
  return { metadata: md as Record<string, unknown>, weightMap: wm as Record<string, string>, raw: readFileSync(path) };
}

/** A vision-language model's tensor list (lib/pretrained/vlm-config.ts) in place of the text model's. */
export interface WeightLayout {
  expected: { name: string; shape: number[] }[];
  architecture: string;
  /** Names of the token embedding and the LM head (for tied checkpoints). */
  embedName: string;
  headName: string;
  /** Stored tensors the model does not use, kept and written back (e.g. a SigLIP pooling head). */
  extra?: (name: string) => boolean;
}

/** Names of the tensors stored in `dir`'s weight files (headers only). */
export function storedTensorNames(dir: string): Set<string> {
  if (existsSync(join(dir, INDEX_FILE))) return new Set(Object.keys(readIndex(dir).weightMap));
  const path = join(dir, SINGLE_FILE);
  if (!existsSync(path)) return new Set();
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(8);
    if (readSync(fd, head, 0, 8, 0) < 8) return new Set();
    const n = Number(head.readBigUInt64LE(0));
    if (n > statSync(path).size - 8 || n > 100 * 2 ** 20) return new Set();
    const json = Buffer.alloc(n);
    readSync(fd, json, 0, n, 8);
    return new Set(Object.keys(JSON.parse(json.toString('utf8'))).filter((k) => k !== '__metadata__'));
  } catch {
    return new Set(); // readWeights reports what is wrong with the file
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads and checks the weights of `dir` for `spec` (see the file comment); `layout` for a vision-language model;
 * `bf16Matrices`: tensors of 2+ dimensions as bfloat16 bits.
 */
export function readWeights(dir: string, spec: DecoderSpec, layout?: WeightLayout, bf16Matrices = false): LoadedWeights {
  const expected = new Map((layout?.expected ?? expectedTensors(spec)).map((e) => [e.name, e.shape]));
  const archName = layout?.architecture ?? spec.architecture;
  const embedName = layout?.embedName ?? 'model.embed_tokens.weight';
  const headName = layout?.headName ?? 'lm_head.weight';
  const tensors: LoadedWeights['tensors'] = new Map();
  const extras = new Map<string, StTensor>();
  const files: WeightFile[] = [];
  const seenIn = new Map<string, string>();
  let index: LoadedWeights['index'];
  let shardNames: string[];
  if (existsSync(join(dir, INDEX_FILE))) {
    index = readIndex(dir);
    shardNames = [...new Set(Object.values(index.weightMap))];
    for (const f of shardNames)
      if (!existsSync(join(dir, f))) throw new CheckpointError(`${join(dir, INDEX_FILE)}: shard ${f} is listed in weight_map but ${join(dir, f)} does not exist`);
  } else if (existsSync(join(dir, SINGLE_FILE))) {
    shardNames = [SINGLE_FILE];
  } else {
    const other = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pt', 'model.gguf'].find((f) => existsSync(join(dir, f)));
    throw new CheckpointError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}` + (other ? ` (found ${other}: only safetensors weights are read; convert them with transformers' save_pretrained(safe_serialization=True))` : ''));
  }
  let tiedCopy: StTensor | undefined;
  for (const f of shardNames) {
    const path = join(dir, f);
    if (!statSync(path).isFile()) throw new CheckpointError(`${path}: not a file`);
    const st = readSafetensors(path);
    files.push({ file: f, metadata: st.metadata, order: st.order });
    for (const name of st.order) {
      const t = st.tensors[name];
      const where = `${path}: tensor '${name}'`;
      const prev = seenIn.get(name);
      if (prev !== undefined) throw new CheckpointError(`${where} is also stored in ${prev}`);
      seenIn.set(name, f);
      if (index && index.weightMap[name] !== f)
        throw new CheckpointError(`${where} is not where ${INDEX_FILE} says (${index.weightMap[name] === undefined ? 'not listed in weight_map' : `weight_map names ${index.weightMap[name]}`})`);
      const shape = expected.get(name);
      if (!shape) {
        if (/\.rotary_emb\.inv_freq$/.test(name) || /\.position_ids$/.test(name) || layout?.extra?.(name)) extras.set(name, t);
        else if (name === headName && spec.tied) {
          extras.set(name, t);
          tiedCopy = t;
        } else throw new CheckpointError(`${where} is not part of a ${archName} with this config.json (unexpected tensor)`);
        continue;
      }
      if (!WEIGHT_DTYPES.includes(t.dtype)) throw new CheckpointError(`${where}: dtype ${t.dtype} is not a floating-point weight dtype (expected ${WEIGHT_DTYPES.join(', ')})`);
      if (t.shape.length !== shape.length || t.shape.some((x, i) => x !== shape[i]))
        throw new CheckpointError(`${where}: shape [${t.shape.join(', ')}] does not match config.json, which implies [${shape.join(', ')}]`);
      const bits = bf16Matrices && shape.length >= 2;
      const data = !bits ? toFloat32(t) : t.dtype === 'BF16' ? (t.data as Uint16Array) : (fromFloat32(toFloat32(t), 'BF16') as Uint16Array);
      tensors.set(name, { data, shape, dtype: t.dtype });
    }
  }
  if (index) {
    for (const [name, f] of Object.entries(index.weightMap))
      if (!seenIn.has(name)) throw new CheckpointError(`${join(dir, INDEX_FILE)}: weight_map lists '${name}' in ${f}, which does not hold it`);
  }
  for (const name of expected.keys())
    if (!tensors.has(name)) throw new CheckpointError(`${dir}: tensor '${name}' is missing (needed by ${archName} with this config.json; searched ${shardNames.join(', ')})`);
  if (tiedCopy) {
    // bfloat16 matrices: the stored head compared rounded, as the embedding was.
    const e = tensors.get(embedName)!.data;
    const b = e instanceof Uint16Array ? toFloat32({ dtype: 'BF16', shape: [e.length], data: e }) : e;
    let a = toFloat32(tiedCopy);
    if (e instanceof Uint16Array && tiedCopy.dtype !== 'BF16') a = toFloat32({ dtype: 'BF16', shape: [a.length], data: fromFloat32(a, 'BF16') as Uint16Array });
    const same = a.length === b.length && a.every((x, i) => Object.is(x, b[i]) || x === b[i]);
    if (!same) throw new CheckpointError(`${dir}: tie_word_embeddings is true but ${headName} differs from ${embedName}`);
  }
  return { tensors, extras, files, index };
}
