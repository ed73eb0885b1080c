// Error helpers. Every op validates before native work and throws the built-in
// TypeError (wrong kind of value: type, dtype, device) or RangeError (right
// kind, wrong size or value: shape, length, index), with a message that names
// the function and the argument and gives the expected and the actual value.

/** An error raised by the native core (CUDA failure, out of memory). */
export class NativeError extends Error {
  override name = 'NativeError';
}

export function typeError(fn: string, arg: string, expected: string, actual: string): TypeError {
  return new TypeError(`${fn}: ${arg} must be ${expected}, got ${actual}`);
}

export function rangeError(fn: string, arg: string, expected: string, actual: string): RangeError {
  return new RangeError(`${fn}: ${arg} must be ${expected}, got ${actual}`);
}

/** A short description of any value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return v.length <= 8 ? `[${v.map(describe).join(', ')}]` : `an array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length: number }).length})`;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'object') {
    const ctor = (v as object).constructor?.name;
    if (ctor === 'Tensor') {
      const t = v as { shape: number[]; dtype: string; device: string };
      return `a ${t.device} ${t.dtype} tensor of shape [${t.shape.join(', ')}]`;
    }
    return ctor && ctor !== 'Object' ? `a ${ctor}` : 'an object';
  }
  return typeof v;
}
