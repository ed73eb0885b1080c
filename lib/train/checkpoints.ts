// The checkpoints of a run folder, RUN/checkpoints/<stage>-<step>/, and what
// keeps them trustworthy:
//   * immutable: a checkpoint is built in a temporary folder and renamed into
//     place; a name that exists is never written again (rename refuses a
//     non-empty target), so resuming, interrupting or failing can never change
//     an earlier checkpoint; latest.json (the pointer to the newest) is the
//     only file that is replaced, atomically;
//   * retention: with a limit N, the N newest are kept, and always the last
//     one and the best one of each stage (SFT: lowest mean loss, RL: highest
//     mean reward over the steps since the previous checkpoint);
//   * training_args.json: the resolved hyper-parameters of each stage, saved in
//     the run folder and in every checkpoint; a resume compares them with the
//     new call's and refuses a change unless told to override it;
//   * DivergenceError: a NaN or infinite loss, activation or gradient, reported
//     with the step and the last good checkpoint.
// Cost: a directory listing and a few small JSON files per checkpoint.
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../fs.js';
import { CheckpointError } from '../model/safetensors.js';
import { outputDir } from '../paths.js';

export type Stage = 'sft' | 'rl';

/** trainer.json of a checkpoint. */
export interface TrainerState {
  format: 'videoperceiver.Trainer';
  version: 1;
  stage: Stage;
  /** Steps of `stage` done. */
  step: number;
  /** The stage finished (its final checkpoint). */
  finished: boolean;
  seed: number;
  totalSteps: number;
  /** What retention ranks by: SFT 'loss' (lower is better), RL 'reward' (higher is better), averaged since the previous checkpoint. */
  metric?: { name: 'loss' | 'reward'; value: number };
}

/** A NaN or infinite loss, activation or gradient: training stops; `checkpoint` is the last good state on disk. */
export class DivergenceError extends Error {
  override name = 'DivergenceError';
  readonly stage: Stage;
  readonly step: number;
  /** What was found not finite. */
  readonly what: string;
  /** The last good checkpoint (undefined without a runDir or when none was written). */
  readonly checkpoint: string | undefined;

  /** `step` 0: not known where it is thrown (the trainer adds it). */
  constructor(fn: string, stage: Stage, step: number, what: string, checkpoint?: string) {
    const where = step > 0 ? ` at step ${step} of ${stage === 'sft' ? 'SFT' : 'RL'}` : '';
    super(`${fn}: loss diverged${where} (${what}); ${checkpoint ? `last good checkpoint: ${checkpoint}` : 'no checkpoint holds the state before it'}`);
    this.stage = stage;
    this.step = step;
    this.what = what;
    this.checkpoint = checkpoint;
  }
}

/** True when every element is finite. */
export function allFinite(x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return false;
  return true;
}

const NAME = /^(sft|rl)-(\d+)$/;

/** The checkpoint folders of one run folder. */
export class CheckpointStore {
  readonly root: string;
  /** Keep at most this many (plus the best and the last); undefined: keep all. */
  readonly keep: number | undefined;

  constructor(runDir: string, keep?: number) {
    this.root = join(runDir, 'checkpoints');
    this.keep = keep;
  }

  static nameOf(stage: Stage, step: number): string {
    return `${stage}-${String(step).padStart(6, '0')}`;
  }

  path(stage: Stage, step: number): string {
    return join(this.root, CheckpointStore.nameOf(stage, step));
  }

  /** Checkpoint names, oldest first: SFT before RL, then by step. */
  list(): string[] {
    if (!existsSync(this.root)) return [];
    const rank = (n: string) => {
      const m = NAME.exec(n)!;
      return (m[1] === 'sft' ? 0 : 1) * 1e12 + Number(m[2]);
    };
    return readdirSync(this.root).filter((n) => NAME.test(n) && existsSync(join(this.root, n, 'trainer.json'))).sort((a, b) => rank(a) - rank(b));
  }

  /** Names of this stage's checkpoints past `step`. */
  after(stage: Stage, step: number): string[] {
    return this.list().filter((n) => {
      const m = NAME.exec(n)!;
      return m[1] === stage ? Number(m[2]) > step : stage === 'sft' && m[1] === 'rl';
    });
  }

  static readState(path: string): TrainerState {
    const statePath = join(path, 'trainer.json');
    let state: TrainerState;
    try {
      state = JSON.parse(readFileSync(statePath, 'utf8')) as TrainerState;
    } catch (e) {
      throw new CheckpointError(`${statePath}: cannot read (${(e as Error).message})`);
    }
    if (state?.format !== 'videoperceiver.Trainer' || (state.stage !== 'sft' && state.stage !== 'rl') || !Number.isSafeInteger(state.step) || state.step < 0)
      throw new CheckpointError(`${statePath}: not a videoperceiver.Trainer state`);
    return state;
  }

  /**
   * Writes checkpoint (state.stage, state.step): `fill(tmp)` writes the files
   * into a temporary folder, then trainer.json and training_args.json are added
   * and the folder is renamed into place. An existing checkpoint of that name
   * is an error (checkpoints are never rewritten). Then latest.json points to
   * it and retention runs.
   */
  async write(state: TrainerState, args: TrainingArgs, fill: (tmp: string) => Promise<void>): Promise<string> {
    outputDir('Trainer: options.runDir', this.root);
    const name = CheckpointStore.nameOf(state.stage, state.step);
    const dir = join(this.root, name);
    if (existsSync(dir)) throw new CheckpointError(`${dir}: already exists; a checkpoint is never rewritten (resume from the run's latest checkpoint, or train into a new run folder)`);
    const tmp = join(this.root, `.${name}.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    try {
      await fill(tmp);
      writeFileAtomic(join(tmp, 'training_args.json'), JSON.stringify(args, null, 2) + '\n');
      writeFileAtomic(join(tmp, 'trainer.json'), JSON.stringify(state, null, 2) + '\n');
      renameSync(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    writeFileAtomic(join(this.root, 'latest.json'), JSON.stringify({ checkpoint: name, stage: state.stage, step: state.step, finished: state.finished }) + '\n');
    this.prune();
    return dir;
  }

  /** The checkpoints retention would delete now: all but the `keep` newest, the last, and each stage's best. */
  prunable(): string[] {
    if (this.keep === undefined) return [];
    const names = this.list();
    const keep = new Set(names.slice(-this.keep));
    if (names.length) keep.add(names[names.length - 1]);
    for (const stage of ['sft', 'rl'] as const) {
      let best: string | undefined;
      let bestValue = NaN;
      for (const n of names.filter((x) => x.startsWith(`${stage}-`))) {
        const m = CheckpointStore.readState(join(this.root, n)).metric;
        if (!m || !Number.isFinite(m.value)) continue;
        const better = m.name === 'loss' ? m.value < bestValue : m.value > bestValue;
        if (best === undefined || better) {
          best = n;
          bestValue = m.value;
        }
      }
      if (best) keep.add(best);
    }
    return names.filter((n) => !keep.has(n));
  }

  /** Deletes what retention allows (a failure to delete is reported on stderr, never fatal). */
  prune(): string[] {
    const gone = this.prunable();
    for (const n of gone) {
      try {
        rmSync(join(this.root, n), { recursive: true, force: true });
      } catch (e) {
        process.stderr.write(`videoperceiver: could not delete old checkpoint ${join(this.root, n)}: ${(e as Error).message}\n`);
      }
    }
    return gone;
  }
}

/** training_args.json: what a run was trained with, stage by stage. */
export interface TrainingArgs {
  format: 'videoperceiver.TrainingArgs';
  seed: number;
  contrastDim: number;
  /** A PretrainedModel's dtype ('bfloat16': frozen matrices held in bf16; 'auto' on CUDA); a resume loads the same one. */
  dtype?: 'float32' | 'bfloat16' | 'auto';
  sft?: Record<string, unknown>;
  rl?: Record<string, unknown>;
  /** Changes accepted on a resume with override: true. */
  overrides?: { stage: Stage; step: number; key: string; from: unknown; to: unknown }[];
}

/** The keys whose values differ between a saved stage section and a new one. */
export function changedArgs(saved: Record<string, unknown>, now: Record<string, unknown>): { key: string; from: unknown; to: unknown }[] {
  const keys = new Set([...Object.keys(saved), ...Object.keys(now)]);
  return [...keys].filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(now[k])).map((k) => ({ key: k, from: saved[k], to: now[k] }));
}

/** Reads a training_args.json (undefined when the file does not exist). */
export function readTrainingArgs(path: string): TrainingArgs | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const a = JSON.parse(readFileSync(path, 'utf8')) as TrainingArgs;
    if (a?.format !== 'videoperceiver.TrainingArgs') throw new Error('not a videoperceiver.TrainingArgs file');
    return a;
  } catch (e) {
    throw new CheckpointError(`${path}: ${(e as Error).message}`);
  }
}
