// Internal: the row passes of the CPU InfoNCE, one set per ISA.
//
// The driver (infonce.cpp) computes a block of raw dot products q_i·k_j with
// SGEMM; these functions turn one row of that block, in place, into scores,
// softmax statistics and the gradient of the scores. Each ISA file compiles
// infonce_rows_impl.h with its own simd::Vec (core/simd.h).
#pragma once

#include <cstdint>

namespace vp::detail {

struct InfoNceRowKernels {
  // row[j] = row[j] · a · rk[j] (rk null: · a); returns max_j row[j].
  float (*scale_max)(float* row, int64_t m, float a, const float* rk);
  // e_j = exp(row[j] − shift) for j != skip, e_skip = 0; returns Σ e_j and sets
  // *dot = Σ e_j · (row[j] − center). store: row[j] = e_j.
  double (*exp_sum)(float* row, int64_t m, float shift, float center, int64_t skip, bool store, double* dot);
  // row[j] = row[j] · c · rk[j] (rk null: · c).
  void (*scale)(float* row, int64_t m, float c, const float* rk);
};

// Defined in infonce_rows_<isa>.cpp, each compiled for its own ISA.
InfoNceRowKernels infonce_rows_generic();
InfoNceRowKernels infonce_rows_avx2();
InfoNceRowKernels infonce_rows_avx512();

}  // namespace vp::detail
