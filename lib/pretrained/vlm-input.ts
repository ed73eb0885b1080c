// The visual input of a vision-language PretrainedModel at the model level
// (transformers' forward(input_ids, pixel_values)): checks pixel values
// against the tower, drops Idefics3/SmolVLM padding images (all zeros, as
// get_image_features does), and puts the visual features in place of the
// image-token embeddings in order — a count mismatch is a RangeError that
// names both counts. Cost: O(pixels + T·d).
import { describe, rangeError, typeError } from '../errors.js';
import { Tensor, tensor } from '../tensor.js';
import type { VlmSpec } from './vlm-config.js';
import { scatterAddRows, zerosOn } from './device.js';

export interface VisualInput {
  /** [T, d]: the visual features at the replaced rows (other rows unused). */
  embeds: Tensor;
  /** 1 where a row is a visual token. */
  replaced: Uint8Array;
  /** The rows that hold visual tokens, in order. */
  rows: Int32Array;
}

/** Checked pixel values [n, C, H, W] (a leading batch of 1 accepted), padding images dropped for Idefics3 / SmolVLM. */
export function checkPixelValues(fn: string, arg: string, v: unknown, vlm: VlmSpec): { data: Float32Array; n: number; H: number; W: number } {
  const vs = vlm.vision;
  if (!(v instanceof Tensor)) throw typeError(fn, arg, `a float32 CPU tensor [nImages, ${vs.channels}, H, W]`, describe(v));
  if (v.dtype !== 'float32' || v.device !== 'cpu') throw typeError(fn, arg, 'a float32 CPU tensor', `${v.dtype} on ${v.device}`);
  let shape = [...v.shape];
  if (shape.length === 5 && shape[0] === 1) shape = shape.slice(1);
  if (shape.length !== 4) throw rangeError(fn, `${arg}.shape`, `[nImages, ${vs.channels}, H, W]`, `[${v.shape.join(', ')}]`);
  const [n0, C, H, W] = shape;
  if (n0 < 1) throw rangeError(fn, `${arg}.shape[0]`, 'at least one image', `${n0}`);
  if (C !== vs.channels) throw rangeError(fn, `${arg}.shape[1]`, `${vs.channels} channels (vision_config.num_channels)`, `${C}`);
  const p = vs.patch;
  if (vs.kind === 'navit') {
    if (H !== W || H % p !== 0 || (H / p) % vlm.scaleFactor !== 0)
      throw rangeError(fn, `${arg}.shape`, `square images whose side is a multiple of patch_size × scale_factor = ${p * vlm.scaleFactor} (the processor's tiles are ${vs.imageSize})`, `[${v.shape.join(', ')}]`);
  } else if (H !== vs.imageSize || W !== vs.imageSize)
    throw rangeError(fn, `${arg}.shape`, `images of vision_config.image_size = ${vs.imageSize} (position interpolation is not implemented)`, `${H} × ${W}`);
  const src = v.data as Float32Array;
  for (let i = 0; i < src.length; i++) if (!Number.isFinite(src[i])) throw rangeError(fn, arg, 'finite values', `${src[i]} at index ${i}`);
  const per = C * H * W;
  if (vlm.family !== 'idefics3') return { data: src, n: n0, H, W };
  const keep: number[] = [];
  for (let i = 0; i < n0; i++) {
    let zero = true;
    for (let j = i * per; j < (i + 1) * per && zero; j++) if (src[j] !== 0) zero = false;
    if (!zero) keep.push(i);
  }
  if (keep.length === 0) keep.push(0);
  if (keep.length === n0) return { data: src, n: n0, H, W };
  const data = new Float32Array(keep.length * per);
  keep.forEach((i, k) => data.set(src.subarray(i * per, (i + 1) * per), k * per));
  return { data, n: keep.length, H, W };
}

/** Places features [nFeat, d] at the image-token rows of `ids`, in order. */
export function mergeVisual(fn: string, ids: Int32Array, vlm: VlmSpec, features: Tensor, d: number): VisualInput {
  const rows: number[] = [];
  for (let t = 0; t < ids.length; t++) if (ids[t] === vlm.imageTokenId) rows.push(t);
  const nFeat = features.shape[0];
  if (rows.length !== nFeat)
    throw rangeError(fn, 'ids', `${nFeat} image tokens (id ${vlm.imageTokenId}), one per visual feature of the pixel values`, `${rows.length}`);
  const T = ids.length;
  const replaced = new Uint8Array(T);
  if (features.device === 'cuda') {
    // On CUDA the features stay there: scattered into a zero [T, d] (the decoder reads only the replaced rows).
    const at = Int32Array.from(rows);
    const embeds = zerosOn([T, d], 'cuda');
    scatterAddRows(embeds, features, at);
    for (const t of rows) replaced[t] = 1;
    return { embeds, replaced, rows: at };
  }
  const embeds = new Float32Array(T * d);
  const f = features.data as Float32Array;
  rows.forEach((t, i) => {
    embeds.set(f.subarray(i * d, (i + 1) * d), t * d);
    replaced[t] = 1;
  });
  return { embeds: tensor(embeds, [T, d]), replaced, rows: Int32Array.from(rows) };
}
