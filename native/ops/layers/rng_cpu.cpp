// Philox4x32-10 fills (vp/rng.h). Written from the SC'11 paper's description:
// 10 rounds of two 32x32→64 multiplies with the published constants, the key
// bumped by the Weyl constants between rounds.
#include <algorithm>
#include <cmath>
#include <string>

#include "vp/rng.h"
#include "vp/thread_pool.h"

namespace vp {

namespace {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

inline double u53(uint32_t hi, uint32_t lo) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32 | lo) >> 11;  // 53 bits
  return static_cast<double>(x) * 0x1.0p-53;                         // [0, 1)
}

template <typename Emit>
Status fill(const char* fn, uint64_t seed, uint64_t stream, float* out, int64_t n, Emit emit) {
  if (n < 0) return Status::Invalid(std::string(fn) + ": n must be >= 0");
  if (n == 0) return Status::Ok();
  if (!out) return Status::Invalid(std::string(fn) + ": out is null");
  const std::array<uint32_t, 2> key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const int64_t pairs = (n + 1) / 2;
  parallel_for(pairs, 4096, [&](int64_t a, int64_t b, int) {
    for (int64_t j = a; j < b; ++j) {
      const uint64_t c = static_cast<uint64_t>(j);
      const auto r = philox4x32_10({static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32),
                                    static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)},
                                   key);
      double v0, v1;
      emit(u53(r[0], r[1]), u53(r[2], r[3]), &v0, &v1);
      out[2 * j] = static_cast<float>(v0);
      if (2 * j + 1 < n) out[2 * j + 1] = static_cast<float>(v1);
    }
  });
  return Status::Ok();
}
}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kW0;
    k[1] += kW1;
  }
  return c;
}

Status rng_normal(uint64_t seed, uint64_t stream, float mean, float std, float* out, int64_t n) {
  if (!std::isfinite(mean) || !(std >= 0.0f) || !std::isfinite(std))
    return Status::Invalid("rng_normal: mean must be finite and std a finite number >= 0");
  const double mu = mean, sd = std;
  return fill("rng_normal", seed, stream, out, n, [&](double a, double b, double* v0, double* v1) {
    const double u1 = 1.0 - a;  // (0, 1]
    const double rad = std::sqrt(-2.0 * std::log(u1));
    const double th = 2.0 * M_PI * b;
    *v0 = mu + sd * rad * std::cos(th);
    *v1 = mu + sd * rad * std::sin(th);
  });
}

Status rng_uniform(uint64_t seed, uint64_t stream, float lo, float hi, float* out, int64_t n) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || !(hi >= lo))
    return Status::Invalid("rng_uniform: lo and hi must be finite with hi >= lo");
  const double l = lo, w = static_cast<double>(hi) - lo;
  return fill("rng_uniform", seed, stream, out, n, [&](double a, double b, double* v0, double* v1) {
    // Rounding to float could reach hi itself; keep the interval half-open.
    const double top = static_cast<double>(std::nextafter(hi, lo));
    *v0 = hi > lo ? std::min(l + w * a, top) : l;
    *v1 = hi > lo ? std::min(l + w * b, top) : l;
  });
}

}  // namespace vp
