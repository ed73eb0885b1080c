// Stage 2 of the method (docs/training.md, docs/grpo.md): one RL step in three
// parts, as TRL's GRPOTrainer separates generation and scoring from the loss.
//
//   rollout(): per prompt, G responses from the original video and G from its
//              KIM variant, in one batched generation (KV cache, seeded);
//   score():   task rewards of every response, then the original responses'
//              advantages: by default comparativeAdvantages (the degraded
//              responses enter the baseline), or reward shaping
//              (comparativeRewards, 'pairwise' | 'threshold') + groupAdvantages,
//              or plain GRPO ('none': no KIM rollouts);
//   update():  μ policy updates of the clipped GRPO loss on the original
//              responses' log-probs (old log-probs from the first pass, an
//              optional KL term to a frozen reference).
//
// Data parallel (lib/train/data-parallel.ts): each rank rolls out its piece of
// the prompts (each response on the sampler stream it has in one process's
// batch), the rewards are gathered before the advantages (group statistics
// stay within a prompt's group; batch statistics are the whole batch's), and
// each rank's loss gradient is weighted by its share of the batch.
//
// Cost per step: one generation of P·G·2 responses (maxTokens decode steps),
// the reward calls, and μ forward+backward passes over the P·G original
// responses (plus one reference forward when beta > 0).
import { describe, rangeError, typeError } from '../errors.js';
import { comparativeAdvantages, comparativeRewards, groupAdvantages, grpoLoss, type AdvantageScale, type ComparativeMode, type GrpoLossType } from '../ops/grpo.js';
import { checkKnownKeys, checkNumber, checkOptions } from '../validate.js';
import type { PromptItem, TrainClip } from './batch.js';
import { allFinite, DivergenceError } from './checkpoints.js';
import type { DataParallel } from './data-parallel.js';
import { isTrainableModel, type ModelIO, type TrainableModel } from './model-io.js';
import { MAX_STEPS, RL_OPTION_KEYS } from './options.js';
import { defaultTaskReward } from './rewards.js';
import { annotatedKeywords, type ClipTask } from './tasks.js';

/** What a reward function sees of one response. */
export interface RewardInput {
  response: string;
  /** The clip's event keywords. */
  keywords: readonly string[];
  /** Present when the prompt was a multiple-choice question. */
  question?: { options: readonly string[]; answer: number | string };
  task: ClipTask;
  /** The clip's annotation. */
  sample: TrainClip['annotation'];
  /** True for a response to the KIM (degraded) video. */
  degraded: boolean;
  /** The event keywords of the whole dataset (the default caption reward counts its precision over them). */
  vocabulary: readonly string[];
}

export type RewardFunction = (x: RewardInput) => number | Promise<number>;

/**
 * How the degraded (KIM) responses shape the original responses' advantages:
 * 'baseline' (default): comparativeAdvantages, the degraded rewards enter the
 * group's mean and std; 'pairwise' / 'threshold': comparativeRewards then
 * groupAdvantages (reward shaping, kept for comparison); 'none': plain GRPO,
 * no KIM rollouts.
 */
export type RlComparativeMode = 'baseline' | ComparativeMode | 'none';

export interface RlOptions {
  /** Rollout batches (default: `epochs` passes over the clips). */
  steps?: number;
  epochs?: number;
  /** Clips (prompts) per rollout batch (default 4). */
  promptsPerStep?: number;
  /** G: responses per prompt from the original video, and as many from the KIM video (default 4). */
  groupSize?: number;
  /** Policy updates per rollout batch, μ (default 1). */
  updatesPerBatch?: number;
  lr?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  /** Sampling temperature (default 1) and nucleus (default 1). */
  temperature?: number;
  topP?: number;
  /** Longest response in tokens (default 24). */
  maxTokens?: number;
  /** 'baseline' (default), 'pairwise', 'threshold' (T-GRPO), or 'none' (plain GRPO, no KIM rollouts). */
  comparative?: RlComparativeMode;
  /** Reward-shaping modes only: the bonus and the threshold ratio of comparativeRewards. */
  bonus?: number;
  ratio?: number;
  /** Task reward per response (default: event-keyword F1 for captions, exact match for questions). */
  reward?: RewardFunction;
  /** Which prompts: 'all' (default), 'caption' or 'questions'. */
  tasks?: 'all' | 'caption' | 'questions';
  /** KL weight to the reference model (default 0: no reference needed). */
  beta?: number;
  /** The frozen reference model (default: a frozen copy of the model when rl() starts). */
  reference?: TrainableModel;
  epsLow?: number;
  epsHigh?: number;
  lossType?: GrpoLossType;
  scaleAdvantages?: AdvantageScale;
  substitution?: 'nearest' | 'previous' | 'next';
  /** The frame-position embedding of the KIM video's substituted frames: 'slot' (default) or 'source' (ablation). */
  kimFramePosition?: 'slot' | 'source';
  /** Where keywords and key frames come from: 'annotated' (default) or 'extracted' (caption text and locator only). */
  keyInfo?: 'annotated' | 'extracted';
  locator?: 'transient' | 'none';
  signal?: AbortSignal;
}

/** RlOptions validated, with their defaults. */
export interface RlSettings {
  promptsPerStep: number;
  groupSize: number;
  updatesPerBatch: number;
  total: number;
  lr: number;
  weightDecay: number;
  maxGradNorm: number;
  temperature: number;
  topP: number;
  maxTokens: number;
  mode: RlComparativeMode;
  bonus?: number;
  ratio?: number;
  reward: RewardFunction;
  tasks: 'all' | 'caption' | 'questions';
  beta: number;
  epsLow: number;
  epsHigh: number;
  lossType: GrpoLossType;
  scale: AdvantageScale;
  substitution: 'nearest' | 'previous' | 'next';
  kimFramePosition: 'slot' | 'source';
  keyInfo: 'annotated' | 'extracted';
  locator: 'transient' | 'none';
  reference?: TrainableModel;
  signal?: AbortSignal;
}

function oneOf<T extends string>(fn: string, arg: string, v: unknown, allowed: readonly T[], dflt: T): T {
  const x = v ?? dflt;
  if (!allowed.includes(x as T)) throw typeError(fn, arg, allowed.map((a) => `'${a}'`).join(' | '), describe(v));
  return x as T;
}

/** Validates rl()'s options; `count` is the number of clips. Every invalid option throws. */
export function parseRlOptions(fn: string, opts: RlOptions, count: number): RlSettings {
  const o = checkOptions(fn, opts);
  checkKnownKeys(fn, 'opts', o, RL_OPTION_KEYS);
  const P = checkNumber(fn, 'opts.promptsPerStep', o.promptsPerStep, 4, { integer: true, min: 1 });
  const epochs = checkNumber(fn, 'opts.epochs', o.epochs, 1, { gt: 0 });
  const mode = oneOf(fn, 'opts.comparative', o.comparative, ['baseline', 'pairwise', 'threshold', 'none'] as const, 'baseline');
  const shaping = mode === 'pairwise' || mode === 'threshold';
  if (!shaping && o.bonus !== undefined) throw rangeError(fn, 'opts.bonus', `unset unless opts.comparative is 'pairwise' or 'threshold'`, `${describe(o.bonus)} with '${mode}'`);
  if (!shaping && o.ratio !== undefined) throw rangeError(fn, 'opts.ratio', `unset unless opts.comparative is 'pairwise' or 'threshold'`, `${describe(o.ratio)} with '${mode}'`);
  const reward = (o.reward ?? ((x: RewardInput) => defaultTaskReward(x))) as RewardFunction;
  if (typeof reward !== 'function') throw typeError(fn, 'opts.reward', 'a function (RewardInput) => number', describe(reward));
  if (o.reference !== undefined && !isTrainableModel(o.reference)) throw typeError(fn, 'opts.reference', 'a VideoLM or a PretrainedModel', describe(o.reference));
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError(fn, 'opts.signal', 'an AbortSignal', describe(o.signal));
  return {
    promptsPerStep: P,
    groupSize: checkNumber(fn, 'opts.groupSize', o.groupSize, 4, { integer: true, min: 2 }),
    updatesPerBatch: checkNumber(fn, 'opts.updatesPerBatch', o.updatesPerBatch, 1, { integer: true, min: 1 }),
    total: checkNumber(fn, 'opts.steps', o.steps, Math.max(1, Math.ceil((epochs * count) / P)), { integer: true, min: 1, max: MAX_STEPS }),
    lr: checkNumber(fn, 'opts.lr', o.lr, 1e-4, { gt: 0 }),
    weightDecay: checkNumber(fn, 'opts.weightDecay', o.weightDecay, 0, { min: 0 }),
    maxGradNorm: checkNumber(fn, 'opts.maxGradNorm', o.maxGradNorm, 1),
    temperature: checkNumber(fn, 'opts.temperature', o.temperature, 1, { gt: 0 }),
    topP: checkNumber(fn, 'opts.topP', o.topP, 1, { gt: 0, max: 1 }),
    maxTokens: checkNumber(fn, 'opts.maxTokens', o.maxTokens, 24, { integer: true, min: 1 }),
    mode,
    bonus: o.bonus === undefined ? undefined : checkNumber(fn, 'opts.bonus', o.bonus, 0.5, { min: 0 }),
    ratio: o.ratio === undefined ? undefined : checkNumber(fn, 'opts.ratio', o.ratio, 0.8, { min: 0 }),
    reward,
    tasks: oneOf(fn, 'opts.tasks', o.tasks, ['all', 'caption', 'questions'] as const, 'all'),
    beta: checkNumber(fn, 'opts.beta', o.beta, 0, { min: 0 }),
    epsLow: checkNumber(fn, 'opts.epsLow', o.epsLow, 0.2, { min: 0 }),
    epsHigh: checkNumber(fn, 'opts.epsHigh', o.epsHigh, 0.2, { min: 0 }),
    lossType: oneOf(fn, 'opts.lossType', o.lossType, ['grpo', 'bnpo', 'dapo', 'dr_grpo'] as const, 'dapo'),
    scale: oneOf(fn, 'opts.scaleAdvantages', o.scaleAdvantages, ['group', 'batch', 'none'] as const, 'group'),
    substitution: oneOf(fn, 'opts.substitution', o.substitution, ['nearest', 'previous', 'next'] as const, 'nearest'),
    kimFramePosition: oneOf(fn, 'opts.kimFramePosition', o.kimFramePosition, ['slot', 'source'] as const, 'slot'),
    keyInfo: oneOf(fn, 'opts.keyInfo', o.keyInfo, ['annotated', 'extracted'] as const, 'annotated'),
    locator: oneOf(fn, 'opts.locator', o.locator, ['transient', 'none'] as const, 'transient'),
    reference: o.reference as TrainableModel | undefined,
    signal: o.signal as AbortSignal | undefined,
  };
}

/** One prompt of a rollout: the clip, its task, the prompt's ids and (when it has key frames) its KIM frame map. */
export interface RolloutPrompt {
  clip: TrainClip;
  task: ClipTask;
  promptIds: Int32Array;
  frameMap?: Int32Array;
}

/** The responses of one rollout batch: G originals per prompt, then G degraded per prompt that has a KIM variant. */
export interface Rollout {
  prompts: RolloutPrompt[];
  orig: PromptItem[];
  /** Indices (into prompts) of the prompts that have a degraded variant, in the order of their degraded responses. */
  withKim: number[];
  /** orig.length original responses, then G per prompt of withKim. */
  responses: Int32Array[];
}

/** Generates G responses per prompt from the original video and G from its KIM variant, in one batch. */
/**
 * Where a rank's prompts sit in the global rollout batch of a data-parallel
 * launch: its first prompt's index, the batch's prompt count, and how many
 * prompts with a KIM variant come before its own. Each response then samples
 * from the stream it has in one process's batch (originals first, then the
 * degraded responses), so N ranks generate what one process would.
 */
export interface RolloutPlace {
  promptOffset: number;
  totalPrompts: number;
  kimOffset: number;
}

export async function rollout(io: ModelIO, prompts: RolloutPrompt[], s: RlSettings, seed: number, place?: RolloutPlace): Promise<Rollout> {
  const G = s.groupSize;
  const orig: PromptItem[] = [];
  const deg: PromptItem[] = [];
  const withKim: number[] = [];
  prompts.forEach((p, i) => {
    for (let g = 0; g < G; g++) orig.push({ frames: p.clip.frames, promptIds: p.promptIds });
    if (p.frameMap && s.mode !== 'none') {
      withKim.push(i);
      for (let g = 0; g < G; g++) deg.push({ frames: p.clip.frames, frameMap: p.frameMap, sourceFramePosition: s.kimFramePosition === 'source', promptIds: p.promptIds });
    }
  });
  let streams: Int32Array | undefined;
  if (place) {
    streams = new Int32Array(orig.length + deg.length);
    for (let i = 0; i < orig.length; i++) streams[i] = place.promptOffset * G + i;
    for (let i = 0; i < deg.length; i++) streams[orig.length + i] = place.totalPrompts * G + place.kimOffset * G + i;
  }
  let responses: Int32Array[];
  try {
    responses = await io.generate(io.generationBatch([...orig, ...deg]), { maxTokens: s.maxTokens, temperature: s.temperature, topP: s.topP, seed, ...(streams ? { streams } : {}) });
  } catch (e) {
    // The sampler refuses NaN/Inf logits: the weights or activations diverged.
    if (/logits.*not finite/.test((e as Error).message)) throw new DivergenceError('Trainer.rl', 'rl', 0, 'the logits of the rollout are not finite');
    throw e;
  }
  return { prompts, orig, withKim, responses };
}

/** Task rewards and the original responses' advantages of a rollout. */
export interface ScoredRollout {
  /** Task reward of each original response. */
  taskOrig: Float32Array;
  /** Task reward of each degraded response (G per prompt of withKim). */
  taskDegraded: Float32Array;
  /** The rewards the advantages were computed from (task rewards, or shaped ones in the reward-shaping modes). */
  rewards: Float32Array;
  advantages: Float32Array;
  /** The same over every rank's prompts (data parallel; the step's metrics are computed from these). */
  all: { taskOrig: Float32Array; taskDegraded: Float32Array; rewards: Float32Array; advantages: Float32Array };
}

/**
 * Scores every response with the task reward, then computes the original
 * responses' advantages. Data parallel (`dp` active): the rewards of every
 * rank's prompts are gathered first, so statistics over the batch (scale
 * 'batch') are those of one process; each rank keeps its prompts' advantages.
 */
export async function score(r: Rollout, s: RlSettings, io: ModelIO, fn: string, vocabulary: readonly string[] = [], dp?: DataParallel): Promise<ScoredRollout> {
  const G = s.groupSize;
  const text = (ids: Int32Array) => io.decode(ids);
  const reward = async (p: RolloutPrompt, ids: Int32Array, degraded: boolean) => {
    const v = await s.reward({
      response: text(ids), keywords: annotatedKeywords(p.clip.annotation), question: p.task.question,
      task: p.task, sample: p.clip.annotation, degraded, vocabulary,
    });
    if (typeof v !== 'number') throw typeError(fn, 'opts.reward', 'a function returning a number', describe(v));
    return v;
  };
  const nOrig = r.orig.length;
  const taskOrig = new Float32Array(nOrig);
  for (let k = 0; k < nOrig; k++) taskOrig[k] = await reward(r.prompts[Math.floor(k / G)], r.responses[k], false);
  const taskDegraded = new Float32Array(r.withKim.length * G);
  for (let q = 0; q < r.withKim.length; q++)
    for (let g = 0; g < G; g++) taskDegraded[q * G + g] = await reward(r.prompts[r.withKim[q]], r.responses[nOrig + q * G + g], true);

  if (!dp?.active) {
    const a = advantagesOf(taskOrig, taskDegraded, r.withKim, s);
    return { taskOrig, taskDegraded, ...a, all: { taskOrig, taskDegraded, ...a } };
  }
  // One row per prompt: its G original rewards, its G degraded ones (when it has a KIM variant), the flag.
  const P = r.prompts.length;
  const rows = new Float32Array(P * (2 * G + 1));
  r.withKim.forEach((p, q) => {
    rows.set(taskDegraded.subarray(q * G, (q + 1) * G), p * (2 * G + 1) + G);
    rows[p * (2 * G + 1) + 2 * G] = 1;
  });
  for (let p = 0; p < P; p++) rows.set(taskOrig.subarray(p * G, (p + 1) * G), p * (2 * G + 1));
  const g = await dp.gatherRows(rows, 2 * G + 1);
  const total = g.all.length / (2 * G + 1);
  const allOrig = new Float32Array(total * G);
  const withKim: number[] = [];
  const degraded: number[] = [];
  for (let p = 0; p < total; p++) {
    const row = g.all.subarray(p * (2 * G + 1), (p + 1) * (2 * G + 1));
    allOrig.set(row.subarray(0, G), p * G);
    if (row[2 * G] === 1) {
      withKim.push(p);
      degraded.push(...row.subarray(G, 2 * G));
    }
  }
  const allDegraded = Float32Array.from(degraded);
  const a = advantagesOf(allOrig, allDegraded, withKim, s);
  const mine = (x: Float32Array) => x.slice(g.offset * G, (g.offset + P) * G);
  return {
    taskOrig, taskDegraded, rewards: mine(a.rewards), advantages: mine(a.advantages),
    all: { taskOrig: allOrig, taskDegraded: allDegraded, ...a },
  };
}

/** The rewards and advantages of the original responses, from the task rewards (G per prompt; degraded: G per prompt of withKim). */
function advantagesOf(taskOrig: Float32Array, taskDegraded: Float32Array, withKim: readonly number[], s: RlSettings): { rewards: Float32Array; advantages: Float32Array } {
  const G = s.groupSize;
  if (s.mode === 'baseline') {
    // Degraded rewards laid out per prompt; NaN (left out of the statistics) where a prompt has no KIM variant.
    const d = new Float32Array(taskOrig.length).fill(NaN);
    withKim.forEach((p, q) => d.set(taskDegraded.subarray(q * G, (q + 1) * G), p * G));
    return { rewards: taskOrig, advantages: comparativeAdvantages(taskOrig, d, G, { scale: s.scale }) };
  }
  const rewards = Float32Array.from(taskOrig);
  if (s.mode !== 'none' && withKim.length > 0) {
    const c = new Float32Array(withKim.length * G);
    withKim.forEach((p, q) => c.set(taskOrig.subarray(p * G, (p + 1) * G), q * G));
    const shaped = comparativeRewards(c, taskDegraded, G, {
      mode: s.mode, ...(s.bonus !== undefined ? { bonus: s.bonus } : {}), ...(s.ratio !== undefined ? { ratio: s.ratio } : {}),
    });
    withKim.forEach((p, q) => rewards.set(shaped.subarray(q * G, (q + 1) * G), p * G));
  }
  return { rewards, advantages: groupAdvantages(rewards, G, { scale: s.scale }) };
}

export interface UpdateResult {
  loss: number;
  clipFraction: number;
  kl: number;
  gradNorm: number;
  lr: number;
  /** Response tokens scored per update. */
  tokens: number;
}

/** μ updates of the clipped GRPO loss on the original responses (the degraded ones are never trained on). */
/**
 * μ updates of the clipped GRPO loss on the original responses (the degraded
 * ones are never trained on). Data parallel (`dp` active): the loss is the
 * batch's over every rank's responses, so this rank's gradient is scaled by
 * its share of the batch's normalizer (sequences for 'grpo' and 'dr_grpo',
 * tokens for 'bnpo' and 'dapo') and the gradients are summed over the ranks
 * before each optimizer step; the metrics are the batch's.
 */
export async function update(model: TrainableModel, io: ModelIO, reference: TrainableModel | undefined, r: Rollout, advantages: Float32Array, s: RlSettings, dp?: DataParallel): Promise<UpdateResult> {
  const responses = r.responses.slice(0, r.orig.length);
  const sb = io.scoringBatch(r.orig, responses);
  const cu = new Int32Array(responses.length + 1);
  responses.forEach((x, i) => (cu[i + 1] = cu[i] + x.length));
  // The responses' log-probs, gathered out of the packed rows.
  const gather = (lp: Float32Array) => {
    const out = new Float32Array(cu[responses.length]);
    sb.at.forEach((a, i) => out.set(lp.subarray(a, a + sb.lengths[i]), cu[i]));
    return out;
  };
  const refLp = s.beta > 0 ? gather(await reference!.sequenceLogprobs(sb.batch)) : undefined;
  const mu = s.updatesPerBatch;
  let old: Float32Array | undefined;
  const out: UpdateResult = { loss: 0, clipFraction: 0, kl: 0, gradNorm: 0, lr: s.lr, tokens: sb.batch.text.length };
  // This rank's share of the batch: of its sequences (w for 'grpo' / 'dr_grpo') and response tokens (wTok).
  let w = 1;
  let wTok = 1;
  if (dp?.active) {
    const [seqs, toks, rows] = await dp.sum([responses.length, cu[responses.length], sb.batch.text.length]);
    wTok = toks > 0 ? cu[responses.length] / toks : 0;
    w = s.lossType === 'grpo' || s.lossType === 'dr_grpo' ? responses.length / seqs : wTok;
    out.tokens = rows;
  }
  for (let u = 0; u < mu; u++) {
    const fw = await model.forward(sb.batch, { logprobs: true });
    const lp = gather(fw.tokenLogprobs);
    if (!allFinite(lp)) throw new DivergenceError('Trainer.rl', 'rl', 0, 'the responses\' log-probs are not finite');
    old ??= Float32Array.from(lp);
    const g = grpoLoss({ logprobs: lp, oldLogprobs: old, refLogprobs: refLp, advantages, cuSeqlens: cu },
      { epsLow: s.epsLow, epsHigh: s.epsHigh, beta: s.beta, lossType: s.lossType, ...(s.lossType === 'dr_grpo' ? { maxCompletionLength: s.maxTokens } : {}) });
    const dLogprobs = new Float32Array(sb.batch.text.length);
    const d = g.dLogprobs as Float32Array;
    sb.at.forEach((a, i) => dLogprobs.set(d.subarray(cu[i], cu[i + 1]), a));
    if (w !== 1) for (let i = 0; i < dLogprobs.length; i++) dLogprobs[i] *= w;
    await model.backward({ gradLoss: 0, dLogprobs });
    let [loss, clipFraction, kl] = [g.loss, g.clipFraction, g.kl];
    if (dp?.active) {
      [loss, clipFraction, kl] = await dp.sum([w * g.loss, wTok * g.clipFraction, wTok * g.kl]);
      await dp.reduceGradients(model);
    }
    const st = await model.stepOptimizer({ lr: out.lr, weightDecay: s.weightDecay, maxGradNorm: s.maxGradNorm });
    if (!Number.isFinite(st.gradNorm)) throw new DivergenceError('Trainer.rl', 'rl', 0, `the gradient norm is ${st.gradNorm}; the update was not applied`);
    out.loss += loss / mu;
    out.clipFraction += clipFraction / mu;
    out.kl += kl / mu;
    out.gradNorm = st.gradNorm;
    out.lr = st.lr;
  }
  return out;
}

/** Mean over groups of the standard deviation of the advantages (0: no learning signal). */
export function advantageSpread(advantages: Float32Array, G: number): number {
  const groups = advantages.length / G;
  let sum = 0;
  for (let q = 0; q < groups; q++) {
    let m = 0, v = 0;
    for (let g = 0; g < G; g++) m += advantages[q * G + g] / G;
    for (let g = 0; g < G; g++) v += (advantages[q * G + g] - m) ** 2 / G;
    sum += Math.sqrt(v);
  }
  return groups ? sum / groups : 0;
}
