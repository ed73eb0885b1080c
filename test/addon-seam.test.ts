// The TypeScript ↔ native seam (lib/addon-types.ts, lib/native.ts): every export
// of the loaded addon is typed, no binding takes more than six positional
// arguments, and the core's limits reach the TypeScript validation.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import * as vp from '../lib/index.js';
import { ADDON_ABI_VERSION, limits, native, packageRoot } from '../lib/native.js';
// @ts-expect-error a plain ESM script without type declarations
import { nativeArity } from '../scripts/native-arity.mjs';

/** The member names of an interface declared in lib/addon-types.ts (read with the TypeScript parser). */
function typedMembers(name: string): string[] {
  const path = join(packageRoot, 'lib', 'addon-types.ts');
  const src = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.ES2022, true);
  for (const st of src.statements) {
    if (ts.isInterfaceDeclaration(st) && st.name.text === name)
      return st.members.flatMap((m) => (m.name && ts.isIdentifier(m.name) ? [m.name.text] : [])).sort();
  }
  throw new Error(`lib/addon-types.ts declares no interface ${name}`);
}

test('every export of the addon is typed in lib/addon-types.ts, and nothing more', (t) => {
  t.deepEqual(Object.keys(native()).sort(), typedMembers('Addon'));
});

test('every method of VideoLMNative is typed, and nothing more', (t) => {
  const proto = native().VideoLMNative.prototype as object;
  const methods = Object.getOwnPropertyNames(proto).filter((k) => k !== 'constructor').sort();
  t.deepEqual(methods, typedMembers('VideoLMNative'));
});

test('the addon reports the seam version this TypeScript expects', (t) => {
  t.is(native().abiVersion, ADDON_ABI_VERSION);
});

test('no native function or method takes more than six positional arguments', (t) => {
  const rows = nativeArity() as { name: string; args: number; indirect: boolean }[];
  t.true(rows.length >= 50, `found ${rows.length} exports`);
  t.deepEqual(rows.filter((r) => r.args > 6 || r.indirect).map((r) => `${r.name} (${r.args})`), []);
  // The counter sees what it counts: matmul takes one object, packPlan four values.
  t.is(rows.find((r) => r.name === 'matmul')?.args, 1);
  t.is(rows.find((r) => r.name === 'packPlan')?.args, 4);
});

test('a binding of named arguments refuses anything but an object', (t) => {
  const call = native().matmul as unknown as (x: unknown) => void;
  t.throws(() => call(1), { instanceOf: TypeError, message: /matmul: expected an object of named arguments/ });
  t.throws(() => call([1, 2]), { instanceOf: TypeError, message: /matmul/ });
});

test('the core exports its limits, frozen', (t) => {
  const l = limits();
  t.true(Object.isFrozen(l) && Object.isFrozen(l.videoLM));
  for (const [k, v] of Object.entries({ maxDims: l.maxDims, maxHeadDim: l.maxHeadDim, ...l.videoLM }))
    t.true(Number.isFinite(v) && v > 0, `${k} = ${v}`);
  t.true(l.videoLM.minWidth <= l.videoLM.maxWidth && l.videoLM.minVocab <= l.videoLM.maxVocab);
});

test('the TypeScript validation checks against the exported limits', async (t) => {
  const { maxDims, maxHeadDim, videoLM } = limits();
  t.notThrows(() => vp.zeros(new Array(maxDims).fill(1)));
  t.throws(() => vp.zeros(new Array(maxDims + 1).fill(1)), { instanceOf: RangeError, message: new RegExp(`at most ${maxDims} dimensions`) });
  const q = (d: number) => vp.tensor(new Float32Array(d), [1, 1, d]);
  t.notThrows(() => vp.attention(q(maxHeadDim), q(maxHeadDim), q(maxHeadDim)));
  t.throws(() => vp.attention(q(maxHeadDim + 2), q(maxHeadDim + 2), q(maxHeadDim + 2)), { instanceOf: RangeError, message: new RegExp(`D <= ${maxHeadDim}`) });
  // A model whose head dim is just past the limit (one head of width maxHeadDim + 2).
  const tiny = { imageSize: 8, patchSize: 8, frames: 1, layers: 1, kvHeads: 1, vocab: 16, maxSeq: 8 };
  await t.throwsAsync(() => vp.VideoLM.create({ ...tiny, width: maxHeadDim + 2, heads: 1 }), { instanceOf: RangeError, message: new RegExp(`<= ${maxHeadDim}`) });
  await t.throwsAsync(() => vp.VideoLM.create({ ...tiny, width: 8, heads: 1, layers: videoLM.maxLayers + 1 }), { instanceOf: RangeError, message: /config\.layers/ });
  await t.throwsAsync(() => vp.VideoLM.create({ ...tiny, width: 8, heads: 1, vocab: videoLM.maxVocab + 1 }), { instanceOf: RangeError, message: /config\.vocab/ });
});
