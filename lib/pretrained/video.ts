// Video input of a vision-language PretrainedModel, as each family's
// processor prepares it (transformers' video_processing_smolvlm.py with
// processing_smolvlm.py, and CLIPImageProcessor with LlavaProcessor), from
// uint8 RGB frames [F, H, W, 3]:
//
//  SmolVLM / Idefics3: frames sampled as SmolVLMVideoProcessor.sample_frames
//    (round(fps·duration) capped at video_sampling.max_frames, 1 s skipped at
//    both ends of long videos, linspace indices), resized so the longest edge is
//    video_sampling.video_size.longest_edge (even short edge), then to the square
//    max_image_size.longest_edge; rescaled, normalized. The prompt gets, per
//    video, "You are provided the following series of {n in words} frames from
//    a {H:MM:SS} [H:MM:SS] video.\n", then per frame "\nFrame from {MM:SS}:"
//    <fake_token_around_image><global-img><image>×k<fake_token_around_image>,
//    then "\n\n".
//  LLaVA: every frame is an image: shortest edge resized to size.shortest_edge,
//    center crop to crop_size, rescale, normalize; one "<image>" per frame, each
//    expanded to the image's visual-token count (LlavaProcessor's expansion).
//
// Resizing is the antialiased separable resampling of PIL / torchvision
// (bicubic a = −0.5 or bilinear, support widened by the downscale factor, each
// pass rounded to uint8 as the uint8 path does); torchvision's uint8 kernels
// use fixed-point weights, so a pixel can differ from theirs by one level.
// Options these processors have that are not honoured are an
// UnsupportedConfigError naming the field. Cost: O(F·H·W) per pass.
import { describe, rangeError, typeError } from '../errors.js';
import { tensor, type Tensor } from '../tensor.js';
import { UnsupportedConfigError } from './config.js';
import type { VlmSpec } from './vlm-config.js';

export interface ProcessedVideo {
  /** [n, 3, S, S] float32, normalized. */
  pixelValues: Tensor;
  /** Indices of the sampled frames. */
  indices: number[];
  /** Seconds of each sampled frame. */
  timestamps: number[];
  /** The video's duration in seconds. */
  duration: number;
}

export interface VideoOptions {
  /** Frame rate of the given frames (default 1: frame i is at i seconds). */
  fps?: number;
}

type Json = Record<string, unknown>;

function cubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

const triangle = (x: number) => Math.max(0, 1 - Math.abs(x));

/** PIL's resampling coefficients of one axis: per output index, the first input index and normalized weights. */
function coefficients(inSize: number, outSize: number, kind: 'bicubic' | 'bilinear'): { start: Int32Array; weights: Float64Array[] } {
  const scale = inSize / outSize;
  const fs = Math.max(scale, 1);
  const support = (kind === 'bicubic' ? 2 : 1) * fs;
  const f = kind === 'bicubic' ? cubic : triangle;
  const start = new Int32Array(outSize);
  const weights: Float64Array[] = [];
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
    const w = new Float64Array(xmax - xmin);
    let sum = 0;
    for (let j = 0; j < w.length; j++) sum += w[j] = f((j + xmin - center + 0.5) / fs);
    if (sum !== 0) for (let j = 0; j < w.length; j++) w[j] /= sum;
    start[i] = xmin;
    weights.push(w);
  }
  return { start, weights };
}

const clip8 = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** Antialiased resize of one uint8 HWC image (C channels), horizontal then vertical pass, each rounded to uint8. */
export function resizeU8(src: Uint8Array, H: number, W: number, C: number, outH: number, outW: number, kind: 'bicubic' | 'bilinear'): Uint8Array {
  let cur = src, curW = W;
  if (outW !== W) {
    const { start, weights } = coefficients(W, outW, kind);
    const out = new Uint8Array(H * outW * C);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < outW; x++) {
        const w = weights[x];
        for (let c = 0; c < C; c++) {
          let s = 0;
          for (let j = 0; j < w.length; j++) s += w[j] * cur[(y * curW + start[x] + j) * C + c];
          out[(y * outW + x) * C + c] = clip8(s);
        }
      }
    cur = out;
    curW = outW;
  }
  if (outH !== H) {
    const { start, weights } = coefficients(H, outH, kind);
    const out = new Uint8Array(outH * curW * C);
    for (let y = 0; y < outH; y++) {
      const w = weights[y];
      for (let x = 0; x < curW; x++)
        for (let c = 0; c < C; c++) {
          let s = 0;
          for (let j = 0; j < w.length; j++) s += w[j] * cur[((start[y] + j) * curW + x) * C + c];
          out[(y * curW + x) * C + c] = clip8(s);
        }
    }
    cur = out;
  }
  return cur === src ? src.slice() : cur;
}

const ONES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen', 'sixteen', 'seventeen', 'eighteen', 'nineteen'];
const TENS = ['', '', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety'];

/** An integer 0…999 in English words, as num2words writes it ("twenty-one", "one hundred and five"). */
export function numberWords(n: number): string {
  if (n < 20) return ONES[n];
  if (n < 100) return TENS[Math.floor(n / 10)] + (n % 10 ? `-${ONES[n % 10]}` : '');
  const rest = n % 100;
  return `${ONES[Math.floor(n / 100)]} hundred${rest ? ` and ${numberWords(rest)}` : ''}`;
}

function num(pp: Json, path: string, dflt?: number): number {
  const v = path.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Json)[k] : undefined), pp);
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new UnsupportedConfigError('preprocessor_config.json', path, v, 'required');
    return dflt;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new UnsupportedConfigError('preprocessor_config.json', path, v, 'must be a number');
  return v;
}

function triple(pp: Json, key: string, dflt: number[]): number[] {
  const v = pp[key] ?? dflt;
  const arr = typeof v === 'number' ? [v, v, v] : v;
  if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x)))
    throw new UnsupportedConfigError('preprocessor_config.json', key, v, 'must be a number or three numbers');
  if (key === 'image_std' && arr.some((x) => x === 0)) throw new UnsupportedConfigError('preprocessor_config.json', key, v, 'must not be 0');
  return arr as number[];
}

function resampleKind(pp: Json): 'bicubic' | 'bilinear' {
  const r = pp.resample ?? 3;
  // PIL codes: 1 LANCZOS (the SmolVLM video processor runs BICUBIC for it), 2 BILINEAR, 3 BICUBIC.
  if (r === 1 || r === 3) return 'bicubic';
  if (r === 2) return 'bilinear';
  throw new UnsupportedConfigError('preprocessor_config.json', 'resample', r, 'implemented: 1 (LANCZOS, run as BICUBIC as SmolVLM\'s video processor does), 2 (BILINEAR), 3 (BICUBIC)');
}

/** SmolVLMVideoProcessor.sample_frames over `total` frames at `fps`. */
export function smolvlmFrameIndices(total: number, fps: number, targetFps: number, maxFrames: number, skipSecs = 1): number[] {
  const duration = total / fps;
  let desired = Math.min(Math.round(targetFps * duration), maxFrames);
  if (desired < 1) desired = 1;
  let start = 0, end = total - 1;
  if (skipSecs > 0 && duration - 2 * skipSecs > maxFrames * targetFps) {
    start = Math.trunc(skipSecs * fps);
    end = Math.trunc(total - skipSecs * fps);
  }
  start = Math.max(0, start);
  end = Math.min(end, total - 1);
  if (start >= end) [start, end] = [0, total - 1];
  const out = new Set<number>();
  // numpy.linspace(start, end, desired, dtype=int): i·step + start, the last exactly `end`, truncated.
  const step = desired > 1 ? (end - start) / (desired - 1) : 0;
  for (let i = 0; i < desired; i++) out.add(Math.trunc(desired > 1 && i === desired - 1 ? end : i * step + start));
  return [...out].sort((a, b) => a - b);
}

/**
 * A video: uint8 RGB [F, H, W, 3] as `{ data: Uint8Array, shape }` (what
 * vp.readNpy returns for a uint8 .npy) or `{ frames, shape, sourceFps? }` (what
 * vp.decodeVideo returns; its frame rate is then the default `fps`).
 */
export function checkVideo(fn: string, arg: string, v: unknown): { data: Uint8Array; F: number; H: number; W: number; fps?: number } {
  const o = v as { data?: unknown; frames?: unknown; shape?: unknown; sourceFps?: unknown } | null;
  const data = o && typeof o === 'object' ? (o.data ?? o.frames) : undefined;
  if (!(data instanceof Uint8Array) || !Array.isArray(o!.shape))
    throw typeError(fn, arg, 'a uint8 video { data: Uint8Array, shape: [frames, height, width, 3] } (vp.readNpy) or { frames, shape } (vp.decodeVideo)', describe(v));
  const shape = o!.shape as unknown[];
  if (shape.length !== 4 || shape[3] !== 3 || !shape.every((x) => Number.isSafeInteger(x) && (x as number) >= 1))
    throw rangeError(fn, `${arg}.shape`, '[frames, height, width, 3] (positive integers)', JSON.stringify(shape));
  const [F, H, W] = shape as number[];
  if (data.length !== F * H * W * 3) throw rangeError(fn, `${arg}.data.length`, `${F * H * W * 3} (the shape's size)`, `${data.length}`);
  const fps = typeof o!.sourceFps === 'number' && o!.sourceFps > 0 ? o!.sourceFps : undefined;
  return { data, F, H, W, fps };
}

/** How a family's processor rescales and normalizes (preprocessor_config.json), and its resampling filter. */
export interface PixelSettings {
  kind: 'bicubic' | 'bilinear';
  /** Per channel: value = (fround(u8 · scale) − mean) / std. */
  scale: number;
  mean: number[];
  std: number[];
}

/** The rescale / normalize settings of a folder's processor (defaults: each family's). */
export function pixelSettings(vlm: VlmSpec, pp: Json): PixelSettings {
  const kind = resampleKind(pp);
  const doRescale = pp.do_rescale ?? true, doNormalize = pp.do_normalize ?? true;
  const factor = num(pp, 'rescale_factor', 1 / 255);
  const mean = triple(pp, 'image_mean', vlm.family === 'llava' ? [0.48145466, 0.4578275, 0.40821073] : [0.5, 0.5, 0.5]);
  const std = triple(pp, 'image_std', vlm.family === 'llava' ? [0.26862954, 0.26130258, 0.27577711] : [0.5, 0.5, 0.5]);
  return { kind, scale: doRescale ? factor : 1, mean: doNormalize ? mean : [0, 0, 0], std: doNormalize ? std : [1, 1, 1] };
}

/** uint8 HWC images of side × side as pixel values [n, 3, side, side] (rescaled, normalized). */
export function toPixelValues(images: readonly Uint8Array[], side: number, st: PixelSettings): Tensor {
  const px = new Float32Array(images.length * 3 * side * side);
  images.forEach((fr, k) => {
    for (let c = 0; c < 3; c++) {
      const m = st.mean[c], s = st.std[c];
      const o = (k * 3 + c) * side * side;
      for (let i = 0; i < side * side; i++) px[o + i] = (Math.fround(fr[i * 3 + c] * st.scale) - m) / s;
    }
  });
  return tensor(px, [images.length, 3, side, side]);
}

/** The size an Idefics3 / SmolVLM processor resizes H × W to so that its longest edge is `longest` (the short edge rounded up to even). */
export function longestEdgeSize(H: number, W: number, longest: number): [number, number] {
  let h1: number, w1: number;
  const ar = W / H;
  if (W >= H) {
    w1 = longest;
    h1 = Math.trunc(w1 / ar);
    if (h1 % 2) h1++;
  } else {
    h1 = longest;
    w1 = Math.trunc(h1 * ar);
    if (w1 % 2) w1++;
  }
  return [Math.max(h1, 1), Math.max(w1, 1)];
}

/** The square side of an Idefics3 / SmolVLM tile (max_image_size.longest_edge), checked against the tower. */
export function idefics3Side(vlm: VlmSpec, pp: Json): number {
  const side = num(pp, 'max_image_size.longest_edge', vlm.vision.imageSize);
  if (side % (vlm.vision.patch * vlm.scaleFactor) !== 0)
    throw new UnsupportedConfigError('preprocessor_config.json', 'max_image_size.longest_edge', side, `must be a multiple of patch_size × scale_factor = ${vlm.vision.patch * vlm.scaleFactor}`);
  return side;
}

/** LLaVA's (CLIPImageProcessor's) image of an H × W frame: shortest edge to size.shortest_edge, center crop to the tower's image_size. */
export function llavaImagePlan(vlm: VlmSpec, pp: Json, H: number, W: number, kind: PixelSettings['kind']): (frame: Uint8Array) => Uint8Array {
  if (pp.image_grid_pinpoints !== undefined) throw new UnsupportedConfigError('preprocessor_config.json', 'image_grid_pinpoints', pp.image_grid_pinpoints, 'LLaVA-NeXT any-resolution tiling is not implemented');
  const S = vlm.vision.imageSize;
  const shortest = num(pp, 'size.shortest_edge', S);
  const doCrop = pp.do_center_crop ?? true;
  const ch = num(pp, 'crop_size.height', S), cw = num(pp, 'crop_size.width', S);
  if (!doCrop || ch !== S || cw !== S) throw new UnsupportedConfigError('preprocessor_config.json', 'crop_size', pp.crop_size, `frames must come out at vision_config.image_size = ${S} (center crop to ${S} × ${S})`);
  // Shortest edge to `shortest` (the long edge as int(long·shortest/short)), then a center crop.
  const short = Math.min(H, W), long = Math.max(H, W);
  const newLong = Math.trunc((long * shortest) / short);
  const [h1, w1] = H <= W ? [shortest, newLong] : [newLong, shortest];
  if (h1 < S || w1 < S) throw new UnsupportedConfigError('preprocessor_config.json', 'size.shortest_edge', shortest, `must be at least the crop size ${S}`);
  const top = Math.trunc((h1 - S) / 2), left = Math.trunc((w1 - S) / 2);
  return (fr) => {
    const r = resizeU8(fr, H, W, 3, h1, w1, kind);
    const out = new Uint8Array(S * S * 3);
    for (let y = 0; y < S; y++) out.set(r.subarray(((top + y) * w1 + left) * 3, ((top + y) * w1 + left + S) * 3), y * S * 3);
    return out;
  };
}

/** Processes a video as the family's processor does (see the file comment). */
export function processVideo(fn: string, vlm: VlmSpec, pp: Json | undefined, video: unknown, opts: VideoOptions = {}): ProcessedVideo {
  if (!pp) throw new Error(`${fn}: the folder has no preprocessor_config.json, which says how to resize and normalize frames`);
  const { data, F, H, W, fps: ownFps } = checkVideo(fn, 'opts.video', video);
  const fps = opts.fps ?? ownFps ?? 1;
  if (!(typeof fps === 'number' && fps > 0 && Number.isFinite(fps))) throw rangeError(fn, 'opts.fps', 'a positive frame rate', describe(fps));
  const st = pixelSettings(vlm, pp);
  const kind = st.kind;
  const S = vlm.vision.imageSize;
  let indices: number[];
  let plan: (frame: Uint8Array) => Uint8Array;
  let side: number;
  if (vlm.family === 'idefics3') {
    const vs = (pp.video_sampling ?? {}) as Json;
    const maxFrames = num(vs, 'max_frames', 64);
    const targetFps = num(vs, 'fps', 1);
    const sample = pp.do_sample_frames === true || F > maxFrames;
    indices = sample ? smolvlmFrameIndices(F, fps, targetFps, maxFrames) : Array.from({ length: F }, (_, i) => i);
    const longest = num(vs, 'video_size.longest_edge', num(pp, 'size.longest_edge', 4 * S));
    side = idefics3Side(vlm, pp);
    const doResize = pp.do_resize ?? true;
    if (!doResize && (H !== side || W !== side)) throw rangeError(fn, 'opts.video.shape', `${side} × ${side} frames (do_resize is false)`, `${H} × ${W}`);
    // The longest edge to `longest` (short edge rounded up to even), then the square.
    const [h1, w1] = longestEdgeSize(H, W, longest);
    plan = (fr) => (doResize ? resizeU8(resizeU8(fr, H, W, 3, h1, w1, kind), h1, w1, 3, side, side, kind) : fr);
  } else {
    indices = Array.from({ length: F }, (_, i) => i);
    side = S;
    plan = llavaImagePlan(vlm, pp, H, W, kind);
  }
  const frameSize = H * W * 3;
  const frames = indices.map((fi) => plan(data.subarray(fi * frameSize, (fi + 1) * frameSize)));
  return { pixelValues: toPixelValues(frames, side, st), indices, timestamps: indices.map((i) => i / fps), duration: F / fps };
}

/** The text that stands for a processed video in the prompt (see the file comment), given the visual tokens per frame. */
export function videoPromptText(vlm: VlmSpec, v: ProcessedVideo, tokensPerFrame: number): string {
  if (vlm.family === 'llava') return '<image>'.repeat(v.indices.length);
  const two = (x: number) => String(x).padStart(2, '0');
  const d = Math.trunc(v.duration);
  let s = `You are provided the following series of ${numberWords(v.indices.length)} frames from a ${Math.floor(d / 3600)}:${two(Math.floor((d % 3600) / 60))}:${two(d % 60)} [H:MM:SS] video.\n`;
  for (const t of v.timestamps) {
    s += `\nFrame from ${two(Math.trunc(t / 60))}:${two(Math.trunc(t % 60))}:`;
    s += `<fake_token_around_image><global-img>${'<image>'.repeat(tokensPerFrame)}<fake_token_around_image>`;
  }
  return `${s}\n\n`;
}
