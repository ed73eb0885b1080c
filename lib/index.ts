// videoperceiver — the public API. `import * as vp from 'videoperceiver'`.
export { Tensor, tensor, zeros, type DType, type Device, type TypedData } from './tensor.js';
export { NativeError } from './errors.js';
export { backendInfo, setNumThreads, type BackendInfo } from './backend.js';
export { matmul, type MatmulOptions } from './ops/matmul.js';
export { attention, attentionBackward, type AttentionOptions, type AttentionResult, type AttentionGrads } from './ops/attention.js';
