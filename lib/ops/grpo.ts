// GRPO with a comparative reward (docs/method.md, stage 2; docs/grpo.md):
//   vp.comparativeRewards, vp.groupAdvantages, vp.grpoLoss, vp.linearGrpoLoss.
//
// Semantics follow TRL's GRPOTrainer (advantages, clipping, KL, the four loss
// aggregations); every statistic is computed in double precision natively.
import type { AddonGrpoOptions, CudaBuffer, GrpoSequenceArgs, NativeVector } from '../addon-types.js';
import { describe, rangeError, typeError } from '../errors.js';
import { native } from '../native.js';
import { emptyLike, Tensor } from '../tensor.js';
import { checkCuSeqlens, checkNumber, checkOptions } from '../validate.js';
import { checkFinite, checkLinearArgs, checkTargets, float32Rows, int32Rows, linearArgs } from './logprobs.js';

// ---- rewards and advantages -----------------------------------------------------------

export type AdvantageScale = 'group' | 'batch' | 'none';

export interface GroupAdvantagesOptions {
  /** 'group' (default): divide by the group's std + eps; 'batch': by the whole batch's; 'none': don't divide. */
  scale?: AdvantageScale;
  /** Added to the std before dividing (default 1e-4, as TRL). */
  eps?: number;
}

/** A reward vector: Float32Array / 1-D CPU float32 tensor (host), or a 1-D CUDA float32 tensor. */
function rewardVector(fn: string, arg: string, v: unknown): { arg: NativeVector<Float32Array>; length: number; host?: Float32Array; cuda?: Tensor } {
  if (v instanceof Tensor && v.device === 'cuda') {
    if (v.disposed || v.dtype !== 'float32' || v.shape.length !== 1)
      throw typeError(fn, arg, 'a Float32Array or a 1-D float32 tensor', describe(v));
    return { arg: v.handle, length: v.shape[0], cuda: v };
  }
  const host = float32Rows(fn, arg, v);
  return { arg: host, length: host.length, host };
}

/** An output vector as the addon takes it: a host array, or a CUDA tensor's buffer. */
function outArg(out: Float32Array | Tensor): Float32Array | CudaBuffer {
  return out instanceof Tensor ? out.handle : out;
}

/** A new output vector of n floats: a CUDA tensor when the inputs are on CUDA, else a Float32Array. */
function newOut(n: number, cuda: boolean): Float32Array | Tensor {
  return cuda ? emptyLike([n], 'float32', 'cuda') : new Float32Array(n);
}

function checkRewards(fn: string, arg: string, x: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    if (x[i] === Infinity || x[i] === -Infinity) throw rangeError(fn, `${arg}[${i}]`, 'finite or NaN (NaN rewards are left out)', describe(x[i]));
  }
}

function checkGroupSize(fn: string, groupSize: unknown, n: number, what: string): number {
  if (typeof groupSize !== 'number') throw typeError(fn, 'groupSize', 'a number', describe(groupSize));
  if (!Number.isInteger(groupSize) || groupSize < 1) throw rangeError(fn, 'groupSize', 'an integer >= 1', describe(groupSize));
  if (n % groupSize !== 0) throw rangeError(fn, 'groupSize', `a divisor of the number of ${what} (${n})`, `${groupSize}`);
  return groupSize;
}

/**
 * Group-relative advantages, TRL GRPOTrainer semantics: A = r − mean(group);
 * unless scale is 'none', divided by (std + eps), the Bessel-corrected std of
 * the group ('group') or of the whole batch ('batch'). NaN rewards are left
 * out of means and stds; an advantage that comes out NaN becomes 0.
 * Returns a Float32Array (a CUDA tensor when `rewards` is one).
 */
export function groupAdvantages(rewards: Float32Array, groupSize: number, opts?: GroupAdvantagesOptions): Float32Array;
export function groupAdvantages(rewards: Float32Array | Tensor, groupSize: number, opts?: GroupAdvantagesOptions): Float32Array | Tensor;
export function groupAdvantages(rewards: Float32Array | Tensor, groupSize: number, opts?: GroupAdvantagesOptions): Float32Array | Tensor {
  const fn = 'groupAdvantages';
  const r = rewardVector(fn, 'rewards', rewards);
  const g = checkGroupSize(fn, groupSize, r.length, 'rewards');
  const o = checkOptions(fn, opts);
  const scale = o.scale ?? 'group';
  if (scale !== 'group' && scale !== 'batch' && scale !== 'none') throw typeError(fn, 'opts.scale', "'group' | 'batch' | 'none'", describe(scale));
  const eps = checkNumber(fn, 'opts.eps', o.eps, 1e-4, { min: 0 });
  if (r.host) checkRewards(fn, 'rewards', r.host);
  const out = newOut(r.length, !!r.cuda);
  native().groupAdvantages(r.arg, r.length, g, scale, eps, outArg(out));
  return out;
}

/** The complete and degraded reward vectors of a comparative op, on one device, with groupSize dividing the first and the groups dividing the second. */
function comparativeInputs(fn: string, taskComplete: unknown, taskDegraded: unknown, groupSize: unknown) {
  const c = rewardVector(fn, 'taskComplete', taskComplete);
  const d = rewardVector(fn, 'taskDegraded', taskDegraded);
  if (!!c.cuda !== !!d.cuda) throw typeError(fn, 'taskDegraded', `on ${c.cuda ? 'cuda' : 'cpu'} like taskComplete`, describe(taskDegraded));
  const g = checkGroupSize(fn, groupSize, c.length, 'complete-video rewards');
  const groups = c.length / g;
  if (groups === 0 && d.length !== 0) throw rangeError(fn, 'taskDegraded.length', '0 when taskComplete is empty', `${d.length}`);
  if (groups > 0 && (d.length === 0 || d.length % groups !== 0))
    throw rangeError(fn, 'taskDegraded.length', `a positive multiple of the number of groups (${groups})`, `${d.length}`);
  return { c, d, g };
}

export type ComparativeMode = 'pairwise' | 'threshold';

export interface ComparativeRewardsOptions {
  /** 'pairwise' (default) or 'threshold' (T-GRPO). */
  mode?: ComparativeMode;
  /** The comparative bonus (default 0.5 pairwise, 0.3 threshold). */
  bonus?: number;
  /** threshold mode: the bonus applies when mean(complete) >= ratio · mean(degraded) (default 0.8). */
  ratio?: number;
  /** threshold mode: only responses whose task reward is strictly above this get it (default 0.1). */
  minReward?: number;
}

/**
 * The rewards of the responses to the complete videos: task reward plus the
 * comparative term (docs/method.md, stage 2). `taskComplete` holds nGroups ·
 * groupSize rewards group by group; `taskDegraded` the same groups' degraded
 * responses' rewards, taskDegraded.length / nGroups per group.
 *   pairwise:  + bonus · (fraction of the group's degraded rewards strictly below this one)
 *   threshold: + bonus when the group's mean(complete) >= ratio · mean(degraded)
 *              and this reward > minReward
 * NaN complete rewards stay NaN; NaN degraded rewards are left out.
 */
export function comparativeRewards(
  taskComplete: Float32Array,
  taskDegraded: Float32Array,
  groupSize: number,
  opts?: ComparativeRewardsOptions,
): Float32Array;
export function comparativeRewards(
  taskComplete: Float32Array | Tensor,
  taskDegraded: Float32Array | Tensor,
  groupSize: number,
  opts?: ComparativeRewardsOptions,
): Float32Array | Tensor;
export function comparativeRewards(
  taskComplete: Float32Array | Tensor,
  taskDegraded: Float32Array | Tensor,
  groupSize: number,
  opts?: ComparativeRewardsOptions,
): Float32Array | Tensor {
  const fn = 'comparativeRewards';
  const { c, d, g } = comparativeInputs(fn, taskComplete, taskDegraded, groupSize);
  const o = checkOptions(fn, opts);
  const mode = o.mode ?? 'pairwise';
  if (mode !== 'pairwise' && mode !== 'threshold') throw typeError(fn, 'opts.mode', "'pairwise' | 'threshold'", describe(mode));
  const bonus = checkNumber(fn, 'opts.bonus', o.bonus, mode === 'pairwise' ? 0.5 : 0.3);
  const ratio = checkNumber(fn, 'opts.ratio', o.ratio, 0.8);
  const minReward = checkNumber(fn, 'opts.minReward', o.minReward, 0.1);
  if (c.host) checkRewards(fn, 'taskComplete', c.host);
  if (d.host) checkRewards(fn, 'taskDegraded', d.host);
  const out = newOut(c.length, !!c.cuda);
  native().comparativeRewards({
    complete: c.arg, nComplete: c.length, degraded: d.arg, nDegraded: d.length, groupSize: g, mode, bonus, ratio, minReward, out: outArg(out),
  });
  return out;
}


export interface ComparativeAdvantagesOptions {
  /** 'group' (default): σ of the group's original and degraded rewards; 'batch': σ of all of them; 'none': no division. */
  scale?: AdvantageScale;
  /** Added to σ before dividing (default 1e-4, as TRL). */
  eps?: number;
}

/**
 * The advantages of the original responses, with the degraded (KIM)
 * responses of the same prompt in the baseline (docs/grpo.md):
 *   A_i = (r_i − μ) / (σ + eps),
 * μ and σ (Bessel-corrected) taken over the group's original **and** degraded
 * task rewards together; 'batch' takes σ over the whole batch of both (μ stays
 * per group); 'none' does not divide. An answer that the model also gives
 * without the key frames raises μ and so earns less than one that needs them.
 * Equal to groupAdvantages(taskComplete, groupSize) when the degraded rewards
 * leave μ and σ unchanged. `taskComplete`: nGroups · groupSize rewards, group
 * by group; `taskDegraded`: taskDegraded.length / nGroups per group. NaN
 * rewards are left out of the statistics (a group without a degraded variant
 * can pass NaN for it); an advantage that comes out NaN becomes 0. Statistics
 * in double precision. Returns a Float32Array (a CUDA tensor when
 * `taskComplete` is one: the few rewards are read back, computed on the host
 * and copied to the device).
 */
export function comparativeAdvantages(
  taskComplete: Float32Array,
  taskDegraded: Float32Array,
  groupSize: number,
  opts?: ComparativeAdvantagesOptions,
): Float32Array;
export function comparativeAdvantages(
  taskComplete: Float32Array | Tensor,
  taskDegraded: Float32Array | Tensor,
  groupSize: number,
  opts?: ComparativeAdvantagesOptions,
): Float32Array | Tensor;
export function comparativeAdvantages(
  taskComplete: Float32Array | Tensor,
  taskDegraded: Float32Array | Tensor,
  groupSize: number,
  opts?: ComparativeAdvantagesOptions,
): Float32Array | Tensor {
  const fn = 'comparativeAdvantages';
  const { c, d, g } = comparativeInputs(fn, taskComplete, taskDegraded, groupSize);
  const groups = c.length / g;
  const o = checkOptions(fn, opts);
  const scale = o.scale ?? 'group';
  if (scale !== 'group' && scale !== 'batch' && scale !== 'none') throw typeError(fn, 'opts.scale', "'group' | 'batch' | 'none'", describe(scale));
  const eps = checkNumber(fn, 'opts.eps', o.eps, 1e-4, { min: 0 });
  const ch = c.host ?? (c.cuda!.to('cpu').data as Float32Array);
  const dh = d.host ?? (d.cuda!.to('cpu').data as Float32Array);
  checkRewards(fn, 'taskComplete', ch);
  checkRewards(fn, 'taskDegraded', dh);
  const dg = groups > 0 ? dh.length / groups : 0;
  // Mean and Bessel-corrected sum of squares of the non-NaN values of a group (Welford, double).
  const moments = (q: number) => {
    let n = 0, mean = 0, m2 = 0;
    const add = (x: number) => {
      if (Number.isNaN(x)) return;
      n++;
      const delta = x - mean;
      mean += delta / n;
      m2 += delta * (x - mean);
    };
    for (let i = 0; i < g; i++) add(ch[q * g + i]);
    for (let i = 0; i < dg; i++) add(dh[q * dg + i]);
    return { n, mean, m2 };
  };
  const stats = Array.from({ length: groups }, (_, q) => moments(q));
  let batchStd = NaN;
  if (scale === 'batch') {
    let n = 0, mean = 0, m2 = 0;
    for (const x of [...ch, ...dh]) {
      if (Number.isNaN(x)) continue;
      n++;
      const delta = x - mean;
      mean += delta / n;
      m2 += delta * (x - mean);
    }
    batchStd = n > 1 ? Math.sqrt(m2 / (n - 1)) : NaN;
  }
  const out = new Float32Array(c.length);
  for (let q = 0; q < groups; q++) {
    const s = stats[q];
    const denom = scale === 'none' ? 1 : scale === 'batch' ? batchStd + eps : (s.n > 1 ? Math.sqrt(s.m2 / (s.n - 1)) : NaN) + eps;
    for (let i = 0; i < g; i++) {
      const a = (ch[q * g + i] - s.mean) / denom;
      out[q * g + i] = Number.isNaN(a) ? 0 : a;
    }
  }
  return c.cuda ? new Tensor([out.length], 'float32', 'cpu', out).to('cuda') : out;
}

// ---- the clipped surrogate loss ---------------------------------------------------------------

export type GrpoLossType = 'grpo' | 'bnpo' | 'dapo' | 'dr_grpo';

export interface GrpoLossOptions {
  /** Lower clip: ρ is clipped at 1 − epsLow (default 0.2). */
  epsLow?: number;
  /** Upper clip: ρ is clipped at 1 + epsHigh (default 0.2). */
  epsHigh?: number;
  /** Weight of the k3 KL penalty to the reference model (default 0; > 0 needs refLogprobs). */
  beta?: number;
  /** 'grpo' | 'bnpo' | 'dapo' (default) | 'dr_grpo'. */
  lossType?: GrpoLossType;
  /** Required by 'dr_grpo' (the generation's maximum completion length). */
  maxCompletionLength?: number;
}

export interface GrpoLossInputs {
  /** Current policy's token log-probs, [totalTokens]. */
  logprobs: Float32Array | Tensor;
  /** The sampling policy's token log-probs, [totalTokens]. */
  oldLogprobs: Float32Array | Tensor;
  /** The frozen reference model's token log-probs, [totalTokens] (for the KL term). */
  refLogprobs?: Float32Array | Tensor;
  /** Per token [totalTokens], or per sequence [B] (broadcast over its tokens). */
  advantages: Float32Array | Tensor;
  /** Int32Array(B + 1): cumulative response lengths, 0 first. */
  cuSeqlens: Int32Array | Tensor;
}

export interface GrpoLossResult {
  loss: number;
  /** ∂loss/∂logprobs (a CUDA tensor when logprobs is one). */
  dLogprobs: Float32Array | Tensor;
  /** Fraction of tokens where the clipped branch is taken. */
  clipFraction: number;
  /** Mean k3 KL term over tokens (0 without refLogprobs). */
  kl: number;
}

function grpoOptions(fn: string, opts: unknown, linear: boolean): AddonGrpoOptions {
  const o = checkOptions(fn, opts);
  const epsLow = checkNumber(fn, 'opts.epsLow', o.epsLow, 0.2, { min: 0, max: 1 });
  const epsHigh = checkNumber(fn, 'opts.epsHigh', o.epsHigh, 0.2, { min: 0 });
  const beta = checkNumber(fn, 'opts.beta', o.beta, 0, { min: 0 });
  const lossType = (o.lossType ?? 'dapo') as GrpoLossType;
  if (!['grpo', 'bnpo', 'dapo', 'dr_grpo'].includes(lossType as string))
    throw typeError(fn, 'opts.lossType', "'grpo' | 'bnpo' | 'dapo' | 'dr_grpo'", describe(o.lossType));
  const maxCompletionLength = o.maxCompletionLength === undefined ? undefined : checkNumber(fn, 'opts.maxCompletionLength', o.maxCompletionLength, 0, { min: 1, integer: true });
  if (lossType === 'dr_grpo' && maxCompletionLength === undefined)
    throw typeError(fn, 'opts.maxCompletionLength', "an integer >= 1 with lossType 'dr_grpo' (its normalizer)", 'undefined');
  const temperature = linear ? checkNumber(fn, 'opts.temperature', o.temperature, 1, { gt: 0 }) : 1;
  return { epsLow, epsHigh, beta, lossType, maxCompletionLength, temperature };
}

interface TokenVec {
  arg: NativeVector<Float32Array>;
  host?: Float32Array;
  cuda?: Tensor;
  length: number;
}

function tokenVector(fn: string, arg: string, v: unknown, device: 'cpu' | 'cuda'): TokenVec {
  if (v instanceof Tensor && v.device === 'cuda') {
    if (device !== 'cuda') throw typeError(fn, arg, 'a Float32Array or a 1-D CPU float32 tensor like the other inputs', describe(v));
    if (v.disposed || v.dtype !== 'float32' || v.shape.length !== 1) throw typeError(fn, arg, 'a 1-D float32 tensor', describe(v));
    return { arg: v.handle, cuda: v, length: v.shape[0] };
  }
  const host = float32Rows(fn, arg, v);
  return { arg: host, host, length: host.length };
}

interface CheckedTokens {
  old: TokenVec;
  ref?: TokenVec;
  adv: TokenVec;
  cu: Int32Array;
}

function checkTokens(fn: string, inputs: Record<string, unknown>, total: number, device: 'cpu' | 'cuda', o: AddonGrpoOptions): CheckedTokens {
  const old = tokenVector(fn, 'oldLogprobs', inputs.oldLogprobs, device);
  if (old.length !== total) throw rangeError(fn, 'oldLogprobs.length', `${total} (one per token)`, `${old.length}`);
  let ref: TokenVec | undefined;
  if (inputs.refLogprobs !== undefined && inputs.refLogprobs !== null) {
    ref = tokenVector(fn, 'refLogprobs', inputs.refLogprobs, device);
    if (ref.length !== total) throw rangeError(fn, 'refLogprobs.length', `${total} (one per token)`, `${ref.length}`);
  } else if (o.beta > 0) {
    throw typeError(fn, 'refLogprobs', `a Float32Array when opts.beta > 0 (${o.beta})`, 'undefined');
  }
  const cu = checkCuSeqlens(fn, 'cuSeqlens', inputs.cuSeqlens, total);
  const b = cu.length - 1;
  const adv = tokenVector(fn, 'advantages', inputs.advantages, device);
  if (adv.length !== total && adv.length !== b)
    throw rangeError(fn, 'advantages.length', `${total} (one per token) or ${b} (one per sequence)`, `${adv.length}`);
  if (old.host) checkFinite(fn, 'oldLogprobs', old.host);
  if (ref?.host) checkFinite(fn, 'refLogprobs', ref.host);
  if (adv.host) checkFinite(fn, 'advantages', adv.host);
  if (o.lossType === 'dr_grpo') {
    for (let i = 0; i < b; i++) {
      const len = cu[i + 1] - cu[i];
      if (len > (o.maxCompletionLength as number))
        throw rangeError(fn, `cuSeqlens (sequence ${i})`, `at most maxCompletionLength (${o.maxCompletionLength}) tokens`, `${len}`);
    }
  }
  return { old, ref, adv, cu };
}

/** The per-sequence inputs of both GRPO bindings. */
function sequenceArgs(t: CheckedTokens): GrpoSequenceArgs {
  return {
    oldLogprobs: t.old.arg, refLogprobs: t.ref?.arg ?? null, advantages: t.adv.arg, cuSeqlens: t.cu,
    numAdvantages: t.adv.length, numCuSeqlens: t.cu.length,
  };
}

function inputsObject(fn: string, inputs: unknown): Record<string, unknown> {
  if (inputs === null || typeof inputs !== 'object' || Array.isArray(inputs) || inputs instanceof Tensor)
    throw typeError(fn, 'inputs', 'an object of named inputs', describe(inputs));
  return inputs as Record<string, unknown>;
}

/**
 * The GRPO clipped surrogate over a batch of responses, with token-level
 * ratios ρ = exp(logp − old), asymmetric clipping and the k3 KL penalty:
 *   ℓ = −min(ρA, clip(ρ, 1−epsLow, 1+epsHigh)·A) + β·(exp(ref − logp) − (ref − logp) − 1)
 * aggregated by lossType: 'grpo' (mean per sequence, then over sequences),
 * 'bnpo'/'dapo' (sum over tokens / tokens), 'dr_grpo' (sum / (B · maxCompletionLength)).
 */
export function grpoLoss(inputs: GrpoLossInputs, opts?: GrpoLossOptions): GrpoLossResult {
  const fn = 'grpoLoss';
  const inp = inputsObject(fn, inputs);
  const first = inp.logprobs;
  const device = first instanceof Tensor && first.device === 'cuda' ? 'cuda' : 'cpu';
  const lp = tokenVector(fn, 'logprobs', first, device);
  const o = grpoOptions(fn, opts, false);
  const t = checkTokens(fn, inp, lp.length, device, o);
  if (lp.host) checkFinite(fn, 'logprobs', lp.host);
  const dLogprobs = newOut(lp.length, device === 'cuda');
  const st = native().grpoLoss({ logprobs: lp.arg, tokens: lp.length, dLogprobs: outArg(dLogprobs), ...sequenceArgs(t) }, o);
  return { loss: st.loss, dLogprobs, clipFraction: st.clipFraction, kl: st.kl };
}

export interface LinearGrpoLossInputs {
  /** [totalTokens, d]: the final hidden states of the response tokens. */
  hidden: Tensor;
  /** [V, d]: the LM head. */
  weight: Tensor;
  /** The sampled tokens, Int32Array [totalTokens]. */
  targets: Int32Array | Tensor;
  oldLogprobs: Float32Array | Tensor;
  refLogprobs?: Float32Array | Tensor;
  advantages: Float32Array | Tensor;
  cuSeqlens: Int32Array | Tensor;
}

export interface LinearGrpoLossOptions extends GrpoLossOptions {
  /** Divide the logits by this before the log-softmax (TRL's sampling temperature; default 1). */
  temperature?: number;
}

export interface LinearGrpoLossResult {
  loss: number;
  dHidden: Tensor;
  dWeight: Tensor;
  clipFraction: number;
  kl: number;
  /** The current policy's token log-probs the loss was computed from. */
  logprobs: Float32Array;
}

/**
 * grpoLoss on the token log-probs of hidden · weightᵀ, fused: one pass over
 * row blocks computes each block's logits once, its log-probs and per-token
 * loss gradients, and turns the logits into dHidden and dWeight while they are
 * still in cache. Never allocates N×V. What the RL step calls.
 */
export function linearGrpoLoss(inputs: LinearGrpoLossInputs, opts?: LinearGrpoLossOptions): LinearGrpoLossResult {
  const fn = 'linearGrpoLoss';
  const inp = inputsObject(fn, inputs);
  const [h, w] = checkLinearArgs(fn, inp.hidden, inp.weight);
  const total = h.shape[0];
  const targets = int32Rows(fn, 'targets', inp.targets, total);
  const o = grpoOptions(fn, opts, true);
  const t = checkTokens(fn, inp, total, h.device, o);
  checkTargets(fn, targets, w.shape[0]);
  const dHidden = emptyLike(h.shape, h.dtype, h.device);
  const dWeight = emptyLike(w.shape, w.dtype, w.device);
  const logprobs = new Float32Array(total);
  const st = native().linearGrpoLoss(
    { ...linearArgs(h, w, targets), ...sequenceArgs(t), dHidden: dHidden.nativeArg, dWeight: dWeight.nativeArg, logprobsOut: logprobs },
    o,
  );
  return { loss: st.loss, dHidden, dWeight, clipFraction: st.clipFraction, kl: st.kl, logprobs };
}
