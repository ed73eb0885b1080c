// Fault injection: training is killed and resumed, and ends where an
// uninterrupted run ends, bit for bit, without changing any checkpoint it had
// written; a full disk during a checkpoint write leaves the previous one intact.
//
//   * Kill points: `videoperceiver train --stage both` (SFT then RL) is sent
//     SIGINT or SIGTERM at random steps (4 runs × 5 kill points = 20, each one
//     interrupting the run; seeded, the seed is logged, VP_FAULT_SEED replays it)
//     and resumed with --resume after
//     each. Every checkpoint file's hash is recorded after each process and must
//     be the same after every later one; the final model and optimizer state,
//     and the loss of every step in metrics.jsonl, must equal those of a run
//     that was never interrupted; each checkpoint is logged once.
//   * Full disk: a run folder on a small tmpfs (or, where mounting is not
//     allowed, a file-size limit set with prlimit) runs out of space while a
//     checkpoint is written: the step fails with the path and the reason, the
//     previous checkpoint is unchanged and latest.json still names it, no half
//     checkpoint is left, and a resume with space again finishes bit-exactly.
//
// Sized for 2 cores: a 2-layer, 32-wide model, 12 clips of 4 frames, 12 SFT and
// 8 RL steps; 25 short processes (about 2 minutes on 2 loaded cores).
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { seededRandom } from '../lib/random.js';
import { fileHashes, runAndSignal } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'lib', 'cli.ts');
const MODEL = { imageSize: 16, patchSize: 8, frames: 4, width: 32, layers: 2, heads: 2, kvHeads: 1, mlpRatio: 2, maxSeq: 128, tied: true };
const SFT_STEPS = 12;
const RL_STEPS = 8;

const work = mkdtempSync(join(tmpdir(), 'vp-faults-'));
const data = join(work, 'data');
vp.synthDataset(data, { count: 12, seed: 7, frames: 4, size: 16, fps: 4 });
const config = join(work, 'config.json');
writeFileSync(config, JSON.stringify({ model: MODEL, sft: { lr: 3e-3 }, rl: { promptsPerStep: 2, maxTokens: 4, lr: 1e-3, beta: 0.02 } }));
const trainArgs = (out: string) => ['train', '--data', data, '--out', out, '--stage', 'both', '--steps', String(SFT_STEPS), '--rl-steps', String(RL_STEPS),
  '--batch-size', '2', '--group-size', '2', '--seed', '3', '--checkpoint-every', '4', '--config', config, '--json'];

/** Hashes of every checkpoint file but latest.json (the one pointer that moves). */
const hashes = (dir: string) => fileHashes(dir, ['latest.json']);

/** Runs the CLI; sends `sig` once the step with global index >= `killAt` (SFT 1..S, RL S+1..S+R) is printed. */
async function train(args: string[], killAt?: number, sig: NodeJS.Signals = 'SIGINT') {
  const at = (e: { stage?: string; step?: number }) => (e.stage === 'sft' ? e.step! : SFT_STEPS + e.step!);
  const r = await runAndSignal([CLI, ...args], ROOT, (e) => e.type === 'step' && killAt !== undefined && at(e) >= killAt, sig);
  return { ...r, killedAt: r.sentAfter ? at(r.sentAfter) : undefined };
}

function steps(run: string): string[] {
  return readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    .filter((e) => e.type === 'step').map((e) => `${e.stage}${e.step}:${e.loss}`);
}

function checkpointEvents(run: string): string[] {
  return readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    .filter((e) => e.type === 'checkpoint').map((e) => `${e.stage}-${e.step}`);
}

let reference: Promise<string> | undefined;
function referenceRun(): Promise<string> {
  reference ??= (async () => {
    const out = join(work, 'reference');
    const r = await train(trainArgs(out));
    if (r.code !== 0) throw new Error(`the uninterrupted run failed: ${r.err}`);
    return out;
  })();
  return reference;
}

function sameModel(t: import('ava').ExecutionContext, dir: string, ref: string, what: string): void {
  for (const f of ['model.safetensors', 'optimizer.safetensors'])
    t.true(readFileSync(join(dir, f)).equals(readFileSync(join(ref, f))), `${what}: ${f} differs from the uninterrupted run`);
}

const seed = Number(process.env.VP_FAULT_SEED ?? Date.now() % 1_000_000);

for (let episode = 0; episode < 4; episode++) {
  test.serial(`killed with SIGINT/SIGTERM at 5 random steps of SFT and RL, resumed each time: bit-identical to an uninterrupted run, no checkpoint changed (run ${episode + 1} of 4)`, async (t) => {
    t.timeout(10 * 60_000);
    t.log(`VP_FAULT_SEED=${seed}`);
    const rand = seededRandom(seed * 4 + episode);
    const total = SFT_STEPS + RL_STEPS;
    // Five kill points: the first at step 1 or 2, then gaps of 3 or 4 steps (a process killed after
    // step k checkpoints k+1 or so, and the next one must still have steps to run), so the first is
    // in SFT and the last in RL (13 .. 18 of 20).
    const kills = [1 + Math.floor(rand() * 2)];
    while (kills.length < 5) kills.push(kills[kills.length - 1] + 3 + Math.floor(rand() * 2));
    t.true(kills[0] <= SFT_STEPS && kills[4] > SFT_STEPS && kills[4] < total);
    let interrupted = 0;
    const ref = await referenceRun();
    const run = join(work, `run-${episode}`);
    const seen = new Map<string, string>();
    const log: string[] = [];
    let first = true;
    for (const at of [...kills, undefined]) {
      const sig: NodeJS.Signals = rand() < 0.5 ? 'SIGINT' : 'SIGTERM';
      const args = first ? trainArgs(run) : [...trainArgs(run), '--resume'];
      first = false;
      const r = await train(args, at, sig);
      log.push(`kill ${sig} at ${at ?? '-'} (sent at ${r.killedAt ?? '-'}): exit ${r.code ?? r.signal}`);
      if (at === undefined) t.is(r.code, 0, `${log.join('; ')}\n${r.err.slice(-600)}`);
      else {
        // Every kill point interrupts a run that still had steps to do.
        t.true(r.killedAt !== undefined && (r.code === 130 || r.code === 143 || r.signal === sig), `${log.join('; ')}\n${r.err.slice(-600)}`);
        interrupted++;
      }
      // Every checkpoint file seen after an earlier process is still there, unchanged.
      const now = hashes(join(run, 'checkpoints'));
      for (const [f, h] of seen) t.is(now.get(f), h, `${f} changed after: ${log.at(-1)}`);
      for (const [f, h] of now) seen.set(f, h);
      if (r.code === 0 && at !== undefined) break; // (failed above) the run ended before the kill
    }
    t.log(log.join('\n'));
    t.is(interrupted, 5);
    sameModel(t, join(run, 'model'), join(ref, 'model'), 'final model');
    sameModel(t, join(run, 'checkpoints', `rl-${String(RL_STEPS).padStart(6, '0')}`), join(ref, 'checkpoints', `rl-${String(RL_STEPS).padStart(6, '0')}`), 'last checkpoint');
    t.deepEqual(steps(run), steps(ref));
    const ck = checkpointEvents(run);
    t.deepEqual(ck, [...new Set(ck)], 'a checkpoint was logged twice');
  });
}

/** Mounts a tmpfs of `bytes` at dir (root with mount rights only). */
function mountTmpfs(dir: string, bytes: number): boolean {
  mkdirSync(dir, { recursive: true });
  return spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]).status === 0;
}

test.serial('a full disk during a checkpoint write leaves the previous checkpoint intact; a resume with space finishes bit-exactly', async (t) => {
  t.timeout(10 * 60_000);
  const disk = join(work, 'disk');
  // VP_FAULT_DISK=prlimit tests the file-size limit even where a tmpfs can be mounted.
  const tmpfs = process.env.VP_FAULT_DISK !== 'prlimit' && mountTmpfs(disk, 16 << 20);
  mkdirSync(disk, { recursive: true });
  const prlimit = spawnSync('prlimit', ['--version']).status === 0;
  if (!tmpfs && !prlimit) return t.pass('neither a tmpfs mount nor prlimit is available here: skipped');
  t.log(tmpfs ? 'full disk: a 16 MiB tmpfs filled up' : 'full disk: a file-size limit (prlimit --fsize)');
  const run = join(disk, 'run');
  const gate = join(work, 'disk-gate');
  const script = join(work, 'disk-train.mts');
  // The child pauses after its first checkpoint until the parent has filled the disk (or set the limit).
  writeFileSync(script, `
import { existsSync } from 'node:fs';
import * as vp from ${JSON.stringify(join(ROOT, 'lib', 'index.ts'))};
const ds = vp.openDataset(${JSON.stringify(data)});
const model = await vp.VideoLM.create({ ...${JSON.stringify(MODEL)}, tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 3 });
const resume = process.argv.includes('--resume');
const tr = new vp.Trainer(model, { seed: 3, runDir: ${JSON.stringify(run)}, checkpointEvery: 2, onStep: (e) => {
  if (e.type !== 'checkpoint' || resume) return;
  console.log('checkpoint ' + e.step);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (!existsSync(${JSON.stringify(gate)})) Atomics.wait(pause, 0, 0, 20);
} });
if (resume) await tr.resume(${JSON.stringify(run)});
try {
  await tr.sft(ds, { steps: 6, batchSize: 2, lr: 3e-3 });
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
`);
  const child = spawn(process.execPath, ['--import=tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  await new Promise<void>((res) => child.stdout.on('data', (d) => String(d).includes('checkpoint 2') && res()));
  const before = hashes(join(run, 'checkpoints'));
  if (tmpfs) {
    // Leave 64 KiB: less than a checkpoint's model file.
    const st = statfsSync(disk);
    writeFileSync(join(disk, 'filler'), Buffer.alloc(Math.max(0, st.bavail * st.bsize - (64 << 10))));
  } else {
    spawnSync('prlimit', ['--pid', String(child.pid), '--fsize=65536']);
  }
  writeFileSync(gate, '');
  const code = await exited;
  try {
    t.is(code, 1, err);
    t.regex(err, tmpfs ? /no space left on the device \(ENOSPC\)/ : /\(EFBIG\)/);
    t.regex(err, /cannot write .*checkpoints\/\.sft-000004\.tmp-\d+\//);
    t.regex(err, /Trainer\.sft stopped at step 4, writing its checkpoint; the last good checkpoint is .*sft-000002/);
    t.deepEqual(hashes(join(run, 'checkpoints')), before);
    t.deepEqual(readdirSync(join(run, 'checkpoints')).sort(), ['latest.json', 'sft-000002']);
    t.is(JSON.parse(readFileSync(join(run, 'checkpoints', 'latest.json'), 'utf8')).checkpoint, 'sft-000002');
    // Space again: the resume finishes where an uninterrupted run finishes.
    rmSync(join(disk, 'filler'), { force: true });
    const again = spawnSync(process.execPath, ['--import=tsx', script, '--resume'], { cwd: ROOT, encoding: 'utf8' });
    t.is(again.status, 0, again.stderr);
    const ds = vp.openDataset(data);
    const ref = await vp.VideoLM.create({ ...MODEL, tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 3 });
    const refRun = join(work, 'disk-reference');
    await new vp.Trainer(ref, { seed: 3, runDir: refRun, checkpointEvery: 2 }).sft(ds, { steps: 6, batchSize: 2, lr: 3e-3 });
    sameModel(t, join(run, 'checkpoints', 'sft-000006'), join(refRun, 'checkpoints', 'sft-000006'), 'resumed after the full disk');
    ref.dispose();
  } finally {
    if (tmpfs) spawnSync('umount', [disk]);
  }
});

test.after.always(() => {
  spawnSync('umount', [join(work, 'disk')]);
  rmSync(work, { recursive: true, force: true });
});
