// Data-parallel training of a PretrainedModel (docs/distributed.md):
// the two collectives the Trainer needs from a model, over its parameter
// tensors (lib/pretrained/decoder.ts Param), as VideoLM does over its native
// flat buffers.
//
//   allReduceGradients: the gradients of the trained parameters (every one
//     in full fine-tuning, the LoRA adapters alone otherwise; in a fixed
//     order) are packed into one flat float32 host buffer, zeros where a
//     parameter got no gradient on this rank (so every rank sums the same
//     layout), summed over the ranks in one in-place all-reduce, and
//     unpacked. CUDA gradients go through this host buffer too (MPI, or NCCL
//     through its staging copy).
//   broadcastState: first the ranks agree that they hold the same model (a
//     hash of every tensor's name, size, dtype and trained flag, compared
//     with the root's); then the trained parameters, their AdamW moments
//     (present on the root or not), their "changed since loading" flags and
//     the step go from the root to every rank; the frozen tensors (the base
//     model under LoRA) are fingerprinted on each rank and broadcast only
//     where some rank's fingerprint differs from the root's.
//
// Cost per optimizer step: two copies of the trained parameters' gradients
// (in and out of the flat buffer, which is kept between steps) and one
// all-reduce of it. Per stage start: one broadcast of the trained
// parameters and their moments, one pass over the frozen weights to hash
// them, a few collectives of a handful of numbers.
import { allReduceSum, broadcast } from '../distributed.js';
import { tensor, type Tensor } from '../tensor.js';
import { hostF32, onDevice, zerosOn } from './device.js';
import type { Param } from './decoder.js';

/** FNV-1a over a string: the ranks' model signatures compared. */
function hashString(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/** A 32-bit fingerprint of a tensor's bytes (its 16- or 32-bit words, FNV-1a style). */
function fingerprint(t: Tensor, h: number): number {
  const host = t.device === 'cuda' ? t.to('cpu') : t;
  const d = host.data as ArrayBufferView;
  const words = d.byteLength % 4 === 0 ? new Int32Array(d.buffer, d.byteOffset, d.byteLength / 4) : new Uint16Array(d.buffer, d.byteOffset, d.byteLength / 2);
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return h >>> 0;
}

/** True on every rank when `local` differs from the root's value on some rank. */
async function differsAnywhere(local: number, root: number): Promise<boolean> {
  const theirs = (await broadcast(Float64Array.of(local), root))[0];
  return (await allReduceSum(Float64Array.of(theirs === local ? 0 : 1)))[0] > 0;
}

/** A tensor's values from the root, in place (a CUDA tensor through a host copy, replaced). */
async function broadcastTensor(t: Tensor, root: number): Promise<Tensor> {
  if (t.device !== 'cuda') {
    await broadcast(t.data as ArrayBufferView, root);
    return t;
  }
  const host = t.to('cpu');
  await broadcast(host.data as ArrayBufferView, root);
  const back = host.to('cuda');
  t.dispose();
  return back;
}

/**
 * Sums the trained parameters' gradients over the ranks through one flat
 * buffer (`scratch` is reused when it has the right size); returns the buffer.
 */
export async function allReduceParamGradients(trained: readonly Param[], scratch?: Float32Array): Promise<Float32Array> {
  let n = 0;
  for (const p of trained) n += p.value.size;
  const flat = scratch?.length === n ? scratch : new Float32Array(n);
  let o = 0;
  for (const p of trained) {
    const k = p.value.size;
    if (p.grad) flat.set(hostF32(p.grad), o);
    else flat.fill(0, o, o + k);
    o += k;
  }
  await allReduceSum(flat);
  o = 0;
  for (const p of trained) {
    const k = p.value.size;
    const part = flat.subarray(o, o + k);
    if (p.value.device === 'cuda') {
      const old = p.grad;
      p.grad = onDevice(part.slice(), [...p.shape], 'cuda');
      old?.dispose();
    } else if (p.grad) (p.grad.data as Float32Array).set(part);
    else p.grad = tensor(part.slice(), [...p.shape]);
    o += k;
  }
  return flat;
}

/**
 * Makes every rank's parameters, AdamW moments and step the root's (see the
 * file's comment). Throws on every rank, naming `fn`, when the ranks hold
 * different models. Returns the root's step.
 */
export async function broadcastParamState(fn: string, params: readonly Param[], step: number, root: number): Promise<number> {
  const signature = hashString(params.map((p) => `${p.name}:${p.value.size}:${p.value.dtype}:${p.trainable ? 1 : 0}`).join('|'));
  if (await differsAnywhere(signature, root))
    throw new Error(`${fn}: the ranks hold different models (parameter names, sizes, dtypes or which of them train differ from rank ${root}'s): ` +
      'every rank must load the same folder with the same options and make the same addLora / loadAdapter / mergeLora / setVisionTrainable calls');
  // Which trained parameters have AdamW moments, and which were changed since loading, on the root.
  const trained = params.filter((p) => p.trainable);
  const flags = await broadcast(Uint8Array.from(trained, (p) => (p.m && p.v ? 1 : 0) | (p.touched ? 2 : 0)), root);
  for (let i = 0; i < trained.length; i++) {
    const p = trained[i];
    p.value = await broadcastTensor(p.value, root);
    p.touched = (flags[i] & 2) !== 0;
    if (flags[i] & 1) {
      p.m = await broadcastTensor(p.m ?? zerosOn([...p.shape], p.value.device), root);
      p.v = await broadcastTensor(p.v ?? zerosOn([...p.shape], p.value.device), root);
    } else {
      p.m?.dispose();
      p.v?.dispose();
      p.m = p.v = undefined;
    }
  }
  // Frozen tensors: sent only when some rank's bytes differ from the root's.
  const frozen = params.filter((p) => !p.trainable);
  let h = 0x811c9dc5;
  for (const p of frozen) h = fingerprint(p.value, h);
  if (await differsAnywhere(h, root)) for (const p of frozen) p.value = await broadcastTensor(p.value, root);
  return (await broadcast(Float64Array.of(step), root))[0];
}
