// Attention of one new query row per sequence against its KV cache, on CUDA
// (generation; vp/model_kernels.h). One block per (row, head): a warp per key
// computes the scaled dot products into a global scratch row, the block takes
// their max and the sum of exponentials (fixed-shape reductions), then each
// thread owns output features and sums p_t · v_t over the keys in order.
// float32 throughout, like the CPU loop it mirrors. The scratch (n · H ·
// max_keys floats) is leased from the pool (cuda/scratch_pool.h). A row with no
// key gets zeros (as vp::attention's rows with no visible key); a row whose
// nkeys is outside [0, max_keys] (the caller's contract broken) reads and
// writes nothing beyond its scratch row and gets NaN, so the misuse shows
// instead of reading out of bounds (the CPU version returns OutOfRange; the
// device counts are not copied back here, which would synchronize per call).
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "kernel_util.cuh"
#include "scratch_pool.h"
#include "vp/model_kernels.h"

namespace vp::cuda {
namespace {

using kutil::block_reduce;
using kutil::launch_status;

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    k_decode_attention(const float* __restrict__ q, const float* __restrict__ kc, const float* __restrict__ vc,
                       const int32_t* __restrict__ base, const int32_t* __restrict__ nkeys, int64_t H, int64_t Hkv,
                       int64_t D, float scale, int64_t max_keys, float* __restrict__ scores, float* __restrict__ out) {
  __shared__ float sh[32];
  const int64_t ih = blockIdx.x, i = ih / H, h = ih % H, hk = h / (H / Hkv), kvd = Hkv * D;
  const float* qq = q + i * H * D + h * D;
  float* s = scores + ih * max_keys;
  const int64_t want = nkeys[i], b0 = base[i];
  float* o = out + i * H * D + h * D;
  if (want < 1 || want > max_keys) {  // the same for the whole block: no thread reaches a barrier
    const float fill = want == 0 ? 0.0f : CUDART_NAN_F;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) o[e] = fill;
    return;
  }
  const int64_t n = want;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int64_t t = warp; t < n; t += nw) {
    const float* kk = kc + (b0 + t) * kvd + hk * D;
    float dot = 0.f;
    for (int64_t e = lane; e < D; e += 32) dot += qq[e] * kk[e];
    dot = kutil::warp_sum(dot);
    if (lane == 0) s[t] = dot * scale;
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x) mx = fmaxf(mx, s[t]);
  mx = block_reduce(mx, sh, kutil::warp_max, -INFINITY);
  float sum = 0.f;
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    const float p = expf(s[t] - mx);
    s[t] = p;
    sum += p;
  }
  sum = block_reduce(sum, sh, kutil::warp_sum, 0.f);  // its __syncthreads also publish the p written above
  const float inv = 1.0f / sum;
  for (int64_t e = threadIdx.x; e < D; e += blockDim.x) {
    float acc = 0.f;
    for (int64_t t = 0; t < n; ++t) acc += s[t] * vc[(b0 + t) * kvd + hk * D + e];
    o[e] = acc * inv;
  }
}

}  // namespace

Status decode_attention(const float* q, const float* kcache, const float* vcache, const int32_t* base,
                        const int32_t* nkeys, int64_t n, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        float scale, int64_t max_keys, float* out) {
  VP_RETURN_IF_ERROR(kutil::check_available("decode_attention"));
  if (n <= 0) return Status::Ok();
  if (heads < 1 || kv_heads < 1 || heads % kv_heads != 0 || head_dim < 1 || max_keys < 1)
    return Status::Invalid("decode_attention: bad head configuration or max_keys");
  VP_RETURN_IF_ERROR(kutil::check_grid("decode_attention", n * heads));
  Scratch scratch;
  float* scores = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&scores, static_cast<size_t>(n * heads * max_keys), "decode_attention"));
  k_decode_attention<<<static_cast<unsigned>(n * heads), kThreads>>>(q, kcache, vcache, base, nkeys, heads, kv_heads,
                                                                     head_dim, scale, max_keys, scores, out);
  return launch_status("decode_attention");
}

}  // namespace vp::cuda
