// LayerNorm and GELU (vp/norm_act.h) against float64 references, backward
// passes against central finite differences of the float64 forward. Outputs are
// NaN-poisoned first; 1 and 2 threads; dgamma/dbeta bitwise equal across thread counts.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "test_util.h"
#include "vp/norm_act.h"
#include "vp/thread_pool.h"

namespace {

using dvec = std::vector<double>;
using fvec = std::vector<float>;

dvec to_d(const fvec& v) { return dvec(v.begin(), v.end()); }

using vptest::fd_grad;

dvec layernorm_ref(const dvec& x, const dvec& g, const dvec& b, int64_t rows, int64_t d, double eps) {
  dvec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0;
    for (int64_t j = 0; j < d; ++j) m += x[r * d + j];
    m /= d;
    double v = 0;
    for (int64_t j = 0; j < d; ++j) v += (x[r * d + j] - m) * (x[r * d + j] - m);
    const double rs = 1.0 / std::sqrt(v / d + eps);
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = (x[r * d + j] - m) * rs * g[j] + (b.empty() ? 0.0 : b[j]);
  }
  return y;
}

double gelu_ref(double x, vp::GeluKind k) {
  if (k == vp::GeluKind::kErf) return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  if (k == vp::GeluKind::kTanh) return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  return x / (1.0 + std::exp(-1.702 * x));
}

}  // namespace

TEST_CASE("norm_act: layernorm forward/backward match float64 and finite differences") {
  vptest::ThreadScope ts;
  for (int threads : {1, 2}) {
    vp::set_num_threads(threads);
    for (auto [rows, d] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {130, 48}, {5, 257}}) {
      CAPTURE(threads);
      CAPTURE(rows);
      CAPTURE(d);
      const double eps = 1e-6;
      fvec x = vptest::random_floats(rows * d, 11 + d, -2.0f, 3.0f);
      fvec g = vptest::random_floats(d, 12 + d, 0.5f, 1.5f);
      fvec b = vptest::random_floats(d, 13 + d);
      fvec y = vptest::poisoned(x.size()), mean = vptest::poisoned(rows), rstd = vptest::poisoned(rows);
      REQUIRE(vp::layernorm_forward(x.data(), g.data(), b.data(), rows, d, eps, y.data(), mean.data(), rstd.data()).ok());
      CHECK(vptest::rel_error(y, layernorm_ref(to_d(x), to_d(g), to_d(b), rows, d, eps)) < 1e-6);
      fvec y2 = vptest::poisoned(x.size());
      REQUIRE(vp::layernorm_forward(x.data(), g.data(), nullptr, rows, d, eps, y2.data(), nullptr, nullptr).ok());
      CHECK(vptest::rel_error(y2, layernorm_ref(to_d(x), to_d(g), {}, rows, d, eps)) < 1e-6);
      if (d == 1) continue;  // the derivative of a 1-wide LayerNorm is 0: nothing relative to check
      fvec dy = vptest::random_floats(x.size(), 14 + d);
      fvec dx = vptest::poisoned(x.size()), dg = vptest::poisoned(d), db = vptest::poisoned(d);
      REQUIRE(vp::layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), rows, d, eps, dx.data(),
                                     dg.data(), db.data(), false).ok());
      const dvec xd = to_d(x), gd = to_d(g), bd = to_d(b), w = to_d(dy);
      CHECK(vptest::rel_error(dx, fd_grad([&](const dvec& v) { return layernorm_ref(v, gd, bd, rows, d, eps); }, xd, w)) < 1e-4);
      CHECK(vptest::rel_error(dg, fd_grad([&](const dvec& v) { return layernorm_ref(xd, v, bd, rows, d, eps); }, gd, w)) < 1e-4);
      CHECK(vptest::rel_error(db, fd_grad([&](const dvec& v) { return layernorm_ref(xd, gd, v, rows, d, eps); }, bd, w)) < 1e-4);
      // Recomputed statistics give the same dx; accumulate adds.
      fvec dx2 = vptest::poisoned(x.size()), dg2 = dg, db2 = db;
      REQUIRE(vp::layernorm_backward(dy.data(), x.data(), g.data(), nullptr, nullptr, rows, d, eps, dx2.data(), dg2.data(),
                                     db2.data(), true).ok());
      CHECK(vptest::rel_error(dx2, dx) < 1e-6);
      fvec twice(dg.size());
      for (size_t i = 0; i < dg.size(); ++i) twice[i] = 2 * dg[i];
      CHECK(vptest::rel_error(dg2, twice) < 1e-6);
    }
  }
}

TEST_CASE("norm_act: layernorm dgamma is bitwise identical for 1 and 2 threads") {
  vptest::ThreadScope ts;
  const int64_t rows = 300, d = 40;
  fvec x = vptest::random_floats(rows * d, 1), g = vptest::random_floats(d, 2), dy = vptest::random_floats(rows * d, 3);
  std::vector<fvec> out;
  for (int t : {1, 2}) {
    vp::set_num_threads(t);
    fvec dx(x.size()), dg(d), db(d);
    REQUIRE(vp::layernorm_backward(dy.data(), x.data(), g.data(), nullptr, nullptr, rows, d, 1e-5f, dx.data(), dg.data(), db.data(), false).ok());
    dg.insert(dg.end(), db.begin(), db.end());
    out.push_back(dg);
  }
  CHECK(out[0] == out[1]);
}

TEST_CASE("norm_act: gelu (erf, tanh, quick) forward/backward match float64") {
  vptest::ThreadScope ts;
  for (int threads : {1, 2}) {
    vp::set_num_threads(threads);
    for (vp::GeluKind k : {vp::GeluKind::kErf, vp::GeluKind::kTanh, vp::GeluKind::kQuick}) {
      CAPTURE(static_cast<int>(k));
      const int64_t n = 20011;
      fvec x = vptest::random_floats(n, 21 + static_cast<int>(k), -6.0f, 6.0f);
      fvec y = vptest::poisoned(n);
      REQUIRE(vp::gelu_forward(x.data(), n, k, y.data()).ok());
      dvec ref(n);
      for (int64_t i = 0; i < n; ++i) ref[i] = gelu_ref(x[i], k);
      CHECK(vptest::rel_error(y, ref) < 1e-6);
      fvec dy = vptest::random_floats(n, 31), dx = vptest::poisoned(n);
      REQUIRE(vp::gelu_backward(dy.data(), x.data(), n, k, dx.data()).ok());
      dvec gref(n);
      for (int64_t i = 0; i < n; ++i) {
        const double h = 1e-6;
        gref[i] = dy[i] * (gelu_ref(x[i] + h, k) - gelu_ref(x[i] - h, k)) / (2 * h);
      }
      CHECK(vptest::rel_error(dx, gref) < 1e-5);
    }
  }
}

TEST_CASE("norm_act: bad arguments are refused with a message") {
  float a = 1.0f;
  CHECK(!vp::layernorm_forward(&a, &a, nullptr, 1, 0, 1e-5f, &a, nullptr, nullptr).ok());
  CHECK(!vp::layernorm_forward(&a, &a, nullptr, 1, 1, -1.0f, &a, nullptr, nullptr).ok());
  CHECK(!vp::layernorm_forward(nullptr, &a, nullptr, 1, 1, 1e-5f, &a, nullptr, nullptr).ok());
  CHECK(!vp::layernorm_backward(&a, &a, &a, &a, nullptr, 1, 1, 1e-5f, &a, nullptr, nullptr, false).ok());
  CHECK(!vp::gelu_forward(&a, 1, static_cast<vp::GeluKind>(7), &a).ok());
  CHECK(!vp::gelu_forward(&a, -1, vp::GeluKind::kErf, &a).ok());
  CHECK(vp::gelu_backward(&a, nullptr, 1, vp::GeluKind::kErf, &a).message().find("x is null") != std::string::npos);
}
