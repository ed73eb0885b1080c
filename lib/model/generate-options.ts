// The generation options both model kinds share (VideoLM.generateBatch and
// PretrainedModel.generateBatch, and their generate / generateStream): the
// option keys, the checks of opts.streams and opts.onToken, and the guard that
// keeps the first exception of an onToken callback to throw once generation has
// finished (no more calls are made after it). Cost: O(sequences) checks.
import { describe, rangeError, typeError } from '../errors.js';
import { int32Vector } from '../validate.js';

/** Every option generateBatch takes (any other key is refused: a typo would otherwise be ignored). */
export const GENERATE_BATCH_KEYS = ['maxTokens', 'temperature', 'topP', 'seed', 'eosId', 'onToken', 'streams'] as const;

/** opts.streams of a generation over `sequences` prompts: one non-negative stream id per prompt. */
export function checkStreams(fn: string, streams: unknown, sequences: number): Int32Array {
  const s = int32Vector(fn, 'opts.streams', streams, sequences);
  s.forEach((x, i) => {
    if (x < 0) throw rangeError(fn, `opts.streams[${i}]`, '>= 0', `${x}`);
  });
  return s;
}

export type OnToken = (sequence: number, token: number) => void;

/** opts.onToken: undefined or a function. */
export function checkOnToken(fn: string, onToken: unknown): OnToken | undefined {
  if (onToken !== undefined && typeof onToken !== 'function') throw typeError(fn, 'opts.onToken', 'a function (sequence, token) => void', describe(onToken));
  return onToken as OnToken | undefined;
}

/**
 * An onToken callback that never throws into the decode loop: the first
 * exception is kept and no more calls are made; rethrow() throws it (call it
 * once generation has finished).
 */
export function guardOnToken(onToken: OnToken): { call: OnToken; rethrow: () => void } {
  let failure: { error: unknown } | undefined;
  return {
    call: (sequence, token) => {
      if (failure) return;
      try {
        onToken(sequence, token);
      } catch (error) {
        failure = { error };
      }
    },
    rethrow: () => {
      if (failure) throw failure.error;
    },
  };
}
