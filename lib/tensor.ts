// Tensor: a shape, a dtype, a device and the memory behind them.
//
// CPU tensors wrap a typed array (Float32Array, Int32Array; Uint16Array holds
// the bits of bfloat16/float16), which `data` exposes without copying. CUDA
// tensors own device memory through a native handle; `to('cpu')` copies back.
// `dispose()` frees device memory at once (the garbage collector would free it
// eventually, but GPU memory is too scarce to wait for that).
import { describe, rangeError, typeError } from './errors.js';
import type { CudaBuffer, NativeTensor } from './addon-types.js';
import { limits, native } from './native.js';
import { giveBack, takeBuffer } from './output-pool.js';

export type DType = 'float32' | 'int32' | 'bfloat16' | 'float16';
export type Device = 'cpu' | 'cuda';
export type TypedData = Float32Array | Int32Array | Uint16Array;

const DTYPES: readonly DType[] = ['float32', 'int32', 'bfloat16', 'float16'];

export function bytesPerElement(dtype: DType): number {
  return dtype === 'float32' || dtype === 'int32' ? 4 : 2;
}

/** Validates a shape: an array of non-negative safe integers, at most limits().maxDims (8) of them. */
export function checkShape(fn: string, arg: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw typeError(fn, arg, 'an array of non-negative integers', describe(shape));
  const { maxDims } = limits();
  if (shape.length > maxDims) throw rangeError(fn, arg, `at most ${maxDims} dimensions`, `${shape.length}`);
  for (const [i, d] of shape.entries()) {
    if (typeof d !== 'number') throw typeError(fn, `${arg}[${i}]`, 'a number', describe(d));
    if (!Number.isSafeInteger(d) || d < 0) throw rangeError(fn, `${arg}[${i}]`, 'a non-negative integer', describe(d));
  }
  const n = shape.reduce((a: number, b: number) => a * b, 1);
  if (!Number.isSafeInteger(n) || n > 2 ** 31 - 1) throw rangeError(fn, arg, 'at most 2^31-1 elements', `${n}`);
  return [...shape];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function dtypeOfArray(data: TypedData): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Int32Array) return 'int32';
  return 'bfloat16';
}

declare global {
  // Explicit resource management (\`using\`): the two symbols, declared as @types/node does, so
  // that a project whose TypeScript lib lacks them (no ESNext.Disposable) still type-checks.
  interface SymbolConstructor {
    readonly dispose: unique symbol;
    readonly asyncDispose: unique symbol;
  }
}

/** Marks an op's fresh output whose whole buffer it owns (set by pooledF32 below). */
let markRecyclable: (t: Tensor) => void;
/** The buffer of an output marked so, disposing the tensor; null for anything else. */
let releaseRecyclable: (t: Tensor) => ArrayBuffer | null;

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;
  #data: TypedData | undefined;
  #handle: CudaBuffer | undefined;
  #disposed = false;
  // A flag on the tensor, not a WeakMap keyed by buffers: ArrayBuffers held as weak keys were
  // freed later by the collector, and an op's fresh outputs then cost up to 2x in page faults.
  #recyclable = false;

  static {
    markRecyclable = (t) => {
      t.#recyclable = true;
    };
    releaseRecyclable = (t) => {
      if (!t.#recyclable || t.#disposed || t.#data === undefined) return null;
      const b = t.#data.buffer as ArrayBuffer;
      t.#recyclable = false;
      t.dispose();
      return b;
    };
  }

  /** @internal use vp.tensor() or the ops; this constructor does not validate. */
  constructor(shape: readonly number[], dtype: DType, device: Device, data?: TypedData, handle?: CudaBuffer) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    this.#data = data;
    this.#handle = handle;
  }

  get size(): number {
    return numel(this.shape);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** The typed array behind a CPU tensor (not a copy). */
  get data(): TypedData {
    if (this.#disposed) throw new Error('Tensor.data: the tensor was disposed');
    if (this.device !== 'cpu') throw new TypeError(`Tensor.data: the tensor is on ${this.device}; call .to('cpu') first`);
    return this.#data as TypedData;
  }

  /** @internal the device buffer of a CUDA tensor (an Error for a CPU tensor). */
  get handle(): CudaBuffer {
    if (this.#disposed) throw new Error('Tensor: the tensor was disposed');
    return this.#buffer();
  }

  /** @internal what the addon takes: the typed array (CPU) or the device handle (CUDA). */
  get nativeArg(): NativeTensor {
    if (this.#disposed) throw new Error('Tensor: the tensor was disposed');
    const arg = this.device === 'cpu' ? this.#data : this.#handle;
    if (arg === undefined) throw new Error('Tensor: the tensor has no storage');
    return arg;
  }

  /** The device buffer of a CUDA tensor. */
  #buffer(): CudaBuffer {
    if (this.#handle === undefined) throw new Error(`Tensor: a ${this.device} tensor has no device buffer`);
    return this.#handle;
  }

  /**
   * Copies the tensor to a device, optionally converting its dtype. On CUDA a
   * float32 tensor can become bfloat16/float16 (the reduced precisions run only there).
   */
  to(device: Device, dtype: DType = this.dtype): Tensor {
    if (this.#disposed) throw new Error('Tensor.to: the tensor was disposed');
    if (device !== 'cpu' && device !== 'cuda') throw typeError('Tensor.to', 'device', "'cpu' or 'cuda'", describe(device));
    if (!DTYPES.includes(dtype)) throw typeError('Tensor.to', 'dtype', DTYPES.join(' | '), describe(dtype));
    const convert = dtype !== this.dtype;
    if (convert && (dtype === 'int32' || this.dtype === 'int32'))
      throw typeError('Tensor.to', 'dtype', `a floating dtype to convert ${this.dtype}`, dtype);
    if (device === 'cpu') {
      let host: TypedData;
      if (this.device === 'cpu') {
        host = this.#data!;
      } else {
        host = this.dtype === 'float32' ? new Float32Array(this.size) : this.dtype === 'int32' ? new Int32Array(this.size) : new Uint16Array(this.size);
        native().cudaDownload(this.#buffer(), host);
      }
      if (!convert) return new Tensor(this.shape, this.dtype, 'cpu', this.device === 'cpu' ? host.slice() : host);
      return new Tensor(this.shape, dtype, 'cpu', convertHost(host, this.dtype, dtype));
    }
    const b = native();
    if (this.device === 'cpu') {
      const host = convert ? convertHost(this.#data!, this.dtype, dtype) : this.#data!;
      return new Tensor(this.shape, dtype, 'cuda', undefined, b.cudaUpload(host));
    }
    if (!convert) return new Tensor(this.shape, this.dtype, 'cuda', undefined, b.cudaClone(this.#buffer()));
    const out = b.cudaAlloc(this.size * bytesPerElement(dtype));
    b.cudaConvert(this.#buffer(), [...this.shape], this.dtype, out, dtype);
    return new Tensor(this.shape, dtype, 'cuda', undefined, out);
  }

  /** Frees the tensor's memory (device memory at once); using it afterwards is an error. */
  /** `using t = vp.tensor(...)`: disposed at the end of the scope. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** `await using t = ...` (the same as dispose(): it never waits). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.device === 'cuda' && this.#handle !== undefined) native().cudaFree(this.#handle);
    this.#data = undefined;
    this.#handle = undefined;
  }

  /** A copy of the data as a plain array (CPU float32/int32; others are converted to float). */
  toArray(): number[] {
    const t = this.device === 'cpu' ? this : this.to('cpu');
    if (t.dtype === 'bfloat16' || t.dtype === 'float16') return Array.from(convertHost(t.data, t.dtype, 'float32'));
    return Array.from(t.data);
  }

  toString(): string {
    return `Tensor(${this.device}, ${this.dtype}, [${this.shape.join(', ')}])`;
  }
}

/**
 * Creates a CPU tensor. A Float32Array or Int32Array is used as is (not copied);
 * a number[] becomes a Float32Array.
 */
export function tensor(data: Float32Array | Int32Array | number[], shape: number[]): Tensor {
  const fn = 'tensor';
  let arr: Float32Array | Int32Array;
  if (data instanceof Float32Array || data instanceof Int32Array) arr = data;
  else if (Array.isArray(data)) {
    for (let i = 0; i < data.length; i++) {
      if (typeof data[i] !== 'number') throw typeError(fn, `data[${i}]`, 'a number', describe(data[i]));
    }
    arr = Float32Array.from(data);
  } else throw typeError(fn, 'data', 'a Float32Array, Int32Array or number[]', describe(data));
  const s = checkShape(fn, 'shape', shape);
  const n = numel(s);
  if (arr.length !== n)
    throw rangeError(fn, 'data', `${n} elements to fill shape [${s.join(', ')}]`, `${arr.length} elements`);
  return new Tensor(s, dtypeOfArray(arr), 'cpu', arr);
}

/** A new zero-filled tensor on the given device. */
export function zeros(shape: number[], dtype: DType = 'float32', device: Device = 'cpu'): Tensor {
  const s = checkShape('zeros', 'shape', shape);
  const n = numel(s);
  const host = dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Uint16Array(n);
  const t = new Tensor(s, dtype, 'cpu', host);
  return device === 'cpu' ? t : t.to('cuda');
}

/** Outputs of at least this many bytes are advised onto huge pages. */
const HUGE_PAGE_MIN_BYTES = 4 << 20;

/**
 * From this many bytes up a float32 CPU output comes from the pool of recycled buffers or skips
 * calloc (VP_POOL_MIN_BYTES overrides it: the tests pool every size so that tiny models exercise
 * the recycling).
 */
const POOLED_MIN_BYTES = process.env.VP_POOL_MIN_BYTES ? Math.max(1, Number(process.env.VP_POOL_MIN_BYTES) || 1) : 16 << 10;

/**
 * A float32 CPU output of `shape` from 16 KB up: a recycled buffer of the same byte length
 * (lib/output-pool.ts) or a new one, zero-filled when `zero` (a new one then comes from calloc,
 * else from malloc without clearing: Buffer.allocUnsafeSlow); from 4 MB up a new one is advised
 * onto huge pages.
 */
function pooledF32(shape: readonly number[], n: number, zero: boolean): Tensor {
  const recycled = takeBuffer(n * 4);
  let host: Float32Array;
  if (recycled) {
    host = new Float32Array(recycled);
    if (zero) host.fill(0);
  } else {
    if (zero) host = new Float32Array(n);
    else {
      const buf = Buffer.allocUnsafeSlow(n * 4);
      host = new Float32Array(buf.buffer, buf.byteOffset, n);
    }
    // 2 MB pages make the first write fault 512x less often (native/addon/host_memory.cpp);
    // measured 3-6x faster first touch of 32 MB.
    if (host.byteLength >= HUGE_PAGE_MIN_BYTES) native().adviseHugePages(host);
  }
  const t = new Tensor(shape, 'float32', 'cpu', host);
  if (host.byteOffset === 0 && host.buffer.byteLength === n * 4) markRecyclable(t); // owns the whole buffer
  return t;
}

/** @internal a fresh output tensor like the ops allocate (zero-filled on the CPU). */
export function emptyLike(shape: readonly number[], dtype: DType, device: Device): Tensor {
  const n = numel(shape);
  if (device === 'cpu') {
    if (dtype === 'float32' && n * 4 >= POOLED_MIN_BYTES) return pooledF32(shape, n, true);
    const host = dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Uint16Array(n);
    if (host.byteLength >= HUGE_PAGE_MIN_BYTES) native().adviseHugePages(host);
    return new Tensor(shape, dtype, 'cpu', host);
  }
  return new Tensor(shape, dtype, 'cuda', undefined, native().cudaAlloc(n * bytesPerElement(dtype)));
}

/**
 * @internal a fresh float32 CPU output that the op overwrites entirely before
 * returning it: like {@link emptyLike}, but from 16 KB up its bytes are not
 * zeroed first (a recycled buffer as it was, or malloc instead of calloc; a
 * training step of a 135M-parameter model cleared about 150 ms of such outputs
 * a step on one thread). Only for ops whose kernel writes every element (or
 * throws, and the tensor is dropped unseen).
 */
export function overwrittenLike(shape: readonly number[]): Tensor {
  const n = numel(shape);
  if (n * 4 < POOLED_MIN_BYTES) return emptyLike(shape, 'float32', 'cpu');
  return pooledF32(shape, n, false);
}

/**
 * @internal hands outputs that nothing will read again back to the pool
 * (lib/output-pool.ts), for the next output of the same size. Only a tensor that
 * overwrittenLike / emptyLike made (the owner of its buffer, not a view) is taken,
 * and it is disposed; anything else (null, a view, a CUDA or small tensor) is
 * left alone. The caller must hold no view or typed array of it afterwards.
 */
export function recycleOutput(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) {
    const buf = t ? releaseRecyclable(t) : null;
    if (buf) giveBack(buf);
  }
}

// ---- host-side bfloat16 / float16 conversion (round to nearest even) --------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16ToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

function f32ToF16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function convertHost(src: TypedData, from: DType, to: DType): TypedData {
  const n = src.length;
  if (from === to) return src.slice();
  let asFloat: Float32Array;
  if (from === 'float32') asFloat = src as Float32Array; // read in place (from !== to: never returned itself)
  else if (from === 'bfloat16' || from === 'float16') {
    const widen = from === 'bfloat16' ? bf16ToF32 : f16ToF32;
    asFloat = new Float32Array(n);
    for (let i = 0; i < n; i++) asFloat[i] = widen(src[i]);
  } else throw new TypeError(`convert: cannot convert ${from}`);
  if (to === 'float32') return asFloat;
  const out = new Uint16Array(n);
  if (to === 'bfloat16') native().roundBf16(asFloat, out); // vp::round_to_bf16: nearest even, NaN kept, on the pool
  else if (to === 'float16') for (let i = 0; i < n; i++) out[i] = f32ToF16(asFloat[i]);
  else throw new TypeError(`convert: cannot convert to ${to}`);
  return out;
}
