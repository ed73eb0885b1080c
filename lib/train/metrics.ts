// The trainer's metric events: an onStep callback, any number of async-iterable
// streams, and (with a run folder) one JSON line per event in metrics.jsonl.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../fs.js';

/** One optimizer step of stage 1. */
export interface SftStepEvent {
  type: 'step';
  stage: 'sft';
  step: number;
  totalSteps: number;
  epoch: number;
  /** L = lm + λ·nce. */
  loss: number;
  lm: number;
  /** The InfoNCE term (0 without the contrastive term or without groups). */
  nce: number;
  /** Fraction of keyword queries whose nearest key is their own positive. */
  nceAccuracy: number;
  /** Mean cosine(query, positive) − cosine(query, KIM negative). */
  nceMargin: number;
  /** Samples with a contrastive term in this step. */
  contrastSamples: number;
  kimSequences: number;
  lr: number;
  gradNorm: number;
  /** Packed rows (tokens) forward and backward per second. */
  tokensPerSec: number;
  rows: number;
  elapsedMs: number;
}

/** One rollout batch of stage 2 (after its policy updates). */
export interface RlStepEvent {
  type: 'step';
  stage: 'rl';
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  /** Mean task reward of the original-video responses. */
  reward: number;
  /** Mean task reward of the KIM-video responses (NaN when no clip had key frames). */
  rewardDegraded: number;
  /** Mean reward after the comparative term. */
  rewardTotal: number;
  /** Mean over groups of the advantages' standard deviation (0: no learning signal). */
  advantageStd: number;
  clipFraction: number;
  kl: number;
  lr: number;
  gradNorm: number;
  /** Mean generated response length (tokens). */
  responseLength: number;
  tokensPerSec: number;
  elapsedMs: number;
}

/** An evaluation (trainer.evaluate). */
export interface EvalEvent {
  type: 'eval';
  stage: 'sft' | 'rl' | 'eval';
  step: number;
  [metric: string]: number | string;
}

/** A checkpoint written (path of the folder). */
export interface CheckpointEvent {
  type: 'checkpoint';
  stage: 'sft' | 'rl';
  step: number;
  path: string;
  /** 'error': the state before a step that failed. */
  reason: 'interval' | 'end' | 'interrupt' | 'error';
}

export type MetricEvent = SftStepEvent | RlStepEvent | EvalEvent | CheckpointEvent;

/** Fans events out to the callback, the open streams and metrics.jsonl. */
export class MetricBus {
  readonly #subs = new Set<{ push(e: MetricEvent | null): void }>();
  file: string | undefined;
  onEvent: ((e: MetricEvent) => void) | undefined;

  emit(e: MetricEvent): void {
    if (this.file) appendFileSync(this.file, JSON.stringify(e, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n');
    this.onEvent?.(e);
    for (const s of this.#subs) s.push(e);
  }

  /** Ends every open stream (a stage finished). */
  end(): void {
    for (const s of this.#subs) s.push(null);
    this.#subs.clear();
  }

  /** An async iterator over the events until the running (or next) stage ends. */
  stream(): AsyncIterableIterator<MetricEvent> {
    const queue: (MetricEvent | null)[] = [];
    let wake: (() => void) | undefined;
    const sub = {
      push: (e: MetricEvent | null) => {
        queue.push(e);
        wake?.();
      },
    };
    this.#subs.add(sub);
    let done = false;
    const it: AsyncIterableIterator<MetricEvent> = {
      next: async () => {
        while (!done) {
          if (queue.length) {
            const e = queue.shift()!;
            if (e === null) break;
            return { value: e, done: false };
          }
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
        done = true;
        this.#subs.delete(sub);
        return { value: undefined, done: true };
      },
      return: async () => {
        done = true;
        this.#subs.delete(sub);
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  /**
   * After a resume: drops the lines logged after the checkpoint (events of its
   * stage past its step, and any of a later stage), so the file reads as one run.
   */
  static truncateAfter(file: string, stage: 'sft' | 'rl', step: number): void {
    if (!existsSync(file)) return;
    const keep = readFileSync(file, 'utf8').split('\n').filter((line) => {
      if (!line.trim()) return false;
      try {
        const e = JSON.parse(line) as { stage?: string; step?: number };
        if (stage === 'sft' && e.stage === 'rl') return false;
        return !(e.stage === stage && typeof e.step === 'number' && e.step > step);
      } catch {
        return false;
      }
    });
    writeFileAtomic(file, keep.length ? keep.join('\n') + '\n' : '');
  }
}
