// VideoLM inference: full logits, generation with a KV cache, sampling. The
// model runs on its device (videolm_backend.h); the sampler runs on the host
// over each step's [active sequences, vocab] logits.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "videolm_impl.h"
#include "vp/rng.h"
#include "vp/sample.h"
#include "vp/videolm.h"

namespace vp {

// Final norm and LM head on `rows` rows of x: logits [rows, vocab], copied to the host.
Status VideoLM::Impl::head_logits(const VideoLM& m, const float* x, int64_t rows, std::vector<float>* out) {
  const VideoLMConfig& c = m.cfg_;
  const int64_t d = c.width;
  out->resize(static_cast<size_t>(rows * c.vocab));
  if (rows == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(ops.alloc_all({{&hl_n, rows * d}, {&hl_out, rows * c.vocab}}));
  VP_RETURN_IF_ERROR(ops.rmsnorm_forward(x, w.data() + o_final_norm, rows, d, c.norm_eps, hl_n.data(), nullptr));
  VP_RETURN_IF_ERROR(ops.mm_nt(hl_n.data(), w.data() + o_head, rows, c.vocab, d, hl_out.data(), 0.0f));
  return ops.to_host(out->data(), hl_out.data(), rows * c.vocab);
}

Status VideoLM::logits_all(const VideoLMBatch& batch, std::vector<float>* logits, VideoLMLayout* layout) {
  Impl& I = *impl_;
  I.has_cache = false;
  I.backward_ready = false;
  VP_RETURN_IF_ERROR(I.run_forward(*this, batch, false, "VideoLM.logits"));
  VP_RETURN_IF_ERROR(I.head_logits(*this, I.xs[static_cast<size_t>(cfg_.layers)].data(), I.layout.rows, logits));
  if (layout) *layout = I.layout;
  return Status::Ok();
}

template <typename Choose>
Status VideoLM::Impl::decode(const VideoLM& m, const VideoLMBatch& prompts, int64_t max_steps, int32_t eos,
                             const char* fn, Choose&& choose, std::vector<std::vector<int32_t>>* out) {
  const VideoLMConfig& c = m.cfg_;
  if (max_steps < 0) return Status::Invalid(std::string(fn) + ": maxTokens must be >= 0");
  has_cache = false;
  backward_ready = false;
  VP_RETURN_IF_ERROR(run_forward(m, prompts, false, fn));
  const int64_t B = static_cast<int64_t>(layout.cu_seqlens.size()) - 1;
  const int64_t d = c.width, H = c.heads, Hkv = c.kv_heads, D = c.head_dim(), F = c.ffn_dim(), V = c.vocab;
  const int64_t kvd = Hkv * D, Lc = c.layers;
  const float* w = this->w.data();
  std::vector<int64_t> len(static_cast<size_t>(B)), base(static_cast<size_t>(B));
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) {
    len[b] = layout.cu_seqlens[b + 1] - layout.cu_seqlens[b];
    if (len[b] < 1) return Status::Invalid(std::string(fn) + ": prompt " + std::to_string(b) + " is empty");
    if (len[b] + max_steps > c.max_seq)
      return Status::OutOfRange(std::string(fn) + ": prompt " + std::to_string(b) + " (" + std::to_string(len[b]) +
                                " tokens) plus maxTokens=" + std::to_string(max_steps) + " exceeds maxSeq=" +
                                std::to_string(c.max_seq));
    base[b] = total;
    total += len[b] + max_steps;
  }
  if (total > INT32_MAX / 2) return Status::Invalid(std::string(fn) + ": too many prompt and new tokens");
  // KV cache per layer: [total, kvd], sequence b at rows base[b] ... (zeros past
  // the prompt: a decode step adds its row into a zero row).
  kc.resize(static_cast<size_t>(Lc));
  vc.resize(static_cast<size_t>(Lc));
  for (int64_t l = 0; l < Lc; ++l) {
    VP_RETURN_IF_ERROR(ops.zeros(kc[l], total * kvd));
    VP_RETURN_IF_ERROR(ops.zeros(vc[l], total * kvd));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t r0 = layout.cu_seqlens[b];
      VP_RETURN_IF_ERROR(ops.copy(kc[l].data() + base[b] * kvd, cache[l].k.data() + r0 * kvd, len[b] * kvd));
      VP_RETURN_IF_ERROR(ops.copy(vc[l].data() + base[b] * kvd, cache[l].v.data() + r0 * kvd, len[b] * kvd));
    }
  }
  std::vector<int32_t> last(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) last[b] = layout.cu_seqlens[b + 1] - 1;
  VP_RETURN_IF_ERROR(ops.upload(s_rows, last));
  VP_RETURN_IF_ERROR(ops.alloc(sx, B * d));
  VP_RETURN_IF_ERROR(ops.rows_gather(xs[Lc].data(), s_rows.data(), B, d, sx.data()));
  std::vector<float> lg;
  VP_RETURN_IF_ERROR(head_logits(m, sx.data(), B, &lg));
  out->assign(static_cast<size_t>(B), {});
  std::vector<int64_t> active(static_cast<size_t>(B));
  std::iota(active.begin(), active.end(), 0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  for (int64_t step = 0; step < max_steps && !active.empty(); ++step) {
    std::vector<int64_t> next;
    std::vector<int32_t> toks;
    for (size_t i = 0; i < active.size(); ++i) {
      const int64_t b = active[i];
      const int32_t t = choose(b, step, lg.data() + static_cast<int64_t>(i) * V);
      if (t < 0 || t >= V) return Status::Internal(std::string(fn) + ": sampler returned an invalid token");
      (*out)[b].push_back(t);
      if (t != eos && step + 1 < max_steps) {
        next.push_back(b);
        toks.push_back(t);
      }
    }
    active.swap(next);
    const int64_t A = static_cast<int64_t>(active.size());
    if (A == 0) break;
    VP_RETURN_IF_ERROR(ops.alloc_all({{&sx, A * d}, {&sn1, A * d}, {&sq, A * d}, {&sk, A * kvd}, {&sv, A * kvd},
                                      {&satt, A * d}, {&sn2, A * d}, {&sgu, A * 2 * F}, {&sact, A * F}}));
    // Per active row: its token (as an embedding source), position, cache rows.
    std::vector<int32_t> from(static_cast<size_t>(A)), pos(static_cast<size_t>(A)), krow(static_cast<size_t>(A)),
        kbase(static_cast<size_t>(A)), nk(static_cast<size_t>(A));
    int64_t max_keys = 0;
    for (int64_t i = 0; i < A; ++i) {
      const int64_t b = active[i];
      from[i] = -toks[i] - 1;
      pos[i] = static_cast<int32_t>(len[b]);
      krow[i] = static_cast<int32_t>(base[b] + len[b]);
      kbase[i] = static_cast<int32_t>(base[b]);
      nk[i] = static_cast<int32_t>(len[b] + 1);
      max_keys = std::max<int64_t>(max_keys, nk[i]);
    }
    VP_RETURN_IF_ERROR(ops.upload(s_from, from));
    VP_RETURN_IF_ERROR(ops.upload(s_pos, pos));
    VP_RETURN_IF_ERROR(ops.upload(s_rows, krow));
    VP_RETURN_IF_ERROR(ops.upload(s_base, kbase));
    VP_RETURN_IF_ERROR(ops.upload(s_nk, nk));
    float *x = sx.data(), *n1 = sn1.data(), *q = sq.data(), *k = sk.data(), *v = sv.data(), *att = satt.data();
    float *n2 = sn2.data(), *gu = sgu.data(), *act = sact.data();
    VP_RETURN_IF_ERROR(ops.embed_rows(nullptr, w + o_tok, s_from.data(), A, d, x));
    for (int64_t l = 0; l < Lc; ++l) {
      const LayerOffsets& o = lo[l];
      VP_RETURN_IF_ERROR(ops.rmsnorm_forward(x, w + o.attn_norm, A, d, c.norm_eps, n1, nullptr));
      VP_RETURN_IF_ERROR(ops.mm_nt(n1, w + o.wq, A, d, d, q, 0.0f));
      VP_RETURN_IF_ERROR(ops.mm_nt(n1, w + o.wk, A, kvd, d, k, 0.0f));
      VP_RETURN_IF_ERROR(ops.mm_nt(n1, w + o.wv, A, kvd, d, v, 0.0f));
      VP_RETURN_IF_ERROR(ops.rope_apply(q, s_pos.data(), A, H, D, c.rope_theta, false, q));
      VP_RETURN_IF_ERROR(ops.rope_apply(k, s_pos.data(), A, Hkv, D, c.rope_theta, false, k));
      VP_RETURN_IF_ERROR(ops.rows_scatter_add(k, s_rows.data(), A, kvd, kc[l].data()));
      VP_RETURN_IF_ERROR(ops.rows_scatter_add(v, s_rows.data(), A, kvd, vc[l].data()));
      VP_RETURN_IF_ERROR(ops.decode_attention(q, kc[l].data(), vc[l].data(), s_base.data(), s_nk.data(), A, H, Hkv, D,
                                              scale, max_keys, att));
      VP_RETURN_IF_ERROR(ops.mm_nt(att, w + o.wo, A, d, d, x, 1.0f));
      VP_RETURN_IF_ERROR(ops.rmsnorm_forward(x, w + o.mlp_norm, A, d, c.norm_eps, n2, nullptr));
      VP_RETURN_IF_ERROR(ops.mm_nt(n2, w + o.wgu, A, 2 * F, d, gu, 0.0f));
      VP_RETURN_IF_ERROR(ops.swiglu_forward(gu, gu + F, A, F, 2 * F, act));
      VP_RETURN_IF_ERROR(ops.mm_nt(act, w + o.wdown, A, d, F, x, 1.0f));
    }
    for (int64_t i = 0; i < A; ++i) ++len[active[i]];
    VP_RETURN_IF_ERROR(head_logits(m, x, A, &lg));
  }
  return Status::Ok();
}

Status VideoLM::generate(const VideoLMBatch& prompts, const VideoLMGenerateOptions& o,
                         std::vector<std::vector<int32_t>>* out) {
  const char* fn = "VideoLM.generate";
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
    return Status::Invalid(std::string(fn) + ": temperature must be >= 0");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) return Status::Invalid(std::string(fn) + ": topP must be in (0, 1]");
  if (!o.streams.empty() && o.streams.size() != prompts.sequences.size())
    return Status::OutOfRange(std::string(fn) + ": streams must hold one entry per sequence (" +
                              std::to_string(prompts.sequences.size()) + "), got " + std::to_string(o.streams.size()));
  const int64_t V = cfg_.vocab;
  SampleOptions so;
  so.temperature = o.temperature;
  so.top_p = o.top_p;
  so.seed = o.seed;
  Status pick_status;
  // The shared sampler (vp/sample.h): one Philox stream per sequence b and a
  // counter per step, so results do not depend on how prompts are batched.
  auto choose = [&](int64_t b, int64_t step, const float* logits) -> int32_t {
    const uint64_t stream = o.streams.empty() ? static_cast<uint64_t>(b) : o.streams[static_cast<size_t>(b)];
    so.step = static_cast<uint64_t>(step);
    int32_t token = -1;
    Status st = sample_tokens(logits, 1, V, so, &stream, &token);
    if (!st.ok() && pick_status.ok()) pick_status = st;
    if (st.ok() && o.on_token) o.on_token(b, token);
    return token;
  };
  Status decoded = impl_->decode(*this, prompts, o.max_tokens, o.eos_id, fn, choose, out);
  return pick_status.ok() ? decoded : pick_status;  // the sampler's message is the precise one
}

Status VideoLM::cached_logits(const VideoLMBatch& prompts, const std::vector<std::vector<int32_t>>& forced,
                              std::vector<std::vector<float>>* logits) {
  const char* fn = "VideoLM.cachedLogits";
  if (forced.size() != prompts.sequences.size())
    return Status::Invalid(std::string(fn) + ": one forced continuation per prompt");
  size_t steps = 0;
  for (const auto& f : forced) {
    if (f.empty() || (steps && f.size() != steps)) return Status::Invalid(std::string(fn) + ": forced continuations must share a nonzero length");
    steps = f.size();
    for (int32_t t : f)
      if (t < 0 || t >= cfg_.vocab) return Status::OutOfRange(std::string(fn) + ": forced token out of range");
  }
  const int64_t V = cfg_.vocab;
  logits->assign(forced.size(), {});
  std::vector<std::vector<int32_t>> out;
  auto choose = [&](int64_t b, int64_t step, const float* lg) -> int32_t {
    (*logits)[b].insert((*logits)[b].end(), lg, lg + V);
    return forced[b][step];
  };
  return impl_->decode(*this, prompts, static_cast<int64_t>(steps), -1, fn, choose, &out);
}

}  // namespace vp
