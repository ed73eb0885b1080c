// vp::gemm_bf16 (vp/gemm_bf16.h): bfloat16 inputs, float32 accumulation, on the CPU.
//
// With AVX512-BF16, the three-level blocking of the SGEMM (gemm_cpu.cpp) over the
// packed-pair micro-kernel of gemm_bf16_kernel_avx512bf16.cpp:
//
//   for jc in N by NC:          B block (KC × NC) packed once into pairs, shared
//     for pc in K by KC:        (threads split its NR panels)
//       for ic in M by MC:      A block (MC × KC) packed per task (threads split these)
//         for jr, ir:           12 × 32 micro-kernel; the first pc overwrites C,
//                               later ones add to it
//
// C accumulates in float32: the caller's C, or, for a bfloat16 C, a float32 tile
// on the stack rounded into C as soon as it is complete (K ≤ KC: one k block) or
// else a float32 workspace (M × N) rounded at the end. KC = 2048 (1024 pairs): a
// 12 × 2048 A micro-panel is 48 KB, a 2048 × 32 B micro-panel 128 KB (L2); at
// 2048³ with a bfloat16 C on 2 threads of a Zen 4, one k block with the tiles
// rounded on the stack ran 40-44 ms against 43-47 ms for KC 1024 with the M × N
// workspace (interleaved runs).
// Packing copies 32-bit words where a (k, k + 1) pair is adjacent in memory
// (row-major A, B stored [N, K]).
// Without AVX512-BF16: A and B widened to float32 (M·K + K·N floats) and vp::sgemm.
// Cost: 2·M·N·K flops; packing M·K·(N/NC) + K·N values.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <vector>

#include "core/scratch.h"
#include "gemm_bf16_kernels.h"
#include "vp/cpu_features.h"
#include "vp/gemm.h"
#include "vp/gemm_bf16.h"
#include "vp/thread_pool.h"

namespace vp {
namespace {

using detail::kBf16MR;
using detail::kBf16NR;

constexpr int64_t kKC = 2048;  // k per block (even)
constexpr int64_t kMC = 96;    // rows of A per task
constexpr int64_t kNC = 3072;  // columns of B per block

inline uint32_t pair(uint16_t lo, uint16_t hi) { return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16); }

// op(A)(i, k) and op(B)(k, j) as raw bits.
inline uint16_t a_at(const GemmBf16Args& g, int64_t i, int64_t k) {
  return g.trans_a ? g.a[k * g.lda + i] : g.a[i * g.lda + k];
}
inline uint16_t b_at(const GemmBf16Args& g, int64_t k, int64_t j) {
  return g.trans_b ? g.b[j * g.ldb + k] : g.b[k * g.ldb + j];
}

// A rows [i0, i0+rows) × k [p0, p0+kc) into MR-row micro-panels of pairs (zero-padded).
void pack_a(const GemmBf16Args& g, int64_t i0, int64_t rows, int64_t p0, int64_t kc, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t ip = 0; ip < rows; ip += kBf16MR) {
    uint32_t* d = dst + ip * kp;
    const int64_t r = std::min<int64_t>(kBf16MR, rows - ip);
    if (!g.trans_a) {
      // Row-major A: a pair (k, k + 1) of a row is the 32-bit word at k (low half
      // first, little-endian), so each row's pairs are copied as words.
      const int64_t full = kc / 2;
      for (int64_t i = 0; i < kBf16MR; ++i) {
        if (i >= r) {
          for (int64_t p = 0; p < kp; ++p) d[p * kBf16MR + i] = 0;
          continue;
        }
        const uint16_t* src = g.a + (i0 + ip + i) * g.lda + p0;
        for (int64_t p = 0; p < full; ++p) {
          uint32_t w;
          std::memcpy(&w, src + 2 * p, 4);
          d[p * kBf16MR + i] = w;
        }
        if (full < kp) d[full * kBf16MR + i] = src[2 * full];  // odd K: high half 0
      }
      continue;
    }
    for (int64_t p = 0; p < kp; ++p) {
      const int64_t k = p0 + 2 * p;
      const bool odd = 2 * p + 1 >= kc;
      int64_t i = 0;
      for (; i < r; ++i) d[p * kBf16MR + i] = pair(a_at(g, i0 + ip + i, k), odd ? 0 : a_at(g, i0 + ip + i, k + 1));
      for (; i < kBf16MR; ++i) d[p * kBf16MR + i] = 0;
    }
  }
}

// One NR-column micro-panel of op(B)[p0 : p0+kc, j0 : j0+cols] as pairs (zero-padded).
void pack_b_panel(const GemmBf16Args& g, int64_t p0, int64_t kc, int64_t j0, int64_t cols, uint32_t* d) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t p = 0; p < kp; ++p) {
    const int64_t k = p0 + 2 * p;
    const bool odd = 2 * p + 1 >= kc;
    uint32_t* dp = d + p * kBf16NR;
    int64_t j = 0;
    if (!g.trans_b && !odd) {
      const uint16_t* r0 = g.b + k * g.ldb + j0;
      const uint16_t* r1 = r0 + g.ldb;
      for (; j < cols; ++j) dp[j] = pair(r0[j], r1[j]);
    } else if (g.trans_b && !odd) {  // B stored [N, K]: the pair is the word at (j, k)
      for (; j < cols; ++j) std::memcpy(dp + j, g.b + (j0 + j) * g.ldb + k, 4);
    } else {
      for (; j < cols; ++j) dp[j] = pair(b_at(g, k, j0 + j), odd ? 0 : b_at(g, k + 1, j0 + j));
    }
    for (; j < kBf16NR; ++j) dp[j] = 0;
  }
}

Status widened(const GemmBf16Args& g) {
  const int64_t ar = g.trans_a ? g.k : g.m, ac = g.trans_a ? g.m : g.k;
  const int64_t br = g.trans_b ? g.n : g.k, bc = g.trans_b ? g.k : g.n;
  std::vector<float> a(static_cast<size_t>(ar * ac)), b(static_cast<size_t>(br * bc));
  for (int64_t r = 0; r < ar; ++r)
    for (int64_t c = 0; c < ac; ++c) a[r * ac + c] = bf16_to_float(g.a[r * g.lda + c]);
  for (int64_t r = 0; r < br; ++r)
    for (int64_t c = 0; c < bc; ++c) b[r * bc + c] = bf16_to_float(g.b[r * g.ldb + c]);
  std::vector<float> tmp;
  GemmArgs s;
  s.trans_a = g.trans_a, s.trans_b = g.trans_b, s.m = g.m, s.n = g.n, s.k = g.k;
  s.a = a.data(), s.lda = ac, s.b = b.data(), s.ldb = bc, s.threads = g.threads;
  if (g.c) {
    s.c = g.c, s.ldc = g.ldc, s.beta = g.beta;
  } else {
    tmp.resize(static_cast<size_t>(g.m * g.n));
    s.c = tmp.data(), s.ldc = g.n;
  }
  VP_RETURN_IF_ERROR(sgemm(s));
  if (!g.c)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) g.c16[i * g.ldc + j] = float_to_bf16(tmp[i * g.n + j]);
  return Status::Ok();
}

}  // namespace

const char* gemm_bf16_path() { return has_avx512_bf16() ? "avx512_bf16" : "float32 (widened)"; }

Status gemm_bf16(const GemmBf16Args& g) {
  if (g.m < 0 || g.n < 0 || g.k < 0) return Status::Invalid("gemm_bf16: negative dimension");
  if ((g.c == nullptr) == (g.c16 == nullptr)) return Status::Invalid("gemm_bf16: give exactly one of c and c16");
  if (g.c16 && g.beta != 0.0f) return Status::Invalid("gemm_bf16: beta must be 0 with a bfloat16 C");
  if (g.m == 0 || g.n == 0) return Status::Ok();
  if (g.ldc < g.n) return Status::Invalid("gemm_bf16: ldc < n");
  if (g.k > 0) {
    if (!g.a || !g.b) return Status::Invalid("gemm_bf16: A or B is null");
    if (g.lda < (g.trans_a ? g.m : g.k)) return Status::Invalid("gemm_bf16: lda too small");
    if (g.ldb < (g.trans_b ? g.k : g.n)) return Status::Invalid("gemm_bf16: ldb too small");
  }
  if (g.k == 0) {  // an empty sum: C = beta·C
    for (int64_t i = 0; i < g.m; ++i) {
      if (g.c16) std::memset(g.c16 + i * g.ldc, 0, g.n * sizeof(uint16_t));
      else if (g.beta == 0.0f) std::memset(g.c + i * g.ldc, 0, g.n * sizeof(float));
      else
        for (int64_t j = 0; j < g.n; ++j) g.c[i * g.ldc + j] *= g.beta;
    }
    return Status::Ok();
  }
  if (!has_avx512_bf16()) return widened(g);
  if (g.c && g.beta != 0.0f && g.beta != 1.0f) {  // C = beta·C, then accumulate into it
    parallel_for(g.m, std::max<int64_t>(1, 16384 / g.n), [&](int64_t r0, int64_t r1, int) {
      for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = 0; j < g.n; ++j) g.c[i * g.ldc + j] *= g.beta;
    });
  }

  // Threads: parallel_for runs on the whole pool (g.threads == 1: the caller's thread only).
  const int threads = g.threads == 1 ? 1 : num_threads();
  std::optional<ScratchLease> work;
  float* c = g.c;
  int64_t ldc = g.ldc;
  // A bfloat16 C summed in one k block: each micro-tile is computed into a float32
  // tile on the stack and rounded into C at once (no M × N float32 workspace).
  const bool direct16 = g.c16 && g.k <= kKC;
  if (!c && !direct16) {
    work.emplace(ScratchSlot::kGemmBf16Acc, sizeof(float) * static_cast<size_t>(g.m * g.n));
    if (!work->ok()) return Status::Internal("gemm_bf16: out of memory for the float32 accumulator");
    c = work->as<float>();
    ldc = g.n;
  }
  const int64_t kc_max = std::min(kKC, g.k), kp_max = (kc_max + 1) / 2;
  const int64_t nc_max = std::min(kNC, ((g.n + kBf16NR - 1) / kBf16NR) * kBf16NR);
  // Packed blocks kept per thread between calls (core/scratch.h: no page faults per call).
  ScratchLease b_lease(ScratchSlot::kGemmBf16PackB, sizeof(uint32_t) * static_cast<size_t>(kp_max * nc_max));
  if (!b_lease.ok()) return Status::Internal("gemm_bf16: out of memory for the packed B block");
  uint32_t* const bpack = b_lease.as<uint32_t>();
  int64_t m_blocks = (g.m + kMC - 1) / kMC;
  // Few row blocks for the threads: split the columns of each block as well.
  const int64_t n_split = m_blocks >= threads ? 1 : (threads + m_blocks - 1) / m_blocks;
  // Row blocks: with n_split 1, each thread's share of the MR-row tiles (equal to one
  // tile) cut into the same number of blocks of at most kMC rows, so parallel_for's
  // equal contiguous chunks give every thread the same rows (fixed kMC blocks left
  // one thread a whole block more at 2048 rows on 2 threads: 11 blocks against 10⅓).
  std::vector<int64_t> row_start;
  if (n_split == 1 && threads > 1) {
    const int64_t tiles = (g.m + kBf16MR - 1) / kBf16MR, per_block = kMC / kBf16MR;
    const int64_t q = ((tiles + threads - 1) / threads + per_block - 1) / per_block;  // blocks a thread
    for (int64_t t = 0; t < threads; ++t) {
      const int64_t t0 = tiles * t / threads, t1 = tiles * (t + 1) / threads;
      for (int64_t b = 0; b < q; ++b) row_start.push_back(std::min(g.m, (t0 + (t1 - t0) * b / q) * kBf16MR));
    }
    row_start.push_back(g.m);
    m_blocks = threads * q;
  } else {
    for (int64_t b = 0; b <= m_blocks; ++b) row_start.push_back(std::min(g.m, b * kMC));
  }
  std::atomic<bool> a_oom{false};

  for (int64_t jc = 0; jc < g.n; jc += kNC) {
    const int64_t nc = std::min(kNC, g.n - jc);
    const int64_t panels = (nc + kBf16NR - 1) / kBf16NR;
    for (int64_t pc = 0; pc < g.k; pc += kKC) {
      const int64_t kc = std::min(kKC, g.k - pc), kp = (kc + 1) / 2;
      auto pack_b = [&](int64_t p0, int64_t p1, int) {
        for (int64_t p = p0; p < p1; ++p)
          pack_b_panel(g, pc, kc, jc + p * kBf16NR, std::min<int64_t>(kBf16NR, nc - p * kBf16NR), bpack + p * kBf16NR * kp);
      };
      const bool accumulate = pc > 0 || (g.c && g.beta != 0.0f);
      auto run = [&](int64_t t0, int64_t t1, int) {
        ScratchLease a_lease(ScratchSlot::kGemmBf16PackA, sizeof(uint32_t) * static_cast<size_t>(kMC * kp_max));
        if (!a_lease.ok()) {
          a_oom = true;
          return;
        }
        uint32_t* const ap = a_lease.as<uint32_t>();
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t bi = t / n_split, bj = t % n_split;
          const int64_t ic = row_start[bi], rows = row_start[bi + 1] - ic;
          if (rows <= 0) continue;
          const int64_t jp0 = panels * bj / n_split, jp1 = panels * (bj + 1) / n_split;
          if (jp0 >= jp1) continue;
          pack_a(g, ic, rows, pc, kc, ap);
          for (int64_t jp = jp0; jp < jp1; ++jp) {
            const int64_t j = jp * kBf16NR;
            const int nr = static_cast<int>(std::min<int64_t>(kBf16NR, nc - j));
            for (int64_t ir = 0; ir < rows; ir += kBf16MR) {
              const int mr = static_cast<int>(std::min<int64_t>(kBf16MR, rows - ir));
              if (direct16) {
                alignas(64) float tile[kBf16MR * kBf16NR];
                detail::bf16_micro_kernel(kp, ap + ir * kp, bpack + jp * kBf16NR * kp, tile, kBf16NR, false,
                                          mr, nr);
                detail::bf16_round_rows(tile, kBf16NR, mr, nr, g.c16 + (ic + ir) * g.ldc + jc + j, g.ldc);
                continue;
              }
              detail::bf16_micro_kernel(kp, ap + ir * kp, bpack + jp * kBf16NR * kp,
                                        c + (ic + ir) * ldc + jc + j, ldc, accumulate, mr, nr);
            }
          }
        }
      };
      if (threads == 1) {
        pack_b(0, panels, 0);
        run(0, m_blocks * n_split, 0);
      } else {
        parallel_for(panels, 4, pack_b);
        parallel_for(m_blocks * n_split, 1, run);
      }
      if (a_oom) return Status::Internal("gemm_bf16: out of memory for a packed A block");
    }
  }
  if (g.c16 && !direct16) {
    parallel_for(g.m, std::max<int64_t>(1, 16384 / g.n), [&](int64_t r0, int64_t r1, int) {
      detail::bf16_round_rows(c + r0 * ldc, ldc, r1 - r0, g.n, g.c16 + r0 * g.ldc, g.ldc);
    });
  }
  return Status::Ok();
}

}  // namespace vp
