// The end-to-end demo and the method's ablation (`videoperceiver demo`, what
// `npm start` runs; `demo --full` for the powered run). On the embedded
// synthetic dataset (generated once, then cached) it trains five arms per seed:
//   (a)  plain SFT                                   (kim: false, contrastive: false)
//   (b)  SFT + KIM + contrastive                     (the method's stage 1)
//   (b0) SFT + contrastive, in-batch negatives only  (no KIM sequences)
//   (c)  (b) + comparative GRPO                      (the method's stage 2)
//   (c0) (b) + plain GRPO, the same RL budget        (comparative: 'none')
// (a), (b) and (b0) start from the same initialization and see the same clips
// in the same order; (c) and (c0) continue the same (b) model. The method arms
// take keywords from the caption text and key frames from the model-free
// transient detector (keyInfo 'extracted'); the annotations only score that
// extraction. Every arm is evaluated on the same held-out clips: event
// multiple-choice accuracy (the primary metric), counterfactual consistency
// (right on the clip and "nothing happened" on its KIM copy), event-keyword F1
// of greedy captions, and colour multiple-choice accuracy (the general-ability
// control). Paired comparisons over seeds: a sign-flip permutation test and a
// bootstrap 95 % interval over seeds and clips (report/stats.ts).
// Each (seed, arm) result is written when it is done (runs/seed-N/<arm>/result.json;
// (b)'s model too), so an interrupted run resumes where it stopped: an arm that
// Ctrl-C stopped mid-training (its stage checkpointed, DemoInterrupted thrown,
// nothing recorded) continues from that checkpoint on the same trajectory.
// `arms` runs a subset ((c)/(c0) need (b)); `keyInfo: 'annotated'` trains the
// method arms on the annotated keywords and key frames instead. Both are part
// of the resume stamp (the defaults keep the stamp of earlier versions).
// Cost: per seed three SFT runs, two RL runs and five evaluations; the default
// (one seed) takes about 5 minutes on 2 cores, --full about 55 minutes with
// two processes of one thread (demo --jobs 2, lib/demo-jobs.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { backendInfo } from './backend.js';
import type { Dataset } from './data/dataset.js';
import { cachedSynthDataset } from './data/synth-cache.js';
import type { SynthOptions } from './data/synth.js';
import { writeFileAtomic } from './fs.js';
import { locateKeyFrames } from './kim/keyframes.js';
import { VideoLM, type VideoLMConfig } from './model/videolm.js';
import { outputDir } from './paths.js';
import { ProgressBar } from './progress.js';
import { differencePlot } from './report/charts.js';
import { writeReport, type ReportRow, type ReportRun, type ReportSample } from './report/html.js';
import { pairedComparison, type PairedComparison } from './report/stats.js';
import { KimPlans, type KeyInfoSource } from './train/batch.js';
import type { EvaluationResult } from './train/eval.js';
import type { MetricEvent } from './train/metrics.js';
import { keywordF1 } from './train/rewards.js';
import { didYouMean } from './suggest.js';
import { annotatedKeywords, tokenizerForDataset } from './train/tasks.js';
import { Trainer, type RlOptions, type SftOptions, type StageResult } from './train/trainer.js';

/** The demo's sizes: the default (npm start), --quick (a smoke run) and --full (the powered ablation). */
export interface DemoPlan {
  trainClips: number;
  testClips: number;
  sftSteps: number;
  rlSteps: number;
  batchSize: number;
  /** Seeds run when none are given. */
  seeds: number[];
  /** Longest greedy caption in the evaluation. */
  evalMaxTokens: number;
  model: Omit<VideoLMConfig, 'vocab'>;
  sft: SftOptions;
  rl: RlOptions;
  synth: SynthOptions;
}

// 8x8 patches of 32x32 frames (16 tokens a frame, 128 a clip): with 16x16 patches a small object is
// a sliver of its patch and the model does not learn to see it within the demo's budget.
const MODEL: DemoPlan['model'] = { imageSize: 32, patchSize: 8, frames: 8, width: 128, layers: 4, heads: 4, kvHeads: 2, mlpRatio: 2.75, maxSeq: 512, tied: true };
// One object per clip, drawn 1.6x the generator's default size: the questions are about which brief
// event happened and (the control) the object's colour, not about telling objects apart.
const SYNTH: SynthOptions = { frames: 8, size: 32, fps: 4, objects: 1, objectScale: 1.6, colourQuestion: true, motionQuestion: false };
const SFT: SftOptions = { lr: 2e-3, questions: 'one' };
const RL: RlOptions = { promptsPerStep: 6, groupSize: 4, lr: 5e-5, maxTokens: 16, tasks: 'caption' };

export const DEMO_PLANS: Record<'default' | 'quick' | 'full', DemoPlan> = {
  default: { trainClips: 1600, testClips: 256, sftSteps: 600, rlSteps: 40, batchSize: 8, seeds: [0], evalMaxTokens: 16, model: MODEL, sft: SFT, rl: RL, synth: SYNTH },
  quick: {
    trainClips: 64, testClips: 24, sftSteps: 24, rlSteps: 2, batchSize: 8, seeds: [0], evalMaxTokens: 12, model: MODEL, sft: SFT,
    rl: { ...RL, promptsPerStep: 4, maxTokens: 12 }, synth: SYNTH,
  },
  full: { trainClips: 1600, testClips: 1024, sftSteps: 600, rlSteps: 40, batchSize: 8, seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], evalMaxTokens: 16, model: MODEL, sft: SFT, rl: RL, synth: SYNTH },
};

/** The arms, by key. */
export const DEMO_ARMS = {
  a: '(a) plain SFT',
  b: '(b) SFT + KIM + contrastive',
  b0: '(b0) SFT + contrastive, in-batch negatives',
  c: '(c) (b) + comparative GRPO',
  c0: '(c0) (b) + plain GRPO',
} as const;
export type DemoArm = keyof typeof DEMO_ARMS;
const ARMS = Object.keys(DEMO_ARMS) as DemoArm[];
/** The arms' names, in table order. */
export const DEMO_RUNS = ARMS.map((k) => DEMO_ARMS[k]);

/**
 * Checks a list of arm keys (`name` names it in errors): known keys, no repeats,
 * (c) and (c0) only with (b), whose model they continue. Returns them in table order.
 */
export function demoArms(arms: readonly unknown[], name = 'runDemo: opts.arms'): DemoArm[] {
  if (!Array.isArray(arms) || arms.length === 0) throw new RangeError(`${name} must name at least one arm of ${ARMS.join(', ')}`);
  for (const a of arms) {
    if (typeof a !== 'string' || !(ARMS as string[]).includes(a))
      throw new RangeError(`${name}: unknown arm ${JSON.stringify(a)}${typeof a === 'string' ? didYouMean(a, ARMS) : ''} (the arms: ${ARMS.join(', ')})`);
  }
  if (new Set(arms).size !== arms.length) throw new RangeError(`${name}: an arm is named twice (${arms.join(',')})`);
  const need = (['c', 'c0'] as const).filter((a) => arms.includes(a));
  if (need.length && !arms.includes('b')) throw new RangeError(`${name}: ${need.map((a) => `(${a})`).join(' and ')} continue (b)'s model, so they need b among the arms`);
  return ARMS.filter((a) => arms.includes(a));
}

/** The table's metrics, by name. */
export const DEMO_METRICS = {
  event: 'event MC accuracy',
  counterfactual: 'counterfactual consistency',
  f1: 'event keyword F1',
  colour: 'colour MC accuracy (control)',
} as const;
type MetricKey = keyof typeof DEMO_METRICS;
const METRIC_KEYS = Object.keys(DEMO_METRICS) as MetricKey[];

/** The metric and the comparison named before any run as the ablation's primary result. */
export const DEMO_PRIMARY = { metric: DEMO_METRICS.event, comparison: '(c) − (a)' } as const;

/** The paired comparisons reported for every metric: [name, arm 1, arm 2]. */
export const DEMO_COMPARISONS: readonly [string, DemoArm, DemoArm][] = [
  ['(c) − (a)', 'c', 'a'],
  ['(b) − (a)', 'b', 'a'],
  ['(b) − (b0)', 'b', 'b0'],
  ['(c) − (b)', 'c', 'b'],
  ['(c) − (c0)', 'c', 'c0'],
];

export interface DemoOptions {
  quick?: boolean;
  /** The powered ablation: 10 seeds, 1024 held-out clips (see DEMO_PLANS.full). */
  full?: boolean;
  /** Seeds to run (each: data order, init, sampling). Default: the plan's. */
  seeds?: number[];
  /** Output folder (default ./videoperceiver-demo): data/, runs/, report.html, results.json. */
  out?: string;
  /** Overrides of the plan (steps, sizes). */
  plan?: Partial<Pick<DemoPlan, 'trainClips' | 'testClips' | 'sftSteps' | 'rlSteps' | 'batchSize'>>;
  /** The arms to run (default all five, in table order); (c) and (c0) need (b). */
  arms?: DemoArm[];
  /**
   * Where the method arms' KIM, contrastive query and RL take key frames and keywords from:
   * 'extracted' (default: caption text and the transient detector) or 'annotated' (the
   * annotations, as Trainer.sft's keyInfo 'annotated').
   */
  keyInfo?: KeyInfoSource;
  /**
   * The method arms' contrastive term, for the ablation's follow-ups: its weight λ (Trainer.sft's
   * `lambda`, default 0.5) and the decoder layer it taps (`tapLayer`, default half the layers).
   * Part of the plan, so results of other values are never read back.
   */
  contrastive?: { lambda?: number; tapLayer?: number };
  /** Progress bars and log lines on stderr (default true). */
  progress?: boolean;
  log?: (line: string) => void;
}

/** One arm of one seed: its metrics and its per-clip scores (held-out clips in order). */
export interface DemoRunResult {
  seed: number;
  arm: DemoArm;
  run: string;
  metrics: Record<string, number>;
  /** Per metric key: one value per held-out clip (NaN where the clip has no such score). */
  perClip: Record<MetricKey, number[]>;
  trainSeconds: number;
  /** The CPU threads of the process that trained and evaluated it (results are deterministic for a thread count; absent in results of earlier versions). */
  threads?: number;
}

/** How well the model-free extraction found what the annotations say (training clips). */
export interface ExtractionQuality {
  clips: number;
  keywordPrecision: number;
  keywordRecall: number;
  keyFramePrecision: number;
  keyFrameRecall: number;
}

export interface DemoComparison extends PairedComparison {
  metric: string;
  comparison: string;
}

/**
 * Thrown by runDemo when a signal (Ctrl-C, SIGTERM) stopped an arm's training:
 * the arm's checkpoint is on disk and the same command resumes from it.
 */
export class DemoInterrupted extends Error {
  readonly signal: 'SIGINT' | 'SIGTERM' | undefined;
  constructor(readonly seed: number, readonly arm: DemoArm, readonly stage: StageResult, out: string) {
    super(`demo: seed ${seed} (${arm}) stopped at ${stage.stage} step ${stage.steps}${stage.checkpoint ? ` (checkpoint ${stage.checkpoint})` : ''}; ` +
      `run the same command again (same --out ${out}) to resume from there`);
    this.name = 'DemoInterrupted';
    this.signal = stage.signal;
  }
}

/** The events of a run folder's metrics.jsonl (null numbers read back as NaN); undefined without one. */
function metricEvents(runDir: string): MetricEvent[] | undefined {
  const p = join(runDir, 'metrics.jsonl');
  if (!existsSync(p)) return undefined;
  return readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l, (_k, v) => (v === null ? NaN : v)) as MetricEvent);
}

/** Seconds of training in a run's events (the sum of its steps' elapsedMs). */
function stepSeconds(events: MetricEvent[]): number {
  return events.reduce((ms, e) => ms + (e.type === 'step' ? e.elapsedMs : 0), 0) / 1000;
}

export interface DemoResult {
  plan: DemoPlan;
  seeds: number[];
  /** The arms run, in table order. */
  arms: DemoArm[];
  /** What the method arms took key frames and keywords from. */
  keyInfo: KeyInfoSource;
  runs: DemoRunResult[];
  /** Mean ± std over seeds, per arm and metric. */
  table: ReportRow[];
  comparisons: DemoComparison[];
  primary: typeof DEMO_PRIMARY;
  extraction: ExtractionQuality;
  /** The machine that wrote this result; `threads` is its VP_NUM_THREADS ('default' when unset): each run's own count is its `threads`. */
  machine: { cpu: string; cores: number; threads: string };
  report: string;
  seconds: number;
}

function meanStd(xs: number[]): { mean: number; std?: number } {
  const ok = xs.filter((x) => Number.isFinite(x));
  const mean = ok.reduce((a, b) => a + b, 0) / Math.max(ok.length, 1);
  if (ok.length < 2) return { mean: ok.length ? mean : NaN };
  const v = ok.reduce((a, b) => a + (b - mean) ** 2, 0) / (ok.length - 1);
  return { mean, std: Math.sqrt(v) };
}

const nanMean = (xs: number[]) => {
  const ok = xs.filter(Number.isFinite);
  return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : NaN;
};

/** Per held-out clip (in order): each metric's score. */
function perClipScores(e: EvaluationResult, ids: string[]): Record<MetricKey, number[]> {
  const at = new Map(ids.map((id, i) => [id, i]));
  const out = Object.fromEntries(METRIC_KEYS.map((k) => [k, new Array<number>(ids.length).fill(NaN)])) as Record<MetricKey, number[]>;
  for (const q of e.questions) {
    const i = at.get(q.id);
    if (i === undefined) continue;
    if (q.kind === 'event') {
      out.event[i] = q.predicted === q.answer ? 1 : 0;
      if (q.counterfactual) out.counterfactual[i] = q.predicted === q.answer && q.counterfactual.predicted === q.counterfactual.expected ? 1 : 0;
    } else if (q.kind === 'colour') out.colour[i] = q.predicted === q.answer ? 1 : 0;
  }
  for (const c of e.captions) {
    const i = at.get(c.id);
    if (i !== undefined) out.f1[i] = c.f1;
  }
  return out;
}

/** Precision and recall of the extracted keywords and key frames against the annotations (micro-averaged). */
function extractionQuality(trainer: Trainer, data: Dataset, plans: KimPlans): ExtractionQuality {
  let kwTp = 0, kwPred = 0, kwTrue = 0, kfTp = 0, kfPred = 0, kfTrue = 0;
  for (let i = 0; i < data.length; i++) {
    const clip = trainer.clip(data, i);
    const { plan } = plans.get(clip);
    const truthKw = new Set(annotatedKeywords(clip.annotation));
    const spans = (clip.annotation.events ?? []).filter((e) => typeof e.start === 'number' && typeof e.end === 'number') as { start: number; end: number }[];
    const truthKf = new Set(spans.length ? locateKeyFrames(clip.frameTimes, spans) : []);
    const predKw = plan?.keywords ?? [];
    const predKf = plan?.keyFrames ?? [];
    // A keyword matches when keyword F1 (lemmas, "change colour" vs "changes colour") counts it.
    kwPred += predKw.length;
    kwTrue += truthKw.size;
    kwTp += predKw.filter((k) => [...truthKw].some((t) => keywordF1(k, [t], [t]) === 1)).length;
    kfPred += predKf.length;
    kfTrue += truthKf.size;
    kfTp += predKf.filter((f) => truthKf.has(f)).length;
  }
  return {
    clips: data.length,
    keywordPrecision: kwPred ? kwTp / kwPred : NaN, keywordRecall: kwTrue ? kwTp / kwTrue : NaN,
    keyFramePrecision: kfPred ? kfTp / kfPred : NaN, keyFrameRecall: kfTrue ? kfTp / kfTrue : NaN,
  };
}

function machine(): DemoResult['machine'] {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /Model name:\s*(.+)/.exec(execFileSync('lscpu', { encoding: 'utf8' }));
    if (m) cpu = m[1].trim();
  } catch { /* lscpu absent: os.cpus() model */ }
  return { cpu, cores: cpus().length, threads: process.env.VP_NUM_THREADS ?? 'default' };
}

/** Runs the demo; returns the numbers and writes report.html and results.json into `out`. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const t0 = Date.now();
  if (opts.quick && opts.full) throw new RangeError('runDemo: opts.quick and opts.full exclude each other');
  const kind = opts.full ? 'full' : opts.quick ? 'quick' : 'default';
  const base = DEMO_PLANS[kind];
  const plan: DemoPlan = { ...base, ...opts.plan };
  const nce = opts.contrastive ?? {};
  for (const k of Object.keys(nce)) if (k !== 'lambda' && k !== 'tapLayer') throw new RangeError(`runDemo: opts.contrastive: unknown option ${JSON.stringify(k)} (the options: lambda, tapLayer)`);
  if (nce.lambda !== undefined && !(typeof nce.lambda === 'number' && Number.isFinite(nce.lambda) && nce.lambda >= 0))
    throw new RangeError(`runDemo: opts.contrastive.lambda must be a finite number ≥ 0, got ${nce.lambda}`);
  if (nce.tapLayer !== undefined && !(Number.isInteger(nce.tapLayer) && nce.tapLayer >= 0 && nce.tapLayer <= plan.model.layers))
    throw new RangeError(`runDemo: opts.contrastive.tapLayer must be an integer from 0 to ${plan.model.layers} (the model's layers), got ${nce.tapLayer}`);
  if (nce.lambda !== undefined) plan.sft = { ...plan.sft, lambda: nce.lambda };
  if (nce.tapLayer !== undefined) plan.sft = { ...plan.sft, tapLayer: nce.tapLayer };
  const seeds = opts.seeds ?? plan.seeds;
  const arms = demoArms(opts.arms ?? ARMS);
  const keyInfo = opts.keyInfo ?? 'extracted';
  if (keyInfo !== 'extracted' && keyInfo !== 'annotated') throw new RangeError(`runDemo: opts.keyInfo must be 'extracted' or 'annotated', got ${JSON.stringify(keyInfo)}`);
  const allArms = arms.length === ARMS.length;
  /** An arm's name in the table (the key-info source and the contrastive term's settings are named when they are not the defaults). */
  const methodVariant = `${keyInfo === 'annotated' ? ', annotated key info' : ''}${nce.lambda !== undefined ? `, λ ${nce.lambda}` : ''}${nce.tapLayer !== undefined ? `, tap layer ${nce.tapLayer}` : ''}`;
  const armName = (arm: DemoArm) => (arm !== 'a' ? `${DEMO_ARMS[arm]}${methodVariant}` : DEMO_ARMS[arm]);
  const runNames = arms.map(armName);
  const out = resolve(opts.out ?? 'videoperceiver-demo');
  const showProgress = opts.progress ?? true;
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  outputDir('demo: opts.out', out);

  log(`videoperceiver demo${opts.full ? ' --full' : ''}: ${plan.trainClips} training clips, ${plan.testClips} held-out clips, ${plan.sftSteps} SFT steps of ${plan.batchSize} clips, ${plan.rlSteps} RL steps; arms ${arms.join(', ')}${keyInfo === 'annotated' ? ' (annotated key info)' : ''}; seeds ${seeds.join(', ')}; output ${out}`);
  const train = cachedSynthDataset(join(out, 'data', `train-${plan.trainClips}`), plan.trainClips, 1000, plan.synth);
  const test = cachedSynthDataset(join(out, 'data', `test-${plan.testClips}`), plan.testClips, 2000, plan.synth);
  const tokenizer = tokenizerForDataset(train.annotations);
  const testIds = test.annotations.map((a) => a.id);
  // Results of another plan, key-info source or arm set are never read back. The defaults keep
  // the stamp of the versions before `arms` and `keyInfo`, so their runs still resume.
  const defaultStamp = JSON.stringify({ plan, version: 1 });
  const stamp = keyInfo === 'extracted' && allArms ? defaultStamp : JSON.stringify({ plan, version: 1, keyInfo, arms });

  // The extraction the method arms train on, scored against the annotations.
  const probe = await VideoLM.create({ ...plan.model, tokenizer, seed: 1 });
  const probeTrainer = new Trainer(probe, { seed: 0 });
  const extraction = extractionQuality(probeTrainer, train, new KimPlans(probe.config, tokenizer, { substitution: 'nearest', locator: 'transient', keyInfo: 'extracted' }));
  probeTrainer.dispose();
  probe.dispose();
  log(`  extraction (training clips): keywords precision ${extraction.keywordPrecision.toFixed(3)} recall ${extraction.keywordRecall.toFixed(3)}; key frames precision ${extraction.keyFramePrecision.toFixed(3)} recall ${extraction.keyFrameRecall.toFixed(3)}`);

  const results: DemoRunResult[] = [];
  const curves = new Map<string, Record<string, number>[]>();
  const captions = new Map<string, Map<string, string>>();
  const sampleIds = testIds.slice(0, 4);
  const units = seeds.length * arms.length;
  let unitsDone = 0, unitsRun = 0;
  const tRun = Date.now();
  const progressLine = () => {
    unitsDone++;
    const secs = (Date.now() - tRun) / 1000;
    const eta = unitsRun > 0 ? (secs / unitsRun) * (units - unitsDone) : NaN;
    log(`  [${unitsDone}/${units} arm runs] ${secs.toFixed(0)} s elapsed${Number.isFinite(eta) ? `, about ${(eta / 60).toFixed(1)} min left` : ''}`);
  };

  /** A training step as a point of the report's curves. */
  const curvePoint = (e: MetricEvent): Record<string, number> | undefined => {
    if (e.type !== 'step') return undefined;
    if (e.stage === 'sft') return { step: e.step, 'LM loss': e.lm, ...(e.contrastSamples ? { 'InfoNCE loss': e.nce } : {}) };
    return { step: e.step, 'RL reward (original video)': e.reward, ...(Number.isFinite(e.rewardDegraded) ? { 'RL reward (KIM video)': e.rewardDegraded } : {}) };
  };
  /** The curve of a finished arm, from its run's metrics.jsonl (resumed runs). */
  const curveOf = (events: MetricEvent[] | undefined): Record<string, number>[] | undefined =>
    events?.map(curvePoint).filter((x): x is Record<string, number> => x !== undefined);

  const trainArm = async (seed: number, arm: DemoArm, model: VideoLM, runDir: string) => {
    const stage = arm === 'c' || arm === 'c0' ? 'rl' : 'sft';
    const bar = showProgress ? new ProgressBar(`seed ${seed} (${arm}) ${stage}`, stage === 'sft' ? plan.sftSteps : plan.rlSteps) : undefined;
    const curve: Record<string, number>[] = [];
    const onStep = (e: MetricEvent) => {
      const point = curvePoint(e);
      if (!point || e.type !== 'step') return;
      curve.push(point);
      if (e.stage === 'sft') bar?.update(e.step, `lm ${e.lm.toFixed(3)}${e.contrastSamples ? ` nce ${e.nce.toFixed(3)}` : ''}`);
      else bar?.update(e.step, `reward ${e.reward.toFixed(3)}${Number.isFinite(e.rewardDegraded) ? ` (KIM ${e.rewardDegraded.toFixed(3)})` : ''}`);
    };
    // An arm stopped by a signal left a checkpoint: go on from it (the same
    // trajectory) when it was started with the same stamp; its earlier steps'
    // time is read back from metrics.jsonl.
    const stampFile = `${runDir}.stamp.json`;
    const sameStamp = existsSync(stampFile) ? readFileSync(stampFile, 'utf8') === stamp : stamp === defaultStamp;
    const resuming = sameStamp && existsSync(join(runDir, 'checkpoints', 'latest.json'));
    if (!resuming) {
      rmSync(runDir, { recursive: true, force: true });
      mkdirSync(dirname(runDir), { recursive: true });
      writeFileAtomic(stampFile, stamp);
    }
    const trainer = new Trainer(model, { seed, runDir, onStep, handleSigint: true });
    let earlierSecs = 0;
    if (resuming) {
      const r = await trainer.resume(runDir);
      earlierSecs = stepSeconds(metricEvents(runDir) ?? []);
      log(`  seed ${seed} (${arm}): resuming ${r.stage} from its checkpoint at step ${r.step}`);
    }
    const ts = Date.now();
    let res: StageResult;
    try {
      if (stage === 'sft') {
        const method = arm !== 'a';
        res = await trainer.sft(train, { ...plan.sft, steps: plan.sftSteps, batchSize: plan.batchSize, kim: arm === 'b', contrastive: method, keyInfo });
      } else {
        res = await trainer.rl(train, { ...plan.rl, steps: plan.rlSteps, keyInfo, comparative: arm === 'c' ? 'baseline' : 'none' });
      }
    } finally {
      trainer.dispose();
    }
    if (res.status !== 'done') throw new DemoInterrupted(seed, arm, res, out);
    const secs = earlierSecs + (Date.now() - ts) / 1000;
    return { curve: earlierSecs > 0 ? curveOf(metricEvents(runDir)) ?? curve : curve, secs };
  };

  const evaluateArm = async (seed: number, arm: DemoArm, model: VideoLM, trainSeconds: number, dir: string): Promise<DemoRunResult> => {
    const bar = showProgress ? new ProgressBar(`seed ${seed} (${arm}) eval`, plan.testClips * 2) : undefined;
    const trainer = new Trainer(model, { seed });
    let phase = 0;
    const ev = await trainer.evaluate(test, {
      maxTokens: plan.evalMaxTokens, questionKinds: ['event', 'colour'],
      onProgress: (d, n) => { if (d === n) phase = n; bar?.update(Math.min(phase + (d === n ? 0 : d), 2 * n)); },
    });
    bar?.update(plan.testClips * 2);
    trainer.dispose();
    const perClip = perClipScores(ev, testIds);
    const metrics = Object.fromEntries(METRIC_KEYS.map((k) => [DEMO_METRICS[k], nanMean(perClip[k])]));
    const r: DemoRunResult = { seed, arm, run: armName(arm), metrics, perClip, trainSeconds, threads: backendInfo().cpu.threads };
    const samples = Object.fromEntries(ev.captions.filter((c) => sampleIds.includes(c.id)).map((c) => [c.id, c.generated]));
    writeFileAtomic(join(dir, 'result.json'), JSON.stringify({ stamp, result: r, samples }) + '\n');
    return r;
  };

  /** A finished (seed, arm) from an earlier run of the same plan, if any. */
  const done = (dir: string): { result: DemoRunResult; samples: Record<string, string> } | undefined => {
    const p = join(dir, 'result.json');
    if (!existsSync(p)) return undefined;
    try {
      const j = JSON.parse(readFileSync(p, 'utf8'));
      return j.stamp === stamp ? { result: { ...j.result, perClip: Object.fromEntries(Object.entries(j.result.perClip as Record<string, (number | null)[]>).map(([k, v]) => [k, v.map((x) => x ?? NaN)])) }, samples: j.samples } : undefined;
    } catch {
      return undefined;
    }
  };

  const record = (seed: number, r: DemoRunResult, samples: Record<string, string>, curve?: Record<string, number>[]) => {
    results.push(r);
    if (seed === seeds[0]) {
      captions.set(r.run, new Map(Object.entries(samples)));
      if (curve) curves.set(r.run, curve);
    }
    log(`  seed ${seed} ${r.run}: ${Object.entries(r.metrics).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}`);
    progressLine();
  };

  for (const seed of seeds) {
    const runs = join(out, 'runs', `seed-${seed}`);
    mkdirSync(runs, { recursive: true });
    const create = () => VideoLM.create({ ...plan.model, tokenizer, seed: seed + 1 });
    const dirOf = (arm: DemoArm) => join(runs, arm);
    /** Trains and evaluates one arm (a model from `model()`), or reads it back when it is done. */
    const runArm = async (arm: DemoArm, model: () => Promise<VideoLM>, trainedBefore = 0) => {
      const prev = done(dirOf(arm));
      if (prev) return record(seed, prev.result, prev.samples, curveOf(metricEvents(join(dirOf(arm), 'train'))));
      const m = await model();
      const tr = await trainArm(seed, arm, m, join(dirOf(arm), 'train'));
      unitsRun++;
      const r = await evaluateArm(seed, arm, m, trainedBefore + tr.secs, dirOf(arm));
      m.dispose();
      record(seed, r, done(dirOf(arm))!.samples, tr.curve);
    };
    // (a), (b0): SFT from the shared initialization.
    for (const arm of ['a', 'b0'] as const) if (arms.includes(arm)) await runArm(arm, create);
    // (b), then (c) and (c0) from (b)'s model.
    if (!arms.includes('b')) continue;
    const bModel = join(dirOf('b'), 'model');
    let b: VideoLM;
    let bSecs: number;
    const prevB = done(dirOf('b'));
    if (prevB && existsSync(join(bModel, 'config.json'))) {
      b = await VideoLM.load(bModel);
      bSecs = prevB.result.trainSeconds;
      record(seed, prevB.result, prevB.samples, curveOf(metricEvents(join(dirOf('b'), 'train'))));
    } else {
      b = await create();
      const tr = await trainArm(seed, 'b', b, join(dirOf('b'), 'train'));
      unitsRun++;
      bSecs = tr.secs;
      rmSync(bModel, { recursive: true, force: true });
      await b.save(bModel);
      const r = await evaluateArm(seed, 'b', b, tr.secs, dirOf('b'));
      record(seed, r, done(dirOf('b'))!.samples, tr.curve);
    }
    // A trainable copy of (b) for each (clone() gives a frozen one).
    const copyOfB = async () => {
      const m = await create();
      await m.copyStateFrom(b);
      return m;
    };
    for (const arm of ['c', 'c0'] as const) if (arms.includes(arm)) await runArm(arm, copyOfB, bSecs);
    b.dispose();
  }

  const ordered = (arm: DemoArm) => seeds.map((s) => results.find((r) => r.seed === s && r.arm === arm)!);
  const table: ReportRow[] = arms.map((arm) => ({
    model: armName(arm),
    metrics: Object.fromEntries(METRIC_KEYS.map((k) => [DEMO_METRICS[k], meanStd(ordered(arm).map((r) => r.metrics[DEMO_METRICS[k]]))])),
  }));
  const comparisons: DemoComparison[] = [];
  for (const k of METRIC_KEYS) {
    for (const [name, x, y] of DEMO_COMPARISONS.filter(([, x, y]) => arms.includes(x) && arms.includes(y))) {
      const c = pairedComparison(ordered(x).map((r) => r.perClip[k]), ordered(y).map((r) => r.perClip[k]), { resamples: 2000 });
      comparisons.push({ metric: DEMO_METRICS[k], comparison: name, ...c });
    }
  }
  const samples: ReportSample[] = sampleIds.map((id) => {
    const i = test.annotations.findIndex((a) => a.id === id);
    const s = test.load(i);
    return { id, frames: s.frames, shape: s.shape, reference: s.caption, generated: Object.fromEntries(runNames.map((n) => [n, captions.get(n)?.get(id) ?? ''])) };
  });
  const seconds = (Date.now() - t0) / 1000;
  const reportRuns: ReportRun[] = runNames.map((n) => ({ name: n, curve: curves.get(n) ?? [] }));
  const report = join(out, 'report.html');
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const cmpTable = ['<table><thead><tr><th>metric</th><th>comparison</th><th>mean difference (points)</th><th>95% CI</th><th>p (sign-flip)</th><th>seeds</th></tr></thead><tbody>',
    ...comparisons.map((c) => `<tr><td>${esc(c.metric)}</td><td>${esc(c.comparison)}${c.metric === DEMO_PRIMARY.metric && c.comparison === DEMO_PRIMARY.comparison ? ' (primary)' : ''}</td><td>${pct(c.mean)}</td><td>[${pct(c.ci[0])}, ${pct(c.ci[1])}]</td><td>${Number.isFinite(c.p) ? c.p.toFixed(3) : 'n/a'}</td><td>${c.seeds}</td></tr>`),
    '</tbody></table>'].join('');
  const extractionHtml = `<table><thead><tr><th>what</th><th>precision</th><th>recall</th></tr></thead><tbody>
<tr><td>event keywords from the caption text</td><td>${extraction.keywordPrecision.toFixed(3)}</td><td>${extraction.keywordRecall.toFixed(3)}</td></tr>
<tr><td>key frames from the transient detector</td><td>${extraction.keyFramePrecision.toFixed(3)}</td><td>${extraction.keyFrameRecall.toFixed(3)}</td></tr></tbody></table>`;
  const plots = METRIC_KEYS.map((k) => differencePlot(`${DEMO_METRICS[k]}: paired differences per seed`,
    comparisons.filter((c) => c.metric === DEMO_METRICS[k]).map((c) => ({ name: c.comparison, perSeed: c.perSeed, mean: c.mean, ci: c.ci })))).join('\n');
  const m = machine();
  writeReport(report, {
    title: opts.quick ? 'videoperceiver demo (smoke run): seeing brief events' : `videoperceiver ${opts.full ? 'ablation (--full)' : 'demo'}: seeing brief events`,
    subtitle: `${plan.trainClips} synthetic training clips, ${plan.testClips} held-out clips; ${plan.sftSteps} SFT steps, ${plan.rlSteps} RL steps; ${allArms ? '' : `arms ${arms.join(', ')}; `}${keyInfo === 'annotated' ? 'annotated key info; ' : ''}seeds ${seeds.join(', ')}; ${seconds.toFixed(0)} s on ${m.cpu} (${m.cores} cores)`,
    runs: reportRuns,
    table,
    samples,
    sections: [
      { title: 'Paired comparisons (differences in points; sign-flip test over seeds, bootstrap CI over seeds and clips)', html: `${cmpTable}<div class="charts">${plots}</div>` },
      { title: `Key-information extraction (${keyInfo === 'extracted' ? 'what the method arms trained on' : 'not used by this run: the method arms trained on the annotations'}, scored against the annotations)`, html: extractionHtml },
    ],
    notes: [
      ...(opts.quick ? ['Smoke run (--quick): it shows that everything runs end to end; at this size its numbers and the differences between the arms are noise, not results.'] : []),
      `Primary result, named before the run: ${DEMO_PRIMARY.metric}, ${DEMO_PRIMARY.comparison}${arms.includes('c') && arms.includes('a') ? '' : ' (not run: this run has arms ' + arms.join(', ') + ')'}.`,
      '(a), (b) and (b0) start from the same initialization and see the same clips in the same order for the same number of steps; (c) and (c0) continue the same (b) model with the same RL budget.',
      keyInfo === 'extracted'
        ? 'The method arms take event keywords from the caption text and key frames from the transient detector; the annotations only score that extraction.'
        : 'The method arms take event keywords and key frames from the annotations (keyInfo \'annotated\'); the extraction is scored for comparison only.',
      'Event MC accuracy: which brief event happened (four options, one of them "nothing happened"; chance 0.25), answered by option likelihood. Counterfactual consistency: right on the clip and "nothing happened" on its KIM copy (the event frames substituted). Keyword F1: event keywords of greedy captions, precision over the event vocabulary. Colour MC accuracy: the object\'s colour (chance 0.25), the general-ability control.',
    ],
  });
  const result: DemoResult = { plan, seeds, arms, keyInfo, runs: results, table, comparisons, primary: DEMO_PRIMARY, extraction, machine: m, report, seconds };
  writeFileAtomic(join(out, 'results.json'), JSON.stringify(result, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n');
  return result;
}

/** A difference in points, signed (n/a when not finite). */
function pct(v: number): string {
  return Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)}` : 'n/a';
}

/** The results table as fixed-width text. */
export function formatDemoTable(table: ReportRow[]): string {
  const cols = Object.values(DEMO_METRICS) as string[];
  const w0 = Math.max(...table.map((r) => r.model.length), 5);
  const fmt = (v?: { mean: number; std?: number }) => (v && Number.isFinite(v.mean) ? `${v.mean.toFixed(3)}${v.std !== undefined ? ` ± ${v.std.toFixed(3)}` : ''}` : 'n/a');
  const widths = cols.map((c) => Math.max(c.length, ...table.map((r) => fmt(r.metrics[c]).length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w0) : c.padStart(widths[i - 1]))).join('  ');
  return [line(['model', ...cols]), line(['-'.repeat(w0), ...widths.map((w) => '-'.repeat(w))]), ...table.map((r) => line([r.model, ...cols.map((c) => fmt(r.metrics[c]))]))].join('\n');
}

/** The paired comparisons of one metric as fixed-width text. */
export function formatDemoComparisons(comparisons: DemoComparison[], metric: string = DEMO_PRIMARY.metric): string {
  const rows = comparisons.filter((c) => c.metric === metric);
  if (!rows.length) return `${metric}: no paired comparison among the arms run`;
  return [`${metric}, paired over ${rows[0]?.seeds ?? 0} seed(s) (points; 95% bootstrap CI; sign-flip p):`,
    ...rows.map((c) => `  ${c.comparison.padEnd(11)} ${pct(c.mean).padStart(6)}  [${pct(c.ci[0])}, ${pct(c.ci[1])}]  p = ${Number.isFinite(c.p) ? c.p.toFixed(3) : 'n/a'}`)].join('\n');
}
