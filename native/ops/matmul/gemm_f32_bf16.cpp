// vp::gemm_f32_bf16 (vp/gemm_f32_bf16.h): a float32 activation rounded to
// bfloat16, times a bfloat16 weight, float32 accumulation and result; and
// vp::gemm_f32_via_bf16 (vp/gemm_bf16.h): both float32 operands rounded so; and
// vp::round_to_bf16, the rounding alone.
//
// Algorithm: A's rows are rounded to bf16 (nearest even, NaN kept; 16 lanes at a
// time in integer arithmetic where the CPU has AVX512-BF16) in parallel
// into an M·K workspace; vp::gemm_bf16 then forms C in float32 (its AVX512-BF16
// kernel or its widened float32 path); a bias, when given, is added per row.
// Cost: M·K roundings + gemm_bf16's 2·M·N·K flops + M·N adds; M·K·2 bytes of
// workspace (gemm_f32_via_bf16: M·K + K·N roundings); the workspaces are per-thread
// scratch kept for the next call (core/scratch.h).
#include "vp/gemm_f32_bf16.h"

#include <algorithm>

#include "core/scratch.h"
#include "gemm_bf16_kernels.h"
#include "vp/cpu_features.h"

#include "vp/gemm.h"
#include "vp/gemm_bf16.h"
#include "vp/thread_pool.h"

namespace vp {
namespace {

// n values rounded: 16 at a time where the CPU has AVX512-BF16 (its kernel file is
// compiled for AVX-512), else one by one; the same bits either way.
void round_span(const float* src, int64_t n, uint16_t* dst) {
  if (has_avx512_bf16()) return detail::bf16_round_exact(src, n, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

// rows × cols of a float32 matrix (row stride ld) rounded into dst (row stride cols).
void round_rows(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) round_span(src + r * ld, cols, dst + r * cols);
  });
}

}  // namespace

void round_to_bf16(const float* src, int64_t n, uint16_t* dst) {
  parallel_for(n, 1 << 16, [&](int64_t i0, int64_t i1, int) { round_span(src + i0, i1 - i0, dst + i0); });
}

Status gemm_f32_via_bf16(const GemmArgs& g) {
  if (g.m < 0 || g.n < 0 || g.k < 0) return Status::Invalid("gemm_f32_via_bf16: negative dimension");
  if (g.alpha != 1.0f) return Status::Invalid("gemm_f32_via_bf16: alpha must be 1");
  if (g.m == 0 || g.n == 0) return Status::Ok();
  if (!g.c) return Status::Invalid("gemm_f32_via_bf16: C is null");
  const int64_t ar = g.trans_a ? g.k : g.m, ac = g.trans_a ? g.m : g.k;
  const int64_t br = g.trans_b ? g.n : g.k, bc = g.trans_b ? g.k : g.n;
  if (g.k > 0) {
    if (!g.a || !g.b) return Status::Invalid("gemm_f32_via_bf16: A or B is null");
    if (g.lda < ac || g.ldb < bc) return Status::Invalid("gemm_f32_via_bf16: lda or ldb too small");
  }
  if (g.ldc < g.n) return Status::Invalid("gemm_f32_via_bf16: ldc < n");
  // The rounded operands live in this thread's scratch (core/scratch.h), kept between calls up
  // to 4 MB each: a training step calls this for every projection, and fresh buffers would be
  // page-faulted in each time.
  ScratchLease a16(ScratchSlot::kBf16RoundA, sizeof(uint16_t) * static_cast<size_t>(ar * ac));
  ScratchLease b16(ScratchSlot::kBf16RoundB, sizeof(uint16_t) * static_cast<size_t>(br * bc));
  if (!a16.ok() || !b16.ok()) return Status::Internal("gemm_f32_via_bf16: out of memory for the rounded operands");
  if (g.k > 0) {
    round_rows(g.a, ar, ac, g.lda, a16.as<uint16_t>());
    round_rows(g.b, br, bc, g.ldb, b16.as<uint16_t>());
  }
  GemmBf16Args b;
  b.trans_a = g.trans_a, b.trans_b = g.trans_b, b.m = g.m, b.n = g.n, b.k = g.k;
  b.a = a16.as<uint16_t>(), b.lda = std::max<int64_t>(ac, 1), b.b = b16.as<uint16_t>(), b.ldb = std::max<int64_t>(bc, 1);
  b.c = g.c, b.ldc = g.ldc, b.beta = g.beta, b.threads = g.threads;
  return gemm_bf16(b);
}

Status gemm_f32_bf16(const GemmF32Bf16Args& g) {
  if (g.m < 0 || g.n < 0 || g.k < 0) return Status::Invalid("gemm_f32_bf16: negative dimension");
  if (g.m == 0 || g.n == 0) return Status::Ok();
  if (!g.c) return Status::Invalid("gemm_f32_bf16: C is null");
  if (g.k > 0 && (!g.a || !g.b)) return Status::Invalid("gemm_f32_bf16: A or B is null");
  ScratchLease a16(ScratchSlot::kBf16RoundA, sizeof(uint16_t) * static_cast<size_t>(g.m * g.k));
  if (!a16.ok()) return Status::Internal("gemm_f32_bf16: out of memory for the rounded activation");
  if (g.k > 0) round_rows(g.a, g.m, g.k, g.k, a16.as<uint16_t>());
  GemmBf16Args b;
  b.trans_a = false, b.trans_b = g.trans_b, b.m = g.m, b.n = g.n, b.k = g.k;
  b.a = a16.as<uint16_t>(), b.lda = g.k, b.b = g.b, b.ldb = g.trans_b ? g.k : g.n;
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
