// videoperceiver — the public API. `import * as vp from 'videoperceiver'`.
//
// The root re-exports the user-facing names of every area; each area is also a
// sub-path of its own with its helpers (docs/architecture.md):
//   videoperceiver/ops     tensors and the fused kernels (forward and backward)
//   videoperceiver/kim     keywords, key frames, substitution, the SFT batch
//   videoperceiver/data    datasets, .npy, video decoding, synthetic clips, PNG
//   videoperceiver/model   VideoLM, its tokenizer, safetensors
//   videoperceiver/train   Trainer, evaluation, rewards, the RL step's parts
//   videoperceiver/report  report.html and charts
export * from './ops/index.js';
export { distributedInfo, type DistributedInfo } from './distributed.js';
export {
  extractEventKeywords, extractEventKeywordSpans, findKeywordSpan, type KeywordSpan,
  locateKeyFrames, locateKeyFramesBySimilarity, type SimilarityOptions, type TimeSpan,
  detectTransientFrames, analyzeTransientFrames, type FrameData, type FramesInput, type TransientAnalysis, type TransientOptions,
  planSubstitution, type SubstitutionPolicy,
  buildSftBatch, type SftBatch, type SftBatchOptions, type SftEvent, type SftSample, type SftSamplePlan, type SftTokenizer,
} from './kim/index.js';
export {
  openDataset, Dataset, framesToTensor, type Annotation, type VideoSample, type EventAnnotation, type QuestionAnnotation, type OpenDatasetOptions,
  readNpy, writeNpy, type NpyArray, type NpyDType,
  decodeVideo, findFfmpeg, type DecodeOptions, type DecodedVideo,
  synthClip, synthDataset, makeRng, type SynthClip, type SynthOptions, type SynthDatasetOptions, type EventKind,
  readConversations, DataFormatError, type ConversationRecord, type ConversationTurn,
  openConversations, conversationAnnotation, type OpenConversationsOptions,
} from './data/index.js';
export * from './model/index.js';
export {
  Trainer, scheduledLr,
  type TrainerOptions, type SftOptions, type RlOptions, type RlComparativeMode, type RewardInput, type RewardFunction, type StageResult, type TrainData,
  evaluate, evaluateMultipleChoice, evaluateCaptions, type EvaluateOptions, type EvaluationResult, type QuestionResult, type CaptionResult,
  type MetricEvent, type SftStepEvent, type RlStepEvent, type EvalEvent, type CheckpointEvent,
  lemmas, keywordRecall, keywordF1, multipleChoiceMatch, defaultTaskReward, captionKeywordRecall, type TaskRewardInput,
  CAPTION_PROMPT, captionPrompt, questionPrompt, clipTasks, tokenizerForDataset, annotatedKeywords, type ClipTask, type FittedClip,
  type TrainClip, type TrainerSftBatch, type ContrastGroup, DivergenceError,
} from './train/index.js';
export { renderReport, writeReport, type ReportInput, type ReportRun, type ReportRow, type ReportSample } from './report/index.js';
