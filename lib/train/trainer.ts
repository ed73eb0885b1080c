// vp.Trainer: the VideoPerceiver method as a training API (docs/method.md, docs/training.md).
//
//   stage 1  trainer.sft(data):  batches of clips → key frames → KIM variants →
//            one packed batch (A: video + prompt + response, B: KIM video) →
//            L = L_lm + λ·L_nce at layer ℓ (KIM frames as hard negatives) →
//            backward → AdamW.   kim: false, contrastive: false = plain SFT.
//   stage 2  trainer.rl(data):   rollout (per clip, G responses from the
//            original video and G from its KIM variant, one batched generation)
//            → score (task rewards; advantages with the degraded responses in
//            the baseline) → update (GRPO loss on the original responses'
//            log-probs → backward → AdamW, μ updates per rollout batch);
//            the three parts live in lib/train/rl.ts.
//
// Everything is deterministic for a seed on CPU: the data order of step s, the
// sampling seeds and the model's kernels depend only on (seed, s), so a run
// resumed from a checkpoint continues the same trajectory. Checkpoints are
// immutable, a failed step leaves the last good state on disk, and a resume
// refuses changed hyper-parameters unless told otherwise (lib/train/checkpoints.ts).
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import type { Dataset, VideoSample } from '../data/dataset.js';
import { backendInfo } from '../backend.js';
import { exitTogether } from '../distributed.js';
import { describe, rangeError, typeError } from '../errors.js';
import { writeFileAtomic } from '../fs.js';
import { CheckpointError, readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { outputDir } from '../paths.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { VideoLM, type VideoLMConfig } from '../model/videolm.js';
import { PretrainedModel } from '../pretrained/model.js';
import type { PretrainedTokenizer } from '../pretrained/tokenizer.js';
import { seededRandom } from '../random.js';
import { checkBoolean, checkKnownKeys, checkNumber, checkOptions } from '../validate.js';
import { KimPlans, type KeyInfoSource, type KimFramePosition, type TrainClip, type TrainerSftBatch } from './batch.js';
import { allFinite, changedArgs, CheckpointStore, DivergenceError, readTrainingArgs, type Stage, type TrainerState, type TrainingArgs } from './checkpoints.js';
import { ContrastiveHead } from './contrastive.js';
import { DataParallel } from './data-parallel.js';
import { evaluate, summarizeEvaluation, type EvaluateOptions, type EvaluationResult } from './eval.js';
import { checkStepMemory, clipTokens, memoryLimit } from './memory.js';
import { MetricBus, type CheckpointEvent, type MetricEvent, type RlStepEvent, type SftStepEvent } from './metrics.js';
import { MAX_STEPS, SFT_OPTION_KEYS, TRAINER_OPTION_KEYS } from './options.js';
import { advantageSpread, parseRlOptions, rollout, score, update, type RlOptions, type RlSettings, type RolloutPlace, type RolloutPrompt } from './rl.js';
import { isTrainableModel, modelIO, type ModelIO, type TrainableModel } from './model-io.js';
import { annotatedKeywords, clipTasks, fitClip } from './tasks.js';

/** Training data: a dataset from openDataset or openConversations (a LLaVA / ShareGPT file), or loaded samples. */
export type TrainData = Dataset | readonly VideoSample[];

export interface TrainerOptions {
  /** Folder for metrics.jsonl and checkpoints/ (created). Without it nothing is written. */
  runDir?: string;
  /** Seed of the data order, the sampling and the contrastive projections (default 0). */
  seed?: number;
  /** Called after every step with its metrics (and for evaluations and checkpoints). */
  onStep?: (event: MetricEvent) => void;
  /** Write a checkpoint every N optimizer steps (0: only at the end; default 0). Needs runDir. */
  checkpointEvery?: number;
  /**
   * On Ctrl-C (SIGINT) or SIGTERM (`kill`, `docker stop`, a scheduler's
   * pre-emption) finish the step, write a checkpoint, then exit as the signal
   * would (default true with a runDir). A second signal stops at once.
   */
  handleSigint?: boolean;
  /** Keep at most this many checkpoints, plus always the last and the best of each stage (default: keep all). Needs runDir. */
  saveTotalLimit?: number;
  /** Width of the contrastive projections (default 64). */
  contrastDim?: number;
}

export interface SftOptions {
  /** Optimizer steps (default: `epochs` passes over the data). */
  steps?: number;
  /** Passes over the data when `steps` is not given (default 1). */
  epochs?: number;
  /** Clips per micro-batch (default 8). */
  batchSize?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Peak learning rate (default 1e-3), warmup then cosine to minLr (default lr / 10). */
  lr?: number;
  minLr?: number;
  /** Default: 5% of the steps. */
  warmupSteps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  /** KIM variants as hard negatives (default true). */
  kim?: boolean;
  /** The contrastive term λ·L_nce (default true). kim and contrastive false: plain SFT. */
  contrastive?: boolean;
  /** λ (default 0.5). */
  lambda?: number;
  /** ℓ: layer of the contrastive tap (default the middle layer). */
  tapLayer?: number;
  /** InfoNCE temperature τ (default 0.07). */
  temperature?: number;
  /** Also train on the clips' multiple-choice questions: true (all, default), 'one' (one per clip per step, rotating), false. */
  questions?: boolean | 'one';
  substitution?: 'nearest' | 'previous' | 'next';
  /**
   * The frame-position embedding of a KIM copy: 'slot' (default: the position of the frame it
   * replaces, as a pixel-level substitution) or 'source' (the frame it was copied from; ablation).
   */
  kimFramePosition?: KimFramePosition;
  /**
   * Where keywords and key frames come from: 'annotated' (default: the annotation's events when
   * present, else the caption's keywords and the locator) or 'extracted' (always from the caption
   * text and the locator, annotations unused: the method end to end).
   */
  keyInfo?: KeyInfoSource;
  /** Key frames of clips without annotated spans: 'transient' (default) or 'none'. */
  locator?: 'transient' | 'none';
  signal?: AbortSignal;
}

export type { RewardFunction, RewardInput, RlComparativeMode, RlOptions } from './rl.js';

export interface StageResult {
  stage: 'sft' | 'rl';
  /** Steps of this stage done (including resumed ones). */
  steps: number;
  /** 'done', 'aborted' (signal / stop()), or 'interrupted' (SIGINT or SIGTERM). */
  status: 'done' | 'aborted' | 'interrupted';
  /** The signal that interrupted the stage (the process exits with it once the stage returns). */
  signal?: 'SIGINT' | 'SIGTERM';
  /** The last step's metrics. */
  last?: MetricEvent;
  /** The last checkpoint written, if any. */
  checkpoint?: string;
}

const RL_SEED = 0x2545f491;
const osSignals = constants.signals as Record<string, number>;

const mean = (x: ArrayLike<number>) => (x.length ? Array.from(x).reduce((a, b) => a + b, 0) / x.length : NaN);

function hashSeed(...xs: number[]): number {
  let h = 0x811c9dc5;
  for (const x of xs) {
    h ^= x >>> 0;
    h = Math.imul(h, 0x01000193) >>> 0;
    h ^= h >>> 13;
  }
  return h >>> 0;
}

/** The event keywords of every clip of the data (lower case, unique, sorted): the caption reward's vocabulary. */
export function eventVocabulary(data: TrainData): string[] {
  const list = Array.isArray(data) ? (data as readonly VideoSample[]) : (data as Dataset).annotations;
  const set = new Set<string>();
  for (const a of list) for (const k of annotatedKeywords(a)) set.add(k);
  return [...set].sort();
}

/** How two VideoLM tokenizers differ ("52 words there, 47 here; id 9 is "blue" there, "stays" here"), or undefined when they are the same or one is absent. */
function vocabularyDifference(saved: Tokenizer | undefined, mine: Tokenizer | undefined): string | undefined {
  if (!saved || !mine) return undefined;
  const a = saved.vocab, b = mine.vocab;
  const i = a.findIndex((w, k) => w !== b[k]);
  const at = i >= 0 ? i : a.length < b.length ? a.length : -1;
  if (at < 0) return undefined;
  const sizes = a.length !== b.length ? `${a.length} ids in the checkpoint's tokenizer.json, ${b.length} in the model's; ` : '';
  return `${sizes}id ${at} is ${JSON.stringify(a[at]) ?? 'absent'} there, ${JSON.stringify(b[at]) ?? 'absent'} here`;
}

/** Learning rate at step s (0-based) of `total`: linear warmup, then cosine from lr to minLr. */
export function scheduledLr(s: number, total: number, lr: number, minLr: number, warmup: number): number {
  if (warmup > 0 && s < warmup) return (lr * (s + 1)) / warmup;
  const span = Math.max(1, total - warmup);
  const t = Math.min(1, (s - warmup) / span);
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * t));
}

/**
 * Trains a VideoLM with the two-stage VideoPerceiver method; a text-only
 * PretrainedModel (a Hugging Face folder) trains on the text side of both
 * stages: prompt + response without video, so no KIM variants and no
 * contrastive term (lib/train/model-io.ts); a vision-language one trains with
 * the whole method, its KIM variants substituted at the frame level and the
 * contrastive term tapped at the decoder layer `tapLayer` (lib/train/vlm-sft.ts).
 */
export class Trainer {
  readonly model: TrainableModel;
  readonly tokenizer: Tokenizer | PretrainedTokenizer;
  readonly #io: ModelIO;
  readonly seed: number;
  readonly runDir: string | undefined;
  readonly #bus = new MetricBus();
  readonly #checkpointEvery: number;
  readonly #handleSigint: boolean;
  readonly head: ContrastiveHead;
  readonly #store: CheckpointStore | undefined;
  /** The hyper-parameters of this run, stage by stage (training_args.json). */
  #args: TrainingArgs;
  /** Those of the checkpoint resumed from, until its stage is called again. */
  #resumeArgs: TrainingArgs | undefined;
  #override = false;
  /** The newest checkpoint written or resumed from: the last good state. */
  #lastCheckpoint: string | undefined;
  #resume: TrainerState | undefined;
  #running = false;
  #stopRequested: 'aborted' | 'interrupted' | undefined;
  #reference: TrainableModel | undefined;
  #ownsReference = false;
  /** Set by dispose(): every later call refuses. */
  #disposed = false;
  /** Settles when the running stage has ended (Symbol.asyncDispose waits for it). */
  #stageEnded: Promise<void> = Promise.resolve();
  readonly #cache = new Map<string, TrainClip>();
  /** The data-parallel launch this trainer is part of (one rank outside a launch; lib/train/data-parallel.ts). */
  readonly #dp: DataParallel;

  constructor(model: TrainableModel, options: TrainerOptions = {}) {
    const fn = 'Trainer';
    if (!isTrainableModel(model)) throw typeError(fn, 'model', 'a VideoLM or a PretrainedModel', describe(model));
    if (model.frozen) throw typeError(fn, 'model', 'a trainable model', 'a frozen copy');
    if (model instanceof PretrainedModel ? !model.hasTokenizer : !model.tokenizer)
      throw typeError(fn, 'model.tokenizer', model instanceof PretrainedModel ? "a tokenizer (the folder's tokenizer.json)" : 'a Tokenizer (create the model with { tokenizer: vp.tokenizerForDataset(dataset.annotations) })', 'undefined');
    const o = checkOptions(fn, options);
    checkKnownKeys(fn, 'options', o, TRAINER_OPTION_KEYS);
    this.#dp = DataParallel.current(fn);
    this.model = model;
    this.tokenizer = model.tokenizer!;
    this.#io = modelIO(model);
    this.seed = checkNumber(fn, 'options.seed', o.seed, 0, { integer: true, min: 0, max: 2 ** 32 - 1 });
    if (o.runDir !== undefined && (typeof o.runDir !== 'string' || !o.runDir)) throw typeError(fn, 'options.runDir', 'a folder path', describe(o.runDir));
    this.runDir = o.runDir ? resolve(o.runDir as string) : undefined;
    if (o.onStep !== undefined && typeof o.onStep !== 'function') throw typeError(fn, 'options.onStep', 'a function', describe(o.onStep));
    this.#bus.onEvent = o.onStep as TrainerOptions['onStep'];
    this.#checkpointEvery = checkNumber(fn, 'options.checkpointEvery', o.checkpointEvery, 0, { integer: true, min: 0 });
    if (this.#checkpointEvery > 0 && !this.runDir) throw rangeError(fn, 'options.checkpointEvery', '0 without a runDir', `${this.#checkpointEvery}`);
    this.#handleSigint = checkBoolean(fn, 'options.handleSigint', o.handleSigint, this.runDir !== undefined);
    const dim = checkNumber(fn, 'options.contrastDim', o.contrastDim, 64, { integer: true, min: 1, max: 4096 });
    const keep = o.saveTotalLimit === undefined ? undefined : checkNumber(fn, 'options.saveTotalLimit', o.saveTotalLimit, 0, { integer: true, min: 1 });
    if (keep !== undefined && !this.runDir) throw rangeError(fn, 'options.saveTotalLimit', 'unset without a runDir', `${keep}`);
    this.head = new ContrastiveHead(this.#io.width, dim, this.seed);
    this.#args = { format: 'videoperceiver.TrainingArgs', seed: this.seed, contrastDim: dim, ...(model instanceof PretrainedModel ? { dtype: model.dtype } : {}) };
    if (this.runDir) {
      outputDir(`${fn}: options.runDir`, this.runDir);
      // Data parallel: rank 0 alone writes metrics.jsonl and checkpoints; every rank's onStep sees the events.
      if (this.#dp.writer) this.#bus.file = join(this.runDir, 'metrics.jsonl');
      this.#store = new CheckpointStore(this.runDir, keep);
    }
  }

  /** The metric events of the running (or next) stage, as an async iterable that ends with the stage. */
  metrics(): AsyncIterableIterator<MetricEvent> {
    this.#alive('Trainer.metrics');
    return this.#bus.stream();
  }

  /** Asks the running stage to stop after the current step (it writes a checkpoint when it has a runDir). */
  stop(): void {
    if (this.#running) this.#stopRequested ??= 'aborted';
  }

  // ---------------------------------------------------------------- data

  #count(data: TrainData): number {
    return Array.isArray(data) ? data.length : (data as Dataset).length;
  }

  #clip(fn: string, data: TrainData, i: number): TrainClip {
    const ds = data as Dataset;
    const key = Array.isArray(data) ? '' : `${resolve(ds.source ?? ds.dir)}#${i}`;
    const hit = key ? this.#cache.get(key) : undefined;
    if (hit) return hit;
    // A text-only model needs the annotation alone: no video is decoded.
    if (this.#io.textOnly && !Array.isArray(data)) return { frames: new Uint8Array(0), frameTimes: [], annotation: ds.annotations[i], index: i };
    const s = Array.isArray(data) ? (data as VideoSample[])[i] : ds.load(i);
    if (!s || !(s.frames instanceof Uint8Array) || !Array.isArray(s.shape))
      throw typeError(fn, `data[${i}]`, 'a VideoSample ({ frames: Uint8Array, shape, frameTimes, caption, ... })', describe(s));
    const { frames: _f, shape: _s, frameTimes: _t, videoPath: _p, ...annotation } = s;
    if (this.#io.textOnly) return { frames: new Uint8Array(0), frameTimes: [], annotation, index: i };
    const c = this.#io.clipShape ?? { frames: (this.model as VideoLM).config.frames, size: (this.model as VideoLM).config.imageSize };
    const clip: TrainClip = { ...fitClip(s, c.frames, c.size), annotation, index: i };
    // Cache up to ~256 MB of fitted clips (they are re-read every epoch).
    if (key && this.#cache.size * clip.frames.length < 256 * 2 ** 20) this.#cache.set(key, clip);
    return clip;
  }

  /** Sample indices of step `s` (micro-batch `j`): a seeded permutation per epoch. */
  #indices(data: TrainData, stageTag: number, s: number, perStep: number): { idx: number[]; epoch: number } {
    const n = this.#count(data);
    const out: number[] = [];
    let epoch = 0;
    let perm: number[] | undefined;
    let permEpoch = -1;
    for (let k = 0; k < perStep; k++) {
      const p = s * perStep + k;
      epoch = Math.floor(p / n);
      if (epoch !== permEpoch) {
        const r = seededRandom(hashSeed(this.seed, stageTag, epoch));
        perm = Array.from({ length: n }, (_, i) => i);
        for (let i = n - 1; i > 0; i--) {
          const j = Math.floor(r() * (i + 1));
          [perm[i], perm[j]] = [perm[j], perm[i]];
        }
        permEpoch = epoch;
      }
      out.push(perm![p % n]);
    }
    return { idx: out, epoch };
  }

  #checkData(fn: string, data: unknown): TrainData {
    const ok = Array.isArray(data) || (data !== null && typeof data === 'object' && typeof (data as Dataset).load === 'function' && typeof (data as Dataset).length === 'number');
    if (!ok) throw typeError(fn, 'dataset', 'a Dataset (vp.openDataset, vp.openConversations) or an array of VideoSample', describe(data));
    if (this.#count(data as TrainData) === 0) throw rangeError(fn, 'dataset', 'at least one sample', 'an empty dataset');
    return data as TrainData;
  }

  /** The packed stage-1 batch of given clips (what sft() trains on; exposed for inspection and tests). */
  sftBatch(clips: readonly TrainClip[], opts: Pick<SftOptions, 'kim' | 'contrastive' | 'questions' | 'substitution' | 'kimFramePosition' | 'keyInfo' | 'locator'> & { round?: number } = {}): TrainerSftBatch {
    this.#alive('Trainer.sftBatch');
    return this.#io.sftBatch(clips, {
      round: opts.round,
      kim: opts.kim ?? !this.#io.textOnly,
      contrastive: opts.contrastive ?? !this.#io.textOnly,
      questions: opts.questions ?? true,
      substitution: opts.substitution ?? 'nearest',
      kimFramePosition: opts.kimFramePosition ?? 'slot',
      keyInfo: opts.keyInfo ?? 'annotated',
      locator: opts.locator ?? 'transient',
    });
  }

  /** A clip of the data fitted to the model (frames sampled and resized), with its annotation. */
  clip(data: TrainData, i: number): TrainClip {
    this.#alive('Trainer.clip');
    return this.#clip('Trainer.clip', this.#checkData('Trainer.clip', data), i);
  }

  // ---------------------------------------------------------------- stages

  async #stage<T extends SftStepEvent | RlStepEvent>(
    stage: Stage,
    total: number,
    signal: AbortSignal | undefined,
    args: Record<string, unknown>,
    step: (s: number) => Promise<T>,
  ): Promise<StageResult> {
    const fn = `Trainer.${stage}`;
    this.#alive(fn);
    if (this.#running) throw new Error(`${fn}: a stage is already running on this trainer`);
    // The model's bf16 compute (VideoLM's or PretrainedModel's computeDtype) is part of the stage's
    // trajectory: recorded with its hyper-parameters (absent for float32, as in runs that predate
    // it), checked on resume.
    if (this.model.computeDtype === 'bfloat16') args = { ...args, computeDtype: 'bfloat16' };
    let start = 0;
    let consumed = true;
    if (this.#resume) {
      if (this.#resume.stage === stage) start = Math.min(this.#resume.step, total);
      else if (this.#resume.stage === 'rl' && stage === 'sft') {
        start = total; // SFT was finished before RL began; the resume applies to the rl() call that follows
        consumed = false;
      } // else: an unfinished SFT checkpoint, and rl() is called: RL starts at step 0
    }
    // Checks that change nothing come first: refused hyper-parameters, and checkpoints this stage would have to rewrite.
    if (start < total) {
      this.#checkArgs(fn, stage, args, start);
      const later = this.#store?.after(stage, start) ?? [];
      if (later.length > 0)
        throw new CheckpointError(`${fn}: ${this.#store!.root} already holds ${later.join(', ')}, past ${stage} step ${start} where this call starts; ` +
          'checkpoints are never rewritten: resume from the run\'s latest checkpoint (trainer.resume(runDir), CLI --resume) or train into a new run folder');
      this.#args[stage] = args;
      if (this.runDir && this.#dp.writer) writeFileAtomic(join(this.runDir, 'training_args.json'), JSON.stringify(this.#args, null, 2) + '\n');
    } else if (this.#resume) {
      // A stage the checkpoint already finished: nothing to train, but a changed value is not silently dropped either.
      this.#checkArgs(fn, stage, args, start);
    }
    if (consumed) this.#resume = undefined;
    this.#running = true;
    this.#stopRequested = undefined;
    let stageEnded!: () => void;
    this.#stageEnded = new Promise<void>((res) => (stageEnded = res));
    let signalled: NodeJS.Signals | undefined;
    const dp = this.#dp;
    // Data parallel: mpirun passes Ctrl-C on to the ranks as SIGTERM (after --mca
    // odls_base_sigkill_timeout seconds) and forwards SIGUSR1 at once.
    const signals: NodeJS.Signals[] = dp.active ? ['SIGINT', 'SIGTERM', 'SIGUSR1'] : ['SIGINT', 'SIGTERM'];
    let ended = false;
    const unlisten = () => {
      for (const x of signals) process.removeListener(x, onSignal);
    };
    const onSignal = (sig: NodeJS.Signals) => {
      unlisten();
      if (ended) {
        // The stage is over and its checkpoint written; unless another stage now handles the
        // signal, exit as it would.
        if (!this.#running) process.kill(process.pid, sig);
        return;
      }
      signalled ??= sig;
      this.#stopRequested = 'interrupted';
      if (!dp.active) process.stderr.write(`\nvideoperceiver: ${sig === 'SIGINT' ? 'interrupt' : sig}: finishing the step and writing a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : sig} again to quit now)\n`);
      else if (dp.writer) process.stderr.write(`\nvideoperceiver: rank 0: ${sig}: every rank finishes the step, then rank 0 writes a checkpoint (unless the launcher kills the job first)\n`);
    };
    const onAbort = () => this.stop();
    if (this.#handleSigint) for (const x of signals) process.on(x, onSignal);
    signal?.addEventListener('abort', onAbort);
    let last: MetricEvent | undefined;
    let checkpoint: string | undefined;
    let s = start;
    // The state at `start` is already on disk (resumed) or is the initial one: nothing to write for it.
    let written = start;
    // Retention's score of the next checkpoint: the mean loss (SFT) or reward (RL) since the previous one.
    let sum = 0;
    let n = 0;
    let savingAt = start;
    const save = async (at: number, finished: boolean, reason: CheckpointEvent['reason']) => {
      savingAt = at;
      const metric = n > 0 ? { name: stage === 'sft' ? ('loss' as const) : ('reward' as const), value: sum / n } : undefined;
      checkpoint = await this.#checkpoint(stage, at, total, finished, reason, metric);
      written = at;
      sum = 0;
      n = 0;
    };
    // Every rank stops after the same step: a stop asked on any rank (a signal, stop(), the AbortSignal) is agreed on.
    const stopNow = async (): Promise<boolean> => {
      if (!dp.active) return !!this.#stopRequested || !!signal?.aborted;
      const [interrupted, aborted] = await dp.sum([this.#stopRequested === 'interrupted' ? 1 : 0, this.#stopRequested === 'aborted' || signal?.aborted ? 1 : 0]);
      if (interrupted > 0) this.#stopRequested = 'interrupted';
      else if (aborted > 0) this.#stopRequested = 'aborted';
      return interrupted + aborted > 0;
    };
    let doing = 'step';
    try {
      await dp.syncState(this.model, this.head);
      for (; s < total && !(await stopNow()); s++) {
        const optimizerSteps = this.model.step;
        doing = 'step';
        try {
          last = await step(s);
        } catch (e) {
          // A step that took no optimizer step changed nothing: the state before it is good, save it
          // (in one process: the other ranks of a launch are not at a checkpoint, and this rank's exit ends them).
          if (this.#store && !dp.active && this.model.step === optimizerSteps && s > written) {
            try {
              await save(s, false, 'error');
            } catch (ce) {
              if (e instanceof Error) e.message += `\n(writing a checkpoint of the state before the failed step failed too: ${(ce as Error).message})`;
            }
          }
          throw e;
        }
        this.#bus.emit(last);
        const v = last.stage === 'sft' ? last.loss : last.reward;
        if (Number.isFinite(v)) {
          sum += v;
          n++;
        }
        if (this.#store && this.#checkpointEvery > 0 && (s + 1) % this.#checkpointEvery === 0 && s + 1 < total) {
          doing = 'checkpoint';
          await save(s + 1, false, 'interval');
        }
      }
      const status: StageResult['status'] = s >= total ? 'done' : this.#stopRequested === 'interrupted' ? 'interrupted' : 'aborted';
      if (this.#store && s > written) {
        doing = 'checkpoint';
        await save(s, status === 'done', status === 'interrupted' ? 'interrupt' : 'end');
      }
      return { stage, steps: s, status, last, checkpoint, ...(status === 'interrupted' && signalled ? { signal: signalled as 'SIGINT' | 'SIGTERM' } : {}) };
    } catch (e) {
      throw this.#failure(fn, stage, doing === 'step' ? s + 1 : savingAt, doing, e);
    } finally {
      // A signal that arrived in the stage's last moments may not have reached its listener yet
      // (Node dispatches it on the next event-loop turn, and drops it if no listener is left):
      // the listeners stay one more turn, and handle it as above.
      ended = true;
      setImmediate(unlisten);
      signal?.removeEventListener('abort', onAbort);
      this.#running = false;
      this.#bus.end();
      if (this.#disposed) this.#release(); // disposed while it ran: released now that it has stopped
      stageEnded();
      if (this.#stopRequested === 'interrupted' && dp.active) {
        // Every rank agreed to stop: they leave together once the checkpoint is on disk, with the
        // exit status of the signal (128 + its number; 130 on a rank that only heard of it).
        exitTogether(128 + (signalled ? osSignals[signalled] ?? 2 : 2));
      } else if (this.#stopRequested === 'interrupted' && signalled) {
        // Exit the way the unhandled signal would, now that the checkpoint is on disk.
        const sig = signalled;
        setImmediate(() => process.kill(process.pid, sig));
      }
    }
  }

  /** The error a failed stage throws: what failed, at which step, and where the last good state is. */
  #failure(fn: string, stage: Stage, step: number, doing: string, e: unknown): Error {
    const where = this.#lastCheckpoint ? `the last good checkpoint is ${this.#lastCheckpoint}` : this.runDir ? 'no checkpoint was written before it' : 'no runDir, so nothing was saved';
    if (e instanceof DivergenceError) return new DivergenceError(fn, stage, step, e.what, this.#lastCheckpoint);
    const err = e instanceof Error ? e : new Error(String(e));
    err.message += `\n(${fn} stopped at step ${step}${doing === 'step' ? '' : `, writing its ${doing}`}; ${where})`;
    return err;
  }

  /** Compares a resumed stage's hyper-parameters with the saved ones: a change is refused unless the resume allowed it. */
  #checkArgs(fn: string, stage: Stage, now: Record<string, unknown>, at: number): void {
    const saved = this.#resumeArgs?.[stage];
    if (!saved) return;
    const diff = changedArgs(saved, now);
    if (diff.length > 0) {
      const text = diff.map((d) => `${d.key} ${JSON.stringify(d.from) ?? 'unset'} → ${JSON.stringify(d.to) ?? 'unset'}`).join(', ');
      if (!this.#override)
        throw new RangeError(`${fn}: the run being resumed was trained with other hyper-parameters (${text}; from its training_args.json); ` +
          'changing them breaks its trajectory. Pass { override: true } to trainer.resume (CLI: --override) to go on with the new values');
      process.stderr.write(`videoperceiver: resuming ${stage} at step ${at} with changed hyper-parameters: ${text}\n`);
      this.#args.overrides = [...(this.#args.overrides ?? []), ...diff.map((d) => ({ stage, step: at, ...d }))];
    }
    this.#resumeArgs = { ...this.#resumeArgs!, [stage]: undefined };
  }

  /** Stage 1: SFT with KIM videos and the contrastive alignment term. */
  async sft(dataset: TrainData, opts: SftOptions = {}): Promise<StageResult> {
    const fn = 'Trainer.sft';
    this.#alive(fn);
    const data = this.#checkData(fn, dataset);
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, SFT_OPTION_KEYS);
    const io = this.#io;
    const batchSize = checkNumber(fn, 'opts.batchSize', o.batchSize, 8, { integer: true, min: 1 });
    const dp = this.#dp;
    dp.checkSplit(fn, 'opts.batchSize', batchSize);
    const gradAccum = checkNumber(fn, 'opts.gradAccum', o.gradAccum, 1, { integer: true, min: 1 });
    const epochs = checkNumber(fn, 'opts.epochs', o.epochs, 1, { gt: 0 });
    const perStep = batchSize * gradAccum;
    const total = checkNumber(fn, 'opts.steps', o.steps, Math.max(1, Math.ceil((epochs * this.#count(data)) / perStep)), { integer: true, min: 1, max: MAX_STEPS });
    const lr = checkNumber(fn, 'opts.lr', o.lr, 1e-3, { gt: 0 });
    const minLr = checkNumber(fn, 'opts.minLr', o.minLr, lr / 10, { min: 0 });
    const warmup = checkNumber(fn, 'opts.warmupSteps', o.warmupSteps, Math.floor(total * 0.05), { integer: true, min: 0 });
    const weightDecay = checkNumber(fn, 'opts.weightDecay', o.weightDecay, 0.1, { min: 0 });
    const maxGradNorm = checkNumber(fn, 'opts.maxGradNorm', o.maxGradNorm, 1);
    const kim = checkBoolean(fn, 'opts.kim', o.kim, !io.textOnly);
    const contrastive = checkBoolean(fn, 'opts.contrastive', o.contrastive, !io.textOnly);
    if (io.textOnly && (kim || contrastive))
      throw rangeError(fn, kim ? 'opts.kim' : 'opts.contrastive', 'false for a text-only model (KIM variants and the contrastive term need video)', 'true');
    const lambda = checkNumber(fn, 'opts.lambda', o.lambda, 0.5, { min: 0 });
    const tapLayer = checkNumber(fn, 'opts.tapLayer', o.tapLayer, Math.floor(io.layers / 2), { integer: true, min: 0, max: io.layers });
    const temperature = checkNumber(fn, 'opts.temperature', o.temperature, 0.07, { gt: 0 });
    const questions: boolean | 'one' = o.questions === 'one' ? 'one' : checkBoolean(fn, 'opts.questions', o.questions, true);
    const substitution = o.substitution ?? 'nearest';
    if (!['nearest', 'previous', 'next'].includes(substitution as string)) throw typeError(fn, 'opts.substitution', "'nearest' | 'previous' | 'next'", describe(substitution));
    const locator = o.locator ?? 'transient';
    if (!['transient', 'none'].includes(locator as string)) throw typeError(fn, 'opts.locator', "'transient' | 'none'", describe(locator));
    const kfp = o.kimFramePosition ?? 'slot';
    if (kfp !== 'slot' && kfp !== 'source') throw typeError(fn, 'opts.kimFramePosition', "'slot' | 'source'", describe(kfp));
    const kimFramePosition: KimFramePosition = kfp;
    const ki = o.keyInfo ?? 'annotated';
    if (ki !== 'annotated' && ki !== 'extracted') throw typeError(fn, 'opts.keyInfo', "'annotated' | 'extracted'", describe(ki));
    const keyInfo: KeyInfoSource = ki;
    const plan = { kim, contrastive, questions, substitution: substitution as SftOptions['substitution'], kimFramePosition, keyInfo, locator: locator as SftOptions['locator'] };
    // One micro-batch packs each clip's video, its KIM variant and text: refuse a size that cannot fit before allocating it.
    if (this.model instanceof VideoLM) {
      const cfg = this.model.config;
      checkStepMemory(fn, 'opts.batchSize', batchSize, cfg, batchSize * clipTokens(cfg) * (kim ? 2 : 1), this.#memory(), `${batchSize} clips of ${clipTokens(cfg)} visual tokens`);
    }
    const planOpts = { substitution: plan.substitution!, locator: plan.locator!, keyInfo };
    const kimPlans = this.model instanceof VideoLM ? new KimPlans(this.model.config, this.tokenizer as Tokenizer, planOpts) : io.kimPlans?.(planOpts);
    const t0 = Date.now();
    const args = { steps: total, batchSize, gradAccum, lr, minLr, warmupSteps: warmup, weightDecay, maxGradNorm, kim, contrastive, lambda, tapLayer, temperature, questions, substitution, kimFramePosition, keyInfo, locator };
    const diverged = (s: number, what: string) => new DivergenceError(fn, 'sft', s + 1, what);

    return this.#stage('sft', total, o.signal as AbortSignal | undefined, args, async (s) => {
      const ts = performance.now();
      const { idx, epoch } = this.#indices(data, 1, s, perStep);
      const stepLr = scheduledLr(s, total, lr, minLr, warmup);
      let lm = 0, nce = 0, acc = 0, margin = 0, groupsSeen = 0, kimSeqs = 0, rows = 0;
      this.head.zeroGrad();
      for (let j = 0; j < gradAccum; j++) {
        // Data parallel: this rank's contiguous piece of the micro-batch (all of it with one rank).
        const clips = dp.shard(idx.slice(j * batchSize, (j + 1) * batchSize)).map((i) => this.#clip(fn, data, i));
        const b = io.sftBatch(clips, { ...plan, substitution: plan.substitution!, locator: plan.locator!, round: s }, kimPlans);
        const useNce = contrastive && lambda > 0 && b.groups.length > 0;
        const tapRows = useNce ? ContrastiveHead.tapRows(b.groups) : undefined;
        const fw = await this.model.forward(b.batch, useNce ? { tapRows, tapLayer } : {});
        if (!dp.active) {
          rows += b.rows;
          kimSeqs += b.kimSequences;
          if (!Number.isFinite(fw.loss)) throw diverged(s, `the LM loss is ${fw.loss}`);
          lm += fw.loss / gradAccum;
          let dTap: Float32Array | undefined;
          if (useNce) {
            if (!allFinite(fw.tap)) throw diverged(s, `the hidden states at layer ${tapLayer} are not finite`);
            const r = this.head.forwardBackward(b.groups, fw.tap, temperature, lambda / gradAccum);
            if (!Number.isFinite(r.loss)) throw diverged(s, `the contrastive loss is ${r.loss}`);
            nce += r.loss / gradAccum;
            acc += r.accuracy * b.groups.length;
            margin += r.margin * b.groups.length;
            groupsSeen += b.groups.length;
            dTap = r.dTap;
          }
          await this.model.backward({ gradLoss: 1 / gradAccum, dTap, accumulate: j > 0 });
          continue;
        }
        // The micro-batch's LM loss is a mean over all ranks' targets: this rank's mean weighs
        // count / total; the contrastive term scores every rank's queries against every rank's keys.
        const noNeg = b.groups.some((g) => g.negative.length === 0);
        const [total, lossSum, groups, noNegRanks, rowsAll, kimAll] = await dp.sum([fw.count, fw.loss * fw.count, b.groups.length, noNeg ? 1 : 0, b.rows, b.kimSequences]);
        if (!Number.isFinite(lossSum)) throw diverged(s, `the LM loss is ${lossSum / total}`);
        if (useNce && !allFinite(fw.tap)) throw diverged(s, `the hidden states at layer ${tapLayer} are not finite`);
        rows += rowsAll;
        kimSeqs += kimAll;
        lm += (total > 0 ? lossSum / total : 0) / gradAccum;
        let dTap: Float32Array | undefined;
        if (contrastive && lambda > 0 && groups > 0) {
          const r = await this.head.forwardBackwardShared(b.groups, useNce ? fw.tap : new Float32Array(0), temperature, lambda / gradAccum, noNegRanks === 0, dp);
          if (!Number.isFinite(r.loss)) throw diverged(s, `the contrastive loss is ${r.loss}`);
          nce += r.loss / gradAccum;
          acc += r.accuracy * groups;
          margin += r.margin * groups;
          groupsSeen += groups;
          if (useNce) dTap = r.dTap;
        }
        await this.model.backward({ gradLoss: (total > 0 ? fw.count / total : 0) / gradAccum, dTap, accumulate: j > 0 });
      }
      await dp.reduceGradients(this.model, contrastive ? this.head : undefined);
      const st = await this.model.stepOptimizer({ lr: stepLr, weightDecay, maxGradNorm });
      if (!Number.isFinite(st.gradNorm)) throw diverged(s, `the gradient norm is ${st.gradNorm}; the step was not applied`);
      if (contrastive && groupsSeen > 0) this.head.update({ lr: stepLr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, maxGradNorm });
      const secs = (performance.now() - ts) / 1000;
      return {
        type: 'step', stage: 'sft', step: s + 1, totalSteps: total, epoch,
        loss: lm + lambda * nce, lm, nce, nceAccuracy: groupsSeen ? acc / groupsSeen : NaN, nceMargin: groupsSeen ? margin / groupsSeen : NaN,
        contrastSamples: groupsSeen, kimSequences: kimSeqs, lr: stepLr, gradNorm: st.gradNorm,
        tokensPerSec: rows / secs, rows, elapsedMs: Date.now() - t0,
      } satisfies SftStepEvent;
    });
  }

  /** Stage 2: RL with the comparative GRPO reward (rollout, scoring and update: lib/train/rl.ts). */
  async rl(dataset: TrainData, opts: RlOptions = {}): Promise<StageResult> {
    const fn = 'Trainer.rl';
    this.#alive(fn);
    const data = this.#checkData(fn, dataset);
    const s = parseRlOptions(fn, opts, this.#count(data));
    if (this.model instanceof VideoLM) {
      const cfg = this.model.config;
      // A rollout packs P·G original and as many KIM sequences (video, prompt and response).
      const seqs = s.promptsPerStep * s.groupSize * (s.mode === 'none' ? 1 : 2);
      checkStepMemory(fn, 'opts.promptsPerStep', s.promptsPerStep, cfg, seqs * (clipTokens(cfg) + s.maxTokens), this.#memory(), `${seqs} sequences of ${clipTokens(cfg)} visual tokens`);
    }
    const o = opts as RlOptions;
    const args = {
      steps: s.total, promptsPerStep: s.promptsPerStep, groupSize: s.groupSize, updatesPerBatch: s.updatesPerBatch, lr: s.lr, weightDecay: s.weightDecay,
      maxGradNorm: s.maxGradNorm, temperature: s.temperature, topP: s.topP, maxTokens: s.maxTokens, comparative: s.mode, bonus: s.bonus, ratio: s.ratio,
      reward: o.reward ? 'custom' : 'default', tasks: s.tasks, beta: s.beta, reference: o.reference ? 'given' : 'copy', epsLow: s.epsLow, epsHigh: s.epsHigh,
      lossType: s.lossType, scaleAdvantages: s.scale, substitution: s.substitution, kimFramePosition: s.kimFramePosition, keyInfo: s.keyInfo, locator: s.locator,
    };
    const dp = this.#dp;
    dp.checkSplit(fn, 'opts.promptsPerStep', s.promptsPerStep);
    if (s.beta > 0) {
      await dp.syncState(this.model, this.head); // the reference is a copy of the same model on every rank
      if (s.reference) this.#setReference(fn, s.reference, false);
      else if (!this.#reference) this.#setReference(fn, await this.model.clone(), true);
    }
    const kimPlans = !(this.model instanceof VideoLM) ? undefined : new KimPlans(this.model.config as VideoLMConfig, this.tokenizer as Tokenizer, { substitution: s.substitution, locator: s.locator, keyInfo: s.keyInfo });
    const vocabulary = eventVocabulary(data);
    const t0 = Date.now();
    return this.#stage('rl', s.total, s.signal, args, async (step) => {
      const ts = performance.now();
      const { idx, epoch } = this.#indices(data, 2, step, s.promptsPerStep);
      // Data parallel: this rank's piece of the prompts, each response sampled as in one process's batch.
      const first = dp.start(idx.length);
      const prompts = this.#rlPrompts(fn, data, dp.shard(idx), step, s, kimPlans, first);
      let place: RolloutPlace | undefined;
      if (dp.active) {
        const kim = new Array<number>(dp.size).fill(0);
        kim[dp.rank] = s.mode === 'none' ? 0 : prompts.filter((p) => p.frameMap).length;
        const all = await dp.sum(kim);
        place = { promptOffset: first, totalPrompts: idx.length, kimOffset: all.slice(0, dp.rank).reduce((a, b) => a + b, 0) };
      }
      const ro = await rollout(this.#io, prompts, s, hashSeed(this.seed, RL_SEED + 1, step), place);
      const sc = await score(ro, s, this.#io, fn, vocabulary, dp);
      const up = await update(this.model, this.#io, this.#reference, ro, sc.advantages, s, dp);
      if (!Number.isFinite(up.loss)) throw new DivergenceError(fn, 'rl', step + 1, `the GRPO loss is ${up.loss}`);
      const lengths = ro.responses.slice(0, ro.orig.length).map((r) => r.length);
      const [genTokens, lengthSum, responses] = await dp.sum([ro.responses.reduce((a, g) => a + g.length, 0), lengths.reduce((a, b) => a + b, 0), lengths.length]);
      const secs = (performance.now() - ts) / 1000;
      const all = sc.all;
      return {
        type: 'step', stage: 'rl', step: step + 1, totalSteps: s.total, epoch, loss: up.loss,
        reward: mean(all.taskOrig), rewardDegraded: all.taskDegraded.length ? mean(all.taskDegraded) : NaN, rewardTotal: mean(all.rewards),
        advantageStd: advantageSpread(all.advantages, s.groupSize), clipFraction: up.clipFraction, kl: up.kl, lr: up.lr, gradNorm: up.gradNorm,
        responseLength: responses ? lengthSum / responses : NaN,
        tokensPerSec: (up.tokens * s.updatesPerBatch + genTokens) / secs, elapsedMs: Date.now() - t0,
      } satisfies RlStepEvent;
    });
  }

  /**
   * The prompts of RL step `step`: per clip one task (seeded pick) and its KIM frame map when it has key frames.
   * `first`: the index of idx[0] in the step's batch (a data-parallel rank's piece), whose picks come after `first` others.
   */
  #rlPrompts(fn: string, data: TrainData, idx: number[], step: number, s: RlSettings, kimPlans: KimPlans | undefined, first = 0): RolloutPrompt[] {
    const pick = seededRandom(hashSeed(this.seed, RL_SEED, step));
    for (let k = 0; k < first; k++) pick();
    return idx.map((i) => {
      const clip = this.#clip(fn, data, i);
      const all = clipTasks(clip.annotation, s.tasks !== 'caption');
      const pool = s.tasks === 'questions' ? all.filter((t) => t.kind === 'question') : s.tasks === 'caption' ? all.slice(0, 1) : all;
      const task = (pool.length ? pool : all)[Math.floor(pick() * (pool.length || all.length))];
      const plan = s.mode === 'none' || !kimPlans ? undefined : kimPlans.get(clip).plan;
      const frameMap = plan && plan.keyFrames.length > 0 ? plan.substitution : s.mode === 'none' ? undefined : this.#io.kimFrameMap?.(clip, s.substitution, s.locator);
      return { clip, task, promptIds: this.#io.prompt(task.prompt), frameMap };
    });
  }

  #setReference(fn: string, m: TrainableModel, owned: boolean): void {
    if (this.#disposed) {
      // Disposed while the reference was being made (rl() and resume() await before they set it).
      if (owned) m.dispose();
      this.#alive(fn);
    }
    if (this.#reference && this.#ownsReference && this.#reference !== m) this.#reference.dispose();
    this.#reference = m;
    this.#ownsReference = owned;
  }

  /** Evaluates the model on held-out data (multiple-choice accuracy by option likelihood, caption keyword recall); emits an 'eval' event. */
  async evaluate(dataset: TrainData, opts: EvaluateOptions = {}): Promise<EvaluationResult> {
    this.#alive('Trainer.evaluate');
    const data = this.#checkData('Trainer.evaluate', dataset);
    const dp = this.#dp;
    // Data parallel: each rank evaluates its piece of the clips; the records are gathered in clip order.
    const indices = dp.shard(Array.from({ length: this.#count(data) }, (_, i) => i));
    const clips = indices.map((i) => this.#clip('Trainer.evaluate', data, i));
    let r = await evaluate(this.model, clips, { vocabulary: eventVocabulary(data), ...opts });
    if (dp.active) {
      const questions = await dp.gatherJson(r.questions);
      // JSON has no NaN: a recall that was NaN (a clip without keywords) comes back as null.
      const captions = (await dp.gatherJson(r.captions)).map((c) => ({ ...c, recall: c.recall ?? NaN }));
      r = summarizeEvaluation(questions, captions, opts);
    }
    const ev: MetricEvent = { type: 'eval', stage: 'eval', step: this.model.step, ...r.summary };
    this.#bus.emit(ev);
    return r;
  }

  // ---------------------------------------------------------------- checkpoints

  /** Bytes a training step may use: the GPU's for a CUDA model, else the host's. */
  #memory(): number {
    return memoryLimit(this.model.device === 'cuda' ? (backendInfo().cuda?.memoryBytes ?? undefined) : undefined);
  }

  async #checkpoint(stage: Stage, step: number, total: number, finished: boolean, reason: CheckpointEvent['reason'], metric: TrainerState['metric']): Promise<string> {
    const state: TrainerState = { format: 'videoperceiver.Trainer', version: 1, stage, step, finished, seed: this.seed, totalSteps: total, ...(metric ? { metric } : {}) };
    // Data parallel: rank 0 writes (every rank holds the same state); the others wait for it.
    const dir = !this.#dp.writer ? this.#store!.path(stage, step) : await this.#store!.write(state, this.#args, async (tmp) => {
      await Trainer.#saveModel(this.model, tmp);
      const h = this.head;
      const k = h.dim * h.width;
      writeSafetensors(join(tmp, 'trainer.safetensors'), {
        'contrast.query_proj': { dtype: 'F32', shape: [h.dim, h.width], data: h.params.subarray(0, k) },
        'contrast.key_proj': { dtype: 'F32', shape: [h.dim, h.width], data: h.params.subarray(k) },
        'contrast.m': { dtype: 'F32', shape: [2 * k], data: h.m },
        'contrast.v': { dtype: 'F32', shape: [2 * k], data: h.v },
      }, { step: String(h.step) });
      if (stage === 'rl' && this.#reference) await Trainer.#saveModel(this.#reference, join(tmp, 'reference'));
    });
    await this.#dp.barrier();
    this.#lastCheckpoint = dir;
    this.#bus.emit({ type: 'checkpoint', stage, step, path: dir, reason });
    return dir;
  }

  /** The checkpoint folder `dir` names: a checkpoint itself, or a run folder (its latest checkpoint). */
  static checkpointPath(dir: string): string {
    if (existsSync(join(dir, 'trainer.json'))) return dir;
    const latest = join(dir, 'checkpoints', 'latest.json');
    if (existsSync(latest)) {
      let name: unknown;
      try {
        name = (JSON.parse(readFileSync(latest, 'utf8')) as { checkpoint?: unknown }).checkpoint;
      } catch (e) {
        throw new CheckpointError(`${latest}: not valid JSON (${(e as Error).message})`);
      }
      if (typeof name !== 'string' || !/^(sft|rl)-\d+$/.test(name)) throw new CheckpointError(`${latest}: "checkpoint" must name a checkpoint folder, got ${JSON.stringify(name)}`);
      return join(dir, 'checkpoints', name);
    }
    throw new CheckpointError(`${dir}: neither a trainer checkpoint (trainer.json) nor a run folder (checkpoints/latest.json)`);
  }

  /**
   * Restores the model, its optimizer, the contrastive projections and the
   * trainer's position from a checkpoint (or a run folder's latest one). The
   * next sft() / rl() call with the same options continues the same trajectory;
   * options that differ from the checkpoint's training_args.json are refused
   * unless `opts.override` (then the change is recorded there), also when the
   * checkpoint's stage is already finished (the call then trains no step).
   * A VideoLM whose tokenizer differs from the checkpoint's tokenizer.json is
   * refused (its weights would pair with other words): create it from the
   * checkpoint (VideoLM.load) to resume.
   */
  async resume(dir: string, opts: { override?: boolean } = {}): Promise<{ stage: 'sft' | 'rl'; step: number; finished: boolean; path: string }> {
    const fn = 'Trainer.resume';
    this.#alive(fn);
    if (typeof dir !== 'string' || !dir) throw typeError(fn, 'dir', 'a checkpoint or run folder', describe(dir));
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, ['override']);
    const override = checkBoolean(fn, 'opts.override', o.override, false);
    if (this.#running) throw new Error(`${fn}: a stage is running`);
    const path = Trainer.checkpointPath(dir);
    const state = CheckpointStore.readState(path);
    const savedArgs = readTrainingArgs(join(path, 'training_args.json'));
    if (state.seed !== this.seed) throw rangeError(fn, 'options.seed', `the checkpoint's seed ${state.seed} (to continue its trajectory)`, `${this.seed}`);
    // A pretrained model's dtype (loadPretrained's opts.dtype) is part of the trajectory: bf16 products round differently.
    const dtype = this.model instanceof PretrainedModel ? this.model.dtype : undefined;
    const dtypeChange = dtype !== undefined && savedArgs?.dtype !== undefined && savedArgs.dtype !== dtype ? { key: 'dtype', from: savedArgs.dtype, to: dtype } : undefined;
    if (dtypeChange && !override)
      throw new RangeError(`${fn}: the run being resumed was trained with dtype '${dtypeChange.from}' (from its training_args.json) but the model is loaded with dtype '${dtype}'; ` +
        `changing it breaks its trajectory. Load the model with loadPretrained(dir, { dtype: '${dtypeChange.from}' }) (CLI: leave --dtype out or give --dtype ${dtypeChange.from}), ` +
        `or pass { override: true } to trainer.resume (CLI: --override) to go on in ${dtype}`);
    const loaded = await Trainer.#loadModel(this.model, path);
    try {
      // Same-sized vocabularies in another order would pair the weights with other words: refused by content.
      const words = this.model instanceof VideoLM ? vocabularyDifference((loaded as VideoLM).tokenizer, this.model.tokenizer) : undefined;
      if (words)
        throw new CheckpointError(`${path}: the checkpoint was trained with another tokenizer than this model's (${words}); its weights would pair with other words. ` +
          `Create the model from the checkpoint, with its config and tokenizer (vp.VideoLM.load('${path}'); the CLI's train --resume does), then resume`);
    } catch (e) {
      loaded.dispose();
      throw e;
    }
    try {
      if (this.model instanceof PretrainedModel) await this.model.copyStateFrom(loaded as PretrainedModel);
      else await this.model.copyStateFrom(loaded as VideoLM);
    } catch (e) {
      throw new CheckpointError(`${path}: the checkpoint's model does not match this trainer's model (${(e as Error).message})`);
    } finally {
      loaded.dispose();
    }
    const h = this.head;
    const k = h.dim * h.width;
    const st = readSafetensors(join(path, 'trainer.safetensors'), {
      expect: {
        'contrast.query_proj': { dtype: 'F32', shape: [h.dim, h.width] },
        'contrast.key_proj': { dtype: 'F32', shape: [h.dim, h.width] },
        'contrast.m': { dtype: 'F32', shape: [2 * k] },
        'contrast.v': { dtype: 'F32', shape: [2 * k] },
      },
    });
    h.params.set(st.tensors['contrast.query_proj'].data as Float32Array, 0);
    h.params.set(st.tensors['contrast.key_proj'].data as Float32Array, k);
    h.m.set(st.tensors['contrast.m'].data as Float32Array);
    h.v.set(st.tensors['contrast.v'].data as Float32Array);
    h.step = Number(st.metadata.step ?? 0);
    if (state.stage === 'rl' && existsSync(join(path, 'reference', 'config.json'))) {
      const ref = await Trainer.#loadModel(this.model, join(path, 'reference'));
      const copy = await ref.clone();
      ref.dispose();
      this.#setReference(fn, copy, true);
    }
    this.#resume = state;
    this.#resumeArgs = savedArgs;
    this.#override = override;
    this.#args = { ...(savedArgs ?? this.#args), seed: this.seed, contrastDim: this.head.dim, ...(dtype ? { dtype } : {}) };
    if (dtypeChange) {
      process.stderr.write(`videoperceiver: resuming ${state.stage} at step ${state.step} with a changed dtype: ${dtypeChange.from} → ${dtype}\n`);
      this.#args.overrides = [...(this.#args.overrides ?? []), { stage: state.stage, step: state.step, ...dtypeChange }];
    }
    this.#lastCheckpoint = resolve(path);
    if (this.#bus.file) MetricBus.truncateAfter(this.#bus.file, state.stage, state.step);
    return { stage: state.stage, step: state.step, finished: state.finished, path };
  }

  /** A model into a checkpoint folder: VideoLM.save, or a pretrained model's training checkpoint (weights, adapters, optimizer). */
  static async #saveModel(m: TrainableModel, dir: string): Promise<void> {
    if (m instanceof PretrainedModel) await m.saveCheckpoint(dir);
    else await m.save(dir);
  }

  /** A checkpoint folder's model, of the kind (and a pretrained model's dtype, the compute dtype) `like` is. */
  static async #loadModel(like: TrainableModel, dir: string): Promise<TrainableModel> {
    return like instanceof PretrainedModel
      ? PretrainedModel.loadCheckpoint(dir, { device: like.device, dtype: like.dtype, computeDtype: like.computeDtype })
      : VideoLM.load(dir, { computeDtype: like.computeDtype });
  }

  #alive(fn: string): void {
    if (this.#disposed) throw new Error(`${fn}: the trainer was disposed`);
  }

  /**
   * Frees what the trainer holds — the RL reference model it made, its cache
   * of fitted clips — and ends its metric streams; the trained model stays the
   * caller's. Later calls throw. A stage running when it is called stops after
   * its current step (writing its checkpoint, as stop() does) and releases
   * them as it ends. A second call does nothing.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#running) this.#stopRequested ??= 'aborted';
    else this.#release();
  }

  #release(): void {
    if (this.#reference && this.#ownsReference) this.#reference.dispose();
    this.#reference = undefined;
    this.#cache.clear();
    this.#bus.end();
  }

  /** `using trainer = new vp.Trainer(model)`: disposed at the end of the scope. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** `await using trainer = ...`: a running stage is stopped after its step and awaited, then the trainer is disposed. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
    await this.#stageEnded;
  }
}
