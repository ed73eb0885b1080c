// Helpers for the native benchmarks (no Node needed, so they run on a GPU
// machine without Node.js): median timing, deterministic inputs on either
// device, and one JSON line per case.
//
// Every driver takes the same arguments (bench/gpu.sh passes them):
//   --device cpu|cuda  --dtype float32|bfloat16|float16  [--quick | --full]
// and prints one JSON line per case:
//   {"bench", "case", "device", "dtype", "ms", "minMs", "reps", <shape fields>}
// or, when it cannot run, one line {"bench", "device", "dtype", "skipped": why}
// (exit code 0: a machine without a GPU is not an error) or {"bench", "error"}.
// bench/peers/gpu_torch.py reads these lines and times PyTorch on the same
// shapes; bench/gpu_report.py joins the two.
//
// CUDA timing: CUDA events recorded on the legacy default stream, which is the
// stream every kernel of the core launches on; warm-up calls first, then at
// least `reps` timed calls (and at least `min_ms` in total), the median.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#ifdef VP_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "vp/cuda.h"
#include "vp/rng.h"
#include "vp/tensor.h"

namespace vpbench {

struct Timing {
  double median_ms = 0, min_ms = 0;
  int reps = 0;
};

inline Timing summarize(std::vector<double> s) {
  std::sort(s.begin(), s.end());
  return {s[s.size() / 2], s[0], static_cast<int>(s.size())};
}

// Times fn on the host clock (fn must leave its work complete).
inline Timing time_it(const std::function<void()>& fn, int warmup = 2, int reps = 7, double min_ms = 200) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> s;
  auto start = std::chrono::steady_clock::now();
  while (static_cast<int>(s.size()) < reps ||
         (std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() < min_ms &&
          s.size() < 200)) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    s.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return summarize(std::move(s));
}

// Times fn on the GPU with CUDA events (default stream). Without CUDA: time_it.
inline Timing time_cuda(const std::function<void()>& fn, int warmup = 3, int reps = 20, double min_ms = 100) {
#ifdef VP_WITH_CUDA
  // The first warm-up call also sizes the run: a long call gets no further warm-up.
  const auto w0 = std::chrono::steady_clock::now();
  fn();
  cudaDeviceSynchronize();
  if (std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count() < 100.0)
    for (int i = 1; i < warmup; ++i) fn();
  cudaDeviceSynchronize();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> s;
  double total = 0;
  // Long calls: fewer repetitions (at least 5), so one case stays near 2 s.
  auto enough = [&] {
    if (s.empty()) return false;
    const int want = std::max(5, std::min(reps, static_cast<int>(2000.0 / std::max(s[0], 1e-3))));
    return static_cast<int>(s.size()) >= want && (total >= min_ms || s.size() >= 1000);
  };
  while (!enough()) {
    cudaEventRecord(a, 0);
    fn();
    cudaEventRecord(b, 0);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    s.push_back(ms);
    total += ms;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return summarize(std::move(s));
#else
  return time_it(fn, warmup, reps, min_ms);
#endif
}

// Arguments: --device cpu|cuda, --dtype float32|bfloat16|float16, --quick (fewer,
// smaller cases) or --full (more, larger ones; the default sits between).
// Unknown arguments are left to the driver (`rest`).
struct Args {
  std::string device = "cpu";
  std::string dtype = "float32";
  bool quick = false;
  bool full = false;
  std::vector<std::string> rest;
  bool cuda() const { return device == "cuda"; }
  vp::Device dev() const { return cuda() ? vp::Device::kCUDA : vp::Device::kCPU; }
  vp::DType dt() const {
    return dtype == "bfloat16" ? vp::DType::kBFloat16 : dtype == "float16" ? vp::DType::kFloat16 : vp::DType::kFloat32;
  }
};

inline Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--device") && i + 1 < argc) a.device = argv[++i];
    else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) a.dtype = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) a.quick = true;
    else if (!std::strcmp(argv[i], "--full")) a.full = true;
    else a.rest.emplace_back(argv[i]);
  }
  return a;
}

inline std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    o += c;
  }
  return o;
}

inline void skip_line(const std::string& bench, const Args& a, const std::string& why) {
  std::printf("{\"bench\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\",\"skipped\":\"%s\"}\n", bench.c_str(),
              a.device.c_str(), a.dtype.c_str(), json_escape(why).c_str());
  std::fflush(stdout);
}

inline void error_line(const std::string& bench, const std::string& cas, const Args& a, const std::string& why) {
  std::printf("{\"bench\":\"%s\",\"case\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\",\"error\":\"%s\"}\n",
              bench.c_str(), cas.c_str(), a.device.c_str(), a.dtype.c_str(), json_escape(why).c_str());
  std::fflush(stdout);
}

// The common refusals: CUDA asked for but absent (a "skipped" line, exit 0 from
// the caller), or a 16-bit dtype on the CPU. True when the driver can go on.
inline bool can_run(const std::string& bench, const Args& a) {
  if (a.device != "cpu" && a.device != "cuda") {
    skip_line(bench, a, "unknown device " + a.device);
    return false;
  }
  if (a.cuda() && !vp::cuda::available()) {
    skip_line(bench, a, "no CUDA device: " + vp::cuda::unavailable_reason());
    return false;
  }
  if (!a.cuda() && a.dt() != vp::DType::kFloat32) {
    skip_line(bench, a, "the CPU computes in float32 only");
    return false;
  }
  return true;
}

// {"bench":..., "case":..., "device":..., "dtype":..., "ms":..., <extra>}
inline void emit(const std::string& bench, const std::string& cas, const Args& a, const Timing& t,
                 const std::string& extra_json = "") {
  std::printf("{\"bench\":\"%s\",\"case\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\",\"ms\":%.6f,\"minMs\":%.6f,\"reps\":%d%s%s}\n",
              bench.c_str(), cas.c_str(), a.device.c_str(), a.dtype.c_str(), t.median_ms, t.min_ms, t.reps,
              extra_json.empty() ? "" : ",", extra_json.c_str());
  std::fflush(stdout);
}

// Times fn on the device the arguments name (CUDA events or the host clock).
inline Timing time_on(const Args& a, const std::function<void()>& fn) {
  if (a.cuda()) return time_cuda(fn, 3, a.quick ? 10 : 20, a.quick ? 50 : 100);
  return time_it(fn, 1, a.quick ? 3 : 5, a.quick ? 50 : 200);
}

// A view with a shape given at run time.
inline vp::TensorView view(void* p, const std::vector<int64_t>& shape, vp::DType dt, vp::Device dev) {
  vp::TensorView t;
  t.data = p;
  for (int64_t s : shape) t.shape[t.ndim++] = s;
  t.dtype = dt;
  t.device = dev;
  return t;
}

// Owns the buffers of one case, on the host or the device; frees them at scope exit.
// An allocation or copy that fails ends the process with an error line.
class Buffers {
 public:
  Buffers(std::string bench, const Args& a) : bench_(std::move(bench)), a_(a) {}
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
  ~Buffers() {
    for (void* p : owned_) {
      if (a_.cuda()) vp::cuda::free_device(p);
      else std::free(p);
    }
  }

  // Uninitialized storage for a tensor of `shape` and `dt` (the case's dtype when omitted).
  vp::TensorView empty(const std::vector<int64_t>& shape, vp::DType dt) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return view(alloc(static_cast<size_t>(n) * vp::dtype_size(dt)), shape, dt, a_.dev());
  }
  vp::TensorView empty(const std::vector<int64_t>& shape) { return empty(shape, a_.dt()); }

  // Host float32 values as a tensor of dtype `dt` on the case's device (rounded on the
  // device). A tensor larger than `h` repeats it (normal() and uniform() cap their
  // values at kMaxDistinct: gigabyte tensors need no gigabyte host buffers or minutes of RNG).
  vp::TensorView floats(const std::vector<float>& h, const std::vector<int64_t>& shape, vp::DType dt) {
    vp::TensorView t = empty(shape, dt);
    const size_t n = static_cast<size_t>(t.numel());
    if (n == 0 || h.empty()) return t;
    if (!a_.cuda()) {
      float* out = t.as<float>();
      for (size_t i = 0; i < n; i += h.size()) std::memcpy(out + i, h.data(), std::min(h.size(), n - i) * 4);
      return t;
    }
    void* f32 = t.data;  // float32: fill in place; 16-bit: fill a float32 copy, then convert
    if (dt != vp::DType::kFloat32) check(vp::cuda::malloc_device(&f32, n * 4), "cudaMalloc");
    check(vp::cuda::copy_to_device(f32, h.data(), std::min(h.size(), n) * 4), "copy to the device");
    for (size_t done = std::min(h.size(), n); done < n; done *= 2)  // double the filled prefix
      check(vp::cuda::copy_device_to_device(static_cast<float*>(f32) + done, f32, std::min(done, n - done) * 4),
            "copy on the device");
    if (dt != vp::DType::kFloat32) {
      check(vp::cuda::convert(view(f32, shape, vp::DType::kFloat32, vp::Device::kCUDA), t), "convert");
      vp::cuda::free_device(f32);
    }
    return t;
  }
  vp::TensorView floats(const std::vector<float>& h, const std::vector<int64_t>& shape) {
    return floats(h, shape, a_.dt());
  }

  // Host int32 values as a tensor on the case's device.
  vp::TensorView ints(const std::vector<int32_t>& h, const std::vector<int64_t>& shape) {
    vp::TensorView t = empty(shape, vp::DType::kInt32);
    if (a_.cuda()) check(vp::cuda::copy_to_device(t.data, h.data(), h.size() * 4), "copy to the device");
    else std::memcpy(t.data, h.data(), h.size() * 4);
    return t;
  }

  void check(const vp::Status& s, const char* what) {
    if (s.ok()) return;
    error_line(bench_, "", a_, std::string(what) + ": " + s.message());
    std::exit(1);
  }

 private:
  void* alloc(size_t bytes) {
    void* p = nullptr;
    if (a_.cuda()) {
      vp::Status s = vp::cuda::malloc_device(&p, bytes ? bytes : 4);
      if (!s.ok()) {
        error_line(bench_, "", a_, "out of device memory (" + std::to_string(bytes >> 20) + " MiB): " + s.message());
        std::exit(1);
      }
    } else {
      p = std::malloc(bytes ? bytes : 4);
      if (!p) {
        error_line(bench_, "", a_, "out of host memory");
        std::exit(1);
      }
    }
    owned_.push_back(p);
    return p;
  }

  std::string bench_;
  Args a_;
  std::vector<void*> owned_;
};

// Deterministic N(mean, sd) values (seed, stream), the same on every machine: n of
// them, or kMaxDistinct for a larger n (Buffers::floats repeats them).
constexpr int64_t kMaxDistinct = int64_t{1} << 22;
inline std::vector<float> normal(int64_t n, uint64_t stream, float sd = 1.0f, float mean = 0.0f) {
  std::vector<float> v(static_cast<size_t>(std::min(n, kMaxDistinct)));
  (void)vp::rng_normal(20261126, stream, mean, sd, v.data(), static_cast<int64_t>(v.size()));
  return v;
}

// Uniform in [lo, hi): exactly n values (per-row vectors must not repeat).
inline std::vector<float> uniform(int64_t n, uint64_t stream, float lo, float hi) {
  std::vector<float> v(static_cast<size_t>(n));
  (void)vp::rng_uniform(20261126, stream, lo, hi, v.data(), n);
  return v;
}

// The "machine" line: what the numbers were measured on.
inline std::string machine_json(const Args& a) {
  if (!a.cuda()) return "\"gpu\":null";
  const vp::cuda::DeviceInfo d = vp::cuda::device_info();
  return "\"gpu\":\"" + json_escape(d.name) + "\",\"sm\":" + std::to_string(d.major * 10 + d.minor);
}

}  // namespace vpbench
