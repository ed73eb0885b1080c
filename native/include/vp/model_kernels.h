// vp/model_kernels.h — the small row and vector kernels the built-in VideoLM
// needs besides vp/layers.h, vp/attention.h and vp/gemm.h (float32).
//
// Each exists twice with one signature (declared once, documented, in
// vp/model_kernels_decl.inc, which this header includes in both namespaces):
// vp:: on the CPU (host pointers,
// threaded through vp::parallel_for) and vp::cuda:: on the GPU (DEVICE pointers
// for every array, index arrays included; a CPU-only build's stubs return
// Status::Unavailable). The model computes and checks every index on the host
// before it uploads it, so these kernels do not re-validate indices: they are
// internal building blocks, not user-facing ops.
//
// Conventions as in vp/layers.h: rows are tokens, `d` is the row width,
// row-major. Every reduction runs in a fixed order (a row's contributions are
// added in increasing index order), never with float atomics, so results are
// deterministic on both backends.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

#include "vp/model_kernels_decl.inc"

namespace cuda {
#include "vp/model_kernels_decl.inc"

// The CUDA counterparts of vp/layers.h helpers the model uses.
Status add_inplace(float* y, const float* x, int64_t n);
Status fill_zero(float* x, int64_t n);
Status patchify_u8(const uint8_t* frames, int64_t num_frames, int64_t height, int64_t width,
                   int64_t patch, float* patches);
Status patchify_f32(const float* frames, int64_t num_frames, int64_t height, int64_t width,
                    int64_t patch, float* patches);
}  // namespace cuda

}  // namespace vp
