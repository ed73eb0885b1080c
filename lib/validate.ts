// Argument validation shared by every op: runs before any native work, so bad
// input becomes a TypeError/RangeError naming the argument, never a crash.
import { describe, rangeError, typeError } from './errors.js';
import { didYouMean } from './suggest.js';
import { Tensor, type DType } from './tensor.js';

export interface TensorSpec {
  /** Required number of dimensions. */
  ndim?: number;
  /** Allowed dtypes (default: float32 on CPU; float32/bfloat16/float16 on CUDA). */
  dtypes?: readonly DType[];
}

const CPU_FLOAT: readonly DType[] = ['float32'];
const CUDA_FLOAT: readonly DType[] = ['float32', 'bfloat16', 'float16'];

/** Checks that `x` is a live tensor of the given rank and an allowed dtype for its device. */
export function checkTensor(fn: string, arg: string, x: unknown, spec: TensorSpec = {}): Tensor {
  if (!(x instanceof Tensor)) throw typeError(fn, arg, 'a Tensor', describe(x));
  if (x.disposed) throw typeError(fn, arg, 'a live tensor', 'a disposed tensor');
  if (spec.ndim !== undefined && x.shape.length !== spec.ndim)
    throw rangeError(fn, `${arg}.shape`, `${spec.ndim}-D`, `[${x.shape.join(', ')}]`);
  const allowed = spec.dtypes ?? (x.device === 'cpu' ? CPU_FLOAT : CUDA_FLOAT);
  if (!allowed.includes(x.dtype))
    throw typeError(fn, `${arg}.dtype`, `${allowed.join(' | ')} on ${x.device}`, x.dtype);
  return x;
}

/** Checks that every tensor is on the same device, and returns it. */
export function checkSameDevice(fn: string, tensors: Record<string, Tensor>): 'cpu' | 'cuda' {
  const entries = Object.entries(tensors);
  const [firstName, first] = entries[0];
  for (const [name, t] of entries.slice(1)) {
    if (t.device !== first.device)
      throw typeError(fn, name, `on ${first.device} like ${firstName}`, `a tensor on ${t.device}`);
  }
  return first.device;
}

/** Checks that tensors on CUDA share one dtype. */
export function checkSameDType(fn: string, tensors: Record<string, Tensor>): DType {
  const entries = Object.entries(tensors);
  const [firstName, first] = entries[0];
  for (const [name, t] of entries.slice(1)) {
    if (t.dtype !== first.dtype) throw typeError(fn, `${name}.dtype`, `${first.dtype} like ${firstName}`, t.dtype);
  }
  return first.dtype;
}

export function checkBoolean(fn: string, arg: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw typeError(fn, arg, 'a boolean', describe(v));
  return v;
}

export function checkNumber(fn: string, arg: string, v: unknown, dflt: number, opts: { min?: number; max?: number; gt?: number; integer?: boolean } = {}): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw typeError(fn, arg, 'a number', describe(v));
  if (!Number.isFinite(v)) throw rangeError(fn, arg, 'a finite number', describe(v));
  if (opts.integer && !Number.isInteger(v)) throw rangeError(fn, arg, 'an integer', describe(v));
  if (opts.min !== undefined && v < opts.min) throw rangeError(fn, arg, `>= ${opts.min}`, describe(v));
  if (opts.max !== undefined && v > opts.max) throw rangeError(fn, arg, `<= ${opts.max}`, describe(v));
  if (opts.gt !== undefined && !(v > opts.gt)) throw rangeError(fn, arg, `> ${opts.gt}`, describe(v));
  return v;
}

export function checkOptions(fn: string, opts: unknown): Record<string, unknown> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(fn, 'opts', 'an object', describe(opts));
  return opts as Record<string, unknown>;
}

/** Refuses keys of `o` that are not in `known` (a misspelt option would otherwise be ignored), naming the nearest valid one. */
export function checkKnownKeys(fn: string, arg: string, o: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw new TypeError(`${fn}: ${arg}.${k} is not an option${didYouMean(k, known)} (valid: ${known.join(', ')})`);
  }
}

/**
 * A per-row int32 vector: an Int32Array, or a live 1-D CPU int32 tensor. With
 * `length`, its length must match (`lengthWhat` says what the length counts).
 */
export function int32Vector(fn: string, arg: string, v: unknown, length?: number, lengthWhat?: string): Int32Array {
  let arr: Int32Array;
  if (v instanceof Int32Array) arr = v;
  else if (v instanceof Tensor && !v.disposed && v.device === 'cpu' && v.shape.length === 1 && v.dtype === 'int32') arr = v.data as Int32Array;
  else throw typeError(fn, arg, 'an Int32Array or a 1-D CPU int32 tensor', describe(v));
  if (length !== undefined && arr.length !== length)
    throw rangeError(fn, `${arg}.length`, lengthWhat ? `${length} (${lengthWhat})` : `${length}`, `${arr.length}`);
  return arr;
}

/**
 * A per-row float32 vector: a Float32Array, or a live 1-D CPU float32 tensor. With
 * `length`, its length must match (`lengthWhat` says what the length counts).
 */
export function float32Vector(fn: string, arg: string, v: unknown, length?: number, lengthWhat?: string): Float32Array {
  let arr: Float32Array;
  if (v instanceof Float32Array) arr = v;
  else if (v instanceof Tensor && !v.disposed && v.device === 'cpu' && v.shape.length === 1 && v.dtype === 'float32') arr = v.data as Float32Array;
  else throw typeError(fn, arg, 'a Float32Array or a 1-D CPU float32 tensor', describe(v));
  if (length !== undefined && arr.length !== length)
    throw rangeError(fn, `${arg}.length`, lengthWhat ? `${length} (${lengthWhat})` : `${length}`, `${arr.length}`);
  return arr;
}

/**
 * Validates cumulative sequence lengths: Int32Array(B+1), starting at 0,
 * non-decreasing, ending at `total`.
 */
export function checkCuSeqlens(fn: string, arg: string, v: unknown, total: number): Int32Array {
  const cu = int32Vector(fn, arg, v);
  if (cu.length < 1) throw rangeError(fn, `${arg}.length`, '>= 1 (B+1 offsets)', '0');
  if (cu[0] !== 0) throw rangeError(fn, `${arg}[0]`, '0', `${cu[0]}`);
  for (let i = 1; i < cu.length; i++) {
    if (cu[i] < cu[i - 1]) throw rangeError(fn, `${arg}[${i}]`, `>= ${arg}[${i - 1}] (${cu[i - 1]})`, `${cu[i]}`);
  }
  if (cu[cu.length - 1] !== total) throw rangeError(fn, `${arg}[${cu.length - 1}]`, `the total row count ${total}`, `${cu[cu.length - 1]}`);
  return cu;
}

/** A caller-provided output must not share memory with an input (CPU buffers are compared; a CUDA output must not be one of the inputs). */
export function checkNoAlias(fn: string, arg: string, out: Tensor, inputs: Record<string, Tensor>): void {
  if (out.size === 0) return;
  if (out.device !== 'cpu') {
    for (const [name, t] of Object.entries(inputs))
      if (t === out) throw rangeError(fn, arg, `memory separate from ${name}`, `${name} itself`);
    return;
  }
  const o = out.data;
  for (const [name, t] of Object.entries(inputs)) {
    if (t.device !== 'cpu' || t.size === 0) continue;
    const x = t.data;
    const overlap = o.buffer === x.buffer && o.byteOffset < x.byteOffset + x.byteLength && x.byteOffset < o.byteOffset + o.byteLength;
    if (overlap) throw rangeError(fn, arg, `memory separate from ${name}`, 'a tensor that overlaps it');
  }
}

/** A caller-provided output: a live tensor of the given shape, device and dtype. */
export function checkOut(fn: string, arg: string, t: unknown, shape: readonly number[], device: string, dtype: string): Tensor {
  if (!(t instanceof Tensor) || t.disposed) throw typeError(fn, arg, 'a live Tensor', describe(t));
  if (t.device !== device || t.dtype !== dtype) throw typeError(fn, arg, `a ${device} ${dtype} tensor`, describe(t));
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw rangeError(fn, `${arg}.shape`, `[${shape.join(', ')}]`, `[${t.shape.join(', ')}]`);
  return t;
}
