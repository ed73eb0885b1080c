// The CUDA backend's review fixes, tested where they can be without a GPU:
//   * host checks (cuda/host_checks.h): compute capability vs the built
//     architectures, grid limits, the row copy's word width vs alignment;
//   * the scratch pool (cuda/scratch_pool.h) with a counting host allocator:
//     reuse without allocation, exclusive leases, growth, out-of-memory, trim;
//   * decode attention's key counts on the CPU (zero keys, counts past max_keys);
// and with a GPU (skipped without one, failed under VP_TEST_REQUIRE_CUDA=1):
//   * steady-state calls allocate no device memory (InfoNCE, log-probs, layers,
//     decode attention);
//   * cross-entropy counts 2^24 + 1 targets exactly;
//   * decode attention with zero keys / too many keys;
//   * a grid past CUDA's limits is a clear Invalid status (rows, heads);
//   * device cuSeqlens are validated;
//   * the pack gather on 2-byte-aligned rows of 4 bytes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "host_checks.h"
#include "scratch_pool.h"
#include "test_util.h"
#include "vp/attention.h"
#include "vp/cuda.h"
#include "vp/grpo.h"
#include "vp/infonce.h"
#include "vp/layers.h"
#include "vp/logprobs.h"
#include "vp/model_kernels.h"
#include "vp/pack.h"

namespace {

using vp::cuda::host::cc_problem;
using vp::cuda::host::copy_word_bytes;
using vp::cuda::host::grid_problem;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("cuda host checks: compute capability against the built architectures") {
  const std::string def = "80-real,90-real,90-virtual";  // CMakeLists.txt's default
  CHECK(contains(cc_problem(7, 5, def), "below 8.0"));
  CHECK(contains(cc_problem(6, 1, "native"), "below 8.0"));
  for (auto [ma, mi] : {std::pair{8, 0}, {8, 6}, {8, 9}, {9, 0}, {10, 0}, {12, 0}}) {
    CAPTURE(ma);
    CAPTURE(mi);
    CHECK(cc_problem(ma, mi, def) == "");  // sm_80 cubin on 8.x, sm_90 on 9.0, sm_90 PTX on newer
  }
  CHECK(cc_problem(10, 0, "80-real;90-real") != "");  // no PTX: nothing runs on 10.0
  CHECK(contains(cc_problem(10, 0, "80-real;90-real"), "CMAKE_CUDA_ARCHITECTURES=100-real"));
  CHECK(cc_problem(8, 0, "90-real") != "");  // sm_90 code does not run on 8.0
  CHECK(cc_problem(8, 6, "86") == "");       // plain "86": real and virtual
  CHECK(cc_problem(8, 0, "86") != "");
  CHECK(cc_problem(9, 0, "90a-real") == "");
  CHECK(cc_problem(10, 0, "90a-real") != "");  // arch-specific images run on 9.0 only
  CHECK(cc_problem(9, 0, "native") == "");     // not judged here: the runtime probe decides
  CHECK(cc_problem(9, 0, "") == "");
}

TEST_CASE("cuda host checks: grid limits") {
  CHECK(grid_problem("f", 2147483647) == "");
  CHECK(contains(grid_problem("f", 2147483648LL), "in x"));
  CHECK(contains(grid_problem("f", 2147483648LL), "f:"));
  CHECK(grid_problem("f", 10, 65535) == "");
  CHECK(contains(grid_problem("f", 10, 65536), "in y"));
  CHECK(contains(grid_problem("f", 1, 1, 70000), "in z"));
  CHECK(grid_problem("f", 0) != "");
}

TEST_CASE("cuda host checks: the row copy's word fits the row size and every pointer's alignment") {
  alignas(16) static unsigned char buf[64];
  unsigned char* p = buf;
  CHECK(copy_word_bytes(64, {p, p + 32}) == 16);
  CHECK(copy_word_bytes(64, {p, p + 4}) == 4);   // 4-byte aligned only
  CHECK(copy_word_bytes(4, {p + 2, p}) == 2);    // the review's case: a 4-byte row on a 2-byte boundary
  CHECK(copy_word_bytes(12, {p, p + 16}) == 4);  // 12 bytes: 16 does not divide the row
  CHECK(copy_word_bytes(6, {p, p}) == 2);
  CHECK(copy_word_bytes(16, {p + 1}) == 1);
  CHECK(copy_word_bytes(16, {p, nullptr}) == 16);  // absent pointers are ignored
}

namespace {
int g_allocs = 0, g_frees = 0, g_live = 0;
bool g_fail_next = false;
std::vector<void*> g_blocks;  // live blocks, so the test can free what the pool keeps
std::string fake_alloc(void** p, size_t bytes) {
  if (g_fail_next) {
    g_fail_next = false;
    return "out of memory (test)";
  }
  *p = std::malloc(bytes);
  g_blocks.push_back(*p);
  ++g_allocs;
  ++g_live;
  return "";
}
void fake_free(void* p) {
  g_blocks.erase(std::find(g_blocks.begin(), g_blocks.end(), p));
  std::free(p);
  ++g_frees;
  --g_live;
}
}  // namespace

TEST_CASE("cuda scratch pool: reuse without allocation, exclusive leases, growth, out of memory, trim") {
  g_allocs = g_frees = g_live = 0;
  {
    vp::cuda::ScratchPool pool(fake_alloc, fake_free);
    void *a = nullptr, *b = nullptr;
    size_t sa = 0, sb = 0;
    REQUIRE(pool.acquire(1000, &a, &sa) == "");
    REQUIRE(pool.acquire(1000, &b, &sb) == "");
    CHECK(a != b);  // two leases at once never share a block
    CHECK(g_allocs == 2);
    pool.release(sa);
    pool.release(sb);
    // The steady state: the same requests again allocate nothing.
    for (int i = 0; i < 5; ++i) {
      REQUIRE(pool.acquire(1000, &a, &sa) == "");
      REQUIRE(pool.acquire(700, &b, &sb) == "");
      CHECK(a != b);
      pool.release(sa);
      pool.release(sb);
    }
    CHECK(g_allocs == 2);
    CHECK(pool.stats().blocks == 2);
    CHECK(pool.stats().bytes == 2 * vp::cuda::ScratchPool::round_up(1000));
    // A larger request grows a free block (freed and replaced): the block count stays.
    REQUIRE(pool.acquire(5000, &a, &sa) == "");
    CHECK(g_allocs == 3);
    CHECK(g_frees == 1);
    CHECK(pool.stats().blocks == 2);
    CHECK(pool.stats().leased == 1);
    std::memset(a, 1, 5000);  // the block really holds 5000 bytes
    pool.release(sa);
    REQUIRE(pool.acquire(4000, &a, &sa) == "");  // the grown block serves smaller requests
    CHECK(g_allocs == 3);
    pool.release(sa);
    // Out of memory: the pool gives back its free blocks and tries once more.
    g_fail_next = true;
    REQUIRE(pool.acquire(1 << 20, &a, &sa) == "");
    CHECK(pool.stats().leased == 1);
    CHECK(g_live == 1);  // the other free block was given back
    pool.release(sa);
    CHECK(pool.trim() == vp::cuda::ScratchPool::round_up(1 << 20));
    CHECK(g_live == 0);
    CHECK(pool.stats().blocks == 0);
    CHECK(pool.stats().bytes == 0);
    // A failure that persists is reported, and leaves nothing leased.
    REQUIRE(pool.acquire(64, &a, &sa) == "");
    pool.release(sa);
    g_fail_next = true;
    std::string err = pool.acquire(1 << 16, &b, &sb);
    CHECK(err == "");  // the retry after giving back the free block succeeded
    pool.release(sb);
    CHECK(pool.stats().leased == 0);
  }
  CHECK(g_live == 1);  // the pool does not free at destruction (the device pool lives for the process)
  for (void* p : g_blocks) std::free(p);  // what the pool kept: freed here, not leaked
  g_blocks.clear();
}

TEST_CASE("cuda host checks: decode attention on the CPU: zero keys give zeros, counts past max_keys are OutOfRange") {
  const int64_t n = 3, H = 2, Hkv = 1, D = 4, max_keys = 2;
  auto q = vptest::random_floats(n * H * D, 1), kc = vptest::random_floats(8 * Hkv * D, 2),
       vc = vptest::random_floats(8 * Hkv * D, 3);
  std::vector<int32_t> base = {0, 2, 4}, nk = {2, 0, 1};
  auto out = vptest::poisoned(n * H * D);
  REQUIRE(vp::decode_attention(q.data(), kc.data(), vc.data(), base.data(), nk.data(), n, H, Hkv, D, 0.5f, max_keys,
                               out.data())
              .ok());
  for (int64_t e = 0; e < H * D; ++e) CHECK(out[H * D + e] == 0.0f);  // row 1: no key
  for (int64_t e = 0; e < H * D; ++e) {  // row 2: one key: its value row
    CHECK(out[2 * H * D + e] == doctest::Approx(vc[4 * D + e % D]));
  }
  CHECK(std::isfinite(out[0]));
  for (int32_t bad : {3, -1}) {
    nk = {2, bad, 1};
    vp::Status s = vp::decode_attention(q.data(), kc.data(), vc.data(), base.data(), nk.data(), n, H, Hkv, D, 0.5f,
                                        max_keys, out.data());
    CHECK(s.code() == vp::StatusCode::kOutOfRange);
    CHECK(contains(s.message(), "nkeys[1]"));
  }
}

// ---- with a GPU ------------------------------------------------------------------------------

namespace {

// n elements on the device, freed at scope exit.
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    void* d = nullptr;
    REQUIRE(vp::cuda::malloc_device(&d, std::max<size_t>(1, n) * sizeof(T)).ok());
    p = static_cast<T*>(d);
  }
  explicit DevBuf(const std::vector<T>& h) : DevBuf(h.size()) {
    if (n) REQUIRE(vp::cuda::copy_to_device(p, h.data(), n * sizeof(T)).ok());
  }
  std::vector<T> get() const {
    std::vector<T> h(n);
    if (n) REQUIRE(vp::cuda::copy_to_host(h.data(), p, n * sizeof(T)).ok());
    return h;
  }
  ~DevBuf() { vp::cuda::free_device(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

vp::TensorView dview(void* p, std::initializer_list<int64_t> shape, vp::DType dt = vp::DType::kFloat32) {
  return vp::TensorView(p, shape, dt, vp::Device::kCUDA);
}

}  // namespace

TEST_CASE("cuda scratch: steady-state calls make no cudaMalloc (InfoNCE, log-probs, layers, decode)") {
  if (vptest::skip_without_cuda()) return;
  const int64_t n = 64, m = 80, d = 32, v = 500;
  DevBuf<float> q(vptest::random_floats(n * d, 1)), k(vptest::random_floats(m * d, 2)), lse(n), dq(n * d),
      dk(m * d), hidden(vptest::random_floats(n * d, 3)), weight(vptest::random_floats(v * d, 4)), lp(n),
      logits(vptest::random_floats(n * v, 5)), dlog(n * v);
  std::vector<int32_t> pos(n), tg(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(i % m), tg[i] = static_cast<int32_t>((i * 7) % v);
  DevBuf<int32_t> dtg(tg);
  std::vector<int32_t> base = {0, 5}, nk = {5, 3};
  DevBuf<int32_t> dbase(base), dnk(nk);
  DevBuf<float> dq1(2 * 2 * 8), kc(vptest::random_floats(8 * 8, 6)), vc(vptest::random_floats(8 * 8, 7)), dout(2 * 2 * 8);
  auto round = [&] {
    double loss64 = 0, dlt = 0;
    REQUIRE(vp::info_nce_with_grad(dview(q.p, {n, d}), dview(k.p, {m, d}),
                                   vp::TensorView(pos.data(), {n}, vp::DType::kInt32), vp::InfoNceOptions{},
                                   dview(lse.p, {n}), dview(dq.p, {n, d}), dview(dk.p, {m, d}), &loss64, &dlt)
                .ok());
    REQUIRE(vp::linear_token_logprobs(dview(hidden.p, {n, d}), dview(weight.p, {v, d}),
                                      dview(dtg.p, {n}, vp::DType::kInt32), dview(lp.p, {n}), {})
                .ok());
    float loss = 0;
    REQUIRE(vp::cuda::cross_entropy_forward(logits.p, dtg.p, n, v, &loss, lse.p, nullptr).ok());
    REQUIRE(vp::cuda::cross_entropy_backward(logits.p, dtg.p, lse.p, n, v, 1.0f, dlog.p).ok());
    REQUIRE(vp::cuda::decode_attention(dq1.p, kc.p, vc.p, dbase.p, dnk.p, 2, 2, 1, 8, 0.3f, 5, dout.p).ok());
    REQUIRE(vp::cuda::synchronize().ok());
  };
  round();
  const vp::cuda::ScratchStats first = vp::cuda::scratch_stats();
  for (int i = 0; i < 3; ++i) round();
  const vp::cuda::ScratchStats later = vp::cuda::scratch_stats();
  CHECK(later.allocations == first.allocations);
  CHECK(later.frees == first.frees);
  CHECK(later.leased == 0);
  MESSAGE("scratch pool: " << later.blocks << " blocks, " << later.bytes << " bytes, " << later.allocations
                           << " cudaMalloc calls in all");
}

TEST_CASE("cuda layers: cross-entropy counts 2^24 + 1 targets exactly") {
  if (vptest::skip_without_cuda()) return;
  const int64_t n = (1LL << 24) + 1, vocab = 1;  // float counting would round 16777217 to 16777216
  DevBuf<float> logits(std::vector<float>(static_cast<size_t>(n), 0.0f));
  DevBuf<int32_t> tg(std::vector<int32_t>(static_cast<size_t>(n), 0));
  float loss = -1.0f;
  int64_t count = 0;
  REQUIRE(vp::cuda::cross_entropy_forward(logits.p, tg.p, n, vocab, &loss, nullptr, &count).ok());
  CHECK(count == n);
  CHECK(loss == 0.0f);
}

TEST_CASE("cuda decode attention: zero keys give zeros, counts past max_keys give NaN rows, the rest match the CPU") {
  if (vptest::skip_without_cuda()) return;
  const int64_t n = 3, H = 4, Hkv = 2, D = 40, max_keys = 6;
  auto q = vptest::random_floats(n * H * D, 11), kc = vptest::random_floats(20 * Hkv * D, 12),
       vc = vptest::random_floats(20 * Hkv * D, 13);
  std::vector<int32_t> base = {0, 6, 12}, nk = {6, 0, 4};
  std::vector<float> ref(n * H * D);
  REQUIRE(vp::decode_attention(q.data(), kc.data(), vc.data(), base.data(), nk.data(), n, H, Hkv, D, 0.2f, max_keys,
                               ref.data())
              .ok());
  DevBuf<float> dq(q), dk(kc), dv(vc), dout(vptest::poisoned(n * H * D));
  DevBuf<int32_t> dbase(base), dnk(nk);
  REQUIRE(vp::cuda::decode_attention(dq.p, dk.p, dv.p, dbase.p, dnk.p, n, H, Hkv, D, 0.2f, max_keys, dout.p).ok());
  CHECK(vptest::rel_error(dout.get(), ref) < 1e-5);
  std::vector<int32_t> bad = {6, 100, 4};  // past max_keys: the kernel stays in its scratch
  DevBuf<int32_t> dbad(bad);
  REQUIRE(vp::cuda::decode_attention(dq.p, dk.p, dv.p, dbase.p, dbad.p, n, H, Hkv, D, 0.2f, max_keys, dout.p).ok());
  REQUIRE(vp::cuda::synchronize().ok());
  auto got = dout.get();
  for (int64_t e = 0; e < H * D; ++e) CHECK(std::isnan(got[H * D + e]));
  for (int64_t e = 0; e < H * D; ++e) CHECK(got[e] == doctest::Approx(ref[e]).epsilon(1e-4));
}

TEST_CASE("cuda grids: rows or heads past CUDA's grid limits are a clear Invalid status") {
  if (vptest::skip_without_cuda()) return;
  // Checked before any memory is touched: null pointers never get read.
  vp::Status s = vp::cuda::rmsnorm_forward(nullptr, nullptr, 1LL << 31, 1, 1e-5f, nullptr, nullptr);
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  CHECK(contains(s.message(), "grid"));
  // 70000 query heads of dimension 1: gridDim.y would exceed 65535.
  const int64_t H = 70000;
  DevBuf<float> q(vptest::random_floats(H, 1)), k(std::vector<float>{0.5f}), v(std::vector<float>{2.0f}), out(H),
      lse(H);
  vp::AttentionOptions o;
  s = vp::attention(dview(q.p, {1, H, 1}), dview(k.p, {1, 1, 1}), dview(v.p, {1, 1, 1}), o, dview(out.p, {1, H, 1}),
                    dview(lse.p, {H, 1}));
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  CHECK(contains(s.message(), "in y"));
}

TEST_CASE("cuda grpo: device cuSeqlens are validated") {
  if (vptest::skip_without_cuda()) return;
  const int64_t T = 8;
  auto lpv = vptest::random_floats(T, 1, -3, -1);
  DevBuf<float> lp(lpv), old(lpv), adv(std::vector<float>(T, 0.5f)), dl(T);
  for (const std::vector<int32_t>& cu : {std::vector<int32_t>{0, 5, 3, 8}, {1, 4, 8}, {0, 4, 7}}) {
    DevBuf<int32_t> dcu(cu);
    vp::GrpoInputs in;
    in.logprobs = dview(lp.p, {T});
    in.old_logprobs = dview(old.p, {T});
    in.advantages = dview(adv.p, {T});
    in.cu_seqlens = dview(dcu.p, {static_cast<int64_t>(cu.size())}, vp::DType::kInt32);
    vp::GrpoStats st;
    vp::Status s = vp::grpo_loss(in, {}, dview(dl.p, {T}), &st);
    CAPTURE(s.message());
    CHECK(s.code() == vp::StatusCode::kOutOfRange);
    CHECK(contains(s.message(), "cuSeqlens"));
  }
}

TEST_CASE("cuda pack: the gather copies 4-byte rows that start on a 2-byte boundary") {
  if (vptest::skip_without_cuda()) return;
  const int64_t rows = 6, width = 2;  // bfloat16 [6, 2]: 4-byte rows
  std::vector<uint16_t> src(1 + rows * width);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(1000 + i);
  DevBuf<uint16_t> dsrc(src), dout(1 + 4 * width);
  const std::vector<int32_t> source = {5, 0, 3, 3};
  vp::PackRows s;
  s.a = dsrc.p + 1;  // 2-byte aligned, not 4
  s.rows_a = rows;
  REQUIRE(vp::cuda::pack_gather(s, source.data(), 4, width, vp::DType::kBFloat16, dout.p + 1).ok());
  auto got = dout.get();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t c = 0; c < width; ++c) CHECK(got[1 + i * width + c] == src[1 + source[i] * width + c]);
}

TEST_CASE("cuda scratch lease for host code (the bindings' temporaries): reused, released; Unavailable without a GPU") {
  void* p = nullptr;
  size_t slot = 0;
  if (!vp::cuda::available()) {
    const vp::Status s = vp::cuda::scratch_lease(1000, &p, &slot);
    CHECK(s.code() == vp::StatusCode::kUnavailable);
    return;
  }
  REQUIRE(vp::cuda::scratch_lease(1000, &p, &slot).ok());
  REQUIRE(p != nullptr);
  vp::cuda::scratch_release(slot);
  const vp::cuda::ScratchStats first = vp::cuda::scratch_stats();
  for (int i = 0; i < 3; ++i) {
    void* q = nullptr;
    size_t s2 = 0;
    REQUIRE(vp::cuda::scratch_lease(1000, &q, &s2).ok());
    vp::cuda::scratch_release(s2);
  }
  const vp::cuda::ScratchStats later = vp::cuda::scratch_stats();
  CHECK(later.allocations == first.allocations);
  CHECK(later.leased == 0);
}
