// videoperceiver — the public API. `import * as vp from 'videoperceiver'`.
export { Tensor, tensor, zeros, type DType, type Device, type TypedData } from './tensor.js';
export { NativeError } from './errors.js';
export { backendInfo, setNumThreads, type BackendInfo } from './backend.js';
export { matmul, type MatmulOptions } from './ops/matmul.js';
export {
  tokenLogprobs,
  tokenLogprobsBackward,
  linearTokenLogprobs,
  linearTokenLogprobsBackward,
  linearLogprobsWorkspaceBytes,
  type LogprobsOptions,
} from './ops/logprobs.js';
export {
  comparativeRewards,
  groupAdvantages,
  grpoLoss,
  linearGrpoLoss,
  type AdvantageScale,
  type ComparativeMode,
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
