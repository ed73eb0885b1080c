// CPU InfoNCE: blocks of query rows, the core's SGEMM for the products and the
// per-ISA row passes of infonce_rows_*.cpp for everything in between.
//
// With rq_i = 1/‖q_i‖ and rk_j = 1/‖k_j‖ (1 without normalize), nothing is ever
// normalized in memory: for a block of b query rows,
//
//   S      = Q_blk · Kᵀ                       raw dot products, b × M   (product 1)
//   s_ij   = S_ij · rq_i · rk_j / τ           scores, in place
//   e_ij   = exp(s_ij − max_j s_ij),  z_i = Σ_j e_ij,  lse_i = max + log z_i
//   G_ij   = (g/N) (e_ij / z_i − [j = pos_i]) · rq_i · rk_j / τ
//   A_blk  = G · K        → dQ rows           (product 2)
//   B     += Gᵀ · Q_blk   → dK, over blocks   (product 3)
//
// and then dq_i = A_i − q̂_i ⟨q̂_i, A_i⟩, dk_j = B_j − k̂_j ⟨k̂_j, B_j⟩ (the
// backward of the normalization; A_i = rq_i ∂loss/∂q̂_i, B_j = rk_j ∂loss/∂k̂_j).
// ∂loss/∂log τ = −Σ_ij (g/N)(P_ij − [j = pos_i]) s_ij, summed row by row.
//
// The backward recomputes each row's normalizer z_i from the scores it has to
// recompute anyway (no extra pass), so a float32-rounded lse costs it nothing;
// the stored lse is checked (it must be finite) and is what the CUDA path uses.
//
// The block's b × M scores are the only N×M-sized memory: b is chosen so they
// stay in cache (a few MB). The forward alone is product 1; the backward from a
// stored lse recomputes it (products 1-3, after the forward's 1); the fused
// call does 1-3 once. Every product runs on all threads (the blocks are big
// enough), and dK accumulates in the output itself, so the only extra memory is
// the score block, 2 · (N + M) floats of scales and SGEMM's packing buffers.
// Per-row results are summed in row order, so the numbers do not depend on the
// thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/scratch.h"
#include "infonce_rows.h"
#include "vp/cpu_features.h"
#include "vp/gemm.h"
#include "vp/infonce.h"
#include "vp/thread_pool.h"

namespace vp {
namespace {

using detail::InfoNceRowKernels;

// Scores a block may hold: 8 MB (512 rows at M = 4096) stays in L3 and makes
// the three products about 90% as fast as one big SGEMM (smaller blocks repack
// K more often: 4 MB costs ~5% more in total, 2 MB ~15%).
constexpr int64_t kBlockBytes = int64_t{8} << 20;
constexpr int64_t kMinBlockRows = 32;
constexpr int64_t kMaxBlockRows = 512;
// Blocks are rounded to a multiple of two of the core SGEMM's row blocks
// (vp::kSgemmRowBlock), so that two threads get equal shares of the block's
// products. Not of the thread count itself: the block size sets the order in
// which dK sums, and the results must not depend on the number of threads.
constexpr int64_t kRowUnit = 2 * kSgemmRowBlock;

InfoNceRowKernels row_kernels() {
  switch (active_isa()) {
    case Isa::kAvx512: return detail::infonce_rows_avx512();
    case Isa::kAvx2: return detail::infonce_rows_avx2();
    default: return detail::infonce_rows_generic();
  }
}

// Rows of a block: the score budget, rounded to a multiple of kRowUnit when that
// costs at most twice the budget (at M = 4096, 576 rows instead of 512, which
// two threads would split into SGEMM row blocks as 288 + 224 rows).
int64_t block_rows(int64_t n, int64_t m) {
  const int64_t row_bytes = m * static_cast<int64_t>(sizeof(float));
  int64_t b = std::clamp(kBlockBytes / row_bytes, kMinBlockRows, kMaxBlockRows);
  const int64_t rounded = std::max(kRowUnit, (b + kRowUnit / 2) / kRowUnit * kRowUnit);
  if (rounded * row_bytes <= 2 * kBlockBytes) b = rounded;
  return std::min(b, n);
}

void atomic_min(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load();
  while (v < cur && !a.compare_exchange_weak(cur, v)) {
  }
}

double dot_double(const float* x, const float* y, int64_t d) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t c = 0;
  for (; c + 4 <= d; c += 4) {
    s0 += double(x[c]) * y[c];
    s1 += double(x[c + 1]) * y[c + 1];
    s2 += double(x[c + 2]) * y[c + 2];
    s3 += double(x[c + 3]) * y[c + 3];
  }
  for (; c < d; ++c) s0 += double(x[c]) * y[c];
  return (s0 + s1) + (s2 + s3);
}

// A float32 score of magnitude |s| is off by about |s|·2^-24 (more after the
// dot product's rounding), and exp turns that into a relative error of P. Where
// a row's softmax is decided by a few scores — a confident model, a small τ,
// large unnormalized features — that error dominates the loss (then close to
// 0) and the gradient. Such a "peaked" row gets those scores in double: the
// positive's and the keys within kPeakWindow of the best other key, when there
// are at most kPeakMax of them. Other rows keep their float32 scores.
constexpr float kPeakWindow = 30.0f;  // e^-30 ≈ 1e-13 of the dominant term
constexpr int kPeakMax = 16;

struct Peak {
  int count = 0;
  int64_t idx[kPeakMax];
};

// The keys j != pos with score >= max_{j != pos} − kPeakWindow; false when there
// are more than kPeakMax (the scan stops as soon as that is certain enough).
bool find_peak(const float* row, int64_t m, int64_t pos, Peak* peak) {
  constexpr int kBuf = 4 * kPeakMax;
  int64_t buf[kBuf];
  int cnt = 0;
  float best = -std::numeric_limits<float>::infinity();
  auto compact = [&] {
    int k = 0;
    for (int t = 0; t < cnt; ++t)
      if (row[buf[t]] >= best - kPeakWindow) buf[k++] = buf[t];
    cnt = k;
  };
  for (int64_t j = 0; j < m; ++j) {
    const float v = row[j];
    if (j == pos || v < best - kPeakWindow) continue;
    best = std::max(best, v);
    if (cnt == kBuf) {
      compact();
      if (cnt > kPeakMax) return false;
    }
    buf[cnt++] = j;
  }
  compact();
  if (cnt > kPeakMax) return false;
  peak->count = cnt;
  std::copy(buf, buf + cnt, peak->idx);
  return true;
}

// Inverse row norms (1 without normalize), in double. Every row must be finite,
// and with normalize nonzero; the first row that is not gives the error.
Status row_scales(const char* fn, const char* name, const float* x, int64_t rows, int64_t d,
                  bool normalize, std::vector<double>& inv) {
  inv.resize(rows);
  std::atomic<int64_t> first_bad{rows};
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* v = x + r * d;
      const double ss = dot_double(v, v, d);
      if (!std::isfinite(ss) || (normalize && ss == 0.0)) {
        atomic_min(first_bad, r);
        inv[r] = 0.0;
        continue;
      }
      inv[r] = normalize ? 1.0 / std::sqrt(ss) : 1.0;
    }
  });
  const int64_t r = first_bad.load();
  if (r == rows) return Status::Ok();
  bool finite = true;
  for (int64_t c = 0; c < d; ++c) finite = finite && std::isfinite(x[r * d + c]);
  if (!finite)
    return Status::OutOfRange(std::string(fn) + ": " + name + " row " + std::to_string(r) +
                              " holds a non-finite value (NaN or Infinity)");
  return Status::OutOfRange(std::string(fn) + ": " + name + " row " + std::to_string(r) +
                            " has zero norm and cannot be L2-normalized (pass normalize: false, or drop the row)");
}

// x_r −= x̂_r ⟨x̂_r, dx_r⟩ for each row: the backward of x̂ = x / ‖x‖ applied to
// dx_r = rs_r · ∂/∂x̂_r (so that the result is ∂/∂x_r).
void project_rows(const float* x, const double* inv, float* dx, int64_t rows, int64_t d) {
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* v = x + r * d;
      float* g = dx + r * d;
      const float coef = static_cast<float>(dot_double(v, g, d) * inv[r] * inv[r]);
      for (int64_t c = 0; c < d; ++c) g[c] -= coef * v[c];
    }
  });
}

// What every row of every block shares.
struct RowPass {
  InfoNceRowKernels ker;
  const InfoNceArgs* a;
  const float *q, *k;
  int64_t m, d;
  const double *rq, *rk;  // inverse norms
  const float* rk_f;      // the same, as float for the row passes (null: all 1)
  double inv_tau, gn;     // 1/τ, g/N
};

// Turns row i's raw dot products into its scores and, in place, into its G
// (when backward); gives its loss term and its share of ∂loss/∂log τ. False
// when its scores overflow float32.
bool process_row(const RowPass& p, int64_t i, float* row, double* loss_i, double* dlt_i) {
  const InfoNceArgs& a = *p.a;
  const int64_t m = p.m, d = p.d;
  const int32_t pos = a.positive[i];
  // Scores, with the positive's in double (it enters the loss and ∂/∂log τ
  // directly); then e_j = exp(s_j − max) with the positive's term kept apart,
  // so that P_pos − 1 = −Σ_{j≠pos} P_j keeps its precision when P_pos ≈ 1.
  const float* qi = p.q + i * d;
  const double scale = p.rq[i] * p.inv_tau;
  float mx = p.ker.scale_max(row, m, static_cast<float>(scale), p.rk_f);
  const double sd_pos = dot_double(qi, p.k + int64_t{pos} * d, d) * scale * p.rk[pos];
  row[pos] = static_cast<float>(sd_pos);
  mx = std::max(mx, row[pos]);
  // Peaked rows: the few scores that matter, in double too (see find_peak).
  Peak peak;
  double sd[kPeakMax];
  const bool refine = find_peak(row, m, pos, &peak);
  double ref = sd_pos;  // the shift of z below: the max, exactly sd_pos when that is the max
  if (refine) {
    for (int t = 0; t < peak.count; ++t) {
      const int64_t j = peak.idx[t];
      sd[t] = dot_double(qi, p.k + j * d, d) * scale * p.rk[j];
      ref = std::max(ref, sd[t]);
      row[j] = static_cast<float>(sd[t]);
    }
    mx = static_cast<float>(ref);
  } else if (row[pos] < mx) {
    ref = mx;
  }
  double dot_f = 0.0;
  const float s_pos = row[pos];
  const double others_f = p.ker.exp_sum(row, m, mx, s_pos, pos, a.backward, &dot_f);
  if (!std::isfinite(mx) || !std::isfinite(dot_f)) return false;  // an infinite score poisons dot_f
  const double f = std::exp(double(mx) - ref);  // e_j (shift mx) → shift ref
  double others, dot;  // Σ_{j≠pos} e_j and Σ_{j≠pos} e_j (s_j − s_pos), shift ref
  if (refine) {  // the terms outside the peak are below e^-30 of the dominant one
    others = 0.0, dot = 0.0;
    for (int t = 0; t < peak.count; ++t) {
      const double e = std::exp(sd[t] - ref);
      others += e;
      dot += e * (sd[t] - sd_pos);
    }
  } else {
    others = others_f * f;
    dot = (dot_f + (double(s_pos) - sd_pos) * others_f) * f;
  }
  const double z = others + std::exp(sd_pos - ref);
  const double log_z = ref == sd_pos ? std::log1p(others) : std::log(z);
  if (a.forward) {
    a.lse.as<float>()[i] = static_cast<float>(ref + log_z);
    *loss_i = (ref - sd_pos) + log_z;
  }
  if (a.backward) {
    // G_ij = (g/N)(P_ij − [j = pos]) rq_i rk_j / τ with P_ij = e_ij / z.
    const double c = p.gn * scale / z;
    p.ker.scale(row, m, static_cast<float>(c * f), p.rk_f);
    if (refine)
      for (int t = 0; t < peak.count; ++t)
        row[peak.idx[t]] = static_cast<float>(std::exp(sd[t] - ref) * c * p.rk[peak.idx[t]]);
    row[pos] = static_cast<float>(-c * others * p.rk[pos]);
    *dlt_i = -p.gn * dot / z;
  }
  return true;
}

}  // namespace

Status info_nce_cpu(const InfoNceArgs& a, InfoNceResult* result) {
  const int64_t n = a.queries.shape[0], d = a.queries.shape[1], m = a.keys.shape[0];
  const float* q = a.queries.as<float>();
  const float* k = a.keys.as<float>();
  const bool normalize = a.opts.normalize;
  const double inv_tau = 1.0 / double(a.opts.temperature);
  const double gn = double(a.opts.grad_loss) / double(n);  // ∂L/∂loss, averaged over the rows

  std::vector<double> rq, rk;
  VP_RETURN_IF_ERROR(row_scales(a.fn, "queries", q, n, d, normalize, rq));
  VP_RETURN_IF_ERROR(row_scales(a.fn, "keys", k, m, d, normalize, rk));
  const std::vector<float> rk_f = normalize ? std::vector<float>(rk.begin(), rk.end()) : std::vector<float>();
  if (!a.forward) {
    const float* lse = a.lse.as<float>();
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(lse[i]))
        return Status::OutOfRange(std::string(a.fn) + ": lse[" + std::to_string(i) +
                                  "] must be finite (the lse of a forward pass), got " + std::to_string(lse[i]));
  }
  float* dq = a.backward ? a.d_queries.as<float>() : nullptr;
  float* dk = a.backward ? a.d_keys.as<float>() : nullptr;

  const int64_t b = block_rows(n, m);
  // The score block is kept per calling thread between calls (core/scratch.h).
  ScratchLease scores(ScratchSlot::kInfonceScores, static_cast<size_t>(b * m) * sizeof(float));
  if (!scores.ok()) return Status::Internal(std::string(a.fn) + ": out of memory for the score block");
  std::vector<double> row_loss(b), row_dlt(b);
  const RowPass pass{row_kernels(), &a, q, k, m, d, rq.data(), rk.data(), normalize ? rk_f.data() : nullptr,
                     inv_tau, gn};
  const int64_t grain = std::max<int64_t>(1, 4096 / m);
  double loss_sum = 0.0, dlt_sum = 0.0;
  std::atomic<int64_t> overflow_row{n};  // a row whose scores float32 cannot hold

  for (int64_t i0 = 0; i0 < n; i0 += b) {
    const int64_t bb = std::min(b, n - i0);
    float* s = scores.as<float>();
    GemmArgs p1;  // S = Q_blk · Kᵀ
    p1.trans_b = true;
    p1.m = bb, p1.n = m, p1.k = d;
    p1.a = q + i0 * d, p1.lda = d;
    p1.b = k, p1.ldb = d;
    p1.c = s, p1.ldc = m;
    VP_RETURN_IF_ERROR(sgemm(p1));

    parallel_for(bb, grain, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r)
        if (!process_row(pass, i0 + r, s + r * m, &row_loss[r], &row_dlt[r])) atomic_min(overflow_row, i0 + r);
    });
    if (overflow_row.load() < n)
      return Status::OutOfRange(std::string(a.fn) + ": the scores of query row " + std::to_string(overflow_row.load()) +
                                " overflow float32 (|<q, k>| / temperature is too large): scale the features down, "
                                "normalize them, or raise the temperature");
    for (int64_t r = 0; r < bb; ++r) {
      if (a.forward) loss_sum += row_loss[r];
      if (a.backward) dlt_sum += row_dlt[r];
    }
    if (!a.backward) continue;

    GemmArgs p2;  // dQ_blk = G · K
    p2.m = bb, p2.n = d, p2.k = m;
    p2.a = s, p2.lda = m;
    p2.b = k, p2.ldb = d;
    p2.c = dq + i0 * d, p2.ldc = d;
    VP_RETURN_IF_ERROR(sgemm(p2));
    GemmArgs p3;  // dK (+)= Gᵀ · Q_blk
    p3.trans_a = true;
    p3.m = m, p3.n = d, p3.k = bb;
    p3.a = s, p3.lda = m;
    p3.b = q + i0 * d, p3.ldb = d;
    p3.beta = i0 == 0 ? 0.0f : 1.0f;
    p3.c = dk, p3.ldc = d;
    VP_RETURN_IF_ERROR(sgemm(p3));
    if (normalize) project_rows(q + i0 * d, rq.data() + i0, dq + i0 * d, bb, d);
  }
  if (a.backward && normalize) project_rows(k, rk.data(), dk, m, d);
  result->loss = loss_sum / double(n);
  result->d_log_temperature = dlt_sum;
  return Status::Ok();
}

}  // namespace vp
