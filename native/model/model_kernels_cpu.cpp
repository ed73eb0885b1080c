// The VideoLM's row and vector helpers on the CPU (vp/model_kernels.h); the
// LM head's log-sum-exp and softmax are the shared ones of ops/layers/row_lse.h.
#include "vp/model_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ops/layers/row_lse.h"
#include "vp/thread_pool.h"

namespace vp {

Status rows_gather(const float* src, const int32_t* rows, int64_t n, int64_t d, float* out) {
  parallel_for(n, 64, [&](int64_t a, int64_t b, int) {
    for (int64_t i = a; i < b; ++i)
      std::memcpy(out + i * d, src + static_cast<int64_t>(rows[i]) * d, static_cast<size_t>(d) * sizeof(float));
  });
  return Status::Ok();
}

Status rows_scatter_add(const float* src, const int32_t* rows, int64_t n, int64_t d, float* dst) {
  // Columns split across threads, rows in order: repeated rows add in index order.
  parallel_for(d, 64, [&](int64_t j0, int64_t j1, int) {
    for (int64_t i = 0; i < n; ++i) {
      float* o = dst + static_cast<int64_t>(rows[i]) * d;
      const float* s = src + i * d;
      for (int64_t j = j0; j < j1; ++j) o[j] += s[j];
    }
  });
  return Status::Ok();
}

Status rows_csr_sum(const float* src, const int32_t* start, const int32_t* order, int64_t groups, int64_t d,
                    float* dst, bool accumulate) {
  parallel_for(groups, 16, [&](int64_t g0, int64_t g1, int) {
    for (int64_t g = g0; g < g1; ++g) {
      float* o = dst + g * d;
      if (!accumulate) std::fill(o, o + d, 0.0f);
      for (int32_t k = start[g]; k < start[g + 1]; ++k) {
        const float* s = src + static_cast<int64_t>(order[k]) * d;
        for (int64_t j = 0; j < d; ++j) o[j] += s[j];
      }
    }
  });
  return Status::Ok();
}

Status embed_rows(const float* vis, const float* table, const int32_t* from, int64_t n, int64_t d, float* out) {
  parallel_for(n, 64, [&](int64_t a, int64_t b, int) {
    for (int64_t r = a; r < b; ++r) {
      const int64_t f = from[r];
      const float* s = f >= 0 ? vis + f * d : table + (-f - 1) * d;
      std::memcpy(out + r * d, s, static_cast<size_t>(d) * sizeof(float));
    }
  });
  return Status::Ok();
}

Status vision_add_pos(float* vis, const float* bias, const float* frame_pos, const float* patch_pos, int64_t n,
                      int64_t P, int64_t frames, int64_t d) {
  parallel_for(n, 64, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t f = (r / P) % frames, q = r % P;
      float* o = vis + r * d;
      const float* bb = patch_pos + q * d;
      if (bias)
        for (int64_t j = 0; j < d; ++j) o[j] += bias[j];
      if (frame_pos)
        for (int64_t j = 0; j < d; ++j) o[j] += frame_pos[f * d + j];
      for (int64_t j = 0; j < d; ++j) o[j] += bb[j];
    }
  });
  return Status::Ok();
}

Status vision_pos_backward(const float* dvis, int64_t n, int64_t P, int64_t frames, int64_t d, float* dbias,
                           float* dframe_pos, float* dpatch_pos) {
  // Columns split across threads; every column walks the rows in order.
  parallel_for(d, 16, [&](int64_t j0, int64_t j1, int) {
    for (int64_t r = 0; r < n; ++r) {
      const int64_t f = (r / P) % frames, q = r % P;
      const float* s = dvis + r * d;
      for (int64_t j = j0; j < j1; ++j) {
        if (dframe_pos) dframe_pos[f * d + j] += s[j];
        dpatch_pos[q * d + j] += s[j];
        if (dbias) dbias[j] += s[j];
      }
    }
  });
  return Status::Ok();
}

Status row_lse_target(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float* lse,
                      float* target_logit) {
  parallel_for(rows, 4, [&](int64_t a, int64_t b, int) {
    for (int64_t r = a; r < b; ++r) {
      const float* x = logits + r * vocab;
      lse[r] = detail::row_lse(x, vocab, 1.0f).lse();
      target_logit[r] = x[targets[r]];
    }
  });
  return Status::Ok();
}

Status softmax_xent_grad(float* logits, const int32_t* targets, const float* lse, const float* coef, int64_t rows,
                         int64_t vocab) {
  parallel_for(rows, 4, [&](int64_t a, int64_t b, int) {
    for (int64_t r = a; r < b; ++r) {
      float* x = logits + r * vocab;
      detail::row_scaled_softmax(x, vocab, 1.0f, lse[r], coef[r], x);
      x[targets[r]] -= coef[r];
    }
  });
  return Status::Ok();
}

Status decode_attention(const float* q, const float* kcache, const float* vcache, const int32_t* base,
                        const int32_t* nkeys, int64_t n, int64_t H, int64_t Hkv, int64_t D, float scale,
                        int64_t max_keys, float* out) {
  // Rows with no key get zeros (the CUDA kernel does the same); a count outside
  // [0, max_keys] breaks the contract (the CUDA kernel's scratch holds max_keys).
  for (int64_t i = 0; i < n; ++i)
    if (nkeys[i] < 0 || nkeys[i] > max_keys)
      return Status::OutOfRange("decode_attention: nkeys[" + std::to_string(i) + "] = " + std::to_string(nkeys[i]) +
                                " is outside [0, max_keys = " + std::to_string(max_keys) + "]");
  const int64_t grp = H / Hkv, kvd = Hkv * D;
  parallel_for(n * H, 1, [&](int64_t j0, int64_t j1, int) {
    std::vector<float> s;
    std::vector<float> acc(static_cast<size_t>(D));
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t i = j / H, h = j % H, hk = h / grp;
      const int64_t nk = nkeys[i];
      const float* qq = q + i * H * D + h * D;
      if (nk == 0) {
        std::fill(out + i * H * D + h * D, out + i * H * D + h * D + D, 0.0f);
        continue;
      }
      s.resize(static_cast<size_t>(nk));
      float mx = -INFINITY;
      for (int64_t t = 0; t < nk; ++t) {
        const float* kk = kcache + (base[i] + t) * kvd + hk * D;
        float dot = 0.0f;
        for (int64_t e = 0; e < D; ++e) dot += qq[e] * kk[e];
        s[t] = dot * scale;
        mx = std::max(mx, s[t]);
      }
      double sum = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t t = 0; t < nk; ++t) {
        const float p = std::exp(s[t] - mx);
        sum += p;
        const float* vv = vcache + (base[i] + t) * kvd + hk * D;
        for (int64_t e = 0; e < D; ++e) acc[e] += p * vv[e];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + i * H * D + h * D;
      for (int64_t e = 0; e < D; ++e) o[e] = acc[e] * inv;
    }
  });
  return Status::Ok();
}

}  // namespace vp
