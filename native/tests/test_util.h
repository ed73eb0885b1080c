// Helpers shared by the native tests: seeded random data, NaN poisoning, and
// the relative error ||out - ref|| / ||ref|| against a float64 reference.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "vp/cpu_features.h"
#include "vp/thread_pool.h"

namespace vptest {

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> poisoned(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

template <typename A, typename B>
double rel_error(const A& out, const B& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double d = static_cast<double>(out[i]) - static_cast<double>(ref[i]);
    if (std::isnan(static_cast<double>(out[i]))) return std::numeric_limits<double>::infinity();
    num += d * d;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  if (den == 0.0) return std::sqrt(num);
  return std::sqrt(num / den);
}

// Every ISA path this CPU can run, so a test can loop over them.
inline std::vector<vp::Isa> supported_isas() {
  std::vector<vp::Isa> out{vp::Isa::kGeneric};
  vp::Isa best = vp::detect_isa();
  if (best >= vp::Isa::kAvx2) out.push_back(vp::Isa::kAvx2);
  if (best >= vp::Isa::kAvx512) out.push_back(vp::Isa::kAvx512);
  return out;
}

// Restores the active ISA when a test is done with it.
struct BackendScope {
  vp::Isa isa = vp::active_isa();
  ~BackendScope();
};

// Restores the thread pool's size when a test is done with it.
struct ThreadScope {
  int saved = vp::num_threads();
  ~ThreadScope() { vp::set_num_threads(saved); }
};

// Runs body() on every ISA path this CPU has, with 1 and 2 threads each.
inline void for_each_backend(const std::function<void()>& body) {
  BackendScope scope;
  ThreadScope ts;
  for (vp::Isa isa : supported_isas()) {
    REQUIRE(vp::set_active_isa(isa));
    for (int threads : {1, 2}) {
      vp::set_num_threads(threads);
      std::string isa_name = vp::isa_name(isa);
      CAPTURE(isa_name);
      CAPTURE(threads);
      body();
    }
  }
}

// For a CUDA test case: true (skip it, with a message) when no GPU is usable.
// With VP_TEST_REQUIRE_CUDA=1 in the environment (bench/gpu.sh sets it) a missing
// GPU fails the test case instead, so a GPU run cannot pass having tested nothing.
// Every CUDA test case has "cuda" in its name (gpu.sh selects them with -tc=*cuda*).
bool skip_without_cuda();

// Gradient of L(x) = sum(w * f(x)) by central differences in double.
inline std::vector<double> fd_grad(const std::function<std::vector<double>(const std::vector<double>&)>& f,
                                   const std::vector<double>& x, const std::vector<double>& w, double h = 1e-6) {
  std::vector<double> g(x.size());
  std::vector<double> xp = x;
  for (size_t i = 0; i < x.size(); ++i) {
    xp[i] = x[i] + h;
    std::vector<double> fp = f(xp);
    xp[i] = x[i] - h;
    std::vector<double> fm = f(xp);
    xp[i] = x[i];
    double s = 0.0;
    for (size_t j = 0; j < fp.size(); ++j) s += w[j] * (fp[j] - fm[j]);
    g[i] = s / (2 * h);
  }
  return g;
}

}  // namespace vptest
