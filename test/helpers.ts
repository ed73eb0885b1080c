// Shared helpers for the ava tests: seeded random data and relative error.
export function rng(seed: number): () => number {
  // mulberry32: small, fast, good enough for test data.
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomFloats(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** ‖out − ref‖ / ‖ref‖ (NaN anywhere in `out` gives Infinity). */
export function relError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  if (out.length !== ref.length) return Infinity;
  for (let i = 0; i < ref.length; i++) {
    if (Number.isNaN(out[i])) return Infinity;
    const d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}
