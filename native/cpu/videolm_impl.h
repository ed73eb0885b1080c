// Internal state of vp::VideoLM (the activation cache and parameter offsets).
#pragma once

#include <cstdint>
#include <vector>

#include "vp/status.h"
#include "vp/videolm.h"

namespace vp {

namespace detail {
Status mm_nt(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c, float beta);
Status mm_nn(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c, float beta);
Status mm_tn_acc(const float* a, const float* b, int64_t m, int64_t n, int64_t k, float* c);
}  // namespace detail

struct LayerOffsets {
  int64_t attn_norm, wq, wk, wv, wo, mlp_norm, wgu, wdown;
};

struct LayerCache {
  std::vector<float> n1, rstd1, q, k, v, att, lse, xmid, n2, rstd2, gu, act;
};

struct VideoLM::Impl {
  // Parameter offsets.
  int64_t o_patch_w = 0, o_patch_b = 0, o_frame_pos = 0, o_patch_pos = 0, o_tok = 0, o_final_norm = 0, o_head = 0;
  std::vector<LayerOffsets> lo;
  void index(const VideoLM& m);

  // The packed batch.
  VideoLMLayout layout;
  std::vector<int64_t> src;        // per row: visual token index, or nvis + text index
  std::vector<int32_t> text_ids;   // copy of the batch's text
  int64_t num_videos = 0, num_text = 0;
  std::vector<int64_t> head_text;  // text index of each head row
  std::vector<int32_t> head_row;   // packed row of each head row
  std::vector<int32_t> head_tgt;

  // Activations.
  std::vector<float> patches, vis;
  std::vector<std::vector<float>> xs;  // xs[l] = input of layer l; xs[L] = final residual stream
  std::vector<LayerCache> cache;
  std::vector<float> hx, hn, hrstd, logits, hlse;
  double loss = 0.0;
  int64_t count = 0;
  int64_t tap_layer = -1;
  std::vector<int32_t> tap_rows;
  bool has_cache = false, backward_ready = false;

  Status pack(const VideoLMConfig& cfg, const VideoLMBatch& b, const char* fn);
  Status vision_forward(const VideoLM& m, const VideoLMBatch& b);
  void embed_rows(const VideoLM& m, const VideoLMBatch& b, float* x0);
  Status layer_forward(const VideoLM& m, int64_t l, const float* x, float* x_out);
  Status run_forward(const VideoLM& m, const VideoLMBatch& b, bool with_head, const char* fn);
  // Prefill the prompts, then up to max_steps decode steps through a KV cache.
  // choose(b, step, logits) picks sequence b's next token (logits: vocab
  // floats); the sequence stops after `eos` or max_steps tokens.
  template <typename Choose>
  Status decode(const VideoLM& m, const VideoLMBatch& prompts, int64_t max_steps, int32_t eos, const char* fn,
                Choose&& choose, std::vector<std::vector<int32_t>>* out);
};

}  // namespace vp
