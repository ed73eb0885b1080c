// The CUDA backend's runtime pieces: device discovery, memory, copies and
// dtype conversion, the scratch pool. The runtime is linked statically, so this
// code loads on a machine with no driver; cudaGetDeviceCount then fails (error
// 35, "driver insufficient", or 100, "no device") and available() reports why.
// A GPU below compute capability 8.0, or one this build has no kernel image
// for, is reported unavailable too (host::cc_problem, then a probe kernel).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "host_checks.h"
#include "scratch_pool.h"
#include "vp/cuda.h"

#ifndef VP_CUDA_ARCHS
#define VP_CUDA_ARCHS ""
#endif

namespace vp::cuda {
namespace {

// An empty kernel: whether the driver can load it says whether this binary
// holds code for the device.
__global__ void probe_kernel() {}

struct Probe {
  bool available = false;
  std::string reason;
  DeviceInfo info;
};

const Probe& probe() {
  static Probe p;
  static std::once_flag once;
  std::call_once(once, [] {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      p.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e) + " (error " +
                 std::to_string(static_cast<int>(e)) + ")";
      cudaGetLastError();  // clear the sticky error
      return;
    }
    if (count == 0) {
      p.reason = "no CUDA device is visible";
      return;
    }
    cudaDeviceProp prop{};
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
      p.reason = std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorString(e);
      return;
    }
    // The architectures this binary was built for (CMakeLists.txt passes them), then
    // the driver's own answer: can it load a kernel of this binary for device 0?
    const std::string problem = host::cc_problem(prop.major, prop.minor, VP_CUDA_ARCHS);
    if (!problem.empty()) {
      p.reason = std::string("GPU ") + prop.name + ": " + problem;
      return;
    }
    cudaFuncAttributes attr{};
    e = cudaFuncGetAttributes(&attr, probe_kernel);
    if (e != cudaSuccess) {
      p.reason = std::string("GPU ") + prop.name + " (compute capability " + std::to_string(prop.major) + "." +
                 std::to_string(prop.minor) + "): no kernel of this build loads on it (" + cudaGetErrorString(e) +
                 "; built for " + VP_CUDA_ARCHS + ")";
      cudaGetLastError();
      return;
    }
    p.available = true;
    p.info.name = prop.name;
    p.info.major = prop.major;
    p.info.minor = prop.minor;
    p.info.memory_bytes = prop.totalGlobalMem;
    p.info.device_count = count;
  });
  return p;
}

Status check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status::Internal(std::string(what) + ": " + cudaGetErrorString(e));
}

Status require_available() {
  if (!probe().available) return Status::Unavailable("CUDA is unavailable: " + probe().reason);
  return Status::Ok();
}

template <typename From, typename To>
__global__ void convert_kernel(const From* __restrict__ src, To* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = static_cast<To>(static_cast<float>(src[i]));
  }
}

template <typename From, typename To>
Status launch_convert(const TensorView& src, const TensorView& dst) {
  int64_t n = src.numel();
  if (n == 0) return Status::Ok();
  int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535));
  convert_kernel<From, To><<<blocks, 256>>>(src.as<From>(), dst.as<To>(), n);
  return check(cudaGetLastError(), "convert kernel launch");
}

}  // namespace

bool compiled() { return true; }
bool available() { return probe().available; }
std::string unavailable_reason() { return probe().available ? std::string() : probe().reason; }
DeviceInfo device_info() { return probe().info; }
int runtime_version() { return CUDART_VERSION; }

Status malloc_device(void** ptr, size_t bytes) {
  VP_RETURN_IF_ERROR(require_available());
  *ptr = nullptr;
  if (bytes == 0) bytes = 1;  // a valid, unique pointer even for empty tensors
  return check(cudaMalloc(ptr, bytes), "cudaMalloc");
}

void free_device(void* ptr) {
  if (ptr) cudaFree(ptr);
}

Status copy_to_device(void* dst, const void* src, size_t bytes) {
  VP_RETURN_IF_ERROR(require_available());
  if (bytes == 0) return Status::Ok();
  return check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host->device");
}

Status copy_to_host(void* dst, const void* src, size_t bytes) {
  VP_RETURN_IF_ERROR(require_available());
  if (bytes == 0) return Status::Ok();
  return check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device->host");
}

Status copy_device_to_device(void* dst, const void* src, size_t bytes) {
  VP_RETURN_IF_ERROR(require_available());
  if (bytes == 0) return Status::Ok();
  return check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy device->device");
}

Status synchronize() {
  VP_RETURN_IF_ERROR(require_available());
  return check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

ScratchPool& device_scratch_pool() {
  static ScratchPool* pool = new ScratchPool(  // never destroyed: no CUDA calls at process exit
      [](void** p, size_t bytes) -> std::string {
        const cudaError_t e = cudaMalloc(p, bytes);
        if (e == cudaSuccess) return "";
        cudaGetLastError();
        return std::string("cudaMalloc: ") + cudaGetErrorString(e);
      },
      [](void* p) { cudaFree(p); });
  return *pool;
}

ScratchStats scratch_stats() { return device_scratch_pool().stats(); }

Status scratch_lease(size_t bytes, void** ptr, size_t* slot) {
  VP_RETURN_IF_ERROR(require_available());
  const std::string err = device_scratch_pool().acquire(bytes == 0 ? 1 : bytes, ptr, slot);
  if (!err.empty()) return Status::Internal("device scratch of " + std::to_string(bytes) + " bytes: " + err);
  return Status::Ok();
}

void scratch_release(size_t slot) { device_scratch_pool().release(slot); }
size_t scratch_trim() { return available() ? device_scratch_pool().trim() : 0; }

Status convert(const TensorView& src, const TensorView& dst) {
  VP_RETURN_IF_ERROR(require_available());
  if (src.numel() != dst.numel()) return Status::Invalid("convert: src and dst sizes differ");
  using F = float;
  using B = __nv_bfloat16;
  using H = __half;
  const DType s = src.dtype, d = dst.dtype;
  if (s == DType::kFloat32 && d == DType::kBFloat16) return launch_convert<F, B>(src, dst);
  if (s == DType::kFloat32 && d == DType::kFloat16) return launch_convert<F, H>(src, dst);
  if (s == DType::kBFloat16 && d == DType::kFloat32) return launch_convert<B, F>(src, dst);
  if (s == DType::kFloat16 && d == DType::kFloat32) return launch_convert<H, F>(src, dst);
  if (s == DType::kBFloat16 && d == DType::kFloat16) return launch_convert<B, H>(src, dst);
  if (s == DType::kFloat16 && d == DType::kBFloat16) return launch_convert<H, B>(src, dst);
  return Status::Invalid(std::string("convert: cannot convert ") + dtype_name(s) + " to " + dtype_name(d));
}

}  // namespace vp::cuda
