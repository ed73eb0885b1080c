// The VideoLM's CUDA kernels (vp/model_kernels.h, cuda::sgemm, cuda::sum_squares)
// in a CPU-only build: each reports why CUDA cannot be used.
#include <string>

#include "vp/cuda.h"
#include "vp/gemm.h"
#include "vp/model_kernels.h"
#include "vp/optim.h"

namespace vp::cuda {
namespace {
Status unavailable() { return Status::Unavailable("CUDA is unavailable: " + unavailable_reason()); }
}  // namespace

Status sgemm(const GemmArgs&) { return unavailable(); }
Status sum_squares(const float*, int64_t, double*) { return unavailable(); }
Status rows_gather(const float*, const int32_t*, int64_t, int64_t, float*) { return unavailable(); }
Status rows_scatter_add(const float*, const int32_t*, int64_t, int64_t, float*) { return unavailable(); }
Status rows_csr_sum(const float*, const int32_t*, const int32_t*, int64_t, int64_t, float*, bool) {
  return unavailable();
}
Status embed_rows(const float*, const float*, const int32_t*, int64_t, int64_t, float*) { return unavailable(); }
Status vision_add_pos(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t) {
  return unavailable();
}
Status vision_pos_backward(const float*, int64_t, int64_t, int64_t, int64_t, float*, float*, float*) {
  return unavailable();
}
Status row_lse_target(const float*, const int32_t*, int64_t, int64_t, float*, float*) { return unavailable(); }
Status softmax_xent_grad(float*, const int32_t*, const float*, const float*, int64_t, int64_t) { return unavailable(); }
Status decode_attention(const float*, const float*, const float*, const int32_t*, const int32_t*, int64_t, int64_t,
                        int64_t, int64_t, float, int64_t, float*) {
  return unavailable();
}
Status add_inplace(float*, const float*, int64_t) { return unavailable(); }
Status fill_zero(float*, int64_t) { return unavailable(); }
Status patchify_u8(const uint8_t*, int64_t, int64_t, int64_t, int64_t, float*) { return unavailable(); }
Status patchify_f32(const float*, int64_t, int64_t, int64_t, int64_t, float*) { return unavailable(); }

}  // namespace vp::cuda
