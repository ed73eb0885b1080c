// AdamW, global-norm clipping, the LR schedule, axpy (vp/optim.h) and the Philox
// initializer (vp/rng.h) against plain double-precision reference code.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/optim.h"
#include "vp/rng.h"
#include "vp/thread_pool.h"


TEST_CASE("optim: adamw matches a plain double reference over several steps, every ISA") {
  vptest::BackendScope scope;
  vptest::ThreadScope ts;
  const int64_t n = 70001;  // odd, several threads' chunks, a vector tail
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int threads : {1, 2}) {
      vp::set_num_threads(threads);
      std::string isa_name = vp::isa_name(isa);
      CAPTURE(isa_name);
      CAPTURE(threads);
      std::vector<float> p = vptest::random_floats(n, 1), m(n, 0.0f), v(n, 0.0f);
      std::vector<double> pr(p.begin(), p.end()), mr(n, 0.0), vr(n, 0.0);
      vp::AdamWConfig c;
      c.lr = 3e-3f;
      c.weight_decay = 0.1f;
      c.beta1 = 0.9f;
      c.beta2 = 0.95f;
      c.eps = 1e-8f;
      for (int step = 1; step <= 5; ++step) {
        std::vector<float> g = vptest::random_floats(n, 100 + step, -2.0f, 2.0f);
        c.step = step;
        c.grad_scale = step == 3 ? 0.5f : 1.0f;
        REQUIRE(vp::adamw_step(p.data(), g.data(), m.data(), v.data(), n, c).ok());
        const double b1 = c.beta1, b2 = c.beta2, lr = c.lr, wd = c.weight_decay;
        for (int64_t i = 0; i < n; ++i) {
          const double gi = static_cast<double>(g[i]) * c.grad_scale;
          pr[i] *= 1.0 - lr * wd;
          mr[i] = b1 * mr[i] + (1 - b1) * gi;
          vr[i] = b2 * vr[i] + (1 - b2) * gi * gi;
          const double mh = mr[i] / (1 - std::pow(b1, step)), vh = vr[i] / (1 - std::pow(b2, step));
          pr[i] -= lr * mh / (std::sqrt(vh) + static_cast<double>(c.eps));
        }
      }
      CHECK(vptest::rel_error(p, pr) < 1e-6);
      CHECK(vptest::rel_error(m, mr) < 1e-5);
      CHECK(vptest::rel_error(v, vr) < 1e-5);
    }
  }
}

TEST_CASE("optim: adamw rejects bad hyper-parameters") {
  float x = 0;
  vp::AdamWConfig c;
  c.step = 0;
  CHECK(vp::adamw_step(&x, &x, &x, &x, 1, c).message().find("1-based") != std::string::npos);
  c.step = 1;
  c.beta2 = 1.0f;
  CHECK(vp::adamw_step(&x, &x, &x, &x, 1, c).code() == vp::StatusCode::kInvalidArgument);
  c.beta2 = 0.999f;
  CHECK(vp::adamw_step(nullptr, &x, &x, &x, 1, c).code() == vp::StatusCode::kInvalidArgument);
  CHECK(vp::adamw_step(nullptr, nullptr, nullptr, nullptr, 0, c).ok());
}

TEST_CASE("optim: global gradient norm and clipping, thread-count independent") {
  vptest::ThreadScope ts;
  std::vector<std::vector<float>> gs{vptest::random_floats(100003, 5), vptest::random_floats(7, 6),
                                     {}, vptest::random_floats(50000, 7)};
  std::vector<const float*> ptrs;
  std::vector<float*> mptrs;
  std::vector<int64_t> sizes;
  double ref = 0;
  for (auto& g : gs) {
    ptrs.push_back(g.data());
    mptrs.push_back(g.data());
    sizes.push_back(static_cast<int64_t>(g.size()));
    for (float x : g) ref += static_cast<double>(x) * x;
  }
  ref = std::sqrt(ref);
  double n1 = 0, n2 = 0;
  vp::set_num_threads(1);
  REQUIRE(vp::global_grad_norm(ptrs.data(), sizes.data(), 4, &n1).ok());
  vp::set_num_threads(2);
  REQUIRE(vp::global_grad_norm(ptrs.data(), sizes.data(), 4, &n2).ok());
  CHECK(n1 == doctest::Approx(ref).epsilon(1e-6));
  CHECK(std::memcmp(&n1, &n2, sizeof n1) == 0);
  // within bounds: untouched
  auto before = gs[1];
  double nrm = 0;
  REQUIRE(vp::clip_grad_norm(mptrs.data(), sizes.data(), 4, ref * 2, &nrm).ok());
  CHECK(gs[1] == before);
  // clip to 1.0
  REQUIRE(vp::clip_grad_norm(mptrs.data(), sizes.data(), 4, 1.0, &nrm).ok());
  CHECK(nrm == doctest::Approx(ref));
  REQUIRE(vp::global_grad_norm(ptrs.data(), sizes.data(), 4, &n1).ok());
  CHECK(n1 == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(gs[1][3] == doctest::Approx(before[3] / ref).epsilon(1e-5));
  CHECK(vp::clip_scale(5.0, 0.0) == 1.0);
  // a NaN gradient is reported
  gs[1][0] = NAN;
  CHECK(vp::clip_grad_norm(mptrs.data(), sizes.data(), 4, 1.0, &nrm).message().find("not finite") != std::string::npos);
}

TEST_CASE("optim: axpy is the double-rounded-once sum, every thread count, in place and aliased") {
  vptest::ThreadScope ts;
  const int64_t n = 200003;  // several blocks of the pool and a tail
  const std::vector<float> x = vptest::random_floats(n, 7, -3.0f, 3.0f);
  for (double alpha : {1.0, 1.0 / 3.0, -0.25}) {
    for (int threads : {1, 2}) {
      vp::set_num_threads(threads);
      CAPTURE(alpha);
      CAPTURE(threads);
      std::vector<float> y = vptest::random_floats(n, 8);
      const std::vector<float> y0 = y;
      REQUIRE(vp::axpy(y.data(), x.data(), alpha, n).ok());
      int64_t wrong = 0;
      for (int64_t i = 0; i < n; ++i)
        wrong += y[i] != static_cast<float>(static_cast<double>(y0[i]) + alpha * static_cast<double>(x[i]));
      CHECK(wrong == 0);
    }
  }
  std::vector<float> z = vptest::random_floats(1000, 9);
  const std::vector<float> z0 = z;
  REQUIRE(vp::axpy(z.data(), z.data(), 1.0, 1000).ok());  // x and y the same array: doubles it exactly
  for (int64_t i = 0; i < 1000; ++i) CHECK(z[i] == 2.0f * z0[i]);
  CHECK(vp::axpy(z.data(), z.data(), 1.0, 0).ok());
  CHECK(vp::axpy(nullptr, z.data(), 1.0, 5).code() == vp::StatusCode::kInvalidArgument);
  CHECK(vp::axpy(z.data(), z.data(), 1.0, -1).code() == vp::StatusCode::kInvalidArgument);
}

TEST_CASE("optim: warmup + cosine schedule") {
  vp::LrSchedule s;
  s.base_lr = 1e-3;
  s.min_lr = 1e-4;
  s.warmup_steps = 10;
  s.total_steps = 110;
  CHECK(vp::lr_at(s, 0) == doctest::Approx(1e-4));
  CHECK(vp::lr_at(s, 4) == doctest::Approx(5e-4));
  CHECK(vp::lr_at(s, 9) == doctest::Approx(1e-3));
  CHECK(vp::lr_at(s, 10) == doctest::Approx(1e-3));
  CHECK(vp::lr_at(s, 60) == doctest::Approx(1e-4 + 0.9e-3 * 0.5));
  CHECK(vp::lr_at(s, 110) == doctest::Approx(1e-4));
  CHECK(vp::lr_at(s, 500) == doctest::Approx(1e-4));
  for (int64_t t = 10; t < 110; ++t) CHECK(vp::lr_at(s, t + 1) <= vp::lr_at(s, t));
  s.warmup_steps = 0;
  CHECK(vp::lr_at(s, 0) == doctest::Approx(1e-3));
}

TEST_CASE("rng: Philox4x32-10 known answers (Random123 test vectors)") {
  auto r = vp::philox4x32_10({0, 0, 0, 0}, {0, 0});
  CHECK(r[0] == 0x6627e8d5u);
  CHECK(r[1] == 0xe169c58du);
  CHECK(r[2] == 0xbc57ac4cu);
  CHECK(r[3] == 0x9b00dbd8u);
  r = vp::philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  CHECK(r[0] == 0x408f276du);
  CHECK(r[1] == 0x41c83b0eu);
  CHECK(r[2] == 0xa20bc7c6u);
  CHECK(r[3] == 0x6d5451fdu);
  r = vp::philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
  CHECK(r[0] == 0xd16cfe09u);
  CHECK(r[1] == 0x94fdccebu);
  CHECK(r[2] == 0x5001e420u);
  CHECK(r[3] == 0x24126ea1u);
}

TEST_CASE("rng: fills are identical for every thread count and have the right moments") {
  vptest::ThreadScope ts;
  const int64_t n = 200001;
  std::vector<float> a(n), b(n), c(n), u(n);
  vp::set_num_threads(1);
  REQUIRE(vp::rng_normal(42, 3, 0.5f, 2.0f, a.data(), n).ok());
  vp::set_num_threads(2);
  REQUIRE(vp::rng_normal(42, 3, 0.5f, 2.0f, b.data(), n).ok());
  CHECK(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0);
  // a prefix of a longer fill is the shorter fill
  std::vector<float> pre(1001);
  REQUIRE(vp::rng_normal(42, 3, 0.5f, 2.0f, pre.data(), 1001).ok());
  CHECK(std::memcmp(a.data(), pre.data(), 1001 * sizeof(float)) == 0);
  double s = 0, s2 = 0;
  for (float x : a) {
    s += x;
    s2 += static_cast<double>(x) * x;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  CHECK(std::abs(mean - 0.5) < 0.02);
  CHECK(std::abs(std::sqrt(var) - 2.0) < 0.02);
  // another stream or seed differs
  REQUIRE(vp::rng_normal(42, 4, 0.5f, 2.0f, c.data(), n).ok());
  CHECK(std::memcmp(a.data(), c.data(), 64) != 0);
  REQUIRE(vp::rng_normal(43, 3, 0.5f, 2.0f, c.data(), n).ok());
  CHECK(std::memcmp(a.data(), c.data(), 64) != 0);
  REQUIRE(vp::rng_uniform(7, 0, -0.25f, 0.25f, u.data(), n).ok());
  double us = 0;
  for (float x : u) {
    REQUIRE(x >= -0.25f);
    REQUIRE(x < 0.25f);
    us += x;
  }
  CHECK(std::abs(us / n) < 0.005);
  CHECK(vp::rng_normal(1, 0, 0.0f, -1.0f, a.data(), 4).code() == vp::StatusCode::kInvalidArgument);
  CHECK(vp::rng_uniform(1, 0, 1.0f, 0.0f, a.data(), 4).code() == vp::StatusCode::kInvalidArgument);
}
