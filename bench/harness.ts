// The benchmark harness shared by every bench/<name>.ts: timing with warm-up and
// the median of several repetitions, PyTorch peers run as child processes on the
// same inputs (written to a temp file), one table and one JSON line per case.
//
// A bench module exports `run(ctx: BenchContext): Promise<void>` and reports each
// case with ctx.report(). Ratios are always ours vs the peer from the same run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { randomFloats } from '../lib/random.js';

export const benchDir = dirname(fileURLToPath(import.meta.url));
export const PYTHON = process.env.VP_BENCH_PYTHON ?? '/usr/bin/python3';

export interface Timing {
  medianMs: number;
  minMs: number;
  reps: number;
}

/** Times fn: `warmup` untimed calls, then at least `reps` timed ones (and at least `minMs` in total). */
export async function timeIt(fn: () => unknown | Promise<unknown>, opts: { warmup?: number; reps?: number; minMs?: number } = {}): Promise<Timing> {
  const warmup = opts.warmup ?? 2;
  const reps = opts.reps ?? 5;
  const minMs = opts.minMs ?? 200;
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < reps || (performance.now() - start < minMs && samples.length < 200)) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return { medianMs: samples[Math.floor(samples.length / 2)], minMs: samples[0], reps: samples.length };
}

export interface PeerResult {
  ok: boolean;
  /** Why the peer could not run (missing python3/torch, crashed). */
  missing?: string;
  medianMs?: number;
  minMs?: number;
  peakMB?: number;
  [key: string]: unknown;
}

/** Raw float32/int32 inputs shared with a peer through files in a temp folder. */
export class PeerInputs {
  readonly dir = mkdtempSync(join(tmpdir(), 'vp-bench-'));
  readonly specs: Record<string, { path: string; dtype: string; shape: number[] }> = {};
  add(name: string, data: Float32Array | Int32Array, shape: number[]): this {
    const path = join(this.dir, `${name}.bin`);
    writeFileSync(path, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.specs[name] = { path, dtype: data instanceof Float32Array ? 'float32' : 'int32', shape };
    return this;
  }
  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs bench/peers/<script> with a JSON spec on stdin; the script prints one JSON line last. */
export function runPeer(script: string, spec: Record<string, unknown>, threads: number): PeerResult {
  const r = spawnSync(PYTHON, [join(benchDir, 'peers', script)], {
    input: JSON.stringify({ ...spec, threads }),
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
  });
  if (r.error) return { ok: false, missing: `${PYTHON} could not be run (${r.error.message}); install Debian's python3-torch` };
  const lines = (r.stdout ?? '').trim().split('\n');
  const last = lines[lines.length - 1];
  if (r.status !== 0 || !last) {
    const err = (r.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    return { ok: false, missing: `peer ${script} failed (exit ${r.status}): ${err}` };
  }
  try {
    return { ok: true, ...(JSON.parse(last) as object) };
  } catch {
    return { ok: false, missing: `peer ${script} printed no JSON: ${last.slice(0, 200)}` };
  }
}

/** Linux: MemAvailable from /proc/meminfo in MB; undefined elsewhere. */
export function memAvailableMB(): number | undefined {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * runPeer for a peer that needs about `needMB` of memory (a memory row's PyTorch
 * composite, whose N×M or T×T buffers are the point of the comparison): when the
 * machine has less than that available, the peer is reported missing, saying so,
 * instead of being run into an out-of-memory kill.
 */
export function runPeerWithin(script: string, spec: Record<string, unknown>, threads: number, needMB: number, env: Record<string, string> = {}): PeerResult {
  const avail = memAvailableMB();
  if (avail !== undefined && avail < needMB) {
    return { ok: false, missing: `not run: PyTorch needs about ${Math.round(needMB)} MB here, only ${Math.round(avail)} MB available` };
  }
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    return runPeer(script, spec, threads);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

let machineCache: Record<string, unknown> | undefined;

/** What the numbers were measured on. */
export function machineInfo(): Record<string, unknown> {
  if (machineCache) return machineCache;
  const info = vp.backendInfo();
  let torch = 'missing';
  let blas = 'unknown';
  let blasPath: string | null = null;
  const r = spawnSync(PYTHON, [join(benchDir, 'peers', 'torch_info.py')], { encoding: 'utf8' });
  if (r.status === 0) {
    try {
      const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
      torch = j.torch;
      blas = j.blas;
      blasPath = j.blasPath ?? null;
    } catch { /* keep defaults */ }
  }
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) model = m[1];
  } catch { /* not Linux */ }
  machineCache = {
    cpu: model, cores: cpus().length, memGB: Math.round(totalmem() / 2 ** 30), isa: info.cpu.isa,
    threads: info.cpu.threads, node: process.version, torch, blas, blasPath,
    gpu: info.cuda ? info.cuda.device : null,
  };
  return machineCache;
}

export interface CaseReport {
  bench: string;
  case: string;
  shape: Record<string, unknown>;
  oursMs: number;
  peerMs: number | null;
  /** peerMs / oursMs: > 1 means we are faster. */
  ratio: number | null;
  /** Extra columns: GFLOP/s, GB/s, memory, fraction of the ceiling... */
  extra?: Record<string, number | string | null>;
  peer?: string;
  peerMissing?: string;
  /**
   * Our work per call, for the fraction of the machine's ceiling that report()
   * adds to every row: `flops` (compute-bound: GFLOP/s over the FMA peak and over
   * our SGEMM rate) or `bytes` moved (memory-bound: GB/s over the all-cores bandwidth).
   */
  flops?: number;
  bytes?: number;
}

/** The machine's limits, measured natively on every core (native/bench/bench_ceilings.cpp). */
export interface Ceilings {
  fmaGflops: number | null;
  bandwidthGBs: number | null;
  copyGBs: number | null;
  triadGBs: number | null;
  threads?: number;
  isa?: string;
  /** Why the native measure is missing (then bandwidthGBs falls back to one JS thread's copy). */
  missing?: string;
  source: string;
}

export interface BenchContext {
  quick: boolean;
  threads: number;
  report(r: CaseReport): void;
  /** Our SGEMM's GFLOP/s on 1024² (measured once per process): the compute ceiling. */
  sgemmGflops(): Promise<number>;
  /**
   * The machine's all-cores memory bandwidth in GB/s (the larger of a threaded copy
   * and triad, bytes read + written, measured once per process by vp_bench_ceilings):
   * the ceiling of memory-bound kernels.
   */
  copyGBs(): Promise<number>;
  /** The FMA peak and the bandwidth (measured once per process; see Ceilings). */
  ceilings(): Ceilings;
  results: CaseReport[];
}

/** A native executable of the build (build-native/<name>), or undefined when it was not built. */
export function nativeExe(name: string): string | undefined {
  for (const dir of [process.env.VP_BENCH_BIN, join(benchDir, '..', 'build-native'), join(benchDir, '..', 'build-native', 'Release')]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Runs a native bench executable; its JSON lines (others ignored), or why it could not run. */
export function runNative(name: string, args: string[] = [], env: Record<string, string> = {}): { ok: true; lines: Record<string, unknown>[] } | { ok: false; missing: string } {
  const exe = nativeExe(name);
  if (!exe) return { ok: false, missing: `build-native/${name} is not built (npm run build:native)` };
  const r = spawnSync(exe, args, { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, ...env } });
  if (r.error || r.status !== 0) {
    return { ok: false, missing: `${name} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}` };
  }
  const lines: Record<string, unknown>[] = [];
  for (const l of (r.stdout ?? '').split('\n')) {
    if (!l.startsWith('{')) continue;
    try { lines.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not a result line */ }
  }
  const err = lines.find((l) => typeof l.error === 'string');
  if (err) return { ok: false, missing: `${name}: ${String(err.error)}` };
  return { ok: true, lines };
}

let ceilingsCache: Ceilings | undefined;

/** Measures the ceilings (once per process): vp_bench_ceilings on every core of the pool. */
export function measureCeilings(quick: boolean): Ceilings {
  if (ceilingsCache) return ceilingsCache;
  const r = runNative('vp_bench_ceilings', quick ? ['--quick'] : []);
  const line = r.ok ? r.lines.find((l) => l.bench === 'ceilings') : undefined;
  if (!line) {
    ceilingsCache = { fmaGflops: null, bandwidthGBs: null, copyGBs: null, triadGBs: null, missing: r.ok ? 'vp_bench_ceilings printed no result' : r.missing, source: 'none' };
  } else {
    ceilingsCache = {
      fmaGflops: line.fmaGflops as number, bandwidthGBs: line.bandwidthGBs as number,
      copyGBs: line.copyGBs as number, triadGBs: line.triadGBs as number,
      threads: line.threads as number, isa: line.isa as string, source: 'vp_bench_ceilings',
    };
  }
  return ceilingsCache;
}

let sgemmCache: number | undefined;
let copyCache: number | undefined;

export function makeContext(opts: { quick: boolean; json: boolean }): BenchContext {
  const results: CaseReport[] = [];
  const ceil = measureCeilings(opts.quick);
  return {
    quick: opts.quick,
    threads: vp.backendInfo().cpu.threads,
    results,
    ceilings: () => ceil,
    report(r) {
      // The fraction of the relevant ceiling, on every row that states its work.
      const x: Record<string, number | string | null> = {};
      if (r.flops !== undefined) {
        const g = r.flops / (r.oursMs * 1e6);
        x.fracOfFmaPeak = ceil.fmaGflops ? g / ceil.fmaGflops : null;
        if (sgemmCache !== undefined) x.fracOfSgemm = g / sgemmCache;
      }
      if (r.bytes !== undefined) {
        const bw = ceil.bandwidthGBs ?? copyCache ?? null;
        x.fracOfBandwidth = bw ? r.bytes / (r.oursMs * 1e6) / bw : null;
      }
      if (r.flops === undefined && r.bytes === undefined) x.ceiling = 'none stated';
      r = { ...r, extra: { ...(r.extra ?? {}), ...x } };
      results.push(r);
      const ratio = r.ratio === null ? `peer missing: ${r.peerMissing}` : `${r.ratio.toFixed(2)}x`;
      const extra = Object.entries(r.extra ?? {}).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toFixed(2) : v}`).join(' ');
      if (!opts.json) {
        console.log(`${r.bench.padEnd(10)} ${r.case.padEnd(34)} ours ${r.oursMs.toFixed(3).padStart(9)} ms  ${r.peer ?? 'peer'} ${r.peerMs === null ? '      n/a' : r.peerMs.toFixed(3).padStart(9)} ms  ratio ${ratio}  ${extra}`);
      }
      console.log(JSON.stringify({ ...r, machine: machineInfo() }));
    },
    async sgemmGflops() {
      if (sgemmCache !== undefined) return sgemmCache;
      const n = 1024;
      const a = vp.tensor(new Float32Array(n * n).fill(0.5), [n, n]);
      const t = await timeIt(() => vp.matmul(a, a), { warmup: 2, reps: 5 });
      sgemmCache = (2 * n ** 3) / (t.medianMs * 1e6);
      return sgemmCache;
    },
    async copyGBs() {
      if (ceil.bandwidthGBs) return ceil.bandwidthGBs;
      // Fallback without the native executable: one JS thread's copy (a lower bound).
      if (copyCache !== undefined) return copyCache;
      const n = 16 << 20;  // 64 MiB of float32, far beyond the caches
      const src = randomFloats(n, 99);
      const dst = new Float32Array(n);
      dst.set(src);  // fault the pages in
      const t = await timeIt(() => dst.set(src), { warmup: 1, reps: 7 });
      copyCache = (2 * n * 4) / (t.medianMs * 1e6);
      return copyCache;
    },
  };
}

export { randomFloats };
