// Shared helpers for the ava tests: seeded random data and relative error.
import { seededRandom } from '../lib/random.js';

export { randomFloats } from '../lib/random.js';

/** A seeded generator of floats in [0, 1). */
export const rng = seededRandom;

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
