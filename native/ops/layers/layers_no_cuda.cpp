// The CUDA layer kernels in a CPU-only build: each reports why CUDA cannot be used.
#include <string>

#include "vp/cuda.h"
#include "vp/layers.h"
#include "vp/optim.h"

namespace vp::cuda {
namespace {
Status unavailable() {
  return Status::Unavailable("CUDA is unavailable: this binary was built without CUDA (VP_CUDA=off, or nvcc was not found at build time)");
}
}  // namespace

Status rmsnorm_forward(const float*, const float*, int64_t, int64_t, float, float*, float*) { return unavailable(); }
Status rmsnorm_backward(const float*, const float*, const float*, const float*, int64_t, int64_t, float, float*,
                        float*, bool) { return unavailable(); }
Status swiglu_forward(const float*, const float*, int64_t, int64_t, int64_t, float*) { return unavailable(); }
Status swiglu_backward(const float*, const float*, const float*, int64_t, int64_t, int64_t, float*, float*) {
  return unavailable();
}
Status rope_apply(const float*, const int32_t*, int64_t, int64_t, int64_t, float, bool, float*) { return unavailable(); }
Status embedding_forward(const float*, int64_t, int64_t, const int32_t*, int64_t, float*) { return unavailable(); }
Status embedding_backward(const float*, const int32_t*, int64_t, int64_t, int64_t, float*, bool) { return unavailable(); }
Status cross_entropy_forward(const float*, const int32_t*, int64_t, int64_t, float*, float*, int64_t*) {
  return unavailable();
}
Status cross_entropy_backward(const float*, const int32_t*, const float*, int64_t, int64_t, float, float*) {
  return unavailable();
}
Status adamw_step(float*, const float*, float*, float*, int64_t, const AdamWConfig&) { return unavailable(); }

}  // namespace vp::cuda
