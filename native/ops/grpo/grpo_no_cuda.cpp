// The GRPO and token log-prob kernels of a CPU-only build: every CUDA entry
// point reports that CUDA is unavailable (vp:: dispatch never gets here with
// CPU tensors, and CUDA tensors cannot exist in such a build).
#include "vp/cuda.h"
#include "vp/grpo.h"
#include "vp/logprobs.h"

namespace vp::cuda {

namespace {
Status unavailable() {
  return Status::Unavailable(std::string("CUDA is unavailable: ") + unavailable_reason());
}
}  // namespace

Status token_logprobs(const TensorView&, const TensorView&, const TensorView&, const LogprobsOptions&) {
  return unavailable();
}
Status token_logprobs_backward(const TensorView&, const TensorView&, const TensorView&, const TensorView&,
                               const LogprobsOptions&) {
  return unavailable();
}
Status linear_token_logprobs(const TensorView&, const TensorView&, const TensorView&, const TensorView&,
                             const LogprobsOptions&) {
  return unavailable();
}
Status linear_token_logprobs_backward(const TensorView&, const TensorView&, const TensorView&,
                                      const TensorView&, const TensorView&, const TensorView&,
                                      const LogprobsOptions&, float*) {
  return unavailable();
}
Status comparative_rewards(const TensorView&, const TensorView&, int64_t, const ComparativeOptions&,
                           const TensorView&) {
  return unavailable();
}
Status group_advantages(const TensorView&, int64_t, AdvantageScale, double, const TensorView&) {
  return unavailable();
}
Status grpo_loss(const GrpoInputs&, const GrpoOptions&, const TensorView&, GrpoStats*) { return unavailable(); }
Status linear_grpo_loss(const LinearGrpoInputs&, const GrpoOptions&, const TensorView&, const TensorView&,
                        const TensorView&, GrpoStats*) {
  return unavailable();
}

}  // namespace vp::cuda
