// videoperceiver/model — the built-in VideoLM (vision encoder + decoder in the
// native core), its word-level tokenizer and safetensors files, and pretrained
// language models in the Hugging Face layout (lib/pretrained/).
export { Tokenizer, SPECIAL_TOKENS, type TrainOptions, type EncodeOptions } from './tokenizer.js';
export {
  readSafetensors, writeSafetensors, CheckpointError,
  type StTensor, type StDType, type Safetensors, type ReadSafetensorsOptions,
} from './safetensors.js';
export {
  VideoLM, VIDEOLM_PRESETS,
  type VideoLMConfig, type VideoLMPreset, type VideoLMDevice, type VideoLMComputeDtype, type VideoLMCreateOptions, type VideoLMSegment, type VideoLMBatch, type VideoLMLayout,
  type ForwardOptions as VideoLMForwardOptions, type ForwardResult as VideoLMForwardResult,
  type BackwardOptions as VideoLMBackwardOptions, type StepOptions as VideoLMStepOptions, type StepResult as VideoLMStepResult,
  type GenerateOptions as VideoLMGenerateOptions, type ParamInfo as VideoLMParamInfo,
} from './videolm.js';
export {
  loadPretrained, PretrainedModel, PretrainedTokenizer, ChatTemplate, parseConfig, ropeInvFreq, UnsupportedConfigError, ARCHITECTURES,
  type LoadPretrainedOptions, type PretrainedBatch, type PretrainedSegment, type PretrainedForwardOptions, type PretrainedForwardResult,
  type PretrainedBackwardOptions, type PretrainedStepOptions, type PretrainedLayout, type LogitsOptions, type PretrainedEncodeOptions,
  type PretrainedDecodeOptions, type ChatMessage, type ChatTemplateOptions, type Architecture, type DecoderSpec, type RopeScaling,
  type LoraOptions, type LoraState, type TextGenerateOptions,
  vlmTrainBatch, substituteFrames, VLM_ARCHITECTURES, type VlmSample, type VlmArchitecture, type VlmSpec, type VisionSpec, type ProcessedVideo, type VideoOptions, type ProcessedImages,
} from '../pretrained/index.js';
