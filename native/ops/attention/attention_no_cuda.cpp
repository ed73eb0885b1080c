// The CUDA attention of a CPU-only build: reports why it cannot run.
#include "vp/attention.h"
#include "vp/cuda.h"

namespace vp::cuda {

namespace {
Status unavailable() {
  return Status::Unavailable("attention: CUDA is unavailable: " + unavailable_reason());
}
}  // namespace

Status attention_forward(const AttentionProblem&, DType, const void*, const void*, const void*, void*, float*) {
  return unavailable();
}

Status attention_backward(const AttentionProblem&, DType, const void*, const void*, const void*, const void*,
                          const void*, const float*, void*, void*, void*) {
  return unavailable();
}

}  // namespace vp::cuda
