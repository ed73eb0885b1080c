// vp/tensor.h — a non-owning view of a dense, row-major tensor.
//
// The core never owns user memory: the addon (or a test) owns the buffers and
// hands the kernels TensorViews. A view says where the data is (host or CUDA
// device), its element type and its shape; strides are always row-major
// contiguous, which is what every kernel in this project expects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace vp {

enum class DType : int32_t { kFloat32 = 0, kInt32 = 1, kBFloat16 = 2, kFloat16 = 3 };
enum class Device : int32_t { kCPU = 0, kCUDA = 1 };

constexpr int kMaxDims = 8;

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kBFloat16:
    case DType::kFloat16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kInt32: return "int32";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat16: return "float16";
  }
  return "unknown";
}

inline const char* device_name(Device d) { return d == Device::kCPU ? "cpu" : "cuda"; }

struct TensorView {
  void* data = nullptr;
  int64_t shape[kMaxDims] = {0};
  int ndim = 0;
  DType dtype = DType::kFloat32;
  Device device = Device::kCPU;

  TensorView() = default;
  TensorView(void* d, std::initializer_list<int64_t> dims, DType t = DType::kFloat32,
             Device dev = Device::kCPU)
      : data(d), dtype(t), device(dev) {
    for (int64_t s : dims) shape[ndim++] = s;
  }

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }

  template <typename T>
  T* as() const { return static_cast<T*>(data); }

  // "[2, 3, 4]", for error messages.
  std::string shape_string() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) {
      if (i) s += ", ";
      s += std::to_string(shape[i]);
    }
    return s + "]";
  }
};

}  // namespace vp
