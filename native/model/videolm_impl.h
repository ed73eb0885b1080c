// Internal state of vp::VideoLM: the flat buffers, the packed batch (host
// control data and its device copies), and the activation cache, all on the
// model's device (videolm_backend.h).
#pragma once

#include <cstdint>
#include <vector>

#include "videolm_backend.h"
#include "vp/status.h"
#include "vp/videolm.h"

namespace vp {

struct LayerOffsets {
  int64_t attn_norm, wq, wk, wv, wo, mlp_norm, wgu, wdown;
};

struct LayerCache {
  detail::Buf<float> n1, rstd1, q, k, v, att, lse, xmid, n2, rstd2, gu, act;
};

struct VideoLM::Impl {
  explicit Impl(Device dev) : ops(dev) {}
  detail::ModelOps ops;

  // The flat buffers (num_params floats each; g, m, v allocated on first use).
  detail::Buf<float> w, g, m, v;
  // The buffer, allocated and zeroed on first use.
  Status state(detail::Buf<float>& b, int64_t n, float** out);
  detail::Buf<float>* buffer(VideoLMBuffer which);

  // Parameter offsets.
  int64_t o_patch_w = 0, o_patch_b = 0, o_frame_pos = 0, o_patch_pos = 0, o_tok = 0, o_final_norm = 0, o_head = 0;
  std::vector<LayerOffsets> lo;
  void index(const VideoLM& m);

  // The packed batch (host), from pack().
  VideoLMLayout layout;
  std::vector<int32_t> row_from;   // per packed row: visual token index, or -(token id) - 1
  int64_t num_vis = 0;             // visual tokens of the batch's videos (num_videos * F * P)
  // CSR of packed rows by visual token (num_vis groups) and by distinct token id (tok_ids).
  std::vector<int32_t> vis_start, vis_order, tok_ids, tok_start, tok_order;
  // Frame positions: every visual packed row (fpos_rows) and the frame_pos row it gets (fpos_frame:
  // its slot, or its source frame), and the CSR of those rows by frame (frames groups) for backward.
  std::vector<int32_t> fpos_rows, fpos_frame, fpos_start, fpos_order;
  std::vector<int64_t> head_text;  // text index of each head row
  std::vector<int32_t> head_row;   // packed row of each head row
  std::vector<int32_t> head_tgt;
  // Device copies of the index arrays above (uploaded once per batch).
  detail::Buf<int32_t> d_row_from, d_positions, d_head_row, d_head_tgt, d_vis_start, d_vis_order, d_tok_ids,
      d_tok_start, d_tok_order, d_tap_rows, d_fpos_rows, d_fpos_frame, d_fpos_start, d_fpos_order;

  // Activations.
  detail::Buf<uint8_t> video_u8;  // the batch's videos on the device (CUDA only)
  detail::Buf<float> video_f32;
  detail::Buf<float> patches, vis, fpos;  // fpos: the frame_pos rows of the visual packed rows
  std::vector<detail::Buf<float>> xs;  // xs[l] = input of layer l; xs[L] = final residual stream
  std::vector<LayerCache> cache;
  detail::Buf<float> hx, hn, hrstd, logits, hlse, htgt;
  std::vector<float> h_lse, h_tgt;  // host copies of hlse, htgt (loss and log-probs)
  double loss = 0.0;
  int64_t count = 0;
  int64_t tap_layer = -1;
  std::vector<int32_t> tap_rows;
  bool has_cache = false, backward_ready = false;

  // Backward scratch (kept between calls so the GPU does not reallocate).
  detail::Buf<float> dx, dtmp, dact, dgu, dn, datt, dq, dk, dv, dhn, dhx, coef, dtap, dtext, dvis;
  // Generation scratch.
  std::vector<detail::Buf<float>> kc, vc;
  detail::Buf<float> sx, sn1, sq, sk, sv, satt, sn2, sgu, sact, hl_n, hl_out;
  detail::Buf<int32_t> s_from, s_pos, s_base, s_nk, s_rows;

  Status pack(const VideoLMConfig& cfg, const VideoLMBatch& b, const char* fn);
  Status upload_indices();
  Status vision_forward(const VideoLM& m, const VideoLMBatch& b);
  Status layer_forward(const VideoLM& m, int64_t l, const float* x, float* x_out);
  Status run_forward(const VideoLM& m, const VideoLMBatch& b, bool with_head, const char* fn);
  // Final norm and LM head on `rows` rows of x (device): logits [rows, vocab] into host memory.
  Status head_logits(const VideoLM& m, const float* x, int64_t rows, std::vector<float>* out);
  // Prefill the prompts, then up to max_steps decode steps through a KV cache.
  // choose(b, step, logits) picks sequence b's next token (logits: vocab
  // floats, host); the sequence stops after `eos` or max_steps tokens.
  template <typename Choose>
  Status decode(const VideoLM& m, const VideoLMBatch& prompts, int64_t max_steps, int32_t eos, const char* fn,
                Choose&& choose, std::vector<std::vector<int32_t>>* out);
};

}  // namespace vp
