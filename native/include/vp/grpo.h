// vp/grpo.h — the numeric core of GRPO with a comparative reward (docs/method.md
// stage 2, §3.4).
//
//  * comparative_rewards: task reward plus the comparative term that makes a
//    response to the complete video beat the responses to its degraded copy.
//  * group_advantages: TRL GRPOTrainer's group-relative advantages.
//  * grpo_loss: the clipped surrogate with token-level ratios, asymmetric
//    clipping, the k3 KL penalty and TRL's four aggregations; returns the loss
//    and its gradient with respect to the token log-probs.
//  * linear_grpo_loss: the output projection, the token log-probs and the GRPO
//    loss fused in one pass over row blocks (nothing recomputed, no N×V buffer).
//
// Group and batch statistics are computed in double precision. All tensors of
// a call live on one device; CPU computes in float32.
#pragma once

#include <cstdint>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp {

// ---- comparative rewards --------------------------------------------------------

enum class ComparativeMode {
  // bonus · (fraction of the group's degraded responses whose task reward is
  // strictly lower than this response's)
  kPairwise = 0,
  // T-GRPO: when mean(complete) >= ratio · mean(degraded) in the group, every
  // complete response with task reward > min_reward gets +bonus
  kThreshold = 1,
};

struct ComparativeOptions {
  ComparativeMode mode = ComparativeMode::kPairwise;
  double bonus = 0.5;   // the design's defaults: 0.5 pairwise, 0.3 threshold
  double ratio = 0.8;   // threshold mode
  double min_reward = 0.1;  // threshold mode: strict lower bound on the task reward (compared in float32)
};

// complete: float32 [nGroups · group_size], group by group; degraded: float32
// [nGroups · m] (m >= 1 degraded responses per group, group by group);
// out: float32 [nGroups · group_size]. NaN rewards: a NaN complete reward
// stays NaN (groupAdvantages leaves it out); NaN degraded rewards are left out
// of the comparison and of the group mean. ±Infinity is an error.
Status comparative_rewards(const TensorView& complete, const TensorView& degraded,
                           int64_t group_size, const ComparativeOptions& opts,
                           const TensorView& out);

// ---- group-relative advantages ----------------------------------------------------

enum class AdvantageScale { kGroup = 0, kBatch = 1, kNone = 2 };

// A = r − mean_group(r); unless kNone, divided by (std + eps) with the
// Bessel-corrected std of the group (kGroup) or of the whole batch (kBatch).
// NaN rewards are left out of means and stds; an advantage that comes out NaN
// (a NaN reward, a group of one, ...) becomes 0. rewards/out: float32 [n],
// n a multiple of group_size. ±Infinity is an error.
Status group_advantages(const TensorView& rewards, int64_t group_size, AdvantageScale scale,
                        double eps, const TensorView& out);

// ---- the clipped surrogate loss -----------------------------------------------------

enum class GrpoLossType {
  kGrpo = 0,    // mean over each sequence, then over sequences
  kBnpo = 1,    // sum over tokens / tokens
  kDapo = 2,    // sum over tokens / tokens (global token normalization)
  kDrGrpo = 3,  // sum over tokens / (sequences · max_completion_length)
};

struct GrpoOptions {
  double eps_low = 0.2;
  double eps_high = 0.2;
  double beta = 0.0;  // weight of the k3 KL penalty (needs ref_logprobs when > 0)
  GrpoLossType loss_type = GrpoLossType::kDapo;
  int64_t max_completion_length = 0;  // required by kDrGrpo (>= every sequence's length)
  float temperature = 1.0f;           // linear_grpo_loss only: logits / temperature
};

struct GrpoStats {
  double loss = 0.0;
  double clip_fraction = 0.0;  // fraction of tokens where the clipped branch is taken
  double kl = 0.0;             // mean k3 term over tokens (0 without ref_logprobs)
};

// Per-token inputs. ref_logprobs may be absent (data == nullptr). advantages
// has one value per token, or one per sequence (broadcast to its tokens; a
// length equal to the token count always means per token). cu_seqlens: int32
// [B + 1], 0 = cu[0] <= cu[1] <= ... <= cu[B] = total tokens.
struct GrpoInputs {
  TensorView logprobs;      // float32 [T]
  TensorView old_logprobs;  // float32 [T]
  TensorView ref_logprobs;  // float32 [T] or absent
  TensorView advantages;    // float32 [T] or [B]
  TensorView cu_seqlens;    // int32 [B + 1]
};

// ρ = exp(logp − old); per-token loss
//   ℓ = −min(ρA, clip(ρ, 1 − eps_low, 1 + eps_high)·A) + β·(exp(ref − logp) − (ref − logp) − 1)
// aggregated by loss_type; dlogprobs (float32 [T]) receives ∂loss/∂logprobs.
Status grpo_loss(const GrpoInputs& in, const GrpoOptions& opts, const TensorView& dlogprobs,
                 GrpoStats* stats);

struct LinearGrpoInputs {
  TensorView hidden;        // [T, d]
  TensorView weight;        // [V, d]
  TensorView targets;       // int32 [T]
  TensorView old_logprobs;  // float32 [T]
  TensorView ref_logprobs;  // float32 [T] or absent
  TensorView advantages;    // float32 [T] or [B]
  TensorView cu_seqlens;    // int32 [B + 1]
};

// grpo_loss on logprobs = linear_token_logprobs(hidden, weight, targets), with
// the gradient carried through to dhidden [T, d] and dweight [V, d].
// logprobs_out (float32 [T]) is optional (data == nullptr).
Status linear_grpo_loss(const LinearGrpoInputs& in, const GrpoOptions& opts,
                        const TensorView& dhidden, const TensorView& dweight,
                        const TensorView& logprobs_out, GrpoStats* stats);

namespace cuda {
// The CUDA implementations (device pointers; validated by the vp:: functions).
Status comparative_rewards(const TensorView& complete, const TensorView& degraded,
                           int64_t group_size, const ComparativeOptions& opts,
                           const TensorView& out);
Status group_advantages(const TensorView& rewards, int64_t group_size, AdvantageScale scale,
                        double eps, const TensorView& out);
Status grpo_loss(const GrpoInputs& in, const GrpoOptions& opts, const TensorView& dlogprobs,
                 GrpoStats* stats);
Status linear_grpo_loss(const LinearGrpoInputs& in, const GrpoOptions& opts,
                        const TensorView& dhidden, const TensorView& dweight,
                        const TensorView& logprobs_out, GrpoStats* stats);
}  // namespace cuda

}  // namespace vp
