// KIM construction: substitution plans, the key-frame locators (time spans,
// similarity, transient frames on generated clips), and the packed SFT batch.
import test from 'ava';
import fc from 'fast-check';
import * as kim from '../lib/kim/index.js';
import * as vp from '../lib/index.js';
import { randomFloats } from './helpers.js';

// ---- planSubstitution --------------------------------------------------------

test('planSubstitution: non-key frames keep their tokens, no key frame survives, nearest with ties to the earlier', (t) => {
  t.deepEqual(Array.from(vp.planSubstitution(6, [])), [0, 1, 2, 3, 4, 5]);
  t.deepEqual(Array.from(vp.planSubstitution(6, [2])), [0, 1, 1, 3, 4, 5]); // tie 1 vs 3 → 1
  t.deepEqual(Array.from(vp.planSubstitution(6, [0])), [1, 1, 2, 3, 4, 5]);
  t.deepEqual(Array.from(vp.planSubstitution(6, [5])), [0, 1, 2, 3, 4, 4]);
  // A run of key frames: each takes the nearer side; the middle of an odd run ties → earlier.
  t.deepEqual(Array.from(vp.planSubstitution(8, [2, 3, 4])), [0, 1, 1, 1, 5, 5, 6, 7]);
  t.deepEqual(Array.from(vp.planSubstitution(8, [2, 3, 4, 5])), [0, 1, 1, 1, 6, 6, 6, 7]);
  t.deepEqual(Array.from(vp.planSubstitution(5, [0, 1, 2])), [3, 3, 3, 3, 4]);
  t.deepEqual(Array.from(vp.planSubstitution(4, [3, 3, 1])), [0, 0, 2, 2]); // duplicates are fine
});

test('planSubstitution: previous / next prefer one side and fall back to the other', (t) => {
  t.deepEqual(Array.from(vp.planSubstitution(6, [2, 3], 'previous')), [0, 1, 1, 1, 4, 5]);
  t.deepEqual(Array.from(vp.planSubstitution(6, [2, 3], 'next')), [0, 1, 4, 4, 4, 5]);
  t.deepEqual(Array.from(vp.planSubstitution(5, [0, 1], 'previous')), [2, 2, 2, 3, 4]); // fallback to next
  t.deepEqual(Array.from(vp.planSubstitution(5, [3, 4], 'next')), [0, 1, 2, 2, 2]); // fallback to previous
});

test('planSubstitution: every frame a key frame is a clear error; bad arguments are rejected', (t) => {
  t.throws(() => vp.planSubstitution(3, [0, 1, 2]), { instanceOf: RangeError, message: /planSubstitution: keyFrames must be .*at least one of the 3 frames.*non-key.*got every frame a key frame/ });
  t.throws(() => vp.planSubstitution(1, [0], 'next'), { instanceOf: RangeError, message: /every frame a key frame/ });
  t.throws(() => vp.planSubstitution(4, [4]), { instanceOf: RangeError, message: /keyFrames\[0\] must be a frame index in \[0, 4\), got 4/ });
  t.throws(() => vp.planSubstitution(4, [1.5]), { instanceOf: RangeError, message: /keyFrames\[0\]/ });
  t.throws(() => vp.planSubstitution(-1, []), { instanceOf: RangeError, message: /numFrames/ });
  t.throws(() => vp.planSubstitution(4, [1], 'middle' as vp.SubstitutionPolicy), { instanceOf: TypeError, message: /policy/ });
  t.throws(() => vp.planSubstitution(4, null as unknown as number[]), { instanceOf: TypeError, message: /keyFrames/ });
  t.deepEqual(Array.from(vp.planSubstitution(0, [])), []);
});

test('planSubstitution properties hold for random key-frame sets and every policy', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 24 }), fc.array(fc.nat(), { maxLength: 30 }), fc.constantFrom('nearest', 'previous', 'next'), (n, raw, policy) => {
      const key = [...new Set(raw.map((x) => x % n))];
      if (key.length === n) {
        try {
          vp.planSubstitution(n, key, policy as vp.SubstitutionPolicy);
          return false;
        } catch (e) {
          return e instanceof RangeError;
        }
      }
      const plan = vp.planSubstitution(n, key, policy as vp.SubstitutionPolicy);
      const isKey = (f: number) => key.includes(f);
      for (let f = 0; f < n; f++) {
        const s = plan[f];
        if (isKey(s)) return false; // no key frame survives
        if (!isKey(f) && s !== f) return false; // non-key frames are untouched
        if (!isKey(f)) continue;
        const before = [...Array(f).keys()].filter((g) => !isKey(g));
        const after = [...Array(n).keys()].filter((g) => g > f && !isKey(g));
        const prev = before.length ? before[before.length - 1] : -1;
        const next = after.length ? after[0] : -1;
        let want: number;
        if (policy === 'previous') want = prev >= 0 ? prev : next;
        else if (policy === 'next') want = next >= 0 ? next : prev;
        else want = prev < 0 ? next : next < 0 ? prev : f - prev <= next - f ? prev : next;
        if (s !== want) return false;
      }
      return true;
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

// ---- locateKeyFrames ---------------------------------------------------------

test('locateKeyFrames: frames inside each span, else the frame nearest its middle; the union, ascending', (t) => {
  const times = [0, 0.5, 1, 1.5, 2, 2.5, 3];
  t.deepEqual(vp.locateKeyFrames(times, [{ start: 0.9, end: 1.6 }]), [2, 3]);
  t.deepEqual(vp.locateKeyFrames(times, [{ start: 1, end: 1 }]), [2]); // inclusive
  t.deepEqual(vp.locateKeyFrames(times, [{ start: 1.6, end: 1.9 }]), [3]); // none inside: middle 1.75, 1.5 and 2 tie → the earlier
  t.deepEqual(vp.locateKeyFrames(times, [{ start: 1.1, end: 1.3 }]), [2]); // middle 1.2 → 1
  t.deepEqual(vp.locateKeyFrames(times, [{ start: 2.4, end: 2.6 }, { start: 0, end: 0.5 }]), [0, 1, 5]);
  t.deepEqual(vp.locateKeyFrames(times, [{ start: 10, end: 11 }]), [6]);
  t.deepEqual(vp.locateKeyFrames(times, []), []);
  t.deepEqual(vp.locateKeyFrames([], [{ start: 0, end: 1 }]), []);
  t.throws(() => vp.locateKeyFrames(times, [{ start: 2, end: 1 }]), { instanceOf: RangeError, message: /events\[0\]\.end must be >= start/ });
  t.throws(() => vp.locateKeyFrames(times, [{ start: NaN, end: 1 }]), { instanceOf: RangeError, message: /events\[0\]\.start/ });
  t.throws(() => vp.locateKeyFrames([0, Infinity], []), { instanceOf: RangeError, message: /frameTimes\[1\]/ });
  t.throws(() => vp.locateKeyFrames('0,1' as unknown as number[], []), { instanceOf: TypeError, message: /frameTimes/ });
});

// ---- similarity locator ------------------------------------------------------

test('locateKeyFramesBySimilarity returns the top-k frames by cosine similarity, ties to the earlier frame', (t) => {
  const F = 10;
  const D = 16;
  const feats = randomFloats(F * D, 3);
  const kw = randomFloats(D, 4);
  // Plant frames 6 and 2 along the keyword (6 the closer one).
  for (let i = 0; i < D; i++) {
    feats[6 * D + i] = 3 * kw[i] + 0.01 * feats[6 * D + i];
    feats[2 * D + i] = 2 * kw[i] + 0.3 * feats[2 * D + i];
  }
  t.deepEqual(vp.locateKeyFramesBySimilarity(feats, kw), [6]);
  t.deepEqual(vp.locateKeyFramesBySimilarity(vp.tensor(feats, [F, D]), kw, { k: 2 }), [2, 6]);
  t.deepEqual(vp.locateKeyFramesBySimilarity(feats, kw, { k: 50 }).length, F);
  const same = new Float32Array(3 * 2).fill(1);
  t.deepEqual(vp.locateKeyFramesBySimilarity(same, [1, 1], { k: 2 }), [0, 1]);
  t.throws(() => vp.locateKeyFramesBySimilarity(vp.tensor(feats, [F, D]), randomFloats(8, 1)), { instanceOf: RangeError, message: /frameFeatures\.shape\[1\]/ });
  t.throws(() => vp.locateKeyFramesBySimilarity(feats, kw, { k: -1 }), { instanceOf: RangeError, message: /opts\.k/ });
});

// ---- detectTransientFrames -----------------------------------------------------

/** Clip i of a seeded stream of synthetic clips (the same generator as `videoperceiver synth`). */
function clipAt(seed: number, opts: vp.SynthOptions): vp.SynthClip {
  return vp.synthClip(vp.makeRng(seed), opts);
}

test('detectTransientFrames finds a one-frame flash, jump or vanish in >= 95% of 200 clips, with <= 5% false alarms', (t) => {
  const kinds = ['flash', 'jump', 'vanish'] as const;
  let found = 0;
  let falseAlarms = 0;
  const perKind: Record<string, number> = { flash: 0, jump: 0, vanish: 0 };
  for (let i = 0; i < 200; i++) {
    const clip = clipAt(1 + i, { event: kinds[i % 3], eventDuration: 1, frames: 16 });
    t.is(clip.event!.frames.length, 1);
    const got = vp.detectTransientFrames({ data: clip.frames, shape: clip.shape });
    if (got.includes(clip.event!.frames[0])) {
      found++;
      perKind[clip.event!.kind]++;
    }
  }
  for (let i = 0; i < 200; i++) {
    const clip = clipAt(100001 + i, { event: null, frames: 16 });
    if (vp.detectTransientFrames({ data: clip.frames, shape: clip.shape }).length > 0) falseAlarms++;
  }
  t.log(`found ${found}/200 (${JSON.stringify(perKind)}), false alarms ${falseAlarms}/200`);
  t.true(found >= 190, `found ${found}/200`);
  t.true(falseAlarms <= 10, `false alarms ${falseAlarms}/200`);
});

test('detectTransientFrames: uint8 data, float32 tensors of the same values and [0, 1] floats agree', (t) => {
  let exact = 0;
  for (let seed = 1; seed <= 12; seed++) {
    const clip = clipAt(seed, { event: seed % 2 ? 'flash' : 'vanish', eventDuration: 1 });
    const u8 = clip.frames;
    const asFloat255 = vp.tensor(Float32Array.from(u8), [...clip.shape]);
    const asUnit = Float32Array.from(u8, (x) => x / 255);
    const a = vp.detectTransientFrames({ data: u8, shape: clip.shape });
    t.deepEqual(vp.detectTransientFrames(asFloat255), a);
    t.deepEqual(vp.detectTransientFrames({ data: asUnit, shape: clip.shape }), a);
    t.deepEqual(vp.detectTransientFrames(vp.tensor(Int32Array.from(u8), [...clip.shape])), a);
    if (JSON.stringify(a) === JSON.stringify(clip.event!.frames)) exact++;
  }
  t.true(exact >= 10, `the event frame itself was found in ${exact}/12`);
});

test('detectTransientFrames: still and noise-only clips give []; two-frame events give both frames', (t) => {
  const still = clipAt(7, { event: null, speed: [0, 0], noise: 0 });
  t.deepEqual(vp.detectTransientFrames({ data: still.frames, shape: still.shape }), []);
  const noisy = clipAt(8, { event: null, speed: [0, 0], noise: 0.05 });
  t.deepEqual(vp.detectTransientFrames({ data: noisy.frames, shape: noisy.shape }), []);
  let both = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const clip = clipAt(seed, { event: 'jump', eventDuration: 2 });
    const got = vp.detectTransientFrames({ data: clip.frames, shape: clip.shape });
    if (JSON.stringify(got) === JSON.stringify(clip.event!.frames)) both++;
  }
  t.true(both >= 36, `two-frame jumps found exactly in ${both}/40`);
  // maxDuration 1 never reports two-frame runs.
  const clip = clipAt(3, { event: 'vanish', eventDuration: 2 });
  t.true(vp.detectTransientFrames({ data: clip.frames, shape: clip.shape }, { maxDuration: 1 }).length <= 1);
});

test('detectTransientFrames rejects bad frames and options; short clips give []', (t) => {
  t.deepEqual(vp.detectTransientFrames({ data: new Float32Array(2 * 4 * 4 * 3), shape: [2, 4, 4, 3] }), []);
  t.throws(() => vp.detectTransientFrames({ data: new Float32Array(10), shape: [2, 4, 4, 3] }), { instanceOf: RangeError, message: /frames\.data must be 96 values/ });
  t.throws(() => vp.detectTransientFrames(vp.tensor(new Float32Array(12), [3, 4])), { instanceOf: RangeError, message: /frames\.shape must be \[F, H, W, C\]/ });
  t.throws(() => vp.detectTransientFrames([1, 2, 3] as unknown as vp.Tensor), { instanceOf: TypeError, message: /frames must be a Tensor/ });
  t.throws(() => vp.detectTransientFrames({ data: [1, 2] as unknown as Float32Array, shape: [1, 1, 1, 2] }), { instanceOf: TypeError, message: /frames\.data/ });
  t.throws(() => vp.detectTransientFrames(new vp.Tensor([3, 2, 2, 1], 'float32', 'cuda')), { instanceOf: TypeError, message: /CPU tensor/ });
  const clip = clipAt(1, {});
  t.throws(() => vp.detectTransientFrames({ data: clip.frames, shape: clip.shape }, { z: -1 }), { instanceOf: RangeError, message: /opts\.z/ });
  t.throws(() => vp.detectTransientFrames({ data: clip.frames, shape: clip.shape }, { maxDuration: 1.5 }), { instanceOf: RangeError, message: /opts\.maxDuration/ });
});

test('detectTransientFrames on the synth mix of all six kinds (reported, with a floor)', (t) => {
  const rng = vp.makeRng(2024);
  const perKind: Record<string, [number, number]> = {};
  for (let i = 0; i < 300; i++) {
    const clip = vp.synthClip(rng, { eventRate: 1 });
    const got = vp.detectTransientFrames({ data: clip.frames, shape: clip.shape });
    const k = clip.event!.kind;
    perKind[k] ??= [0, 0];
    perKind[k][1]++;
    if (clip.event!.frames.some((f) => got.includes(f))) perKind[k][0]++;
  }
  t.log(JSON.stringify(perKind));
  const total = Object.values(perKind).reduce((a, [f, n]) => [a[0] + f, a[1] + n], [0, 0]);
  t.true(total[0] / total[1] >= 0.8, `found ${total[0]}/${total[1]}`);
});

// ---- buildSftBatch ----------------------------------------------------------

/** Token embeddings that say where they came from: video v, frame f, token p → v·1000 + f·10 + p (every lane). */
function labelledVideo(V: number, F: number, P: number, D: number): vp.Tensor {
  const data = new Float32Array(V * F * P * D);
  for (let v = 0; v < V; v++)
    for (let f = 0; f < F; f++)
      for (let p = 0; p < P; p++) data.fill(v * 1000 + f * 10 + p, ((v * F + f) * P + p) * D, ((v * F + f) * P + p + 1) * D);
  return vp.tensor(data, [V, F, P, D]);
}

test('buildSftBatch: sequences A = video + caption and B = KIM video; the index lists point at the right packed rows', (t) => {
  const F = 6;
  const P = 2;
  const D = 4;
  const samples: vp.SftSample[] = [
    { caption: 'the red square drifts left; the blue circle briefly jumps', numFrames: F, fps: 2, events: [{ keyword: 'jump', start: 1.0, end: 1.5 }] },
    { caption: 'A green circle flashes once.', numFrames: F, keyFrames: [0] },
    { caption: 'the ball is red', numFrames: F },
  ];
  const tokenizer = kim.wordTokenizer(1000);
  const plan = vp.buildSftBatch(samples, { tokensPerFrame: P, tokenizer });
  const nText = plan.textIds.length;
  const text = vp.tensor(Float32Array.from({ length: nText * D }, (_, i) => 100000 + Math.floor(i / D)), [nText, D]);
  const batch = vp.buildSftBatch(samples, { tokenizer, videoTokens: labelledVideo(3, F, P, D), textTokens: text });
  const packed = batch.packed!;
  t.deepEqual(Array.from(packed.cuSeqlens), Array.from(batch.cuSeqlens));
  t.is(packed.tokens.shape[0], batch.totalRows);
  t.is(batch.sequences.length, 6);
  const row = (r: number) => (packed.tokens.data as Float32Array)[r * D];

  // Sample 0: fps 2 → frames at 0, .5, 1, 1.5, 2, 2.5; the span [1, 1.5] holds frames 2 and 3.
  const s0 = batch.samples[0];
  t.deepEqual(s0.keywords, ['jump']);
  t.is(s0.keywordSource, 'annotation');
  t.deepEqual(s0.keyFrames, [2, 3]);
  t.is(s0.keyFrameSource, 'events');
  t.deepEqual(Array.from(s0.substitution), [0, 1, 1, 4, 4, 5]);
  const a0 = Array.from(batch.keyRowsA.subarray(batch.keyRowOffsets[0], batch.keyRowOffsets[1]));
  const b0 = Array.from(batch.keyRowsB.subarray(batch.keyRowOffsets[0], batch.keyRowOffsets[1]));
  t.deepEqual(a0.map(row), [20, 21, 30, 31]); // frames 2 and 3 of video 0 in A
  t.deepEqual(b0.map(row), [10, 11, 40, 41]); // the same positions in B carry frames 1 and 4
  t.deepEqual(b0.map((r) => packed.positions[r]), a0.map((r) => packed.positions[r]));
  const kw0 = Array.from(batch.keywordRows.subarray(batch.keywordRowOffsets[0], batch.keywordRowOffsets[1]));
  const caption0 = samples[0].caption;
  const enc0 = tokenizer.encode(caption0);
  t.deepEqual(kw0.map((r) => caption0.slice(...enc0.offsets![row(r) - 100000 - s0.textStart])), ['jumps']);
  // Caption rows follow the video in A.
  const cap0 = Array.from(batch.captionRows.subarray(batch.captionRowOffsets[0], batch.captionRowOffsets[1]));
  t.deepEqual(cap0.map(row), Array.from({ length: s0.textLength }, (_, i) => 100000 + s0.textStart + i));
  t.deepEqual(cap0.map((r) => packed.segment[r]), cap0.map(() => 1));

  // Sample 1: given key frame 0 → carries frame 1; keyword from the caption.
  const s1 = batch.samples[1];
  t.deepEqual(s1.keywords, ['flash']);
  t.is(s1.keywordSource, 'caption');
  t.deepEqual(Array.from(s1.substitution), [1, 1, 2, 3, 4, 5]);
  const b1 = Array.from(batch.keyRowsB.subarray(batch.keyRowOffsets[1], batch.keyRowOffsets[2]));
  t.deepEqual(b1.map(row), [1010, 1011]);

  // Sample 2: no keyword, no key frames: B equals A's video and the lists are empty.
  const s2 = batch.samples[2];
  t.deepEqual(s2.keywords, []);
  t.deepEqual(s2.keyFrames, []);
  t.is(batch.keyRowOffsets[3] - batch.keyRowOffsets[2], 0);
  t.is(batch.keywordRowOffsets[3] - batch.keywordRowOffsets[2], 0);
});

test('buildSftBatch: the transient locator finds the key frame of a generated clip', (t) => {
  const clip = clipAt(11, { event: 'flash', eventDuration: 1 });
  const batch = vp.buildSftBatch([{ caption: 'the circle flashes', frames: { data: clip.frames, shape: clip.shape } }], { tokensPerFrame: 1 });
  t.deepEqual(batch.samples[0].keyFrames, clip.event!.frames);
  t.is(batch.samples[0].keyFrameSource, 'transient');
  t.deepEqual(Array.from(batch.keyRowsB), [batch.cuSeqlens[1] + clip.event!.frames[0]]);
});

test('buildSftBatch: kim:false gives only A sequences; similarity locator; errors name the sample', (t) => {
  const plain = vp.buildSftBatch([{ caption: 'the ball jumps', numFrames: 4, keyFrames: [1] }], { tokensPerFrame: 3, kim: false });
  t.is(plain.sequences.length, 1);
  t.is(plain.samples[0].sequenceB, -1);
  t.is(plain.keyRowsB.length, 0);
  t.deepEqual(Array.from(plain.keyRowsA), [3, 4, 5]);

  const feats = randomFloats(5 * 8, 2);
  const emb = Float32Array.from(feats.subarray(3 * 8, 4 * 8));
  const sim = vp.buildSftBatch([{ caption: 'the ball jumps', frameFeatures: feats, numFrames: 5 }], {
    tokensPerFrame: 1, locator: 'similarity', embedKeyword: () => emb,
  });
  t.deepEqual(sim.samples[0].keyFrames, [3]);
  t.is(sim.samples[0].keyFrameSource, 'similarity');

  t.throws(() => vp.buildSftBatch([{ caption: 'x', numFrames: 2 }, { caption: 'the ball jumps', numFrames: 2, keyFrames: [0, 1] }], { tokensPerFrame: 1 }), {
    instanceOf: RangeError, message: /buildSftBatch: samples\[1\]: planSubstitution: .*every frame a key frame/,
  });
  t.throws(() => vp.buildSftBatch([{ caption: 'a', numFrames: 2 }, { caption: 'b', numFrames: 3 }], { tokensPerFrame: 1 }), { instanceOf: RangeError, message: /samples\[1\] must be 2 frames/ });
  t.throws(() => vp.buildSftBatch([{ caption: 'a', numFrames: 2 }], {}), { instanceOf: RangeError, message: /tokensPerFrame/ });
  t.throws(() => vp.buildSftBatch([{ caption: 7 } as unknown as vp.SftSample], { tokensPerFrame: 1 }), { instanceOf: TypeError, message: /samples\[0\]\.caption/ });
  t.throws(() => vp.buildSftBatch([{ caption: 'a', numFrames: 2 }], { tokensPerFrame: 1, videoTokens: labelledVideo(2, 2, 1, 4), textTokens: vp.tensor(new Float32Array(4), [1, 4]) }), {
    instanceOf: RangeError, message: /videoTokens\.shape must be \[1, 2, P, Dm\]/,
  });
});

test('buildSftBatch: a tokenizer without offsets still finds the keyword tokens', (t) => {
  const words: SftTok = { encode: (s: string) => ({ ids: s.split(/\s+/).filter(Boolean).map((w) => w.length) }) };
  const batch = vp.buildSftBatch([{ caption: 'the red ball suddenly jumps high', numFrames: 3 }], { tokensPerFrame: 1, tokenizer: words });
  t.deepEqual(batch.samples[0].keywordTokens, [4]);
});
type SftTok = vp.SftTokenizer;
