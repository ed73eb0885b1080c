// vp/logprobs.h — token log-probabilities, plain and through the output projection.
//
//   token_logprobs:         logp[i] = log_softmax(logits[i] / T)[targets[i]]
//   linear_token_logprobs:  the same with logits = hidden · weightᵀ, computed
//                           in tiles so that no N×V buffer ever exists
//
// and their backward passes (gradients for logits, or for hidden and weight,
// given dL/dlogp). T is the sampling temperature (TRL divides the logits by it
// before the log-softmax; default 1).
//
// Shapes: logits [N, V]; hidden [N, d]; weight [V, d]; targets int32 [N] with
// 0 <= targets[i] < V; logp / dlogprobs float32 [N]. CPU computes in float32;
// CUDA takes float32, bfloat16 or float16 logits/hidden/weight (float32
// accumulation; the gradients have the input's dtype). Every tensor of a call
// lives on the same device (targets and the [N] vectors included).
//
// A row whose log-sum-exp is not finite (the row holds NaN or +Infinity, or
// every logit is -Infinity) is an error naming the row; -Infinity logits
// elsewhere are allowed and get probability 0.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp {

struct LogprobsOptions {
  float temperature = 1.0f;  // > 0
};

Status token_logprobs(const TensorView& logits, const TensorView& targets, const TensorView& out,
                      const LogprobsOptions& opts = {});

// dlogits[i, v] = dlogprobs[i] / T · (1[v == targets[i]] − softmax(logits[i] / T)[v])
Status token_logprobs_backward(const TensorView& dlogprobs, const TensorView& logits,
                               const TensorView& targets, const TensorView& dlogits,
                               const LogprobsOptions& opts = {});

Status linear_token_logprobs(const TensorView& hidden, const TensorView& weight,
                             const TensorView& targets, const TensorView& out,
                             const LogprobsOptions& opts = {});

// dhidden = dlogits · weight, dweight = dlogitsᵀ · hidden, with dlogits as
// above, without materializing dlogits. Recomputes the logits (one projection)
// and the log-sum-exp; costs three projections in all. When `logprobs` has
// data (float32 [N], the device of hidden) it receives the log-probs too, as
// linear_token_logprobs computes them: one call then gives the forward's
// values and the gradients (three projections instead of four).
Status linear_token_logprobs_backward(const TensorView& dlogprobs, const TensorView& hidden,
                                      const TensorView& weight, const TensorView& targets,
                                      const TensorView& dhidden, const TensorView& dweight,
                                      const LogprobsOptions& opts = {}, const TensorView& logprobs = {});

// Bytes of scratch memory the CPU linear kernels allocate beyond their inputs
// and outputs for a problem of this size on `threads` threads (an upper bound;
// the kernels allocate exactly this much, and free it before they return).
size_t linear_logprobs_workspace_bytes(int64_t n, int64_t d, int64_t v, int threads, bool backward);

namespace cuda {
// The CUDA implementations (device pointers; validated by the vp:: functions).
Status token_logprobs(const TensorView& logits, const TensorView& targets, const TensorView& out,
                      const LogprobsOptions& opts);
Status token_logprobs_backward(const TensorView& dlogprobs, const TensorView& logits,
                               const TensorView& targets, const TensorView& dlogits,
                               const LogprobsOptions& opts);
Status linear_token_logprobs(const TensorView& hidden, const TensorView& weight,
                             const TensorView& targets, const TensorView& out,
                             const LogprobsOptions& opts);
Status linear_token_logprobs_backward(const TensorView& dlogprobs, const TensorView& hidden,
                                      const TensorView& weight, const TensorView& targets,
                                      const TensorView& dhidden, const TensorView& dweight,
                                      const LogprobsOptions& opts, float* logprobs);
}  // namespace cuda

}  // namespace vp
