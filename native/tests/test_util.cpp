#include "test_util.h"

#include "vp/thread_pool.h"

namespace vptest {
BackendScope::~BackendScope() { vp::set_active_isa(isa); }
}  // namespace vptest
