// videoperceiver/train — the method as a training API: vp.Trainer (stage 1 SFT
// with KIM videos and the contrastive term, stage 2 comparative GRPO), the
// evaluators, task rewards, metric events, and the pieces a custom loop needs
// (clip tasks, packed batches, the contrastive head, the RL step's parts).
export {
  Trainer, scheduledLr,
  type TrainerOptions, type SftOptions, type RlOptions, type RlComparativeMode, type RewardInput, type RewardFunction, type StageResult, type TrainData,
} from './trainer.js';
export { parseRlOptions, rollout, score, update, advantageSpread, type RlSettings, type Rollout, type RolloutPrompt, type ScoredRollout, type UpdateResult } from './rl.js';
export { evaluate, evaluateMultipleChoice, evaluateCaptions, type EvaluateOptions, type EvaluationResult, type QuestionResult, type CaptionResult } from './eval.js';
export { type MetricEvent, type SftStepEvent, type RlStepEvent, type EvalEvent, type CheckpointEvent } from './metrics.js';
export { lemmas, keywordRecall, keywordF1, multipleChoiceMatch, defaultTaskReward, captionKeywordRecall, type TaskRewardInput } from './rewards.js';
export { CAPTION_PROMPT, captionPrompt, questionPrompt, clipTasks, fitClip, tokenizerForDataset, annotatedKeywords, type ClipTask, type FittedClip } from './tasks.js';
export { KimPlans, planSftBatch, type TrainClip, type TrainerSftBatch, type ContrastGroup } from './batch.js';
export { ContrastiveHead } from './contrastive.js';
export { DivergenceError } from './checkpoints.js';
