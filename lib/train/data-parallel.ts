// The Trainer's data parallelism (docs/distributed.md): what a
// rank does differently from one process that trains on the whole batch.
//
//   shard:    every global batch (SFT clips of a micro-batch, RL prompts,
//             evaluation clips) is cut into contiguous, near-equal pieces in
//             rank order, so the ranks' pieces concatenated are the batch;
//   weights:  a loss that is a mean over tokens (or sequences) of the whole
//             batch is, on each rank, its own mean times its share of the
//             batch's tokens (sequences), so the sum over ranks of the
//             gradients is the one-process gradient;
//   reduce:   one in-place sum of the model's flat gradient buffer (MPI or
//             NCCL; a PretrainedModel packs its trained parameters' gradients
//             into one, lib/pretrained/data-parallel.ts), plus the
//             contrastive projections' gradients;
//   agree:    small float64 sums carry the counts, the metrics and the stop
//             flag, so every rank takes the same decisions;
//   write:    rank 0 alone writes metrics.jsonl, checkpoints and the model.
//
// Outside a launch (one rank) every method is the identity and the Trainer
// runs its single-process code unchanged.
import { allReduceSum, barrier, broadcast, gatherJson, gatherRows, isDistributed, requireEngine } from '../distributed.js';
import { rangeError } from '../errors.js';
import type { ContrastiveHead } from './contrastive.js';
import type { TrainableModel } from './model-io.js';

export class DataParallel {
  readonly rank: number;
  readonly size: number;
  /** Collectives run (a launch with an engine). */
  readonly active: boolean;

  private constructor(rank: number, size: number, active: boolean) {
    this.rank = rank;
    this.size = size;
    this.active = active;
  }

  /** The launch this process is part of; throws when it was launched but no engine came up. */
  static current(fn: string): DataParallel {
    const info = requireEngine(fn);
    const active = isDistributed();
    return active ? new DataParallel(info.rank, info.worldSize, true) : new DataParallel(0, 1, false);
  }

  /** Rank 0: the one that writes files. */
  get writer(): boolean {
    return this.rank === 0;
  }

  /** First index of this rank's piece of n items. */
  start(n: number, rank = this.rank): number {
    return Math.floor((rank * n) / this.size);
  }

  /** This rank's contiguous piece of `items`. */
  shard<T>(items: readonly T[]): T[] {
    return items.slice(this.start(items.length), this.start(items.length, this.rank + 1));
  }

  /** A batch option that is split across ranks must give each rank at least one item. */
  checkSplit(fn: string, arg: string, n: number): void {
    if (this.active && n < this.size) throw rangeError(fn, arg, `at least the number of ranks (${this.size}): each rank trains on its piece of the batch`, `${n}`);
  }

  /** Element-wise sums over the ranks (float64). */
  async sum(values: number[]): Promise<number[]> {
    if (!this.active) return values;
    return Array.from(await allReduceSum(Float64Array.from(values)));
  }

  /** True on every rank when it is true on any. */
  async any(flag: boolean): Promise<boolean> {
    if (!this.active) return flag;
    return (await this.sum([flag ? 1 : 0]))[0] > 0;
  }

  /** Every rank's rows (`width` floats each), in rank order; see lib/distributed.ts gatherRows. */
  gatherRows(local: Float32Array, width: number): Promise<{ all: Float32Array; offset: number; counts: number[] }> {
    return gatherRows(local, width);
  }

  gatherJson<T>(items: readonly T[]): Promise<T[]> {
    return gatherJson(items);
  }

  /** Every rank starts a stage from rank 0's model, optimizer state and contrastive projections. */
  async syncState(model: TrainableModel, head: ContrastiveHead): Promise<void> {
    if (!this.active) return;
    await model.broadcastState(0);
    for (const x of [head.params, head.m, head.v]) await broadcast(x, 0);
    head.step = (await broadcast(Float64Array.of(head.step), 0))[0];
  }

  /** Sums the model's gradients (and the projections', when given) over the ranks. */
  async reduceGradients(model: TrainableModel, head?: ContrastiveHead): Promise<void> {
    if (!this.active) return;
    await model.allReduceGradients();
    if (head) await allReduceSum(head.grads);
  }

  barrier(): Promise<void> {
    return this.active ? barrier() : Promise.resolve();
  }
}
