// vp::gemm_f32_bf16 (vp/gemm_f32_bf16.h): a float32 activation rounded to
// bfloat16, times a bfloat16 weight, float32 accumulation and result.
//
// Algorithm: A's rows are rounded to bf16 (nearest even, NaN kept) in parallel
// into an M·K workspace; vp::gemm_bf16 then forms C in float32 (its AVX512-BF16
// kernel or its widened float32 path); a bias, when given, is added per row.
// Cost: M·K roundings + gemm_bf16's 2·M·N·K flops + M·N adds; M·K·2 bytes of
// workspace.
#include "vp/gemm_f32_bf16.h"

#include <algorithm>
#include <vector>

#include "vp/gemm_bf16.h"
#include "vp/thread_pool.h"

namespace vp {

Status gemm_f32_bf16(const GemmF32Bf16Args& g) {
  if (g.m < 0 || g.n < 0 || g.k < 0) return Status::Invalid("gemm_f32_bf16: negative dimension");
  if (g.m == 0 || g.n == 0) return Status::Ok();
  if (!g.c) return Status::Invalid("gemm_f32_bf16: C is null");
  if (g.k > 0 && (!g.a || !g.b)) return Status::Invalid("gemm_f32_bf16: A or B is null");
  std::vector<uint16_t> a16(static_cast<size_t>(g.m * g.k));
  if (g.k > 0) {
    parallel_for(g.m, std::max<int64_t>(1, 16384 / g.k), [&](int64_t r0, int64_t r1, int) {
      const float* src = g.a + r0 * g.k;
      uint16_t* dst = a16.data() + r0 * g.k;
      for (int64_t i = 0, n = (r1 - r0) * g.k; i < n; ++i) dst[i] = float_to_bf16(src[i]);
    });
  }
  GemmBf16Args b;
  b.trans_a = false, b.trans_b = g.trans_b, b.m = g.m, b.n = g.n, b.k = g.k;
  b.a = a16.data(), b.lda = g.k, b.b = g.b, b.ldb = g.trans_b ? g.k : g.n;
  b.c = g.c, b.ldc = g.n;
  if (g.k == 0) b.lda = 1, b.ldb = std::max<int64_t>(b.ldb, 1);
  VP_RETURN_IF_ERROR(gemm_bf16(b));
  if (g.bias) {
    parallel_for(g.m, std::max<int64_t>(1, 16384 / g.n), [&](int64_t r0, int64_t r1, int) {
      for (int64_t i = r0; i < r1; ++i) {
        float* row = g.c + i * g.n;
        for (int64_t j = 0; j < g.n; ++j) row[j] += g.bias[j];
      }
    });
  }
  return Status::Ok();
}

}  // namespace vp
