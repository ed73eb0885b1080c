// The ablation's statistics (lib/report/stats.ts): the sign-flip permutation
// p-value against hand-counted sign patterns and a brute-force enumeration,
// the two-level bootstrap interval, and input checks.
import test from 'ava';
import fc from 'fast-check';
import { pairedComparison, signFlipPValue } from '../lib/report/index.js';

test('sign-flip p-value: hand-counted cases', (t) => {
  // Four positive seeds: only the all-positive and all-negative patterns reach |mean| = 1.
  t.deepEqual(signFlipPValue([1, 1, 1, 1]), { p: 2 / 16, exact: true });
  t.is(signFlipPValue([0, 0, 0]).p, 1);
  // [3, 1]: patterns ±3 ±1 → means 2, 1, -1, -2; |mean| >= 2 in two of four.
  t.is(signFlipPValue([3, 1]).p, 0.5);
  t.true(Number.isNaN(signFlipPValue([]).p));
});

test('sign-flip p-value equals a brute-force enumeration (random differences, up to 10 seeds)', (t) => {
  fc.assert(fc.property(fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 1, maxLength: 10 }), (d) => {
    const S = d.length;
    const obs = Math.abs(d.reduce((a, b) => a + b, 0) / S);
    let hit = 0;
    for (let m = 0; m < 2 ** S; m++) {
      const mean = d.reduce((a, x, i) => a + ((m >> i) & 1 ? -x : x), 0) / S;
      if (Math.abs(mean) >= obs - 1e-12) hit++;
    }
    return Math.abs(signFlipPValue(d).p - hit / 2 ** S) < 1e-12;
  }), { numRuns: 200 });
  t.pass();
});

test('more than 16 seeds: a seeded random estimate close to the exact value', (t) => {
  const d = Array.from({ length: 18 }, (_, i) => (i % 3 === 0 ? -0.1 : 0.2) + i * 0.001);
  const est = signFlipPValue(d, { permutations: 20000, seed: 1 });
  t.false(est.exact);
  t.true(est.p > 0 && est.p < 0.01, `${est.p}`); // 12 of 18 seeds clearly positive
  t.is(signFlipPValue(d, { permutations: 20000, seed: 1 }).p, est.p, 'reproducible for a seed');
});

test('pairedComparison: per-seed differences, an interval that holds the mean, NaN clips left out', (t) => {
  const a = [[1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, NaN]];
  const b = [[0, 1, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0]];
  const c = pairedComparison(a, b, { resamples: 2000 });
  t.deepEqual(c.perSeed.map((x) => +x.toFixed(6)), [0.5, 0.25, 0.333333]);
  t.is(+c.mean.toFixed(6), +((0.5 + 0.25 + 1 / 3) / 3).toFixed(6));
  t.true(c.ci[0] <= c.mean && c.mean <= c.ci[1]);
  t.true(c.ci[0] >= 0, 'every resampled clip difference is >= 0 here');
  t.is(c.p, 2 / 8);
  // Identical arms: no difference, p = 1, a zero-width interval.
  const same = pairedComparison(a, a);
  t.is(same.mean, 0);
  t.is(same.p, 1);
  t.deepEqual(same.ci, [0, 0]);
});

test('pairedComparison refuses unpaired input', (t) => {
  t.throws(() => pairedComparison([[1, 0]], [[1, 0], [0, 1]]), { instanceOf: RangeError, message: /seeds/ });
  t.throws(() => pairedComparison([[1, 0, 1]], [[1, 0]]), { instanceOf: RangeError, message: /same clips/ });
});
