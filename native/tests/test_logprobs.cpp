// Token log-probs, plain and through the output projection, forward and both
// backwards, against float64 references (whose gradients are themselves
// checked by central finite differences), on odd shapes, every ISA path and
// 1 and 2 threads; bad inputs rejected; the workspace bound.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/logprobs.h"
#include "vp/thread_pool.h"

namespace {

using vp::DType;
using vp::TensorView;

std::vector<int32_t> random_targets(int64_t n, int64_t v, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(v));
  return t;
}

// logits[i, :] in double: hidden · weightᵀ / T (or the given logits / T).
std::vector<double> ref_logits(const std::vector<float>& h, const std::vector<float>& w, int64_t n,
                               int64_t d, int64_t v, double inv_t) {
  std::vector<double> z(n * v);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < v; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < d; ++k) s += static_cast<double>(h[i * d + k]) * w[j * d + k];
      z[i * v + j] = s * inv_t;
    }
  return z;
}

std::vector<double> ref_lse(const std::vector<double>& z, int64_t n, int64_t v) {
  std::vector<double> l(n);
  for (int64_t i = 0; i < n; ++i) {
    double m = -INFINITY;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, z[i * v + j]);
    double s = 0.0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(z[i * v + j] - m);
    l[i] = m + std::log(s);
  }
  return l;
}

std::vector<double> ref_logprobs(const std::vector<double>& z, const std::vector<int32_t>& t, int64_t n,
                                 int64_t v) {
  auto l = ref_lse(z, n, v);
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = z[i * v + t[i]] - l[i];
  return out;
}

// dL/dz (of the scaled logits) for L = Σ dlogp_i · logp_i.
std::vector<double> ref_dz(const std::vector<double>& z, const std::vector<int32_t>& t,
                           const std::vector<float>& dl, int64_t n, int64_t v) {
  auto l = ref_lse(z, n, v);
  std::vector<double> dz(n * v);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < v; ++j)
      dz[i * v + j] = dl[i] * ((j == t[i] ? 1.0 : 0.0) - std::exp(z[i * v + j] - l[i]));
  return dz;
}

double weighted_sum(const std::vector<double>& lp, const std::vector<float>& dl) {
  double s = 0.0;
  for (size_t i = 0; i < lp.size(); ++i) s += dl[i] * lp[i];
  return s;
}

TensorView f32(std::vector<float>& x, std::initializer_list<int64_t> shape) {
  return TensorView(x.data(), shape, DType::kFloat32);
}
TensorView i32(std::vector<int32_t>& x) {
  return TensorView(x.data(), {static_cast<int64_t>(x.size())}, DType::kInt32);
}

struct Shape {
  int64_t n, d, v;
};

}  // namespace

TEST_CASE("the float64 references' gradients match central finite differences") {
  // Validates the analytic formulas the other tests compare against.
  const int64_t n = 3, d = 4, v = 7;
  auto h = vptest::random_floats(n * d, 11);
  auto w = vptest::random_floats(v * d, 12);
  auto t = random_targets(n, v, 13);
  auto dl = vptest::random_floats(n, 14);
  const double inv_t = 1.0 / 0.7;
  auto z = ref_logits(h, w, n, d, v, inv_t);
  auto dz = ref_dz(z, t, dl, n, v);
  const double eps = 1e-6;
  for (int64_t idx = 0; idx < n * v; ++idx) {  // w.r.t. the logits
    auto zp = z, zm = z;
    zp[idx] += eps;
    zm[idx] -= eps;
    double fd = (weighted_sum(ref_logprobs(zp, t, n, v), dl) - weighted_sum(ref_logprobs(zm, t, n, v), dl)) / (2 * eps);
    CHECK(std::abs(fd - dz[idx]) < 1e-7);
  }
  // w.r.t. hidden and weight through the projection: dH = dz·W/T, dW = dzᵀ·H/T
  auto loss_of = [&](const std::vector<float>& hh, const std::vector<float>& ww, int which, int64_t idx, double delta) {
    std::vector<double> hd(hh.begin(), hh.end()), wd(ww.begin(), ww.end());
    (which == 0 ? hd : wd)[idx] += delta;
    std::vector<double> zz(n * v);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < v; ++j) {
        double s = 0.0;
        for (int64_t k = 0; k < d; ++k) s += hd[i * d + k] * wd[j * d + k];
        zz[i * v + j] = s * inv_t;
      }
    return weighted_sum(ref_logprobs(zz, t, n, v), dl);
  };
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < d; ++k) {
      double an = 0.0;
      for (int64_t j = 0; j < v; ++j) an += dz[i * v + j] * w[j * d + k] * inv_t;
      double fd = (loss_of(h, w, 0, i * d + k, eps) - loss_of(h, w, 0, i * d + k, -eps)) / (2 * eps);
      CHECK(std::abs(fd - an) < 1e-7);
    }
  for (int64_t j = 0; j < v; ++j)
    for (int64_t k = 0; k < d; ++k) {
      double an = 0.0;
      for (int64_t i = 0; i < n; ++i) an += dz[i * v + j] * h[i * d + k] * inv_t;
      double fd = (loss_of(h, w, 1, j * d + k, eps) - loss_of(h, w, 1, j * d + k, -eps)) / (2 * eps);
      CHECK(std::abs(fd - an) < 1e-7);
    }
}

TEST_CASE("tokenLogprobs and its backward match float64 on every ISA and thread count") {
  vptest::BackendScope scope;
  const int saved_threads = vp::num_threads();
  uint64_t seed = 100;
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int threads : {1, 2}) {
      vp::set_num_threads(threads);
      for (Shape s : {Shape{1, 0, 1}, Shape{5, 0, 3}, Shape{17, 0, 33}, Shape{40, 0, 2049}, Shape{9, 0, 5000}}) {
        for (float temp : {1.0f, 0.6f}) {
          const std::string isa_s = vp::isa_name(isa);
          CAPTURE(isa_s);
          CAPTURE(threads);
          CAPTURE(s.n);
          CAPTURE(s.v);
          CAPTURE(temp);
          auto logits = vptest::random_floats(s.n * s.v, seed++, -6.0f, 6.0f);
          auto t = random_targets(s.n, s.v, seed++);
          auto dl = vptest::random_floats(s.n, seed++);
          std::vector<double> z(logits.begin(), logits.end());
          for (auto& x : z) x /= temp;
          auto ref = ref_logprobs(z, t, s.n, s.v);
          auto dz = ref_dz(z, t, dl, s.n, s.v);
          for (auto& x : dz) x /= temp;
          auto out = vptest::poisoned(s.n);
          vp::LogprobsOptions o;
          o.temperature = temp;
          REQUIRE(vp::token_logprobs(f32(logits, {s.n, s.v}), i32(t), f32(out, {s.n}), o).ok());
          CHECK(vptest::rel_error(out, ref) <= 1e-5);
          auto dlogits = vptest::poisoned(s.n * s.v);
          REQUIRE(vp::token_logprobs_backward(f32(dl, {s.n}), f32(logits, {s.n, s.v}), i32(t),
                                              f32(dlogits, {s.n, s.v}), o).ok());
          CHECK(vptest::rel_error(dlogits, dz) <= 1e-5);
        }
      }
    }
  }
  vp::set_num_threads(saved_threads);
}

TEST_CASE("tokenLogprobs: -Infinity logits get probability 0; a non-finite row is an error") {
  std::vector<float> logits{0.5f, -INFINITY, 1.0f, -INFINITY, -INFINITY, -INFINITY};
  std::vector<int32_t> t{2, 0};
  std::vector<float> out(2);
  // row 0 fine, row 1 all -inf
  vp::Status s = vp::token_logprobs(f32(logits, {2, 3}), i32(t), f32(out, {2}));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("row 1") != std::string::npos);
  logits = {0.5f, -INFINITY, 1.0f, 0.0f, NAN, 2.0f};
  s = vp::token_logprobs(f32(logits, {2, 3}), i32(t), f32(out, {2}));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  logits = {0.5f, -INFINITY, 1.0f, 0.0f, 1.0f, 2.0f};
  REQUIRE(vp::token_logprobs(f32(logits, {2, 3}), i32(t), f32(out, {2})).ok());
  CHECK(out[0] == doctest::Approx(1.0 - std::log(std::exp(0.5) + std::exp(1.0))).epsilon(1e-6));
  CHECK(out[1] == doctest::Approx(0.0 - std::log(1.0 + std::exp(1.0) + std::exp(2.0))).epsilon(1e-6));
}

TEST_CASE("linearTokenLogprobs and its backward match float64 on every ISA and thread count") {
  vptest::BackendScope scope;
  const int saved_threads = vp::num_threads();
  uint64_t seed = 500;
  const std::vector<Shape> shapes{{1, 1, 1},     {3, 5, 7},      {13, 33, 65},   {37, 19, 301},
                                  {70, 64, 1000}, {25, 300, 257}, {200, 40, 2100}, {5, 0, 9}};
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int threads : {1, 2}) {
      vp::set_num_threads(threads);
      for (const Shape& s : shapes) {
        for (float temp : {1.0f, 1.7f}) {
          const std::string isa_s = vp::isa_name(isa);
          CAPTURE(isa_s);
          CAPTURE(threads);
          CAPTURE(s.n);
          CAPTURE(s.d);
          CAPTURE(s.v);
          CAPTURE(temp);
          auto h = vptest::random_floats(s.n * s.d, seed++);
          auto w = vptest::random_floats(s.v * s.d, seed++);
          auto t = random_targets(s.n, s.v, seed++);
          auto dl = vptest::random_floats(s.n, seed++);
          const double inv_t = 1.0 / temp;
          auto z = ref_logits(h, w, s.n, s.d, s.v, inv_t);
          auto ref = ref_logprobs(z, t, s.n, s.v);
          auto dz = ref_dz(z, t, dl, s.n, s.v);
          std::vector<double> dh(s.n * s.d, 0.0), dw(s.v * s.d, 0.0);
          for (int64_t i = 0; i < s.n; ++i)
            for (int64_t j = 0; j < s.v; ++j) {
              const double g = dz[i * s.v + j] * inv_t;
              for (int64_t k = 0; k < s.d; ++k) {
                dh[i * s.d + k] += g * w[j * s.d + k];
                dw[j * s.d + k] += g * h[i * s.d + k];
              }
            }
          vp::LogprobsOptions o;
          o.temperature = temp;
          auto out = vptest::poisoned(s.n);
          REQUIRE(vp::linear_token_logprobs(f32(h, {s.n, s.d}), f32(w, {s.v, s.d}), i32(t), f32(out, {s.n}), o).ok());
          CHECK(vptest::rel_error(out, ref) <= 1e-5);
          auto gh = vptest::poisoned(s.n * s.d), gw = vptest::poisoned(s.v * s.d);
          REQUIRE(vp::linear_token_logprobs_backward(f32(dl, {s.n}), f32(h, {s.n, s.d}), f32(w, {s.v, s.d}), i32(t),
                                                     f32(gh, {s.n, s.d}), f32(gw, {s.v, s.d}), o).ok());
          CHECK(vptest::rel_error(gh, dh) <= 1e-5);
          CHECK(vptest::rel_error(gw, dw) <= 1e-5);
        }
      }
    }
  }
  vp::set_num_threads(saved_threads);
}

TEST_CASE("linearTokenLogprobs: several super-blocks and vocabulary chunks, uneven tails") {
  // Sizes chosen so that rows span several super-blocks (S <= 192) and the
  // vocabulary several chunks with a ragged last one.
  vptest::BackendScope scope;
  const int64_t n = 421, d = 96, v = 3001;
  auto h = vptest::random_floats(n * d, 1);
  auto w = vptest::random_floats(v * d, 2, -0.5f, 0.5f);
  auto t = random_targets(n, v, 3);
  auto dl = vptest::random_floats(n, 4);
  auto z = ref_logits(h, w, n, d, v, 1.0);
  auto ref = ref_logprobs(z, t, n, v);
  auto dz = ref_dz(z, t, dl, n, v);
  std::vector<double> dh(n * d, 0.0), dw(v * d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < v; ++j)
      for (int64_t k = 0; k < d; ++k) {
        dh[i * d + k] += dz[i * v + j] * w[j * d + k];
        dw[j * d + k] += dz[i * v + j] * h[i * d + k];
      }
  auto out = vptest::poisoned(n);
  REQUIRE(vp::linear_token_logprobs(f32(h, {n, d}), f32(w, {v, d}), i32(t), f32(out, {n})).ok());
  CHECK(vptest::rel_error(out, ref) <= 1e-5);
  auto gh = vptest::poisoned(n * d), gw = vptest::poisoned(v * d);
  REQUIRE(vp::linear_token_logprobs_backward(f32(dl, {n}), f32(h, {n, d}), f32(w, {v, d}), i32(t), f32(gh, {n, d}),
                                             f32(gw, {v, d})).ok());
  CHECK(vptest::rel_error(gh, dh) <= 1e-5);
  CHECK(vptest::rel_error(gw, dw) <= 1e-5);
}

TEST_CASE("linearTokenLogprobs: empty batch gives zero dweight") {
  std::vector<float> h, w = vptest::random_floats(12, 3), dl, gh;
  std::vector<int32_t> t;
  auto gw = vptest::poisoned(12);
  std::vector<float> out;
  REQUIRE(vp::linear_token_logprobs(f32(h, {0, 4}), f32(w, {3, 4}), i32(t), f32(out, {0})).ok());
  REQUIRE(vp::linear_token_logprobs_backward(f32(dl, {0}), f32(h, {0, 4}), f32(w, {3, 4}), i32(t), f32(gh, {0, 4}),
                                             f32(gw, {3, 4})).ok());
  for (float x : gw) CHECK(x == 0.0f);
}

TEST_CASE("log-prob kernels reject bad inputs with messages naming the argument") {
  auto h = vptest::random_floats(6, 1);
  auto w = vptest::random_floats(8, 2);
  std::vector<int32_t> t{0, 4, 1};
  std::vector<float> out(3);
  vp::Status s = vp::linear_token_logprobs(f32(h, {3, 2}), f32(w, {4, 2}), i32(t), f32(out, {3}));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("targets[1]") != std::string::npos);
  t = {0, -1, 1};
  s = vp::linear_token_logprobs(f32(h, {3, 2}), f32(w, {4, 2}), i32(t), f32(out, {3}));
  CHECK(s.message().find("targets[1]") != std::string::npos);
  t = {0, 1, 1};
  s = vp::linear_token_logprobs(f32(h, {3, 2}), f32(w, {2, 4}), i32(t), f32(out, {3}));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("weight must be [V, 2]") != std::string::npos);
  std::vector<int32_t> t2{0, 1};
  s = vp::linear_token_logprobs(f32(h, {3, 2}), f32(w, {4, 2}), i32(t2), f32(out, {3}));
  CHECK(s.message().find("targets must have length 3") != std::string::npos);
  h[3] = NAN;
  s = vp::linear_token_logprobs(f32(h, {3, 2}), f32(w, {4, 2}), i32(t), f32(out, {3}));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("row 1") != std::string::npos);
  vp::LogprobsOptions o;
  o.temperature = 0.0f;
  h[3] = 0.5f;
  s = vp::linear_token_logprobs(f32(h, {3, 2}), f32(w, {4, 2}), i32(t), f32(out, {3}), o);
  CHECK(s.message().find("temperature") != std::string::npos);
  std::vector<float> logits(6), dl{1.0f, NAN, 0.0f};
  std::vector<int32_t> tt{0, 1, 2};
  s = vp::token_logprobs_backward(f32(dl, {3}), f32(logits, {3, 2}), i32(tt), f32(logits, {3, 2}));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);  // target 2 >= V
  tt = {0, 1, 1};
  s = vp::token_logprobs_backward(f32(dl, {3}), f32(logits, {3, 2}), i32(tt), f32(logits, {3, 2}));
  CHECK(s.message().find("dLogprobs[1]") != std::string::npos);
}

TEST_CASE("the linear kernels' workspace stays far below the N×V logits") {
  // N = 8192, d = 512, V = 32768: the logits alone would be 1 GiB.
  for (int threads : {1, 2, 16}) {
    const size_t fwd = vp::linear_logprobs_workspace_bytes(8192, 512, 32768, threads, false);
    const size_t bwd = vp::linear_logprobs_workspace_bytes(8192, 512, 32768, threads, true);
    CAPTURE(threads);
    CHECK(fwd < (size_t{256} << 20));
    CHECK(bwd < (size_t{256} << 20));
  }
}
