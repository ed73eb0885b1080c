// vp.planSubstitution: which frame's tokens each frame carries in the KIM
// (key-information-missing) variant (docs/method.md, stage 1 step 3).
import { describe, rangeError, typeError } from '../errors.js';

export type SubstitutionPolicy = 'nearest' | 'previous' | 'next';

/** The RangeError of a video whose frames are all key frames: it has no KIM variant. */
export class AllKeyFramesError extends RangeError {
  override name = 'RangeError';
}

/**
 * For every frame, the frame whose tokens it carries in the KIM variant:
 * itself for a non-key frame; for a key frame, a non-key frame chosen by `policy`:
 * - `nearest` (default): the nearest non-key frame; at equal distance, the earlier one;
 * - `previous`: the nearest non-key frame before it, else the nearest after it;
 * - `next`: the nearest non-key frame after it, else the nearest before it.
 * No key frame is ever a source. Every frame being a key frame is an error
 * (there is nothing to substitute from). Duplicate key frames are allowed.
 */
export function planSubstitution(numFrames: number, keyFrames: ArrayLike<number>, policy: SubstitutionPolicy = 'nearest'): Int32Array {
  const fn = 'planSubstitution';
  if (typeof numFrames !== 'number') throw typeError(fn, 'numFrames', 'a non-negative integer', describe(numFrames));
  if (!Number.isSafeInteger(numFrames) || numFrames < 0 || numFrames > 2 ** 31 - 1)
    throw rangeError(fn, 'numFrames', 'a non-negative integer', describe(numFrames));
  if (keyFrames === null || typeof keyFrames !== 'object' || typeof (keyFrames as ArrayLike<number>).length !== 'number')
    throw typeError(fn, 'keyFrames', 'an array of frame indices', describe(keyFrames));
  if (policy !== 'nearest' && policy !== 'previous' && policy !== 'next')
    throw typeError(fn, 'policy', "'nearest' | 'previous' | 'next'", describe(policy));
  const isKey = new Uint8Array(numFrames);
  let nKey = 0;
  for (let i = 0; i < keyFrames.length; i++) {
    const f = keyFrames[i];
    if (typeof f !== 'number' || !Number.isInteger(f) || f < 0 || f >= numFrames)
      throw rangeError(fn, `keyFrames[${i}]`, `a frame index in [0, ${numFrames})`, describe(f));
    if (!isKey[f]) nKey++;
    isKey[f] = 1;
  }
  const out = new Int32Array(numFrames);
  if (numFrames > 0 && nKey === numFrames)
    throw new AllKeyFramesError(rangeError(fn, 'keyFrames', `to leave at least one of the ${numFrames} frames as a non-key frame to substitute from`, `every frame a key frame`).message);
  // Nearest non-key frame at or before / at or after each frame (-1: none).
  const prev = new Int32Array(numFrames);
  const next = new Int32Array(numFrames);
  let last = -1;
  for (let f = 0; f < numFrames; f++) {
    if (!isKey[f]) last = f;
    prev[f] = last;
  }
  last = -1;
  for (let f = numFrames - 1; f >= 0; f--) {
    if (!isKey[f]) last = f;
    next[f] = last;
  }
  for (let f = 0; f < numFrames; f++) {
    if (!isKey[f]) {
      out[f] = f;
      continue;
    }
    const p = prev[f];
    const n = next[f];
    if (policy === 'previous') out[f] = p >= 0 ? p : n;
    else if (policy === 'next') out[f] = n >= 0 ? n : p;
    else if (p < 0) out[f] = n;
    else if (n < 0) out[f] = p;
    else out[f] = f - p <= n - f ? p : n; // ties go to the earlier frame
  }
  return out;
}
