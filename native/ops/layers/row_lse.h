// Internal: the one per-row log-sum-exp of the CPU, shared by the cross-entropy
// (layers_cpu.cpp), the token log-prob ops and the fused linear log-prob engine
// (ops/grpo/logprobs_cpu.cpp) and the model's LM head (model/model_kernels_cpu.cpp).
//
// Online over chunks of 2048 elements: a chunk's max (one vector pass), then
// the sum of exp(scale·x − m) over the chunk re-read from L1 (a second pass),
// with the running sum rescaled when the max grows. So a row costs one read
// from memory and about 12 vector operations per element; the per-ISA loops
// are the row routines of layers_kernels.h.
//
// The CUDA counterpart is cuda/row_lse.cuh.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace vp::detail {

// The log-sum-exp state of a row over the elements folded in so far:
// m = max of scale·x (−inf while every element was −inf) and
// s = Σ exp(scale·x − m) (0 then); s is NaN once a NaN or +inf was seen.
struct RowLse {
  float m = -std::numeric_limits<float>::infinity();
  float s = 0.0f;
  // log Σ exp(scale·x): −inf for an empty or all −inf row, NaN after a NaN or +inf.
  float lse() const { return m + std::log(s); }
};

// Folds x[0, n) into st (scale > 0; the same scale for every chunk of a row).
void row_lse_add(RowLse& st, const float* x, int64_t n, float scale);

inline RowLse row_lse(const float* x, int64_t n, float scale) {
  RowLse st;
  row_lse_add(st, x, n, scale);
  return st;
}

// out[j] = c · exp(scale·x[j] − lse) for j < n (out may equal x): c · softmax of
// the row when lse is its log-sum-exp.
void row_scaled_softmax(const float* x, int64_t n, float scale, float lse, float c, float* out);

}  // namespace vp::detail
