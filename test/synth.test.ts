import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import * as data from '../lib/data/index.js';
import * as vp from '../lib/index.js';

test('synth clips are deterministic for a seed', (t) => {
  const a = vp.synthClip(vp.makeRng(42));
  const b = vp.synthClip(vp.makeRng(42));
  const c = vp.synthClip(vp.makeRng(43));
  t.deepEqual(a.frames, b.frames);
  t.is(a.caption, b.caption);
  t.notDeepEqual(a.frames, c.frames);
});

test('synth: captions, events, questions and pixels agree, over 300 clips', (t) => {
  const rng = vp.makeRng(7);
  const kinds = new Set<string>();
  let withEvent = 0;
  for (let i = 0; i < 300; i++) {
    const clip = vp.synthClip(rng, { frames: 16, size: 32, fps: 8 });
    t.deepEqual(clip.shape, [16, 32, 32, 3]);
    t.true(clip.objects.length >= 1 && clip.objects.length <= 3);
    for (const o of clip.objects) t.true(clip.caption.includes(`the ${o.color} ${o.shape}`));
    const [ev, mo] = clip.questions;
    t.is(ev.options.length, 4);
    t.is(new Set(ev.options).size, 4, 'options are distinct');
    t.is(ev.options[3], data.NOTHING);
    t.is(mo.options.length, 4);
    if (!clip.event) {
      t.is(clip.events.length, 0);
      t.is(ev.answer, 3);
      continue;
    }
    withEvent++;
    kinds.add(clip.event.kind);
    t.true(clip.event.frames.length >= 1 && clip.event.frames.length <= 2);
    t.true(clip.caption.includes('briefly'));
    t.is(clip.events[0].keyword, clip.event.kind);
    t.is(clip.events[0].start, clip.event.frames[0] / 8);
    t.is(clip.events[0].end, clip.event.frames[clip.event.frames.length - 1] / 8);
    const o = clip.objects[clip.event.object];
    // The right option names the object (or says "it" when the clip has one object).
    t.true((ev.options[ev.answer as number]).startsWith(clip.objects.length === 1 ? 'it ' : `the ${o.color} ${o.shape}`));
    // The event is visible: the event frame differs from the frame before it
    // far more than the noise does.
    const fb = 32 * 32 * 3;
    const f = clip.event.frames[0];
    let diff = 0;
    for (let k = 0; k < fb; k++) diff += Math.abs(clip.frames[f * fb + k] - clip.frames[(f - 1) * fb + k]);
    t.true(diff / fb > 1.0, `event ${clip.event.kind} at frame ${f} is visible (mean |diff| ${diff / fb})`);
  }
  t.true(withEvent > 200 && withEvent < 280, `about 80% of clips have an event (${withEvent}/300)`);
  t.deepEqual([...kinds].sort(), [...data.EVENTS].sort(), 'all six kinds of event occur');
});

test('synthDataset writes a dataset that openDataset reads back', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-synth-'));
  try {
    let progress = 0;
    const anns = vp.synthDataset(dir, { count: 12, seed: 5, frames: 8, size: 24, onProgress: (d) => (progress = d) });
    t.is(progress, 12);
    const ds = vp.openDataset(dir);
    t.is(ds.length, 12);
    const s = ds.load(3);
    t.deepEqual(s.shape, [8, 24, 24, 3]);
    t.is(s.caption, anns[3].caption);
    const again = mkdtempSync(join(tmpdir(), 'vp-synth-'));
    vp.synthDataset(again, { count: 12, seed: 5, frames: 8, size: 24 });
    t.deepEqual(readFileSync(join(again, 'annotations.jsonl')), readFileSync(join(dir, 'annotations.jsonl')));
    rmSync(again, { recursive: true, force: true });
    t.throws(() => vp.synthDataset(dir, { count: 0 }), { instanceOf: RangeError });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('encodePng writes a valid PNG whose pixels round-trip', (t) => {
  const rgb = new Uint8Array(3 * 2 * 3).map((_, i) => i * 10);
  const png = data.encodePng(rgb, 3, 2);
  t.deepEqual(Array.from(png.subarray(0, 8)), [137, 80, 78, 71, 13, 10, 26, 10]);
  // IDAT payload: inflate and strip the per-row filter byte.
  const idatAt = Buffer.from(png).indexOf('IDAT');
  const len = new DataView(png.buffer, png.byteOffset).getUint32(idatAt - 4);
  const raw = inflateSync(png.subarray(idatAt + 4, idatAt + 4 + len));
  t.deepEqual(Array.from(raw), [0, ...rgb.subarray(0, 9), 0, ...rgb.subarray(9)]);
  t.throws(() => data.encodePng(rgb, 4, 2), { instanceOf: RangeError });
});
