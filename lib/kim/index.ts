// videoperceiver/kim — key-information-missing videos: event keywords, key
// frames (annotated spans, transient frames, feature similarity), the
// substitution plan, and stage 1's packed SFT batch.
export { extractEventKeywords, extractEventKeywordSpans, findKeywordSpan, type KeywordSpan } from './keywords.js';
export { locateKeyFrames, locateKeyFramesBySimilarity, type SimilarityOptions, type TimeSpan } from './keyframes.js';
export {
  detectTransientFrames, analyzeTransientFrames,
  type FrameData, type FramesInput, type TransientAnalysis, type TransientOptions,
} from './transient.js';
export { planSubstitution, AllKeyFramesError, type SubstitutionPolicy } from './substitution.js';
export {
  buildSftBatch, wordTokenizer,
  type SftBatch, type SftBatchOptions, type SftEvent, type SftSample, type SftSamplePlan, type SftTokenizer,
} from './sft-batch.js';
