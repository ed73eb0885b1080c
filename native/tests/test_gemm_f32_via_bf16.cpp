// vp::gemm_f32_via_bf16 (mixed precision: float32 operands rounded to bfloat16,
// float32 accumulation) and gemm_bf16's beta, against a float64 reference of the
// bf16-rounded operands: every transpose, row strides wider than the matrices,
// beta 0 (C poisoned with NaN, never read), 1 (accumulate) and 0.5, odd K and K
// past one k block, 1 and 2 threads; the AVX512-BF16 path where the CPU has it and
// the widened float32 path on every CPU; alpha other than 1 refused.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/cpu_features.h"
#include "vp/gemm.h"
#include "vp/gemm_bf16.h"
#include "vp/thread_pool.h"

namespace {

double bf(float x) { return vp::bf16_to_float(vp::float_to_bf16(x)); }

// Relative error of C = bf16(op(A))·bf16(op(B)) + beta·C0 against float64.
double run_mixed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float beta, uint64_t seed) {
  const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  const int64_t lda = ac + 3, ldb = bc + 5, ldc = n + 2;  // strides wider than the rows
  const std::vector<float> a = vptest::random_floats(ar * lda, seed), b = vptest::random_floats(br * ldb, seed + 1);
  std::vector<float> c = beta == 0.0f ? vptest::poisoned(m * ldc) : vptest::random_floats(m * ldc, seed + 2);
  std::vector<double> ref(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; ++p) acc += bf(ta ? a[p * lda + i] : a[i * lda + p]) * bf(tb ? b[j * ldb + p] : b[p * ldb + j]);
      ref[i * n + j] = acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c[i * ldc + j]);
    }
  vp::GemmArgs g;
  g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k;
  g.a = a.data(), g.lda = lda, g.b = b.data(), g.ldb = ldb, g.c = c.data(), g.ldc = ldc, g.beta = beta;
  REQUIRE(vp::gemm_f32_via_bf16(g).ok());
  std::vector<float> out(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) out[i * n + j] = c[i * ldc + j];
  return vptest::rel_error(out, ref);
}

void check_mixed() {
  const int64_t sizes[][3] = {{1, 1, 1}, {5, 7, 3}, {13, 17, 19}, {31, 33, 65}, {97, 131, 7}, {40, 70, 2049}};
  uint64_t seed = 100;
  for (int threads = 1; threads <= 2; ++threads) {
    vp::set_num_threads(threads);
    for (auto& s : sizes)
      for (int t = 0; t < 4; ++t)
        for (float beta : {0.0f, 1.0f, 0.5f}) {
          const bool ta = t & 1, tb = t & 2;
          CAPTURE(threads);
          CAPTURE(s[0]);
          CAPTURE(s[1]);
          CAPTURE(s[2]);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(beta);
          CHECK(run_mixed(ta, tb, s[0], s[1], s[2], beta, seed++) <= 1e-5);
        }
  }
}

}  // namespace

TEST_CASE("gemm_f32_via_bf16 matches float64 over the bf16-rounded operands (AVX512-BF16 path; skipped without it)") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  if (!vp::has_avx512_bf16()) {
    MESSAGE("skipped: this CPU has no AVX512-BF16 (or VP_ISA turned AVX-512 off)");
    return;
  }
  check_mixed();
}

TEST_CASE("gemm_f32_via_bf16 matches float64 over the bf16-rounded operands (widened float32 path, every CPU)") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  REQUIRE(vp::set_active_isa(vp::detect_isa() >= vp::Isa::kAvx2 ? vp::Isa::kAvx2 : vp::Isa::kGeneric));
  CHECK_FALSE(vp::has_avx512_bf16());
  check_mixed();
}

TEST_CASE("gemm_f32_via_bf16 refuses alpha != 1 and a short stride; K = 0 gives beta·C") {
  float a[4] = {1, 2, 3, 4}, c[4] = {1, 1, 1, 1};
  vp::GemmArgs g;
  g.m = 2, g.n = 2, g.k = 2, g.a = a, g.lda = 2, g.b = a, g.ldb = 2, g.c = c, g.ldc = 2, g.alpha = 2.0f;
  vp::Status s = vp::gemm_f32_via_bf16(g);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("alpha") != std::string::npos);
  g.alpha = 1.0f, g.lda = 1;
  s = vp::gemm_f32_via_bf16(g);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("lda") != std::string::npos);
  g.lda = 2, g.k = 0, g.beta = 0.5f;
  REQUIRE(vp::gemm_f32_via_bf16(g).ok());
  for (float v : c) CHECK(v == 0.5f);
}

TEST_CASE("gemm_bf16 with a bfloat16 C refuses beta != 0") {
  uint16_t x[4] = {0, 0, 0, 0}, c16[4];
  vp::GemmBf16Args g;
  g.m = 2, g.n = 2, g.k = 2, g.a = x, g.lda = 2, g.b = x, g.ldb = 2, g.c16 = c16, g.ldc = 2, g.beta = 1.0f;
  const vp::Status s = vp::gemm_bf16(g);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("beta") != std::string::npos);
}
