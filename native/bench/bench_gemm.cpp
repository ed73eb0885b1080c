// vp_bench_gemm: our matmul on CPU (float32) or CUDA (float32/bfloat16/float16),
// square sizes, one JSON line per size. bench/gpu.sh pairs it with PyTorch.
#include <cstdint>
#include <cstdio>
#include <vector>

#include "bench_util.h"
#include "vp/gemm.h"

int main(int argc, char** argv) {
  vpbench::Args args = vpbench::parse_args(argc, argv);
  const bool cuda = args.device == "cuda";
  if (cuda && !vp::cuda::available()) {
    std::fprintf(stderr, "vp_bench_gemm: CUDA unavailable: %s\n", vp::cuda::unavailable_reason().c_str());
    return 2;
  }
  vp::DType dt = args.dtype == "bfloat16" ? vp::DType::kBFloat16 : args.dtype == "float16" ? vp::DType::kFloat16 : vp::DType::kFloat32;
  if (!cuda && dt != vp::DType::kFloat32) {
    std::fprintf(stderr, "vp_bench_gemm: CPU computes in float32\n");
    return 2;
  }
  std::vector<int64_t> sizes = args.quick ? std::vector<int64_t>{1024} : std::vector<int64_t>{1024, 2048, 4096, 8192};
  if (!cuda) sizes = args.quick ? std::vector<int64_t>{256, 1024} : std::vector<int64_t>{256, 512, 1024, 2048};
  for (int64_t n : sizes) {
    const size_t bytes = static_cast<size_t>(n * n) * vp::dtype_size(dt);
    std::vector<uint8_t> host(bytes, 0);
    // Small values, the same bit pattern for every dtype width: fine for timing.
    for (size_t i = 0; i + 1 < bytes; i += 2) host[i + 1] = 0x3c;
    vp::TensorView a(host.data(), {n, n}, dt), b(host.data(), {n, n}, dt);
    std::vector<uint8_t> out_host(bytes);
    vp::TensorView c(out_host.data(), {n, n}, dt);
    void *da = nullptr, *db = nullptr, *dc = nullptr;
    if (cuda) {
      if (!vp::cuda::malloc_device(&da, bytes).ok() || !vp::cuda::malloc_device(&db, bytes).ok() ||
          !vp::cuda::malloc_device(&dc, bytes).ok()) {
        std::fprintf(stderr, "vp_bench_gemm: out of device memory at n=%lld\n", static_cast<long long>(n));
        return 1;
      }
      vp::cuda::copy_to_device(da, host.data(), bytes);
      vp::cuda::copy_to_device(db, host.data(), bytes);
      a.data = da; b.data = db; c.data = dc;
      a.device = b.device = c.device = vp::Device::kCUDA;
    }
    vp::Status st;
    vpbench::Timing t = vpbench::time_it([&] {
      st = vp::matmul(a, b, false, false, c);
      if (cuda) vp::cuda::synchronize();
    });
    if (!st.ok()) {
      std::fprintf(stderr, "vp_bench_gemm: %s\n", st.message().c_str());
      return 1;
    }
    char extra[128];
    std::snprintf(extra, sizeof extra, "\"m\":%lld,\"n\":%lld,\"k\":%lld,\"gflops\":%.2f", static_cast<long long>(n),
                  static_cast<long long>(n), static_cast<long long>(n), 2.0 * n * n * n / (t.median_ms * 1e6));
    vpbench::emit("gemm", std::to_string(n) + "x" + std::to_string(n) + "x" + std::to_string(n), args, t, extra);
    if (cuda) {
      vp::cuda::free_device(da);
      vp::cuda::free_device(db);
      vp::cuda::free_device(dc);
    }
  }
  return 0;
}
