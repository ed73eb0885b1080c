// CPU token log-probs: plain (one online log-sum-exp pass per row) and through
// the output projection (the fused engine below).
//
// The engine, for logits = hidden · weightᵀ · (1/T):
//
//   pack weight once into NR-column panels (WB, V×d floats)
//   for each super-block of S rows (S a multiple of MR):
//     pack the block's hidden rows into MR-row panels (HA, S×d)
//     phase 1 (threads take vocabulary chunks of VC columns):
//       L[:, chunk] = HA · WB[chunk]ᵀ            one S×VC tile of logits
//       per row: online max / sum-exp over the chunk; the target's logit
//     combine the per-thread partial sums: lse, logp (double)
//     forward only: done.  Backward:
//       g = grad(logp)                            ∂loss/∂logp per row
//     phase 2 (threads take vocabulary chunks again; L is still in cache):
//       DL  = g · (onehot − exp(L − lse))          S×VC, row-major, and DLᵀ
//       dweight[chunk] (+)= DLᵀ · hidden[block]    (this thread owns the chunk)
//       dH_t           (+)= DL · weight[chunk]     per-thread partial
//     dhidden[block] = Σ_t dH_t
//
// L is S×V floats (a few MB: S is chosen so), so the logits are computed once
// per call and nothing of size N×V exists. Forward costs one projection,
// backward three (the logits, dhidden, dweight), which is what PyTorch's
// matmul → log_softmax → gather → autograd pays as well, without its N×V
// logits, softmax and gradient buffers.
//
// The GEMMs run on the strided micro-kernels of logprobs_kernels.h, which read
// hidden and weight rows and the scratch tiles in place; only the operands of
// the logits GEMM are packed.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "grpo_cpu.h"
#include "logprobs_kernels.h"
#include "vp/thread_pool.h"

namespace vp::cpu {
namespace {

using detail::LpKernels;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kRowChunk = 2048;  // online log-sum-exp chunk of a plain row
constexpr int64_t kKC = 256;         // k-block of the logits GEMM

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, FreeDeleter>;

Buffer alloc_floats(size_t n) {
  size_t bytes = std::max<size_t>(64, ((n * sizeof(float) + 63) / 64) * 64);
  return Buffer(static_cast<float*>(std::aligned_alloc(64, bytes)));
}

bool chunk_has_nan_or_posinf(const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    if (std::isnan(x[j]) || x[j] == std::numeric_limits<float>::infinity()) return true;
  return false;
}

// log Σ_j exp(scale · x[j]) in one pass over x (chunks re-read from L1).
float row_lse(const LpKernels& K, const float* x, int64_t v, float scale) {
  float m = kNegInf, s = 0.0f;
  for (int64_t j0 = 0; j0 < v; j0 += kRowChunk) {
    const int64_t n = std::min(kRowChunk, v - j0);
    const float mc = K.row_max(x + j0, n) * scale;
    if (!(mc > kNegInf)) {  // all -inf (or NaN the max skipped)
      if (chunk_has_nan_or_posinf(x + j0, n)) return std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    if (mc > m) {
      s *= std::exp(m - mc);
      m = mc;
    }
    s += K.row_sum_exp(x + j0, n, scale, m);
  }
  return m + std::log(s);
}

std::string bad_row_message(const char* fn, int64_t row, const char* what) {
  return std::string(fn) + ": the log-sum-exp of row " + std::to_string(row) +
         " is not finite (" + what + ")";
}

// Tuning knobs (VP_LP_VC, VP_LP_S) for experiments; 0 = automatic.
int64_t env_int(const char* name) {
  const char* s = std::getenv(name);
  return s ? std::atoll(s) : 0;
}

struct Plan {
  int64_t mr, nr, vc, s, ldt;
  int64_t nchunks, v_panels, d_panels;
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
  // A chunk's tile row holds vc logits, padded to whole MR panels (the dweight
  // GEMM reads them) plus a little, so rows never alias the same cache sets.
  p.ldt = round_up(p.vc, p.mr) + 16;
  int64_t s = env_int("VP_LP_S");
  if (s <= 0) {
    // Backward keeps the super-block's logits (S × V) until phase 2: about
    // 8 MiB of them; forward only one tile per thread.
    s = backward ? (int64_t{1} << 21) / (p.nchunks * p.ldt) : 240;
    s = std::clamp<int64_t>(s, 2 * p.mr, 240);
  }
  s = std::max<int64_t>(p.mr, s / p.mr * p.mr);
  p.s = std::min(s, std::max<int64_t>(p.mr, round_up(n, p.mr)));
  p.tasks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, p.nchunks)));
  return p;
}

struct Sizes {
  size_t wb1, wb2, ha, hb, l, rows, per_task;
  size_t total() const { return wb1 + wb2 + ha + hb + l + rows; }
};

// Floats of each workspace buffer.
Sizes plan_sizes(const Plan& p, int64_t d, int64_t v) {
  Sizes z{};
  z.wb1 = static_cast<size_t>(p.v_panels * p.nr * d);
  z.ha = static_cast<size_t>(p.s * d);
  z.rows = static_cast<size_t>(5 * p.s);
  z.per_task = static_cast<size_t>(2 * p.s);
  if (p.backward) {
    z.wb2 = static_cast<size_t>(p.d_panels * p.nr * v);
    z.hb = static_cast<size_t>(p.d_panels * p.nr * p.s);
    z.l = static_cast<size_t>(p.nchunks * p.s * p.ldt);
    z.per_task += static_cast<size_t>(p.s * d);
  } else {
    z.l = static_cast<size_t>(p.tasks) * static_cast<size_t>(p.s * p.ldt);
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

// x [rows, d] → NR-column panels over d, k over the rows: panel q is
// ld_rows × NR (x[:, q·NR..] as is), zero-padded past d. (dhidden's and
// dweight's B operands)
void pack_cols(const float* x, int64_t rows, int64_t d, int64_t nr, int64_t ld_rows, float* out) {
  const int64_t panels = (d + nr - 1) / nr;
  for (int64_t q = 0; q < panels; ++q) {
    const int64_t cols = std::min<int64_t>(nr, d - q * nr);
    float* dst = out + q * ld_rows * nr;
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = x + r * d + q * nr;
      std::memcpy(dst + r * nr, src, sizeof(float) * static_cast<size_t>(cols));
      if (cols < nr) std::memset(dst + r * nr + cols, 0, sizeof(float) * static_cast<size_t>(nr - cols));
    }
  }
}

// Pack hidden rows [r0, r0 + rows) into MR-row panels (d × MR each), zero-padded to S rows.
void pack_hidden(const float* h, int64_t r0, int64_t rows, int64_t s, int64_t d, int64_t mr,
                 float* out) {
  for (int64_t ip = 0; ip < s; ip += mr) {
    float* dst = out + ip * d;
    for (int64_t r = 0; r < mr; ++r) {
      if (ip + r < rows) {
        const float* src = h + (r0 + ip + r) * d;
        for (int64_t k = 0; k < d; ++k) dst[k * mr + r] = src[k];
      } else {
        for (int64_t k = 0; k < d; ++k) dst[k * mr + r] = 0.0f;
      }
    }
  }
}

}  // namespace

// ---- plain token log-probs -------------------------------------------------------------

Status token_logprobs(const float* logits, int64_t n, int64_t v, const int32_t* targets,
                      float inv_t, float* out) {
  const LpKernels& K = detail::lp_kernels();
  std::atomic<int64_t> bad{n};
  parallel_for(n, std::max<int64_t>(1, 65536 / std::max<int64_t>(v, 1)), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* x = logits + i * v;
      const float lse = row_lse(K, x, v, inv_t);
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
  const LpKernels& K = detail::lp_kernels();
  std::atomic<int64_t> bad{n};
  parallel_for(n, std::max<int64_t>(1, 32768 / std::max<int64_t>(v, 1)), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* x = logits + i * v;
      float* o = dlogits + i * v;
      const float lse = row_lse(K, x, v, inv_t);
      if (!std::isfinite(lse)) {
        int64_t cur = bad.load();
        while (i < cur && !bad.compare_exchange_weak(cur, i)) {
        }
        continue;
      }
      const float g = dlogprobs[i] * inv_t;
      K.row_neg_softmax(x, v, inv_t, lse, g, o);
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
  Plan p = make_plan(detail::lp_kernels(), n, d, v, threads, backward);
  Sizes z = plan_sizes(p, d, v);
  return (z.total() + z.per_task * static_cast<size_t>(p.tasks)) * sizeof(float);
}

Status linear_logprobs(const LinearLogprobsProblem& pr) {
  const LpKernels& K = detail::lp_kernels();
  const int64_t n = pr.n, d = pr.d, v = pr.v;
  const bool backward = pr.grad != nullptr;
  if (backward && v > 0) std::memset(pr.dweight, 0, sizeof(float) * static_cast<size_t>(v * d));
  if (n == 0) return Status::Ok();
  // v >= 1 (validated).
  const Plan P = make_plan(K, n, d, v, num_threads(), backward);
  const int64_t MR = P.mr, NR = P.nr, S = P.s, LDT = P.ldt;
  const float alpha = pr.inv_temperature;
  const Sizes Z = plan_sizes(P, d, v);

  Buffer wb1 = alloc_floats(Z.wb1), wb2 = alloc_floats(Z.wb2), ha = alloc_floats(Z.ha),
         hb = alloc_floats(Z.hb), lbuf = alloc_floats(Z.l), rowbuf = alloc_floats(Z.rows),
         taskbuf = alloc_floats(Z.per_task * static_cast<size_t>(P.tasks));
  if (!wb1 || !wb2 || !ha || !hb || !lbuf || !rowbuf || !taskbuf)
    return Status::Internal(std::string(pr.fn) + ": out of memory for the workspace");
  // Tile rows past a short last block are read (never stored) by the GEMMs: keep them finite.
  std::memset(lbuf.get(), 0, Z.l * sizeof(float));

  pack_weight_vk(pr.weight, v, d, NR, P.v_panels, wb1.get());
  if (backward) {
    parallel_for(P.d_panels, 1, [&](int64_t q0, int64_t q1, int) {
      for (int64_t q = q0; q < q1; ++q) {
        // panel q of WB2: weight[:, q·NR..] for all v, V × NR
        const int64_t cols = std::min<int64_t>(NR, d - q * NR);
        float* dst = wb2.get() + q * v * NR;
        for (int64_t r = 0; r < v; ++r) {
          std::memcpy(dst + r * NR, pr.weight + r * d + q * NR, sizeof(float) * static_cast<size_t>(cols));
          if (cols < NR) std::memset(dst + r * NR + cols, 0, sizeof(float) * static_cast<size_t>(NR - cols));
        }
      }
    });
  }

  float* tl = rowbuf.get();  // target logits
  float* lse = tl + S;
  float* logp = lse + S;
  float* g = logp + S;

  struct Task {
    float *m, *s, *tile, *dh;
    bool has_dh;
  };
  std::vector<Task> tasks(P.tasks);
  for (int t = 0; t < P.tasks; ++t) {
    float* base = taskbuf.get() + Z.per_task * t;
    Task& tk = tasks[t];
    tk.m = base;
    tk.s = base + S;
    tk.dh = backward ? base + 2 * S : nullptr;
    tk.tile = backward ? nullptr : lbuf.get() + static_cast<size_t>(t) * static_cast<size_t>(S * LDT);
  }
  auto chunk_tile = [&](const Task& tk, int64_t c) {
    return backward ? lbuf.get() + static_cast<size_t>(c) * static_cast<size_t>(S * LDT) : tk.tile;
  };

  for (int64_t r0 = 0; r0 < n; r0 += S) {
    const int64_t rows = std::min(S, n - r0);
    const int64_t row_panels = (rows + MR - 1) / MR;
    pack_hidden(pr.hidden, r0, rows, S, d, MR, ha.get());
    if (backward) pack_cols(pr.hidden + r0 * d, rows, d, NR, S, hb.get());
    for (Task& tk : tasks) {
      std::fill(tk.m, tk.m + rows, kNegInf);
      std::fill(tk.s, tk.s + rows, 0.0f);
      tk.has_dh = false;
    }

    // Phase 1: logits and partial log-sum-exps, by vocabulary chunk.
    std::atomic<int64_t> next{0};
    parallel_run(P.tasks, [&](int t, int) {
      Task& tk = tasks[t];
      for (;;) {
        const int64_t c = next.fetch_add(1);
        if (c >= P.nchunks) break;
        const int64_t v0 = c * P.vc, vcur = std::min(P.vc, v - v0);
        float* C = chunk_tile(tk, c);
        if (d == 0)
          for (int64_t r = 0; r < rows; ++r) std::fill(C + r * LDT, C + r * LDT + vcur, 0.0f);
        for (int64_t p0 = 0; p0 < d; p0 += kKC) {
          const int64_t kc = std::min(kKC, d - p0);
          const float beta = p0 == 0 ? 0.0f : 1.0f;
          for (int64_t jp = 0; jp * NR < vcur; ++jp) {
            const int nr = static_cast<int>(std::min<int64_t>(NR, vcur - jp * NR));
            const float* bp = wb1.get() + (v0 / NR + jp) * d * NR + p0 * NR;
            for (int64_t ip = 0; ip < row_panels; ++ip) {
              const int mr = static_cast<int>(std::min<int64_t>(MR, rows - ip * MR));
              K.gemm(kc, ha.get() + ip * MR * d + p0 * MR, MR, bp, NR, C + ip * MR * LDT + jp * NR, LDT,
                     alpha, beta, mr, nr);
            }
          }
        }
        for (int64_t r = 0; r < rows; ++r) {
          const float* x = C + r * LDT;
          const float mc = K.row_max(x, vcur);
          if (!(mc > kNegInf)) {
            if (chunk_has_nan_or_posinf(x, vcur)) tk.s[r] = std::numeric_limits<float>::quiet_NaN();
          } else {
            if (mc > tk.m[r]) {
              tk.s[r] *= std::exp(tk.m[r] - mc);
              tk.m[r] = mc;
            }
            tk.s[r] += K.row_sum_exp(x, vcur, 1.0f, tk.m[r]);
          }
          const int64_t tt = static_cast<int64_t>(pr.targets[r0 + r]) - v0;
          if (tt >= 0 && tt < vcur) tl[r] = x[tt];
        }
      }
    });

    // Combine the partial sums (double).
    for (int64_t r = 0; r < rows; ++r) {
      float mx = kNegInf;
      bool nan = false;
      for (const Task& tk : tasks) {
        mx = std::max(mx, tk.m[r]);
        nan |= std::isnan(tk.s[r]) || std::isnan(tk.m[r]);
      }
      double sum = 0.0;
      if (mx > kNegInf && !nan)
        for (const Task& tk : tasks)
          if (tk.m[r] > kNegInf) sum += static_cast<double>(tk.s[r]) * std::exp(static_cast<double>(tk.m[r]) - mx);
      const double l = nan ? std::numeric_limits<double>::quiet_NaN() : mx + std::log(sum);
      lse[r] = static_cast<float>(l);
      logp[r] = static_cast<float>(static_cast<double>(tl[r]) - l);
      if (!std::isfinite(lse[r]) || !std::isfinite(logp[r]))
        return Status::OutOfRange(bad_row_message(
            pr.fn, r0 + r, "hidden or weight holds NaN or Infinity, or the logits overflow"));
    }
    if (pr.logprobs) std::copy(logp, logp + rows, pr.logprobs + r0);
    if (!backward) continue;

    VP_RETURN_IF_ERROR((*pr.grad)(r0, rows, logp, g));
    for (int64_t r = 0; r < rows; ++r) g[r] *= alpha;

    // Phase 2: gradients, by vocabulary chunk.
    const float beta_dw = r0 == 0 ? 0.0f : 1.0f;
    next.store(0);
    parallel_run(P.tasks, [&](int t, int) {
      Task& tk = tasks[t];
      for (;;) {
        const int64_t c = next.fetch_add(1);
        if (c >= P.nchunks) break;
        const int64_t v0 = c * P.vc, vcur = std::min(P.vc, v - v0);
        const int64_t vpad = round_up(vcur, MR);
        float* T = chunk_tile(tk, c);
        // In place: T = g · (onehot − exp(T − lse)), zero-padded to whole MR panels.
        for (int64_t r = 0; r < rows; ++r) {
          float* o = T + r * LDT;
          if (g[r] == 0.0f) {
            std::fill(o, o + vpad, 0.0f);
            continue;
          }
          K.row_neg_softmax(o, vcur, 1.0f, lse[r], g[r], o);
          std::fill(o + vcur, o + vpad, 0.0f);
          const int64_t tt = static_cast<int64_t>(pr.targets[r0 + r]) - v0;
          if (tt >= 0 && tt < vcur) o[tt] += g[r];
        }
        // dweight[chunk] (+)= Tᵀ · hidden[block]   (this task owns the chunk's rows of dweight)
        for (int64_t jp = 0; jp < P.d_panels; ++jp) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, d - jp * NR));
          const float* b = hb.get() + jp * S * NR;
          for (int64_t ip = 0; ip * MR < vcur; ++ip) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, vcur - ip * MR));
            K.gemm(rows, T + ip * MR, LDT, b, NR, pr.dweight + (v0 + ip * MR) * d + jp * NR, d, 1.0f,
                   beta_dw, mr, nr);
          }
        }
        // dH_t (+)= T · weight[chunk]
        const float beta_dh = tk.has_dh ? 1.0f : 0.0f;
        for (int64_t jp = 0; jp < P.d_panels; ++jp) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, d - jp * NR));
          const float* b = wb2.get() + jp * v * NR + v0 * NR;
          for (int64_t ip = 0; ip < row_panels; ++ip) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, rows - ip * MR));
            K.gemm_at(vcur, T + ip * MR * LDT, LDT, b, NR, tk.dh + ip * MR * d + jp * NR, d, 1.0f, beta_dh,
                      mr, nr);
          }
        }
        tk.has_dh = true;
      }
    });

    // dhidden[block] = Σ_t dH_t
    float* dh = pr.dhidden + r0 * d;
    bool first = true;
    for (const Task& tk : tasks) {
      if (!tk.has_dh) continue;
      if (first) std::copy(tk.dh, tk.dh + rows * d, dh);
      else
        for (int64_t i = 0; i < rows * d; ++i) dh[i] += tk.dh[i];
      first = false;
    }
    if (first) std::fill(dh, dh + rows * d, 0.0f);
  }
  return Status::Ok();
}

}  // namespace vp::cpu
