// Data-parallel training (docs/distributed.md): launch detection, the engines found at
// run time (nothing linked, nothing loaded outside a launch), `doctor` without
// MPI, and, under `mpirun --allow-run-as-root --oversubscribe -np 2`: the
// collectives against float64 references; 2-rank training of a tiny model
// against the one-process run (SFT losses over 20 steps within 1e-5 relative,
// RL, evaluation, resume); the same for Hugging Face models (a tiny Llama:
// the full fine-tuning gradient, LoRA SFT and RL, and on an emulated CUDA
// device with a bfloat16 base; a tiny SmolVLM: LoRA SFT with KIM and the
// contrastive term, RL with a reference), parameters identical on both ranks;
// a rank that throws or dies ends both ranks non-zero
// within 60 s with no half-written checkpoint; Ctrl-C on mpirun checkpoints once.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { detectLaunch, pinLocalGpu } from '../lib/launch.js';
import { loadAddon } from '../lib/native.js';
import { FIXTURES, writeTinyModel } from './pretrained-fixtures.js';
import { writeTinyVlm } from './vlm-fixtures.js';

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
interface RunOptions {
  env?: Record<string, string>;
  limitS?: number;
  /** Extra mpirun options (before -np). */
  mpiArgs?: string[];
  /** Called with each chunk of output and the child (to send it a signal). */
  onOutput?: (text: string, child: ReturnType<typeof spawn>) => void;
}

/** `mpirun -np N node --import=tsx <script> args...` (np 0: the one process, no mpirun) from the repository root, killed after `limitS`. */
function mpirun(np: number, script: string, args: string[] = [], opts: RunOptions = {}): Promise<RunResult> {
  const t0 = performance.now();
  const node = [process.execPath, '--import=tsx', script, ...args];
  const [cmd, ...argv] = np === 0 ? node : ['mpirun', '--allow-run-as-root', '--oversubscribe', ...(opts.mpiArgs ?? []), '-np', String(np), ...node];
  // One thread per rank: two ranks on a 2-core machine, and the same kernels' summation order everywhere.
  const child = spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VP_NUM_THREADS: '1', ...opts.env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
    opts.onOutput?.(stdout, child);
  });
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), (opts.limitS ?? 240) * 1000);
  return new Promise((res) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    res({ code, signal, stdout, stderr, seconds: (performance.now() - t0) / 1000 });
  }));
}

// A tiny dataset for the training runs, made once.
let data: string | undefined;
function dataset(): string {
  if (!data) {
    data = join(mkdtempSync(join(tmpdir(), 'vp-dist-')), 'data');
    vp.synthDataset(data, { count: 24, seed: 5, frames: 8, size: 16, fps: 4 });
  }
  return data;
}

interface RankOutput {
  info: vp.DistributedInfo;
  checksum: number;
  events: vp.MetricEvent[];
  result: Record<string, unknown>;
}

/** Runs test/mpi/train.ts (np 0: one process) and reads each rank's output. */
async function train(np: number, mode: string, args: { run?: string; steps?: number; batch?: number; every?: number } = {}, opts: RunOptions = {}) {
  const out = join(mkdtempSync(join(tmpdir(), 'vp-dist-out-')), 'r');
  const r = await mpirun(np, 'test/mpi/train.ts', [dataset(), args.run ?? '-', out, mode, String(args.steps ?? 20), String(args.batch ?? 4), String(args.every ?? 1)], opts);
  const ranks = Math.max(np, 1);
  const read = (k: number, ext: string) => (existsSync(`${out}.${k}.${ext}`) ? readFileSync(`${out}.${k}.${ext}`, 'utf8') : undefined);
  const outputs = Array.from({ length: ranks }, (_, k) => read(k, 'json')).map((j) => (j ? (JSON.parse(j) as RankOutput) : undefined));
  const pids = Array.from({ length: ranks }, (_, k) => Number(read(k, 'pid')));
  const exits = Array.from({ length: ranks }, (_, k) => read(k, 'exit'));
  return { r, outputs, pids, exits };
}

const steps = (o: RankOutput | undefined) => (o?.events ?? []).filter((e) => e.type === 'step') as (vp.SftStepEvent | vp.RlStepEvent)[];

function relDiff(a: number, b: number): number {
  return a === b ? 0 : Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b));
}

/** Whether a process still runs (a zombie, exited but not yet reaped, does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Every checkpoint folder is complete, and latest.json names one that loads. */
async function checkpointsWhole(t: import('ava').ExecutionContext, run: string): Promise<void> {
  const root = join(run, 'checkpoints');
  for (const d of readdirSync(root).filter((x) => /^sft-\d+$/.test(x))) t.true(existsSync(join(root, d, 'trainer.json')), `${d} is complete`);
  const latest = JSON.parse(readFileSync(join(root, 'latest.json'), 'utf8'));
  const m = await vp.VideoLM.load(join(root, latest.checkpoint));
  t.is(m.step, latest.step);
  m.dispose();
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

/** A VideoLM's or a PretrainedModel's generateBatch with opts.streams: a sequence samples the same tokens alone as in a batch, given its stream. */
async function streamsCase(t: import('ava').ExecutionContext, m: vp.VideoLM | vp.PretrainedModel): Promise<void> {
  const text = Int32Array.from([1, 9, 17, 3, 1, 22, 5]);
  const both = { text, sequences: [[{ text: [0, 4] as [number, number] }], [{ text: [4, 3] as [number, number] }]] };
  const second = { text: text.slice(4), sequences: [[{ text: [0, 3] as [number, number] }]] };
  const o = { maxTokens: 12, temperature: 1.5, seed: 77, eosId: -1 };
  const [, b] = await m.generateBatch(both, o);
  const [alone] = await m.generateBatch(second, o);
  const [streamed] = await m.generateBatch(second, { ...o, streams: Int32Array.of(1) });
  t.deepEqual(Array.from(streamed), Array.from(b));
  t.notDeepEqual(Array.from(alone), Array.from(b), 'stream 0 samples other tokens (else this test could not fail)');
  await t.throwsAsync(async () => m.generateBatch(second, { ...o, streams: Int32Array.of(1, 2) }), { instanceOf: RangeError, message: /opts\.streams/ });
  await t.throwsAsync(async () => m.generateBatch(second, { ...o, streams: Int32Array.of(-1) }), { instanceOf: RangeError, message: /opts\.streams\[0\]/ });
}

test('generateBatch streams: a sequence samples the same tokens alone as in a batch, given its stream', async (t) => {
  const m = await vp.VideoLM.create({ imageSize: 16, patchSize: 8, frames: 2, width: 32, layers: 1, heads: 2, kvHeads: 1, mlpRatio: 2, vocab: 64, maxSeq: 64, tied: true, seed: 4 });
  await streamsCase(t, m);
  m.dispose();
});

test.serial('2 ranks train the tiny model with the losses of one process over 20 steps (<= 1e-5 relative); rank 0 alone writes', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found: install Open MPI (apt-get install openmpi-bin libopenmpi-dev)');
  const one = await train(0, 'sft', { steps: 20, batch: 4 });
  t.is(one.r.code, 0, one.r.stderr.slice(-2000));
  const run = join(mkdtempSync(join(tmpdir(), 'vp-dist-run-')), 'run');
  const two = await train(2, 'sft', { steps: 20, batch: 4, run, every: 10 });
  t.is(two.r.code, 0, two.r.stderr.slice(-2000));
  const a = steps(one.outputs[0]) as vp.SftStepEvent[];
  const b = steps(two.outputs[0]) as vp.SftStepEvent[];
  t.is(a.length, 20);
  t.is(b.length, 20);
  let worst = 0;
  for (let i = 0; i < 20; i++) {
    for (const k of ['loss', 'lm', 'nce'] as const) worst = Math.max(worst, relDiff(a[i][k], b[i][k]));
    t.is(b[i].rows, a[i].rows);
    t.is(b[i].contrastSamples, a[i].contrastSamples);
    t.is(b[i].kimSequences, a[i].kimSequences);
  }
  t.log(`worst relative difference of the 20 steps' losses (loss, lm, nce): ${worst.toExponential(2)}`);
  t.true(worst <= 1e-5, `worst relative loss difference ${worst}`);
  t.true(a[19].loss < a[0].loss, 'the run trains');
  // Both ranks end with the same parameters, the one process's up to float rounding.
  t.is(two.outputs[1]!.checksum, two.outputs[0]!.checksum);
  t.true(relDiff(two.outputs[0]!.checksum, one.outputs[0]!.checksum) < 1e-5);
  t.deepEqual(steps(two.outputs[1]).map((e) => e.loss), b.map((e) => e.loss), 'every rank sees the same metrics');
  // One writer: 20 step lines, the checkpoints once.
  const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.is(lines.filter((e) => e.type === 'step').length, 20);
  t.deepEqual(lines.filter((e) => e.type === 'checkpoint').map((e) => e.step), [10, 20]);
  t.deepEqual(readdirSync(join(run, 'checkpoints')).sort(), ['latest.json', 'sft-000010', 'sft-000020']);
  await checkpointsWhole(t, run);
  // Resume with the same number of ranks: a copy of the run as it was after step 10 (checkpoints are
  // never rewritten, so the copy leaves sft-000020 out), then steps 11..20 again.
  const again = join(dirname(run), 'again');
  cpSync(run, again, { recursive: true });
  rmSync(join(again, 'checkpoints', 'sft-000020'), { recursive: true });
  writeFileSync(join(again, 'checkpoints', 'latest.json'), JSON.stringify({ checkpoint: 'sft-000010', stage: 'sft', step: 10, finished: false }) + '\n');
  const resumed = await train(2, 'resume', { steps: 20, batch: 4, run: again, every: 0 });
  t.is(resumed.r.code, 0, resumed.r.stderr.slice(-2000));
  const c = steps(resumed.outputs[0]) as vp.SftStepEvent[];
  t.deepEqual(c.map((e) => e.step), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  for (const e of c) t.true(relDiff(e.loss, b[e.step - 1].loss) <= 1e-5, `resumed step ${e.step}: ${e.loss} vs ${b[e.step - 1].loss}`);
});

test.serial('2 ranks: RL rollouts sharded by prompt and evaluation sharded give the one-process results', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found');
  const [one, two] = [await train(0, 'rl', { steps: 3, batch: 4 }), await train(2, 'rl', { steps: 3, batch: 4 })];
  t.is(two.r.code, 0, two.r.stderr.slice(-2000));
  const a = steps(one.outputs[0]) as vp.RlStepEvent[];
  const b = steps(two.outputs[0]) as vp.RlStepEvent[];
  t.is(b.length, 3);
  for (let i = 0; i < 3; i++) {
    // The same responses (rewards and lengths are exact), the same loss.
    for (const k of ['reward', 'rewardDegraded', 'rewardTotal', 'advantageStd', 'responseLength'] as const) t.is(b[i][k], a[i][k], `step ${i + 1} ${k}`);
    t.true(relDiff(a[i].loss, b[i].loss) <= 1e-5, `step ${i + 1} loss ${a[i].loss} vs ${b[i].loss}`);
    t.true(relDiff(a[i].gradNorm, b[i].gradNorm) <= 1e-5, `step ${i + 1} gradNorm`);
  }
  t.true(a.some((e) => e.advantageStd > 0), 'some step has a learning signal (else the loss check could not fail)');
  const [e1, e2] = [await train(0, 'eval'), await train(2, 'eval')];
  t.is(e2.r.code, 0, e2.r.stderr.slice(-2000));
  const r1 = e1.outputs[0]!.result as unknown as vp.EvaluationResult;
  const r2 = e2.outputs[0]!.result as unknown as vp.EvaluationResult;
  t.deepEqual(r2.summary, r1.summary);
  t.deepEqual(r2.questions.map((q) => [q.id, q.predicted]), r1.questions.map((q) => [q.id, q.predicted]));
  t.deepEqual(r2.captions.map((c) => c.generated), r1.captions.map((c) => c.generated));
  t.is(r2.questions.length, 48);
});

test.serial('a batch smaller than the number of ranks is refused on every rank, naming the option', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found');
  const { r } = await train(2, 'sft', { steps: 2, batch: 1 });
  t.not(r.code, 0);
  t.regex(r.stderr + r.stdout, /opts\.batchSize must be at least the number of ranks \(2\)/);
});

for (const mode of ['throw', 'kill'] as const) {
  test.serial(`a rank that ${mode === 'throw' ? 'throws' : 'is killed'} ends both ranks non-zero within 60 s, with no half-written checkpoint`, async (t) => {
    if (!HAVE_MPIRUN) return t.fail('mpirun not found');
    const run = join(mkdtempSync(join(tmpdir(), 'vp-dist-fault-')), 'run');
    const { r, pids, exits } = await train(2, mode, { steps: 200, batch: 4, run, every: 1 }, { limitS: 120 });
    t.log(`mpirun exit ${r.code} after ${r.seconds.toFixed(1)} s (startup included)`);
    t.not(r.code, 0);
    t.true(r.seconds < 60, `the job ended after ${r.seconds} s`);
    // mpirun may return as it sends the last SIGKILL: give the kernel a moment, within the 60 s.
    const until = performance.now() + (60 - r.seconds) * 1000;
    while (pids.some((p) => alive(p)) && performance.now() < until) await new Promise((res) => setTimeout(res, 100));
    t.true(pids.every((p) => p > 0 && !alive(p)), `both ranks are gone within 60 s (${pids.filter((p) => alive(p)).length} left)`);
    // Rank 1 exits 1 (throw) or dies by SIGKILL; rank 0 is ended by the launcher (a signal, or its own abort).
    if (mode === 'throw') {
      t.is(exits[1], '1');
      t.regex(r.stderr, /rank 1: uncaught Error: injected failure on rank 1 at step 3/);
    } else t.is(exits[1], undefined);
    t.not(exits[0], '0');
    t.false(existsSync(join(run, 'checkpoints', 'sft-000200')), 'the run did not finish');
    await checkpointsWhole(t, run);
  });
}

test.serial('Ctrl-C on mpirun: every rank finishes the step, rank 0 writes one checkpoint, all exit 143 (SIGTERM)', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found');
  const run = join(mkdtempSync(join(tmpdir(), 'vp-dist-int-')), 'run');
  let sent = false;
  // mpirun sends SIGTERM odls_base_sigkill_timeout seconds after Ctrl-C, and SIGKILL as long after that.
  const { r, exits } = await train(2, 'sft', { steps: 100000, batch: 4, run, every: 0 }, {
    mpiArgs: ['--mca', 'odls_base_sigkill_timeout', '6'],
    onOutput: (text, child) => {
      if (!sent && /rank 0 step 3\b/.test(text)) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  });
  t.true(sent);
  t.not(r.code, 0);
  t.deepEqual(exits, ['143', '143'], 'both ranks exit as SIGTERM would (mpirun turns Ctrl-C into SIGTERM)');
  t.regex(r.stderr, /rank 0: SIGTERM: every rank finishes the step, then rank 0 writes a checkpoint/);
  const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const cps = lines.filter((e) => e.type === 'checkpoint');
  t.is(cps.length, 1);
  t.is(cps[0].reason, 'interrupt');
  t.is(cps[0].step, lines.filter((e) => e.type === 'step').length, 'the checkpoint is of the last step every rank finished');
  t.deepEqual(readdirSync(join(run, 'checkpoints')).sort(), ['latest.json', `sft-${String(cps[0].step).padStart(6, '0')}`]);
  await checkpointsWhole(t, run);
});

// ------------------------------------------------------------------ Hugging Face models (PretrainedModel)

test('PretrainedModel.generateBatch streams as VideoLM\'s; outside a launch its collectives change nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-dist-hf-'));
  writeTinyModel(dir, FIXTURES['llama-untied-f32']);
  const m = await vp.loadPretrained(dir);
  await streamsCase(t, m);
  // Outside a launch the collectives change nothing.
  m.addLora({ rank: 2 });
  const before = m.parameters();
  await m.broadcastState();
  await m.allReduceGradients();
  t.deepEqual(m.parameters(), before);
  m.dispose();
});

interface HfRankOutput {
  info: vp.DistributedInfo;
  events: vp.MetricEvent[];
  params: { sha256: string; checksum: number; adapterChecksum: number };
  error?: string | null;
}

/** Runs test/mpi/train-pretrained.ts (np 0: one process); each rank's output, and its summed gradient in 'text' mode. */
async function trainHf(np: number, mode: string, model: string, data: string, steps: number, batch: number) {
  const out = join(mkdtempSync(join(tmpdir(), 'vp-dist-hf-out-')), 'r');
  const r = await mpirun(np, 'test/mpi/train-pretrained.ts', [mode, model, data, out, String(steps), String(batch)], { limitS: 120 });
  const ranks = Array.from({ length: Math.max(np, 1) }, (_, k) => k);
  const outputs = ranks.map((k) => (existsSync(`${out}.${k}.json`) ? (JSON.parse(readFileSync(`${out}.${k}.json`, 'utf8')) as HfRankOutput) : undefined));
  const grads = ranks.map((k) => (existsSync(`${out}.${k}.grad`) ? new Float32Array(new Uint8Array(readFileSync(`${out}.${k}.grad`)).buffer) : undefined));
  return { r, outputs, grads };
}

function relNorm(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return a.length === b.length ? Math.sqrt(num / den) : Infinity;
}

/** Compares the step events of a 2-rank run with the one process's: losses within 1e-5 relative, the same rollouts. */
function sameSteps(t: import('ava').ExecutionContext, a: (vp.SftStepEvent | vp.RlStepEvent)[], b: (vp.SftStepEvent | vp.RlStepEvent)[]): number {
  t.deepEqual(b.map((e) => `${e.stage}${e.step}`), a.map((e) => `${e.stage}${e.step}`));
  let worst = 0;
  a.forEach((x, i) => {
    const y = b[i];
    if (x.stage === 'sft' && y.stage === 'sft') {
      for (const k of ['loss', 'lm', 'nce'] as const) worst = Math.max(worst, relDiff(x[k], y[k]));
      for (const k of ['rows', 'contrastSamples', 'kimSequences'] as const) t.is(y[k], x[k], `sft step ${x.step} ${k}`);
    } else if (x.stage === 'rl' && y.stage === 'rl') {
      // The same responses: rewards and lengths exact; a GRPO loss near 0 compared absolutely.
      for (const k of ['reward', 'rewardTotal', 'advantageStd', 'responseLength'] as const) t.is(y[k], x[k], `rl step ${x.step} ${k}`);
      t.true(Math.abs(x.loss - y.loss) <= 1e-5 * Math.max(1, Math.abs(x.loss)), `rl step ${x.step} loss ${x.loss} vs ${y.loss}`);
    }
    t.true(relDiff(x.gradNorm, y.gradNorm) <= 1e-5, `${x.stage} step ${x.step} gradNorm ${x.gradNorm} vs ${y.gradNorm}`);
  });
  t.true(worst <= 1e-5, `worst relative loss difference ${worst}`);
  return worst;
}

/** Writes a model (`write(dir)`) and a dataset, then runs `mode` in one process and on 2 ranks; both must exit 0. */
async function oneAndTwo(t: import('ava').ExecutionContext, mode: string, write: (dir: string) => unknown, data: vp.SynthDatasetOptions, stepCount: number, batch: number) {
  const root = mkdtempSync(join(tmpdir(), `vp-dist-${mode}-`));
  write(join(root, 'model'));
  vp.synthDataset(join(root, 'data'), data);
  const args = [mode, join(root, 'model'), join(root, 'data'), stepCount, batch] as const;
  const one = await trainHf(0, ...args);
  t.is(one.r.code, 0, one.r.stderr.slice(-2000));
  const two = await trainHf(2, ...args);
  t.is(two.r.code, 0, two.r.stderr.slice(-2000));
  return { one, two };
}

test.serial('2 ranks train a Hugging Face Llama (full fine-tuning gradient; LoRA SFT and RL) as one process does, with identical parameters on both ranks', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found');
  const { one, two } = await oneAndTwo(t, 'text', (dir) => writeTinyModel(dir, FIXTURES['llama-untied-f32']), { count: 8, seed: 3, frames: 4, size: 16, fps: 4 }, 12, 4);
  // Full fine-tuning: each rank's gradient of its half of the batch, summed, is the one-process gradient of the whole batch.
  const g = one.grads[0]!;
  t.true(g.length > 30000 && g.some((x) => x !== 0));
  t.true(Buffer.from(two.grads[0]!.buffer).equals(Buffer.from(two.grads[1]!.buffer)), 'both ranks hold the same summed gradient');
  const gradErr = relNorm(two.grads[0]!, g);
  t.log(`full fine-tuning gradient, 2 ranks vs 1 process: ${gradErr.toExponential(2)} relative`);
  t.true(gradErr <= 1e-5, `gradient relative error ${gradErr}`);
  // LoRA: 12 SFT steps and 2 RL steps. Rank 1 started with another frozen base weight: it took rank 0's.
  const a = steps(one.outputs[0] as unknown as RankOutput);
  const b = steps(two.outputs[0] as unknown as RankOutput);
  t.is(a.filter((e) => e.stage === 'sft').length, 12);
  const worst = sameSteps(t, a, b);
  t.log(`worst relative difference of the 12 SFT steps' losses: ${worst.toExponential(2)}`);
  t.true((a[11] as vp.SftStepEvent).loss < (a[0] as vp.SftStepEvent).loss, 'the run trains');
  t.true(a.some((e) => e.stage === 'rl' && e.advantageStd > 0), 'an RL step has a learning signal');
  t.deepEqual(steps(two.outputs[1] as unknown as RankOutput).map((e) => e.loss), b.map((e) => e.loss), 'every rank sees the same metrics');
  t.is(two.outputs[1]!.params.sha256, two.outputs[0]!.params.sha256, 'identical parameters on both ranks');
  t.true(relDiff(two.outputs[0]!.params.adapterChecksum, one.outputs[0]!.params.adapterChecksum) < 1e-5, 'the adapters of one process');
});

test.serial('2 ranks train a Hugging Face SmolVLM with LoRA (KIM, contrastive term, RL with a reference) as one process does', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found');
  const { one, two } = await oneAndTwo(t, 'vlm', (dir) => writeTinyVlm(dir, { kind: 'smolvlm', seed: 71 }), { count: 4, seed: 3, frames: 8, fps: 4 }, 3, 2);
  const a = steps(one.outputs[0] as unknown as RankOutput);
  const sft = a.filter((e): e is vp.SftStepEvent => e.stage === 'sft');
  t.true(sft.every((e) => e.contrastSamples > 0 && e.kimSequences > 0), 'KIM variants and the contrastive term were on');
  const worst = sameSteps(t, a, steps(two.outputs[0] as unknown as RankOutput));
  t.log(`worst relative difference of the SFT losses: ${worst.toExponential(2)}`);
  t.is(two.outputs[1]!.params.sha256, two.outputs[0]!.params.sha256, 'identical parameters on both ranks');
  t.true(relDiff(two.outputs[0]!.params.adapterChecksum, one.outputs[0]!.params.adapterChecksum) < 1e-5, 'the adapters of one process');
});

test.serial('2 ranks train a Hugging Face Llama on an emulated CUDA device, its frozen base in bfloat16, as one process does', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found');
  const { one, two } = await oneAndTwo(t, 'cuda', (dir) => writeTinyModel(dir, FIXTURES['llama-untied-f32']), { count: 8, seed: 3, frames: 4, size: 16, fps: 4 }, 4, 4);
  const a = steps(one.outputs[0] as unknown as RankOutput).filter((e): e is vp.SftStepEvent => e.stage === 'sft');
  const b = steps(two.outputs[0] as unknown as RankOutput).filter((e): e is vp.SftStepEvent => e.stage === 'sft');
  t.is(b.length, 4);
  // Step 1 is the same computation (rank 1's changed frozen weight replaced by rank 0's at the start:
  // else its loss differs by about 1e-2). Later steps: the float32 masters agree to ~1e-8 after each
  // step, and a difference that small can flip a bfloat16 rounding of an activation (measured: ~1e-4).
  t.true(relDiff(a[0].loss, b[0].loss) <= 1e-5 && relDiff(a[0].gradNorm, b[0].gradNorm) <= 1e-5, `step 1: ${a[0].loss} vs ${b[0].loss}`);
  for (let i = 1; i < 4; i++) t.true(relDiff(a[i].loss, b[i].loss) <= 1e-3, `step ${i + 1}: ${a[i].loss} vs ${b[i].loss}`);
  t.is(two.outputs[1]!.params.sha256, two.outputs[0]!.params.sha256, 'identical parameters on both ranks');
});

test.serial('ranks holding different Hugging Face models are refused on every rank at the stage start', async (t) => {
  if (!HAVE_MPIRUN) return t.fail('mpirun not found');
  const root = mkdtempSync(join(tmpdir(), 'vp-dist-mm-'));
  writeTinyModel(join(root, 'model'), FIXTURES['llama-untied-f32']);
  vp.synthDataset(join(root, 'data'), { count: 4, seed: 3, frames: 4, size: 16, fps: 4 });
  const { r, outputs } = await trainHf(2, 'mismatch', join(root, 'model'), join(root, 'data'), 2, 2);
  t.is(r.code, 0, r.stderr.slice(-2000));
  for (const o of outputs) t.regex(o?.error ?? '', /PretrainedModel\.broadcastState: the ranks hold different models/);
});
