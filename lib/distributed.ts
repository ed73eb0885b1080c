// vp.distributedInfo() and the collectives of data-parallel training
// (docs/distributed.md).
//
// A process started by mpirun (or srun with PMIx, or a torchrun-style
// launcher) is one rank. The first call of distributedInfo() brings the
// engines up (native/ops/distributed: MPI found with dlopen for launch and CPU
// buffers, NCCL for CUDA buffers) and installs the exit hook: a rank that
// exits non-zero (an uncaught error, process.exit(1)) aborts every rank of the
// job; a clean exit shuts the engines down. Outside a launch nothing is loaded
// and every helper here is the identity (one rank).
//
// The helpers below are what the trainer uses: an in-place sum, a broadcast,
// a barrier, and two gathers built on the sum (each rank writes its part into
// a zeroed buffer at its offset, and the sum of one value with zeros is that
// value, bit for bit: the gathered data equal what one process would hold).
// Cost: a gather of n floats moves the whole n on every rank (fine for the
// few-kB contrastive keys and evaluation records it is used for).
import { describe } from './errors.js';
import { detectLaunch } from './launch.js';
import { loadAddon } from './native.js';

export interface DistributedInfo {
  /** This process's rank, 0..worldSize-1. */
  rank: number;
  worldSize: number;
  /** The rank among the processes on this machine (which GPU it uses). */
  localRank: number;
  /** The engine of the gradient all-reduce: 'nccl' (CUDA buffers), 'mpi' (CPU buffers), null outside a launch. */
  backend: 'mpi' | 'nccl' | null;
  /** Why no engine (or no NCCL) is used. */
  reason?: string;
}

interface State {
  info: DistributedInfo;
  /** An engine is up: collectives run. */
  live: boolean;
  /** Every rank is leaving together (exitTogether): a non-zero exit shuts down instead of aborting. */
  together?: boolean;
}

let state: State | undefined;

function binding() {
  return loadAddon().binding;
}

function timeoutFromEnv(): number {
  const raw = process.env.VP_DIST_TIMEOUT;
  if (raw === undefined || raw === '') return 600;
  const t = Number(raw);
  if (!Number.isFinite(t)) throw new RangeError(`VP_DIST_TIMEOUT must be a number of seconds (0: no limit), got ${JSON.stringify(raw)}`);
  return t;
}

function bringUp(): State {
  let launch;
  try {
    launch = detectLaunch();
  } catch (e) {
    return { info: { rank: 0, worldSize: 1, localRank: 0, backend: null, reason: (e as Error).message }, live: false };
  }
  if (launch.launcher === null)
    return { info: { rank: 0, worldSize: 1, localRank: 0, backend: null, reason: `not started by a launcher: ${launch.source}` }, live: false };
  const want = (process.env.VP_DIST_BACKEND ?? 'auto') as 'auto' | 'mpi' | 'nccl';
  const fail = (why: string): State => ({
    info: { rank: launch.rank, worldSize: launch.size, localRank: launch.localRank, backend: null, reason: `started by ${launch.source}, but ${why}` },
    live: false,
  });
  if (!['auto', 'mpi', 'nccl'].includes(want)) return fail(`VP_DIST_BACKEND must be auto, mpi or nccl, got ${JSON.stringify(want)}`);
  let timeout: number;
  try {
    timeout = timeoutFromEnv();
  } catch (e) {
    return fail((e as Error).message);
  }
  let r;
  try {
    r = binding().distInit({
      launcher: launch.launcher, backend: want, rank: launch.rank, size: launch.size, localRank: launch.localRank,
      masterAddr: launch.masterAddr ?? '', masterPort: launch.masterPort ?? 0, timeout,
    });
  } catch (e) {
    return fail((e as Error).message);
  }
  process.on('exit', onExit);
  // Node runs 'exit' hooks before it prints an uncaught error, and the abort
  // ends the process: keep the error so that onExit prints it first.
  process.on('uncaughtExceptionMonitor', (e) => (fatal = e));
  const info: DistributedInfo = { rank: r.rank, worldSize: r.size, localRank: r.localRank, backend: r.backend === 'nccl' ? 'nccl' : 'mpi' };
  if (r.ncclReason) info.reason = `NCCL is not used: ${r.ncclReason}`;
  return { info, live: true };
}

let fatal: unknown;

function onExit(code: number): void {
  if (!state?.live) return;
  state.live = false;
  if (code !== 0 && !state.together) {
    const why = fatal instanceof Error ? `${fatal.stack ?? fatal.message}\n` : fatal !== undefined ? `${String(fatal)}\n` : '';
    if (why) process.stderr.write(`videoperceiver: rank ${state.info.rank}: uncaught ${why}`);
    binding().distAbort(code, `exiting with code ${code}: ending every rank of the job`);
  }
  try {
    binding().distFinalize();
  } catch (e) {
    process.stderr.write(`videoperceiver: rank ${state.info.rank}: ${(e as Error).message}\n`);
  }
}

function ensure(): State {
  state ??= bringUp();
  return state;
}

/**
 * Where this process stands in a distributed launch (docs/distributed.md). Outside a
 * launch: `{ rank: 0, worldSize: 1, localRank: 0, backend: null, reason }`.
 * The first call inside a launch brings the engines up (collective: every
 * rank calls it, as the Trainer does when it is constructed).
 */
export function distributedInfo(): DistributedInfo {
  return { ...ensure().info };
}

export interface EngineProbe {
  found: boolean;
  library: string;
  version: string;
  reason: string;
}

/** Whether MPI and NCCL can be loaded on this machine (dlopen only; nothing is initialized). For `doctor`. */
export function probeEngines(): { mpi: EngineProbe; nccl: EngineProbe } {
  return binding().distProbe();
}

/**
 * What `videoperceiver doctor` prints: the launch (rank of size, engine) or,
 * outside one, whether MPI and NCCL could be used, and why not.
 */
export function distributedSummary(): { line: string; info: DistributedInfo; mpi: EngineProbe; nccl: EngineProbe } {
  const info = distributedInfo();
  const { mpi, nccl } = probeEngines();
  const ncclPart = nccl.found ? `NCCL: ${nccl.version}` : `NCCL: unavailable (${nccl.reason})`;
  let line: string;
  if (info.backend !== null) line = `rank ${info.rank} of ${info.worldSize} (local rank ${info.localRank}), ${info.backend}${info.reason ? `; ${info.reason}` : ''}`;
  else if (info.worldSize > 1) line = `unavailable: ${info.reason}`;
  else if (!mpi.found) line = `unavailable: ${mpi.reason}; ${ncclPart}`;
  else line = `available: ${mpi.version} (${mpi.library}), ${ncclPart}; this process was ${info.reason} (docs/distributed.md)`;
  return { line, info, mpi, nccl };
}

/** True when collectives run (an engine is up, even with one rank). */
export function isDistributed(): boolean {
  return ensure().live;
}

/**
 * Throws when the process was started by a launcher but no engine came up
 * (N copies of a single-process run would write over each other's files).
 */
export function requireEngine(fn: string): DistributedInfo {
  const s = ensure();
  if (!s.live && s.info.worldSize > 1) throw new Error(`${fn}: ${s.info.reason}`);
  return s.info;
}

type SumArray = Float32Array | Float64Array | Int32Array;

/** In-place sum over the ranks (identity outside a launch). */
export async function allReduceSum<T extends SumArray>(x: T): Promise<T> {
  if (!(x instanceof Float32Array || x instanceof Float64Array || x instanceof Int32Array))
    throw new TypeError(`allReduceSum: x must be a Float32Array, Float64Array or Int32Array, got ${describe(x)}`);
  if (ensure().live) await binding().distAllreduce(x);
  return x;
}

/** Rank `root`'s bytes of `x` to every rank, in place. */
export async function broadcast<T extends ArrayBufferView>(x: T, root = 0): Promise<T> {
  const s = ensure();
  if (!ArrayBuffer.isView(x)) throw new TypeError(`broadcast: x must be a typed array, got ${describe(x)}`);
  if (!Number.isInteger(root) || root < 0 || root >= s.info.worldSize)
    throw new RangeError(`broadcast: root must be an integer in [0, ${s.info.worldSize}), got ${root}`);
  if (s.live) await binding().distBroadcast(x, root);
  return x;
}

/** Waits until every rank has called it. */
export async function barrier(): Promise<void> {
  if (ensure().live) await binding().distBarrier();
}

/** Ends every rank of the job with `code` (prints `message` first); outside a launch, this process only. */
export function abortAll(code: number, message: string): never {
  if (ensure().live) binding().distAbort(code, message);
  process.stderr.write(`videoperceiver: ${message}\n`);
  process.exit(code);
}

/**
 * For a stop that every rank agreed on (an interrupt): exit with `code` once
 * the current task is done, shutting the engines down in order instead of
 * aborting the job (which a non-zero exit otherwise does). Outside a launch: exits.
 */
export function exitTogether(code: number): void {
  const s = ensure();
  if (s.live) s.together = true;
  setImmediate(() => process.exit(code));
}

/** Each rank's count, from every rank (index = rank). */
async function counts(n: number): Promise<number[]> {
  const s = ensure().info;
  const c = new Float64Array(s.worldSize);
  c[s.rank] = n;
  await allReduceSum(c);
  return Array.from(c);
}

/**
 * Concatenates every rank's rows (`local`: rows × width floats) in rank order.
 * Returns all rows, this rank's first row and each rank's row count.
 */
export async function gatherRows(local: Float32Array, width: number): Promise<{ all: Float32Array; offset: number; counts: number[] }> {
  if (!Number.isInteger(width) || width < 1 || local.length % width !== 0)
    throw new RangeError(`gatherRows: local must hold whole rows of ${width}, got ${local.length} floats`);
  if (!ensure().live) return { all: local, offset: 0, counts: [local.length / width] };
  const n = await counts(local.length / width);
  const rank = ensure().info.rank;
  const offset = n.slice(0, rank).reduce((a, b) => a + b, 0);
  const all = new Float32Array(n.reduce((a, b) => a + b, 0) * width);
  all.set(local, offset * width);
  await allReduceSum(all);
  return { all, offset, counts: n };
}

/** Every rank's JSON-serializable items, concatenated in rank order (evaluation records). */
export async function gatherJson<T>(items: readonly T[]): Promise<T[]> {
  if (!ensure().live) return [...items];
  const bytes = Buffer.from(JSON.stringify(items), 'utf8');
  const n = await counts(bytes.length);
  const words = n.map((b) => Math.ceil(b / 4));
  const rank = ensure().info.rank;
  const at = words.slice(0, rank).reduce((a, b) => a + b, 0);
  const all = new Int32Array(words.reduce((a, b) => a + b, 0));
  new Uint8Array(all.buffer).set(bytes, at * 4);
  await allReduceSum(all);
  const out: T[] = [];
  let w = 0;
  for (let r = 0; r < n.length; r++) {
    out.push(...(JSON.parse(Buffer.from(all.buffer, w * 4, n[r]).toString('utf8')) as T[]));
    w += words[r];
  }
  return out;
}
