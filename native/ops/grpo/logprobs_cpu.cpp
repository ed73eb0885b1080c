// CPU token log-probs: plain (one online log-sum-exp pass per row) and through
// the output projection (the fused engine below).
//
// The engine, for logits = hidden · weightᵀ / T, works on super-blocks of S
// rows (S a multiple of the micro-kernel's MR) and vocabulary chunks of VC
// columns; threads take (super-block, chunk) items dynamically.
//
//   once per call: pack weight for the logits GEMM (WB1) and hidden for the
//   logits GEMM (HA), each the size of its input, never N×V. The backward's
//   dhidden and dweight GEMMs read weight and hidden in place (row stride d:
//   packing them measured no faster and cost another V×d + N×d floats).
//
//   P1(k, c): L_k[:, c] = HA[k] · WB1[c]ᵀ     one S×VC tile of logits
//             per row: online max / sum-exp over the chunk, the target's logit
//   combine(k): the per-thread partial sums → lse, logp (double; also
//             returned to the caller when asked, so one backward call gives
//             the forward's values too);
//             g = ∂loss/∂logp (the caller's grad function: given dlogp, or GRPO)
//   P2(k, c): T = g · (onehot − exp(L_k[:, c] − lse))     in place
//             dweight[c] (+)= Tᵀ · hidden[k]   (the item owns these rows of dweight)
//             dH_t       (+)= T · weight[c]    (per-thread partial, summed after)
//
// Forward is one parallel region of P1 items. Backward runs region k =
// { P2(k−1, ·), P1(k, ·) } for k = 0..K, so each region both finishes one
// super-block and starts the next (one barrier per super-block, and the L
// tiles of a super-block are reused in cache a region later). L holds S×V
// floats per super-block (two buffers, a few MB each: S is chosen so), so the
// logits are computed once and nothing of size N×V exists. Forward costs one
// projection, backward three (logits, dhidden, dweight): what PyTorch's
// matmul → log_softmax → gather → autograd pays, without its N×V logits,
// softmax and gradient buffers.
//
// The GEMMs run on the strided micro-kernels of ops/matmul/gemm_kernels.h, on
// packed panels and on the scratch tiles in place (no per-tile packing); the
// row log-sum-exp and softmax are the shared ones of ops/layers/row_lse.h.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/scratch.h"
#include "grpo_cpu.h"
#include "ops/matmul/gemm_kernels.h"
#include "ops/layers/row_lse.h"
#include "vp/thread_pool.h"

namespace vp::cpu {
namespace {

using LpKernels = detail::GemmKernelInfo;
using detail::RowLse;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kKC = 256;         // k-block of the logits GEMM

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

std::string bad_row_message(const char* fn, int64_t row, const char* what) {
  return std::string(fn) + ": the log-sum-exp of row " + std::to_string(row) +
         " is not finite (" + what + ")";
}

// Tuning knobs (VP_LP_VC, VP_LP_S) for experiments; 0 = automatic.
int64_t env_int(const char* name) {
  const char* s = std::getenv(name);
  return s ? std::atoll(s) : 0;
}

// The per-task log-sum-exp states live in the task's workspace (2 floats each).
static_assert(sizeof(RowLse) == 2 * sizeof(float));
RowLse* task_lse(float* p) { return reinterpret_cast<RowLse*>(p); }

struct Plan {
  int64_t mr, nr, vc, s, ldt;
  int64_t nchunks, v_panels, d_panels, n_pad, blocks;
  int tasks;
  bool backward;
};

Plan make_plan(const LpKernels& K, int64_t n, int64_t d, int64_t v, int threads, bool backward) {
  Plan p{};
  p.backward = backward;
  p.mr = K.mr;
  p.nr = K.nr;
  int64_t vc = env_int("VP_LP_VC");
  if (vc <= 0) vc = d <= 384 ? 256 : 128;
  p.vc = std::max<int64_t>(p.nr, round_up(vc, p.nr));
  p.nchunks = (v + p.vc - 1) / p.vc;
  p.v_panels = (v + p.nr - 1) / p.nr;
  p.d_panels = (d + p.nr - 1) / p.nr;
  // A chunk's tile row holds VC logits, padded to whole MR panels (the dweight
  // GEMM reads them) plus a little, so rows never alias the same cache sets.
  p.ldt = round_up(p.vc, p.mr) + 16;
  int64_t s = env_int("VP_LP_S");
  if (s <= 0) {
    // Backward keeps a super-block's logits (S × V) from P1 to P2: about
    // 32 MiB of them (two such buffers); forward only one tile per thread.
    // Each super-block adds its S rows into the whole dweight (V × d) with one
    // GEMM of depth S, so a larger S reads and writes dweight fewer times: at
    // N 8192, d 512, V 32768, S 240 instead of 56 ran the backward about 19 %
    // faster (single thread, CPU time, AMD EPYC Zen 4).
    s = backward ? (int64_t{1} << 23) / (p.nchunks * p.ldt) : 240;
    s = std::clamp<int64_t>(s, 2 * p.mr, 240);
  }
  s = std::max<int64_t>(p.mr, s / p.mr * p.mr);
  p.s = std::min(s, std::max<int64_t>(p.mr, round_up(n, p.mr)));
  p.n_pad = round_up(n, p.mr);
  p.blocks = (n + p.s - 1) / p.s;
  p.tasks = std::max(1, threads);
  return p;
}

struct Sizes {
  size_t wb1, ha, l, rows, per_task;
  size_t total(int tasks) const {
    return wb1 + ha + l + rows + per_task * static_cast<size_t>(tasks);
  }
};

// Floats of each workspace buffer.
Sizes plan_sizes(const Plan& p, int64_t n, int64_t d, int64_t v) {
  Sizes z{};
  z.wb1 = static_cast<size_t>(p.v_panels * p.nr * d);
  z.ha = static_cast<size_t>(p.n_pad * d);
  if (p.backward) {
    z.l = static_cast<size_t>(2 * p.nchunks * p.s * p.ldt);  // two super-blocks in flight
    z.rows = static_cast<size_t>(2 * 4 * p.s);                // tl, lse, logp, g per buffer
    z.per_task = static_cast<size_t>(2 * 2 * p.s + p.s * d);  // stats per buffer, dH partial
  } else {
    z.l = 0;
    z.rows = static_cast<size_t>(n);                                 // tl
    z.per_task = static_cast<size_t>(2 * n + p.s * p.ldt);           // stats, one tile
  }
  return z;
}

// weight [v, d] → NR-column panels over the vocabulary, k over d: panel q is
// d × NR (weight rows q·NR.. transposed), zero-padded past v. (logits GEMM's B)
void pack_weight_vk(const float* w, int64_t v, int64_t d, int64_t nr, int64_t panels, float* out) {
  parallel_for(panels, 4, [&](int64_t q0, int64_t q1, int) {
    for (int64_t q = q0; q < q1; ++q) {
      float* dst = out + q * d * nr;
      const int64_t rows = std::min<int64_t>(nr, v - q * nr);
      for (int64_t k0 = 0; k0 < d; k0 += 64) {  // blocked so the reads stay in L1
        const int64_t k1 = std::min(d, k0 + 64);
        for (int64_t c = 0; c < nr; ++c) {
          if (c < rows) {
            const float* src = w + (q * nr + c) * d;
            for (int64_t k = k0; k < k1; ++k) dst[k * nr + c] = src[k];
          } else {
            for (int64_t k = k0; k < k1; ++k) dst[k * nr + c] = 0.0f;
          }
        }
      }
    }
  });
}

// hidden [n, d] → MR-row panels, k over d: panel i is d × MR, zero-padded past n. (logits GEMM's A)
void pack_rows(const float* h, int64_t n, int64_t n_pad, int64_t d, int64_t mr, float* out) {
  parallel_for(n_pad / mr, 8, [&](int64_t p0, int64_t p1, int) {
    for (int64_t ip = p0; ip < p1; ++ip) {
      float* dst = out + ip * mr * d;
      for (int64_t r = 0; r < mr; ++r) {
        const int64_t row = ip * mr + r;
        if (row < n) {
          const float* src = h + row * d;
          for (int64_t k = 0; k < d; ++k) dst[k * mr + r] = src[k];
        } else {
          for (int64_t k = 0; k < d; ++k) dst[k * mr + r] = 0.0f;
        }
      }
    }
  });
}

// Runs items [0, count) on the pool, handing them out dynamically.
template <typename F>
void run_items(int tasks, int64_t count, F&& item) {
  std::atomic<int64_t> next{0};
  parallel_run(tasks, [&](int t, int) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) break;
      item(t, i);
    }
  });
}

}  // namespace

// ---- plain token log-probs -------------------------------------------------------------

Status token_logprobs(const float* logits, int64_t n, int64_t v, const int32_t* targets,
                      float inv_t, float* out) {
  std::atomic<int64_t> bad{n};
  parallel_for(n, std::max<int64_t>(1, 65536 / std::max<int64_t>(v, 1)), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* x = logits + i * v;
      const float lse = detail::row_lse(x, v, inv_t).lse();
      const float lp = x[targets[i]] * inv_t - lse;
      out[i] = lp;
      if (!std::isfinite(lse) || std::isnan(lp)) {
        int64_t cur = bad.load();
        while (i < cur && !bad.compare_exchange_weak(cur, i)) {
        }
      }
    }
  });
  if (bad.load() < n)
    return Status::OutOfRange(bad_row_message("tokenLogprobs", bad.load(),
                                              "the row holds NaN or +Infinity, or only -Infinity"));
  return Status::Ok();
}

Status token_logprobs_backward(const float* dlogprobs, const float* logits, int64_t n, int64_t v,
                               const int32_t* targets, float inv_t, float* dlogits) {
  std::atomic<int64_t> bad{n};
  parallel_for(n, std::max<int64_t>(1, 32768 / std::max<int64_t>(v, 1)), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* x = logits + i * v;
      float* o = dlogits + i * v;
      const float lse = detail::row_lse(x, v, inv_t).lse();
      if (!std::isfinite(lse)) {
        int64_t cur = bad.load();
        while (i < cur && !bad.compare_exchange_weak(cur, i)) {
        }
        continue;
      }
      const float g = dlogprobs[i] * inv_t;
      detail::row_scaled_softmax(x, v, inv_t, lse, -g, o);
      o[targets[i]] += g;
    }
  });
  if (bad.load() < n)
    return Status::OutOfRange(bad_row_message("tokenLogprobsBackward", bad.load(),
                                              "the row holds NaN or +Infinity, or only -Infinity"));
  return Status::Ok();
}

// ---- the fused engine ----------------------------------------------------------------------

size_t linear_logprobs_workspace(int64_t n, int64_t d, int64_t v, int threads, bool backward) {
  if (n == 0 || v == 0) return 0;
  const Plan p = make_plan(detail::gemm_kernel_for(active_isa()), n, d, v, threads, backward);
  return plan_sizes(p, n, d, v).total(p.tasks) * sizeof(float);
}

namespace {

// The logits tile of rows [r0, r0 + rows) × chunk c into C (ldc), scaled by alpha.
void logits_tile(const LpKernels& K, const Plan& P, const float* ha, const float* wb1, int64_t r0,
                 int64_t rows, int64_t d, int64_t v0, int64_t vcur, float alpha, float* C, int64_t ldc) {
  const int64_t MR = P.mr, NR = P.nr;
  const int64_t row_panels = (rows + MR - 1) / MR;
  if (d == 0)
    for (int64_t r = 0; r < rows; ++r) std::fill(C + r * ldc, C + r * ldc + vcur, 0.0f);
  for (int64_t p0 = 0; p0 < d; p0 += kKC) {
    const int64_t kc = std::min(kKC, d - p0);
    const float beta = p0 == 0 ? 0.0f : 1.0f;
    for (int64_t jp = 0; jp * NR < vcur; ++jp) {
      const int nr = static_cast<int>(std::min<int64_t>(NR, vcur - jp * NR));
      const float* bp = wb1 + (v0 / NR + jp) * d * NR + p0 * NR;
      for (int64_t ip = 0; ip < row_panels; ++ip) {
        const int mr = static_cast<int>(std::min<int64_t>(MR, rows - ip * MR));
        K.strided(kc, ha + (r0 + ip * MR) * d + p0 * MR, MR, bp, NR, C + ip * MR * ldc + jp * NR, ldc, alpha,
               beta, mr, nr);
      }
    }
  }
}

// Each row of a tile folded into its log-sum-exp state st[r]; the targets' logits into tl.
void tile_stats(const float* C, int64_t ldc, int64_t rows, int64_t vcur, int64_t v0, const int32_t* targets,
                RowLse* st, float* tl) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = C + r * ldc;
    detail::row_lse_add(st[r], x, vcur, 1.0f);
    const int64_t tt = static_cast<int64_t>(targets[r]) - v0;
    if (tt >= 0 && tt < vcur) tl[r] = x[tt];
  }
}

// lse = log Σ_t s_t · exp(m_t − max) + max over the tasks' partials (double);
// returns false when not finite.
bool combine_row(const std::vector<const RowLse*>& st, int64_t r, float* lse) {
  float mx = kNegInf;
  bool nan = false;
  for (const RowLse* p : st) {
    mx = std::max(mx, p[r].m);
    nan |= std::isnan(p[r].s) || std::isnan(p[r].m);
  }
  double sum = 0.0;
  if (mx > kNegInf && !nan)
    for (const RowLse* p : st)
      if (p[r].m > kNegInf) sum += static_cast<double>(p[r].s) * std::exp(static_cast<double>(p[r].m) - mx);
  const double l = nan ? std::numeric_limits<double>::quiet_NaN() : mx + std::log(sum);
  *lse = static_cast<float>(l);
  return std::isfinite(*lse);
}

}  // namespace

Status linear_logprobs(const LinearLogprobsProblem& pr) {
  const LpKernels K = detail::gemm_kernel_for(active_isa());
  const int64_t n = pr.n, d = pr.d, v = pr.v;
  const bool backward = pr.grad != nullptr;
  if (backward && v * d > 0) std::memset(pr.dweight, 0, sizeof(float) * static_cast<size_t>(v * d));
  if (n == 0) return Status::Ok();
  // v >= 1 (validated).
  const Plan P = make_plan(K, n, d, v, num_threads(), backward);
  const int64_t MR = P.mr, NR = P.nr, S = P.s, LDT = P.ldt, C = P.nchunks;
  const float alpha = pr.inv_temperature;
  const Sizes Z = plan_sizes(P, n, d, v);

  // Workspaces from this thread's scratch (core/scratch.h: kept between calls up to 4 MB each,
  // larger ones on 2 MB pages: fewer first-touch faults and TLB misses in the tile loops).
  const auto floats = [](size_t n) { return n * sizeof(float); };
  ScratchLease wb1_l(ScratchSlot::kLogprobsWeight, floats(Z.wb1)), ha_l(ScratchSlot::kLogprobsHidden, floats(Z.ha)),
      l_l(ScratchSlot::kLogprobsLogits, floats(Z.l)), rows_l(ScratchSlot::kLogprobsRows, floats(Z.rows)),
      task_l(ScratchSlot::kLogprobsTasks, floats(Z.per_task * static_cast<size_t>(P.tasks)));
  float* const wb1 = wb1_l.as<float>();
  float* const ha = ha_l.as<float>();
  float* const lbuf = l_l.as<float>();
  float* const rowbuf = rows_l.as<float>();
  float* const taskbuf = task_l.as<float>();
  if (!wb1 || !ha || !lbuf || !rowbuf || !taskbuf)
    return Status::Internal(std::string(pr.fn) + ": out of memory for the workspace");

  pack_weight_vk(pr.weight, v, d, NR, P.v_panels, wb1);
  pack_rows(pr.hidden, n, P.n_pad, d, MR, ha);

  // ---- forward only: one region of (super-block, chunk) items -------------------------------
  if (!backward) {
    float* tl = rowbuf;
    std::vector<const RowLse*> sts(P.tasks);
    for (int t = 0; t < P.tasks; ++t) {
      RowLse* st = task_lse(taskbuf + Z.per_task * t);
      std::fill(st, st + n, RowLse{});
      sts[t] = st;
    }
    run_items(P.tasks, P.blocks * C, [&](int t, int64_t i) {
      const int64_t k = i / C, c = i % C;
      const int64_t r0 = k * S, rows = std::min(S, n - r0);
      const int64_t v0 = c * P.vc, vcur = std::min(P.vc, v - v0);
      float* base = taskbuf + Z.per_task * t;
      float* tile = base + 2 * n;
      logits_tile(K, P, ha, wb1, r0, rows, d, v0, vcur, alpha, tile, LDT);
      tile_stats(tile, LDT, rows, vcur, v0, pr.targets + r0, task_lse(base) + r0, tl + r0);
    });
    std::atomic<int64_t> bad{n};
    parallel_for(n, 1024, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        float lse;
        const bool ok = combine_row(sts, r, &lse);
        const float lp = static_cast<float>(static_cast<double>(tl[r]) - static_cast<double>(lse));
        if (pr.logprobs) pr.logprobs[r] = lp;
        if (!ok || !std::isfinite(lp)) {
          int64_t cur = bad.load();
          while (r < cur && !bad.compare_exchange_weak(cur, r)) {
          }
        }
      }
    });
    if (bad.load() < n)
      return Status::OutOfRange(bad_row_message(pr.fn, bad.load(), "hidden or weight holds NaN or Infinity, or the logits overflow"));
    return Status::Ok();
  }

  // ---- backward: regions { P2(k−1, ·), P1(k, ·) } ---------------------------------------------
  // Tile rows past a short last block are read (never stored) by the dhidden GEMM: keep them finite.
  std::memset(lbuf, 0, Z.l * sizeof(float));

  struct Slot {
    float *l, *tl, *lse, *logp, *g;
  };
  Slot slot[2];
  for (int b = 0; b < 2; ++b) {
    slot[b].l = lbuf + static_cast<size_t>(b) * static_cast<size_t>(C * S * LDT);
    slot[b].tl = rowbuf + b * 4 * S;
    slot[b].lse = slot[b].tl + S;
    slot[b].logp = slot[b].lse + S;
    slot[b].g = slot[b].logp + S;
  }
  auto task_st = [&](int t, int b) { return task_lse(taskbuf + Z.per_task * t + b * 2 * S); };
  auto task_dh = [&](int t) { return taskbuf + Z.per_task * t + 4 * S; };
  std::vector<char> has_dh(P.tasks);

  for (int64_t k = 0; k <= P.blocks; ++k) {
    const bool do_p1 = k < P.blocks, do_p2 = k > 0;
    const int b1 = static_cast<int>(k % 2), b2 = static_cast<int>((k + 1) % 2);  // slots of k and k−1
    const int64_t r0_1 = k * S, rows_1 = do_p1 ? std::min(S, n - r0_1) : 0;
    const int64_t r0_2 = (k - 1) * S, rows_2 = do_p2 ? std::min(S, n - r0_2) : 0;
    if (do_p1)
      for (int t = 0; t < P.tasks; ++t) std::fill(task_st(t, b1), task_st(t, b1) + rows_1, RowLse{});
    std::fill(has_dh.begin(), has_dh.end(), 0);
    const float beta_dw = k == 1 ? 0.0f : 1.0f;
    const int64_t n2 = do_p2 ? C : 0, n1 = do_p1 ? C : 0;

    run_items(P.tasks, n2 + n1, [&](int t, int64_t i) {
      if (i >= n2) {  // P1(k, c)
        const int64_t c = i - n2;
        const int64_t v0 = c * P.vc, vcur = std::min(P.vc, v - v0);
        float* tile = slot[b1].l + c * S * LDT;
        logits_tile(K, P, ha, wb1, r0_1, rows_1, d, v0, vcur, alpha, tile, LDT);
        tile_stats(tile, LDT, rows_1, vcur, v0, pr.targets + r0_1, task_st(t, b1), slot[b1].tl);
        return;
      }
      // P2(k−1, c)
      const int64_t c = i;
      const int64_t v0 = c * P.vc, vcur = std::min(P.vc, v - v0), vpad = round_up(vcur, MR);
      const int64_t row_panels = (rows_2 + MR - 1) / MR;
      const Slot& sl = slot[b2];
      float* T = sl.l + c * S * LDT;
      for (int64_t r = 0; r < rows_2; ++r) {  // T = g · (onehot − softmax), in place, zero-padded
        float* o = T + r * LDT;
        if (sl.g[r] == 0.0f) {
          std::fill(o, o + vpad, 0.0f);
          continue;
        }
        detail::row_scaled_softmax(o, vcur, 1.0f, sl.lse[r], -sl.g[r], o);
        std::fill(o + vcur, o + vpad, 0.0f);
        const int64_t tt = static_cast<int64_t>(pr.targets[r0_2 + r]) - v0;
        if (tt >= 0 && tt < vcur) o[tt] += sl.g[r];
      }
      for (int64_t jp = 0; jp < P.d_panels; ++jp) {  // dweight[chunk] (+)= Tᵀ · hidden[block]
        const int nr = static_cast<int>(std::min<int64_t>(NR, d - jp * NR));
        const float* bp = pr.hidden + r0_2 * d + jp * NR;  // read in place (ldb = d)
        for (int64_t ip = 0; ip * MR < vcur; ++ip) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, vcur - ip * MR));
          K.strided(rows_2, T + ip * MR, LDT, bp, d, pr.dweight + (v0 + ip * MR) * d + jp * NR, d, 1.0f, beta_dw,
                 mr, nr);
        }
      }
      float* dh = task_dh(t);  // dH_t (+)= T · weight[chunk]
      const float beta_dh = has_dh[t] ? 1.0f : 0.0f;
      for (int64_t jp = 0; jp < P.d_panels; ++jp) {
        const int nr = static_cast<int>(std::min<int64_t>(NR, d - jp * NR));
        const float* bp = pr.weight + v0 * d + jp * NR;  // read in place (ldb = d)
        for (int64_t ip = 0; ip < row_panels; ++ip) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, rows_2 - ip * MR));
          K.strided_at(vcur, T + ip * MR * LDT, LDT, bp, d, dh + ip * MR * d + jp * NR, d, 1.0f, beta_dh, mr, nr);
        }
      }
      has_dh[t] = 1;
    });

    if (do_p2) {  // dhidden[block k−1] = Σ_t dH_t
      float* dst = pr.dhidden + r0_2 * d;
      bool first = true;
      for (int t = 0; t < P.tasks; ++t) {
        if (!has_dh[t]) continue;
        const float* src = task_dh(t);
        if (first) std::copy(src, src + rows_2 * d, dst);
        else
          for (int64_t i = 0; i < rows_2 * d; ++i) dst[i] += src[i];
        first = false;
      }
      if (first) std::fill(dst, dst + rows_2 * d, 0.0f);
    }
    if (do_p1) {  // combine(k), then the caller's gradient
      const Slot& sl = slot[b1];
      std::vector<const RowLse*> sts(P.tasks);
      for (int t = 0; t < P.tasks; ++t) sts[t] = task_st(t, b1);
      for (int64_t r = 0; r < rows_1; ++r) {
        const bool ok = combine_row(sts, r, &sl.lse[r]);
        sl.logp[r] = static_cast<float>(static_cast<double>(sl.tl[r]) - static_cast<double>(sl.lse[r]));
        if (!ok || !std::isfinite(sl.logp[r]))
          return Status::OutOfRange(bad_row_message(pr.fn, r0_1 + r, "hidden or weight holds NaN or Infinity, or the logits overflow"));
      }
      if (pr.logprobs) std::copy(sl.logp, sl.logp + rows_1, pr.logprobs + r0_1);
      VP_RETURN_IF_ERROR((*pr.grad)(r0_1, rows_1, sl.logp, sl.g));
      for (int64_t r = 0; r < rows_1; ++r) sl.g[r] *= alpha;
    }
  }
  return Status::Ok();
}

}  // namespace vp::cpu
