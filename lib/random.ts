// The package's one seedable random generator (mulberry32): small, fast and
// deterministic across platforms — what synthetic data, test inputs and
// benchmark inputs are drawn from. Not for cryptography.

/** A generator of floats in [0, 1), fully determined by `seed`. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` uniform floats in [lo, hi) from `seed`. */
export function randomFloats(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = seededRandom(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}
