// CUDA backend tests: CUDA vs the CPU SGEMM vs a float64 reference. They skip
// (with a message) where no GPU is usable, which the test output says.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#include "test_util.h"
#include "vp/cuda.h"
#include "vp/gemm.h"

namespace {

uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
float from_bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace

TEST_CASE("cuda: availability is reported with a reason") {
  if (!vp::cuda::available()) {
    CHECK_FALSE(vp::cuda::unavailable_reason().empty());
    MESSAGE("CUDA unavailable, GPU tests skipped: " << vp::cuda::unavailable_reason());
    void* p = nullptr;
    CHECK_FALSE(vp::cuda::malloc_device(&p, 16).ok());
    return;
  }
  CHECK(vp::cuda::device_info().memory_bytes > 0);
}

TEST_CASE("cuda: matmul f32 and bf16 match the CPU and a float64 reference") {
  if (vptest::skip_without_cuda()) return;
  const int64_t shapes[][3] = {{1, 1, 1}, {37, 65, 129}, {256, 128, 64}, {300, 17, 513}};
  for (const auto& s : shapes) {
    const int64_t m = s[0], n = s[1], k = s[2];
    for (int t = 0; t < 4; ++t) {
      bool ta = t & 1, tb = t & 2;
      auto a = vptest::random_floats(m * k, 11 + t), b = vptest::random_floats(k * n, 23 + t);
      std::vector<double> ref(m * n);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t p = 0; p < k; ++p) s += double(ta ? a[p * m + i] : a[i * k + p]) * double(tb ? b[j * k + p] : b[p * n + j]);
          ref[i * n + j] = s;
        }
      vp::TensorView ha(a.data(), {ta ? k : m, ta ? m : k}), hb(b.data(), {tb ? n : k, tb ? k : n});
      // f32
      void *da, *db, *dc;
      REQUIRE(vp::cuda::malloc_device(&da, a.size() * 4).ok());
      REQUIRE(vp::cuda::malloc_device(&db, b.size() * 4).ok());
      REQUIRE(vp::cuda::malloc_device(&dc, m * n * 4).ok());
      REQUIRE(vp::cuda::copy_to_device(da, a.data(), a.size() * 4).ok());
      REQUIRE(vp::cuda::copy_to_device(db, b.data(), b.size() * 4).ok());
      vp::TensorView va = ha, vb = hb, vc(dc, {m, n});
      vc.device = vp::Device::kCUDA;
      va.data = da; va.device = vp::Device::kCUDA;
      vb.data = db; vb.device = vp::Device::kCUDA;
      REQUIRE(vp::matmul(va, vb, ta, tb, vc).ok());
      std::vector<float> c(m * n);
      REQUIRE(vp::cuda::copy_to_host(c.data(), dc, c.size() * 4).ok());
      CHECK(vptest::rel_error(c, ref) <= 1e-5);
      // bf16 inputs: compare against the reference on the rounded inputs
      std::vector<uint16_t> a16(a.size()), b16(b.size()), c16(m * n);
      for (size_t i = 0; i < a.size(); ++i) a16[i] = to_bf16(a[i]);
      for (size_t i = 0; i < b.size(); ++i) b16[i] = to_bf16(b[i]);
      REQUIRE(vp::cuda::copy_to_device(da, a16.data(), a16.size() * 2).ok());
      REQUIRE(vp::cuda::copy_to_device(db, b16.data(), b16.size() * 2).ok());
      va.dtype = vb.dtype = vc.dtype = vp::DType::kBFloat16;
      REQUIRE(vp::matmul(va, vb, ta, tb, vc).ok());
      REQUIRE(vp::cuda::copy_to_host(c16.data(), dc, c16.size() * 2).ok());
      std::vector<float> cf(m * n);
      for (size_t i = 0; i < cf.size(); ++i) cf[i] = from_bf16(c16[i]);
      CHECK(vptest::rel_error(cf, ref) <= 2e-2);
      vp::cuda::free_device(da);
      vp::cuda::free_device(db);
      vp::cuda::free_device(dc);
    }
  }
}
