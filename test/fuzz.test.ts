// Property-based fuzzing of bad inputs: whatever the arguments, tensor() and
// matmul() either succeed with the right shape or throw TypeError/RangeError —
// never crash the process, never return garbage.
import test from 'ava';
import fc from 'fast-check';
import * as vp from '../lib/index.js';

const dim = fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constantFrom(-1, 1.5, NaN, Infinity, -Infinity, 2 ** 40));
const shape = fc.array(dim, { maxLength: 4 });
const anyValue = fc.oneof(
  fc.constant(undefined), fc.constant(null), fc.integer(), fc.string(), fc.boolean(),
  fc.array(fc.integer(), { maxLength: 5 }), fc.object(),
);

function expectCleanError(e: unknown): boolean {
  return e instanceof TypeError || e instanceof RangeError;
}

test('fuzz: tensor() with arbitrary data lengths and shapes', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 40 }), shape, fc.boolean(), (len, s, asInt) => {
      const data = asInt ? new Int32Array(len) : new Float32Array(len);
      try {
        const x = vp.tensor(data, s as number[]);
        return x.size === len && x.shape.every((d, i) => d === s[i]);
      } catch (e) {
        return expectCleanError(e);
      }
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('fuzz: matmul() with arbitrary shapes, transposes and option values', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 3 }),
      fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 3 }),
      fc.oneof(fc.boolean(), anyValue), fc.oneof(fc.boolean(), anyValue), fc.boolean(),
      (sa, sb, ta, tb, intB) => {
        const a = vp.tensor(new Float32Array(sa.reduce((x, y) => x * y, 1)).fill(1), sa);
        const nb = sb.reduce((x, y) => x * y, 1);
        const b = vp.tensor(intB ? new Int32Array(nb) : new Float32Array(nb).fill(1), sb);
        try {
          const c = vp.matmul(a, b, { transA: ta as boolean, transB: tb as boolean });
          const m = ta ? sa[1] : sa[0];
          const k = ta ? sa[0] : sa[1];
          const n = tb ? sb[0] : sb[1];
          // all-ones inputs: every entry equals K
          return c.shape[0] === m && c.shape[1] === n && Array.from(c.data).every((v) => v === k);
        } catch (e) {
          return expectCleanError(e);
        }
      },
    ),
    { numRuns: 2000 },
  );
  t.pass();
});

test('fuzz: matmul() with non-tensor arguments', (t) => {
  const a = vp.tensor(new Float32Array(4), [2, 2]);
  fc.assert(
    fc.property(anyValue, anyValue, (x, o) => {
      try {
        vp.matmul(a, x as vp.Tensor, o as vp.MatmulOptions);
        return false;
      } catch (e) {
        return expectCleanError(e);
      }
    }),
    { numRuns: 500 },
  );
  t.pass();
});
