// vp_peer_dnnl: oneDNN as the SGEMM peer of `npm run bench -- gemm`, and our
// vp::sgemm timed in the same process on the same buffers. Built only when CMake
// finds oneDNN (Debian's libdnnl-dev); never linked into the addon.
//
//   vp_peer_dnnl [--quick] [--sizes 256,512,...] [--bf16-sizes 2048,...]
//
// For each square size n: C = A · B (row-major float32, n × n) by
//   ours     vp::sgemm (the pool's threads, the active ISA's micro-kernel)
//   sgemm    dnnl_sgemm('N', 'N', ...): oneDNN's BLAS-like entry (row-major)
//   matmul   the matmul primitive, created once per size (its JIT kernels
//            chosen for this CPU), executed on a stream
// The three alternate over two rounds (one with --quick) and each keeps its best
// median (bench_util.h's time_it), so a burst of other load hits none of them
// alone. Cost: 2n³ flops a call; about 10 s in all at 256-2048.
// Prints one JSON line a size:
//   {"bench":"gemm_dnnl","n","oursMs","sgemmMs","matmulMs","dnnl":"<version>","isa"}
// and, for each --bf16-sizes n, bfloat16 inputs and C with float32 accumulation:
//   {"bench":"gemm_bf16","n","oursBf16Ms" (vp::gemm_bf16),"oursSgemmMs" (vp::sgemm on
//    the same values in float32),"dnnlBf16Ms" (oneDNN's bf16 matmul),"relErrVsSgemm","path"}
// oneDNN's threads: OMP_NUM_THREADS (Debian builds it on OpenMP).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <functional>
#include <thread>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "dnnl.hpp"
#include "vp/cpu_features.h"
#include "vp/gemm.h"
#include "vp/gemm_bf16.h"
#include "vp/thread_pool.h"

namespace {

// oneDNN's matmul primitive for row-major n × n operands of type `t` (created once:
// its kernels are chosen for this CPU here, not in the timed calls).
dnnl::matmul square_matmul(const dnnl::engine& eng, int64_t n, dnnl::memory::data_type t, dnnl::memory::desc* md_out) {
  const dnnl::memory::desc md({n, n}, t, dnnl::memory::format_tag::ab);
  *md_out = md;
#if DNNL_VERSION_MAJOR >= 3
  return dnnl::matmul(dnnl::matmul::primitive_desc(eng, md, md, md));
#else
  return dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(md, md, md), eng));
#endif
}

// Times each of fns over `rounds` alternating rounds; each keeps its best median.
// A pause before each contender lets the previous one's idle threads go to sleep:
// oneDNN's OpenMP workers spin-wait after a call (libgomp's default spin), and on
// a 2-core machine a spinning worker takes a core's time from the next contender.
// (bench/gemm.ts sets OMP_WAIT_POLICY=PASSIVE; with ACTIVE, whose workers never
// sleep, our 2048³ SGEMM took 158 ms instead of 85 on the 2-core AMD EPYC.)
std::vector<vpbench::Timing> best_of_rounds(int rounds, int reps, double min_ms, const std::vector<std::function<void()>>& fns) {
  std::vector<vpbench::Timing> best(fns.size());
  for (int round = 0; round < rounds; ++round)
    for (size_t i = 0; i < fns.size(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const vpbench::Timing t = vpbench::time_it(fns[i], 1, reps, min_ms);
      if (round == 0 || t.median_ms < best[i].median_ms) best[i] = t;
    }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const vpbench::Args args = vpbench::parse_args(argc, argv);
  std::vector<int64_t> sizes = args.quick ? std::vector<int64_t>{512, 1024} : std::vector<int64_t>{256, 512, 1024, 2048};
  std::vector<int64_t> bf16_sizes;
  for (size_t i = 0; i < args.rest.size(); ++i) {
    if ((args.rest[i] == "--sizes" || args.rest[i] == "--bf16-sizes") && i + 1 < args.rest.size()) {
      std::vector<int64_t>& list = args.rest[i] == "--sizes" ? sizes : bf16_sizes;
      list.clear();
      std::stringstream ss(args.rest[++i]);
      std::string tok;
      while (std::getline(ss, tok, ',')) {
        const long long v = std::atoll(tok.c_str());
        if (v <= 0 || v > 16384) {
          std::printf("{\"bench\":\"gemm_dnnl\",\"error\":\"--sizes: %s is not a size in 1..16384\"}\n", tok.c_str());
          return 2;
        }
        list.push_back(v);
      }
    }
  }
  const dnnl_version_t* ver = dnnl_version();
  char version[64];
  std::snprintf(version, sizeof version, "%d.%d.%d", ver->major, ver->minor, ver->patch);

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  for (int64_t n : sizes) {
    const std::vector<float> ha = vpbench::normal(n * n, 1, 0.5f), hb = vpbench::normal(n * n, 2, 0.5f);
    std::vector<float> a(n * n), b(n * n), c(n * n);
    for (int64_t i = 0; i < n * n; ++i) a[i] = ha[i % ha.size()], b[i] = hb[i % hb.size()];

    vp::GemmArgs g;
    g.m = g.n = g.k = n;
    g.a = a.data(), g.lda = n;
    g.b = b.data(), g.ldb = n;
    g.c = c.data(), g.ldc = n;

    dnnl::memory::desc md;
    const dnnl::matmul prim = square_matmul(eng, n, dnnl::memory::data_type::f32, &md);
    dnnl::memory ma(md, eng, a.data()), mb(md, eng, b.data()), mc(md, eng, c.data());
    const auto t = best_of_rounds(args.quick ? 1 : 2, n >= 2048 ? 3 : 7, args.quick ? 50 : 200, {
      [&] { (void)vp::sgemm(g); },
      [&] { (void)dnnl_sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n); },
      [&] {
        prim.execute(strm, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
        strm.wait();
      }});
    const vpbench::Timing &ours = t[0], &sg = t[1], &mm = t[2];
    std::printf("{\"bench\":\"gemm_dnnl\",\"n\":%lld,\"oursMs\":%.5f,\"sgemmMs\":%.5f,\"matmulMs\":%.5f,"
                "\"dnnl\":\"%s\",\"isa\":\"%s\",\"threads\":%d}\n",
                static_cast<long long>(n), ours.median_ms, sg.median_ms, mm.median_ms, version,
                vp::isa_name(vp::active_isa()), vp::num_threads());
    std::fflush(stdout);
  }
  // bfloat16 inputs, float32 accumulation, bfloat16 C: our gemm_bf16 against our
  // float32 SGEMM on the same values and oneDNN's bf16 matmul primitive.
  for (int64_t n : bf16_sizes) {
    const std::vector<float> ha = vpbench::normal(n * n, 3, 0.5f), hb = vpbench::normal(n * n, 4, 0.5f);
    std::vector<float> a(n * n), b(n * n), c(n * n);
    std::vector<uint16_t> a16(n * n), b16(n * n), c16(n * n);
    for (int64_t i = 0; i < n * n; ++i) {
      a16[i] = vp::float_to_bf16(ha[i % ha.size()]), b16[i] = vp::float_to_bf16(hb[i % hb.size()]);
      a[i] = vp::bf16_to_float(a16[i]), b[i] = vp::bf16_to_float(b16[i]);
    }
    vp::GemmArgs g;
    g.m = g.n = g.k = n, g.a = a.data(), g.lda = n, g.b = b.data(), g.ldb = n, g.c = c.data(), g.ldc = n;
    vp::GemmBf16Args h;
    h.m = h.n = h.k = n, h.a = a16.data(), h.lda = n, h.b = b16.data(), h.ldb = n, h.c16 = c16.data(), h.ldc = n;
    dnnl::memory::desc md;
    const dnnl::matmul prim = square_matmul(eng, n, dnnl::memory::data_type::bf16, &md);
    std::vector<uint16_t> d16(n * n);
    dnnl::memory ma(md, eng, a16.data()), mb(md, eng, b16.data()), mc(md, eng, d16.data());
    const auto t = best_of_rounds(args.quick ? 1 : 2, 3, args.quick ? 50 : 200, {
      [&] { (void)vp::gemm_bf16(h); },
      [&] { (void)vp::sgemm(g); },
      [&] {
        prim.execute(strm, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
        strm.wait();
      }});
    const vpbench::Timing &ours = t[0], &sg = t[1], &mm = t[2];
    // Agreement: our bf16 C against our float32 SGEMM of the same values (relative, Frobenius).
    double num = 0, den = 0;
    for (int64_t i = 0; i < n * n; ++i) {
      const double d = static_cast<double>(vp::bf16_to_float(c16[i])) - c[i];
      num += d * d, den += static_cast<double>(c[i]) * c[i];
    }
    std::printf("{\"bench\":\"gemm_bf16\",\"n\":%lld,\"oursBf16Ms\":%.5f,\"oursSgemmMs\":%.5f,\"dnnlBf16Ms\":%.5f,"
                "\"relErrVsSgemm\":%.3g,\"path\":\"%s\",\"dnnl\":\"%s\",\"threads\":%d}\n",
                static_cast<long long>(n), ours.median_ms, sg.median_ms, mm.median_ms, std::sqrt(num / den),
                vp::gemm_bf16_path(), version, vp::num_threads());
    std::fflush(stdout);
  }
  return 0;
}
