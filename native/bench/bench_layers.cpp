// vp_bench_layers: the VideoLM layer kernels on the CPU, called directly (no
// Node, no output allocation per call), at the shapes of bench/layers.ts: one
// layer of the planned `small` preset on 4096 packed tokens. One JSON line per
// kernel with its memory traffic in GB/s. VP_ISA=generic|avx2|avx512 picks the path.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vp/cpu_features.h"
#include "vp/layers.h"
#include "vp/optim.h"
#include "vp/rng.h"

int main(int argc, char** argv) {
  vpbench::Args args = vpbench::parse_args(argc, argv);
  if (args.device != "cpu") {
    vpbench::skip_line("layers", args, "vp_bench_layers times the CPU kernels only");
    return 0;
  }
  const int64_t N = args.quick ? 1024 : 4096, D = 512, H = 8, HD = 64, F = 1408, V = 8192;
  const int64_t NT = args.quick ? 256 : 1024, P = args.quick ? (1 << 21) : (1 << 23);
  auto fill = [](int64_t n, uint64_t stream, float sd) {
    std::vector<float> v(n);
    (void)vp::rng_normal(7, stream, 0.0f, sd, v.data(), n);
    return v;
  };
  auto report = [&](const char* name, double bytes, vpbench::Timing t) {
    char extra[160];
    std::snprintf(extra, sizeof extra, "\"isa\":\"%s\",\"gbps\":%.2f", vp::isa_name(vp::active_isa()),
                  bytes / (t.median_ms * 1e6));
    vpbench::emit("layers", name, args, t, extra);
  };
  {
    auto x = fill(N * D, 1, 1), g = fill(D, 2, 1), dy = fill(N * D, 3, 1);
    std::vector<float> y(N * D), rs(N), dx(N * D), dg(D);
    report("rmsnorm_fwd", 4.0 * N * D * 2, vpbench::time_it([&] { (void)vp::rmsnorm_forward(x.data(), g.data(), N, D, 1e-5f, y.data(), rs.data()); }));
    report("rmsnorm_bwd", 4.0 * N * D * 5, vpbench::time_it([&] { (void)vp::rmsnorm_backward(dy.data(), x.data(), g.data(), rs.data(), N, D, 1e-5f, dx.data(), dg.data(), false); }));
  }
  {
    auto gu = fill(N * 2 * F, 4, 2), dh = fill(N * F, 5, 1);
    std::vector<float> h(N * F), dgu(N * 2 * F);
    report("swiglu_fwd", 4.0 * N * F * 3, vpbench::time_it([&] { (void)vp::swiglu_forward(gu.data(), gu.data() + F, N, F, 2 * F, h.data()); }));
    report("swiglu_bwd", 4.0 * N * F * 5, vpbench::time_it([&] { (void)vp::swiglu_backward(dh.data(), gu.data(), gu.data() + F, N, F, 2 * F, dgu.data(), dgu.data() + F); }));
  }
  {
    auto x = fill(N * H * HD, 6, 1);
    std::vector<float> y(N * H * HD);
    std::vector<int32_t> pos(N);
    for (int64_t i = 0; i < N; ++i) pos[i] = static_cast<int32_t>(i % 512);
    report("rope", 4.0 * N * H * HD * 2, vpbench::time_it([&] { (void)vp::rope_apply(x.data(), pos.data(), N, H, HD, 10000.0f, false, y.data()); }));
  }
  {
    auto logits = fill(NT * V, 7, 2);
    std::vector<float> lse(NT), d(NT * V);
    std::vector<int32_t> t(NT);
    for (int64_t i = 0; i < NT; ++i) t[i] = i % 7 == 6 ? -1 : static_cast<int32_t>((i * 131) % V);
    float loss = 0;
    report("cross_entropy_fwd", 4.0 * NT * V, vpbench::time_it([&] { (void)vp::cross_entropy_forward(logits.data(), t.data(), NT, V, &loss, lse.data(), nullptr); }));
    report("cross_entropy_bwd", 4.0 * NT * V * 2, vpbench::time_it([&] { (void)vp::cross_entropy_backward(logits.data(), t.data(), lse.data(), NT, V, 1.0f, d.data()); }));
  }
  {
    auto table = fill(V * D, 8, 1), dout = fill(N * D, 9, 1);
    std::vector<float> out(N * D), dt(V * D);
    std::vector<int32_t> ids(N);
    for (int64_t i = 0; i < N; ++i) ids[i] = static_cast<int32_t>((static_cast<uint64_t>(i) * 2654435761u) % V);
    report("embedding_fwd", 4.0 * N * D * 2, vpbench::time_it([&] { (void)vp::embedding_forward(table.data(), V, D, ids.data(), N, out.data()); }));
    report("embedding_bwd", 4.0 * (N * D + V * D), vpbench::time_it([&] { (void)vp::embedding_backward(dout.data(), ids.data(), N, V, D, dt.data(), false); }));
  }
  {
    auto p = fill(P, 10, 1), g = fill(P, 11, 1);
    std::vector<float> m(P), v(P);
    vp::AdamWConfig c;
    c.weight_decay = 0.1f;
    report("adamw", 4.0 * P * 7, vpbench::time_it([&] { (void)vp::adamw_step(p.data(), g.data(), m.data(), v.data(), P, c); }));
    std::vector<float*> ptrs{g.data()};
    std::vector<int64_t> sizes{P};
    double norm = 0;
    report("clip_grad_norm", 4.0 * P, vpbench::time_it([&] { (void)vp::clip_grad_norm(ptrs.data(), sizes.data(), 1, 1e30, &norm); }));
    std::vector<float> init(P);
    report("rng_normal", 4.0 * P, vpbench::time_it([&] { (void)vp::rng_normal(1, 2, 0.0f, 0.02f, init.data(), P); }));
  }
  return 0;
}
