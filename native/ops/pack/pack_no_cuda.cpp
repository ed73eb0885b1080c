// The packing kernels' CUDA entry points in a CPU-only build: they report that
// CUDA is unavailable (vp::pack_tokens only calls them for CUDA tensors, which
// cannot exist in such a build).
#include "vp/pack.h"

namespace vp::cuda {

namespace {
Status unavailable() {
  return Status::Unavailable("CUDA is unavailable: this binary was built without CUDA (VP_CUDA=off, or nvcc was not found at build time)");
}
}  // namespace

Status pack_gather(const PackRows&, const int32_t*, int64_t, int64_t, DType, void*) { return unavailable(); }
Status pack_scatter_add(const void*, int64_t, const int32_t*, const int32_t*, int64_t, DType, const PackRows&) {
  return unavailable();
}

}  // namespace vp::cuda
