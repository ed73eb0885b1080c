// SGEMM driver: the classic three-level blocking (Goto / BLIS) around the
// per-ISA micro-kernels of gemm_kernel_*.cpp.
//
//   for jc in N by NC:            B block  (KC x NC) packed once, shared, in L2/L3
//     for pc in K by KC:
//       pack B[pc, jc]            (threads split the NR panels)
//       for ic in M by MC:        A block  (MC x KC) packed per thread, in L2
//         for jr in NC by NR:     B micro-panel (KC x NR) in L1
//           for ir in MC by MR:   micro-kernel on an MR x NR tile of C
//
// Threads split the ic loop (each packs its own A block); when M has fewer
// blocks than threads, they also split jr so a tall-skinny or short-wide
// product still uses every core. beta is applied on the first pc block only.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "core/scratch.h"
#include "gemm_kernels.h"
#include "vp/cpu_features.h"
#include "vp/gemm.h"
#include "vp/thread_pool.h"

namespace vp {
namespace {

using detail::GemmKernelInfo;

// Block sizes, tuned on Zen 4 (1 MB L2 a core) against OpenBLAS: a KC of 512
// halves the passes over C compared with 256 (each pass reads and writes C) while
// the 12 x 512 A micro-panel (24 KB) still streams from L1/L2 and the 512 x 32 B
// micro-panel (64 KB) stays in L2. Measured single-thread at 1024-2048:
// KC 256 -> ~92% of OpenBLAS, KC 512 -> ~100%.
constexpr int64_t kKC = 512;
constexpr int64_t kMCMax = kSgemmRowBlock;
constexpr int64_t kNC = 3072;

// Element (i, k) of op(A) and (k, j) of op(B).
inline const float* a_at(const GemmArgs& g, int64_t i, int64_t k) {
  return g.trans_a ? g.a + k * g.lda + i : g.a + i * g.lda + k;
}
inline const float* b_at(const GemmArgs& g, int64_t k, int64_t j) {
  return g.trans_b ? g.b + j * g.ldb + k : g.b + k * g.ldb + j;
}

// d[k * width + r] = src[r * ld + k] for r < count, k < kc: `count` rows of a
// row-major matrix into the columns of a k-major panel (a transpose). With SSE,
// four rows at a time in 4 x 4 tiles: four contiguous stores per four k instead
// of sixteen scattered ones. This packing is most of the overhead of a product
// with a long K and a short N (A's rows) or a transposed B.
void transpose_to_panel(const float* src, int64_t ld, int64_t count, int64_t kc, int width, float* d) {
  int64_t r = 0;
#if defined(__SSE2__)
  for (; r + 4 <= count; r += 4) {
    const float* s0 = src + r * ld;
    const float* s1 = s0 + ld;
    const float* s2 = s1 + ld;
    const float* s3 = s2 + ld;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 x0 = _mm_loadu_ps(s0 + k), x1 = _mm_loadu_ps(s1 + k);
      __m128 x2 = _mm_loadu_ps(s2 + k), x3 = _mm_loadu_ps(s3 + k);
      _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
      _mm_storeu_ps(d + (k + 0) * width + r, x0);
      _mm_storeu_ps(d + (k + 1) * width + r, x1);
      _mm_storeu_ps(d + (k + 2) * width + r, x2);
      _mm_storeu_ps(d + (k + 3) * width + r, x3);
    }
    for (; k < kc; ++k) {
      d[k * width + r] = s0[k];
      d[k * width + r + 1] = s1[k];
      d[k * width + r + 2] = s2[k];
      d[k * width + r + 3] = s3[k];
    }
  }
#endif
  for (; r < count; ++r)
    for (int64_t k = 0; k < kc; ++k) d[k * width + r] = src[r * ld + k];
}

// Pack op(A)[i0 : i0+mc, p0 : p0+kc] into MR-row micro-panels, k-major inside.
void pack_a(const GemmArgs& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int MR, float* dst) {
  if (g.trans_a) {  // A stored [K, M]: the mc values of one k are contiguous
    // k outer: each k's mc values are read once, in order (panel by panel, each
    // k would be a fresh cache line and, for a wide A, a fresh page).
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = a_at(g, i0, p0 + k);
      for (int64_t ip = 0; ip < mc; ip += MR) {
        const int64_t rows = std::min<int64_t>(MR, mc - ip);
        float* d = dst + ip * kc + k * MR;
        int64_t r = 0;
        for (; r < rows; ++r) d[r] = s[ip + r];
        for (; r < MR; ++r) d[r] = 0.0f;
      }
    }
    return;
  }
  for (int64_t ip = 0; ip < mc; ip += MR) {  // A stored [M, K]: read each row contiguously
    const int64_t rows = std::min<int64_t>(MR, mc - ip);
    float* d = dst + ip * kc;
    transpose_to_panel(a_at(g, i0 + ip, p0), g.lda, rows, kc, MR, d);
    for (int64_t r = rows; r < MR; ++r)
      for (int64_t k = 0; k < kc; ++k) d[k * MR + r] = 0.0f;
  }
}

// Pack one NR-column micro-panel of op(B)[p0 : p0+kc, j0 : j0+cols].
void pack_b_panel(const GemmArgs& g, int64_t p0, int64_t kc, int64_t j0, int64_t cols, int NR,
                  float* d) {
  if (!g.trans_b) {  // B stored [K, N]: NR values of one k are contiguous
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = b_at(g, p0 + k, j0);
      float* dk = d + k * NR;
      if (cols == NR) {
        std::memcpy(dk, s, sizeof(float) * NR);
      } else {
        int64_t c = 0;
        for (; c < cols; ++c) dk[c] = s[c];
        for (; c < NR; ++c) dk[c] = 0.0f;
      }
    }
  } else {  // B stored [N, K]: read each column of op(B) (a row of B) contiguously
    transpose_to_panel(b_at(g, p0, j0), g.ldb, cols, kc, NR, d);
    for (int64_t c = cols; c < NR; ++c)
      for (int64_t k = 0; k < kc; ++k) d[k * NR + c] = 0.0f;
  }
}

void scale_c(const GemmArgs& g) {  // K == 0: C = beta * C
  for (int64_t i = 0; i < g.m; ++i) {
    float* c = g.c + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j) c[j] = g.beta == 0.0f ? 0.0f : g.beta * c[j];
  }
}

}  // namespace

void sgemm_naive(const GemmArgs& g) {
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < g.k; ++k) acc += *a_at(g, i, k) * *b_at(g, k, j);
      float* c = g.c + i * g.ldc + j;
      *c = g.beta == 0.0f ? g.alpha * acc : g.alpha * acc + g.beta * *c;
    }
}

Status sgemm(const GemmArgs& g) {
  if (g.m < 0 || g.n < 0 || g.k < 0) return Status::Invalid("sgemm: negative dimension");
  if (g.m == 0 || g.n == 0) return Status::Ok();
  if (!g.c) return Status::Invalid("sgemm: C is null");
  if (g.ldc < g.n) return Status::Invalid("sgemm: ldc < n");
  if (g.k == 0) {
    scale_c(g);
    return Status::Ok();
  }
  if (!g.a || !g.b) return Status::Invalid("sgemm: A or B is null");
  if (g.lda < (g.trans_a ? g.m : g.k)) return Status::Invalid("sgemm: lda too small");
  if (g.ldb < (g.trans_b ? g.k : g.n)) return Status::Invalid("sgemm: ldb too small");

  const GemmKernelInfo ker = detail::gemm_kernel_for(active_isa());
  const int MR = ker.mr, NR = ker.nr;
  const int threads = std::max(1, g.threads > 0 ? std::min(g.threads, num_threads()) : num_threads());

  // Choose MC so the M blocks divide evenly among the threads.
  const int64_t m_panels = (g.m + MR - 1) / MR;
  int64_t blocks_m = (g.m + kMCMax - 1) / kMCMax;
  if (threads > 1) blocks_m = ((blocks_m + threads - 1) / threads) * threads;
  blocks_m = std::max<int64_t>(1, std::min(blocks_m, m_panels));
  // Block b covers panels [m_panels*b/blocks_m, m_panels*(b+1)/blocks_m): sizes
  // differ by at most one panel, so every thread gets the same number of blocks
  // of (nearly) the same size. (Fixed-size blocks of ceil(panels/blocks) would
  // leave fewer blocks than planned, e.g. 11 for 2 threads at M = 1024.)
  const int64_t mc = ((m_panels + blocks_m - 1) / blocks_m) * MR;  // the largest block
  auto block_rows = [&](int64_t b, int64_t* ic, int64_t* rows) {
    const int64_t p0 = m_panels * b / blocks_m, p1 = m_panels * (b + 1) / blocks_m;
    *ic = p0 * MR;
    *rows = std::min(p1 * MR, g.m) - *ic;
  };
  const int64_t n_split = blocks_m >= threads ? 1 : (threads + blocks_m - 1) / blocks_m;

  const int64_t kc_max = std::min(kKC, g.k);
  const int64_t nc_max = std::min(kNC, ((g.n + NR - 1) / NR) * NR);
  // The packed blocks are kept per thread between calls (core/scratch.h): fresh ones
  // cost a page fault per 4 KB on every call (0.6 ms of a 2 ms 512^3 product).
  ScratchLease b_lease(ScratchSlot::kGemmPackB, sizeof(float) * static_cast<size_t>(kc_max * nc_max));
  if (!b_lease.ok()) return Status::Internal("sgemm: out of memory for the packed B block");
  float* bpack = b_lease.as<float>();
  bool a_oom = false;

  for (int64_t jc = 0; jc < g.n; jc += kNC) {
    const int64_t nc = std::min(kNC, g.n - jc);
    const int64_t nr_panels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < g.k; pc += kKC) {
      const int64_t kc = std::min(kKC, g.k - pc);
      const float beta = pc == 0 ? g.beta : 1.0f;

      auto pack_b = [&](int64_t p0, int64_t p1, int) {
        for (int64_t p = p0; p < p1; ++p)
          pack_b_panel(g, pc, kc, jc + p * NR, std::min<int64_t>(NR, nc - p * NR), NR,
                       bpack + p * NR * kc);
      };
      if (threads == 1) pack_b(0, nr_panels, 0);
      else parallel_for(nr_panels, 4, pack_b);

      const int64_t tasks = blocks_m * n_split;
      auto run_task = [&](int64_t t) {
        const int64_t bi = t / n_split, bj = t % n_split;
        int64_t ic, mcur;
        block_rows(bi, &ic, &mcur);
        const int64_t jp0 = nr_panels * bj / n_split, jp1 = nr_panels * (bj + 1) / n_split;
        if (mcur <= 0 || jp0 >= jp1) return;
        ScratchLease a_lease(ScratchSlot::kGemmPackA, sizeof(float) * static_cast<size_t>(mc * kKC));
        if (!a_lease.ok()) {
          a_oom = true;
          return;
        }
        float* apack = a_lease.as<float>();
        pack_a(g, ic, mcur, pc, kc, MR, apack);
        for (int64_t jp = jp0; jp < jp1; ++jp) {
          const int64_t j = jp * NR;
          const int nr = static_cast<int>(std::min<int64_t>(NR, nc - j));
          const float* bp = bpack + jp * NR * kc;
          for (int64_t ir = 0; ir < mcur; ir += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mcur - ir));
            ker.fn(kc, apack + ir * kc, bp, g.c + (ic + ir) * g.ldc + jc + j, g.ldc, g.alpha, beta,
                   mr, nr);
          }
        }
      };
      if (threads == 1 || tasks == 1) {
        for (int64_t t = 0; t < tasks; ++t) run_task(t);
      } else {
        parallel_for(tasks, 1, [&](int64_t t0, int64_t t1, int) {
          for (int64_t t = t0; t < t1; ++t) run_task(t);
        });
      }
      if (a_oom) return Status::Internal("sgemm: out of memory for a packed A block");
    }
  }
  return Status::Ok();
}

namespace detail {

GemmKernelInfo gemm_kernel_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return gemm_kernel_avx512();
    case Isa::kAvx2: return gemm_kernel_avx2();
    default: return gemm_kernel_generic();
  }
}

}  // namespace detail
}  // namespace vp
