// vp_peer_dnnl: oneDNN as the SGEMM peer of `npm run bench -- gemm`, and our
// vp::sgemm timed in the same process on the same buffers. Built only when CMake
// finds oneDNN (Debian's libdnnl-dev); never linked into the addon.
//
//   vp_peer_dnnl [--quick] [--sizes 256,512,...]
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
// oneDNN's threads: OMP_NUM_THREADS (Debian builds it on OpenMP).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "dnnl.hpp"
#include "vp/cpu_features.h"
#include "vp/gemm.h"
#include "vp/thread_pool.h"

int main(int argc, char** argv) {
  const vpbench::Args args = vpbench::parse_args(argc, argv);
  std::vector<int64_t> sizes = args.quick ? std::vector<int64_t>{512, 1024} : std::vector<int64_t>{256, 512, 1024, 2048};
  for (size_t i = 0; i < args.rest.size(); ++i) {
    if (args.rest[i] == "--sizes" && i + 1 < args.rest.size()) {
      sizes.clear();
      std::stringstream ss(args.rest[++i]);
      std::string tok;
      while (std::getline(ss, tok, ',')) {
        const long long v = std::atoll(tok.c_str());
        if (v <= 0 || v > 16384) {
          std::printf("{\"bench\":\"gemm_dnnl\",\"error\":\"--sizes: %s is not a size in 1..16384\"}\n", tok.c_str());
          return 2;
        }
        sizes.push_back(v);
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

    using tag = dnnl::memory::format_tag;
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc md({n, n}, dt::f32, tag::ab);
#if DNNL_VERSION_MAJOR >= 3
    const dnnl::matmul::primitive_desc pd(eng, md, md, md);
#else
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(md, md, md), eng);
#endif
    const dnnl::matmul prim(pd);
    dnnl::memory ma(md, eng, a.data()), mb(md, eng, b.data()), mc(md, eng, c.data());

    vpbench::Timing ours, sg, mm;
    bool first = true;
    for (int round = 0; round < (args.quick ? 1 : 2); ++round) {
      const int reps = n >= 2048 ? 3 : 7;
      const double min_ms = args.quick ? 50 : 200;
      const vpbench::Timing to = vpbench::time_it([&] { (void)vp::sgemm(g); }, 1, reps, min_ms);
      const vpbench::Timing ts = vpbench::time_it([&] {
        (void)dnnl_sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
      }, 1, reps, min_ms);
      const vpbench::Timing tm = vpbench::time_it([&] {
        prim.execute(strm, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
        strm.wait();
      }, 1, reps, min_ms);
      if (first || to.median_ms < ours.median_ms) ours = to;
      if (first || ts.median_ms < sg.median_ms) sg = ts;
      if (first || tm.median_ms < mm.median_ms) mm = tm;
      first = false;
    }
    std::printf("{\"bench\":\"gemm_dnnl\",\"n\":%lld,\"oursMs\":%.5f,\"sgemmMs\":%.5f,\"matmulMs\":%.5f,"
                "\"dnnl\":\"%s\",\"isa\":\"%s\",\"threads\":%d}\n",
                static_cast<long long>(n), ours.median_ms, sg.median_ms, mm.median_ms, version,
                vp::isa_name(vp::active_isa()), vp::num_threads());
    std::fflush(stdout);
  }
  return 0;
}
