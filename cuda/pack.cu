// CUDA kernels of token packing: the row gather and its adjoint.
//
// Gather: one warp per output row, copying in the widest word (16, 4, 2 or 1
// bytes) that divides the row and to which every row pointer is aligned
// (host::copy_word_bytes). The copy is dtype-agnostic (float32, bfloat16 and
// float16 rows are bytes to it). The index maps go up in pooled scratch
// (cuda/scratch_pool.h): no cudaMalloc/cudaFree per call.
//
// Scatter-add: the host inverts the source map into CSR form (vp::pack_inverse_map:
// each source row's destination rows, ascending), and one warp owns each source
// row: it sums that row's destinations in float32, in ascending order, and
// writes the row once. No atomics at all — so no races, and the result is
// deterministic (bitwise, run to run). Rows nobody copied are written as zeros.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "vp/pack.h"

#include "dtype.cuh"
#include "host_checks.h"
#include "scratch_pool.h"

namespace vp::cuda {
namespace {

using dtype::from_f;
using dtype::to_f;

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * 32;

Status cuda_error(const char* what, cudaError_t e) {
  return Status::Internal(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// A device copy of a host int32 array, in pooled scratch leased until scope exit.
struct DeviceInts {
  Scratch lease;
  int32_t* ptr = nullptr;
  Status upload(const int32_t* host, int64_t n, const char* what) {
    if (n == 0) return Status::Ok();
    VP_RETURN_IF_ERROR(lease.get(&ptr, static_cast<size_t>(n), what));
    const cudaError_t e = cudaMemcpy(ptr, host, static_cast<size_t>(n) * sizeof(int32_t), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return cuda_error(what, e);
    return Status::Ok();
  }
};

template <typename W>
__device__ __forceinline__ const W* src_row(const char* a, int64_t rows_a, const char* b, int64_t row,
                                            int64_t row_bytes) {
  return row < rows_a ? reinterpret_cast<const W*>(a + row * row_bytes)
                      : reinterpret_cast<const W*>(b + (row - rows_a) * row_bytes);
}

// W: the word copied per lane step (uint4 = 16 bytes, uint32_t, uint16_t, uint8_t).
template <typename W>
__global__ void gather_kernel(const char* __restrict__ a, int64_t rows_a, const char* __restrict__ b,
                              const int32_t* __restrict__ source, int64_t n, int64_t row_bytes,
                              char* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t words = row_bytes / static_cast<int64_t>(sizeof(W));
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); i < n; i += warps) {
    const W* s = src_row<W>(a, rows_a, b, source[i], row_bytes);
    W* d = reinterpret_cast<W*>(out + i * row_bytes);
    for (int64_t w = lane; w < words; w += 32) d[w] = s[w];
  }
}



// VEC elements of T per lane step (VEC * sizeof(T) == 16 when vectorized, else 1).
template <typename T, int VEC>
struct alignas(VEC * sizeof(T)) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__global__ void scatter_add_kernel(const T* __restrict__ d_tokens, const int32_t* __restrict__ offsets,
                                   const int32_t* __restrict__ dests, int64_t width, T* __restrict__ a,
                                   int64_t rows_a, T* __restrict__ b, int64_t num_rows) {
  using P = Pack<T, VEC>;
  const int lane = threadIdx.x & 31;
  const int64_t vecs = width / VEC;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); r < num_rows;
       r += warps) {
    const int32_t begin = offsets[r], end = offsets[r + 1];
    P* d = reinterpret_cast<P*>(r < rows_a ? a + r * width : b + (r - rows_a) * width);
    for (int64_t c = lane; c < vecs; c += 32) {
      float acc[VEC];
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[e] = 0.0f;
      for (int32_t k = begin; k < end; ++k) {
        const P x = reinterpret_cast<const P*>(d_tokens + static_cast<int64_t>(dests[k]) * width)[c];
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[e] += to_f<T>(x.v[e]);
      }
      P y;
#pragma unroll
      for (int e = 0; e < VEC; ++e) y.v[e] = from_f<T>(acc[e]);
      d[c] = y;
    }
  }
}

int grid_for(int64_t rows) {
  int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <typename T>
Status scatter_typed(const void* d_tokens, const int32_t* offsets, const int32_t* dests, int64_t width,
                     const PackRows& dst) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t num_rows = dst.rows_a + dst.rows_b;
  // The scalar path reads and writes whole elements: each pointer must be aligned to one.
  if (host::copy_word_bytes(sizeof(T), {d_tokens, dst.rows_a ? dst.a : nullptr, dst.rows_b ? dst.b : nullptr}) <
      static_cast<int>(sizeof(T)))
    return Status::Invalid(std::string("packTokensBackward: a device pointer is not aligned to its ") +
                           std::to_string(sizeof(T)) + "-byte elements");
  const bool vec = width % kVec == 0 && aligned16(d_tokens) && (dst.rows_a == 0 || aligned16(dst.a)) &&
                   (dst.rows_b == 0 || aligned16(dst.b));
  auto* ta = static_cast<T*>(dst.a);
  auto* tb = static_cast<T*>(dst.b);
  if (vec)
    scatter_add_kernel<T, kVec><<<grid_for(num_rows), kThreads>>>(static_cast<const T*>(d_tokens), offsets, dests,
                                                                  width, ta, dst.rows_a, tb, num_rows);
  else
    scatter_add_kernel<T, 1><<<grid_for(num_rows), kThreads>>>(static_cast<const T*>(d_tokens), offsets, dests,
                                                               width, ta, dst.rows_a, tb, num_rows);
  return Status::Ok();
}

}  // namespace

Status pack_gather(const PackRows& src, const int32_t* source, int64_t n, int64_t width, DType dtype, void* out) {
  const int64_t row_bytes = width * static_cast<int64_t>(dtype_size(dtype));
  DeviceInts d_source;
  VP_RETURN_IF_ERROR(d_source.upload(source, n, "packTokens (upload of the source map)"));
  const auto* a = static_cast<const char*>(src.a);
  const auto* b = static_cast<const char*>(src.b);
  auto* o = static_cast<char*>(out);
  // Every row starts at a base pointer plus a multiple of row_bytes: the word must divide both.
  switch (host::copy_word_bytes(row_bytes, {out, src.rows_a ? a : nullptr, src.rows_b ? b : nullptr})) {
    case 16: gather_kernel<uint4><<<grid_for(n), kThreads>>>(a, src.rows_a, b, d_source.ptr, n, row_bytes, o); break;
    case 4: gather_kernel<uint32_t><<<grid_for(n), kThreads>>>(a, src.rows_a, b, d_source.ptr, n, row_bytes, o); break;
    case 2: gather_kernel<uint16_t><<<grid_for(n), kThreads>>>(a, src.rows_a, b, d_source.ptr, n, row_bytes, o); break;
    default: gather_kernel<uint8_t><<<grid_for(n), kThreads>>>(a, src.rows_a, b, d_source.ptr, n, row_bytes, o);
  }
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) return cuda_error("packTokens", e);
  return Status::Ok();
}

Status pack_scatter_add(const void* d_tokens, int64_t n, const int32_t* offsets, const int32_t* dests,
                        int64_t width, DType dtype, const PackRows& dst) {
  const int64_t num_rows = dst.rows_a + dst.rows_b;
  DeviceInts d_offsets, d_dests;
  VP_RETURN_IF_ERROR(d_offsets.upload(offsets, num_rows + 1, "packTokensBackward (upload of the inverse map)"));
  VP_RETURN_IF_ERROR(d_dests.upload(dests, n, "packTokensBackward (upload of the inverse map)"));
  Status s;
  switch (dtype) {
    case DType::kFloat32: s = scatter_typed<float>(d_tokens, d_offsets.ptr, d_dests.ptr, width, dst); break;
    case DType::kBFloat16: s = scatter_typed<__nv_bfloat16>(d_tokens, d_offsets.ptr, d_dests.ptr, width, dst); break;
    case DType::kFloat16: s = scatter_typed<__half>(d_tokens, d_offsets.ptr, d_dests.ptr, width, dst); break;
    default: return Status::Invalid(std::string("packTokensBackward: unsupported dtype ") + dtype_name(dtype));
  }
  VP_RETURN_IF_ERROR(s);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) return cuda_error("packTokensBackward", e);
  return Status::Ok();
}

}  // namespace vp::cuda
