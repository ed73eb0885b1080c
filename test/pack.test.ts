// vp.packTokens / vp.packTokensBackward: the plan against a plain TypeScript
// reference, the gather, the adjoint identity, the scatter-add of duplicated
// frames, bad input, and (where a GPU is present) CUDA against the CPU.
import test from 'ava';
import fc from 'fast-check';
import * as vp from '../lib/index.js';
import { randomFloats, relError, rng } from './helpers.js';

type Seg = vp.PackSegment;

interface Dims {
  V: number;
  F: number;
  P: number;
  T: number;
  D: number;
}

/** The plan by the definition of docs/kim.md, as plainly as possible. */
function referencePlan(dims: Dims, sequences: Seg[][]) {
  const source: number[] = [];
  const positions: number[] = [];
  const segment: number[] = [];
  const cu = [0];
  for (const seq of sequences) {
    let pos = 0;
    seq.forEach((seg, j) => {
      if ('video' in seg) {
        const frames = seg.frames ? Array.from(seg.frames) : Array.from({ length: dims.F }, (_, f) => f);
        for (const f of frames)
          for (let p = 0; p < dims.P; p++) {
            source.push((seg.video * dims.F + f) * dims.P + p);
            positions.push(pos++);
            segment.push(j);
          }
      } else {
        for (let r = 0; r < seg.text[1]; r++) {
          source.push(dims.V * dims.F * dims.P + seg.text[0] + r);
          positions.push(pos++);
          segment.push(j);
        }
      }
    });
    cu.push(source.length);
  }
  return { source, positions, segment, cu };
}

/** Random batch with KIM-style frame maps, text spans, empty segments and sequences. */
function randomBatch(seed: number, D: number): { dims: Dims; sequences: Seg[][] } {
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const dims: Dims = { V: int(1, 4), F: int(1, 6), P: int(1, 4), T: int(0, 12), D };
  const sequences: Seg[][] = [];
  for (let s = int(1, 5); s > 0; s--) {
    const seq: Seg[] = [];
    for (let k = int(0, 3); k > 0; k--) {
      if (dims.T === 0 || r() < 0.6) {
        const video = int(0, dims.V - 1);
        if (r() < 0.3) seq.push({ video });
        else seq.push({ video, frames: Int32Array.from({ length: int(0, dims.F + 2) }, () => int(0, dims.F - 1)) });
      } else {
        const start = int(0, dims.T);
        seq.push({ text: [start, int(0, dims.T - start)] });
      }
    }
    sequences.push(seq);
  }
  return { dims, sequences };
}

function makeInputs(dims: Dims, seed: number) {
  const video = vp.tensor(randomFloats(dims.V * dims.F * dims.P * dims.D, seed), [dims.V, dims.F, dims.P, dims.D]);
  const text = vp.tensor(randomFloats(dims.T * dims.D, seed + 1), [dims.T, dims.D]);
  return { video, text };
}

test('packTokens: positions, segments, cuSeqlens and source match a plain TypeScript reference', (t) => {
  for (let seed = 1; seed <= 200; seed++) {
    const { dims, sequences } = randomBatch(seed, 3);
    const { video, text } = makeInputs(dims, seed);
    const packed = vp.packTokens({ video, text, sequences });
    const ref = referencePlan(dims, sequences);
    t.deepEqual(Array.from(packed.source), ref.source, `seed ${seed}`);
    t.deepEqual(Array.from(packed.positions), ref.positions, `seed ${seed}`);
    t.deepEqual(Array.from(packed.segment), ref.segment, `seed ${seed}`);
    t.deepEqual(Array.from(packed.cuSeqlens), ref.cu, `seed ${seed}`);
    t.deepEqual(packed.tokens.shape, [ref.source.length, dims.D]);
  }
});

test('packTokens copies every row from its source row exactly', (t) => {
  for (const D of [1, 5, 16, 64, 259]) {
    for (let seed = 1; seed <= 10; seed++) {
      const { dims, sequences } = randomBatch(seed * 13 + D, D);
      const { video, text } = makeInputs(dims, seed);
      const packed = vp.packTokens({ video, text, sequences });
      const all = new Float32Array([...(video.data as Float32Array), ...(text.data as Float32Array)]);
      const out = packed.tokens.data as Float32Array;
      let ok = true;
      packed.source.forEach((s, i) => {
        for (let d = 0; d < D; d++) if (!Object.is(out[i * D + d], all[s * D + d])) ok = false;
      });
      t.true(ok, `D=${D} seed=${seed}`);
    }
  }
});

test('adjoint identity <pack(x), y> = <x, packBackward(y)> to 1e-5 on random inputs', (t) => {
  for (let seed = 1; seed <= 60; seed++) {
    const D = 1 + (seed % 9) * 11;
    const { dims, sequences } = randomBatch(seed * 7919, D);
    const { video, text } = makeInputs(dims, seed);
    const packed = vp.packTokens({ video, text, sequences });
    const y = vp.tensor(randomFloats(packed.tokens.size, seed + 2), [...packed.tokens.shape]);
    const { dVideo, dText } = vp.packTokensBackward(y, packed);
    t.deepEqual(dVideo.shape, video.shape);
    t.deepEqual(dText.shape, text.shape);
    let lhs = 0;
    let rhs = 0;
    let scale = 0;
    const px = packed.tokens.data;
    const yd = y.data;
    for (let i = 0; i < px.length; i++) {
      lhs += px[i] * yd[i];
      scale += Math.abs(px[i] * yd[i]);
    }
    for (let i = 0; i < dVideo.size; i++) rhs += video.data[i] * dVideo.data[i];
    for (let i = 0; i < dText.size; i++) rhs += text.data[i] * dText.data[i];
    t.true(Math.abs(lhs - rhs) <= 1e-5 * Math.max(1, scale), `seed ${seed}: ${lhs} vs ${rhs}`);
  }
});

test('packTokensBackward matches a float64 scatter-add; a duplicated frame gets the sum of its copies', (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    const { dims, sequences } = randomBatch(seed * 31, 24);
    const { video, text } = makeInputs(dims, seed);
    const packed = vp.packTokens({ video, text, sequences });
    const dy = randomFloats(packed.tokens.size, seed + 5);
    const { dVideo, dText } = vp.packTokensBackward(vp.tensor(dy, [...packed.tokens.shape]), packed);
    const ref = new Float64Array((dims.V * dims.F * dims.P + dims.T) * dims.D);
    packed.source.forEach((s, i) => {
      for (let d = 0; d < dims.D; d++) ref[s * dims.D + d] += dy[i * dims.D + d];
    });
    const got = [...(dVideo.data as Float32Array), ...(dText.data as Float32Array)];
    t.true(relError(got, ref) <= 1e-6, `seed ${seed}`);
  }
  // A KIM variant: frame 1 is key and carries frame 0's tokens, so frame 0 is used twice.
  const video = vp.tensor(randomFloats(3 * 2 * 4, 9), [1, 3, 2, 4]);
  const packed = vp.packTokens({ video, sequences: [[{ video: 0 }], [{ video: 0, frames: vp.planSubstitution(3, [1]) }]] });
  t.deepEqual(Array.from(packed.source), [0, 1, 2, 3, 4, 5, 0, 1, 0, 1, 4, 5]);
  const ones = vp.tensor(new Float32Array(packed.tokens.size).fill(1), [...packed.tokens.shape]);
  const { dVideo, dText } = vp.packTokensBackward(ones, packed);
  t.deepEqual(Array.from(dVideo.data), [...Array(8).fill(3), ...Array(8).fill(1), ...Array(8).fill(2)]);
  t.deepEqual(dText.shape, [0, 4]);
});

test('packTokens with only text, only video, no sequences, and empty sequences', (t) => {
  const text = vp.tensor(randomFloats(10, 1), [5, 2]);
  const a = vp.packTokens({ text, sequences: [[{ text: [3, 2] }], [], [{ text: [0, 0] }, { text: [0, 1] }]] });
  t.deepEqual(Array.from(a.cuSeqlens), [0, 2, 2, 3]);
  t.deepEqual(Array.from(a.segment), [0, 0, 1]);
  t.deepEqual(Array.from(a.source), [3, 4, 0]);
  t.deepEqual(a.videoShape, [0, 0, 0, 2]);
  const g = vp.packTokensBackward(vp.tensor(new Float32Array(6).fill(1), [3, 2]), a);
  t.deepEqual(Array.from(g.dText.data), [1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
  const none = vp.packTokens({ text, sequences: [] });
  t.deepEqual(Array.from(none.cuSeqlens), [0]);
  t.deepEqual(none.tokens.shape, [0, 2]);
  const video = vp.tensor(randomFloats(2 * 2 * 3, 2), [2, 2, 1, 3]);
  const b = vp.packTokens({ video, sequences: [[{ video: 1, frames: [1, 1, 0] }]] });
  t.deepEqual(Array.from(b.source), [3, 3, 2]);
});

test('packTokens rejects bad input with TypeError/RangeError naming the argument', (t) => {
  const video = vp.tensor(randomFloats(2 * 4 * 3 * 8, 1), [2, 4, 3, 8]);
  const text = vp.tensor(randomFloats(5 * 8, 2), [5, 8]);
  const pack = (sequences: unknown, v: unknown = video, x: unknown = text) =>
    vp.packTokens({ video: v, text: x, sequences } as vp.PackInput);
  t.throws(() => pack([[{ video: 2 }]]), { instanceOf: RangeError, message: /sequences\[0\]\[0\]\.video must be an integer in \[0, 2\)/ });
  t.throws(() => pack([[{ video: -1 }]]), { instanceOf: RangeError, message: /\.video/ });
  t.throws(() => pack([[{ video: 0.5 }]]), { instanceOf: RangeError, message: /\.video/ });
  t.throws(() => pack([[], [{ video: 0, frames: [0, 4] }]]), { instanceOf: RangeError, message: /sequences\[1\]\[0\]\.frames\[1\] must be a frame index in \[0, 4\), got 4/ });
  t.throws(() => pack([[{ video: 0, frames: Int32Array.from([-1]) }]]), { instanceOf: RangeError, message: /frames\[0\]/ });
  t.throws(() => pack([[{ text: [3, 3] }]]), { instanceOf: RangeError, message: /sequences\[0\]\[0\]\.text must be a span within the 5 text rows, got \[3, 3\] \(ends at 6\)/ });
  t.throws(() => pack([[{ text: [-1, 1] }]]), { instanceOf: RangeError, message: /text\[0\]/ });
  t.throws(() => pack([[{ text: [0, 1.5] }]]), { instanceOf: RangeError, message: /text\[1\]/ });
  t.throws(() => pack([[{ text: [0] }]]), { instanceOf: TypeError, message: /\.text must be a pair/ });
  t.throws(() => pack([[{ video: 0, text: [0, 1] }]]), { instanceOf: TypeError, message: /exactly one of video and text, got both/ });
  t.throws(() => pack([[{}]]), { instanceOf: TypeError, message: /got neither/ });
  t.throws(() => pack([[null]]), { instanceOf: TypeError, message: /sequences\[0\]\[0\] must be a segment/ });
  t.throws(() => pack([{ video: 0 }]), { instanceOf: TypeError, message: /sequences\[0\] must be an array of segments/ });
  t.throws(() => pack('all'), { instanceOf: TypeError, message: /sequences must be an array/ });
  t.throws(() => pack([[{ video: 0, frames: 'abc' }]]), { instanceOf: TypeError, message: /\.frames must be an Int32Array/ });
  // Widths, ranks, dtypes, devices.
  t.throws(() => pack([], video, vp.tensor(new Float32Array(5 * 7), [5, 7])), { instanceOf: RangeError, message: /text\.shape\[1\] must be the video's width Dm = 8, got 7/ });
  t.throws(() => pack([], vp.tensor(new Float32Array(24), [2, 3, 4])), { instanceOf: RangeError, message: /video\.shape must be 4-D/ });
  t.throws(() => pack([], video, vp.tensor(new Int32Array(40), [5, 8])), { instanceOf: TypeError, message: /text\.dtype/ });
  t.throws(() => pack([], video, new vp.Tensor([5, 8], 'float32', 'cuda')), { instanceOf: TypeError, message: /text must be on cpu like video/ });
  t.throws(() => vp.packTokens({ sequences: [] } as unknown as vp.PackInput), { instanceOf: TypeError, message: /at least one of video and text/ });
  t.throws(() => vp.packTokens({ text, sequences: [[{ video: 0 }]] }), { instanceOf: TypeError, message: /no input\.video/ });
  t.throws(() => vp.packTokens(null as unknown as vp.PackInput), { instanceOf: TypeError });
});

test('packTokensBackward rejects mismatched gradients and tampered plans', (t) => {
  const video = vp.tensor(randomFloats(2 * 4 * 3 * 8, 1), [2, 4, 3, 8]);
  const packed = vp.packTokens({ video, sequences: [[{ video: 1 }]] });
  t.throws(() => vp.packTokensBackward(vp.tensor(new Float32Array(12 * 7), [12, 7]), packed), { instanceOf: RangeError, message: /dTokens\.shape must be \[12, 8\]/ });
  t.throws(() => vp.packTokensBackward(vp.tensor(new Float32Array(11 * 8), [11, 8]), packed), { instanceOf: RangeError, message: /dTokens\.shape/ });
  const bad = { ...packed, source: packed.source.slice() };
  bad.source[3] = 24;
  t.throws(() => vp.packTokensBackward(vp.tensor(new Float32Array(96), [12, 8]), bad), { instanceOf: RangeError, message: /packed\.source\[3\] must be a row in \[0, 24\), got 24/ });
  t.throws(() => vp.packTokensBackward(vp.tensor(new Float32Array(96), [12, 8]), { ...packed, videoShape: [2, 4] }), { instanceOf: TypeError, message: /packed\.videoShape/ });
  t.throws(() => vp.packTokensBackward(vp.tensor(new Float32Array(96), [12, 8]), null as unknown as vp.Packed), { instanceOf: TypeError, message: /packed/ });
});

test('fuzz: packTokens with arbitrary segment descriptions succeeds like the reference or throws cleanly', (t) => {
  const video = vp.tensor(randomFloats(2 * 3 * 2 * 4, 1), [2, 3, 2, 4]);
  const text = vp.tensor(randomFloats(4 * 4, 2), [4, 4]);
  const dims: Dims = { V: 2, F: 3, P: 2, T: 4, D: 4 };
  const idx = fc.oneof(fc.integer({ min: -2, max: 5 }), fc.constantFrom(0.5, NaN, Infinity, 2 ** 40));
  const seg = fc.oneof(
    fc.record({ video: idx }),
    fc.record({ video: idx, frames: fc.array(idx, { maxLength: 5 }) }),
    fc.record({ text: fc.tuple(idx, idx) }),
    fc.constantFrom(null, {}, { video: 0, text: [0, 1] }, { text: [1] }, 7),
  );
  fc.assert(
    fc.property(fc.array(fc.array(seg, { maxLength: 3 }), { maxLength: 3 }), (sequences) => {
      let packed: vp.Packed;
      try {
        packed = vp.packTokens({ video, text, sequences: sequences as Seg[][] });
      } catch (e) {
        return e instanceof TypeError || e instanceof RangeError;
      }
      const ref = referencePlan(dims, sequences as Seg[][]);
      return JSON.stringify(Array.from(packed.source)) === JSON.stringify(ref.source) &&
        JSON.stringify(Array.from(packed.cuSeqlens)) === JSON.stringify(ref.cu);
    }),
    { numRuns: 1500 },
  );
  t.pass();
});

test('CUDA packTokens matches the CPU, and the adjoint identity holds there (skipped without a GPU)', (t) => {
  if (!vp.backendInfo().cuda) {
    t.log('no CUDA device: skipped');
    t.pass();
    return;
  }
  for (let seed = 1; seed <= 10; seed++) {
    const { dims, sequences } = randomBatch(seed * 101, 64);
    const { video, text } = makeInputs(dims, seed);
    const cpu = vp.packTokens({ video, text, sequences });
    const gpu = vp.packTokens({ video: video.to('cuda'), text: text.to('cuda'), sequences });
    t.deepEqual(Array.from(gpu.tokens.to('cpu').data), Array.from(cpu.tokens.data));
    const dy = vp.tensor(randomFloats(cpu.tokens.size, seed + 3), [...cpu.tokens.shape]);
    const c = vp.packTokensBackward(dy, cpu);
    const g = vp.packTokensBackward(dy.to('cuda'), gpu);
    t.true(relError(g.dVideo.to('cpu').data, c.dVideo.data) <= 1e-6);
    t.true(relError(g.dText.to('cpu').data, c.dText.data) <= 1e-6);
  }
});

test('packTokens / packTokensBackward write into caller-provided outputs and refuse aliasing', (t) => {
  const video = vp.tensor(randomFloats(2 * 3 * 2 * 4, 1), [2, 3, 2, 4]);
  const text = vp.tensor(randomFloats(3 * 4, 2), [3, 4]);
  const sequences: Seg[][] = [[{ video: 1 }, { text: [0, 3] }], [{ video: 1, frames: [0, 0, 2] }]];
  const fresh = vp.packTokens({ video, text, sequences });
  const out = vp.tensor(new Float32Array(fresh.tokens.size).fill(NaN), [...fresh.tokens.shape]);
  const reused = vp.packTokens({ video, text, sequences }, { out });
  t.is(reused.tokens, out);
  t.deepEqual(Array.from(out.data), Array.from(fresh.tokens.data));
  const dy = vp.tensor(randomFloats(fresh.tokens.size, 3), [...fresh.tokens.shape]);
  const a = vp.packTokensBackward(dy, fresh);
  const dVideo = vp.tensor(new Float32Array(video.size).fill(NaN), [...video.shape]);
  const dText = vp.tensor(new Float32Array(text.size).fill(NaN), [...text.shape]);
  const b = vp.packTokensBackward(dy, fresh, { dVideo, dText });
  t.is(b.dVideo, dVideo);
  t.deepEqual(Array.from(dVideo.data), Array.from(a.dVideo.data));
  t.deepEqual(Array.from(dText.data), Array.from(a.dText.data));
  t.throws(() => vp.packTokens({ video, text, sequences }, { out: vp.tensor(new Float32Array(8), [2, 4]) }), { instanceOf: RangeError, message: /opts\.out\.shape must be \[15, 4\]/ });
  const big = new Float32Array(200);
  const aliased = vp.tensor(big.subarray(0, 60), [15, 4]);
  const src = vp.tensor(big.subarray(40, 40 + 48), [2, 3, 2, 4]);
  t.throws(() => vp.packTokens({ video: src, text, sequences }, { out: aliased }), { instanceOf: RangeError, message: /opts\.out must be memory separate from video/ });
  t.throws(() => vp.packTokensBackward(dy, fresh, { dText: vp.tensor(new Float32Array(12), [3, 4]), dVideo: text }), { instanceOf: RangeError, message: /opts\.dVideo\.shape/ });
});
