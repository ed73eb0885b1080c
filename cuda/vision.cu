// The VideoLM's vision encoder kernels on CUDA (vp/model_kernels.h): patchify
// (uint8 or float32 frames to [patches, p·p·3] rows, as vp::patchify_*), the
// bias + frame/patch position add, and its adjoint (column sums, one thread per
// output element walking the rows in order: deterministic, no atomics).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_util.cuh"
#include "vp/model_kernels.h"

namespace vp::cuda {
namespace {

using kutil::grid_for;
using kutil::kBlock;
using kutil::launch_status;

struct U8ToUnit {
  __device__ float operator()(uint8_t v) const { return static_cast<float>(v) * (1.0f / 127.5f) - 1.0f; }
};
struct AsIs {
  __device__ float operator()(float v) const { return v; }
};

// out[patch, (dy, dx, c)] = conv(frames[f, py·p + dy, px·p + dx, c]).
template <typename T, typename Conv>
__global__ void k_patchify(const T* __restrict__ frames, int64_t nf, int64_t h, int64_t w, int64_t p,
                           float* __restrict__ out, Conv conv) {
  const int64_t ph = h / p, pw = w / p, feat = p * p * 3, total = nf * ph * pw * feat;
  VP_GRID_STRIDE(i, total) {
    const int64_t patch = i / feat, e = i % feat;
    const int64_t f = patch / (ph * pw), py = (patch / pw) % ph, px = patch % pw;
    const int64_t dy = e / (p * 3), rem = e % (p * 3);
    out[i] = conv(frames[((f * h + py * p + dy) * w + px * p) * 3 + rem]);
  }
}

__global__ void k_vision_add_pos(float* __restrict__ vis, const float* __restrict__ bias,
                                 const float* __restrict__ fp, const float* __restrict__ pp, int64_t n, int64_t P,
                                 int64_t frames, int64_t d) {
  VP_GRID_STRIDE(i, n * d) {
    const int64_t r = i / d, j = i % d, f = (r / P) % frames, q = r % P;
    float v = vis[i];
    if (bias) v += bias[j];
    if (fp) v += fp[f * d + j];
    v += pp[q * d + j];
    vis[i] = v;
  }
}

// Threads [0, frames·d): dframe_pos (none when it is null); then P·d threads for dpatch_pos; then d
// threads for dbias (when it is not null).
__global__ void k_vision_pos_bwd(const float* __restrict__ dvis, int64_t n, int64_t P, int64_t frames, int64_t d,
                                 float* __restrict__ dbias, float* __restrict__ dfp, float* __restrict__ dpp) {
  const int64_t nfp = dfp ? frames * d : 0, npp = P * d, total = nfp + npp + (dbias ? d : 0);
  VP_GRID_STRIDE(i, total) {
    if (i < nfp) {
      const int64_t f = i / d, j = i % d;
      float s = dfp[i];
      for (int64_t blk = f; blk * P < n; blk += frames)
        for (int64_t q = 0; q < P && blk * P + q < n; ++q) s += dvis[(blk * P + q) * d + j];
      dfp[i] = s;
    } else if (i < nfp + npp) {
      const int64_t k = i - nfp, q = k / d, j = k % d;
      float s = dpp[k];
      for (int64_t r = q; r < n; r += P) s += dvis[r * d + j];
      dpp[k] = s;
    } else {
      const int64_t j = i - nfp - npp;
      float s = dbias[j];
      for (int64_t r = 0; r < n; ++r) s += dvis[r * d + j];
      dbias[j] = s;
    }
  }
}

Status check_frames(const char* fn, int64_t nf, int64_t h, int64_t w, int64_t p) {
  if (nf < 0 || p < 1 || h < p || w < p || h % p != 0 || w % p != 0)
    return Status::Invalid(std::string(fn) + ": frames must be [num_frames, H, W, 3] with H and W multiples of the patch " +
                           std::to_string(p));
  return kutil::check_available(fn);
}

template <typename T, typename Conv>
Status launch_patchify(const char* fn, const T* frames, int64_t nf, int64_t h, int64_t w, int64_t p, float* out,
                       Conv conv) {
  VP_RETURN_IF_ERROR(check_frames(fn, nf, h, w, p));
  if (nf == 0) return Status::Ok();
  k_patchify<<<grid_for(nf * h * w * 3), kBlock>>>(frames, nf, h, w, p, out, conv);
  return launch_status(fn);
}

}  // namespace

Status patchify_u8(const uint8_t* frames, int64_t num_frames, int64_t height, int64_t width, int64_t patch,
                   float* patches) {
  return launch_patchify("patchify_u8", frames, num_frames, height, width, patch, patches, U8ToUnit());
}

Status patchify_f32(const float* frames, int64_t num_frames, int64_t height, int64_t width, int64_t patch,
                    float* patches) {
  return launch_patchify("patchify_f32", frames, num_frames, height, width, patch, patches, AsIs());
}

Status vision_add_pos(float* vis, const float* bias, const float* frame_pos, const float* patch_pos, int64_t n,
                      int64_t P, int64_t frames, int64_t d) {
  VP_RETURN_IF_ERROR(kutil::check_available("vision_add_pos"));
  if (n <= 0 || d <= 0) return Status::Ok();
  k_vision_add_pos<<<grid_for(n * d), kBlock>>>(vis, bias, frame_pos, patch_pos, n, P, frames, d);
  return launch_status("vision_add_pos");
}

Status vision_pos_backward(const float* dvis, int64_t n, int64_t P, int64_t frames, int64_t d, float* dbias,
                           float* dframe_pos, float* dpatch_pos) {
  VP_RETURN_IF_ERROR(kutil::check_available("vision_pos_backward"));
  if (n <= 0 || d <= 0) return Status::Ok();
  const int64_t total = ((dframe_pos ? frames : 0) + P) * d + (dbias ? d : 0);
  k_vision_pos_bwd<<<grid_for(total, 128), 128>>>(dvis, n, P, frames, d, dbias, dframe_pos, dpatch_pos);
  return launch_status("vision_pos_backward");
}

}  // namespace vp::cuda
