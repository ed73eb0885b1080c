// A check of a training step's size against the machine's memory, made before
// anything is allocated: a batch size of a billion clips is refused with a
// RangeError that names the option, instead of the process dying inside V8 or
// the allocator. The estimate is a lower bound (the packed rows' hidden states
// at every layer, forward only), so a size it refuses cannot fit. O(1).
import os from 'node:os';
import { rangeError } from '../errors.js';
import { bytesText } from '../fs.js';
import type { VideoLMConfig } from '../model/videolm.js';

/** Visual tokens one clip puts in a sequence. */
export function clipTokens(cfg: VideoLMConfig): number {
  return cfg.frames * (cfg.imageSize / cfg.patchSize) ** 2;
}

/** Bytes the hidden states of `rows` packed rows take over all layers (a lower bound of a step's activations). */
export function activationBytes(cfg: VideoLMConfig, rows: number): number {
  return rows * cfg.width * 4 * (cfg.layers + 1);
}

/** Memory a step may use: the device's for a CUDA model, else the host's. */
export function memoryLimit(cudaBytes?: number): number {
  return cudaBytes ?? os.totalmem();
}

/**
 * Throws a RangeError naming `arg` when a step with `rows` packed rows cannot
 * fit in `limit` bytes.
 */
export function checkStepMemory(fn: string, arg: string, value: number, cfg: VideoLMConfig, rows: number, limit: number, what: string): void {
  const need = activationBytes(cfg, rows);
  if (!(need <= limit))
    throw rangeError(fn, arg, `small enough for one step to fit in memory (${what}: at least ${bytesText(need)} of activations; this machine has ${bytesText(limit)})`, `${value}`);
}
