// The CUDA LayerNorm and GELU (vp/norm_act.h, cuda/norm_act.cu) in a CPU-only
// build: each reports why CUDA cannot be used.
#include "vp/norm_act.h"

namespace vp::cuda {
namespace {
Status unavailable() {
  return Status::Unavailable("CUDA is unavailable: this binary was built without CUDA (VP_CUDA=off, or nvcc was not found at build time)");
}
}  // namespace

Status layernorm_forward(const float*, const float*, const float*, int64_t, int64_t, float, float*, float*, float*) {
  return unavailable();
}
Status layernorm_backward(const float*, const float*, const float*, const float*, const float*, int64_t, int64_t, float,
                          float*, float*, float*, bool) {
  return unavailable();
}
Status gelu_forward(const float*, int64_t, GeluKind, float*) { return unavailable(); }
Status gelu_backward(const float*, const float*, int64_t, GeluKind, float*) { return unavailable(); }

}  // namespace vp::cuda
