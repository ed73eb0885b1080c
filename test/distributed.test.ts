// Data-parallel training (design §3.7): launch detection, the engines found at
// run time (nothing linked, nothing loaded outside a launch), `doctor` without
// MPI, and, under `mpirun --allow-run-as-root --oversubscribe -np 2`, the
// collectives against float64 references.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { detectLaunch, pinLocalGpu } from '../lib/launch.js';
import { loadAddon } from '../lib/native.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const HAVE_MPIRUN = spawnSync('mpirun', ['--version']).status === 0;

interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** `mpirun -np N node --import=tsx <script> args...` from the repository root, killed after `limitS`. */
function mpirun(np: number, script: string, args: string[] = [], opts: { env?: Record<string, string>; limitS?: number } = {}): Promise<RunResult> {
  const t0 = performance.now();
  const child = spawn('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', String(np), process.execPath, '--import=tsx', script, ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), (opts.limitS ?? 240) * 1000);
  return new Promise((res) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    res({ code, signal, stdout, stderr, seconds: (performance.now() - t0) / 1000 });
  }));
}

test('outside a launch: one rank, no engine, the reason, and no MPI library loaded', (t) => {
  const info = vp.distributedInfo();
  t.deepEqual({ ...info, reason: undefined }, { rank: 0, worldSize: 1, localRank: 0, backend: null, reason: undefined });
  t.regex(info.reason!, /not started by a launcher.*OMPI_COMM_WORLD_SIZE.*WORLD_SIZE/);
  t.false(readFileSync('/proc/self/maps', 'utf8').includes('libmpi'), 'libmpi is not loaded by distributedInfo() outside a launch');
});

test('the addon links neither MPI nor NCCL (both are found with dlopen)', (t) => {
  const r = spawnSync('ldd', [loadAddon().path], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.notRegex(r.stdout, /libmpi|libnccl|libcudart/);
});

test('launch detection: mpirun, srun + PMIx and torchrun variables; a malformed one is named', (t) => {
  t.like(detectLaunch({ OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2', WORLD_SIZE: '9', RANK: '8' }),
    { launcher: 'mpi', rank: 3, size: 4, localRank: 1, localSize: 2 });
  t.like(detectLaunch({ SLURM_NTASKS: '8', SLURM_PROCID: '5', SLURM_LOCALID: '1', PMIX_RANK: '5' }), { launcher: 'mpi', rank: 5, size: 8, localRank: 1 });
  // srun without PMIx is not an MPI launch.
  t.is(detectLaunch({ SLURM_NTASKS: '8', SLURM_PROCID: '5' }).launcher, null);
  t.like(detectLaunch({ WORLD_SIZE: '2', RANK: '1', LOCAL_RANK: '1', MASTER_ADDR: 'node7', MASTER_PORT: '29500' }),
    { launcher: 'env', rank: 1, size: 2, localRank: 1, masterAddr: 'node7', masterPort: 29500 });
  // torchrun's agent store holds MASTER_PORT: the id goes over the next port.
  t.is(detectLaunch({ WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: 'a', MASTER_PORT: '29500', TORCHELASTIC_USE_AGENT_STORE: 'True' }).masterPort, 29501);
  t.like(detectLaunch({}), { launcher: null, rank: 0, size: 1 });
  t.throws(() => detectLaunch({ OMPI_COMM_WORLD_SIZE: 'two' }), { instanceOf: RangeError, message: /OMPI_COMM_WORLD_SIZE must be an integer >= 1, got "two"/ });
  t.throws(() => detectLaunch({ OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_RANK: '2' }), { instanceOf: RangeError, message: /OMPI_COMM_WORLD_RANK must be < OMPI_COMM_WORLD_SIZE=2/ });
  t.throws(() => detectLaunch({ WORLD_SIZE: '2' }), { message: /RANK is not/ });
  t.throws(() => detectLaunch({ WORLD_SIZE: '2', RANK: '1' }), { message: /needs MASTER_ADDR and MASTER_PORT/ });
  t.throws(() => detectLaunch({ WORLD_SIZE: '2', RANK: '1', MASTER_ADDR: 'a', MASTER_PORT: '70000' }), { message: /MASTER_PORT must be <= 65535/ });
});

test('one GPU per local rank: CUDA_VISIBLE_DEVICES narrowed to the local rank\'s entry', (t) => {
  const env: Record<string, string | undefined> = { OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_LOCAL_RANK: '3', OMPI_COMM_WORLD_LOCAL_SIZE: '4', CUDA_VISIBLE_DEVICES: '4,5,6,7' };
  t.is(pinLocalGpu(env), '7');
  t.is(env.CUDA_VISIBLE_DEVICES, '7');
  const wrap = { WORLD_SIZE: '3', RANK: '2', LOCAL_RANK: '2', MASTER_ADDR: 'a', MASTER_PORT: '1', CUDA_VISIBLE_DEVICES: '0,1' };
  t.is(pinLocalGpu(wrap), '0');
  // Unchanged: no launch, one process on the machine, one device listed, or VP_DIST_GPU=all.
  t.is(pinLocalGpu({ CUDA_VISIBLE_DEVICES: '0,1' }), undefined);
  t.is(pinLocalGpu({ OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_SIZE: '1', CUDA_VISIBLE_DEVICES: '0,1' }), undefined);
  t.is(pinLocalGpu({ OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_LOCAL_RANK: '1', CUDA_VISIBLE_DEVICES: '3' }), undefined);
  const all = { OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: '1', CUDA_VISIBLE_DEVICES: '0,1', VP_DIST_GPU: 'all' };
  t.is(pinLocalGpu(all), undefined);
  t.is(all.CUDA_VISIBLE_DEVICES, '0,1');
});

test('doctor says distributed: unavailable, and why, when MPI cannot be loaded', (t) => {
  const cli = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), 'doctor'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } });
  const r = cli({ VP_MPI_LIBRARY: '/nonexistent/libmpi.so.40' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /distributed unavailable: cannot load \/nonexistent\/libmpi\.so\.40 \(.*\); install Open MPI/);
  t.regex(r.stdout, /NCCL: /);
  if (HAVE_MPIRUN) {
    const ok = cli({});
    t.regex(ok.stdout, /distributed available: Open MPI v\d/);
  }
});

test('collectives under mpirun -np 2: float32 sums against float64, gathers, broadcast, a model\'s gradients and state', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found: install Open MPI (apt-get install openmpi-bin libopenmpi-dev)');
  const r = await mpirun(2, 'test/mpi/collectives.ts');
  t.is(r.code, 0, r.stderr.slice(-2000));
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  t.is(lines.length, 2, r.stdout);
  lines.sort((a, b) => a.info.rank - b.info.rank);
  lines.forEach((o, rank) => {
    t.like(o.info, { rank, worldSize: 2, localRank: rank, backend: 'mpi' });
    for (const e of o.float32RelErr) t.true(e < 1e-6, `rank ${rank}: float32 sum rel. error ${e}`);
    t.deepEqual(o.float64, [0.25 + 1.25, 1e300]);
    t.deepEqual(o.int32, [3, -14]);
    t.deepEqual(o.gather.counts, [1, 2]);
    t.is(o.gather.offset, rank);
    t.deepEqual(o.gather.all, [0, 1, 2, 100, 101, 102, 103, 104, 105]);
    t.deepEqual(o.gatherJson, [{ rank: 0, text: 'ünïcode x' }, { rank: 1, text: `ünïcode ${'x'.repeat(6)}` }]);
    t.deepEqual(o.broadcast, [1, 1, 1]);
    t.true(o.paramsFromRank0, 'broadcastState gave rank 0\'s parameters');
    t.true(o.gradRelErr < 1e-6, `gradient all-reduce rel. error ${o.gradRelErr}`);
  });
});
