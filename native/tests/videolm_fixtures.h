// Fixtures shared by the VideoLM tests (test_videolm.cpp, test_videolm_cuda.cpp):
// a tiny config, seeded models on either device, generic parameters, a packed
// batch with every kind of segment, and prompt sets for generation.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "vp/rng.h"
#include "vp/videolm.h"

namespace vptest {

inline vp::VideoLMConfig check_config(bool tied) {
  vp::VideoLMConfig c;
  c.image_size = 8;
  c.patch_size = 4;  // 4 patches per frame
  c.frames = 2;
  c.width = 16;
  c.layers = 2;
  c.heads = 2;
  c.kv_heads = 1;
  c.ffn = 24;
  c.vocab = 23;
  c.max_seq = 64;
  c.tied = tied;
  return c;
}

inline std::unique_ptr<vp::VideoLM> make(const vp::VideoLMConfig& c, uint64_t seed,
                                         vp::Device device = vp::Device::kCPU) {
  std::unique_ptr<vp::VideoLM> m;
  vp::Status s = vp::VideoLM::create(c, seed, &m, device);
  REQUIRE_MESSAGE(s.ok(), s.message());
  return m;
}

// Larger, generic parameters than the 0.02 init, so every path carries signal
// well above float32 rounding in the finite differences.
// (Through set_buffer, so it works on either device.)
inline void randomize(vp::VideoLM& m, uint64_t seed) {
  std::vector<float> w(static_cast<size_t>(m.num_params()));
  for (size_t i = 0; i < m.params().size(); ++i) {
    const auto& p = m.params()[i];
    const bool gain = p.name.find("norm") != std::string::npos;
    REQUIRE(vp::rng_normal(seed, 1000 + i, gain ? 1.0f : 0.0f, gain ? 0.2f : 0.35f, w.data() + p.offset, p.numel).ok());
  }
  REQUIRE(m.set_buffer(vp::VideoLMBuffer::kParams, w.data()).ok());
}

struct Data {
  std::vector<uint8_t> videos;
  std::vector<int32_t> text, frames_map;
  vp::VideoLMBatch batch;
};

// Two videos, three sequences: [video 0, text], [video 1 with frames {1, 1}, text],
// [text, video 0].
inline void make_data(const vp::VideoLMConfig& c, Data* d, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const int64_t nv = 2;
  d->videos.resize(static_cast<size_t>(nv * c.frames * c.image_size * c.image_size * 3));
  for (auto& v : d->videos) v = static_cast<uint8_t>(rng() & 255);
  d->text.resize(15);
  for (auto& t : d->text) t = static_cast<int32_t>(rng() % c.vocab);
  d->frames_map = {1, 1};
  vp::VideoLMBatch& b = d->batch;
  b.videos_u8 = d->videos.data();
  b.num_videos = nv;
  b.text = d->text.data();
  b.num_text = static_cast<int64_t>(d->text.size());
  vp::VideoLMSegment v0; v0.video = 0;
  vp::VideoLMSegment v1; v1.video = 1; v1.frames = d->frames_map.data(); v1.num_frames = 2;
  vp::VideoLMSegment t0; t0.text_start = 0; t0.text_len = 6;
  vp::VideoLMSegment t1; t1.text_start = 6; t1.text_len = 4;
  vp::VideoLMSegment t2; t2.text_start = 10; t2.text_len = 5;
  b.sequences = {{v0, t0}, {v1, t1}, {t2, v0}};
}


// Prompts [video b, text prompt_b]; the extended batch appends forced tokens.
struct PromptSet {
  std::vector<uint8_t> videos;
  std::vector<int32_t> text;
  vp::VideoLMBatch batch;
};

inline void make_prompts(const vp::VideoLMConfig& c, const std::vector<std::vector<int32_t>>& prompt_text,
                  const std::vector<std::vector<int32_t>>* forced, const std::vector<uint8_t>& videos, PromptSet* ps) {
  ps->videos = videos;
  ps->text.clear();
  vp::VideoLMBatch& b = ps->batch;
  b = vp::VideoLMBatch();
  b.videos_u8 = ps->videos.data();
  b.num_videos = static_cast<int64_t>(videos.size() / (c.frames * c.image_size * c.image_size * 3));
  for (size_t i = 0; i < prompt_text.size(); ++i) {
    vp::VideoLMSegment v;
    v.video = static_cast<int32_t>(i % b.num_videos);
    vp::VideoLMSegment t;
    t.text_start = static_cast<int64_t>(ps->text.size());
    ps->text.insert(ps->text.end(), prompt_text[i].begin(), prompt_text[i].end());
    if (forced) ps->text.insert(ps->text.end(), (*forced)[i].begin(), (*forced)[i].end());
    t.text_len = static_cast<int64_t>(ps->text.size()) - t.text_start;
    b.sequences.push_back({v, t});
  }
  b.text = ps->text.data();
  b.num_text = static_cast<int64_t>(ps->text.size());
}


}  // namespace vptest
