// Paired comparisons of two training arms evaluated on the same held-out clips
// over several seeds (the demo's ablation):
//  - the difference per seed: mean over clips of arm 1 minus mean of arm 2
//    (clips where either value is NaN are left out of that seed);
//  - a paired sign-flip permutation test over seeds: under "no difference" each
//    seed's difference is as likely positive as negative, so the p-value is the
//    fraction of the 2^S sign patterns whose |mean| reaches the observed one
//    (exact up to S = 16 seeds, else `permutations` random patterns, plus the
//    observed one);
//  - a two-level bootstrap 95 % interval for the mean difference: resample seeds
//    with replacement, and within each drawn seed resample its clips (pairs kept
//    together), `resamples` times; the 2.5th and 97.5th percentiles.
// Randomness comes from a seeded generator, so a report is reproducible.
// Cost: O(2^S · S) for the exact test; O(resamples · S · clips) for the bootstrap.
import { seededRandom } from '../random.js';

export interface PairedComparison {
  /** Mean over seeds of the per-seed differences (arm 1 − arm 2). */
  mean: number;
  /** Per seed: mean over clips of arm 1 − arm 2. */
  perSeed: number[];
  /** Two-sided p-value of the sign-flip permutation test over seeds. */
  p: number;
  /** Whether p is exact (every sign pattern) or estimated from random patterns. */
  exact: boolean;
  /** Bootstrap 95 % interval of the mean difference (over seeds and clips). */
  ci: [number, number];
  seeds: number;
}

export interface PairedComparisonOptions {
  /** Bootstrap resamples (default 4000). */
  resamples?: number;
  /** Random sign patterns when seeds > 16 (default 20000). */
  permutations?: number;
  /** Seed of the resampling (default 12345). */
  seed?: number;
}

function pairedDiffs(a: ArrayLike<number>, b: ArrayLike<number>, fn: string, s: number): number[] {
  if (a.length !== b.length) throw new RangeError(`${fn}: seed ${s} has ${a.length} clips in arm 1 and ${b.length} in arm 2; the arms must be scored on the same clips`);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]) && Number.isFinite(b[i])) out.push(a[i] - b[i]);
  return out;
}

const meanOf = (xs: readonly number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;

/** Sign-flip p-value of the mean of `d` (two-sided). */
export function signFlipPValue(d: readonly number[], opts: Pick<PairedComparisonOptions, 'permutations' | 'seed'> = {}): { p: number; exact: boolean } {
  const S = d.length;
  if (S === 0) return { p: NaN, exact: true };
  const obs = Math.abs(meanOf(d)) - 1e-12;
  if (S <= 16) {
    let hit = 0;
    for (let m = 0; m < 1 << S; m++) {
      let sum = 0;
      for (let i = 0; i < S; i++) sum += m & (1 << i) ? -d[i] : d[i];
      if (Math.abs(sum / S) >= obs) hit++;
    }
    return { p: hit / (1 << S), exact: true };
  }
  const n = opts.permutations ?? 20000;
  const rnd = seededRandom(opts.seed ?? 12345);
  let hit = 1;
  for (let k = 0; k < n; k++) {
    let sum = 0;
    for (let i = 0; i < S; i++) sum += rnd() < 0.5 ? -d[i] : d[i];
    if (Math.abs(sum / S) >= obs) hit++;
  }
  return { p: hit / (n + 1), exact: false };
}

/**
 * Compares arm 1 with arm 2: `arm1[s][c]` and `arm2[s][c]` are the scores of clip c under seed s
 * (e.g. 1 for a right answer, 0 for a wrong one; NaN: not scored).
 */
export function pairedComparison(arm1: readonly ArrayLike<number>[], arm2: readonly ArrayLike<number>[], opts: PairedComparisonOptions = {}): PairedComparison {
  const fn = 'pairedComparison';
  if (arm1.length !== arm2.length) throw new RangeError(`${fn}: arm 1 has ${arm1.length} seeds and arm 2 ${arm2.length}; the seeds must be paired`);
  const diffs = arm1.map((a, s) => pairedDiffs(a, arm2[s], fn, s)).filter((d) => d.length > 0);
  const S = diffs.length;
  if (S === 0) return { mean: NaN, perSeed: [], p: NaN, exact: true, ci: [NaN, NaN], seeds: 0 };
  const perSeed = diffs.map(meanOf);
  const { p, exact } = signFlipPValue(perSeed, opts);
  const B = opts.resamples ?? 4000;
  const rnd = seededRandom((opts.seed ?? 12345) + 1);
  const boots = new Float64Array(B);
  for (let k = 0; k < B; k++) {
    let total = 0;
    for (let i = 0; i < S; i++) {
      const d = diffs[Math.floor(rnd() * S)];
      let sum = 0;
      for (let j = 0; j < d.length; j++) sum += d[Math.floor(rnd() * d.length)];
      total += sum / d.length;
    }
    boots[k] = total / S;
  }
  boots.sort();
  const q = (f: number) => boots[Math.min(B - 1, Math.max(0, Math.round(f * (B - 1))))];
  return { mean: meanOf(perSeed), perSeed, p, exact, ci: [q(0.025), q(0.975)], seeds: S };
}
