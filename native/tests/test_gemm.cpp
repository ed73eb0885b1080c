// SGEMM against a float64 reference: odd shapes from 1 to 300, every transpose,
// alpha/beta, 1 and 2 threads, and every ISA path this CPU has.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "test_util.h"
#include "vp/gemm.h"
#include "vp/thread_pool.h"

namespace {

// C = alpha * op(A) op(B) + beta * C0 in double.
std::vector<double> reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                              const std::vector<float>& a, const std::vector<float>& b, float beta,
                              const std::vector<float>& c0) {
  std::vector<double> c(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        double av = ta ? a[p * m + i] : a[i * k + p];
        double bv = tb ? b[j * k + p] : b[p * n + j];
        acc += av * bv;
      }
      c[i * n + j] = alpha * acc + (beta == 0.0f ? 0.0 : beta * static_cast<double>(c0[i * n + j]));
    }
  return c;
}

double run_case(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                int threads, uint64_t seed) {
  auto a = vptest::random_floats(m * k, seed);
  auto b = vptest::random_floats(k * n, seed + 1);
  auto c0 = vptest::random_floats(m * n, seed + 2);
  auto ref = reference(ta, tb, m, n, k, alpha, a, b, beta, c0);
  // beta == 0: C starts as NaN, which must not leak; otherwise C starts as c0.
  std::vector<float> c = beta == 0.0f ? vptest::poisoned(m * n) : c0;
  vp::GemmArgs g;
  g.trans_a = ta;
  g.trans_b = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  g.beta = beta;
  g.a = a.data();
  g.lda = ta ? m : k;
  g.b = b.data();
  g.ldb = tb ? k : n;
  g.c = c.data();
  g.ldc = n;
  g.threads = threads;
  REQUIRE(vp::sgemm(g).ok());
  return vptest::rel_error(c, ref);
}

}  // namespace

TEST_CASE("sgemm matches a float64 reference on odd shapes, all transposes, all ISAs") {
  vptest::BackendScope scope;
  const int64_t sizes[][3] = {{1, 1, 1},     {1, 7, 3},     {5, 1, 9},     {3, 3, 1},
                              {13, 17, 19},  {12, 32, 8},   {31, 33, 65},  {64, 64, 64},
                              {97, 131, 7},  {129, 300, 257}, {300, 129, 300}, {255, 1, 300},
                              {1, 300, 255}, {200, 37, 513}};
  uint64_t seed = 1;
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int threads : {1, 2}) {
      for (auto& s : sizes) {
        for (int t = 0; t < 4; ++t) {
          bool ta = t & 1, tb = t & 2;
          CAPTURE(vp::isa_name(isa));
          CAPTURE(threads);
          CAPTURE(s[0]);
          CAPTURE(s[1]);
          CAPTURE(s[2]);
          CAPTURE(ta);
          CAPTURE(tb);
          double err = run_case(ta, tb, s[0], s[1], s[2], 1.0f, 0.0f, threads, seed++);
          CHECK(err <= 1e-5);
        }
      }
    }
  }
}

TEST_CASE("sgemm applies alpha and beta (beta != 0 reads C)") {
  vptest::BackendScope scope;
  for (vp::Isa isa : vptest::supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    CAPTURE(vp::isa_name(isa));
    CHECK(run_case(false, false, 45, 71, 33, 0.5f, 0.75f, 2, 100) <= 1e-5);
    CHECK(run_case(true, true, 45, 71, 300, -2.0f, 1.0f, 1, 101) <= 1e-5);
    CHECK(run_case(false, true, 100, 100, 100, 1.0f, -1.0f, 2, 102) <= 1e-5);
  }
}

TEST_CASE("sgemm handles K = 0 and empty outputs") {
  std::vector<float> c(6, 2.0f);
  vp::GemmArgs g;
  g.m = 2;
  g.n = 3;
  g.k = 0;
  g.c = c.data();
  g.ldc = 3;
  g.beta = 0.5f;
  REQUIRE(vp::sgemm(g).ok());
  for (float v : c) CHECK(v == 1.0f);
  g.beta = 0.0f;
  c.assign(6, std::numeric_limits<float>::quiet_NaN());
  REQUIRE(vp::sgemm(g).ok());
  for (float v : c) CHECK(v == 0.0f);
  g.m = 0;
  CHECK(vp::sgemm(g).ok());
}

TEST_CASE("sgemm is bitwise identical with 1 and 2 threads") {
  vptest::BackendScope scope;
  const int64_t m = 150, n = 170, k = 530;
  auto a = vptest::random_floats(m * k, 7), b = vptest::random_floats(k * n, 8);
  std::vector<float> c1(m * n), c2(m * n);
  vp::GemmArgs g;
  g.m = m; g.n = n; g.k = k; g.a = a.data(); g.lda = k; g.b = b.data(); g.ldb = n; g.ldc = n;
  g.c = c1.data(); g.threads = 1;
  REQUIRE(vp::sgemm(g).ok());
  g.c = c2.data(); g.threads = 2;
  REQUIRE(vp::sgemm(g).ok());
  CHECK(c1 == c2);
}

TEST_CASE("sgemm rejects bad leading dimensions with a message") {
  float x = 0;
  vp::GemmArgs g;
  g.m = 2; g.n = 2; g.k = 2; g.a = &x; g.b = &x; g.c = &x; g.lda = 1; g.ldb = 2; g.ldc = 2;
  vp::Status s = vp::sgemm(g);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("lda") != std::string::npos);
}
