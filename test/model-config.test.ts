// VideoLM configuration, parameter layout, seeded init and model.safetensors.
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { CheckpointError, readSafetensors } from '../lib/model/safetensors.js';

test('presets come from the core and validate', (t) => {
  const tiny = vp.preset('tiny');
  t.like(tiny, { dim: 128, layers: 4, heads: 4, kvHeads: 2, mlpHidden: 352, imageSize: 32, patchSize: 8, tieEmbeddings: true });
  const small = vp.preset('small');
  t.like(small, { dim: 512, layers: 8, heads: 8, kvHeads: 4, mlpHidden: 1408, vocab: 8192 });
  t.deepEqual(vp.resolveConfig(), tiny);
  t.deepEqual(vp.resolveConfig({ preset: 'small', layers: 2 }), { ...small, layers: 2 });
  t.throws(() => vp.preset('huge' as vp.PresetName), { instanceOf: RangeError, message: /preset: name must be 'tiny' \| 'small'/ });
  t.throws(() => vp.resolveConfig({ heads: 3 }), { instanceOf: RangeError, message: /config.dim must be a multiple of heads \(3\), got 128/ });
  t.throws(() => vp.resolveConfig({ kvHeads: 3 }), { instanceOf: RangeError, message: /config.heads must be a multiple of kvHeads \(3\)/ });
  t.throws(() => vp.resolveConfig({ imageSize: 30 }), { instanceOf: RangeError, message: /config.imageSize must be a multiple of patchSize \(8\)/ });
  t.throws(() => vp.resolveConfig({ dim: 1.5 }), { instanceOf: RangeError, message: /config.dim must be an integer in \[1, 2\^24\]/ });
  t.throws(() => vp.resolveConfig({ dim: '8' as unknown as number }), { instanceOf: TypeError, message: /config.dim must be a number/ });
  t.throws(() => vp.resolveConfig({ normEps: 0 }), { instanceOf: RangeError, message: /config.normEps must be > 0/ });
  t.throws(() => vp.resolveConfig({ tieEmbeddings: 1 as unknown as boolean }), { instanceOf: TypeError, message: /tieEmbeddings must be a boolean/ });
  t.throws(() => vp.resolveConfig({ dims: 3 } as unknown as vp.VideoLMConfig), { instanceOf: RangeError, message: /config.dims must be a known field/ });
});

test('parameter layout: names, shapes, aligned offsets', (t) => {
  const c = vp.resolveConfig({ layers: 2 });
  const l = vp.paramLayout(c);
  const names = l.params.map((p) => p.name);
  t.is(new Set(names).size, names.length);
  t.true(names.includes('layers.1.mlp.w_down'));
  t.false(names.includes('lm_head.weight'));
  let end = 0;
  for (const p of l.params) {
    t.is(p.offset % 16, 0);
    t.true(p.offset >= end);
    t.is(p.numel, p.shape.reduce((a, b) => a * b, 1));
    end = p.offset + p.numel;
  }
  t.true(end <= l.total);
  t.deepEqual(l.params.find((p) => p.name === 'layers.0.attn.wk')!.shape, [2 * 32, 128]);
  t.true(vp.paramLayout({ ...c, tieEmbeddings: false }).params.some((p) => p.name === 'lm_head.weight'));
});

test('initParams is deterministic for a seed and thread count independent', (t) => {
  const c = vp.resolveConfig({ layers: 1, vocab: 300 });
  const a = vp.initParams(c, 7);
  const threads = vp.backendInfo().cpu.threads;
  vp.setNumThreads(1);
  const b = vp.initParams(c, 7n);
  vp.setNumThreads(threads);
  t.deepEqual(a, b);
  t.notDeepEqual(a.subarray(0, 16), vp.initParams(c, 8).subarray(0, 16));
  const l = vp.paramLayout(c);
  const gain = l.params.find((p) => p.name === 'final_norm.gain')!;
  t.true(a.subarray(gain.offset, gain.offset + gain.numel).every((x) => x === 1));
  t.throws(() => vp.initParams(c, -1), { instanceOf: TypeError, message: /initParams: seed must be a non-negative safe integer or a bigint/ });
});

test('saveParams → loadParams round-trips exactly; mismatches and corruption are rejected', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-model-'));
  const p = join(dir, 'model.safetensors');
  const c = vp.resolveConfig({ layers: 2, vocab: 500 });
  const params = vp.initParams(c, 3);
  vp.saveParams(p, c, params);
  const back = vp.loadParams(p, c);
  t.deepEqual(back, params);
  const meta = readSafetensors(p).metadata;
  t.is(meta.format, 'videoperceiver');
  t.deepEqual(JSON.parse(meta.config), c);
  // a different config: names or shapes differ
  t.throws(() => vp.loadParams(p, { ...c, layers: 3 }), { instanceOf: CheckpointError, message: /tensor 'layers.2.attn_norm.gain' is missing/ });
  t.throws(() => vp.loadParams(p, { ...c, vocab: 501 }), { instanceOf: CheckpointError, message: /tensor 'text.embed.weight': shape \[500, 128\], expected \[501, 128\]/ });
  t.throws(() => vp.loadParams(p, { ...c, tieEmbeddings: false }), { instanceOf: CheckpointError, message: /tensor 'lm_head.weight' is missing/ });
  // a NaN written into the data
  const bytes = readFileSync(p);
  const n = Number(bytes.readBigUInt64LE(0));
  bytes.writeFloatLE(NaN, 8 + n + 4 * 10);
  writeFileSync(p, bytes);
  t.throws(() => vp.loadParams(p, c), { instanceOf: CheckpointError, message: /non-finite value/ });
  writeFileSync(p, bytes.subarray(0, bytes.length - 100));
  t.throws(() => vp.loadParams(p, c), { instanceOf: CheckpointError, message: /truncated/ });
  t.throws(() => vp.saveParams(p, c, new Float32Array(5)), { instanceOf: RangeError, message: /saveParams: params.length must be \d+ for this config, got 5/ });
});
