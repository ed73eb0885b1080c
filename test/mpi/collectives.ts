// One rank of test/distributed.test.ts's collectives check (run under mpirun):
// every rank sums seeded random arrays that every rank can regenerate, so each
// checks the result against a float64 sum of all ranks' inputs; then the
// gathers, a broadcast, a model's gradient all-reduce and state broadcast.
// Prints one JSON line with what it saw.
import * as vp from '../../lib/index.js';
import { allReduceSum, barrier, broadcast, gatherJson, gatherRows } from '../../lib/distributed.js';
import { randomFloats } from '../../lib/random.js';

const info = vp.distributedInfo();
const { rank, worldSize } = info;
const input = (r: number, n: number) => randomFloats(n, 1000 + r).map((x) => x * 2 - 1);

function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    if (Number.isNaN(out[i])) return Infinity;
    num += (out[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const result: Record<string, unknown> = { info };
// float32 sums of several sizes (one element, odd, and larger than one MPI eager message).
const errs: number[] = [];
for (const n of [1, 1001, 300_007]) {
  const x = Float32Array.from(input(rank, n));
  await allReduceSum(x);
  const ref = new Float64Array(n);
  for (let r = 0; r < worldSize; r++) input(r, n).forEach((v, i) => (ref[i] += Math.fround(v)));
  errs.push(relErr(x, ref));
}
result.float32RelErr = errs;
const d = Float64Array.of(rank + 0.25, 1e300 * (rank === 0 ? 1 : 0));
await allReduceSum(d);
result.float64 = Array.from(d);
const ints = Int32Array.of(rank + 1, -7);
await allReduceSum(ints);
result.int32 = Array.from(ints);
// Gathers: ranks hold different numbers of rows.
const mine = Float32Array.from({ length: (rank + 1) * 3 }, (_, i) => rank * 100 + i);
const g = await gatherRows(mine, 3);
result.gather = { all: Array.from(g.all), offset: g.offset, counts: g.counts };
result.gatherJson = await gatherJson([{ rank, text: `ünïcode ${'x'.repeat(rank * 5 + 1)}` }]);
const b = Float32Array.of(rank, rank, rank);
await broadcast(b, worldSize - 1);
result.broadcast = Array.from(b);
// A model: different seeds per rank; broadcastState makes them equal, then the
// gradient all-reduce equals the sum of each rank's own gradient.
const model = await vp.VideoLM.create({ imageSize: 16, patchSize: 8, frames: 2, width: 32, layers: 1, heads: 2, kvHeads: 1, mlpRatio: 2, vocab: 64, maxSeq: 64, tied: true, seed: 10 + rank });
await model.broadcastState(0);
const p0 = (await vp.VideoLM.create({ imageSize: 16, patchSize: 8, frames: 2, width: 32, layers: 1, heads: 2, kvHeads: 1, mlpRatio: 2, vocab: 64, maxSeq: 64, tied: true, seed: 10 })).getBuffer('params');
result.paramsFromRank0 = relErr(model.getBuffer('params'), p0) === 0;
const text = Int32Array.from({ length: 12 }, (_, i) => (i * 7 + rank * 3 + 5) % 64);
await model.forward({ text, sequences: [[{ text: [0, 12] }]] });
await model.backward();
const own = model.getBuffer('grads');
const all = new Float64Array(own.length);
// Every rank's own gradient, gathered through a float32 gather: the reference sum in float64.
const gathered = await gatherRows(own, own.length);
for (let r = 0; r < worldSize; r++) for (let i = 0; i < own.length; i++) all[i] += gathered.all[r * own.length + i];
await model.allReduceGradients();
result.gradRelErr = relErr(model.getBuffer('grads'), all);
await barrier();
console.log(JSON.stringify(result));
model.dispose();
