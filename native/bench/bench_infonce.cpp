// vp_bench_infonce: the fused InfoNCE loss on CPU (float32) or CUDA
// (float32/bfloat16/float16), one JSON line per case (bench_util.h format).
//
// Cases: N = M (queries = keys), D = 256, τ = 0.07, normalize, positive[i] = i:
//   fwd        vp::info_nce (lse and the loss)
//   withGrad   vp::info_nce_with_grad (forward and backward in one pass)
//   separate   vp::info_nce + vp::info_nce_backward
// bench/peers/gpu_torch.py times PyTorch's composite on the same shapes:
// F.normalize → q̂·k̂ᵀ / τ (float32 logits) → F.cross_entropy, with autograd.
// FLOPs: 2·N·M·D per product; fwd does 1, withGrad 3, separate 4.
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vp/infonce.h"

int main(int argc, char** argv) {
  const vpbench::Args args = vpbench::parse_args(argc, argv);
  if (!vpbench::can_run("infonce", args)) return 0;
  const int64_t d = 256;
  std::vector<int64_t> sizes = args.quick  ? std::vector<int64_t>{4096}
                               : args.full ? std::vector<int64_t>{4096, 16384, 32768}
                                           : std::vector<int64_t>{4096, 16384};
  if (!args.cuda()) sizes = {1024};
  int failures = 0;
  for (int64_t n : sizes) {
    const int64_t m = n;
    vpbench::Buffers buf("infonce", args);
    const vp::TensorView q = buf.floats(vpbench::normal(n * d, 1), {n, d});
    const vp::TensorView k = buf.floats(vpbench::normal(m * d, 2), {m, d});
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pos[i] = static_cast<int32_t>(i % m);
    const vp::TensorView positive(pos.data(), {n}, vp::DType::kInt32, vp::Device::kCPU);  // host memory on both devices
    const vp::TensorView lse = buf.empty({n}, vp::DType::kFloat32);
    const vp::TensorView dq = buf.empty({n, d}), dk = buf.empty({m, d});
    vp::InfoNceOptions o;
    o.temperature = 0.07f;
    double loss = 0, dlt = 0;
    const std::string shape = std::to_string(n) + "x" + std::to_string(m) + "x" + std::to_string(d);
    struct Variant {
      const char* name;
      int products;
      std::function<vp::Status()> fn;
    };
    const Variant variants[] = {
        {"fwd", 1, [&] { return vp::info_nce(q, k, positive, o, lse, &loss); }},
        {"withGrad", 3, [&] { return vp::info_nce_with_grad(q, k, positive, o, lse, dq, dk, &loss, &dlt); }},
        {"separate", 4,
         [&] {
           vp::Status s = vp::info_nce(q, k, positive, o, lse, &loss);
           return s.ok() ? vp::info_nce_backward(q, k, lse, positive, o, dq, dk, &dlt) : s;
         }},
    };
    for (const Variant& v : variants) {
      vp::Status st;
      const vpbench::Timing t = vpbench::time_on(args, [&] { st = v.fn(); });
      const std::string cas = std::string(v.name) + " " + shape;
      if (!st.ok()) {
        vpbench::error_line("infonce", cas, args, st.message());
        ++failures;
        continue;
      }
      const double flops = 2.0 * n * m * d * v.products;
      char extra[256];
      std::snprintf(extra, sizeof extra,
                    "\"variant\":\"%s\",\"N\":%lld,\"M\":%lld,\"D\":%lld,\"temperature\":0.07,\"loss\":%.6f,"
                    "\"flops\":%.6g,\"tflops\":%.3f,%s",
                    v.name, static_cast<long long>(n), static_cast<long long>(m), static_cast<long long>(d), loss, flops,
                    flops / (t.median_ms * 1e9), vpbench::machine_json(args).c_str());
      vpbench::emit("infonce", cas, args, t, extra);
    }
  }
  return failures ? 1 : 0;
}
