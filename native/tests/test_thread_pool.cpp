#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "vp/cpu_features.h"
#include "vp/thread_pool.h"

TEST_CASE("parallel_for covers every index exactly once") {
  for (int64_t n : {0, 1, 2, 3, 17, 1000, 100003}) {
    std::vector<std::atomic<int>> hits(n);
    vp::parallel_for(n, 7, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
  }
}

TEST_CASE("nested parallel_for runs serially instead of deadlocking") {
  std::atomic<int64_t> total{0};
  vp::parallel_for(8, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i)
      vp::parallel_for(100, 1, [&](int64_t b2, int64_t e2, int) { total += e2 - b2; });
  });
  CHECK(total.load() == 800);
}

TEST_CASE("many short parallel regions in a row complete") {
  std::atomic<int64_t> total{0};
  for (int r = 0; r < 2000; ++r)
    vp::parallel_for(4, 1, [&](int64_t b, int64_t e, int) { total += e - b; });
  CHECK(total.load() == 8000);
}

TEST_CASE("set_num_threads resizes the pool") {
  int before = vp::num_threads();
  vp::set_num_threads(3);
  CHECK(vp::num_threads() == 3);
  std::atomic<int> total{0};
  vp::parallel_run(3, [&](int, int n) { total += n; });
  CHECK(total.load() == 9);
  vp::set_num_threads(before);
  CHECK(vp::num_threads() == before);
}

TEST_CASE("ISA detection reports a supported path") {
  vp::Isa best = vp::detect_isa();
  CHECK(vp::set_active_isa(vp::Isa::kGeneric));
  CHECK(vp::active_isa() == vp::Isa::kGeneric);
  CHECK(vp::set_active_isa(best));
  CHECK_FALSE(vp::isa_reason().empty());
}
