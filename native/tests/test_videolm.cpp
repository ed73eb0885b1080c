// The built-in VideoLM (vp/videolm.h): gradient check of the whole model against
// finite differences, tap and log-prob gradients, gradient accumulation, the
// KV-cache path against a full recomputation, seeded generation, overfitting,
// and batch validation.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "videolm_fixtures.h"
#include "vp/rng.h"
#include "vp/videolm.h"

namespace {

using vptest::check_config;
using vptest::Data;
using vptest::make;
using vptest::make_data;
using vptest::make_prompts;
using vptest::PromptSet;
using vptest::randomize;

// f = loss + <wt, tap> + <wl, logprobs>, accumulated in double.
double objective(vp::VideoLM& m, const vp::VideoLMBatch& b, const vp::VideoLMForwardOptions& o,
                 const std::vector<float>& wt, const std::vector<float>& wl) {
  vp::VideoLMForwardResult r;
  vp::Status s = m.forward(b, o, &r);
  REQUIRE_MESSAGE(s.ok(), s.message());
  double f = r.loss;
  for (size_t i = 0; i < wt.size(); ++i) f += static_cast<double>(wt[i]) * r.tap[i];
  for (size_t i = 0; i < wl.size(); ++i) f += static_cast<double>(wl[i]) * r.token_logprobs[i];
  return f;
}

void gradient_check(bool tied) {
  const vp::VideoLMConfig c = check_config(tied);
  auto m = make(c, 7);
  randomize(*m, 11);
  Data data;
  make_data(c, &data, 3);
  std::vector<int32_t> tap_rows = {0, 5, 13, 20, 30};
  vp::VideoLMForwardOptions o;
  o.tap_layer = 1;
  o.tap_rows = tap_rows.data();
  o.num_tap = static_cast<int64_t>(tap_rows.size());
  o.want_logprobs = true;
  std::vector<float> wt = vptest::random_floats(tap_rows.size() * c.width, 5, -0.3f, 0.3f);
  std::vector<float> wl = vptest::random_floats(data.text.size(), 6, -0.5f, 0.5f);

  vp::VideoLMForwardResult r;
  REQUIRE(m->forward(data.batch, o, &r).ok());
  CHECK(r.count == 5 + 3 + 4);
  REQUIRE(m->backward(1.0f, wt.data(), wl.data(), false).ok());
  std::vector<float> grad(m->grad_data(), m->grad_data() + m->num_params());

  float* w = m->param_data();
  for (size_t pi = 0; pi < m->params().size(); ++pi) {
    const auto& p = m->params()[pi];
    // Direction: half along the analytic gradient, half random (unit norm).
    std::vector<double> u(static_cast<size_t>(p.numel));
    std::vector<float> rnd = vptest::random_floats(u.size(), 100 + pi);
    double gn = 0, rn = 0;
    for (int64_t i = 0; i < p.numel; ++i) {
      gn += double(grad[p.offset + i]) * grad[p.offset + i];
      rn += double(rnd[i]) * rnd[i];
    }
    gn = std::sqrt(gn);
    rn = std::sqrt(rn);
    double un = 0;
    for (int64_t i = 0; i < p.numel; ++i) {
      u[i] = (gn > 0 ? grad[p.offset + i] / gn : 0.0) + rnd[i] / rn;
      un += u[i] * u[i];
    }
    un = std::sqrt(un);
    double analytic = 0;
    for (int64_t i = 0; i < p.numel; ++i) {
      u[i] /= un;
      analytic += u[i] * grad[p.offset + i];
    }
    std::vector<float> saved(w + p.offset, w + p.offset + p.numel);
    auto f_at = [&](double eps) {
      for (int64_t i = 0; i < p.numel; ++i) w[p.offset + i] = static_cast<float>(saved[i] + eps * u[i]);
      return objective(*m, data.batch, o, wt, wl);
    };
    const double h = 2e-2;
    const double d1 = (f_at(h) - f_at(-h)) / (2 * h);
    const double d2 = (f_at(h / 2) - f_at(-h / 2)) / h;
    const double fd = (4 * d2 - d1) / 3;  // Richardson: O(h^4)
    std::memcpy(w + p.offset, saved.data(), saved.size() * sizeof(float));
    const double rel = std::fabs(fd - analytic) / std::max(std::fabs(fd), 1e-12);
    INFO(p.name << ": analytic " << analytic << " fd " << fd << " |g| " << gn);
    CHECK(gn > 0);
    if (std::getenv("VP_VERBOSE")) MESSAGE(p.name << " rel " << rel << " analytic " << analytic << " fd " << fd);
    CHECK(rel <= 1e-3);
  }
}

}  // namespace

TEST_CASE("videolm: presets and config validation") {
  vp::VideoLMConfig c;
  REQUIRE(vp::videolm_preset("tiny", &c).ok());
  CHECK(c.width == 128);
  CHECK(c.ffn_dim() == 352);
  REQUIRE(vp::videolm_preset("small", &c).ok());
  CHECK(c.ffn_dim() == 1408);
  CHECK(!vp::videolm_preset("huge", &c).ok());
  c = check_config(true);
  c.kv_heads = 3;
  vp::Status s = vp::videolm_validate_config(c);
  CHECK(!s.ok());
  CHECK(s.message().find("kvHeads") != std::string::npos);
  c = check_config(true);
  c.image_size = 10;
  CHECK(vp::videolm_validate_config(c).message().find("imageSize") != std::string::npos);
}

TEST_CASE("videolm: parameters are named spans of one buffer, seeded init") {
  auto a = make(check_config(false), 1);
  auto b = make(check_config(false), 1);
  auto c = make(check_config(false), 2);
  int64_t off = 0;
  for (const auto& p : a->params()) {
    CHECK(p.offset == off);
    off += p.numel;
  }
  CHECK(off == a->num_params());
  CHECK(std::memcmp(a->param_data(), b->param_data(), sizeof(float) * a->num_params()) == 0);
  CHECK(std::memcmp(a->param_data(), c->param_data(), sizeof(float) * a->num_params()) != 0);
  CHECK(a->params().back().name == "lm_head");
  auto t = make(check_config(true), 1);
  CHECK(t->params().back().name == "final_norm");
}

TEST_CASE("videolm: gradient check of every parameter tensor (untied head)") { gradient_check(false); }
TEST_CASE("videolm: gradient check of every parameter tensor (tied head)") { gradient_check(true); }

TEST_CASE("videolm: gradient accumulation adds, and the frozen clone is independent") {
  const vp::VideoLMConfig c = check_config(false);
  auto m = make(c, 3);
  Data data;
  make_data(c, &data, 4);
  vp::VideoLMForwardOptions o;
  vp::VideoLMForwardResult r;
  REQUIRE(m->forward(data.batch, o, &r).ok());
  REQUIRE(m->backward(1.0f, nullptr, nullptr, false).ok());
  std::vector<float> g1(m->grad_data(), m->grad_data() + m->num_params());
  REQUIRE(m->forward(data.batch, o, &r).ok());
  REQUIRE(m->backward(1.0f, nullptr, nullptr, true).ok());
  std::vector<float> g2(m->grad_data(), m->grad_data() + m->num_params());
  std::vector<double> twice(g1.begin(), g1.end());
  for (auto& x : twice) x *= 2;
  CHECK(vptest::rel_error(g2, twice) < 1e-6);
  // backward without a fresh forward is an error.
  CHECK(!m->backward(1.0f, nullptr, nullptr, true).ok());

  std::unique_ptr<vp::VideoLM> ref;
  REQUIRE(m->clone(&ref).ok());
  vp::VideoLMForwardResult r0, r1;
  REQUIRE(ref->forward(data.batch, o, &r0).ok());
  vp::VideoLMStepOptions so;
  so.lr = 1e-2;
  REQUIRE(m->forward(data.batch, o, &r).ok());
  REQUIRE(m->backward(1.0f, nullptr, nullptr, false).ok());
  vp::VideoLMStepResult sr;
  REQUIRE(m->optimizer_step(so, &sr).ok());
  CHECK(sr.step == 1);
  CHECK(sr.grad_norm > 0);
  REQUIRE(ref->forward(data.batch, o, &r1).ok());
  CHECK(r0.loss == r1.loss);
  REQUIRE(m->forward(data.batch, o, &r).ok());
  CHECK(r.loss < r0.loss);
}

TEST_CASE("videolm: a NaN or infinite gradient skips the optimizer step and changes nothing") {
  const vp::VideoLMConfig c = check_config(false);
  auto m = make(c, 7);
  Data data;
  make_data(c, &data, 9);
  vp::VideoLMForwardOptions o;
  vp::VideoLMForwardResult r;
  vp::VideoLMStepOptions so;
  so.lr = 1e-2;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    REQUIRE(m->forward(data.batch, o, &r).ok());
    REQUIRE(m->backward(1.0f, nullptr, nullptr, false).ok());
    const std::vector<float> before(m->param_data(), m->param_data() + m->num_params());
    const int64_t step = m->step();
    m->grad_data()[m->num_params() / 2] = bad;
    vp::VideoLMStepResult sr;
    REQUIRE(m->optimizer_step(so, &sr).ok());
    CHECK(!std::isfinite(sr.grad_norm));
    CHECK(sr.step == step);
    CHECK(m->step() == step);
    CHECK(std::equal(before.begin(), before.end(), m->param_data()));
  }
}

TEST_CASE("videolm: the KV-cache decode equals a full recomputation") {
  vp::VideoLMConfig c = check_config(false);
  c.layers = 3;
  auto m = make(c, 21);
  randomize(*m, 5);
  std::vector<uint8_t> videos = [&] {
    std::vector<uint8_t> v(static_cast<size_t>(2 * c.frames * c.image_size * c.image_size * 3));
    std::mt19937 rng(9);
    for (auto& x : v) x = static_cast<uint8_t>(rng() & 255);
    return v;
  }();
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5}, {6, 7, 8, 9, 10}};
  std::vector<std::vector<int32_t>> forced = {{11, 12, 13, 14}, {15, 16, 17, 18}, {19, 20, 21, 22}};
  PromptSet p, full;
  make_prompts(c, prompts, nullptr, videos, &p);
  make_prompts(c, prompts, &forced, videos, &full);
  std::vector<std::vector<float>> cached;
  vp::Status s = m->cached_logits(p.batch, forced, &cached);
  REQUIRE_MESSAGE(s.ok(), s.message());
  std::vector<float> all;
  vp::VideoLMLayout lay;
  REQUIRE(m->logits_all(full.batch, &all, &lay).ok());
  for (size_t b = 0; b < prompts.size(); ++b) {
    // Rows of sequence b that predict forced tokens: the last prompt row and forced rows but the last.
    const int64_t end = lay.cu_seqlens[b + 1];
    const int64_t first = end - static_cast<int64_t>(forced[b].size()) - 1;
    std::vector<float> ref(all.begin() + first * c.vocab, all.begin() + (end - 1) * c.vocab);
    INFO("sequence " << b);
    CHECK(vptest::rel_error(cached[b], ref) < 1e-5);
  }
}

TEST_CASE("videolm: generation is deterministic for a seed; greedy follows the argmax") {
  vp::VideoLMConfig c = check_config(true);
  auto m = make(c, 33);
  randomize(*m, 8);
  std::vector<uint8_t> videos(static_cast<size_t>(c.frames * c.image_size * c.image_size * 3), 77);
  std::vector<std::vector<int32_t>> prompts = {{1, 2}, {1, 2}, {3}};
  PromptSet p;
  make_prompts(c, prompts, nullptr, videos, &p);
  vp::VideoLMGenerateOptions g;
  g.max_tokens = 6;
  g.temperature = 1.0f;
  g.top_p = 0.9f;
  g.seed = 42;
  std::vector<std::vector<int32_t>> a, b, d;
  REQUIRE(m->generate(p.batch, g, &a).ok());
  REQUIRE(m->generate(p.batch, g, &b).ok());
  CHECK(a == b);
  CHECK(a[0].size() == 6);
  g.seed = 43;
  REQUIRE(m->generate(p.batch, g, &d).ok());
  CHECK(a != d);
  // Greedy: every token is the argmax of a full recomputation.
  g.temperature = 0.0f;
  REQUIRE(m->generate(p.batch, g, &a).ok());
  PromptSet full;
  make_prompts(c, prompts, &a, videos, &full);
  std::vector<float> all;
  vp::VideoLMLayout lay;
  REQUIRE(m->logits_all(full.batch, &all, &lay).ok());
  for (size_t s = 0; s < prompts.size(); ++s) {
    const int64_t end = lay.cu_seqlens[s + 1];
    for (size_t t = 0; t < a[s].size(); ++t) {
      const float* row = all.data() + (end - static_cast<int64_t>(a[s].size()) - 1 + static_cast<int64_t>(t)) * c.vocab;
      int best = 0;
      for (int j = 1; j < c.vocab; ++j)
        if (row[j] > row[best]) best = j;
      CHECK(best == a[s][t]);
    }
  }
  // eos stops a sequence (and is kept).
  g.eos_id = a[0][1];
  std::vector<std::vector<int32_t>> e;
  REQUIRE(m->generate(p.batch, g, &e).ok());
  CHECK(e[0].size() <= 2);
  CHECK(e[0].back() == g.eos_id);
  // prompt + maxTokens beyond maxSeq
  g.max_tokens = 100;
  CHECK(m->generate(p.batch, g, &e).code() == vp::StatusCode::kOutOfRange);
}

TEST_CASE("videolm: overfits 16 samples") {
  vp::VideoLMConfig c = check_config(true);
  c.width = 32;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn = 64;
  c.vocab = 40;
  auto m = make(c, 1);
  const int n = 16, len = 6;
  std::mt19937 rng(5);
  std::vector<uint8_t> videos(static_cast<size_t>(n * c.frames * c.image_size * c.image_size * 3));
  for (auto& v : videos) v = static_cast<uint8_t>(rng() & 255);
  std::vector<int32_t> text;
  vp::VideoLMBatch b;
  for (int i = 0; i < n; ++i) {
    vp::VideoLMSegment v;
    v.video = i;
    vp::VideoLMSegment t;
    t.text_start = static_cast<int64_t>(text.size());
    t.text_len = len;
    text.push_back(1);  // bos
    for (int j = 1; j < len; ++j) text.push_back(static_cast<int32_t>(4 + rng() % (c.vocab - 4)));
    b.sequences.push_back({v, t});
  }
  b.videos_u8 = videos.data();
  b.num_videos = n;
  b.text = text.data();
  b.num_text = static_cast<int64_t>(text.size());
  vp::VideoLMForwardOptions o;
  vp::VideoLMStepOptions so;
  so.lr = 1e-2;
  so.weight_decay = 0.0f;
  so.warmup_steps = 10;
  so.total_steps = 300;
  so.min_lr = 1e-3;
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    vp::VideoLMForwardResult r;
    REQUIRE(m->forward(b, o, &r).ok());
    if (step == 0) first = r.loss;
    last = r.loss;
    REQUIRE(m->backward(1.0f, nullptr, nullptr, false).ok());
    REQUIRE(m->optimizer_step(so, nullptr).ok());
    if (last < 0.01) break;
  }
  INFO("first " << first << " last " << last);
  if (std::getenv("VP_VERBOSE")) MESSAGE("overfit: first " << first << " last " << last);
  CHECK(first > 3.0);
  CHECK(last < 0.05);
}

TEST_CASE("videolm: batch validation names the problem") {
  const vp::VideoLMConfig c = check_config(true);
  auto m = make(c, 3);
  Data data;
  make_data(c, &data, 4);
  vp::VideoLMForwardOptions o;
  vp::VideoLMForwardResult r;
  auto expect = [&](vp::VideoLMBatch b, const char* needle) {
    vp::Status s = m->forward(b, o, &r);
    CHECK(!s.ok());
    INFO(s.message());
    CHECK(s.message().find(needle) != std::string::npos);
  };
  vp::VideoLMBatch b = data.batch;
  b.sequences[0][0].video = 5;
  expect(b, "video");
  b = data.batch;
  std::vector<int32_t> bad_frames = {0, 2};
  b.sequences[1][0].frames = bad_frames.data();
  expect(b, "frames[1]");
  b = data.batch;
  b.sequences[2][0].text_len = 50;
  expect(b, "must lie inside the text");
  std::vector<int32_t> bad_text = data.text;
  bad_text[3] = 99;
  b = data.batch;
  b.text = bad_text.data();
  expect(b, "text[3] = 99");
  std::vector<int32_t> tgt(data.text.size(), -1);
  tgt[0] = -2;
  b = data.batch;
  b.targets = tgt.data();
  expect(b, "targets[0]");
  b = data.batch;
  b.sequences.clear();
  expect(b, "at least one sequence");
  std::vector<int32_t> rows = {1000};
  o.tap_layer = 1;
  o.tap_rows = rows.data();
  o.num_tap = 1;
  expect(data.batch, "tapRows[0]");
  o.tap_layer = 9;
  expect(data.batch, "tapLayer");
}

TEST_CASE("videolm: a tap gradient reaches only the layers below the tap") {
  const vp::VideoLMConfig c = check_config(false);
  auto m = make(c, 12);
  Data data;
  make_data(c, &data, 2);
  std::vector<int32_t> rows = {1, 9, 20};
  std::vector<float> w = vptest::random_floats(rows.size() * c.width, 3);
  for (int64_t layer = 0; layer <= c.layers; ++layer) {
    vp::VideoLMForwardOptions o;
    o.tap_layer = layer;
    o.tap_rows = rows.data();
    o.num_tap = static_cast<int64_t>(rows.size());
    vp::VideoLMForwardResult r;
    REQUIRE(m->forward(data.batch, o, &r).ok());
    REQUIRE(m->backward(0.0f, w.data(), nullptr, false).ok());
    const float* g = m->grad_data();
    for (const auto& p : m->params()) {
      double s = 0;
      for (int64_t i = 0; i < p.numel; ++i) s += std::fabs(g[p.offset + i]);
      int64_t l = -1;
      if (p.name.rfind("layers.", 0) == 0) l = std::stoll(p.name.substr(7));
      const bool below = p.name.rfind("vision.", 0) == 0 || p.name == "tok_embed" || (l >= 0 && l < layer);
      INFO("tap layer " << layer << ", " << p.name);
      if (below) CHECK(s > 0);
      else CHECK(s == 0);
    }
  }
}
