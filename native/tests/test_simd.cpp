// The one vectorized exponential (core/simd.h) and the one CPU row
// log-sum-exp (ops/layers/row_lse.h) against float64, on every ISA path this
// CPU has: accuracy over the whole float range, the edge values (NaN, ±inf,
// underflow), and row states folded across chunks and threads of work.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ops/layers/layers_kernels.h"
#include "ops/layers/row_lse.h"
#include "test_util.h"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// log Σ exp(scale·x) in double.
double lse_ref(const std::vector<float>& x, double scale) {
  double m = -INFINITY;
  for (float v : x) m = std::max(m, scale * v);
  if (m == -INFINITY) return m;
  double s = 0.0;
  for (float v : x) s += std::exp(scale * v - m);
  return m + std::log(s);
}

}  // namespace

TEST_CASE("simd: exp and exp2 match float64 on every ISA, with IEEE edge values") {
  vptest::BackendScope scope;
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    CAPTURE(vp::isa_name(isa));
    const auto& k = vp::detail::layer_kernels();
    double worst_e = 0, worst_2 = 0;
    for (double x = -87.0; x <= 88.0; x += 0.0007) {
      const float xf = static_cast<float>(x);
      worst_e = std::max(worst_e, std::abs(k.exp_one(xf) - std::exp(double{xf})) / std::exp(double{xf}));
      const float yf = static_cast<float>(x * 1.4426950408889634);
      worst_2 = std::max(worst_2, std::abs(k.exp2_one(yf) - std::exp2(double{yf})) / std::exp2(double{yf}));
    }
    CHECK(worst_e < 5e-7);
    CHECK(worst_2 < 5e-7);
    for (float x : {0.0f, 1.0f, -1.0f, 10.0f, -126.0f, 127.0f}) CHECK(k.exp2_one(x) == std::exp2(x));
    CHECK(k.exp_one(0.0f) == 1.0f);
    CHECK(k.exp_one(-kInf) == 0.0f);
    CHECK(k.exp2_one(-kInf) == 0.0f);
    CHECK(k.exp_one(-200.0f) == 0.0f);
    CHECK(k.exp2_one(-300.0f) == 0.0f);
    CHECK(k.exp_one(kInf) == kInf);
    CHECK(k.exp2_one(kInf) == kInf);
    CHECK(k.exp_one(100.0f) == kInf);
    CHECK(std::isnan(k.exp_one(kNaN)));
    CHECK(std::isnan(k.exp2_one(kNaN)));
    // gradual underflow or 0 below 2^-126, never negative or NaN
    for (float x : {-87.5f, -87.9f, -88.5f, -103.0f}) {
      const float e = k.exp_one(x);
      CHECK(e >= 0.0f);
      CHECK(e <= std::exp(-87.3f));
    }
  }
}

TEST_CASE("row_lse: one and several chunks, any split, scale, match float64") {
  vptest::for_each_backend([] {
    for (int64_t n : {1, 7, 33, 2047, 2048, 2049, 5000, 9000}) {
      CAPTURE(n);
      std::vector<float> x = vptest::random_floats(n, 100 + n, -30.0f, 30.0f);
      for (float scale : {1.0f, 0.7f, 2.5f}) {
        CAPTURE(scale);
        const double ref = lse_ref(x, scale);
        const vp::detail::RowLse st = vp::detail::row_lse(x.data(), n, scale);
        CHECK(std::abs(st.lse() - ref) <= 2e-6 * std::max(1.0, std::abs(ref)));
        // folded in uneven pieces (the fused engine's vocabulary chunks)
        vp::detail::RowLse parts;
        for (int64_t j = 0; j < n; j += 37 + j % 300)
          vp::detail::row_lse_add(parts, x.data() + j, std::min<int64_t>(37 + j % 300, n - j), scale);
        CHECK(std::abs(parts.lse() - ref) <= 2e-6 * std::max(1.0, std::abs(ref)));
      }
      // c · softmax
      const float ref = static_cast<float>(lse_ref(x, 1.0));
      std::vector<float> out = vptest::poisoned(n);
      vp::detail::row_scaled_softmax(x.data(), n, 1.0f, ref, -0.5f, out.data());
      std::vector<double> want(n);
      for (int64_t j = 0; j < n; ++j) want[j] = -0.5 * std::exp(double{x[j]} - ref);
      CHECK(vptest::rel_error(out, want) < 1e-6);
    }
  });
}

TEST_CASE("row_lse: -inf entries count as 0; all -inf is -inf; NaN or +inf anywhere is NaN") {
  vptest::for_each_backend([] {
    for (int64_t n : {5, 3000}) {
      CAPTURE(n);
      std::vector<float> x = vptest::random_floats(n, 7, -3.0f, 3.0f);
      x[1] = -kInf;
      std::vector<float> y(x);
      y[1] = -1e30f;
      CHECK(std::abs(vp::detail::row_lse(x.data(), n, 1.0f).lse() - lse_ref(y, 1.0)) < 1e-5);
      std::vector<float> all(n, -kInf);
      CHECK(vp::detail::row_lse(all.data(), n, 1.0f).lse() == -kInf);
      for (float bad : {kNaN, kInf}) {
        for (int64_t at : {int64_t{0}, n - 1}) {
          std::vector<float> z(x);
          z[at] = bad;
          CHECK(std::isnan(vp::detail::row_lse(z.data(), n, 1.0f).lse()));
          std::vector<float> w(all);
          w[at] = bad;
          CHECK(std::isnan(vp::detail::row_lse(w.data(), n, 1.0f).lse()));
        }
      }
    }
    CHECK(vp::detail::row_lse(nullptr, 0, 1.0f).lse() == -kInf);
  });
}
