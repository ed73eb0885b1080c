// vp/infonce.h — fused InfoNCE contrastive loss, forward and backward.
//
//   s(i, j) = <q̂_i, k̂_j> / τ          (q̂, k̂ L2-normalized rows when normalize, else q, k)
//   lse_i   = log Σ_j exp s(i, j)
//   loss    = mean_i ( lse_i − s(i, positive_i) )
//
// queries [N, D], keys [M, D] (any number of extra negatives appended to the keys),
// positive [N] int32 (host memory, on either device), lse [N] float32 on the
// device of the inputs. The backward gives dQueries, dKeys (the inputs' shape
// and dtype) and ∂loss/∂log τ, all scaled by grad_loss.
//
// Never allocates N × M: the CPU path works on blocks of query rows whose scores
// stay in cache (memory O((N + M)·D + block·M)); the CUDA path streams key tiles
// past query tiles held on chip, flash-attention style. info_nce_with_grad gives
// the forward and the backward in one pass over the query blocks (three matrix
// products, where info_nce + info_nce_backward need four).
#pragma once

#include <cstdint>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp {

struct InfoNceOptions {
  float temperature = 0.07f;  // τ > 0, finite
  bool normalize = true;      // L2-normalize query and key rows (zero-norm rows are an error)
  float grad_loss = 1.0f;     // upstream gradient ∂L/∂loss (backward only)
};

// Forward: writes lse [N] and *loss.
Status info_nce(const TensorView& queries, const TensorView& keys, const TensorView& positive,
                const InfoNceOptions& opts, const TensorView& lse, double* loss);

// Backward from a forward's lse: writes d_queries [N, D], d_keys [M, D] and
// *d_log_temperature (∂loss/∂log τ, times grad_loss).
Status info_nce_backward(const TensorView& queries, const TensorView& keys, const TensorView& lse,
                         const TensorView& positive, const InfoNceOptions& opts,
                         const TensorView& d_queries, const TensorView& d_keys,
                         double* d_log_temperature);

// Forward and backward in one pass: the same numbers as the two calls above.
Status info_nce_with_grad(const TensorView& queries, const TensorView& keys,
                          const TensorView& positive, const InfoNceOptions& opts,
                          const TensorView& lse, const TensorView& d_queries,
                          const TensorView& d_keys, double* loss, double* d_log_temperature);

// ---- backends (called by the functions above after validation) -------------

// What a backend is asked to do. Shapes, dtypes, devices and positive indices
// have been checked; the backend checks row norms (it reads the rows anyway).
struct InfoNceArgs {
  const char* fn = "infoNce";  // the public name, for error messages
  TensorView queries, keys;    // [N, D], [M, D]
  const int32_t* positive = nullptr;  // host [N], each in [0, M)
  InfoNceOptions opts;
  bool forward = true;   // compute lse (written) and the loss; false: read lse
  bool backward = false; // compute d_queries, d_keys, d_log_temperature
  TensorView lse;        // [N] float32
  TensorView d_queries, d_keys;
};

struct InfoNceResult {
  double loss = 0.0;               // when forward
  double d_log_temperature = 0.0;  // when backward
};

Status info_nce_cpu(const InfoNceArgs& args, InfoNceResult* result);

namespace cuda {
// Defined in cuda/infonce.cu, or in native/ops/infonce/infonce_no_cuda.cpp
// when the binary is built without CUDA.
Status info_nce(const InfoNceArgs& args, InfoNceResult* result);
}  // namespace cuda

}  // namespace vp
