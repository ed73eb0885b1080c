// Token packing: the plan against a plain reference, the gather, the
// scatter-add against a float64 reference, the adjoint identity, determinism
// across thread counts, the non-temporal and unaligned paths, bad input, and
// (when a GPU is present) the CUDA backend against the CPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"
#include "vp/cuda.h"
#include "vp/pack.h"
#include "vp/thread_pool.h"

namespace {

struct Case {
  vp::PackSources src;
  int64_t width = 0;
  int64_t num_sequences = 0;
  std::vector<vp::PackSegment> segs;
  std::vector<int32_t> frame_map;
};

// A random batch: KIM-style frame maps (duplicates, identity), text spans,
// empty segments and empty sequences.
Case random_case(uint64_t seed, int64_t width, int64_t max_videos = 4) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Case c;
  c.src.num_videos = uni(1, max_videos);
  c.src.frames = uni(1, 6);
  c.src.tokens_per_frame = uni(1, 5);
  c.src.num_text = uni(0, 20);
  c.width = width;
  c.num_sequences = uni(1, 5);
  for (int32_t s = 0; s < c.num_sequences; ++s) {
    const int64_t nseg = uni(0, 3);
    for (int64_t k = 0; k < nseg; ++k) {
      vp::PackSegment g;
      g.sequence = s;
      if (c.src.num_text == 0 || uni(0, 2) > 0) {
        g.kind = vp::PackSegmentKind::kVideo;
        g.video = static_cast<int32_t>(uni(0, c.src.num_videos - 1));
        if (uni(0, 3) == 0) {
          g.num_frames = static_cast<int32_t>(c.src.frames);
          g.frames_offset = -1;
        } else {
          g.num_frames = static_cast<int32_t>(uni(0, c.src.frames + 2));
          g.frames_offset = static_cast<int64_t>(c.frame_map.size());
          for (int32_t j = 0; j < g.num_frames; ++j)
            c.frame_map.push_back(static_cast<int32_t>(uni(0, c.src.frames - 1)));
        }
      } else {
        g.kind = vp::PackSegmentKind::kText;
        g.text_start = uni(0, c.src.num_text);
        g.text_length = uni(0, c.src.num_text - g.text_start);
      }
      c.segs.push_back(g);
    }
  }
  return c;
}

struct Plan {
  std::vector<int32_t> source, positions, segment, cu;
};

// The plan by the definition, as plainly as possible.
Plan reference_plan(const Case& c) {
  Plan p;
  const int64_t F = c.src.frames, P = c.src.tokens_per_frame;
  p.cu.push_back(0);
  for (int32_t s = 0; s < c.num_sequences; ++s) {
    int32_t pos = 0, idx = 0;
    for (const auto& g : c.segs) {
      if (g.sequence != s) continue;
      if (g.kind == vp::PackSegmentKind::kVideo) {
        for (int32_t j = 0; j < g.num_frames; ++j) {
          const int64_t f = g.frames_offset < 0 ? j : c.frame_map[g.frames_offset + j];
          for (int64_t t = 0; t < P; ++t) {
            p.source.push_back(static_cast<int32_t>((g.video * F + f) * P + t));
            p.positions.push_back(pos++);
            p.segment.push_back(idx);
          }
        }
      } else {
        for (int64_t t = 0; t < g.text_length; ++t) {
          p.source.push_back(static_cast<int32_t>(c.src.video_rows() + g.text_start + t));
          p.positions.push_back(pos++);
          p.segment.push_back(idx);
        }
      }
      ++idx;
    }
    p.cu.push_back(static_cast<int32_t>(p.source.size()));
  }
  return p;
}

Plan make_plan(const Case& c) {
  int64_t total = -1;
  const int32_t* fm = c.frame_map.empty() ? nullptr : c.frame_map.data();
  REQUIRE(vp::pack_count(c.src, c.segs.data(), static_cast<int64_t>(c.segs.size()), c.num_sequences, fm,
                         static_cast<int64_t>(c.frame_map.size()), &total)
              .ok());
  Plan p;
  p.source.assign(total, -7);
  p.positions.assign(total, -7);
  p.segment.assign(total, -7);
  p.cu.assign(c.num_sequences + 1, -7);
  vp::Status s = vp::pack_plan(c.src, c.segs.data(), static_cast<int64_t>(c.segs.size()), c.num_sequences, fm,
                               static_cast<int64_t>(c.frame_map.size()), total, p.source.data(),
                               p.positions.data(), p.segment.data(), p.cu.data());
  REQUIRE_MESSAGE(s.ok(), s.message());
  return p;
}

vp::TensorView view2(float* data, int64_t rows, int64_t cols) { return vp::TensorView(data, {rows, cols}); }

std::vector<float> gather(const Case& c, const Plan& p, const std::vector<float>& video,
                          const std::vector<float>& text) {
  const int64_t n = static_cast<int64_t>(p.source.size());
  std::vector<float> out = vptest::poisoned(n * c.width);
  vp::TensorView v(const_cast<float*>(video.data()),
                   {c.src.num_videos, c.src.frames, c.src.tokens_per_frame, c.width});
  vp::Status s = vp::pack_tokens(v, view2(const_cast<float*>(text.data()), c.src.num_text, c.width),
                                 p.source.data(), n, view2(out.data(), n, c.width));
  REQUIRE_MESSAGE(s.ok(), s.message());
  return out;
}

void scatter(const Case& c, const Plan& p, const std::vector<float>& dy, std::vector<float>* dv,
             std::vector<float>* dt) {
  const int64_t n = static_cast<int64_t>(p.source.size());
  *dv = vptest::poisoned(c.src.video_rows() * c.width);
  *dt = vptest::poisoned(c.src.num_text * c.width);
  vp::TensorView v(dv->data(), {c.src.num_videos, c.src.frames, c.src.tokens_per_frame, c.width});
  vp::Status s = vp::pack_tokens_backward(view2(const_cast<float*>(dy.data()), n, c.width), p.source.data(), n, v,
                                          view2(dt->data(), c.src.num_text, c.width));
  REQUIRE_MESSAGE(s.ok(), s.message());
}

}  // namespace

TEST_CASE("pack_plan matches the reference plan (positions, segments, cuSeqlens, source)") {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    Case c = random_case(seed, 3);
    Plan ref = reference_plan(c);
    Plan got = make_plan(c);
    CAPTURE(seed);
    CHECK(got.source == ref.source);
    CHECK(got.positions == ref.positions);
    CHECK(got.segment == ref.segment);
    CHECK(got.cu == ref.cu);
  }
}

TEST_CASE("pack_tokens copies each row from its source; backward matches a float64 scatter-add") {
  const int original_threads = vp::num_threads();
  for (int threads : {1, 2, 3}) {
    vp::set_num_threads(threads);
    for (int64_t width : {1, 3, 4, 7, 16, 64, 257}) {
      for (uint64_t seed = 1; seed <= 12; ++seed) {
        CAPTURE(threads);
        CAPTURE(width);
        CAPTURE(seed);
        Case c = random_case(seed * 31 + width, width);
        Plan p = make_plan(c);
        auto video = vptest::random_floats(c.src.video_rows() * width, seed);
        auto text = vptest::random_floats(c.src.num_text * width, seed + 1);
        auto out = gather(c, p, video, text);
        bool exact = true;
        for (size_t i = 0; i < p.source.size(); ++i)
          for (int64_t d = 0; d < width; ++d) {
            const int64_t r = p.source[i];
            const float want = r < c.src.video_rows() ? video[r * width + d] : text[(r - c.src.video_rows()) * width + d];
            if (std::memcmp(&out[i * width + d], &want, sizeof(float)) != 0) exact = false;
          }
        CHECK(exact);

        const int64_t n = static_cast<int64_t>(p.source.size());
        auto dy = vptest::random_floats(n * width, seed + 2);
        std::vector<double> ref(c.src.total_rows() * width, 0.0);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t d = 0; d < width; ++d) ref[p.source[i] * width + d] += dy[i * width + d];
        std::vector<float> dv, dt;
        scatter(c, p, dy, &dv, &dt);
        std::vector<float> got(dv);
        got.insert(got.end(), dt.begin(), dt.end());
        CHECK(vptest::rel_error(got, ref) <= 1e-6);
      }
    }
  }
  vp::set_num_threads(original_threads);
}

TEST_CASE("adjoint identity <pack(x), y> = <x, packBackward(y)> in float64") {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    const int64_t width = 1 + static_cast<int64_t>(seed % 9) * 7;
    Case c = random_case(seed * 7919, width);
    Plan p = make_plan(c);
    const int64_t n = static_cast<int64_t>(p.source.size());
    auto video = vptest::random_floats(c.src.video_rows() * width, seed);
    auto text = vptest::random_floats(c.src.num_text * width, seed + 1);
    auto y = vptest::random_floats(n * width, seed + 2);
    auto px = gather(c, p, video, text);
    std::vector<float> dv, dt;
    scatter(c, p, y, &dv, &dt);
    double lhs = 0, rhs = 0, scale = 0;
    for (int64_t i = 0; i < n * width; ++i) {
      lhs += static_cast<double>(px[i]) * y[i];
      scale += std::fabs(static_cast<double>(px[i]) * y[i]);
    }
    for (size_t i = 0; i < dv.size(); ++i) rhs += static_cast<double>(video[i]) * dv[i];
    for (size_t i = 0; i < dt.size(); ++i) rhs += static_cast<double>(text[i]) * dt[i];
    CHECK(std::fabs(lhs - rhs) <= 1e-5 * (scale > 1 ? scale : 1));
  }
}

TEST_CASE("the backward is bitwise identical for 1, 2 and 4 threads (no races, fixed summation order)") {
  const int original_threads = vp::num_threads();
  const int64_t width = 96;
  // Many copies of few source rows: heavy duplication, as in an all-but-one-key-frame video.
  Case c;
  c.src = {2, 4, 8, 10};
  c.width = width;
  c.num_sequences = 3;
  for (int32_t s = 0; s < 3; ++s) {
    vp::PackSegment g;
    g.sequence = s;
    g.video = s % 2;
    g.num_frames = 40;
    g.frames_offset = static_cast<int64_t>(c.frame_map.size());
    for (int j = 0; j < 40; ++j) c.frame_map.push_back(j % 3 == 0 ? 1 : 2);
    c.segs.push_back(g);
    vp::PackSegment t;
    t.sequence = s;
    t.kind = vp::PackSegmentKind::kText;
    t.text_start = 0;
    t.text_length = 10;
    c.segs.push_back(t);
  }
  Plan p = make_plan(c);
  auto dy = vptest::random_floats(p.source.size() * width, 5);
  std::vector<float> base_v, base_t;
  vp::set_num_threads(1);
  scatter(c, p, dy, &base_v, &base_t);
  for (int threads : {2, 4}) {
    vp::set_num_threads(threads);
    std::vector<float> v, t;
    scatter(c, p, dy, &v, &t);
    CHECK(std::memcmp(v.data(), base_v.data(), v.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(t.data(), base_t.data(), t.size() * sizeof(float)) == 0);
  }
  vp::set_num_threads(original_threads);
}

TEST_CASE("non-temporal stores and unaligned outputs give the same results") {
  for (int64_t threshold : {int64_t{1}, int64_t{0}}) {
    vp::cpu::set_pack_stream_threshold(threshold);  // 1: every output streams; 0: the default
    for (int64_t width : {5, 16, 64}) {
      Case c = random_case(99 + width, width);
      Plan p = make_plan(c);
      const int64_t n = static_cast<int64_t>(p.source.size());
      auto video = vptest::random_floats(c.src.video_rows() * width, 1);
      auto text = vptest::random_floats(c.src.num_text * width, 2);
      auto aligned = gather(c, p, video, text);
      // The same into a buffer shifted by one float (not 16-byte aligned).
      std::vector<float> shifted = vptest::poisoned(n * width + 1);
      vp::TensorView v(video.data(), {c.src.num_videos, c.src.frames, c.src.tokens_per_frame, width});
      REQUIRE(vp::pack_tokens(v, view2(text.data(), c.src.num_text, width), p.source.data(), n,
                              view2(shifted.data() + 1, n, width))
                  .ok());
      CHECK(std::memcmp(shifted.data() + 1, aligned.data(), aligned.size() * sizeof(float)) == 0);
      auto dy = vptest::random_floats(n * width, 3);
      std::vector<float> dv, dt;
      scatter(c, p, dy, &dv, &dt);
      std::vector<float> dv2 = vptest::poisoned(dv.size() + 1), dt2 = vptest::poisoned(dt.size() + 1);
      vp::TensorView vv(dv2.data() + 1, {c.src.num_videos, c.src.frames, c.src.tokens_per_frame, width});
      REQUIRE(vp::pack_tokens_backward(view2(dy.data(), n, width), p.source.data(), n, vv,
                                       view2(dt2.data() + 1, c.src.num_text, width))
                  .ok());
      CHECK(std::memcmp(dv2.data() + 1, dv.data(), dv.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(dt2.data() + 1, dt.data(), dt.size() * sizeof(float)) == 0);
    }
  }
  vp::cpu::set_pack_stream_threshold(0);
}

TEST_CASE("pack_inverse_map lists each source row's destinations in ascending order") {
  std::vector<int32_t> source{3, 0, 3, 1, 3, 0};
  std::vector<int32_t> offsets(6), dests(6);
  REQUIRE(vp::pack_inverse_map(source.data(), 6, 5, offsets.data(), dests.data()).ok());
  CHECK(offsets == std::vector<int32_t>{0, 2, 3, 3, 6, 6});
  CHECK(dests == std::vector<int32_t>{1, 5, 3, 0, 2, 4});
  source[2] = 5;
  CHECK(vp::pack_inverse_map(source.data(), 6, 5, offsets.data(), dests.data()).code() == vp::StatusCode::kOutOfRange);
}

TEST_CASE("bad tables and views are rejected with messages naming the argument") {
  vp::PackSources src{2, 4, 3, 5};
  int64_t total = 0;
  auto count = [&](std::vector<vp::PackSegment> segs, std::vector<int32_t> fm, int64_t nseq = 2) {
    return vp::pack_count(src, segs.data(), static_cast<int64_t>(segs.size()), nseq, fm.data(),
                          static_cast<int64_t>(fm.size()), &total);
  };
  vp::PackSegment video;
  video.video = 0;
  video.num_frames = 4;
  vp::PackSegment text;
  text.kind = vp::PackSegmentKind::kText;
  text.text_start = 1;
  text.text_length = 4;
  CHECK(count({video, text}, {}).ok());
  CHECK(total == 16);

  auto bad_video = video;
  bad_video.video = 2;
  vp::Status s = count({video, bad_video}, {});
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("sequences[0][1].video") != std::string::npos);

  auto mapped = video;
  mapped.num_frames = 3;
  mapped.frames_offset = 0;
  s = count({mapped}, {0, 4, 1});
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("sequences[0][0].frames[1]") != std::string::npos);
  s = count({mapped}, {0, 1});
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("outside the frame map") != std::string::npos);

  auto long_text = text;
  long_text.text_length = 5;
  long_text.sequence = 1;
  s = count({video, long_text}, {});
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("sequences[1][0].text") != std::string::npos);

  auto backwards = video;
  backwards.sequence = 1;
  s = count({backwards, text}, {});
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  s = count({video}, {}, 0);
  CHECK(s.code() == vp::StatusCode::kOutOfRange);

  // Views: width mismatch, wrong out rows, source out of range, wrong dtype.
  std::vector<float> v(2 * 4 * 3 * 8), t(5 * 8), o(2 * 8);
  std::vector<int32_t> source{0, 28};
  vp::TensorView vv(v.data(), {2, 4, 3, 8});
  s = vp::pack_tokens(vv, view2(t.data(), 5, 7), source.data(), 2, view2(o.data(), 2, 8));
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  CHECK(s.message().find("text must be [T, 8]") != std::string::npos);
  s = vp::pack_tokens(vv, view2(t.data(), 5, 8), source.data(), 2, view2(o.data(), 1, 16));
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
  s = vp::pack_tokens(vv, view2(t.data(), 5, 8), source.data(), 2, view2(o.data(), 2, 8));
  CHECK(s.ok());
  source[1] = 29;
  s = vp::pack_tokens(vv, view2(t.data(), 5, 8), source.data(), 2, view2(o.data(), 2, 8));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  CHECK(s.message().find("source[1] = 29") != std::string::npos);
  s = vp::pack_tokens_backward(view2(o.data(), 2, 8), source.data(), 2, vv, view2(t.data(), 5, 8));
  CHECK(s.code() == vp::StatusCode::kOutOfRange);
  vp::TensorView as_int(t.data(), {5, 8}, vp::DType::kInt32);
  source[1] = 0;
  s = vp::pack_tokens(vv, as_int, source.data(), 2, view2(o.data(), 2, 8));
  CHECK(s.code() == vp::StatusCode::kInvalidArgument);
}

TEST_CASE("CUDA pack matches the CPU and satisfies the adjoint identity (skipped without a GPU)") {
  if (vptest::skip_without_cuda()) return;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    for (int64_t width : {3, 64, 256}) {
      CAPTURE(seed);
      CAPTURE(width);
      Case c = random_case(seed * 101 + width, width, 6);
      Plan p = make_plan(c);
      const int64_t n = static_cast<int64_t>(p.source.size());
      auto video = vptest::random_floats(c.src.video_rows() * width, seed);
      auto text = vptest::random_floats(c.src.num_text * width, seed + 1);
      auto dy = vptest::random_floats(n * width, seed + 2);
      auto cpu_out = gather(c, p, video, text);
      std::vector<float> cpu_dv, cpu_dt;
      scatter(c, p, dy, &cpu_dv, &cpu_dt);

      auto up = [](const std::vector<float>& h) {
        void* d = nullptr;
        REQUIRE(vp::cuda::malloc_device(&d, std::max<size_t>(h.size(), 1) * sizeof(float)).ok());
        if (!h.empty()) REQUIRE(vp::cuda::copy_to_device(d, h.data(), h.size() * sizeof(float)).ok());
        return d;
      };
      void* d_video = up(video);
      void* d_text = up(text);
      void* d_out = up(vptest::poisoned(n * width));
      void* d_dy = up(dy);
      void* d_dv = up(vptest::poisoned(video.size()));
      void* d_dt = up(vptest::poisoned(text.size()));
      auto dev4 = [&](void* d) {
        return vp::TensorView(d, {c.src.num_videos, c.src.frames, c.src.tokens_per_frame, width},
                              vp::DType::kFloat32, vp::Device::kCUDA);
      };
      auto dev2 = [&](void* d, int64_t rows) {
        return vp::TensorView(d, {rows, width}, vp::DType::kFloat32, vp::Device::kCUDA);
      };
      vp::Status s = vp::pack_tokens(dev4(d_video), dev2(d_text, c.src.num_text), p.source.data(), n, dev2(d_out, n));
      REQUIRE_MESSAGE(s.ok(), s.message());
      s = vp::pack_tokens_backward(dev2(d_dy, n), p.source.data(), n, dev4(d_dv), dev2(d_dt, c.src.num_text));
      REQUIRE_MESSAGE(s.ok(), s.message());
      std::vector<float> out(n * width), dv(video.size()), dt(text.size());
      if (!out.empty()) REQUIRE(vp::cuda::copy_to_host(out.data(), d_out, out.size() * sizeof(float)).ok());
      if (!dv.empty()) REQUIRE(vp::cuda::copy_to_host(dv.data(), d_dv, dv.size() * sizeof(float)).ok());
      if (!dt.empty()) REQUIRE(vp::cuda::copy_to_host(dt.data(), d_dt, dt.size() * sizeof(float)).ok());
      CHECK(std::memcmp(out.data(), cpu_out.data(), out.size() * sizeof(float)) == 0);
      // Same summation order (ascending destination), float32 accumulation on both.
      CHECK(vptest::rel_error(dv, cpu_dv) <= 1e-6);
      CHECK(vptest::rel_error(dt, cpu_dt) <= 1e-6);
      double lhs = 0, rhs = 0, scale = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        lhs += static_cast<double>(out[i]) * dy[i];
        scale += std::fabs(static_cast<double>(out[i]) * dy[i]);
      }
      for (size_t i = 0; i < dv.size(); ++i) rhs += static_cast<double>(video[i]) * dv[i];
      for (size_t i = 0; i < dt.size(); ++i) rhs += static_cast<double>(text[i]) * dt[i];
      CHECK(std::fabs(lhs - rhs) <= 1e-5 * (scale > 1 ? scale : 1));
      for (void* d : {d_video, d_text, d_out, d_dy, d_dv, d_dt}) vp::cuda::free_device(d);
    }
  }
}
