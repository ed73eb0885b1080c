// Pretrained language models in the Hugging Face layout (docs/pretrained.md): the
// public names of lib/pretrained/.
export { loadPretrained, PretrainedModel, type LoadPretrainedOptions, type PretrainedBatch, type PretrainedSegment, type PretrainedForwardOptions, type PretrainedForwardResult, type PretrainedBackwardOptions, type PretrainedStepOptions, type PretrainedLayout, type LogitsOptions, type PretrainedGenerateOptions } from './model.js';
export { PretrainedTokenizer, type PretrainedEncodeOptions, type PretrainedDecodeOptions } from './tokenizer.js';
export { ChatTemplate, type ChatMessage, type ChatTemplateOptions } from './chat-template.js';
export { parseConfig, ropeInvFreq, UnsupportedConfigError, ARCHITECTURES, type Architecture, type DecoderSpec, type RopeScaling } from './config.js';
export { type LoraOptions, type LoraState } from './lora.js';
export { type TextGenerateOptions } from './generate.js';
export { vlmTrainBatch, substituteFrames, type VlmSample } from './vlm-train.js';
export { VLM_ARCHITECTURES, type VlmArchitecture, type VlmSpec, type VisionSpec } from './vlm-config.js';
export { type ProcessedVideo, type VideoOptions } from './video.js';
export { type ProcessedImages } from './images.js';
