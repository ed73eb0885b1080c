// vp::cuda::gemm_f32_bf16 (cuda/gemm_f32_bf16.cu) in a CPU-only build: reports
// why CUDA cannot be used.
#include "vp/gemm_f32_bf16.h"

namespace vp::cuda {

Status gemm_f32_bf16(const GemmF32Bf16Args&) {
  return Status::Unavailable("CUDA is unavailable: this binary was built without CUDA (VP_CUDA=off, or nvcc was not found at build time)");
}

}  // namespace vp::cuda
