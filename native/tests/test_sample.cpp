// Seeded next-token sampling: greedy, temperature, top-p, determinism.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/sample.h"
#include "vp/thread_pool.h"

TEST_CASE("sample: greedy is the argmax with ties to the lowest id") {
  std::vector<float> l{0.1f, 2.0f, -1.0f, 2.0f, /**/ 5.0f, 1.0f, 5.0f, 0.0f};
  std::vector<int32_t> out(2, -7);
  vp::SampleOptions o;
  o.temperature = 0.0f;
  REQUIRE(vp::sample_tokens(l.data(), 2, 4, o, nullptr, out.data()).ok());
  CHECK(out[0] == 1);
  CHECK(out[1] == 0);
}

TEST_CASE("sample: frequencies follow softmax(logits / T); top-p keeps the nucleus") {
  const std::vector<float> l{std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  const int n = 20000;
  for (float temp : {1.0f, 0.5f}) {
    std::vector<int> hist(4, 0);
    vp::SampleOptions o;
    o.temperature = temp;
    o.seed = 99;
    for (int s = 0; s < n; ++s) {
      o.step = s;
      int32_t t = -1;
      REQUIRE(vp::sample_tokens(l.data(), 1, 4, o, nullptr, &t).ok());
      REQUIRE(t >= 0);
      REQUIRE(t < 4);
      ++hist[t];
    }
    double z = 0;
    for (int j = 0; j < 4; ++j) z += std::pow(std::exp(static_cast<double>(l[j])), 1.0 / temp);
    for (int j = 0; j < 4; ++j) {
      const double want = std::pow(std::exp(static_cast<double>(l[j])), 1.0 / temp) / z;
      CAPTURE(temp);
      CAPTURE(j);
      CHECK(std::abs(hist[j] / static_cast<double>(n) - want) < 0.015);
    }
  }
  // top_p = 0.5: {0.4, 0.3} reach 0.7 >= 0.5; renormalized 4/7, 3/7; others never drawn
  std::vector<int> hist(4, 0);
  vp::SampleOptions o;
  o.top_p = 0.5f;
  o.seed = 5;
  for (int s = 0; s < n; ++s) {
    o.step = s;
    int32_t t = -1;
    REQUIRE(vp::sample_tokens(l.data(), 1, 4, o, nullptr, &t).ok());
    ++hist[t];
  }
  CHECK(hist[2] == 0);
  CHECK(hist[3] == 0);
  CHECK(std::abs(hist[0] / static_cast<double>(n) - 4.0 / 7.0) < 0.015);
  // a tiny top_p keeps only the most probable token
  o.top_p = 1e-6f;
  int32_t t = -1;
  REQUIRE(vp::sample_tokens(l.data(), 1, 4, o, nullptr, &t).ok());
  CHECK(t == 0);
}

TEST_CASE("sample: deterministic for (seed, step, stream), independent of threads and batch order") {
  const int64_t rows = 64, v = 1000;
  auto l = vptest::random_floats(rows * v, 3, -3, 3);
  std::vector<uint64_t> streams(rows);
  for (int64_t r = 0; r < rows; ++r) streams[r] = 1000 + r;
  vp::SampleOptions o;
  o.temperature = 0.8f;
  o.top_p = 0.9f;
  o.seed = 42;
  o.step = 7;
  std::vector<int32_t> a(rows), b(rows), c(rows);
  const int saved = vp::num_threads();
  vp::set_num_threads(1);
  REQUIRE(vp::sample_tokens(l.data(), rows, v, o, streams.data(), a.data()).ok());
  vp::set_num_threads(2);
  REQUIRE(vp::sample_tokens(l.data(), rows, v, o, streams.data(), b.data()).ok());
  vp::set_num_threads(saved);
  CHECK(a == b);
  // row 5 alone with its stream samples the same token as inside the batch
  int32_t one = -1;
  REQUIRE(vp::sample_tokens(l.data() + 5 * v, 1, v, o, streams.data() + 5, &one).ok());
  CHECK(one == a[5]);
  o.seed = 43;
  REQUIRE(vp::sample_tokens(l.data(), rows, v, o, streams.data(), c.data()).ok());
  CHECK(c != a);
}

TEST_CASE("sample: invalid options and non-finite logits are reported") {
  std::vector<float> l{0.0f, 1.0f};
  int32_t t = 0;
  vp::SampleOptions o;
  o.top_p = 0.0f;
  CHECK(vp::sample_tokens(l.data(), 1, 2, o, nullptr, &t).message().find("top_p") != std::string::npos);
  o = vp::SampleOptions();
  o.temperature = -1.0f;
  CHECK(vp::sample_tokens(l.data(), 1, 2, o, nullptr, &t).code() == vp::StatusCode::kInvalidArgument);
  o = vp::SampleOptions();
  l[1] = NAN;
  CHECK(vp::sample_tokens(l.data(), 1, 2, o, nullptr, &t).message().find("logits[0, 1] is not finite") != std::string::npos);
}
