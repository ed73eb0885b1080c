// vp/norm_act.h — LayerNorm (with bias) and GELU, the layers of ViT-style
// vision towers (SigLIP, CLIP), forward and backward, CPU and CUDA, float32.
//
// Conventions as in vp/layers.h: rows are tokens, dim the feature width;
// activation gradients are overwritten, parameter gradients accumulated when
// `accumulate` (else overwritten); row reductions (dgamma, dbeta) run over
// fixed row blocks added in block order, so results are bitwise identical for
// every thread count. Statistics are accumulated in double.
#pragma once

#include <cstdint>

#include "vp/status.h"

namespace vp {

// ---- LayerNorm ------------------------------------------------------------
// y[r, :] = (x[r, :] - mean[r]) * rstd[r] * gamma[:] + beta[:],
// mean over the row, rstd = 1 / sqrt(biased variance + eps) (torch.nn.LayerNorm).
// beta may be null (no bias). mean and rstd (may be null) receive the row
// statistics that the backward pass reuses.
Status layernorm_forward(const float* x, const float* gamma, const float* beta, int64_t rows,
                         int64_t dim, float eps, float* y, float* mean, float* rstd);
// dx (overwritten); dgamma and dbeta (each may be null) accumulated when
// `accumulate`. mean / rstd from the forward pass (both null: recomputed from x, eps).
Status layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                          const float* rstd, int64_t rows, int64_t dim, float eps, float* dx,
                          float* dgamma, float* dbeta, bool accumulate);

// ---- GELU -------------------------------------------------------------------
// kErf:   0.5·x·(1 + erf(x/√2))                          (transformers "gelu")
// kTanh:  0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))     ("gelu_pytorch_tanh", "gelu_new")
// kQuick: x·sigmoid(1.702·x)                              ("quick_gelu", CLIP)
enum class GeluKind : int32_t { kErf = 0, kTanh = 1, kQuick = 2 };

// y[i] = gelu(x[i]), i < n. y may equal x (in place).
Status gelu_forward(const float* x, int64_t n, GeluKind kind, float* y);
// dx[i] = dy[i] · gelu'(x[i]). dx may equal dy.
Status gelu_backward(const float* dy, const float* x, int64_t n, GeluKind kind, float* dx);

// ---- CUDA versions (cuda/norm_act.cu): the same semantics on DEVICE pointers
// (mean, rstd, dgamma, dbeta included). Row statistics in double; dgamma/dbeta
// are column sums over the rows in increasing order, one thread per column
// (deterministic). A CPU-only build's stand-ins return Status::Unavailable.
namespace cuda {
Status layernorm_forward(const float* x, const float* gamma, const float* beta, int64_t rows,
                         int64_t dim, float eps, float* y, float* mean, float* rstd);
Status layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                          const float* rstd, int64_t rows, int64_t dim, float eps, float* dx,
                          float* dgamma, float* dbeta, bool accumulate);
Status gelu_forward(const float* x, int64_t n, GeluKind kind, float* y);
Status gelu_backward(const float* dy, const float* x, int64_t n, GeluKind kind, float* dx);
}  // namespace cuda

}  // namespace vp
