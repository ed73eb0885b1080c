// NaN and infinity in the CPU attention forward: every output a non-finite
// input reaches becomes NaN, so a diverging run shows up instead of being
// smoothed over by the kernels' online softmax (whose max and exp2 steps would
// drop a NaN score, and whose "no visible key" rule would turn the row into
// zeros with lse -inf).
//
// The rule, per query row i and head h (kv head g), over the keys j the row
// sees (all of its sequence, or j <= i + Tk - Tq when causal):
//   * q[i, h, :] or some visible k[j, g, :] not finite: out[i, h, :] and
//     lse[h, i] are NaN (the scores are NaN or infinite, so is the softmax);
//   * else, for each feature d with some visible v[j, g, d] not finite:
//     out[i, h, d] is NaN (p · v is not finite); lse stays finite.
// Keys a row does not see never touch it.
//
// Algorithm: one pass over q, k and v tests the float bits for an all-ones
// exponent (vectorizes; this is all a finite problem costs, O((Tq·H + 2·Tk·Hkv)·D)
// reads, against the kernel's O(Tq·Tk·H·D)). Only when something is not finite:
// copies with those values set to 0 go to the kernels (so no NaN can reach a
// row through a masked key), the first non-finite key of each (sequence, kv
// head) and of each (sequence, kv head, feature) are found, and the rows they
// reach are overwritten after the kernels ran. O(the inputs) extra memory.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "attention_kernels.h"
#include "vp/attention.h"
#include "vp/thread_pool.h"

namespace vp::detail {
namespace {

inline bool nonfinite_bits(uint32_t b) { return (b & 0x7f800000u) == 0x7f800000u; }

// Any non-finite value in x[0, n)?
bool any_nonfinite(const float* x, int64_t n) {
  const uint32_t* b = reinterpret_cast<const uint32_t*>(x);
  uint32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc |= static_cast<uint32_t>(nonfinite_bits(b[i]));
  return acc != 0;
}

// A copy of x with its non-finite values set to 0.
std::vector<float> finite_copy(const float* x, int64_t n) {
  std::vector<float> out(x, x + n);
  for (float& v : out)
    if (!std::isfinite(v)) v = 0.0f;
  return out;
}

constexpr int64_t kNone = std::numeric_limits<int64_t>::max();

}  // namespace

Status attention_forward_nonfinite(const AttentionProblem& p, const float* q, const float* k, const float* v,
                                   float* out, float* lse, AttentionForwardFn forward) {
  const int64_t H = p.heads, Hkv = p.kv_heads, D = p.head_dim, G = H / Hkv;
  const bool bad_q = any_nonfinite(q, p.total_q * H * D);
  const bool bad_k = any_nonfinite(k, p.total_k * Hkv * D);
  const bool bad_v = any_nonfinite(v, p.total_k * Hkv * D);
  if (!bad_q && !bad_k && !bad_v) return forward(p, q, k, v, out, lse);

  std::vector<float> q2, k2, v2;
  if (bad_q) q2 = finite_copy(q, p.total_q * H * D);
  if (bad_k) k2 = finite_copy(k, p.total_k * Hkv * D);
  if (bad_v) v2 = finite_copy(v, p.total_k * Hkv * D);
  VP_RETURN_IF_ERROR(forward(p, bad_q ? q2.data() : q, bad_k ? k2.data() : k, bad_v ? v2.data() : v, out, lse));

  // First non-finite key (relative to its sequence) per (sequence, kv head), and per feature for v.
  std::vector<int64_t> first_k(static_cast<size_t>(p.batch * Hkv), kNone);
  std::vector<int64_t> first_v(bad_v ? static_cast<size_t>(p.batch * Hkv * D) : 0, kNone);
  for (int64_t s = 0; s < p.batch; ++s) {
    const int64_t kbeg = p.cu_k[s], tk = p.cu_k[s + 1] - kbeg;
    for (int64_t j = 0; j < tk; ++j)
      for (int64_t g = 0; g < Hkv; ++g) {
        const int64_t at = ((kbeg + j) * Hkv + g) * D;
        if (bad_k && first_k[s * Hkv + g] == kNone && any_nonfinite(k + at, D)) first_k[s * Hkv + g] = j;
        if (bad_v)
          for (int64_t d = 0; d < D; ++d)
            if (!std::isfinite(v[at + d]) && first_v[(s * Hkv + g) * D + d] == kNone) first_v[(s * Hkv + g) * D + d] = j;
      }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t s = 0; s < p.batch; ++s) {
    const int64_t qbeg = p.cu_q[s], tq = p.cu_q[s + 1] - qbeg, tk = p.cu_k[s + 1] - p.cu_k[s];
    for (int64_t i = 0; i < tq; ++i) {
      const int64_t last = p.causal ? std::min(tk - 1, i + tk - tq) : tk - 1;  // the last key row i sees
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / G;
        float* o = out + ((qbeg + i) * H + h) * D;
        if ((bad_q && any_nonfinite(q + ((qbeg + i) * H + h) * D, D)) || first_k[s * Hkv + g] <= last) {
          std::fill(o, o + D, nan);
          lse[h * p.total_q + qbeg + i] = nan;
          continue;
        }
        if (bad_v)
          for (int64_t d = 0; d < D; ++d)
            if (first_v[(s * Hkv + g) * D + d] <= last) o[d] = nan;
      }
    }
  }
  return Status::Ok();
}

}  // namespace vp::detail
