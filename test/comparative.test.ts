// vp.comparativeAdvantages (the default comparative signal of stage 2) against
// a plain float64 reference; how it differs from plain GRPO on binary rewards;
// the RL step's scoring uses it by default; invalid RL options throw.
import test from 'ava';
import * as vp from '../lib/index.js';
import { parseRlOptions, score, type Rollout } from '../lib/train/rl.js';
import { relError, rng } from './helpers.js';

/** μ and Bessel σ over the group's original ∪ degraded rewards (NaN left out); σ over everything for 'batch'. */
function refComparative(c: number[], d: number[], G: number, scale: vp.AdvantageScale, eps = 1e-4): number[] {
  const stats = (xs: number[]) => {
    const v = xs.filter((x) => !Number.isNaN(x));
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : NaN;
    return { m, sd };
  };
  const groups = c.length / G;
  const dg = d.length / groups;
  const batch = stats([...c, ...d]).sd;
  const out: number[] = [];
  for (let q = 0; q < groups; q++) {
    const { m, sd } = stats([...c.slice(q * G, (q + 1) * G), ...d.slice(q * dg, (q + 1) * dg)]);
    const den = scale === 'none' ? 1 : scale === 'batch' ? batch + eps : sd + eps;
    for (let i = 0; i < G; i++) {
      const a = (c[q * G + i] - m) / den;
      out.push(Number.isNaN(a) ? 0 : a);
    }
  }
  return out;
}

const C = [1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0];
const D = [0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1];

test('comparativeAdvantages matches the float64 reference (random rewards, NaN, every scale)', (t) => {
  const r = rng(7);
  for (let trial = 0; trial < 60; trial++) {
    const G = 2 + Math.floor(r() * 6);
    const groups = 1 + Math.floor(r() * 5);
    const dg = 1 + Math.floor(r() * 6);
    const c = Array.from({ length: G * groups }, () => (r() < 0.1 ? NaN : Math.fround(r() * 2 - 0.5)));
    const d = Array.from({ length: dg * groups }, () => (r() < 0.1 ? NaN : Math.fround(r() * 2 - 0.5)));
    for (const scale of ['group', 'batch', 'none'] as const) {
      const got = vp.comparativeAdvantages(Float32Array.from(c), Float32Array.from(d), G, { scale });
      const want = refComparative(c, d, G, scale);
      t.true(relError(got, Float64Array.from(want)) < 1e-6, `G=${G} groups=${groups} dg=${dg} ${scale}`);
      t.false(Array.from(got).some(Number.isNaN));
    }
  }
});

test('on binary rewards it differs from plain GRPO exactly as the method says: answers that need the key frames gain more', (t) => {
  const plain = vp.groupAdvantages(Float32Array.from(C), 4);
  const cmp = vp.comparativeAdvantages(Float32Array.from(C), Float32Array.from(D), 4);
  // Reward shaping is affine within a group on binary rewards, so it leaves plain GRPO's advantages as they were.
  for (const mode of ['pairwise', 'threshold'] as const) {
    const shaped = vp.groupAdvantages(vp.comparativeRewards(Float32Array.from(C), Float32Array.from(D), 4, { mode }), 4);
    t.true(relError(shaped, Float64Array.from(plain)) < 1e-3, mode); // equal but for eps (1e-4) against a scaled σ
  }
  t.true(relError(cmp, Float64Array.from(plain)) > 0.1);
  // Group 0: the degraded video never gets it right → a right answer needs the key frames.
  // Group 2: the degraded video always gets it right → a right answer does not need them.
  t.true(cmp[0] > plain[0], `needs key frames: ${cmp[0]} > plain ${plain[0]}`);
  t.true(cmp[8] < plain[8], `guessable without them: ${cmp[8]} < plain ${plain[8]}`);
  t.true(cmp[0] > cmp[8]);
  // Wrong answers are pushed down less where the task is hard even without the key frames.
  t.true(cmp[2] > plain[2]);
});

test('equal to plain GRPO when the degraded rewards leave the mean and std unchanged', (t) => {
  // scale 'none': degraded rewards equal to the originals leave μ unchanged.
  const c = Float32Array.from(C);
  const none = vp.comparativeAdvantages(c, Float32Array.from(C), 4, { scale: 'none' });
  t.deepEqual(Array.from(none), Array.from(vp.groupAdvantages(c, 4, { scale: 'none' })));
  // scale 'group': per group, three degraded rewards with the group's mean and a sum of squares that keeps σ.
  const d: number[] = [];
  for (let q = 0; q < 3; q++) {
    const g = C.slice(q * 4, q * 4 + 4);
    const m = g.reduce((a, b) => a + b, 0) / 4;
    const ss = g.reduce((a, b) => a + (b - m) ** 2, 0);
    const x = Math.sqrt(ss / 2); // 2x² = ss, so that (ss + 2x²) / (7 − 1) = ss / (4 − 1)
    d.push(m, m + x, m - x);
  }
  const same = vp.comparativeAdvantages(c, Float32Array.from(d), 4);
  t.true(relError(same, Float64Array.from(vp.groupAdvantages(c, 4))) < 1e-6);
  // A group without a degraded variant (NaN) is plain GRPO.
  const nan = vp.comparativeAdvantages(c, new Float32Array(12).fill(NaN), 4);
  t.true(relError(nan, Float64Array.from(vp.groupAdvantages(c, 4))) < 1e-7);
});

test('comparativeAdvantages rejects bad input naming the argument', (t) => {
  const c = new Float32Array(8);
  t.throws(() => vp.comparativeAdvantages(c, new Float32Array(3), 4), { instanceOf: RangeError, message: /taskDegraded\.length/ });
  t.throws(() => vp.comparativeAdvantages(c, new Float32Array(2), 3), { instanceOf: RangeError, message: /groupSize/ });
  t.throws(() => vp.comparativeAdvantages(c, Float32Array.of(1, Infinity), 4), { instanceOf: RangeError, message: /taskDegraded\[1\]/ });
  t.throws(() => vp.comparativeAdvantages(c, new Float32Array(2), 4, { scale: 'x' as never }), { instanceOf: TypeError, message: /opts\.scale/ });
  t.throws(() => vp.comparativeAdvantages([1] as never, new Float32Array(2), 1), { instanceOf: TypeError, message: /taskComplete/ });
});

test("the RL step scores with comparativeAdvantages by default; the shaping modes and 'none' as documented", async (t) => {
  const G = 4;
  const prompts = [0, 1, 2].map((i) => ({ clip: { annotation: { id: `c${i}`, caption: 'x' } }, task: { kind: 'caption', prompt: 'p', response: 'x' }, promptIds: new Int32Array(1) }));
  const ro = {
    prompts, orig: new Array(12).fill({}), withKim: [0, 1, 2],
    responses: Array.from({ length: 24 }, () => new Int32Array(0)),
  } as unknown as Rollout;
  const tok = { vocabSize: 10, decode: () => '' } as never;
  const run = async (opts: vp.RlOptions) => {
    let k = 0;
    const s = parseRlOptions('test', { ...opts, reward: () => (k < 12 ? C[k++] : D[k++ - 12]) }, 3);
    return score(ro, s, tok, 'test');
  };
  const def = await run({});
  t.deepEqual(Array.from(def.advantages), Array.from(vp.comparativeAdvantages(Float32Array.from(C), Float32Array.from(D), G)));
  t.deepEqual(Array.from(def.taskDegraded), D);
  const pw = await run({ comparative: 'pairwise' });
  t.deepEqual(Array.from(pw.advantages), Array.from(vp.groupAdvantages(vp.comparativeRewards(Float32Array.from(C), Float32Array.from(D), G), G)));
  const none = await run({ comparative: 'none' });
  t.deepEqual(Array.from(none.advantages).slice(0, 12), Array.from(vp.groupAdvantages(Float32Array.from(C), G)));
});

test('invalid RL options throw instead of being ignored', (t) => {
  t.throws(() => parseRlOptions('Trainer.rl', { bonus: 0.3 }, 4), { instanceOf: RangeError, message: /opts\.bonus/ });
  t.throws(() => parseRlOptions('Trainer.rl', { comparative: 'none', ratio: 0.5 }, 4), { instanceOf: RangeError, message: /opts\.ratio/ });
  t.throws(() => parseRlOptions('Trainer.rl', { substitution: 'closest' as never }, 4), { instanceOf: TypeError, message: /opts\.substitution/ });
  t.throws(() => parseRlOptions('Trainer.rl', { lossType: 'ppo' as never }, 4), { instanceOf: TypeError, message: /opts\.lossType/ });
  t.throws(() => parseRlOptions('Trainer.rl', { scaleAdvantages: 'row' as never }, 4), { instanceOf: TypeError, message: /opts\.scaleAdvantages/ });
  t.notThrows(() => parseRlOptions('Trainer.rl', { comparative: 'pairwise', bonus: 0.3 }, 4));
});
