// vp::gemm_f32_bf16 against a float64 reference of the bf16-rounded inputs:
// C = bf16(A) · op(B) (+ bias), both layouts of B, odd shapes, C poisoned with NaN
// first, on the AVX512-BF16 path where the CPU has it and on the widened float32
// path on every CPU; and the argument checks.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "test_util.h"
#include "vp/cpu_features.h"
#include "vp/gemm_bf16.h"
#include "vp/gemm_f32_bf16.h"
#include "vp/thread_pool.h"

namespace {

double run_case(bool tb, int64_t m, int64_t n, int64_t k, bool bias, uint64_t seed) {
  const std::vector<float> a = vptest::random_floats(m * k, seed);
  const std::vector<float> bf = vptest::random_floats(k * n, seed + 1);
  const std::vector<float> bv = vptest::random_floats(n, seed + 2);
  std::vector<uint16_t> b(k * n);
  for (int64_t i = 0; i < k * n; ++i) b[i] = vp::float_to_bf16(bf[i]);
  std::vector<double> ref(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = bias ? bv[j] : 0.0;
      for (int64_t p = 0; p < k; ++p)
        acc += static_cast<double>(vp::bf16_to_float(vp::float_to_bf16(a[i * k + p]))) *
               vp::bf16_to_float(tb ? b[j * k + p] : b[p * n + j]);
      ref[i * n + j] = acc;
    }
  std::vector<float> c = vptest::poisoned(m * n);
  vp::GemmF32Bf16Args g;
  g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.a = a.data(), g.b = b.data(), g.bias = bias ? bv.data() : nullptr, g.c = c.data();
  REQUIRE(vp::gemm_f32_bf16(g).ok());
  return vptest::rel_error(c, ref);
}

void check_shapes() {
  const int64_t sizes[][3] = {{1, 1, 1}, {3, 7, 5}, {13, 17, 19}, {12, 32, 64}, {31, 33, 65}, {70, 96, 1100}};
  uint64_t seed = 11;
  for (auto& s : sizes)
    for (int t = 0; t < 4; ++t) {
      const bool tb = t & 1, bias = t & 2;
      CAPTURE(std::to_string(s[0]) + " " + std::to_string(s[1]) + " " + std::to_string(s[2]) + " tb " + std::to_string(tb) + " bias " + std::to_string(bias));
      // Same bf16 inputs as the reference: only the order of float32 sums differs.
      CHECK(run_case(tb, s[0], s[1], s[2], bias, seed++) <= 1e-5);
    }
}

}  // namespace

TEST_CASE("gemm_f32_bf16 AVX512-BF16 path matches a float64 reference (skipped without avx512_bf16)") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  if (!vp::has_avx512_bf16()) {
    MESSAGE("skipped: this CPU has no AVX512-BF16 (or VP_ISA turned AVX-512 off)");
    return;
  }
  vp::set_num_threads(2);
  check_shapes();
}

TEST_CASE("gemm_f32_bf16 widened float32 path matches a float64 reference on every CPU") {
  vptest::BackendScope scope;
  vptest::ThreadScope threads;
  REQUIRE(vp::set_active_isa(vp::detect_isa() >= vp::Isa::kAvx2 ? vp::Isa::kAvx2 : vp::Isa::kGeneric));
  CHECK_FALSE(vp::has_avx512_bf16());
  vp::set_num_threads(2);
  check_shapes();
}

TEST_CASE("gemm_f32_bf16 rounds A to bfloat16 (not truncates) and checks its arguments") {
  // 1 + 2^-8 + 2^-20 rounds up to 1 + 2^-7 in bf16; truncation would give 1.
  const float a = 1.0f + 0x1p-8f + 0x1p-20f;
  const uint16_t one = vp::float_to_bf16(1.0f);
  float c = 0.0f;
  vp::GemmF32Bf16Args g;
  g.m = 1, g.n = 1, g.k = 1, g.a = &a, g.b = &one, g.c = &c;
  REQUIRE(vp::gemm_f32_bf16(g).ok());
  CHECK(c == 1.0f + 0x1p-7f);
  g.c = nullptr;
  CHECK_FALSE(vp::gemm_f32_bf16(g).ok());
  g.c = &c, g.b = nullptr;
  CHECK_FALSE(vp::gemm_f32_bf16(g).ok());
  g.b = &one, g.m = -1;
  CHECK_FALSE(vp::gemm_f32_bf16(g).ok());
  // K = 0: C is the bias alone.
  const float bias = 2.5f;
  g.m = 1, g.k = 0, g.bias = &bias, c = -1.0f;
  REQUIRE(vp::gemm_f32_bf16(g).ok());
  CHECK(c == 2.5f);
}
