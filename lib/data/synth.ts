// A generator of fine-grained action clips, deterministic from a seed: small RGB
// frames with one to three moving objects of several shapes and colours; most
// clips hold one transient event lasting one or two frames (flash, jump, spin,
// shrink, vanish, change colour), some none. Each clip comes with a caption
// that names the objects, their steady motion and the event, the event's
// keyword and time span, and multiple-choice questions about the event and
// about the steady motion (the "general ability" control).
import { statfsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { Annotation, QuestionAnnotation } from './dataset.js';
import { DatasetWriter, refuseNonEmpty } from './dataset-dir.js';
import { writeNpy } from './npy.js';
import { bytesText } from '../fs.js';
import { outputDir, pathError } from '../paths.js';
import { seededRandom } from '../random.js';

export const SHAPES = ['square', 'circle', 'triangle', 'diamond'] as const;
export const COLORS: Record<string, [number, number, number]> = {
  red: [230, 40, 40], green: [40, 200, 60], blue: [50, 90, 240], yellow: [240, 220, 40],
  magenta: [220, 50, 220], cyan: [40, 220, 230], orange: [250, 140, 20], white: [235, 235, 235],
};
export const MOTIONS = ['drifts left', 'drifts right', 'drifts up', 'drifts down', 'stays still'] as const;
export const EVENTS = ['flash', 'jump', 'spin', 'shrink', 'vanish', 'change colour'] as const;
export type Shape = (typeof SHAPES)[number];
export type Motion = (typeof MOTIONS)[number];
export type EventKind = (typeof EVENTS)[number];

/** Third-person present ("jumps") and past ("jumped") of each event. */
const EVENT_VERB: Record<EventKind, [string, string]> = {
  flash: ['flashes', 'flashed'], jump: ['jumps', 'jumped'], spin: ['spins', 'spun'],
  shrink: ['shrinks', 'shrank'], vanish: ['vanishes', 'vanished'], 'change colour': ['changes colour', 'changed colour'],
};
const MOTION_ANSWER: Record<Motion, string> = {
  'drifts left': 'left', 'drifts right': 'right', 'drifts up': 'up', 'drifts down': 'down', 'stays still': 'it stays still',
};
export const NOTHING = 'nothing happened';

export interface SynthOptions {
  /** Frames per clip (default 16). */
  frames?: number;
  /** Frame height and width in pixels (default 32). */
  size?: number;
  /** Frame rate: frame f is at t = f / fps seconds (default 8). */
  fps?: number;
  /** Fraction of clips with a transient event (default 0.8). */
  eventRate?: number;
  /** Most objects a clip holds (1 to 3, default 3). */
  maxObjects?: number;
  /** Number of objects, or [min, max] (default [1, maxObjects]). */
  objects?: number | readonly [number, number];
  /** The event: a kind, 'random' (an event with probability eventRate, default), or null for none. */
  event?: EventKind | 'random' | null;
  /** Event length in frames: 1, 2, or [1, 2] for either (default [1, 2]). */
  eventDuration?: number | readonly [number, number];
  /** Standard deviation of the Gaussian sensor noise, in [0, 1] units (default 0.015). */
  noise?: number;
  /** Range of the steady speed in pixels per frame at size 32 (scaled with size; default [0.8, 1.3]). */
  speed?: readonly [number, number];
  /** Object size multiplier (default 1: radius 3 to 4.5 pixels at size 32, scaled with size). */
  objectScale?: number;
  /**
   * Also ask "What colour is the <shape>?" about an object whose shape no other object has (four
   * colours, the right one included; default false). The colour is visible in every frame: a
   * question a small model learns, so it measures general ability beside the brief events.
   */
  colourQuestion?: boolean;
  /** Ask the steady-motion question (default true; false also skips its random draws). */
  motionQuestion?: boolean;
}

export interface SynthObject {
  shape: Shape;
  color: string;
  motion: Motion;
}

export interface SynthClip {
  frames: Uint8Array;
  shape: [number, number, number, 3];
  caption: string;
  objects: SynthObject[];
  /** The transient event, if any: which object, what, and its frames. */
  event: null | { object: number; kind: EventKind; frames: number[] };
  events: { keyword: string; start: number; end: number }[];
  questions: (QuestionAnnotation & { kind: 'event' | 'motion' | 'colour' })[];
  fps: number;
}

/** The synthetic data's generator for a seed (see lib/random.ts). */
export function makeRng(seed: number): () => number {
  return seededRandom((seed >>> 0) ^ 0x9e3779b9);
}

function pick<T>(rng: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rng() * xs.length)];
}

function shuffle<T>(rng: () => number, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

function inside(shape: Shape, dx: number, dy: number, r: number, angle: number): boolean {
  if (angle) {
    const c = Math.cos(-angle), s = Math.sin(-angle);
    [dx, dy] = [c * dx - s * dy, s * dx + c * dy];
  }
  switch (shape) {
    case 'square': return Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85;
    case 'circle': return dx * dx + dy * dy <= r * r;
    case 'diamond': return Math.abs(dx) + Math.abs(dy) <= r;
    case 'triangle': return dy <= r * 0.8 && dy >= -r && Math.abs(dx) <= (dy + r) * 0.6;
  }
}

/** Largest clip synthClip makes, in bytes (frames · size² · 3). */
export const MAX_CLIP_BYTES = 2 ** 30;

/** Checks the options of synthClip / synthDataset before anything is generated or written. */
function checkSynthOptions(opts: SynthOptions): void {
  const F = opts.frames ?? 16;
  const S = opts.size ?? 32;
  const fps = opts.fps ?? 8;
  if (!Number.isInteger(F) || F < 4 || F > 4096) throw new RangeError(`synth: frames must be an integer in [4, 4096], got ${F}`);
  if (!Number.isInteger(S) || S < 16 || S > 4096) throw new RangeError(`synth: size must be an integer in [16, 4096], got ${S}`);
  for (const k of ['colourQuestion', 'motionQuestion'] as const)
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean') throw new TypeError(`synth: ${k} must be a boolean, got ${JSON.stringify(opts[k])}`);
  if (F * S * S * 3 > MAX_CLIP_BYTES) throw new RangeError(`synth: frames × size² × 3 must be at most ${MAX_CLIP_BYTES} bytes per clip, got ${F} × ${S}² × 3 = ${F * S * S * 3}`);
  if (typeof fps !== 'number' || !(fps > 0) || !Number.isFinite(fps) || fps > 1e4) throw new RangeError(`synth: fps must be a number in (0, 10000], got ${opts.fps}`);
  const rate = opts.eventRate ?? 0.8;
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) throw new RangeError(`synth: eventRate must be in [0, 1], got ${opts.eventRate}`);
  const noise = opts.noise ?? 0.015;
  if (typeof noise !== 'number' || !(noise >= 0 && noise <= 1)) throw new RangeError(`synth: noise must be in [0, 1], got ${opts.noise}`);
}

/** One clip from a generator state (use makeRng(seed) for a reproducible stream). */
export function synthClip(rng: () => number, opts: SynthOptions = {}): SynthClip {
  const F = opts.frames ?? 16;
  const S = opts.size ?? 32;
  const fps = opts.fps ?? 8;
  const maxObjects = Math.min(3, Math.max(1, opts.maxObjects ?? 3));
  checkSynthOptions(opts);
  const range = (v: number | readonly [number, number]) => (typeof v === 'number' ? v : v[0] + Math.floor(rng() * (v[1] - v[0] + 1)));
  const wantObjects = Math.min(3, Math.max(1, range(opts.objects ?? [1, maxObjects])));
  const [vmin, vmax] = opts.speed ?? [0.8, 1.3];
  const objectScale = opts.objectScale ?? 1;
  if (!(objectScale > 0 && objectScale <= 3)) throw new RangeError(`synth: objectScale must be in (0, 3], got ${opts.objectScale}`);
  const colorNames = shuffle(rng, Object.keys(COLORS));
  const objects: SynthObject[] = [];
  const state: { x: number; y: number; vx: number; vy: number; r: number }[] = [];
  // Objects never overlap (so no event hides behind another object): a new
  // object whose path comes near an earlier one's is placed again.
  const clear = (a: (typeof state)[number], b: (typeof state)[number]) => {
    for (let f = 0; f < F; f++) {
      const dx = Math.abs(a.x + a.vx * f - (b.x + b.vx * f)), dy = Math.abs(a.y + a.vy * f - (b.y + b.vy * f));
      if (Math.max(dx, dy) < a.r + b.r + 2) return false;
    }
    return true;
  };
  for (let i = 0; i < wantObjects; i++) {
    for (let attempt = 0; attempt < 40; attempt++) {
      const speed = (S / 32) * (vmin + (vmax - vmin) * rng());
      const motion: Motion = speed > 0 ? pick(rng, MOTIONS) : 'stays still';
      const shape = pick(rng, SHAPES);
      const [vx, vy] = motion === 'drifts left' ? [-speed, 0] : motion === 'drifts right' ? [speed, 0]
        : motion === 'drifts up' ? [0, -speed] : motion === 'drifts down' ? [0, speed] : [0, 0];
      const r = (S / 32) * (3 + 1.5 * rng()) * objectScale;
      // Start where the whole path stays inside the frame.
      const span = (F - 1) * Math.max(Math.abs(vx), Math.abs(vy));
      const lo = r + 1, hi = S - r - 2;
      const x0 = vx < 0 ? lo + span + rng() * Math.max(0, hi - lo - span) : vx > 0 ? lo + rng() * Math.max(0, hi - lo - span) : lo + rng() * (hi - lo);
      const y0 = vy < 0 ? lo + span + rng() * Math.max(0, hi - lo - span) : vy > 0 ? lo + rng() * Math.max(0, hi - lo - span) : lo + rng() * (hi - lo);
      const cand = { x: x0, y: y0, vx, vy, r };
      if (state.every((o) => clear(o, cand))) {
        objects.push({ shape, color: colorNames[i], motion });
        state.push(cand);
        break;
      }
    }
  }
  const nObj = objects.length;
  let event: SynthClip['event'] = null;
  const wantEvent = opts.event === undefined || opts.event === 'random' ? rng() < (opts.eventRate ?? 0.8) : opts.event !== null;
  if (wantEvent) {
    const object = Math.floor(rng() * nObj);
    const kind = opts.event && opts.event !== 'random' ? opts.event : pick(rng, EVENTS);
    if (kind === 'spin' && objects[object].shape === 'circle') objects[object].shape = 'square'; // a spinning circle is invisible
    const len = Math.min(2, Math.max(1, range(opts.eventDuration ?? [1, 2])));
    const first = 2 + Math.floor(rng() * (F - 4 - len + 1));
    event = { object, kind, frames: Array.from({ length: len }, (_, i) => first + i) };
  }
  const altColor = colorNames[nObj % colorNames.length];

  const frames = new Uint8Array(F * S * S * 3);
  const noiseRng = makeRng(Math.floor(rng() * 2 ** 31));
  const sigma = 255 * (opts.noise ?? 0.015);
  const bg = [22 + 10 * rng(), 22 + 10 * rng(), 28 + 10 * rng()];
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(noiseRng(), 1e-12))) * Math.cos(2 * Math.PI * noiseRng());
  for (let f = 0; f < F; f++) {
    const base = f * S * S * 3;
    for (let k = 0; k < S * S * 3; k++) frames[base + k] = bg[k % 3];
    objects.forEach((o, i) => {
      const st = state[i];
      let x = st.x + st.vx * f, y = st.y + st.vy * f, r = st.r, angle = 0;
      let color = COLORS[o.color];
      const active = event && event.object === i && event.frames.includes(f);
      if (active) {
        switch (event!.kind) {
          case 'vanish': return;
          case 'jump': y -= Math.max(4, r * 1.6); break;
          case 'shrink': r *= 0.45; break;
          case 'spin': angle = Math.PI / 4 + (o.shape === 'triangle' ? Math.PI / 3 : 0); break;
          case 'flash': color = [255, 255, 255]; r *= 1.35; break;
          case 'change colour': color = COLORS[altColor]; break;
        }
      }
      const x0 = Math.max(0, Math.floor(x - r - 1)), x1 = Math.min(S - 1, Math.ceil(x + r + 1));
      const y0 = Math.max(0, Math.floor(y - r - 1)), y1 = Math.min(S - 1, Math.ceil(y + r + 1));
      for (let py = y0; py <= y1; py++)
        for (let px = x0; px <= x1; px++) {
          if (!inside(o.shape, px + 0.5 - x, py + 0.5 - y, r, angle)) continue;
          const k = base + 3 * (py * S + px);
          frames[k] = color[0];
          frames[k + 1] = color[1];
          frames[k + 2] = color[2];
        }
    });
    if (sigma > 0) {
      for (let k = base; k < base + S * S * 3; k++) frames[k] = Math.max(0, Math.min(255, Math.round(frames[k] + sigma * gauss())));
    }
  }

  const name = (o: SynthObject) => `the ${o.color} ${o.shape}`;
  const parts = objects.map((o, i) => {
    const base = `${name(o)} ${o.motion}`;
    if (!event || event.object !== i) return base;
    const verb = `briefly ${EVENT_VERB[event.kind][0]}`;
    return o.motion === 'stays still' ? `${name(o)} stays still and ${verb}` : `${base} and ${verb}`;
  });
  const caption = parts.join('; ');
  const events = event ? [{ keyword: event.kind, start: event.frames[0] / fps, end: event.frames[event.frames.length - 1] / fps }] : [];

  // Event question: the right description, two others, and "nothing happened".
  // With one object the options say "it": the question is then about what happened, not about
  // telling the object's shape apart (with several objects the object must be named).
  const describe = (i: number, k: EventKind) => `${nObj === 1 ? 'it' : name(objects[i])} ${EVENT_VERB[k][1]}`;
  const correct = event ? describe(event.object, event.kind) : NOTHING;
  const distractors = new Set<string>();
  const wanted = event ? 2 : 3;
  while (distractors.size < wanted) {
    const d = describe(Math.floor(rng() * nObj), pick(rng, EVENTS));
    if (d !== correct) distractors.add(d);
  }
  const eventOptions = shuffle(rng, event ? [correct, ...distractors] : [...distractors]);
  eventOptions.push(NOTHING);
  const questions: SynthClip['questions'] = [{
    kind: 'event', question: 'What happened briefly in the clip?', options: eventOptions, answer: eventOptions.indexOf(correct),
  }];
  // Motion question about one object: four of the five directions, the right one included.
  if (opts.motionQuestion ?? true) {
    const mo = objects[Math.floor(rng() * nObj)];
    const right = MOTION_ANSWER[mo.motion];
    const others = shuffle(rng, Object.values(MOTION_ANSWER).filter((a) => a !== right)).slice(0, 3);
    const motionOptions = shuffle(rng, [right, ...others]);
    questions.push({ kind: 'motion', question: `Which way does ${name(mo)} move?`, options: motionOptions, answer: motionOptions.indexOf(right) });
  }
  if (opts.colourQuestion) {
    // Asked after the other draws, so clips without it are unchanged.
    const unique = objects.filter((o) => objects.filter((p) => p.shape === o.shape).length === 1);
    if (unique.length) {
      const co = pick(rng, unique);
      const colours = shuffle(rng, [co.color, ...shuffle(rng, Object.keys(COLORS).filter((c) => c !== co.color)).slice(0, 3)]);
      questions.push({ kind: 'colour', question: `What colour is the ${co.shape}?`, options: colours, answer: colours.indexOf(co.color) });
    }
  }

  return { frames, shape: [F, S, S, 3], caption, objects, event, events, questions, fps };
}

export interface SynthDatasetOptions extends SynthOptions {
  /** Number of clips. */
  count: number;
  /** Seed of the whole dataset (clip i is the same for the same seed and options). */
  seed?: number;
  /** Also write .mp4 files when ffmpeg is available (default false). */
  mp4?: boolean;
  /** Called after each clip (for progress bars). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Replace the dataset in a folder that already holds files (default false: such a folder is
   * refused and nothing in it is touched). The new clips are written first, annotations.jsonl is
   * replaced atomically last, and the earlier clips/clip-*.npy|.mp4 files the new dataset does not
   * use are removed; no other file is (lib/data/dataset-dir.ts).
   */
  overwrite?: boolean;
}

/** The first words of the README.txt the generator writes (a README.txt that starts otherwise is the user's: kept). */
const README_HEAD = 'Synthetic fine-grained action clips generated by videoperceiver';

/**
 * Writes a dataset folder: annotations.jsonl and clips/<id>.npy (and .mp4). Returns the annotations.
 * A folder that already holds files is refused unless `opts.overwrite` (see SynthDatasetOptions.overwrite).
 */
export function synthDataset(dir: string, opts: SynthDatasetOptions): Annotation[] {
  const arg = 'synthDataset: dir';
  if (!Number.isSafeInteger(opts.count) || opts.count < 1) throw new RangeError(`synthDataset: count must be a positive integer, got ${opts.count}`);
  checkSynthOptions(opts);
  if (opts.overwrite !== undefined && typeof opts.overwrite !== 'boolean') throw new TypeError(`synthDataset: overwrite must be a boolean, got ${JSON.stringify(opts.overwrite)}`);
  outputDir(arg, dir);
  if (!opts.overwrite) refuseNonEmpty(arg, dir, 'pass { overwrite: true } to replace the dataset in it');
  // The whole dataset must fit on the disk: refuse at once rather than fill it.
  const F = opts.frames ?? 16, S = opts.size ?? 32;
  const need = opts.count * (F * S * S * 3 + 128) * (opts.mp4 ? 2 : 1);
  const fsInfo = statfsSync(dir);
  const free = fsInfo.bavail * fsInfo.bsize;
  if (need > free) throw new RangeError(`synthDataset: count ${opts.count} clips of ${F} × ${S}² × 3 bytes need about ${bytesText(need)}, but ${dir} has ${bytesText(free)} free`);
  const rng = makeRng(opts.seed ?? 0);
  const anns: Annotation[] = [];
  let ffmpegOk = false;
  if (opts.mp4) ffmpegOk = spawnSync('ffmpeg', ['-version']).status === 0;
  const out = new DatasetWriter(arg, dir);
  try {
    for (let i = 0; i < opts.count; i++) {
      const clip = synthClip(rng, opts);
      const id = `clip-${String(i).padStart(5, '0')}`;
      const npy = out.path(`${id}.npy`);
      try {
        writeNpy(npy, { dtype: 'uint8', shape: clip.shape, data: clip.frames });
      } catch (e) {
        throw pathError(arg, npy, e, 'write the clip');
      }
      out.add(`${id}.npy`);
      if (ffmpegOk) {
        const [F, H, W] = clip.shape;
        const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${W}x${H}`, '-r', String(clip.fps),
          '-i', 'pipe:0', '-frames:v', String(F), '-pix_fmt', 'yuv444p', '-c:v', 'libx264', '-qp', '0', out.path(`${id}.mp4`)], { input: clip.frames });
        if (r.status === 0) out.add(`${id}.mp4`);
      }
      anns.push({ id, video: `clips/${id}.npy`, caption: clip.caption, events: clip.events, questions: clip.questions, fps: clip.fps });
      opts.onProgress?.(i + 1, opts.count);
    }
    out.commit(anns.map((a) => JSON.stringify(a)).join('\n') + '\n', {
      text: `${README_HEAD} (seed ${opts.seed ?? 0}, ${opts.count} clips).\n`,
      mine: (old) => old.startsWith(README_HEAD),
    });
  } finally {
    out.discard();
  }
  return anns;
}
