// videoperceiver/data — datasets (annotations.jsonl + clips), .npy files,
// video decoding through ffmpeg, the seeded generator of synthetic clips and
// its vocabulary, and PNG encoding of frames.
export { openDataset, Dataset, framesToTensor, type Annotation, type VideoSample, type EventAnnotation, type QuestionAnnotation, type OpenDatasetOptions } from './dataset.js';
export { readNpy, writeNpy, parseNpy, encodeNpy, type NpyArray, type NpyDType } from './npy.js';
export { decodeVideo, findFfmpeg, type DecodeOptions, type DecodedVideo } from './video.js';
export { synthClip, synthDataset, makeRng, SHAPES, COLORS, MOTIONS, EVENTS, NOTHING, type SynthClip, type SynthOptions, type SynthDatasetOptions, type EventKind } from './synth.js';
export { encodePng, decodePng, frameStrip } from './png.js';
export { readConversations, DataFormatError, type ConversationRecord, type ConversationTurn } from './sharegpt.js';
export { openConversations, conversationAnnotation, type OpenConversationsOptions } from './conversations.js';
