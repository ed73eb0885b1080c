// vp::gemm_f32_bf16 against a float64 reference of the bf16-rounded inputs:
// C = bf16(A) · op(B) (+ bias), both layouts of B, odd shapes, C poisoned with NaN
// first, on the AVX512-BF16 path where the CPU has it and on the widened float32
// path on every CPU; and the argument checks.
#include <doctest/doctest.h>

#include <cstring>
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

TEST_CASE("round_to_bf16 gives vp::float_to_bf16's bits for every kind of value, every length and thread count") {
  vptest::ThreadScope ts;
  // Random bit patterns (every exponent: subnormals, infinities, NaNs) and the edge cases:
  // ties to even both ways, the largest finite value rounding to infinity, negative zero.
  std::vector<uint32_t> bits;
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 100000; ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    bits.push_back(static_cast<uint32_t>(s >> 11));
  }
  for (uint32_t b : {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x3f808000u, 0x3f818000u, 0x3f80ffffu,
                     0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu,
                     0x00008000u, 0x00018000u})
    bits.push_back(b);
  std::vector<float> x(bits.size());
  std::memcpy(x.data(), bits.data(), bits.size() * 4);
  for (int threads : {1, 2}) {
    vp::set_num_threads(threads);
    for (size_t n : {bits.size(), size_t{17}, size_t{15}, size_t{1}}) {
      CAPTURE(threads);
      CAPTURE(n);
      std::vector<uint16_t> got(n + 1, 0xABCD);
      vp::round_to_bf16(x.data() + (bits.size() - n), static_cast<int64_t>(n), got.data());
      int64_t wrong = 0;
      for (size_t i = 0; i < n; ++i) wrong += got[i] != vp::float_to_bf16(x[bits.size() - n + i]);
      CHECK(wrong == 0);
      CHECK(got[n] == 0xABCD);  // nothing written past the end
    }
  }
}
