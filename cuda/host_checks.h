// Host-side checks of the CUDA backend that need no GPU, so the native tests
// run them on any machine (plain C++17: no CUDA headers):
//   * cc_problem: does this build's CUDA code run on a GPU of compute
//     capability major.minor? Needs >= 8.0 (bfloat16 tensor-core kernels) and a
//     kernel image for it among the built architectures (CMAKE_CUDA_ARCHITECTURES:
//     "80-real" runs on 8.x with x >= 0, "90-virtual" PTX is compiled by the
//     driver for any >= 9.0, "90" is both; "90a" images run on 9.0 only).
//   * grid_problem: a launch's grid against CUDA's limits (x < 2^31, y and z <= 65535).
//   * copy_word_bytes: the widest word (16, 4, 2 or 1 bytes) that divides a row
//     and to which every pointer is aligned (the row copy kernels' vector width).
// Each is O(length of its input).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

namespace vp::cuda::host {

constexpr int kMinMajor = 8;  // sm_80: the bfloat16 WMMA (tensor-core) kernels need it

// "" when a GPU of compute capability major.minor can run code built for
// `archs` (CMAKE_CUDA_ARCHITECTURES, ';' or ',' separated); else why not.
// "native", "all", "all-major" or an empty list cannot be judged here: "" (the
// runtime probe of a kernel image decides).
inline std::string cc_problem(int major, int minor, const std::string& archs) {
  const std::string cc = std::to_string(major) + "." + std::to_string(minor);
  if (major < kMinMajor)
    return "compute capability " + cc + " is below 8.0, the oldest this build supports (bfloat16 tensor cores)";
  bool judged = false;
  size_t i = 0;
  while (i <= archs.size()) {
    size_t j = archs.find_first_of(";,", i);
    if (j == std::string::npos) j = archs.size();
    std::string tok = archs.substr(i, j - i);
    i = j + 1;
    while (!tok.empty() && tok.front() == ' ') tok.erase(tok.begin());
    while (!tok.empty() && tok.back() == ' ') tok.pop_back();
    if (tok.empty()) continue;
    size_t k = 0;
    while (k < tok.size() && tok[k] >= '0' && tok[k] <= '9') ++k;
    if (k == 0 || k > 4) return "";  // native / all / all-major / unknown: not judged here
    judged = true;
    const int num = std::stoi(tok.substr(0, k));
    const int amaj = num / 10, amin = num % 10;
    std::string rest = tok.substr(k);
    const bool exact = !rest.empty() && (rest[0] == 'a' || rest[0] == 'f');  // arch-specific images
    if (exact) rest.erase(rest.begin());
    const bool real = rest.empty() || rest == "-real";
    const bool virt = rest.empty() || rest == "-virtual";
    if (exact) {
      if (amaj == major && amin == minor && (real || virt)) return "";
      continue;
    }
    if (real && amaj == major && minor >= amin) return "";
    if (virt && (major > amaj || (major == amaj && minor >= amin))) return "";
  }
  if (!judged) return "";
  return "this build has no kernel image for compute capability " + cc + " (built for " + archs +
         "): rebuild with CMAKE_CUDA_ARCHITECTURES=" + std::to_string(major) + std::to_string(minor) +
         "-real (bench/gpu.sh: VP_CUDA_ARCHS)";
}

constexpr int64_t kMaxGridX = 2147483647;  // 2^31 - 1
constexpr int64_t kMaxGridYZ = 65535;

// "" when a grid of x × y × z blocks can be launched; else a message naming fn.
inline std::string grid_problem(const char* fn, int64_t x, int64_t y = 1, int64_t z = 1) {
  auto bad = [&](const char* dim, int64_t v, int64_t limit) {
    return std::string(fn) + ": the CUDA grid would need " + std::to_string(v) + " blocks in " + dim +
           " (the limit is " + std::to_string(limit) + "): the problem is too large for one launch";
  };
  if (x < 1 || y < 1 || z < 1) return std::string(fn) + ": empty CUDA grid";
  if (x > kMaxGridX) return bad("x", x, kMaxGridX);
  if (y > kMaxGridYZ) return bad("y", y, kMaxGridYZ);
  if (z > kMaxGridYZ) return bad("z", z, kMaxGridYZ);
  return "";
}

// The widest of 16, 4, 2 and 1 bytes that divides row_bytes and to which every
// (non-null) pointer is aligned.
inline int copy_word_bytes(int64_t row_bytes, std::initializer_list<const void*> ptrs) {
  for (int w : {16, 4, 2}) {
    if (row_bytes % w != 0) continue;
    bool ok = true;
    for (const void* p : ptrs)
      if (p && reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(w) != 0) ok = false;
    if (ok) return w;
  }
  return 1;
}

}  // namespace vp::cuda::host
