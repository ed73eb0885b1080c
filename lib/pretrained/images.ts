// Still images of a vision-language PretrainedModel, as each family's image
// processor prepares them (transformers' Idefics3ImageProcessor /
// SmolVLMImageProcessor with their processors' prompt strings, and
// CLIPImageProcessor with LlavaProcessor), from uint8 RGB images [n, H, W, 3]:
//
//  SmolVLM / Idefics3: resized so the longest edge is size.longest_edge (the
//    short edge int-truncated, then rounded up to even; both capped at 4096);
//    without do_image_splitting, then to the square max_image_size.longest_edge
//    (prompt: <fake_token_around_image><global-img><image>×k<fake_token_around_image>);
//    with it, resized to multiples of max_image_size (resize_for_vision_encoder),
//    cut into rows × cols tiles of that size in row-major order, the global
//    image (the resized image squared to max_image_size) last (prompt: per tile
//    <fake_token_around_image><row_r_col_c><image>×k, "\n" after each row, then
//    "\n<fake_token_around_image><global-img><image>×k<fake_token_around_image>");
//    an image no larger than a tile is not split.
//  LLaVA: shortest edge to size.shortest_edge, center crop to crop_size; prompt
//    "<image>" expanded to the image's k visual tokens.
// Then rescale and normalize (lib/pretrained/video.ts). Resizing is the
// antialiased resampling of lib/pretrained/video.ts (LANCZOS runs as BICUBIC,
// as the fast image processors run it). Options not honoured are an
// UnsupportedConfigError naming the field. Cost: O(n·H·W) per resize pass plus
// the tiles' pixels.
import { describe, rangeError, typeError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { UnsupportedConfigError } from './config.js';
import { idefics3Side, llavaImagePlan, longestEdgeSize, pixelSettings, resizeU8, toPixelValues } from './video.js';
import type { VlmSpec } from './vlm-config.js';

type Json = Record<string, unknown>;

export interface ProcessedImages {
  /** [tiles, 3, S, S] float32: every image's tiles (SmolVLM's global image last), image after image. */
  pixelValues: Tensor;
  /** The text that stands for each image in the prompt, with its image tokens expanded. */
  prompts: string[];
  /** Tiles (pixel-value rows) of each image, and its split grid (0 × 0: not split). */
  tiles: number[];
  grid: [number, number][];
}

const MAX_IMAGE_SIZE = 4096;

/** uint8 RGB images [n, H, W, 3] as { data: Uint8Array, shape } (what vp.readNpy returns for a uint8 .npy). */
export function checkImages(fn: string, arg: string, v: unknown): { data: Uint8Array; n: number; H: number; W: number } {
  const { data, shape } = (v !== null && typeof v === 'object' ? v : {}) as { data?: unknown; shape?: unknown };
  if (!(data instanceof Uint8Array) || !Array.isArray(shape))
    throw typeError(fn, arg, 'uint8 RGB images { data: Uint8Array, shape: [nImages, height, width, 3] } (vp.readNpy)', describe(v));
  const s = shape.length === 3 ? [1, ...shape] : shape;
  if (s.length !== 4 || s[3] !== 3 || !s.every((x) => Number.isSafeInteger(x) && (x as number) >= 1))
    throw rangeError(fn, `${arg}.shape`, '[nImages, height, width, 3] or [height, width, 3] (positive integers)', JSON.stringify(shape));
  const [n, H, W] = s as number[];
  if (data.length !== n * H * W * 3) throw rangeError(fn, `${arg}.data.length`, `${n * H * W * 3} (the shape's size)`, `${data.length}`);
  return { data, n, H, W };
}

/** Idefics3's size with the longest edge at `longest`, then below 4096 (get_resize_output_image_size). */
function idefics3Size(H: number, W: number, longest: number): [number, number] {
  let [h, w] = longestEdgeSize(H, W, longest);
  const ar = w / h;
  if (w >= h && w > MAX_IMAGE_SIZE) [w, h] = [MAX_IMAGE_SIZE, Math.trunc(MAX_IMAGE_SIZE / ar)];
  else if (h > w && h > MAX_IMAGE_SIZE) [h, w] = [MAX_IMAGE_SIZE, Math.trunc(MAX_IMAGE_SIZE * ar)];
  return [Math.max(h, 1), Math.max(w, 1)];
}

/** resize_for_vision_encoder: both edges up to multiples of `m`, keeping the aspect ratio for the short one. */
function encoderSize(H: number, W: number, m: number): [number, number] {
  const ar = W / H;
  if (W >= H) {
    const w = Math.ceil(W / m) * m;
    return [Math.ceil(Math.trunc(w / ar) / m) * m, w];
  }
  const h = Math.ceil(H / m) * m;
  return [h, Math.ceil(Math.trunc(h * ar) / m) * m];
}

/** Processes images as the family's image processor does (see the file comment); `tokensPer(side)` is the visual tokens of a side × side image. */
export function processImages(fn: string, vlm: VlmSpec, pp: Json | undefined, images: unknown, tokensPer: (side: number) => number): ProcessedImages {
  if (!pp) throw new Error(`${fn}: the folder has no preprocessor_config.json, which says how to resize and normalize images`);
  const { data, n, H, W } = checkImages(fn, 'opts.images', images);
  const st = pixelSettings(vlm, pp);
  const size = H * W * 3;
  const out: Uint8Array[] = [];
  const prompts: string[] = [];
  const tiles: number[] = [];
  const grid: [number, number][] = [];
  let side: number;
  if (vlm.family === 'llava') {
    side = vlm.vision.imageSize;
    const plan = llavaImagePlan(vlm, pp, H, W, st.kind);
    const k = tokensPer(side);
    for (let i = 0; i < n; i++) {
      out.push(plan(data.subarray(i * size, (i + 1) * size)));
      prompts.push('<image>'.repeat(k));
      tiles.push(1);
      grid.push([0, 0]);
    }
    return { pixelValues: toPixelValues(out, side, st), prompts, tiles, grid };
  }
  side = idefics3Side(vlm, pp);
  const doResize = pp.do_resize ?? true;
  const split = pp.do_image_splitting ?? true;
  if (typeof split !== 'boolean') throw new UnsupportedConfigError('preprocessor_config.json', 'do_image_splitting', split, 'must be true or false');
  if (!doResize && (split || H !== side || W !== side))
    throw new UnsupportedConfigError('preprocessor_config.json', 'do_resize', pp.do_resize, `false is implemented for images of max_image_size.longest_edge = ${side} square without do_image_splitting`);
  const longest = num(pp, 'size', 'longest_edge', 4 * side);
  const k = tokensPer(side);
  const img = '<image>'.repeat(k);
  const single = `<fake_token_around_image><global-img>${img}<fake_token_around_image>`;
  for (let i = 0; i < n; i++) {
    let cur = data.subarray(i * size, (i + 1) * size) as Uint8Array;
    let h = H, w = W;
    if (doResize) {
      const [h1, w1] = idefics3Size(H, W, longest);
      cur = resizeU8(cur, h, w, 3, h1, w1, st.kind);
      [h, w] = [h1, w1];
    }
    if (!split) {
      out.push(h === side && w === side ? cur : resizeU8(cur, h, w, 3, side, side, st.kind));
      prompts.push(single);
      tiles.push(1);
      grid.push([0, 0]);
      continue;
    }
    const [h2, w2] = encoderSize(h, w, side);
    cur = resizeU8(cur, h, w, 3, h2, w2, st.kind);
    [h, w] = [h2, w2];
    if (h <= side && w <= side) {
      out.push(cur);
      prompts.push(single);
      tiles.push(1);
      grid.push([0, 0]);
      continue;
    }
    const rows = h / side, cols = w / side;
    let text = '';
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const tile = new Uint8Array(side * side * 3);
        for (let y = 0; y < side; y++) tile.set(cur.subarray(((r * side + y) * w + c * side) * 3, ((r * side + y) * w + (c + 1) * side) * 3), y * side * 3);
        out.push(tile);
        text += `<fake_token_around_image><row_${r + 1}_col_${c + 1}>${img}`;
      }
      text += '\n';
    }
    out.push(resizeU8(cur, h, w, 3, side, side, st.kind));
    prompts.push(`${text}\n${single}`);
    tiles.push(rows * cols + 1);
    grid.push([rows, cols]);
  }
  return { pixelValues: toPixelValues(out, side, st), prompts, tiles, grid };
}

function num(pp: Json, key: string, sub: string, dflt: number): number {
  const o = pp[key];
  const v = o !== null && typeof o === 'object' ? (o as Json)[sub] : undefined;
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new UnsupportedConfigError('preprocessor_config.json', `${key}.${sub}`, v, 'must be a positive integer');
  return v;
}
