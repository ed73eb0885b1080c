// vp::ScratchLease (core/scratch.h): a slot's block is handed back to the next
// lease of that slot on the same thread (no allocation), a nested lease of a slot
// in use gets its own block, a larger request replaces the kept block, blocks over
// kScratchKeepBytes are not kept, other threads have their own blocks, alignment
// is 64 bytes (2 MB from 4 MB), and the whole block is writable (ASan checks).
// Then the kernels that lease (SGEMM, attention) give the same bits on a second
// call, whose workspaces are the first call's, as on the first.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "core/scratch.h"
#include "test_util.h"
#include "vp/gemm.h"

namespace {

uintptr_t addr(const vp::ScratchLease& l) { return reinterpret_cast<uintptr_t>(l.as<void>()); }

}  // namespace

TEST_CASE("ScratchLease: kept per slot and thread, nested leases apart, large blocks freed") {
  using vp::ScratchLease;
  using vp::ScratchSlot;
  uintptr_t first = 0;
  {
    ScratchLease a(ScratchSlot::kInfonceScores, 1000);
    REQUIRE(a.ok());
    CHECK(addr(a) % 64 == 0);
    std::memset(a.as<void>(), 1, 1000);
    first = addr(a);
    ScratchLease nested(ScratchSlot::kInfonceScores, 1000);  // the slot is taken: a block of its own
    REQUIRE(nested.ok());
    CHECK(addr(nested) != first);
    std::memset(nested.as<void>(), 2, 1000);
    first = addr(nested);  // it ends first, so its block is the one kept (a's is freed)
  }
  {
    ScratchLease again(ScratchSlot::kInfonceScores, 800);  // smaller: the kept block
    CHECK(addr(again) == first);
    ScratchLease other(ScratchSlot::kAttnBwd, 800);  // another slot: another block
    CHECK(addr(other) != first);
  }
  {
    ScratchLease bigger(ScratchSlot::kInfonceScores, size_t{3} << 20);  // replaces the kept block
    REQUIRE(bigger.ok());
    CHECK(addr(bigger) % 64 == 0);
    std::memset(bigger.as<void>(), 3, size_t{3} << 20);
    first = addr(bigger);
  }
  {
    ScratchLease again(ScratchSlot::kInfonceScores, 100);
    CHECK(addr(again) == first);
  }
  {
    // Over kScratchKeepBytes: used, then freed rather than kept (ASan/LSan would
    // report a block that was neither).
    ScratchLease over(ScratchSlot::kAttnFwdKv, vp::kScratchKeepBytes + 4096);
    REQUIRE(over.ok());
    CHECK(addr(over) % (size_t{2} << 20) == 0);  // from 4 MB: on 2 MB pages
    std::memset(over.as<void>(), 5, vp::kScratchKeepBytes + 4096);
  }
  uintptr_t mine = 0, theirs = 0;
  {
    ScratchLease l(ScratchSlot::kAttnFwd, 4096);
    mine = addr(l);
  }
  std::thread([&] {
    ScratchLease l(ScratchSlot::kAttnFwd, 4096);
    theirs = addr(l);
    std::memset(l.as<void>(), 4, 4096);
  }).join();
  CHECK(theirs != 0);
  CHECK(theirs != mine);
  ScratchLease l(ScratchSlot::kAttnFwd, 4096);
  CHECK(addr(l) == mine);
}

TEST_CASE("sgemm: a second call on the kept packed blocks gives the same bits") {
  const int64_t m = 130, n = 200, k = 600;  // k past one k block, ragged tiles
  std::vector<float> a = vptest::random_floats(static_cast<size_t>(m * k), 11);
  std::vector<float> b = vptest::random_floats(static_cast<size_t>(k * n), 12);
  std::vector<float> c1(static_cast<size_t>(m * n)), c2(static_cast<size_t>(m * n), 7.0f);
  vp::GemmArgs g{};
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a.data();
  g.lda = k;
  g.b = b.data();
  g.ldb = n;
  g.c = c1.data();
  g.ldc = n;
  g.alpha = 1.0f;
  g.beta = 0.0f;
  REQUIRE(vp::sgemm(g).ok());
  g.c = c2.data();
  REQUIRE(vp::sgemm(g).ok());
  CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0);
}
