// A deterministic generator of small fine-grained action clips: a few shapes
// drifting steadily over a background, with sensor noise, and optionally one
// transient event (flash, jump, vanish, shrink, colour change) lasting one or
// two frames. The transient-frame detector's tests use it; the `synth` command
// builds its dataset on it. Everything follows from the seed.

import { seededRandom } from '../random.js';

export type ClipShape = 'square' | 'circle';
export type ClipEventKind = 'flash' | 'jump' | 'vanish' | 'shrink' | 'colour';
export const CLIP_EVENT_KINDS: readonly ClipEventKind[] = ['flash', 'jump', 'vanish', 'shrink', 'colour'];

export interface ClipObject {
  shape: ClipShape;
  colour: string;
  rgb: readonly [number, number, number];
  /** Half the side (square) or the radius (circle), in pixels. */
  size: number;
  /** Centre at frame 0 and velocity in pixels per frame (x right, y down). */
  x: number;
  y: number;
  vx: number;
  vy: number;
}

export interface ClipEvent {
  kind: ClipEventKind;
  /** Index into `objects`. */
  object: number;
  /** First frame of the event. */
  frame: number;
  /** Number of frames (1 or 2). */
  duration: number;
}

export interface ClipOptions {
  frames?: number;
  height?: number;
  width?: number;
  /** Number of objects, or [min, max] (default [1, 3]). */
  objects?: number | readonly [number, number];
  /** The event: a kind, 'random' (a random kind), or null for none (default 'random'). */
  event?: ClipEventKind | 'random' | null;
  /** Event length in frames: 1, 2, or [1, 2] for either (default 1). */
  eventDuration?: number | readonly [number, number];
  /** Standard deviation of the additive Gaussian noise, in [0, 1] units (default 0.02). */
  noise?: number;
  /** Speed range of the steady motion in pixels per frame (default [0.3, 1.5]). */
  speed?: readonly [number, number];
}

export interface GeneratedClip {
  /** `[F, H, W, 3]` values in [0, 1]. */
  frames: Float32Array;
  shape: [number, number, number, number];
  objects: ClipObject[];
  event: ClipEvent | null;
  background: readonly [number, number, number];
}

export const CLIP_COLOURS: Readonly<Record<string, readonly [number, number, number]>> = {
  red: [0.9, 0.15, 0.15],
  green: [0.15, 0.8, 0.2],
  blue: [0.2, 0.35, 0.95],
  yellow: [0.95, 0.85, 0.15],
  purple: [0.65, 0.25, 0.85],
  orange: [0.95, 0.55, 0.1],
  cyan: [0.1, 0.85, 0.9],
};

export { seededRandom };

function gaussian(r: () => number): number {
  const u = Math.max(r(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);

/** Coverage of pixel (px, py) by a shape centred at (cx, cy), antialiased over one pixel. */
function coverage(shape: ClipShape, size: number, cx: number, cy: number, px: number, py: number): number {
  if (shape === 'circle') {
    const d = Math.hypot(px + 0.5 - cx, py + 0.5 - cy);
    return clamp01(size + 0.5 - d);
  }
  const ax = clamp01(size + 0.5 - Math.abs(px + 0.5 - cx));
  const ay = clamp01(size + 0.5 - Math.abs(py + 0.5 - cy));
  return ax * ay;
}

/** Generates one clip; the same seed and options give the same clip. */
export function generateEventClip(seed: number, opts: ClipOptions = {}): GeneratedClip {
  const F = opts.frames ?? 16;
  const H = opts.height ?? 32;
  const W = opts.width ?? 32;
  const noise = opts.noise ?? 0.02;
  const [vmin, vmax] = opts.speed ?? [0.3, 1.5];
  const r = seededRandom(seed * 2654435761 + 12345);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const range = (v: number | readonly [number, number]) => (typeof v === 'number' ? v : v[0] + Math.floor(r() * (v[1] - v[0] + 1)));

  const nObjects = Math.max(1, range(opts.objects ?? [1, 3]));
  const bgLevel = 0.05 + 0.15 * r();
  const background: [number, number, number] = [bgLevel, bgLevel * (0.9 + 0.2 * r()), bgLevel * (0.9 + 0.2 * r())];
  const colourNames = Object.keys(CLIP_COLOURS);
  const objects: ClipObject[] = [];
  const minSide = Math.min(H, W);
  // Objects never overlap (so no event hides behind another object): each new
  // object's path keeps clear of the earlier ones', else it is drawn again.
  const clear = (a: ClipObject, b: ClipObject) => {
    for (let f = 0; f < F; f++) {
      const dx = Math.abs(a.x + a.vx * f - (b.x + b.vx * f));
      const dy = Math.abs(a.y + a.vy * f - (b.y + b.vy * f));
      if (Math.max(dx, dy) < a.size + b.size + 2) return false;
    }
    return true;
  };
  for (let o = 0; o < nObjects; o++) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const colour = colourNames.filter((c) => !objects.some((x) => x.colour === c))[Math.floor(r() * (colourNames.length - objects.length))];
      const size = minSide * (0.07 + 0.06 * r());
      const speed = vmin + (vmax - vmin) * r();
      const angle = 2 * Math.PI * r();
      const vx = speed * Math.cos(angle);
      const vy = speed * Math.sin(angle);
      // Start so that the whole path stays inside the frame.
      const margin = size + 1;
      const spanX = W - 2 * margin - Math.abs(vx) * (F - 1);
      const spanY = H - 2 * margin - Math.abs(vy) * (F - 1);
      const x0 = margin + Math.max(0, spanX) * r() + (vx < 0 ? Math.abs(vx) * (F - 1) : 0);
      const y0 = margin + Math.max(0, spanY) * r() + (vy < 0 ? Math.abs(vy) * (F - 1) : 0);
      const cand: ClipObject = { shape: pick(['square', 'circle'] as const), colour, rgb: CLIP_COLOURS[colour], size, x: x0, y: y0, vx, vy };
      if (objects.every((x) => clear(x, cand))) {
        objects.push(cand);
        break;
      }
    }
  }
  const nObjectsPlaced = objects.length;
  let event: ClipEvent | null = null;
  const kindOpt = opts.event === undefined ? 'random' : opts.event;
  if (kindOpt !== null) {
    const kind = kindOpt === 'random' ? pick(CLIP_EVENT_KINDS) : kindOpt;
    const duration = Math.min(Math.max(1, range(opts.eventDuration ?? 1)), Math.max(1, F - 2));
    // Strictly inside the clip: the frames before and after the event exist.
    const frame = 1 + Math.floor(r() * Math.max(1, F - 1 - duration));
    event = { kind, object: Math.floor(r() * nObjectsPlaced), frame, duration };
  }
  // A jump goes up, or down when there is no room above at the event's start.
  let jumpDy = -(2.5 + r()) * (objects[event?.object ?? 0]?.size ?? 1);
  if (event) {
    const ob = objects[event.object];
    if (ob.y + ob.vy * event.frame + jumpDy - ob.size < 0) jumpDy = -jumpDy;
  }
  const altColour = (() => {
    if (!event) return [0, 0, 0] as const;
    const own = objects[event.object].colour;
    return CLIP_COLOURS[pick(colourNames.filter((c) => c !== own))];
  })();

  const frames = new Float32Array(F * H * W * 3);
  for (let f = 0; f < F; f++) {
    const base = f * H * W * 3;
    for (let i = 0; i < H * W; i++) {
      frames[base + 3 * i] = background[0];
      frames[base + 3 * i + 1] = background[1];
      frames[base + 3 * i + 2] = background[2];
    }
    const inEvent = event !== null && f >= event.frame && f < event.frame + event.duration;
    for (let o = 0; o < nObjectsPlaced; o++) {
      const ob = objects[o];
      let cx = ob.x + ob.vx * f;
      let cy = ob.y + ob.vy * f;
      let size = ob.size;
      let rgb: readonly number[] = ob.rgb;
      if (inEvent && event!.object === o) {
        if (event!.kind === 'vanish') continue;
        if (event!.kind === 'flash') rgb = rgb.map((c) => c + 0.85 * (1 - c));
        if (event!.kind === 'jump') cy += jumpDy;
        if (event!.kind === 'shrink') size *= 0.45;
        if (event!.kind === 'colour') rgb = altColour;
      }
      const x0 = Math.max(0, Math.floor(cx - size - 1));
      const x1 = Math.min(W - 1, Math.ceil(cx + size + 1));
      const y0 = Math.max(0, Math.floor(cy - size - 1));
      const y1 = Math.min(H - 1, Math.ceil(cy + size + 1));
      for (let py = y0; py <= y1; py++)
        for (let px = x0; px <= x1; px++) {
          const a = coverage(ob.shape, size, cx, cy, px, py);
          if (a <= 0) continue;
          const p = base + (py * W + px) * 3;
          for (let c = 0; c < 3; c++) frames[p + c] = frames[p + c] * (1 - a) + rgb[c] * a;
        }
    }
    if (noise > 0) for (let i = base; i < base + H * W * 3; i++) frames[i] = clamp01(frames[i] + noise * gaussian(r));
  }
  return { frames, shape: [F, H, W, 3], objects, event, background };
}
