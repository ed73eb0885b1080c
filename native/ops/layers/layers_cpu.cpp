// The VideoLM layer kernels on the CPU (vp/layers.h): validation, threading
// over rows, and the per-ISA element-wise loops of layers_kernels.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/arg_checks.h"
#include "layers_kernels.h"
#include "row_lse.h"
#include "vp/cpu_features.h"
#include "vp/gemm.h"
#include "vp/layers.h"
#include "vp/thread_pool.h"

namespace vp {
namespace detail {

const LayerKernels& layer_kernels() {
  switch (active_isa()) {
    case Isa::kAvx512: return layer_kernels_avx512();
    case Isa::kAvx2: return layer_kernels_avx2();
    default: return layer_kernels_generic();
  }
}

}  // namespace detail

namespace {

using detail::layer_kernels;

std::string str(int64_t v) { return std::to_string(v); }

using detail::need;

Status non_negative(int64_t v, const char* fn, const char* arg) {
  if (v < 0) return Status::Invalid(std::string(fn) + ": " + arg + " must be >= 0, got " + str(v));
  return Status::Ok();
}

Status positive(int64_t v, const char* fn, const char* arg) {
  if (v <= 0) return Status::Invalid(std::string(fn) + ": " + arg + " must be > 0, got " + str(v));
  return Status::Ok();
}

// Grain (rows per chunk) so that a chunk holds at least ~16K floats of work.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

// dst[j] (+)= sum over rows r of the row vectors that add_row(r, acc) adds into
// acc. Rows go in fixed blocks of kRowBlock: each block's partial sum is built
// in increasing r (blocks in parallel), then the partials are added in block
// order (columns in parallel). The block boundaries do not depend on the thread
// count, so neither do the bits of the result.
constexpr int64_t kRowBlock = 64;

template <typename AddRow>
void block_column_sums(int64_t rows, int64_t cols, float* dst, bool accumulate, AddRow add_row) {
  const int64_t nb = (rows + kRowBlock - 1) / kRowBlock;
  std::vector<float> part(static_cast<size_t>(nb * cols), 0.0f);
  parallel_for(nb, 1, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t r = b * kRowBlock; r < std::min(rows, (b + 1) * kRowBlock); ++r) add_row(r, part.data() + b * cols);
  });
  const auto& k = layer_kernels();
  parallel_for(cols, 256, [&](int64_t c0, int64_t c1, int) {
    const int64_t w = c1 - c0;
    float* d = dst + c0;
    if (!accumulate) std::memset(d, 0, w * sizeof(float));
    for (int64_t b = 0; b < nb; ++b) k.add(d, part.data() + b * cols + c0, w);
  });
}

Status sgemm1(GemmArgs g) { return sgemm(g); }

}  // namespace

// ---- RMSNorm ------------------------------------------------------------

Status rmsnorm_forward(const float* x, const float* gain, int64_t rows, int64_t dim, float eps,
                       float* y, float* rstd) {
  const char* fn = "rmsnorm_forward";
  VP_RETURN_IF_ERROR(non_negative(rows, fn, "rows"));
  VP_RETURN_IF_ERROR(positive(dim, fn, "dim"));
  if (!(eps >= 0.0f)) return Status::Invalid("rmsnorm_forward: eps must be >= 0");
  if (rows == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(gain, fn, "gain"));
  VP_RETURN_IF_ERROR(need(y, fn, "y"));
  const auto& k = layer_kernels();
  parallel_for(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      float rs = k.rmsnorm_fwd_row(x + r * dim, gain, dim, eps, y + r * dim);
      if (rstd) rstd[r] = rs;
    }
  });
  return Status::Ok();
}

Status rmsnorm_backward(const float* dy, const float* x, const float* gain, const float* rstd,
                        int64_t rows, int64_t dim, float eps, float* dx, float* dgain,
                        bool accumulate) {
  const char* fn = "rmsnorm_backward";
  VP_RETURN_IF_ERROR(non_negative(rows, fn, "rows"));
  VP_RETURN_IF_ERROR(positive(dim, fn, "dim"));
  VP_RETURN_IF_ERROR(need(gain, fn, "gain"));
  if (rows > 0) {
    VP_RETURN_IF_ERROR(need(dy, fn, "dy"));
    VP_RETURN_IF_ERROR(need(x, fn, "x"));
    VP_RETURN_IF_ERROR(need(dx, fn, "dx"));
  }
  std::vector<float> own_rstd;
  if (rstd == nullptr && rows > 0) {
    own_rstd.resize(rows);
    parallel_for(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const double ss = layer_kernels().sumsq(x + r * dim, dim);
        own_rstd[r] = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      }
    });
    rstd = own_rstd.data();
  }
  const auto& k = layer_kernels();
  if (dgain) {
    // dx row by row; dgain's per-block partials come out of the same pass.
    block_column_sums(rows, dim, dgain, accumulate, [&](int64_t r, float* acc) {
      k.rmsnorm_bwd_row(dy + r * dim, x + r * dim, gain, rstd[r], dim, dx + r * dim, acc);
    });
  } else {
    parallel_for(rows, row_grain(dim), [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r)
        k.rmsnorm_bwd_row(dy + r * dim, x + r * dim, gain, rstd[r], dim, dx + r * dim, nullptr);
    });
  }
  return Status::Ok();
}

// ---- SwiGLU ---------------------------------------------------------------

Status swiglu_forward(const float* gate, const float* up, int64_t rows, int64_t ffn, int64_t ld_in,
                      float* h) {
  const char* fn = "swiglu_forward";
  VP_RETURN_IF_ERROR(non_negative(rows, fn, "rows"));
  VP_RETURN_IF_ERROR(positive(ffn, fn, "ffn"));
  if (ld_in < ffn) return Status::Invalid("swiglu_forward: ld_in must be >= ffn");
  if (rows == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(gate, fn, "gate"));
  VP_RETURN_IF_ERROR(need(up, fn, "up"));
  VP_RETURN_IF_ERROR(need(h, fn, "h"));
  const auto& k = layer_kernels();
  parallel_for(rows, row_grain(ffn), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) k.swiglu_fwd(gate + r * ld_in, up + r * ld_in, ffn, h + r * ffn);
  });
  return Status::Ok();
}

Status swiglu_backward(const float* dh, const float* gate, const float* up, int64_t rows,
                       int64_t ffn, int64_t ld_in, float* dgate, float* dup) {
  const char* fn = "swiglu_backward";
  VP_RETURN_IF_ERROR(non_negative(rows, fn, "rows"));
  VP_RETURN_IF_ERROR(positive(ffn, fn, "ffn"));
  if (ld_in < ffn) return Status::Invalid("swiglu_backward: ld_in must be >= ffn");
  if (rows == 0) return Status::Ok();
  for (auto [p, n] : {std::pair<const void*, const char*>{dh, "dh"}, {gate, "gate"}, {up, "up"},
                      {dgate, "dgate"}, {dup, "dup"}})
    VP_RETURN_IF_ERROR(need(p, fn, n));
  const auto& k = layer_kernels();
  parallel_for(rows, row_grain(ffn), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      k.swiglu_bwd(dh + r * ffn, gate + r * ld_in, up + r * ld_in, ffn, dgate + r * ld_in,
                   dup + r * ld_in);
  });
  return Status::Ok();
}

// ---- RoPE ------------------------------------------------------------------

Status rope_apply(const float* x, const int32_t* positions, int64_t tokens, int64_t heads,
                  int64_t head_dim, float theta, bool inverse, float* out) {
  const char* fn = "rope_apply";
  VP_RETURN_IF_ERROR(non_negative(tokens, fn, "tokens"));
  VP_RETURN_IF_ERROR(positive(heads, fn, "heads"));
  VP_RETURN_IF_ERROR(positive(head_dim, fn, "head_dim"));
  if (head_dim % 2 != 0) return Status::Invalid("rope_apply: head_dim must be even, got " + str(head_dim));
  if (!(theta > 1.0f)) return Status::Invalid("rope_apply: theta must be > 1");
  if (tokens == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(positions, fn, "positions"));
  VP_RETURN_IF_ERROR(need(out, fn, "out"));
  for (int64_t t = 0; t < tokens; ++t)
    if (positions[t] < 0)
      return Status::OutOfRange("rope_apply: positions[" + str(t) + "] must be >= 0, got " +
                                str(positions[t]));
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  const int64_t row = heads * head_dim;
  int32_t max_pos = 0;
  for (int64_t t = 0; t < tokens; ++t) max_pos = std::max(max_pos, positions[t]);
  // Packed batches repeat positions (every sequence starts at 0): when there are
  // fewer distinct positions than tokens, cos/sin come from a table per position.
  const bool table = static_cast<int64_t>(max_pos) + 1 <= tokens;
  std::vector<float> tab_c, tab_s;
  if (table) {
    tab_c.resize(static_cast<size_t>((max_pos + 1) * half));
    tab_s.resize(tab_c.size());
    // Blocks of kAnchor positions: exact cos/sin (double) at the block's first
    // position, then the angle-addition recurrence (cos, sin of (p+1)·f from those
    // of p·f and of f) in double: kAnchor − 1 steps add at most ~kAnchor double
    // roundings (~1e-14), far below float's, at four multiplies instead of two
    // library calls per entry (the calls were most of this op's time).
    constexpr int64_t kAnchor = 32;
    const int64_t blocks = (max_pos + kAnchor) / kAnchor;
    parallel_for(blocks, std::max<int64_t>(1, 64 / half), [&](int64_t b0, int64_t b1, int) {
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t i = 0; i < half; ++i) {
          const double f = inv_freq[i], cf = std::cos(f), sf = std::sin(f);
          const int64_t p0 = b * kAnchor, p1 = std::min<int64_t>(max_pos + 1, p0 + kAnchor);
          double c = std::cos(static_cast<double>(p0) * f), s = std::sin(static_cast<double>(p0) * f);
          for (int64_t p = p0; p < p1; ++p) {
            tab_c[p * half + i] = static_cast<float>(c);
            tab_s[p * half + i] = static_cast<float>(inverse ? -s : s);
            const double cn = c * cf - s * sf;
            s = s * cf + c * sf;
            c = cn;
          }
        }
    });
  }
  const auto& k = layer_kernels();
  parallel_for(tokens, row_grain(row), [&](int64_t t0, int64_t t1, int) {
    std::vector<float> own_c(table ? 0 : half), own_s(table ? 0 : half);
    for (int64_t t = t0; t < t1; ++t) {
      const float* cs;
      const float* sn;
      if (table) {
        cs = tab_c.data() + static_cast<int64_t>(positions[t]) * half;
        sn = tab_s.data() + static_cast<int64_t>(positions[t]) * half;
      } else {
        const double pos = positions[t];
        for (int64_t i = 0; i < half; ++i) {
          const double a = pos * inv_freq[i];
          own_c[i] = static_cast<float>(std::cos(a));
          own_s[i] = static_cast<float>(inverse ? -std::sin(a) : std::sin(a));
        }
        cs = own_c.data();
        sn = own_s.data();
      }
      k.rope_row(x + t * row, cs, sn, heads, half, out + t * row);
    }
  });
  return Status::Ok();
}

// ---- Embedding ----------------------------------------------------------------

namespace {
Status check_ids(const char* fn, const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return Status::OutOfRange(std::string(fn) + ": ids[" + str(i) + "] = " + str(ids[i]) +
                                " is outside [0, " + str(vocab) + ")");
  return Status::Ok();
}
}  // namespace

Status embedding_forward(const float* table, int64_t vocab, int64_t dim, const int32_t* ids,
                         int64_t n, float* out) {
  const char* fn = "embedding_forward";
  VP_RETURN_IF_ERROR(positive(vocab, fn, "vocab"));
  VP_RETURN_IF_ERROR(positive(dim, fn, "dim"));
  VP_RETURN_IF_ERROR(non_negative(n, fn, "n"));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(table, fn, "table"));
  VP_RETURN_IF_ERROR(need(ids, fn, "ids"));
  VP_RETURN_IF_ERROR(need(out, fn, "out"));
  VP_RETURN_IF_ERROR(check_ids(fn, ids, n, vocab));
  parallel_for(n, row_grain(dim), [&](int64_t a, int64_t b, int) {
    for (int64_t i = a; i < b; ++i) {
      // Start fetching the next gathered row (rows are scattered over the table,
      // so the hardware prefetcher cannot guess it) while this one is copied.
      if (i + 1 < b) __builtin_prefetch(table + static_cast<int64_t>(ids[i + 1]) * dim);
      std::memcpy(out + i * dim, table + static_cast<int64_t>(ids[i]) * dim, dim * sizeof(float));
    }
  });
  return Status::Ok();
}

Status embedding_backward(const float* dout, const int32_t* ids, int64_t n, int64_t vocab,
                          int64_t dim, float* dtable, bool accumulate) {
  const char* fn = "embedding_backward";
  VP_RETURN_IF_ERROR(positive(vocab, fn, "vocab"));
  VP_RETURN_IF_ERROR(positive(dim, fn, "dim"));
  VP_RETURN_IF_ERROR(non_negative(n, fn, "n"));
  VP_RETURN_IF_ERROR(need(dtable, fn, "dtable"));
  if (n > 0) {
    VP_RETURN_IF_ERROR(need(dout, fn, "dout"));
    VP_RETURN_IF_ERROR(need(ids, fn, "ids"));
    VP_RETURN_IF_ERROR(check_ids(fn, ids, n, vocab));
  }
  // Stable counting sort of the rows by id: start[v]..start[v+1] lists the rows
  // with id v in increasing order. Each thread then owns whole rows of dtable.
  std::vector<int64_t> start(vocab + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++start[ids[i] + 1];
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  std::vector<int64_t> order(n);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[fill[ids[i]]++] = i;
  }
  const auto& k = layer_kernels();
  parallel_for(vocab, row_grain(dim), [&](int64_t v0, int64_t v1, int) {
    for (int64_t v = v0; v < v1; ++v) {
      float* d = dtable + v * dim;
      if (!accumulate) std::memset(d, 0, dim * sizeof(float));
      for (int64_t j = start[v]; j < start[v + 1]; ++j) k.add(d, dout + order[j] * dim, dim);
    }
  });
  return Status::Ok();
}

// ---- Linear ---------------------------------------------------------------------

Status linear_forward(const float* x, const float* w, const float* b, int64_t n, int64_t in_dim,
                      int64_t out_dim, float* y) {
  const char* fn = "linear_forward";
  VP_RETURN_IF_ERROR(non_negative(n, fn, "n"));
  VP_RETURN_IF_ERROR(positive(in_dim, fn, "in_dim"));
  VP_RETURN_IF_ERROR(positive(out_dim, fn, "out_dim"));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(w, fn, "w"));
  VP_RETURN_IF_ERROR(need(y, fn, "y"));
  if (b) {
    parallel_for(n, row_grain(out_dim), [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) std::memcpy(y + r * out_dim, b, out_dim * sizeof(float));
    });
  }
  GemmArgs g;
  g.trans_b = true;
  g.m = n;
  g.n = out_dim;
  g.k = in_dim;
  g.a = x;
  g.lda = in_dim;
  g.b = w;
  g.ldb = in_dim;
  g.beta = b ? 1.0f : 0.0f;
  g.c = y;
  g.ldc = out_dim;
  return sgemm1(g);
}

Status linear_backward(const float* dy, const float* x, const float* w, int64_t n, int64_t in_dim,
                       int64_t out_dim, float* dx, float* dw, float* db, bool accumulate) {
  const char* fn = "linear_backward";
  VP_RETURN_IF_ERROR(non_negative(n, fn, "n"));
  VP_RETURN_IF_ERROR(positive(in_dim, fn, "in_dim"));
  VP_RETURN_IF_ERROR(positive(out_dim, fn, "out_dim"));
  if (n > 0) {
    VP_RETURN_IF_ERROR(need(dy, fn, "dy"));
    if (dw) VP_RETURN_IF_ERROR(need(x, fn, "x"));
    if (dx) VP_RETURN_IF_ERROR(need(w, fn, "w"));
  }
  if (dx && n > 0) {
    GemmArgs g;
    g.m = n;
    g.n = in_dim;
    g.k = out_dim;
    g.a = dy;
    g.lda = out_dim;
    g.b = w;
    g.ldb = in_dim;
    g.c = dx;
    g.ldc = in_dim;
    VP_RETURN_IF_ERROR(sgemm1(g));
  }
  if (dw) {
    if (n == 0) {
      if (!accumulate) std::memset(dw, 0, static_cast<size_t>(out_dim * in_dim) * sizeof(float));
    } else {
      GemmArgs g;
      g.trans_a = true;
      g.m = out_dim;
      g.n = in_dim;
      g.k = n;
      g.a = dy;
      g.lda = out_dim;
      g.b = x;
      g.ldb = in_dim;
      g.beta = accumulate ? 1.0f : 0.0f;
      g.c = dw;
      g.ldc = in_dim;
      VP_RETURN_IF_ERROR(sgemm1(g));
    }
  }
  if (db) {
    const auto& k = layer_kernels();
    block_column_sums(n, out_dim, db, accumulate, [&](int64_t r, float* acc) { k.add(acc, dy + r * out_dim, out_dim); });
  }
  return Status::Ok();
}

// ---- Cross-entropy ---------------------------------------------------------------------

namespace {
Status check_targets(const char* fn, const int32_t* targets, int64_t n, int64_t vocab, int64_t* count) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == -1) continue;
    if (targets[i] < 0 || targets[i] >= vocab)
      return Status::OutOfRange(std::string(fn) + ": targets[" + str(i) + "] = " + str(targets[i]) +
                                " is outside [0, " + str(vocab) + ") and is not the ignore index -1");
    ++c;
  }
  *count = c;
  return Status::Ok();
}

}  // namespace

Status cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                             float* loss, float* lse, int64_t* count) {
  const char* fn = "cross_entropy_forward";
  VP_RETURN_IF_ERROR(non_negative(n, fn, "n"));
  VP_RETURN_IF_ERROR(positive(vocab, fn, "vocab"));
  VP_RETURN_IF_ERROR(need(loss, fn, "loss"));
  if (n > 0) {
    VP_RETURN_IF_ERROR(need(logits, fn, "logits"));
    VP_RETURN_IF_ERROR(need(targets, fn, "targets"));
  }
  int64_t cnt = 0;
  VP_RETURN_IF_ERROR(check_targets(fn, targets, n, vocab, &cnt));
  std::vector<double> row_loss(n, 0.0);
  parallel_for(n, row_grain(vocab), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * vocab;
      // loss = (max - x[t]) + log(sum exp(x - max)): no large lse that float would round.
      const detail::RowLse st = detail::row_lse(x, vocab, 1.0f);
      const float m = st.m;
      const double ls = m == -INFINITY ? 0.0 : std::log(static_cast<double>(st.s));
      if (lse) lse[r] = m == -INFINITY ? -INFINITY : static_cast<float>(m + ls);
      if (targets[r] >= 0) row_loss[r] = (static_cast<double>(m) - x[targets[r]]) + ls;
    }
  });
  double total = 0.0;
  for (int64_t r = 0; r < n; ++r) total += row_loss[r];
  *loss = cnt > 0 ? static_cast<float>(total / static_cast<double>(cnt)) : 0.0f;
  if (count) *count = cnt;
  return Status::Ok();
}

Status cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                              int64_t n, int64_t vocab, float grad_loss, float* dlogits) {
  const char* fn = "cross_entropy_backward";
  VP_RETURN_IF_ERROR(non_negative(n, fn, "n"));
  VP_RETURN_IF_ERROR(positive(vocab, fn, "vocab"));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(logits, fn, "logits"));
  VP_RETURN_IF_ERROR(need(targets, fn, "targets"));
  VP_RETURN_IF_ERROR(need(dlogits, fn, "dlogits"));
  int64_t cnt = 0;
  VP_RETURN_IF_ERROR(check_targets(fn, targets, n, vocab, &cnt));
  const float scale = cnt > 0 ? static_cast<float>(static_cast<double>(grad_loss) / static_cast<double>(cnt)) : 0.0f;
  parallel_for(n, row_grain(vocab), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * vocab;
      float* d = dlogits + r * vocab;
      const int32_t t = targets[r];
      if (t < 0) {
        std::memset(d, 0, vocab * sizeof(float));
        continue;
      }
      const float l = lse ? lse[r] : detail::row_lse(x, vocab, 1.0f).lse();
      detail::row_scaled_softmax(x, vocab, 1.0f, l, scale, d);
      d[t] -= scale;
    }
  });
  return Status::Ok();
}

// ---- Patches -------------------------------------------------------------------------------

namespace {
Status check_frames(const char* fn, int64_t f, int64_t h, int64_t w, int64_t p) {
  VP_RETURN_IF_ERROR(non_negative(f, fn, "num_frames"));
  VP_RETURN_IF_ERROR(positive(h, fn, "height"));
  VP_RETURN_IF_ERROR(positive(w, fn, "width"));
  VP_RETURN_IF_ERROR(positive(p, fn, "patch"));
  if (h % p != 0 || w % p != 0)
    return Status::Invalid(std::string(fn) + ": height and width (" + str(h) + ", " + str(w) +
                           ") must be multiples of the patch size " + str(p));
  return Status::Ok();
}

template <typename T, typename Conv>
void patchify_impl(const T* frames, int64_t nf, int64_t h, int64_t w, int64_t p, float* out, Conv conv) {
  const int64_t ph = h / p, pw = w / p, feat = p * p * 3;
  parallel_for(nf * ph * pw, std::max<int64_t>(1, 4096 / feat), [&](int64_t a, int64_t b, int) {
    for (int64_t idx = a; idx < b; ++idx) {
      const int64_t f = idx / (ph * pw), py = (idx / pw) % ph, px = idx % pw;
      float* o = out + idx * feat;
      for (int64_t dy = 0; dy < p; ++dy) {
        const T* src = frames + ((f * h + py * p + dy) * w + px * p) * 3;
        for (int64_t j = 0; j < p * 3; ++j) o[dy * p * 3 + j] = conv(src[j]);
      }
    }
  });
}
}  // namespace

Status patchify_u8(const uint8_t* frames, int64_t num_frames, int64_t height, int64_t width,
                   int64_t patch, float* patches) {
  VP_RETURN_IF_ERROR(check_frames("patchify_u8", num_frames, height, width, patch));
  if (num_frames == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(frames, "patchify_u8", "frames"));
  VP_RETURN_IF_ERROR(need(patches, "patchify_u8", "patches"));
  patchify_impl(frames, num_frames, height, width, patch, patches,
                [](uint8_t v) { return static_cast<float>(v) * (1.0f / 127.5f) - 1.0f; });
  return Status::Ok();
}

Status patchify_f32(const float* frames, int64_t num_frames, int64_t height, int64_t width,
                    int64_t patch, float* patches) {
  VP_RETURN_IF_ERROR(check_frames("patchify_f32", num_frames, height, width, patch));
  if (num_frames == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(frames, "patchify_f32", "frames"));
  VP_RETURN_IF_ERROR(need(patches, "patchify_f32", "patches"));
  patchify_impl(frames, num_frames, height, width, patch, patches, [](float v) { return v; });
  return Status::Ok();
}

Status unpatchify_f32(const float* dpatches, int64_t num_frames, int64_t height, int64_t width,
                      int64_t patch, float* dframes) {
  VP_RETURN_IF_ERROR(check_frames("unpatchify_f32", num_frames, height, width, patch));
  if (num_frames == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(dpatches, "unpatchify_f32", "dpatches"));
  VP_RETURN_IF_ERROR(need(dframes, "unpatchify_f32", "dframes"));
  const int64_t p = patch, ph = height / p, pw = width / p, feat = p * p * 3;
  // Patches tile the frame exactly, so every frame element is written once.
  parallel_for(num_frames * ph * pw, std::max<int64_t>(1, 4096 / feat), [&](int64_t a, int64_t b, int) {
    for (int64_t idx = a; idx < b; ++idx) {
      const int64_t f = idx / (ph * pw), py = (idx / pw) % ph, px = idx % pw;
      const float* s = dpatches + idx * feat;
      for (int64_t dy = 0; dy < p; ++dy)
        std::memcpy(dframes + ((f * height + py * p + dy) * width + px * p) * 3, s + dy * p * 3,
                    p * 3 * sizeof(float));
    }
  });
  return Status::Ok();
}

namespace {

// Patchify (into `patches`, or a temporary when null) then the linear embedding;
// the same for uint8 and float frames.
template <typename T, typename Patchify>
Status patch_embed_forward_any(const char* fn, Patchify patchify, const T* frames, int64_t num_frames,
                               int64_t height, int64_t width, int64_t patch, const float* w, const float* b,
                               int64_t dim, float* patches, float* emb) {
  VP_RETURN_IF_ERROR(check_frames(fn, num_frames, height, width, patch));
  VP_RETURN_IF_ERROR(positive(dim, fn, "dim"));
  const int64_t np = num_frames * (height / patch) * (width / patch), feat = patch * patch * 3;
  std::vector<float> own;
  if (patches == nullptr) {
    own.resize(static_cast<size_t>(np * feat));
    patches = own.data();
  }
  VP_RETURN_IF_ERROR(patchify(frames, num_frames, height, width, patch, patches));
  return linear_forward(patches, w, b, np, feat, dim, emb);
}

}  // namespace

Status patch_embed_forward_u8(const uint8_t* frames, int64_t num_frames, int64_t height,
                              int64_t width, int64_t patch, const float* w, const float* b,
                              int64_t dim, float* patches, float* emb) {
  return patch_embed_forward_any("patch_embed_forward_u8", patchify_u8, frames, num_frames, height, width, patch,
                                 w, b, dim, patches, emb);
}

Status patch_embed_forward_f32(const float* frames, int64_t num_frames, int64_t height,
                               int64_t width, int64_t patch, const float* w, const float* b,
                               int64_t dim, float* patches, float* emb) {
  return patch_embed_forward_any("patch_embed_forward_f32", patchify_f32, frames, num_frames, height, width, patch,
                                 w, b, dim, patches, emb);
}

Status patch_embed_backward(const float* demb, const float* patches, int64_t num_patches,
                            int64_t patch_features, int64_t dim, float* dw, float* db,
                            bool accumulate) {
  VP_RETURN_IF_ERROR(need(dw, "patch_embed_backward", "dw"));
  return linear_backward(demb, patches, nullptr, num_patches, patch_features, dim, nullptr, dw, db,
                         accumulate);
}

// ---- helpers -------------------------------------------------------------------------------

Status add_inplace(float* y, const float* x, int64_t n) {
  VP_RETURN_IF_ERROR(non_negative(n, "add_inplace", "n"));
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(y, "add_inplace", "y"));
  VP_RETURN_IF_ERROR(need(x, "add_inplace", "x"));
  const auto& k = layer_kernels();
  parallel_for(n, 32768, [&](int64_t a, int64_t b, int) { k.add(y + a, x + a, b - a); });
  return Status::Ok();
}

double sum_squares(const float* x, int64_t n) {
  if (n <= 0 || x == nullptr) return 0.0;
  constexpr int64_t kBlock = 8192;
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nb);
  const auto& k = layer_kernels();
  parallel_for(nb, 4, [&](int64_t a, int64_t b, int) {
    for (int64_t i = a; i < b; ++i) part[i] = k.sumsq(x + i * kBlock, std::min(kBlock, n - i * kBlock));
  });
  double s = 0.0;
  for (double v : part) s += v;
  return s;
}

}  // namespace vp
