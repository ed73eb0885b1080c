// The VideoLM's row kernels on CUDA (vp/model_kernels.h): gathers, the
// deterministic scatter-adds (each output element summed by one thread, its
// contributions in index order: no float atomics), the decoder's input rows,
// and two vector helpers. Every pointer is device memory.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_util.cuh"
#include "vp/model_kernels.h"

namespace vp::cuda {
namespace {

using kutil::grid_for;
using kutil::kBlock;
using kutil::launch_status;

__global__ void k_rows_gather(const float* __restrict__ src, const int32_t* __restrict__ rows, int64_t n, int64_t d,
                              float* __restrict__ out) {
  VP_GRID_STRIDE(i, n * d) out[i] = src[static_cast<int64_t>(rows[i / d]) * d + i % d];
}

// One thread per column; it walks the n source rows in order, so rows that
// repeat add up in index order (like the CPU kernel).
__global__ void k_rows_scatter_add(const float* __restrict__ src, const int32_t* __restrict__ rows, int64_t n,
                                   int64_t d, float* __restrict__ dst) {
  VP_GRID_STRIDE(j, d) {
    for (int64_t i = 0; i < n; ++i) dst[static_cast<int64_t>(rows[i]) * d + j] += src[i * d + j];
  }
}

__global__ void k_rows_csr_sum(const float* __restrict__ src, const int32_t* __restrict__ start,
                               const int32_t* __restrict__ order, int64_t groups, int64_t d, float* __restrict__ dst,
                               bool accumulate) {
  VP_GRID_STRIDE(i, groups * d) {
    const int64_t g = i / d, j = i % d;
    float s = accumulate ? dst[i] : 0.0f;
    for (int32_t k = start[g]; k < start[g + 1]; ++k) s += src[static_cast<int64_t>(order[k]) * d + j];
    dst[i] = s;
  }
}

__global__ void k_embed_rows(const float* __restrict__ vis, const float* __restrict__ table,
                             const int32_t* __restrict__ from, int64_t n, int64_t d, float* __restrict__ out) {
  VP_GRID_STRIDE(i, n * d) {
    const int64_t f = from[i / d], j = i % d;
    out[i] = f >= 0 ? vis[f * d + j] : table[(-f - 1) * d + j];
  }
}

__global__ void k_add(float* __restrict__ y, const float* __restrict__ x, int64_t n) {
  VP_GRID_STRIDE(i, n) y[i] += x[i];
}

}  // namespace

Status rows_gather(const float* src, const int32_t* rows, int64_t n, int64_t d, float* out) {
  VP_RETURN_IF_ERROR(kutil::check_available("rows_gather"));
  if (n <= 0 || d <= 0) return Status::Ok();
  k_rows_gather<<<grid_for(n * d), kBlock>>>(src, rows, n, d, out);
  return launch_status("rows_gather");
}

Status rows_scatter_add(const float* src, const int32_t* rows, int64_t n, int64_t d, float* dst) {
  VP_RETURN_IF_ERROR(kutil::check_available("rows_scatter_add"));
  if (n <= 0 || d <= 0) return Status::Ok();
  k_rows_scatter_add<<<grid_for(d, 64), 64>>>(src, rows, n, d, dst);
  return launch_status("rows_scatter_add");
}

Status rows_csr_sum(const float* src, const int32_t* start, const int32_t* order, int64_t groups, int64_t d,
                    float* dst, bool accumulate) {
  VP_RETURN_IF_ERROR(kutil::check_available("rows_csr_sum"));
  if (groups <= 0 || d <= 0) return Status::Ok();
  k_rows_csr_sum<<<grid_for(groups * d), kBlock>>>(src, start, order, groups, d, dst, accumulate);
  return launch_status("rows_csr_sum");
}

Status embed_rows(const float* vis, const float* table, const int32_t* from, int64_t n, int64_t d, float* out) {
  VP_RETURN_IF_ERROR(kutil::check_available("embed_rows"));
  if (n <= 0 || d <= 0) return Status::Ok();
  k_embed_rows<<<grid_for(n * d), kBlock>>>(vis, table, from, n, d, out);
  return launch_status("embed_rows");
}

Status add_inplace(float* y, const float* x, int64_t n) {
  VP_RETURN_IF_ERROR(kutil::check_available("add_inplace"));
  if (n <= 0) return Status::Ok();
  k_add<<<grid_for(n), kBlock>>>(y, x, n);
  return launch_status("add_inplace");
}

Status fill_zero(float* x, int64_t n) {
  VP_RETURN_IF_ERROR(kutil::check_available("fill_zero"));
  if (n <= 0) return Status::Ok();
  cudaError_t e = cudaMemset(x, 0, static_cast<size_t>(n) * sizeof(float));
  if (e != cudaSuccess) return Status::Internal(std::string("fill_zero: cudaMemset: ") + cudaGetErrorString(e));
  return Status::Ok();
}

}  // namespace vp::cuda
