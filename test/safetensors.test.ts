// Checkpoints in the safetensors format: round trip, an independent Python
// reader (json + numpy only), atomic writes, and clear errors on corrupt files.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tensor } from '../lib/index.js';
import { CheckpointError, readSafetensors, writeSafetensors, type StTensor } from '../lib/model/safetensors.js';
import { randomFloats } from './helpers.js';

const PY = '/usr/bin/python3';
const READER = join(import.meta.dirname, '..', 'bench', 'peers', 'read_safetensors.py');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'vp-st-'));
}

function sample(): Record<string, StTensor> {
  const bf = new Uint16Array([0x3f80, 0xc000, 0x4049, 0x0000, 0x7f7f, 0x3e00]); // 1, -2, 3.140625, 0, 3.39e38, 0.125
  const f16 = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x7bff]); // 1, -2, ~0.333, 65504
  return {
    'embed.weight': { dtype: 'F32', shape: [7, 5], data: randomFloats(35, 1, -3, 3) },
    'blocks.0.norm.gain': { dtype: 'F32', shape: [5], data: randomFloats(5, 2) },
    'step': { dtype: 'I32', shape: [1], data: new Int32Array([123]) },
    'ids': { dtype: 'I32', shape: [2, 3], data: new Int32Array([-1, 0, 2147483647, -2147483648, 5, 6]) },
    'bf': { dtype: 'BF16', shape: [2, 3], data: bf },
    'half': { dtype: 'F16', shape: [4], data: f16 },
    'bytes': { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) },
    'empty': { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  };
}

test('round trip: names, dtypes, shapes, values and metadata', (t) => {
  const dir = tmp();
  const p = join(dir, 'model.safetensors');
  const tensors = sample();
  writeSafetensors(p, { ...tensors, fromTensor: tensor(new Float32Array([1.5, -2.5]), [2]) }, { format: 'pt', step: '12' });
  const buf = readFileSync(p);
  const n = Number(buf.readBigUInt64LE(0));
  t.is((8 + n) % 8, 0, 'header padded to 8-byte alignment');
  t.true(buf[8 + n - 1] === 0x20 || buf[8 + n - 1] === 0x7d, 'header ends in } or padding spaces');
  const back = readSafetensors(p);
  t.deepEqual(back.metadata, { format: 'pt', step: '12' });
  for (const [name, want] of Object.entries(tensors)) {
    const got = back.tensors[name];
    t.is(got.dtype, want.dtype, name);
    t.deepEqual(got.shape, want.shape, name);
    t.deepEqual(Array.from(got.data as ArrayLike<number>), Array.from(want.data as ArrayLike<number>), name);
  }
  t.deepEqual(Array.from(back.tensors.fromTensor.data as Float32Array), [1.5, -2.5]);
  t.deepEqual(readdirSync(dir), ['model.safetensors'], 'no temporary file left behind');
  // overwriting is atomic too and replaces the content
  writeSafetensors(p, { x: { dtype: 'F32', shape: [1], data: new Float32Array([9]) } });
  t.deepEqual(Object.keys(readSafetensors(p).tensors), ['x']);
  t.deepEqual(readdirSync(dir), ['model.safetensors']);
});

test('an independent Python reader (json + numpy) sees the same names, shapes and values', (t) => {
  const probe = spawnSync(PY, ['-c', 'import numpy'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    t.log(`skipped: ${PY} with numpy is not available (${probe.error?.message ?? probe.stderr.trim()})`);
    t.pass();
    return;
  }
  const p = join(tmp(), 'model.safetensors');
  const tensors = sample();
  writeSafetensors(p, tensors, { format: 'pt' });
  const r = spawnSync(PY, [READER, p], { encoding: 'utf8', maxBuffer: 1 << 26 });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { metadata: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; values: (number | null)[] }> };
  t.deepEqual(out.metadata, { format: 'pt' });
  t.deepEqual(Object.keys(out.tensors).sort(), Object.keys(tensors).sort());
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (const [name, want] of Object.entries(tensors)) {
    const got = out.tensors[name];
    t.is(got.dtype, want.dtype, name);
    t.deepEqual(got.shape, want.shape, name);
    let expected: number[];
    if (want.dtype === 'BF16') expected = Array.from(want.data as Uint16Array, (b) => { u32[0] = b << 16; return f32[0]; });
    else if (want.dtype === 'F16') expected = Array.from(want.data as Uint16Array, halfToFloat);
    else expected = Array.from(want.data as ArrayLike<number>);
    t.deepEqual(got.values, expected, name);
  }
});

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// Writes a file from a header object and a data blob, for the corruption tests.
function rawFile(dir: string, header: unknown, data: Uint8Array, headerText?: string): string {
  const p = join(dir, `bad-${Math.random().toString(36).slice(2)}.safetensors`);
  const h = Buffer.from(headerText ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(p, Buffer.concat([len, h, data]));
  return p;
}

test('corrupt, truncated and mismatched files are rejected with errors naming the file and tensor', (t) => {
  const dir = tmp();
  const good = join(dir, 'good.safetensors');
  writeSafetensors(good, { a: { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }, b: { dtype: 'I32', shape: [3], data: new Int32Array(3) } });
  const bytes = readFileSync(good);
  const throwsCk = (p: string, re: RegExp, opts?: Parameters<typeof readSafetensors>[1]) => {
    const e = t.throws(() => readSafetensors(p, opts), { instanceOf: CheckpointError });
    t.regex(e!.message, re);
    t.true(e!.message.includes(p), 'message names the file');
  };
  // truncated file: the data of the last tensor is cut short
  const trunc = join(dir, 'trunc.safetensors');
  writeFileSync(trunc, bytes.subarray(0, bytes.length - 4));
  throwsCk(trunc, /tensor 'b'.*past the end of the data.*truncated/);
  // too short for a header length
  const tiny = join(dir, 'tiny.safetensors');
  writeFileSync(tiny, Buffer.from([1, 2, 3]));
  throwsCk(tiny, /too short/);
  // header length larger than the file, and absurdly large
  const hl = Buffer.from(bytes);
  hl.writeBigUInt64LE(BigInt(bytes.length));
  const hlp = join(dir, 'hl.safetensors');
  writeFileSync(hlp, hl);
  throwsCk(hlp, /header length \d+ runs past the end/);
  hl.writeBigUInt64LE(2n ** 40n);
  writeFileSync(hlp, hl);
  throwsCk(hlp, /header length 1099511627776 is too large/);
  // bad JSON
  throwsCk(rawFile(dir, null, new Uint8Array(0), '{"a": {'), /not valid JSON/);
  throwsCk(rawFile(dir, null, new Uint8Array(0), '[1, 2]'), /must be a JSON object/);
  // bad entries
  const d16 = new Uint8Array(16);
  throwsCk(rawFile(dir, { a: { dtype: 'Q8', shape: [4], data_offsets: [0, 16] } }, d16), /tensor 'a': unsupported dtype "Q8"/);
  throwsCk(rawFile(dir, { a: { dtype: 'F32', shape: [-4], data_offsets: [0, 16] } }, d16), /tensor 'a': shape must be/);
  throwsCk(rawFile(dir, { a: { dtype: 'F32', shape: [4], data_offsets: [8, 4] } }, d16), /tensor 'a': data_offsets must be/);
  throwsCk(rawFile(dir, { a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, d16), /tensor 'a'.*hold 16 bytes but F32 shape \[3\] needs 12/);
  throwsCk(rawFile(dir, { a: { dtype: 'F32', shape: [4], data_offsets: [16, 32] } }, d16), /tensor 'a'.*extend past the end/);
  throwsCk(rawFile(dir, { a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12)), /tensor 'b'.*overlap tensor 'a'|tensor 'a'.*overlap tensor 'b'/);
  throwsCk(rawFile(dir, { a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, d16), /tensor 'a': data starts at 8, leaving a gap/);
  throwsCk(rawFile(dir, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, d16), /8 trailing bytes/);
  throwsCk(rawFile(dir, { __metadata__: { k: 1 } }, new Uint8Array(0)), /__metadata__\['k'\] must be a string/);
  // mismatches against what the model expects
  throwsCk(good, /tensor 'c' is missing/, { expect: { a: {}, b: {}, c: {} } });
  throwsCk(good, /tensor 'b' is not expected/, { expect: { a: {} } });
  throwsCk(good, /tensor 'a': shape \[2, 2\], expected \[4\]/, { expect: { a: { shape: [4] }, b: {} } });
  throwsCk(good, /tensor 'b': dtype I32, expected F32/, { expect: { a: {}, b: { dtype: 'F32' } } });
  t.notThrows(() => readSafetensors(good, { expect: { a: { dtype: 'F32', shape: [2, 2] }, b: { shape: [3] } } }));
});

test('writer validates its input and leaves nothing behind on failure', (t) => {
  const dir = tmp();
  const p = join(dir, 'm.safetensors');
  t.throws(() => writeSafetensors(p, { a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), { instanceOf: RangeError, message: /tensor 'a' data must hold 3 F32 values/ });
  t.throws(() => writeSafetensors(p, { __metadata__: { dtype: 'F32', shape: [0], data: new Float32Array(0) } }), { instanceOf: RangeError });
  t.throws(() => writeSafetensors(p, { a: { dtype: 'F32', shape: [0], data: new Float32Array(0) } }, { k: 5 as unknown as string }), { instanceOf: TypeError });
  t.throws(() => writeSafetensors(join(dir, 'no-such-dir', 'm.safetensors'), {}), { code: 'ENOENT' });
  t.false(existsSync(p));
  t.deepEqual(readdirSync(dir), []);
});
