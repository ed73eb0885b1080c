// Seeded next-token sampling (vp/sample.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "vp/rng.h"
#include "vp/sample.h"
#include "vp/thread_pool.h"

namespace vp {

Status sample_tokens(const float* logits, int64_t rows, int64_t vocab, const SampleOptions& o,
                     const uint64_t* streams, int32_t* out) {
  if (rows < 0) return Status::Invalid("sample_tokens: rows must be >= 0");
  if (vocab <= 0 || vocab > INT32_MAX) return Status::Invalid("sample_tokens: vocab must be in [1, 2^31)");
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
    return Status::Invalid("sample_tokens: temperature must be a finite number >= 0");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) return Status::Invalid("sample_tokens: top_p must be in (0, 1]");
  if (rows == 0) return Status::Ok();
  if (!logits || !out) return Status::Invalid("sample_tokens: logits and out must not be null");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < vocab; ++j)
      if (!std::isfinite(logits[r * vocab + j]))
        return Status::Invalid("sample_tokens: logits[" + std::to_string(r) + ", " + std::to_string(j) +
                               "] is not finite");
  const uint32_t k0 = static_cast<uint32_t>(o.seed), k1 = static_cast<uint32_t>(o.seed >> 32);
  parallel_for(rows, 1, [&](int64_t r0, int64_t r1, int) {
    std::vector<double> p;
    std::vector<int32_t> idx;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * vocab;
      int32_t best = 0;
      for (int64_t j = 1; j < vocab; ++j)
        if (x[j] > x[best]) best = static_cast<int32_t>(j);
      if (o.temperature <= 0.0f) {
        out[r] = best;
        continue;
      }
      p.resize(vocab);
      const double m = x[best], invt = 1.0 / static_cast<double>(o.temperature);
      double total = 0.0;
      for (int64_t j = 0; j < vocab; ++j) total += (p[j] = std::exp((x[j] - m) * invt));
      const uint64_t stream = streams ? streams[r] : static_cast<uint64_t>(r);
      const auto bits = philox4x32_10({static_cast<uint32_t>(o.step), static_cast<uint32_t>(o.step >> 32),
                                       static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)},
                                      {k0, k1});
      const double u = static_cast<double>(((static_cast<uint64_t>(bits[0]) << 32) | bits[1]) >> 11) * 0x1.0p-53;
      int32_t pick = -1;
      if (o.top_p >= 1.0f) {
        double target = u * total, acc = 0.0;
        for (int64_t j = 0; j < vocab; ++j) {
          acc += p[j];
          if (target < acc) {
            pick = static_cast<int32_t>(j);
            break;
          }
        }
      } else {
        idx.resize(vocab);
        std::iota(idx.begin(), idx.end(), 0);
        std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
        const double keep = static_cast<double>(o.top_p) * total;
        double mass = 0.0;
        int64_t kept = 0;
        while (kept < vocab && mass < keep) mass += p[idx[kept++]];
        double target = u * mass, acc = 0.0;
        for (int64_t i = 0; i < kept; ++i) {
          acc += p[idx[i]];
          if (target < acc) {
            pick = idx[i];
            break;
          }
        }
        if (pick < 0) pick = idx[kept - 1];
      }
      out[r] = pick >= 0 ? pick : best;  // u·total rounded past the last sum: take the argmax
    }
  });
  return Status::Ok();
}

}  // namespace vp
