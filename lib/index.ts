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
  crossEntropy, crossEntropyBackward, adamwStep, clipGradNorm, lrAt, randn, randu,
  type AdamWOptions, type LrScheduleOptions, type InitOptions,
} from './ops/layers.js';
export { openDataset, Dataset, framesToTensor, type Annotation, type VideoSample, type EventAnnotation, type QuestionAnnotation, type OpenDatasetOptions } from './data/dataset.js';
export { readNpy, writeNpy, parseNpy, encodeNpy, type NpyArray, type NpyDType } from './data/npy.js';
export { decodeVideo, findFfmpeg, type DecodeOptions, type DecodedVideo } from './data/video.js';
export { synthClip, synthDataset, makeRng, SHAPES, COLORS, MOTIONS, EVENTS, NOTHING, type SynthClip, type SynthOptions, type SynthDatasetOptions, type EventKind } from './data/synth.js';
export { encodePng, frameStrip } from './data/png.js';
export { attention, attentionBackward, type AttentionOptions, type AttentionResult, type AttentionGrads } from './ops/attention.js';
export {
  VideoLM, VIDEOLM_PRESETS,
  type VideoLMConfig, type VideoLMPreset, type VideoLMCreateOptions, type VideoLMSegment, type VideoLMBatch, type VideoLMLayout,
  type ForwardOptions as VideoLMForwardOptions, type ForwardResult as VideoLMForwardResult,
  type BackwardOptions as VideoLMBackwardOptions, type StepOptions as VideoLMStepOptions, type StepResult as VideoLMStepResult,
  type GenerateOptions as VideoLMGenerateOptions, type ParamInfo as VideoLMParamInfo,
} from './model/videolm.js';
