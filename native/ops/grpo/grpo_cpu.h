// Internal: the CPU implementations behind vp/logprobs.h and vp/grpo.h. The
// arguments were validated by native/ops/grpo/grpo.cpp; these take raw pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "vp/grpo.h"
#include "vp/status.h"

namespace vp::cpu {

// ---- token log-probs -----------------------------------------------------------------

Status token_logprobs(const float* logits, int64_t n, int64_t v, const int32_t* targets,
                      float inv_temperature, float* out);
Status token_logprobs_backward(const float* dlogprobs, const float* logits, int64_t n, int64_t v,
                               const int32_t* targets, float inv_temperature, float* dlogits);

// The fused projection + log-softmax engine. Forward only (grad == nullptr):
// logprobs[i] = log_softmax(hidden[i] · weightᵀ · inv_temperature)[targets[i]].
// With grad: after a row block's log-probs are known, grad(r0, count, logp, g)
// writes g[0..count) = ∂loss/∂logp for rows r0..r0+count (called serially, in
// row order), and the engine accumulates dhidden and dweight from the block's
// logits while they are still in cache.
using RowGradFn = std::function<Status(int64_t r0, int64_t count, const float* logp, float* g)>;

struct LinearLogprobsProblem {
  const float* hidden = nullptr;  // [n, d]
  const float* weight = nullptr;  // [v, d]
  const int32_t* targets = nullptr;
  int64_t n = 0, d = 0, v = 0;
  float inv_temperature = 1.0f;
  float* logprobs = nullptr;  // [n] or null
  const RowGradFn* grad = nullptr;
  float* dhidden = nullptr;  // [n, d] (with grad)
  float* dweight = nullptr;  // [v, d] (with grad)
  const char* fn = "linearTokenLogprobs";  // for error messages
};

Status linear_logprobs(const LinearLogprobsProblem& p);
size_t linear_logprobs_workspace(int64_t n, int64_t d, int64_t v, int threads, bool backward);

// ---- GRPO ------------------------------------------------------------------------------

Status comparative_rewards(const float* complete, int64_t n_complete, const float* degraded,
                           int64_t n_degraded, int64_t group_size, const ComparativeOptions& opts,
                           float* out);
Status group_advantages(const float* rewards, int64_t n, int64_t group_size, AdvantageScale scale,
                        double eps, float* out);

// Per-token view of a GRPO problem shared by grpo_loss and linear_grpo_loss.
struct GrpoTokens {
  const float* old_logprobs = nullptr;
  const float* ref_logprobs = nullptr;  // may be null
  const float* advantages = nullptr;
  bool advantages_per_sequence = false;
  const int32_t* cu_seqlens = nullptr;
  int64_t num_sequences = 0;
  int64_t total_tokens = 0;
};

// Accumulates the GRPO loss over token ranges in order (double sums) and
// produces the per-token gradient; finish() gives the statistics.
class GrpoAccumulator {
 public:
  GrpoAccumulator(const GrpoTokens& toks, const GrpoOptions& opts);
  // Tokens [t0, t0 + count) with log-probs logp[0..count): writes g = ∂loss/∂logp.
  void run(int64_t t0, int64_t count, const float* logp, float* g);
  GrpoStats finish() const;

 private:
  double weight_of(int64_t token, int64_t seq) const;
  GrpoTokens toks_;
  GrpoOptions opts_;
  int64_t seq_ = 0;  // the sequence of the next token (tokens arrive in order)
  double loss_ = 0.0, kl_ = 0.0;
  int64_t clipped_ = 0;
};

}  // namespace vp::cpu
