// vp::gemm_bf16 against a float64 reference of the same bfloat16 inputs: odd shapes
// (odd K, K past one 2048 block, ragged 12 × 32 tiles), every transpose, float32 and
// bfloat16 outputs (poisoned with NaN first), 1 and 2 threads; the AVX512-BF16 path
// where the CPU has it (skipped, saying so, elsewhere) and the widened float32 path
// on every CPU; the bf16 rounding; and the argument checks.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/cpu_features.h"
#include "vp/gemm_bf16.h"
#include "vp/thread_pool.h"

namespace {

std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
  const std::vector<float> f = vptest::random_floats(n, seed);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = vp::float_to_bf16(f[i]);
  return h;
}

// Relative error of C (float32, or bf16 when `bf16_out`) against float64 over the bf16 inputs.
double run_case(bool ta, bool tb, int64_t m, int64_t n, int64_t k, bool bf16_out, int threads, uint64_t seed) {
  const auto a = random_bf16(m * k, seed), b = random_bf16(k * n, seed + 1);
  std::vector<double> ref(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; ++p)
        acc += static_cast<double>(vp::bf16_to_float(ta ? a[p * m + i] : a[i * k + p])) *
               vp::bf16_to_float(tb ? b[j * k + p] : b[p * n + j]);
      ref[i * n + j] = acc;
    }
  vp::GemmBf16Args g;
  g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k;
  g.a = a.data(), g.lda = ta ? m : k, g.b = b.data(), g.ldb = tb ? k : n, g.ldc = n, g.threads = threads;
  std::vector<float> c = vptest::poisoned(m * n);
  std::vector<uint16_t> c16(m * n, 0x7fc1);  // NaN bits
  if (bf16_out) g.c16 = c16.data();
  else g.c = c.data();
  REQUIRE(vp::gemm_bf16(g).ok());
  if (bf16_out)
    for (int64_t i = 0; i < m * n; ++i) c[i] = vp::bf16_to_float(c16[i]);
  return vptest::rel_error(c, ref);
}

void check_shapes(int threads_max) {
  const int64_t sizes[][3] = {{1, 1, 1},    {1, 7, 3},     {5, 1, 9},      {13, 17, 19}, {12, 32, 8},
                              {31, 33, 65}, {97, 131, 7},  {129, 100, 257}, {40, 70, 1100}, {200, 37, 2049}};
  uint64_t seed = 1;
  for (int threads = 1; threads <= threads_max; ++threads)
    for (auto& s : sizes)
      for (int t = 0; t < 8; ++t) {
        const bool ta = t & 1, tb = t & 2, bf16_out = t & 4;
        const std::string where = "threads " + std::to_string(threads) + " m n k " + std::to_string(s[0]) + " " +
                                  std::to_string(s[1]) + " " + std::to_string(s[2]) + " ta " + std::to_string(ta) +
                                  " tb " + std::to_string(tb) + " bf16 C " + std::to_string(bf16_out);
        CAPTURE(where);
        // float32 C: only the order of float32 sums differs from the reference;
        // bfloat16 C: one rounding to 8 bits of mantissa (relative 2^-9) on top.
        CHECK(run_case(ta, tb, s[0], s[1], s[2], bf16_out, threads, seed++) <= (bf16_out ? 4e-3 : 1e-5));
      }
}

}  // namespace

TEST_CASE("bf16 rounding: nearest even, NaN stays NaN, exact values round-trip") {
  CHECK(vp::float_to_bf16(1.0f) == 0x3f80);
  CHECK(vp::bf16_to_float(vp::float_to_bf16(-2.5f)) == -2.5f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); just above rounds up.
  CHECK(vp::float_to_bf16(1.0f + 0x1p-8f) == 0x3f80);
  CHECK(vp::float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);
  CHECK(std::isnan(vp::bf16_to_float(vp::float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(vp::bf16_to_float(vp::float_to_bf16(std::numeric_limits<float>::infinity()))));
}

TEST_CASE("gemm_bf16 AVX512-BF16 path matches a float64 reference (skipped without avx512_bf16)") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  if (!vp::has_avx512_bf16()) {
    MESSAGE("skipped: this CPU has no AVX512-BF16 (or VP_ISA turned AVX-512 off)");
    return;
  }
  CHECK(std::string(vp::gemm_bf16_path()) == "avx512_bf16");
  vp::set_num_threads(2);
  check_shapes(2);
}

TEST_CASE("gemm_bf16 widened float32 path matches a float64 reference on every CPU") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  REQUIRE(vp::set_active_isa(vp::detect_isa() >= vp::Isa::kAvx2 ? vp::Isa::kAvx2 : vp::Isa::kGeneric));
  CHECK_FALSE(vp::has_avx512_bf16());
  CHECK(std::string(vp::gemm_bf16_path()) == "float32 (widened)");
  vp::set_num_threads(2);
  check_shapes(2);
}

TEST_CASE("gemm_bf16 is bitwise identical with 1 and 2 threads") {
  vptest::ThreadScope threads;
  vp::set_num_threads(2);
  const int64_t m = 150, n = 170, k = 1300;
  const auto a = random_bf16(m * k, 7), b = random_bf16(k * n, 8);
  std::vector<float> c1(m * n), c2(m * n);
  vp::GemmBf16Args g;
  g.m = m, g.n = n, g.k = k, g.a = a.data(), g.lda = k, g.b = b.data(), g.ldb = n, g.ldc = n;
  g.c = c1.data(), g.threads = 1;
  REQUIRE(vp::gemm_bf16(g).ok());
  g.c = c2.data(), g.threads = 0;
  REQUIRE(vp::gemm_bf16(g).ok());
  CHECK(c1 == c2);
}

TEST_CASE("gemm_bf16 checks its arguments and handles K = 0") {
  uint16_t x = 0;
  float c[4];
  vp::GemmBf16Args g;
  g.m = 2, g.n = 2, g.k = 2, g.a = &x, g.b = &x, g.lda = 1, g.ldb = 2, g.ldc = 2, g.c = c;
  vp::Status s = vp::gemm_bf16(g);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("lda") != std::string::npos);
  uint16_t c16[4];
  g.lda = 2, g.c16 = c16;
  s = vp::gemm_bf16(g);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("exactly one") != std::string::npos);
  g.c16 = nullptr, g.k = 0;
  for (float& v : c) v = std::numeric_limits<float>::quiet_NaN();
  REQUIRE(vp::gemm_bf16(g).ok());
  for (float v : c) CHECK(v == 0.0f);
}
