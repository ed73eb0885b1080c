// videoperceiver — the public API. `import * as vp from 'videoperceiver'`.
export { Tensor, tensor, zeros, type DType, type Device, type TypedData } from './tensor.js';
export { NativeError } from './errors.js';
export { backendInfo, setNumThreads, type BackendInfo } from './backend.js';
export { matmul, type MatmulOptions } from './ops/matmul.js';
export { Tokenizer, SPECIAL_TOKENS, type TrainOptions, type EncodeOptions } from './model/tokenizer.js';
export {
  readSafetensors, writeSafetensors, CheckpointError,
  type StTensor, type StDType, type Safetensors, type ReadSafetensorsOptions,
} from './model/safetensors.js';
export {
  rmsNorm, rmsNormBackward, swiglu, swigluBackward, rope, embedding, embeddingBackward, linear, linearBackward,
  crossEntropy, crossEntropyBackward, adamwStep, clipGradNorm, lrAt, randn, randu, sampleTokens,
  type AdamWOptions, type LrScheduleOptions, type InitOptions, type SampleOptions,
} from './ops/layers.js';
export {
  packTokens, packTokensBackward,
  type PackInput, type PackOptions, type PackBackwardOptions, type PackSegment, type PackTextSegment, type PackVideoSegment, type Packed,
} from './ops/pack.js';
export { extractEventKeywords, extractEventKeywordSpans, findKeywordSpan, type KeywordSpan } from './kim/keywords.js';
export { locateKeyFrames, locateKeyFramesBySimilarity, type SimilarityOptions, type TimeSpan } from './kim/keyframes.js';
export {
  detectTransientFrames, analyzeTransientFrames,
  type FrameData, type FramesInput, type TransientAnalysis, type TransientOptions,
} from './kim/transient.js';
export { planSubstitution, type SubstitutionPolicy } from './kim/substitution.js';
export {
  buildSftBatch, wordTokenizer,
  type SftBatch, type SftBatchOptions, type SftEvent, type SftSample, type SftSamplePlan, type SftTokenizer,
} from './kim/sft-batch.js';
export { seededRandom, randomFloats } from './random.js';
export { openDataset, Dataset, framesToTensor, type Annotation, type VideoSample, type EventAnnotation, type QuestionAnnotation, type OpenDatasetOptions } from './data/dataset.js';
export { readNpy, writeNpy, parseNpy, encodeNpy, type NpyArray, type NpyDType } from './data/npy.js';
export { decodeVideo, findFfmpeg, type DecodeOptions, type DecodedVideo } from './data/video.js';
export { synthClip, synthDataset, makeRng, SHAPES, COLORS, MOTIONS, EVENTS, NOTHING, type SynthClip, type SynthOptions, type SynthDatasetOptions, type EventKind } from './data/synth.js';
export { attention, attentionBackward, type AttentionOptions, type AttentionResult, type AttentionGrads } from './ops/attention.js';
export {
  VideoLM, VIDEOLM_PRESETS,
  type VideoLMConfig, type VideoLMPreset, type VideoLMDevice, type VideoLMCreateOptions, type VideoLMSegment, type VideoLMBatch, type VideoLMLayout,
  type ForwardOptions as VideoLMForwardOptions, type ForwardResult as VideoLMForwardResult,
  type BackwardOptions as VideoLMBackwardOptions, type StepOptions as VideoLMStepOptions, type StepResult as VideoLMStepResult,
  type GenerateOptions as VideoLMGenerateOptions, type ParamInfo as VideoLMParamInfo,
} from './model/videolm.js';
export { encodePng, decodePng, frameStrip } from './data/png.js';
export { lemmas, keywordRecall, multipleChoiceMatch, defaultTaskReward, captionKeywordRecall, type TaskRewardInput } from './train/rewards.js';
export { renderReport, writeReport, type ReportInput, type ReportRun, type ReportRow, type ReportSample } from './report/html.js';
export { lineChart, barChart, type Series } from './report/charts.js';
export {
  tokenLogprobs,
  tokenLogprobsBackward,
  linearTokenLogprobs,
  linearTokenLogprobsBackward,
  linearLogprobsWorkspaceBytes,
  type LogprobsOptions,
} from './ops/logprobs.js';
export {
  comparativeAdvantages,
  comparativeRewards,
  groupAdvantages,
  grpoLoss,
  linearGrpoLoss,
  type AdvantageScale,
  type ComparativeMode,
  type ComparativeAdvantagesOptions,
  type ComparativeRewardsOptions,
  type GroupAdvantagesOptions,
  type GrpoLossInputs,
  type GrpoLossOptions,
  type GrpoLossResult,
  type GrpoLossType,
  type LinearGrpoLossInputs,
  type LinearGrpoLossOptions,
  type LinearGrpoLossResult,
} from './ops/grpo.js';
export {
  infoNce, infoNceBackward, infoNceWithGrad,
  type InfoNceOptions, type InfoNceBackwardOptions, type InfoNceResult, type InfoNceGradients,
} from './ops/infonce.js';
export {
  Trainer, scheduledLr,
  type TrainerOptions, type SftOptions, type RlOptions, type RewardInput, type RewardFunction, type StageResult, type TrainData,
} from './train/trainer.js';
export { evaluate, evaluateMultipleChoice, evaluateCaptions, type EvaluateOptions, type EvaluationResult, type QuestionResult, type CaptionResult } from './train/eval.js';
export { type MetricEvent, type SftStepEvent, type RlStepEvent, type EvalEvent, type CheckpointEvent } from './train/metrics.js';
export { CAPTION_PROMPT, questionPrompt, clipTasks, fitClip, tokenizerForDataset, annotatedKeywords, type ClipTask, type FittedClip } from './train/tasks.js';
export { type TrainClip, type TrainerSftBatch, type ContrastGroup } from './train/batch.js';
export { ContrastiveHead } from './train/contrastive.js';
export {
  loadPretrained, PretrainedModel, PretrainedTokenizer, ChatTemplate, parseConfig, ropeInvFreq, UnsupportedConfigError, ARCHITECTURES,
  type LoadPretrainedOptions, type PretrainedBatch, type PretrainedSegment, type PretrainedForwardOptions, type PretrainedForwardResult,
  type PretrainedBackwardOptions, type PretrainedStepOptions, type PretrainedLayout, type LogitsOptions, type PretrainedEncodeOptions,
  type PretrainedDecodeOptions, type ChatMessage, type ChatTemplateOptions, type Architecture, type DecoderSpec, type RopeScaling,
  type LoraOptions, type LoraState, type TextGenerateOptions,
} from './pretrained/index.js';
