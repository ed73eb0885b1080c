// vp_bench_gemm: our matmul on CPU (float32) or CUDA (float32/bfloat16/float16),
// square sizes, one JSON line per size. bench/gpu.sh pairs it with PyTorch's a @ b.
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vp/gemm.h"

int main(int argc, char** argv) {
  const vpbench::Args args = vpbench::parse_args(argc, argv);
  if (!vpbench::can_run("gemm", args)) return 0;
  std::vector<int64_t> sizes = args.quick  ? std::vector<int64_t>{4096}
                               : args.full ? std::vector<int64_t>{1024, 2048, 4096, 8192}
                                           : std::vector<int64_t>{2048, 4096, 8192};
  if (!args.cuda()) sizes = args.quick ? std::vector<int64_t>{256} : std::vector<int64_t>{256, 512, 1024, 2048};
  for (int64_t n : sizes) {
    vpbench::Buffers buf("gemm", args);
    const vp::TensorView a = buf.floats(vpbench::normal(n * n, 1, 0.5f), {n, n});
    const vp::TensorView b = buf.floats(vpbench::normal(n * n, 2, 0.5f), {n, n});
    const vp::TensorView c = buf.empty({n, n});
    vp::Status st;
    const vpbench::Timing t = vpbench::time_on(args, [&] {
      st = vp::matmul(a, b, false, false, c);  // CUDA: time_on's events wait for it
    });
    const std::string name = std::to_string(n) + "x" + std::to_string(n) + "x" + std::to_string(n);
    if (!st.ok()) {
      vpbench::error_line("gemm", name, args, st.message());
      return 1;
    }
    char extra[160];
    std::snprintf(extra, sizeof extra, "\"m\":%lld,\"n\":%lld,\"k\":%lld,\"tflops\":%.3f", static_cast<long long>(n),
                  static_cast<long long>(n), static_cast<long long>(n), 2.0 * n * n * n / (t.median_ms * 1e9));
    vpbench::emit("gemm", name, args, t, extra);
  }
  return 0;
}
