// vp.matmul: the first op through the whole stack (TS validation → addon → core SGEMM or CUDA).
import { checkOptions, checkBoolean, checkNoAlias, checkOut, checkSameDevice, checkSameDType, checkTensor } from '../validate.js';
import { rangeError } from '../errors.js';
import { emptyLike, overwrittenLike, Tensor, type DType } from '../tensor.js';
import { native } from '../native.js';

export interface MatmulOptions {
  /** `a` is stored `[K, M]` (default false). */
  transA?: boolean;
  /** `b` is stored `[N, K]` (default false). */
  transB?: boolean;
  /**
   * Write the product into this tensor and return it instead of a fresh one: `[M, N]`, the
   * inputs' device and dtype, sharing no memory with `a` or `b`. Its old values are not read.
   * A loop that multiplies into the same `out` pays no fresh output pages (on the KVM machine
   * of docs/benchmarks.md, 0.4–0.6 ms of a 1.5 ms 512³ product).
   */
  out?: Tensor;
}

// CPU: float32, or bfloat16 (float32 accumulation, a bfloat16 result: AVX512-BF16
// where the CPU has it, else widened to float32; vp/gemm_bf16.h).
const CPU_MATMUL: readonly DType[] = ['float32', 'bfloat16'];

/** `op(a)[M, K] · op(b)[K, N] → [M, N]`, on the device of the inputs. */
export function matmul(a: Tensor, b: Tensor, opts?: MatmulOptions): Tensor {
  const fn = 'matmul';
  checkTensor(fn, 'a', a, { ndim: 2, ...(a instanceof Tensor && a.device === 'cpu' ? { dtypes: CPU_MATMUL } : {}) });
  checkTensor(fn, 'b', b, { ndim: 2, ...(b instanceof Tensor && b.device === 'cpu' ? { dtypes: CPU_MATMUL } : {}) });
  const o = checkOptions(fn, opts);
  const transA = checkBoolean(fn, 'opts.transA', o.transA, false);
  const transB = checkBoolean(fn, 'opts.transB', o.transB, false);
  const device = checkSameDevice(fn, { a, b });
  const dtype = checkSameDType(fn, { a, b });
  const [m, ka] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [kb, n] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (ka !== kb)
    throw rangeError(fn, `b.shape`, `${transB ? `[N, K=${ka}]` : `[K=${ka}, N]`} to match a (K=${ka})`, `[${b.shape.join(', ')}]`);
  let out: Tensor;
  if (o.out === undefined) {
    // Every element is written (K = 0: zeros), so a CPU float32 output need not be cleared first.
    out = device === 'cpu' && dtype === 'float32' ? overwrittenLike([m, n]) : emptyLike([m, n], dtype, device);
  } else {
    out = checkOut(fn, 'opts.out', o.out, [m, n], device, dtype);
    checkNoAlias(fn, 'opts.out', out, { a, b });
  }
  native().matmul({ a: a.nativeArg, aShape: [...a.shape], b: b.nativeArg, bShape: [...b.shape], out: out.nativeArg, transA, transB, dtype });
  return out;
}
