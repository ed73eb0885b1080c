// VideoLM sub-blocks (vp/blocks.h): compositions of the layer kernels.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "layers_kernels.h"
#include "vp/blocks.h"
#include "vp/layers.h"
#include "vp/thread_pool.h"

namespace vp {

namespace {
Status nn(const void* p, const char* fn, const char* arg) {
  if (!p) return Status::Invalid(std::string(fn) + ": " + arg + " is null");
  return Status::Ok();
}
}  // namespace

Status mlp_block_forward(const float* x, int64_t n, int64_t d, int64_t f, const float* gain,
                         const float* w_gate_up, const float* w_down, float eps, const MlpCache& c,
                         float* y) {
  const char* fn = "mlp_block_forward";
  if (n < 0 || d <= 0 || f <= 0) return Status::Invalid(std::string(fn) + ": n >= 0, d > 0 and f > 0 are required");
  if (n == 0) return Status::Ok();
  for (auto [p, a] : {std::pair<const void*, const char*>{c.rstd, "cache.rstd"}, {c.xn, "cache.xn"},
                      {c.gu, "cache.gu"}, {c.act, "cache.act"}, {y, "y"}})
    VP_RETURN_IF_ERROR(nn(p, fn, a));
  VP_RETURN_IF_ERROR(rmsnorm_forward(x, gain, n, d, eps, c.xn, c.rstd));
  VP_RETURN_IF_ERROR(linear_forward(c.xn, w_gate_up, nullptr, n, d, 2 * f, c.gu));
  VP_RETURN_IF_ERROR(swiglu_forward(c.gu, c.gu + f, n, f, 2 * f, c.act));
  VP_RETURN_IF_ERROR(linear_forward(c.act, w_down, nullptr, n, f, d, y));
  return add_inplace(y, x, n * d);
}

Status mlp_block_backward(const float* dy, const float* x, int64_t n, int64_t d, int64_t f,
                          const float* gain, const float* w_gate_up, const float* w_down, float eps,
                          const MlpCache& c, float* dx, float* dgain, float* dw_gate_up,
                          float* dw_down, bool accumulate) {
  const char* fn = "mlp_block_backward";
  if (n < 0 || d <= 0 || f <= 0) return Status::Invalid(std::string(fn) + ": n >= 0, d > 0 and f > 0 are required");
  VP_RETURN_IF_ERROR(nn(dx, fn, "dx"));
  std::vector<float> dact(static_cast<size_t>(n * f)), dgu(static_cast<size_t>(n * 2 * f)),
      dxn(static_cast<size_t>(n * d));
  VP_RETURN_IF_ERROR(linear_backward(dy, c.act, w_down, n, f, d, dact.data(), dw_down, nullptr, accumulate));
  VP_RETURN_IF_ERROR(swiglu_backward(dact.data(), c.gu, c.gu + f, n, f, 2 * f, dgu.data(), dgu.data() + f));
  VP_RETURN_IF_ERROR(linear_backward(dgu.data(), c.xn, w_gate_up, n, d, 2 * f, dxn.data(), dw_gate_up, nullptr,
                                     accumulate));
  // dx = dy + rmsnorm_backward(dxn); computed into a temporary when dx aliases dy.
  std::vector<float> tmp;
  float* dnorm = dx;
  if (dx == dy) {
    tmp.resize(static_cast<size_t>(n * d));
    dnorm = tmp.data();
  }
  VP_RETURN_IF_ERROR(rmsnorm_backward(dxn.data(), x, gain, c.rstd, n, d, eps, dnorm, dgain, accumulate));
  VP_RETURN_IF_ERROR(add_inplace(dnorm, dy, n * d));
  if (dnorm != dx) std::memcpy(dx, dnorm, static_cast<size_t>(n * d) * sizeof(float));
  return Status::Ok();
}

Status lm_head_loss_with_grad(const float* hidden, int64_t n, int64_t d, const int32_t* targets,
                              const float* gain, const float* w, int64_t vocab, float eps,
                              float grad_loss, int64_t chunk_rows, float* loss, int64_t* count,
                              float* dhidden, float* dgain, float* dw, bool accumulate) {
  const char* fn = "lm_head_loss_with_grad";
  if (n < 0 || d <= 0 || vocab <= 0) return Status::Invalid(std::string(fn) + ": n >= 0, d > 0 and vocab > 0 are required");
  VP_RETURN_IF_ERROR(nn(loss, fn, "loss"));
  if (n > 0) {
    VP_RETURN_IF_ERROR(nn(hidden, fn, "hidden"));
    VP_RETURN_IF_ERROR(nn(targets, fn, "targets"));
  }
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < n; ++r) {
    if (targets[r] == -1) continue;
    if (targets[r] < 0 || targets[r] >= vocab)
      return Status::OutOfRange(std::string(fn) + ": targets[" + std::to_string(r) + "] = " +
                                std::to_string(targets[r]) + " is outside [0, " + std::to_string(vocab) +
                                ") and is not the ignore index -1");
    rows.push_back(r);
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  if (count) *count = m;
  if (dhidden) std::memset(dhidden, 0, static_cast<size_t>(n * d) * sizeof(float));
  if (!accumulate) {
    if (dgain) std::memset(dgain, 0, static_cast<size_t>(d) * sizeof(float));
    if (dw) std::memset(dw, 0, static_cast<size_t>(vocab * d) * sizeof(float));
  }
  if (m == 0) {
    *loss = 0.0f;
    return Status::Ok();
  }
  const int64_t cr = chunk_rows > 0 ? chunk_rows : 256;
  const float row_grad = static_cast<float>(static_cast<double>(grad_loss) / static_cast<double>(m));
  std::vector<float> h(cr * d), hn(cr * d), rstd(cr), logits(cr * vocab), dhn(cr * d), dh(cr * d);
  std::vector<int32_t> tg(cr);
  double total = 0.0;
  const bool want_grad = dhidden || dgain || dw;
  for (int64_t c0 = 0; c0 < m; c0 += cr) {
    const int64_t k = std::min(cr, m - c0);
    for (int64_t i = 0; i < k; ++i) {
      std::memcpy(h.data() + i * d, hidden + rows[c0 + i] * d, static_cast<size_t>(d) * sizeof(float));
      tg[i] = targets[rows[c0 + i]];
    }
    VP_RETURN_IF_ERROR(rmsnorm_forward(h.data(), gain, k, d, eps, hn.data(), rstd.data()));
    VP_RETURN_IF_ERROR(linear_forward(hn.data(), w, nullptr, k, d, vocab, logits.data()));
    float chunk_loss = 0.0f;
    int64_t chunk_count = 0;
    VP_RETURN_IF_ERROR(cross_entropy_forward(logits.data(), tg.data(), k, vocab, &chunk_loss, nullptr, &chunk_count));
    total += static_cast<double>(chunk_loss) * static_cast<double>(chunk_count);
    if (!want_grad) continue;
    // dlogits of grad_loss * mean over all m rows: the chunk's own mean-gradient times k/m.
    VP_RETURN_IF_ERROR(cross_entropy_backward(logits.data(), tg.data(), nullptr, k, vocab,
                                              row_grad * static_cast<float>(k), logits.data()));
    VP_RETURN_IF_ERROR(linear_backward(logits.data(), hn.data(), w, k, d, vocab, dhn.data(), dw, nullptr, true));
    VP_RETURN_IF_ERROR(rmsnorm_backward(dhn.data(), h.data(), gain, rstd.data(), k, d, eps, dh.data(), dgain, true));
    if (dhidden)
      for (int64_t i = 0; i < k; ++i)
        std::memcpy(dhidden + rows[c0 + i] * d, dh.data() + i * d, static_cast<size_t>(d) * sizeof(float));
  }
  *loss = static_cast<float>(total / static_cast<double>(m));
  return Status::Ok();
}

Status vision_embed_forward(const uint8_t* frames, int64_t videos, int64_t num_frames, int64_t image,
                            int64_t patch, const float* w, const float* b, const float* frame_pos,
                            const float* patch_pos, int64_t d, float* patches, float* tokens) {
  const char* fn = "vision_embed_forward";
  if (videos < 0 || num_frames <= 0 || image <= 0 || patch <= 0 || d <= 0)
    return Status::Invalid(std::string(fn) + ": videos >= 0 and positive frames, image, patch and d are required");
  if (videos == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(nn(frame_pos, fn, "frame_pos"));
  VP_RETURN_IF_ERROR(nn(patch_pos, fn, "patch_pos"));
  VP_RETURN_IF_ERROR(nn(patches, fn, "patches"));
  VP_RETURN_IF_ERROR(patch_embed_forward_u8(frames, videos * num_frames, image, image, patch, w, b, d, patches, tokens));
  const int64_t P = (image / patch) * (image / patch);
  const auto& k = detail::layer_kernels();
  parallel_for(videos * num_frames * P, std::max<int64_t>(1, 8192 / d), [&](int64_t a, int64_t e, int) {
    for (int64_t i = a; i < e; ++i) {
      const int64_t f = (i / P) % num_frames, p = i % P;
      k.add(tokens + i * d, frame_pos + f * d, d);
      k.add(tokens + i * d, patch_pos + p * d, d);
    }
  });
  return Status::Ok();
}

Status vision_embed_backward(const float* dtokens, const float* patches, int64_t videos,
                             int64_t num_frames, int64_t image, int64_t patch, int64_t d, float* dw,
                             float* db, float* dframe_pos, float* dpatch_pos, bool accumulate) {
  const char* fn = "vision_embed_backward";
  if (videos < 0 || num_frames <= 0 || image <= 0 || patch <= 0 || d <= 0 || image % patch != 0)
    return Status::Invalid(std::string(fn) + ": bad sizes (image must be a multiple of patch)");
  const int64_t P = (image / patch) * (image / patch), np = videos * num_frames * P;
  VP_RETURN_IF_ERROR(nn(dframe_pos, fn, "dframe_pos"));
  VP_RETURN_IF_ERROR(nn(dpatch_pos, fn, "dpatch_pos"));
  VP_RETURN_IF_ERROR(patch_embed_backward(dtokens, patches, np, patch * patch * 3, d, dw, db, accumulate));
  const auto& k = detail::layer_kernels();
  // Each frame-position row sums its (video, patch) tokens in order; each patch-position row its (video, frame) tokens.
  parallel_for(num_frames, 1, [&](int64_t a, int64_t e, int) {
    for (int64_t f = a; f < e; ++f) {
      float* dst = dframe_pos + f * d;
      if (!accumulate) std::memset(dst, 0, static_cast<size_t>(d) * sizeof(float));
      for (int64_t v = 0; v < videos; ++v)
        for (int64_t p = 0; p < P; ++p) k.add(dst, dtokens + ((v * num_frames + f) * P + p) * d, d);
    }
  });
  parallel_for(P, 1, [&](int64_t a, int64_t e, int) {
    for (int64_t p = a; p < e; ++p) {
      float* dst = dpatch_pos + p * d;
      if (!accumulate) std::memset(dst, 0, static_cast<size_t>(d) * sizeof(float));
      for (int64_t v = 0; v < videos; ++v)
        for (int64_t f = 0; f < num_frames; ++f) k.add(dst, dtokens + ((v * num_frames + f) * P + p) * d, d);
    }
  });
  return Status::Ok();
}

}  // namespace vp
