// vp/status.h — how the core reports failure.
//
// Kernels never throw across the core's API: every public entry point returns a
// Status. An OK status carries no message; a failed one says what went wrong,
// naming the argument, in words a user can act on. The Node addon turns a failed
// Status into a JavaScript exception carrying the same message.
#pragma once

#include <string>
#include <utility>

namespace vp {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // a shape, dtype or value that the kernel cannot accept (TypeError/RangeError)
  kOutOfRange,       // an index outside its valid range (RangeError)
  kUnavailable,      // the backend is not present on this machine (no GPU, no driver)
  kInternal,         // a failure inside a backend (CUDA error, allocation failure)
};

class Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Invalid(std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); }
  static Status OutOfRange(std::string msg) { return Status(StatusCode::kOutOfRange, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(StatusCode::kUnavailable, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(StatusCode::kInternal, std::move(msg)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(StatusCode code, std::string msg) : code_(code), message_(std::move(msg)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Return early from a function that returns Status.
#define VP_RETURN_IF_ERROR(expr)          \
  do {                                    \
    ::vp::Status vp_status_ = (expr);     \
    if (!vp_status_.ok()) return vp_status_; \
  } while (0)

}  // namespace vp
