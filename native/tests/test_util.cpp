#include "test_util.h"

#include <cstdlib>
#include <cstring>

#include "vp/cuda.h"
#include "vp/thread_pool.h"

namespace vptest {
BackendScope::~BackendScope() { vp::set_active_isa(isa); }

bool skip_without_cuda() {
  if (vp::cuda::available()) return false;
  const char* req = std::getenv("VP_TEST_REQUIRE_CUDA");
  if (req && *req && std::strcmp(req, "0") != 0) {
    FAIL_CHECK("VP_TEST_REQUIRE_CUDA is set but CUDA is unavailable: " << vp::cuda::unavailable_reason());
    return true;
  }
  MESSAGE("skipped (no usable GPU): " << vp::cuda::unavailable_reason());
  return true;
}
}  // namespace vptest
