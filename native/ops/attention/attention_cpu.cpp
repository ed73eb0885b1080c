// CPU attention driver: splits a validated problem into work items, schedules
// them over the thread pool (largest first, taken from a shared counter so the
// causal triangle's uneven items still balance) and owns every buffer (its
// workspaces are kept per calling thread between calls: core/scratch.h).
//
// Forward items: (sequence, query head, query block). Each writes its own rows
// of out and lse.
// Backward items: (sequence, KV head, range of key blocks). Each writes its key
// blocks of dk/dv and accumulates dq for the rows of its sequence and the query
// heads of its group. When a sequence x KV head is one item, it owns those dq
// rows outright (no buffer); when there are too few items to feed every thread,
// a sequence x KV head is split into key ranges ("chunks"), chunk 0 accumulates
// into dq and the others into private buffers that are summed at the end
// (bounded, see kMaxPartialBytes). No atomics, no locks, deterministic for a
// given thread count. The forward goes through attention_forward_nonfinite
// (attention_nonfinite.cpp), which makes NaN/Inf in q, k, v reach the outputs.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "attention_kernels.h"
#include "core/scratch.h"
#include "vp/attention.h"
#include "vp/cpu_features.h"
#include "vp/thread_pool.h"

namespace vp {
namespace {

using detail::AttnKernels;

constexpr size_t kMaxPartialBytes = size_t{32} << 20;

// The forward's head-major copy of K and V (see forward_finite), at most this many
// bytes at a time: groups of whole KV heads (one head even when it alone is larger).
constexpr size_t kMaxKvCopyBytes = size_t{4} << 20;
constexpr size_t kMinKvCopyBytes = size_t{2} << 20;

// KV heads a forward copy group holds (Hkv when no copy is made: one KV head).
int64_t kv_copy_heads(const AttentionProblem& p) {
  const size_t per_head = static_cast<size_t>(p.total_k) * p.head_dim * 2 * sizeof(float);
  return std::clamp<int64_t>(static_cast<int64_t>(kMaxKvCopyBytes / std::max<size_t>(per_head, 1)), 1, p.kv_heads);
}

const AttnKernels& kernels() {
  static const AttnKernels k512 = detail::attention_kernels_avx512();
  static const AttnKernels k2 = detail::attention_kernels_avx2();
  static const AttnKernels kg = detail::attention_kernels_generic();
  switch (active_isa()) {
    case Isa::kAvx512: return k512;
    case Isa::kAvx2: return k2;
    default: return kg;
  }
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using FloatBuf = std::unique_ptr<float, FreeDeleter>;

FloatBuf alloc_floats(size_t n) {
  size_t bytes = ((std::max<size_t>(n, 1) * sizeof(float) + 63) / 64) * 64;
  return FloatBuf(static_cast<float*>(std::aligned_alloc(64, bytes)));
}

int threads_for(const AttentionProblem& p, int64_t items) {
  int t = p.threads > 0 ? std::min(p.threads, num_threads()) : num_threads();
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(t, items)));
}

// Run fn(item, thread) for every item in `order`, items taken largest-first.
template <class Fn>
void run_items(int threads, int64_t n, const Fn& fn) {
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  parallel_run(threads, [&](int t, int) {
    for (;;) {
      int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) break;
      fn(i, t);
    }
  });
}

// Query rows of a sequence that see key j (causal, bottom-right): i >= j - off.
inline int64_t visible_rows(const AttentionProblem& p, int64_t tq, int64_t tk, int64_t k0) {
  if (!p.causal) return tq;
  return std::max<int64_t>(0, tq - std::max<int64_t>(0, k0 - (tk - tq)));
}

}  // namespace

namespace cpu {

size_t attention_workspace_bytes(const AttentionProblem& p, bool backward) {
  const AttnKernels& K = kernels();
  const int64_t items = backward ? p.batch * p.kv_heads : p.total_q * p.heads;
  const int threads = threads_for(p, std::max<int64_t>(1, items));
  size_t per = backward ? K.bwd_scratch(p.head_dim) : K.fwd_scratch(p.head_dim);
  size_t bytes = static_cast<size_t>(threads) * per * sizeof(float);
  if (backward) bytes += static_cast<size_t>(p.heads * p.total_q) * sizeof(float) + kMaxPartialBytes;
  else if (p.kv_heads > 1 && static_cast<size_t>(p.total_k * p.kv_heads * p.head_dim) * 2 * sizeof(float) >= kMinKvCopyBytes)
    bytes += static_cast<size_t>(kv_copy_heads(p) * p.total_k * p.head_dim) * 2 * sizeof(float);
  return bytes;
}

namespace {

// With several KV heads, one head's keys (and values) lie Hkv·D floats apart in the
// caller's [T, Hkv, D] rows: at T = 2048, Hkv = 8, D = 64 a query block's pass over
// them touches 2048 pages of 4 KB, more than the TLB holds, and runs at 59 GFLOP/s
// a core where the same head stored contiguously runs at 95 (Zen 4, one thread,
// measured). So the forward copies K and V head-major ([heads][totalK][D], one
// parallel pass over them) for a group of KV heads at a time (kv_copy_heads, at
// most kMaxKvCopyBytes), and runs that group's items on the copy.
Status forward_finite(const AttentionProblem& p, const float* q, const float* k, const float* v, float* out,
                      float* lse) {
  const AttnKernels& K = kernels();
  const int64_t D = p.head_dim, G = p.heads / p.kv_heads, Tk = p.total_k;
  // (Below kMinKvCopyBytes of K and V the pages fit the TLB and the copy would cost more than it saves.)
  const bool copy = p.kv_heads > 1 && static_cast<size_t>(Tk * p.kv_heads * D) * 2 * sizeof(float) >= kMinKvCopyBytes;
  const int64_t group = copy ? kv_copy_heads(p) : p.kv_heads;
  const int pool = p.threads > 0 ? std::min(p.threads, num_threads()) : num_threads();
  const size_t per = K.fwd_scratch(D);
  // Workspaces kept per calling thread between calls (core/scratch.h).
  ScratchLease scratch(ScratchSlot::kAttnFwd, sizeof(float) * per * static_cast<size_t>(pool));
  ScratchLease kv(ScratchSlot::kAttnFwdKv, copy ? sizeof(float) * static_cast<size_t>(group * Tk * D) * 2 : 0);
  if (!scratch.ok() || !kv.ok()) return Status::Internal("attention: out of memory for the CPU scratch");
  struct Item {
    int64_t s, h, qb, cost;
  };
  std::vector<Item> items;
  for (int64_t g0 = 0; g0 < p.kv_heads; g0 += group) {
    const int64_t g1 = std::min(p.kv_heads, g0 + group);
    items.clear();
    for (int64_t s = 0; s < p.batch; ++s) {
      const int64_t tq = p.cu_q[s + 1] - p.cu_q[s], tk = p.cu_k[s + 1] - p.cu_k[s];
      const int64_t nqb = (tq + K.fwd_bq - 1) / K.fwd_bq;
      for (int64_t qb = 0; qb < nqb; ++qb) {
        const int64_t last = std::min<int64_t>(tq, (qb + 1) * K.fwd_bq) - 1;
        const int64_t keys = p.causal ? std::clamp<int64_t>(last + 1 + tk - tq, 0, tk) : tk;
        for (int64_t h = g0 * G; h < g1 * G; ++h) items.push_back({s, h, qb, keys + 8});
      }
    }
    if (items.empty()) continue;
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });
    detail::AttnFwdArgs args{&p, q, k, v, out, lse, p.kv_heads * D, D, 0};
    if (copy) {
      float* kc = kv.as<float>();
      float* vc = kc + (g1 - g0) * Tk * D;
      auto body = [&](int64_t j0, int64_t j1, int) {
        for (int64_t hk = g0; hk < g1; ++hk)
          for (int64_t j = j0; j < j1; ++j) {
            std::memcpy(kc + ((hk - g0) * Tk + j) * D, k + (j * p.kv_heads + hk) * D, D * sizeof(float));
            std::memcpy(vc + ((hk - g0) * Tk + j) * D, v + (j * p.kv_heads + hk) * D, D * sizeof(float));
          }
      };
      if (pool <= 1) body(0, Tk, 0);
      else parallel_for(Tk, 64, body);
      args = detail::AttnFwdArgs{&p, q, kc, vc, out, lse, D, Tk * D, g0};
    }
    const int threads = threads_for(p, static_cast<int64_t>(items.size()));
    run_items(threads, static_cast<int64_t>(items.size()), [&](int64_t i, int t) {
      const Item& it = items[i];
      K.fwd_item(args, it.s, it.h, it.qb, scratch.as<float>() + per * t);
    });
  }
  return Status::Ok();
}

}  // namespace

Status attention_forward(const AttentionProblem& p, const float* q, const float* k, const float* v,
                         float* out, float* lse) {
  return detail::attention_forward_nonfinite(p, q, k, v, out, lse, forward_finite);
}

Status attention_backward(const AttentionProblem& p, const float* dout, const float* q,
                          const float* k, const float* v, const float* out, const float* lse,
                          float* dq, float* dk, float* dv) {
  const AttnKernels& K = kernels();
  const int64_t H = p.heads, D = p.head_dim, G = p.heads / p.kv_heads;
  const int pool = p.threads > 0 ? std::min(p.threads, num_threads()) : num_threads();

  // delta = rowsum(dout * out), and dq = 0 (items accumulate into it).
  ScratchLease delta_lease(ScratchSlot::kAttnBwdDelta, sizeof(float) * static_cast<size_t>(H * p.total_q));
  if (!delta_lease.ok()) return Status::Internal("attention_backward: out of memory for delta");
  float* const delta = delta_lease.as<float>();
  {
    const int64_t rows = p.total_q;
    const int64_t grain = std::max<int64_t>(16, 4096 / std::max<int64_t>(1, H * D));
    auto body = [&](int64_t r0, int64_t r1, int) {
      K.delta_rows(p, dout, out, r0, r1, delta);
      std::memset(dq + r0 * H * D, 0, sizeof(float) * static_cast<size_t>((r1 - r0) * H * D));
    };
    if (pool <= 1) body(0, rows, 0);
    else parallel_for(rows, grain, body);
  }

  // Items: per sequence x KV head, the key blocks split into chunks of balanced cost.
  struct Unit {
    int64_t s, g, nkb, cost, chunks;
  };
  std::vector<Unit> units;
  int64_t total_cost = 0;
  for (int64_t s = 0; s < p.batch; ++s) {
    const int64_t tq = p.cu_q[s + 1] - p.cu_q[s], tk = p.cu_k[s + 1] - p.cu_k[s];
    const int64_t nkb = (tk + K.bwd_bk - 1) / K.bwd_bk;
    if (nkb == 0) continue;
    int64_t cost = 0;
    for (int64_t kb = 0; kb < nkb; ++kb) cost += G * visible_rows(p, tq, tk, kb * K.bwd_bk) + 16;
    for (int64_t g = 0; g < p.kv_heads; ++g) {
      units.push_back({s, g, nkb, cost, 1});
      total_cost += cost;
    }
  }
  if (units.empty()) return Status::Ok();

  const int64_t nunits = static_cast<int64_t>(units.size());
  if (pool > 1 && nunits < 2 * pool) {
    // Too few units to keep every thread busy: split the big ones, within a memory bound.
    const int64_t target = std::max<int64_t>(1, total_cost / (2 * pool));
    for (auto& u : units) u.chunks = std::clamp<int64_t>((u.cost + target - 1) / target, 1, u.nkb);
    auto partial_bytes = [&]() {
      size_t b = 0;
      for (auto& u : units)
        b += static_cast<size_t>(u.chunks - 1) * (p.cu_q[u.s + 1] - p.cu_q[u.s]) * G * D * sizeof(float);
      return b;
    };
    while (partial_bytes() > kMaxPartialBytes) {
      Unit* big = nullptr;
      for (auto& u : units)
        if (u.chunks > 1 && (!big || u.chunks > big->chunks)) big = &u;
      if (!big) break;
      big->chunks -= 1;
    }
  }

  struct Item {
    int64_t s, g, kb0, kb1, cost;
    float* dq_base;
    int64_t dq_ld;
    bool zero_first;  // a private partial buffer (zeroed by the item itself)
  };
  std::vector<Item> items;
  std::vector<FloatBuf> partials;
  struct Reduce {
    int64_t s, g;
    std::vector<float*> parts;
  };
  std::vector<Reduce> reduces;
  for (auto& u : units) {
    const int64_t qbeg = p.cu_q[u.s], tq = p.cu_q[u.s + 1] - qbeg, tk = p.cu_k[u.s + 1] - p.cu_k[u.s];
    float* dq_own = dq + qbeg * H * D + u.g * G * D;
    if (u.chunks == 1) {
      items.push_back({u.s, u.g, 0, u.nkb, u.cost, dq_own, H * D, false});
      continue;
    }
    Reduce red{u.s, u.g, {}};
    const int64_t per_chunk = (u.cost + u.chunks - 1) / u.chunks;
    int64_t kb = 0;
    for (int64_t c = 0; c < u.chunks && kb < u.nkb; ++c) {
      int64_t kb1 = kb, acc = 0;
      while (kb1 < u.nkb && (acc < per_chunk || kb1 == kb || c == u.chunks - 1)) {
        acc += G * visible_rows(p, tq, tk, kb1 * K.bwd_bk) + 16;
        ++kb1;
      }
      if (c == 0) {
        items.push_back({u.s, u.g, kb, kb1, acc, dq_own, H * D, false});
      } else {
        FloatBuf buf = alloc_floats(static_cast<size_t>(tq * G * D));
        if (!buf) return Status::Internal("attention_backward: out of memory for a dq partial");
        items.push_back({u.s, u.g, kb, kb1, acc, buf.get(), G * D, true});
        red.parts.push_back(buf.get());
        partials.push_back(std::move(buf));
      }
      kb = kb1;
    }
    if (!red.parts.empty()) reduces.push_back(std::move(red));
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });

  const int threads = threads_for(p, static_cast<int64_t>(items.size()));
  const size_t per = K.bwd_scratch(D);
  ScratchLease scratch(ScratchSlot::kAttnBwd, sizeof(float) * per * threads);
  if (!scratch.ok()) return Status::Internal("attention_backward: out of memory for the CPU scratch");
  detail::AttnBwdArgs args{&p, dout, q, k, v, lse, delta, dk, dv};
  run_items(threads, static_cast<int64_t>(items.size()), [&](int64_t i, int t) {
    const Item& it = items[i];
    if (it.zero_first) {
      const int64_t tq = p.cu_q[it.s + 1] - p.cu_q[it.s];
      std::memset(it.dq_base, 0, sizeof(float) * static_cast<size_t>(tq * G * D));
    }
    K.bwd_item(args, it.s, it.g, it.kb0, it.kb1, it.dq_base, it.dq_ld, scratch.as<float>() + per * t);
  });

  // Sum the partial dq buffers into dq (rows split across threads).
  for (auto& red : reduces) {
    const int64_t qbeg = p.cu_q[red.s], tq = p.cu_q[red.s + 1] - qbeg;
    float* base = dq + qbeg * H * D + red.g * G * D;
    auto body = [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r)
        for (float* part : red.parts) {
          float* dst = base + r * H * D;
          const float* src = part + r * G * D;
          for (int64_t x = 0; x < G * D; ++x) dst[x] += src[x];
        }
    };
    if (pool <= 1) body(0, tq, 0);
    else parallel_for(tq, 64, body);
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace vp
