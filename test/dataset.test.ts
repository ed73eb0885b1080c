import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as data from '../lib/data/index.js';
import * as vp from '../lib/index.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'vp-data-'));
}

const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;

test('npy: write then read round-trips uint8, int32 and float32 arrays', (t) => {
  const dir = tmp();
  try {
    const u8 = new Uint8Array(2 * 3 * 4 * 3).map((_, i) => i % 251);
    vp.writeNpy(join(dir, 'a.npy'), { dtype: 'uint8', shape: [2, 3, 4, 3], data: u8 });
    const a = vp.readNpy(join(dir, 'a.npy'));
    t.is(a.dtype, 'uint8');
    t.deepEqual(a.shape, [2, 3, 4, 3]);
    t.deepEqual(Array.from(a.data as Uint8Array), Array.from(u8));
    const f = new Float32Array([1.5, -2, 3.25]);
    vp.writeNpy(join(dir, 'f.npy'), { dtype: 'float32', shape: [3], data: f });
    t.deepEqual(Array.from(vp.readNpy(join(dir, 'f.npy')).data as Float32Array), [1.5, -2, 3.25]);
    const i = new Int32Array([7, -8]);
    vp.writeNpy(join(dir, 'i.npy'), { dtype: 'int32', shape: [1, 2], data: i });
    t.deepEqual(vp.readNpy(join(dir, 'i.npy')).shape, [1, 2]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npy: files written by numpy are read', (t) => {
  const py = '/usr/bin/python3';
  const probe = spawnSync(py, ['-c', 'import numpy']);
  if (probe.status !== 0) return t.pass('numpy not available: skipped');
  const dir = tmp();
  try {
    const r = spawnSync(py, ['-c', `import numpy as np; np.save('${dir}/n.npy', np.arange(24, dtype=np.uint8).reshape(2,2,2,3)); np.save('${dir}/g.npy', np.linspace(0,1,5).astype(np.float32))`]);
    t.is(r.status, 0, String(r.stderr));
    const n = vp.readNpy(join(dir, 'n.npy'));
    t.deepEqual(n.shape, [2, 2, 2, 3]);
    t.is((n.data as Uint8Array)[23], 23);
    t.deepEqual(Array.from(vp.readNpy(join(dir, 'g.npy')).data as Float32Array), [0, 0.25, 0.5, 0.75, 1]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npy: corrupt and truncated files give errors naming the file', (t) => {
  const dir = tmp();
  try {
    writeFileSync(join(dir, 'bad.npy'), 'not numpy at all');
    t.throws(() => vp.readNpy(join(dir, 'bad.npy')), { message: /bad\.npy: not an \.npy file/ });
    const good = data.encodeNpy({ dtype: 'float32', shape: [100], data: new Float32Array(100) });
    writeFileSync(join(dir, 'short.npy'), good.subarray(0, good.length - 10));
    t.throws(() => vp.readNpy(join(dir, 'short.npy')), { message: /short\.npy: truncated data/ });
    t.throws(() => vp.readNpy(join(dir, 'missing.npy')), { message: /cannot read .*missing\.npy/ });
    t.throws(() => data.encodeNpy({ dtype: 'float32', shape: [3], data: new Float32Array(2) }), { instanceOf: RangeError });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function writeClip(dir: string, name: string, F: number, H = 8, W = 8): void {
  const data = new Uint8Array(F * H * W * 3).map((_, i) => (i * 37) % 256);
  vp.writeNpy(join(dir, name), { dtype: 'uint8', shape: [F, H, W, 3], data });
}

test('openDataset reads annotations and .npy clips with frame times', (t) => {
  const dir = tmp();
  try {
    writeClip(dir, 'c0.npy', 16);
    writeClip(dir, 'c1.npy', 4);
    const lines = [
      { id: 'c0', video: 'c0.npy', caption: 'the red square drifts left; the blue circle briefly jumps', fps: 8,
        events: [{ keyword: 'jump', start: 1.0, end: 1.125 }],
        questions: [{ question: 'What did the circle do?', options: ['jumped', 'spun', 'vanished', 'nothing happened'], answer: 0 }] },
      { id: 7, video: 'c1.npy', caption: 'nothing happens', frameTimes: [0, 0.5, 1, 1.5] },
    ];
    writeFileSync(join(dir, 'annotations.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const ds = vp.openDataset(dir);
    t.is(ds.length, 2);
    const s0 = ds.load(0);
    t.deepEqual(s0.shape, [16, 8, 8, 3]);
    t.is(s0.frameTimes[8], 1.0);
    t.is(s0.events![0].keyword, 'jump');
    const s1 = ds.load(1);
    t.is(s1.id, '7');
    t.deepEqual(s1.frameTimes, [0, 0.5, 1, 1.5]);
    const all = [...ds];
    t.is(all.length, 2);
    const ten = vp.framesToTensor(s1);
    t.deepEqual(ten.shape, [4, 8, 8, 3]);
    t.true((ten.data as Float32Array).every((v) => v >= 0 && v <= 1));
    t.throws(() => ds.load(2), { instanceOf: RangeError, message: /index must be in \[0, 2\)/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('openDataset reports bad annotations with file, line and field', (t) => {
  const dir = tmp();
  try {
    t.throws(() => vp.openDataset(join(dir, 'nope')), { message: /no such folder/ });
    t.throws(() => vp.openDataset(dir), { message: /annotations\.jsonl not found/ });
    const cases: [unknown, RegExp][] = [
      ['{"id": 1, "video": "a.npy"', /line 1: invalid JSON/],
      [{ id: 1, video: 'a.npy' }, /line 1: "caption" must be a string/],
      [{ id: 1, video: '', caption: '' }, /"video" must be a non-empty path/],
      [{ id: 1, video: 'a.npy', caption: 'x', events: [{ keyword: 'jump', start: 2, end: 1 }] }, /events\[0\]: start 2 is after end 1/],
      [{ id: 1, video: 'a.npy', caption: 'x', events: [{ keyword: 'jump', start: 'a', end: 1 }] }, /events\[0\]\.start and \.end must be finite/],
      [{ id: 1, video: 'a.npy', caption: 'x', questions: [{ question: 'q', options: ['a', 'b'], answer: 2 }] }, /answer 2 is not an option index/],
      [{ id: 1, video: 'a.npy', caption: 'x', fps: -1 }, /"fps" must be a positive number/],
    ];
    for (const [line, re] of cases) {
      writeFileSync(join(dir, 'annotations.jsonl'), (typeof line === 'string' ? line : JSON.stringify(line)) + '\n');
      t.throws(() => vp.openDataset(dir), { message: re });
    }
    writeFileSync(join(dir, 'annotations.jsonl'), [{ id: 1, video: 'a.npy', caption: 'x' }, { id: 1, video: 'b.npy', caption: 'y' }].map((l) => JSON.stringify(l)).join('\n'));
    t.throws(() => vp.openDataset(dir), { message: /line 2: duplicate id "1"/ });
    writeFileSync(join(dir, 'annotations.jsonl'), JSON.stringify({ id: 1, video: 'missing.npy', caption: 'x' }));
    t.throws(() => vp.openDataset(dir, { checkClips: false }).load(0), { message: /clip file not found: .*missing\.npy/ });
    vp.writeNpy(join(dir, 'wrong.npy'), { dtype: 'float32', shape: [2, 2], data: new Float32Array(4) });
    writeFileSync(join(dir, 'annotations.jsonl'), JSON.stringify({ id: 1, video: 'wrong.npy', caption: 'x' }));
    t.throws(() => vp.openDataset(dir, { checkClips: false }).load(0), { instanceOf: TypeError, message: /must hold uint8 \[F, H, W, 3\]/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('openDataset checks every clip when it opens: missing, unreadable, wrong shape, truncated, not a video', (t) => {
  const dir = tmp();
  try {
    const clip = (F: number, extra = 0) => ({ dtype: 'uint8' as const, shape: [F, 4, 4, 3], data: new Uint8Array(F * 48 + extra) });
    vp.writeNpy(join(dir, 'good.npy'), clip(3));
    vp.writeNpy(join(dir, 'floats.npy'), { dtype: 'float32', shape: [3, 4, 4, 3], data: new Float32Array(144) });
    const whole = data.encodeNpy(clip(3));
    writeFileSync(join(dir, 'short.npy'), whole.subarray(0, whole.length - 10));
    writeFileSync(join(dir, 'fake.mp4'), 'not a video at all');
    mkdirSync(join(dir, 'folder.npy'));
    const anns = [
      { id: 'a', video: 'good.npy', caption: 'x' },
      { id: 'b', video: 'gone.npy', caption: 'x' },
      { id: 'c', video: 'floats.npy', caption: 'x' },
      { id: 'd', video: 'short.npy', caption: 'x' },
      { id: 'e', video: 'fake.mp4', caption: 'x' },
      { id: 'f', video: 'folder.npy', caption: 'x' },
      { id: 'g', video: 'good.npy', caption: 'x', frameTimes: [0, 1] },
      { id: 'h', video: 'good.txt', caption: 'x' },
    ];
    writeFileSync(join(dir, 'annotations.jsonl'), anns.map((a) => JSON.stringify(a)).join('\n'));
    writeFileSync(join(dir, 'good.txt'), 'x');
    const e = t.throws(() => vp.openDataset(dir))!;
    t.regex(e.message, /^openDataset: 7 of 8 clips cannot be read:/);
    t.regex(e.message, /line 2 \(id "b"\): clip .*gone\.npy: not found/);
    t.regex(e.message, /line 3 \(id "c"\): clip .*floats\.npy: must hold uint8 \[F, H, W, 3\]/);
    t.regex(e.message, /line 4 \(id "d"\): clip .*short\.npy: truncated data/);
    t.regex(e.message, /line 5 \(id "e"\): clip .*fake\.mp4: not a readable \.mp4 file/);
    t.regex(e.message, /… and 2 more/);
    // Only the good ones: opens.
    writeFileSync(join(dir, 'annotations.jsonl'), JSON.stringify(anns[0]));
    t.is(vp.openDataset(dir).length, 1);
    // A file given as the folder.
    t.throws(() => vp.openDataset(join(dir, 'good.npy')), { message: /openDataset: dir: .*good\.npy: is a file, expected a dataset folder/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('synthDataset checks its options and the free disk space before writing; a pseudo file system fails fast', (t) => {
  const dir = tmp();
  try {
    for (const [o, re] of [
      [{ count: 2, fps: Number('abc') }, /synth: fps must be a number in \(0, 10000\], got NaN/],
      [{ count: 2, fps: 0 }, /fps must be/],
      [{ count: 2, frames: 1e9 }, /frames must be an integer in \[4, 4096\]/],
      [{ count: 2, size: 4096, frames: 4096 }, /bytes per clip/],
      [{ count: 1e12 }, /synthDataset: count 1000000000000 clips of .* need about .* free/],
      [{ count: 2, eventRate: 2 }, /eventRate must be in \[0, 1\]/],
    ] as const) t.throws(() => vp.synthDataset(join(dir, 'd'), o as vp.SynthDatasetOptions), { instanceOf: RangeError, message: re });
    t.false(existsSync(join(dir, 'd', 'annotations.jsonl')));
    const t0 = Date.now();
    t.throws(() => vp.synthDataset('/proc/vp-test-data', { count: 1 }), { message: /synthDataset: dir: \/proc\/vp-test-data: cannot create the folder/ });
    t.true(Date.now() - t0 < 5000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('decodeVideo: keeps only the frames it returns in memory (a clip whose raw frames exceed 1 GiB), names a folder given as the path', (t) => {
  if (!hasFfmpeg) return t.pass('ffmpeg not installed: skipped (CI installs it)');
  const dir = tmp();
  try {
    t.throws(() => vp.decodeVideo(dir), { message: new RegExp(`^decodeVideo: path: ${dir}: is a folder, expected a video file`) });
    // 200 frames at 20 fps; decoded at 1088x1920 they would be 200 × 6.3 MB = 1.25 GB of raw RGB.
    const clip = join(dir, 'long.mp4');
    const mk = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=duration=10:size=64x48:rate=20', '-pix_fmt', 'yuv420p', clip]);
    t.is(mk.status, 0, String(mk.stderr));
    const v = vp.decodeVideo(clip, { fps: 20, maxFrames: 6, size: [1088, 1920] });
    t.deepEqual(v.shape, [6, 1088, 1920, 3]);
    t.deepEqual(v.frameTimes, [0, 0.05, 0.1, 0.15, 0.2, 0.25]);
    const u = vp.decodeVideo(clip, { frames: 4, size: [1088, 1920] });
    t.deepEqual(u.shape, [4, 1088, 1920, 3]);
    t.throws(() => vp.decodeVideo(clip, { fps: 20, maxFrames: 1e7, size: [1088, 1920] }), { instanceOf: RangeError, message: /more than half of this machine's/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('video files decode through ffmpeg: a clip made with ffmpeg\'s own test source', (t) => {
  if (!hasFfmpeg) return t.pass('ffmpeg not installed: skipped (CI installs it)');
  const dir = tmp();
  try {
    // 2 s at 25 fps, 64x48, a moving test pattern.
    const mk = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=duration=2:size=64x48:rate=25', '-pix_fmt', 'yuv420p', join(dir, 'clip.mp4')]);
    t.is(mk.status, 0, String(mk.stderr));
    const v = vp.decodeVideo(join(dir, 'clip.mp4'), { frames: 16, size: [32, 48] });
    t.deepEqual(v.shape, [16, 32, 48, 3]);
    t.is(v.frames.length, 16 * 32 * 48 * 3);
    t.true(Math.abs(v.durationSec - 2) < 0.1);
    t.is(v.sourceFps, 25);
    for (let i = 1; i < 16; i++) t.true(v.frameTimes[i] > v.frameTimes[i - 1]);
    t.true(v.frameTimes[15] <= 2);
    // The test pattern moves: consecutive sampled frames differ.
    const fb = 32 * 48 * 3;
    let diff = 0;
    for (let i = 0; i < fb; i++) diff += Math.abs(v.frames[i] - v.frames[fb * 8 + i]);
    t.true(diff > 0);
    const byFps = vp.decodeVideo(join(dir, 'clip.mp4'), { fps: 5 });
    t.deepEqual(byFps.shape.slice(1), [48, 64, 3]);
    t.true(Math.abs(byFps.shape[0] - 10) <= 1);
    // Through the dataset too.
    writeFileSync(join(dir, 'annotations.jsonl'), JSON.stringify({ id: 'v', video: 'clip.mp4', caption: 'a test pattern moves' }));
    const s = vp.openDataset(dir, { frames: 8, size: [16, 16] }).load(0);
    t.deepEqual(s.shape, [8, 16, 16, 3]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without ffmpeg a video clip gives an error naming the file and the fix', (t) => {
  const dir = tmp();
  try {
    writeFileSync(join(dir, 'clip.mp4'), 'x');
    const saved = process.env.FFMPEG_PATH;
    process.env.FFMPEG_PATH = join(dir, 'no-such-ffmpeg');
    try {
      t.throws(() => vp.decodeVideo(join(dir, 'clip.mp4')), { message: /ffmpeg is needed to decode .*clip\.mp4.*FFMPEG_PATH/ });
    } finally {
      if (saved === undefined) delete process.env.FFMPEG_PATH;
      else process.env.FFMPEG_PATH = saved;
    }
    const savedPath = process.env.PATH;
    process.env.PATH = dir;
    try {
      t.throws(() => vp.decodeVideo(join(dir, 'clip.mp4')), { message: /no ffmpeg executable was found on PATH.*apt-get install ffmpeg/ });
    } finally {
      process.env.PATH = savedPath;
    }
    t.false(existsSync(join(dir, 'no-such-ffmpeg')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
