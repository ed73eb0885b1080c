// vp/cuda.h — the CUDA backend as seen from backend-neutral code.
//
// Everything here is callable whether or not the core was built with CUDA: in a
// CPU-only build, or on a machine without a driver/GPU, available() is false and
// unavailable_reason() says why. Device memory is plain cudaMalloc memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp::cuda {

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;
  size_t memory_bytes = 0;
  int device_count = 0;
};

// Whether this binary was compiled with CUDA support.
bool compiled();

// Whether a usable CUDA device is present (driver + GPU). Probed once.
bool available();

// Why CUDA is not available (empty when it is).
std::string unavailable_reason();

// Info about device 0 (only meaningful when available()).
DeviceInfo device_info();

// The CUDA runtime version this binary was built with, e.g. 13000 (0 in CPU-only builds).
int runtime_version();

Status malloc_device(void** ptr, size_t bytes);
void free_device(void* ptr);
Status copy_to_device(void* dst, const void* src, size_t bytes);
Status copy_to_host(void* dst, const void* src, size_t bytes);
Status copy_device_to_device(void* dst, const void* src, size_t bytes);
Status synchronize();

// The kernels' scratch memory: a pool of grow-only device blocks reused from call
// to call (cuda/scratch_pool.h), so steady-state calls make no cudaMalloc/cudaFree.
struct ScratchStats {
  size_t blocks = 0;         // blocks held
  size_t leased = 0;         // of which in use now
  size_t bytes = 0;          // device bytes held
  uint64_t allocations = 0;  // cudaMalloc calls so far
  uint64_t frees = 0;        // cudaFree calls so far
};
ScratchStats scratch_stats();
// Frees the scratch blocks no call is using (waits for the device); returns the bytes freed.
size_t scratch_trim();
// A lease of `bytes` of that pool for host code (the bindings' per-call device
// temporaries): *ptr is valid until scratch_release(*slot). Work queued on it
// before the release is ordered before any later user's (one stream).
Status scratch_lease(size_t bytes, void** ptr, size_t* slot);
void scratch_release(size_t slot);

// dtype conversion on the device (float32 <-> bfloat16/float16).
Status convert(const TensorView& src, const TensorView& dst);

// out = op(a) @ op(b) on the device (validated by vp::matmul).
Status matmul(const TensorView& a, const TensorView& b, bool trans_a, bool trans_b,
              const TensorView& out);

}  // namespace vp::cuda
