// Checkpoint I/O in the public safetensors format (https://huggingface.co/docs/safetensors):
//
//   [8 bytes: N, little-endian u64] [N bytes: JSON header, padded with spaces so
//   that 8 + N is a multiple of 8] [raw little-endian tensor data]
//
// The header maps each tensor name to { dtype, shape, data_offsets: [begin, end] }
// (offsets relative to the start of the data), plus an optional "__metadata__"
// object of string → string. Tensors are laid out back to back in header order.
//
// Why TypeScript and not the core: the work is a header of a few KB and big
// buffers that go from a typed array to the file unchanged; node's fs writes
// them straight from the arrays (no copy), so C++ would add binding surface and
// gain nothing. The reader checks everything a corrupt or foreign file can get
// wrong and names the file and tensor in its errors (CheckpointError).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeFileAtomic } from '../fs.js';

export { writeFileAtomic };
import { endianness } from 'node:os';
import { Tensor } from '../tensor.js';

/** Dtypes this package reads and writes (the safetensors spellings). */
export type StDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'U8' | 'I64' | 'F64';
export type StData = Float32Array | Uint16Array | Int32Array | Uint8Array | BigInt64Array | Float64Array;

/** One tensor of a checkpoint. F16/BF16 data are the raw 16-bit patterns. */
export interface StTensor {
  dtype: StDType;
  shape: number[];
  data: StData;
}

/** A checkpoint file that is corrupt, truncated, or does not match what was expected. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const ITEM: Record<StDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, U8: 1, I64: 8, F64: 8 };
const ARRAY: Record<StDType, new (b: ArrayBuffer, o: number, n: number) => StData> = {
  F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, I32: Int32Array, U8: Uint8Array,
  I64: BigInt64Array, F64: Float64Array,
};
/** Headers beyond this are refused (the reference implementation's limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

function fromTensor(name: string, t: Tensor): StTensor {
  if (t.device !== 'cpu') throw new TypeError(`writeSafetensors: tensor '${name}' must be on the CPU (call .to('cpu') first), got ${t.device}`);
  const dtype: StDType = t.dtype === 'float32' ? 'F32' : t.dtype === 'int32' ? 'I32' : t.dtype === 'bfloat16' ? 'BF16' : 'F16';
  return { dtype, shape: [...t.shape], data: t.data as StData };
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Writes tensors (and optional string metadata) to `path` as safetensors, atomically.
 * Values are CPU vp tensors or `{ dtype, shape, data }` records; names keep their order.
 */
export function writeSafetensors(path: string, tensors: Record<string, StTensor | Tensor>, metadata?: Record<string, string>): void {
  const fn = 'writeSafetensors';
  if (endianness() !== 'LE') throw new Error(`${fn}: big-endian hosts are not supported`);
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string') throw new TypeError(`${fn}: metadata['${k}'] must be a string, got ${typeof v}`);
    header.__metadata__ = metadata;
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, value] of Object.entries(tensors)) {
    if (name === '__metadata__' || name.length === 0) throw new RangeError(`${fn}: '${name}' is not a valid tensor name`);
    const t = value instanceof Tensor ? fromTensor(name, value) : value;
    if (!(t.dtype in ITEM)) throw new TypeError(`${fn}: tensor '${name}' has unknown dtype ${String(t.dtype)}`);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new RangeError(`${fn}: tensor '${name}' shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
    const n = numelOf(t.shape);
    const bytes = n * ITEM[t.dtype];
    if (!ArrayBuffer.isView(t.data) || t.data.byteLength !== bytes)
      throw new RangeError(`${fn}: tensor '${name}' data must hold ${n} ${t.dtype} values (${bytes} bytes) for shape [${t.shape.join(', ')}], got ${ArrayBuffer.isView(t.data) ? t.data.byteLength + ' bytes' : typeof t.data}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    chunks.push(new Uint8Array(t.data.buffer, t.data.byteOffset, bytes));
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const head = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.byteLength));
  writeFileAtomic(path, [len, head, ...chunks]);
}

export interface ReadSafetensorsOptions {
  /** Names with their expected dtype and shape: missing, extra or mismatched tensors are errors. */
  expect?: Record<string, { dtype?: StDType; shape?: readonly number[] }>;
}

export interface Safetensors {
  tensors: Record<string, StTensor>;
  metadata: Record<string, string>;
  /** Tensor names in the order of their data in the file (how a rewrite keeps the layout). */
  order: string[];
}

/**
 * Reads a safetensors file, checking the header length, the JSON, every
 * tensor's dtype, shape, size and offsets (in range, no overlap, no gap, no
 * trailing bytes) and, when given, the expected names and shapes. Errors are
 * CheckpointErrors naming the file and the tensor.
 */
export function readSafetensors(path: string, opts: ReadSafetensorsOptions = {}): Safetensors {
  if (endianness() !== 'LE') throw new Error('readSafetensors: big-endian hosts are not supported');
  const fail = (msg: string): never => {
    throw new CheckpointError(`${path}: ${msg}`);
  };
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < 8) fail(`${size} bytes is too short for a safetensors file (needs an 8-byte header length)`);
    const lenBuf = Buffer.alloc(8);
    readFull(path, fd, lenBuf, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n} is too large (limit ${MAX_HEADER_BYTES} bytes)`);
    if (n > BigInt(size - 8)) fail(`header length ${n} runs past the end of the ${size}-byte file (truncated?)`);
    const headerLen = Number(n);
    const headBuf = Buffer.alloc(headerLen);
    readFull(path, fd, headBuf, 8);
    let header: unknown;
    try {
      header = JSON.parse(headBuf.toString('utf8'));
    } catch (e) {
      fail(`header is not valid JSON (${(e as Error).message})`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header must be a JSON object');
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    const metadata: Record<string, string> = {};
    const entries: { name: string; dtype: StDType; shape: number[]; begin: number; end: number }[] = [];
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ must be an object of strings');
        for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
          if (typeof v !== 'string') fail(`__metadata__['${k}'] must be a string`);
          metadata[k] = v as string;
        }
        continue;
      }
      const where = `tensor '${name}'`;
      if (raw === null || typeof raw !== 'object') fail(`${where}: entry must be an object`);
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof e.dtype !== 'string' || !(e.dtype in ITEM)) fail(`${where}: unsupported dtype ${JSON.stringify(e.dtype)} (supported: ${Object.keys(ITEM).join(', ')})`);
      const dtype = e.dtype as StDType;
      if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
        fail(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(e.shape)}`);
      const shape = e.shape as number[];
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || off.some((d) => !Number.isSafeInteger(d) || d < 0) || off[0] > off[1])
        fail(`${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(off)}`);
      const [begin, end] = off as number[];
      const want = numelOf(shape) * ITEM[dtype];
      if (end - begin !== want)
        fail(`${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} shape [${shape.join(', ')}] needs ${want}`);
      if (end > dataSize) fail(`${where}: data_offsets [${begin}, ${end}] extend past the end of the data (${dataSize} bytes; file truncated?)`);
      entries.push({ name, dtype, shape, begin, end });
    }
    const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
    let pos = 0;
    let prev = '';
    for (const e of sorted) {
      if (e.begin < pos) fail(`tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev}' (which ends at ${pos})`);
      if (e.begin > pos) fail(`tensor '${e.name}': data starts at ${e.begin}, leaving a gap after byte ${pos}`);
      pos = e.end;
      prev = e.name;
    }
    if (pos !== dataSize) fail(`${dataSize - pos} trailing bytes after the last tensor's data`);
    if (opts.expect) {
      for (const [name, want] of Object.entries(opts.expect)) {
        const got = entries.find((e) => e.name === name);
        if (!got) fail(`tensor '${name}' is missing`);
        else {
          if (want.dtype && got.dtype !== want.dtype) fail(`tensor '${name}': dtype ${got.dtype}, expected ${want.dtype}`);
          if (want.shape && (want.shape.length !== got.shape.length || want.shape.some((d, i) => d !== got.shape[i])))
            fail(`tensor '${name}': shape [${got.shape.join(', ')}], expected [${want.shape.join(', ')}]`);
        }
      }
      for (const e of entries) if (!(e.name in opts.expect)) fail(`tensor '${e.name}' is not expected by this model`);
    }
    // One buffer for all the data: 8-byte aligned, so tensors at aligned offsets are views.
    const data = new ArrayBuffer(dataSize);
    readFull(path, fd, new Uint8Array(data), dataStart);
    const tensors: Record<string, StTensor> = {};
    for (const e of entries) {
      const item = ITEM[e.dtype];
      const count = (e.end - e.begin) / item;
      const view = e.begin % item === 0 ? new ARRAY[e.dtype](data, e.begin, count) : new ARRAY[e.dtype](data.slice(e.begin, e.end), 0, count);
      tensors[e.name] = { dtype: e.dtype, shape: e.shape, data: view };
    }
    return { tensors, metadata, order: sorted.map((e) => e.name) };
  } finally {
    closeSync(fd);
  }
}

function readFull(path: string, fd: number, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.byteLength) {
    const got = readSync(fd, buf, off, buf.byteLength - off, position + off);
    if (got === 0) throw new CheckpointError(`${path}: unexpected end of file at byte ${position + off}`);
    off += got;
  }
}
