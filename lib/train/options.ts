// The names of the trainer's options, at run time: what lets Trainer.sft/rl,
// VideoLM.create and the CLI's config file reject a misspelt key (with the
// nearest valid name) instead of training on a default. The type checks below
// fail to compile when an options interface gains or loses a key that these
// lists do not. Also the limits shared by the API and the CLI.
import { VIDEOLM_CREATE_KEYS, type VideoLMCreateOptions } from '../model/videolm.js';
import type { RlOptions, SftOptions, TrainerOptions } from './trainer.js';

/** Most optimizer steps (or rollout batches) one stage may be asked for: a typo guard (1e12 is not a plan). */
export const MAX_STEPS = 100_000_000;

export const TRAINER_OPTION_KEYS = ['runDir', 'seed', 'onStep', 'checkpointEvery', 'handleSigint', 'saveTotalLimit', 'contrastDim'] as const;
export const SFT_OPTION_KEYS = [
  'steps', 'epochs', 'batchSize', 'gradAccum', 'lr', 'minLr', 'warmupSteps', 'weightDecay', 'maxGradNorm', 'kim', 'contrastive',
  'lambda', 'tapLayer', 'temperature', 'questions', 'substitution', 'kimFramePosition', 'keyInfo', 'locator', 'signal',
] as const;
export const RL_OPTION_KEYS = [
  'steps', 'epochs', 'promptsPerStep', 'groupSize', 'updatesPerBatch', 'lr', 'weightDecay', 'maxGradNorm', 'temperature', 'topP',
  'maxTokens', 'comparative', 'bonus', 'ratio', 'reward', 'tasks', 'beta', 'reference', 'epsLow', 'epsHigh', 'lossType',
  'scaleAdvantages', 'substitution', 'kimFramePosition', 'keyInfo', 'locator', 'signal',
] as const;

/** Keys a JSON config file may hold in each section (no functions, signals or models). */
export const CONFIG_FILE_KEYS = {
  model: VIDEOLM_CREATE_KEYS.filter((k) => k !== 'tokenizer' && k !== 'seed' && k !== 'device'),
  sft: SFT_OPTION_KEYS.filter((k) => k !== 'signal'),
  rl: RL_OPTION_KEYS.filter((k) => k !== 'signal' && k !== 'reward' && k !== 'reference'),
} as const;

export { VIDEOLM_CREATE_KEYS };

// Compile-time: each list names exactly its interface's keys.
type Exact<T, K extends readonly PropertyKey[]> = [Exclude<keyof T, K[number]>, Exclude<K[number], keyof T>] extends [never, never] ? true : false;
const complete: [
  Exact<SftOptions, typeof SFT_OPTION_KEYS>,
  Exact<RlOptions, typeof RL_OPTION_KEYS>,
  Exact<TrainerOptions, typeof TRAINER_OPTION_KEYS>,
  Exact<VideoLMCreateOptions, typeof VIDEOLM_CREATE_KEYS>,
] = [true, true, true, true];
void complete;
