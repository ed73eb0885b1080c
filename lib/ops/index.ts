// videoperceiver/ops — tensors and the fused kernels, each with its backward:
// matmul, attention, the model's layers (RMSNorm, SwiGLU, RoPE, embedding,
// cross-entropy, AdamW, sampling), token packing, InfoNCE, token log-probs and
// the GRPO family (advantages, comparative signal, clipped loss).
export { Tensor, tensor, zeros, type DType, type Device, type TypedData } from '../tensor.js';
export { NativeError } from '../errors.js';
export { backendInfo, setNumThreads, type BackendInfo } from '../backend.js';
export { matmul, type MatmulOptions } from './matmul.js';
export { attention, attentionBackward, type AttentionOptions, type AttentionResult, type AttentionGrads } from './attention.js';
export {
  rmsNorm, rmsNormBackward, swiglu, swigluBackward, rope, embedding, embeddingBackward, linear, linearBackward,
  crossEntropy, crossEntropyBackward, adamwStep, clipGradNorm, lrAt, randn, randu, sampleTokens,
  type AdamWOptions, type LrScheduleOptions, type InitOptions, type SampleOptions,
} from './layers.js';
export { layerNorm, layerNormBackward, gelu, geluBackward, type GeluApproximate } from './norm-act.js';
export {
  packTokens, packTokensBackward, planPacking, type PackDims, type PackPlan,
  type PackInput, type PackOptions, type PackBackwardOptions, type PackSegment, type PackTextSegment, type PackVideoSegment, type Packed,
} from './pack.js';
export {
  infoNce, infoNceBackward, infoNceWithGrad,
  type InfoNceOptions, type InfoNceBackwardOptions, type InfoNceResult, type InfoNceGradients,
} from './infonce.js';
export {
  tokenLogprobs, tokenLogprobsBackward, linearTokenLogprobs, linearTokenLogprobsBackward, linearLogprobsWorkspaceBytes,
  type LogprobsOptions,
} from './logprobs.js';
export {
  comparativeAdvantages, comparativeRewards, groupAdvantages, grpoLoss, linearGrpoLoss,
  type AdvantageScale, type ComparativeMode, type ComparativeAdvantagesOptions, type ComparativeRewardsOptions,
  type GroupAdvantagesOptions, type GrpoLossInputs, type GrpoLossOptions, type GrpoLossResult, type GrpoLossType,
  type LinearGrpoLossInputs, type LinearGrpoLossOptions, type LinearGrpoLossResult,
} from './grpo.js';
