// Portable building blocks of the log-prob kernels (see logprobs_kernels.h),
// and the ISA dispatch.
#include <cmath>
#include <limits>

#include "logprobs_kernels.h"
#include "vp/cpu_features.h"

namespace vp::detail {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;

void gemm(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
          int64_t ldc, float alpha, float beta, int mr, int nr) {
  float acc[MR][NR] = {};
  if (nr == NR) {
    for (int64_t k = 0; k < kc; ++k, a += lda, b += ldb)
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  } else {
    for (int64_t k = 0; k < kc; ++k, a += lda, b += ldb)
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < nr; ++j) acc[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
  }
}

void gemm_at(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
             int64_t ldc, float alpha, float beta, int mr, int nr) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, b += ldb)
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i * lda + k];
      for (int j = 0; j < nr; ++j) acc[i][j] += ai * b[j];
    }
  for (int i = 0; i < mr; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < nr; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
  }
}

float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

float row_sum_exp(const float* x, int64_t n, float scale, float m) {
  float s = 0.0f;
  for (int64_t j = 0; j < n; ++j) s += std::exp(x[j] * scale - m);
  return s;
}

void row_neg_softmax(const float* x, int64_t n, float scale, float lse, float g, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = -g * std::exp(x[j] * scale - lse);
}

}  // namespace

LpKernels lp_kernels_generic() { return {gemm, gemm_at, MR, NR, row_max, row_sum_exp, row_neg_softmax}; }

const LpKernels& lp_kernels() {
  static const LpKernels generic = lp_kernels_generic();
  static const LpKernels avx2 = detect_isa() >= Isa::kAvx2 ? lp_kernels_avx2() : generic;
  static const LpKernels avx512 = detect_isa() >= Isa::kAvx512 ? lp_kernels_avx512() : avx2;
  switch (active_isa()) {
    case Isa::kAvx512: return avx512;
    case Isa::kAvx2: return avx2;
    default: return generic;
  }
}

}  // namespace vp::detail
