// vp_bench_ceilings: the machine's own limits, measured on every core through the
// core's thread pool, for `npm run bench` to express each row as a fraction of them.
//
//  * fma: the FP32 FMA peak. Each pool thread runs a loop of 24 independent
//    vector FMA chains (AVX-512: 24 zmm, AVX2: 12 ymm; portable: one 8-float chain, which the
//    compiler may not fuse, so that path's peak is a lower bound),
//    enough to cover the FMA latency on every ports layout; flops = 2 · lanes ·
//    chains · iterations · threads over the wall time of the whole parallel_run.
//  * copy: b[i] = a[i] over per-thread slices of 64 MiB arrays (memcpy), bytes
//    counted as read + written (2 · 4 · n, the STREAM convention: no write-allocate).
//  * triad: a[i] = b[i] + s · c[i], bytes 3 · 4 · n.
//  * bandwidth: the larger of copy and triad, the ceiling of memory-bound rows.
// Each: warm-up, then the median of several repetitions (bench_util.h). Cost:
// about 1-2 s at the default size; --quick halves the arrays and repetitions.
// Prints one JSON line: {"bench":"ceilings","threads","isa","fmaGflops","copyGBs","triadGBs","bandwidthGBs",...}.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "bench_util.h"
#include "vp/cpu_features.h"
#include "vp/thread_pool.h"

namespace {

// kChains independent FMA chains of GCC vector type V (a · b + c contracts to
// one FMA under the caller's target), summed at the end so nothing is dead code.
template <typename V, int kChains>
__attribute__((always_inline)) inline float fma_chains(int64_t iters) {
  V acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = V{} + 0.001f * static_cast<float>(i);
  const V a = V{} + 0.9999999f, b = V{} + 1e-7f;
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * a + b;
  }
  V s = acc[0];
  for (int i = 1; i < kChains; ++i) s += acc[i];
  float sum = 0;
  for (size_t j = 0; j < sizeof(V) / sizeof(float); ++j) sum += s[j];
  return sum;
}
typedef float V16 __attribute__((vector_size(64)));
typedef float V8 __attribute__((vector_size(32)));

#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) float fma_loop_avx512(int64_t iters) { return fma_chains<V16, 24>(iters); }
__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) { return fma_chains<V8, 12>(iters); }
#endif
float fma_loop_generic(int64_t iters) { return fma_chains<V8, 1>(iters); }

// Flops of one iteration of the active path's loop, and the loop itself.
double fma_iter_flops(vp::Isa isa) {
  return isa == vp::Isa::kAvx512 ? 2.0 * 16 * 24 : isa == vp::Isa::kAvx2 ? 2.0 * 8 * 12 : 2.0 * 8 * 1;
}
float fma_loop(vp::Isa isa, int64_t iters) {
#if defined(__x86_64__)
  if (isa == vp::Isa::kAvx512) return fma_loop_avx512(iters);
  if (isa == vp::Isa::kAvx2) return fma_loop_avx2(iters);
#endif
  return fma_loop_generic(iters);
}

}  // namespace

int main(int argc, char** argv) {
  const vpbench::Args args = vpbench::parse_args(argc, argv);
  const int threads = vp::num_threads();
  const vp::Isa isa = vp::active_isa();

  // FMA peak: every pool thread runs the loop; about 20 ms a repetition at 200 GFLOP/s.
  const int64_t iters = args.quick ? 1000000 : 3000000;
  volatile float sink = 0;
  const vpbench::Timing tf = vpbench::time_it([&] {
    vp::parallel_run(threads, [&](int, int) { sink = sink + fma_loop(isa, iters); });
  }, 2, args.quick ? 5 : 9, 0);
  const double fma_gflops = fma_iter_flops(isa) * iters * threads / (tf.median_ms * 1e6);

  // Bandwidth: 64 MiB arrays (far beyond the 32 MiB L3 of this class of machine).
  const int64_t n = (args.quick ? 8 : 16) << 20;
  std::vector<float> a(n), b(n), c(n);
  auto slices = [&](const std::function<void(int64_t, int64_t)>& body) {
    vp::parallel_run(threads, [&](int t, int nt) { body(n * t / nt, n * (t + 1) / nt); });
  };
  // Each thread first touches its own slices (the pages land near it).
  slices([&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) a[i] = 1.0f + 1e-6f * static_cast<float>(i & 1023), b[i] = 0.0f, c[i] = 0.5f;
  });
  const int reps = args.quick ? 5 : 9;
  const vpbench::Timing tc = vpbench::time_it([&] {
    slices([&](int64_t i0, int64_t i1) { std::memcpy(b.data() + i0, a.data() + i0, 4 * (i1 - i0)); });
  }, 2, reps, 0);
  const float s = 0.5f;
  const vpbench::Timing tt = vpbench::time_it([&] {
    slices([&](int64_t i0, int64_t i1) {
      float* __restrict pa = a.data();
      const float* __restrict pb = b.data();
      const float* __restrict pc = c.data();
      for (int64_t i = i0; i < i1; ++i) pa[i] = pb[i] + s * pc[i];
    });
  }, 2, reps, 0);
  const double copy = 8.0 * n / (tc.median_ms * 1e6), triad = 12.0 * n / (tt.median_ms * 1e6);
  std::printf("{\"bench\":\"ceilings\",\"threads\":%d,\"isa\":\"%s\",\"fmaGflops\":%.2f,\"fmaMs\":%.4f,"
              "\"copyGBs\":%.2f,\"copyMs\":%.4f,\"triadGBs\":%.2f,\"triadMs\":%.4f,\"bandwidthGBs\":%.2f,"
              "\"arrayMiB\":%lld}\n",
              threads, vp::isa_name(isa), fma_gflops, tf.median_ms, copy, tc.median_ms, triad, tt.median_ms,
              copy > triad ? copy : triad, static_cast<long long>(n * 4 >> 20));
  return static_cast<int>(sink * 0);
}
