// NaN and infinity in the CUDA attention forward (attention_nonfinite.cu),
// called by attention.cu after its kernels.
#pragma once

#include <cstdint>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp::cuda::nonfinite {

// Overwrites with NaN the outputs (out [totalQ, H, D] of `dtype`, lse
// float32 [H, totalQ]) that a non-finite q, k or v reaches, by the CPU's rule
// (native/ops/attention/attention_nonfinite.cpp). cu_q / cu_k are on the device.
Status propagate(DType dtype, const void* q, const void* k, const void* v, void* out, float* lse, const int32_t* cu_q,
                 const int32_t* cu_k, int batch, int heads, int kv_heads, int head_dim, int64_t total_q, int64_t total_k,
                 bool causal);

}  // namespace vp::cuda::nonfinite
