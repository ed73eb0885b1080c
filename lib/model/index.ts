// videoperceiver/model — the built-in VideoLM (vision encoder + decoder in the
// native core), its word-level tokenizer and safetensors files.
export { Tokenizer, SPECIAL_TOKENS, type TrainOptions, type EncodeOptions } from './tokenizer.js';
export {
  readSafetensors, writeSafetensors, CheckpointError,
  type StTensor, type StDType, type Safetensors, type ReadSafetensorsOptions,
} from './safetensors.js';
export {
  VideoLM, VIDEOLM_PRESETS,
  type VideoLMConfig, type VideoLMPreset, type VideoLMDevice, type VideoLMCreateOptions, type VideoLMSegment, type VideoLMBatch, type VideoLMLayout,
  type ForwardOptions as VideoLMForwardOptions, type ForwardResult as VideoLMForwardResult,
  type BackwardOptions as VideoLMBackwardOptions, type StepOptions as VideoLMStepOptions, type StepResult as VideoLMStepResult,
  type GenerateOptions as VideoLMGenerateOptions, type ParamInfo as VideoLMParamInfo,
} from './videolm.js';
