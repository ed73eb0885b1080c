// Argument checks shared by the CPU and CUDA implementations of the ops (host
// code, no CUDA headers, so cuda/*.cu and native/ops/*.cpp include the same
// one): a null pointer, and a row count with a positive width. Each returns
// Status::Invalid naming the function and the argument. O(1).
#pragma once

#include <cstdint>
#include <string>

#include "vp/status.h"

namespace vp::detail {

inline Status need(const void* p, const char* fn, const char* arg) {
  if (p == nullptr) return Status::Invalid(std::string(fn) + ": " + arg + " is null");
  return Status::Ok();
}

// rows >= 0 and dim > 0 (the shapes of the row-wise ops: rows tokens of dim features).
inline Status check_rows_dim(const char* fn, int64_t rows, int64_t dim) {
  if (rows < 0) return Status::Invalid(std::string(fn) + ": rows must be >= 0, got " + std::to_string(rows));
  if (dim <= 0) return Status::Invalid(std::string(fn) + ": dim must be > 0, got " + std::to_string(dim));
  return Status::Ok();
}

}  // namespace vp::detail
