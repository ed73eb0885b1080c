// Writes a model back in the Hugging Face layout it was loaded from: the same
// weight files (model.safetensors, or the shards and
// model.safetensors.index.json), each with the same tensors in the same order,
// the same dtypes and the same __metadata__; config.json and every other
// non-weight file of the source folder (tokenizer, chat template,
// generation_config.json, ...) copied byte for byte. A float32 weight goes
// back to its stored dtype (round to nearest even); one that was never changed
// comes back bit-identical, since bf16 and f16 widen to float32 exactly.
// Every file is written atomically (lib/fs.ts); config.json last, so a folder
// with a config.json is complete. The source folder itself is never
// rewritten. Cost: O(bytes written), one file's tensors encoded at a time.
import { mkdirSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../fs.js';
import { writeSafetensors, type StTensor } from '../model/safetensors.js';
import { fromFloat32, INDEX_FILE, type WeightFile } from './checkpoint.js';

/** Files that hold weights: never copied from the source folder (save() writes its own). */
const WEIGHT_FILE = /(\.safetensors|\.bin|\.pt|\.pth|\.ckpt|\.h5|\.msgpack|\.gguf|\.onnx)$|^model\.safetensors\.index\.json$|^pytorch_model\.bin\.index\.json$/;

export interface SaveLayout {
  sourceDir: string;
  files: WeightFile[];
  index?: { metadata: Record<string, unknown>; weightMap: Record<string, string>; raw: Buffer };
  /** The source folder's other files (config, tokenizer, templates), read when the model was loaded. */
  otherFiles: [string, Buffer][];
}

/** The non-weight files of a folder (plain files, not hidden), config.json last. */
export function snapshotOtherFiles(dir: string): [string, Buffer][] {
  const names = readdirSync(dir).filter((n) => !WEIGHT_FILE.test(n) && n !== 'adapter_config.json' && !n.startsWith('.') && statSync(join(dir, n)).isFile());
  names.sort((a, b) => (a === 'config.json' ? 1 : b === 'config.json' ? -1 : a < b ? -1 : 1));
  return names.map((n) => [n, readFileSync(join(dir, n))]);
}

function sameDir(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

/**
 * Writes the folder. `tensor(name)` gives each tensor to write: a model
 * tensor as float32 with its stored dtype, or a carried-through one as stored.
 */
export function writeHfFolder(
  dir: string,
  layout: SaveLayout,
  tensor: (name: string) => { f32: Float32Array; dtype: StTensor['dtype']; shape: number[] } | StTensor,
): void {
  if (sameDir(dir, layout.sourceDir)) throw new Error(`save: ${dir} is the folder the model was loaded from; save to a new folder (checkpoints are never rewritten in place)`);
  mkdirSync(dir, { recursive: true });
  let total = 0;
  for (const f of layout.files) {
    const out: Record<string, StTensor> = {};
    for (const name of f.order) {
      const t = tensor(name);
      const st: StTensor = 'f32' in t ? { dtype: t.dtype, shape: t.shape, data: fromFloat32(t.f32, t.dtype) } : t;
      out[name] = st;
      total += st.data.byteLength;
    }
    writeSafetensors(join(dir, f.file), out, Object.keys(f.metadata).length ? f.metadata : undefined);
  }
  if (layout.index) {
    const metadata = { ...layout.index.metadata };
    if ('total_size' in metadata) metadata.total_size = total;
    const json = { metadata, weight_map: layout.index.weightMap };
    // Unchanged (the usual case: same tensors, same dtypes): the original bytes.
    const same = JSON.stringify(JSON.parse(layout.index.raw.toString('utf8'))) === JSON.stringify({ ...JSON.parse(layout.index.raw.toString('utf8')), ...json });
    writeFileAtomic(join(dir, INDEX_FILE), same ? layout.index.raw : JSON.stringify(json, null, 2) + '\n');
  }
  // The source folder's other files, config.json last.
  for (const [n, bytes] of layout.otherFiles) writeFileAtomic(join(dir, n), bytes);
}
