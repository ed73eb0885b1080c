// The pretrained models' CUDA building blocks (vp/pretrained_kernels.h,
// cuda/pretrained.cu) in a CPU-only build: each reports why CUDA cannot be used.
#include "vp/pretrained_kernels.h"

namespace vp::cuda {
namespace {
Status unavailable() {
  return Status::Unavailable("CUDA is unavailable: this binary was built without CUDA (VP_CUDA=off, or nvcc was not found at build time)");
}
}  // namespace

Status axpy(float*, const float*, float, int64_t) { return unavailable(); }
Status scale(float*, float, int64_t) { return unavailable(); }
Status mul_inplace(float*, const float*, int64_t) { return unavailable(); }
Status add_bias_rows(float*, const float*, int64_t, int64_t) { return unavailable(); }
Status gather_rows(const float*, int64_t, const int32_t*, int64_t, int64_t, float*) { return unavailable(); }
Status scatter_add_rows(const float*, const int32_t*, int64_t, int64_t, float*, int64_t) { return unavailable(); }
Status embedding_lookup(const void*, bool, int64_t, int64_t, const int32_t*, int64_t, float*) { return unavailable(); }
Status embedding_grad(const float*, const int32_t*, int64_t, int64_t, int64_t, float*, bool) { return unavailable(); }
Status rope_table(const float*, const int32_t*, int64_t, int64_t, int64_t, const float*, const float*, int64_t, bool,
                  float*) {
  return unavailable();
}
Status rope_theta(const float*, const int32_t*, int64_t, int64_t, int64_t, float, bool, float*) { return unavailable(); }
Status decode_attention_rows(const float*, const float*, const float*, int64_t, const int32_t*, const int32_t*, int64_t,
                             int64_t, int64_t, int64_t, float, float*) {
  return unavailable();
}

}  // namespace vp::cuda
