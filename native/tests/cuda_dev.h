// A device copy of a host vector for the CUDA test cases: allocated and filled
// on construction, read back with get() (after a device synchronize), freed on
// destruction. Needs a usable GPU (callers skip first: vptest::skip_without_cuda).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "vp/cuda.h"

namespace vptest {

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& h) : n(h.size()) {
    void* d = nullptr;
    REQUIRE(vp::cuda::malloc_device(&d, std::max<size_t>(1, n) * sizeof(T)).ok());
    p = static_cast<T*>(d);
    if (n) REQUIRE(vp::cuda::copy_to_device(p, h.data(), n * sizeof(T)).ok());
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<T> get() const {
    std::vector<T> h(n);
    REQUIRE(vp::cuda::synchronize().ok());
    if (n) REQUIRE(vp::cuda::copy_to_host(h.data(), p, n * sizeof(T)).ok());
    return h;
  }
  ~Dev() { vp::cuda::free_device(p); }
};

}  // namespace vptest
