// vp.detectTransientFrames: key frames without annotations (docs/method.md, stage 1
// step 2, §3.3) — the frames that differ from both neighbours far more than the
// video's frames usually differ from each other.
//
// Two measures of temporal difference, in units of the value range squared:
//  - the energy between frames, d_f = mean over pixels and channels of
//    (frame f+1 − frame f)²;
//  - the peak energy of a run of frames [a .. b] (1 ≤ L ≤ maxDuration frames,
//    strictly inside the clip): the same kind of mean, of
//    min_f min(|x_f − x_{a−1}|, |x_f − x_{b+1}|)², counted only where the whole
//    run lies on one side of both neighbours (a peak or a dip in time). Steady
//    motion moves an antialiased edge through a pixel as a monotonic ramp and
//    adds nothing, so this stays at the noise floor except around events.
// Detection: a run is flagged when its peak energy is an outlier among the
// clip's runs of that length — above median + z · max(1.4826 · MAD,
// minSpread · median), robust to the event itself — and exceeds that median
// by at least max(minEnergy, minRelative · median(d)) (the minimum-magnitude
// guard: the noise of a still clip and the flicker of aliased edges are never
// events).
// Localization: flagged frames are grouped into windows (±1 frame; touching
// windows merge); in each window the reported run is the one with the largest
// min(d_{a−1}, d_b) above the clip's median d — the frames that differ most
// from both neighbours — among runs whose frames resemble each other more than
// their surroundings; none when no run differs more than usual. A clip
// without an event returns [].
import { describe, rangeError, typeError } from '../errors.js';
import { Tensor } from '../tensor.js';

export type FrameData = Float32Array | Int32Array | Uint8Array | Uint8ClampedArray | Uint16Array | Float64Array;

/** Frames as a tensor, or raw data with its shape (e.g. a uint8 `.npy` clip, read without a copy). */
export type FramesInput = Tensor | { data: FrameData; shape: readonly number[] };

export interface TransientOptions {
  /** Outlier threshold in robust standard deviations (1.4826 · MAD) above the median (default 6). */
  z?: number;
  /**
   * Floor of the robust spread, as a fraction of the median (default 0.1): with a dozen frames the
   * MAD itself can come out too small, so the threshold is at least median · (1 + z · minSpread).
   */
  minSpread?: number;
  /**
   * Minimum excess of the peak energy over its median, as a fraction of the clip's median step
   * energy d (default 0.15): a transient must differ from its neighbours by a fair part of what
   * consecutive frames usually differ, which keeps the flicker of aliased edges out.
   */
  minRelative?: number;
  /** Minimum excess of the peak energy over the median, as a fraction of valueRange² (default 2e-4). */
  minEnergy?: number;
  /**
   * Measure the peak energy on frames averaged over pool×pool pixel blocks (default 1: full
   * resolution); pooling large frames makes the test cheaper and single-pixel flicker weigh less.
   */
  pool?: number;
  /** Longest transient run, in frames (default 2). */
  maxDuration?: number;
  /** The span of pixel values (default: 255 for integer data; for floating data 1 when every value is ≤ 1, else 255). */
  valueRange?: number;
}

interface Clip {
  data: FrameData;
  F: number;
  frameSize: number;
  H: number;
  W: number;
  C: number;
}

/** Averages k×k blocks of pixels (per channel); edge blocks average what they hold. */
function poolClip(clip: Clip, k: number): Clip {
  const { data, F, H, W, C } = clip;
  const h = Math.ceil(H / k);
  const w = Math.ceil(W / k);
  const out = new Float64Array(F * h * w * C);
  const count = new Float64Array(h * w);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) count[Math.floor(y / k) * w + Math.floor(x / k)]++;
  for (let f = 0; f < F; f++) {
    const src = f * H * W * C;
    const dst = f * h * w * C;
    for (let y = 0; y < H; y++) {
      const row = dst + Math.floor(y / k) * w * C;
      for (let x = 0; x < W; x++) {
        const o = row + Math.floor(x / k) * C;
        const i = src + (y * W + x) * C;
        for (let c = 0; c < C; c++) out[o + c] += data[i + c];
      }
    }
    for (let b = 0; b < h * w; b++) for (let c = 0; c < C; c++) out[dst + b * C + c] /= count[b];
  }
  return { data: out, F, frameSize: h * w * C, H: h, W: w, C };
}

function readFrames(fn: string, frames: unknown): Clip {
  let data: FrameData;
  let shape: readonly number[];
  if (frames instanceof Tensor) {
    if (frames.disposed) throw typeError(fn, 'frames', 'a live tensor', 'a disposed tensor');
    if (frames.device !== 'cpu') throw typeError(fn, 'frames', "a CPU tensor (call .to('cpu') first)", describe(frames));
    if (frames.dtype !== 'float32' && frames.dtype !== 'int32') throw typeError(fn, 'frames.dtype', 'float32 | int32', frames.dtype);
    data = frames.data as Float32Array | Int32Array;
    shape = frames.shape;
  } else if (frames !== null && typeof frames === 'object' && 'data' in frames && 'shape' in frames) {
    const f = frames as { data: unknown; shape: unknown };
    const ok = f.data instanceof Float32Array || f.data instanceof Int32Array || f.data instanceof Uint8Array ||
      f.data instanceof Uint8ClampedArray || f.data instanceof Uint16Array || f.data instanceof Float64Array;
    if (!ok) throw typeError(fn, 'frames.data', 'a Float32Array, Int32Array, Uint8Array or Uint16Array', describe(f.data));
    if (!Array.isArray(f.shape) || !f.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw typeError(fn, 'frames.shape', 'an array of non-negative integers', describe(f.shape));
    data = f.data as FrameData;
    shape = f.shape as number[];
  } else {
    throw typeError(fn, 'frames', 'a Tensor [F, H, W, C] or { data, shape }', describe(frames));
  }
  if (shape.length !== 4) throw rangeError(fn, 'frames.shape', '[F, H, W, C] (4-D)', `[${shape.join(', ')}]`);
  const [F, H, W, C] = shape;
  if (data.length !== F * H * W * C)
    throw rangeError(fn, 'frames.data', `${F * H * W * C} values for shape [${shape.join(', ')}]`, `${data.length}`);
  return { data, F, frameSize: H * W * C, H, W, C };
}

function defaultRange(data: FrameData): number {
  if (!(data instanceof Float32Array || data instanceof Float64Array)) return 255;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) if (data[i] > max) max = data[i];
  return max <= 1 + 1e-6 ? 1 : 255;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
}

/** Mean squared difference of frames a and b, in units of the value range squared. */
function energy(clip: Clip, a: number, b: number, scale: number): number {
  const { data, frameSize } = clip;
  if (frameSize === 0) return 0;
  const pa = a * frameSize;
  const pb = b * frameSize;
  let s = 0;
  for (let i = 0; i < frameSize; i++) {
    const d = data[pa + i] - data[pb + i];
    s += d * d;
  }
  return (s / frameSize) * scale;
}

/**
 * Peak energy of the run [a .. b]: the mean over pixels and channels of
 * min_f min(|x_f − x_{a−1}|, |x_f − x_{b+1}|)² over the run's frames f, counting
 * only the values where every frame of the run lies on one side of both
 * neighbours (a peak or a dip in time); units of the value range squared.
 */
function peakEnergy(clip: Clip, a: number, b: number, scale: number): number {
  const { data, frameSize } = clip;
  if (frameSize === 0) return 0;
  const pPrev = (a - 1) * frameSize;
  const pNext = (b + 1) * frameSize;
  let s = 0;
  for (let i = 0; i < frameSize; i++) {
    const prev = data[pPrev + i];
    const next = data[pNext + i];
    let m = Infinity;
    let sign = 0;
    for (let f = a; f <= b; f++) {
      const x = data[f * frameSize + i];
      const dp = x - prev;
      const dn = x - next;
      const sg = dp > 0 && dn > 0 ? 1 : dp < 0 && dn < 0 ? -1 : 0;
      if (sg === 0 || (sign !== 0 && sg !== sign)) {
        m = 0;
        break;
      }
      sign = sg;
      const q = Math.min(Math.abs(dp), Math.abs(dn));
      if (q < m) m = q;
    }
    s += m * m;
  }
  return (s / frameSize) * scale;
}

export interface TransientAnalysis {
  /** The transient frames, ascending. */
  frames: number[];
  /** d_f = E(f, f+1), f = 0 .. F−2 (units of valueRange²). */
  energies: number[];
  /** Peak energy of each one-frame run f = 1 .. F−2 (index f − 1). */
  peaks: number[];
  /** Median of those peak energies and the outlier threshold for one-frame runs. */
  median: number;
  threshold: number;
}

/** detectTransientFrames with its intermediate numbers (for diagnostics and tuning). */
export function analyzeTransientFrames(frames: FramesInput, opts: TransientOptions = {}): TransientAnalysis {
  const fn = 'detectTransientFrames';
  const clip = readFrames(fn, frames);
  if (opts === null || typeof opts !== 'object') throw typeError(fn, 'opts', 'an object', describe(opts));
  const num = (name: keyof TransientOptions, dflt: number, min: number): number => {
    const v = opts[name];
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw rangeError(fn, `opts.${name}`, `a finite number >= ${min}`, describe(v));
    return v;
  };
  const z = num('z', 6, 0);
  const minEnergy = num('minEnergy', 2e-4, 0);
  const minSpread = num('minSpread', 0.1, 0);
  const pool = num('pool', 1, 1);
  const minRelative = num('minRelative', 0.15, 0);
  if (!Number.isInteger(pool)) throw rangeError(fn, 'opts.pool', 'an integer >= 1', describe(pool));
  const maxDuration = num('maxDuration', 2, 1);
  if (!Number.isInteger(maxDuration)) throw rangeError(fn, 'opts.maxDuration', 'an integer >= 1', describe(maxDuration));
  const range = opts.valueRange === undefined ? defaultRange(clip.data) : num('valueRange', 1, Number.MIN_VALUE);
  const scale = 1 / (range * range);
  const F = clip.F;
  const pooled = pool > 1 ? poolClip(clip, pool) : clip;
  const d: number[] = [];
  for (let f = 0; f + 1 < F; f++) d.push(energy(clip, f, f + 1, scale));
  const maxLen = Math.min(maxDuration, F - 2);
  const dMedian = median(d);

  // 1. Detection: runs whose peak energy is an outlier for their length.
  const flagged = new Array<boolean>(F).fill(false);
  let single = { peaks: [] as number[], median: 0, threshold: Infinity };
  for (let len = 1; len <= maxLen; len++) {
    const p: number[] = [];
    for (let a = 1; a + len < F; a++) p.push(peakEnergy(pooled, a, a + len - 1, scale));
    const m = median(p);
    const mad = median(p.map((x) => Math.abs(x - m)));
    const threshold = Math.max(m + z * Math.max(1.4826 * mad, minSpread * m), m + minEnergy, m + minRelative * dMedian);
    if (len === 1) single = { peaks: p, median: m, threshold };
    for (let a = 1; a + len < F; a++) if (p[a - 1] > threshold) for (let f = a; f < a + len; f++) flagged[f] = true;
  }

  // 2. Localization: flagged frames are grouped into windows (each widened by
  // one frame on either side; touching windows merge), and in each window the
  // reported run is the one whose frames differ most from both neighbours:
  // the largest min(d_{a−1}, d_b) above the clip's median step energy, among
  // runs whose frames resemble each other more than their surroundings.
  const found: number[] = [];
  let f = 1;
  while (f < F - 1) {
    if (!flagged[f]) {
      f++;
      continue;
    }
    let g = f;
    for (;;) {
      let next = g + 1;
      while (next < F - 1 && !flagged[next] && next <= g + 2) next++;
      if (next < F - 1 && flagged[next] && next <= g + 3) g = next;
      else break;
    }
    const lo = Math.max(1, f - 1);
    const hi = Math.min(F - 2, g + 1);
    let best: [number, number] | null = null;
    let bestScore = 0;
    for (let a = lo; a <= hi; a++) {
      for (let len = 1; len <= maxLen && a + len - 1 <= hi; len++) {
        const b = a + len - 1;
        const edge = Math.min(d[a - 1], d[b]);
        let alike = true;
        for (let k = a; k < b; k++) if (!(d[k] < edge)) alike = false;
        const score = edge - dMedian;
        if (alike && score > bestScore) {
          bestScore = score;
          best = [a, b];
        }
      }
    }
    if (best) for (let k = best[0]; k <= best[1]; k++) found.push(k);
    f = g + 1;
  }
  return { frames: found, energies: d, peaks: single.peaks, median: single.median, threshold: single.threshold };
}

/**
 * Frames that differ from both neighbours far more than the clip's frames
 * usually do: a flash, a jump, a vanishing object lasting one or two frames.
 * `frames` is `[F, H, W, C]`: a CPU float32/int32 tensor, or `{ data, shape }`
 * with uint8 (values 0..255, as decoded video arrives), uint16, int32 or float
 * data — uint8 data reads exactly as the same values converted to float32.
 * Returns the frame indices, ascending; `[]` for a clip without an event.
 */
export function detectTransientFrames(frames: FramesInput, opts: TransientOptions = {}): number[] {
  return analyzeTransientFrames(frames, opts).frames;
}
