// Data-parallel training on MPI (CPU), two measurements (docs/distributed.md):
//
//  1. all-reduce of a model's flat gradient buffer (VideoLM.allReduceGradients,
//     2 ranks under mpirun, Open MPI over shared memory) against one copy of the
//     same buffer (Float32Array.set: the memory traffic the sum cannot avoid);
//     the bus bandwidth is 2·(N−1)/N · bytes / time (what each rank moves).
//  2. SFT step time (vp.Trainer, tiny preset) of 2 ranks against 1 process at
//     the same per-rank batch: the scaling efficiency t(1) / t(2) (1: the
//     second rank's work is free; the all-reduce and the gathers cost the rest).
//
// One CPU thread per rank (VP_NUM_THREADS=1), so that 2 ranks use the 2 cores
// 1 process leaves idle. Each 2-rank case runs twice: with Open MPI's default
// busy polling while a rank waits, and with mpi_yield_when_idle=1 (a waiting
// rank yields its core: better when the ranks share cores with other work). Usage (from a checkout, Open MPI installed):
//   node --import=tsx bench/distributed.ts [--quick] [--save]
// --save writes bench/results/distributed-<date>-<machine>.json, which
// bench/report.ts renders into docs/benchmarks.md. The parent runs itself under
// mpirun with --worker <what> for each measurement.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as vp from '../lib/index.js';
import { barrier } from '../lib/distributed.js';
import { benchDir, machineInfo, timeIt } from './harness.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const worker = args.includes('--worker') ? args[args.indexOf('--worker') + 1] : undefined;
const arg = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Rank 0 prints one JSON line (prefixed, to be found among mpirun's output). */
function emit(o: unknown): void {
  if (vp.distributedInfo().rank === 0) console.log(`@@ ${JSON.stringify(o)}`);
}

async function allreduceWorker(): Promise<void> {
  const info = vp.distributedInfo();
  for (const preset of (quick ? ['tiny'] : ['tiny', 'small']) as vp.VideoLMPreset[]) {
    const model = await vp.VideoLM.create({ preset, seed: 1 });
    const n = model.numParams;
    await model.allReduceGradients(); // allocates the buffer, warms the engine
    await barrier();
    const reps = preset === 'tiny' ? 30 : 8;
    const ar = await timeIt(() => model.allReduceGradients(), { warmup: 2, reps, minMs: 0 });
    const src = model.getBuffer('params');
    const dst = new Float32Array(n);
    dst.set(src);
    const copy = await timeIt(() => dst.set(src), { warmup: 2, reps: Math.max(reps, 10), minMs: 0 });
    const bytes = n * 4;
    emit({
      what: 'allreduce', preset, params: n, MB: bytes / 2 ** 20, ranks: info.worldSize, backend: info.backend,
      allreduceMs: ar.medianMs, allreduceMinMs: ar.minMs, copyMs: copy.medianMs,
      busGBs: (2 * (info.worldSize - 1) / info.worldSize) * bytes / (ar.medianMs * 1e6), copyGBs: (2 * bytes) / (copy.medianMs * 1e6),
    });
    model.dispose();
  }
}

async function stepWorker(): Promise<void> {
  const info = vp.distributedInfo();
  const data = arg('--data', '');
  const batch = Number(arg('--batch', '4'));
  const steps = Number(arg('--steps', '12'));
  const ds = vp.openDataset(data);
  const model = await vp.VideoLM.create({ preset: 'tiny', tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 1 });
  const times: number[] = [];
  let last = performance.now();
  const trainer = new vp.Trainer(model, {
    seed: 0,
    onStep: (e) => {
      if (e.type !== 'step') return;
      const now = performance.now();
      times.push(now - last);
      last = now;
    },
  });
  await barrier();
  last = performance.now();
  await trainer.sft(ds, { steps, batchSize: batch * info.worldSize, lr: 1e-3 });
  emit({ what: 'step', ranks: info.worldSize, perRankBatch: batch, globalBatch: batch * info.worldSize, stepMs: median(times.slice(2)), steps: times.length - 2 });
}

function run(np: number, extra: string[], env: Record<string, string> = {}): Record<string, unknown>[] {
  const node = [process.execPath, '--import=tsx', join(benchDir, 'distributed.ts'), ...extra, ...(quick ? ['--quick'] : [])];
  const [cmd, ...argv] = np === 0 ? node : ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', String(np), ...node];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, VP_NUM_THREADS: '1', ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (exit ${r.status}): ${(r.stderr ?? '').slice(-1500)}`);
  return r.stdout.split('\n').filter((l) => l.startsWith('@@ ')).map((l) => JSON.parse(l.slice(3)));
}

async function main(): Promise<void> {
  if (worker === 'allreduce') return allreduceWorker();
  if (worker === 'step') return stepWorker();
  const load0 = loadavg()[0];
  const rows: Record<string, unknown>[] = [];
  const waits: [string, Record<string, string>][] = [['poll', { OMPI_MCA_mpi_yield_when_idle: '0' }], ['yield', { OMPI_MCA_mpi_yield_when_idle: '1' }]];
  for (const [wait, env] of waits) for (const r of run(2, ['--worker', 'allreduce'], env).map((x): Record<string, unknown> => ({ ...x, wait }))) {
    rows.push(r);
    console.log(`all-reduce ${String(r.preset).padEnd(6)} ${(r.params as number / 1e6).toFixed(2)} M floats (${(r.MB as number).toFixed(1)} MB), 2 ranks, ${wait}: ` +
      `${(r.allreduceMs as number).toFixed(2)} ms (bus ${(r.busGBs as number).toFixed(2)} GB/s); one copy ${(r.copyMs as number).toFixed(2)} ms; ` +
      `all-reduce / copy ${((r.allreduceMs as number) / (r.copyMs as number)).toFixed(2)}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-dist-'));
  try {
    const data = join(dir, 'data');
    vp.synthDataset(data, { count: 32, seed: 2, frames: 8, size: 32, fps: 4 });
    const perRank = 4;
    const steps = quick ? '8' : '14';
    const [one] = run(0, ['--worker', 'step', '--data', data, '--batch', String(perRank), '--steps', steps]);
    rows.push({ ...one, wait: 'n/a' });
    for (const [wait, env] of waits) {
      const [two] = run(2, ['--worker', 'step', '--data', data, '--batch', String(perRank), '--steps', steps], env);
      const eff = (one.stepMs as number) / (two.stepMs as number);
      rows.push({ ...two, wait }, { what: 'scaling', perRankBatch: perRank, wait, efficiency: eff });
      console.log(`SFT step, tiny preset, ${perRank} clips per rank: 1 process ${(one.stepMs as number).toFixed(1)} ms, 2 ranks (${wait}) ${(two.stepMs as number).toFixed(1)} ms ` +
        `(global batch ${two.globalBatch}); scaling efficiency t1/t2 = ${eff.toFixed(2)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const load1 = loadavg()[0];
  const mpi = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const record = { date: new Date().toISOString(), command: `node --import=tsx bench/distributed.ts ${args.join(' ')}`.trim(), machine: { ...machineInfo(), mpi, loadAverage: [load0, load1].map((x) => +x.toFixed(1)) }, results: rows };
  console.log(JSON.stringify(record));
  if (args.includes('--save')) {
    const m = record.machine as Record<string, unknown>;
    const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40);
    const path = join(benchDir, 'results', `distributed-${record.date.slice(0, 10)}-${slug(String(m.cpu))}-${m.cores}c.json`);
    mkdirSync(join(benchDir, 'results'), { recursive: true });
    writeFileSync(path, JSON.stringify(record, null, 1) + '\n');
    console.log(`saved ${path}; node --import=tsx bench/report.ts <the main run's json> re-renders docs/benchmarks.md with it`);
  }
}

// Only when run directly (bench/run.ts imports every bench/*.ts to look for a run() export).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
