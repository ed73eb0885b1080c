// Helpers for the native benchmarks (no Node needed, so they run on a GPU
// machine without Node.js): median timing and one JSON line per case.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "vp/cuda.h"

namespace vpbench {

struct Timing {
  double median_ms = 0, min_ms = 0;
  int reps = 0;
};

// Times fn (which must leave its work complete: on CUDA, call synchronize inside).
inline Timing time_it(const std::function<void()>& fn, int warmup = 2, int reps = 7, double min_ms = 200) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> s;
  auto start = std::chrono::steady_clock::now();
  while (static_cast<int>(s.size()) < reps ||
         (std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() < min_ms &&
          s.size() < 200)) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    s.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return {s[s.size() / 2], s[0], static_cast<int>(s.size())};
}

// Arguments: --device cpu|cuda, --dtype float32|bfloat16|float16, --quick.
struct Args {
  std::string device = "cpu";
  std::string dtype = "float32";
  bool quick = false;
};

inline Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--device") && i + 1 < argc) a.device = argv[++i];
    else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) a.dtype = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) a.quick = true;
  }
  return a;
}

// {"bench":..., "case":..., "device":..., "dtype":..., "ms":..., <extra>}
inline void emit(const std::string& bench, const std::string& cas, const Args& a, const Timing& t,
                 const std::string& extra_json = "") {
  std::printf("{\"bench\":\"%s\",\"case\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\",\"ms\":%.6f,\"minMs\":%.6f,\"reps\":%d%s%s}\n",
              bench.c_str(), cas.c_str(), a.device.c_str(), a.dtype.c_str(), t.median_ms, t.min_ms, t.reps,
              extra_json.empty() ? "" : ",", extra_json.c_str());
  std::fflush(stdout);
}

}  // namespace vpbench
