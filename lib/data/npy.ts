// NumPy .npy files: the format clips are stored in (uint8 [F, H, W, 3]) and a
// plain way to hand arrays to and from Python. Versions 1.0-3.0, little-endian,
// C order. Writes are atomic (temp file, fsync, rename), so a reader never sees
// a half-written file.
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { writeFileAtomic } from '../fs.js';
import { reason } from '../paths.js';

export type NpyDType = 'uint8' | 'int32' | 'float32' | 'float64' | 'int64' | 'uint16';
export type NpyData = Uint8Array | Int32Array | Float32Array | Float64Array | BigInt64Array | Uint16Array;

export interface NpyArray {
  dtype: NpyDType;
  shape: number[];
  data: NpyData;
}

const DESCR: Record<string, NpyDType> = {
  '|u1': 'uint8', '<u1': 'uint8', '|i1': 'uint8', '<i4': 'int32', '<f4': 'float32', '<f8': 'float64', '<i8': 'int64', '<u2': 'uint16',
};
const DESCR_OUT: Record<NpyDType, string> = {
  uint8: '|u1', int32: '<i4', float32: '<f4', float64: '<f8', int64: '<i8', uint16: '<u2',
};
const CTOR = {
  uint8: Uint8Array, int32: Int32Array, float32: Float32Array, float64: Float64Array, int64: BigInt64Array, uint16: Uint16Array,
} as const;

function fail(path: string, what: string): never {
  throw new Error(`readNpy: ${path}: ${what}`);
}

export interface NpyHeader {
  dtype: NpyDType;
  shape: number[];
  /** Byte offset of the data. */
  dataOffset: number;
  /** Bytes the data takes (elements × element size). */
  dataBytes: number;
}

/** Parses the header at the start of an .npy file's bytes (all of the file, or its first bytes). */
export function parseNpyHeader(buf: Uint8Array, path = '<buffer>'): NpyHeader {
  if (buf.length < 10 || buf[0] !== 0x93 || String.fromCharCode(...buf.subarray(1, 6)) !== 'NUMPY') fail(path, 'not an .npy file (bad magic)');
  const major = buf[6];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let headerLen: number;
  let offset: number;
  if (major === 1) {
    headerLen = dv.getUint16(8, true);
    offset = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) fail(path, 'truncated header');
    headerLen = dv.getUint32(8, true);
    offset = 12;
  } else fail(path, `unsupported .npy version ${major}`);
  if (offset + headerLen > buf.length) fail(path, 'truncated header');
  const header = new TextDecoder().decode(buf.subarray(offset, offset + headerLen));
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) fail(path, `malformed header ${JSON.stringify(header.trim())}`);
  const dtype = DESCR[descr];
  if (!dtype) fail(path, `unsupported dtype '${descr}' (supported: ${Object.keys(DESCR).join(', ')})`);
  if (fortran === 'True') fail(path, 'Fortran-order arrays are not supported (save with np.ascontiguousarray)');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) fail(path, `bad shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  return { dtype, shape, dataOffset: offset + headerLen, dataBytes: count * CTOR[dtype].BYTES_PER_ELEMENT };
}

/** Parses an .npy file's bytes (`path` is only for messages). */
export function parseNpy(buf: Uint8Array, path = '<buffer>'): NpyArray {
  const { dtype, shape, dataOffset: start, dataBytes: bytes } = parseNpyHeader(buf, path);
  const count = shape.reduce((a, b) => a * b, 1);
  const Ctor = CTOR[dtype];
  if (buf.length - start < bytes) fail(path, `truncated data: expected ${bytes} bytes for shape [${shape.join(', ')}], found ${buf.length - start}`);
  // Copy into a fresh, aligned buffer.
  const data = new Ctor(count);
  new Uint8Array(data.buffer).set(buf.subarray(start, start + bytes));
  return { dtype, shape, data };
}

/** Reads an .npy file; errors name the file. */
export function readNpy(path: string): NpyArray {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new Error(`readNpy: cannot read ${path}: ${reason(e)}`);
  }
  return parseNpy(buf, path);
}

/**
 * Reads only the header of an .npy file (its first bytes) and checks that the
 * file is long enough for the data the header describes.
 */
export function readNpyHeader(path: string): NpyHeader {
  let fd = -1;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 12));
    readSync(fd, head, 0, head.length, 0);
    const major = head[6];
    const len = head.length >= 12 && (major === 2 || major === 3) ? head.readUInt32LE(8) + 12 : head.length >= 10 ? head.readUInt16LE(8) + 10 : head.length;
    const buf = Buffer.alloc(Math.min(size, len));
    readSync(fd, buf, 0, buf.length, 0);
    const h = parseNpyHeader(buf, path);
    if (size - h.dataOffset < h.dataBytes) fail(path, `truncated data: expected ${h.dataBytes} bytes for shape [${h.shape.join(', ')}], found ${size - h.dataOffset}`);
    return h;
  } catch (e) {
    if ((e as Error).message.startsWith('readNpy:')) throw e;
    throw new Error(`readNpy: cannot read ${path}: ${reason(e)}`);
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** Serializes an array as .npy (version 1.0, C order). */
export function encodeNpy(arr: NpyArray): Uint8Array {
  const count = arr.shape.reduce((a, b) => a * b, 1);
  if (count !== arr.data.length) throw new RangeError(`encodeNpy: data holds ${arr.data.length} elements, shape [${arr.shape.join(', ')}] needs ${count}`);
  const shape = arr.shape.length === 1 ? `(${arr.shape[0]},)` : `(${arr.shape.join(', ')})`;
  let header = `{'descr': '${DESCR_OUT[arr.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const out = new Uint8Array(10 + header.length + arr.data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength), 10 + header.length);
  return out;
}

/** Writes an .npy file atomically. */
export function writeNpy(path: string, arr: NpyArray): void {
  writeFileAtomic(path, encodeNpy(arr));
}
