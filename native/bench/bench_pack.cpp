// vp_bench_pack: frame-substitution token packing on CPU (float32) or CUDA
// (float32/bfloat16/float16), one JSON line per direction (bench_util.h format).
//
// The batch is what stage 1 packs: per video v (V videos of F = 16 frames of P
// tokens, D dims, 32 text rows each), sequence A = the video's frames then its
// text, sequence B = the KIM variant, whose key frames (3 + 5v and 7 + 11v,
// mod F) carry the tokens of their nearest non-key frame (the earlier one at
// equal distance). Forward: vp::pack_tokens (a gather; the host source map is
// copied to the device inside the call, as the API does); backward:
// vp::pack_tokens_backward (a scatter-add, with the CSR inverse map built on the
// host inside the call). bench/peers/gpu_torch.py rebuilds the same map and
// times a device copy moving as many bytes (the bandwidth peer) and
// index_select / index_add_ (what a PyTorch user would write).
#include <cstdint>
#include <string>
#include <vector>

#include "bench_util.h"
#include "vp/pack.h"

namespace {

constexpr int64_t kFrames = 16, kTextPerVideo = 32;

// The packed rows' source rows in [video flattened to [V·F·P, D]; text].
std::vector<int32_t> source_map(int64_t videos, int64_t p) {
  const int64_t video_rows = videos * kFrames * p;
  std::vector<int32_t> src;
  src.reserve(static_cast<size_t>(videos * (2 * kFrames * p + kTextPerVideo)));
  for (int64_t v = 0; v < videos; ++v) {
    for (int64_t f = 0; f < kFrames; ++f)  // A: the original frames
      for (int64_t t = 0; t < p; ++t) src.push_back(static_cast<int32_t>((v * kFrames + f) * p + t));
    for (int64_t t = 0; t < kTextPerVideo; ++t)  // A: its text
      src.push_back(static_cast<int32_t>(video_rows + v * kTextPerVideo + t));
    bool key[kFrames] = {};
    key[(3 + 5 * v) % kFrames] = key[(7 + 11 * v) % kFrames] = true;
    for (int64_t f = 0; f < kFrames; ++f) {  // B: the KIM variant
      int64_t s = f;
      if (key[f])
        for (int64_t dist = 1; dist < kFrames; ++dist) {
          if (f - dist >= 0 && !key[f - dist]) { s = f - dist; break; }
          if (f + dist < kFrames && !key[f + dist]) { s = f + dist; break; }
        }
      for (int64_t t = 0; t < p; ++t) src.push_back(static_cast<int32_t>((v * kFrames + s) * p + t));
    }
  }
  return src;
}

}  // namespace

int main(int argc, char** argv) {
  const vpbench::Args args = vpbench::parse_args(argc, argv);
  if (!vpbench::can_run("pack", args)) return 0;
  const int64_t videos = args.cuda() ? 64 : 4, p = args.cuda() ? 64 : 16, d = args.cuda() ? 1024 : 64;
  const std::vector<int32_t> source = source_map(videos, p);
  const int64_t n = static_cast<int64_t>(source.size()), text_rows = videos * kTextPerVideo;
  const int64_t video_rows = videos * kFrames * p;
  vpbench::Buffers buf("pack", args);
  const vp::TensorView video = buf.floats(vpbench::normal(video_rows * d, 41), {videos, kFrames, p, d});
  const vp::TensorView text = buf.floats(vpbench::normal(text_rows * d, 42), {text_rows, d});
  const vp::TensorView dtokens = buf.floats(vpbench::normal(n * d, 43), {n, d});
  const vp::TensorView out = buf.empty({n, d});
  const vp::TensorView dvideo = buf.empty({videos, kFrames, p, d}), dtext = buf.empty({text_rows, d});
  const double es = static_cast<double>(vp::dtype_size(args.dt()));
  const std::string shape = std::to_string(videos) + "x" + std::to_string(kFrames) + "x" + std::to_string(p) + "x" +
                            std::to_string(d) + " +text";
  int failures = 0;
  for (const bool backward : {false, true}) {
    vp::Status st;
    const vpbench::Timing t = vpbench::time_on(args, [&] {
      st = backward ? vp::pack_tokens_backward(dtokens, source.data(), n, dvideo, dtext)
                    : vp::pack_tokens(video, text, source.data(), n, out);
    });
    const std::string cas = std::string(backward ? "backward " : "forward ") + shape;
    if (!st.ok()) {
      vpbench::error_line("pack", cas, args, st.message());
      ++failures;
      continue;
    }
    // Bytes read + written: forward n rows each way; backward n rows read, every source row written.
    const double bytes = (backward ? n + video_rows + text_rows : 2 * n) * d * es;
    char extra[320];
    std::snprintf(extra, sizeof extra,
                  "\"dir\":\"%s\",\"videos\":%lld,\"frames\":%lld,\"P\":%lld,\"D\":%lld,\"textPerVideo\":%lld,"
                  "\"rows\":%lld,\"bytes\":%.6g,\"gbps\":%.2f,%s",
                  backward ? "backward" : "forward", static_cast<long long>(videos), static_cast<long long>(kFrames),
                  static_cast<long long>(p), static_cast<long long>(d), static_cast<long long>(kTextPerVideo),
                  static_cast<long long>(n), bytes, bytes / (t.median_ms * 1e6), vpbench::machine_json(args).c_str());
    vpbench::emit("pack", cas, args, t, extra);
  }
  return failures ? 1 : 0;
}
