// VideoLM inference: full logits, generation with a KV cache, sampling.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "videolm_impl.h"
#include "vp/layers.h"
#include "vp/rng.h"
#include "vp/sample.h"
#include "vp/thread_pool.h"
#include "vp/videolm.h"

namespace vp {

using detail::mm_nt;

namespace {

// Final norm and LM head on `rows` rows of x: logits [rows, vocab].
Status head_logits(const VideoLMConfig& c, const float* w, int64_t o_norm, int64_t o_head, const float* x,
                   int64_t rows, std::vector<float>* logits) {
  const int64_t d = c.width;
  std::vector<float> n(static_cast<size_t>(rows * d));
  logits->resize(static_cast<size_t>(rows * c.vocab));
  if (rows == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(rmsnorm_forward(x, w + o_norm, rows, d, c.norm_eps, n.data(), nullptr));
  return mm_nt(n.data(), w + o_head, rows, c.vocab, d, logits->data(), 0.0f);
}

}  // namespace

Status VideoLM::logits_all(const VideoLMBatch& batch, std::vector<float>* logits, VideoLMLayout* layout) {
  Impl& I = *impl_;
  I.has_cache = false;
  VP_RETURN_IF_ERROR(I.run_forward(*this, batch, false, "VideoLM.logits"));
  I.backward_ready = false;
  VP_RETURN_IF_ERROR(head_logits(cfg_, w_.data(), I.o_final_norm, I.o_head, I.xs[static_cast<size_t>(cfg_.layers)].data(),
                                 I.layout.rows, logits));
  if (layout) *layout = I.layout;
  return Status::Ok();
}

template <typename Choose>
Status VideoLM::Impl::decode(const VideoLM& m, const VideoLMBatch& prompts, int64_t max_steps, int32_t eos,
                             const char* fn, Choose&& choose, std::vector<std::vector<int32_t>>* out) {
  const VideoLMConfig& c = m.cfg_;
  if (max_steps < 0) return Status::Invalid(std::string(fn) + ": maxTokens must be >= 0");
  has_cache = false;
  VP_RETURN_IF_ERROR(run_forward(m, prompts, false, fn));
  backward_ready = false;
  const int64_t B = static_cast<int64_t>(layout.cu_seqlens.size()) - 1;
  const int64_t d = c.width, H = c.heads, Hkv = c.kv_heads, D = c.head_dim(), F = c.ffn_dim(), V = c.vocab;
  const int64_t kvd = Hkv * D, Lc = c.layers, grp = H / Hkv;
  const float* w = m.w_.data();
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
  // KV cache per layer: [total, kvd], sequence b at rows base[b] ...
  std::vector<std::vector<float>> kc(static_cast<size_t>(Lc)), vc(static_cast<size_t>(Lc));
  for (int64_t l = 0; l < Lc; ++l) {
    kc[l].resize(static_cast<size_t>(total * kvd));
    vc[l].resize(static_cast<size_t>(total * kvd));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t r0 = layout.cu_seqlens[b];
      std::memcpy(kc[l].data() + base[b] * kvd, cache[l].k.data() + r0 * kvd, len[b] * kvd * sizeof(float));
      std::memcpy(vc[l].data() + base[b] * kvd, cache[l].v.data() + r0 * kvd, len[b] * kvd * sizeof(float));
    }
  }
  std::vector<float> xlast(static_cast<size_t>(B * d));
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(xlast.data() + b * d, xs[Lc].data() + (layout.cu_seqlens[b + 1] - 1) * d, d * sizeof(float));
  std::vector<float> lg;
  VP_RETURN_IF_ERROR(head_logits(c, w, o_final_norm, o_head, xlast.data(), B, &lg));
  out->assign(static_cast<size_t>(B), {});
  std::vector<int64_t> active(static_cast<size_t>(B));
  std::iota(active.begin(), active.end(), 0);
  std::vector<float> x, n1, q, k, v, att, xm, n2, gu, act;
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
    x.resize(A * d); n1.resize(A * d); q.resize(A * d); k.resize(A * kvd); v.resize(A * kvd); att.resize(A * d);
    n2.resize(A * d); gu.resize(A * 2 * F); act.resize(A * F);
    std::vector<int32_t> pos(static_cast<size_t>(A));
    for (int64_t i = 0; i < A; ++i) {
      std::memcpy(x.data() + i * d, w + o_tok + static_cast<int64_t>(toks[i]) * d, d * sizeof(float));
      pos[i] = static_cast<int32_t>(len[active[i]]);
    }
    for (int64_t l = 0; l < Lc; ++l) {
      const LayerOffsets& o = lo[l];
      VP_RETURN_IF_ERROR(rmsnorm_forward(x.data(), w + o.attn_norm, A, d, c.norm_eps, n1.data(), nullptr));
      VP_RETURN_IF_ERROR(mm_nt(n1.data(), w + o.wq, A, d, d, q.data(), 0.0f));
      VP_RETURN_IF_ERROR(mm_nt(n1.data(), w + o.wk, A, kvd, d, k.data(), 0.0f));
      VP_RETURN_IF_ERROR(mm_nt(n1.data(), w + o.wv, A, kvd, d, v.data(), 0.0f));
      VP_RETURN_IF_ERROR(rope_apply(q.data(), pos.data(), A, H, D, c.rope_theta, false, q.data()));
      VP_RETURN_IF_ERROR(rope_apply(k.data(), pos.data(), A, Hkv, D, c.rope_theta, false, k.data()));
      for (int64_t i = 0; i < A; ++i) {
        const int64_t b = active[i];
        std::memcpy(kc[l].data() + (base[b] + pos[i]) * kvd, k.data() + i * kvd, kvd * sizeof(float));
        std::memcpy(vc[l].data() + (base[b] + pos[i]) * kvd, v.data() + i * kvd, kvd * sizeof(float));
      }
      const float scale = 1.0f / std::sqrt(static_cast<float>(D));
      const float* K = kc[l].data();
      const float* Vv = vc[l].data();
      parallel_for(A * H, 1, [&](int64_t j0, int64_t j1, int) {
        std::vector<float> s;
        std::vector<float> acc(static_cast<size_t>(D));
        for (int64_t j = j0; j < j1; ++j) {
          const int64_t i = j / H, h = j % H, hk = h / grp, b = active[i];
          const int64_t nk = pos[i] + 1;
          const float* qq = q.data() + i * d + h * D;
          s.resize(static_cast<size_t>(nk));
          float mx = -INFINITY;
          for (int64_t t = 0; t < nk; ++t) {
            const float* kk = K + (base[b] + t) * kvd + hk * D;
            float dot = 0.0f;
            for (int64_t e = 0; e < D; ++e) dot += qq[e] * kk[e];
            s[t] = dot * scale;
            mx = std::max(mx, s[t]);
          }
          double sum = 0.0;
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t t = 0; t < nk; ++t) {
            const float p = std::exp(s[t] - mx);
            sum += p;
            const float* vv = Vv + (base[b] + t) * kvd + hk * D;
            for (int64_t e = 0; e < D; ++e) acc[e] += p * vv[e];
          }
          const float inv = static_cast<float>(1.0 / sum);
          float* o2 = att.data() + i * d + h * D;
          for (int64_t e = 0; e < D; ++e) o2[e] = acc[e] * inv;
        }
      });
      VP_RETURN_IF_ERROR(mm_nt(att.data(), w + o.wo, A, d, d, x.data(), 1.0f));
      VP_RETURN_IF_ERROR(rmsnorm_forward(x.data(), w + o.mlp_norm, A, d, c.norm_eps, n2.data(), nullptr));
      VP_RETURN_IF_ERROR(mm_nt(n2.data(), w + o.wgu, A, 2 * F, d, gu.data(), 0.0f));
      VP_RETURN_IF_ERROR(swiglu_forward(gu.data(), gu.data() + F, A, F, 2 * F, act.data()));
      VP_RETURN_IF_ERROR(mm_nt(act.data(), w + o.wdown, A, d, F, x.data(), 1.0f));
    }
    for (int64_t i = 0; i < A; ++i) ++len[active[i]];
    VP_RETURN_IF_ERROR(head_logits(c, w, o_final_norm, o_head, x.data(), A, &lg));
  }
  return Status::Ok();
}

Status VideoLM::generate(const VideoLMBatch& prompts, const VideoLMGenerateOptions& o,
                         std::vector<std::vector<int32_t>>* out) {
  const char* fn = "VideoLM.generate";
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
    return Status::Invalid(std::string(fn) + ": temperature must be >= 0");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) return Status::Invalid(std::string(fn) + ": topP must be in (0, 1]");
  const int64_t V = cfg_.vocab;
  SampleOptions so;
  so.temperature = o.temperature;
  so.top_p = o.top_p;
  so.seed = o.seed;
  Status pick_status;
  // The shared sampler (vp/sample.h): one Philox stream per sequence b and a
  // counter per step, so results do not depend on how prompts are batched.
  auto choose = [&](int64_t b, int64_t step, const float* logits) -> int32_t {
    const uint64_t stream = static_cast<uint64_t>(b);
    so.step = static_cast<uint64_t>(step);
    int32_t token = -1;
    Status st = sample_tokens(logits, 1, V, so, &stream, &token);
    if (!st.ok() && pick_status.ok()) pick_status = st;
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
